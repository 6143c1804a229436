"""DB-KSVD against sparse autoencoders on the built-in real datasets: the seed paper's headline.

Claim
-----
At equal dictionary size K and sparsity k, DB-KSVD explains more of the signal of real
embeddings than the best of five SAE architectures, at every k, and it reaches the best SAE's
final explained variance in less wall time than that SAE needed to train.

What it measures
----------------
Datasets (embedded once into stores under ``--stores``, reused afterwards):

* ``emoji``: the 1,362 emoji images through effnet-lite0 (1280-d); K in ``--emoji-atoms``
  (default 128,512: too few rows for an overcomplete K);
* ``fashion``: the first ``--fashion-rows`` (10,000) Fashion-MNIST images through
  effnet-lite0 (1280-d, labelled); K in ``--fashion-atoms`` (512,2048; 2048 > d);
* ``wordnet``: ``--wordnet-rows`` (20,000) WordNet noun glosses ("dog: a member of the genus
  Canis ...", Debian ``wordnet-base``, every 4th synset) through minilm (384-d); K in
  ``--wordnet-atoms`` (256,1024; 1024 > d).

For each dataset and K, :func:`dbksvd.analysis.compare.run_comparison` with k in ``--nnz``
(8,16,32,64), methods dbksvd (30 passes; also dbksvd-threshold, the thresholding pursuit,
printed against the best SAE as INFO), topk, batchtopk, relu, featurechoice, mutualchoice
(at most ``--epochs`` 50 epochs, early stopping) and random directions, one split (70% train,
10% validation, 20% test, seed 0), default preprocessing; metrics on the test rows.
Time-to-reach: DB-KSVD refitted with 1, 2, 3, 5, 8, 13, 20 and 30 passes; the wall time of the
fastest fit whose test explained variance reaches the best SAE's, divided by that SAE's
training time.

How to run
----------
::

    python benchmarks/compare.py                               # all three datasets (hours on 2 cores)
    python benchmarks/compare.py --datasets emoji              # minutes
    python benchmarks/compare.py --datasets wordnet --wordnet-atoms 256 --nnz 8,32

Results: ``benchmarks/results/compare-<UTC time>.json`` (``--results-dir``; ``--json OUT`` also
writes a copy), with every row of every comparison; the exit status is 1 when a graded target
fails (the last line says so), else 0.

Targets
-------
* explained signal: DB-KSVD > the best SAE at every (dataset, K, k) -- PASS / FAIL;
* time to reach the best SAE's explained variance < that SAE's training time -- PASS / FAIL.
"""

from __future__ import annotations

import argparse

import _common  # benchmarks/_common.py: this script's folder is sys.path[0]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--datasets", default="emoji,fashion,wordnet")
    p.add_argument("--nnz", default="8,16,32,64")
    p.add_argument("--emoji-atoms", default="128,512")
    p.add_argument("--fashion-atoms", default="512,2048")
    p.add_argument("--wordnet-atoms", default="256,1024")
    _common.add_dataset_options(p, fashion_rows=10000)  # 10,000 for compare: at 20,000 its SAEs at K=2048 take hours
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    _common.set_threads_env(ARGS.threads)

import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

SAES = ("topk", "batchtopk", "relu", "featurechoice", "mutualchoice")
REACH_PASSES = (1, 2, 3, 5, 8, 13, 20, 30)


def wordnet_glosses(rows: int) -> list[str]:
    """``"lemma: gloss"`` for every 4th noun synset of WordNet (deterministic)."""
    out = []
    with open("/usr/share/wordnet/data.noun", encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(line for line in f if not line.startswith("  ")):
            if i % 4 or "|" not in line:
                continue
            fields = line.split()
            lemma = fields[4].replace("_", " ")
            gloss = line.split("|", 1)[1].split(";")[0].strip()
            out.append(f"{lemma}: {gloss}")
            if len(out) == rows:
                break
    return out


def load_store(name: str, args):
    """The store of a built-in dataset, embedded the first time (captions stay in the metadata;
    only the wordnet texts have a text space)."""
    from dbksvd.data import EmojiDataset, FashionMNIST, TextsDataset
    from dbksvd.embedding import embed_dataset
    from dbksvd.encoders import get_encoder

    root = Path(args.stores)
    root.mkdir(parents=True, exist_ok=True)
    if name == "emoji":
        return embed_dataset(EmojiDataset(), root / "emoji", get_encoder("effnet-lite0"), captions=False)
    if name == "emoji-text":  # the emoji with their captions through minilm (space "text")
        return embed_dataset(
            EmojiDataset(), root / "emoji-captions", get_encoder("effnet-lite0"), text_encoder=get_encoder("minilm")
        )
    if name == "fashion":
        return embed_dataset(
            FashionMNIST(limit=args.fashion_rows),
            root / f"fashion-{args.fashion_rows}",
            get_encoder("effnet-lite0"),
            captions=False,
        )
    if name == "wordnet":
        corpus = root / f"wordnet-{args.wordnet_rows}.txt"
        if not corpus.exists():
            corpus.write_text("\n".join(wordnet_glosses(args.wordnet_rows)) + "\n", encoding="utf-8")
        return embed_dataset(TextsDataset(corpus), root / f"wordnet-{args.wordnet_rows}", get_encoder("minilm"))
    raise SystemExit(f"unknown dataset {name!r}")


def load_dataset(name: str, args) -> tuple[np.ndarray, np.ndarray | None]:
    """(X, labels) of a built-in dataset."""
    store = load_store(name, args)
    X = store.space().to_numpy().astype(np.float32)
    labels = [r.get("label") for r in store.metadata()]
    return X, (np.array(labels) if all(v is not None for v in labels) else None)


def time_to_reach(X: np.ndarray, split: dict, K: int, k: int, target_ev: float) -> tuple[float | None, int | None]:
    """Wall time of the fastest DB-KSVD fit (over REACH_PASSES) whose test EV >= target."""
    from dbksvd import DBKSVD, metrics

    train, test = X[split["train"]], X[split["test"]]
    for passes in REACH_PASSES:
        t0 = time.perf_counter()
        model = DBKSVD(K, k, max_iter=passes, random_state=0).fit(train)
        seconds = time.perf_counter() - t0
        ev = metrics.explained_variance(test, model.inverse_transform(model.transform(test)))
        if ev >= target_ev:
            return seconds, passes
    return None, None


def main(args) -> int:
    import torch

    from dbksvd.analysis.compare import CompareConfig, run_comparison

    torch.set_num_threads(args.threads)
    nnz = tuple(int(v) for v in args.nnz.split(","))
    print(f"compare benchmark: datasets {args.datasets}, k {nnz}, {args.threads} threads; {_common.versions_line()}")
    targets = _common.Targets()
    out = {"runs": [], "comparisons": []}
    for name in args.datasets.split(","):
        X, labels = load_dataset(name, args)
        for K in (int(v) for v in getattr(args, f"{name}_atoms").split(",")):
            cfg = CompareConfig(
                n_atoms=K,
                n_nonzero=tuple(k for k in nnz if k < K),
                methods=("dbksvd", "dbksvd-threshold", *SAES, "random"),
                dbksvd_max_iter=args.iters,
                sae_max_epochs=args.epochs,
            )
            print(f"\n== {name}: {X.shape[0]} x {X.shape[1]}, K={K}")
            report = run_comparison(X, cfg, labels, show_progress=True)
            out["comparisons"].append(
                {
                    "dataset": name,
                    "K": K,
                    "rows": report["rows"],
                    "features": report["features"],
                    "split": report["split"],
                    "results": report["results"],
                }
            )
            rows = [r for r in report["results"] if r.get("status") == "ok"]
            table = []
            for k in cfg.nnz:
                db = next(r for r in rows if r["method"] == "dbksvd" and r["k"] == k)
                saes = [r for r in rows if r["method"] in SAES and r["k"] == k]
                best_es = max(saes, key=lambda r: r["explained_signal"])
                best_ev = max(saes, key=lambda r: r["explained_variance"])
                reach_s, reach_passes = time_to_reach(X, report["split_rows"], K, k, best_ev["explained_variance"])
                table.append(
                    [
                        str(k),
                        f"{db['explained_signal']:.4f}",
                        f"{best_es['explained_signal']:.4f} ({best_es['method']})",
                        f"{db['explained_variance']:.4f}",
                        f"{best_ev['explained_variance']:.4f} ({best_ev['method']})",
                        f"{db['train_seconds']:.1f}",
                        f"{best_ev['train_seconds']:.1f}",
                        "-" if reach_s is None else f"{reach_s:.1f} ({reach_passes} p)",
                    ]
                )
                targets(
                    f"{name} K={K} k={k}: explained signal dbksvd > best SAE",
                    f"{db['explained_signal']:.4f} vs {best_es['explained_signal']:.4f} ({best_es['method']})",
                    db["explained_signal"] > best_es["explained_signal"],
                )
                thr = next(r for r in rows if r["method"] == "dbksvd-threshold" and r["k"] == k)
                targets(
                    f"{name} K={K} k={k}: explained signal dbksvd-threshold vs best SAE",
                    f"{thr['explained_signal']:.4f} vs {best_es['explained_signal']:.4f} ({best_es['method']})",
                    "info",
                )
                targets(
                    f"{name} K={K} k={k}: time to reach the best SAE's EV < its training time",
                    "never reached"
                    if reach_s is None
                    else f"{reach_s:.1f} s vs {best_ev['train_seconds']:.1f} s ({best_ev['method']}): "
                    f"x{reach_s / best_ev['train_seconds']:.2f}",
                    reach_s is not None and reach_s < best_ev["train_seconds"],
                )
                out["runs"].append(
                    {
                        "dataset": name,
                        "K": K,
                        "k": k,
                        "dbksvd": db,
                        "best_sae_es": best_es,
                        "best_sae_ev": best_ev,
                        "reach_seconds": reach_s,
                        "reach_passes": reach_passes,
                    }
                )
            _common.print_table(
                ["k", "dbksvd ES", "best SAE ES", "dbksvd EV", "best SAE EV", "dbksvd s", "SAE s", "reach s"], table
            )
            full = [
                [
                    r["method"],
                    str(r["k"]),
                    f"{r['explained_signal']:.4f}",
                    f"{r['explained_variance']:.4f}",
                    f"{r['l0']:.1f}",
                    str(r["dead_atoms"]),
                    f"{r['train_seconds']:.1f}",
                    f"{r.get('probe_retention', float('nan')):.3f}",
                ]
                for r in rows
            ]
            _common.print_table(["method", "k", "ES", "EV", "L0", "dead", "train s", "probe ret."], full)
    return _common.finish("compare", args, out, targets)


if __name__ == "__main__":
    _common.run(main, ARGS)
