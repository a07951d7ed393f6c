"""DETOX hierarchical aggregation (Rajput et al. 2019): vote in groups, average buckets, robust rule.

DETOX assigns the same data to groups of r workers, so a majority vote inside a group removes
every Byzantine input that is not backed by a majority of its group; the robust rule that follows
then faces few bad inputs (at most ``floor(s / ceil(r/2))`` of ``n / r``) instead of s of n, and
runs on fewer, averaged vectors. The inner and outer rules are ordinary aggregators, built by
name through the registry; their state (a stateful outer rule such as centered clipping) is part
of this rule's state. Definition: docs/aggregators.md.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from codedbft.aggregators.base import Aggregator
from codedbft.aggregators.registry import AGGREGATORS, by_name
from codedbft.registry import canonical

#: Hierarchical's own constructor parameters (the rest go to the outer rule)
_OWN_PARAMS = ("group_size", "bucket", "inner", "outer", "s", "f")


@AGGREGATORS.register()
class Hierarchical(Aggregator):
    """DETOX (Rajput et al. 2019): majority vote in groups of r, bucket means, then a robust rule.

    (1) Majority vote inside contiguous groups of ``group_size`` = r workers (the repetition
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
        **outer_params: extra parameters of the outer rule (e.g. ``m=`` for multi-krum), only with
            an outer rule given by name; a parameter the outer rule does not take is a ValueError
            listing the valid ones.

    ``stateful`` is True when the inner or the outer rule is; ``state_dict()`` then holds their
    states (``{"inner": ..., "outer": ...}``, only the stateful parts) and ``load_state_dict()``
    restores them into the live inner and outer rules. ``reset()`` resets both.
    ``last_info``: ``decided`` (..., g), ``agree`` (..., n), ``outer`` (the outer rule's last_info).
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
        if not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"hierarchical needs group_size >= 1, got {group_size!r}")
        if not isinstance(bucket, int) or bucket < 1:
            raise ValueError(f"hierarchical needs bucket >= 1, got {bucket!r}")
        if s < 0:
            raise ValueError(f"hierarchical needs s >= 0, got {s}")
        if isinstance(outer, str):
            self._check_outer_params(outer, outer_params)
        elif outer_params:
            # an outer rule given as an object is already configured: extra parameters would be lost
            raise ValueError(f"hierarchical: parameters {sorted(outer_params)} need an outer rule given by name, "
                             f"got {type(outer).__name__}")
        eff = s // math.ceil(group_size / 2) if f is None else f
        super().__init__(eff)
        self.group_size, self.bucket, self.s = group_size, bucket, s
        self.inner = by_name(inner, f=0) if isinstance(inner, str) else inner
        self.outer = by_name(outer, f=eff, **outer_params) if isinstance(outer, str) else outer

    @staticmethod
    def _check_outer_params(outer: str, outer_params: dict[str, Any]) -> None:
        valid = AGGREGATORS.params(outer)  # also: ValueError for an unknown outer name
        if valid is None:
            return
        unknown = sorted(set(outer_params) - set(valid))
        if unknown:
            extra = [k for k in valid if k != "f"]  # f is Hierarchical's own (from s)
            raise ValueError(
                f"unknown aggregator parameter{'s' if len(unknown) > 1 else ''} {unknown} for 'hierarchical' "
                f"with outer {canonical(outer)!r}; valid: {list(_OWN_PARAMS)} and the outer rule's {extra or 'none'}"
            )

    @property
    def stateful(self) -> bool:  # type: ignore[override]
        """True when the inner or the outer rule carries state across calls."""
        return bool(self.inner.stateful or self.outer.stateful)

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

    # -- state: the parts' ----------------------------------------------------------------------
    def _parts(self) -> dict[str, Aggregator]:
        return {"inner": self.inner, "outer": self.outer}

    def state_dict(self) -> dict[str, Any]:
        return {key: part.state_dict() for key, part in self._parts().items() if part.stateful}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, part in self._parts().items():
            if part.stateful:
                # a stateful part missing from ``state`` had no state yet: restore it to fresh
                part.load_state_dict(state.get(key, {}))

    def reset(self) -> None:
        super().reset()
        self.inner.reset()
        self.outer.reset()

    def __repr__(self) -> str:
        return (
            f"Hierarchical(group_size={self.group_size}, bucket={self.bucket}, inner={self.inner!r}, "
            f"outer={self.outer!r}, s={self.s})"
        )
