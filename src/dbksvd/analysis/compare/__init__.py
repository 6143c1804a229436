"""The comparison harness: every method on one split, every metric from one implementation.

``run_comparison(X, config, labels)`` splits the rows once (train / validation / test, by
``seed``, :func:`dbksvd.data.splits.split_rows`), trains each method at each k with
dictionary size K, times it and samples its peak memory, and evaluates it on the test rows
with :func:`model_metrics` (the function ``dbksvd evaluate`` prints). SAEs are also evaluated
with an exact OMP coder on their own decoder (rows ``"<sae>+omp"``), which separates the
encoder's share of a gap from the dictionary's. A method that fails (a NaN loss, a missing
package) is a row with its reason; the others still run. ``write_report`` turns the rows into
``results.{json,csv,md}``, PNG plots and ``report.html``.

The pieces: :mod:`dbksvd.config` (the methods, :class:`CompareConfig`), :mod:`.harness`
(:func:`make_model`, :func:`run_comparison`), :mod:`.evaluation` (:func:`model_metrics` and
the run folder's ``metrics.json``), :mod:`.results` (the ``results.json`` schema),
:mod:`.report` and :mod:`.plots` (the report folder).
"""

from ...config import DEFAULT_METHODS, METHODS, SAE_METHODS, CompareConfig
from ...data.splits import MAX_EVAL_ROWS, split_rows
from .evaluation import HeldOutMetrics, ModelMetrics, model_metrics, read_heldout_metrics, write_heldout_metrics
from .harness import coder_name, make_model, run_comparison
from .report import TABLE_COLUMNS, markdown_table, metrics_columns, metrics_lines, write_report
from .results import ComparisonResults, read_results

__all__ = [
    "CompareConfig",
    "ComparisonResults",
    "DEFAULT_METHODS",
    "HeldOutMetrics",
    "MAX_EVAL_ROWS",
    "METHODS",
    "ModelMetrics",
    "SAE_METHODS",
    "TABLE_COLUMNS",
    "coder_name",
    "make_model",
    "markdown_table",
    "metrics_columns",
    "metrics_lines",
    "model_metrics",
    "read_heldout_metrics",
    "read_results",
    "run_comparison",
    "split_rows",
    "write_heldout_metrics",
    "write_report",
]
