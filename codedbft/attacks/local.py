"""Local attacks: the Byzantine worker knows only its own data and gradient (no honest messages).

gaussian (Blanchard et al. 2017), sign-flip and bit-flip (survey, attacks section), constant (ByGARS),
gambler (survey, after Damaskinos et al.) and label-flip (ByGARS data poisoning), as defined in
``docs/attacks.md``.

sign-flip, bit-flip, gambler and label-flip start from the worker's own honest message ``ctx.own``;
without it (a context built by hand) they start from the documented default, the true gradient
repeated once per Byzantine worker (:func:`~codedbft.attacks.base.own_messages`). The honest
messages are then read only to form that default, which a real local adversary approximates by its
own gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from codedbft._arrays import is_torch
from codedbft.attacks.base import (
    ATTACKS,
    Attack,
    AttackContext,
    check_finite,
    draw_hits,
    draw_normal,
    honest_mean,
    own_messages,
)


def _check_probability(p: float, what: str) -> float:
    p = check_finite(p, what)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{what} must be in [0, 1], got {p}")
    return p


@ATTACKS.register()
class Gaussian(Attack):
    """Each Byzantine worker sends an independent draw of N(m, σ² I), σ default 200 (Blanchard et al.).

    ``mean`` None (default): m = 0, the draw is exactly ``σ · N(0, I)`` as it always was. A float: m is
    that constant in every coordinate. ``"honest"``: m is the mean of the honest messages (the noise is
    then centred where the honest messages are, which filters based on distance to the crowd cannot
    reject by location alone).
    """

    name = "gaussian"

    def __init__(self, sigma: float = 200.0, mean: float | str | None = None) -> None:
        self.sigma = check_finite(sigma, "sigma")
        if self.sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        if mean is not None and mean != "honest":
            if isinstance(mean, str):
                raise ValueError(f"mean must be None, a float or 'honest', got {mean!r}")
            mean = check_finite(mean, "mean")
        self.mean = mean

    def check(self, n: int, h: int) -> None:
        if self.mean == "honest" and h < 1:
            raise ValueError("gaussian with mean='honest' needs h >= 1 honest messages")

    def _forge(self, honest: torch.Tensor, ids: tuple[int, ...], ctx: AttackContext) -> torch.Tensor:
        out = draw_normal((len(ids), honest.shape[1]), ctx, honest).mul_(self.sigma)
        if self.mean is None:
            return out
        if self.mean == "honest":
            return out.add_(honest_mean(honest, self.name).to(out.dtype))
        return out.add_(self.mean)


@ATTACKS.register()
class SignFlip(Attack):
    """−c · (own honest gradient), c default 1 (4 and 10 also appear in the papers).

    Without ``ctx.own`` the own gradient defaults to the true gradient
    (:func:`~codedbft.attacks.base.own_messages`), so every row is −c · ``ctx.true_gradient``
    (ByzFL's sign-flipping attack for c = 1).
    """

    name = "sign-flip"

    def __init__(self, c: float = 1.0) -> None:
        self.c = check_finite(c, "c")

    def _forge(self, honest: torch.Tensor, ids: tuple[int, ...], ctx: AttackContext) -> torch.Tensor:
        return own_messages(ctx, honest, ids, self.name) * (-self.c)


# The sign bit is the top bit of the integer type of the same width; XOR with the type's minimum
# (only the top bit set) flips it and nothing else, NaN payloads and signed zeros included.
_SIGN_BIT: dict[torch.dtype, tuple[torch.dtype, int]] = {
    torch.float64: (torch.int64, -(2**63)),
    torch.float32: (torch.int32, -(2**31)),
    torch.float16: (torch.int16, -(2**15)),
    torch.bfloat16: (torch.int16, -(2**15)),
}


@ATTACKS.register()
class BitFlip(Attack):
    """The own honest gradient with the IEEE-754 sign bit of a random subset of coordinates flipped.

    Each coordinate of each Byzantine row is flipped independently with probability ``fraction``
    (default 1: every coordinate, i.e. ``−own`` bit for bit). The flip is an integer XOR on the bit
    pattern, so exactly the chosen sign bits change (survey, attacks section).
    """

    name = "bit-flip"

    def __init__(self, fraction: float = 1.0) -> None:
        self.fraction = _check_probability(fraction, "fraction")

    def _forge(self, honest: torch.Tensor, ids: tuple[int, ...], ctx: AttackContext) -> torch.Tensor:
        own = own_messages(ctx, honest, ids, self.name)
        if own.dtype not in _SIGN_BIT:
            raise ValueError(f"bit-flip needs float16/bfloat16/float32/float64 messages, got {own.dtype}")
        int_dtype, sign = _SIGN_BIT[own.dtype]
        bits = own.view(int_dtype)
        if self.fraction == 1.0:
            return (bits ^ sign).view(own.dtype)
        hits = draw_hits(own.numel(), self.fraction, ctx, own)
        if hits.dtype == torch.bool:  # dense: one pass beats gathering half the entries
            return torch.where(hits.view(own.shape), bits ^ sign, bits).view(own.dtype)
        flat = bits.reshape(-1).clone()
        flat[hits] ^= sign
        return flat.view(own.dtype).view(own.shape)


@ATTACKS.register()
class Constant(Attack):
    """The constant vector c · 1 (ByGARS); c default 100 (a project choice: the sources fix no value)."""

    name = "constant"

    def __init__(self, c: float = 100.0) -> None:
        self.c = check_finite(c, "c")

    def _forge(self, honest: torch.Tensor, ids: tuple[int, ...], ctx: AttackContext) -> torch.Tensor:
        return torch.full((len(ids), honest.shape[1]), self.c, dtype=honest.dtype, device=honest.device)


@ATTACKS.register()
class Gambler(Attack):
    """The own honest gradient with rare coordinates replaced by a huge value (survey, after Damaskinos et al.).

    Each coordinate of each Byzantine row is replaced independently with probability ``p`` (default
    0.001) by ``magnitude`` (default 1e6). In float16 the default magnitude is Inf.
    """

    name = "gambler"

    def __init__(self, p: float = 0.001, magnitude: float = 1e6) -> None:
        self.p = _check_probability(p, "p")
        self.magnitude = check_finite(magnitude, "magnitude")

    def _forge(self, honest: torch.Tensor, ids: tuple[int, ...], ctx: AttackContext) -> torch.Tensor:
        own = own_messages(ctx, honest, ids, self.name)
        out = own.clone(memory_format=torch.contiguous_format)
        out.view(-1)[draw_hits(out.numel(), self.p, ctx, out)] = self.magnitude
        return out


@ATTACKS.register()
class LabelFlip(Attack):
    """Data poisoning (ByGARS): the worker trains on labels mapped y -> C − 1 − y.

    The poisoned gradient comes from the worker's own computation: the worker calls
    :meth:`flip_labels` on its batch labels before the forward pass, and ``ctx.own`` then already
    holds that poisoned gradient. At the message level the attack therefore sends ``ctx.own``
    unchanged (without it, the default own messages: the unpoisoned true gradient, i.e. no attack).
    :class:`~codedbft.attacks.mixed.Mixed` never draws it (``data_level``).
    """

    name = "label-flip"
    data_level = True

    @staticmethod
    def flip_labels(y: Any, num_classes: int) -> Any:
        """``num_classes − 1 − y`` (numpy array or torch tensor of integer labels in [0, num_classes))."""
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not is_torch(y):
            y = np.asarray(y)
        size = y.numel() if is_torch(y) else y.size
        if size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"labels must be in [0, num_classes={num_classes})")
        return (num_classes - 1) - y

    def _forge(self, honest: torch.Tensor, ids: tuple[int, ...], ctx: AttackContext) -> torch.Tensor:
        return own_messages(ctx, honest, ids, self.name)
