"""numba kernels behind ``_kernels`` (imported lazily: compiling costs seconds on first use per machine).

All kernels walk blocks of columns so that the working set stays in L1/L2, and run blocks in
parallel with ``prange`` (threads set from ``torch.get_num_threads()`` by the caller, so
``torch.set_num_threads(1)`` keeps every kernel on the calling thread: CPU time / wall time 1.00 in
benchmarks/bench_aggregators.py). The trimmed-mean kernel is generated per (n, f)
(``trim_unrolled``), its source cached under ``~/.cache/codedbft/numba_kernels``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys

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
        buf = np.zeros((m + 4, BLK))
        rr = center[b]
        for c in range(w):
            buf[n, c] = np.float64(x[b, rr, s + c])
        for i in range(n):
            for c in range(w):
                buf[i, c] = np.float64(x[b, i, s + c]) - buf[n, c]
        # two rows against four: 6 loads per 8 multiply-adds (one row against four: 5 per 4), the
        # kernel being load-bound; Krum vs ByzPy went 3.3x -> 3.8x (interleaved, noisy shared host)
        for i in range(0, m, 2):
            for j in range(0, i + 2, 4):
                a0 = 0.0
                a1 = 0.0
                a2 = 0.0
                a3 = 0.0
                b0 = 0.0
                b1 = 0.0
                b2 = 0.0
                b3 = 0.0
                for c in range(BLK):
                    u = buf[i, c]
                    v = buf[i + 1, c]
                    y0 = buf[j, c]
                    y1 = buf[j + 1, c]
                    y2 = buf[j + 2, c]
                    y3 = buf[j + 3, c]
                    a0 += u * y0
                    a1 += u * y1
                    a2 += u * y2
                    a3 += u * y3
                    b0 += v * y0
                    b1 += v * y1
                    b2 += v * y2
                    b3 += v * y3
                if j <= i:
                    part[t, i, j] = a0
                if j + 1 <= i:
                    part[t, i, j + 1] = a1
                if j + 2 <= i:
                    part[t, i, j + 2] = a2
                if j + 3 <= i:
                    part[t, i, j + 3] = a3
                if i + 1 < m:
                    if j <= i + 1:
                        part[t, i + 1, j] = b0
                    if j + 1 <= i + 1:
                        part[t, i + 1, j + 1] = b1
                    if j + 2 <= i + 1:
                        part[t, i + 1, j + 2] = b2
                    if j + 3 <= i + 1:
                        part[t, i + 1, j + 3] = b3
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
    # ``v + sum_i w_i (x_i - v)`` per column, in float64, the terms added in row order. Four rows per
    # sweep of the block (same additions in the same order, so the same bits as one row per sweep)
    # cut the accumulator's loads and stores 4x.
    B, n, d = x.shape
    BLK = 2048
    nblk = (d + BLK - 1) // BLK
    out = np.empty((B, d), dtype=x.dtype)
    for t in prange(B * nblk):
        b = t // nblk
        s = (t % nblk) * BLK
        e = min(s + BLK, d)
        acc = np.zeros(BLK)
        i = 0
        while i + 4 <= n:
            w0 = w[b, i]
            w1 = w[b, i + 1]
            w2 = w[b, i + 2]
            w3 = w[b, i + 3]
            for c in range(s, e):
                vc = np.float64(v[b, c])
                a = acc[c - s]
                a += w0 * (np.float64(x[b, i, c]) - vc)
                a += w1 * (np.float64(x[b, i + 1, c]) - vc)
                a += w2 * (np.float64(x[b, i + 2, c]) - vc)
                a += w3 * (np.float64(x[b, i + 3, c]) - vc)
                acc[c - s] = a
            i += 4
        while i < n:
            wi = w[b, i]
            for c in range(s, e):
                acc[c - s] += wi * (np.float64(x[b, i, c]) - np.float64(v[b, c]))
            i += 1
        for c in range(s, e):
            out[b, c] = np.float64(v[b, c]) + acc[c - s]
    return out


# --------------------------------------------------------------------------------------------------
# trimmed mean, unrolled over the n rows (generated per (n, f))
# --------------------------------------------------------------------------------------------------
#: bump when the generated source changes (it names the file, so old caches are never reused)
_TRIM_GEN_VERSION = 1
#: columns per parallel task
_TRIM_CHUNK = 4096


def _trim_source(n: int, f: int, cache: bool) -> str:
    """Source of ``kernel(x, out)``: per column, stream the n values through a sorted register of the
    f smallest and one of the f largest seen so far; what falls out of both is a middle value.

    Why unrolled: with the rows as straight-line code the column loop is the innermost one, so LLVM
    vectorises it with all 2f registers held in SIMD registers. The same chain with the state in
    L1 arrays (row loop outside, column loop inside) or the sorting network on a 64-column block
    both cost ~8x a plain pass over x; the unrolled form ~1.5x (measured on (25, 1e6) float32,
    one thread: 34 ms against 280 ms for the array form).
    """
    ind = " " * 12
    body = []
    for j in range(f):
        body.append(f"{ind}l{j} = np.inf")
        body.append(f"{ind}h{j} = -np.inf")
    body.append(f"{ind}acc = 0.0")
    for i in range(n):
        body.append(f"{ind}v = x[b, {i}, c]")
        for j in range(f):
            body.append(f"{ind}a = l{j}; l{j} = min(a, v); v = max(a, v)")
        if i < f:
            continue  # v is l's +inf placeholder
        for j in range(f):
            body.append(f"{ind}a = h{j}; h{j} = max(a, v); v = min(a, v)")
        if i < 2 * f:
            continue  # v is h's -inf placeholder
        body.append(f"{ind}acc += np.float64(v)")
    body.append(f"{ind}out[b, c] = acc / {n - 2 * f}")
    head = f'''"""Generated by codedbft.aggregators._numba_kernels (trimmed mean, n={n}, f={f}); safe to delete."""
import numpy as np
from numba import njit, prange


@njit(parallel=True, cache={cache})
def kernel(x, out):
    B, n, d = x.shape
    nch = (d + {_TRIM_CHUNK} - 1) // {_TRIM_CHUNK}
    for t in prange(B * nch):
        b = t // nch
        s = (t % nch) * {_TRIM_CHUNK}
        e = min(d, s + {_TRIM_CHUNK})
        for c in range(s, e):
'''
    return head + "\n".join(body) + "\n"


def _kernel_dir() -> str:
    root = os.environ.get("CODEDBFT_KERNEL_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "codedbft", "numba_kernels")
    return root


@functools.lru_cache(maxsize=32)
def trim_unrolled(n: int, f: int):
    """The compiled ``kernel(x (B, n, d), out (B, d))`` for this (n, f): trimmed mean, float64 sum.

    The source is written once to a file under ``$CODEDBFT_KERNEL_DIR`` (default
    ``~/.cache/codedbft/numba_kernels``) so that numba's on-disk cache applies: compiling costs
    ~10 s per (n, f, dtype), loading the cached code ~0.1 s. Where that directory cannot be
    written, the kernel is compiled in memory (once per process).
    """
    name = f"trim_v{_TRIM_GEN_VERSION}_n{n}_f{f}"
    try:
        d = _kernel_dir()
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, name + ".py")
        if not os.path.exists(path):
            # write-then-rename: concurrent processes never import a half-written file, and an
            # existing file is never rewritten (numba's cache is keyed on its modification time)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w") as fh:
                fh.write(_trim_source(n, f, cache=True))
            os.replace(tmp, path)
        modname = f"_codedbft_gen_{name}"
        spec = importlib.util.spec_from_file_location(modname, path)
        mod = importlib.util.module_from_spec(spec)
        # numba's cache rebuilds the kernel's globals by importing its module by name
        sys.modules[modname] = mod
        spec.loader.exec_module(mod)
        return mod.kernel
    except OSError:
        ns: dict = {}
        exec(compile(_trim_source(n, f, cache=False), f"<{name}>", "exec"), ns)
        return ns["kernel"]
