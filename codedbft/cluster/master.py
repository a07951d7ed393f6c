"""The master: one training step = broadcast, compute, collect, validate, decode, aggregate, step.

::

    master = Master(RunConfig(backend="local", steps=50), run_dir="runs/x")
    summary = master.run()            # or: with Master(cfg) as m: m.step() ...
    summary["model_sha256"]

Per step (``Master.step``, one named method each):

1. ``_coalition``: the Byzantine set of the step comes from the placement
   (``placement.byzantine_ids(step)``) and, with the configured attack, makes the step's coalition;
2. ``_broadcast``: the model goes out once (``ray.put`` once per step, never once per worker);
3. ``_protocol_rounds``: the scheme's protocol yields self-describing orders; the backend executes
   each one (Byzantine workers forge through the one forging round,
   :mod:`codedbft.cluster.adversary`); the master validates every reply (shape, dtype, finiteness: a
   bad one becomes an erasure and its sender is flagged, never an exception) and hands the
   fixed-order stack back; the scheme decodes (and aggregates), giving the MEAN partition gradient;
4. ``_apply``: the optimizer steps, unless the gradient is non-finite (``skipped``);
5. ``_account``, ``_row``, ``_log``: flags and isolation, the metrics row, every
   ``checkpoint_every`` steps a checkpoint.

Everything random is a function of ``(seed, step)`` (batches, placements, attacks), so the same seed
gives the same model bit for bit on both backends, and a resumed run reaches the same final model.
Isolation (``isolate_after``): a worker flagged that many times is no longer asked; its rows are
erasures, which a code corrects at half the cost of an error.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from codedbft._arrays import nonfinite_rows
from codedbft.cluster.adversary import Adversary, Coalition
from codedbft.cluster.backend import Collected, make_backend
from codedbft.cluster.config import RunConfig, parse_straggle
from codedbft.cluster.rundir import RunDir
from codedbft.cluster.trainer import SETTINGS, Trainer, model_sha256
from codedbft.cluster.worker import WorkerCore, WorkerSpec
from codedbft.schemes import Replies, Scheme, SchemeResult, build_scheme

__all__ = ["Master", "make_backend", "model_sha256"]


def _placement(config: RunConfig, scheme: Scheme) -> Any:
    from codedbft.attacks import placement_by_name

    return placement_by_name(config.placement, n=scheme.n, b=config.byzantine, code=scheme.code,
                             ids=config.placement_ids, seed=config.seed, redraw=config.redraw)


def _server_oracle(scheme: Scheme, core: WorkerCore, secret: int) -> Any:
    """The :class:`ServerOracle` of a rule that takes per-call arguments, or None; ValueError where the
    scheme's rule runs on decoded values the master cannot score (only vanilla passes the context)."""
    from codedbft.cluster.server_oracle import ServerOracle, rule_call_args

    rule = scheme.aggregator
    inner = getattr(rule, "outer", None) or getattr(rule, "rule", None) or rule
    needs = rule_call_args(rule) or rule_call_args(inner)
    if not needs:
        return None
    if scheme.name != "vanilla":
        raise ValueError(f"{getattr(inner, 'name', type(inner).__name__)} needs the server's data per step "
                         f"({', '.join(needs)}), which only the vanilla scheme passes to its rule; "
                         f"use --scheme vanilla or another rule with {scheme.name}")
    batch = getattr(rule, "aux_batch", None) or getattr(inner, "aux_batch", 64)
    return ServerOracle(core, needs, secret, batch)


@SETTINGS.register("master", help="one trusted master, coded workers (DRACO, DETOX, ByzShield, RRR, data encoding)")
class Master(Trainer):
    """Runs training for a :class:`RunConfig` on a backend (see the module docstring).

    Everything that can be checked without workers (scheme, code constraints, attack and placement
    names, dataset and model, batch geometry) is checked in the constructor, before any Ray start;
    a bad configuration raises ValueError naming the constraint.
    """

    #: scheme diagnostics copied into the metrics rows when present (RRR: checked, isolated)
    SCHEME_KEYS = ("checked", "isolated_by_scheme", "undecided")

    def __init__(self, config: RunConfig, backend: Any = None, run_dir: str | None = None, *,
                 model: Any = None, dataset: Any = None, scheme: Any = None):
        from codedbft.training import make_optimizer
        from codedbft.training.byo import as_scheme, bind_objects

        # a user's nn.Module or factory, data, Code or Scheme (codedbft.training.byo): config.json gets labels
        config, model_source, data = bind_objects(config, model=model, dataset=dataset, scheme=scheme)
        self.config = config
        self.scheme: Scheme = as_scheme(scheme, config) if scheme is not None else build_scheme(config.scheme_config())
        if scheme is not None and (config.local_steps > 1 or config.worker_momentum > 0) and self.scheme.code is None:
            raise ValueError("local_steps > 1 and worker_momentum need a gradient code: scheme= a Code, not a Scheme")
        k = self.scheme.k
        if config.batch_size < k:
            raise ValueError(f"batch_size >= k required (k={k} partitions of batch_size // k samples), got {config.batch_size}")
        self.spec = WorkerSpec(dataset=config.dataset, model=model_source, k=k, b=config.batch_size // k,
                               seed=config.seed, dataset_params=dict(config.dataset_params),
                               model_params=dict(config.model_params), threads=config.threads,
                               split=config.split, local_steps=config.local_steps,
                               local_lr=config.local_lr if config.local_lr is not None else config.lr,
                               worker_momentum=config.worker_momentum, straggle=parse_straggle(config.straggle))
        if config.split != "iid" and self.scheme.name == "data-encoding":
            raise ValueError("data-encoding encodes the rows in its own (shuffled) order: it takes split 'iid' only")
        self.core = WorkerCore(self.spec, data)  # the master's own copy: evaluation and logged loss
        if k * self.spec.b > self.core.ds.num_train:
            raise ValueError(f"batch_size={config.batch_size} exceeds the {self.core.ds.num_train} training samples of {config.dataset}")
        self.scheme.bind(self.core.ds, self.core.model, self.spec)  # data-encoding schemes encode here
        self.adversary: Adversary | None = None
        if config.attacked:
            from codedbft.attacks import by_name

            self.adversary = Adversary(by_name(config.attack, **config.attack_kwargs), config.seed, self.scheme.n,
                                       self.scheme.assignment)
            self.adversary.check(config.byzantine)  # an attack that can never run is a configuration error
            self._give_defence(self.adversary.attack)
        self.placement = _placement(config, self.scheme) if config.byzantine > 0 else None
        self.oracle = _server_oracle(self.scheme, self.core, config.secret)
        self.w = self.core.model.init_params()
        self.optimizer = make_optimizer(config.optimizer, config.lr, momentum=config.momentum,
                                        weight_decay=config.weight_decay, schedule=config.lr_schedule,
                                        total_steps=config.steps, **config.optimizer_params)
        self.backend = backend if backend is not None else make_backend(config)
        self.rundir = RunDir(run_dir or config.run_dir) if (run_dir or config.run_dir) else None
        n = self.scheme.n
        self.step_idx = 0
        self.flag_counts = np.zeros(n, dtype=np.int64)
        self.active = np.ones(n, dtype=bool)
        self.totals = {"flagged": 0, "erasures": 0, "computed": 0, "useful": 0, "skipped": 0, "inexact": 0}
        self.elapsed_s = 0.0
        self.last_row: dict[str, Any] = {}
        self._worker_state: dict[Any, Any] | None = None
        self._started = False

    def _give_defence(self, attack: Any) -> None:
        """Adaptive attacks (alie-opt, ipm-opt) search against the deployed defence: vanilla's rule (a
        Pipeline with its pre-aggregators included) acts on the messages themselves, so it is the one
        they get (a simulation privilege, like the honest messages); the codes' rules act on decoded
        values, and those attacks keep their documented default there."""
        if getattr(attack, "defence", "none") is None and self.scheme.name == "vanilla":
            attack.defence = self.scheme.aggregator

    # -- lifecycle (the rest is Trainer's) -----------------------------------------------------
    def _start_workers(self) -> None:
        programs = [self.scheme.worker_data(i) for i in range(self.scheme.n)]  # data-encoding workers
        self.backend.start(self.scheme.n, self.spec, self.core.ds, programs)
        if self._worker_state is not None:  # resume: the workers' momentum comes back with the model
            self.backend.load_worker_state(self._worker_state)
            self._worker_state = None

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"scheme_info": self.scheme.describe()}
        if self.core.shards is not None:  # the seeded split, as each partition's class histogram
            from codedbft.training.splits import histogram

            info["split_info"] = {"split": self.config.split, "sizes": [int(s.size) for s in self.core.shards],
                                  "class_histogram": histogram(self.core.shards, self.core.ds.y_train.numpy())}
        return info

    def _progress_postfix(self, row: dict[str, Any], acc: Any) -> dict[str, Any]:
        return {**super()._progress_postfix(row, acc), "flagged": self.totals["flagged"]}

    # -- one step -------------------------------------------------------------------------------
    def _validate(self, got: Collected) -> Replies:
        """The backend's fixed-order stack, with non-finite rows zeroed and marked: missing and bad
        (wrong shape or dtype) rows are erasures, bad and non-finite senders are flagged (invalid)."""
        n = len(got.workers)
        missing = np.zeros(n, dtype=bool) if got.missing is None else got.missing.copy()
        bad = np.zeros(n, dtype=bool) if got.bad is None else got.bad.copy()
        stack = got.stack
        nonfinite = nonfinite_rows(stack.detach().cpu().numpy()) & ~missing & ~bad
        if nonfinite.any():
            stack[torch.from_numpy(nonfinite)] = 0
        bad |= nonfinite
        invalid = tuple(got.workers[i] for i in np.flatnonzero(bad))
        return Replies(got.workers, stack, missing | bad, invalid)

    def step(self) -> dict[str, Any]:
        """Run one training step (the pipeline of the module docstring); returns its metrics row."""
        self.start()
        t0 = time.perf_counter()
        t = self.step_idx
        coalition = self._coalition(t)
        handle, timings = self._broadcast(t0)
        self._server_context(t, timings)
        result, rounds, erasures = self._protocol_rounds(t, handle, coalition, timings)
        skipped = self._apply(result, timings)
        timings["step_ms"] = (time.perf_counter() - t0) * 1e3
        self.elapsed_s += timings["step_ms"] / 1e3
        self._account(result, erasures, skipped)
        row = self._row(t, coalition, result, rounds, erasures, skipped, timings)
        self._log(row)
        return row

    # -- the steps of a step --------------------------------------------------------------------
    def _coalition(self, t: int) -> Coalition | None:
        """Placement: the step's Byzantine workers and their attack (None: nobody forges)."""
        byz = tuple(self.placement.byzantine_ids(t)) if self.placement is not None else ()
        if self.adversary is None:
            return Coalition(None, byz, t, self.config.seed, self.scheme.n) if byz else None
        return self.adversary.at(t, byz)

    def _broadcast(self, t0: float) -> tuple[Any, dict[str, float]]:
        """Broadcast: the model goes out once per step (``ray.put`` once, never once per worker)."""
        handle = self.backend.broadcast(self.w)
        return handle, {"broadcast_ms": (time.perf_counter() - t0) * 1e3}

    def _server_context(self, t: int, timings: dict[str, float]) -> None:
        """Server data: a rule that needs the master's own batch (ByGARS++, Zeno) gets it for this step."""
        if self.oracle is not None:
            t_srv = time.perf_counter()
            self.scheme.call_context = self.oracle.context(self.w, t)
            timings["server_ms"] = (time.perf_counter() - t_srv) * 1e3

    def _protocol_rounds(self, t: int, handle: Any, coalition: Coalition | None,
                         timings: dict[str, float]) -> tuple[SchemeResult, int, int]:
        """Protocol rounds: the backend executes each order, the master validates the replies and
        hands them back, until the scheme returns its result (decoded and aggregated)."""
        gen = self.scheme.protocol(t, self.active.copy())
        order = next(gen)
        erasures = int((~self.active).sum())  # workers isolated by the master: erasures by decision
        rounds = 0
        while True:
            quorum = self.scheme.quorum(order) if self.config.wait_for == "auto" else None
            # a backend written before quorums existed keeps working with --wait-for all
            extra = {"quorum": quorum} if quorum is not None else {}
            got = self.backend.execute(order, handle, coalition, self.config.timeout_s, **extra)
            for key, val in got.timings.items():
                timings[key] = timings.get(key, 0.0) + val
            t_val = time.perf_counter()
            replies = self._validate(got)
            timings["assemble_ms"] = timings.get("assemble_ms", 0.0) + (time.perf_counter() - t_val) * 1e3
            erasures += int(replies.missing.sum()) - len(replies.invalid)
            rounds += 1
            try:
                order = gen.send(replies)
            except StopIteration as stop:
                return stop.value, rounds, erasures

    def _apply(self, result: SchemeResult, timings: dict[str, float]) -> bool:
        """Optimizer: step on the decoded mean gradient unless it is non-finite (then skipped); the lr
        schedule advances either way (it counts training steps)."""
        t_dec = time.perf_counter()
        grad = result.gradient.to(self.w.dtype)
        skipped = not bool(torch.isfinite(grad).all())
        if not skipped:
            self.w = self.optimizer.step(self.w, grad)
        else:
            self.optimizer.skip()
        timings["optimizer_ms"] = (time.perf_counter() - t_dec) * 1e3
        timings["decode_ms"] = float(result.info.get("decode_ms", 0.0))
        timings["aggregate_ms"] = float(result.info.get("aggregate_ms", 0.0))
        return skipped

    def _account(self, result: SchemeResult, erasures: int, skipped: bool) -> None:
        """Flags, isolation and the run totals."""
        flagged = list(result.flagged)
        self.flag_counts[flagged] += 1
        if self.config.isolate_after is not None and self.scheme.supports_isolation:
            self.active &= self.flag_counts < self.config.isolate_after
        tot = self.totals
        tot["flagged"] += len(flagged)
        tot["erasures"] += erasures
        tot["computed"] += result.computed
        tot["useful"] += result.useful
        tot["skipped"] += int(skipped)
        tot["inexact"] += int(not result.exact)
        self.step_idx += 1

    def _row(self, t: int, coalition: Coalition | None, result: SchemeResult, rounds: int, erasures: int,
             skipped: bool, timings: dict[str, float]) -> dict[str, Any]:
        """Metrics: the step's row (loss and test accuracy on their schedules)."""
        cfg = self.config
        row: dict[str, Any] = {"step": t, "flagged": list(result.flagged), "erasures": erasures,
                               "exact": bool(result.exact), "skipped": skipped,
                               "byzantine": list(coalition.byzantine) if coalition is not None else [],
                               "rounds": rounds, "isolated": np.flatnonzero(~self.active).tolist(),
                               "flagged_cumulative": int(self.totals["flagged"]),
                               "efficiency": result.useful / result.computed if result.computed else None,
                               **{k: round(v, 3) for k, v in timings.items()},
                               **{k: result.info[k] for k in self.SCHEME_KEYS if k in result.info}}
        if self.optimizer.scheduler is not None:
            row["lr"] = self.optimizer.last_lr  # the lr this step used
        if t % cfg.log_every == 0 or self.step_idx == cfg.steps:
            idx = self.core.batch_indices(t).reshape(-1)
            row["loss"] = self.core.model.loss(self.w, self.core.ds.X_train[idx], self.core.ds.y_train[idx])
            if self.step_idx % cfg.eval_every == 0 or self.step_idx == cfg.steps:
                row["test_accuracy"] = self.test_accuracy()
        return row

    # -- evaluation, checkpoints, summary ------------------------------------------------------
    def test_accuracy(self) -> float | None:
        ds = self.core.ds
        return self.core.model.accuracy(self.w, ds.X_test, ds.y_test)

    def train_loss(self) -> float:
        ds = self.core.ds
        return self.core.model.loss(self.w, ds.X_train, ds.y_train)

    @property
    def model_sha256(self) -> str:
        return model_sha256(self.w)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step_idx, "w": self.w.clone(), "optimizer": self.optimizer.state_dict(),
                "flag_counts": self.flag_counts.copy(), "active": self.active.copy(), "totals": dict(self.totals),
                "elapsed_s": self.elapsed_s, "scheme": self.scheme.state_dict(), "worker_state": self._workers_state()}

    def _workers_state(self) -> dict[Any, Any] | None:
        """The workers' momentum (worker momentum only: it is part of what a resumed run needs)."""
        if self.spec.worker_momentum == 0:
            return None
        return self.backend.worker_state() if self._started else self._worker_state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_idx = int(state["step"])
        self.w = state["w"].clone()
        self.optimizer.load_state_dict(state["optimizer"])
        self.flag_counts = np.asarray(state["flag_counts"]).copy()
        self.active = np.asarray(state["active"]).copy()
        self.totals = dict(state["totals"])
        self.elapsed_s = float(state["elapsed_s"])
        self.scheme.load_state_dict(state["scheme"])
        self._worker_state = state.get("worker_state")
        if self._started and self._worker_state is not None:
            self.backend.load_worker_state(self._worker_state)
            self._worker_state = None

    def summary(self) -> dict[str, Any]:
        acc = self.test_accuracy()
        tot = self.totals
        return {"steps": self.step_idx, "final_loss": self.train_loss(), "final_test_accuracy": acc,
                "model_sha256": self.model_sha256, "flagged_total": int(tot["flagged"]),
                "flagged_per_worker": self.flag_counts.tolist(), "erasures_total": int(tot["erasures"]),
                "skipped_steps": int(tot["skipped"]), "inexact_steps": int(tot["inexact"]),
                "isolated": np.flatnonzero(~self.active).tolist(),
                "computation_efficiency": tot["useful"] / tot["computed"] if tot["computed"] else None,
                "wall_s": self.elapsed_s, "setting": "master", "scheme": self.scheme.name,
                "backend": self.config.backend,
                "d": self.core.model.d}
