"""Figures of a ``codedbft sweep`` output directory.

``plot_sweep(OUT)`` reads a sweep output directory and writes every figure it can under
``OUT/plots/``, each as ``<name>.png`` and ``<name>.pdf``; it returns the paths it wrote (PNG then
PDF, figures in the order below). A figure whose inputs are absent, or whose x axis (or heatmap
row/column key) has fewer than two distinct values, is skipped without an exception; pass
``skipped=[]`` to learn which and why. ``plot_index(OUT)`` returns a markdown list of the files.

Inputs
------
``OUT/sweep.json``
    ``name`` (figure titles) and ``axes`` (legend labels, the "averaged over" notes).
``OUT/results.csv``
    one row per (cell, seed). Only rows with ``status == done`` count; empty and NaN numbers are
    ignored. The fixed columns ``scheme, aggregator, attack, workers, byzantine, tolerate, split``
    are taken from here for every cell (where they are constant over its done rows), so a figure
    can group by ``scheme`` or ``attack`` even when that is not a sweep axis. ``run_dir`` (relative
    to OUT or absolute) locates each run's ``metrics.jsonl`` for the curves.
``OUT/summary.csv``
    one row per cell with ``<metric>_mean`` / ``<metric>_std``. Its values win over the ones
    recomputed from ``results.csv`` (which fill in what it lacks, or stand in when it is missing).
    A cell without a done row in ``results.csv`` is dropped. When a ``tuned_best`` column holds
    booleans, every figure but the curves uses only the cells marked true (the tuned configuration
    of each group); the curves show every cell.

Figures
-------
``accuracy_vs_redundancy``
    one panel per attack; x = redundancy (``redundancy_mean``, gradients computed per partition),
    y = mean final test accuracy (fraction), error bars = seed std; one line per scheme, annotated
    with the scheme name. Cells of one (attack, scheme, redundancy) are averaged over the other axes
    (error bar: pooled seed std), which the title says.
``steptime_vs_redundancy``
    the same with y = mean step time (``step_ms_mean``, ms): the redundancy-vs-overhead figure.
``accuracy_vs_s``
    mean final accuracy vs the number of tolerated Byzantine workers ``tolerate`` (or ``byzantine``
    when ``tolerate`` does not vary), one line per scheme, one panel per attack.
``heatmap_aggregator_x_attack``, ``heatmap_scheme_x_attack``
    ByzFL-style tables: cell colour and annotation = mean final test accuracy of that
    (row, attack) pair, averaged over seeds and every other axis (named in the title). Helper:
    :func:`heatmap_table`.
``curves``
    test accuracy vs step, one line per cell (done runs' ``metrics.jsonl``, averaged over seeds at
    the steps all seeds evaluated: :func:`average_curves`); a legend by cell id when there are at
    most 20 cells, otherwise none (the title says so).

Nothing here imports matplotlib until a figure is drawn (Agg backend, no display needed).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

log = logging.getLogger(__name__)

METRICS = (
    "final_test_accuracy", "best_test_accuracy", "worst_benign_test_accuracy", "redundancy",
    "computation_efficiency", "step_ms", "decode_ms", "aggregate_ms", "exact_fraction",
    "flagged_total", "wall_s",
)
FIXED_COLUMNS = ("scheme", "aggregator", "attack", "workers", "byzantine", "tolerate", "split")
HEATMAPS = (("aggregator", "attack"), ("scheme", "attack"))
FIGURES = (
    "accuracy_vs_redundancy", "steptime_vs_redundancy", "accuracy_vs_s",
    *(f"heatmap_{r}_x_{c}" for r, c in HEATMAPS), "curves",
)
DESCRIPTIONS = {
    "accuracy_vs_redundancy": "final test accuracy vs redundancy, per attack, one line per scheme",
    "steptime_vs_redundancy": "step time (ms) vs redundancy, per attack, one line per scheme",
    "accuracy_vs_s": "final test accuracy vs tolerated Byzantine workers, per attack and scheme",
    "heatmap_aggregator_x_attack": "mean final test accuracy, aggregation rule x attack",
    "heatmap_scheme_x_attack": "mean final test accuracy, scheme x attack",
    "curves": "test accuracy vs step, one line per cell (mean over seeds)",
}
MAX_LEGEND = 20
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}


# -- reading ------------------------------------------------------------------------------------
def _num(value: Any) -> float | None:
    """A finite float, or None for empty / non-numeric / NaN / inf."""
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    s = str(value).strip()
    return s or None


def _sort_key(value: Any) -> tuple:
    """Numbers (in numeric order) before strings (in text order); deterministic for mixed labels."""
    x = _num(value)
    return (0, x, "") if x is not None else (1, 0.0, str(value))


def _read_csv(path: Path) -> list[dict[str, str]] | None:
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        return [dict(r) for r in csv.DictReader(f)]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_done(row: Mapping[str, Any]) -> bool:
    status = row.get("status", "done")  # a results.csv without a status column: all rows count
    return (status or "").strip().lower() == "done"


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def _std(xs: Sequence[float]) -> float:
    """Sample standard deviation (0 for a single value)."""
    if len(xs) < 2:
        return 0.0
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def cell_table(results: Sequence[Mapping[str, Any]] | None,
               summary: Sequence[Mapping[str, Any]] | None,
               axes: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One dict per cell: its axis values, the fixed columns and ``<metric>_mean``/``_std``.

    Built from the done rows of ``results`` (``None``: no results.csv), overlaid with the non-empty
    values of ``summary``. With results, a cell that has no done row is left out. Sorted by cell id.
    """
    table: dict[str, dict[str, Any]] = {}
    if results is not None:
        by_cell: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for r in results:
            cell = _text(r.get("cell"))
            if cell is not None and _is_done(r):
                by_cell[cell].append(r)
        for cell, rows in by_cell.items():
            entry: dict[str, Any] = {"cell": cell, "seeds": len(rows)}
            for key in (*axes, *FIXED_COLUMNS):
                values = {_text(r.get(key)) for r in rows} - {None}
                if len(values) == 1:
                    entry[key] = values.pop()
            for m in METRICS:
                xs = [x for x in (_num(r.get(m)) for r in rows) if x is not None]
                if xs:
                    entry[f"{m}_mean"] = _mean(xs)
                    entry[f"{m}_std"] = _std(xs)
            entry["_runs"] = rows
            table[cell] = entry
    for srow in summary or ():
        cell = _text(srow.get("cell"))
        if cell is None or (results is not None and cell not in table):
            continue
        entry = table.setdefault(cell, {"cell": cell})
        for key, value in srow.items():
            if key is not None and _text(value) is not None and key != "cell":
                entry[key] = value.strip() if isinstance(value, str) else value
    return [table[c] for c in sorted(table, key=_sort_key)]


def _select_tuned(cells: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """The ``tuned_best`` cells when that column holds booleans with at least one true."""
    flags = [_text(c.get("tuned_best")) for c in cells]
    words = {f.lower() for f in flags if f is not None}
    if not words or not words <= (_TRUE | _FALSE) or not words & _TRUE:
        return cells, False
    return [c for c, f in zip(cells, flags) if f is not None and f.lower() in _TRUE], True


# -- pure helpers -------------------------------------------------------------------------------
def heatmap_table(summary_rows: Iterable[Mapping[str, Any]], row_key: str, col_key: str,
                  value_key: str) -> tuple[list[str], list[str], list[list[float]]]:
    """``(rows, cols, matrix)``: ``matrix[i][j]`` = mean of ``value_key`` over the rows whose
    ``row_key`` is ``rows[i]`` and ``col_key`` is ``cols[j]`` (NaN where there is none).

    Rows with a missing key or an empty / non-finite value are ignored; labels are sorted
    (numbers numerically, then text) and only labels with at least one value appear.
    """
    sums: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in summary_rows:
        rk, ck, v = _text(r.get(row_key)), _text(r.get(col_key)), _num(r.get(value_key))
        if rk is None or ck is None or v is None:
            continue
        sums[(rk, ck)].append(v)
    rows = sorted({k[0] for k in sums}, key=_sort_key)
    cols = sorted({k[1] for k in sums}, key=_sort_key)
    matrix = [[_mean(sums[(r, c)]) if (r, c) in sums else math.nan for c in cols] for r in rows]
    return rows, cols, matrix


def read_curve(metrics_path: Path | str, key: str = "test_accuracy") -> list[tuple[int, float]]:
    """``(step, value)`` of every metrics.jsonl line that has a finite ``key``, sorted by step.
    A repeated step keeps its last value; unreadable lines (a killed run's partial line) are skipped."""
    points: dict[int, float] = {}
    try:
        text = Path(metrics_path).read_text()
    except OSError:
        return []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        step, value = _num(rec.get("step")), _num(rec.get(key))
        if step is not None and value is not None:
            points[int(step)] = value
    return sorted(points.items())


def average_curves(curves: Sequence[Sequence[tuple[float, float]]]) -> list[tuple[float, float]]:
    """Mean over curves at the steps common to all of them (empty curves are ignored)."""
    maps = [dict(c) for c in curves if c]
    if not maps:
        return []
    common = set(maps[0]).intersection(*maps[1:])
    return [(s, _mean([m[s] for m in maps])) for s in sorted(common)]


def _group(cells: Iterable[Mapping[str, Any]], keys: Sequence[str], x_key: str,
           metric: str) -> dict[tuple, dict[float, tuple[float, float, int]]]:
    """{group: {x: (mean of <metric>_mean, pooled <metric>_std, number of cells)}}."""
    acc: dict[tuple, dict[float, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for c in cells:
        x, y = _num(c.get(x_key)), _num(c.get(f"{metric}_mean"))
        if x is None or y is None:
            continue
        sd = _num(c.get(f"{metric}_std")) or 0.0
        group = tuple(_text(c.get(k)) or "-" for k in keys)
        acc[group][round(x, 9)].append((y, sd))
    return {g: {x: (_mean([p[0] for p in v]), math.sqrt(_mean([p[1] ** 2 for p in v])), len(v))
                for x, v in xs.items()} for g, xs in acc.items()}


def _distinct(cells: Iterable[Mapping[str, Any]], key: str, numeric: bool = False) -> set:
    if numeric:
        return {round(x, 9) for x in (_num(c.get(key)) for c in cells) if x is not None}
    return {v for v in (_text(c.get(key)) for c in cells) if v is not None}


# -- drawing ------------------------------------------------------------------------------------
class _Skip(Exception):
    """A figure cannot be drawn from these inputs (the message says why)."""


def _figure(**kw: Any):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kw)


def _save(fig: Any, plots_dir: Path, name: str) -> list[Path]:
    plots_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in ("png", "pdf"):
        path = plots_dir / f"{name}.{ext}"
        tmp = plots_dir / f".{name}.tmp.{ext}"
        meta = {"CreationDate": None} if ext == "pdf" else {"Software": None}
        try:
            fig.savefig(tmp, format=ext, dpi=120, metadata=meta)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        out.append(path)
    return out


def _style(labels: Sequence[str]) -> dict[str, tuple[Any, str]]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    markers = "osD^vP*Xh<>p"
    return {lab: (cmap(i % 10), markers[i % len(markers)]) for i, lab in enumerate(labels)}


def _panels(n: int, *, sharey: bool, width: float = 4.6, height: float = 3.6):
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig = _figure(figsize=(width * ncols, height * nrows))
    axs = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)
    flat = [a for row in axs for a in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _wrap(title: str, width: int = 90) -> str:
    return "\n".join(textwrap.wrap(title, width)) if title else title


def _varying_axes(cells: Sequence[Mapping[str, Any]], axes: Sequence[str],
                  exclude: Iterable[str]) -> list[str]:
    ex = set(exclude)
    return [a for a in axes if a not in ex and len(_distinct(cells, a)) > 1]


def _attack_groups(cells: Sequence[Mapping[str, Any]]) -> list[str | None]:
    attacks = sorted(_distinct(cells, "attack"), key=_sort_key)
    return attacks if attacks else [None]


def _series_plot(cells: list[dict[str, Any]], ctx: dict[str, Any], *, x_key: str, metric: str,
                 x_label: str, y_label: str, title: str, numeric_x_name: str) -> Any:
    """Panels per attack, a line per scheme: y = <metric>_mean vs x_key (shared by figures 1-2-3)."""
    usable = [c for c in cells if _num(c.get(x_key)) is not None
              and _num(c.get(f"{metric}_mean")) is not None]
    if not usable:
        raise _Skip(f"no cell has both {x_key} and {metric}_mean")
    if len(_distinct(usable, x_key, numeric=True)) < 2:
        raise _Skip(f"{numeric_x_name} takes fewer than 2 distinct values")
    has_attack = bool(_distinct(usable, "attack"))
    groups = _group(usable, ("attack", "scheme") if has_attack else ("scheme",), x_key, metric)
    attacks = _attack_groups(usable)
    schemes = sorted({g[-1] for g in groups}, key=_sort_key)
    style = _style(schemes)
    averaged = _varying_axes(usable, ctx["axes"], ("attack", "scheme", x_key.removesuffix("_mean")))
    fig, axes = _panels(len(attacks), sharey=True)
    for ax, attack in zip(axes, attacks):
        for scheme in schemes:
            pts = groups.get((attack, scheme) if has_attack else (scheme,))
            if not pts:
                continue
            xs = sorted(pts)
            ys = [pts[x][0] for x in xs]
            es = [pts[x][1] for x in xs]
            color, marker = style[scheme]
            ax.errorbar(xs, ys, yerr=es, color=color, marker=marker, capsize=3, linewidth=1.4,
                        markersize=6, label=scheme)
            ax.annotate(scheme, (xs[-1], ys[-1]), xytext=(5, 4), textcoords="offset points",
                        fontsize=8, color=color)
        ax.set_title(f"attack: {attack}" if attack is not None else "all cells", fontsize=10)
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(y_label)
    handles, labels = axes[0].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    for ax in axes[1:]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    if seen:
        fig.legend(list(seen.values()), list(seen.keys()), title="scheme", loc="outside right upper",
                   fontsize=8)
    note = "mean over seeds" + (f" and {', '.join(averaged)}" if averaged else "") + "; error bars: seed std"
    fig.suptitle(_wrap(f"{ctx['prefix']}{title} ({note})"), fontsize=11)
    return fig


def _fig_accuracy_vs_redundancy(ctx: dict[str, Any]) -> Any:
    return _series_plot(ctx["cells"], ctx, x_key="redundancy_mean", metric="final_test_accuracy",
                        x_label="redundancy (gradient computations per partition)",
                        y_label="final test accuracy (fraction)",
                        title="final test accuracy vs redundancy", numeric_x_name="redundancy")


def _fig_steptime_vs_redundancy(ctx: dict[str, Any]) -> Any:
    return _series_plot(ctx["cells"], ctx, x_key="redundancy_mean", metric="step_ms",
                        x_label="redundancy (gradient computations per partition)",
                        y_label="step time (ms)", title="step time vs redundancy",
                        numeric_x_name="redundancy")


def _fig_accuracy_vs_s(ctx: dict[str, Any]) -> Any:
    cells = ctx["cells"]
    for key in ("tolerate", "byzantine"):
        if len(_distinct(cells, key, numeric=True)) >= 2:
            break
    else:
        raise _Skip("neither tolerate nor byzantine takes 2 distinct values")
    label = ("tolerated Byzantine workers s (tolerate)" if key == "tolerate"
             else "Byzantine workers (byzantine)")
    return _series_plot(cells, ctx, x_key=key, metric="final_test_accuracy", x_label=label,
                        y_label="final test accuracy (fraction)",
                        title=f"final test accuracy vs {key}", numeric_x_name=key)


def _fig_heatmap(ctx: dict[str, Any], row_key: str, col_key: str) -> Any:
    cells = ctx["cells"]
    rows, cols, matrix = heatmap_table(cells, row_key, col_key, "final_test_accuracy_mean")
    if len(rows) < 2 or len(cols) < 2:
        raise _Skip(f"{row_key} and {col_key} need 2 distinct values each "
                    f"(have {len(rows)} and {len(cols)})")
    import matplotlib
    import numpy as np

    data = np.array(matrix, dtype=float)
    finite = data[np.isfinite(data)]
    lo, hi = (0.0, 1.0) if finite.min() >= 0 and finite.max() <= 1 else (finite.min(), finite.max())
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
    fig = _figure(figsize=(max(4.5, 1.1 * len(cols) + 2.5), max(3.0, 0.55 * len(rows) + 2.0)))
    ax = fig.subplots()
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
    ax.set_xticks(range(len(cols)), labels=cols, rotation=30, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(rows)), labels=rows)
    ax.set_xlabel(col_key)
    ax.set_ylabel(row_key)
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = data[i, j]
            if math.isfinite(v):
                frac = (v - lo) / (hi - lo) if hi > lo else 0.5
                ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=8,
                        color="black" if frac > 0.6 else "white")
            else:
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=8, color="black")
    fig.colorbar(im, ax=ax, label="final test accuracy (fraction)")
    averaged = _varying_axes(cells, ctx["axes"], (row_key, col_key))
    note = "mean over seeds" + (f" and {', '.join(averaged)}" if averaged else "")
    ax.set_title(_wrap(f"{ctx['prefix']}final test accuracy, {row_key} x {col_key} ({note})", 60),
                 fontsize=10)
    return fig


def _cell_label(cell: Mapping[str, Any], axes: Sequence[str], width: int = 64) -> str:
    parts = [f"{a}={cell[a]}" for a in axes if _text(cell.get(a)) is not None]
    label = f"{cell['cell']}" + (f": {', '.join(parts)}" if parts else "")
    return label if len(label) <= width else label[: width - 1] + "\u2026"


def _run_path(out_dir: Path, run_dir: Any) -> Path | None:
    text = _text(run_dir)
    if text is None:
        return None
    p = Path(text)
    return p if p.is_absolute() else out_dir / p


def cell_curves(out_dir: Path | str, cells: Sequence[Mapping[str, Any]] | None = None,
                key: str = "test_accuracy") -> dict[str, list[tuple[float, float]]]:
    """{cell id: seed-averaged ``key`` curve} for the done runs of ``OUT/results.csv``."""
    out_dir = Path(out_dir)
    if cells is None:
        cells = cell_table(_read_csv(out_dir / "results.csv") or [], None)
    curves = {}
    for cell in cells:
        per_seed = []
        for run in cell.get("_runs", ()):
            path = _run_path(out_dir, run.get("run_dir"))
            if path is not None:
                per_seed.append(read_curve(path / "metrics.jsonl", key))
        avg = average_curves(per_seed)
        if avg:
            curves[cell["cell"]] = avg
    return curves


def _fig_curves(ctx: dict[str, Any]) -> Any:
    curves = cell_curves(ctx["out_dir"], ctx["all_cells"])
    if not curves or all(len(c) < 2 for c in curves.values()):
        raise _Skip("no done run has test_accuracy at 2 or more steps")
    labels = sorted(curves, key=_sort_key)
    by_id = {c["cell"]: c for c in ctx["all_cells"]}
    fig = _figure(figsize=(8.5 if len(labels) <= MAX_LEGEND else 7, 4.8))
    ax = fig.subplots()
    import matplotlib

    cmap = matplotlib.colormaps["tab20" if len(labels) > 10 else "tab10"]
    for i, cell in enumerate(labels):
        xs, ys = zip(*curves[cell])
        ax.plot(xs, ys, color=cmap(i % cmap.N), linewidth=1.3, marker="." if len(xs) <= 30 else None,
                label=_cell_label(by_id[cell], ctx["axes"]))
    ax.set_xlabel("step")
    ax.set_ylabel("test accuracy (fraction)")
    ax.grid(alpha=0.3)
    title = f"{ctx['prefix']}test accuracy vs step, one line per cell (mean over seeds)"
    if len(labels) <= MAX_LEGEND:
        fig.legend(loc="outside right upper", fontsize=7, title="cell")
    else:
        title += f"; {len(labels)} cells, legend omitted (> {MAX_LEGEND})"
    ax.set_title(_wrap(title, 80), fontsize=10)
    return fig


# -- entry points -------------------------------------------------------------------------------
def load_sweep(out_dir: Path | str) -> dict[str, Any]:
    """``{"meta", "axes", "cells", "all_cells", "tuned"}`` of a sweep output directory."""
    out_dir = Path(out_dir)
    meta = _read_json(out_dir / "sweep.json")
    results = _read_csv(out_dir / "results.csv")
    summary = _read_csv(out_dir / "summary.csv")
    axes = [str(a) for a in meta.get("axes", []) if _text(a) is not None]
    if not axes and summary:
        skip = {"cell", "seeds", "tuned_best"}
        axes = [k for k in summary[0] if k and k not in skip
                and not k.endswith(("_mean", "_std"))]
    all_cells = cell_table(results, summary, axes)
    cells, tuned = _select_tuned(all_cells)
    name = _text(meta.get("name"))
    prefix = f"{name}: " if name else ""
    if tuned:
        prefix += "tuned best, "
    return {"out_dir": out_dir, "meta": meta, "axes": axes, "cells": cells,
            "all_cells": all_cells, "tuned": tuned, "prefix": prefix}


def plot_sweep(out_dir: Path | str, *, skipped: list[tuple[str, str]] | None = None) -> list[Path]:
    """Write every figure it can under ``OUT/plots/`` (PNG and PDF); return the written paths.

    A figure that cannot be drawn is skipped (``skipped``, if given, receives ``(name, reason)``);
    no input problem raises (an unexpected error while drawing one figure is logged and reported
    as ``"error: ..."`` in ``skipped``; the other figures are still drawn). Figure names are fixed: see :data:`FIGURES` and the module docstring.
    """
    ctx = load_sweep(out_dir)
    plots_dir = Path(out_dir) / "plots"
    builders = [
        ("accuracy_vs_redundancy", _fig_accuracy_vs_redundancy),
        ("steptime_vs_redundancy", _fig_steptime_vs_redundancy),
        ("accuracy_vs_s", _fig_accuracy_vs_s),
        *((f"heatmap_{r}_x_{c}", (lambda cx, r=r, c=c: _fig_heatmap(cx, r, c))) for r, c in HEATMAPS),
        ("curves", _fig_curves),
    ]
    written: list[Path] = []
    for name, build in builders:
        try:
            fig = build(ctx)
        except _Skip as why:
            log.info("sweep plot %s skipped: %s", name, why)
            if skipped is not None:
                skipped.append((name, str(why)))
            continue
        except Exception as err:  # odd data must not take the sweep's other figures down
            log.warning("sweep plot %s failed: %r", name, err)
            if skipped is not None:
                skipped.append((name, f"error: {err!r}"))
            continue
        written.extend(_save(fig, plots_dir, name))
    return written


def plot_index(out_dir: Path | str, paths: Iterable[Path | str] | None = None) -> str:
    """A markdown list of the figures (``paths``, default: those now in ``OUT/plots/``), with links
    relative to OUT, in the order of :data:`FIGURES`."""
    out_dir = Path(out_dir)
    if paths is None:
        plots_dir = out_dir / "plots"
        paths = sorted(plots_dir.glob("*.png")) + sorted(plots_dir.glob("*.pdf")) \
            if plots_dir.is_dir() else []
    by_name: dict[str, dict[str, Path]] = defaultdict(dict)
    for p in paths:
        p = Path(p)
        if not p.name.startswith("."):
            by_name[p.stem][p.suffix.lstrip(".")] = p
    order = {n: i for i, n in enumerate(FIGURES)}
    lines = []
    for name in sorted(by_name, key=lambda n: (order.get(n, len(order)), n)):
        links = []
        for ext in ("png", "pdf"):
            if ext in by_name[name]:
                p = by_name[name][ext]
                try:
                    rel = p.relative_to(out_dir)
                except ValueError:
                    rel = p
                links.append(f"[{ext}]({rel.as_posix()})")
        desc = DESCRIPTIONS.get(name, "")
        lines.append(f"- **{name}**" + (f": {desc}" if desc else "") + f" ({', '.join(links)})")
    return "\n".join(lines) + ("\n" if lines else "")
