"""Sparse coding: find codes ``C`` (n, K) with at most k non-zeros per row so that ``C D ≈ X``.

The pursuits are driven by the Gram matrix ``G = D Dᵀ`` (K, K) and the correlations
``P = X Dᵀ`` (n, K), computed one chunk of rows at a time so memory stays bounded:

* ``"omp"``: exact orthogonal matching pursuit, the Batch-OMP way (Cholesky factor grown one
  row per step, never a per-row least-squares solve from scratch).
* ``"mp"``: matching pursuit as KSVD.jl does it (atoms may be picked again), with an optional
  least-squares refit on the support.
* ``"threshold"``: the thresholding pursuit (each row's k atoms with the largest |⟨x, D_j⟩|,
  least-squares coefficients), and ``"detector"``: the same atoms with the projections as
  coefficients (each atom read as a detector).

The pursuits are named the same everywhere (``coder`` of :func:`sparse_encode`, of
:class:`~dbksvd.DBKSVD` and of ``transform``); docs/algorithm.md gives their costs.
Codes are :class:`SparseCodes` of torch tensors on every path; convert them with
:meth:`SparseCodes.to_numpy`, :meth:`~SparseCodes.to_scipy` or :meth:`~SparseCodes.to_dense`.

Back ends: compiled per-row kernels (:mod:`dbksvd._kernels`, numba) on the CPU, and the same
algorithms as batched torch operations on any device (CUDA). Both give the same supports.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .validation import (
    as_matrix,
    check_choice,
    check_dictionary,
    check_n_nonzero,
    check_positive_int,
    check_tol,
    float_dtype,
    matrix_source,
    resolve_device,
)

#: every pursuit sparse_encode runs (``dbksvd.config.READINGS``)
CODERS = ("omp", "mp", "threshold", "detector")
BACKENDS = ("auto", "numba", "torch")


@dataclass(frozen=True)
class SparseCodes:
    """Sparse codes in fixed-width form: row i uses atoms ``indices[i]`` with ``values[i]``.

    ``indices`` (n, k) int64 and ``values`` (n, k) are torch tensors on one device. A slot
    whose value is 0 is unused (its index is arbitrary but valid). ``n_atoms`` is K, the size
    of the dictionary the codes refer to.

    The rule for types: codes are always torch tensors (on the CPU when a model's
    ``transform`` made them, on the computing device for :func:`sparse_encode`), whatever the
    input; dense results of a model (``components_``, ``inverse_transform``) are numpy, as in
    scikit-learn. :meth:`to_numpy`, :meth:`to_scipy` and :meth:`to_dense` convert.
    """

    indices: torch.Tensor
    values: torch.Tensor
    n_atoms: int
    #: (n,) norms of the input rows, kept when a model normalised them before coding, so that
    #: ``inverse_transform`` can map reconstructions back (see :mod:`dbksvd.preprocessing`).
    row_norms: torch.Tensor | None = None

    def __post_init__(self):
        if self.indices.shape != self.values.shape or self.indices.ndim != 2:
            raise ValueError(
                f"indices {tuple(self.indices.shape)} and values {tuple(self.values.shape)} must be equal 2-D shapes"
            )
        if self.row_norms is not None and tuple(self.row_norms.shape) != (self.indices.shape[0],):
            raise ValueError(f"row_norms has shape {tuple(self.row_norms.shape)}; expected ({self.indices.shape[0]},)")

    @property
    def shape(self) -> tuple[int, int]:
        """(n, K): the shape of the dense code matrix."""
        return (self.indices.shape[0], self.n_atoms)

    def __len__(self) -> int:
        return self.indices.shape[0]

    def nnz_per_row(self) -> torch.Tensor:
        """(n,) int64: atoms actually used by each row."""
        return (self.values != 0).sum(dim=1)

    def to(self, device: Any) -> SparseCodes:
        norms = None if self.row_norms is None else self.row_norms.to(device)
        return SparseCodes(self.indices.to(device), self.values.to(device), self.n_atoms, norms)

    def with_row_norms(self, row_norms: torch.Tensor | None) -> SparseCodes:
        """The same codes carrying ``row_norms`` (n,)."""
        return SparseCodes(self.indices, self.values, self.n_atoms, row_norms)

    def to_dense(self) -> torch.Tensor:
        """(n, K) dense code matrix (only for inputs small enough to hold it)."""
        out = torch.zeros(self.shape, dtype=self.values.dtype, device=self.values.device)
        return out.scatter_add_(1, self.indices, self.values)

    def to_scipy(self):
        """(n, K) ``scipy.sparse.csr_matrix`` without the unused slots."""
        import scipy.sparse as sp

        idx = self.indices.cpu().numpy().copy()  # copies: scipy edits its arrays in place
        val = self.values.cpu().numpy().copy()
        n, k = idx.shape
        mat = sp.csr_matrix((val.ravel(), idx.ravel(), np.arange(0, n * k + 1, k)), shape=self.shape)
        mat.eliminate_zeros()
        mat.sum_duplicates()
        return mat

    def to_numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, values)`` as numpy arrays."""
        return self.indices.cpu().numpy(), self.values.cpu().numpy()

    def reconstruct(self, dictionary: Any) -> torch.Tensor:
        """``C D`` (n, d) for a dictionary (K, d), without forming the dense codes."""
        D = dictionary if isinstance(dictionary, torch.Tensor) else torch.as_tensor(np.asarray(dictionary))
        if D.ndim != 2 or D.shape[0] != self.n_atoms:
            raise ValueError(f"codes refer to {self.n_atoms} atoms but the dictionary has shape {tuple(D.shape)}")
        D = D.to(device=self.values.device, dtype=self.values.dtype)
        if len(self) == 0:
            return D.new_zeros((0, D.shape[1]))
        return torch.nn.functional.embedding_bag(self.indices, D, per_sample_weights=self.values, mode="sum")

    @classmethod
    def from_dense(cls, codes: Any, n_nonzero: int | None = None) -> SparseCodes:
        """Codes from a dense (n, K) matrix; keeps the ``n_nonzero`` largest magnitudes per row."""
        C = codes if isinstance(codes, torch.Tensor) else torch.as_tensor(np.asarray(codes))
        k = n_nonzero if n_nonzero is not None else max(1, int((C != 0).sum(dim=1).max()) if C.numel() else 1)
        k = min(k, C.shape[1])
        _, idx = C.abs().topk(k, dim=1)
        return cls(idx, C.gather(1, idx), C.shape[1])

    @classmethod
    def hstack(cls, parts: list[SparseCodes]) -> SparseCodes:
        """Codes over consecutive dictionaries ``D_1, D_2, ...`` as codes over their stack."""
        offset = 0
        idx, val = [], []
        for p in parts:
            idx.append(p.indices + offset)
            val.append(p.values)
            offset += p.n_atoms
        return cls(torch.cat(idx, dim=1), torch.cat(val, dim=1), offset, parts[0].row_norms)

    @classmethod
    def vstack(cls, parts: list[SparseCodes]) -> SparseCodes:
        """Codes of consecutive row blocks (same dictionary) as one set of codes. Blocks may
        differ in width (e.g. an SAE whose rows use a varying number of latents): narrower
        ones are padded with unused slots (value 0, index the row's first, as the pursuit
        kernels pad)."""
        norms = None if parts[0].row_norms is None else torch.cat([p.row_norms for p in parts])
        width = max(p.indices.shape[1] for p in parts)
        idx, val = [], []
        for p in parts:
            extra = width - p.indices.shape[1]
            if extra == 0:
                idx.append(p.indices)
                val.append(p.values)
                continue
            fill = p.indices[:, :1] if p.indices.shape[1] else p.indices.new_zeros((len(p), 1))
            idx.append(torch.cat([p.indices, fill.expand(-1, extra)], dim=1))
            val.append(torch.cat([p.values, p.values.new_zeros((len(p), extra))], dim=1))
        return cls(torch.cat(idx), torch.cat(val), parts[0].n_atoms, norms)


#: Up to this many rows, ``backend="auto"`` codes with torch on the CPU too.
FEW_ROWS = 16


def gram(dictionary: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """``G = D Dᵀ`` (K, K), exactly symmetric.

    Computed as the upper block triangle (blocks of ``block`` atoms) mirrored below the
    diagonal: for K = 4096 that is 10 of 16 block products, 37% fewer flops than ``D @ D.T``.
    """
    K = dictionary.shape[0]
    if block >= K:
        G = dictionary @ dictionary.T
        return (G + G.T) / 2
    G = torch.empty((K, K), dtype=dictionary.dtype, device=dictionary.device)
    for i in range(0, K, block):
        rows = dictionary[i : i + block]
        upper = rows @ dictionary[i:].T  # blocks (i, j >= i)
        G[i : i + block, i:] = upper
        G[i + block :, i : i + block] = upper[:, block:].T
    for i in range(0, K, block):  # the diagonal blocks themselves: symmetrise
        B = G[i : i + block, i : i + block]
        B.copy_((B + B.T) / 2)
    return G


def default_batch_size(n_atoms: int, n_nonzero: int, device: torch.device, backend: str) -> int:
    """Rows per chunk: the chunk's working set near 64 MiB on the CPU (1 GiB on CUDA).

    On the CPU the numba kernels need only the (rows, K) correlations; 4096 rows at K=4096
    measured ~10% faster than 8192 for OMP (same speed for MP).
    """
    if device.type == "cuda":
        budget = 1 << 28  # elements
    else:
        budget = 1 << 24 if backend == "numba" else 1 << 25
    per_row = n_atoms * (n_nonzero + 3) if backend == "torch" else n_atoms
    cap = 1 << 16 if device.type == "cuda" else 8192
    return int(max(16, min(cap, budget // max(1, per_row))))


def sparse_encode(
    X: Any,
    dictionary: Any,
    n_nonzero: int,
    *,
    coder: str = "omp",
    tol: float | None = None,
    refit: bool = False,
    batch_size: int | None = None,
    device: Any = None,
    backend: str = "auto",
    max_steps: int | None = None,
    gram_matrix: torch.Tensor | None = None,
    algorithm: str | None = None,
) -> SparseCodes:
    """Sparse-code the rows of ``X`` (n, d) against ``dictionary`` (K, d) with unit-norm rows.

    Parameters
    ----------
    n_nonzero : k, the most atoms a row may use (1 <= k <= min(K, d)).
    coder : the pursuit: ``"omp"`` (exact OMP, Batch-OMP), ``"mp"`` (matching pursuit),
        ``"threshold"`` (the thresholding pursuit: the k atoms with the largest |⟨x, D_j⟩|,
        least-squares coefficients on them) or ``"detector"`` (the same atoms with the
        projections ⟨x, D_j⟩ as coefficients: no explaining away, each atom read as a
        detector, e.g. to ask which items an atom responds to rather than which atoms
        reconstruct an item best).
    tol : ``"omp"``/``"mp"``: stop a row early once ‖x - x̂‖ <= tol · ‖x‖.
    refit : ``"mp"`` only: least-squares coefficients on the chosen support at the end.
    algorithm : the old name of ``coder`` (deprecated): ``algorithm="threshold"`` is
        ``coder="detector"``, or ``coder="threshold"`` with ``refit=True``.
    batch_size : rows per chunk (memory is bounded by it); default from K and k.
    device : where to compute; default the device of ``X`` (CPU for numpy input).
    backend : ``"auto"`` (numba kernels on CPU for more than ``FEW_ROWS`` (16) rows, torch
        otherwise), ``"numba"`` or ``"torch"``.
    max_steps : ``"mp"`` only: most pursuit steps per row (default 4k).
    gram_matrix : ``D Dᵀ`` when the caller already has it.

    Returns
    -------
    SparseCodes with ``indices``/``values`` of shape (n, k) on ``device``, in the dtype of
    ``X`` (float32 unless float64 was given).
    """
    if algorithm is not None:
        warnings.warn("sparse_encode(algorithm=...) is now coder=...", DeprecationWarning, stacklevel=2)
        coder = "detector" if algorithm == "threshold" and not refit else algorithm
    coder = check_choice(coder, "coder" if algorithm is None else "algorithm", CODERS)
    backend = check_choice(backend, "backend", BACKENDS)
    tol = check_tol(tol)
    dev = resolve_device(device, like=X if isinstance(X, torch.Tensor) else None)
    src = matrix_source(X, "X")
    n, d = src.shape
    D = check_dictionary(dictionary, d, dtype=float_dtype(src), device=dev)
    K = D.shape[0]
    k = check_n_nonzero(n_nonzero, K, d)
    if max_steps is None:
        max_steps = 4 * k
    max_steps = check_positive_int(max_steps, "max_steps")
    if backend == "auto":
        # a few rows code as fast in torch, which needs no process-wide kernel lock: concurrent
        # callers (the explorer's requests) then do not queue behind each other
        backend = "numba" if dev.type == "cpu" and n > FEW_ROWS else "torch"
    if backend == "numba" and dev.type != "cpu":
        backend = "torch"
    batch_size = check_positive_int(batch_size, "batch_size", allow_none=True) or default_batch_size(K, k, dev, backend)
    if coder == "detector":
        G = None
    else:
        G = gram(D) if gram_matrix is None else gram_matrix.to(device=dev, dtype=D.dtype)

    out_idx = torch.empty((n, k), dtype=torch.int64, device=dev)
    out_val = torch.empty((n, k), dtype=D.dtype, device=dev)
    for start in range(0, n, batch_size):
        Xb = as_matrix(src[start : start + batch_size], "X", dtype=D.dtype, device=dev)
        P = Xb @ D.T
        if coder in ("threshold", "detector"):
            idx = P.abs().topk(k, dim=1).indices
            val = P.gather(1, idx)
            if coder == "threshold":
                val = _refit(P, G, idx, val, backend)
            out_idx[start : start + batch_size] = idx
            out_val[start : start + batch_size] = val
            continue
        x2 = torch.linalg.vector_norm(Xb, dim=1, dtype=torch.float64).square()
        tol2 = x2 * (tol * tol) if tol else torch.zeros_like(x2)
        if backend == "numba":
            idx, val = _encode_numba(P, G, x2, tol2, k, coder, refit, max_steps)
        else:
            idx, val = _encode_torch(P, G, x2, tol2, k, coder, refit, max_steps)
        out_idx[start : start + batch_size] = idx
        out_val[start : start + batch_size] = val
    return SparseCodes(out_idx, out_val, K)


# ---------------------------------------------------------------------------------------------
# CPU back end: compiled kernels


def _eps(dtype: torch.dtype) -> float:
    """Relative pivot below which an atom counts as lying in the span of the support."""
    return 1e-5 if dtype == torch.float32 else 1e-10


_KERNEL_LOCK = threading.Lock()  # numba's workqueue threading layer is not thread-safe


def _encode_numba(P, G, x2, tol2, k, algorithm, refit, max_steps):
    import numba

    from . import _kernels

    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    Pn = P.contiguous().numpy()
    Gn = G.contiguous().numpy()
    x2n = x2.numpy()
    tol2n = tol2.numpy()
    idx = np.empty((Pn.shape[0], k), dtype=np.int64)
    val = np.empty((Pn.shape[0], k), dtype=Pn.dtype)
    with _KERNEL_LOCK:
        if algorithm == "omp":
            _kernels.omp_gram(Pn, Gn, x2n, k, tol2n, _eps(P.dtype), idx, val)
        else:
            _kernels.mp_gram(Pn, Gn, x2n, k, tol2n, max_steps, idx, val)
            if refit:
                _kernels.refit_gram(Pn, Gn, idx, val)
    return torch.from_numpy(idx), torch.from_numpy(val)


def _refit(P, G, idx, val, backend):
    """Least-squares coefficients on the supports ``idx`` (n, k) (slots with value 0 unused)."""
    if backend != "numba":
        return _refit_torch(P, G, idx, val)
    import numba

    from . import _kernels

    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    idx_n = idx.contiguous().numpy()
    val_n = val.contiguous().numpy().copy()
    with _KERNEL_LOCK:
        _kernels.refit_gram(P.contiguous().numpy(), G.contiguous().numpy(), idx_n, val_n)
    return torch.from_numpy(val_n)


# ---------------------------------------------------------------------------------------------
# Any-device back end: the same algorithms as batched tensor operations


def _encode_torch(P, G, x2, tol2, k, algorithm, refit, max_steps):
    if algorithm == "omp":
        return _omp_torch(P, G, x2, tol2, k)
    idx, val = _mp_torch(P, G, x2, tol2, k, max_steps)
    if refit:
        val = _refit_torch(P, G, idx, val)
    return idx, val


def _omp_torch(P, G, x2, tol2, k):
    """Batch-OMP in the progressive form of :mod:`dbksvd._kernels`, all rows at once.

    P (B, K), G (K, K), x2/tol2 (B,) float64 -> indices (B, k), values (B, k).
    """
    B, K = P.shape
    dev, dt = P.device, P.dtype
    rows = torch.arange(B, device=dev)
    W = torch.zeros((B, k, K), dtype=dt, device=dev)
    alpha = P.clone()
    idx = torch.zeros((B, k), dtype=torch.int64, device=dev)
    z = torch.zeros((B, k), dtype=torch.float64, device=dev)
    diag = torch.ones((B, k), dtype=torch.float64, device=dev)
    used = torch.zeros((B, k), dtype=torch.bool, device=dev)
    r2 = x2.clone()
    active = r2 > tol2
    eps = _eps(dt)
    for t in range(k):
        best, j = alpha.abs().max(dim=1)
        l = W[rows, :t, j]  # (B, t): the new Cholesky row
        gjj = G[j, j].double()
        d2 = gjj - l.double().square().sum(dim=1)
        active = active & (best > 0) & (d2 > eps * gjj)
        if not bool(active.any()):
            break
        ltt = torch.sqrt(torch.where(active, d2, torch.ones_like(d2)))
        zt = torch.where(active, alpha[rows, j].double() / ltt, torch.zeros_like(d2))
        idx[:, t] = torch.where(active, j, idx[:, 0] if t else j)
        z[:, t] = zt
        diag[:, t] = ltt
        used[:, t] = active
        r2 = r2 - zt * zt
        if t + 1 == k:
            break
        w = G[j] - torch.bmm(l.unsqueeze(1), W[:, :t]).squeeze(1) if t else G[j].clone()
        w = w / ltt.to(dt).unsqueeze(1)
        W[:, t] = w
        alpha = alpha - zt.to(dt).unsqueeze(1) * w
        alpha.scatter_(1, idx[:, : t + 1], 0.0)
        active = active & (r2 > tol2)
    # gamma = L⁻ᵀ z with L[b, s, u] = W[b, u, idx[b, s]] (u < s), diag on the diagonal;
    # unused slots become identity rows so that they decouple (z = 0 there).
    L = W.gather(2, idx.unsqueeze(1).expand(B, k, k)).transpose(1, 2).double()  # L[b, s, u]
    L = torch.tril(L, diagonal=-1) * (used.unsqueeze(2) & used.unsqueeze(1))
    L = L + torch.diag_embed(torch.where(used, diag, torch.ones_like(diag)))
    gamma = torch.linalg.solve_triangular(L.transpose(1, 2), z.unsqueeze(2), upper=True).squeeze(2)
    val = torch.where(used, gamma, torch.zeros_like(gamma)).to(dt)
    idx = torch.where(used, idx, idx[:, :1])
    return idx, val


def _mp_torch(P, G, x2, tol2, k, max_steps):
    """Matching pursuit with the Gram matrix for all rows at once (see ``_kernels.mp_gram``)."""
    B, K = P.shape
    dev, dt = P.device, P.dtype
    rows = torch.arange(B, device=dev)
    p = P.clone()
    coef = torch.zeros((B, K), dtype=dt, device=dev)
    picked = torch.zeros((B, K), dtype=torch.bool, device=dev)
    count = torch.zeros(B, dtype=torch.int64, device=dev)
    r2 = x2.clone()
    done = r2 <= tol2
    diagG = torch.diagonal(G)
    for _ in range(max_steps):
        best, j = p.abs().max(dim=1)
        new = ~picked[rows, j]
        done = done | (best <= 0) | (new & (count >= k))
        if bool(done.all()):
            break
        a = torch.where(done, torch.zeros_like(best), p[rows, j] / diagG[j])
        r2 = r2 - (a * p[rows, j]).double()
        coef[rows, j] += a
        picked[rows, j] |= ~done
        count += (new & ~done).long()
        p = p - a.unsqueeze(1) * G[j]
        done = done | (r2 <= tol2)
    score = torch.where(picked, coef.abs() + 1, torch.zeros_like(coef))
    top, idx = score.topk(k, dim=1)
    val = torch.where(top > 0, coef.gather(1, idx), torch.zeros((), dtype=dt, device=dev))
    idx = torch.where(top > 0, idx, idx[:, :1])
    return idx, val


def _refit_torch(P, G, idx, val):
    """Least-squares coefficients on each row's support (slots with value 0 are unused)."""
    used = val != 0
    Gs = G[idx.unsqueeze(2), idx.unsqueeze(1)].double()
    mask = used.unsqueeze(2) & used.unsqueeze(1)
    eye = torch.diag_embed((~used).double())
    A = Gs * mask + eye
    rhs = torch.where(used, P.gather(1, idx).double(), torch.zeros((), dtype=torch.float64, device=P.device))
    sol, info = torch.linalg.solve_ex(A, rhs)
    ok = (info == 0).unsqueeze(1) & used
    return torch.where(ok, sol.to(val.dtype), val)
