"""Token- and patch-level activations: capture speed, a streamed fit over a million-token
store, and DB-KSVD against the SAEs on explained signal and on the splice metrics.

Claim
-----
On the residual stream of a real transformer at every token (all-MiniLM-L6-v2, layer 3) and
on the spatial activations of a real CNN (EfficientNet-Lite0's last 7 x 7 feature map),
DB-KSVD explains more of the signal than the best of seven SAE architectures at every k, and
what it keeps matters downstream: spliced back into the network, its reconstructions keep the
sentence embedding (MiniLM) and the ImageNet head's decision (EfficientNet) closer to the
clean run than the best SAE's. The capture runs at >= 2,000 tokens/s on 2 cores, and a fit
over the whole token store streams it with a peak RSS under 2 GB.

What it measures
----------------
* **capture**: ``dbksvd embed --dataset wordnet-glosses --encoder minilm --layer L --tokens``
  (all 82,115 WordNet noun glosses, Debian ``wordnet-base``; about 1.2M tokens), into
  ``--stores`` (reused afterwards); the rate is measured on a fresh store of the first
  ``--rate-items`` (2,000) glosses in every run.
* **streamed fit**: ``dbksvd fit`` of the full token store (``--stream-atoms`` 1024,
  ``--stream-nnz`` 16, ``--stream-iters`` 2 passes) in a child process; its peak RSS
  (``ru_maxrss``) and wall time.
* **comparisons** (:func:`dbksvd.analysis.compare.run_comparison`, the harness of
  ``dbksvd compare``): ``text``: the token rows of the first ``--text-items`` (2,000) glosses
  of the layer-L store; ``patches``: the 49 feature-map rows of the first ``--patch-items``
  (400) emoji images (effnet-lite0 ``--patches``). Split by item (70/10/20, seed 0). K in
  ``--text-atoms`` / ``--patch-atoms``, k in ``--nnz`` (8,16,32); methods dbksvd (``--iters``
  10 passes), topk, batchtopk, relu, featurechoice, mutualchoice, jumprelu,
  matryoshka-batchtopk (at most ``--epochs`` 20 epochs, early stopping) and random. Each
  model's reconstructions of the test items are spliced back (:mod:`dbksvd.analysis.splice`):
  the sentence embedding's cosine to the clean one and retrieval recall (text), the head's
  top-1 agreement and KL (patches), neighbour retention (both), next to the identity.

How to run
----------
::

    python benchmarks/tokens.py                                   # everything (about an hour on 2 cores)
    python benchmarks/tokens.py --parts capture,stream            # capture and the streamed fit only
    python benchmarks/tokens.py --parts text --layer 5 --glosses 1500 --text-items 1500

Results: ``benchmarks/results/tokens-<UTC time>.json``; exit status 1 when a graded target fails.

Targets
-------
* capture >= 2,000 tokens/s (MiniLM, 2 threads) -- PASS / FAIL;
* streamed fit peak RSS < 2 GB -- PASS / FAIL;
* explained signal: DB-KSVD > the best SAE at every (part, K, k) -- PASS / FAIL;
* spliced sentence cosine (text) / head top-1 agreement (patches): DB-KSVD > the best SAE at
  every (part, K, k) -- PASS / FAIL.
"""

from __future__ import annotations

import argparse

import _common  # benchmarks/_common.py: this script's folder is sys.path[0]

SAES = ("topk", "batchtopk", "relu", "featurechoice", "mutualchoice", "jumprelu", "matryoshka-batchtopk")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--parts", default="capture,stream,text,patches")
    p.add_argument("--layer", type=int, default=3, help="MiniLM hidden state (default 3)")
    p.add_argument("--glosses", type=int, default=None, help="the first N glosses only (default: all 82,115)")
    p.add_argument("--rate-items", type=int, default=2000)
    p.add_argument("--stream-atoms", type=int, default=1024)
    p.add_argument("--stream-nnz", type=int, default=16)
    p.add_argument("--stream-iters", type=int, default=2)
    p.add_argument("--text-items", type=int, default=2000)
    p.add_argument("--patch-items", type=int, default=400)
    p.add_argument("--text-atoms", default="256,1024")
    p.add_argument("--patch-atoms", default="256,1024")
    p.add_argument("--nnz", default="8,16,32")
    p.add_argument("--saes", default=",".join(SAES), help="the SAE architectures (default: all seven)")
    p.add_argument("--iters", type=int, default=10, help="DB-KSVD passes (default 10)")
    p.add_argument("--epochs", type=int, default=20, help="SAE epochs at most (default 20)")
    p.add_argument("--stores", default="/tmp/dbksvd-bench-stores", help="where the embedded stores are kept")
    p.add_argument("--threads", type=int, default=2)
    _common.add_output_options(p)
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    _common.set_threads_env(ARGS.threads)

import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

#: the splice number each part is graded on
SPLICE_TARGET = {"text": "splice_sentence_cosine", "patches": "splice_head_top1_agreement"}


def token_store(args):
    """The layer-L MiniLM token store of all WordNet noun glosses (embedded the first time)."""
    from dbksvd.data.datasets import WordNetGlosses
    from dbksvd.embedding import embed_dataset
    from dbksvd.encoders import get_encoder

    path = Path(args.stores) / (f"glosses-minilm-l{args.layer}" + ("" if args.glosses is None else f"-{args.glosses}"))
    t0 = time.perf_counter()
    data = WordNetGlosses(limit=args.glosses)
    store = embed_dataset(data, path, get_encoder("minilm", layer=args.layer), granularity="token")
    return store, time.perf_counter() - t0


def patch_store(args):
    """effnet-lite0 feature-map rows of every emoji (embedded the first time)."""
    from dbksvd.data.datasets import EmojiDataset
    from dbksvd.embedding import embed_dataset
    from dbksvd.encoders import get_encoder

    path = Path(args.stores) / "emoji-effnet-patches"
    return embed_dataset(EmojiDataset(), path, get_encoder("effnet-lite0"), granularity="patch")


def capture_rate(args) -> dict:
    """tokens/s of a fresh capture of the first ``--rate-items`` glosses (model load excluded)."""
    from dbksvd.data.datasets import WordNetGlosses
    from dbksvd.embedding import embed_dataset
    from dbksvd.encoders import get_encoder

    enc = get_encoder("minilm", layer=args.layer)
    enc.encode_tokens(["warm up the model"])
    folder = Path(tempfile.mkdtemp(prefix="tokens-rate-"))
    try:
        t0 = time.perf_counter()
        store = embed_dataset(
            WordNetGlosses(limit=args.rate_items), folder / "s", enc, granularity="token", show_progress=False
        )
        seconds = time.perf_counter() - t0
        return {
            "items": store.n_items,
            "tokens": store.count,
            "seconds": seconds,
            "tokens_per_s": store.count / seconds,
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def streamed_fit(args, store) -> dict:
    """``dbksvd fit`` of the whole token store in a child process: wall time and peak RSS."""
    out = Path(tempfile.mkdtemp(prefix="tokens-fit-")) / "model"
    cmd = [
        sys.executable, "-m", "dbksvd", "fit", str(store.path), "--n-atoms", str(args.stream_atoms),
        "--n-nonzero", str(args.stream_nnz), "--max-iter", str(args.stream_iters), "--out", str(out), "--quiet",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    if done.returncode != 0:
        raise SystemExit(f"dbksvd fit failed: {done.stderr.strip()[-400:]}")
    shutil.rmtree(out.parent, ignore_errors=True)
    return {
        "rows": store.count,
        "items": store.n_items,
        "seconds": seconds,
        "peak_rss_mb": peak / 2**20,
        "peak_rss_valid": peak > before * 1024,
        "command": " ".join(cmd[1:]),
    }


def compare_part(part: str, store, space: str, n_items: int, atoms: list[int], args, targets) -> list[dict]:
    """The comparison on the rows of the first ``n_items`` items, split by item, with splice columns."""
    from dbksvd.analysis.compare import CompareConfig, run_comparison
    from dbksvd.analysis.splice import identity, model_reconstruct, rebuild_encoder, splice_metrics
    from dbksvd.data.splits import split_by_item

    item_of_row = store.item_of_row()
    rows = np.flatnonzero(item_of_row < n_items)
    X = store.space(space).take(rows).astype(np.float32)
    split = split_by_item(item_of_row[rows], 0.2, 0.1, seed=0)
    test_items = np.unique(item_of_row[rows][split["test"]])
    mean = X[split["train"]].astype(np.float64).mean(axis=0)
    encoder = rebuild_encoder(store.manifest["spaces"][space]["encoder"])

    def splice(reconstruct) -> dict:
        found = splice_metrics(store, space, reconstruct, test_items, mean_activation=mean, encoder=encoder)
        return {f"splice_{k}": v for k, v in found.items()}

    ceiling = splice(identity)
    print(f"\n== {part}: {X.shape[0]:,} rows x {X.shape[1]} of {n_items} items; identity: {ceiling}")
    nnz = tuple(int(v) for v in args.nnz.split(","))
    saes = tuple(args.saes.split(","))
    out = []
    for K in atoms:
        cfg = CompareConfig(
            n_atoms=K,
            n_nonzero=nnz,
            methods=("dbksvd", *saes, "random"),
            dbksvd_max_iter=args.iters,
            sae_max_epochs=args.epochs,
            pursuit=False,
        )
        report = run_comparison(X, cfg, split=split, scorers=[lambda m: splice(model_reconstruct(m))])
        results = report["results"]
        out.append({"part": part, "K": K, "rows": report["rows"], "split": report["split"], "identity": ceiling,
                    "results": results})  # fmt: skip
        key = SPLICE_TARGET[part]
        table = []
        for k in nnz:
            ok = [r for r in results if r.get("status") == "ok" and r["k"] == k]
            db = next(r for r in ok if r["method"] == "dbksvd")
            sae_rows = [r for r in ok if r["method"] in saes]
            rnd = next((r for r in ok if r["method"] == "random"), {})
            best_es = max(sae_rows, key=lambda r: r["explained_signal"])
            best_sp = max(sae_rows, key=lambda r: r[key])
            table.append([
                str(k), f"{db['explained_signal']:.4f}", f"{best_es['explained_signal']:.4f} ({best_es['method']})",
                f"{db[key]:.4f}", f"{best_sp[key]:.4f} ({best_sp['method']})", f"{rnd.get(key, float('nan')):.4f}",
                f"{db['splice_neighbour_retention']:.3f}", f"{db['train_seconds']:.0f}",
                f"{best_es['train_seconds']:.0f}", f"{db['train_peak_rss_mb']:.0f}",
            ])  # fmt: skip
            targets(
                f"{part} K={K} k={k}: explained signal DB-KSVD > best SAE",
                f"{db['explained_signal']:.4f} vs {best_es['explained_signal']:.4f} ({best_es['method']})",
                db["explained_signal"] > best_es["explained_signal"],
            )
            targets(
                f"{part} K={K} k={k}: {key} DB-KSVD > best SAE",
                f"{db[key]:.4f} vs {best_sp[key]:.4f} ({best_sp['method']}); identity {ceiling[key]:.4f}",
                db[key] > best_sp[key],
            )
        print(f"\n{part}, K={K}:")
        _common.print_table(
            ["k", "ES dbksvd", "ES best SAE", f"{key} dbksvd", "best SAE", "random", "NN ret.", "s dbksvd",
             "s SAE", "RSS MB"],
            table,
        )  # fmt: skip
        for r in results:
            if r.get("status") != "ok":
                print(f"  {r['method']} k={r['k']}: {r['status']}")
    return out


def main(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    parts = args.parts.split(",")
    print(
        f"tokens benchmark: parts {parts}, MiniLM layer {args.layer}, {args.threads} threads; {_common.versions_line()}"
    )
    targets = _common.Targets()
    figures: dict = {"layer": args.layer, "comparisons": []}
    store = None
    if {"capture", "stream", "text"} & set(parts):
        store, seconds = token_store(args)
        figures["token_store"] = {"path": str(store.path), "rows": store.count, "items": store.n_items,
                                  "seconds_this_run": seconds}  # fmt: skip
        print(f"token store: {store.count:,} tokens of {store.n_items:,} glosses ({seconds:.0f} s this run)")
    if "capture" in parts:
        rate = capture_rate(args)
        figures["capture"] = rate
        print(f"capture: {rate['tokens']:,} tokens of {rate['items']:,} glosses in {rate['seconds']:.1f} s")
        targets("capture rate >= 2,000 tokens/s", f"{rate['tokens_per_s']:,.0f} tokens/s", rate["tokens_per_s"] >= 2000)
    if "stream" in parts:
        fit = streamed_fit(args, store)
        figures["stream"] = fit
        print(f"streamed fit: {fit['rows']:,} rows, {fit['seconds']:.0f} s, peak RSS {fit['peak_rss_mb']:,.0f} MiB")
        targets("streamed fit peak RSS < 2 GB", f"{fit['peak_rss_mb']:,.0f} MiB", fit["peak_rss_mb"] < 2048)
    if "text" in parts:
        atoms = [int(v) for v in args.text_atoms.split(",")]
        figures["comparisons"] += compare_part("text", store, "text", args.text_items, atoms, args, targets)
    if "patches" in parts:
        patches = patch_store(args)
        atoms = [int(v) for v in args.patch_atoms.split(",")]
        figures["comparisons"] += compare_part("patches", patches, "image", args.patch_items, atoms, args, targets)
    return _common.finish("tokens", args, figures, targets)


if __name__ == "__main__":
    _common.run(main, ARGS)
