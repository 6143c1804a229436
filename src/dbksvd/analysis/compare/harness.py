"""Training and evaluating every method of a comparison on one split (:func:`run_comparison`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from ... import metrics
from ..._progress import progress
from ..._resources import PeakRSS
from ...config import SAE_METHODS, CompareConfig, matryoshka_sizes
from ...data.splits import split_rows
from ...errors import DbksvdError, InputError, MissingDependencyError, ParameterError
from ...update import atom_usage
from .evaluation import model_metrics


def make_model(method: str, K: int, k: int, cfg: CompareConfig, n_train: int) -> Any:
    """The unfitted model of ``method`` (one of :data:`dbksvd.config.METHODS`) with K atoms and k
    non-zeros, as the comparison trains it (``n_train`` sets the SAE batch size)."""
    from ...models import DBKSVD, SAE, MiniBatchDictionary, RandomDictionary

    common = {"preprocessing": cfg.preprocessing, "random_state": cfg.random_state, "device": cfg.device}
    if method.startswith("dbksvd"):
        # dbksvd-matryoshka: the nested groups of the matryoshka-batchtopk SAE (one helper for both)
        groups = list(matryoshka_sizes(K, k)) if method == "dbksvd-matryoshka" else None
        return DBKSVD(
            K,
            k,
            coder=coder_name(method),
            groups=groups,
            max_iter=cfg.dbksvd_max_iter,
            batch_size=cfg.dbksvd_batch_size,
            **common,
        )
    if method == "random":
        return RandomDictionary(K, k, **common)
    if method == "sklearn":
        return MiniBatchDictionary(K, k, max_iter=max(1, cfg.dbksvd_max_iter // 3), **common)
    batch = max(16, min(cfg.sae_batch_size, n_train // 8))
    return SAE(method, K, k, batch_size=batch, max_epochs=cfg.sae_max_epochs, **common)


def coder_name(method: str) -> str:
    """How a method's own codes are computed, for the report's ``coder`` column: omp,
    threshold, or own (an SAE's encoder)."""
    if method in SAE_METHODS:
        return "own"
    return "threshold" if method == "dbksvd-threshold" else "omp"


class _Probe:
    """A linear probe trained once on the training rows, scoring every reconstruction
    (:func:`dbksvd.metrics.probe_retention`)."""

    def __init__(self, train: np.ndarray, y_train: np.ndarray, test: np.ndarray, y_test: np.ndarray):
        self.predict = metrics.linear_probe(train, y_train)
        self.test, self.y_test = test, y_test

    def columns(self, reconstructed: np.ndarray) -> dict[str, float]:
        return metrics.probe_retention(self.predict, self.test, reconstructed, self.y_test)


def _check_inputs(X: Any, cfg: CompareConfig, labels: Any) -> tuple[np.ndarray, np.ndarray | None]:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0:
        raise InputError(f"X must be a non-empty (n, d) array, got shape {X.shape}")
    cfg.validate(*X.shape)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (X.shape[0],):
            raise InputError(f"labels have shape {labels.shape} but X has {X.shape[0]} rows")
    return X, labels


def _train(model: Any, method: str, train: np.ndarray, val: np.ndarray) -> dict[str, float]:
    """Fit ``model`` on ``train`` (an SAE early-stops on ``val``); its time and memory columns."""
    with PeakRSS() as mem:
        if method in SAE_METHODS:
            model.fit(train, X_val=val)
        else:
            model.fit(train)
    return {
        "train_seconds": mem.seconds,
        "train_peak_rss_mb": mem.peak / 2**20,
        "train_extra_rss_mb": mem.extra / 2**20,
    }


def _evaluate(
    model: Any,
    method: str,
    k: int,
    cfg: CompareConfig,
    test: np.ndarray,
    fit: dict[str, float],
    probe: _Probe | None,
    scorers: Sequence[Callable[[Any], dict[str, Any]]],
) -> Iterator[tuple[dict[str, Any], Any]]:
    """The rows of one trained model on the test rows, each with its codes, one at a time: its
    own coder and, for an SAE with ``cfg.pursuit``, OMP on its decoder (``"<method>+omp"``)."""
    variants = [(coder_name(method), None)]
    if method in SAE_METHODS and cfg.pursuit:
        variants.append(("omp", "omp"))
    for name, coder in variants:
        codes = model.transform(test, coder=coder) if coder else model.transform(test)
        row = {
            "method": method if coder is None else f"{method}+omp",
            "k": k,
            "coder": name,
            "status": "ok",
            **fit,
            **model_metrics(model, test, codes),
        }
        if coder is None:
            for score in scorers:
                row.update(score(model))
        if probe is not None:
            row.update(probe.columns(model.inverse_transform(codes)))
        yield row, codes


def run_comparison(
    X: np.ndarray,
    cfg: CompareConfig,
    labels: np.ndarray | None = None,
    show_progress: bool = True,
    on_model: Callable[[str, Any], None] | None = None,
    split: dict[str, np.ndarray] | None = None,
    scorers: Sequence[Callable[[Any], dict[str, Any]]] = (),
) -> dict[str, Any]:
    """All rows of the comparison. ``X`` (n, d); ``labels`` (n,) enable probe retention;
    ``on_model(name, model)`` is called with every trained model (e.g. to save it);
    ``split``: the train / val / test row ids (default :func:`dbksvd.data.splits.split_rows`
    with the config's fractions and seed; :func:`dbksvd.data.splits.split_by_item` for token
    and patch rows); each ``scorer(model)`` adds columns to each method's own-coder row (e.g.
    :func:`dbksvd.analysis.explain.explanation_scores` on a captioned store,
    :func:`dbksvd.analysis.splice.model_splice_columns` on a token, patch or headed store).

    Returns ``config`` (as a dict), ``rows``, ``features``, ``split`` (rows per part),
    ``split_rows`` (the row ids), ``results`` (one row per method, k and coder; a method that
    failed is a row with its reason) and ``usage`` (per model, test rows using each atom).
    """
    X, labels = _check_inputs(X, cfg, labels)
    n, d = X.shape
    if split is None:
        split = split_rows(n, cfg.test_fraction, cfg.val_fraction, cfg.random_state)
    train, val, test = (X[split[s]].astype(np.float32) for s in ("train", "val", "test"))
    probe = None if labels is None else _Probe(train, labels[split["train"]], test, labels[split["test"]])
    rows: list[dict[str, Any]] = []
    usage: dict[str, list[int]] = {}
    jobs = [(m, k) for k in cfg.n_nonzero for m in cfg.methods]
    bar = progress(len(jobs), "compare", enabled=show_progress, unit="model")
    try:
        for method, k in jobs:
            bar.set_postfix(method=method, k=k)
            try:
                model = make_model(method, cfg.n_atoms, k, cfg, train.shape[0])
                fit = _train(model, method, train, val)
                for row, codes in _evaluate(model, method, k, cfg, test, fit, probe, scorers):
                    rows.append(row)
                    usage[f"{row['method']}-k{k}"] = atom_usage(codes).tolist()
                if on_model is not None:
                    on_model(f"{method}-k{k}", model)
            except (FloatingPointError, RuntimeError, MissingDependencyError, DbksvdError) as exc:
                if isinstance(exc, (ParameterError, InputError)):
                    raise  # the user's input is wrong for every method: stop, one clear error
                reason = " ".join(str(exc).split())[:200]
                rows.append({"method": method, "k": k, "coder": coder_name(method), "status": f"failed: {reason}"})
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
