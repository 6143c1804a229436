"""Every metric pinned on numbers worked out by hand (see docs/metrics.md)."""

import math

import numpy as np
import pytest
import torch

from dbksvd import InputError, SparseCodes, metrics

# x1 = (3, 4), x̂1 = (3, 0): r1 = (0, 4), ‖r1‖ = 4, ‖x1‖ = 5
# x2 = (0, 2), x̂2 = (0, 1): r2 = (0, 1), ‖r2‖ = 1, ‖x2‖ = 2
X = np.array([[3.0, 4.0], [0.0, 2.0]])
X_HAT = np.array([[3.0, 0.0], [0.0, 1.0]])


def test_explained_signal_by_hand():
    # 1 - mean(4/5, 1/2) = 1 - 0.65
    assert metrics.explained_signal(X, X_HAT) == pytest.approx(0.35, abs=1e-12)


def test_fvu_is_over_the_whole_set_and_centred():
    # Σ‖r‖² = 16 + 1 = 17; x̄ = (1.5, 3); Σ‖x - x̄‖² = (2.25 + 1) · 2 = 6.5
    assert metrics.fvu(X, X_HAT) == pytest.approx(17 / 6.5, abs=1e-12)
    assert metrics.explained_variance(X, X_HAT) == pytest.approx(1 - 17 / 6.5, abs=1e-12)
    # The wrong formulas others shipped give different numbers here:
    assert metrics.fvu(X, X_HAT) != pytest.approx(17 / 29)  # not centred


def test_fvu_second_case():
    # x̄ = (2/3, 2/3): Σ‖x - x̄‖² = 4/3; only row 3 is missed: Σ‖r‖² = 2
    Xb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    Xh = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert metrics.fvu(Xb, Xh) == pytest.approx(1.5, abs=1e-12)
    # a per-row average of ratios would give mean(0, 0, 2 / (2/9)) = 3
    assert metrics.fvu(Xb, Xh) != pytest.approx(3.0)


def test_cosine_by_hand():
    # cos = 9 / (5·3) = 0.6 and 2 / (2·1) = 1
    assert metrics.cosine(X, X_HAT) == pytest.approx(0.8, abs=1e-12)
    assert metrics.cosine([[1.0, 0.0]], [[0.0, 0.0]]) == 0.0


def test_l0_and_dead_atoms_by_hand():
    dense = np.array([[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 3.0, 0.0]])
    assert metrics.l0(dense) == pytest.approx(1.5)
    codes = SparseCodes(torch.tensor([[0, 2], [2, 0]]), torch.tensor([[1.0, 2.0], [3.0, 0.0]]), 4)
    assert metrics.l0(codes) == pytest.approx(1.5)
    # atoms 1 and 3 never used; with rare_fraction 0.6 an atom needs >= 1.2 rows: atom 0 (1 row) is rare too
    assert metrics.dead_atoms(codes) == {"dead": 2, "rare": 2}
    assert metrics.dead_atoms(codes, rare_fraction=0.6) == {"dead": 2, "rare": 3}


def test_coherence_by_hand():
    D = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    # |⟨d1,d2⟩| = 0.6, |⟨d1,d3⟩| = 0, |⟨d2,d3⟩| = 0.8 -> per-atom max (0.6, 0.8, 0.8)
    c = metrics.coherence(D)
    assert c["max"] == pytest.approx(0.8)
    assert c["mean_max"] == pytest.approx((0.6 + 0.8 + 0.8) / 3)


def test_atom_recovery_threshold():
    true = np.eye(2)
    a = math.acos(1 - 0.005)  # 1 - cos = 0.005 < 0.01: recovered
    b = math.acos(1 - 0.02)  # 1 - cos = 0.02: not recovered
    learned = np.array([[math.cos(a), math.sin(a)], [-math.sin(b), -math.cos(b)]])
    assert metrics.atom_recovery(true, learned) == pytest.approx(0.5)
    assert metrics.atom_recovery(true, -true) == 1.0  # sign does not matter


def test_reconstruction_metrics_collects_all():
    out = metrics.reconstruction_metrics(X, X_HAT, np.array([[1.0, 0.0], [0.0, 2.0]]), np.eye(2))
    assert out["explained_signal"] == pytest.approx(0.35)
    assert out["l0"] == 1.0 and out["dead_atoms"] == 0 and out["max_coherence"] == 0.0


def test_metric_errors():
    with pytest.raises(InputError, match="shape"):
        metrics.fvu(X, X_HAT[:1])
    with pytest.raises(InputError, match="zero variance"):
        metrics.fvu(np.ones((3, 2)), np.ones((3, 2)))
    with pytest.raises(InputError, match="every row of X is zero"):
        metrics.explained_signal(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(InputError, match="NaN"):
        metrics.cosine(np.array([[np.nan, 1.0]]), np.ones((1, 2)))


# -- explanation metrics ----------------------------------------------------------------


def test_faithfulness_auroc_by_hand():
    # row 0: active items score 0.9 and 0.4, inactive 0.5 and 0.1 -> pairs (0.9>0.5, 0.9>0.1,
    # 0.4<0.5, 0.4>0.1): 3 of 4 -> 0.75. Row 1: a tie between an active and an inactive item
    # counts one half: active {0.5}, inactive {0.5, 0.2} -> (0.5 + 1) / 2 = 0.75.
    S = [[0.9, 0.5, 0.4, 0.1], [0.5, 0.5, 0.2, 0.0]]
    A = [[True, False, True, False], [True, False, False, False]]
    got = metrics.faithfulness(S, A)
    assert got[0] == pytest.approx(0.75)
    # row 1: active 0.5 vs inactive 0.5 (1/2), 0.2 (1), 0.0 (1) -> 2.5 / 3
    assert got[1] == pytest.approx(2.5 / 3)
    perfect = metrics.faithfulness([[3.0, 2.0, 1.0]], [[True, True, False]])
    assert perfect[0] == 1.0
    assert metrics.faithfulness([[3.0, 2.0, 1.0]], [[False, True, True]])[0] == 0.0


def test_auroc_standard_error_by_hand():
    # Hanley & McNeil (1982): A = 0.5, 10 + 10 items: Q1 = Q2 = 1/3,
    # var = (0.25 + 9 (1/3 - 1/4) + 9 (1/3 - 1/4)) / 100 = 0.0175
    assert metrics.auroc_standard_error(0.5, 10, 10) == pytest.approx(np.sqrt(0.0175))
    # A = 0.8, 50 + 50: Q1 = 2/3, Q2 = 1.28 / 1.8; var = (0.16 + 49 (Q1 - 0.64) + 49 (Q2 - 0.64)) / 2500
    q1, q2 = 0.8 / 1.2, 1.28 / 1.8
    assert metrics.auroc_standard_error(0.8, 50, 50) == pytest.approx(
        np.sqrt((0.16 + 49 * (q1 - 0.64) + 49 * (q2 - 0.64)) / 2500)
    )
    got = metrics.auroc_standard_error([0.7, 0.7, 0.7], [5, 50, 0], [100, 1000, 10])
    assert got[0] > got[1] > 0 and np.isnan(got[2])  # more items, smaller error; none: undefined


def test_faithfulness_undefined_without_both_classes():
    got = metrics.faithfulness([[1.0, 2.0], [1.0, 2.0]], [[True, True], [False, False]])
    assert np.isnan(got).all()
    with pytest.raises(InputError, match="shape"):
        metrics.faithfulness([[1.0, 2.0]], [[True]])


def test_specificity_reciprocal_rank_by_hand():
    M = np.array(
        [
            [0.9, 0.2, 0.1],  # own column 0 ranks first -> 1
            [0.8, 0.5, 0.6],  # own column 1: two higher -> rank 3 -> 1/3
            [0.4, 0.4, 0.4],  # own column 2 tied with two others -> rank 1 + 2/2 = 2
            [0.1, 0.2, 0.3],
        ]
    )  # no held-out items -> NaN
    got = metrics.specificity(M, [0, 1, 2, -1])
    assert got[:3] == pytest.approx([1.0, 1 / 3, 0.5])
    assert np.isnan(got[3])
    # a candidate without held-out items (NaN column) is not counted
    assert metrics.specificity([[0.5, np.nan, 0.9]], [0])[0] == pytest.approx(0.5)


def test_diversity_counts_distinct_normalised_descriptions():
    assert metrics.diversity(["Flag", "flag ", "red  heart", None, "cat"]) == pytest.approx(3 / 4)
    with pytest.raises(InputError, match="no atom"):
        metrics.diversity([None, None])


def test_recall_at_k_by_hand():
    S = [
        [0.9, 0.1, 0.3],  # target 0 first -> hit @1
        [0.9, 0.1, 0.3],  # target 2 second -> miss @1, hit @2
        [0.5, 0.5, 0.1],
    ]  # target 1 tied with entry 0 -> counted as second
    got = metrics.recall_at_k(S, [0, 2, 1], ks=(1, 2))
    assert got == {"recall@1": pytest.approx(1 / 3), "recall@2": pytest.approx(1.0)}
    with pytest.raises(InputError, match="gallery indices"):
        metrics.recall_at_k(S, [0, 3, 1])


def test_probe_retention_by_hand():
    # two classes split by the sign of the first feature: the probe gets every original test
    # row right; zeroing the first feature of the reconstructions leaves it at chance or worse
    rng = np.random.default_rng(0)
    X_train = rng.standard_normal((200, 3))
    y_train = (X_train[:, 0] > 0).astype(int)
    X_test = np.array([[2.0, 0.1, 0.0], [-2.0, 0.0, 0.1], [1.5, -0.2, 0.0], [-1.5, 0.2, 0.0]])
    y_test = np.array([1, 0, 1, 0])
    predict = metrics.linear_probe(X_train, y_train)
    same = metrics.probe_retention(predict, X_test, X_test, y_test)
    assert same == {"probe_accuracy": 1.0, "probe_accuracy_reconstructed": 1.0, "probe_retention": 1.0}
    flipped = metrics.probe_retention(predict, X_test, -X_test, y_test)
    assert flipped["probe_accuracy_reconstructed"] == 0.0 and flipped["probe_retention"] == 0.0
    # an accuracy of 0 on the originals leaves the retention undefined
    assert math.isnan(metrics.probe_retention(predict, -X_test, X_test, y_test)["probe_retention"])


def test_unit_rows():
    A = np.array([[3, 4], [0, 0], [1e-10, 0]])  # a zero row stays zero, a tiny row is scaled up
    U = metrics.unit_rows(A)
    assert U.dtype == np.float64
    np.testing.assert_allclose(U, [[0.6, 0.8], [0, 0], [1, 0]])
    assert metrics.unit_rows(A.astype(np.float32)).dtype == np.float32
    U32 = metrics.unit_rows(A, np.float32)
    assert U32.dtype == np.float32 and np.isfinite(U32).all()
    np.testing.assert_allclose(np.linalg.norm(U32[[0, 2]], axis=1), 1, rtol=1e-6)
