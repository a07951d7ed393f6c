"""``codedbft sweep GRID``: run a grid of training runs (docs/sweep.md).

Every grid or configuration error (unknown keys, an OUT holding another grid, a bad flag) exits with
code 2 and a message naming the constraint, before Ray is imported; cells whose configuration cannot
be built are ``invalid`` rows, not errors. Exit code 0 when every run is done or invalid, 1 when
some run failed. Importing this module costs nothing beyond argparse: the sweep is imported when
the command runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_OUT = "runs/sweep"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("sweep", help="run a grid of training runs (each one a Ray task), resumable",
                       description="Run every (cell, seed) of a grid as a Ray task; write results.csv, "
                                   "summary.csv (and tuned.csv) into --out. See docs/sweep.md.")
    p.add_argument("grid", nargs="?", help="grid YAML file, or the name of a shipped grid (see --list)")
    p.add_argument("--out", metavar="DIR", help=f"sweep directory (default: {DEFAULT_OUT}/<grid name>); rerunning "
                   "with the same DIR skips finished runs and resumes interrupted ones")
    p.add_argument("--address", metavar="ADDR", help="existing Ray cluster to run the tasks on, e.g. auto or "
                   "host:6379 (default: an embedded local Ray instance)")
    p.add_argument("--max-parallel", type=int, metavar="N", help="at most N runs in flight "
                   "(default: the cluster's CPUs / the grid's resources.num_cpus)")
    p.add_argument("--resume", action="store_true", help="continue the sweep in --out: the grid argument may be "
                   "left out (OUT/grid.yaml is used); an error when --out holds no sweep")
    p.add_argument("--plot", metavar="DIR", help="only plot the sweep in DIR (codedbft.sweep.plots) and exit")
    p.add_argument("--list", action="store_true", help="list the shipped grids and exit")
    p.add_argument("--dry-run", action="store_true", help="check the grid and print every run with what it "
                   "would do (fresh, resume, done, invalid and why); starts nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=lambda args: sweep(args, p))
    return p


def _list() -> int:
    from codedbft.sweep.grid import describe, shipped_grids

    grids = shipped_grids()
    width = max((len(n) for n in grids), default=0)
    for name, path in grids.items():
        print(f"{name:<{width}}  {describe(path)}")
    return 0


def _plot(directory: str) -> int:
    try:
        from codedbft.sweep.plots import plot_sweep
    except ImportError as err:
        print(f"codedbft sweep --plot: plotting is not available ({err})", file=sys.stderr)
        return 1
    if not (Path(directory) / "results.csv").exists():
        print(f"codedbft sweep --plot: {directory} holds no finished sweep (no results.csv)", file=sys.stderr)
        return 2
    try:
        paths = plot_sweep(Path(directory)) or []
    except Exception as err:
        print(f"codedbft sweep --plot: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


def sweep(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.list:
        return _list()
    if args.plot:
        return _plot(args.plot)
    try:
        from codedbft.sweep.grid import Grid, resolve
        from codedbft.sweep.runner import load_out_grid, plan_sweep

        if args.max_parallel is not None and args.max_parallel < 1:
            raise ValueError(f"--max-parallel must be >= 1, got {args.max_parallel}")
        if args.grid is None:
            if not (args.resume and args.out):
                raise ValueError("give a grid file or shipped grid name (codedbft sweep --list), "
                                 "or --resume --out DIR to continue a sweep")
            grid = load_out_grid(Path(args.out))
        else:
            grid = Grid.from_file(resolve(args.grid))
        out = Path(args.out) if args.out else Path(DEFAULT_OUT) / grid.name
        plan = plan_sweep(grid, out, resume=args.resume)
    except (ValueError, OSError) as err:
        parser.error(str(err))  # exit code 2, before Ray is imported
    if args.dry_run:
        print(plan.describe())
        return 0
    from codedbft.sweep import results as R
    from codedbft.sweep.runner import execute

    t0 = time.perf_counter()
    try:
        rows = execute(plan, address=args.address, max_parallel=args.max_parallel, progress=not args.no_progress)
    except ConnectionError as err:
        print(f"codedbft sweep: cannot reach the Ray cluster {args.address!r}: {err}", file=sys.stderr)
        return 1
    axes = grid.axis_names
    print(R.summary_table(plan.summary, axes))
    if plan.tuned:
        from codedbft.sweep.tune import attack_values, tuned_columns

        print("\nworst-case tuning (tuned.csv):")
        shown = [{k: R.fmt(v) if k in axes else v for k, v in t.items()} for t in plan.tuned]
        print(R.table(shown, tuned_columns(axes, grid.tune_axes, attack_values(plan.summary, axes))))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    print(f"\n{len(rows)} runs ({', '.join(f'{n} {s}' for s, n in counts.items())}) in "
          f"{time.perf_counter() - t0:.1f} s; results in {plan.out}")
    return 1 if counts.get("failed") or counts.get("pending") else 0
