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


class SpliceColumns(FileSchema):
    """The splice metrics of a row (:mod:`dbksvd.analysis.splice`, docs/metrics.md), on the
    test items; which of them a row has depends on what the store's rows are."""

    splice_ce_clean: float | None = None
    """Causal LMs: mean next-token cross-entropy of the clean run (nats)."""
    splice_ce_spliced: float | None = None
    """... with the reconstruction spliced in at the captured layer."""
    splice_ce_zero: float | None = None
    """... with the activations set to zero."""
    splice_ce_mean: float | None = None
    """... with the activations set to the training mean."""
    splice_ce_loss_recovered: float | None = None
    """(ce_zero - ce_spliced) / (ce_zero - ce_clean)."""
    splice_ce_loss_recovered_mean: float | None = None
    """(ce_mean - ce_spliced) / (ce_mean - ce_clean)."""
    splice_kl: float | None = None
    """Mean KL(p_clean || p_spliced) of the next-token distributions."""
    splice_positions_scored: int | None = None
    """Token positions scored."""
    splice_windows: int | None = None
    """Model inputs run."""
    splice_sentence_cosine: float | None = None
    """Sentence encoders: mean cosine of the spliced and clean sentence embeddings."""
    splice_retrieval_recall_at_1: float | None = None
    """Share of spliced sentence embeddings whose nearest clean embedding is their own."""
    splice_retrieval_recall_at_10: float | None = None
    """... among the 10 nearest."""
    splice_head_top1_agreement: float | None = None
    """Image heads: share of test images whose top-1 class is unchanged."""
    splice_head_kl: float | None = None
    """Mean KL(p_clean || p_spliced) of the head's class distributions."""
    splice_items_scored: int | None = None
    """Items (texts, images) scored."""
    splice_neighbour_retention: float | None = None
    """Share of each row's 10 nearest clean neighbours kept by its reconstruction (any space)."""
    splice_neighbour_rows: int | None = None
    """Rows of the neighbour retention sample."""
    splice_splice_note: str | None = None
    """Why the rows could not be spliced (e.g. a vision transformer without a head)."""


class SplicedResultRow(ResultRow, SpliceColumns):
    """A trained method's row with its splice metrics (token, patch and headed stores)."""


class ReferenceRow(SpliceColumns):
    """The identity (the reconstruction is the input): the ceiling of every splice metric and
    the check of the hooks."""

    method: Literal["identity"]
    coder: Literal["none"] = "none"
    status: Literal["reference"]


def _row_kind(row: Any) -> str:
    status = row.get("status") if isinstance(row, dict) else getattr(row, "status", None)
    return {"ok": "ok", "reference": "reference"}.get(status, "failed")


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
        Annotated[
            Annotated[SplicedResultRow, Tag("ok")]
            | Annotated[FailedRow, Tag("failed")]
            | Annotated[ReferenceRow, Tag("reference")],
            Discriminator(_row_kind),
        ]
    ]
    """One row per method, k and coder, in the order they ran (and, with splice metrics, the
    identity's reference row last)."""

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
