"""Choosing each atom's description among its candidates, and scoring every candidate.

A *unit* is an atom and the side it is described on (``(atom, "pos" | "neg")``). Every
candidate of every unit is scored for faithfulness and specificity (docs/metrics.md) on the
choice items (describe and select: every item but the test ones) and on the test items; the
most faithful on the choice items is the description (ties: the more specific, then the
earlier candidate), then :func:`distinct_descriptions` keeps two atoms from sharing words
when something as good is free. The test scores are the ones reported.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ... import metrics
from ...coding import SparseCodes
from .evidence import SIGN, active_matrix, atom_evidence, code_rows

if TYPE_CHECKING:
    from .context import ExplainContext

#: Per unit, its candidates' (faithfulness, specificity) arrays on the test items.
TestScores = list[tuple[np.ndarray, np.ndarray]]


def candidate_scores(
    ctx: ExplainContext,
    codes: SparseCodes,
    rows: np.ndarray,
    units: list[tuple[int, str]],
    primary: np.ndarray,
    E: np.ndarray,
    owner: np.ndarray,
    K: int,
    chunk: int = 2048,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Faithfulness and specificity of every candidate (embeddings ``E`` (c, e), ``owner``
    (c,) its unit) on the items ``rows``, and per unit the number of those items it is
    active on."""
    C = ctx.caption_unit[rows]
    sub = code_rows(codes, rows)
    atoms = np.array([a for a, _ in units])
    signs = np.array([SIGN[s] for _, s in units])
    active = active_matrix(sub, atoms, signs)  # (units, n_split)
    # each atom's top items on its primary side, for specificity
    ev = atom_evidence(sub, top=ctx.cfg.score_top, nearest=0)
    side_of = {a: s for (a, s), p in zip(units, primary) if p}
    tops = np.zeros((K, C.shape[1]), dtype=np.float32)
    has_top = np.zeros(K, dtype=bool)
    for a, s in side_of.items():
        t = ev.top[s][a]
        t = t[t >= 0]
        if len(t):
            tops[a] = C[t].mean(axis=0)
            has_top[a] = True
    cols = np.flatnonzero(has_top)
    col_of = np.full(K, -1)
    col_of[cols] = np.arange(len(cols))
    faith = np.full(len(E), np.nan)
    spec = np.full(len(E), np.nan)
    for s in range(0, len(E), chunk):
        e, o = E[s : s + chunk], owner[s : s + chunk]
        faith[s : s + chunk] = metrics.faithfulness(e @ C.T, active[o])
        own = np.where(primary[o], col_of[atoms[o]], -1)
        if len(cols):
            spec[s : s + chunk] = metrics.specificity(e @ tops[cols].T, own)
    return faith, spec, active.sum(axis=1)


def choose_descriptions(
    ctx: ExplainContext,
    codes: SparseCodes,
    units: list[tuple[int, str]],
    primary: np.ndarray,
    cands: list[list[tuple[str, str]]],
    K: int,
) -> tuple[list[int], TestScores]:
    """Per unit: the index of its chosen candidate, and every candidate's test scores (NaN
    without captions to score against; then the first candidate is chosen)."""
    chosen = [0] * len(units)
    test_scores: TestScores = [(np.full(len(c), np.nan),) * 2 for c in cands]
    if ctx.caption_unit is None or not units:
        return chosen, test_scores
    texts = [t for c in cands for t, _ in c]
    owner = np.array([u for u, c in enumerate(cands) for _ in c], dtype=np.int64)
    E = ctx.text.embed(texts)
    # the choice uses every item that is not held out for the test scores: the more
    # items, the less a candidate wins by the chance of a few activations
    choice_rows = np.sort(np.concatenate([ctx.split["describe"], ctx.split["select"]]))
    f_sel, s_sel, n_active = candidate_scores(ctx, codes, choice_rows, units, primary, E, owner, K)
    f_test, s_test, _ = candidate_scores(ctx, codes, ctx.split["test"], units, primary, E, owner, K)
    start, choice_f = 0, []
    for u, c in enumerate(cands):
        f, sp = f_sel[start : start + len(c)], s_sel[start : start + len(c)]
        key = [(-1.0 if math.isnan(a) else a, -1.0 if math.isnan(b) else b, -i) for i, (a, b) in enumerate(zip(f, sp))]
        chosen[u] = max(range(len(c)), key=lambda i: key[i]) if c else 0
        choice_f.append(np.array([k[0] for k in key]))
        test_scores[u] = (f_test[start : start + len(c)], s_test[start : start + len(c)])
        start += len(c)
    if ctx.cfg.distinct:
        best = np.array([f[c] if len(f) else np.nan for f, c in zip(choice_f, chosen)])
        # (-1 marks an undefined AUROC: clipped to 0, its standard error is 0)
        margin = metrics.auroc_standard_error(np.clip(best, 0, 1), n_active, len(choice_rows) - n_active)
        distinct_descriptions(cands, chosen, choice_f, primary, np.nan_to_num(margin, nan=0.0))
    return chosen, test_scores


def distinct_descriptions(
    cands: list[list[tuple[str, str]]],
    chosen: list[int],
    choice_f: list[np.ndarray],
    primary: np.ndarray,
    margin: np.ndarray,
) -> None:
    """Give two atoms the same words only when nothing as good is free (a one-standard-error
    rule): in order of their choice faithfulness, each described atom keeps its best
    candidate unless an atom before it holds that text, then takes its best free candidate
    whose choice faithfulness is within ``margin[u]`` (the standard error of its best) of its
    best, else keeps the shared one. ``chosen`` is updated in place; other sides are left alone."""
    taken: set[str] = set()
    order = sorted((u for u in range(len(cands)) if cands[u] and primary[u]), key=lambda u: -choice_f[u][chosen[u]])
    for u in order:
        if metrics.normalize_description(cands[u][chosen[u]][0]) in taken:
            best = choice_f[u][chosen[u]]
            free = [
                i
                for i in np.argsort(-choice_f[u], kind="stable")
                if choice_f[u][i] >= best - margin[u] and metrics.normalize_description(cands[u][i][0]) not in taken
            ]
            if free:
                chosen[u] = int(free[0])
        taken.add(metrics.normalize_description(cands[u][chosen[u]][0]))
