"""ByGARS++ (Regatti et al. 2020): reputation-weighted aggregation from an auxiliary-data gradient.

Instead of bounding the number of attackers, ByGARS++ learns one reputation per worker from how
well its messages align with a gradient computed by the server on a small clean auxiliary batch,
and outputs the reputation-weighted sum. The reputations are the rule's state across steps; the
auxiliary gradient is a per-call argument (it changes every step) and is never stored between
calls. Definition: docs/aggregators.md.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from codedbft.aggregators.base import Aggregator, as_tensor_input
from codedbft.aggregators.registry import AGGREGATORS


@AGGREGATORS.register()
class ByGARS(Aggregator):
    """ByGARS++ (Regatti et al. 2020): reputation-weighted sum, reputations learnt online; any n.

    The paper's eq. 3: output ``H_t^T q_t = sum_i q_{t,i} x_i``, then update the
    reputations ``q_{t+1} = (1 - alpha_t) q_t + alpha_t H_t g_t`` where ``(H_t g_t)_i = <x_i, g_t>`` and
    ``g_t = grad L_t(w_t)`` is the gradient of the loss on a small clean auxiliary batch at the same
    parameters the workers used. ``alpha_t = alpha / (1 + decay t)`` (the paper decays both step sizes).

    Reputations may turn negative, so a worker that consistently sends ``-c * gradient`` helps after
    its sign is learnt: no bound on the number of attackers ("any number"; ``f`` is unused).

    The auxiliary gradient comes from ``agg(x, aux_gradient=g)`` (``g``, numpy or torch, of shape
    ``(d,)`` or ``(..., d)`` matching the batch) or, when not given, from the ``aux_grad()``
    callable set at construction; without either, ValueError.

    ``aux_batch``: in training, the master computes ``g`` itself on that many samples it draws each
    step from its private seed (:mod:`codedbft.cluster.server_oracle`); unused in a direct call.

    State on the object: ``q`` ``(..., n)`` float64 torch tensor on the CPU (starts at ``q0``: 0 as
    in the paper, which makes the first output zero) and the step ``t``; ``state_dict()`` (copies),
    ``load_state_dict()`` (into this object), ``reset()``.
    """

    name = "bygars"
    stateful = True
    call_args = ("aux_gradient",)

    def __init__(
        self,
        f: int = 0,
        alpha: float = 0.05,
        decay: float = 0.0,
        q0: float = 0.0,
        aux_grad: Callable[[], Any] | None = None,
        aux_batch: int = 64,
    ) -> None:
        super().__init__(f)
        if int(aux_batch) < 1:
            raise ValueError(f"bygars needs aux_batch >= 1, got {aux_batch}")
        self.aux_batch = int(aux_batch)  # read by the training runtime (codedbft.cluster.server_oracle)
        if alpha <= 0 or alpha > 1 or decay < 0:
            raise ValueError("bygars needs 0 < alpha <= 1 and decay >= 0")
        self.alpha, self.decay, self.q0, self.aux_grad = float(alpha), float(decay), float(q0), aux_grad
        self.q: torch.Tensor | None = None
        self.t = 0

    def _forward(self, x: torch.Tensor, aux_gradient: Any = None) -> torch.Tensor:
        g = aux_gradient if aux_gradient is not None else (self.aux_grad() if self.aux_grad is not None else None)
        if g is None:
            raise ValueError("bygars needs an auxiliary gradient: agg(x, aux_gradient=g) or aux_grad=callable")
        g, _ = as_tensor_input(g, self.name, "the auxiliary gradient")
        # q keeps the caller's batch shape (..., n), which the flattened (B, n, d) view has lost
        return super()._forward(x, aux_gradient=g, lead=tuple(x.shape[:-2]))

    def _aggregate(self, x3: torch.Tensor, *, aux_gradient: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
        B, n, d = x3.shape
        if self.q is None:
            self.q = torch.full((*lead, n), self.q0, dtype=torch.float64)
        if self.q.numel() != B * n:
            raise ValueError(f"bygars state q has shape {tuple(self.q.shape)}, input gives {B}x{n}: call reset()")
        q = self.q.reshape(B, n).to(x3.device)
        out = torch.bmm(q.to(x3.dtype).unsqueeze(1), x3).squeeze(1)
        g = aux_gradient.detach().reshape(-1, d).to(dtype=x3.dtype, device=x3.device).expand(B, d)
        inner = torch.bmm(x3, g.unsqueeze(2)).squeeze(2).double()
        inner = torch.nan_to_num(inner, nan=0.0, posinf=0.0, neginf=0.0)
        alpha = self.alpha / (1.0 + self.decay * self.t)
        self.q = ((1 - alpha) * q + alpha * inner).reshape(*lead, n).cpu()
        self.t += 1
        self.last_info["q"] = self.q.clone()
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"q": None if self.q is None else self.q.clone(), "t": self.t}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        q = state.get("q")
        self.q = None if q is None else torch.as_tensor(q).clone()
        self.t = int(state.get("t", 0))

    def reset(self) -> None:
        super().reset()
        self.q = None
        self.t = 0

    def __repr__(self) -> str:
        return f"ByGARS(alpha={self.alpha}, decay={self.decay}, q0={self.q0})"
