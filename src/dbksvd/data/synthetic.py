"""A planted sparse-coding problem: signals built from a known dictionary, plus white noise.

This is the synthetic test of Aharon, Elad & Bruckstein (2006): random unit atoms, each signal
a combination of ``n_nonzero`` atoms at random positions with i.i.d. Gaussian coefficients,
and Gaussian noise at a chosen SNR. A learner that finds the true atoms "recovers" them
(:func:`dbksvd.metrics.atom_recovery`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..coding import SparseCodes
from ..validation import check_n_nonzero, check_positive_int


@dataclass(frozen=True)
class SparseProblem:
    """``X`` (n, d) = ``codes`` (n, K) @ ``dictionary`` (K, d) + noise."""

    X: np.ndarray
    dictionary: np.ndarray
    codes: SparseCodes
    snr_db: float | None


def make_sparse_problem(
    n_samples: int,
    n_features: int,
    n_atoms: int,
    n_nonzero: int,
    *,
    snr_db: float | None = None,
    random_state: int | None = None,
    dtype: type = np.float32,
) -> SparseProblem:
    """Draw a planted problem; ``snr_db=None`` means no noise (SNR ∞).

    The noise is scaled so that ``‖signal‖²_F / ‖noise‖²_F = 10^(snr_db / 10)``.
    """
    n = check_positive_int(n_samples, "n_samples")
    d = check_positive_int(n_features, "n_features")
    K = check_positive_int(n_atoms, "n_atoms")
    k = check_n_nonzero(n_nonzero, K, d)
    rng = np.random.default_rng(random_state)
    D = rng.standard_normal((K, d))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    idx = _supports(rng, n, K, k)
    val = rng.standard_normal((n, k))
    X = _combine(val, idx, D)
    if snr_db is not None:
        noise = rng.standard_normal(X.shape)
        noise *= np.linalg.norm(X) / (np.linalg.norm(noise) * 10 ** (snr_db / 20))
        X += noise
        del noise
    codes = SparseCodes(torch.from_numpy(idx), torch.from_numpy(val.astype(dtype)), K)
    return SparseProblem(X.astype(dtype, copy=False), D.astype(dtype), codes, snr_db)


# Temporaries are bounded by about this many float64 elements (32 MiB), whatever n is.
_CHUNK_ELEMENTS = 1 << 22


def _rows_per_chunk(row_elements: int) -> int:
    return max(1, _CHUNK_ELEMENTS // max(1, row_elements))


def _supports(rng: np.random.Generator, n: int, K: int, k: int) -> np.ndarray:
    """(n, k) int64 distinct atom ids per row, a uniform random ordered sample, in row chunks.

    K <= 4096 (or k large against K): the ``k`` smallest of ``K`` uniform keys per row. The keys
    are drawn chunk by chunk; consecutive ``rng.random`` calls continue one stream, so the result
    is that of ``np.argsort(rng.random((n, K)), axis=1)[:, :k]`` without the (n, K) temporary.
    Otherwise Floyd's algorithm, O(k²) per row instead of O(K), then a random order per row.
    """
    keys = K <= 4096 or k * k > 8 * K
    out = np.empty((n, k), dtype=np.int64)
    step = _rows_per_chunk(K if keys else k)
    for a in range(0, n, step):
        rows = min(step, n - a)
        out[a : a + rows] = _smallest_keys(rng.random((rows, K)), k) if keys else _floyd(rng, rows, K, k)
    return out


def _smallest_keys(keys: np.ndarray, k: int) -> np.ndarray:
    """Per row, the positions of the ``k`` smallest keys, smallest first (argsort's first ``k``)."""
    part = np.argpartition(keys, k - 1, axis=1)[:, :k]
    return np.take_along_axis(part, np.argsort(np.take_along_axis(keys, part, axis=1), axis=1), axis=1)


def _floyd(rng: np.random.Generator, rows: int, K: int, k: int) -> np.ndarray:
    """(rows, k) uniform k-subsets of range(K) by Floyd's algorithm, each row in random order."""
    S = np.empty((rows, k), dtype=np.int64)
    for s, j in enumerate(range(K - k, K)):
        t = rng.integers(0, j + 1, size=rows)
        S[:, s] = np.where((S[:, :s] == t[:, None]).any(axis=1), j, t)
    return rng.permuted(S, axis=1)


def _combine(val: np.ndarray, idx: np.ndarray, D: np.ndarray) -> np.ndarray:
    """(n, d) float64 ``X[i] = Σ_s val[i, s] D[idx[i, s]]``, in row chunks of (rows, k, d) gathers."""
    n, k = idx.shape
    X = np.empty((n, D.shape[1]))
    step = _rows_per_chunk(k * D.shape[1])
    for a in range(0, n, step):
        np.einsum("nk,nkd->nd", val[a : a + step], D[idx[a : a + step]], out=X[a : a + step])
    return X
