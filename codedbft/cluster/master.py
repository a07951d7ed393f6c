"""The master: one training step = broadcast, compute, collect, validate, decode, aggregate, step.

::

    master = Master(RunConfig(backend="local", steps=50), run_dir="runs/x")
    summary = master.run()            # or: with Master(cfg) as m: m.step() ...
    summary["model_sha256"]

Per step (``Master.step``):

1. the Byzantine set of the step comes from the placement (``placement.byzantine_ids(step)``);
2. the model is broadcast once (``ray.put`` once per step, never once per worker);
3. the scheme's protocol yields orders; the backend runs each one (Byzantine workers forge inside the
   worker); the master validates every reply (shape, dtype, finiteness: a bad one becomes an erasure
   and its sender is flagged, never an exception) and assembles them in the fixed worker order;
4. the scheme decodes (and aggregates), giving the MEAN partition gradient; a non-finite result is
   not applied (``skipped``);
5. the optimizer steps; a metrics row is logged; every ``checkpoint_every`` steps a checkpoint.

Everything random is a function of ``(seed, step)`` (batches, placements, attacks), so the same seed
gives the same model bit for bit on both backends, and a resumed run reaches the same final model.
Isolation (``isolate_after``): a worker flagged that many times is no longer asked; its rows are
erasures, which a code corrects at half the cost of an error.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np
import torch

from codedbft._arrays import nonfinite_rows
from codedbft.cluster.backend import Adversary, Collected
from codedbft.cluster.config import RunConfig
from codedbft.cluster.rundir import RunDir
from codedbft.cluster.worker import WorkerCore, WorkerSpec
from codedbft.schemes import Order, Replies, Scheme, SchemeResult, build_scheme


def model_sha256(w: torch.Tensor) -> str:
    """SHA-256 of the parameter vector's bytes (bit-identity check across backends and resumes)."""
    return hashlib.sha256(w.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def make_backend(config: RunConfig) -> Any:
    if config.backend == "local":
        from codedbft.cluster.local import LocalBackend

        return LocalBackend(dedup=config.dedup)
    from codedbft.cluster.ray_backend import RayBackend

    return RayBackend(address=config.address, num_cpus=config.num_cpus, max_restarts=config.max_restarts)


def _placement(config: RunConfig, scheme: Scheme) -> Any:
    from codedbft.attacks import placement_by_name

    if config.placement == "fixed":
        if config.placement_ids is None:
            raise ValueError("placement 'fixed' needs placement_ids (--placement-ids)")
        return placement_by_name("fixed", n=scheme.n, ids=config.placement_ids, b=config.byzantine)
    if config.placement == "worst":
        if scheme.code is None:  # no assignment: every set of b workers is as bad as any other
            return placement_by_name("fixed", n=scheme.n, ids=range(config.byzantine), b=config.byzantine)
        return placement_by_name("worst", code=scheme.code, b=config.byzantine)
    return placement_by_name("random", n=scheme.n, b=config.byzantine, seed=config.seed, redraw=config.redraw)


class Master:
    """Runs training for a :class:`RunConfig` on a backend (see the module docstring).

    Everything that can be checked without workers (scheme, code constraints, attack and placement
    names, dataset and model, batch geometry) is checked in the constructor, before any Ray start;
    a bad configuration raises ValueError naming the constraint.
    """

    #: scheme diagnostics copied into the metrics rows when present (RRR: checked, isolated)
    SCHEME_KEYS = ("checked", "isolated_by_scheme", "undecided")

    def __init__(self, config: RunConfig, backend: Any = None, run_dir: str | None = None):
        from codedbft.training import make_optimizer

        self.config = config
        self.scheme: Scheme = build_scheme(config.scheme_config())
        k = self.scheme.k
        if config.batch_size < k:
            raise ValueError(f"batch_size >= k required (k={k} partitions of batch_size // k samples), got {config.batch_size}")
        self.spec = WorkerSpec(dataset=config.dataset, model=config.model, k=k, b=config.batch_size // k,
                               seed=config.seed, dataset_params=dict(config.dataset_params),
                               model_params=dict(config.model_params), threads=config.threads)
        self.core = WorkerCore(self.spec)  # the master's own copy: evaluation and logged loss
        if k * self.spec.b > self.core.ds.num_train:
            raise ValueError(f"batch_size={config.batch_size} exceeds the {self.core.ds.num_train} training samples of {config.dataset}")
        self.scheme.bind(self.core.ds, self.core.model, self.spec)  # data-encoding schemes encode here
        self.attack = None
        if config.attacked:
            from codedbft.attacks import by_name

            self.attack = by_name(config.attack, **config.attack_kwargs)
        self.placement = _placement(config, self.scheme) if config.byzantine > 0 else None
        self.w = self.core.model.init_params()
        self.optimizer = make_optimizer(config.optimizer, config.lr, momentum=config.momentum,
                                        weight_decay=config.weight_decay)
        self.backend = backend if backend is not None else make_backend(config)
        self.rundir = RunDir(run_dir or config.run_dir) if (run_dir or config.run_dir) else None
        n = self.scheme.n
        self.step_idx = 0
        self.flag_counts = np.zeros(n, dtype=np.int64)
        self.active = np.ones(n, dtype=bool)
        self.totals = {"flagged": 0, "erasures": 0, "computed": 0, "useful": 0, "skipped": 0, "inexact": 0}
        self.elapsed_s = 0.0
        self.last_row: dict[str, Any] = {}
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "Master":
        if not self._started:
            self.backend.start(self.scheme, self.spec, self.core.ds)
            self._started = True
            if self.rundir is not None and not self.rundir.config_path.exists():
                self.rundir.write_config({**self.config.to_dict(), "scheme_info": self.scheme.describe()})
        return self

    def close(self) -> None:
        if self._started:
            self.backend.close()
            self._started = False

    def __enter__(self) -> "Master":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

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

    def _layout(self, order: Order, dtype: torch.dtype) -> tuple[tuple[int, ...], torch.dtype]:
        if order.op is not None and order.shape is not None:
            return tuple(order.shape), dtype
        p = len(next(iter(order.tasks.values()))) if order.tasks else 1
        return self.scheme.message_shape(self.core.model.d, p, order.stacked), dtype

    def step(self) -> dict[str, Any]:
        """Run one training step; returns (and logs) its metrics row."""
        self.start()
        cfg, t = self.config, self.step_idx
        t0 = time.perf_counter()
        byz = tuple(self.placement.byzantine_ids(t)) if self.placement is not None else ()
        adversary = (Adversary(self.attack, cfg.seed, self.scheme.n, self.scheme.assignment)
                     if self.attack is not None else None)
        handle = self.backend.broadcast(self.w)
        t_bc = time.perf_counter()
        dtype = self.scheme.message_dtype(self.w.dtype)
        timings: dict[str, float] = {"broadcast_ms": (t_bc - t0) * 1e3}
        gen = self.scheme.protocol(t, self.active.copy())
        order = next(gen)
        erasures = int((~self.active).sum())  # workers isolated by the master: erasures by decision
        rounds = 0
        while True:
            got = self.backend.execute(order, handle, t, byz, adversary, cfg.timeout_s, self._layout(order, dtype))
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
                result: SchemeResult = stop.value
                break
        t_dec = time.perf_counter()
        grad = result.gradient.to(self.w.dtype)
        skipped = not bool(torch.isfinite(grad).all())
        if not skipped:
            self.w = self.optimizer.step(self.w, grad)
        t_end = time.perf_counter()
        timings["optimizer_ms"] = (t_end - t_dec) * 1e3
        timings["decode_ms"] = float(result.info.get("decode_ms", 0.0))
        timings["aggregate_ms"] = float(result.info.get("aggregate_ms", 0.0))
        timings["step_ms"] = (t_end - t0) * 1e3
        self.elapsed_s += t_end - t0

        flagged = list(result.flagged)
        self.flag_counts[flagged] += 1
        if cfg.isolate_after is not None and self.scheme.supports_isolation:
            self.active &= self.flag_counts < cfg.isolate_after
        self.totals["flagged"] += len(flagged)
        self.totals["erasures"] += erasures
        self.totals["computed"] += result.computed
        self.totals["useful"] += result.useful
        self.totals["skipped"] += int(skipped)
        self.totals["inexact"] += int(not result.exact)
        self.step_idx = t + 1

        row: dict[str, Any] = {"step": t, "flagged": flagged, "erasures": erasures, "exact": bool(result.exact),
                               "skipped": skipped, "byzantine": list(byz), "rounds": rounds,
                               "isolated": np.flatnonzero(~self.active).tolist(),
                               "flagged_cumulative": int(self.totals["flagged"]),
                               "efficiency": result.useful / result.computed if result.computed else None,
                               **{k: round(v, 3) for k, v in timings.items()},
                               **{k: result.info[k] for k in self.SCHEME_KEYS if k in result.info}}
        if t % cfg.log_every == 0 or self.step_idx == cfg.steps:
            idx = self.core.batch_indices(t).reshape(-1)
            row["loss"] = self.core.model.loss(self.w, self.core.ds.X_train[idx], self.core.ds.y_train[idx])
            if self.step_idx % cfg.eval_every == 0 or self.step_idx == cfg.steps:
                row["test_accuracy"] = self.test_accuracy()
            if self.rundir is not None:
                self.rundir.append_metrics([row])
        if self.rundir is not None and self.step_idx % cfg.checkpoint_every == 0:
            self.save_checkpoint()
        self.last_row = row
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
                "elapsed_s": self.elapsed_s, "scheme": self.scheme.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_idx = int(state["step"])
        self.w = state["w"].clone()
        self.optimizer.load_state_dict(state["optimizer"])
        self.flag_counts = np.asarray(state["flag_counts"]).copy()
        self.active = np.asarray(state["active"]).copy()
        self.totals = dict(state["totals"])
        self.elapsed_s = float(state["elapsed_s"])
        self.scheme.load_state_dict(state["scheme"])

    def save_checkpoint(self) -> None:
        assert self.rundir is not None
        self.rundir.save_checkpoint(self.step_idx, self.state_dict())

    @classmethod
    def resume(cls, run_dir: str, backend: Any = None, **overrides: Any) -> "Master":
        """A master for the run in ``run_dir``, restored from its last checkpoint (or its start).

        ``overrides`` may change runtime-only keys (``steps``, ``backend``, ``address``, ...); metrics
        rows after the checkpoint are dropped, since the resumed run writes them again.
        """
        rd = RunDir(run_dir)
        data = {k: v for k, v in rd.read_config().items() if k != "scheme_info"}
        config = RunConfig.from_dict({**data, **overrides, "run_dir": str(run_dir)})
        master = cls(config, backend=backend, run_dir=run_dir)
        state = rd.load_checkpoint()
        if state is not None:
            master.load_state_dict(state)
        rd.truncate_metrics(master.step_idx)
        return master

    def summary(self) -> dict[str, Any]:
        acc = self.test_accuracy()
        tot = self.totals
        return {"steps": self.step_idx, "final_loss": self.train_loss(), "final_test_accuracy": acc,
                "model_sha256": self.model_sha256, "flagged_total": int(tot["flagged"]),
                "flagged_per_worker": self.flag_counts.tolist(), "erasures_total": int(tot["erasures"]),
                "skipped_steps": int(tot["skipped"]), "inexact_steps": int(tot["inexact"]),
                "isolated": np.flatnonzero(~self.active).tolist(),
                "computation_efficiency": tot["useful"] / tot["computed"] if tot["computed"] else None,
                "wall_s": self.elapsed_s, "scheme": self.scheme.name, "backend": self.config.backend,
                "d": self.core.model.d}

    def run(self, steps: int | None = None, progress: bool = False) -> dict[str, Any]:
        """Train until ``steps`` (default ``config.steps``) steps are done; returns the summary.

        With a run directory, writes metrics, checkpoints, ``summary.json`` and the plots.
        """
        steps = self.config.steps if steps is None else steps
        self.start()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=steps, initial=self.step_idx, desc=f"{self.scheme.name}/{self.config.backend}",
                       dynamic_ncols=True)
        acc = None
        try:
            while self.step_idx < steps:
                row = self.step()
                if bar is not None:
                    acc = row.get("test_accuracy", acc)
                    bar.set_postfix(loss=f"{row.get('loss', float('nan')):.4f}",
                                    acc="-" if acc is None else f"{acc:.3f}",
                                    flagged=self.totals["flagged"], refresh=False)
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        summary = self.summary()
        if self.rundir is not None:
            if self.step_idx % self.config.checkpoint_every:
                self.save_checkpoint()
            self.rundir.write_summary(summary)
            self.rundir.plot()
        return summary
