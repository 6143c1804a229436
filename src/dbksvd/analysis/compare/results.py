"""The ``results.json`` of a comparison report: one schema, used by
:func:`~.report.write_report` to write it and by :func:`read_results` to read it (a damaged
file is one :class:`~dbksvd.errors.DataFileError` line)."""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator

from ...config import CompareConfig
from ...schema import FileSchema, dump, read_json
from .evaluation import ModelMetrics


class _RowKey(FileSchema):
    """Which model a row is about."""

    method: str
    """The method (one of compare's METHODS), with "+omp" for an SAE coded by OMP."""
    k: int
    """Non-zeros per row."""
    coder: str
    """How the test rows were coded: omp, threshold or own (an SAE's encoder)."""
    status: str
    """"ok", or "failed: <reason>"."""


class FailedRow(_RowKey):
    """A method that failed (a NaN loss, a missing package): why, and no numbers."""

    status: Annotated[str, Field(pattern=r"^failed: ")]


class _TrainedRow(_RowKey):
    status: Literal["ok"]
    train_seconds: float
    """Training time (seconds)."""
    train_peak_rss_mb: float
    """Peak resident memory of the process during training (MiB)."""
    train_extra_rss_mb: float
    """Peak resident memory above the level before training (MiB)."""


class ResultRow(ModelMetrics, _TrainedRow):
    """A trained method's numbers on the test rows: training cost, :class:`ModelMetrics`, and,
    where measured, explanation scores and probe retention."""

    described: float | None = None
    """Share of atoms with a description (captioned stores)."""
    diversity: float | None = None
    """Distinct descriptions / described atoms."""
    faithfulness: float | None = None
    """Mean test faithfulness of the descriptions."""
    specificity: float | None = None
    """Mean test specificity of the descriptions."""
    probe_accuracy: float | None = None
    """Accuracy of a linear probe (trained on the training rows) on the test rows (with labels)."""
    probe_accuracy_reconstructed: float | None = None
    """Its accuracy on the reconstructed test rows."""
    probe_retention: float | None = None
    """probe_accuracy_reconstructed / probe_accuracy."""


def _row_kind(row: Any) -> str:
    status = row.get("status") if isinstance(row, dict) else getattr(row, "status", None)
    return "ok" if status == "ok" else "failed"


class ComparisonResults(FileSchema):
    """``results.json``: the configuration, the data's size, the split and one row per method,
    k and coder."""

    config: CompareConfig
    """The comparison's configuration (files written before the fields were renamed, e.g.
    ``atoms`` for ``n_atoms``, still read)."""
    rows: int
    """Rows of the data."""
    features: int
    """Features per row."""
    split: dict[str, int]
    """Rows per split (test, val, train)."""
    results: list[
        Annotated[Annotated[ResultRow, Tag("ok")] | Annotated[FailedRow, Tag("failed")], Discriminator(_row_kind)]
    ]
    """One row per method, k and coder, in the order they ran."""

    @field_validator("config", mode="before")
    @classmethod
    def _today_names(cls, value: Any) -> Any:
        if isinstance(value, dict):
            renamed = CompareConfig.renamed_fields
            return {renamed.get(key, key): v for key, v in value.items()}
        return value


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """The content of a comparison's ``results.json`` (or of ``REPORT_DIR/results.json``),
    checked against :class:`ComparisonResults`; a damaged file is a one-line
    :class:`~dbksvd.errors.DataFileError`."""
    return dump(read_json(path, ComparisonResults, "comparison results", in_folder="results.json"))
