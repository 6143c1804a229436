"""The comparison harness: every method on one split, every metric from one implementation.

``run_comparison(X, config, labels)`` splits the rows once (train / validation / test, by
``seed``), trains each method at each k with dictionary size K, times it and samples its
peak memory, and evaluates it on the test rows with :func:`model_metrics` (the function
``dbksvd evaluate`` prints). SAEs are also evaluated with an exact OMP coder on their own
decoder (rows ``"<sae>+omp"``), which separates the encoder's share of a gap from the
dictionary's. A method that fails (a NaN loss, a missing package) is a row with its reason;
the others still run. ``write_report`` turns the rows into ``results.{json,csv,md}``, PNG
plots and ``report.html``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import metrics
from .._progress import progress
from .._resources import PeakRSS
from ..errors import DbksvdError, InputError, MissingDependencyError, ParameterError
from ..io import atomic_path
from ..preprocessing import DEFAULT as DEFAULT_PREPROCESSING
from ..update import atom_usage

SAE_METHODS = ("topk", "batchtopk", "relu", "featurechoice", "mutualchoice")
#: ``dbksvd``: DB-KSVD with OMP (the best reconstructions); ``dbksvd-threshold``: with the
#: thresholding pursuit (detector supports: the more describable atoms, BENCHMARKS.md)
METHODS = ("dbksvd", "dbksvd-threshold", *SAE_METHODS, "sklearn", "random")
DEFAULT_METHODS = ("dbksvd", "dbksvd-threshold", "topk", "batchtopk", "relu", "featurechoice", "mutualchoice", "random")
#: Test and validation sets hold at most this many rows each.
MAX_EVAL_ROWS = 20000


@dataclass
class CompareConfig:
    """What to compare. ``nnz``: the k values; ``methods``: names from :data:`METHODS`."""

    atoms: int
    nnz: tuple[int, ...]
    methods: tuple[str, ...] = DEFAULT_METHODS
    seed: int = 0
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    preprocessing: str = DEFAULT_PREPROCESSING
    dbksvd_iters: int = 30
    dbksvd_batch_size: int = 65536
    sae_epochs: int = 50
    sae_batch_size: int = 4096
    pursuit: bool = True
    device: str | None = None

    def validate(self, n: int, d: int) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ParameterError(
                f"unknown method {', '.join(map(repr, unknown)) or '(none given)'}; choose from {', '.join(METHODS)}"
            )
        if not isinstance(self.atoms, int) or self.atoms < 1:
            raise ParameterError(f"--atoms must be a positive integer, got {self.atoms!r}")
        if not self.nnz:
            raise ParameterError("give at least one k (--nnz)")
        for k in self.nnz:
            if not isinstance(k, int) or k < 1:
                raise ParameterError(f"k must be a positive integer, got {k!r}")
            if k >= self.atoms or k > d:
                raise ParameterError(f"k={k} must be smaller than K={self.atoms} and at most d={d}")
        for name in ("test_fraction", "val_fraction"):
            v = getattr(self, name)
            if not 0 < v < 1:
                raise ParameterError(f"{name} must be in (0, 1), got {v}")


def split_rows(n: int, test_fraction: float, val_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Sorted row indices of one train / val / test split (test and val capped at 20,000)."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = min(MAX_EVAL_ROWS, int(round(test_fraction * n)))
    n_val = min(MAX_EVAL_ROWS, int(round(val_fraction * n)))
    split = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
    for name, rows in split.items():
        if rows.size == 0:
            raise InputError(f"the {name} split is empty ({n} rows; test_fraction/val_fraction leave none)")
    return {k: np.sort(v) for k, v in split.items()}


def model_metrics(model: Any, X: Any, codes: Any = None) -> dict[str, Any]:
    """Every reconstruction metric of ``model`` on ``X`` (array or store space), computed on
    the input vectors; ``codes`` default to ``model.transform(X)``."""
    codes = model.transform(X) if codes is None else codes
    X_hat = model.inverse_transform(codes)
    rows = X.to_numpy() if hasattr(X, "to_numpy") else np.asarray(X)
    out: dict[str, Any] = {
        "rows": int(rows.shape[0]),
        "features": int(rows.shape[1]),
        "atoms": int(model.components_.shape[0]),
    }
    out.update(metrics.reconstruction_metrics(rows, X_hat, codes, model.components_))
    return out


def make_model(method: str, K: int, k: int, cfg: CompareConfig, n_train: int) -> Any:
    """The unfitted model of ``method`` (one of :data:`METHODS`) with K atoms and k non-zeros, as
    the comparison trains it (``n_train`` sets the SAE batch size)."""
    from ..baselines.classical import MiniBatchDictionary, RandomDictionary
    from ..baselines.sae import SAE
    from ..ksvd import DBKSVD

    common = {"preprocessing": cfg.preprocessing, "random_state": cfg.seed, "device": cfg.device}
    if method.startswith("dbksvd"):
        return DBKSVD(
            K, k, coder=_coder_name(method), max_iter=cfg.dbksvd_iters, batch_size=cfg.dbksvd_batch_size, **common
        )
    if method == "random":
        return RandomDictionary(K, k, **common)
    if method == "sklearn":
        return MiniBatchDictionary(K, k, max_iter=max(1, cfg.dbksvd_iters // 3), **common)
    batch = max(16, min(cfg.sae_batch_size, n_train // 8))
    return SAE(method, K, k, batch_size=batch, max_epochs=cfg.sae_epochs, **common)


def _coder_name(method: str) -> str:
    """How a method's own codes are computed, for the report's ``coder`` column."""
    if method in SAE_METHODS:
        return "own"
    return "threshold" if method == "dbksvd-threshold" else "omp"


def run_comparison(
    X: np.ndarray,
    cfg: CompareConfig,
    labels: np.ndarray | None = None,
    show_progress: bool = True,
    on_model: Callable[[str, Any], None] | None = None,
    split: dict[str, np.ndarray] | None = None,
    explainer: Callable[[Any], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """All rows of the comparison. ``X`` (n, d); ``labels`` (n,) enable probe retention;
    ``on_model(name, model)`` is called with every trained model (e.g. to save it);
    ``split``: the train / val / test row ids (default :func:`split_rows` with the config's
    fractions and seed); ``explainer(model)`` adds columns to each method's own-coder row
    (e.g. :func:`dbksvd.analysis.explain.explanation_scores` on a captioned store)."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0:
        raise InputError(f"X must be a non-empty (n, d) array, got shape {X.shape}")
    n, d = X.shape
    cfg.validate(n, d)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise InputError(f"labels have shape {labels.shape} but X has {n} rows")
    if split is None:
        split = split_rows(n, cfg.test_fraction, cfg.val_fraction, cfg.seed)
    train, val, test = (X[split[s]].astype(np.float32) for s in ("train", "val", "test"))
    rows: list[dict[str, Any]] = []
    usage: dict[str, list[int]] = {}
    jobs = [(m, k) for k in cfg.nnz for m in cfg.methods]
    bar = progress(len(jobs), "compare", enabled=show_progress, unit="model")
    probe = None
    if labels is not None:
        probe = metrics.linear_probe(train, labels[split["train"]])
        y_test = labels[split["test"]]
        probe_acc = float((probe(test) == y_test).mean())
    try:
        for method, k in jobs:
            bar.set_postfix(method=method, k=k)
            base = {"method": method, "k": k, "coder": _coder_name(method)}
            try:
                model = make_model(method, cfg.atoms, k, cfg, train.shape[0])
                with PeakRSS() as mem:
                    if method in SAE_METHODS:
                        model.fit(train, X_val=val)
                    else:
                        model.fit(train)
                fit = {
                    "train_seconds": mem.seconds,
                    "train_peak_rss_mb": mem.peak / 2**20,
                    "train_extra_rss_mb": mem.extra / 2**20,
                }
                variants = [(_coder_name(method), None)]
                if method in SAE_METHODS and cfg.pursuit:
                    variants.append(("omp", "omp"))
                for coder_name, coder in variants:
                    codes = model.transform(test, coder=coder) if coder else model.transform(test)
                    row = {
                        **base,
                        "method": method if coder is None else f"{method}+omp",
                        "coder": coder_name,
                        "status": "ok",
                        **fit,
                        **model_metrics(model, test, codes),
                    }
                    if explainer is not None and coder is None:
                        row.update(explainer(model))
                    if probe is not None:
                        hat = model.inverse_transform(codes)
                        acc_hat = float((probe(hat) == y_test).mean())
                        row.update(
                            probe_accuracy=probe_acc,
                            probe_accuracy_reconstructed=acc_hat,
                            probe_retention=acc_hat / probe_acc if probe_acc > 0 else math.nan,
                        )
                    rows.append(row)
                    usage[f"{row['method']}-k{k}"] = atom_usage(codes).tolist()
                if on_model is not None:
                    on_model(f"{method}-k{k}", model)
            except (FloatingPointError, RuntimeError, MissingDependencyError, DbksvdError) as exc:
                if isinstance(exc, (ParameterError, InputError)):
                    raise  # the user's input is wrong for every method: stop, one clear error
                rows.append({**base, "status": f"failed: {' '.join(str(exc).split())[:200]}"})
            bar.update(1)
    finally:
        bar.close()
    return {
        "config": asdict(cfg),
        "rows": n,
        "features": d,
        "split": {s: int(v.size) for s, v in split.items()},
        "split_rows": split,
        "results": rows,
        "usage": usage,
    }


# -- the report ------------------------------------------------------------------------------

TABLE_COLUMNS = (
    "method",
    "k",
    "status",
    "explained_signal",
    "fvu",
    "explained_variance",
    "cosine",
    "l0",
    "dead_atoms",
    "rare_atoms",
    "max_coherence",
    "mean_max_coherence",
    "probe_retention",
    "faithfulness",
    "specificity",
    "diversity",
    "described",
    "train_seconds",
    "train_peak_rss_mb",
)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"
    return "" if v is None else str(v)


def markdown_table(results: list[dict[str, Any]]) -> str:
    cols = [c for c in TABLE_COLUMNS if any(c in r for r in results)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in results]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: str | Path, models: dict[str, Any] | None = None) -> Path:
    """``out/``: results.json, results.csv, results.md, pareto.png, usage.png, report.html,
    split.npz (row indices) and models/ (every trained model's folder); written atomically."""
    out = Path(out)
    results = report["results"]
    with atomic_path(out, directory=True) as tmp:
        data = {k: v for k, v in report.items() if k not in ("split_rows", "usage")}
        (tmp / "usage.json").write_text(json.dumps(report.get("usage", {})) + "\n")
        (tmp / "results.json").write_text(json.dumps(data, indent=2, default=float) + "\n")
        np.savez(tmp / "split.npz", **report["split_rows"])
        cols = sorted({c for r in results for c in r}, key=lambda c: (TABLE_COLUMNS + (c,)).index(c))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=cols)
        writer.writeheader()
        writer.writerows(results)
        (tmp / "results.csv").write_text(buf.getvalue())
        (tmp / "results.md").write_text(markdown_table(results))
        plots = _plots(results, report.get("usage", {}), tmp)
        (tmp / "report.html").write_text(_html(report, plots))
        for name, model in (models or {}).items():
            model.save(tmp / "models" / name)
    return out


def _plots(results: list[dict[str, Any]], usage: dict[str, list[int]], folder: Path) -> list[str]:
    """pareto.png (explained variance against L0, one curve per method) and usage.png."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    ok = [r for r in results if r.get("status") == "ok"]
    if not ok:
        return []
    methods = list(dict.fromkeys(r["method"] for r in ok))
    colors = dict(zip(methods, plt.cm.tab20(np.linspace(0, 1, max(len(methods), 2)))))
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for m in methods:
        pts = sorted((r["l0"], r["explained_variance"]) for r in ok if r["method"] == m)
        ax.plot(
            [p[0] for p in pts],
            [p[1] for p in pts],
            marker="o",
            label=m,
            color=colors[m],
            linestyle="--" if m.endswith("+omp") else "-",
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("L0 (mean non-zeros per row, test)")
    ax.set_ylabel("explained variance (test)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "pareto.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    k_max = max(r["k"] for r in ok)
    for r in ok:
        counts = usage.get(f"{r['method']}-k{r['k']}")
        if r["k"] == k_max and counts is not None:
            ax.hist(
                np.log10(np.asarray(counts) + 1), bins=30, histtype="step", label=r["method"], color=colors[r["method"]]
            )
    ax.set_xlabel(f"log10(1 + rows using the atom), test, k={k_max}")
    ax.set_ylabel("atoms")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "usage.png", dpi=120)
    plt.close(fig)
    return ["pareto.png", "usage.png"]


def _html(report: dict[str, Any], plots: list[str]) -> str:
    import html

    cfg = report["config"]
    results = report["results"]
    cols = [c for c in TABLE_COLUMNS if any(c in r for r in results)]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in cols) + "</tr>" for r in results
    )
    imgs = "".join(f'<figure><img src="{p}" alt="{p}"><figcaption>{p}</figcaption></figure>' for p in plots)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dbksvd comparison</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
figure{{display:inline-block;margin:1em}}</style></head>
<body><h1>dbksvd comparison</h1>
<p>{report["rows"]} rows x {report["features"]} features; split train {report["split"]["train"]},
validation {report["split"]["val"]}, test {report["split"]["test"]} (seed {cfg["seed"]});
K = {cfg["atoms"]}; preprocessing {html.escape(cfg["preprocessing"])}. Metrics on the test rows.</p>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
{imgs}
</body></html>
"""
