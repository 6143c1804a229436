"""Analysis on top of fitted models: the comparison harness and its report (:mod:`.compare`),
a scored description for every atom (:mod:`.explain`), and splice metrics, the
reconstructions put back into the network (:mod:`.splice`)."""

from .splice import (
    identity,
    mean_activation,
    model_reconstruct,
    model_splice_columns,
    rebuild_encoder,
    rows_of_items,
    splice_family,
    splice_metrics,
    splice_reference_rows,
    splice_references,
)

__all__ = [
    "identity",
    "mean_activation",
    "model_reconstruct",
    "model_splice_columns",
    "rebuild_encoder",
    "rows_of_items",
    "splice_family",
    "splice_metrics",
    "splice_reference_rows",
    "splice_references",
]
