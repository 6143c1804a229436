"""Named row splits drawn from one seeded permutation: the only place rows are split.

Every split of dbksvd cuts ``np.random.default_rng(seed).permutation(n)`` into consecutive
named parts, so the same ``n`` and ``seed`` always give the same rows:

* :func:`split_rows`: ``test`` / ``val`` / ``train`` by fractions (``dbksvd compare``);
* :func:`as_describe_select_test`: the same split under the names ``dbksvd explain`` uses
  (train = describe, val = select, test = test);
* :func:`permutation_split`: any parts by row counts, e.g. the demo's 80/20 split
  ``permutation_split(n, seed, [("train", int(0.8 * n)), ("test", None)])``;
* :func:`split_by_item`: the same split of a token or patch store's *items* (texts, images),
  each part then holding every row of its items, so that no test token's context was seen in
  training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import InputError, ParameterError

#: Test and validation parts of :func:`split_rows` hold at most this many rows each.
MAX_EVAL_ROWS = 20000


def permutation_split(
    n: int, seed: int, parts: Sequence[tuple[str, int | None]], *, sort: bool = True
) -> dict[str, np.ndarray]:
    """Row ids of ``range(n)`` cut into named parts of one random permutation.

    ``parts``: ``(name, rows)`` pairs, taken in order from ``default_rng(seed).permutation(n)``;
    ``rows=None`` (the last part only) takes every row left. Returns ``{name: (rows,) int64}``
    in the order of ``parts``, each sorted unless ``sort=False`` (then in permutation order).
    """
    if any(count is None for _, count in parts[:-1]):
        raise ParameterError("only the last part of a split may take the rest (rows=None)")
    order = np.random.default_rng(seed).permutation(n)
    out: dict[str, np.ndarray] = {}
    start = 0
    for name, count in parts:
        stop = n if count is None else start + count
        out[name] = np.sort(order[start:stop]) if sort else order[start:stop]
        start = stop
    return out


def split_rows(
    n: int, test_fraction: float, val_fraction: float, seed: int, *, max_rows: int = MAX_EVAL_ROWS
) -> dict[str, np.ndarray]:
    """Sorted row ids of one ``test`` / ``val`` / ``train`` split of ``n`` rows (in that order).

    ``test`` takes ``round(test_fraction * n)`` rows and ``val`` ``round(val_fraction * n)``,
    each at most ``max_rows``; ``train`` takes the rest. An empty part is an
    :class:`~dbksvd.errors.InputError`.
    """
    n_test = min(max_rows, int(round(test_fraction * n)))
    n_val = min(max_rows, int(round(val_fraction * n)))
    split = permutation_split(n, seed, [("test", n_test), ("val", n_val), ("train", None)])
    for name, rows in split.items():
        if rows.size == 0:
            raise InputError(f"the {name} split is empty ({n} rows; test_fraction/val_fraction leave none)")
    return split


def as_describe_select_test(split: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A ``train`` / ``val`` / ``test`` split under the names of ``dbksvd explain``:
    ``{"describe": train, "select": val, "test": test}``."""
    return {"describe": split["train"], "select": split["val"], "test": split["test"]}


def split_by_item(
    item_of_row: np.ndarray, test_fraction: float, val_fraction: float, seed: int, *, max_rows: int = MAX_EVAL_ROWS
) -> dict[str, np.ndarray]:
    """Sorted row ids of a ``test`` / ``val`` / ``train`` split by item: ``item_of_row`` (n,)
    gives each row's item; items are split as :func:`split_rows` splits rows (the fractions
    count items), then ``test`` and ``val`` keep whole items, in their random order, while
    they have at most ``max_rows`` rows (at least one item each). Every row of an item lands
    in one part."""
    item_of_row = np.asarray(item_of_row, dtype=np.int64)
    items, inverse, counts = np.unique(item_of_row, return_inverse=True, return_counts=True)
    n_items = items.size
    n_test = int(round(test_fraction * n_items))
    n_val = int(round(val_fraction * n_items))
    parts = permutation_split(n_items, seed, [("test", n_test), ("val", n_val), ("train", None)], sort=False)
    keep = {}
    for name in ("test", "val"):
        order = parts[name]
        fits = np.cumsum(counts[order]) <= max_rows
        fits[:1] = True  # at least one item
        keep[name] = order[fits]
        parts["train"] = np.concatenate([parts["train"], order[~fits]])
    keep["train"] = parts["train"]
    out = {}
    for name in ("test", "val", "train"):
        chosen = np.zeros(n_items, bool)
        chosen[keep[name]] = True
        rows = np.flatnonzero(chosen[inverse]) if keep[name].size else np.zeros(0, np.int64)
        if rows.size == 0:
            raise InputError(f"the {name} split is empty ({n_items} items; test_fraction/val_fraction leave none)")
        out[name] = rows
    return out
