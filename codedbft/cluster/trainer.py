"""What every trust model's trainer shares: lifecycle, the run loop, checkpoints, resume, summary.

Three settings (``RunConfig.setting``, registry :data:`SETTINGS`) train on the same backends, with
the same attacks, datasets, run directory and bit-identity guarantee:

* ``master``: one trusted master and coded workers (:class:`~codedbft.cluster.master.Master`);
* ``decentralized``: no server, nodes of a topology aggregate their neighbours' estimates
  (:class:`~codedbft.decentralized.trainer.DecentralizedTrainer`, the UBAR paper);
* ``byzantine-servers``: replicated parameter servers, some Byzantine
  (:class:`~codedbft.servers.trainer.ByzSGDTrainer`, ByzSGD).

A subclass implements ``__init__`` (everything checkable before any worker starts, raising
ValueError naming the constraint), :meth:`_start_workers`, :meth:`step`, :meth:`state_dict`,
:meth:`load_state_dict`, :meth:`summary` and :attr:`model_sha256`; the base runs it.
"""

from __future__ import annotations

import hashlib
import json
import signal
import threading
from typing import Any

import torch

from codedbft.cluster.config import RunConfig
from codedbft.cluster.rundir import RunDir
from codedbft.registry import Registry

#: trust models by name; each entry is a Trainer subclass built as ``cls(config, backend=, run_dir=)``
SETTINGS: Registry[Any] = Registry("setting", plugins=("codedbft.cluster.master", "codedbft.decentralized.trainer",
                                                       "codedbft.servers.trainer"))


def model_sha256(w: torch.Tensor) -> str:
    """SHA-256 of the parameter tensor's bytes (bit-identity check across backends and resumes)."""
    return hashlib.sha256(w.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


#: RunConfig keys that never change what a run computes (where and how long it runs, what it writes):
#: left out of a checkpoint's configuration fingerprint, so a resume may change them
RESULT_NEUTRAL_KEYS = frozenset({"run_dir", "steps", "backend", "address", "num_cpus", "timeout_s", "max_restarts",
                                 "actors", "tensorboard", "log_every", "eval_every", "checkpoint_every"})


def codedbft_version() -> str:
    """The installed codedbft version (``importlib.metadata``), ``"unknown"`` for an uninstalled checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("codedbft")
    except PackageNotFoundError:
        return "unknown"


def _major_minor(version: str) -> str | None:
    parts = str(version).split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 and parts[0].isdigit() else None


def result_config(config: RunConfig) -> dict[str, Any]:
    """The keys of ``config`` that change results (all but :data:`RESULT_NEUTRAL_KEYS`), JSON-normalised."""
    from codedbft.cluster.rundir import _jsonable

    data = {k: v for k, v in config.to_dict().items() if k not in RESULT_NEUTRAL_KEYS}
    return json.loads(json.dumps(data, sort_keys=True, default=_jsonable))


def config_fingerprint(config: RunConfig) -> str:
    """SHA-256 of :func:`result_config` (canonical JSON): equal for configurations computing the same run."""
    return hashlib.sha256(json.dumps(result_config(config), sort_keys=True).encode()).hexdigest()


def checkpoint_meta(config: RunConfig) -> dict[str, Any]:
    """What every checkpoint records besides the trainer's state (key ``"codedbft"``)."""
    return {"version": codedbft_version(), "config_sha256": config_fingerprint(config), "config": result_config(config)}


def check_compatible(meta: dict[str, Any] | None, config: RunConfig, where: str,
                     overridden: frozenset[str] = frozenset()) -> None:
    """ValueError naming the difference when a checkpoint (its ``meta``) cannot continue ``config``.

    Compatible: the same major.minor codedbft version (0.1.x resumes 0.1.y; either side ``"unknown"``, a
    source checkout, is not checked) and the same value of every key outside :data:`RESULT_NEUTRAL_KEYS`
    (``steps``, the backend, timeouts, the logging cadence may change; the scheme, the attack, the data,
    the model, the optimizer, the seed, ... may not). A checkpoint without ``meta`` (written before
    codedbft recorded it) is not checked."""
    if meta is None:
        return
    mine, theirs = codedbft_version(), str(meta.get("version", "unknown"))
    a, b = _major_minor(theirs), _major_minor(mine)
    if a is not None and b is not None and a != b:
        raise ValueError(f"{where}: checkpoint from codedbft {a} cannot be resumed by {b} "
                         f"(versions {theirs} and {mine}; only the same major.minor version is compatible)")
    if meta.get("config_sha256") == config_fingerprint(config):
        return
    saved, now = meta.get("config") or {}, result_config(config)
    diffs = []
    for key in sorted(set(saved) | set(now)):
        if saved.get(key, "<absent>") != now.get(key, "<absent>"):
            source = "the resume overrides say" if key in overridden else "the run directory says"
            diffs.append(f"{key}={saved.get(key, '<absent>')!r}, {source} {now.get(key, '<absent>')!r}")
    raise ValueError(f"{where}: checkpoint was written for " + "; for ".join(diffs or ["another configuration"])
                     + " (only " + ", ".join(sorted(RESULT_NEUTRAL_KEYS - {"run_dir"})) + " may change on resume)")


class RunInterrupted(KeyboardInterrupt):
    """A second SIGINT/SIGTERM during the clean-up of an interrupted :meth:`Trainer.run`: abort now."""

    def __init__(self, signum: int):
        super().__init__(f"aborted by a second {signal.Signals(signum).name}")
        self.signum = signum


def _in_ray_worker() -> bool:
    """True inside a Ray worker process (a sweep's task): there SIGINT is Ray's ``ray.cancel``, and a
    run that stopped cleanly with a summary would look finished to the sweep."""
    import sys

    ray = sys.modules.get("ray")
    if ray is None:
        return False
    try:
        return bool(ray.is_initialized()) and ray._private.worker.global_worker.mode == ray.WORKER_MODE
    except Exception:
        return False


class _StopOnSignal:
    """While active (main thread only, not in a Ray worker), SIGINT/SIGTERM set :attr:`signum` instead of
    killing the process; a second one raises :class:`RunInterrupted`. The previous handlers are restored
    on exit."""

    SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise RunInterrupted(signum)
        self.signum = signum

    def install(self) -> None:
        """(Re-)install the handlers (again after a start that may have replaced them, e.g. ray.init)."""
        if threading.current_thread() is not threading.main_thread() or _in_ray_worker():
            return
        for s in self.SIGNALS:
            current = signal.getsignal(s)
            if current != self._handle:
                previous = signal.signal(s, self._handle)
                self._previous.setdefault(s, previous)

    def __enter__(self) -> "_StopOnSignal":
        self.install()
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}


def make_trainer(config: RunConfig, backend: Any = None, run_dir: str | None = None, *, model: Any = None,
                 dataset: Any = None, scheme: Any = None) -> "Trainer":
    """The trainer of ``config.setting``; ``model``, ``dataset``, ``scheme``: a user's objects in place of
    the configured names (:mod:`codedbft.training.byo`)."""
    return _build(SETTINGS.get(config.setting), config, backend, run_dir,
                  {"model": model, "dataset": dataset, "scheme": scheme})


def _build(target: Any, config: RunConfig, backend: Any, run_dir: str | None, objects: dict[str, Any]) -> "Trainer":
    """``target(config, backend=, run_dir=, **objects)`` for the objects given; ValueError for an object
    the setting's trainer does not take."""
    import inspect

    given = {k: v for k, v in objects.items() if v is not None}
    if given:
        accepted = inspect.signature(target).parameters
        refused = sorted(k for k in given if k not in accepted)
        if refused:
            raise ValueError(f"setting {config.setting!r} takes no {', '.join(k + '=' for k in refused)} object "
                             f"(give a name or an import path in the configuration)")
    return target(config, backend=backend, run_dir=run_dir, **given)


class Trainer:
    """Base of the settings' trainers (see the module docstring)."""

    config: RunConfig
    backend: Any
    rundir: RunDir | None
    step_idx: int = 0
    _started: bool = False
    _tb_writer: Any = None

    # -- to implement ----------------------------------------------------------------------------
    def _start_workers(self) -> None:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Extra JSON-able facts for config.json (the scheme, the topology, ...)."""
        return {}

    def step(self) -> dict[str, Any]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def summary(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def model_sha256(self) -> str:
        raise NotImplementedError

    def _progress_postfix(self, row: dict[str, Any], acc: Any) -> dict[str, Any]:
        return {"loss": f"{row.get('loss', float('nan')):.4f}", "acc": "-" if acc is None else f"{acc:.3f}"}

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "Trainer":
        if not self._started:
            self._start_workers()
            self._started = True
            if self.rundir is not None and not self.rundir.config_path.exists():
                self.rundir.write_config({**self.config.to_dict(), **self.describe()})
        return self

    def close(self) -> None:
        if self._tb_writer is not None:
            self._tb_writer.close()
            self._tb_writer = None
        if self._started:
            self.backend.close()
            self._started = False

    def __enter__(self) -> "Trainer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- checkpoints and resume -------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        assert self.rundir is not None
        self.rundir.save_checkpoint(self.step_idx, {**self.state_dict(), "codedbft": checkpoint_meta(self.config)})

    @classmethod
    def resume(cls, run_dir: str, backend: Any = None, **overrides: Any) -> "Trainer":
        """A trainer for the run in ``run_dir``, restored from its last checkpoint (or its start).

        ``overrides`` may change runtime-only keys (``steps``, ``backend``, ``address``, ...); metrics
        rows after the checkpoint are dropped, since the resumed run writes them again. Called on
        ``Trainer`` itself, it builds the trainer of the run's setting. A run given Python objects
        (``model=``, ``dataset=``, ``scheme=``: :mod:`codedbft.training.byo`) needs them again here,
        as the same keywords (a string there is a configuration override, as before).

        An unreadable last checkpoint (torn, truncated) is skipped with a warning and the previous one is
        used (:meth:`RunDir.load_checkpoint`). A checkpoint another configuration or another major.minor
        codedbft version wrote raises ValueError naming the difference (:func:`check_compatible`: the
        keys outside :data:`RESULT_NEUTRAL_KEYS` must be equal).
        """
        if isinstance(backend, str):  # the `backend` configuration key (`--resume DIR --backend local`)
            overrides["backend"], backend = backend, None
        objects = {k: overrides.pop(k) for k in ("model", "dataset", "scheme")
                   if k in overrides and not isinstance(overrides[k], str)}
        rd = RunDir(run_dir)
        data = {k: v for k, v in rd.read_config().items() if k in RunConfig.field_names()}
        config = RunConfig.from_dict({**data, **overrides, "run_dir": str(run_dir)})
        target = SETTINGS.get(config.setting) if cls is Trainer else cls
        trainer = _build(target, config, backend, run_dir, objects)
        state = rd.load_checkpoint()
        if state is not None:
            meta = state.pop("codedbft", None)
            where = f"{rd.root}/checkpoints/ckpt-{int(state['step']):08d}.pt"
            check_compatible(meta, trainer.config, where, frozenset(overrides))
            trainer.load_state_dict(state)
        rd.truncate_metrics(trainer.step_idx)
        return trainer

    # -- the run loop -----------------------------------------------------------------------------
    def _log(self, row: dict[str, Any]) -> None:
        """Run directory: the metrics row (on its schedule) and the checkpoint every k steps."""
        if self.rundir is not None and "loss" in row:
            self.rundir.append_metrics([row])
            if self.config.tensorboard:
                self._tensorboard(row)
        if self.rundir is not None and self.step_idx % self.config.checkpoint_every == 0:
            self.save_checkpoint()
        self.last_row = row

    def _tensorboard(self, row: dict[str, Any]) -> None:
        """The row's numbers as scalars in ``run_dir/tensorboard/`` (``--tensorboard``); a resumed run
        purges the events from its first step on, since it writes them again."""
        if self._tb_writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb_writer = SummaryWriter(log_dir=str(self.rundir.root / "tensorboard"),
                                            purge_step=row["step"] if row["step"] > 0 else None)
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self._tb_writer.add_scalar(key, value, global_step=row["step"])

    def run(self, steps: int | None = None, progress: bool = False) -> dict[str, Any]:
        """Train until ``steps`` (default ``config.steps``) steps are done; returns the summary.

        With a run directory, writes metrics, checkpoints, ``summary.json`` and the plots.

        Called from the main thread (not in a Ray worker: a sweep's task), SIGINT and SIGTERM stop the
        run cleanly: the step under way is finished, then a checkpoint, the plots and ``summary.json``
        are written as at the end, the summary marked ``"interrupted": true`` with ``"signal"``
        (``"SIGINT"``/``"SIGTERM"``), and returned (``codedbft train`` exits 128 + the signal number; ``--resume`` continues it). A second
        signal during that clean-up raises :class:`RunInterrupted` (a ``KeyboardInterrupt``) at once.
        The previous signal handlers are restored when ``run`` returns; the caller's ``close()`` shuts
        the backend (and an embedded Ray) down.
        """
        steps = self.config.steps if steps is None else steps
        with _StopOnSignal() as stop:
            self.start()
            stop.install()  # again: starting the backend (ray.init) may have installed its own handlers
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=steps, initial=self.step_idx, desc=f"{self.config.setting}/{self.config.backend}",
                           dynamic_ncols=True)
            acc = None
            try:
                while self.step_idx < steps and stop.signum is None:
                    row = self.step()
                    if bar is not None:
                        acc = row.get("test_accuracy", acc)
                        bar.set_postfix(**self._progress_postfix(row, acc), refresh=False)
                        bar.update(1)
            finally:
                if bar is not None:
                    bar.close()
            summary = self.summary()
            if stop.signum is not None:
                summary.update(interrupted=True, signal=signal.Signals(stop.signum).name)
            if self.rundir is not None:
                if self.step_idx % self.config.checkpoint_every:
                    self.save_checkpoint()
                self.rundir.write_summary(summary)
                self.rundir.plot()
            if self._tb_writer is not None:
                self._tb_writer.flush()
        return summary
