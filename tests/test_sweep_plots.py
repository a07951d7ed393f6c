"""Figures of a sweep output directory (codedbft.sweep.plots), on a hand-built fake OUT dir."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from codedbft.sweep import plots
from codedbft.sweep.plots import (
    FIGURES, average_curves, cell_curves, heatmap_table, load_sweep, plot_index, plot_sweep, read_curve,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RESULT_COLUMNS = [
    "cell", "seed", "status", "error", "scheme", "attack", "aggregator", "workers", "byzantine",
    "tolerate", "split", "final_test_accuracy", "best_test_accuracy", "worst_benign_test_accuracy",
    "redundancy", "computation_efficiency", "step_ms", "decode_ms", "aggregate_ms", "exact_fraction",
    "flagged_total", "wall_s", "model_sha256", "run_dir",
]
SCHEMES = {"repetition": dict(redundancy=3.0, tolerate=1, step_ms=30.0),
           "cyclic": dict(redundancy=2.0, tolerate=2, step_ms=20.0)}
# final accuracy of (scheme, attack, aggregator) for seed 0; seed 1 adds 0.02
ACC = {
    ("repetition", "signflip", "mean"): 0.90, ("repetition", "signflip", "median"): 0.80,
    ("repetition", "alie", "mean"): 0.70, ("repetition", "alie", "median"): 0.60,
    ("cyclic", "signflip", "mean"): 0.50, ("cyclic", "signflip", "median"): 0.40,
    ("cyclic", "alie", "mean"): 0.30, ("cyclic", "alie", "median"): 0.20,
}


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in columns})


def _curve(cell: int, seed: int) -> list[tuple[int, float]]:
    return [(s, round(0.1 + 0.01 * cell + 0.02 * seed + 0.001 * s, 6)) for s in (0, 10, 20, 30)]


def _write_metrics(run: Path, points: list[tuple[int, float]], partial: bool = False) -> None:
    run.mkdir(parents=True, exist_ok=True)
    lines = []
    for step, acc in points:
        lines.append(json.dumps({"step": step, "loss": 1.0 / (step + 1), "test_accuracy": acc}))
        lines.append(json.dumps({"step": step + 5, "loss": 0.5}))  # a non-eval step
    text = "\n".join(lines) + "\n" + ('{"step": 99, "test_acc' if partial else "")
    (run / "metrics.jsonl").write_text(text)
    (run / "summary.json").write_text(json.dumps({"final_test_accuracy": points[-1][1]}))


def make_out(root: Path) -> Path:
    """8 cells (2 schemes x 2 attacks x 2 aggregators) x 2 seeds; cell 7 seed 1 failed; cell 8
    (aggregator krum) invalid for both seeds."""
    out = root / "out"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps({
        "name": "fake", "axes": ["scheme", "attack", "aggregator"], "tune": [], "seeds": [0, 1],
        "cells": 9}))
    results, summary = [], []
    keys = list(ACC)
    for cell, (scheme, attack, agg) in enumerate(keys):
        accs = []
        for seed in (0, 1):
            run = out / "runs" / f"c{cell}-s{seed}"
            row = dict(cell=cell, seed=seed, scheme=scheme, attack=attack, aggregator=agg, workers=6,
                       byzantine=1, tolerate=SCHEMES[scheme]["tolerate"], split="iid",
                       run_dir=(f"runs/c{cell}-s{seed}" if seed == 0 else str(run.resolve())))
            if cell == 7 and seed == 1:  # a failed run: empty numbers, junk metrics that must be ignored
                row.update(status="failed", error="RuntimeError: boom")
                _write_metrics(run, [(0, 9.0), (10, 9.0), (20, 9.0), (30, 9.0)])
            else:
                acc = ACC[(scheme, attack, agg)] + 0.02 * seed
                accs.append(acc)
                row.update(status="done", final_test_accuracy=acc, best_test_accuracy=acc + 0.01,
                           worst_benign_test_accuracy=acc - 0.01, redundancy=SCHEMES[scheme]["redundancy"],
                           computation_efficiency=1 / SCHEMES[scheme]["redundancy"],
                           step_ms=SCHEMES[scheme]["step_ms"] + seed, decode_ms=1.0, aggregate_ms=0.5,
                           exact_fraction=1.0, flagged_total=0, wall_s=2.0, model_sha256="ab" * 8)
                _write_metrics(run, _curve(cell, seed), partial=(cell == 0 and seed == 1))
            results.append(row)
        m = sum(accs) / len(accs)
        sd = math.sqrt(sum((a - m) ** 2 for a in accs) / (len(accs) - 1)) if len(accs) > 1 else 0.0
        summary.append(dict(cell=cell, scheme=scheme, attack=attack, aggregator=agg, seeds=len(accs),
                            final_test_accuracy_mean=m, final_test_accuracy_std=sd,
                            redundancy_mean=SCHEMES[scheme]["redundancy"], redundancy_std=0.0,
                            step_ms_mean=SCHEMES[scheme]["step_ms"] + 0.5, step_ms_std=0.5))
    for seed in (0, 1):
        results.append(dict(cell=8, seed=seed, status="invalid", error="krum needs n > 2f + 2",
                            scheme="cyclic", attack="alie", aggregator="krum"))
    summary.append(dict(cell=8, scheme="cyclic", attack="alie", aggregator="krum", seeds=0))
    _write_csv(out / "results.csv", RESULT_COLUMNS, results)
    sum_cols = ["cell", "scheme", "attack", "aggregator", "seeds", "final_test_accuracy_mean",
                "final_test_accuracy_std", "redundancy_mean", "redundancy_std", "step_ms_mean",
                "step_ms_std"]
    _write_csv(out / "summary.csv", sum_cols, summary)
    return out


@pytest.fixture(scope="module")
def plotted(tmp_path_factory):
    out = make_out(tmp_path_factory.mktemp("sweep"))
    skipped: list = []
    paths = plot_sweep(out, skipped=skipped)
    return out, paths, skipped


def test_module_import_is_light():
    import subprocess
    import sys

    code = ("import sys, codedbft.sweep.plots; "
            "print(','.join(m for m in ('matplotlib', 'torch') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == ""


def test_all_figures_written(plotted):
    out, paths, skipped = plotted
    import matplotlib.image

    assert skipped == []
    expected = [out / "plots" / f"{name}.{ext}" for name in FIGURES for ext in ("png", "pdf")]
    assert paths == expected
    for p in paths:
        assert p.is_file() and p.stat().st_size > 0
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == PNG_SIGNATURE
            img = matplotlib.image.imread(p)
            assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100 and img.shape[2] in (3, 4)
        else:
            assert p.read_bytes()[:5] == b"%PDF-"
    assert not [p for p in (out / "plots").iterdir() if p.name.startswith(".")]  # no temp files left
    assert set(FIGURES) >= {"accuracy_vs_redundancy", "steptime_vs_redundancy", "accuracy_vs_s",
                            "heatmap_aggregator_x_attack", "heatmap_scheme_x_attack", "curves"}


def test_plot_index(plotted):
    out, paths, _ = plotted
    md = plot_index(out)
    assert md == plot_index(out, paths)
    lines = md.splitlines()
    assert len(lines) == len(FIGURES)
    assert lines[0].startswith("- **accuracy_vs_redundancy**")
    assert "[png](plots/curves.png)" in md and "[pdf](plots/curves.pdf)" in md


def test_heatmap_table_hand_computed():
    rows = [
        {"aggregator": "mean", "attack": "alie", "acc": "0.5"},
        {"aggregator": "mean", "attack": "alie", "acc": "0.7"},
        {"aggregator": "mean", "attack": "signflip", "acc": "0.9"},
        {"aggregator": "median", "attack": "signflip", "acc": 0.4},
        {"aggregator": "median", "attack": "signflip", "acc": "0.6"},
        {"aggregator": "median", "attack": "alie", "acc": ""},      # empty: ignored
        {"aggregator": "median", "attack": "alie", "acc": "nan"},   # NaN: ignored
        {"aggregator": "krum", "attack": "alie", "acc": ""},        # no value at all: no row
        {"aggregator": "", "attack": "alie", "acc": "0.1"},         # no key: ignored
    ]
    r, c, m = heatmap_table(rows, "aggregator", "attack", "acc")
    assert r == ["mean", "median"] and c == ["alie", "signflip"]
    assert m[0][0] == pytest.approx(0.6) and m[0][1] == pytest.approx(0.9)
    assert math.isnan(m[1][0]) and m[1][1] == pytest.approx(0.5)
    # numeric labels sort numerically
    r, _, _ = heatmap_table([{"k": "10", "a": "x", "v": 1}, {"k": "2", "a": "x", "v": 1}], "k", "a", "v")
    assert r == ["2", "10"]


def test_heatmap_numbers_from_sweep_dir(plotted):
    out, _, _ = plotted
    cells = load_sweep(out)["cells"]
    assert [c["cell"] for c in cells] == [str(i) for i in range(8)]  # invalid cell 8 dropped
    rows, cols, m = heatmap_table(cells, "scheme", "attack", "final_test_accuracy_mean")
    assert rows == ["cyclic", "repetition"] and cols == ["alie", "signflip"]
    # scheme x attack, averaged over seeds and the aggregator; cell 7 (cyclic, alie, median) has seed 0 only
    assert m[0][0] == pytest.approx(((0.30 + 0.32) / 2 + 0.20) / 2)
    assert m[0][1] == pytest.approx((0.51 + 0.41) / 2)
    assert m[1][0] == pytest.approx((0.71 + 0.61) / 2)
    assert m[1][1] == pytest.approx((0.91 + 0.81) / 2)
    rows, cols, m = heatmap_table(cells, "aggregator", "attack", "final_test_accuracy_mean")
    assert rows == ["mean", "median"]  # krum (invalid only) absent
    assert m[1][0] == pytest.approx((0.61 + 0.20) / 2)


def test_average_curves():
    a = [(0, 0.1), (10, 0.5), (20, 0.7)]
    b = [(0, 0.3), (10, 0.7)]
    assert average_curves([a, b]) == [(0, pytest.approx(0.2)), (10, pytest.approx(0.6))]
    assert average_curves([a]) == a
    assert average_curves([a, []]) == a
    assert average_curves([]) == []


def test_read_curve(tmp_path):
    run = tmp_path / "r"
    _write_metrics(run, [(0, 0.1), (10, 0.2)], partial=True)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('\n{"step": 10, "test_accuracy": 0.25}\n{"step": 20, "test_accuracy": null}\n')
    assert read_curve(run / "metrics.jsonl") == [(0, 0.1), (10, 0.25)]
    assert read_curve(tmp_path / "missing.jsonl") == []


def test_cell_curves_average_over_seeds(plotted):
    out, _, _ = plotted
    curves = cell_curves(out, load_sweep(out)["all_cells"])
    assert sorted(curves, key=int) == [str(i) for i in range(8)]
    for cell in range(7):
        expected = [(s, (a + b) / 2) for (s, a), (_, b) in zip(_curve(cell, 0), _curve(cell, 1))]
        assert curves[str(cell)] == [(s, pytest.approx(v)) for s, v in expected]
    assert curves["7"] == _curve(7, 0)  # the failed seed's (junk) metrics are not used


def test_missing_columns_only_what_it_can(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    cols = ["cell", "seed", "status", "error", "scheme", "final_test_accuracy", "run_dir"]
    rows = []
    for cell, scheme in enumerate(("a", "b")):
        for seed in (0, 1):
            _write_metrics(out / f"r{cell}{seed}", _curve(cell, seed))
            rows.append(dict(cell=cell, seed=seed, status="done", scheme=scheme,
                             final_test_accuracy=0.5 + 0.1 * cell, run_dir=f"r{cell}{seed}"))
    _write_csv(out / "results.csv", cols, rows)  # no sweep.json, no summary.csv
    skipped: list = []
    paths = plot_sweep(out, skipped=skipped)
    assert [p.name for p in paths] == ["curves.png", "curves.pdf"]
    assert sorted(n for n, _ in skipped) == sorted(set(FIGURES) - {"curves"})
    assert all(reason for _, reason in skipped)
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["curves.pdf", "curves.png"]


def test_one_attack_no_runs(tmp_path):
    out = make_out(tmp_path)
    with open(out / "results.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["attack"] == "alie"]
    for r in rows:
        r["run_dir"] = "does/not/exist"
    _write_csv(out / "results.csv", RESULT_COLUMNS, rows)
    (out / "summary.csv").unlink()  # the cells' numbers come from results.csv
    (out / "sweep.json").write_text("{not json")
    skipped: list = []
    names = sorted({p.stem for p in plot_sweep(out, skipped=skipped)})
    assert names == ["accuracy_vs_redundancy", "accuracy_vs_s", "steptime_vs_redundancy"]
    assert sorted(n for n, _ in skipped) == ["curves", "heatmap_aggregator_x_attack",
                                             "heatmap_scheme_x_attack"]


def test_only_failed_rows_no_figures(tmp_path):
    out = make_out(tmp_path)
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["status"] = "failed"
        for k in plots.METRICS:
            r[k] = ""
    _write_csv(out / "results.csv", RESULT_COLUMNS, rows)
    skipped: list = []
    assert plot_sweep(out, skipped=skipped) == []
    assert len(skipped) == len(FIGURES)
    assert not (out / "plots").exists() or not any((out / "plots").iterdir())
    assert plot_index(out) == ""


def test_tuned_best_selects_cells(tmp_path):
    out = make_out(tmp_path)
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["tuned_best"] = "true" if r["aggregator"] == "median" else "false"
    _write_csv(out / "summary.csv", list(rows[0]), rows)
    sweep = load_sweep(out)
    assert sweep["tuned"] and {c["aggregator"] for c in sweep["cells"]} == {"median"}
    assert len(sweep["all_cells"]) == 8


def test_curves_legend_limit(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    cols = ["cell", "seed", "status", "run_dir"]
    rows = []
    for cell in range(plots.MAX_LEGEND + 1):
        _write_metrics(out / f"r{cell}", _curve(cell, 0))
        rows.append(dict(cell=cell, seed=0, status="done", run_dir=f"r{cell}"))
    _write_csv(out / "results.csv", cols, rows)
    paths = plot_sweep(out)
    assert [p.name for p in paths] == ["curves.png", "curves.pdf"]
    assert len(cell_curves(out, load_sweep(out)["all_cells"])) == plots.MAX_LEGEND + 1
