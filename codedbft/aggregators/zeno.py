"""Zeno (Xie et al. 2019): rank inputs by a stochastic descent score from a loss oracle.

A Byzantine input is harmful only if stepping along it does not decrease the loss; Zeno measures
exactly that on a fresh mini-batch, ``f_r(w) - f_r(w - lr x_i)``, minus a ``rho |x_i|^2``
penalty for large steps, and keeps the n - b best. It therefore needs what other rules do not:
the current parameters and a loss oracle, both per call (they change every step), passed as call
arguments and never stored between calls. Definition: docs/aggregators.md.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from codedbft.aggregators.base import Aggregator, as_tensor_input, mean_rows
from codedbft.aggregators.registry import AGGREGATORS

LossOracle = Callable[[torch.Tensor], Any]


@AGGREGATORS.register()
class Zeno(Aggregator):
    """Zeno (Xie et al. 2019): average the n - b inputs with the best descent score; n > b.

    Keep the n - b inputs with the best score ``f_r(w) - f_r(w - lr x_i) - rho |x_i|^2`` and
    average them (ties: lower index first).

    Args:
        f: b, the number of inputs dropped (requirement n > b).
        loss: the oracle ``loss(W) -> losses``: ``W`` is an ``(N, d)`` torch tensor of stacked flat
            parameter vectors (torch whatever the input kind), the result ``(N,)`` their losses
            ``f_r`` on ONE fresh mini-batch r (the same for all N rows of a call), as a tensor,
            array or sequence. It is called once per aggregation with ``N = B (n+1)`` rows: for
            each batch item, ``w`` then ``w - lr x_1 .. w - lr x_n``. A runtime whose model cannot
            batch may loop inside the oracle.
        lr: the step gamma of the score (the training learning rate in the paper).
        rho: the weight of the ``|x_i|^2`` penalty.
        params: the current flat parameters ``w`` (numpy or torch), ``(d,)`` or ``(..., d)``
            matching the batch.
        aux_batch: in training, the master's fresh batch per step has that many samples, drawn from
            its private seed (:mod:`codedbft.cluster.server_oracle`); unused in a direct call.

    Call: ``agg(x, params=w, loss=oracle)``; each call argument, when given, takes precedence over
    the constructor's for that call only. Without a loss oracle or parameters from either,
    ValueError. ``last_info["scores"]`` (B, n) float64, ``last_info["selected"]`` (B, n-b).
    """

    name = "zeno"
    call_args = ("params", "loss")

    def __init__(
        self,
        f: int = 0,
        loss: LossOracle | None = None,
        lr: float = 0.1,
        rho: float = 1e-3,
        params: Any = None,
        aux_batch: int = 64,
    ) -> None:
        super().__init__(f)
        if int(aux_batch) < 1:
            raise ValueError(f"zeno needs aux_batch >= 1, got {aux_batch}")
        self.aux_batch = int(aux_batch)  # read by the training runtime (codedbft.cluster.server_oracle)
        self.loss, self.lr, self.rho, self.params = loss, float(lr), float(rho), params

    def min_n(self) -> int:
        return self.f + 1

    def requirement(self) -> str:
        return "n > b (b = f)"

    def _forward(self, x: torch.Tensor, params: Any = None, loss: LossOracle | None = None) -> torch.Tensor:
        params = params if params is not None else self.params
        loss = loss if loss is not None else self.loss
        if loss is None or params is None:
            raise ValueError("zeno needs a loss oracle and the current params (constructor or call arguments)")
        w, _ = as_tensor_input(params, self.name, "params")
        return super()._forward(x, params=w, loss=loss)

    def _aggregate(self, x3: torch.Tensor, *, params: torch.Tensor, loss: LossOracle) -> torch.Tensor:
        B, n, d = x3.shape
        w = params.detach().reshape(-1, d).to(dtype=x3.dtype, device=x3.device).expand(B, d)
        cand = torch.cat([w.unsqueeze(1), w.unsqueeze(1) - self.lr * x3], dim=1)  # (B, n+1, d)
        losses = torch.as_tensor(loss(cand.reshape(B * (n + 1), d))).reshape(B, n + 1)
        losses = torch.nan_to_num(losses.double().to(x3.device), nan=float("inf"))
        norms2 = torch.linalg.vector_norm(x3, dim=2, dtype=torch.float64) ** 2
        scores = losses[:, :1] - losses[:, 1:] - self.rho * norms2
        scores = torch.nan_to_num(scores, nan=-float("inf"))
        keep_n = n - self.f
        order = torch.sort(-scores, dim=1, stable=True).indices[:, :keep_n]
        keep = torch.zeros(B, n, dtype=torch.bool, device=x3.device).scatter_(1, order, True)
        self.last_info["scores"] = scores
        self.last_info["selected"] = order
        return mean_rows(x3, keep, keep_n)

    def __repr__(self) -> str:
        return f"Zeno(f={self.f}, lr={self.lr}, rho={self.rho})"
