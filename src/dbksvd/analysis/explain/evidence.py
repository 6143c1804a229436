"""What each atom does on a set of items: how often and how strongly it fires on each side,
its top-activating items, a histogram of its coefficients, and its nearest atoms.

K-SVD codes are signed (an atom and its negation are the same direction), so every statistic
is kept per side: ``pos`` for positive coefficients, ``neg`` for negative ones. SAE codes only
have the positive side. Works for any dictionary: it only needs the codes and the atoms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...coding import SparseCodes
from ...errors import InputError

SIDES = ("pos", "neg")
#: The sign of the coefficients of each side.
SIGN = {"pos": 1, "neg": -1}


@dataclass
class AtomEvidence:
    """Per-atom statistics over ``n`` items (K atoms, ``top`` items per side, ``bins`` bins).

    ``count[s]`` (K,) int: items where the atom's coefficient has sign ``s``; ``mean_abs[s]``
    (K,): mean |coefficient| over those items (0 when none); ``top[s]`` (K, top) int64: row ids
    of the items with the largest |coefficient| on side ``s``, best first, -1 where the atom
    has fewer; ``top_coef[s]`` (K, top): their coefficients (0 where -1); ``hist`` (K, bins)
    int: counts of the non-zero coefficients in ``bins`` equal bins over
    ``[-hist_max, hist_max]``; ``nearest`` (K, q) int and ``nearest_cos`` (K, q): the atoms with
    the largest |cosine| to each atom (signed cosine kept).
    """

    n_items: int
    count: dict[str, np.ndarray]
    mean_abs: dict[str, np.ndarray]
    top: dict[str, np.ndarray]
    top_coef: dict[str, np.ndarray]
    hist: np.ndarray
    hist_max: np.ndarray
    nearest: np.ndarray
    nearest_cos: np.ndarray

    @property
    def n_atoms(self) -> int:
        return self.hist.shape[0]

    def usage(self) -> np.ndarray:
        """(K,) share of the items on which the atom is non-zero (either side)."""
        return (self.count["pos"] + self.count["neg"]) / max(self.n_items, 1)

    def primary_side(self) -> np.ndarray:
        """(K,) ``"pos"`` or ``"neg"``: the side the atom fires on more often (ties: pos)."""
        return np.where(self.count["neg"] > self.count["pos"], "neg", "pos")


def _flat_codes(codes: SparseCodes, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The non-zero entries of ``codes`` as (row id, atom, value) arrays."""
    idx = codes.indices.cpu().numpy()
    val = codes.values.cpu().numpy().astype(np.float64)
    n, k = idx.shape
    item = np.repeat(np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64), k)
    keep = val.ravel() != 0
    return item[keep], idx.ravel()[keep], val.ravel()[keep]


def _top_per_atom(atom: np.ndarray, strength: np.ndarray, K: int, top: int) -> tuple[np.ndarray, np.ndarray]:
    """For entries grouped by ``atom``: positions (into the inputs) of the ``top`` largest
    ``strength`` per atom, as a (K, top) array padded with -1, and its validity mask."""
    order = np.lexsort((-strength, atom))
    a = atom[order]
    starts = np.searchsorted(a, np.arange(K))
    rank = np.arange(len(a)) - starts[a]
    keep = rank < top
    out = np.full((K, top), -1, dtype=np.int64)
    out[a[keep], rank[keep]] = order[keep]
    return out, out >= 0


def _best_of_group(atom: np.ndarray, group: np.ndarray, strength: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(entries,) bool: the entries under ``mask`` with the largest ``strength`` of their (atom,
    group) pair, one per pair."""
    cand = np.flatnonzero(mask)
    order = cand[np.lexsort((-strength[cand], group[cand], atom[cand]))]
    first = np.ones(order.size, dtype=bool)
    first[1:] = (atom[order[1:]] != atom[order[:-1]]) | (group[order[1:]] != group[order[:-1]])
    out = np.zeros(mask.shape, dtype=bool)
    out[order[first]] = True
    return out


def nearest_atoms(
    dictionary: torch.Tensor | np.ndarray, q: int = 5, chunk: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """For each atom of ``dictionary`` (K, d): the ``q`` other atoms with the largest |cosine|,
    (K, q) indices and (K, q) signed cosines, best first."""
    D = torch.as_tensor(np.asarray(dictionary), dtype=torch.float32)
    D = D / torch.linalg.vector_norm(D, dim=1, keepdim=True).clamp_min(1e-12)
    K = D.shape[0]
    q = min(q, K - 1)
    idx = np.zeros((K, q), dtype=np.int64)
    cos = np.zeros((K, q))
    for s in range(0, K, chunk):
        G = D[s : s + chunk] @ D.T
        r = torch.arange(G.shape[0])
        G[r, r + s] = 0.0
        best = G.abs().topk(q, dim=1).indices
        idx[s : s + chunk] = best.numpy()
        cos[s : s + chunk] = G.gather(1, best).double().numpy()
    return idx, cos


def atom_evidence(
    codes: SparseCodes,
    dictionary: torch.Tensor | np.ndarray | None = None,
    *,
    rows: np.ndarray | None = None,
    top: int = 20,
    nearest: int = 5,
    bins: int = 21,
    groups: np.ndarray | None = None,
) -> AtomEvidence:
    """Evidence for every atom from ``codes`` of ``n`` items and the ``dictionary`` (K, d)
    (needed for the ``nearest`` atoms only; ``nearest=0`` skips them).

    ``rows`` (n,): the row ids to report for the coded items (default 0..n-1), e.g. the store
    rows of a held-out split. ``groups`` (n,): a group per coded row (the item of a token or
    patch row): the top rows of an atom then hold its best row of each group only, so that
    one text or image does not fill them; counts and means still count every row.
    """
    K = codes.n_atoms
    if nearest and dictionary is None:
        raise InputError("nearest atoms need the dictionary")
    if dictionary is not None and np.asarray(dictionary).shape[0] != K:
        raise InputError(f"codes refer to {K} atoms but the dictionary has {np.asarray(dictionary).shape[0]}")
    if rows is not None and len(rows) != len(codes):
        raise InputError(f"{len(rows)} row ids for {len(codes)} coded items")
    if groups is not None and len(groups) != len(codes):
        raise InputError(f"{len(groups)} groups for {len(codes)} coded items")
    item, atom, val = _flat_codes(codes, rows)
    group = None if groups is None else _flat_codes(codes, np.asarray(groups))[0]  # each entry's group
    count, mean_abs, tops, coefs = {}, {}, {}, {}
    for side, mask in (("pos", val > 0), ("neg", val < 0)):
        count[side] = np.bincount(atom[mask], minlength=K)
        total = np.bincount(atom[mask], weights=np.abs(val[mask]), minlength=K)
        mean_abs[side] = np.divide(total, count[side], out=np.zeros(K), where=count[side] > 0)
        if group is not None:
            mask = mask & _best_of_group(atom, group, np.abs(val), mask)
        a, v, it = atom[mask], val[mask], item[mask]
        pos, ok = _top_per_atom(a, np.abs(v), K, top)
        tops[side] = np.where(ok, it[np.maximum(pos, 0)] if len(it) else -1, -1)
        coefs[side] = np.where(ok, v[np.maximum(pos, 0)] if len(v) else 0.0, 0.0)
    hist_max = np.zeros(K)
    np.maximum.at(hist_max, atom, np.abs(val))
    scale = np.where(hist_max > 0, hist_max, 1.0)
    b = np.clip(((val / scale[atom] + 1) / 2 * bins).astype(np.int64), 0, bins - 1)
    hist = np.zeros((K, bins), dtype=np.int64)
    np.add.at(hist, (atom, b), 1)
    if nearest:
        near, near_cos = nearest_atoms(dictionary, nearest)
    else:
        near, near_cos = np.zeros((K, 0), dtype=np.int64), np.zeros((K, 0))
    return AtomEvidence(
        n_items=len(codes),
        count=count,
        mean_abs=mean_abs,
        top=tops,
        top_coef=coefs,
        hist=hist,
        hist_max=hist_max,
        nearest=near,
        nearest_cos=near_cos,
    )


def active_matrix(codes: SparseCodes, atoms: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """(len(atoms), n) bool: whether item i's coefficient on ``atoms[u]`` is non-zero with the
    sign ``signs[u]`` (+1 or -1)."""
    n = len(codes)
    item, atom, val = _flat_codes(codes, None)
    unit_of = np.full(codes.n_atoms, -1, dtype=np.int64)
    out = np.zeros((len(atoms), n), dtype=bool)
    for sign in (1, -1):
        chosen = np.asarray(atoms)[np.asarray(signs) == sign]
        unit_of[:] = -1
        unit_of[chosen] = np.flatnonzero(np.asarray(signs) == sign)
        hit = (unit_of[atom] >= 0) & (np.sign(val) == sign)
        out[unit_of[atom[hit]], item[hit]] = True
    return out


def code_rows(codes: SparseCodes, rows: np.ndarray) -> SparseCodes:
    """The codes of the items ``rows`` (indices into ``codes``), in that order."""
    r = torch.as_tensor(rows, dtype=torch.long)
    return SparseCodes(codes.indices[r], codes.values[r], codes.n_atoms)
