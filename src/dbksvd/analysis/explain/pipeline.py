"""The pipeline of an explanation: :func:`explain` (a model and its random baseline on a
store), :func:`explain_model` (one dictionary in a prepared context) and
:func:`explanation_scores` (its headline numbers as table columns)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._progress import progress
from ...config import ExplainConfig
from .choice import choose_descriptions
from .context import ExplainContext, explain_context
from .describe import unit_candidates
from .evidence import AtomEvidence, atom_evidence, code_rows
from .records import Explanation, aggregate, described_records


def explain(
    model: Any, store: Any, space: str | None = None, config: ExplainConfig | None = None, *, show_progress: bool = True
) -> Explanation:
    """Describe and score every atom of ``model`` on the items of ``store`` (an
    :class:`~dbksvd.data.EmbeddingStore`; ``space``: default the one the model was fitted on,
    else the store's default)."""
    trained = getattr(model, "data_info_", None) or {}
    space = space or (trained.get("space") if trained.get("space") in store.spaces else store.default_space())
    ctx = explain_context(store, space, config, show_progress=show_progress, model=model)
    atoms, summary = explain_model(model, ctx, show_progress=show_progress)
    baseline_atoms = None
    if ctx.cfg.baseline:
        from ...models import RandomDictionary

        random = RandomDictionary(
            int(model.components_.shape[0]),
            int(model.n_nonzero),
            preprocessing=getattr(model, "preprocessing", "normalize+center+scale"),
            random_state=ctx.cfg.random_state,
        )
        random.fit(ctx.X[ctx.split["describe"]])
        baseline_atoms, summary["random"] = describe_dictionary(random, ctx, "random directions", show_progress)
    return Explanation(atoms, summary, baseline_atoms)


def explain_model(model: Any, ctx: ExplainContext, *, show_progress: bool = False) -> tuple[list[dict], dict]:
    """The atom records and the summary of one dictionary in a prepared context (no baseline)."""
    from ...models import check_rows

    check_rows(model, ctx.rows)
    atoms, agg = describe_dictionary(model, ctx, "model", show_progress)
    summary = {
        **ctx.info,
        "model": {
            "architecture": getattr(model, "architecture_name", type(model).__name__),
            "atoms": int(model.components_.shape[0]),
            "k": int(model.n_nonzero),
        },
        **agg,
        "notes": ctx.notes,
    }
    return atoms, summary


def described_units(ev: AtomEvidence, min_items: int) -> tuple[list[tuple[int, str]], np.ndarray, list[np.ndarray]]:
    """The units (atom, side) to describe: every side with at least ``min_items`` items in
    ``ev`` (the describe items' evidence); whether each is its atom's primary side (the one it
    fires on more often), and its top items (store rows, best first)."""
    primary_side = ev.primary_side()
    units, primary, groups = [], [], []
    for a in range(ev.n_atoms):
        for side in ("pos", "neg"):
            if ev.count[side][a] >= min_items:
                t = ev.top[side][a]
                units.append((a, side))
                primary.append(side == primary_side[a])
                groups.append(t[t >= 0])
    return units, np.array(primary, dtype=bool), groups


def describe_dictionary(model: Any, ctx: ExplainContext, label: str, show_progress: bool) -> tuple[list[dict], dict]:
    """The atom records and aggregates of ``model``'s dictionary: codes, evidence, the units to
    describe, their candidates, the choice and the test scores."""
    cfg = ctx.cfg
    D = np.asarray(model.components_, dtype=np.float32)
    K = D.shape[0]
    bar = progress(4, f"explain {label}", enabled=show_progress, unit="step")
    try:
        codes = model.transform(ctx.X, coder=cfg.coder)
        bar.update(1)
        # token and patch rows: an atom's top rows are its best row in each text or image
        group = None if ctx.sample is None else ctx.sample.item
        ev = atom_evidence(codes, D, top=cfg.top, groups=group)
        desc_rows = ctx.split["describe"]
        ev_desc = atom_evidence(
            code_rows(codes, desc_rows),
            D,
            rows=desc_rows,
            top=cfg.top,
            nearest=0,
            groups=None if group is None else group[desc_rows],
        )
        units, primary, groups = described_units(ev_desc, cfg.min_items)
        cands = unit_candidates(ctx, D, units, groups)
        bar.update(1)
        chosen, test_scores = choose_descriptions(ctx, codes, units, primary, cands, K)
        bar.update(2)
    finally:
        bar.close()
    atoms = described_records(ctx, ev, units, primary, cands, chosen, test_scores, codes)
    return atoms, aggregate(atoms, K, ctx.caption_unit is not None)


def explanation_scores(model: Any, ctx: ExplainContext) -> dict[str, Any]:
    """The headline explanation numbers of one dictionary, as flat table columns:
    ``faithfulness`` and ``specificity`` (means over described atoms), ``diversity`` and
    ``described`` (share of atoms with a description)."""
    _, agg = describe_dictionary(model, ctx, "model", False)
    out: dict[str, Any] = {"described": agg["described"] / agg["atoms"], "diversity": agg.get("diversity")}
    for name in ("faithfulness", "specificity"):
        if name in agg:
            out[name] = agg[name]["mean"]
    return out
