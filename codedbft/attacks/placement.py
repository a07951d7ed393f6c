"""Adversary placement: which b of the n workers are Byzantine at each step.

``random`` (a seeded random set, fixed for the run or redrawn each step), ``fixed`` (ids given by the
user) and ``worst`` (for assignment codes: the q workers that corrupt the most partitions or groups,
from ``code.max_distortion(q)``, as in ByzShield and DETOX's worst-case analysis). ``docs/attacks.md``
describes them.

``worst`` without a code. A scheme with no assignment (plain aggregation: every worker computes its
own partition and the master aggregates the n messages) treats the workers symmetrically, so every
set of b workers is as bad as any other; ``worst`` then means the fixed set ``{0, ..., b-1}``
(:class:`FixedPlacement`). A scheme *with* a code must offer ``max_distortion``; a code that cannot
compute it (e.g. cyclic MDS, which is not an assignment code) is a configuration error, not a silent
fallback, since there the set does matter.

Placements are built by name from :data:`PLACEMENTS`, a :class:`~codedbft.registry.Registry` of
factories that all take the keywords ``n, b, code, ids, seed, redraw``; each uses those it needs and
rejects a given one it has no use for (``ids`` outside ``fixed``, ``redraw=True`` outside ``random``),
so a misconfiguration is reported rather than ignored. ``seed`` is the exception: a run passes its
seed to any placement, and the deterministic ones have nothing to draw.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

import numpy as np

from codedbft.registry import Registry


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
        if not getattr(code, "has_distortion", False):
            raise ValueError(f"worst placement needs a code with max_distortion(q); {type(code).__name__} has none")
        self.n, self.b = _check_nb(code.n, b)
        distortion, ids = code.max_distortion(self.b)
        self.distortion = float(distortion)
        self.ids = _check_ids(ids, self.n, "worst placement")
        if len(self.ids) != self.b:
            raise ValueError(f"worst placement: max_distortion({self.b}) returned {len(self.ids)} ids")

    def byzantine_ids(self, step: int) -> tuple[int, ...]:
        return self.ids


#: The placements by name; each entry is a factory taking the keywords of :func:`placement_by_name`.
PLACEMENTS: Registry[Any] = Registry("placement")


def _resolve_n(kind: str, n: int | None, code: Any) -> int:
    """``n``, defaulting to ``code.n``; ValueError when both are given and disagree, or neither is."""
    if code is not None:
        if n is not None and int(n) != code.n:
            raise ValueError(f"n={n} disagrees with the code's n={code.n}")
        return code.n
    if n is None:
        raise ValueError(f"{kind} placement needs n= (or code=)")
    return int(n)


def _unused(kind: str, ids: Iterable[int] | None = None, redraw: bool = False) -> None:
    """ValueError for an option this placement has no use for (it would otherwise be silently ignored)."""
    if ids is not None:
        raise ValueError(f"{kind} placement takes no ids= (only 'fixed' does)")
    if redraw:
        raise ValueError(f"{kind} placement takes no redraw=True (only 'random' redraws)")


def _fixed(
    *,
    n: int | None = None,
    b: int | None = None,
    code: Any = None,
    ids: Iterable[int] | None = None,
    seed: int = 0,
    redraw: bool = False,
) -> Placement:
    """The given ids at every step (needs ids, and n or code; b, if given, must equal len(ids)).

    Built by ``placement_by_name("fixed", ...)``; ``seed`` is unused (nothing is drawn).
    """
    _unused("fixed", redraw=redraw)
    n = _resolve_n("fixed", n, code)
    if ids is None:
        raise ValueError("fixed placement needs ids=")
    return FixedPlacement(n, ids, b)


def _random(
    *,
    n: int | None = None,
    b: int | None = None,
    code: Any = None,
    ids: Iterable[int] | None = None,
    seed: int = 0,
    redraw: bool = False,
) -> Placement:
    """A seeded uniformly random set of b workers, drawn once for the run or redrawn each step (redraw).

    Built by ``placement_by_name("random", ...)``: needs b, and n or code.
    """
    _unused("random", ids=ids)
    n = _resolve_n("random", n, code)
    if b is None:
        raise ValueError("random placement needs b=")
    return RandomPlacement(n, b, seed=seed, redraw=redraw)


def _worst(
    *,
    n: int | None = None,
    b: int | None = None,
    code: Any = None,
    ids: Iterable[int] | None = None,
    seed: int = 0,
    redraw: bool = False,
) -> Placement:
    """The b workers that corrupt the most partitions (code.max_distortion); workers 0..b-1 without a code.

    Built by ``placement_by_name("worst", ...)``: needs b, and code (or n for a scheme without a
    code, see the module docstring); ``seed`` is unused (nothing is drawn).
    """
    _unused("worst", ids=ids, redraw=redraw)
    if code is not None:
        _resolve_n("worst", n, code)
    elif n is None:
        raise ValueError("worst placement needs code= (or n= for a scheme without a code)")
    if b is None:
        raise ValueError("worst placement needs b=")
    if code is None:
        # No assignment: the workers are interchangeable, so any b of them is a worst case.
        n, b = _check_nb(n, b)
        return FixedPlacement(n, range(b))
    return WorstPlacement(code, b)


PLACEMENTS.register("fixed", _fixed)
PLACEMENTS.register("random", _random)
PLACEMENTS.register("worst", _worst)


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

    ``n`` defaults to ``code.n`` when a code is given, and must agree with it otherwise. ``"worst"``
    with ``code=None`` and ``n`` given (a scheme without an assignment) is ``FixedPlacement(n,
    range(b))``: every set of b workers is then as bad as any other. An unknown name raises
    ValueError listing the available ones; so does an option the placement has no use for (``ids``
    outside ``"fixed"``, ``redraw=True`` outside ``"random"``); ``seed`` is only used by ``"random"``.
    """
    return PLACEMENTS.build(name, n=n, b=b, code=code, ids=ids, seed=seed, redraw=redraw)
