"""The planted problem: shapes, supports, dictionary, noise level, determinism, bounded chunks."""

import numpy as np
import pytest
import torch

from dbksvd import ParameterError
from dbksvd.data import make_sparse_problem, synthetic

# (n, d, K, k): K <= 4096 uses the uniform-key sampler; K > 4096 with small k uses Floyd's;
# K > 4096 with k * k > 8K falls back to the keys.
CASES = [(300, 20, 50, 3), (200, 16, 16, 16), (150, 64, 5000, 8), (40, 128, 4100, 128)]


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of a few rows, so that every case runs through several of them."""
    monkeypatch.setattr(synthetic, "_CHUNK_ELEMENTS", 1 << 12)


@pytest.mark.parametrize("n, d, K, k", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shapes_supports_and_dictionary(n, d, K, k, dtype, small_chunks):
    p = make_sparse_problem(n, d, K, k, snr_db=20, random_state=0, dtype=dtype)
    assert p.X.shape == (n, d) and p.X.dtype == dtype
    assert p.dictionary.shape == (K, d) and p.dictionary.dtype == dtype
    assert p.codes.shape == (n, K) and p.codes.indices.shape == (n, k)
    assert p.codes.indices.dtype == torch.int64 and p.codes.values.dtype == torch.from_numpy(np.zeros(1, dtype)).dtype
    idx = p.codes.indices.numpy()
    assert idx.min() >= 0 and idx.max() < K
    assert all(len(np.unique(row)) == k for row in idx), "atoms repeat within a row"
    np.testing.assert_allclose(np.linalg.norm(p.dictionary.astype(np.float64), axis=1), 1.0, atol=1e-6)
    assert p.snr_db == 20


@pytest.mark.parametrize("n, d, K, k", CASES)
def test_no_noise_is_exactly_the_codes_times_the_dictionary(n, d, K, k, small_chunks):
    p = make_sparse_problem(n, d, K, k, random_state=1, dtype=np.float64)
    assert p.snr_db is None
    np.testing.assert_allclose(p.X, p.codes.reconstruct(p.dictionary).numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("snr", [30.0, 20.0, 10.0, 0.0])
@pytest.mark.parametrize("K", [64, 5000])
def test_snr_is_honoured(snr, K, small_chunks):
    p = make_sparse_problem(2000, 32, K, 4, snr_db=snr, random_state=2)
    signal = p.codes.reconstruct(p.dictionary).numpy().astype(np.float64)
    noise = p.X.astype(np.float64) - signal
    measured = np.sum(signal**2) / np.sum(noise**2)
    assert measured == pytest.approx(10 ** (snr / 10), rel=0.01)


@pytest.mark.parametrize("n, d, K, k", CASES)
def test_deterministic_per_seed(n, d, K, k):
    a, b = (make_sparse_problem(n, d, K, k, snr_db=30, random_state=7) for _ in range(2))
    c = make_sparse_problem(n, d, K, k, snr_db=30, random_state=8)
    for x, y in (
        (a.X, b.X),
        (a.dictionary, b.dictionary),
        (a.codes.indices, b.codes.indices),
        (a.codes.values, b.codes.values),
    ):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    assert not np.array_equal(a.X, c.X)
    assert not np.array_equal(a.codes.indices.numpy(), c.codes.indices.numpy())


@pytest.mark.parametrize("chunk", [1 << 8, 1 << 12, 1 << 22])
def test_key_supports_equal_one_argsort_whatever_the_chunk(chunk, monkeypatch):
    """K <= 4096: chunked draws give the supports of one (n, K) argsort, as before chunking."""
    monkeypatch.setattr(synthetic, "_CHUNK_ELEMENTS", chunk)
    n, d, K, k = 500, 8, 300, 6
    p = make_sparse_problem(n, d, K, k, random_state=3)
    rng = np.random.default_rng(3)
    rng.standard_normal((K, d))  # the dictionary comes first
    expected = np.argsort(rng.random((n, K)), axis=1)[:, :k]
    assert np.array_equal(p.codes.indices.numpy(), expected)
    assert np.array_equal(p.codes.values.numpy(), rng.standard_normal((n, k)).astype(np.float32))


def test_floyd_supports_are_uniform():
    """Each atom equally likely overall and in the first and last slots (chi-square per dof ~ 1)."""
    n, K, k = 40_000, 4200, 32  # without the final shuffle, atom K-1 would fill ~0.7% of last slots
    idx = synthetic._supports(np.random.default_rng(4), n, K, k)
    for counts, expected in (
        (np.bincount(idx.ravel(), minlength=K), n * k / K),
        (np.bincount(idx[:, 0], minlength=K), n / K),
        (np.bincount(idx[:, -1], minlength=K), n / K),
    ):
        assert ((counts - expected) ** 2 / expected).sum() / (K - 1) == pytest.approx(1.0, abs=0.1)


def test_bad_parameters():
    with pytest.raises(ParameterError):
        make_sparse_problem(10, 4, 8, 5)  # k > d
    with pytest.raises(ParameterError):
        make_sparse_problem(10, 8, 4, 5)  # k > K
