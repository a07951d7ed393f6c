"""ByzSGD: replicated parameter servers, some Byzantine, and Byzantine workers (``--setting byzantine-servers``).

El-Mhamdi, Guerraoui, Guirguis, Hoang, Rouault: "Genuinely Distributed Byzantine Machine Learning"
(PODC 2020, arXiv 1905.03853). No component is trusted: n_ps servers of which f_ps < n_ps / 3 are
Byzantine, n_w workers of which f_w are Byzantine. One step (synchronous variant):

1. *pull*: every worker receives a model from every server (a Byzantine server sends a crafted
   model, possibly a different one to each worker) and keeps a robust statistic of them,
   coordinate-wise median (default) or MDA with f = f_ps (``--server-rule``);
2. *compute*: each worker computes its partition's gradient at that model (the backend's
   operation order: Ray actors or the in-process simulator, the same program, the same bits);
3. *push*: every correct server receives the n_w gradients (a Byzantine worker sends a crafted
   gradient, possibly a different one to each server) and aggregates them with MDA (f = f_w),
   batched over the correct servers (one call), then steps ``θ_s ← θ_s − lr · g_s``;
4. *gather / distributed median contraction* (every T steps, ``--contraction-every``): each correct
   server receives every server's model (Byzantine ones crafted) and replaces its own by their
   coordinate-wise median, which pulls the correct servers' models back together.

Correct servers drift apart because Byzantine workers (and servers) send each of them something
different; the metric ``server_spread`` is the largest distance between two correct servers'
models, before (``server_drift``) and after the contraction of the step.

Where each part runs: workers and correct servers are both participants of the backend (two
backends of the same kind: on Ray, one actor per worker and one per correct server); the servers'
MDA and median run in the server actors (:class:`ServerProgram`), and their models are replicated
in the coordinator, which checkpoints them and simulates the Byzantine servers and the message
exchange. A server that does not reply in time keeps its model for that step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from codedbft.cluster.adversary import forge_for
from codedbft.cluster.backend import make_backend
from codedbft.cluster.config import RunConfig
from codedbft.cluster.rundir import RunDir
from codedbft.cluster.trainer import SETTINGS, Trainer, model_sha256
from codedbft.cluster.worker import WorkerCore, WorkerSpec
from codedbft.schemes.base import Order

#: attack seed streams: what Byzantine servers send at pull and gather, Byzantine workers at push
_PULL, _GATHER, _PUSH = 1, 2, 3


@dataclass(frozen=True)
class WorkerProgram:
    """Worker ``worker``: its partition's gradient at the model it pulled (row ``worker`` of ``w``)."""

    worker: int
    needs_core: ClassVar[bool] = True

    def __call__(self, op: str, w: torch.Tensor, step: int, payload: Any, poisoned: bool, core: WorkerCore) -> np.ndarray:
        if op != "gradient-at":
            raise ValueError(f"unknown worker operation {op!r}; expected 'gradient-at'")
        return core.gradients(w[self.worker], step, (self.worker,), poisoned)[0].numpy()


@dataclass(frozen=True)
class ServerProgram:
    """Correct server ``server``'s computations, shipped once: MDA over the gradients it received
    (``op="aggregate"``) and the coordinate-wise median of the models it gathered (``"contract"``).

    ``payload[server]`` is its ``(m, d)`` input; the reply is ``(d,)`` in the input's dtype. The
    server's model itself is replicated in the coordinator, which checkpoints it.
    """

    server: int
    f_w: int
    f_ps: int

    def __call__(self, op: str, w: Any, step: int, payload: Any, poisoned: bool) -> np.ndarray:
        from codedbft.aggregators import by_name

        x = torch.from_numpy(np.array(payload[self.server]))
        if op == "aggregate":
            mda = by_name("mda", f=self.f_w)
            return (mda(x) if x.shape[0] >= mda.min_n() else torch.zeros_like(x[0])).numpy()
        if op == "contract":
            return by_name("median", f=self.f_ps)(x).numpy()
        raise ValueError(f"unknown server operation {op!r}; expected 'aggregate' or 'contract'")


def max_pairwise_distance(models: torch.Tensor) -> float:
    """Largest Euclidean distance between two rows (float64)."""
    if models.shape[0] < 2:
        return 0.0
    return float(torch.cdist(models.double()[None], models.double()[None])[0].max())


@SETTINGS.register("byzantine-servers", help="ByzSGD: replicated parameter servers (f_ps < n_ps/3 Byzantine), "
                                             "MDA at the servers, median contraction every T steps")
class ByzSGDTrainer(Trainer):
    """Runs ByzSGD for a :class:`RunConfig` (see the module docstring).

    Raises:
        ValueError: before any worker starts: f_ps >= n_ps / 3, too few workers for MDA's f_w.
    """

    def __init__(self, config: RunConfig, backend: Any = None, run_dir: str | None = None,
                 server_backend: Any = None, *, model: Any = None, dataset: Any = None):
        from codedbft.aggregators import by_name
        from codedbft.training.byo import bind_objects

        config, model_source, data = bind_objects(config, model=model, dataset=dataset)  # a user's objects
        self.config = config
        self.n_ps, self.f_ps = config.servers, config.byzantine_servers
        self.n_w, self.f_w = config.workers, config.byzantine
        self.byz_servers = tuple(range(self.n_ps - self.f_ps, self.n_ps))  # servers are interchangeable
        self.correct = tuple(range(self.n_ps - self.f_ps))
        self.placement = self._place(config)
        self.server_agg = by_name("mda", f=self.f_w)
        if self.n_w < self.server_agg.min_n():
            raise ValueError(f"byzantine-servers: MDA at the servers needs n_w >= 2 f_w + 1, got workers={self.n_w}, "
                             f"byzantine={self.f_w}")
        self.pull_rule = by_name(config.server_rule, f=self.f_ps)
        self.attack = self._attack(config)
        b = config.batch_size // self.n_w
        if b < 1:
            raise ValueError(f"batch_size >= workers required (one partition per worker), got {config.batch_size}")
        self.spec = WorkerSpec(dataset=config.dataset, model=model_source, k=self.n_w, b=b, seed=config.seed,
                               dataset_params=dict(config.dataset_params), model_params=dict(config.model_params),
                               threads=config.threads)
        self.core = WorkerCore(self.spec, data)
        self.theta = self.core.model.init_params().repeat(self.n_ps, 1)  # (n_ps, d); Byzantine rows unused
        self.backend = backend if backend is not None else make_backend(config)
        self.server_backend = server_backend if server_backend is not None else make_backend(config)
        self.rundir = RunDir(run_dir or config.run_dir) if (run_dir or config.run_dir) else None
        self.step_idx = 0
        self.totals = {"missing": 0, "forge_failed": 0}
        self.elapsed_s = 0.0
        self.last_row: dict[str, Any] = {}

    @staticmethod
    def _place(config: RunConfig) -> Any:
        """The Byzantine workers' placement (random, fixed, or redrawn every step)."""
        from codedbft.attacks import placement_by_name

        if config.byzantine == 0:
            return None
        return placement_by_name(config.placement, n=config.workers, b=config.byzantine, ids=config.placement_ids,
                                 seed=config.seed, redraw=config.redraw)

    @staticmethod
    def _attack(config: RunConfig) -> Any:
        if not (config.attack not in (None, "", "none") and (config.byzantine or config.byzantine_servers)):
            return None
        from codedbft.attacks import by_name

        attack = by_name(config.attack, **config.attack_kwargs)
        if attack.data_level and config.byzantine_servers:
            raise ValueError(f"{config.attack} poisons training data; Byzantine servers send models: use a message attack")
        return attack

    def _start_workers(self) -> None:
        self.backend.start(self.n_w, self.spec, self.core.ds, [WorkerProgram(i) for i in range(self.n_w)])
        self.server_backend.start(len(self.correct), self.spec, self.core.ds,
                                  [ServerProgram(s, self.f_w, self.f_ps) for s in range(len(self.correct))])

    def close(self) -> None:
        if self._started:
            self.server_backend.close()
        super().close()

    def _on_servers(self, t: int, op: str, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, np.ndarray]:
        """Run ``op`` on every correct server (row s of the reply: server s); ``replied`` per server."""
        order = Order({s: (s,) for s in range(len(self.correct))}, op=op, payload=tuple(x.numpy() for x in inputs),
                      shape=(self.theta.shape[1],), dtype=self.theta.dtype, step=t)
        got = self.server_backend.execute(order, self.server_backend.broadcast(torch.zeros(1)), None,
                                          self.config.timeout_s)
        lost = np.zeros(len(self.correct), dtype=bool) if got.missing is None else got.missing.copy()
        if got.bad is not None:
            lost |= got.bad
        lost |= ~torch.isfinite(got.stack).all(dim=1).numpy()
        self.totals["missing_servers"] = self.totals.get("missing_servers", 0) + int(lost.sum())
        return got.stack, ~lost

    def describe(self) -> dict[str, Any]:
        return {"byzantine_servers_ids": list(self.byz_servers)}

    def byzantine_workers(self, t: int) -> tuple[int, ...]:
        return () if self.placement is None else tuple(self.placement.byzantine_ids(t))

    # -- one step -------------------------------------------------------------------------------
    def step(self) -> dict[str, Any]:
        """Pull, compute, push (and gather every T steps); returns the step's metrics row."""
        self.start()
        t0 = time.perf_counter()
        t = self.step_idx
        byz_w = self.byzantine_workers(t)
        pulled = self._pull(t)
        grads, present = self._compute(t, pulled, byz_w)
        self._push(t, grads, present, byz_w)
        drift = max_pairwise_distance(self.theta[list(self.correct)])
        contracted = bool(self.config.contraction_every) and (t + 1) % self.config.contraction_every == 0
        if contracted:
            self._gather(t)
        self.step_idx += 1
        step_ms = (time.perf_counter() - t0) * 1e3
        self.elapsed_s += step_ms / 1e3
        row = self._row(t, byz_w, present, drift, contracted, step_ms)
        self._log(row)
        return row

    def _server_views(self, t: int, receivers: int, stream: int) -> torch.Tensor:
        """``(receivers, n_ps, d)``: the models each receiver gets from all servers (Byzantine forged)."""
        good = self.theta[list(self.correct)]
        views = self.theta[None].repeat(receivers, 1, 1)
        if self.f_ps and self.attack is not None:
            for r in range(receivers):
                forged = forge_for(self.attack, good, self.byz_servers, step=t, seed=self.config.seed, target=r,
                                   stream=stream)
                if forged is None:  # a server that cannot forge is silent: the correct ones stand in for it
                    forged = good[: len(self.byz_servers)] if good.shape[0] >= len(self.byz_servers) else good.mean(0).expand(len(self.byz_servers), -1)
                    self.totals["forge_failed"] += 1
                views[r, list(self.byz_servers)] = forged.to(views.dtype)
        return views

    def _pull(self, t: int) -> torch.Tensor:
        """Every worker's model: the robust statistic of what the servers sent it (one batched call)."""
        return self.pull_rule(self._server_views(t, self.n_w, _PULL))

    def _compute(self, t: int, pulled: torch.Tensor, byz_w: tuple[int, ...]) -> tuple[torch.Tensor, np.ndarray]:
        from codedbft.cluster.adversary import Coalition

        coalition = Coalition(self.attack, byz_w, t, self.config.seed, self.n_w) if self.attack is not None \
            and self.attack.data_level else None  # data-level: Byzantine workers train on poisoned labels
        order = Order({i: (i,) for i in range(self.n_w)}, op="gradient-at", shape=(self.theta.shape[1],),
                      dtype=self.theta.dtype, step=t)
        got = self.backend.execute(order, self.backend.broadcast(pulled.contiguous()), coalition, self.config.timeout_s)
        lost = np.zeros(self.n_w, dtype=bool) if got.missing is None else got.missing.copy()
        if got.bad is not None:
            lost |= got.bad
        lost |= ~torch.isfinite(got.stack).all(dim=1).numpy()
        self.totals["missing"] += int(lost.sum())
        return got.stack, ~lost

    def _push(self, t: int, grads: torch.Tensor, present: np.ndarray, byz_w: tuple[int, ...]) -> None:
        """Every correct server aggregates what the workers sent it with MDA, then steps."""
        honest_rows = [i for i in range(self.n_w) if present[i] and i not in byz_w]
        byz_rows = [i for i in range(self.n_w) if present[i] and i in byz_w]
        sets = []
        for s in self.correct:
            rows = grads[honest_rows]
            if byz_rows and self.attack is not None and not self.attack.data_level:
                forged = forge_for(self.attack, rows, tuple(byz_rows), step=t, seed=self.config.seed, target=s,
                                   stream=_PUSH, own=grads[byz_rows])
                if forged is not None:
                    rows = torch.cat([rows, forged.to(rows.dtype)])
                else:
                    self.totals["forge_failed"] += 1
            elif byz_rows:
                rows = torch.cat([rows, grads[byz_rows]])
            sets.append(rows)
        g, replied = self._on_servers(t, "aggregate", [r.to(self.theta.dtype).contiguous() for r in sets])
        ids = [self.correct[s] for s in np.flatnonzero(replied)]
        self.theta[ids] -= self.config.lr * g[torch.from_numpy(np.flatnonzero(replied))]

    def _gather(self, t: int) -> None:
        """Distributed median contraction: each correct server takes the median of all servers' models."""
        views = self._server_views(len(self.correct), len(self.correct), _GATHER)
        med, replied = self._on_servers(t, "contract", list(views))
        rows = np.flatnonzero(replied)
        self.theta[[self.correct[s] for s in rows]] = med[torch.from_numpy(rows)]

    def _row(self, t: int, byz_w: tuple[int, ...], present: np.ndarray, drift: float, contracted: bool,
             step_ms: float) -> dict[str, Any]:
        cfg = self.config
        row: dict[str, Any] = {"step": t, "byzantine": list(byz_w), "missing": int((~present).sum()),
                               "server_drift": drift, "server_spread": max_pairwise_distance(self.theta[list(self.correct)]),
                               "contracted": contracted, "step_ms": round(step_ms, 3)}
        if t % cfg.log_every == 0 or self.step_idx == cfg.steps:
            idx = self.core.batch_indices(t).reshape(-1)
            w = self.theta[list(self.correct)].mean(0)
            row["loss"] = self.core.model.loss(w, self.core.ds.X_train[idx], self.core.ds.y_train[idx])
            if self.step_idx % cfg.eval_every == 0 or self.step_idx == cfg.steps:
                accs = self.server_accuracies()
                row["test_accuracy"] = float(np.mean(accs))
                row["worst_benign_test_accuracy"] = float(min(accs))
        return row

    # -- evaluation, state, summary -------------------------------------------------------------
    def server_accuracies(self) -> list[float]:
        ds = self.core.ds
        return [self.core.model.accuracy(self.theta[s], ds.X_test, ds.y_test) for s in self.correct]

    @property
    def model_sha256(self) -> str:
        return model_sha256(self.theta[list(self.correct)])

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step_idx, "theta": self.theta.clone(), "totals": dict(self.totals),
                "elapsed_s": self.elapsed_s}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_idx = int(state["step"])
        self.theta = state["theta"].clone()
        self.totals = dict(state["totals"])
        self.elapsed_s = float(state["elapsed_s"])

    def summary(self) -> dict[str, Any]:
        accs = self.server_accuracies()
        ds = self.core.ds
        w = self.theta[list(self.correct)].mean(0)
        return {"steps": self.step_idx, "setting": "byzantine-servers", "final_loss": self.core.model.loss(w, ds.X_train, ds.y_train),
                "final_test_accuracy": float(np.mean(accs)), "worst_benign_test_accuracy": float(min(accs)),
                "server_test_accuracy": accs, "server_spread": max_pairwise_distance(self.theta[list(self.correct)]),
                "model_sha256": self.model_sha256, "missing_total": int(self.totals["missing"]),
                "forge_failed_total": int(self.totals["forge_failed"]), "servers": self.n_ps,
                "byzantine_servers": self.f_ps, "wall_s": self.elapsed_s, "backend": self.config.backend,
                "d": self.core.model.d}
