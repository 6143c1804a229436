"""The records of an explanation and their folder: ``atoms.jsonl`` records from the evidence
and the chosen descriptions, the summary's aggregates, the markdown table, and
:func:`write_explanation` (through the schemas of :mod:`.schema`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ... import metrics
from ...coding import SparseCodes
from ...io import atomic_path
from ...schema import validate, write_json, write_jsonl
from .choice import TestScores
from .evidence import AtomEvidence
from .samples import RowSample
from .schema import AtomRecord, ExplainSummary

if TYPE_CHECKING:
    from .context import ExplainContext

#: How a side is written in the records.
SIDE_MARK = {"pos": "+", "neg": "-"}


@dataclass
class Explanation:
    """``atoms``: one record per atom (see docs/explain.md); ``summary``: aggregates, the
    random-direction baseline's aggregates, the bridge report and notes."""

    atoms: list[dict[str, Any]]
    summary: dict[str, Any]
    baseline_atoms: list[dict[str, Any]] | None = None


def _float(v: Any) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v


def evidence_records(
    ev: AtomEvidence,
    ids: list[str],
    captions: list[str | None],
    note: str | None = None,
    sample: RowSample | None = None,
    codes: SparseCodes | None = None,
) -> list[dict[str, Any]]:
    """One ``atoms.jsonl`` record per atom (docs/explain.md) from the evidence alone: usage,
    counts, top items (``ids``/``captions`` by row of the evidence), histogram and nearest
    atoms, with no description yet (``note`` says why). With the ``sample`` of a token or
    patch store and its ``codes``, a top row's ``row`` is its store row and it carries its
    context (:meth:`RowSample.context`)."""

    def items(a: int, rows: np.ndarray, coefs: np.ndarray) -> list[dict[str, Any]]:
        out = []
        for r, c in zip(rows, coefs):
            if r < 0:
                continue
            entry = {"row": int(r), "id": ids[r], "caption": captions[r], "coef": float(c)}
            if sample is not None:
                entry.update(row=int(sample.rows[r]), **sample.context(int(r), a, codes))
            out.append(entry)
        return out

    usage = ev.usage()
    return [
        {
            "atom": a,
            "side": None,
            "description": None,
            "source": None,
            "faithfulness": None,
            "specificity": None,
            "alternatives": [],
            "other_side": None,
            "note": note,
            "usage": float(usage[a]),
            "count_positive": int(ev.count["pos"][a]),
            "count_negative": int(ev.count["neg"][a]),
            "mean_positive": float(ev.mean_abs["pos"][a]),
            "mean_negative": float(ev.mean_abs["neg"][a]),
            "top_positive": items(a, ev.top["pos"][a], ev.top_coef["pos"][a]),
            "top_negative": items(a, ev.top["neg"][a], ev.top_coef["neg"][a]),
            "histogram": {"max": float(ev.hist_max[a]), "counts": ev.hist[a].tolist()},
            "nearest": [{"atom": int(j), "cosine": float(c)} for j, c in zip(ev.nearest[a], ev.nearest_cos[a])],
        }
        for a in range(ev.n_atoms)
    ]


def described_records(
    ctx: ExplainContext,
    ev: AtomEvidence,
    units: list[tuple[int, str]],
    primary: np.ndarray,
    cands: list[list[tuple[str, str]]],
    chosen: list[int],
    test_scores: TestScores,
    codes: SparseCodes | None = None,
) -> list[dict[str, Any]]:
    """The ``atoms.jsonl`` records of one dictionary: :func:`evidence_records` with, for every
    described unit, its chosen description and every alternative with its test scores (the
    primary side in the record, the other side as ``other_side``)."""
    scored = ctx.caption_unit is not None
    records = evidence_records(
        ev,
        ctx.ids,
        ctx.captions,
        note=f"fewer than {ctx.cfg.min_items} describing items on either side",
        sample=ctx.sample,
        codes=codes,
    )
    for u, ((a, side), is_primary) in enumerate(zip(units, primary)):
        c = cands[u]
        if not c:
            continue
        f, s = test_scores[u]
        alts = [
            {
                "description": t,
                "source": src,
                "faithfulness": _float(f[i]) if scored else None,
                "specificity": _float(s[i]) if scored and is_primary else None,
            }
            for i, (t, src) in enumerate(c)
        ]
        best = alts[chosen[u]]
        entry = {
            "side": SIDE_MARK[side],
            "description": best["description"],
            "source": best["source"],
            "faithfulness": best["faithfulness"],
        }
        rec = records[a]
        if is_primary:
            rec.update(entry, specificity=best["specificity"], alternatives=alts, note=None)
        else:
            rec["other_side"] = entry
    return records


def aggregate(atoms: list[dict[str, Any]], K: int, scored: bool) -> dict[str, Any]:
    """The headline numbers of one dictionary's records: atoms, described, diversity, sources
    and, when ``scored``, the mean / median test faithfulness and specificity."""
    described = [r for r in atoms if r["description"] is not None]
    out: dict[str, Any] = {"atoms": K, "described": len(described)}
    if described:
        out["diversity"] = metrics.diversity([r["description"] for r in described])
        sources: dict[str, int] = {}
        for r in described:
            sources[r["source"]] = sources.get(r["source"], 0) + 1
        out["sources"] = dict(sorted(sources.items(), key=lambda kv: -kv[1]))
    if scored:
        for name in ("faithfulness", "specificity"):
            vals = np.array([r[name] for r in described if r[name] is not None], dtype=np.float64)
            out[name] = {
                "mean": float(vals.mean()) if len(vals) else None,
                "median": float(np.median(vals)) if len(vals) else None,
                "atoms": int(len(vals)),
            }
    return out


# -- output --------------------------------------------------------------------------------


def summary_table(summary: dict[str, Any]) -> str:
    """The headline numbers of a summary (model and random directions) as markdown."""
    rows = [("model", summary)] + ([("random directions", summary["random"])] if "random" in summary else [])
    lines = [
        "| dictionary | described | faithfulness (mean AUROC) | specificity (mean 1/rank) | diversity |",
        "|---|---|---|---|---|",
    ]
    for name, s in rows:

        def get(key, s=s):
            v = (s.get(key) or {}).get("mean") if isinstance(s.get(key), dict) else s.get(key)
            return "n/a" if v is None else f"{v:.3f}"

        lines.append(
            f"| {name} | {s['described']} / {s['atoms']} | {get('faithfulness')} | {get('specificity')} | "
            f"{get('diversity')} |"
        )
    text = "\n".join(lines) + "\n"
    if "bridge" in summary:
        b = summary["bridge"]
        text += (
            f"\nbridge ({b['kind']}, {summary['space']} -> text): held-out image->caption recall@1 "
            f"{b['test']['recall@1']:.3f}, recall@5 {b['test']['recall@5']:.3f} over {b['test']['gallery']} captions\n"
        )
    for note in summary.get("notes", []):
        text += f"\nnote: {note}\n"
    return text


def most_used_atoms(atoms: list[dict[str, Any]], shown: int = 10) -> str:
    """The ``shown`` most used described atoms, one line each (what ``dbksvd explain`` prints)."""
    described = sorted((r for r in atoms if r["description"] is not None), key=lambda r: -r["usage"])
    if not described:
        return ""
    lines = [f"\nmost used atoms (of {len(described)} described):"]
    for r in described[:shown]:
        score = "" if r["faithfulness"] is None else f"  faithfulness {r['faithfulness']:.2f}"
        lines.append(f"  atom {r['atom']:>5} {r['side']}  {r['description'][:60]!r:<62} usage {r['usage']:.3f}{score}")
    return "\n".join(lines) + "\n"


def write_explanation(expl: Explanation, out: str | Path) -> Path:
    """``out/``: atoms.jsonl (one record per atom), summary.json, summary.md and, with a
    baseline, random_atoms.jsonl; checked against :class:`~.schema.AtomRecord` and
    :class:`~.schema.ExplainSummary`, written to a temporary folder, then renamed."""
    out = Path(out)
    atoms = [validate(AtomRecord, r, "atoms.jsonl record", out / "atoms.jsonl") for r in expl.atoms]
    baseline = [
        validate(AtomRecord, r, "atoms.jsonl record", out / "random_atoms.jsonl") for r in expl.baseline_atoms or []
    ]
    summary = validate(ExplainSummary, expl.summary, "explanation summary", out / "summary.json")
    with atomic_path(out, directory=True) as tmp:
        write_jsonl(tmp / "atoms.jsonl", atoms)
        if expl.baseline_atoms is not None:
            write_jsonl(tmp / "random_atoms.jsonl", baseline)
        write_json(tmp / "summary.json", summary)
        (tmp / "summary.md").write_text(summary_table(expl.summary))
    return out
