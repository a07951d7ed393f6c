"""The in-process backend: all workers simulated in one process, batched.

All partition gradients a round needs are computed in one call of
:meth:`~codedbft.training.FlatModel.partition_gradients`; with ``dedup`` (default) each distinct
partition once (honest copies of a partition are bitwise identical, so copying them is exact), else
once per (worker, partition) pair, the same number of gradient computations as the real cluster.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch

from codedbft.cluster.backend import Adversary, Collected, split_coalition, task_coefficients
from codedbft.cluster.worker import WorkerCore, WorkerSpec, coalition_messages, run_program
from codedbft.schemes import Order, Scheme, combine


class LocalBackend:
    """Simulated workers in the master's process."""

    name = "local"

    def __init__(self, dedup: bool = True):
        self.dedup = dedup
        self.core: WorkerCore | None = None
        self.scheme: Scheme | None = None
        self.programs: list[Any] = []

    def start(self, scheme: Scheme, spec: WorkerSpec, dataset: Any = None) -> None:
        self.scheme = scheme
        self.core = WorkerCore(spec, dataset)
        self.programs = [scheme.worker_data(i) for i in range(scheme.n)]  # data-encoding workers

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

    def execute(self, order: Order, w: torch.Tensor, step: int, byzantine: Sequence[int],
                adversary: Adversary | None, timeout_s: float, layout: Any = None) -> Collected:
        assert self.scheme is not None
        t0 = time.perf_counter()
        workers = order.workers
        tasks = [order.tasks[i] for i in workers]
        coefs = task_coefficients(self.scheme, order)
        byz = set(byzantine) if adversary is not None else set()
        poison = [i for i, wk in enumerate(workers) if wk in byz] if adversary is not None and adversary.data_level else []
        poisoned = set(poison)
        lengths = sorted({len(t) for t in tasks})
        # One batched call per (task length, poisoned) class: a single class in the common case,
        # whose messages are then the stack itself (no second copy).
        classes = [([i for i, t in enumerate(tasks) if len(t) == L and (i in poisoned) == pois], pois)
                   for L in lengths for pois in (False, True)]
        classes = [(sel, pois) for sel, pois in classes if sel]
        out: torch.Tensor | None = None
        if order.op is not None and workers:  # each worker runs its own program (encoded data), as on Ray
            out = torch.from_numpy(np.stack([run_program(self.programs[wk], order.op, w, step, order.payload, i in poisoned)
                                             for i, wk in enumerate(workers)]))
            classes = []
        for sel, pois in classes:
            G = self._gradients(w, step, [tasks[i] for i in sel], pois)
            msg = G if order.stacked else combine([coefs[i] for i in sel], G)
            if len(classes) == 1:
                out = msg
                break
            if out is None:
                out = msg.new_empty((len(workers), *msg.shape[1:]))
            out[torch.tensor(sel, dtype=torch.long)] = msg
        t1 = time.perf_counter()
        timings = {"compute_ms": (t1 - t0) * 1e3}
        missing = None  # all present, built to shape
        if out is not None and byz and not adversary.data_level:
            honest, forgers = split_coalition(workers, byzantine, [True] * len(workers))
            if forgers:
                ids = tuple(workers[i] for i in forgers)
                rows = torch.tensor(forgers, dtype=torch.long)
                try:
                    out[rows] = coalition_messages(
                        adversary.attack, out[torch.tensor(honest, dtype=torch.long)], out[rows], ids,
                        step=step, seed=adversary.seed, n=adversary.n, assignment=adversary.assignment)
                except ValueError:
                    # A partial round (interactive schemes' reactive copies) may leave too few honest
                    # messages for the attack (ALIE's bound): as on Ray, whose failed forge is an
                    # erasure, the forgers send nothing. A full round's error is a configuration error.
                    if len(workers) >= adversary.n:
                        raise
                    out[rows] = 0
                    missing = np.zeros(len(workers), dtype=bool)
                    missing[forgers] = True
            timings["forge_ms"] = (time.perf_counter() - t1) * 1e3
        return Collected(workers=workers, stack=out, missing=missing, timings=timings)

    def close(self) -> None:
        self.core = None
