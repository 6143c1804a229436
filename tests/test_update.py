"""The atom update against a dense SVD, and the replacement rules."""

import numpy as np
import torch
from conftest import unit_rows

from dbksvd import sparse_encode
from dbksvd.update import atom_usage, near_duplicates, replace_atoms, residual, split_atoms, update_atoms


def _problem(rng, n=400, d=16, K=32, k=4):
    D = torch.from_numpy(unit_rows(rng, K, d))
    X = torch.from_numpy(rng.standard_normal((n, d)))
    return X, D, sparse_encode(X, D, k)


def test_svd_update_gives_each_atoms_top_singular_pair(rng):
    X, D, codes = _problem(rng)
    R = residual(X, D, codes).numpy()
    dense = codes.to_dense().numpy()
    new_D, new_codes, new_R = update_atoms(
        X, D, codes, [torch.arange(32)], method="svd", max_power_iter=500, power_tol=1e-13
    )
    new_dense = new_codes.to_dense().numpy()
    for j in range(32):
        w = np.flatnonzero(dense[:, j])
        if w.size == 0:
            continue
        E = R[w] + np.outer(dense[w, j], D[j].numpy())  # restricted residual from the snapshot
        U, S, Vt = np.linalg.svd(E, full_matrices=False)
        v = Vt[0] * np.sign(Vt[0] @ D[j].numpy())
        assert abs(float(new_D[j].numpy() @ v)) > 1 - 1e-8
        np.testing.assert_allclose(new_dense[w, j], E @ new_D[j].numpy(), atol=1e-8)
        np.testing.assert_allclose(np.linalg.norm(new_dense[w, j]), S[0], rtol=1e-6)
    # support unchanged, residual returned is the true residual
    assert torch.equal(new_codes.indices, codes.indices)
    np.testing.assert_allclose(new_R.numpy(), (X - new_codes.reconstruct(new_D)).numpy(), atol=1e-10)


def test_updates_never_increase_the_loss(rng):
    X, D, codes = _problem(rng)
    before = float(residual(X, D, codes).square().sum())
    for method in ["power", "svd"]:
        for batches in [[torch.arange(32)], split_atoms(torch.randperm(32), 5), split_atoms(torch.arange(32), 1)]:
            new_D, new_codes, R = update_atoms(X, D, codes, batches, method=method)
            after = float(R.square().sum())
            assert after <= before + 1e-9
            assert torch.allclose(torch.linalg.vector_norm(new_D, dim=1), torch.ones(32, dtype=D.dtype))


def test_sequential_batches_beat_one_jacobi_batch(rng):
    X, D, codes = _problem(rng, n=600, K=48)
    _, _, R_jacobi = update_atoms(X, D, codes, [torch.arange(48)], method="svd")
    _, _, R_seq = update_atoms(X, D, codes, split_atoms(torch.arange(48), 1), method="svd")
    assert float(R_seq.square().sum()) <= float(R_jacobi.square().sum())


def test_split_atoms_covers_each_atom_once():
    parts = split_atoms(torch.randperm(10), 3)
    assert [p.numel() for p in parts] == [3, 3, 2, 2] or sum(p.numel() for p in parts) == 10
    assert sorted(torch.cat(parts).tolist()) == list(range(10))


def test_near_duplicates_mark_the_less_used_atom():
    D = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.999, 0.0447]])
    D = D / D.norm(dim=1, keepdim=True)
    assert near_duplicates(D, torch.tensor([5, 5, 1])).tolist() == [False, False, True]
    assert near_duplicates(D, torch.tensor([1, 5, 5])).tolist() == [True, False, False]


def test_replace_atoms_uses_worst_rows(rng):
    X = torch.tensor([[1.0, 0.0], [0.0, 3.0], [2.0, 2.0]])
    R = torch.tensor([[0.1, 0.0], [0.0, 2.0], [1.0, 0.0]])
    D = torch.eye(2)
    out = replace_atoms(D, X, R, torch.tensor([False, True]))
    np.testing.assert_allclose(out[1].numpy(), [0.0, 1.0])  # row 1 has the largest residual
    np.testing.assert_allclose(out[0].numpy(), [1.0, 0.0])
    usage = atom_usage(sparse_encode(X, D, 1))
    assert usage.tolist() == [2, 1] or usage.sum() == 3
