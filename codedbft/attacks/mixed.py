"""The mixed attack (ByGARS): each Byzantine worker picks one message-level attack at random per step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from codedbft.attacks.base import ATTACKS, Attack, AttackContext, by_name

#: the default pool: the built-in message-level attacks. Fixed here, not read from the registry, so
#: an attack a user registers later does not change what ``mixed`` draws (runs stay reproducible).
DEFAULT_POOL = ("alie", "bit-flip", "collude", "constant", "gambler", "gaussian", "ipm", "omniscient", "sign-flip")


@ATTACKS.register()
class Mixed(Attack):
    """Each Byzantine worker sends the message of an attack drawn uniformly from ``attacks``.

    The draw is made per Byzantine worker and per step from ``ctx.generator`` (b draws, then the
    chosen attacks' own draws, in the order of ``attacks``), so a fixed seed reproduces it and a
    generator that advances, or one from :func:`~codedbft.attacks.base.step_generator`, varies it
    across steps. Only message-level attacks can be drawn: a data attack (label-flip) acts on the
    worker's computation, not on its message. The sub-attacks see the full context, so ALIE still uses
    f = n − h for the whole Byzantine set, and every listed attack's constraint is checked at each
    call (e.g. ALIE's f <= n // 2), whichever attacks are drawn. Without ``ctx.own`` each sub-attack
    falls back to the default own messages (the true gradient per row) itself.

    Args:
        attacks: names or :class:`Attack` instances; default :data:`DEFAULT_POOL`, the built-in
            message-level attacks with their default parameters.
    """

    name = "mixed"

    def __init__(self, attacks: Sequence[str | Attack] | None = None) -> None:
        if attacks is None:
            attacks = DEFAULT_POOL
        built = tuple(a if isinstance(a, Attack) else by_name(a) for a in attacks)
        if not built:
            raise ValueError("mixed needs at least one attack to draw from")
        for a in built:
            if a.data_level or isinstance(a, Mixed):
                raise ValueError(f"mixed draws only message-level attacks, got {a.name!r}")
        self.attacks = built

    def check(self, n: int, h: int) -> None:
        for a in self.attacks:
            a.check(n, h)

    def choose(self, b: int, ctx: AttackContext) -> torch.Tensor:
        """Indices into ``attacks`` for b Byzantine workers, drawn from ``ctx.generator`` (CPU int64)."""
        g = ctx.generator
        return torch.randint(len(self.attacks), (b,), generator=g, device=g.device).cpu()

    def _forge(self, honest: torch.Tensor, ids: tuple[int, ...], ctx: AttackContext) -> torch.Tensor:
        b = len(ids)
        choice = self.choose(b, ctx)
        full = replace(ctx, n=ctx.workers(honest.shape[0], b))
        out = honest.new_empty((b, honest.shape[1]))
        # One call per distinct attack (at most len(attacks)), each on its rows of the Byzantine set.
        for j in torch.unique(choice).tolist():
            rows = torch.nonzero(choice == j).flatten()
            sub_ids = tuple(ids[i] for i in rows.tolist())
            sub_own = None if ctx.own is None else ctx.own[rows.to(ctx.own.device)]
            out[rows.to(out.device)] = self.attacks[j](honest, sub_ids, replace(full, own=sub_own))
        return out
