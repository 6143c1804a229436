"""Every question the explorer asks of a run, as functions of a :class:`~dbksvd.web.run.Run`:
the overview, a model's gallery page, an atom, items, search and decompositions. Each checks
its parameters (a ParameterError or NotFoundError in one line for a bad one) and answers a
plain JSON-able dict, the shape ``schemas.py`` declares; ``dumps`` renders it. The web app
(``app.py``) and the static export (``export.py``) serve the same answers.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DbksvdError, NotFoundError, ParameterError
from .run_folder import ModelEntry

if TYPE_CHECKING:
    from .run import Run

#: Bounds on what a client may ask for.
MAX_PAGE = 200  # atoms or items per page
MAX_QUERY_CHARS = 200  # search text
MAX_SEARCH_HITS = 50  # per list of a search answer
SORT_KEYS = ("usage", "faithfulness", "specificity", "atom")
#: Top items shown on an atom card.
CARD_THUMBS = 4
#: Top items shown per atom of a decomposition.
CODE_TOPS = 3


# -- parameters and JSON ---------------------------------------------------------------------


def check_int(value: Any, name: str, low: int, high: int | None = None) -> int:
    """``value`` as an int in [low, high] (ParameterError otherwise)."""
    if isinstance(value, bool):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be an integer, got {str(value)[:40]!r}") from None
    if number != value and not isinstance(value, str):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    if number < low or (high is not None and number > high):
        raise ParameterError(
            f"{name} must be between {low} and {high}, got {number}"
            if high is not None
            else f"{name} must be >= {low}, got {number}"
        )
    return number


def check_query(q: Any) -> str:
    """Search text: a string of at most MAX_QUERY_CHARS characters, whitespace collapsed."""
    if not isinstance(q, str):
        raise ParameterError("the query must be text")
    if len(q) > MAX_QUERY_CHARS:
        raise ParameterError(f"the query is {len(q)} characters long; at most {MAX_QUERY_CHARS} are allowed")
    return " ".join(q.split())


def _finite_values(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_values(v) for v in value]
    if isinstance(value, np.generic):
        return _finite_values(value.item())
    return value


def dumps(value: Any) -> str:
    """Compact JSON of an answer; NaN and infinities (not JSON) become null."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError):
        return json.dumps(_finite_values(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


# -- overview --------------------------------------------------------------------------------


def model_card(entry: ModelEntry) -> dict[str, Any]:
    """A model's row of the overview: what it is, its held-out and explanation scores."""
    s = entry.summary or {}
    rnd = s.get("random") or {}
    return {
        "id": entry.id,
        "folder": entry.rel,
        "architecture": entry.architecture,
        "atoms": entry.n_atoms,
        "k": entry.k,
        "coder": entry.coder,
        "space": entry.space,
        "problem": entry.problem,
        "explanation": None if entry.explanation is None else entry.explanation.name,
        "heldout": entry.heldout,
        "described": s.get("described"),
        "diversity": s.get("diversity"),
        "faithfulness": (s.get("faithfulness") or {}).get("mean"),
        "specificity": (s.get("specificity") or {}).get("mean"),
        "random": None
        if not rnd
        else {
            "faithfulness": (rnd.get("faithfulness") or {}).get("mean"),
            "specificity": (rnd.get("specificity") or {}).get("mean"),
            "diversity": rnd.get("diversity"),
        },
    }


def overview(run: Run) -> dict[str, Any]:
    """The run: its store, every model with its scores, the compare reports, what is missing."""
    store = None
    if run.store is not None:
        store = {
            "folder": run.store_rel,
            "dataset": run.store.dataset.get("name"),
            "count": run.store.count,
            "captioned": sum(1 for m in run.meta if m.get("caption")),
            "label_names": run.store.label_names,
            "spaces": {
                name: {"encoder": info["encoder"].get("name"), "dim": info["dim"], "dtype": info["dtype"]}
                for name, info in run.store.manifest["spaces"].items()
            },
        }
    return {
        "run": run.path.name,
        "store": store,
        "models": [model_card(m) for m in run.models.values()],
        "reports": run.reports,
        "missing": list(run.missing),
        "problems": list(run.problems),
        "heldout_split": run.heldout_split,
        "features": run.features(),
    }


# -- atoms -----------------------------------------------------------------------------------


def gallery(
    run: Run,
    model_id: str,
    *,
    sort: str = "usage",
    order: str = "desc",
    q: str = "",
    min_faithfulness: float | None = None,
    min_specificity: float | None = None,
    min_usage: float | None = None,
    described: bool | None = None,
    offset: int = 0,
    limit: int = 48,
) -> dict[str, Any]:
    """One page of a model's atom cards, sorted and filtered. Missing scores sort last either way."""
    entry = run.entry(model_id)
    if sort not in SORT_KEYS:
        raise ParameterError(f"sort must be one of {', '.join(SORT_KEYS)}, got {str(sort)[:40]!r}")
    if order not in ("asc", "desc"):
        raise ParameterError(f"order must be asc or desc, got {str(order)[:40]!r}")
    offset = check_int(offset, "offset", 0)
    limit = check_int(limit, "limit", 1, MAX_PAGE)
    q = check_query(q).lower()
    col = run.columns(entry)
    idx = col.order(sort, order)
    keep = np.ones(len(idx), dtype=bool)
    for name, low in (("faithfulness", min_faithfulness), ("specificity", min_specificity), ("usage", min_usage)):
        if low is not None:
            if not isinstance(low, (int, float)) or not math.isfinite(low):
                raise ParameterError(f"min_{name} must be a number")
            keep &= getattr(col, name)[idx] >= low
    if described is not None:
        has = np.array([t != "" for t in col.text], dtype=bool)
        keep &= has[idx] == bool(described)
    if q:
        words = q.split()
        keep &= np.array([all(w in col.text[i] for w in words) for i in idx], dtype=bool)
    hits = idx[keep]
    page = hits[offset : offset + limit]
    recs = run.atoms(entry)
    return {
        "model": entry.id,
        "total": int(len(hits)),
        "atoms_in_model": len(recs),
        "offset": offset,
        "limit": limit,
        "sort": sort,
        "order": order,
        "q": q,
        "atoms": [atom_card(recs[int(i)]) for i in page],
    }


def atom_card(r: dict[str, Any]) -> dict[str, Any]:
    """An atom's card (gallery, search) from its record: description, scores, a few top items
    of its described side."""
    side = "top_negative" if r.get("side") == "-" else "top_positive"
    if not r.get(side):
        side = "top_negative" if r.get("top_negative") else "top_positive"
    return {
        "atom": r["atom"],
        "description": r.get("description"),
        "side": r.get("side"),
        "source": r.get("source"),
        "faithfulness": r.get("faithfulness"),
        "specificity": r.get("specificity"),
        "usage": r.get("usage"),
        "note": r.get("note"),
        "other_side": (r.get("other_side") or {}).get("description"),
        "top": [
            {"row": t["row"], "caption": t.get("caption"), "coef": t["coef"]} for t in r.get(side, [])[:CARD_THUMBS]
        ],
    }


def atom(run: Run, model_id: str, atom: Any) -> dict[str, Any]:
    """Everything about one atom: its record, with the nearest atoms' descriptions."""
    entry = run.entry(model_id)
    j = check_int(atom, "atom", 0, max(entry.n_atoms - 1, 0))
    recs = run.atoms(entry)
    rec = dict(recs[j])
    rec["nearest"] = [{**n, "description": recs[n["atom"]].get("description")} for n in rec.get("nearest", [])]
    rec["model"] = entry.id
    rec["n_atoms"] = entry.n_atoms
    return rec


# -- items -----------------------------------------------------------------------------------


def _need_store(run: Run) -> None:
    if run.store is None:
        raise NotFoundError("this run has no embedding store, so no items")


def store_row(run: Run, row: Any) -> int:
    """``row`` checked as a row of the run's store (NotFoundError without a store)."""
    _need_store(run)
    return check_int(row, "row", 0, run.store.count - 1)


def item(run: Run, row: Any) -> dict[str, Any]:
    """One store item: id, caption, source, label, whether metrics.json holds it out."""
    r = store_row(run, row)
    m = run.meta[r]
    names = run.store.label_names
    label = m.get("label")
    return {
        "row": r,
        "id": m["id"],
        "caption": m.get("caption"),
        "source": m.get("source"),
        "label": label,
        "label_name": names[label] if names and label is not None else None,
        "held_out": r in run.heldout_rows if run.heldout_rows else None,
    }


def items(run: Run, q: str = "", offset: int = 0, limit: int = 48) -> dict[str, Any]:
    """Items whose caption or id contains every word of ``q`` (all items when empty)."""
    _need_store(run)
    q = check_query(q).lower()
    offset = check_int(offset, "offset", 0)
    limit = check_int(limit, "limit", 1, MAX_PAGE)
    words = q.split()
    rows = (
        [
            i
            for i, m in enumerate(run.meta)
            if all(w in f"{(m.get('caption') or '').lower()} {m['id'].lower()}" for w in words)
        ]
        if words
        else range(len(run.meta))
    )
    return {
        "total": len(rows),
        "offset": offset,
        "limit": limit,
        "q": q,
        "items": [item(run, r) for r in list(rows[offset : offset + limit])],
    }


# -- search ----------------------------------------------------------------------------------


def search(run: Run, q: str, limit: int = 10) -> dict[str, Any]:
    """Atoms (every model) and items for free text: by words in descriptions and captions,
    and by text embedding (descriptions, text-space atom directions, captions) when the run
    has a text encoder."""
    q = check_query(q)
    limit = check_int(limit, "limit", 1, MAX_SEARCH_HITS)
    if not q:
        raise ParameterError("the query is empty")
    qv = None
    notes = []
    if run.text_encoder_spec is not None:
        try:
            qv = run.query_vector(q)
        except DbksvdError as exc:
            notes.append(f"search by embedding unavailable: {exc}")
    else:
        notes.append("search by embedding unavailable: the run has no text encoder")
    atoms = [_search_model(run, entry, q, qv, limit) for entry in run.usable()]
    found: dict[str, Any] = {"by_text": [], "by_embedding": []}
    if run.store is not None:
        page = items(run, q, 0, limit)
        found["by_text"], found["by_text_total"] = page["items"], page["total"]
        T = run.text_matrix if qv is not None else None
        if T is not None:
            sims = T @ qv
            best = np.argsort(-sims)[:limit]
            found["by_embedding"] = [{**item(run, int(r)), "similarity": float(sims[r])} for r in best]
    return {"q": q, "atoms": atoms, "items": found, "notes": notes}


def _search_model(run: Run, entry: ModelEntry, q: str, qv: np.ndarray | None, limit: int) -> dict[str, Any]:
    """One model's atoms for the query ``q`` (its unit embedding ``qv``, None without one)."""
    recs = run.atoms(entry)
    words = q.lower().split()
    text_hits = [i for i, t in enumerate(run.columns(entry).text) if t and all(w in t for w in words)]
    text_hits.sort(
        key=lambda i: (q.lower() not in (recs[i].get("description") or "").lower(), -(recs[i].get("faithfulness") or 0))
    )
    result = {
        "model": entry.id,
        "by_text": [atom_card(recs[i]) for i in text_hits[:limit]],
        "by_text_total": len(text_hits),
        "by_embedding": [],
        "by_direction": [],
    }
    if qv is None:
        return result
    dv = run.description_vectors(entry)
    if dv is not None:
        sims = dv @ qv
        best = np.argsort(-np.nan_to_num(sims, nan=-2.0))[:limit]
        result["by_embedding"] = [
            {**atom_card(recs[i]), "similarity": float(sims[i])} for i in best if np.isfinite(sims[i])
        ]
    if entry.space == "text" and run.has_space("text") and run.encoder_spec("text") == run.text_encoder_spec:
        import torch

        model = run.model(entry)
        D = np.asarray(model.components_, dtype=np.float64)
        z = model._preprocessor().apply(torch.as_tensor(qv[None], dtype=torch.float64))[0].numpy()[0]
        cos = D @ z / max(np.linalg.norm(z), 1e-12)
        best = np.argsort(-np.abs(cos))[:limit]
        result["by_direction"] = [{**atom_card(recs[i]), "similarity": float(cos[i])} for i in best]
    return result


# -- decompose -------------------------------------------------------------------------------


def decompose(run: Run, row: Any) -> dict[str, Any]:
    """The sparse code of store item ``row`` under every model of the run, side by side."""
    it = item(run, row)
    out = []
    for entry in run.usable():
        if entry.space is None:
            continue
        x = run.store.space(entry.space).take(np.array([it["row"]]))[0]
        out.append(code_of(run, entry, x))
    return {"item": it, "models": out}


def code_of(run: Run, entry: ModelEntry, x: np.ndarray) -> dict[str, Any]:
    """The sparse code of one (d,) vector ``x`` under ``entry``'s model: its atoms by
    |coefficient| with the description of the coefficient's side, and how well it is
    reconstructed (``explained_signal`` = 1 - |x - x_hat| / |x|, ``cosine``)."""
    model = run.model(entry)
    x = np.asarray(x, dtype=np.float32)[None]
    codes = model.transform(x)  # one row: the torch coders, safe to run concurrently
    x_hat = model.inverse_transform(codes)[0]
    xn = float(np.linalg.norm(x[0]))
    rn = float(np.linalg.norm(x[0] - x_hat))
    hn = float(np.linalg.norm(x_hat))
    recs = run.atoms(entry)
    pairs = [(int(a), float(v)) for a, v in zip(codes.indices[0].tolist(), codes.values[0].tolist()) if v != 0]
    pairs.sort(key=lambda p: -abs(p[1]))
    atoms = []
    for a, v in pairs:
        r = recs[a]
        sign = "+" if v > 0 else "-"
        other = r.get("other_side") or {}
        if r.get("side") == sign or r.get("side") is None:
            desc, faith = r.get("description"), r.get("faithfulness")
        elif other.get("side") == sign:
            desc, faith = other.get("description"), other.get("faithfulness")
        else:
            desc, faith = None, None
        tops = r.get("top_positive" if v > 0 else "top_negative", [])[:CODE_TOPS]
        atoms.append(
            {
                "atom": a,
                "coef": v,
                "side": sign,
                "description": desc,
                "faithfulness": faith,
                "top": [{"row": t["row"], "caption": t.get("caption")} for t in tops],
            }
        )
    return {
        "model": entry.id,
        "architecture": entry.architecture,
        "coder": entry.coder,
        "atoms": atoms,
        "l0": len(atoms),
        "explained_signal": 1.0 - rn / xn if xn > 0 else None,
        "cosine": float(x[0] @ x_hat) / (xn * hn) if xn > 0 and hn > 0 else None,
    }
