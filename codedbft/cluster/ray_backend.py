"""The Ray backend: actors hosting the logical workers, the model put in the object store once per step.

* A worker is a logical participant, an actor a process: ``actors`` (``--actors``) actors host the n
  workers round-robin (:mod:`codedbft.cluster.actor_group`), each computing its workers' share of
  an order batched as the simulator does and returning it as one array. Default: one actor per CPU
  of an embedded instance, one per worker on a cluster named by ``address``. A dead actor makes all
  its workers erasures until Ray has restarted it.

* ``ray.init`` is called by the program itself on an embedded local instance
  (``include_dashboard=False``, ``RAY_USAGE_STATS_ENABLED=0``) unless ``address`` names an existing
  cluster; when Ray is already initialised (tests share one session) it is reused and left running.
* Actors are created with ``num_cpus`` (default 0.1, so 15 workers fit on 2 cores),
  ``max_restarts`` and the ``"SPREAD"`` scheduling strategy (on a cluster of several nodes the
  actors land on different nodes, as resources allow; a restart is placed among the nodes left); a
  dead actor is restarted by Ray and its replies meanwhile are erasures.
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

from codedbft.cluster.actor_group import NEEDS_SETUP
from codedbft.cluster.adversary import Coalition, ForgeJob, forging_round
from codedbft.cluster.backend import BACKENDS, Collected, StackBuilder
from codedbft.cluster.worker import WorkerSpec
from codedbft.schemes import Order

if TYPE_CHECKING:  # pragma: no cover
    import torch


#: where an embedded instance listens: loopback, so no other machine can reach its ports (Ray's
#: gRPC services run submitted code without authentication)
DEFAULT_RAY_HOST = "127.0.0.1"


#: how long a named cluster's address may refuse connections before ``init_ray`` gives up (``ray.init``
#: itself retries for minutes against an address where nothing listens)
CONNECT_TIMEOUT_S = 5.0


def _recorded_address() -> str | None:
    """The head address ``ray start`` recorded on this machine (what ``address="auto"`` joins), if any."""
    import tempfile

    for root in {"/tmp", tempfile.gettempdir()}:
        try:
            text = open(os.path.join(root, "ray", "ray_current_cluster")).read().strip()
        except OSError:
            continue
        if text:
            return text
    return None


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """ConnectionError naming ``address`` ("host:port", or "auto" through the recorded head) when nothing
    accepts a TCP connection there within ``timeout_s``; a ``ray://`` client address is Ray's to check."""
    import socket

    target = _recorded_address() if address == "auto" else address
    if not target or target.startswith("ray://") or ":" not in target:
        return
    host, _, port = target.rpartition(":")
    try:
        port_no = int(port)
    except ValueError:
        return
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host.strip("[]"), port_no), timeout=min(2.0, timeout_s)):
                return
        except OSError as err:
            if time.monotonic() >= deadline:
                named = f"{address!r} ({target})" if target != address else repr(address)
                raise ConnectionError(f"no Ray cluster reachable at {named} within {timeout_s:g} s ({err}); "
                                      "start its head (ray start --head) or check --address") from None
            time.sleep(0.5)


def init_ray(address: str | None = None, num_cpus: int | None = None, host: str | None = None) -> bool:
    """Start (or connect to) Ray unless it is up; returns True when this call started it.

    ``address`` None means the embedded default: a NEW local instance (``address="local"``), unless
    the user named a cluster in ``RAY_ADDRESS``. Plain ``ray.init()`` would instead connect to the
    last cluster ``ray start`` recorded in /tmp/ray/ray_current_cluster, even a dead one.
    ``"auto"`` joins the cluster running on this node; ``"ray://host:10001"`` or ``"host:port"``
    a remote one. A ``"host:port"`` (or the head ``"auto"`` finds recorded) where nothing accepts a
    connection within :data:`CONNECT_TIMEOUT_S` raises ConnectionError naming it (:func:`check_reachable`). An embedded instance binds every port to ``host`` (default
    :data:`DEFAULT_RAY_HOST`, loopback; ``--ray-host`` changes it); a cluster's exposure is the
    cluster's own (``ray start --node-ip-address``).
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
        kw["_node_ip_address"] = host or DEFAULT_RAY_HOST
    else:  # a named cluster: fail in seconds, naming it, where ray.init would retry for minutes
        check_reachable(address)
    ray.init(address=address, **kw)
    return True


@BACKENDS.register("ray")
class RayBackend:
    """Workers as Ray actors (see the module docstring)."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: float = 0.1, max_restarts: int = 3,
                 actors: int | None = None, dedup: bool = True, host: str | None = None):
        self.address = address
        self.host = host
        self.num_cpus = num_cpus
        self.max_restarts = max_restarts
        self.actors_wanted = actors
        self.dedup = dedup
        self.actors: list[Any] = []
        self.groups: list[tuple[int, ...]] = []
        self._programs: list[dict[int, Any]] = []
        self._actor_of: dict[int, int] = {}
        self._spec: WorkerSpec | None = None
        self._started_ray = False

    @classmethod
    def from_config(cls, config: Any) -> "RayBackend":
        return cls(address=config.address, num_cpus=config.num_cpus, max_restarts=config.max_restarts,
                   actors=config.actors, dedup=config.dedup, host=config.ray_host)

    def _actor_count(self, n: int) -> int:
        """``actors`` as asked; by default one per CPU of an embedded instance, one per worker on a
        cluster the user named (where actors land on different machines)."""
        import ray

        if self.actors_wanted is not None:
            return max(1, min(int(self.actors_wanted), n))
        if self.address not in (None, "local") or os.environ.get("RAY_ADDRESS"):
            return n
        return max(1, min(n, int(ray.cluster_resources().get("CPU", os.cpu_count() or 1))))

    def start(self, n: int, spec: WorkerSpec, dataset: Any = None, programs: list[Any] | None = None) -> None:
        """Start the actors hosting ``n`` workers (:mod:`codedbft.cluster.actor_group`, round-robin);
        ``dataset`` (optional) is put in the object store once, ``programs[i]`` (operation orders)
        goes to the constructor of worker i's actor, so a restarted actor gets it back.

        A backend already running actors for the same worker spec and n is reused as is (warm
        actors for successive masters: their process start-up costs seconds each).
        """
        import ray

        from codedbft.cluster.actor_group import ActorGroupImpl, spread

        programs = list(programs) if programs is not None else [None] * n
        if self.actors and self._spec == spec and len(self._actor_of) == n:
            if any(p is not None for p in programs):
                self._programs = [{w: programs[w] for w in g} for g in self.groups]
                ray.get([a.set_programs.remote(p) for a, p in zip(self.actors, self._programs)])
            return
        self.close()
        self._started_ray = init_ray(self.address, host=self.host) or self._started_ray
        self._spec = spec
        self.groups = spread(n, self._actor_count(n))
        self._actor_of = {w: a for a, g in enumerate(self.groups) for w in g}
        cls = ray.remote(ActorGroupImpl)
        # SPREAD: on a cluster of several nodes the actors land on different nodes (best effort, as
        # resources allow), so a lost node costs the code as few workers as it can; a restarted actor
        # is placed the same way among the nodes left. On one node it changes nothing.
        opts = dict(num_cpus=self.num_cpus, max_restarts=self.max_restarts, max_task_retries=0,
                    scheduling_strategy="SPREAD")
        # The dataset and programs go by a method call, never the constructor: a constructor argument
        # in the object store is what a restart would need again (Ray logs an error for it).
        self._data_ref = ray.put(dataset) if dataset is not None else None
        self._programs = [{w: programs[w] for w in g} for g in self.groups]
        self.actors = [cls.options(**opts).remote(g, spec, self.dedup) for g in self.groups]
        ray.get([a.setup.remote(self._data_ref, p) for a, p in zip(self.actors, self._programs)])

    def pids(self, wait_s: float = 60.0) -> list[int]:
        """OS process id of each *worker*'s actor, by worker id (fault-injection tests kill one:
        every worker that actor hosts is then lost); waits up to ``wait_s`` for restarting actors."""
        per_actor = self._ask_actors("pid", wait_s)
        return [per_actor[self._actor_of[w]] for w in range(len(self._actor_of))]

    def nodes(self, wait_s: float = 60.0) -> list[str]:
        """The Ray node id of each *actor* (placement checks); waits like :meth:`pids`."""
        return self._ask_actors("node", wait_s)

    def _ask_actors(self, method: str, wait_s: float) -> list[Any]:
        import ray

        deadline = time.monotonic() + wait_s
        while True:
            try:
                return ray.get([getattr(a, method).remote() for a in self.actors])
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

        ray.get([a.load_worker_state.remote({k: v for k, v in state.items() if k[0] in g})
                 for a, g in zip(self.actors, self.groups)])

    def broadcast(self, w: torch.Tensor) -> Any:
        import ray

        return ray.put(w.numpy())

    def _collect(self, refs: dict[int, Any], deadline: float, sink: Any, done: Any = None) -> None:
        """Hand each reply to ``sink(key, value)`` as it arrives, until ``deadline`` or until
        ``done()`` says the replies in hand are enough (then the rest are cancelled, best effort);
        a failed task (dead actor) or a late one never reaches the sink: the caller counts it as an
        erasure."""
        import ray

        key_of = {ref: key for key, ref in refs.items()}
        pending = list(refs.values())
        while pending:
            if done is not None and done():
                for ref in pending:  # stragglers: erasures, not errors; stop their work if still queued
                    try:
                        ray.cancel(ref)
                    except Exception:  # already finished, or not cancellable: never read anyway
                        pass
                return
            ready, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                return  # deadline: the rest are late
            try:
                value = ray.get(ready[0])
            except ray.exceptions.RayError:  # actor died or raised: an erasure
                continue
            sink(key_of[ready[0]], value)

    def _shares(self, order: Order) -> list[tuple[int, Order]]:
        """Each actor's share of ``order``: its hosted workers' tasks (the payload travels once, apart)."""
        from dataclasses import replace

        mine: dict[int, list[int]] = {}
        for w in order.workers:
            mine.setdefault(self._actor_of[w], []).append(w)
        return [(a, replace(order, tasks={w: order.tasks[w] for w in ws}, payload=None,
                            coefficients={w: order.coefficients[w] for w in ws if w in order.coefficients}))
                for a, ws in sorted(mine.items())]

    def _honest_round(self, order: Order, w_ref: Any, coalition: Coalition | None, deadline: float,
                      out: StackBuilder, quorum: Any = None) -> float:
        """Dispatch each actor's share and copy its rows in as they arrive; returns the slowest
        actor's own compute time (ms). A reply that is not ``(array of the share's rows, ms)`` makes
        the share's rows bad, never an exception."""
        import ray

        row_of = {w: i for i, w in enumerate(order.workers)}
        payload_ref = ray.put(order.payload) if order.op is not None else None
        poisoned = [w for w in order.workers if coalition is not None and coalition.poisoned(w)]
        shares = self._shares(order)
        refs = {j: self.actors[a].run.remote(share, w_ref, payload_ref, [w for w in poisoned if w in share.tasks])
                for j, (a, share) in enumerate(shares)}
        compute_ms = [0.0]

        def take(j: int, value: Any) -> None:
            ids = shares[j][1].workers
            if isinstance(value, str) and value == NEEDS_SETUP:  # restarted: its rows stay erasures
                a = shares[j][0]
                self.actors[a].setup.remote(self._data_ref, self._programs[a])
                return
            try:
                stack, ms = value
                compute_ms[0] = max(compute_ms[0], float(ms))
                rows = list(stack) if len(stack) == len(ids) else [None] * len(ids)
            except (TypeError, ValueError):  # not (stack, ms): a malformed reply is bad, not a crash
                rows = [None] * len(ids)
            for w, msg in zip(ids, rows):
                out.put(row_of[w], msg)

        arrived: set[int] = set()

        def counted(j: int, value: Any) -> None:
            take(j, value)
            arrived.update(shares[j][1].workers)

        done = None if quorum is None else (lambda: quorum.enough(arrived))
        self._collect(refs, deadline, counted, done)
        return compute_ms[0]

    def _forge_on_actors(self, job: ForgeJob, workers: tuple[int, ...], deadline: float) -> dict[int, Any]:
        """Each actor hosting forgers computes their rows from one shared job; late or failed
        forgers are left out."""
        import ray

        job_ref = ray.put(job)
        hosts = sorted({self._actor_of[w] for w in job.ids})
        refs = {a: self.actors[a].forge.remote(job_ref) for a in hosts}
        got: dict[int, Any] = {}
        row_of = dict(zip(job.ids, job.rows))

        def take(a: int, value: Any) -> None:
            if isinstance(value, dict):
                for w, msg in value.items():
                    if w in row_of:
                        got[row_of[w]] = msg

        self._collect(refs, deadline, take)
        return got

    def execute(self, order: Order, w_ref: Any, coalition: Coalition | None, timeout_s: float,
                quorum: Any = None) -> Collected:
        deadline = time.monotonic() + timeout_s
        t0 = time.perf_counter()
        workers = order.workers
        out = StackBuilder(len(workers), *order.layout)
        compute_ms = self._honest_round(order, w_ref, coalition, deadline, out, quorum)
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
        self.groups, self._actor_of, self._programs = [], {}, []
        self._spec = None
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

