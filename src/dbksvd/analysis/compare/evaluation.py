"""Every reconstruction metric of a fitted model on some rows (:func:`model_metrics`, what
``dbksvd evaluate`` prints and each comparison row holds), and the ``metrics.json`` of a run
folder (held-out numbers per model, as ``dbksvd demo`` writes them), written and read through
its schema."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ... import metrics
from ...schema import FileSchema, dump, read_json, validate, write_json


def model_metrics(model: Any, X: Any, codes: Any = None) -> dict[str, Any]:
    """Every reconstruction metric of ``model`` on ``X`` (array or store space), computed on
    the input vectors; ``codes`` default to ``model.transform(X)``. The keys are the fields of
    :class:`ModelMetrics`."""
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


class ModelMetrics(FileSchema):
    """:func:`model_metrics` of one model (definitions: docs/metrics.md)."""

    rows: int
    """Rows scored."""
    features: int
    """Features per row (d)."""
    atoms: int
    """Atoms of the dictionary (K)."""
    explained_signal: float
    """1 - mean over rows of ||residual|| / ||row||."""
    fvu: float
    """Fraction of variance unexplained, over the whole set."""
    explained_variance: float
    """1 - FVU."""
    cosine: float
    """Mean cosine of each row with its reconstruction."""
    l0: float
    """Mean non-zeros per row."""
    dead_atoms: int
    """Atoms used by no row."""
    rare_atoms: int
    """Atoms used by fewer than 1e-4 of the rows (dead ones included)."""
    max_coherence: float
    """Largest |cosine| between two atoms."""
    mean_max_coherence: float
    """Mean over atoms of the largest |cosine| to another atom."""


class HeldOutMetrics(FileSchema):
    """``metrics.json`` of a run folder: held-out metrics per model folder."""

    split: str
    """Which rows were scored, in words (e.g. "test (20%, seed 0)")."""
    test_rows: list[int]
    """The store rows scored."""
    models: dict[str, ModelMetrics]
    """Per model folder name (e.g. model-image): its metrics on those rows."""


def write_heldout_metrics(
    path: str | os.PathLike, split: str, test_rows: Sequence[int], models: Mapping[str, Mapping[str, Any]]
) -> None:
    """Write ``metrics.json`` (a :class:`HeldOutMetrics`) atomically: ``split`` in words, the
    ``test_rows`` scored and each model folder's :func:`model_metrics` on them."""
    data = {"split": split, "test_rows": [int(r) for r in test_rows], "models": dict(models)}
    write_json(path, validate(HeldOutMetrics, data, "metrics.json", path), indent=1)


def read_heldout_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """The content of a ``metrics.json`` (or of ``RUN/metrics.json``), checked against
    :class:`HeldOutMetrics`; a damaged file is a one-line :class:`~dbksvd.errors.DataFileError`."""
    return dump(read_json(path, HeldOutMetrics, "metrics.json", in_folder="metrics.json"))
