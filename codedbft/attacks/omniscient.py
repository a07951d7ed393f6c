"""Omniscient and colluding attacks: the Byzantine workers see the honest messages and agree.

alie (Baruch et al. 2019, "A little is enough"), ipm (Xie et al. 2019, inner product manipulation),
omniscient (Blanchard et al. 2017) and collude (the coding papers' identical-wrong-vector adversary),
as defined in ``docs/attacks.md``. Every Byzantine row is the same vector, returned as a
contiguous (b, d) tensor (not a stride-0 view) so that callers may write into it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from codedbft.attacks.base import (
    ATTACKS,
    Attack,
    AttackContext,
    check_finite,
    draw_normal,
    honest_mean,
)


def _rows(v: torch.Tensor, b: int) -> torch.Tensor:
    return v.unsqueeze(0).expand(b, -1).contiguous()


def population_std_mean(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinate-wise population std (ddof = 0) and mean of the rows of ``x`` (h, d), two-pass.

    Accumulates (x_i − μ)² one row at a time into a (d,) buffer: ``torch.std_mean(x, dim=0)`` runs a
    strided per-column Welford on CPU that measured ~50x the cost of ``x.mean(0)`` at d = 1e6, and
    ``(x − μ)²`` at once would allocate a second (h, d) stack. The loop is over the h workers only.
    """
    mu = x.mean(dim=0)
    acc = torch.zeros_like(mu)
    diff = torch.empty_like(mu)
    for row in x:
        torch.sub(row, mu, out=diff)
        acc.addcmul_(diff, diff)
    return acc.div_(x.shape[0]).sqrt_(), mu


def alie_z(n: int, f: int) -> float:
    """ALIE's z = Φ⁻¹((n − m) / n) with m = ⌊n/2 + 1⌋ − f (Baruch et al. 2019).

    m is the number of honest workers the attacker must "recruit" to obtain a majority; z is the
    largest shift, in standard deviations, that keeps the Byzantine values closer to the honest mean
    than m honest values are. Needs 1 <= m < n, i.e. 1 <= f <= ⌊n/2⌋ for n >= 2.
    """
    m = n // 2 + 1 - f
    if n < 2 or not 1 <= m < n:
        raise ValueError(f"alie needs n >= 2 and 1 <= m = floor(n/2 + 1) - f < n (f <= n // 2); got n={n}, f={f}")
    return float(torch.special.ndtri(torch.tensor((n - m) / n, dtype=torch.float64)))


@ATTACKS.register()
class ALIE(Attack):
    """"A little is enough" (Baruch et al. 2019): every Byzantine worker sends μ − z·σ per coordinate.

    μ and σ are the coordinate-wise mean and population standard deviation (ddof = 0) of the honest
    messages; z = :func:`alie_z(n, f) <alie_z>` with n = ``ctx.n`` (default h + b) and f = n − h, unless
    ``z`` is given.
    """

    name = "alie"

    def __init__(self, z: float | None = None) -> None:
        self.z = None if z is None else check_finite(z, "z")

    def check(self, n: int, h: int) -> None:
        if h < 1:
            raise ValueError("alie needs h >= 1 honest messages")
        if self.z is None:
            alie_z(n, n - h)

    def _forge(self, honest: torch.Tensor, ids: tuple[int, ...], ctx: AttackContext) -> torch.Tensor:
        h = honest.shape[0]
        n = ctx.workers(h, len(ids))
        z = alie_z(n, n - h) if self.z is None else self.z
        sigma, mu = population_std_mean(honest)
        return _rows(mu.sub_(sigma, alpha=z), len(ids))


@ATTACKS.register()
class IPM(Attack):
    """Inner product manipulation (Xie et al. 2019): −ε · mean of the honest messages.

    ε default 0.1 (large ε such as 100 also appears in the paper). Always the mean of ``honest``,
    never ``ctx.true_gradient``: the attack is defined on the messages the Byzantine workers see.
    """

    name = "ipm"

    def __init__(self, epsilon: float = 0.1) -> None:
        self.epsilon = check_finite(epsilon, "epsilon")

    def check(self, n: int, h: int) -> None:
        if h < 1:
            raise ValueError("ipm needs h >= 1 honest messages")

    def _forge(self, honest: torch.Tensor, ids: tuple[int, ...], ctx: AttackContext) -> torch.Tensor:
        return _rows(honest.mean(dim=0).mul_(-self.epsilon), len(ids))


@ATTACKS.register()
class Omniscient(Attack):
    """−c · true gradient (Blanchard et al. 2017), c default 1.

    The true gradient is ``ctx.true_gradient`` (the honest aggregate the master computes: the mean of
    honest messages unless the scheme says sum), or the mean of ``honest`` when the context has none.
    """

    name = "omniscient"

    def __init__(self, c: float = 1.0) -> None:
        self.c = check_finite(c, "c")

    def _forge(self, honest: torch.Tensor, ids: tuple[int, ...], ctx: AttackContext) -> torch.Tensor:
        g = ctx.true_gradient
        if g is None:
            g = honest_mean(honest, self.name)
        elif tuple(g.shape) != (honest.shape[1],):
            raise ValueError(f"ctx.true_gradient must have shape (d={honest.shape[1]},), got {tuple(g.shape)}")
        return _rows(g.to(dtype=honest.dtype, device=honest.device) * (-self.c), len(ids))


@ATTACKS.register()
class Collude(Attack):
    """All Byzantine workers send the same wrong vector (defeats codes that only count disagreements).

    The vector is ``vector`` when given (any (d,) tensor or array), else a shared random direction
    u / ‖u‖, u ~ N(0, I) drawn from ``ctx.generator`` each step, scaled to ``scale`` times the mean
    norm of the honest messages, so it is as large as an honest gradient but points elsewhere. When
    that norm is zero or not finite (no honest messages, all zero, or overflowing) the scale alone is
    used.
    """

    name = "collude"

    def __init__(self, vector: Any = None, scale: float = 1.0) -> None:
        self.vector = None if vector is None else torch.as_tensor(vector)
        if self.vector is not None and self.vector.ndim != 1:
            raise ValueError(f"vector must have shape (d,), got {tuple(self.vector.shape)}")
        self.scale = check_finite(scale, "scale")

    def _forge(self, honest: torch.Tensor, ids: tuple[int, ...], ctx: AttackContext) -> torch.Tensor:
        d = honest.shape[1]
        if self.vector is not None:
            if self.vector.shape[0] != d:
                raise ValueError(f"vector must have shape (d={d},), got {tuple(self.vector.shape)}")
            return _rows(self.vector.to(dtype=honest.dtype, device=honest.device), len(ids))
        u = draw_normal((d,), ctx, honest)
        if d == 0:
            return _rows(u, len(ids))
        target = self.scale
        if honest.shape[0] > 0:
            norm = float(torch.linalg.vector_norm(honest, dim=1).mean())
            if norm > 0 and math.isfinite(norm):
                target *= norm
        return _rows(u.mul_(target / float(torch.linalg.vector_norm(u))), len(ids))
