"""The ``inf`` fault: every Byzantine worker sends +Inf in every coordinate.

Math: x_j = (+∞, ..., +∞) ∈ R^d for every Byzantine worker j. Not an optimisation attack but a
fault the runtime must survive: an aggregator (``codedbft.aggregators``) treats a non-finite row as
zero and counts it (``last_info["nonfinite_rows"]``), and a decoder flags a non-finite message as
Byzantine (an erasure). No paper: a project fault-injection attack standing for a worker whose
arithmetic overflowed.

Cost (measured on this project's shared 2-core CPU at h = 12, b = 3, d = 1e5, float32): ~7 ms per
call, best of 7 (one ``torch.full`` plus the contract's input checks).
"""

from __future__ import annotations

import torch

from codedbft.attacks.base import ATTACKS, Attack, AttackContext


@ATTACKS.register()
class Inf(Attack):
    """Every Byzantine row is +Inf in every coordinate (needs floating-point messages)."""

    name = "inf"

    def _forge(self, honest: torch.Tensor, ids: tuple[int, ...], ctx: AttackContext) -> torch.Tensor:
        if not honest.is_floating_point():
            raise ValueError(f"inf needs floating-point messages (Inf is not representable in {honest.dtype})")
        return torch.full((len(ids), honest.shape[1]), float("inf"), dtype=honest.dtype, device=honest.device)
