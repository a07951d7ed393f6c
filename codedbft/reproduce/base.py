"""What a reproducible claim is, and the helpers every claim runs through.

A :class:`Claim` is one headline statement of a source paper, with where the paper states it and
the paper's own figure, plus a ``run(ctx) -> Outcome`` that runs the smallest experiment testing it
here. Claims only call what users call: training runs (:func:`train`, through the sweep's
``execute_run``, so a rerun into the same ``--out`` reuses finished runs and resumes interrupted
ones), sweeps (:func:`sweep`) and the functions of the scripts in ``benchmarks/``
(:func:`benchmark`): never a second implementation.

Verdicts: ``holds``, ``partially`` (some of the statement holds here, the table says which) and
``does not hold``; ``prerequisite missing`` when the claim cannot run (the reason names it), and
``error`` when its experiment raised (the traceback's last line; the rest of the claims still run).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping

from codedbft.registry import Registry

HOLDS, PARTIAL, FAILS = "holds", "partially", "does not hold"
MISSING, ERROR = "prerequisite missing", "error"
VERDICTS = (HOLDS, PARTIAL, FAILS, MISSING, ERROR)

#: the repository's benchmark scripts (a source checkout; an installed wheel has none)
BENCHMARKS_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


@dataclass(frozen=True)
class Outcome:
    """What a claim's experiment found: ``ours`` in words with the numbers, the verdict, the numbers."""

    ours: str
    verdict: str
    numbers: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in (HOLDS, PARTIAL, FAILS):
            raise ValueError(f"an outcome's verdict is one of {HOLDS!r}, {PARTIAL!r}, {FAILS!r}; got {self.verdict!r}")


@dataclass
class Context:
    """Where a claim writes (``out``, its own directory) and how big its experiment is (``quick``)."""

    out: Path
    quick: bool
    progress: bool = True

    def path(self, *parts: str) -> Path:
        p = self.out.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_json(self, name: str, obj: Any) -> None:
        """A claim's own measurements as ``out/name`` (atomically, like every run file)."""
        from codedbft.cluster.rundir import atomic_write_json

        atomic_write_json(self.path(name), obj)


@dataclass(frozen=True)
class Claim:
    """One paper's headline claim and the experiment that tests it here.

    Args:
        name: the claim's id on the command line (``codedbft reproduce NAME``).
        paper: the paper, e.g. ``"DRACO (Chen et al., ICML 2018)"``.
        where: where it is stated (abstract, section, table or figure).
        statement: the claim in one sentence.
        paper_value: the paper's own figure, as the paper gives it.
        run: the experiment: ``run(ctx) -> Outcome``.
        requires: ``requires() -> None`` or the missing prerequisite, in words.
        quick_s: about how long ``--quick`` takes here (2 cores), for the listing.
    """

    name: str
    paper: str
    where: str
    statement: str
    paper_value: str
    run: Callable[[Context], Outcome]
    requires: Callable[[], str | None] = lambda: None
    quick_s: float = 30.0


CLAIMS: Registry[Claim] = Registry("claim", package="codedbft.reproduce")


def claim(name: str, *, paper: str, where: str, statement: str, paper_value: str,
          requires: Callable[[], str | None] | None = None, quick_s: float = 30.0) -> Callable[..., Any]:
    """Decorator: register ``run(ctx) -> Outcome`` as the claim ``name``."""

    def add(run: Callable[[Context], Outcome]) -> Callable[[Context], Outcome]:
        CLAIMS.register(name, Claim(name, paper, where, statement, paper_value, run,
                                    requires or (lambda: None), quick_s), params=(), help=statement)
        return run

    return add


# -- the helpers claims run through ---------------------------------------------------------------


def train(ctx: Context, name: str, **config: Any) -> dict[str, Any]:
    """One training run into ``ctx.out/runs/name`` (reused when finished with the same config).

    Returns the run's ``summary.json`` plus ``"rows"`` (its metrics rows) and ``"run_dir"``.
    Raises RuntimeError with the run's error when it failed.
    """
    from codedbft.cluster.config import RunConfig
    from codedbft.sweep.runner import execute_run

    cfg = RunConfig(**config).to_dict()
    run_dir = ctx.out / "runs" / name  # execute_run creates it (and empties a stale one)
    status = execute_run(cfg, str(run_dir))
    if status["status"] != "done":
        raise RuntimeError(f"run {name} failed: {status.get('error')}")
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {**summary, "rows": rows, "run_dir": str(run_dir)}


def final_params(run: Mapping[str, Any]) -> Any:
    """The final model of a finished run (its last checkpoint's parameters)."""
    from codedbft.cluster.rundir import RunDir

    state = RunDir(run["run_dir"]).load_checkpoint()
    if state is None:
        raise RuntimeError(f"{run['run_dir']} holds no checkpoint")
    return state["w"]


def sweep(ctx: Context, grid: Mapping[str, Any], name: str = "sweep") -> list[dict[str, Any]]:
    """Run a grid (a mapping in the grid-file format) into ``ctx.out/name``; one row per run."""
    from codedbft.sweep.grid import Grid
    from codedbft.sweep.runner import run_sweep

    rows = run_sweep(Grid.from_dict(dict(grid), default_name=name), ctx.out / name, progress=ctx.progress, plot=False)
    failed = [r for r in rows if r.get("status") not in ("done",)]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(rows)} runs of {name} did not finish: {failed[0].get('error')}")
    return rows


def shipped_grid(name: str) -> dict[str, Any]:
    """A shipped grid (``codedbft sweep --list``) as a mapping, to be trimmed for ``--quick``."""
    import yaml

    from codedbft.sweep.grid import shipped_grids

    return dict(yaml.safe_load(Path(shipped_grids()[name]).read_text()))


def benchmark_missing(name: str) -> str | None:
    """None when ``benchmarks/<name>.py`` is there, else the prerequisite in words."""
    if (BENCHMARKS_DIR / f"{name}.py").exists():
        return None
    return f"benchmarks/{name}.py (a source checkout: pip install -e . from the repository)"


def benchmark(name: str) -> ModuleType:
    """The module of ``benchmarks/<name>.py`` (its functions are what the claim runs)."""
    missing = benchmark_missing(name)
    if missing is not None:
        raise RuntimeError(f"needs {missing}")
    if str(BENCHMARKS_DIR) not in sys.path:  # the scripts import their sibling helpers (_timing)
        sys.path.insert(0, str(BENCHMARKS_DIR))
    key = f"_codedbft_bench_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, BENCHMARKS_DIR / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def verdict(all_of: bool, some_of: bool) -> str:
    """``holds`` when every part holds, ``partially`` when some does, else ``does not hold``."""
    return HOLDS if all_of else PARTIAL if some_of else FAILS
