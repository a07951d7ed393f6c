"""numba kernels behind ``_kernels`` (imported lazily: compiling costs seconds on first use per machine).

All kernels walk blocks of columns so that the working set stays in L1/L2, and run blocks in
parallel with ``prange`` (threads set from ``torch.get_num_threads()`` by the caller).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_SORT_BLOCK = 64
_GRAM_BLOCK = 256
_PAIR_FLAGS = {"reassoc", "contract"}  # lets LLVM vectorise float64 reductions (order changes only)


@njit(parallel=True, cache=True)
def coord_kernel(x, lo, hi, mode, f, k, out):  # pragma: no cover - compiled
    B, n, d = x.shape
    BLK = _SORT_BLOCK
    nblk = (d + BLK - 1) // BLK
    ncmp = lo.shape[0]
    for t in prange(B * nblk):
        b = t // nblk
        s = (t % nblk) * BLK
        w = min(BLK, d - s)
        buf = np.zeros((n, BLK), dtype=x.dtype)
        for i in range(n):
            for c in range(w):
                buf[i, c] = x[b, i, s + c]
        ta = np.empty(BLK, dtype=x.dtype)
        tz = np.empty(BLK, dtype=x.dtype)
        for q in range(ncmp):
            a = lo[q]
            z = hi[q]
            # via temporaries: numba cannot tell that rows a and z never alias, and the direct
            # in-place form does not vectorise (measured 2.8x slower)
            for c in range(BLK):
                ta[c] = buf[a, c]
                tz[c] = buf[z, c]
            for c in range(BLK):
                u = ta[c]
                v = tz[c]
                buf[a, c] = min(u, v)
                buf[z, c] = max(u, v)
        cen = np.empty(BLK, dtype=np.float64)
        if mode == 0 or mode == 3:
            for c in range(w):
                if n % 2 == 1:
                    cen[c] = np.float64(buf[n // 2, c])
                else:
                    cen[c] = 0.5 * np.float64(buf[n // 2 - 1, c]) + 0.5 * np.float64(buf[n // 2, c])
        else:
            for c in range(w):
                acc = 0.0
                for i in range(f, n - f):
                    acc += np.float64(buf[i, c])
                cen[c] = acc / (n - 2 * f)
        if mode <= 1:
            for c in range(w):
                out[b, s + c] = cen[c]
        else:
            _closest_mean(x, buf, cen, b, s, w, n, k, out)


@njit(cache=True)
def _closest_mean(x, buf, cen, b, s, w, n, k, out):  # pragma: no cover - compiled
    BLK = buf.shape[1]
    # k values closest to cen: the k-th smallest distance r is the smallest window maximum over
    # the sorted values (distances are V-shaped along the sorted order); rows with distance < r
    # are kept, rows at distance r are kept in row order until k are taken.
    r = np.empty(BLK, dtype=np.float64)
    for c in range(w):
        best = np.inf
        for j in range(n - k + 1):
            d1 = abs(np.float64(buf[j, c]) - cen[c])
            d2 = abs(np.float64(buf[j + k - 1, c]) - cen[c])
            m = d1 if d1 > d2 else d2
            if m < best:
                best = m
        r[c] = best
    need = np.zeros(BLK, dtype=np.int64)
    acc = np.zeros(BLK, dtype=np.float64)
    for i in range(n):
        for c in range(w):
            v = np.float64(x[b, i, s + c])
            if abs(v - cen[c]) < r[c]:
                acc[c] += v
                need[c] += 1
    for c in range(w):
        need[c] = k - need[c]
    for i in range(n):
        for c in range(w):
            v = np.float64(x[b, i, s + c])
            if need[c] > 0 and abs(v - cen[c]) == r[c]:
                acc[c] += v
                need[c] -= 1
    for c in range(w):
        out[b, s + c] = acc[c] / k


@njit(parallel=True, cache=True, fastmath=_PAIR_FLAGS)
def gram_kernel(x, center):  # pragma: no cover - compiled
    B, n, d = x.shape
    m = n + 1
    BLK = _GRAM_BLOCK
    nblk = (d + BLK - 1) // BLK
    part = np.zeros((B * nblk, m, m))
    for t in prange(B * nblk):
        b = t // nblk
        s = (t % nblk) * BLK
        w = min(BLK, d - s)
        buf = np.zeros((m + 3, BLK))
        rr = center[b]
        for c in range(w):
            buf[n, c] = np.float64(x[b, rr, s + c])
        for i in range(n):
            for c in range(w):
                buf[i, c] = np.float64(x[b, i, s + c]) - buf[n, c]
        for i in range(m):
            for j in range(0, i + 1, 4):
                a0 = 0.0
                a1 = 0.0
                a2 = 0.0
                a3 = 0.0
                for c in range(BLK):
                    v = buf[i, c]
                    a0 += v * buf[j, c]
                    a1 += v * buf[j + 1, c]
                    a2 += v * buf[j + 2, c]
                    a3 += v * buf[j + 3, c]
                part[t, i, j] = a0
                if j + 1 <= i:
                    part[t, i, j + 1] = a1
                if j + 2 <= i:
                    part[t, i, j + 2] = a2
                if j + 3 <= i:
                    part[t, i, j + 3] = a3
    G = np.zeros((B, m, m))
    for b in prange(B):
        for t in range(b * nblk, (b + 1) * nblk):
            for i in range(m):
                for j in range(i + 1):
                    G[b, i, j] += part[t, i, j]
    return G


@njit(parallel=True, cache=True, fastmath=_PAIR_FLAGS)
def pair_kernel(x, pb, pi, pj):  # pragma: no cover - compiled
    P = pb.shape[0]
    d = x.shape[2]
    out = np.empty(P)
    for p in prange(P):
        b = pb[p]
        i = pi[p]
        j = pj[p]
        acc = 0.0
        for c in range(d):
            u = np.float64(x[b, i, c]) - np.float64(x[b, j, c])
            acc += u * u
        out[p] = acc
    return out


@njit(parallel=True, cache=True, fastmath=_PAIR_FLAGS)
def sqnorm_kernel(x):  # pragma: no cover - compiled
    B, n, d = x.shape
    out = np.empty((B, n))
    for t in prange(B * n):
        b = t // n
        i = t % n
        acc = 0.0
        for c in range(d):
            u = np.float64(x[b, i, c])
            acc += u * u
        out[b, i] = acc
    return out


@njit(parallel=True, cache=True)
def sign_vote_kernel(x):  # pragma: no cover - compiled
    B, n, d = x.shape
    BLK = 1024
    nblk = (d + BLK - 1) // BLK
    out = np.empty((B, d), dtype=x.dtype)
    for t in prange(B * nblk):
        b = t // nblk
        s = (t % nblk) * BLK
        w = min(BLK, d - s)
        acc = np.zeros(BLK, dtype=np.int32)
        for i in range(n):
            for c in range(w):
                v = x[b, i, s + c]
                acc[c] += np.int32(v > 0) - np.int32(v < 0)
        for c in range(w):
            out[b, s + c] = (acc[c] > 0) - (acc[c] < 0)
    return out


@njit(parallel=True, cache=True, fastmath=_PAIR_FLAGS)
def dist_to_kernel(x, v):  # pragma: no cover - compiled
    B, n, d = x.shape
    out = np.empty((B, n))
    for t in prange(B * n):
        b = t // n
        i = t % n
        acc = 0.0
        for c in range(d):
            u = np.float64(x[b, i, c]) - np.float64(v[b, c])
            acc += u * u
        out[b, i] = acc
    return out


@njit(parallel=True, cache=True)
def weighted_step_kernel(x, v, w):  # pragma: no cover - compiled
    B, n, d = x.shape
    BLK = 1024
    nblk = (d + BLK - 1) // BLK
    out = np.empty((B, d), dtype=x.dtype)
    for t in prange(B * nblk):
        b = t // nblk
        s = (t % nblk) * BLK
        e = min(s + BLK, d)
        acc = np.zeros(BLK)
        for i in range(n):
            wi = w[b, i]
            for c in range(s, e):
                acc[c - s] += wi * (np.float64(x[b, i, c]) - np.float64(v[b, c]))
        for c in range(s, e):
            out[b, c] = np.float64(v[b, c]) + acc[c - s]
    return out
