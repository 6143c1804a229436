"""The report of a comparison: ``results.{json,csv,md}``, the plots, ``report.html``,
``split.npz``, ``usage.json`` and every trained model's folder (:func:`write_report`)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ...io import atomic_path
from ...schema import validate, write_json
from .plots import write_plots
from .results import ComparisonResults

#: The columns of the markdown and HTML tables, in order (the CSV has every column).
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
    "splice_ce_loss_recovered",
    "splice_ce_loss_recovered_mean",
    "splice_kl",
    "splice_sentence_cosine",
    "splice_retrieval_recall_at_1",
    "splice_retrieval_recall_at_10",
    "splice_head_top1_agreement",
    "splice_head_kl",
    "splice_neighbour_retention",
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
    """The rows as a markdown table of the :data:`TABLE_COLUMNS` any row has."""
    cols = [c for c in TABLE_COLUMNS if any(c in r for r in results)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in results]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: str | Path, models: dict[str, Any] | None = None) -> Path:
    """``out/``: results.json (a :class:`~.results.ComparisonResults`), results.csv, results.md,
    pareto.png, usage.png, report.html, usage.json (per model, rows using each atom), split.npz
    (row indices) and models/ (every trained model's folder); written atomically."""
    out = Path(out)
    results = report["results"]
    with atomic_path(out, directory=True) as tmp:
        data = {k: v for k, v in report.items() if k not in ("split_rows", "usage")}
        (tmp / "usage.json").write_text(json.dumps(report.get("usage", {})) + "\n")
        checked = validate(ComparisonResults, data, "comparison results", out / "results.json")
        write_json(tmp / "results.json", checked)
        np.savez(tmp / "split.npz", **report["split_rows"])
        # the table's columns first, in its order; the others as they first appear
        cols = sorted(dict.fromkeys(c for r in results for c in r), key=lambda c: (TABLE_COLUMNS + (c,)).index(c))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=cols)
        writer.writeheader()
        writer.writerows(results)
        (tmp / "results.csv").write_text(buf.getvalue())
        (tmp / "results.md").write_text(markdown_table(results))
        plots = write_plots(results, report.get("usage", {}), tmp)
        (tmp / "report.html").write_text(_html(report, plots))
        for name, model in (models or {}).items():
            model.save(tmp / "models" / name)
    return out


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
validation {report["split"]["val"]}, test {report["split"]["test"]} (seed {cfg["random_state"]});
K = {cfg["n_atoms"]}; preprocessing {html.escape(cfg["preprocessing"])}. Metrics on the test rows.</p>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
{imgs}
</body></html>
"""


def metrics_lines(result: dict[str, Any]) -> str:
    """One ``name  value`` line per metric of one model (what ``dbksvd evaluate`` prints)."""
    width = max(len(key) for key in result)
    shown = {key: f"{value:.4f}" if isinstance(value, float) else str(value) for key, value in result.items()}
    return "".join(f"{key:<{width}}  {value}\n" for key, value in shown.items())


def metrics_columns(results: dict[str, dict[str, Any]]) -> str:
    """The metrics every model has, one column per model (what ``dbksvd demo`` prints)."""
    names = list(results)
    keys = [key for key in results[names[0]] if all(key in r for r in results.values())]
    width = max(len(key) for key in keys)
    lines = [f"{'':<{width}}  " + "  ".join(f"{n:>10}" for n in names)]
    for key in keys:
        cells = [results[n][key] for n in names]
        lines.append(
            f"{key:<{width}}  " + "  ".join(f"{c:>10.4f}" if isinstance(c, float) else f"{c!s:>10}" for c in cells)
        )
    return "\n".join(lines) + "\n"
