"""``codedbft sweep``: grids of training runs, each (cell, seed) a Ray task, resumable (docs/sweep.md).

::

    from codedbft.sweep import Grid, run_sweep
    grid = Grid.from_file("codedbft/grids/smoke.yaml")      # or Grid.from_dict({...})
    grid.cells()                                             # [(cell_id, overrides), ...]
    rows = run_sweep(grid, "runs/sweep/smoke")               # one dict per (cell, seed)

:mod:`~codedbft.sweep.grid` parses and expands grids, :mod:`~codedbft.sweep.runner` plans and runs
them, :mod:`~codedbft.sweep.results` writes the tables, :mod:`~codedbft.sweep.tune` chooses tuned
axes against the worst attack. Names are imported on first use: ``codedbft.sweep.cli`` (loaded by
every ``codedbft`` command) stays cheap and never imports Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from codedbft._lazy import lazy_getattr

_LAZY = {
    "Grid": "codedbft.sweep.grid",
    "shipped_grids": "codedbft.sweep.grid",
    "run_sweep": "codedbft.sweep.runner",
    "plan_sweep": "codedbft.sweep.runner",
    "execute": "codedbft.sweep.runner",
    "summarize": "codedbft.sweep.results",
    "read_csv": "codedbft.sweep.results",
    "worst_case": "codedbft.sweep.tune",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from codedbft.sweep.grid import Grid, shipped_grids
    from codedbft.sweep.results import read_csv, summarize
    from codedbft.sweep.runner import execute, plan_sweep, run_sweep
    from codedbft.sweep.tune import worst_case

__getattr__ = lazy_getattr(__name__, globals(), _LAZY)
