"""The one split helper (dbksvd.data.splits): the rows it draws are pinned, bit for bit, to
the formulas every command used before it existed (compare, explain, the demo, the bridge)."""

import numpy as np
import pytest

from dbksvd.data.splits import MAX_EVAL_ROWS, as_describe_select_test, permutation_split, split_rows
from dbksvd.errors import InputError, ParameterError


def legacy_split_rows(n, test_fraction, val_fraction, seed):
    """compare's split_rows before dbksvd.data.splits (the reference)."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = min(20000, int(round(test_fraction * n)))
    n_val = min(20000, int(round(val_fraction * n)))
    split = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
    return {k: np.sort(v) for k, v in split.items()}


@pytest.mark.parametrize("n", [10, 300, 1361, 50_000, 123_457])
@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("fractions", [(0.2, 0.1), (0.2, 0.2), (0.05, 0.3)])
def test_split_rows_equals_the_earlier_formula(n, seed, fractions):
    old = legacy_split_rows(n, *fractions, seed)
    if any(v.size == 0 for v in old.values()):  # the earlier code raised on an empty part too
        with pytest.raises(InputError, match="split is empty"):
            split_rows(n, *fractions, seed)
        return
    new = split_rows(n, *fractions, seed)
    assert list(new) == ["test", "val", "train"] == list(old)
    for name in old:
        assert new[name].dtype == old[name].dtype and np.array_equal(new[name], old[name]), name
    assert np.array_equal(np.sort(np.concatenate(list(new.values()))), np.arange(n))


def test_split_rows_pinned_values_and_cap():
    s = split_rows(10, 0.2, 0.1, 0)
    assert {k: v.tolist() for k, v in s.items()} == {"test": [4, 6], "val": [2], "train": [0, 1, 3, 5, 7, 8, 9]}
    big = split_rows(250_000, 0.2, 0.1, 0)
    assert big["test"].size == big["val"].size == MAX_EVAL_ROWS and big["train"].size == 210_000


def test_explain_names_are_the_compare_split_renamed():
    s = split_rows(1361, 0.2, 0.2, 3)
    e = as_describe_select_test(s)
    assert list(e) == ["describe", "select", "test"]
    assert e["describe"] is s["train"] and e["select"] is s["val"] and e["test"] is s["test"]


@pytest.mark.parametrize("n, seed", [(1361, 0), (1361, 5), (300, 2)])
def test_permutation_split_reproduces_the_demo_and_the_bridge(n, seed):
    order = np.random.default_rng(seed).permutation(n)
    # the demo: train = the first 80% of the permutation, test the rest, both sorted
    n_train = int(0.8 * n)
    demo = permutation_split(n, seed, [("train", n_train), ("test", None)])
    assert np.array_equal(demo["train"], np.sort(order[:n_train]))
    assert np.array_equal(demo["test"], np.sort(order[n_train:]))
    # the bridge: validation pairs first, in permutation order (unsorted)
    n_val = max(1, int(round(n * 0.2)))
    bridge = permutation_split(n, seed, [("val", n_val), ("fit", None)], sort=False)
    assert np.array_equal(bridge["val"], order[:n_val]) and np.array_equal(bridge["fit"], order[n_val:])


def test_bad_splits():
    with pytest.raises(InputError, match="split is empty"):
        split_rows(3, 0.2, 0.1, 0)
    with pytest.raises(ParameterError, match="only the last part"):
        permutation_split(10, 0, [("a", None), ("b", 3)])
