"""DETOX hierarchical aggregation (Rajput et al. 2019): vote in groups, average buckets, robust rule."""

from __future__ import annotations

import math
from typing import Any

import torch

from codedbft.aggregators.base import Aggregator


class Hierarchical(Aggregator):
    """DETOX: (1) majority vote inside contiguous groups of ``group_size`` = r workers (the repetition
    decoder's ``codedbft.decoders.majority.majority_vote``; an undecided group gives its plurality
    member); (2) the g = n/r group outputs split into buckets of ``bucket`` consecutive groups, each
    bucket reduced by ``inner`` (default the mean); (3) the ``outer`` robust rule over the g/bucket
    bucket outputs.

    A group output is wrong only if at least ceil(r/2) of its r members are Byzantine, so s Byzantine
    workers corrupt at most ``floor(s / ceil(r/2))`` group outputs, hence at most as many buckets.

    Args:
        group_size: r (n must be a multiple of r).
        bucket: groups per bucket (g must be a multiple of it).
        inner: rule name (or Aggregator) reducing a bucket; built with f=0.
        outer: rule name or Aggregator over the bucket outputs.
        s: Byzantine workers tolerated; when ``f`` is not given the outer rule is built with
            ``f = floor(s / ceil(r/2))``.
        f: the outer rule's f directly (overrides ``s``).
        **outer_params: extra parameters of the outer rule (e.g. ``m=`` for multi-krum).
    ``last_info``: ``decided`` (..., g), ``agree`` (..., n), ``flagged`` (unbatched input), ``outer``.
    """

    name = "hierarchical"

    def __init__(
        self,
        group_size: int,
        bucket: int = 1,
        inner: str | Aggregator = "mean",
        outer: str | Aggregator = "median",
        s: int = 0,
        f: int | None = None,
        **outer_params: Any,
    ) -> None:
        from codedbft.aggregators.registry import by_name

        if not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"hierarchical needs group_size >= 1, got {group_size!r}")
        if not isinstance(bucket, int) or bucket < 1:
            raise ValueError(f"hierarchical needs bucket >= 1, got {bucket!r}")
        if s < 0:
            raise ValueError(f"hierarchical needs s >= 0, got {s}")
        eff = s // math.ceil(group_size / 2) if f is None else f
        super().__init__(eff)
        self.group_size, self.bucket, self.s = group_size, bucket, s
        self.inner = by_name(inner, f=0) if isinstance(inner, str) else inner
        self.outer = by_name(outer, f=eff, **outer_params) if isinstance(outer, str) else outer

    def min_n(self) -> int:
        return self.group_size * self.bucket * self.outer.min_n()

    def requirement(self) -> str:
        return f"n >= group_size*bucket*(outer {self.outer.requirement()})"

    def _check_n(self, n: int) -> None:
        if n % self.group_size:
            raise ValueError(f"hierarchical needs n % group_size == 0, got n={n}, group_size={self.group_size}")
        g = n // self.group_size
        if g % self.bucket:
            raise ValueError(f"hierarchical needs (n/group_size) % bucket == 0, got {g} groups, bucket={self.bucket}")
        super()._check_n(n)

    def _aggregate(self, x3: torch.Tensor) -> torch.Tensor:
        from codedbft.decoders.majority import majority_vote

        B, n, d = x3.shape
        vote = majority_vote(x3, group_size=self.group_size)
        groups = vote.values  # (B, g, d)
        g = groups.shape[1]
        buckets = self.inner(groups.reshape(B, g // self.bucket, self.bucket, d))  # (B, g/bucket, d)
        out = self.outer(buckets)
        self.last_info.update(
            decided=vote.decided, agree=vote.agree, outer=dict(self.outer.last_info)
        )
        return out

    def __repr__(self) -> str:
        return (
            f"Hierarchical(group_size={self.group_size}, bucket={self.bucket}, inner={self.inner!r}, "
            f"outer={self.outer!r}, s={self.s})"
        )
