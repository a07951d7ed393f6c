"""What the master computes on its own data for the rules that need it: ByGARS++ and Zeno.

Two rules of the toolkit are not functions of the messages alone. ByGARS++ (Regatti et al. 2020)
weighs each worker by a reputation learnt from the inner product of its message with a gradient the
*server* computes on a small clean auxiliary batch; Zeno (Xie et al. 2019) scores each message by
the loss decrease it gives on a fresh batch the server draws. Both say which per-call arguments they
take in ``call_args`` (``aux_gradient``; ``params`` and ``loss``), and without them they raise, so a
runtime that called them with the messages alone trained nothing (every step a zero update: that
was this project's behaviour until this module).

:class:`ServerOracle` draws the step's auxiliary batch on the master from ``(secret, step)``, the
master's private seed (``RunConfig.secret``): no worker knows which samples the server scores with,
so an adaptive attacker cannot tailor its message to them. The batch comes from the training split
(the papers' auxiliary set is "a small dataset from the same distribution"; the server holding
clean samples is their assumption, and ours). Size: the rule's ``aux_batch`` (default 64).

Cost per step: one gradient of ``aux_batch`` samples (ByGARS++), or ``n + 1`` losses on it (Zeno),
both on the master; at d = 4810 (the MLP on digits) 0.3 ms and 1.1 ms here.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

#: the per-call arguments a rule may ask the master for (the rule's ``call_args``)
SUPPLIED = frozenset({"aux_gradient", "params", "loss"})


def rule_call_args(rule: Any) -> tuple[str, ...]:
    """The per-call arguments ``rule`` takes (a Pipeline forwards its rule's)."""
    return tuple(getattr(rule, "call_args", ()) or ())


class ServerOracle:
    """Per-step call arguments of a rule, from the master's own copy of the data and model.

    Args:
        core: the master's :class:`~codedbft.cluster.worker.WorkerCore` (its dataset and model).
        call_args: what the rule asks for (a subset of :data:`SUPPLIED`).
        secret: the master's private seed; the step's batch is drawn from ``(secret, step)``.
        batch: samples per auxiliary batch (capped at the training set's size).
    """

    def __init__(self, core: Any, call_args: Sequence[str], secret: int, batch: int = 64) -> None:
        unknown = set(call_args) - SUPPLIED
        if unknown:
            raise ValueError(f"the master cannot supply {sorted(unknown)} to a rule (it supplies {sorted(SUPPLIED)})")
        if batch < 1:
            raise ValueError(f"aux_batch must be >= 1, got {batch}")
        self.core, self.call_args, self.secret = core, tuple(call_args), int(secret)
        self.batch = min(int(batch), core.ds.num_train)

    def batch_indices(self, step: int) -> torch.Tensor:
        """The step's auxiliary samples: a function of the master's secret and the step only."""
        rng = np.random.default_rng([self.secret, int(step), 0xA0C5])
        return torch.from_numpy(rng.choice(self.core.ds.num_train, size=self.batch, replace=False))

    def context(self, w: torch.Tensor, step: int) -> dict[str, Any]:
        """The keyword arguments of this step's rule call."""
        idx = self.batch_indices(step)
        X, y = self.core.ds.X_train[idx], self.core.ds.y_train[idx]
        model = self.core.model
        out: dict[str, Any] = {}
        if "aux_gradient" in self.call_args:
            out["aux_gradient"] = model.partition_gradient(w, X, y)
        if "params" in self.call_args:
            out["params"] = w
        if "loss" in self.call_args:
            def loss(W: torch.Tensor) -> torch.Tensor:
                # one loss per candidate parameter vector, all on the same batch (Zeno's contract)
                return torch.tensor([model.loss(W[i].to(w.dtype), X, y) for i in range(W.shape[0])],
                                    dtype=torch.float64)

            out["loss"] = loss
        return out
