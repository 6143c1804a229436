"""A streaming DB-KSVD fit over an embedding store larger than the memory it is allowed to use.

Claim
-----
``DBKSVD.fit`` on a store reads shards in shuffled sample batches, one shard at a time, so its
peak resident memory is set by the batch size, not by the store: a 2M x 768 float16 store
(about 3 GB) is fitted in several passes with a peak RSS of at most 1.5 GB.

What it measures
----------------
1. Writes (or reuses, when it is complete and was made with the same settings) a store at
   ``--store``: ``--rows`` (2,000,000) planted rows, d = ``--d`` (768), float16, in shards of
   ``--shard-rows`` (16,384) rows, through :class:`dbksvd.data.store.StoreWriter`: each row a
   combination of ``--true-nnz`` (16) of ``--true-atoms`` (1024) random unit atoms with
   Gaussian weights, plus a shared offset (so that the default preprocessing's centring has
   something to remove) and white noise at 30 dB. Reported: seconds and MB/s written.
2. In a fresh subprocess (so the writer's memory does not count): ``DBKSVD(--atoms (1024),
   --nnz (16), max_iter=--passes (2), batch_size=--batch-size (65536), random_state=0)`` with
   the default preprocessing (``normalize+center+scale``: one extra streaming pass computes the
   mean) fitted on the store's space. Reported: wall time, time per pass (the iterations'
   own seconds from ``history_``), rows/s, peak RSS (``ru_maxrss`` of the subprocess, and a
   20 ms VmRSS sampler), and the explained signal of 20,000 held-out rows (the last rows of
   the store, read back with ``take``) as an INFO figure.
3. ``--in-memory`` (on by default): the same fit, one pass, on the whole store loaded into RAM
   as one float16 array: the peer a user would otherwise run. Reported as ratios: the
   streaming fit's peak RSS / the in-memory fit's, and its time per pass / the in-memory one.

How to run
----------
::

    python benchmarks/streaming.py                          # 2M x 768, 2 passes, ~15 min on 2 cores
    python benchmarks/streaming.py --rows 200000 --passes 1 --no-in-memory   # a quick look
    python benchmarks/streaming.py --device cuda

Disk: the store needs rows x d x 2 bytes (3.1 GB by default); it is kept for reruns
(``--store``, default ``/tmp/dbksvd-streaming-store``); delete it afterwards.

Results: ``benchmarks/results/streaming-<UTC time>.json`` (``--results-dir``; ``--json OUT`` also
writes a copy); the exit status is 1 when a graded target fails (the last line says so), else 0.

Targets
-------
* peak RSS of the streaming fit <= 1.5 GB (1.5e9 bytes) -- PASS / FAIL;
* time per pass and the ratios to the in-memory fit are INFO lines.
"""

from __future__ import annotations

import argparse
import sys

import _common  # benchmarks/_common.py: this script's folder is sys.path[0]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, default=2_000_000, help="rows in the store (default 2,000,000)")
    p.add_argument("--d", type=int, default=768, help="dimension (default 768)")
    p.add_argument("--shard-rows", type=int, default=16384, help="rows per shard (default 16384)")
    p.add_argument("--true-atoms", type=int, default=1024, help="planted atoms (default 1024)")
    p.add_argument("--true-nnz", type=int, default=16, help="planted atoms per row (default 16)")
    p.add_argument("--atoms", type=int, default=1024, help="K of the fit (default 1024)")
    p.add_argument("--nnz", type=int, default=16, help="k of the fit (default 16)")
    p.add_argument("--passes", type=int, default=2, help="passes (default 2)")
    p.add_argument("--batch-size", type=int, default=65536, help="rows per sample batch (default 65536)")
    p.add_argument("--store", default="/tmp/dbksvd-streaming-store", help="store folder (kept for reruns)")
    p.add_argument(
        "--in-memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also fit one pass on the whole store in RAM (default on)",
    )
    p.add_argument("--target-gb", type=float, default=1.5, help="peak RSS target in GB (default 1.5)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    _common.add_output_options(p)
    p.add_argument("--child", choices=("stream", "memory"), default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    _common.set_threads_env(ARGS.threads)

import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from _common import MiB, RSSSampler  # noqa: E402

HELD_OUT = 20000
GB = 1e9


def store_settings(args) -> dict:
    return {
        "name": "planted",
        "rows": args.rows,
        "d": args.d,
        "true_atoms": args.true_atoms,
        "true_nnz": args.true_nnz,
        "snr_db": 30.0,
        "seed": 0,
    }


def write_store(args) -> dict:
    """Write the planted store shard by shard (bounded memory); reuse a finished one."""
    from dbksvd.data.store import EmbeddingStore, StoreWriter, is_store
    from dbksvd.data.synthetic import _combine, _supports

    spaces = {"x": {"encoder": {"name": "planted"}, "dim": args.d}}
    if is_store(args.store):
        try:
            store = EmbeddingStore(args.store)
            if store.dataset == store_settings(args) and store.shard_rows == args.shard_rows:
                return {"reused": True, "seconds": 0.0}
        except Exception:
            pass
        import shutil

        shutil.rmtree(args.store)
    rng = np.random.default_rng(0)
    D = rng.standard_normal((args.true_atoms, args.d))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    offset = 2.0 * rng.standard_normal(args.d) / np.sqrt(args.d)
    writer = StoreWriter(
        args.store, dataset=store_settings(args), spaces=spaces, dtype="float16", shard_rows=args.shard_rows
    )
    t0 = time.perf_counter()
    written = 0
    while written < args.rows:
        m = min(args.shard_rows, args.rows - written)
        idx = _supports(rng, m, args.true_atoms, args.true_nnz)
        X = _combine(rng.standard_normal((m, args.true_nnz)), idx, D)
        noise = rng.standard_normal(X.shape)
        X += noise * (np.linalg.norm(X) / (np.linalg.norm(noise) * 10 ** (30 / 20))) + offset
        meta = [{"id": str(written + i)} for i in range(m)]
        writer.add_shard({"x": X.astype(np.float16)}, meta, next_item=written + m)
        written += m
        print(f"\r  wrote {written:,} / {args.rows:,} rows", end="", file=sys.stderr)
    writer.finish()
    print(file=sys.stderr)
    return {"reused": False, "seconds": time.perf_counter() - t0}


def child(args) -> None:
    """One fit in this (fresh) process; results as JSON in ``--child-out``."""
    import torch

    from dbksvd import DBKSVD, metrics
    from dbksvd.data.store import EmbeddingStore

    torch.set_num_threads(args.threads)
    DBKSVD(32, 4, max_iter=1, random_state=0, device=args.device).fit(
        np.random.default_rng(0).random((256, 16))
    )  # compile
    space = EmbeddingStore(args.store).space("x")
    n = space.shape[0]
    test_rows = np.arange(n - HELD_OUT, n)
    passes = args.passes if args.child == "stream" else 1
    model = DBKSVD(
        args.atoms, args.nnz, max_iter=passes, batch_size=args.batch_size, random_state=0, device=args.device, verbose=1
    )
    with RSSSampler() as sampler:
        t0 = time.perf_counter()
        source = space if args.child == "stream" else space.to_numpy()
        loaded = time.perf_counter() - t0
        model.fit(source)
        wall = time.perf_counter() - t0
    X_test = space.take(test_rows).astype(np.float32)
    res = {
        "mode": args.child,
        "rows": n,
        "passes": model.n_iter_,
        "wall_s": wall,
        "load_s": loaded,
        "iter_s_per_pass": sum(h["seconds"] for h in model.history_) / model.n_iter_,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "sampled_peak_rss": sampler.peak,
        "held_out_explained_signal": metrics.explained_signal(X_test, model.inverse_transform(model.transform(X_test))),
    }
    if args.device.startswith("cuda"):
        res["cuda_peak"] = torch.cuda.max_memory_allocated()
    with open(args.child_out, "w") as f:
        json.dump(res, f)


def run_child(args, mode: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        out = tmp.name
    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--child-out",
        out,
        "--store",
        args.store,
        "--atoms",
        str(args.atoms),
        "--nnz",
        str(args.nnz),
        "--passes",
        str(args.passes),
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
    ]
    subprocess.run(cmd, check=True)
    with open(out) as f:
        return json.load(f)


def main(args) -> int:
    print(
        f"streaming benchmark: {args.rows:,} x {args.d} float16 store, K={args.atoms}, k={args.nnz}, "
        f"{args.passes} passes, batch {args.batch_size:,}, {args.threads} threads, {args.device}"
    )
    print(_common.versions_line())
    w = write_store(args)
    size = args.rows * args.d * 2
    if w["reused"]:
        print(f"store: reused {args.store} ({size / GB:.2f} GB)")
    else:
        print(f"store: wrote {size / GB:.2f} GB in {w['seconds']:.0f} s ({size / w['seconds'] / 1e6:.0f} MB/s)")
    results = {"store": {"path": args.store, "bytes": size, **w}, "fits": []}
    modes = ["stream"] + (["memory"] if args.in_memory else [])
    for mode in modes:
        r = run_child(args, mode)
        results["fits"].append(r)
    rows = []
    for r in results["fits"]:
        rows.append(
            [
                r["mode"],
                f"{r['passes']}",
                f"{r['wall_s']:.0f}",
                f"{r['iter_s_per_pass']:.0f}",
                f"{r['rows'] / r['iter_s_per_pass']:,.0f}",
                f"{r['peak_rss'] / MiB:,.0f}",
                f"{r['sampled_peak_rss'] / MiB:,.0f}",
                f"{r['held_out_explained_signal']:.3f}",
            ]
        )
    print()
    _common.print_table(
        ["fit", "passes", "wall s", "s/pass", "rows/s", "peak RSS MiB", "sampled MiB", "held-out expl."], rows
    )
    print()
    targets = _common.Targets()
    s = results["fits"][0]
    targets(
        f"streaming peak RSS <= {args.target_gb} GB",
        f"{s['peak_rss'] / GB:.2f} GB ({s['peak_rss'] / size:.2f} x the store's size)",
        s["peak_rss"] <= args.target_gb * GB,
    )
    targets(
        "time per pass (streaming)",
        f"{s['iter_s_per_pass']:.0f} s ({s['rows'] / s['iter_s_per_pass']:,.0f} rows/s)",
        "info",
    )
    if args.in_memory:
        m = results["fits"][1]
        targets("streaming / in-memory peak RSS", f"{s['peak_rss'] / m['peak_rss']:.2f}", "info")
        targets("streaming / in-memory time per pass", f"{s['iter_s_per_pass'] / m['iter_s_per_pass']:.2f}", "info")
    return _common.finish("streaming", args, results, targets)


if __name__ == "__main__":
    if ARGS.child:
        child(ARGS)
    else:
        _common.run(main, ARGS)
