"""Running a grid: every (cell, seed) one Ray task, results in OUT, resumable.

::

    from codedbft.sweep import Grid, run_sweep
    rows = run_sweep(Grid.from_file("codedbft/grids/smoke.yaml"), "runs/sweep/smoke")

1. :func:`plan_sweep` (no Ray): refuses an OUT that holds a different grid (ValueError naming the
   differing keys), builds every run's RunConfig and validates each cell by building its trainer
   (errors: ``invalid`` rows), and reads each run directory's state: ``done`` (``summary.json`` and
   the same configuration: skipped), ``resume`` (a checkpoint, no summary: continued with
   :meth:`Trainer.resume`), ``fresh`` (nothing, only config.json, or a different configuration:
   started again from an empty directory).
2. :func:`execute` writes ``grid.yaml`` and ``sweep.json``, then (only when something is left to
   run) starts the embedded local Ray instance (``init_ray(None)``) or joins ``address``, and runs at
   most ``max_parallel`` tasks at a time (default: the cluster's CPUs / ``resources.num_cpus``), each
   ``ray.remote(num_cpus=resources.num_cpus)`` running its run on the ``local`` backend and writing
   its run directory ``OUT/runs/<cell_id>/seed=<s>`` (OUT must be on a filesystem every node sees).
   A run that raises is a ``failed`` row (the traceback's last line; the whole traceback in the run
   directory's ``error.txt``); the sweep goes on. Then results.csv (results.parquet with pyarrow),
   summary.csv, tuned.csv (grids with tuned axes) and, when :mod:`codedbft.sweep.plots` is there,
   its plots.

Everything random in a run is a function of its seed, so a resumed sweep reaches the same models
(``model_sha256``) as an uninterrupted one. Costs (2-core development machine): planning ~5 s on a
fresh process (imports, first dataset load) + ~10 ms per cell; embedded ``ray.init`` ~5 s; each task
process pays ~10 s once (torch, matplotlib, the dataset), then the smoke grid's 20-step logreg runs
take ~0.5 s each, plots of its run directory included.
"""

from __future__ import annotations

import json
import shutil
import sys
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from codedbft.sweep import results as R
from codedbft.sweep.grid import Cell, Grid, error_text

RUNS = "runs"


def run_dir_of(out: Path, cell: str, seed: int) -> Path:
    """``OUT/runs/<cell_id>/seed=<s>``."""
    return Path(out) / RUNS / cell / f"seed={seed}"


def _jsonable(config: dict[str, Any]) -> dict[str, Any]:
    from codedbft.cluster.rundir import _jsonable as conv

    return json.loads(json.dumps(config, sort_keys=True, default=conv))


def _same_config(run_dir: Path, expected: dict[str, Any]) -> bool:
    """config.json holds ``expected`` (RunConfig keys only; ``run_dir`` ignored)."""
    from codedbft.cluster.config import RunConfig

    try:
        data = json.loads((run_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    keys = RunConfig.field_names() - {"run_dir"}
    have = _jsonable({k: data.get(k) for k in keys})
    want = _jsonable({k: expected.get(k) for k in keys})
    return have == want


def _interrupted(run_dir: Path) -> bool:
    """summary.json written by a run that a signal stopped (``"interrupted": true``): not finished."""
    try:
        return bool(json.loads((run_dir / "summary.json").read_text()).get("interrupted"))
    except (OSError, json.JSONDecodeError, AttributeError):
        return True  # unreadable: do the run (again) rather than trust it


def run_state(run_dir: Path, expected: dict[str, Any]) -> str:
    """``done``, ``resume`` or ``fresh`` (see the module docstring)."""
    if not (run_dir / "config.json").exists() or not _same_config(run_dir, expected):
        return "fresh"
    if (run_dir / "summary.json").exists() and not _interrupted(run_dir):
        return "done"
    ckpts = run_dir / "checkpoints"
    return "resume" if ckpts.is_dir() and any(ckpts.glob("ckpt-*.pt")) else "fresh"


@dataclass
class PlannedRun:
    """One (cell, seed) of the plan."""

    cell: Cell
    seed: int
    run_dir: Path
    config: dict[str, Any] | None  # None: invalid
    error: str | None
    state: str  # done | resume | fresh | invalid


@dataclass
class SweepPlan:
    """What :func:`execute` will do (built by :func:`plan_sweep`, no Ray)."""

    grid: Grid
    out: Path
    runs: list[PlannedRun] = field(default_factory=list)
    #: filled by :func:`execute`: summary.csv's and tuned.csv's rows
    summary: list[dict[str, Any]] = field(default_factory=list)
    tuned: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        c: dict[str, int] = {}
        for r in self.runs:
            c[r.state] = c.get(r.state, 0) + 1
        return c

    def describe(self) -> str:
        """The dry-run table: cell, seed, what a run would do (or the invalid cell's error)."""
        rows = [{"cell": r.cell.id, "seed": str(r.seed), "state": r.state, "error": (r.error or "")[:100]}
                for r in self.runs]
        counts = ", ".join(f"{n} {s}" for s, n in self.counts().items())
        return (R.table(rows, ["cell", "seed", "state", "error"]) +
                f"\n{len(self.grid.cell_objects())} cells x {len(self.grid.seeds)} seeds = {len(self.runs)} runs: {counts}")


def load_out_grid(out: Path) -> Grid:
    """The grid a sweep directory holds (``OUT/grid.yaml``, its name from ``sweep.json``)."""
    path = Path(out) / "grid.yaml"
    if not path.exists():
        raise ValueError(f"{out} holds no sweep (no grid.yaml): nothing to resume")
    grid = Grid.from_file(path)
    meta = Path(out) / "sweep.json"
    if meta.exists():
        try:
            grid.name = json.loads(meta.read_text()).get("name") or grid.name
        except json.JSONDecodeError:
            pass
    return grid


def plan_sweep(grid: Grid | str | Path, out: str | Path, resume: bool = False) -> SweepPlan:
    """Check and plan a sweep without starting Ray (see the module docstring).

    ``resume=True`` requires OUT to hold a sweep already. ValueError for an OUT holding a different
    grid (whatever ``resume``: runs of two grids never share a directory).
    """
    if not isinstance(grid, Grid):
        from codedbft.sweep.grid import resolve

        grid = Grid.from_file(resolve(grid))
    out = Path(out).resolve()
    if (out / "grid.yaml").exists():
        old = load_out_grid(out)
        diff = old.differences(grid)
        if diff:
            raise ValueError(f"{out} holds a different grid ({'; '.join(diff)}): give another --out, "
                             "or remove that directory to start over")
    elif resume:
        raise ValueError(f"--resume: {out} holds no sweep (no grid.yaml)")
    errors = grid.validate()
    plan = SweepPlan(grid, out)
    for cell, seed in grid.runs():
        rd = run_dir_of(out, cell.id, seed)
        err = errors[cell.id]
        config = None
        if err is None:
            try:
                config = grid.config(cell.overrides, seed).to_dict()
            except Exception as e:  # a seed-dependent error (none known): the run is invalid
                err = error_text(e)
        state = "invalid" if config is None else run_state(rd, config)
        plan.runs.append(PlannedRun(cell, seed, rd, config, err, state))
    return plan


# -- inside a task ------------------------------------------------------------------------------
#: run kinds this process has already warmed up (see :func:`_warm_up`)
_WARM: set[tuple[Any, ...]] = set()


def _warm_up(config: Any) -> None:
    """One throwaway step of the same kind of run (no run directory), the first time this process
    meets that kind: the first step of a fresh process pays torch's and the rule's first-call costs
    (measured: a 20-step run's mean step time 380 ms instead of 6 ms), which would otherwise land in
    whichever cell a process runs first. The trainer is discarded; every random draw of the real run
    is a function of its own seed, so its model is unchanged (tests/test_sweep.py checks)."""
    key = (config.setting, config.scheme, config.aggregator, tuple(config.pre), config.dataset, config.model,
           config.workers, config.attack)
    if key in _WARM:
        return
    _WARM.add(key)
    from codedbft.cluster.trainer import make_trainer

    try:
        trainer = make_trainer(config.replace(steps=1, run_dir=None))
        try:
            trainer.step()
        finally:
            trainer.close()
    except Exception:  # the real run reports its own error
        pass


def execute_run(config: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """Run one (cell, seed) in this process (what each Ray task calls): resume from the latest
    checkpoint when there is one with the same configuration, else start in an emptied directory.

    Returns ``{"status": "done"}`` or ``{"status": "failed", "error": <traceback's last line>}``;
    a failure's traceback is also written to ``<run_dir>/error.txt``.
    """
    rd = Path(run_dir)
    try:
        from codedbft.cluster.config import RunConfig
        from codedbft.cluster.trainer import Trainer, make_trainer

        state = run_state(rd, config)
        if state == "done":
            return {"status": "done"}
        _warm_up(RunConfig.from_dict(config))
        if state == "resume":
            trainer = Trainer.resume(str(rd))
        else:
            if rd.exists():
                shutil.rmtree(rd)  # a partial fresh start (or a retried task): no stale metrics rows
            trainer = make_trainer(RunConfig.from_dict(config), run_dir=str(rd))
        try:
            trainer.run()
        finally:
            trainer.close()
        (rd / "error.txt").unlink(missing_ok=True)
        return {"status": "done"}
    except Exception:
        tb = traceback.format_exc()
        try:
            rd.mkdir(parents=True, exist_ok=True)
            (rd / "error.txt").write_text(tb)
        except OSError:
            pass
        return {"status": "failed", "error": _last_line(tb)}


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown error"


# -- the driver ---------------------------------------------------------------------------------
def _row(plan: SweepPlan, run: PlannedRun, status: str, error: str | None) -> dict[str, Any]:
    """The results.csv row of one run (metrics read from its directory when done)."""
    grid = plan.grid
    eff = grid.effective(run.cell.overrides)
    row: dict[str, Any] = dict.fromkeys(R.result_columns(grid.axis_names))
    row.update(cell=run.cell.id, seed=run.seed, status=status, error=error)
    for key in [*grid.axis_names, *R.FIXED]:
        row[key] = eff.get(key)
    if run.config is not None:  # what the run was built with (RunConfig may normalise values)
        for key in R.FIXED:
            row[key] = run.config.get(key, row[key])
    if status == "done":
        try:
            row.update(R.run_metrics(run.run_dir))
        except (OSError, ValueError, KeyError) as err:
            row.update(status="failed", error=f"unreadable run directory: {error_text(err)}")
    row["run_dir"] = str(run.run_dir.relative_to(plan.out))
    return row


def write_outputs(plan: SweepPlan, rows: Sequence[dict[str, Any]], plot: bool = True) -> dict[str, Any]:
    """results.csv (+ .parquet), summary.csv, tuned.csv; returns ``{"summary": ..., "tuned": ...}``."""
    from codedbft.sweep import tune

    grid, out = plan.grid, plan.out
    axes = grid.axis_names
    R.write_csv(out / "results.csv", rows, R.result_columns(axes))
    R.write_parquet(out / "results.parquet", rows, R.result_columns(axes))
    summary = R.summarize(rows, axes)
    tuned: list[dict[str, Any]] = []
    if grid.tune_axes:
        tuned = tune.worst_case(summary, axes, grid.tune_axes)
        tune.mark_best(summary, tuned, axes, grid.tune_axes)
        attacks = tune.attack_values(summary, axes)
        R.write_csv(out / "tuned.csv", tuned, tune.tuned_columns(axes, grid.tune_axes, attacks))
    R.write_csv(out / "summary.csv", summary, R.summary_columns(axes, bool(grid.tune_axes)))
    plots: list[Path] = []
    if plot:
        plots = _plots(out)
    return {"summary": summary, "tuned": tuned, "plots": plots}


def _plots(out: Path) -> list[Path]:
    """The plots module's figures; a missing module or a failing plot never fails a sweep."""
    try:
        from codedbft.sweep.plots import plot_sweep
    except ImportError:
        return []
    try:
        return list(plot_sweep(out) or [])
    except Exception as err:
        print(f"sweep plots skipped: {error_text(err)}", file=sys.stderr)
        return []


def _write_meta(plan: SweepPlan) -> None:
    from codedbft.cluster.rundir import atomic_write_bytes, atomic_write_json

    grid, out = plan.grid, plan.out
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "grid.yaml").exists():
        atomic_write_bytes(out / "grid.yaml", grid.to_yaml().encode())
    atomic_write_json(out / "sweep.json", {"name": grid.name, "axes": grid.axis_names, "tune": grid.tune_axes,
                                           "seeds": list(grid.seeds), "cells": len(grid.cell_objects()),
                                           "runs": len(plan.runs), "resources": {"num_cpus": grid.num_cpus}})


class _Progress:
    """tqdm over the runs (a printed counter without tqdm; nothing when off)."""

    def __init__(self, total: int, initial: int, enabled: bool, name: str):
        self.bar = None
        self.enabled, self.n, self.total = enabled, initial, total
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, initial=initial, desc=f"sweep {name}", unit="run", dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, failed: int) -> None:
        self.n += 1
        if self.bar is not None:
            self.bar.set_postfix(failed=failed, refresh=False)
            self.bar.update(1)
        elif self.enabled:
            print(f"sweep: {self.n}/{self.total} runs ({failed} failed)", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def execute(plan: SweepPlan, address: str | None = None, max_parallel: int | None = None,
            progress: bool = True, plot: bool = True,
            on_result: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run a plan (see the module docstring); returns the results rows in plan order.

    Ray starts only when some run is left; an embedded instance started here is shut down at the
    end, an initialised one (a test session's) or a joined cluster is left running. Ctrl-C cancels
    the tasks in flight and still writes the tables (unfinished runs ``pending``).
    """
    if max_parallel is not None and max_parallel < 1:
        raise ValueError(f"max_parallel must be >= 1, got {max_parallel}")
    _write_meta(plan)
    rows: dict[int, dict[str, Any]] = {}
    todo: deque[int] = deque()
    for i, run in enumerate(plan.runs):
        if run.state == "invalid":
            rows[i] = _row(plan, run, "invalid", run.error)
        elif run.state == "done":
            rows[i] = _row(plan, run, "done", None)
        else:
            rows[i] = _row(plan, run, "pending", None)
            todo.append(i)
    failed = sum(r["status"] == "failed" for r in rows.values())
    bar = _Progress(len(plan.runs), len(plan.runs) - len(todo), progress and bool(todo), plan.grid.name)
    started = False
    inflight: dict[Any, int] = {}
    ray = None
    try:
        if todo:
            import ray as ray_mod

            from codedbft.cluster.ray_backend import init_ray

            ray = ray_mod
            started = init_ray(address)
            cpus = float(ray.cluster_resources().get("CPU", 1.0))
            limit = max_parallel or max(1, int(cpus // plan.grid.num_cpus))
            task = ray.remote(num_cpus=plan.grid.num_cpus, max_retries=1)(execute_run)
            while todo or inflight:
                while todo and len(inflight) < limit:
                    i = todo.popleft()
                    run = plan.runs[i]
                    inflight[task.remote(run.config, str(run.run_dir))] = i
                ready, _ = ray.wait(list(inflight), num_returns=1)
                for ref in ready:
                    i = inflight.pop(ref)
                    try:
                        res = ray.get(ref)
                    except ray.exceptions.RayError as err:  # the task's process or node died
                        res = {"status": "failed", "error": _last_line(str(err))}
                    rows[i] = _row(plan, plan.runs[i], res["status"], res.get("error"))
                    failed += rows[i]["status"] == "failed"
                    bar.update(failed)
                    if on_result is not None:
                        on_result(rows[i])
    finally:
        bar.close()
        if inflight and ray is not None and not started:
            for ref in inflight:  # a joined cluster keeps running: stop this sweep's tasks there
                try:
                    ray.cancel(ref, force=True)
                except Exception:
                    pass
        if started and ray is not None:
            ray.shutdown()
        ordered = [rows[i] for i in range(len(plan.runs))]
        written = write_outputs(plan, ordered, plot=plot and not inflight)
        plan.summary, plan.tuned = written["summary"], written["tuned"]
    return ordered


def run_sweep(grid: Grid | str | Path, out: str | Path, address: str | None = None, max_parallel: int | None = None,
              progress: bool = True, resume: bool = False, plot: bool = True) -> list[dict[str, Any]]:
    """Plan and run a sweep; returns one dict per (cell, seed) with results.csv's columns.

    Args:
        grid: a :class:`Grid`, a grid file, or a shipped grid's name.
        out: the sweep directory (rerunning with the same one resumes).
        address: an existing Ray cluster (default: an embedded local instance).
        max_parallel: most tasks in flight (default: the cluster's CPUs / ``resources.num_cpus``).
        progress: a tqdm bar over the runs.
        resume: require OUT to hold this sweep already.
        plot: call :func:`codedbft.sweep.plots.plot_sweep` at the end when it exists.
    """
    plan = plan_sweep(grid, out, resume=resume)
    return execute(plan, address=address, max_parallel=max_parallel, progress=progress, plot=plot)
