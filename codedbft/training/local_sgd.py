"""Local steps (FedAvg-style deltas) and worker-side momentum: what an honest worker sends
when it does more than one gradient at the broadcast model.

**Local steps** (McMahan et al., AISTATS 2017, "Communication-efficient learning of deep networks
from decentralized data", Alg. 1). With ``K`` local steps of rate ``eta_l``, partition j starts
from the broadcast model ``w``, takes ``K`` plain SGD steps on its own rows (local step i draws
partition j's rows of batch step ``t*K + i``, so K = 1 is exactly today's batch) and sends the
*average local gradient*

    u_j = (w - w_{j,K}) / (K * eta_l)   = (1/K) sum_i g_j(w_{j,i}),

which has a gradient's scale whatever K is, so robust rules' thresholds, clipping radii and the
attacks stay calibrated; the master's optimizer steps on the decoded mean of the u_j
(``--optimizer sgd --momentum 0 --lr K*eta_l`` is FedAvg's ``w <- w - mean(w - w_{j,K})``).
u_j is a deterministic function of ``(w, t, j)``, so every copy of a partition sends the same
bytes: the gradient codes (repetition, cyclic MDS, DETOX, ByzShield, RRR) decode deltas exactly as
they decode gradients, since they code per-partition vectors whatever those are. Data encoding is
different: it encodes the *rows* and relies on the gradient being linear in them (one step of
least squares), which K > 1 breaks, so it takes K = 1 only.

**Worker momentum** (Karimireddy, He & Jaggi, ICML 2021, "Learning from history for Byzantine
robust optimization", Alg. 2). Every worker keeps, per partition it computes, the exponential
average ``m_j <- beta * m_j + (1 - beta) * u_j`` (zero at the start) and sends ``m_j`` instead of
``u_j``; the robust rule then sees vectors whose honest variance is ``(1-beta)/(1+beta)`` times
smaller, which is what lets the rules tell the attack from the noise. The state lives where the
worker computes (the actor on Ray, the simulator's :class:`WorkerMomentum` for every worker), is
gathered into checkpoints (``state_dict``) and put back on resume, so a resumed run reaches the
same model bit for bit. An actor that Ray restarts loses it and starts again from zero, as a
restarted real worker would: with a repetition group its copy then differs from its peers' and the
vote treats it as a fault. Asking a worker twice in one step (a reactive round) recomputes that
step's update from the previous state rather than applying it twice. For an exact code the decoded
mean of the m_j equals the momentum of the decoded means, so worker momentum adds nothing there
beyond server momentum (``--momentum``); it is the companion of the robust rules (vanilla, DETOX's
outer rule, ByzShield's file rule). Costs: K gradient evaluations per partition per step instead
of one; momentum one ``(p, d)`` axpy per worker and ``2 p d`` floats of state.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

__all__ = ["average_local_gradient", "WorkerMomentum"]

#: ``(batch_step, partitions) -> (X (p, b, ...), y (p, b, ...))``: a partition's rows of a batch step
RowsFn = Callable[[int, Sequence[int]], tuple[torch.Tensor, torch.Tensor]]


def average_local_gradient(model: Any, w: torch.Tensor, step: int, partitions: Sequence[int], rows: RowsFn,
                           local_steps: int, local_lr: float) -> torch.Tensor:
    """``(p, d)``: each partition's average local gradient after ``local_steps`` SGD steps from ``w``
    (module docstring); partition j's row depends on partition j only (bitwise, like
    :meth:`FlatModel.partition_gradients`)."""
    K = int(local_steps)
    wj = w.detach().unsqueeze(0).repeat(len(partitions), 1)  # one trajectory per partition
    for i in range(K):
        X, y = rows(step * K + i, partitions)
        for j in range(len(partitions)):  # over partitions only; each call is one batched gradient
            g = model.partition_gradient(wj[j], X[j], y[j])
            wj[j].sub_(g, alpha=local_lr)
    return (w.unsqueeze(0) - wj).div_(K * local_lr)


class WorkerMomentum:
    """Per-(worker, partition) exponential averages of what the workers would send (module docstring).

    ``update(workers, tasks, step, U)`` with ``U (W, p, d)`` (row w, column j: worker
    ``workers[w]``'s vector for partition ``tasks[w][j]``) returns the momenta, same shape.
    """

    def __init__(self, beta: float):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"worker momentum beta must be in [0, 1), got {beta}")
        self.beta = float(beta)
        # (worker, partition) -> (step of the last update, state before it, state after it)
        self._state: dict[tuple[int, int], tuple[int, torch.Tensor | None, torch.Tensor]] = {}

    def _one(self, key: tuple[int, int], step: int, u: torch.Tensor) -> torch.Tensor:
        last = self._state.get(key)
        if last is None:
            base = None
        elif last[0] == step:  # asked again within the step: redo the update, never apply it twice
            base = last[1]
        else:
            base = last[2]
        m = u * (1.0 - self.beta) if base is None else torch.add(base * self.beta, u, alpha=1.0 - self.beta)
        self._state[key] = (step, base, m)
        return m

    def update(self, workers: Sequence[int], tasks: Sequence[Sequence[int]], step: int, U: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(U)
        for r, (wk, task) in enumerate(zip(workers, tasks)):
            for c, j in enumerate(task):
                out[r, c] = self._one((int(wk), int(j)), int(step), U[r, c])
        return out

    def state_dict(self, workers: Sequence[int] | None = None) -> dict[tuple[int, int], tuple[int, torch.Tensor]]:
        """``{(worker, partition): (step, momentum)}`` (only ``workers``' entries when given)."""
        keep = None if workers is None else {int(w) for w in workers}
        return {k: (s, m.clone()) for k, (s, _, m) in self._state.items() if keep is None or k[0] in keep}

    def load_state_dict(self, state: dict[tuple[int, int], tuple[int, torch.Tensor]],
                        workers: Sequence[int] | None = None) -> None:
        """Restore the entries of ``workers`` (all when None) from :meth:`state_dict`'s output."""
        keep = None if workers is None else {int(w) for w in workers}
        self._state = {(int(k[0]), int(k[1])): (int(s), None, m.clone()) for k, (s, m) in state.items()
                       if keep is None or int(k[0]) in keep}
