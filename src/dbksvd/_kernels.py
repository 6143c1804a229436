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

Speed. A pursuit step updates a length-K vector with one row of ``G`` (read from DRAM once ``G``
outgrows the last-level cache) and then needs its argmax. What keeps the steps fast:

* Block maxima. The pass that updates the vector also records the largest magnitude of each
  block of entries; :func:`_pick` then finds the largest block and scans only that block, which
  gives the plain argmax (first index of the largest magnitude). The max-reduction uses
  :func:`_fmax` (``llvm.maxnum``): numba lowers ``max``, ``np.fmax`` and ``if v > m`` to
  compare-and-select, which LLVM does not vectorise as a reduction, so the fused update+argmax
  ran at ~3 cycles per entry; with ``llvm.maxnum`` it runs at full SIMD width.
* Blocks are taken as slices and looped from 0: the same loop written as ``range(lo, hi)`` over
  the whole array is not vectorised by numba/LLVM (measured).
* OMP: a step reads t rows of ``W`` from L2, which bounds the kernel, plus the new row of ``G``.
  While it works on one block, it prefetches the next block of that ``G`` row a slice per pass
  (:func:`_prefetch`), so the DRAM latency hides behind the L2-bound work.

Matching pursuit is then bound by DRAM bandwidth on the ``G`` rows.
"""

from __future__ import annotations

import math
import os

import numba as nb
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

# numba's default OpenMP layer loads the system libgomp next to torch's own: two spinning
# thread pools on the same cores. The workqueue layer sleeps when idle and measured faster
# here (OMP 8.1k vs 6.7k rows/s). It is not thread-safe: coding.py serialises kernel calls.
if "NUMBA_THREADING_LAYER" not in os.environ:
    nb.config.THREADING_LAYER = "workqueue"

_MP_BLOCK = 256  # entries per block maximum in matching pursuit (measured best of 128..1024)
_OMP_BLOCK = 512  # entries per block of the fused OMP step (measured best of 256..1024)


@intrinsic
def _fmax(typingctx, a, b):
    """``max(a, b)`` for floats as ``llvm.maxnum``, which LLVM vectorises in reductions."""
    ty = typingctx.unify_types(a, b)

    def codegen(context, builder, signature, args):
        x, y = (context.cast(builder, v, t, ty) for v, t in zip(args, signature.args))
        fn = builder.module.declare_intrinsic("llvm.maxnum", [x.type], ir.FunctionType(x.type, [x.type, x.type]))
        return builder.call(fn, [x, y], fastmath=("fast",))

    return ty(a, b), codegen


@intrinsic
def _prefetch(typingctx, arr, i):
    """Hint the CPU to load the cache line holding ``arr[i]`` (1-D contiguous ``arr``)."""

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        i8p = ir.IntType(8).as_pointer()
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), i8p)
        i32 = ir.IntType(32)
        fn = builder.module.declare_intrinsic(
            "llvm.prefetch", [i8p], ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        )
        # read, keep in all cache levels, data cache
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(arr, i), codegen


@nb.njit(cache=True, nogil=True)
def _prefetch_range(a, lo, hi):
    """Prefetch the cache lines of ``a[lo:hi]``."""
    for q in range(lo, hi, max(1, 64 // a.itemsize)):
        _prefetch(a, q)


@nb.njit(fastmath=True, cache=True, nogil=True)
def _copy_max(dst, src, bmax, block):
    """``dst[:] = src`` and ``bmax[b] = max |dst|`` over each block of ``block`` entries."""
    K = dst.shape[0]
    for b in range(bmax.shape[0]):
        lo = b * block
        db = dst[lo : min(K, lo + block)]
        sb = src[lo : min(K, lo + block)]
        m = dst.dtype.type(0)
        for q in range(db.shape[0]):
            v = sb[q]
            db[q] = v
            m = _fmax(m, abs(v))
        bmax[b] = m


@nb.njit(fastmath=True, cache=True, nogil=True)
def _pick(a, bmax, block):
    """``(q, |a[q]|)`` for the first q of largest ``|a[q]|``, given the block maxima ``bmax``."""
    nblk = bmax.shape[0]
    m = bmax[0]
    for b in range(1, nblk):
        m = _fmax(m, bmax[b])
    b = 0
    while b + 1 < nblk and bmax[b] != m:
        b += 1
    q = b * block
    end = min(a.shape[0], q + block)
    while q + 1 < end and abs(a[q]) != m:
        q += 1
    return q, m


@nb.njit(fastmath=True, cache=True, nogil=True)
def _pad(idx, val, t):
    fill = idx[0] if t > 0 else 0
    for s in range(t, idx.shape[0]):
        idx[s] = fill
        val[s] = 0.0


@nb.njit(parallel=True, cache=True)
def omp_gram(P, G, x2, k, tol2, eps, out_idx, out_val):
    """Batch-OMP over rows. P (n, K), G (K, K), x2 and tol2 (n,) float64; outputs (n, k)."""
    n, K = P.shape
    n_chunks = min(64, n)
    per = (n + n_chunks - 1) // n_chunks
    for c in nb.prange(n_chunks):
        W = np.empty((k, K), dtype=P.dtype)
        alpha = np.empty(K, dtype=P.dtype)
        keep = np.ones(K, dtype=P.dtype)
        bmax = np.empty((K + _OMP_BLOCK - 1) // _OMP_BLOCK, dtype=P.dtype)
        lbuf = np.empty(k, dtype=P.dtype)  # the hot loops stay in the data's precision
        z = np.empty(k, dtype=np.float64)
        diag = np.empty(k, dtype=np.float64)
        for i in range(c * per, min(n, (c + 1) * per)):
            t = _omp_row(P[i], G, x2[i], k, tol2[i], eps, W, alpha, keep, bmax, lbuf, z, diag, out_idx[i], out_val[i])
            _pad(out_idx[i], out_val[i], t)


@nb.njit(fastmath=True, cache=True, nogil=True)
def _omp_row(p, G, x2, k, tol2, eps, W, alpha, keep, bmax, lbuf, z, diag, idx, val):
    """Batch-OMP of one row (see module docstring). Returns the number of atoms used.

    ``keep`` is 1 everywhere on entry and on return; during the row it is 0 on the support, and
    multiplying alpha by it makes the support entries (zero in exact arithmetic) exactly zero,
    so an atom is never picked twice and the block maxima need no second pass.
    """
    K = p.shape[0]
    B = _OMP_BLOCK
    _copy_max(alpha, p, bmax, B)
    j, best = _pick(alpha, bmax, B)
    r2 = x2
    t = 0
    while t < k and r2 > tol2 and best > 0.0:
        gj = G[j]
        _prefetch_range(gj, 0, min(K, B))
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
        keep[j] = 0.0
        inv = p.dtype.type(1.0 / ltt)
        zs = p.dtype.type(zt)
        # New row of W and alpha -= z_t w, one block at a time: w = (G[j] - sum_s l_s W[s]) / ltt.
        n_pass = t // 4 + t % 4 + 1  # passes over a block; each prefetches a slice of the next
        line = max(1, 64 // gj.itemsize)
        pf_step = ((B + n_pass - 1) // n_pass + line - 1) // line * line  # whole cache lines
        for b in range(bmax.shape[0]):
            lo = b * B
            hi = min(K, lo + B)
            pf = hi
            pf_end = min(K, hi + B)
            wb = W[t, lo:hi]
            gb = gj[lo:hi]
            for q in range(wb.shape[0]):
                wb[q] = gb[q]
            s = 0
            while s < t:
                _prefetch_range(gj, pf, min(pf_end, pf + pf_step))
                pf += pf_step
                if s + 4 <= t:
                    a0 = lbuf[s]
                    a1 = lbuf[s + 1]
                    a2 = lbuf[s + 2]
                    a3 = lbuf[s + 3]
                    w0 = W[s, lo:hi]
                    w1 = W[s + 1, lo:hi]
                    w2 = W[s + 2, lo:hi]
                    w3 = W[s + 3, lo:hi]
                    for q in range(wb.shape[0]):
                        wb[q] -= a0 * w0[q] + a1 * w1[q] + a2 * w2[q] + a3 * w3[q]
                    s += 4
                else:
                    a0 = lbuf[s]
                    w0 = W[s, lo:hi]
                    for q in range(wb.shape[0]):
                        wb[q] -= a0 * w0[q]
                    s += 1
            _prefetch_range(gj, pf, pf_end)
            ab = alpha[lo:hi]
            kb = keep[lo:hi]
            m = p.dtype.type(0)
            for q in range(wb.shape[0]):
                wq = wb[q] * inv
                wb[q] = wq
                v = (ab[q] - zs * wq) * kb[q]
                ab[q] = v
                m = _fmax(m, abs(v))
            bmax[b] = m
        t += 1
        j, best = _pick(alpha, bmax, B)
    for s in range(t):
        keep[idx[s]] = 1.0
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
        bmax = np.empty((K + _MP_BLOCK - 1) // _MP_BLOCK, dtype=P.dtype)
        for i in range(c * per, min(n, (c + 1) * per)):
            t = _mp_row(P[i], G, x2[i], k, tol2[i], max_steps, p, bmax, out_idx[i], out_val[i])
            _pad(out_idx[i], out_val[i], t)


@nb.njit(fastmath=True, cache=True, nogil=True)
def _mp_row(pi, G, r2, k, tol2, max_steps, p, bmax, idx, val):
    """Matching pursuit of one row (see :func:`mp_gram`). Returns the number of atoms used."""
    K = p.shape[0]
    B = _MP_BLOCK
    _copy_max(p, pi, bmax, B)
    j, best = _pick(p, bmax, B)
    t = 0
    for _ in range(max_steps):
        if r2 <= tol2 or best <= 0.0:
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
        a = p[j] / G[j, j]
        val[slot] += a
        r2 -= a * p[j]
        gj = G[j]
        for b in range(bmax.shape[0]):
            lo = b * B
            pb = p[lo : min(K, lo + B)]
            gb = gj[lo : min(K, lo + B)]
            m = p.dtype.type(0)
            for q in range(pb.shape[0]):
                v = pb[q] - a * gb[q]
                pb[q] = v
                m = _fmax(m, abs(v))
            bmax[b] = m
        j, best = _pick(p, bmax, B)
    return t


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
