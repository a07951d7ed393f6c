"""One Ray actor hosting several logical workers, computed batched exactly as the simulator does.

A worker is a logical participant (a row of the code); an actor is a process. With one actor per
worker, 15 single-threaded processes compete for 2 cores and every step pays 15 task round trips
(measured: collect 290 ms for 230 ms of compute at d ~ 1e6). An actor group hosts the workers
``worker_ids`` in one process and runs each order's share with the local simulator's own engine
(:class:`~codedbft.cluster.local.LocalBackend`: one batched gradient call per task class, each
distinct partition once), so its replies are the simulator's bytes, and it returns them as one
``(W_a, *shape)`` numpy array that travels zero-copy through the object store.

The fault model is the worker's, not the process's: a killed actor makes *all* its workers
erasures for that step (and Ray restarts it from its constructor arguments, which are small and
inline: the dataset and the programs arrive by a method call, so a restart never depends on an
object that may have been evicted; the restarted actor asks for them again and is an erasure until
it has them).
Byzantine workers forge inside their actor from the one shared
:class:`~codedbft.cluster.adversary.ForgeJob`; an actor hosting several forgers computes the
coalition's forgery once and returns their rows.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from codedbft.cluster.adversary import ForgeJob, as_tensor
from codedbft.cluster.worker import WorkerSpec


#: what a restarted actor answers before the master has given it its data and programs again
NEEDS_SETUP = "needs-setup"


class ActorGroupImpl:
    """The body of a group actor (wrapped by ``ray.remote`` in :mod:`codedbft.cluster.ray_backend`).

    The constructor takes only small inline values; the dataset and the programs arrive by
    :meth:`setup` (a method call may take object references; a constructor that does makes Ray log
    an error, since a restart would need those objects to still exist). A restarted actor answers
    :data:`NEEDS_SETUP` until the master has called :meth:`setup` again.
    """

    def __init__(self, worker_ids: Sequence[int], spec: WorkerSpec, dedup: bool = True):
        self.worker_ids = tuple(int(w) for w in worker_ids)
        self.spec = spec
        self.dedup = dedup
        self.engine: Any = None
        self.faults: dict[int, tuple[str, float]] = {}

    def setup(self, dataset: Any = None, programs: dict[int, Any] | None = None) -> int:
        """Build the engine on ``dataset`` (None: rebuilt from the spec) with the hosted workers'
        programs; returns this process id."""
        from codedbft.cluster.local import LocalBackend

        n = max(self.worker_ids) + 1 if self.worker_ids else 0
        self.engine = LocalBackend(dedup=self.dedup)
        self.engine.start(n, self.spec, dataset, self._program_list(n, programs or {}))
        return os.getpid()

    @staticmethod
    def _program_list(n: int, programs: dict[int, Any]) -> list[Any]:
        return [programs.get(i) for i in range(n)]

    def set_programs(self, programs: dict[int, Any]) -> None:
        """The hosted workers' programs for operation orders, kept for the run."""
        if self.engine is not None:
            self.engine.programs = self._program_list(len(self.engine.programs), programs)

    def pid(self) -> int:
        return os.getpid()

    def node(self) -> str:
        """The Ray node id this actor runs on (placement checks: actors spread over nodes)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def arm(self, faults: dict[int, tuple[str, float]]) -> int:
        """Fault injection (chaos tests and drills): ``{step: ("exit", code)}`` ends this process with
        ``os._exit(code)`` when its share of that step arrives, before it replies (a crash inside the
        actor: Ray restarts it); ``{step: ("delay", seconds)}`` sleeps that long before replying (a
        straggler past the master's deadline). Each fault fires once; a restarted actor starts
        unarmed (the constructor does not see them). Returns this process id."""
        self.faults.update({int(t): (str(kind), float(arg)) for t, (kind, arg) in faults.items()})
        return os.getpid()

    def run(self, order: Any, w: Any, payload: Any, poisoned: Sequence[int]) -> tuple[np.ndarray, float] | str:
        """The hosted workers' honest (or data-poisoned) replies to their share ``order`` of a round,
        ``(W_a, *shape)`` in the share's worker order, and this actor's compute time (ms);
        :data:`NEEDS_SETUP` after a restart."""
        fault = self.faults.pop(int(order.step), None) if self.faults else None
        if fault is not None and fault[0] == "exit":
            os._exit(int(fault[1]))
        if self.engine is None:
            return NEEDS_SETUP
        t0 = time.perf_counter()
        if order.op is not None:
            order = replace(order, payload=payload)
        rows = {i for i, wk in enumerate(order.workers) if wk in set(poisoned)}
        out = self.engine._honest_round(order, as_tensor(w), rows)
        ms = (time.perf_counter() - t0) * 1e3
        factor = self._straggle_factor(order)
        if factor > 1.0:
            time.sleep(ms * (factor - 1.0) / 1e3)
        if fault is not None and fault[0] == "delay":
            time.sleep(fault[1])
        return out.stack.numpy(), ms * factor

    def _straggle_factor(self, order: Any) -> float:
        """FACTOR when a hosted worker of the share straggles this step (seeded by (seed, step, worker))."""
        spec = self.engine.core.spec if self.engine.core is not None else None
        if spec is None or spec.straggle is None:
            return 1.0
        p, factor = spec.straggle
        slow = any(np.random.default_rng([spec.seed, order.step, w, 0x57A6]).random() < p for w in order.workers)
        return factor if slow else 1.0

    def forge(self, job: ForgeJob) -> dict[int, np.ndarray]:
        """The hosted forgers' rows of the coalition's forgery, ``{worker: message}``."""
        forged = job.forge()
        return {w: forged[j].numpy() for j, w in enumerate(job.ids) if w in self.worker_ids}

    def worker_state(self) -> dict[Any, Any]:
        if self.engine is None:
            return {}
        return {k: v for k, v in self.engine.worker_state().items() if k[0] in self.worker_ids}

    def load_worker_state(self, state: dict[Any, Any]) -> None:
        if self.engine is not None:
            self.engine.load_worker_state({k: v for k, v in state.items() if k[0] in self.worker_ids})


def spread(n: int, actors: int) -> list[tuple[int, ...]]:
    """Worker ids per actor, round-robin (worker i on actor i mod A): the copies of a repetition
    group (contiguous ids) land on different actors, so one dead process costs each group at most
    ``ceil(r / A)`` copies instead of the whole group."""
    a = max(1, min(int(actors), n))
    return [tuple(range(j, n, a)) for j in range(a)]
