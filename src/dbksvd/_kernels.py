"""Compiled per-row pursuit kernels for the CPU (numba), parallel over rows.

These are the CPU back end of :mod:`dbksvd.coding`; the same algorithms written with batched
torch operations (for CUDA) live there. Both take the correlations ``P = X Dᵀ`` (n, K) and the
Gram matrix ``G = D Dᵀ`` (K, K), so the only O(d) work is the one GEMM done by the caller.

OMP, progressive form. With ``I`` the support after t steps and ``G_II = L Lᵀ`` its Cholesky
factor, keep ``W = G[:, I] L⁻ᵀ`` (K × t) and ``z = L⁻¹ p_I``. Then the residual correlations are
``alpha = p - W z``, the new Cholesky row is the row of ``W`` at the new atom (no triangular
solve), each step adds one column to ``W`` at cost O(K t), and ``‖r‖² = ‖x‖² - ‖z‖²`` gives the
stopping test without forming the residual. The coefficients are ``Lᵀ⁻¹ z`` at the end. This is
exactly Batch-OMP (Rubinstein, Zibulevsky & Elad 2008), with ``W`` kept in the per-thread cache
instead of re-reading t columns of the (large, shared) Gram matrix at every step.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np


@nb.njit(fastmath=True, cache=True, nogil=True)
def _argmax_abs(a):
    best = -1.0
    j = 0
    for q in range(a.shape[0]):
        v = abs(a[q])
        if v > best:
            best = v
            j = q
    return j, best


@nb.njit(parallel=True, cache=True)
def omp_gram(P, G, x2, k, tol2, eps, out_idx, out_val):
    """Batch-OMP over rows. P (n, K), G (K, K), x2 and tol2 (n,) float64; outputs (n, k)."""
    n, K = P.shape
    n_chunks = min(64, n)
    per = (n + n_chunks - 1) // n_chunks
    for c in nb.prange(n_chunks):
        W = np.empty((k, K), dtype=P.dtype)
        alpha = np.empty(K, dtype=P.dtype)
        z = np.empty(k, dtype=np.float64)
        lbuf = np.empty(k, dtype=P.dtype)  # the hot loops stay in the data's precision
        scal = np.empty(2, dtype=P.dtype)
        diag = np.empty(k, dtype=np.float64)
        for i in range(c * per, min(n, (c + 1) * per)):
            t = _omp_row(P[i], G, x2[i], k, tol2[i], eps, W, alpha, z, lbuf, scal, diag, out_idx[i], out_val[i])
            _pad(out_idx[i], out_val[i], t)


@nb.njit(fastmath=True, cache=True, nogil=True)
def _pad(idx, val, t):
    fill = idx[0] if t > 0 else 0
    for s in range(t, idx.shape[0]):
        idx[s] = fill
        val[s] = 0.0


@nb.njit(fastmath=True, cache=True, nogil=True)
def _omp_row(p, G, x2, k, tol2, eps, W, alpha, z, lbuf, scal, diag, idx, val):
    """Batch-OMP of one row (see module docstring). Returns the number of atoms used."""
    K = p.shape[0]
    for q in range(K):
        alpha[q] = p[q]
    r2 = x2
    j, best = _argmax_abs(alpha)
    t = 0
    while t < k and r2 > tol2 and best > 0.0:
        ll = 0.0
        for s in range(t):
            ls = W[s, j]
            lbuf[s] = ls
            ll += ls * ls
        gjj = G[j, j]
        d2 = gjj - ll
        if d2 <= eps * gjj:
            break
        ltt = math.sqrt(d2)
        zt = alpha[j] / ltt
        z[t] = zt
        diag[t] = ltt
        idx[t] = j
        r2 -= zt * zt
        if t + 1 == k or r2 <= tol2:
            t += 1
            break  # the last column of W is never needed
        w = W[t]
        gj = G[j]
        for q in range(K):
            w[q] = gj[q]
        s = 0
        while s + 4 <= t:
            a0 = lbuf[s]
            a1 = lbuf[s + 1]
            a2 = lbuf[s + 2]
            a3 = lbuf[s + 3]
            w0 = W[s]
            w1 = W[s + 1]
            w2 = W[s + 2]
            w3 = W[s + 3]
            for q in range(K):
                w[q] -= a0 * w0[q] + a1 * w1[q] + a2 * w2[q] + a3 * w3[q]
            s += 4
        while s < t:
            a0 = lbuf[s]
            w0 = W[s]
            for q in range(K):
                w[q] -= a0 * w0[q]
            s += 1
        scal[0] = 1.0 / ltt
        scal[1] = zt
        inv = scal[0]
        zs = scal[1]
        for q in range(K):
            w[q] *= inv
            alpha[q] -= zs * w[q]
        t += 1
        for s in range(t):
            alpha[idx[s]] = 0.0  # zero in exact arithmetic; never pick an atom twice
        j, best = _argmax_abs(alpha)
    # gamma = L⁻ᵀ z, with L[u, s] = W[s, idx[u]] below the diagonal and diag[s] on it.
    for s in range(t - 1, -1, -1):
        acc = z[s]
        for u in range(s + 1, t):
            acc -= W[s, idx[u]] * val[u]
        val[s] = acc / diag[s]
    return t


@nb.njit(parallel=True, cache=True)
def mp_gram(P, G, x2, k, tol2, max_steps, out_idx, out_val):
    """Matching pursuit over rows with the Gram matrix (atoms may be picked again).

    A row stops when it would need a (k+1)-th distinct atom, when ‖r‖² <= tol2, after
    ``max_steps`` steps, or when no atom correlates with the residual. Each step lowers
    ‖r‖² by p_j² / G_jj, so the residual never grows.
    """
    n, K = P.shape
    n_chunks = min(64, n)
    per = (n + n_chunks - 1) // n_chunks
    for c in nb.prange(n_chunks):
        p = np.empty(K, dtype=P.dtype)
        for i in range(c * per, min(n, (c + 1) * per)):
            idx = out_idx[i]
            val = out_val[i]
            for q in range(K):
                p[q] = P[i, q]
            r2 = x2[i]
            t = 0
            j, best = _argmax_abs(p)
            for _ in range(max_steps):
                if r2 <= tol2[i] or best <= 0.0:
                    break
                slot = -1
                for s in range(t):
                    if idx[s] == j:
                        slot = s
                        break
                if slot < 0:
                    if t == k:
                        break
                    slot = t
                    idx[t] = j
                    val[t] = 0.0
                    t += 1
                gjj = G[j, j]
                a = p[j] / gjj
                val[slot] += a
                r2 -= a * p[j]
                gj = G[j]
                best = -1.0
                jn = 0
                for q in range(K):
                    v = p[q] - a * gj[q]
                    p[q] = v
                    av = abs(v)
                    if av > best:
                        best = av
                        jn = q
                j = jn
            _pad(idx, val, t)


@nb.njit(parallel=True, cache=True)
def refit_gram(P, G, idx, val):
    """Least-squares coefficients on each row's support: solve G_II gamma = P_I (Cholesky).

    Slots with value 0 are treated as unused. Rows whose Gram block is not positive
    definite keep their values.
    """
    n, k = idx.shape
    for i in nb.prange(n):
        t = 0
        for s in range(k):
            if val[i, s] != 0.0:
                t += 1
        if t == 0:
            continue
        sel = np.empty(t, dtype=np.int64)
        slots = np.empty(t, dtype=np.int64)
        u = 0
        for s in range(k):
            if val[i, s] != 0.0:
                sel[u] = idx[i, s]
                slots[u] = s
                u += 1
        L = np.zeros((t, t), dtype=np.float64)
        ok = True
        for a in range(t):
            for b in range(a + 1):
                acc = np.float64(G[sel[a], sel[b]])
                for c in range(b):
                    acc -= L[a, c] * L[b, c]
                if a == b:
                    if acc <= 1e-12:
                        ok = False
                        break
                    L[a, a] = math.sqrt(acc)
                else:
                    L[a, b] = acc / L[b, b]
            if not ok:
                break
        if not ok:
            continue
        y = np.empty(t, dtype=np.float64)
        for a in range(t):
            acc = np.float64(P[i, sel[a]])
            for c in range(a):
                acc -= L[a, c] * y[c]
            y[a] = acc / L[a, a]
        for a in range(t - 1, -1, -1):
            acc = y[a]
            for c in range(a + 1, t):
                acc -= L[c, a] * y[c]
            y[a] = acc / L[a, a]
        for a in range(t):
            val[i, slots[a]] = y[a]
