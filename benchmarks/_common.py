"""What the benchmark scripts share: thread setup, machine description, tables, targets, and
the results file every run writes.

The scripts are run as ``python benchmarks/NAME.py``, so this folder is ``sys.path[0]`` and they
``import _common``. It must be imported, and :func:`set_threads_env` called, before numpy,
torch, numba or a peer's BLAS is loaded, so nothing here imports them at module level.

Every run ends in :func:`finish`: it writes ``benchmarks/results/NAME-YYYYMMDDTHHMMSSZ.json``
(the commit, the command line, the date, the machine and every figure the script printed),
prints the file's path and then, as the last line, the verdict over the graded targets; the
script exits with :func:`finish`'s status: 1 when a graded target failed, else 0.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

#: the repository root (this file is benchmarks/_common.py)
REPO = Path(__file__).resolve().parent.parent
#: where results files go unless --results-dir says otherwise
RESULTS_DIR = REPO / "benchmarks" / "results"
#: when the run started: this module is the first thing every script imports
STARTED = time.time()
_LOAD_AT_START = os.getloadavg() if hasattr(os, "getloadavg") else None

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
    add_output_options(p)


def add_output_options(p) -> None:
    """The options every script has for its results file."""
    p.add_argument(
        "--results-dir",
        default=str(RESULTS_DIR),
        help="folder for this run's results file NAME-<UTC time>.json (default benchmarks/results)",
    )
    p.add_argument("--json", metavar="OUT.json", default=None, help="also write a copy of the results file here")


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


# -- the results file ------------------------------------------------------------------------


def git_state(repo: Path = REPO) -> dict:
    """``{"commit": HEAD's hash, "dirty": whether tracked files differ from it}``; both None
    outside a git checkout. Untracked files (such as earlier results files) do not count."""

    def git(*cmd: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(repo), *cmd], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": commit.strip() if commit else None,
        "dirty": None if commit is None or status is None else bool(status.strip()),
    }


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """The machine and library versions of this run (nothing is imported to find them)."""
    mem = status_kib("MemTotal", "/proc/meminfo")
    info = {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": None if mem is None else round(mem / 2**20, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        **{lib: _dist_version(lib) for lib in ("numpy", "torch", "numba", "scipy")},
        "load_average_start": list(_LOAD_AT_START) if _LOAD_AT_START else None,
        "load_average_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cuda": None,
    }
    torch = sys.modules.get("torch")  # only when the script already uses it
    if torch is not None and torch.cuda.is_available():
        info["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def jsonable(obj):
    """``obj`` as strict JSON values: numpy scalars and arrays, paths, tuples and sets converted;
    NaN and infinities (undefined figures) as None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays and scalars, torch tensors
        return jsonable(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    return str(obj)


def verdict(targets: list[dict]) -> dict:
    """Counts of the targets by status, the failed ones, and the exit status (1 if any failed)."""
    counts = {s: sum(1 for t in targets if t["status"] == s) for s in ("PASS", "FAIL", "SKIP", "INFO")}
    failed = [t["target"] for t in targets if t["status"] == "FAIL"]
    return {"counts": counts, "failed": failed, "exit_status": 1 if failed else 0}


def verdict_line(v: dict) -> str:
    c = v["counts"]
    graded = c["PASS"] + c["FAIL"]
    rest = f"{c['SKIP']} skipped, {c['INFO']} info"
    if v["failed"]:
        return f"FAIL: {c['FAIL']} of {graded} graded targets failed ({rest}): {'; '.join(v['failed'])}; exit status 1"
    if graded:
        return f"PASS: all {graded} graded targets passed ({rest}); exit status 0"
    return f"no graded target ran ({rest}); exit status 0"


def results_path(script: str, results_dir: str | os.PathLike, started: float = STARTED) -> Path:
    """``results_dir/SCRIPT-YYYYMMDDTHHMMSSZ.json`` for a run started at ``started``; a second
    run in the same second gets ``-2``, ``-3``, ..."""
    stamp = datetime.fromtimestamp(started, UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = Path(results_dir)
    path, n = folder / f"{script}-{stamp}.json", 1
    while path.exists():
        n += 1
        path = folder / f"{script}-{stamp}-{n}.json"
    return path


def finish(script: str, args, figures: dict, targets: list[dict] | None = None) -> int:
    """Write this run's results file (and the ``--json`` copy), print where, and print the
    verdict as the last line. Returns the exit status: 1 when a graded target failed, else 0.

    ``figures``: every number the script printed (its configuration included); ``targets``:
    the :class:`Targets` it graded."""
    targets = list(targets or [])
    v = verdict(targets)
    finished = time.time()
    record = {
        "script": script,
        "command": shlex.join(["python", *sys.argv]),
        "argv": sys.argv,
        "options": vars(args) if args is not None else None,
        **git_state(),
        "started": datetime.fromtimestamp(STARTED, UTC).isoformat(timespec="seconds"),
        "finished": datetime.fromtimestamp(finished, UTC).isoformat(timespec="seconds"),
        "seconds": round(finished - STARTED, 3),
        "machine": machine(),
        "figures": figures,
        "targets": targets,
        "verdict": v,
    }
    text = json.dumps(jsonable(record), indent=2, allow_nan=False) + "\n"
    folder = Path(getattr(args, "results_dir", None) or RESULTS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [results_path(script, folder)]
    if getattr(args, "json", None):
        paths.append(Path(args.json))
    print()
    for path in paths:
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)  # a reader never sees half a file
        print(f"wrote {path}")
    print(verdict_line(v))
    return v["exit_status"]


def run(main, args) -> None:
    """Run ``main(args)`` and exit with the status it returns (:func:`finish`'s: 1 when a graded
    target failed; 2 for options it refused)."""
    try:
        status = main(args)
    finally:
        sys.stdout.flush()
    sys.exit(status or 0)


# -- memory ----------------------------------------------------------------------------------

MiB = 1024.0 * 1024.0


def status_kib(field: str, path: str = "/proc/self/status") -> int | None:
    """A ``FIELD: N kB`` line of a /proc file (this process's status by default), in KiB."""
    try:
        with open(path) as f:
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
