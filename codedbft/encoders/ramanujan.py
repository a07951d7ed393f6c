"""ByzShield's second assignment: bi-regular Ramanujan bigraphs from array-code matrices.

Konstantinidis & Ramamoorthy, "ByzShield: An Efficient and Robust System for Distributed Training",
MLSys 2021 (arXiv 2010.04902), use, beside the MOLS graphs of :mod:`codedbft.encoders.byzshield`,
the explicit unbalanced Ramanujan bigraphs of Burnwal, Sinha & Vidyasagar, "New and explicit
constructions of unbalanced Ramanujan bipartite graphs" (Ramanujan J., 2021; arXiv 1910.03937).

The construction. Let ``s`` be a prime, ``m >= 1`` an integer and ``P`` the ``s x s`` cyclic-shift
permutation matrix (``P[a, a - 1 mod s] = 1``). ``B`` is the ``(s*s) x (m*s)`` 0/1 matrix of
``s x m`` blocks whose block ``(i, j)`` (``i = 0..s-1``, ``j = 0..m-1``) is ``P**(i*j)``; so row
``(i, a)`` meets column ``(j, b)`` exactly when ``b = a - i*j (mod s)``. Every row has ``m`` ones
(one per block column) and every column ``s`` (one per block row). The two cases of the paper (we
follow the authors' reference code, ``section 5/simulations.py`` of their ByzShield repository):

* **Case 1, m < s**: the workers are the columns of B (the biadjacency is ``B^T``). ``K = m*s``
  workers, ``f = s**2`` files; each worker holds ``s`` files, each file has ``r = m`` copies. Two
  workers share at most one file (``i*(j - j') = b - b'`` has one root i when ``0 < |j - j'| < s``).
  Same K, f and load as MOLS with ``l = s, r = m``, a second graph for the MOLS parameters.
* **Case 2, m >= s with s | m**: the workers are the rows of B. ``K = s**2`` workers, ``f = m*s``
  files; each worker holds ``m`` files, each file has ``r = s`` copies. With ``m = s`` this gives
  ``r = l = s``, which MOLS cannot (``r <= l - 1`` there): the paper's Table 4, ``K = 25, r = 5``.
  For ``m > s`` two workers can share up to ``m / s`` files (the roots j of ``(i - i') j = a' - a``
  repeat every s). The divisibility ``s | m`` is the authors' requirement for this case.

The singular values of the biadjacency (Burnwal et al., checked in tests/test_ramanujan.py) are
``sqrt(m*s)`` once, then ``sqrt(load)`` (``sqrt(s)`` with multiplicity ``m(s-1)`` in Case 1,
``sqrt(m)`` with multiplicity ``s(s-1)`` in Case 2), the rest zero. The second one, ``sqrt(load)``,
is below the Ramanujan bound ``sqrt(d_l - 1) + sqrt(d_r - 1)`` whenever ``r >= 2`` (``m = 1`` puts
every file on one worker and is not Ramanujan). MOLS has the same second singular value
(``lambda**2 = l``), so the spectral bound of
:func:`~codedbft.encoders.byzshield.distortion_upper_bound` applies unchanged.

In :class:`~codedbft.encoders.byzshield.ByzShieldCode` the assignment is asked for with
``assignment="ramanujan"`` and the same ``(l, r)`` as MOLS: ``l`` the files per worker and ``r``
the copies per file; :func:`ramanujan_params` maps them to ``(m, s, case)``: Case 1 when ``r < l``
and l is prime (``s = l, m = r``), Case 2 when r is prime and ``r | l`` (``s = r, m = l``).

Measured costs (shared 2-core machine): building the K = 25 assignment takes about 0.4 ms (integer
arithmetic, no matrix powers); the exact optimal-attack search of
:func:`~codedbft.encoders.byzshield.optimal_attack` for K = 25, r = 5 and q = 3..7 takes about
0.12 s in all (meet in the middle over C(25, q) sets) and reproduces the paper's Table 4: 1, 1, 2,
4, 5 of the 25 files. See docs/codes.md §3.
"""

from __future__ import annotations

import math

import numpy as np


def is_prime(p: int) -> bool:
    """Trial division: the primes here are small (the side of a permutation block)."""
    return p >= 2 and all(p % d for d in range(2, math.isqrt(p) + 1))


def ramanujan_case(m: int, s: int) -> int:
    """1 when ``m < s`` (workers = columns of B), 2 when ``m >= s`` with ``s | m`` (rows of B).

    Raises:
        ValueError: s not prime, m < 1, or ``m >= s`` with m not a multiple of s.
    """
    if not is_prime(int(s)):
        raise ValueError(f"s must be prime (got s={s})")
    if int(m) < 1:
        raise ValueError(f"m must satisfy m >= 1 (got m={m})")
    if m < s:
        return 1
    if m % s:
        raise ValueError(f"Case 2 (m >= s) needs s | m (got m={m}, s={s})")
    return 2


def biadjacency(m: int, s: int) -> np.ndarray:
    """The ``(s*s, m*s)`` 0/1 int8 array-code matrix B: row ``i*s + a`` meets column ``j*s + b``
    when ``b = a - i*j (mod s)`` (block (i, j) is ``P**(i*j)``). Validates (m, s) like
    :func:`ramanujan_case`."""
    ramanujan_case(m, s)
    i, a, j = np.ix_(np.arange(s), np.arange(s), np.arange(m))
    b = (a - i * j) % s  # (s, s, m): the column offset of row (i, a) in block column j
    B = np.zeros((s, s, m, s), dtype=np.int8)
    B[i, a, j, b] = 1
    return B.reshape(s * s, m * s)


def worker_file_matrix(m: int, s: int) -> np.ndarray:
    """The (K, f) 0/1 biadjacency of the assignment: ``B^T`` in Case 1, ``B`` in Case 2."""
    B = biadjacency(m, s)
    return B.T.copy() if ramanujan_case(m, s) == 1 else B


def ramanujan_assignment(m: int, s: int) -> tuple[tuple[int, ...], ...]:
    """Per worker, its sorted file ids (the shape of the MOLS ``assignment``).

    Case 1: worker ``j*s + b`` holds files ``i*s + a`` with ``a = b + i*j (mod s)``, i = 0..s-1.
    Case 2: worker ``i*s + a`` holds files ``j*s + b`` with ``b = a - i*j (mod s)``, j = 0..m-1.
    """
    W = worker_file_matrix(m, s)
    return tuple(tuple(int(x) for x in np.flatnonzero(row)) for row in W)


def ramanujan_params(l: int, r: int) -> tuple[int, int, int]:
    """``(m, s, case)`` of the Ramanujan assignment with ``l`` files per worker and ``r`` copies.

    Case 1: ``r < l``, l prime (``s = l, m = r``, K = r*l, f = l**2). Case 2: r prime, ``r | l``
    (``s = r, m = l``, K = r**2, f = r*l); ``l = r`` is the square case K = f = r**2.

    Raises:
        ValueError: no case fits, naming both cases' constraints.
    """
    l, r = int(l), int(r)
    if r < 1 or l < 1:
        raise ValueError(f"l and r must be >= 1 (got l={l}, r={r})")
    if r < l and is_prime(l):
        return r, l, 1
    if is_prime(r) and l % r == 0:
        return l, r, 2
    raise ValueError(
        f"ramanujan assignment needs either r < l with l prime (Case 1: s = l, m = r) or r prime with "
        f"r | l (Case 2: s = r, m = l); got l={l}, r={r}"
    )


def ramanujan_sizes(m: int, s: int) -> dict[str, int]:
    """``K`` workers, ``f`` files, ``load`` files per worker and ``r`` copies per file."""
    if ramanujan_case(m, s) == 1:
        return dict(K=m * s, f=s * s, load=s, r=m)
    return dict(K=s * s, f=m * s, load=m, r=s)


def second_singular_value(W: np.ndarray) -> float:
    """The second largest singular value of a biadjacency matrix (0 if it has one)."""
    sv = np.linalg.svd(np.asarray(W, dtype=np.float64), compute_uv=False)
    return float(sv[1]) if sv.size > 1 else 0.0


def ramanujan_bound(d_left: int, d_right: int) -> float:
    """``sqrt(d_l - 1) + sqrt(d_r - 1)``: a (d_l, d_r)-biregular bigraph is Ramanujan when its second
    singular value is at most this."""
    return math.sqrt(d_left - 1) + math.sqrt(d_right - 1)
