"""Compiled CPU kernels (numba) for the two hot paths, with torch fallbacks of the same semantics.

* ``coord_reduce``: per coordinate, sort the n values with a sorting network (Batcher's odd-even
  merge sort, pruned to n) on a cache-resident block of columns, then reduce (median, trimmed mean,
  or mean of the k values closest to a centre). Measured on (25, 1e6) float32, one thread:
  ``torch.sort(dim=0)`` 1.0 s, ``torch.kthvalue`` 0.8 s, ``torch.median`` 0.65 s, ``np.median``
  0.5 s, ``np.sort(axis=0)`` 0.13 s; the network kernel is several times faster than the best of
  those (see benchmarks/bench_aggregators.py). The trimmed mean (f >= 1, n f <= 128, >= 2^16
  columns) takes a kernel generated per (n, f) and unrolled over the rows instead: ~1.5x a pass
  over x where the network costs ~8x (``_numba_kernels.trim_unrolled``).
* ``centered_gram``: the Gram matrix of the rows centred on one row, accumulated in float64 from
  float32/float64 input in one pass (products of float32 values are exact in float64, and centring
  removes the cancellation of ``|a|^2 + |b|^2 - 2 a.b`` for large, nearly identical vectors).
* ``pair_sq_dists``: exact float64 squared distances for a list of row pairs (the near pairs).

numba compiles each kernel once per machine (``cache=True``); a tensor on another device, of
another dtype, or with numba unavailable or disabled (``set_backend("torch")``) takes the torch path.
Kernels run on ``torch.get_num_threads()`` threads, read before numba's pool starts (``_threads``).
"""

from __future__ import annotations

import functools
import os

import numpy as np
import torch

_BACKEND = os.environ.get("CODEDBFT_AGG_BACKEND", "auto")
#: the largest n sorted by the network; above it the sort is ``np.sort`` (network size grows n log^2 n)
NETWORK_MAX_N = 160


def set_backend(name: str) -> None:
    """Pick ``"auto"`` (numba on CPU float32/float64, torch elsewhere) or ``"torch"`` (always torch)."""
    global _BACKEND
    if name not in ("auto", "torch"):
        raise ValueError(f"backend must be 'auto' or 'torch', got {name!r}")
    _BACKEND = name


def get_backend() -> str:
    return _BACKEND


@functools.lru_cache(maxsize=1)
def _numba():
    try:
        import numba  # noqa: F401
    except Exception:  # pragma: no cover - numba is a dependency of galois
        return None
    from codedbft.aggregators import _numba_kernels

    return _numba_kernels


def use_numba(x: torch.Tensor) -> bool:
    return (
        _BACKEND == "auto"
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and _numba() is not None
    )


def _threads() -> int:
    """Give numba kernels ``torch.get_num_threads()`` threads (capped at numba's pool) and return it.

    The first ``numba.set_num_threads`` starts numba's OpenMP pool, which resets the process-wide
    OpenMP thread count that torch reads: after it, ``torch.get_num_threads()`` said 2 on a 2-core
    host although the caller had set 1, so every later kernel (and torch op) ran on 2 threads, and
    timings doubled when another process loaded the second core (trimmed mean 66 -> 212 ms on
    (25, 1e6) float32). The caller's count is therefore read first and restored afterwards.
    """
    import numba

    t = torch.get_num_threads()
    nt = max(1, min(t, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(nt)
    if torch.get_num_threads() != t:
        torch.set_num_threads(t)
    return nt


@functools.lru_cache(maxsize=64)
def sorting_network(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Comparators (lo, hi) of Batcher's odd-even merge sort for n inputs.

    Built for the next power of two p and pruned: padding the inputs with +inf, a comparator that
    touches an index >= n never moves anything, so dropping it leaves a valid network for n.
    """
    p = 1
    while p < n:
        p *= 2
    lo: list[int] = []
    hi: list[int] = []
    pp = 1
    while pp < p:
        k = pp
        while k >= 1:
            for j in range(k % pp, p - k, 2 * k):
                for i in range(min(k, p - j - k)):
                    a, b = i + j, i + j + k
                    if a // (2 * pp) == b // (2 * pp) and b < n:
                        lo.append(a)
                        hi.append(b)
            k //= 2
        pp *= 2
    return np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64)


MODES = {"median": 0, "trimmed": 1, "phocas": 2, "meamed": 3}
#: the unrolled trimmed-mean kernel (``_numba_kernels.trim_unrolled``) is generated per (n, f): its
#: source has ~2nf compare-exchanges, and compiling it costs ~10 s at n f = 75 (once per machine,
#: then cached), so it is used only up to this n f and from this many columns B d on (below it the
#: network kernel, compiled once for every n, is fast enough: <= 2 ms)
TRIM_UNROLL_MAX_NF = 128
TRIM_UNROLL_MIN_COLS = 1 << 16


def use_unrolled_trim(n: int, f: int, cols: int) -> bool:
    """Whether ``coord_reduce(mode="trimmed")`` takes the unrolled kernel for n rows, f, B d columns."""
    return 1 <= f and n * f <= TRIM_UNROLL_MAX_NF and cols >= TRIM_UNROLL_MIN_COLS


def coord_reduce(x3: torch.Tensor, mode: str, f: int = 0, k: int = 0) -> torch.Tensor:
    """Per-coordinate order-statistics reduction of ``x3`` (B, n, d) -> (B, d).

    Modes (docs/aggregators.md): ``median`` (even n: mean of the two middle values); ``trimmed`` (mean
    of the sorted values f..n-f-1); ``phocas`` / ``meamed``: mean of the k values closest to the
    trimmed mean / the median, distances |x - c| in float64, ties to the lower row index.
    """
    n = x3.shape[-2]
    if mode == "trimmed" and use_numba(x3) and use_unrolled_trim(n, f, x3.shape[0] * x3.shape[2]):
        _threads()
        out = np.empty((x3.shape[0], x3.shape[2]), dtype=x3.numpy().dtype)
        _numba().trim_unrolled(n, f)(x3.numpy(), out)
        return torch.from_numpy(out)
    if use_numba(x3) and n <= NETWORK_MAX_N:
        _threads()
        lo, hi = sorting_network(n)
        out = np.empty((x3.shape[0], x3.shape[2]), dtype=x3.numpy().dtype)
        _numba().coord_kernel(x3.numpy(), lo, hi, MODES[mode], f, k, out)
        return torch.from_numpy(out)
    return _coord_torch(x3, mode, f, k)


def _sorted(x3: torch.Tensor) -> torch.Tensor:
    # np.sort along n is ~8x faster than torch.sort(dim=-2) on CPU (measured above)
    if x3.device.type == "cpu" and x3.dtype in (torch.float32, torch.float64):
        return torch.from_numpy(np.sort(x3.numpy(), axis=1))
    return torch.sort(x3, dim=-2).values


def _coord_torch(x3: torch.Tensor, mode: str, f: int, k: int) -> torch.Tensor:
    n = x3.shape[-2]
    s = _sorted(x3)
    if mode == "median" or mode == "meamed":
        if n % 2:
            c = s[:, n // 2].double()
        else:
            c = 0.5 * s[:, n // 2 - 1].double() + 0.5 * s[:, n // 2].double()
        if mode == "median":
            return c.to(x3.dtype)
    else:
        c = s[:, f : n - f].double().sum(dim=1) / (n - 2 * f)
        if mode == "trimmed":
            return c.to(x3.dtype)
    c = c.unsqueeze(1)
    ds = (s.double() - c).abs()
    r = torch.maximum(ds[:, : n - k + 1], ds[:, k - 1 :]).amin(dim=1, keepdim=True)
    xd = x3.double()
    dist = (xd - c).abs()
    less = dist < r
    tie = dist == r
    need = k - less.sum(dim=1, keepdim=True)
    sel = less | (tie & (tie.cumsum(dim=1) <= need))
    return ((xd * sel).sum(dim=1) / k).to(x3.dtype)


def centered_gram(x3: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """float64 ``(B, n+1, n+1)`` Gram of the rows ``x_i - x_{c_b}`` plus, as row n, ``x_{c_b}`` itself.

    ``[:n, :n]`` is the centred Gram (translation invariant: gives distances); ``[:n, n]`` the dot
    products ``(x_i - x_c) . x_c`` and ``[n, n]`` = ``|x_c|^2`` (to rebuild the raw Gram when needed).
    """
    B, n, _ = x3.shape
    if use_numba(x3):
        _threads()
        G = _numba().gram_kernel(x3.numpy(), center.numpy().astype(np.int64))
        G = torch.from_numpy(G)
        return G + G.transpose(1, 2) - torch.diag_embed(G.diagonal(dim1=1, dim2=2))
    xc = x3[torch.arange(B, device=x3.device), center.to(x3.device)].double()
    c = torch.cat([x3.double() - xc.unsqueeze(1), xc.unsqueeze(1)], dim=1)
    G = torch.bmm(c, c.transpose(1, 2))
    return (G + G.transpose(1, 2)) / 2


def pair_sq_dists(x3: torch.Tensor, b: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Exact float64 ``|x3[b, i] - x3[b, j]|^2`` for each listed pair (no (pairs, d) temporary on CPU)."""
    if len(b) == 0:
        return torch.zeros(0, dtype=torch.float64)
    if use_numba(x3):
        _threads()
        out = _numba().pair_kernel(x3.numpy(), b.numpy(), i.numpy(), j.numpy())
        return torch.from_numpy(out)
    out = torch.empty(len(b), dtype=torch.float64, device=x3.device)
    d = x3.shape[-1]
    step = max(1, (1 << 24) // max(d, 1))  # bound the float64 temporary to ~128 MB
    for s in range(0, len(b), step):
        sl = slice(s, s + step)
        diff = x3[b[sl], i[sl]].double() - x3[b[sl], j[sl]].double()
        out[sl] = (diff * diff).sum(dim=-1)
    return out


def row_sq_norms(x3: torch.Tensor) -> torch.Tensor:
    """float64 ``(B, n)`` squared row norms, accumulated in float64."""
    if use_numba(x3):
        _threads()
        return torch.from_numpy(_numba().sqnorm_kernel(x3.numpy()))
    return torch.linalg.vector_norm(x3.double(), dim=-1) ** 2


def sign_vote(x3: torch.Tensor) -> torch.Tensor:
    """``sign(sum_i sign(x_i))`` per coordinate, ``(B, n, d) -> (B, d)`` (a tie gives 0)."""
    if use_numba(x3):
        _threads()
        return torch.from_numpy(_numba().sign_vote_kernel(x3.numpy()))
    # float sums of +-1/0 are exact up to 2^24 inputs
    return torch.sign(x3).sum(dim=1).sign()


def clip_step(x3: torch.Tensor, v: torch.Tensor, tau: float) -> torch.Tensor:
    """One centred-clipping step ``v + (1/n) sum_i clip_tau(x_i - v)`` for ``x3`` (B, n, d), ``v`` (B, d).

    CPU: two fused passes (float64 distances, then the weighted sum) and no (n, d) temporary.
    """
    n = x3.shape[1]
    if use_numba(x3):
        _threads()
        xn, vn = x3.numpy(), v.contiguous().numpy()
        norm = np.sqrt(_numba().dist_to_kernel(xn, vn))
        w = np.minimum(1.0, tau / np.maximum(norm, 1e-300)) / n
        return torch.from_numpy(_numba().weighted_step_kernel(xn, vn, w))
    u = x3 - v.unsqueeze(1)
    norm = torch.linalg.vector_norm(u, dim=2, dtype=torch.float64)
    scale = torch.clamp(tau / norm.clamp(min=1e-300), max=1.0)
    return v + torch.bmm((scale / n).to(x3.dtype).unsqueeze(1), u).squeeze(1)
