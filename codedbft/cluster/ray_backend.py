"""The Ray backend: one actor per worker, the model put in the object store once per step.

* ``ray.init`` is called by the program itself on an embedded local instance
  (``include_dashboard=False``, ``RAY_USAGE_STATS_ENABLED=0``) unless ``address`` names an existing
  cluster; when Ray is already initialised (tests share one session) it is reused and left running.
* Actors are created with ``num_cpus`` (default 0.1, so 15 workers fit on 2 cores) and
  ``max_restarts``; a dead actor is restarted by Ray and its replies meanwhile are erasures.
* Replies are collected with one deadline per step (``ray.wait``); a late reply is an erasure and is
  never read. They are returned in the order's worker order, whatever the arrival order.
* Byzantine actors forge inside the actor, through the shared forging round
  (:func:`~codedbft.cluster.adversary.forging_round`): after the honest round the master puts one
  :class:`~codedbft.cluster.adversary.ForgeJob` (the honest replies, a documented simulation
  privilege for omniscient attacks) and every forger computes its row from it.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from codedbft.cluster.adversary import Coalition, ForgeJob, forging_round
from codedbft.cluster.backend import BACKENDS, Collected, StackBuilder
from codedbft.cluster.worker import WorkerActorImpl, WorkerSpec
from codedbft.schemes import Order

if TYPE_CHECKING:  # pragma: no cover
    import torch


def init_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Start (or connect to) Ray unless it is up; returns True when this call started it.

    ``address`` None means the embedded default: a NEW local instance (``address="local"``), unless
    the user named a cluster in ``RAY_ADDRESS``. Plain ``ray.init()`` would instead connect to the
    last cluster ``ray start`` recorded in /tmp/ray/ray_current_cluster, even a dead one.
    ``"auto"`` joins the cluster running on this node; ``"ray://host:10001"`` or ``"host:port"``
    a remote one.
    """
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    if address is None:
        address = os.environ.get("RAY_ADDRESS") or "local"
    if address == "local":
        kw["num_cpus"] = num_cpus or os.cpu_count() or 2
    ray.init(address=address, **kw)
    return True


@BACKENDS.register("ray")
class RayBackend:
    """Workers as Ray actors (see the module docstring)."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: float = 0.1, max_restarts: int = 3):
        self.address = address
        self.num_cpus = num_cpus
        self.max_restarts = max_restarts
        self.actors: list[Any] = []
        self._spec: WorkerSpec | None = None
        self._started_ray = False

    @classmethod
    def from_config(cls, config: Any) -> "RayBackend":
        return cls(address=config.address, num_cpus=config.num_cpus, max_restarts=config.max_restarts)

    def start(self, n: int, spec: WorkerSpec, dataset: Any = None, programs: list[Any] | None = None) -> None:
        """Start ``n`` actors; ``dataset`` (optional) is put in the object store once, ``programs[i]``
        (data-encoding schemes) goes to actor i's constructor, so a restarted actor gets it back.

        A backend already running actors for the same worker spec and n is reused as is (warm
        actors for successive masters: their process start-up costs seconds each).
        """
        import ray

        programs = list(programs) if programs is not None else [None] * n
        if self.actors and self._spec == spec and len(self.actors) == n:
            if any(p is not None for p in programs):
                ray.get([a.set_program.remote(p) for a, p in zip(self.actors, programs)])
            return
        self.close()
        self._started_ray = init_ray(self.address) or self._started_ray
        self._spec = spec
        cls = ray.remote(WorkerActorImpl)
        opts = dict(num_cpus=self.num_cpus, max_restarts=self.max_restarts, max_task_retries=0)
        self._data_ref = ray.put(dataset) if dataset is not None else None  # kept alive for restarts
        self.actors = [cls.options(**opts).remote(i, spec, self._data_ref, programs[i]) for i in range(n)]
        ray.get([a.pid.remote() for a in self.actors])  # wait until every actor is built

    def pids(self, wait_s: float = 60.0) -> list[int]:
        """OS process ids of the worker actors (fault-injection tests kill one); waits up to
        ``wait_s`` for actors that Ray is restarting."""
        import ray

        deadline = time.monotonic() + wait_s
        while True:
            try:
                return ray.get([a.pid.remote() for a in self.actors])
            except ray.exceptions.ActorUnavailableError:  # restarting: ask again
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def worker_state(self) -> dict[tuple[int, int], tuple[int, Any]]:
        """Every actor's momentum state, merged (checkpoints); a dead actor's part is left out."""
        import ray

        out: dict[tuple[int, int], tuple[int, Any]] = {}
        for a in self.actors:
            try:
                out.update(ray.get(a.worker_state.remote()))
            except ray.exceptions.RayError:  # restarting: its state is gone anyway
                continue
        return out

    def load_worker_state(self, state: dict[tuple[int, int], tuple[int, Any]]) -> None:
        """Give every actor its part of ``state`` (resume)."""
        import ray

        ray.get([a.load_worker_state.remote({k: v for k, v in state.items() if k[0] == i})
                 for i, a in enumerate(self.actors)])

    def broadcast(self, w: torch.Tensor) -> Any:
        import ray

        return ray.put(w.numpy())

    def _collect(self, refs: dict[int, Any], deadline: float, sink: Any) -> None:
        """Hand each reply to ``sink(key, value)`` as it arrives, until ``deadline``; a failed task
        (dead actor) or a late one never reaches the sink: the caller counts it as an erasure."""
        import ray

        key_of = {ref: key for key, ref in refs.items()}
        pending = list(refs.values())
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                return  # deadline: the rest are late
            try:
                value = ray.get(ready[0])
            except ray.exceptions.RayError:  # actor died or raised: an erasure
                continue
            sink(key_of[ready[0]], value)

    def _honest_round(self, order: Order, w_ref: Any, coalition: Coalition | None, deadline: float,
                      out: StackBuilder) -> float:
        """Dispatch the order to its actors and copy each reply in as it arrives; returns the slowest
        worker's own compute time (ms)."""
        import ray

        workers = order.workers
        poisoned = [coalition is not None and coalition.poisoned(w) for w in workers]
        if order.op is not None:  # data-encoding workers run their program on the payload (put once)
            payload_ref = ray.put(order.payload)
            refs = {i: self.actors[w].run_op.remote(order.op, w_ref, order.step, payload_ref, poisoned[i])
                    for i, w in enumerate(workers)}
        else:
            refs = {i: self.actors[w].compute.remote(w_ref, order.step, order.tasks[w], order.coefficients_of(w),
                                                     order.stacked, poisoned[i])
                    for i, w in enumerate(workers)}
        compute_ms = [0.0]

        def take(i: int, value: Any) -> None:
            try:
                msg, ms = value
                compute_ms[0] = max(compute_ms[0], float(ms))
            except (TypeError, ValueError):  # not (message, ms): a malformed reply is bad, not a crash
                msg = None
            out.put(i, msg)

        self._collect(refs, deadline, take)
        return compute_ms[0]

    def _forge_on_actors(self, job: ForgeJob, workers: tuple[int, ...], deadline: float) -> dict[int, Any]:
        """Each forger computes its row from one shared job; late or failed forgers are left out."""
        import ray

        job_ref = ray.put(job)
        refs = {i: self.actors[workers[i]].forge.remote(job_ref) for i in job.rows}
        got: dict[int, Any] = {}
        self._collect(refs, deadline, got.__setitem__)
        return got

    def execute(self, order: Order, w_ref: Any, coalition: Coalition | None, timeout_s: float) -> Collected:
        deadline = time.monotonic() + timeout_s
        t0 = time.perf_counter()
        workers = order.workers
        out = StackBuilder(len(workers), *order.layout)
        compute_ms = self._honest_round(order, w_ref, coalition, deadline, out)
        timings = {"compute_ms": compute_ms, "collect_ms": (time.perf_counter() - t0) * 1e3}
        info = forging_round(coalition, workers, out, lambda job: self._forge_on_actors(job, workers, deadline))
        if "forge_ms" in info:
            timings["forge_ms"] = info.pop("forge_ms")
        return out.finish(workers, timings, info)

    def close(self) -> None:
        import ray

        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:  # already gone
                pass
        self.actors = []
        self._spec = None
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

