"""What the benchmark scripts share: thread setup, machine description, tables, targets, JSON.

The scripts are run as ``python benchmarks/NAME.py``, so this folder is ``sys.path[0]`` and they
``import _common``. It must be imported, and :func:`set_threads_env` called, before numpy,
torch, numba or a peer's BLAS is loaded, so nothing here imports them at module level.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import threading
from contextlib import nullcontext

THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def set_threads_env(threads: int) -> None:
    """Fix the thread count of every OpenMP / BLAS / numba runtime loaded after this call."""
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(threads)


def add_dataset_options(p, *, fashion_rows: int) -> None:
    """The options of the scripts that embed the built-in datasets and train SAEs and DB-KSVD
    on them (compare.py, explain.py): row counts, training budgets, store folder, threads, JSON."""
    p.add_argument(
        "--fashion-rows", type=int, default=fashion_rows, help=f"Fashion-MNIST images (default {fashion_rows:,})"
    )
    p.add_argument("--wordnet-rows", type=int, default=20000)
    p.add_argument("--epochs", type=int, default=50, help="SAE epochs at most (default 50)")
    p.add_argument("--iters", type=int, default=30, help="DB-KSVD passes (default 30)")
    p.add_argument("--stores", default="/tmp/dbksvd-bench-stores", help="where the embedded datasets are kept")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", metavar="OUT.json", default=None)


def threadpool_limits(threads: int):
    """A context that limits already-loaded BLAS / OpenMP pools (threadpoolctl), or does nothing."""
    try:
        from threadpoolctl import threadpool_limits as limits

        return limits(limits=threads)
    except Exception:  # threadpoolctl comes with scikit-learn; the env vars are the fallback
        return nullcontext()


def cuda_missing(device) -> bool:
    """True (and says so) when CUDA was asked for but is not available: nothing to run."""
    import torch

    if device.type == "cuda" and not torch.cuda.is_available():
        print("--device cuda asked for but torch.cuda.is_available() is False; nothing to do.")
        return True
    return False


def device_name(device) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores visible)"


def versions() -> dict:
    import numpy as np
    import torch

    return dict(python=platform.python_version(), torch=torch.__version__, numpy=np.__version__)


def versions_line() -> str:
    v = versions()
    return f"torch {v['torch']}, numpy {v['numpy']}, python {v['python']}"


def print_table(header: list[str], rows: list[list[str]], left=(0,)) -> None:
    """Columns as wide as their widest cell, right-aligned except the ``left`` ones; a rule under the header."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


class Targets(list):
    """The checked targets: ``targets(label, value, ok)`` prints and records one line.

    ``ok``: None = SKIP, "info" = INFO, else PASS / FAIL by truth.
    """

    def __call__(self, label: str, value: str, ok) -> None:
        status = "SKIP" if ok is None else "INFO" if ok == "info" else ("PASS" if ok else "FAIL")
        self.append(dict(target=label, value=value, status=status))
        print(f"{status}  {label}: {value}")


def write_json(path: str | None, out: dict) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(out, f, indent=2)
        print(f"\nwrote {path}")


def run(main, args) -> None:
    """Run ``main(args)`` and exit 0 whatever the results (a benchmark, not a test)."""
    try:
        main(args)
    finally:
        sys.stdout.flush()
    sys.exit(0)


# -- memory ----------------------------------------------------------------------------------

MiB = 1024.0 * 1024.0


def status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes() -> int | None:
    v = status_kib("VmRSS")
    return None if v is None else v * 1024


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RSSSampler:
    """Highest VmRSS seen by a background thread sampling every ``interval`` seconds."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.peak = interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            r = rss_bytes()
            if r is not None and r > self.peak:
                self.peak = r
            self._stop.wait(self.interval)

    def __enter__(self):
        self.peak = rss_bytes() or 0
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        r = rss_bytes()
        if r is not None and r > self.peak:
            self.peak = r
