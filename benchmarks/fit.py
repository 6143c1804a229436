"""Full dbksvd fits at embedding scale: time per pass, peak memory, recovery and held-out explained signal, and how they grow with n.

Claim
-----
A full DB-KSVD fit at d=768, K=4096, k=32 streams the data in sample batches, so the time of a
pass grows linearly with the number of rows n and the memory used by the fit is bounded by
the batch size, not by n; on planted data it finds the true atoms and explains most of the
signal of rows it never saw.

What it measures
----------------
For each ``--rows`` size n (default 10,000 and 100,000), in a fresh Python subprocess (so the
memory peaks are separate):

* data: ``make_sparse_problem(n + --test-rows, 768, 4096, 32, snr_db=30, random_state=--seed)``,
  float32; the first n rows are fitted, the last ``--test-rows`` (default 4096) are held out;
* fit: ``DBKSVD(4096, 32, max_iter=--passes (3), batch_size=--batch-size (16384),
  random_state=0, device=--device)``, defaults otherwise (Batch-OMP coder, power update);
* time per pass: the fit's wall time / passes completed ("wall/pass"), and the sum of
  ``history_[i]["seconds"]`` per pass (mean, first and last pass; the iterations alone,
  without the row gathering between batches);
* peak memory: peak RSS of the process. "RSS before" = resident set after the data was made
  (it includes the data); "peak fit" = highest RSS during the fit (the kernel's VmHWM is reset
  through ``/proc/self/clear_refs`` just before the fit where the kernel allows it, and a
  background thread samples VmRSS every 20 ms as a fallback); "fit extra" = peak fit − RSS
  before, the memory the fit itself needs; "peak proc" = peak RSS of the whole subprocess,
  data generation included (``ru_maxrss`` read before the reset, and again at the end). On
  CUDA, ``torch.cuda.max_memory_allocated`` too;
* recovery: ``metrics.atom_recovery(true D, components_)`` (1 − |⟨g, d⟩| < 0.01), plus the
  share of true atoms matched at |cos| > 0.9 as an INFO figure;
* explained signal on the held-out rows: ``model.score(X_test)`` (1 − mean ‖x − x̂‖/‖x‖,
  docs/metrics.md), and ``1 − rel_error²`` of the last training iteration for comparison;
* growth: ratios largest n / smallest n of wall/pass, peak fit and fit extra.

The numba kernels are compiled first (an untimed warm-up fit on a few rows, before the data is
made). Making the data (``make_sparse_problem`` works in row chunks) peaks at about 1.5 GiB RSS
for the 104k rows of the default run; that shows in "peak proc", not in the fit figures.

How to run
----------
::

    python benchmarks/fit.py                                    # 10k and 100k rows, 3 passes, CPU
    python benchmarks/fit.py --rows 10000,100000 --passes 3,1   # passes per size
    python benchmarks/fit.py --device cuda --rows 100000,1000000
    python benchmarks/fit.py --rows 20000 --passes 1 --batch-size 8192 --threads 2 --json out.json

Results: ``benchmarks/results/fit-<UTC time>.json`` (``--results-dir``; ``--json OUT`` also writes a
copy); the exit status is 1 when a graded target fails (the last line says so), 2 for
inconsistent options, else 0.

Targets
-------
No pass/fail thresholds were given for this benchmark beyond the scaling claim; the script
prints these checks:

* time per pass grows at most linearly: wall/pass ratio ≤ 1.2 × the rows ratio;
* the fit's own memory is bounded by the batch size: "fit extra" at the largest n ≤ 2 × that at
  the smallest n (both sizes use at least one full batch when n ≥ batch size) -- INFO when the
  smallest n is below the batch size, since it then holds fewer rows per batch;
* recovery and held-out explained signal are printed as INFO lines.
"""

from __future__ import annotations

import argparse
import os
import sys

import _common  # benchmarks/_common.py: this script's folder is sys.path[0]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", default="10000,100000", help="comma-separated training sizes n (default 10000,100000)")
    p.add_argument("--passes", default="3", help="passes (max_iter); one value, or one per --rows size (default 3)")
    p.add_argument("--batch-size", type=int, default=16384, help="rows per sample batch (default 16384)")
    p.add_argument("--d", type=int, default=768, help="signal dimension (default 768)")
    p.add_argument("--atoms", type=int, default=4096, help="dictionary size K (default 4096)")
    p.add_argument("--nnz", type=int, default=32, help="non-zeros per row k (default 32)")
    p.add_argument("--snr", type=float, default=30.0, help="SNR in dB of the planted data (default 30)")
    p.add_argument("--test-rows", type=int, default=4096, help="held-out rows for the explained signal (default 4096)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument("--device", default="cpu", help="dbksvd device: cpu or cuda (default cpu)")
    p.add_argument("--seed", type=int, default=0, help="data seed (default 0); the fit uses random_state=0")
    _common.add_output_options(p)
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)  # internal: run one size
    p.add_argument("--child-passes", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None

# Thread counts must be fixed before numpy / torch / numba are loaded.
if ARGS is not None:
    _common.set_threads_env(ARGS.threads)

import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from _common import MiB, RSSSampler, reset_peak, rss_bytes, status_kib  # noqa: E402

# ---------------------------------------------------------------------------------------------
# one size, in a subprocess


def run_child(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from dbksvd import DBKSVD, metrics
    from dbksvd.data import make_sparse_problem

    pool_ctx = _common.threadpool_limits(args.threads)

    n, d, K, k, passes = args.child, args.d, args.atoms, args.nnz, args.child_passes
    device = torch.device(args.device)
    res: dict = dict(rows=n, passes_asked=passes)
    with pool_ctx:
        # warm-up: compile the numba kernels / initialise CUDA, before anything is measured
        t0 = time.perf_counter()
        w = make_sparse_problem(512, d, 256, k, snr_db=args.snr, random_state=1)
        DBKSVD(256, k, preprocessing="none", max_iter=2, batch_size=256, random_state=0, device=device).fit(w.X)
        del w
        res["warmup_seconds"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        P = make_sparse_problem(n + args.test_rows, d, K, k, snr_db=args.snr, random_state=args.seed)
        X, X_test, D_true = P.X[:n], P.X[n:], P.dictionary
        del P
        res["data_seconds"] = time.perf_counter() - t0
        import gc

        gc.collect()

        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        res["rss_before"] = rss_bytes()
        # ru_maxrss is the same counter as VmHWM, so the reset below clears it: keep the
        # peak so far (warm-up + data generation) first.
        res["peak_before_fit"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        res["hwm_reset"] = reset_peak()
        model = DBKSVD(
            K, k, preprocessing="none", max_iter=passes, batch_size=args.batch_size, random_state=0, device=device
        )
        with RSSSampler() as sampler:
            t0 = time.perf_counter()
            model.fit(X)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            fit_secs = time.perf_counter() - t0
        hwm = status_kib("VmHWM")
        res["peak_fit_sampled"] = sampler.peak
        res["peak_fit"] = max(sampler.peak, hwm * 1024) if (res["hwm_reset"] and hwm) else sampler.peak
        if device.type == "cuda":
            res["cuda_max_allocated"] = int(torch.cuda.max_memory_allocated(device))
        res["fit_seconds"] = fit_secs
        res["passes"] = int(model.n_iter_)
        res["steps"] = int(model.n_steps_)
        per_pass: dict[int, float] = {}
        for e in model.history_:
            per_pass[e["pass"]] = per_pass.get(e["pass"], 0.0) + e["seconds"]
        res["pass_seconds"] = [per_pass[p] for p in sorted(per_pass)]
        res["wall_per_pass"] = fit_secs / max(1, model.n_iter_)
        res["last_rel_error"] = float(model.history_[-1]["rel_error"])
        res["replaced"] = int(sum(e["replaced"] for e in model.history_))

        t0 = time.perf_counter()
        res["recovery"] = metrics.atom_recovery(D_true, model.components_)
        res["recovery_cos90"] = metrics.atom_recovery(D_true, model.components_, threshold=0.1)
        res["heldout_explained"] = float(model.score(X_test))
        res["eval_seconds"] = time.perf_counter() - t0
    res["peak_process"] = max(res["peak_before_fit"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    res["device_name"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    res["torch_threads"] = torch.get_num_threads()
    return res


# ---------------------------------------------------------------------------------------------
# parent


def fmt_mib(b) -> str:
    return "-" if b is None else f"{b / MiB:,.0f}"


def main(args) -> int:
    if args.child is not None:
        res = run_child(args)
        with open(args.child_out, "w") as f:
            json.dump(res, f)
        return 0

    import torch

    sizes = [int(x) for x in args.rows.split(",") if x.strip()]
    passes = [int(x) for x in args.passes.split(",") if x.strip()]
    if len(passes) == 1:
        passes = passes * len(sizes)
    if len(passes) != len(sizes):
        print(f"--passes has {len(passes)} values for {len(sizes)} sizes; give one value or one per size")
        return 2
    device = torch.device(args.device)
    if _common.cuda_missing(device):
        return 0
    dev_name = _common.device_name(device)
    torch.set_num_threads(args.threads)
    print(
        f"full fits: d={args.d} K={args.atoms} k={args.nnz}, SNR {args.snr:g} dB, batch_size={args.batch_size}, "
        f"random_state=0, data seed {args.seed}, {args.test_rows} held-out rows, float32"
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores visible, torch threads {torch.get_num_threads()} "
        f"(--threads {args.threads}); device {device.type}: {dev_name}"
    )
    print(f"{_common.versions_line()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()

    results, failed = [], {}
    for n, p in zip(sizes, passes):
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tf:
            out = tf.name
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            str(n),
            "--child-passes",
            str(p),
            "--child-out",
            out,
            "--batch-size",
            str(args.batch_size),
            "--d",
            str(args.d),
            "--atoms",
            str(args.atoms),
            "--nnz",
            str(args.nnz),
            "--snr",
            str(args.snr),
            "--test-rows",
            str(args.test_rows),
            "--threads",
            str(args.threads),
            "--device",
            args.device,
            "--seed",
            str(args.seed),
        ]
        print(f"  n={n:,}: {p} passes ...", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd)
        wall = time.perf_counter() - t0
        try:
            if proc.returncode != 0:
                raise RuntimeError(f"subprocess exit status {proc.returncode}")
            with open(out) as f:
                r = json.load(f)
            r["subprocess_seconds"] = wall
            results.append(r)
            print(
                f"  n={n:,}: done in {wall:.1f} s (data {r['data_seconds']:.1f} s, fit {r['fit_seconds']:.1f} s, "
                f"eval {r['eval_seconds']:.1f} s); load average {os.getloadavg()[0]:.2f}",
                flush=True,
            )
        except Exception as e:
            failed[n] = f"{type(e).__name__}: {e}"
            print(f"  n={n:,}: FAILED ({failed[n]})", flush=True)
        finally:
            try:
                os.unlink(out)
            except OSError:
                pass
    print()

    # -- table ----------------------------------------------------------------------------------
    header = [
        "rows",
        "passes",
        "wall/pass s",
        "iter/pass s",
        "1st/last pass s",
        "RSS before MiB",
        "peak fit MiB",
        "fit extra MiB",
        "peak proc MiB",
        "recovery",
        "cos>0.9",
        "held-out expl.",
        "train 1-rel^2",
    ]
    if device.type == "cuda":
        header.insert(9, "CUDA peak MiB")
    rows = []
    for r in results:
        r["fit_extra"] = r["peak_fit"] - r["rss_before"] if r.get("rss_before") else None
        ps = r["pass_seconds"]
        row = [
            f"{r['rows']:,}",
            str(r["passes"]),
            f"{r['wall_per_pass']:.1f}",
            f"{np.mean(ps):.1f}",
            f"{ps[0]:.1f}/{ps[-1]:.1f}",
            fmt_mib(r["rss_before"]),
            fmt_mib(r["peak_fit"]),
            fmt_mib(r["fit_extra"]),
            fmt_mib(r["peak_process"]),
            f"{100 * r['recovery']:.1f}%",
            f"{100 * r['recovery_cos90']:.1f}%",
            f"{r['heldout_explained']:.4f}",
            f"{1 - r['last_rel_error'] ** 2:.4f}",
        ]
        if device.type == "cuda":
            row.insert(9, fmt_mib(r.get("cuda_max_allocated")))
        rows.append(row)
    if rows:
        _common.print_table(header, rows, left=())
        print()
        print(
            "wall/pass = fit wall time / passes; iter/pass = sum of history_ seconds per pass (mean); "
            "fit extra = peak fit - RSS before"
        )
        hw = "VmHWM reset + 20 ms VmRSS sampling" if all(r["hwm_reset"] for r in results) else "20 ms VmRSS sampling"
        print(f"peak fit measured by {hw}; peak proc = peak RSS of the whole subprocess (data generation included)")
        print("replaced atoms over the fit: " + ", ".join(f"n={r['rows']:,}: {r['replaced']}" for r in results))
    for n, why in failed.items():
        print(f"n={n:,}: failed, {why}")
    print()

    # -- growth and checks ----------------------------------------------------------------------
    growth = None
    targets = _common.Targets()

    if len(results) >= 2:
        a, b = min(results, key=lambda r: r["rows"]), max(results, key=lambda r: r["rows"])
        rr = b["rows"] / a["rows"]
        growth = dict(
            rows=rr,
            wall_per_pass=b["wall_per_pass"] / a["wall_per_pass"],
            iter_per_pass=float(np.mean(b["pass_seconds"]) / np.mean(a["pass_seconds"])),
            peak_fit=b["peak_fit"] / a["peak_fit"],
            fit_extra=(b["fit_extra"] / a["fit_extra"]) if a.get("fit_extra") and b.get("fit_extra") else None,
            peak_process=b["peak_process"] / a["peak_process"],
        )
        print(
            f"growth n={b['rows']:,} / n={a['rows']:,} (rows x{rr:g}): wall/pass x{growth['wall_per_pass']:.2f}, "
            f"iter/pass x{growth['iter_per_pass']:.2f}, peak fit x{growth['peak_fit']:.2f}, "
            f"fit extra x{growth['fit_extra']:.2f}, peak proc x{growth['peak_process']:.2f}"
            if growth["fit_extra"] is not None
            else f"growth n={b['rows']:,} / n={a['rows']:,} (rows x{rr:g}): wall/pass x{growth['wall_per_pass']:.2f}, "
            f"peak fit x{growth['peak_fit']:.2f}"
        )
        print()
        targets(
            f"time per pass grows at most linearly (wall/pass ratio <= 1.2 x rows ratio {rr:g})",
            f"x{growth['wall_per_pass']:.2f}",
            growth["wall_per_pass"] <= 1.2 * rr,
        )
        if growth["fit_extra"] is not None:
            small_full = a["rows"] >= args.batch_size
            targets(
                "fit memory bounded by the batch size (fit extra ratio <= 2)"
                + ("" if small_full else f" -- smallest n < batch size {args.batch_size}, so INFO"),
                f"x{growth['fit_extra']:.2f} ({fmt_mib(a['fit_extra'])} -> {fmt_mib(b['fit_extra'])} MiB)",
                (growth["fit_extra"] <= 2.0) if small_full else "info",
            )
    else:
        targets("growth checks", "need two --rows sizes", None)
    for r in results:
        targets(
            f"n={r['rows']:,}: recovery (1-|cos| < 0.01) / held-out explained signal",
            f"{100 * r['recovery']:.1f}% / {r['heldout_explained']:.4f} after {r['passes']} passes",
            "info",
        )

    return _common.finish(
        "fit",
        args,
        dict(
            config=dict(
                rows=sizes,
                passes=passes,
                batch_size=args.batch_size,
                d=args.d,
                atoms=args.atoms,
                nnz=args.nnz,
                snr_db=args.snr,
                test_rows=args.test_rows,
                threads=args.threads,
                device=device.type,
                device_name=dev_name,
                seed=args.seed,
                cpu_count=os.cpu_count(),
            ),
            results=results,
            growth=growth,
            failed=failed,
        ),
        targets,
    )


if __name__ == "__main__":
    _common.run(main, ARGS)
