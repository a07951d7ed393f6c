"""ByzShield: file assignment from mutually orthogonal Latin squares (MOLS).

Konstantinidis & Ramamoorthy, "ByzShield: An Efficient and Robust System for Distributed Training",
MLSys 2021. With ``l`` a prime power and ``1 <= r <= l - 1``, the ``r`` Latin squares

    L_a(i, j) = a * i + j   over GF(l),   a = 1, ..., r

are mutually orthogonal. There are ``f = l**2`` files (data partitions) ``(i, j)`` and ``K = r * l``
workers ``(a, v)``; worker ``(a, v)`` computes on every file with ``L_a(i, j) = v``. Hence each worker
holds ``l`` files, each file goes to ``r`` workers (one per square), and two workers share at most one
file (exactly one when they come from different squares, since ``(a - b) i = v - w`` has one root).

The master votes per file among its ``r`` copies, then applies a robust rule over the ``f`` voted file
gradients. An adversary controlling ``q`` workers corrupts a file when it holds at least
``ceil(r / 2)`` of its copies; the figure of merit is the largest fraction of files an optimal
placement corrupts, ``eps_hat(q)`` (:meth:`ByzShieldCode.max_distortion`), which the expansion of the
MOLS graph keeps far below DETOX's repetition groups.

A second assignment, the Ramanujan bigraphs of the same paper (``assignment="ramanujan"``), is built
in :mod:`codedbft.encoders.ramanujan`; the search and decoder below only see the incidence.

This module builds the assignment and searches optimal attacks; the decoder (vote per file,
certification, robust rule) is :class:`~codedbft.decoders.byzshield.ByzShieldDecoder`, re-exported
here. See docs/codes.md §3.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import numpy as np

from codedbft._arrays import as_numpy
# The decoder lives with the other decoders; re-exported here, where it used to be defined.
from codedbft.decoders.byzshield import ByzShieldDecoder
from codedbft.encoders.base import Code

# Exhaustive search over C(K, q) attacker sets is affordable up to this many workers (docs/codes.md §3).
EXHAUSTIVE_MAX_WORKERS = 25
EXHAUSTIVE_HARD_LIMIT = 40  # beyond, even the meet-in-the-middle tables and C(K, q) sets are out of reach
# Worker-file graphs ByzShieldCode builds: the MOLS one (below) and the Ramanujan bigraphs (ramanujan.py).
ASSIGNMENTS = ("mols", "ramanujan")


# --------------------------------------------------------------------------------------------------
# Finite-field arithmetic (tables only: galois stays out of every hot path)
# --------------------------------------------------------------------------------------------------


def _prime_power(l: int) -> tuple[int, int] | None:
    """``(p, m)`` with ``l = p**m`` and p prime, or None; trial division is plenty for table sizes."""
    if l < 2:
        return None
    p = next((d for d in range(2, math.isqrt(l) + 1) if l % d == 0), l)
    m, rest = 0, l
    while rest % p == 0:
        rest //= p
        m += 1
    return (p, m) if rest == 1 else None


@lru_cache(maxsize=None)
def _field_tables(l: int) -> tuple[np.ndarray, np.ndarray]:
    """Addition and multiplication tables ``(l, l)`` of GF(l) on its integer representation.

    Prime fields use arithmetic mod l; only proper prime powers build a ``galois.GF`` (numba compiles
    its kernels once per process and field, which costs seconds), and only here, once per ``l``.
    """
    pm = _prime_power(l)
    if pm is None:
        raise ValueError(f"l must be a prime or a prime power, got l={l}")
    x = np.arange(l)
    if pm[1] == 1:
        return (x[:, None] + x[None, :]) % l, (x[:, None] * x[None, :]) % l
    import galois

    F = galois.GF(l)
    a, b = F(np.repeat(x, l)), F(np.tile(x, l))
    return (np.asarray(a + b, dtype=np.int64).reshape(l, l), np.asarray(a * b, dtype=np.int64).reshape(l, l))


def mols(l: int, r: int) -> np.ndarray:
    """The ``r`` Latin squares ``L_a(i, j) = a*i + j`` over GF(l), a = 1..r, as an int array (r, l, l).

    Field elements are galois' integer representation, so ``a = 1..r`` are r distinct non-zero
    elements, which is all orthogonality needs.
    """
    add, mul = _field_tables(l)
    a = np.arange(1, r + 1)
    return add[mul[a[:, None], np.arange(l)[None, :]][:, :, None], np.arange(l)[None, None, :]]


# --------------------------------------------------------------------------------------------------
# Optimal attacks on an assignment: the distortion fraction eps_hat(q)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistortionInfo:
    """The worst q-worker attack found on an assignment.

    Attributes:
        q: number of Byzantine workers.
        fraction: ``files / k``: the distortion fraction eps_hat(q) (a lower bound on it when
            ``method == "heuristic"``, the exact maximum when ``"exhaustive"``).
        files: number of files whose majority the attack corrupts.
        workers: the attacking worker ids, sorted.
        method: ``"exhaustive"`` (all C(K, q) sets scored) or ``"heuristic"`` (greedy + local search).
        upper_bound: a proven upper bound on the fraction (edge counting and the expander mixing
            lemma on the worker-file incidence graph, see :func:`distortion_upper_bound`).
        evaluated: attacker sets scored.
        seconds: wall time of the search.
    """

    q: int
    fraction: float
    files: int
    workers: tuple[int, ...]
    method: str
    upper_bound: float
    evaluated: int
    seconds: float


def incidence_matrix(assignment: tuple[tuple[int, ...], ...], k: int) -> np.ndarray:
    """0/1 float32 (n, k) matrix with ``W[w, x] = 1`` when worker w computes on partition x."""
    W = np.zeros((len(assignment), k), dtype=np.float32)
    for w, files in enumerate(assignment):
        W[w, list(files)] = 1.0
    return W


def distortion_upper_bound(W: np.ndarray, q: int, threshold: int) -> int:
    """Upper bound on the number of files ``q`` workers can hold ``>= threshold`` copies of.

    Two bounds, the smaller is returned. Edge counting: the q workers hold at most ``sum`` of their
    q largest degrees copies, and each corrupted file takes ``threshold`` of them. Spectral: for a
    bipartite graph whose files all have r holders and workers all hold d_w files, the expander
    mixing lemma bounds the edges between worker set S (|S| = q) and file set T (|T| = c) by
    ``e(S, T) <= d_w q c / f + lam * sqrt(q (1 - q/K) c (1 - c/f))``, lam the second singular value of
    W. A corrupted set has ``e(S, T) >= threshold * c``; with ``a = d_w q / f < threshold`` this gives

        c <= lam^2 q (1 - q/K) / ((threshold - a)^2 + lam^2 q (1 - q/K) / f).

    (Centre 1_S and 1_T; the constant parts give the first term since W is biregular, the rest is
    at most lam times the norms.) ByzShield's analysis rests on this expansion of the MOLS graph,
    whose ``lam^2 = l``. The spectral bound is used only when the graph is biregular.
    """
    K, f = W.shape
    deg = W.sum(axis=1)
    counting = min(f, int(np.sort(deg)[::-1][:q].sum() // threshold))
    col = W.sum(axis=0)
    if q == 0 or not (np.all(deg == deg[0]) and np.all(col == col[0])) or q >= K:
        return counting
    sv = np.linalg.svd(W.astype(np.float64), compute_uv=False)
    lam2 = float(sv[1] ** 2) if sv.size > 1 else 0.0
    a = deg[0] * q / f
    if a >= threshold:
        return counting
    num = lam2 * q * (1.0 - q / K)
    spectral = num / ((threshold - a) ** 2 + num / f)
    return min(counting, int(math.floor(spectral + 1e-9)))


@dataclass(frozen=True)
class _SubsetTable:
    """Per-file copy counts of every subset of a block of workers, grouped by subset size.

    ``counts[p]`` is (C(m, p), f): the copies each size-p subset holds of each file; ``masks[p]`` the
    subsets as bitmasks over the block.
    """

    counts: tuple[np.ndarray, ...]
    masks: tuple[np.ndarray, ...]

    @classmethod
    def build(cls, W: np.ndarray) -> _SubsetTable:
        m, f = W.shape
        dtype = np.uint8 if W.sum(axis=0).max() < 256 else np.uint16
        counts = np.zeros((1 << m, f), dtype=dtype)
        for b in range(m):  # doubling over the block's workers (m <= 20): subsets with bit b set
            counts[1 << b : 2 << b] = counts[: 1 << b] + W[b].astype(dtype)
        masks = np.arange(1 << m)
        pop = np.zeros(1 << m, dtype=np.int64)
        for b in range(m):
            pop += (masks >> b) & 1
        order = np.argsort(pop, kind="stable")
        bounds = np.searchsorted(pop[order], np.arange(m + 2))
        return cls(
            counts=tuple(counts[order[bounds[p] : bounds[p + 1]]] for p in range(m + 1)),
            masks=tuple(masks[order[bounds[p] : bounds[p + 1]]] for p in range(m + 1)),
        )


_BLOCK_BYTES = 1 << 23  # per broadcast block of (hi subsets, lo subsets, files) counts


def _exhaustive(W: np.ndarray, q: int, threshold: int, cap: int) -> tuple[int, tuple[int, ...], int]:
    """Score every q-subset of workers exactly, by meet in the middle.

    The workers are split in two halves; the per-file copy counts of every subset of each half are
    tabulated once (2^(K/2) rows each), and a q-set is a pair (low subset of size q - p, high subset
    of size p), whose counts are the sum of two table rows. Each block of pairs is scored with one
    broadcast add and compare, ``C(K, q) * f`` byte operations in all, against ``C(K, q) * K * f``
    flops for the 0/1-matrix product. Stops once a set reaches ``cap`` (a proven upper bound).
    """
    K, f = W.shape
    lo_n = (K + 1) // 2
    lo, hi = _SubsetTable.build(W[:lo_n]), _SubsetTable.build(W[lo_n:])
    best, best_pair, evaluated = -1, (0, 0), 0
    for p in range(max(0, q - lo_n), min(q, K - lo_n) + 1):
        lo_c, hi_c = lo.counts[q - p], hi.counts[p]
        step = max(1, _BLOCK_BYTES // max(1, lo_c.size))
        for start in range(0, hi_c.shape[0], step):
            block = hi_c[start : start + step]
            corrupted = np.count_nonzero((block[:, None, :] + lo_c[None, :, :]) >= threshold, axis=-1)
            evaluated += corrupted.size
            i = int(np.argmax(corrupted))
            if corrupted.flat[i] > best:
                h, l_ = divmod(i, lo_c.shape[0])
                best, best_pair = int(corrupted.flat[i]), (int(lo.masks[q - p][l_]), int(hi.masks[p][start + h]))
                if best >= cap:
                    break
        if best >= cap:
            break
    lo_mask, hi_mask = best_pair
    workers = [w for w in range(lo_n) if lo_mask >> w & 1] + [lo_n + w for w in range(K - lo_n) if hi_mask >> w & 1]
    return best, tuple(workers), evaluated


def _objective(counts: np.ndarray, threshold: int) -> np.ndarray:
    """Lexicographic score of attacker sets from their per-file copy counts (..., f).

    Primary: corrupted files. Secondary (scaled below one file): copies per file counted up to
    ``threshold - 1`` (copies beyond that on a won file are wasted), which rewards progress towards
    new majorities and lets the local search cross plateaus of the primary score.
    """
    corrupted = (counts >= threshold).sum(axis=-1)
    progress = np.minimum(counts, threshold - 1).sum(axis=-1)
    return corrupted * (counts.shape[-1] * threshold + 1) + progress


def _heuristic(
    W: np.ndarray, q: int, threshold: int, restarts: int, seed: int, cap: int
) -> tuple[int, tuple[int, ...], int]:
    """Greedy construction (randomised ties) then best-improvement swap search, several restarts.

    Each swap round scores all q * (K - q) swaps at once from the current per-file counts; the
    objective strictly increases, so each descent terminates.
    """
    K = W.shape[0]
    rng = np.random.default_rng(seed)
    best, best_set, evaluated = -1, (), 0
    for _ in range(restarts):
        inside = np.zeros(K, dtype=bool)
        counts = np.zeros(W.shape[1], dtype=np.float32)
        for _ in range(q):
            cand = np.flatnonzero(~inside)
            score = _objective(counts[None, :] + W[cand], threshold) + rng.random(cand.size) * 0.5
            w = cand[int(np.argmax(score))]
            inside[w] = True
            counts += W[w]
            evaluated += cand.size
        current = _objective(counts, threshold)
        while 0 < q < K:
            ins, outs = np.flatnonzero(inside), np.flatnonzero(~inside)
            trial = counts[None, None, :] - W[ins][:, None, :] + W[outs][None, :, :]
            score = _objective(trial, threshold)
            evaluated += score.size
            u, v = np.unravel_index(int(np.argmax(score)), score.shape)
            if score[u, v] <= current:
                break
            inside[ins[u]], inside[outs[v]] = False, True
            counts = trial[u, v]
            current = score[u, v]
        corrupted = int((counts >= threshold).sum())
        if corrupted > best:
            best, best_set = corrupted, tuple(int(w) for w in np.flatnonzero(inside))
            if best >= cap:
                break
    return best, best_set, evaluated


def optimal_attack(
    W: np.ndarray,
    q: int,
    threshold: int,
    *,
    method: str = "auto",
    restarts: int = 32,
    seed: int = 0,
) -> DistortionInfo:
    """Worst placement of ``q`` Byzantine workers on an assignment given by its incidence ``W`` (K, f).

    A file is corrupted when the attackers hold at least ``threshold`` of its copies (``ceil(r/2)``:
    the honest copies then have no strict majority). ``method="auto"`` searches exhaustively when
    ``K <= 25`` (docs/codes.md §3: this reproduced the ByzShield paper's table exactly) and otherwise runs
    the greedy + local-search heuristic, whose result is a lower bound on the optimum; the
    :class:`DistortionInfo` says which, and carries a proven upper bound.
    """
    K, f = W.shape
    if not 0 <= q <= K:
        raise ValueError(f"q must satisfy 0 <= q <= K={K}, got q={q}")
    if threshold < 1:
        raise ValueError(f"threshold must be >= 1, got {threshold}")
    if method == "auto":
        method = "exhaustive" if K <= EXHAUSTIVE_MAX_WORKERS else "heuristic"
    if method not in ("exhaustive", "heuristic"):
        raise ValueError(f"method must be 'auto', 'exhaustive' or 'heuristic', got {method!r}")
    if method == "exhaustive" and K > EXHAUSTIVE_HARD_LIMIT:
        raise ValueError(f"exhaustive search needs K <= {EXHAUSTIVE_HARD_LIMIT} workers, got K={K}")
    cap = distortion_upper_bound(W, q, threshold)
    start = time.perf_counter()
    if q == 0:
        files, workers, evaluated = 0, (), 1
    elif method == "exhaustive":
        files, workers, evaluated = _exhaustive(W, q, threshold, cap)
    else:
        files, workers, evaluated = _heuristic(W, q, threshold, restarts, seed, cap)
    return DistortionInfo(
        q=q,
        fraction=files / f,
        files=files,
        workers=workers,
        method=method,
        upper_bound=cap / f,
        evaluated=evaluated,
        seconds=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------------------------------
# The code
# --------------------------------------------------------------------------------------------------


class ByzShieldCode(Code):
    """ByzShield (Konstantinidis & Ramamoorthy, MLSys 2021): each worker holds l files, each file r copies.

    Two worker-file graphs (``assignment``): MOLS (K = r*l workers, l**2 files) and the Ramanujan
    bigraphs of :mod:`codedbft.encoders.ramanujan` (Case 1, r < l with l prime: K = r*l workers and
    l**2 files as for MOLS; Case 2, r prime dividing l: K = r**2 workers, r*l files, e.g. l = r = 5).
    ``l`` and ``r`` mean files per worker and copies per file for both; everything downstream (vote,
    certification, distortion search, ``encode``) goes through :attr:`assignment` and :attr:`incidence`.

    Args:
        l: files per worker. MOLS: the order of the Latin squares, a prime or a prime power (GF(l) is
            built with galois, lazily, only for proper prime powers such as 4, 8, 9). Ramanujan: the
            prime s (Case 1) or the multiple m of r (Case 2).
        r: copies of each file. MOLS: the number of squares, ``1 <= r <= l - 1``. Ramanujan: m
            (Case 1, ``r < l``) or the prime s (Case 2, ``r | l``). Odd r avoids ties in the vote.
        aggregator: robust rule over the voted file gradients: a name for
            ``codedbft.aggregators.by_name(name, f=f_files)`` or a callable ``(m, d) tensor -> (d,)``.
        q: the number of Byzantine workers the decoder is sized for (default ``s``). The robust rule
            is built with ``f_files`` = the files an optimal q-attack corrupts (:meth:`max_distortion`,
            searched here at construction when q > s), and the decoder certifies a result as exact
            only when no placement of at most q liars consistent with the observed votes can have
            corrupted a file. A named rule that cannot run on k files with that f (e.g. median needs
            k >= 2f+1) raises ValueError.
        assignment: ``"mols"`` (default) or ``"ramanujan"``; another value raises ValueError listing
            both. Stored as ``assignment_kind`` (``assignment`` is the per-worker file tuple), with
            ``ramanujan = (m, s, case)`` or None.

    Attributes (the :class:`Code` contract):
        n: workers. MOLS: ``K = r * l``; worker ``(a, v)`` has id ``(a - 1) * l + v``. Ramanujan:
            ``m * s`` (Case 1) or ``s**2`` (Case 2), ids as in :mod:`codedbft.encoders.ramanujan`.
        k: files. MOLS: ``l**2``; file ``(i, j)`` has id ``i * l + j``. Ramanujan: ``s**2`` or ``m*s``.
        s: ``(r - 1) // 2``: the largest number of Byzantine workers that can corrupt no file wherever
            they sit (each file keeps a strict honest majority), so that decoding is exact. This is the
            Code contract's meaning of s. Beyond it ByzShield degrades gracefully: the robust rule
            over files tolerates q Byzantine workers while ``max_distortion(q)[0] < 1/2`` (for l = 5,
            r = 3 up to q = 6, see :meth:`max_tolerated`).
        redundancy: ``r``, the number of copies of each file, i.e. the computation per worker
            relative to splitting the data without redundancy (each worker holds l of the l**2 files
            = 1/l of the data, versus 1/K; Ramanujan Case 2: l of r*l files = 1/r, versus 1/r**2).
            Note: this is not the base class' "mean partitions per worker" (which is l here); it
            matches the replication factor the papers report.
        B: None (``linear`` is False): a worker sends each held file's gradient separately, not one
            combination; :meth:`encode` returns those ``(n, l, d)`` stacks (``encodes_gradients``),
            and :meth:`max_distortion` is available (``has_distortion``).
    """

    def __init__(
        self,
        l: int,
        r: int,
        *,
        aggregator: str | Callable[[Any], Any] = "median",
        q: int | None = None,
        assignment: str = "mols",
    ) -> None:
        l, r = int(l), int(r)
        if assignment not in ASSIGNMENTS:
            raise ValueError(f"assignment must be one of {', '.join(map(repr, ASSIGNMENTS))}, got {assignment!r}")
        self.assignment_kind = assignment
        # (m, s, case) of the Ramanujan bigraph; None for MOLS
        self.ramanujan: tuple[int, int, int] | None = None
        if assignment == "mols":
            if _prime_power(l) is None:
                raise ValueError(f"l must be a prime or a prime power (got l={l})")
            if not 1 <= r <= l - 1:
                raise ValueError(f"r must satisfy 1 <= r <= l-1 (got r={r}, l={l})")
            self.n, self.k = r * l, l * l
        else:
            from codedbft.encoders.ramanujan import ramanujan_params, ramanujan_sizes

            self.ramanujan = ramanujan_params(l, r)  # (m, s, case): raises naming both cases' constraints
            sizes = ramanujan_sizes(*self.ramanujan[:2])
            self.n, self.k = sizes["K"], sizes["f"]
        self.l, self.r = l, r
        self.s = (r - 1) // 2
        self.threshold = (r + 1) // 2  # ceil(r/2) attacker copies leave no honest strict majority
        if q is None:
            q = self.s
        if not 0 <= q <= self.n:
            raise ValueError(f"q must satisfy 0 <= q <= n={self.n}, got q={q}")
        self.q = int(q)
        self._distortion: dict[tuple[int, str], DistortionInfo] = {}
        # Files an optimal q-attack wins: the robust rule's f (no search needed while q <= s).
        self.f_files = 0 if self.q <= self.s else self.max_distortion_info(self.q).files
        if isinstance(aggregator, str):
            from codedbft.aggregators import by_name

            aggregator = by_name(aggregator, f=self.f_files)
            if self.k < aggregator.min_n():
                raise ValueError(
                    f"{aggregator.name} over k={self.k} files needs {aggregator.requirement()}, but an optimal "
                    f"q={self.q} attack corrupts f={self.f_files} files: lower q or choose another rule"
                )
        self.aggregator = aggregator

    # ---- structure -------------------------------------------------------------------------------

    @cached_property
    def _files(self) -> np.ndarray:
        """Int (n, l): the sorted file ids of each worker (row w is ``assignment[w]``)."""
        if self.ramanujan is not None:
            from codedbft.encoders.ramanujan import ramanujan_assignment

            return np.asarray(ramanujan_assignment(*self.ramanujan[:2]), dtype=np.int64).reshape(self.n, self.l)
        L = mols(self.l, self.r)  # (r, l, l): value v of square a at file (i, j)
        a, i, j = np.indices(L.shape)
        worker = a * self.l + L
        # For a fixed worker the square value fixes j given i, so ordering by (worker, i) lists each
        # worker's files in increasing id i*l + j.
        order = np.lexsort((i.ravel(), worker.ravel()))
        return (i * self.l + j).ravel()[order].reshape(self.n, self.l)

    @cached_property
    def assignment(self) -> tuple[tuple[int, ...], ...]:
        """Tuple of n tuples of l file ids: for MOLS, worker ``(a, v)`` holds the files ``(i, j)`` with
        ``a*i + j = v``; for Ramanujan see :func:`~codedbft.encoders.ramanujan.ramanujan_assignment`."""
        return tuple(tuple(int(x) for x in row) for row in self._files)

    @cached_property
    def file_rows(self) -> np.ndarray:
        """Int (k, r): for each file, the message rows ``w * l + position`` holding its copies."""
        rows = np.arange(self.n * self.l).reshape(self.n, self.l)
        order = np.argsort(self._files.ravel(), kind="stable")
        return rows.ravel()[order].reshape(self.k, self.r)

    @cached_property
    def incidence(self) -> np.ndarray:
        """0/1 float32 (n, k): ``W[w, x] = 1`` when worker w holds file x."""
        return incidence_matrix(self.assignment, self.k)

    @property
    def redundancy(self) -> float:
        """Copies of each file, r (computation relative to no redundancy; see the class docstring)."""
        return float(self.r)

    # ---- worst-case attacks ----------------------------------------------------------------------

    def max_distortion_info(self, q: int, method: str = "auto") -> DistortionInfo:
        """The optimal q-worker attack and how it was found (exhaustive for K <= 25, else heuristic).

        Cached per (q, method). See :func:`optimal_attack`.
        """
        key = (int(q), method)
        info = self._distortion.get(key)
        if info is None:
            info = self._distortion[key] = optimal_attack(self.incidence, int(q), self.threshold, method=method)
        return info

    def max_distortion(self, q: int) -> tuple[float, tuple[int, ...]]:
        """(eps_hat(q), worker ids): the largest fraction of files q Byzantine workers can corrupt.

        ByzShield's figure of merit; for l = 5, r = 3 and q = 2..7 it is 0.04, 0.12, 0.20, 0.32, 0.48,
        0.56 (DETOX's groups with K = 15: 0.2, 0.2, 0.4, 0.4, 0.6, 0.6); for the Ramanujan l = r = 5
        (K = 25) and q = 3..7 it is 0.04, 0.04, 0.08, 0.16, 0.20. Exact for K <= 25; beyond, a
        heuristic lower bound (``max_distortion_info(q).method`` says which).
        """
        info = self.max_distortion_info(q)
        return info.fraction, info.workers

    def max_tolerated(self) -> int:
        """Largest q whose optimal attack corrupts fewer than half of the files (median stays honest)."""
        q = 0
        while q < self.n and self.max_distortion(q + 1)[0] < 0.5:
            q += 1
        return q

    # ---- encode / decode -------------------------------------------------------------------------

    def encode(self, G: Any) -> Any:
        """Honest messages for file gradients G (k, d): returns (n, l, d), one gradient per held file.

        ``out[w, p] = G[assignment[w][p]]``: ByzShield workers send each file's gradient separately
        (the master votes per file), so the messages are not one linear combination per worker and
        the code has no ``B``.
        """
        arr, kind = as_numpy(G)
        if arr.ndim != 2 or arr.shape[0] != self.k:
            raise ValueError(f"G must have shape (k={self.k}, d), got {arr.shape}")
        return kind.wrap(arr[self._files])

    def _build_decoder(self) -> ByzShieldDecoder:
        return ByzShieldDecoder(self, self.aggregator, self.f_files)
