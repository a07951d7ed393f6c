"""The in-process backend: all workers simulated in one process, batched.

All partition gradients a round needs are computed in one call of
:meth:`~codedbft.training.FlatModel.partition_gradients`; with ``dedup`` (default) each distinct
partition once (honest copies of a partition are bitwise identical, so copying them is exact), else
once per (worker, partition) pair, the same number of gradient computations as the real cluster.
The forging round is the shared one (:func:`~codedbft.cluster.adversary.forging_round`), run
in-process once for the whole coalition.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import torch

from codedbft.cluster.adversary import Coalition, forge_here, forging_round
from codedbft.cluster.backend import BACKENDS, Collected, StackBuilder
from codedbft.cluster.worker import WorkerCore, WorkerSpec, run_program
from codedbft.schemes import Order, combine


@BACKENDS.register("local")
class LocalBackend:
    """Simulated workers in the master's process (bit-identical to the Ray backend)."""

    name = "local"

    def __init__(self, dedup: bool = True):
        self.dedup = dedup
        self.core: WorkerCore | None = None
        self.programs: list[Any] = []

    @classmethod
    def from_config(cls, config: Any) -> "LocalBackend":
        return cls(dedup=config.dedup)

    def start(self, n: int, spec: WorkerSpec, dataset: Any = None, programs: Sequence[Any] | None = None) -> None:
        self.core = WorkerCore(spec, dataset)
        self.programs = list(programs) if programs is not None else [None] * n

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        return w

    def _gradients(self, w: torch.Tensor, step: int, tasks: Sequence[tuple[int, ...]], poisoned: bool) -> torch.Tensor:
        """``(W, p, d)`` partition gradients for equal-length tasks, in one batched call."""
        assert self.core is not None
        p = len(tasks[0]) if tasks else 0
        if self.dedup:
            uniq = sorted({j for t in tasks for j in t})
            pos = {j: i for i, j in enumerate(uniq)}
            G = self.core.gradients(w, step, uniq, poisoned)
            idx = torch.tensor([[pos[j] for j in t] for t in tasks], dtype=torch.int64)
            return G[idx.reshape(-1)].view(len(tasks), p, -1)
        flat = [j for t in tasks for j in t]
        return self.core.gradients(w, step, flat, poisoned).view(len(tasks), p, -1)

    def _honest_round(self, order: Order, w: torch.Tensor, poisoned: set[int]) -> StackBuilder:
        """Every asked worker's honest (or data-poisoned) reply, as the reply stack."""
        workers = order.workers
        if order.op is not None:  # each worker runs its own program (encoded data), as on Ray
            out = StackBuilder(len(workers), *order.layout)
            for i, wk in enumerate(workers):
                out.put(i, run_program(self.programs[wk], order.op, w, order.step, order.payload, i in poisoned,
                                       self.core))
            return out
        tasks = [order.tasks[i] for i in workers]
        # One batched call per (task length, poisoned) class: a single class in the common case,
        # whose messages are then the stack itself (no second copy).
        classes = [([i for i, t in enumerate(tasks) if len(t) == L and (i in poisoned) == pois], pois)
                   for L in sorted({len(t) for t in tasks}) for pois in (False, True)]
        classes = [(sel, pois) for sel, pois in classes if sel]
        stack: torch.Tensor | None = None
        for sel, pois in classes:
            G = self._gradients(w, order.step, [tasks[i] for i in sel], pois)
            G = self.core.with_momentum([workers[i] for i in sel], [tasks[i] for i in sel], order.step, G)
            msg = G if order.stacked else combine([order.coefficients_of(workers[i]) for i in sel], G)
            if len(classes) == 1:
                stack = msg
                break
            if stack is None:
                stack = msg.new_empty((len(workers), *msg.shape[1:]))
            stack[torch.tensor(sel, dtype=torch.long)] = msg
        if stack is None:  # nobody asked
            return StackBuilder(0, *order.layout) if order.shape is not None else StackBuilder(0, (0,), torch.float32)
        return StackBuilder.around(stack)

    def execute(self, order: Order, w: torch.Tensor, coalition: Coalition | None, timeout_s: float,
                quorum: Any = None) -> Collected:
        """Every asked worker replies (in-process there are no stragglers: ``quorum`` is met by all)."""
        t0 = time.perf_counter()
        workers = order.workers
        poisoned = {i for i, wk in enumerate(workers) if coalition is not None and coalition.poisoned(wk)}
        out = self._honest_round(order, w, poisoned)
        timings = {"compute_ms": (time.perf_counter() - t0) * 1e3}
        info = forging_round(coalition, workers, out, forge_here)
        if "forge_ms" in info:
            timings["forge_ms"] = info.pop("forge_ms")
        return out.finish(workers, timings, info)

    def worker_state(self) -> dict[tuple[int, int], tuple[int, torch.Tensor]]:
        """Every worker's momentum state ``{(worker, partition): (step, m)}`` (checkpoints)."""
        m = self.core.momentum if self.core is not None else None
        return {} if m is None else m.state_dict()

    def load_worker_state(self, state: dict[tuple[int, int], tuple[int, torch.Tensor]]) -> None:
        if self.core is not None and self.core.momentum is not None:
            self.core.momentum.load_state_dict(state)

    def close(self) -> None:
        self.core = None

