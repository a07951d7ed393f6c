"""Repetition groups: DRACO (Chen et al., ICML 2018) and DETOX (Rajput et al., NeurIPS 2019).

The n workers form k = n / r groups of r contiguous workers; every member of group j computes the
gradient of partition j, so ``B[i, j] = 1`` iff ``i // r == j`` and the redundancy is r.

* DRACO: r = 2s + 1. Any placement of s Byzantine workers leaves an honest majority in every group,
  so a majority vote per group followed by a sum recovers Σ_j g_j exactly.
* DETOX: r small (3), vote per group, then a robust rule over the group outputs. An adversary must
  spend ceil(r/2) workers to win one group, so at most floor(q / ceil(r/2)) group outputs are wrong.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from codedbft._arrays import as_numpy
from codedbft.decoders.majority import MajorityDecoder
from codedbft.encoders.base import Code


class RepetitionCode(Code):
    """``RepetitionCode(n, s=None, r=None)``: n workers in n/r contiguous groups of r.

    Args:
        n: number of workers.
        s: Byzantine workers to tolerate exactly; r defaults to 2s + 1 (DRACO).
        r: group size (DETOX: r = 3); s defaults to (r − 1) / 2, the most a group of r can outvote.
        rtol: relative tolerance of the majority decoder's fallback clustering.

    Raises:
        ValueError: r even, r not dividing n, n < 2s + 1, or r < 2s + 1 when both are given.
    """

    def __init__(self, n: int, s: int | None = None, r: int | None = None, *, rtol: float = 1e-5):
        if n < 1:
            raise ValueError(f"n must be >= 1, got n={n}")
        if s is None and r is None:
            raise ValueError("give s (DRACO: r = 2s+1) or r (DETOX group size)")
        if s is not None and s < 0:
            raise ValueError(f"s must be >= 0, got s={s}")
        if r is None:
            r = 2 * s + 1
        if r < 1 or r % 2 == 0:
            raise ValueError(f"group size r must be odd and >= 1 for a strict majority, got r={r}")
        if s is None:
            s = (r - 1) // 2
        if n < 2 * s + 1:
            raise ValueError(f"repetition code needs n >= 2s+1, got n={n}, s={s}")
        if r < 2 * s + 1:
            raise ValueError(f"exact majority decoding needs r >= 2s+1, got r={r}, s={s} (use s=None for DETOX groups)")
        if n % r:
            raise ValueError(f"group size r={r} must divide n={n}")
        self.n, self.r, self.s, self.k = n, r, s, n // r
        self.rtol = rtol

    @property
    def assignment(self) -> tuple[tuple[int, ...], ...]:
        return tuple((i // self.r,) for i in range(self.n))

    @property
    def groups(self) -> tuple[tuple[int, ...], ...]:
        """Worker ids of each group (group j computes partition j)."""
        return tuple(tuple(range(j * self.r, (j + 1) * self.r)) for j in range(self.k))

    @property
    def redundancy(self) -> float:
        return float(self.r)

    @property
    def linear(self) -> bool:
        """True: each message is one partition gradient, ``B`` the 0/1 group matrix (known without building it)."""
        return True

    @property
    def B(self) -> np.ndarray:  # noqa: N802
        """(n, k) 0/1 matrix, ``B[i, j] = 1`` iff worker i is in group j."""
        B = np.zeros((self.n, self.k))
        B[np.arange(self.n), np.arange(self.n) // self.r] = 1.0
        return B

    def encode(self, G: Any) -> Any:
        """Each worker's message is its group's partition gradient, copied bit for bit: (k, d) -> (n, d)."""
        arr, kind = as_numpy(G)
        if arr.ndim != 2 or arr.shape[0] != self.k:
            raise ValueError(f"G must have shape (k={self.k}, d), got {arr.shape}")
        return kind.wrap(np.repeat(arr, self.r, axis=0))

    def _build_decoder(self) -> MajorityDecoder:
        return MajorityDecoder(self.n, self.r, rtol=self.rtol)

    def max_distortion(self, q: int) -> tuple[float, tuple[int, ...]]:
        """Optimal q-worker attack: win floor(q / ceil(r/2)) groups by taking ceil(r/2) members of each.

        Returns the fraction of the k groups (partitions) whose vote the attack decides, and the worker
        ids (the leftover q mod ceil(r/2) workers sit in the next group, where they cannot win).
        """
        if not 0 <= q <= self.n:
            raise ValueError(f"q must be in [0, n={self.n}], got {q}")
        need = math.ceil(self.r / 2)
        won = min(q // need, self.k)
        ids = [j * self.r + i for j in range(won) for i in range(need)]
        rest = q - len(ids)
        free = [w for w in range(self.n) if w not in set(ids)]
        ids += free[:rest]
        return won / self.k, tuple(sorted(ids))
