"""Sparse coders against a plain reference, their invariants, and their input checks."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import unit_rows
from hypothesis import given, settings
from hypothesis import strategies as st

import dbksvd.coding as coding
from dbksvd import InputError, ParameterError, SparseCodes, sparse_encode

BACKENDS = ["numba", "torch"]


def reference_omp(x, D, k):
    """Greedy OMP written the textbook way: pick argmax |Dᵀr|, least squares on the support."""
    support, r, coef = [], x.copy(), np.zeros(0)
    for _ in range(k):
        corr = np.abs(D @ r)
        corr[support] = -1
        support.append(int(np.argmax(corr)))
        coef, *_ = np.linalg.lstsq(D[support].T, x, rcond=None)
        r = x - D[support].T @ coef
    return support, coef


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(300, 30, 60, 8), (200, 64, 128, 16), (100, 20, 20, 20)])
def test_omp_matches_reference(backend, shape, rng):
    n, d, K, k = shape
    D = unit_rows(rng, K, d)
    X = rng.standard_normal((n, d))
    codes = sparse_encode(X, D, k, backend=backend)
    idx, val = codes.to_numpy()
    assert val.dtype == np.float64
    same, worst = 0, 0.0
    for i in range(n):
        support, coef = reference_omp(X[i], D, k)
        if set(support) == set(idx[i]):
            same += 1
            got = dict(zip(idx[i], val[i]))
            worst = max(worst, max(abs(got[s] - c) / abs(c) for s, c in zip(support, coef)))
    assert same / n >= 0.99
    assert worst < 1e-4


def test_backends_agree_in_float32(rng):
    D = unit_rows(rng, 256, 48, np.float32)
    X = rng.standard_normal((500, 48)).astype(np.float32)
    a = sparse_encode(X, D, 12, backend="numba")
    b = sparse_encode(X, D, 12, backend="torch")
    assert a.values.dtype == torch.float32
    sa = [set(r) for r in a.indices.numpy()]
    sb = [set(r) for r in b.indices.numpy()]
    assert np.mean([x == y for x, y in zip(sa, sb)]) >= 0.99
    assert torch.allclose(a.reconstruct(D), b.reconstruct(D), atol=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("refit", [False, True])
def test_mp_never_increases_residual_and_refit_helps(backend, refit, rng):
    D = unit_rows(rng, 80, 24)
    X = rng.standard_normal((300, 24))
    codes = sparse_encode(X, D, 6, coder="mp", refit=refit, backend=backend)
    res = np.linalg.norm(X - codes.reconstruct(D).numpy(), axis=1)
    assert np.all(res <= np.linalg.norm(X, axis=1) + 1e-9)
    assert codes.nnz_per_row().max() <= 6
    if refit:
        plain = sparse_encode(X, D, 6, coder="mp", backend=backend)
        res_plain = np.linalg.norm(X - plain.reconstruct(D).numpy(), axis=1)
        assert np.all(res <= res_plain + 1e-9)
        assert np.mean(res) < np.mean(res_plain)


def test_mp_backends_same_supports(rng):
    D = unit_rows(rng, 100, 32)
    X = rng.standard_normal((200, 32))
    a = sparse_encode(X, D, 8, coder="mp", backend="numba")
    b = sparse_encode(X, D, 8, coder="mp", backend="torch")
    assert all(
        set(x[v != 0]) == set(y[w != 0])
        for x, v, y, w in zip(a.indices.numpy(), a.values.numpy(), b.indices.numpy(), b.values.numpy())
    )


def test_exact_sparse_signals_are_recovered(rng):
    D = unit_rows(rng, 64, 32)
    C = np.zeros((50, 64))
    for i in range(50):
        C[i, rng.choice(64, 3, replace=False)] = rng.uniform(1, 2, 3) * rng.choice([-1, 1], 3)
    X = C @ D
    for backend in BACKENDS:
        codes = sparse_encode(X, D, 3, backend=backend)
        np.testing.assert_allclose(codes.to_dense().numpy(), C, atol=1e-8)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("algorithm", ["omp", "mp"])
def test_tol_stops_early_and_is_respected(backend, algorithm, rng):
    D = unit_rows(rng, 60, 20)
    X = rng.standard_normal((200, 20))
    codes = sparse_encode(X, D, 10, coder=algorithm, tol=0.6, backend=backend, max_steps=400)
    nnz = codes.nnz_per_row().numpy()
    res = np.linalg.norm(X - codes.reconstruct(D).numpy(), axis=1) / np.linalg.norm(X, axis=1)
    assert nnz.mean() < 10
    assert np.all(res[nnz < 10] <= 0.6 + 1e-9)


def test_chunking_changes_nothing_and_bounds_chunks(rng, monkeypatch):
    D = unit_rows(rng, 40, 16)
    X = rng.standard_normal((103, 16))
    whole = sparse_encode(X, D, 4)
    seen = []
    real = coding._encode_numba
    monkeypatch.setattr(coding, "_encode_numba", lambda P, *a: seen.append(P.shape[0]) or real(P, *a))
    chunked = sparse_encode(X, D, 4, batch_size=10)
    assert max(seen) == 10 and sum(seen) == 103
    assert torch.equal(whole.indices, chunked.indices)
    assert torch.allclose(whole.values, chunked.values)


def test_sparse_codes_views_agree(rng):
    D = unit_rows(rng, 30, 10)
    X = rng.standard_normal((20, 10))
    codes = sparse_encode(X, D, 4, tol=0.5)
    dense = codes.to_dense().numpy()
    assert dense.shape == (20, 30) and codes.shape == (20, 30)
    csr = codes.to_scipy()
    assert sp.isspmatrix_csr(csr) and csr.nnz == int(codes.nnz_per_row().sum())
    np.testing.assert_allclose(csr.toarray(), dense)
    np.testing.assert_allclose(codes.reconstruct(D).numpy(), dense @ D, atol=1e-12)
    again = SparseCodes.from_dense(dense, 4)
    np.testing.assert_allclose(again.to_dense().numpy(), dense)
    both = SparseCodes.hstack([codes, codes])
    np.testing.assert_allclose(both.reconstruct(np.vstack([D, D])).numpy(), 2 * dense @ D, atol=1e-12)


def test_vstack_pads_blocks_of_different_widths():
    wide = SparseCodes(torch.tensor([[0, 2, 4], [1, 3, 0]]), torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 0.0]]), 5)
    narrow = SparseCodes(torch.tensor([[3], [2]]), torch.tensor([[6.0], [7.0]]), 5)
    for parts in ([wide, narrow], [narrow, wide]):
        out = SparseCodes.vstack(parts)
        assert out.indices.shape == (4, 3)
        torch.testing.assert_close(out.to_dense(), torch.cat([p.to_dense() for p in parts]))
    padded = SparseCodes.vstack([wide, narrow])
    # unused slots: value 0 at the row's first index (valid), as the pursuit kernels pad
    assert padded.indices[2:, 1:].tolist() == [[3, 3], [2, 2]] and not padded.values[2:, 1:].any()


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 12),
    d=st.integers(2, 12),
    extra=st.integers(0, 20),
    k=st.integers(1, 12),
    algorithm=st.sampled_from(["omp", "mp"]),
    tol=st.sampled_from([None, 0.0, 0.3, 0.9]),
    backend=st.sampled_from(BACKENDS),
    seed=st.integers(0, 2**31),
)
def test_coder_invariants(n, d, extra, k, algorithm, tol, backend, seed):
    rng = np.random.default_rng(seed)
    K = d + extra
    k = min(k, d, K)
    D = unit_rows(rng, K, d)
    X = rng.standard_normal((n, d)) * rng.uniform(0.01, 100)
    codes = sparse_encode(X, D, k, coder=algorithm, tol=tol, backend=backend, refit=algorithm == "mp")
    idx, val = codes.to_numpy()
    assert idx.shape == (n, k) and idx.min() >= 0 and idx.max() < K
    for i in range(n):
        used = idx[i][val[i] != 0]
        assert len(used) == len(set(used)) <= k
    xn = np.linalg.norm(X, axis=1)
    res = np.linalg.norm(X - codes.reconstruct(D).numpy(), axis=1)
    assert np.all(res <= xn * (1 + 1e-9))
    if tol is not None and algorithm == "omp":
        short = codes.nnz_per_row().numpy() < k
        assert np.all(res[short] <= tol * xn[short] + 1e-7 * xn[short])


@pytest.mark.parametrize(
    "X, D, k, err, words",
    [
        (np.full((3, 4), np.nan), None, 2, InputError, "NaN"),
        (np.array([[1.0, np.inf, 0, 0]]), None, 2, InputError, "inf"),
        (np.ones(4), None, 2, InputError, "2-D"),
        (np.ones((2, 2, 4)), None, 2, InputError, "2-D"),
        (np.ones((3, 5)), None, 2, InputError, "features"),
        (np.ones((3, 4)), np.vstack([np.eye(4), -np.eye(4)]), 5, ParameterError, "exceeds the number of features"),
        (np.ones((3, 4)), np.eye(4)[:2], 3, ParameterError, "exceeds the number of atoms"),
        (np.ones((3, 4)), np.zeros((0, 4)), 1, InputError, "empty"),
        (np.zeros((0, 4)), None, 2, InputError, "empty"),
        (np.array([[1, "a"]], dtype=object), None, 1, InputError, "dtype object"),
        (np.ones((3, 4)), 2 * np.eye(4), 2, InputError, "unit norm"),
        (np.ones((3, 4)), None, 0, ParameterError, ">= 1"),
    ],
)
def test_bad_input_is_named(X, D, k, err, words):
    D = np.eye(4) if D is None else D
    with pytest.raises(err) as info:
        sparse_encode(X, D, k)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_integer_input_is_converted():
    codes = sparse_encode(np.array([[3, 0, 4, 0]]), np.eye(4), 2)
    assert codes.values.dtype == torch.float32
    np.testing.assert_allclose(codes.to_dense().numpy(), [[3, 0, 4, 0]])


def test_bad_options_are_named():
    with pytest.raises(ParameterError, match="algorithm"):
        sparse_encode(np.ones((1, 4)), np.eye(4), 1, algorithm="lasso")  # the old name is named back
    with pytest.raises(ParameterError, match="tol"):
        sparse_encode(np.ones((1, 4)), np.eye(4), 1, tol=-1)
    with pytest.raises(ParameterError, match="CUDA"):
        if torch.cuda.is_available():
            pytest.skip("CUDA present")
        sparse_encode(np.ones((1, 4)), np.eye(4), 1, device="cuda")


def test_concurrent_calls_from_threads_agree(rng):
    from concurrent.futures import ThreadPoolExecutor

    D = unit_rows(rng, 64, 16, np.float32)
    X = rng.standard_normal((400, 16)).astype(np.float32)
    expected = sparse_encode(X, D, 5)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda alg: sparse_encode(X, D, 5, coder=alg), ["omp", "mp"] * 4))
    for codes in results[::2]:
        assert torch.equal(codes.indices, expected.indices)
    assert all(torch.equal(a.indices, results[1].indices) for a in results[1::2])


def test_threshold_keeps_the_largest_projections_without_explaining_away():
    D = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.6, 0.8, 0.0]])
    X = np.array([[3.0, 1.0, 2.0]])
    # projections: 3, 1, 1.8 + 0.8 = 2.6 -> atoms 0 and 2, coefficients the projections
    codes = sparse_encode(X, D, 2, coder="detector")
    got = dict(zip(codes.indices[0].tolist(), codes.values[0].tolist()))
    assert got == pytest.approx({0: 3.0, 2: 2.6})
    omp = sparse_encode(X, D, 2, coder="omp")  # OMP's second atom explains the residual instead
    assert sorted(omp.indices[0].tolist()) == [0, 1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_threshold_refit_is_least_squares_on_the_detector_support(backend, rng):
    """Thresholding pursuit: the support of the bare reading, coefficients from least squares."""
    D = unit_rows(rng, 60, 30)
    X = rng.standard_normal((80, 30))
    bare = sparse_encode(X, D, 6, coder="detector", backend=backend)
    fitted = sparse_encode(X, D, 6, coder="threshold", backend=backend)
    assert torch.equal(bare.indices, fitted.indices)
    idx, val = fitted.to_numpy()
    for i in range(len(X)):
        coef, *_ = np.linalg.lstsq(D[idx[i]].T, X[i], rcond=None)
        np.testing.assert_allclose(val[i], coef, rtol=1e-6, atol=1e-8)

    # least squares on the same support never reconstructs worse than the projections
    def err(c):
        return np.linalg.norm(X - c.reconstruct(torch.as_tensor(D)).numpy(), axis=1)

    assert np.all(err(fitted) <= err(bare) + 1e-9) and err(fitted).mean() < 0.95 * err(bare).mean()


def test_old_option_names_keep_their_meaning(rng):
    """sparse_encode(algorithm=...) (deprecated) is coder=...: 'threshold' without a refit was
    the detector reading, with one the thresholding pursuit."""
    D = unit_rows(rng, 40, 20)
    X = rng.standard_normal((30, 20))
    for old, new in [
        (dict(algorithm="omp"), dict(coder="omp")),
        (dict(algorithm="threshold"), dict(coder="detector")),
        (dict(algorithm="threshold", refit=True), dict(coder="threshold")),
    ]:
        with pytest.warns(DeprecationWarning, match="coder"):
            a = sparse_encode(X, D, 4, **old)
        b = sparse_encode(X, D, 4, **new)
        assert torch.equal(a.indices, b.indices) and torch.equal(a.values, b.values)
    with pytest.raises(ParameterError, match="coder must be one of"):
        sparse_encode(X, D, 4, coder="lasso")
