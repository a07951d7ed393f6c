"""Decentralized SGD without any server (``--setting decentralized``): the UBAR paper's system.

Guo, Zhang, Xu, Zhang, Li, Yang, Zhang: "Towards Byzantine-resilient Learning in Decentralized
Systems" (2020). n nodes on a :class:`~codedbft.topology.Topology`, each with its own estimate
x_i and its own data shard. Per iteration k, every benign node i

1. broadcasts x_i to its neighbours and receives theirs (Byzantine neighbours send crafted
   estimates, possibly a different one to each receiver);
2. computes a stochastic gradient on a batch of its own shard (and, for UBAR's stage 2, the loss
   of its stage-1 candidates and of its own estimate on that batch);
3. aggregates with a neighbourhood rule R (``--rule``: average, ubar, dmedian, dkrum, dbulyan,
   bridge; :mod:`codedbft.decentralized.rules`) and applies the general update function
   (Definition 2): ``x_{k+1,i} = α x_{k,i} + (1 − α) R_i − λ ∇l(x_{k,i}, ξ_{k,i})``, α = 0.5 as the
   paper sets it for every rule (``--alpha``), λ the learning rate (plain SGD: the GUF has no
   momentum).

Where each part runs: the node computations of step 2 are one operation order executed by the
backend (Ray actors, one per node, or the in-process simulator: the same program, so the same
bits); the message exchange of step 1 and the rules of step 3 are simulated in the coordinator,
batched over all benign nodes (one rule call per step), since a node's aggregation depends only on
what it received. Byzantine nodes do not train: they forge, per receiver, from what that receiver
sees (its benign neighbourhood), through :func:`codedbft.cluster.adversary.forge_for`. A node that
does not reply in time (or replies garbage) keeps its estimate for the step and drops out of its
neighbours' aggregation; a forgery that fails is a missing neighbour at its receiver.

Data: the training set is split into n shards by a seeded permutation (node i gets rows
``perm[i::n]``); each step node i draws ``max(1, batch_size // n)`` rows of its shard from
``(seed, step, i)``. Metrics add the worst and mean test accuracy over benign nodes (the paper's
metric), the spread of the benign estimates (largest distance to their mean) and the rule's time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from codedbft.cluster.adversary import as_tensor, forge_for
from codedbft.cluster.backend import make_backend
from codedbft.cluster.config import RunConfig
from codedbft.cluster.rundir import RunDir
from codedbft.cluster.trainer import SETTINGS, Trainer, model_sha256
from codedbft.cluster.worker import WorkerCore, WorkerSpec
from codedbft.schemes.base import Order


@dataclass(frozen=True)
class NodeRound:
    """The payload of one step's node order (put once, read by every node)."""

    received: np.ndarray  # (N, M, d) what each benign node received, slot m from its m-th neighbour
    evaluate: np.ndarray  # (N, M) bool: the candidates whose loss the node must compute (UBAR stage 2)
    rows: dict[int, int]  # node id -> its row in received/evaluate


@dataclass(frozen=True)
class NodeProgram:
    """Node ``node``'s computation, shipped once: its gradient, own loss and candidates' losses."""

    node: int
    shard: np.ndarray
    batch: int
    seed: int
    needs_core: ClassVar[bool] = True

    def batch_rows(self, step: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, step, self.node, 0xDEC])
        # a (non-IID) shard smaller than the batch is drawn with replacement
        pick = rng.choice(self.shard.size, self.batch, replace=self.shard.size < self.batch)
        return torch.from_numpy(np.sort(self.shard[pick]))

    def __call__(self, op: str, w: torch.Tensor, step: int, payload: NodeRound, poisoned: bool,
                 core: WorkerCore) -> np.ndarray:
        """``(d + 1 + M,)`` float64: the gradient at x_i, the loss of x_i, the candidates' losses."""
        if op != "node-step":
            raise ValueError(f"unknown node operation {op!r}; expected 'node-step'")
        rows = self.batch_rows(step)
        X, y = core.ds.X_train[rows], core.ds.y_train[rows]
        x = w[self.node]
        g = core.model.partition_gradients(x, X[None], y[None])[0]
        r = payload.rows[self.node]
        cand = payload.evaluate[r]
        losses = np.full(cand.size, np.nan)  # not evaluated: NaN is never "no worse than self"
        for m in np.flatnonzero(cand):
            losses[m] = core.model.loss(as_tensor(payload.received[r, m]), X, y)
        own = core.model.loss(x, X, y)
        return np.concatenate([g.double().numpy(), [own], losses])


def node_shards(n: int, ds: Any, config: RunConfig) -> list[np.ndarray]:
    """Node i's training rows: ``perm[i::n]`` of a permutation seeded by the run seed, or the
    non-IID ``config.split`` (:mod:`codedbft.training.splits`) over the n nodes."""
    from codedbft.training.splits import build_split

    shards = build_split(config.split, ds.y_train.numpy(), n, config.seed)
    if shards is not None:
        return shards
    perm = np.random.default_rng([config.seed, 0x5A4D]).permutation(ds.num_train)
    return [np.sort(perm[i::n]) for i in range(n)]


@SETTINGS.register("decentralized", help="no server: nodes of a topology aggregate neighbours' estimates "
                                         "(average, ubar, dmedian, dkrum, dbulyan, bridge)")
class DecentralizedTrainer(Trainer):
    """Runs decentralized training for a :class:`RunConfig` (see the module docstring).

    Raises:
        ValueError: before any worker starts, for a configuration the setting cannot run: a
            disconnected benign subgraph, a rule's bound, a data-level attack, too small a shard.
    """

    def __init__(self, config: RunConfig, backend: Any = None, run_dir: str | None = None, *,
                 model: Any = None, dataset: Any = None):
        from codedbft.decentralized.rules import build_rule
        from codedbft.training.byo import bind_objects

        config, model_source, data = bind_objects(config, model=model, dataset=dataset)  # a user's objects
        self.config = config
        self.n = n = config.nodes or config.workers
        self.byzantine = self._place(config, n)
        self.benign = tuple(i for i in range(n) if i not in set(self.byzantine))
        self.topology = self._topology(config, n)
        self.idx, self.mask = (torch.from_numpy(a) for a in self.topology.padded_neighbours(self.benign))
        self.is_byz = torch.zeros(n, dtype=torch.bool)
        self.is_byz[list(self.byzantine)] = True
        self.rule = build_rule(config.rule, **dict(config.rule_params))
        self.attack = self._attack(config)
        node_batch = max(1, config.batch_size // n)
        self.spec = WorkerSpec(dataset=config.dataset, model=model_source, k=1, b=node_batch, seed=config.seed,
                               dataset_params=dict(config.dataset_params), model_params=dict(config.model_params),
                               threads=config.threads)
        self.core = WorkerCore(self.spec, data)
        shards = node_shards(n, self.core.ds, config)
        self.programs = [NodeProgram(i, shards[i], node_batch, config.seed) if i in self.benign else None
                         for i in range(n)]
        self.X = self.core.model.init_params().repeat(n, 1)  # every node starts at x_0 (Algorithm 1)
        self.backend = backend if backend is not None else make_backend(config)
        self.rundir = RunDir(run_dir or config.run_dir) if (run_dir or config.run_dir) else None
        self.step_idx = 0
        self.totals = {"missing": 0, "forge_failed": 0, "nonfinite": 0}
        self.elapsed_s = 0.0
        self.last_row: dict[str, Any] = {}

    # -- set-up ---------------------------------------------------------------------------------
    @staticmethod
    def _place(config: RunConfig, n: int) -> tuple[int, ...]:
        from codedbft.attacks import placement_by_name

        if config.redraw:
            raise ValueError("the decentralized setting places Byzantine nodes once (the topology depends on them): no --redraw")
        if not 0 <= config.byzantine < n:
            raise ValueError(f"decentralized needs 0 <= byzantine < nodes, got byzantine={config.byzantine}, nodes={n}")
        if config.byzantine == 0:
            return ()
        p = placement_by_name(config.placement, n=n, b=config.byzantine, ids=config.placement_ids, seed=config.seed)
        return tuple(p.byzantine_ids(0))

    def _topology(self, config: RunConfig, n: int) -> Any:
        from codedbft.topology import build_topology

        params = dict(config.topology_params)
        if config.topology == "erdos-renyi":
            params.setdefault("p", config.connection)
        return build_topology(config.topology, n, byzantine=self.byzantine, seed=config.seed, **params)

    @staticmethod
    def _attack(config: RunConfig) -> Any:
        if not config.attacked:
            return None
        from codedbft.attacks import by_name

        attack = by_name(config.attack, **config.attack_kwargs)
        if attack.data_level:
            raise ValueError(f"{config.attack} poisons a worker's own training data; Byzantine nodes of the "
                             f"decentralized setting do not train, they send crafted estimates: use a message attack")
        return attack

    def _start_workers(self) -> None:
        self.backend.start(self.n, self.spec, self.core.ds, self.programs)

    def describe(self) -> dict[str, Any]:
        return {"topology_info": self.topology.describe(), "byzantine_nodes": list(self.byzantine)}

    # -- one step -------------------------------------------------------------------------------
    def step(self) -> dict[str, Any]:
        """One iteration of every benign node (module docstring); returns its metrics row."""
        self.start()
        t0 = time.perf_counter()
        t = self.step_idx
        received, valid, failed = self._exchange(t)
        evaluate = self.rule.select(self.X[list(self.benign)], received, valid) if self.rule.needs_losses \
            else torch.zeros_like(valid)
        replies, replied = self._node_round(t, received, evaluate)
        t_agg = time.perf_counter()
        R = self._aggregate(received, valid, replies, replied)
        agg_ms = (time.perf_counter() - t_agg) * 1e3
        self._update(R, replies, replied)
        self.step_idx += 1
        step_ms = (time.perf_counter() - t0) * 1e3
        self.elapsed_s += step_ms / 1e3
        row = self._row(t, replies, replied, failed, agg_ms, step_ms)
        self._log(row)
        return row

    def _exchange(self, t: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """What every benign node receives: its neighbours' estimates, Byzantine slots forged for it."""
        received = self.X[self.idx]  # (N, M, d): one gather
        valid = self.mask.clone()
        failed = 0
        if self.attack is None or not self.byzantine:
            return received, valid, failed
        for r, i in enumerate(self.benign):
            slots = torch.nonzero(self.mask[r] & self.is_byz[self.idx[r]]).flatten()
            if slots.numel() == 0:
                continue
            benign_slots = torch.nonzero(self.mask[r] & ~self.is_byz[self.idx[r]]).flatten()
            honest = torch.cat([self.X[i][None], received[r, benign_slots]])
            forged = forge_for(self.attack, honest, tuple(self.idx[r, slots].tolist()), step=t,
                               seed=self.config.seed, target=i)
            if forged is None or forged.shape != (slots.numel(), self.X.shape[1]):
                valid[r, slots] = False
                failed += int(slots.numel())
            else:
                received[r, slots] = forged.to(received.dtype)
        return received, valid, failed

    def _node_round(self, t: int, received: torch.Tensor, evaluate: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        """The benign nodes' gradients and losses, computed by the backend; ``replied`` per benign row."""
        M, d = received.shape[1], self.X.shape[1]
        payload = NodeRound(received.numpy(), evaluate.numpy(), {i: r for r, i in enumerate(self.benign)})
        order = Order({i: (i,) for i in self.benign}, op="node-step", payload=payload, shape=(d + 1 + M,),
                      dtype=torch.float64, step=t)
        got = self.backend.execute(order, self.backend.broadcast(self.X), None, self.config.timeout_s)
        stack = got.stack
        lost = np.zeros(len(self.benign), dtype=bool) if got.missing is None else got.missing.copy()
        if got.bad is not None:
            lost |= got.bad
        # the loss columns hold NaN where not evaluated; only the gradient and own loss must be finite
        head = stack[:, : d + 1].numpy()
        with np.errstate(invalid="ignore", over="ignore"):
            lost |= ~np.isfinite(head).all(axis=1)
        self.totals["missing"] += int(lost.sum())
        return stack, ~lost

    def _aggregate(self, received: torch.Tensor, valid: torch.Tensor, replies: torch.Tensor,
                   replied: np.ndarray) -> torch.Tensor:
        """R_i for every benign node in one batched rule call; silent benign neighbours drop out."""
        d = self.X.shape[1]
        silent = torch.zeros(self.n, dtype=torch.bool)
        silent[[i for r, i in enumerate(self.benign) if not replied[r]]] = True
        mask = valid & ~silent[self.idx]
        own = self.X[list(self.benign)]
        if not self.rule.needs_losses:
            return self.rule(own, received, mask)
        losses = replies[:, d + 1:].clone()
        own_loss = replies[:, d].clone()
        losses[~torch.from_numpy(replied)] = float("nan")  # stage 1 may re-pick them: NaN is never kept
        return self.rule(own, received, mask, losses=losses, own_loss=own_loss)

    def _update(self, R: torch.Tensor, replies: torch.Tensor, replied: np.ndarray) -> None:
        """The general update function (Definition 2) for every benign node that replied."""
        a, lr, d = self.config.alpha, self.config.lr, self.X.shape[1]
        rows = torch.from_numpy(np.flatnonzero(replied))
        ids = torch.tensor([self.benign[r] for r in rows.tolist()], dtype=torch.long)
        g = replies[rows, :d].to(self.X.dtype)
        self.X[ids] = a * self.X[ids] + (1 - a) * R[rows].to(self.X.dtype) - lr * g

    def _row(self, t: int, replies: torch.Tensor, replied: np.ndarray, failed: int, agg_ms: float,
             step_ms: float) -> dict[str, Any]:
        cfg, d = self.config, self.X.shape[1]
        self.totals["forge_failed"] += failed
        row: dict[str, Any] = {"step": t, "missing": int((~replied).sum()), "forge_failed": failed,
                               "aggregate_ms": round(agg_ms, 3), "step_ms": round(step_ms, 3),
                               "spread": self.spread()}
        if t % cfg.log_every == 0 or self.step_idx == cfg.steps:
            own = replies[torch.from_numpy(replied), d]
            row["loss"] = float(own.mean()) if own.numel() else None
            if self.step_idx % cfg.eval_every == 0 or self.step_idx == cfg.steps:
                accs = self.benign_accuracies()
                row["test_accuracy"] = float(np.mean(accs)) if accs else None
                row["worst_benign_test_accuracy"] = float(min(accs)) if accs else None
        return row

    # -- evaluation, state, summary -------------------------------------------------------------
    def benign_accuracies(self) -> list[float]:
        ds = self.core.ds
        return [self.core.model.accuracy(self.X[i], ds.X_test, ds.y_test) for i in self.benign]

    def spread(self) -> float:
        """Largest distance of a benign estimate to the benign mean (0: consensus)."""
        B = self.X[list(self.benign)].double()
        return float(torch.linalg.vector_norm(B - B.mean(0), dim=1).max()) if len(self.benign) else 0.0

    @property
    def model_sha256(self) -> str:
        return model_sha256(self.X[list(self.benign)])

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step_idx, "X": self.X.clone(), "totals": dict(self.totals), "elapsed_s": self.elapsed_s}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_idx = int(state["step"])
        self.X = state["X"].clone()
        self.totals = dict(state["totals"])
        self.elapsed_s = float(state["elapsed_s"])

    def summary(self) -> dict[str, Any]:
        accs = self.benign_accuracies()
        ds = self.core.ds
        losses = [self.core.model.loss(self.X[i], ds.X_train, ds.y_train) for i in self.benign]
        return {"steps": self.step_idx, "setting": "decentralized", "rule": self.rule.name,
                "final_loss": float(np.mean(losses)), "final_test_accuracy": float(np.mean(accs)) if accs else None,
                "worst_benign_test_accuracy": float(min(accs)) if accs else None,
                "benign_test_accuracy": accs, "spread": self.spread(), "model_sha256": self.model_sha256,
                "missing_total": int(self.totals["missing"]), "forge_failed_total": int(self.totals["forge_failed"]),
                "nodes": self.n, "byzantine_nodes": list(self.byzantine), "wall_s": self.elapsed_s,
                "backend": self.config.backend, "d": self.core.model.d}
