"""Adversary placement: which b of the n workers are Byzantine at each step.

``random`` (a seeded random set, fixed for the run or redrawn each step), ``fixed`` (ids given by the
user) and ``worst`` (for assignment codes: the q workers that corrupt the most partitions or groups,
from ``code.max_distortion(q)``, as in ByzShield and DETOX's worst-case analysis).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

import numpy as np


def _check_nb(n: int, b: int) -> tuple[int, int]:
    n, b = int(n), int(b)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= b <= n:
        raise ValueError(f"b must satisfy 0 <= b <= n={n}, got {b}")
    return n, b


def _check_ids(ids: Iterable[int], n: int, what: str) -> tuple[int, ...]:
    ids = tuple(sorted(int(i) for i in ids))
    if len(set(ids)) != len(ids):
        raise ValueError(f"{what}: Byzantine ids must be distinct, got {ids}")
    if ids and (ids[0] < 0 or ids[-1] >= n):
        raise ValueError(f"{what}: Byzantine ids must be in [0, n={n}), got {ids}")
    return ids


class Placement(ABC):
    """Which workers are Byzantine: ``byzantine_ids(step) -> sorted tuple of b ids in [0, n)``."""

    n: int
    b: int

    @abstractmethod
    def byzantine_ids(self, step: int) -> tuple[int, ...]:
        """The sorted Byzantine worker ids at ``step``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n}, b={self.b})"


class FixedPlacement(Placement):
    """The same user-given ids at every step (validated: distinct, in [0, n))."""

    def __init__(self, n: int, ids: Iterable[int], b: int | None = None) -> None:
        self.ids = _check_ids(ids, int(n), "fixed placement")
        self.n, self.b = _check_nb(n, len(self.ids))
        if b is not None and int(b) != self.b:
            raise ValueError(f"fixed placement: b={b} but {self.b} ids were given")

    def byzantine_ids(self, step: int) -> tuple[int, ...]:
        return self.ids


class RandomPlacement(Placement):
    """A uniformly random b-subset of the n workers, reproducible from ``seed``.

    With ``redraw=False`` the set is drawn once for the run; with ``redraw=True`` it is redrawn at
    each step from ``(seed, step)`` only, so step t's set does not depend on which steps were queried
    before (a resumed run sees the same adversaries).
    """

    def __init__(self, n: int, b: int, seed: int = 0, redraw: bool = False) -> None:
        self.n, self.b = _check_nb(n, b)
        self.seed = int(seed)
        self.redraw = bool(redraw)
        self._fixed = None if self.redraw else self._draw(np.random.default_rng([self.seed]))

    def _draw(self, rng: np.random.Generator) -> tuple[int, ...]:
        return tuple(sorted(int(i) for i in rng.choice(self.n, size=self.b, replace=False)))

    def byzantine_ids(self, step: int) -> tuple[int, ...]:
        if self._fixed is not None:
            return self._fixed
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return self._draw(np.random.default_rng([self.seed, int(step)]))


class WorstPlacement(Placement):
    """The b workers of an optimal attack on an assignment code: ``code.max_distortion(b)[1]``.

    Attributes:
        distortion: the fraction of partitions (or groups) that attack corrupts.
    """

    def __init__(self, code: Any, b: int) -> None:
        md = getattr(code, "max_distortion", None)
        if md is None:
            raise ValueError(f"worst placement needs a code with max_distortion(q); {type(code).__name__} has none")
        self.n, self.b = _check_nb(code.n, b)
        try:
            distortion, ids = md(self.b)
        except NotImplementedError as e:
            raise ValueError(f"worst placement needs a code with max_distortion(q): {e}") from None
        self.distortion = float(distortion)
        self.ids = _check_ids(ids, self.n, "worst placement")
        if len(self.ids) != self.b:
            raise ValueError(f"worst placement: max_distortion({self.b}) returned {len(self.ids)} ids")

    def byzantine_ids(self, step: int) -> tuple[int, ...]:
        return self.ids


PLACEMENTS = ("fixed", "random", "worst")


def placement_by_name(
    name: str,
    *,
    n: int | None = None,
    b: int | None = None,
    code: Any = None,
    ids: Iterable[int] | None = None,
    seed: int = 0,
    redraw: bool = False,
) -> Placement:
    """Build a placement: ``"random"`` (n, b, seed, redraw), ``"fixed"`` (n, ids), ``"worst"`` (code, b).

    ``n`` defaults to ``code.n`` when a code is given, and must agree with it otherwise.
    """
    key = name.strip().lower()
    if code is not None:
        if n is not None and int(n) != code.n:
            raise ValueError(f"n={n} disagrees with the code's n={code.n}")
        n = code.n
    if key == "worst":
        if code is None:
            raise ValueError("worst placement needs code=")
        if b is None:
            raise ValueError("worst placement needs b=")
        return WorstPlacement(code, b)
    if n is None:
        raise ValueError(f"{key} placement needs n= (or code=)")
    if key == "fixed":
        if ids is None:
            raise ValueError("fixed placement needs ids=")
        return FixedPlacement(n, ids, b)
    if key == "random":
        if b is None:
            raise ValueError("random placement needs b=")
        return RandomPlacement(n, b, seed=seed, redraw=redraw)
    raise ValueError(f"unknown placement {name!r}; available: {', '.join(PLACEMENTS)}")
