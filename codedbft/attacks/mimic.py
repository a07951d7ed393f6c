"""The mimic attack (Karimireddy, He, Jaggi, "Byzantine-robust learning on heterogeneous datasets via
bucketing", ICLR 2022): every Byzantine worker copies one honest worker's message.

Under heterogeneous (non-i.i.d.) data, a robust rule that weighs agreement over-represents whichever
honest worker the Byzantine workers copy: b + 1 identical messages pull the aggregate towards that
worker's local optimum. The damage is largest for the honest worker that differs most from the others
along the direction in which the honest messages vary most.

Math. With μ = (1/h) Σ_i x_i and the centred messages X̄ = [x_i − μ]_i (h, d), let z be the top
principal direction of X̄ (the unit top right-singular vector, i.e. the top eigenvector of the
covariance X̄ᵀX̄ / h). The copied worker is

    i* = argmax_i |⟨x_i − μ, z⟩|,

the honest message with the largest projection, in magnitude, on that direction (the sign of a
singular vector is arbitrary, so the magnitude makes the choice well defined). Ties, up to a relative
1e-9, go to the lower index. Every Byzantine row is x_{i*} (bit for bit). NaN/Inf entries of the
honest messages are read as 0 for the choice (the copied row keeps them).

Computed through the h × h Gram matrix K = X̄ X̄ᵀ (float64): with K u = λ u its top eigenpair,
X̄ z = √λ u, so the projections are √λ |u_i| and no (d, d) matrix or SVD of the (h, d) stack is
formed.

Stateless by default. ``online=True`` is the paper's variant that tracks the direction over time:
the object keeps z_t and updates it by one power-iteration step on the running covariance,
z_{t+1} ∝ t·z_t + X̄ᵀ X̄ z_t (z_1 the current top direction), and picks i* with z_{t+1}; the state
travels with :meth:`Mimic.state_dict` / :meth:`Mimic.load_state_dict` so a resumed run copies the same
workers.

Cost (measured on this project's shared 2-core CPU at h = 12, b = 3, d = 1e5, float32): ~60 ms per
call, best of 7 (the float64 copy, centring and Gram matrix dominate).
"""

from __future__ import annotations

from typing import Any

import torch

from codedbft.attacks.base import ATTACKS, Attack, AttackContext

_TIE_RTOL = 1e-9


def first_argmax(scores: torch.Tensor, rtol: float = _TIE_RTOL) -> int:
    """The lowest index whose score is within ``rtol`` (relative to the max) of the max."""
    best = float(scores.max())
    thresh = best - rtol * abs(best)
    return int(torch.nonzero(scores >= thresh).flatten()[0])


def _finite64(honest: torch.Tensor) -> torch.Tensor:
    """float64 copy with NaN/Inf entries read as 0 (the choice is then made on the finite part)."""
    x = honest.to(torch.float64)
    return x if bool(torch.isfinite(x).all()) else torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def mimic_scores(honest: torch.Tensor, direction: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(|⟨x_i − μ, z⟩|)_i in float64, and the direction z used (d,) float64.

    z is ``direction`` when given, else the top principal direction of the centred messages (zero
    when they are all equal).
    """
    x = _finite64(honest)
    c = x - x.mean(dim=0)
    if direction is not None:
        z = direction.to(dtype=torch.float64, device=x.device)
        return (c @ z).abs(), z
    gram = c @ c.T
    evals, evecs = torch.linalg.eigh(gram)
    lam, u = float(evals[-1]), evecs[:, -1]
    if not lam > 0:
        return torch.zeros(x.shape[0], dtype=torch.float64, device=x.device), torch.zeros_like(x[0])
    z = c.T @ u
    z = z / torch.linalg.vector_norm(z)
    return (c @ z).abs(), z


@ATTACKS.register()
class Mimic(Attack):
    """All Byzantine workers copy the honest message most extreme along the top principal direction.

    The copied row maximises |⟨x_i − μ, z⟩|, z the top principal direction of the centred honest
    messages (Karimireddy et al. 2022); see the module docstring.

    Args:
        online: track the direction across calls (the paper's online variant) instead of recomputing it
            from the current messages only.

    Attributes:
        last_choice: the honest row copied at the latest call (index into ``honest``).
    """

    name = "mimic"

    def __init__(self, online: bool = False) -> None:
        self.online = bool(online)
        self.last_choice: int | None = None
        self._z: torch.Tensor | None = None
        self._t = 0

    def check(self, n: int, h: int) -> None:
        if h < 1:
            raise ValueError("mimic needs h >= 1 honest messages")

    def _forge(self, honest: torch.Tensor, ids: tuple[int, ...], ctx: AttackContext) -> torch.Tensor:
        if not self.online:
            scores, _ = mimic_scores(honest)
        else:
            x = _finite64(honest)
            c = x - x.mean(dim=0)
            if self._z is None or self._z.shape[0] != honest.shape[1]:
                _, z = mimic_scores(honest)
                self._t = 0
            else:
                zp = self._z.to(device=c.device)
                z = self._t * zp + c.T @ (c @ zp)
                norm = torch.linalg.vector_norm(z)
                z = z / norm if norm > 0 else zp
            self._z, self._t = z.detach().cpu().clone(), self._t + 1
            scores = (c @ z).abs()
        i = first_argmax(torch.nan_to_num(scores, nan=-1.0))
        self.last_choice = i
        return honest[i].unsqueeze(0).expand(len(ids), -1).contiguous()

    def state_dict(self) -> dict[str, Any]:
        """The tracked direction (None until the first online call) and the step count (copies)."""
        return {"direction": None if self._z is None else self._z.clone(), "t": self._t}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        z = state.get("direction")
        self._z = None if z is None else torch.as_tensor(z).to(torch.float64).clone()
        self._t = int(state.get("t", 0))

    def reset(self) -> None:
        """Forget the tracked direction."""
        self._z, self._t, self.last_choice = None, 0, None
