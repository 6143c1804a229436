"""Atom recovery on the synthetic test of Aharon, Elad & Bruckstein (2006): dbksvd against SPAMS, dictlearn and scikit-learn.

Claim
-----
On the classic K-SVD synthetic experiment, dbksvd recovers (nearly) every planted atom, more
often than the usual peers, in about a second per trial on a 2-core CPU.

The experiment (K-SVD paper, Sect. V-A)
---------------------------------------
* a true dictionary of K=50 random unit atoms in d=20 dimensions;
* 1500 signals, each a combination of 3 atoms at random positions with i.i.d. gaussian
  coefficients (``dbksvd.data.make_sparse_problem``);
* white gaussian noise at SNR ∞ (no noise), 30, 20 and 10 dB
  (‖signal‖²_F / ‖noise‖²_F = 10^(SNR/10));
* 80 iterations of dictionary learning with 3 non-zeros per signal;
* a true atom g is "recovered" when some learned atom d has 1 − |⟨g, d⟩| < 0.01
  (``dbksvd.metrics.atom_recovery``); the recovery rate of a trial is the share of the 50
  true atoms recovered;
* ``--trials`` trials (default 50). Trial t draws its problem with seed ``--seed + t``; the
  dictionary, supports and coefficients depend only on that seed, so at every SNR a trial uses
  the same clean signals and only the noise level changes. Every method runs on exactly the
  same data in the same trial.

Methods (all on the CPU with ``--threads`` threads)
---------------------------------------------------
* ``dbksvd``: ``DBKSVD(50, 3, preprocessing="none", max_iter=80, batch_size=1500, random_state=t, device="cpu")``,
  every other parameter at its default (Batch-OMP coder, power update, data init,
  replacement of unused / duplicated atoms). batch_size=1500 means one K-SVD iteration per
  pass, so 80 passes = 80 K-SVD iterations, as in the paper.
* ``spams``: ``spams.trainDL`` (PyPI ``spams-bin``), the online dictionary learning of Mairal et
  al., with ``mode=3``: min ½‖x − Dα‖² s.t. ‖α‖₀ ≤ lambda1, with lambda1=3 (OMP coding, the
  L0-constrained, K-SVD-like formulation), K=50. SPAMS' ``iter`` counts mini-batches, not
  passes (one iteration = one mini-batch of ``batchsize`` signals; ``batch=False``, the
  default online algorithm). To give it the same amount of data as 80 K-SVD passes over 1500
  signals (120,000 signal codings) we use ``batchsize=512`` (the documented default) and
  ``iter = ceil(80 * 1500 / 512) = 235``. (Checked on a few trials: ``batchsize=1500,
  iter=80`` and the batch variant ``batch=True, iter=80`` give similar rates, ±5 points.)
  SPAMS is column-major: signals are the columns of a Fortran-ordered float64 array.
* ``dictlearn``: ``dictlearn.DictionaryLearning(n_components=50, fit_algorithm="ksvd",
  n_nonzero_coefs=3, max_iter=80, random_state=t)`` (exact K-SVD update, Batch-OMP coder,
  its defaults otherwise: random gaussian initial atoms, unused atoms replaced at random).
* ``sklearn``: ``sklearn.decomposition.MiniBatchDictionaryLearning(n_components=50,
  alpha=--sklearn-alpha (0.3), fit_algorithm=--sklearn-fit-algorithm ("cd"), batch_size=256,
  max_iter=80, tol=0, max_no_improvement=None, transform_algorithm="omp",
  transform_n_nonzero_coefs=3, random_state=t)``. scikit-learn only learns with an L1
  (lasso) penalty; ``transform_algorithm`` only affects ``transform``, not the fit. Its
  ``max_iter`` counts epochs, so max_iter=80 is 80 passes; early stopping is switched off
  (with the defaults, ``max_no_improvement=10, tol=1e-3``, it stops after ~3 epochs).
  alpha matters a lot: on a few trials at 20 dB, alpha=1 (its default) recovered 30–45 %,
  alpha=0.3 80–90 %, alpha=0.1 with early stopping on 4–6 % (probably the issue's "< 5 %").
  It is slow (~7–10 s per trial here), hence ``--peer-trials``.

Every method is warmed up once, untimed, on a small problem before the trials (numba JIT and
first-call costs excluded). "s/trial" is the wall time of one fit (mean over trials and SNRs;
the median is printed too). Fit times are sensitive to other processes on the machine: on a
loaded 2-core machine, dbksvd with 2 threads was seen to slow down 10-50x on some trials
(torch and numba each bring their own OpenMP runtime, so 2 + 2 spinning threads share 2
cores), while ``--threads 1`` stayed at ~0.5 s; the load average is printed before and after.

How to run
----------
::

    python benchmarks/recovery.py                           # 50 trials, all methods
    python benchmarks/recovery.py --trials 10 --methods dbksvd,spams
    python benchmarks/recovery.py --peer-trials sklearn=10  # sklearn on the first 10 trials only
    python benchmarks/recovery.py --peer-trials 10          # every peer on the first 10 trials
    python benchmarks/recovery.py --snr inf,20 --threads 2 --json out.json

Peers are optional: ``pip install spams-bin dictlearn scikit-learn``; a missing peer is
reported as skipped. Results: ``benchmarks/results/recovery-<UTC time>.json`` (``--results-dir``;
``--json OUT`` also writes a copy); the exit status is 1 when a graded target fails (the last
line says so), 2 for an unknown ``--methods`` name, else 0.

Targets (from the issue; dbksvd only)
-------------------------------------
* mean recovery ≥ 98 % at every SNR ≥ 20 dB (∞, 30, 20);
* mean recovery ≥ 95 % at 10 dB;
* ≤ 1 s per trial (mean fit time).

Measured by the issue author on this machine: SPAMS 90–93 %, dictlearn 88–92 %, scikit-learn
under 5 %.
"""

from __future__ import annotations

import argparse
import math
import os

import _common  # benchmarks/_common.py: this script's folder is sys.path[0]

METHODS = ("dbksvd", "spams", "dictlearn", "sklearn")
PEERS = METHODS[1:]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--trials", type=int, default=50, help="trials per SNR (default 50)")
    p.add_argument(
        "--snr", default="inf,30,20,10", help="comma-separated SNRs in dB, 'inf' = no noise (default inf,30,20,10)"
    )
    p.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)} (default all)"
    )
    p.add_argument(
        "--peer-trials",
        default=None,
        metavar="N | NAME=N[,NAME=N]",
        help="run peers on the first N trials only: 'N' for every peer, or e.g. 'sklearn=10,dictlearn=20'",
    )
    p.add_argument("--threads", type=int, default=2, help="CPU threads for every method (default 2)")
    p.add_argument("--iters", type=int, default=80, help="iterations / passes over the data (default 80)")
    p.add_argument("--n", type=int, default=1500, help="signals per trial (default 1500)")
    p.add_argument("--d", type=int, default=20, help="signal dimension (default 20)")
    p.add_argument("--atoms", type=int, default=50, help="dictionary size K (default 50)")
    p.add_argument("--nnz", type=int, default=3, help="non-zeros per signal (default 3)")
    p.add_argument("--threshold", type=float, default=0.01, help="recovered when 1 - |<g, d>| < this (default 0.01)")
    p.add_argument("--spams-batchsize", type=int, default=512, help="SPAMS mini-batch size (default 512)")
    p.add_argument("--sklearn-alpha", type=float, default=0.3, help="scikit-learn L1 penalty alpha (default 0.3)")
    p.add_argument(
        "--sklearn-fit-algorithm", default="cd", choices=("cd", "lars"), help="scikit-learn fit_algorithm (default cd)"
    )
    p.add_argument("--seed", type=int, default=0, help="trial t uses problem seed SEED + t (default 0)")
    _common.add_output_options(p)
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None

# Thread counts must be fixed before numpy / torch / numba / the peers' BLAS are loaded.
if ARGS is not None:
    _common.set_threads_env(ARGS.threads)

import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dbksvd import DBKSVD, metrics  # noqa: E402
from dbksvd.data import make_sparse_problem  # noqa: E402

# ---------------------------------------------------------------------------------------------
# helpers


def parse_snrs(text: str) -> list[float | None]:
    out = []
    for tok in text.split(","):
        tok = tok.strip().lower()
        if not tok:
            continue
        out.append(None if tok in ("inf", "infinity", "none") else float(tok))
    return out


def snr_label(snr: float | None) -> str:
    return "inf" if snr is None else f"{snr:g} dB"


def parse_peer_trials(text: str | None, methods: list[str], trials: int) -> dict[str, int]:
    n = {m: trials for m in methods}
    if not text:
        return n
    for tok in text.split(","):
        tok = tok.strip()
        if not tok:
            continue
        if "=" in tok:
            name, val = tok.split("=", 1)
            name = name.strip()
            if name not in PEERS:
                raise SystemExit(f"--peer-trials: unknown peer {name!r} (peers: {', '.join(PEERS)})")
            if name in n:
                n[name] = min(trials, int(val))
        else:
            for m in methods:
                if m != "dbksvd":
                    n[m] = min(trials, int(tok))
    return n


class Method:
    """A named fit function ``fit(X (n, d) float32, seed) -> learned atoms (K', d)``."""

    def __init__(self, name, fit, describe, version):
        self.name, self.fit, self.describe, self.version = name, fit, describe, version


def make_methods(args, wanted: list[str]) -> tuple[list[Method], dict[str, str]]:
    K, k, iters, thr = args.atoms, args.nnz, args.iters, args.threads
    methods, skipped = [], {}

    if "dbksvd" in wanted:
        import dbksvd

        def fit_dbksvd(X, seed, iters=iters):
            m = DBKSVD(
                K, k, preprocessing="none", max_iter=iters, batch_size=X.shape[0], random_state=seed, device="cpu"
            ).fit(X)
            return m.components_

        methods.append(
            Method(
                "dbksvd",
                fit_dbksvd,
                f"DBKSVD({K}, {k}, preprocessing='none', max_iter={iters}, batch_size=n, device='cpu'), defaults otherwise",
                getattr(dbksvd, "__version__", None),
            )
        )

    if "spams" in wanted:
        try:
            import spams

            bs = args.spams_batchsize

            def fit_spams(X, seed, iters=iters):
                Xf = np.asfortranarray(X.T, dtype=np.float64)  # (d, n): signals are columns
                # iter counts mini-batches: as many signal codings as `iters` passes over X
                n_iter = max(1, math.ceil(iters * X.shape[0] / bs))
                D = spams.trainDL(Xf, K=K, lambda1=k, mode=3, iter=n_iter, batchsize=bs, numThreads=thr, verbose=False)
                return np.asarray(D).T

            from importlib.metadata import version as _v

            methods.append(
                Method(
                    "spams",
                    fit_spams,
                    f"spams.trainDL(mode=3, lambda1={k}, K={K}, batchsize={bs}, "
                    f"iter=ceil({iters}*n/{bs})={math.ceil(iters * args.n / bs)}) online",
                    _v("spams-bin") if _has_dist("spams-bin") else None,
                )
            )
        except ImportError as e:
            skipped["spams"] = f"not installed ({e}); pip install spams-bin"

    if "dictlearn" in wanted:
        try:
            import dictlearn
            from dictlearn import DictionaryLearning

            def fit_dictlearn(X, seed, iters=iters):
                m = DictionaryLearning(
                    n_components=K, fit_algorithm="ksvd", n_nonzero_coefs=k, max_iter=iters, random_state=seed
                )
                m.fit(X.astype(np.float64))
                return m.components_

            methods.append(
                Method(
                    "dictlearn",
                    fit_dictlearn,
                    f"dictlearn.DictionaryLearning(fit_algorithm='ksvd', n_nonzero_coefs={k}, max_iter={iters})",
                    dictlearn.__version__,
                )
            )
        except ImportError as e:
            skipped["dictlearn"] = f"not installed ({e}); pip install dictlearn"

    if "sklearn" in wanted:
        try:
            import sklearn
            from sklearn.decomposition import MiniBatchDictionaryLearning

            alpha, alg = args.sklearn_alpha, args.sklearn_fit_algorithm

            def fit_sklearn(X, seed, iters=iters):
                m = MiniBatchDictionaryLearning(
                    n_components=K,
                    alpha=alpha,
                    fit_algorithm=alg,
                    batch_size=256,
                    max_iter=iters,
                    tol=0.0,
                    max_no_improvement=None,
                    transform_algorithm="omp",
                    transform_n_nonzero_coefs=k,
                    random_state=seed,
                )
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    m.fit(X.astype(np.float64))
                return m.components_

            methods.append(
                Method(
                    "sklearn",
                    fit_sklearn,
                    f"MiniBatchDictionaryLearning(alpha={alpha:g}, fit_algorithm='{alg}', batch_size=256, "
                    f"max_iter={iters} epochs, no early stop)",
                    sklearn.__version__,
                )
            )
        except ImportError as e:
            skipped["sklearn"] = f"not installed ({e}); pip install scikit-learn"

    return methods, skipped


def _has_dist(name: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(name)
        return True
    except PackageNotFoundError:
        return False


# ---------------------------------------------------------------------------------------------
# main


def main(args) -> int:
    torch.set_num_threads(args.threads)
    pool_ctx = _common.threadpool_limits(args.threads)

    wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in wanted if m not in METHODS]
    if bad:
        print(f"unknown method(s) {bad}; choose from {', '.join(METHODS)}")
        return 2
    snrs = parse_snrs(args.snr)
    n, d, K, k = args.n, args.d, args.atoms, args.nnz

    print(
        f"atom recovery (Aharon, Elad & Bruckstein 2006): d={d} K={K} n={n} k={k}, {args.iters} iterations, "
        f"threshold 1-|<g,d>| < {args.threshold:g}"
    )
    print(
        f"{args.trials} trials per SNR (problem seed {args.seed}+t), SNR {', '.join(snr_label(s) for s in snrs)}; "
        f"CPU, {args.threads} threads ({os.cpu_count()} cores visible), load average {os.getloadavg()[0]:.2f}"
    )
    print(_common.versions_line())

    with pool_ctx:
        methods, skipped = make_methods(args, wanted)
        n_trials = parse_peer_trials(args.peer_trials, [m.name for m in methods], args.trials)
        for m in methods:
            print(
                f"  {m.name:<9} {m.describe}"
                + (f"  [v{m.version}]" if m.version else "")
                + (f"  -- first {n_trials[m.name]} trials only" if n_trials[m.name] < args.trials else "")
            )
        print()

        # -- warm-up (untimed): JIT compilation, first-call costs -----------------------------
        warm = make_sparse_problem(max(4 * K, 200), d, K, k, snr_db=30.0, random_state=12345)
        for m in list(methods):
            try:
                m.fit(warm.X, 0, iters=2)
            except Exception as e:  # a broken peer must not stop the benchmark
                skipped[m.name] = f"failed in warm-up: {type(e).__name__}: {e}"
                methods.remove(m)

        # rates[name][snr_label] = list of per-trial recovery; secs likewise
        rates = {m.name: {snr_label(s): [] for s in snrs} for m in methods}
        secs = {m.name: {snr_label(s): [] for s in snrs} for m in methods}
        errors: dict[str, str] = {}
        snr_seconds: dict[str, float] = {}
        t_all = time.perf_counter()
        for s in snrs:
            t_snr = time.perf_counter()
            lab = snr_label(s)
            for t in range(args.trials):
                P = make_sparse_problem(n, d, K, k, snr_db=s, random_state=args.seed + t)
                for m in methods:
                    if t >= n_trials[m.name] or m.name in errors:
                        continue
                    try:
                        t0 = time.perf_counter()
                        D = m.fit(P.X, t)
                        secs[m.name][lab].append(time.perf_counter() - t0)
                        rates[m.name][lab].append(metrics.atom_recovery(P.dictionary, D, threshold=args.threshold))
                    except Exception as e:
                        errors[m.name] = f"failed at SNR {lab}, trial {t}: {type(e).__name__}: {e}"
            done = ", ".join(
                f"{m.name} {100 * np.mean(rates[m.name][lab]):.1f}%" for m in methods if rates[m.name][lab]
            )
            snr_seconds[lab] = time.perf_counter() - t_snr
            print(f"  SNR {lab:>6}: {snr_seconds[lab]:6.1f} s  ({done})", flush=True)
        total = time.perf_counter() - t_all
        print(f"  all trials: {total:.1f} s; load average now {os.getloadavg()[0]:.2f}")
        print()

    # -- table ----------------------------------------------------------------------------------
    labs = [snr_label(s) for s in snrs]
    header = ["method", "trials"] + [f"SNR {lab}" for lab in labs] + ["s/trial", "median s"]
    rows = []
    summary: dict[str, dict] = {}
    for m in methods:
        cells, summ = [], {}
        for lab in labs:
            r = rates[m.name][lab]
            if r:
                cells.append(f"{100 * np.mean(r):5.1f} (min {100 * np.min(r):3.0f})")
                summ[lab] = dict(
                    mean=float(np.mean(r)),
                    min=float(np.min(r)),
                    trials=len(r),
                    seconds_mean=float(np.mean(secs[m.name][lab])),
                    rates=[float(x) for x in r],
                    seconds=[float(x) for x in secs[m.name][lab]],
                )
            else:
                cells.append("-")
        all_secs = [x for lab in labs for x in secs[m.name][lab]]
        ntr = max((len(rates[m.name][lab]) for lab in labs), default=0)
        rows.append(
            [m.name, str(ntr)]
            + cells
            + [f"{np.mean(all_secs):.3f}" if all_secs else "-", f"{np.median(all_secs):.3f}" if all_secs else "-"]
        )
        summary[m.name] = dict(
            per_snr=summ,
            seconds_per_trial=float(np.mean(all_secs)) if all_secs else None,
            seconds_median=float(np.median(all_secs)) if all_secs else None,
            trials=ntr,
            config=m.describe,
            version=m.version,
            error=errors.get(m.name),
        )
    for name in skipped:
        rows.append([name, "-"] + ["skipped"] * len(labs) + ["-", "-"])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    print("recovery rate, % of the true atoms: mean over trials (min over trials)")
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))
    print("s/trial = mean wall time of one fit over all trials and SNRs; median s = its median (the mean is sensitive")
    print("to CPU contention from other processes, which can slow a 2-thread fit by 10x or more)")
    print()
    for name, why in skipped.items():
        print(f"{name}: skipped, {why}")
    for name, why in errors.items():
        print(f"{name}: {why} (later trials not run)")
    for m in methods:
        if n_trials[m.name] < args.trials:
            print(f"{m.name}: run on the first {n_trials[m.name]} of {args.trials} trials only (--peer-trials)")
    print()

    # -- targets --------------------------------------------------------------------------------
    targets = _common.Targets()
    db = summary.get("dbksvd")
    if db is None:
        targets("dbksvd targets", "dbksvd not run", None)
    else:
        hi = [lab for s, lab in zip(snrs, labs) if (s is None or s >= 20) and lab in db["per_snr"]]
        if hi:
            worst = min(hi, key=lambda lab: db["per_snr"][lab]["mean"])
            v = db["per_snr"][worst]["mean"]
            targets(
                "dbksvd mean recovery >= 98% at every SNR >= 20 dB",
                f"lowest {100 * v:.1f}% (at {worst}); "
                + ", ".join(f"{lab} {100 * db['per_snr'][lab]['mean']:.1f}%" for lab in hi),
                v >= 0.98,
            )
        else:
            targets("dbksvd mean recovery >= 98% at every SNR >= 20 dB", "no such SNR run", None)
        lab10 = snr_label(10.0)
        if lab10 in db["per_snr"]:
            v = db["per_snr"][lab10]["mean"]
            targets("dbksvd mean recovery >= 95% at 10 dB", f"{100 * v:.1f}%", v >= 0.95)
        else:
            targets("dbksvd mean recovery >= 95% at 10 dB", "10 dB not run", None)
        sp = db["seconds_per_trial"]
        med = db["seconds_median"]
        targets(
            "dbksvd <= 1 s per trial (mean fit time)",
            f"{sp:.3f} s (median {med:.3f} s)" if sp is not None else "-",
            None if sp is None else sp <= 1.0,
        )

    return _common.finish(
        "recovery",
        args,
        dict(
            config=dict(
                n=n,
                d=d,
                atoms=K,
                nnz=k,
                iters=args.iters,
                trials=args.trials,
                snr=labs,
                threshold=args.threshold,
                threads=args.threads,
                seed=args.seed,
                peer_trials=n_trials,
                sklearn_alpha=args.sklearn_alpha,
                sklearn_fit_algorithm=args.sklearn_fit_algorithm,
                spams_batchsize=args.spams_batchsize,
                cpu_count=os.cpu_count(),
            ),
            total_seconds=total,
            snr_seconds=snr_seconds,
            results=summary,
            skipped=skipped,
            errors=errors,
        ),
        targets,
    )


if __name__ == "__main__":
    _common.run(main, ARGS)
