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
    idx = np.argsort(rng.random((n, K)), axis=1)[:, :k] if K <= 4096 else _distinct(rng, n, K, k)
    val = rng.standard_normal((n, k))
    X = np.einsum("nk,nkd->nd", val, D[idx]) if n * k * d <= 1 << 26 else _combine(val, idx, D)
    if snr_db is not None:
        noise = rng.standard_normal(X.shape)
        noise *= np.linalg.norm(X) / (np.linalg.norm(noise) * 10 ** (snr_db / 20))
        X = X + noise
    codes = SparseCodes(torch.from_numpy(idx.astype(np.int64)), torch.from_numpy(val.astype(dtype)), K)
    return SparseProblem(X.astype(dtype), D.astype(dtype), codes, snr_db)


def _distinct(rng: np.random.Generator, n: int, K: int, k: int) -> np.ndarray:
    """(n, k) distinct atom ids per row, without an (n, K) temporary."""
    out = np.empty((n, k), dtype=np.int64)
    for i in range(n):
        out[i] = rng.choice(K, size=k, replace=False)
    return out


def _combine(val: np.ndarray, idx: np.ndarray, D: np.ndarray) -> np.ndarray:
    X = np.zeros((val.shape[0], D.shape[1]))
    for s in range(idx.shape[1]):
        X += val[:, s, None] * D[idx[:, s]]
    return X
