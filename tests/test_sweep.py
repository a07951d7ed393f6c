"""``codedbft sweep``: grid expansion, the tables against the run directories, resume reaching the
uninterrupted models, worst-case tuning against brute force, usage errors before Ray, the shipped
grids, and a sweep on an existing cluster (``ray start --head`` in its own process group)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from codedbft.sweep.grid import Grid, cell_id, describe, resolve, shipped_grids
from codedbft.sweep.results import METRICS, read_csv, result_columns
from codedbft.sweep.tune import mark_best, worst_case

BASE = dict(dataset="digits", model="logreg", workers=3, byzantine=1, attack="sign-flip", batch_size=60,
            steps=6, eval_every=3, checkpoint_every=3, lr=0.3)
#: 2 valid cells x 2 seeds, and a cell whose code cannot be built (3 does not divide n = 4)
SMOKE = {"name": "t", "base": BASE,
         "zip": [{"scheme": ["vanilla", "draco-repetition"], "aggregator": ["median", None]}],
         "include": [{"scheme": "draco-repetition", "workers": 4}], "seeds": [0, 1]}


# -- grid expansion (no Ray) -------------------------------------------------------------------------
def test_cross_product_zip_exclude_include_and_order():
    g = Grid.from_dict({"base": {}, "axes": {"scheme": ["vanilla", "detox"], "lr": [0.1, 0.2, 0.3]},
                        "zip": [{"tolerate": [1, 2], "workers": [9, 15]}], "seeds": [0, 1]})
    cells = g.cells()
    assert len(cells) == 2 * 3 * 2 and len(list(g.runs())) == 24
    assert g.axis_names == ["scheme", "lr", "tolerate", "workers"]
    assert {(o["tolerate"], o["workers"]) for _, o in cells} == {(1, 9), (2, 15)}  # zipped: never (1, 15)
    assert cells[0] == ("scheme=vanilla,lr=0.1,tolerate=1,workers=9",
                        {"scheme": "vanilla", "lr": 0.1, "tolerate": 1, "workers": 9})
    assert cells[1][1]["workers"] == 15  # the last dimension varies fastest

    ex = Grid.from_dict({**_plain(g), "exclude": [{"scheme": "detox", "workers": 15}, {"lr": 0.3}]})
    kept = [o for _, o in ex.cells()]
    assert len(kept) == 12 - (3 + 4 - 1)  # detox&15: 3 cells, lr=0.3: 4 cells, overlap 1
    assert not any(o["lr"] == 0.3 or (o["scheme"] == "detox" and o["workers"] == 15) for o in kept)

    inc = Grid.from_dict({**_plain(g), "include": [{"scheme": "detox", "group_size": 3},
                                                   {"scheme": "vanilla", "lr": 0.1, "tolerate": 1, "workers": 9}]})
    assert len(inc.cells()) == 13  # the second include equals an existing cell: not added twice
    assert inc.cells()[-1] == ("scheme=detox,group_size=3", {"scheme": "detox", "group_size": 3})


def _plain(g: Grid) -> dict:
    d = g.to_dict()
    d.pop("name")
    return d


def test_cell_ids_are_stable_unique_and_directory_safe():
    d = {"axes": {"scheme": ["vanilla", "rrr-randomized"], "scheme_params": [{}, {"q": 0.1}],
                  "split": ["iid", "dirichlet:alpha=0.1"], "aggregator": [None, "median"]}}
    ids = [c for c, _ in Grid.from_dict(d).cells()]
    assert ids == [c for c, _ in Grid.from_dict(d).cells()] and len(set(ids)) == len(ids) == 16
    # a cell's id depends on the cell only: reordering another axis' values changes no id
    d2 = {"axes": {**d["axes"], "scheme": ["rrr-randomized", "vanilla"]}}
    assert set(ids) == {c for c, _ in Grid.from_dict(d2).cells()}
    assert "scheme=vanilla,scheme_params=default,split=iid,aggregator=none" in ids
    assert "scheme=vanilla,scheme_params=q_0.1,split=iid,aggregator=median" in ids
    odd = cell_id({"split": "dirichlet:alpha=0.1"})  # ':' is replaced, and the hash keeps it unique
    assert odd.startswith("split=dirichlet_alpha=0.1-") and len(odd) == len("split=dirichlet_alpha=0.1-") + 8
    long = cell_id({f"k{i}": "x" * 10 for i in range(20)})
    assert len(long) <= 96 and long != cell_id({f"k{i}": "x" * 10 for i in range(19)})
    for c in [*ids, odd, long]:
        assert "/" not in c and all(ch.isalnum() or ch in "._=,+-" for ch in c), c


@pytest.mark.parametrize("data, match", [
    ({"axes": {"scheme": ["vanilla"]}, "seedz": [0]}, r"unknown grid keys \['seedz'\] \(did you mean 'seeds'\?\)"),
    ({"axes": {"schem": ["vanilla"]}}, r"unknown config keys \['schem'\] in axes \(did you mean 'scheme'\?\)"),
    ({"base": {"stepz": 3}}, r"unknown config keys \['stepz'\] in base"),
    ({"include": [{"wrkers": 3}]}, r"unknown config keys \['wrkers'\] in include\[0\]"),
    ({"zip": [{"tolerate": [1, 2], "workers": [9]}]}, "equal lengths"),
    ({"axes": {"lr": [0.1]}, "exclude": [{"momentum": 0.9}]}, r"exclude\[0\] keys must be axes"),
    ({"axes": {"lr": [0.1]}, "zip": [{"lr": [0.2]}]}, "more than once"),
    ({"base": {"seed": 3}}, "may not set 'seed'"),
    ({"axes": {"lr": {"values": [0.1], "tune": "best"}}}, "unknown tune marker 'best'"),
    ({"axes": {"attack": {"values": ["alie"], "tune": "worst-case"}}}, "cannot be tuned"),
    ({"axes": {"lr": []}}, "non-empty list"),
    ({"seeds": [0, 0]}, "distinct"),
    ({"resources": {"gpus": 1}}, r"unknown resources keys \['gpus'\]"),
])
def test_bad_grids_raise_naming_the_key(data, match):
    with pytest.raises(ValueError, match=match):
        Grid.from_dict(data)


# -- worst-case tuning against brute force (no Ray) ------------------------------------------------------
def _brute_force(rows, schemes, lrs, moms, attacks):
    """For each scheme, every (lr, momentum) with a result for every attack: the worst accuracy;
    the setting with the best worst case, first in product order on ties."""
    look = {(r["scheme"], r["lr"], r["momentum"], r["attack"]): r["final_test_accuracy_mean"] for r in rows}
    chosen = {}
    for s in schemes:
        best = None
        for lr, mom in itertools.product(lrs, moms):
            accs = [look.get((s, lr, mom, a)) for a in attacks]
            if None in accs:
                continue
            if best is None or min(accs) > best[0]:
                best = (min(accs), lr, mom)
        chosen[s] = best
    return chosen


@pytest.mark.parametrize("seed", range(25))
def test_worst_case_tuning_matches_brute_force(seed):
    rng = random.Random(seed)
    schemes, lrs, moms, attacks = ["vanilla", "detox"], [0.1, 0.2, 0.3], [0.0, 0.9], ["alie", "ipm", "omniscient"]
    rows = []
    for s, lr, a, mom in itertools.product(schemes, lrs, attacks, moms):  # axes in a different order
        acc = rng.choice([0.5, 0.6, 0.7, 0.8, round(rng.random(), 3)])  # coarse values: ties happen
        if rng.random() < 0.1:
            acc = None  # an invalid or failed cell: that setting is not eligible
        rows.append({"scheme": s, "lr": lr, "attack": a, "momentum": mom, "seeds": 0 if acc is None else 2,
                     "final_test_accuracy_mean": acc})
    axes = ["scheme", "lr", "attack", "momentum"]
    tuned = worst_case(rows, axes, ["lr", "momentum"])
    # rows come in axis order (lr before momentum): product(lrs, moms) is the same tie order
    expect = _brute_force(rows, schemes, lrs, moms, attacks)
    assert [t["scheme"] for t in tuned] == schemes
    for t in tuned:
        best = expect[t["scheme"]]
        if best is None:
            assert t["worst_case_accuracy"] is None and t["lr"] is None
            continue
        assert (t["worst_case_accuracy"], t["lr"], t["momentum"]) == best
        per = [t[f"accuracy_{a}"] for a in attacks]
        assert min(per) == t["worst_case_accuracy"] and t[f"accuracy_{t['worst_attack']}"] == min(per)
    mark_best(rows, tuned, axes, ["lr", "momentum"])
    marked = {(r["scheme"], r["lr"], r["momentum"]) for r in rows if r["tuned_best"]}
    assert marked == {(s, b[1], b[2]) for s, b in expect.items() if b is not None}
    assert sum(r["tuned_best"] for r in rows) == len(attacks) * len(marked)


def test_tuning_without_an_attack_axis_takes_the_best_accuracy():
    rows = [{"scheme": "v", "lr": lr, "seeds": 1, "final_test_accuracy_mean": acc}
            for lr, acc in [(0.1, 0.7), (0.2, 0.9), (0.3, 0.8)]]
    (t,) = worst_case(rows, ["scheme", "lr"], ["lr"])
    assert t["lr"] == 0.2 and t["worst_case_accuracy"] == 0.9


# -- the shipped grids and the CLI's usage errors (no Ray) ----------------------------------------------
def test_list_names_every_shipped_grid_with_its_description(capsys):
    from codedbft.cli import main

    grids = shipped_grids()
    assert {"smoke", "redundancy", "detox-vs-vanilla", "byzshield-vs-detox"} <= set(grids)
    assert main(["sweep", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(grids)
    for (name, path), line in zip(grids.items(), lines):
        assert line.split()[0] == name and describe(path) and line.endswith(describe(path))
    assert resolve("smoke") == grids["smoke"] == resolve("smoke.yaml")
    import argparse

    from codedbft.sweep.cli import add_parser

    parser = add_parser(argparse.ArgumentParser().add_subparsers())
    assert all(a.help for a in parser._actions), "every flag has help text"
    assert {"--out", "--address", "--max-parallel", "--resume", "--plot", "--list", "--dry-run",
            "--no-progress"} <= {o for a in parser._actions for o in a.option_strings}


def test_shipped_grids_build_every_cell():
    """Every cell of every shipped grid builds its trainer (DETOX + Bulyan too: n = 21). Data encoding
    encodes the data in its constructor (~1 s a cell here): only its hardest cells (b = 3) are built."""
    sizes = {}
    for name, path in shipped_grids().items():
        g = Grid.from_file(path)
        sizes[name] = (len(g.cells()), len(list(g.runs())))
        d = g.to_dict()
        d["include"] = [i for i in d["include"] if i["scheme"] != "data-encoding" or i["byzantine"] == 3]
        errors = {c: e for c, e in Grid.from_dict(d).validate().items() if e}
        assert not errors, (name, errors)
    assert sizes["smoke"][1] == 8
    assert sizes["redundancy"] == (68, 68)  # 3 s x 2 attacks x 10 schemes - 2 + 2 (n = 14) + 6 data enc. + 2 clean
    assert sizes["detox-vs-vanilla"] == (24, 48) and sizes["byzshield-vs-detox"] == (16, 32)
    smoke = Grid.from_file(shipped_grids()["smoke"])
    assert smoke.tune_axes == ["lr"] and smoke.base["steps"] <= 20


def test_cli_usage_errors_exit_2_without_importing_ray(tmp_path):
    bad = {
        "keys.yaml": "axes: {scheme: [vanilla]}\nseedz: [0]\n",
        "axis.yaml": "axes: {schem: [vanilla]}\n",
        "zip.yaml": "zip: [{tolerate: [1, 2], workers: [9]}]\n",
        "yaml.yaml": "axes: [unclosed\n",
    }
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
    other = tmp_path / "other"
    other.mkdir()
    (other / "grid.yaml").write_text("axes: {lr: [0.5]}\n")
    good = tmp_path / "good.yaml"
    good.write_text(json.dumps(SMOKE))
    cases = [
        ([str(tmp_path / "keys.yaml")], "unknown grid keys ['seedz']"),
        ([str(tmp_path / "axis.yaml")], "did you mean 'scheme'?"),
        ([str(tmp_path / "zip.yaml")], "equal lengths"),
        ([str(tmp_path / "yaml.yaml")], "not valid YAML"),
        (["smok"], "did you mean 'smoke'?"),
        ([], "give a grid file"),
        ([str(good), "--out", str(other)], "holds a different grid"),
        ([str(good), "--resume", "--out", str(tmp_path / "empty")], "holds no sweep"),
        ([str(good), "--max-parallel", "0"], "--max-parallel must be >= 1"),
    ]
    script = textwrap.dedent(f"""
        import contextlib, io, sys
        from codedbft.cli import main
        for argv, match in {cases!r}:
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                try:
                    main(["sweep", "--no-progress", *argv]); code = 0
                except SystemExit as e:
                    code = e.code
            assert code == 2, (argv, code, err.getvalue())
            assert match in err.getvalue(), (argv, err.getvalue())
        assert "ray" not in sys.modules, "Ray was imported"
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "ok"
    assert not (other / "results.csv").exists()


def test_dry_run_lists_every_run_with_its_state_and_writes_nothing(tmp_path, capsys):
    from codedbft.cli import main

    good = tmp_path / "good.yaml"
    good.write_text(json.dumps(SMOKE))
    assert main(["sweep", str(good), "--dry-run", "--out", str(tmp_path / "dry")]) == 0
    text = capsys.readouterr().out
    assert text.count(" fresh ") == 4 and text.count(" invalid ") == 2 and "must divide n=4" in text
    assert text.rstrip().endswith("3 cells x 2 seeds = 6 runs: 4 fresh, 2 invalid")
    assert not (tmp_path / "dry").exists()


def test_a_missing_or_failing_plots_module_never_fails_a_sweep(tmp_path, monkeypatch, capsys):
    import types

    from codedbft.sweep import runner

    monkeypatch.setitem(sys.modules, "codedbft.sweep.plots", None)  # import fails
    assert runner._plots(tmp_path) == []
    broken = types.ModuleType("codedbft.sweep.plots")
    broken.plot_sweep = lambda out: 1 / 0
    monkeypatch.setitem(sys.modules, "codedbft.sweep.plots", broken)
    assert runner._plots(tmp_path) == []
    assert "ZeroDivisionError" in capsys.readouterr().err


# -- sweeps on the shared embedded Ray instance ----------------------------------------------------------
@pytest.fixture(scope="module")
def smoke(ray_session, tmp_path_factory):
    from codedbft.sweep import run_sweep

    out = tmp_path_factory.mktemp("sweep") / "smoke"
    # one task process: each new one pays ~10 s of imports and warm-up on this machine
    rows = run_sweep(Grid.from_dict(SMOKE), out, max_parallel=1, progress=False, plot=False)
    return out, rows


@pytest.mark.ray
def test_smoke_sweep_tables_match_the_run_directories(smoke):
    out, rows = smoke
    assert ray_is_up()  # the session's instance: not shut down by the sweep
    grid = Grid.from_dict(SMOKE)
    results = read_csv(out / "results.csv")
    assert list(results[0]) == result_columns(grid.axis_names)
    assert list(results[0])[:8] == ["cell", "seed", "status", "error", "scheme", "aggregator", "attack", "workers"]
    assert [(r["cell"], int(r["seed"])) for r in results] == [(c.id, s) for c, s in grid.runs()]
    status = {(r["cell"], r["seed"]): r["status"] for r in results}
    assert sorted(status.values()) == ["done"] * 4 + ["invalid"] * 2
    invalid = [r for r in results if r["status"] == "invalid"]
    assert {r["cell"] for r in invalid} == {"scheme=draco-repetition,workers=4"}
    assert all("must divide n=4" in r["error"] and r["workers"] == "4" and r["final_test_accuracy"] == "" for r in invalid)
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["axes"] == ["scheme", "aggregator"] and meta["tune"] == [] and meta["cells"] == 3
    assert (out / "grid.yaml").exists()

    for r, mem in zip(results, rows):
        if r["status"] != "done":
            continue
        rd = out / r["run_dir"]
        assert rd == out / "runs" / r["cell"] / f"seed={r['seed']}"
        summary = json.loads((rd / "summary.json").read_text())
        metrics = [json.loads(line) for line in (rd / "metrics.jsonl").read_text().splitlines()]
        assert [m["step"] for m in metrics] == list(range(6))
        assert r["model_sha256"] == summary["model_sha256"] == mem["model_sha256"]
        assert float(r["final_test_accuracy"]) == summary["final_test_accuracy"] == mem["final_test_accuracy"]
        assert float(r["best_test_accuracy"]) == max(m["test_accuracy"] for m in metrics if "test_accuracy" in m)
        assert float(r["step_ms"]) == pytest.approx(statistics.fmean(m["step_ms"] for m in metrics), rel=1e-12)
        assert float(r["exact_fraction"]) == statistics.fmean(m["exact"] for m in metrics)
        assert int(r["flagged_total"]) == summary["flagged_total"]
        assert float(r["redundancy"]) == pytest.approx(1 / summary["computation_efficiency"])
        assert json.loads((rd / "config.json").read_text())["seed"] == int(r["seed"])
    by_cell = {r["cell"]: r for r in results if r["status"] == "done"}
    assert float(by_cell["scheme=draco-repetition,aggregator=none"]["redundancy"]) == 3.0
    assert by_cell["scheme=draco-repetition,aggregator=none"]["exact_fraction"] == "1.0"

    summary = read_csv(out / "summary.csv")
    assert [s["cell"] for s in summary] == [c for c, _ in grid.cells()]
    for s in summary:
        done = [r for r in results if r["cell"] == s["cell"] and r["status"] == "done"]
        assert int(s["seeds"]) == len(done)
        for m in METRICS:
            vals = [float(r[m]) for r in done if r[m] != ""]
            if not vals:
                assert s[f"{m}_mean"] == "" and s[f"{m}_std"] == ""
                continue
            assert float(s[f"{m}_mean"]) == pytest.approx(statistics.fmean(vals), rel=1e-12, abs=1e-15)
            assert float(s[f"{m}_std"]) == pytest.approx(statistics.pstdev(vals), rel=1e-9, abs=1e-15)
    assert summary[-1]["seeds"] == "0" and "must divide n=4" in summary[-1]["error"]


def ray_is_up() -> bool:
    import ray

    return ray.is_initialized()


@pytest.mark.ray
def test_a_sweep_run_is_the_same_run_as_codedbft_train(smoke):
    """The task's warm-up step and the forced local backend change nothing: same model as a plain run."""
    from codedbft.cluster.trainer import make_trainer

    out, rows = smoke
    row = next(r for r in rows if r["status"] == "done" and r["seed"] == 1)
    overrides = dict(Grid.from_dict(SMOKE).cells())[row["cell"]]
    trainer = make_trainer(Grid.from_dict(SMOKE).config(overrides, 1))
    trainer.run()
    assert trainer.model_sha256 == row["model_sha256"]


@pytest.mark.ray
def test_an_interrupted_sweep_resumes_to_the_uninterrupted_results(smoke, tmp_path):
    from codedbft.sweep import plan_sweep, run_sweep

    ref_out, ref_rows = smoke
    grid = Grid.from_dict(SMOKE)
    out = tmp_path / "cut"
    shutil.copytree(ref_out, out)
    done = [r for r in ref_rows if r["status"] == "done"]
    resumed, restarted, missing, kept = (out / r["run_dir"] for r in done)
    # killed after the checkpoint at step 3: no summary, no final checkpoint, metrics rows after it
    (resumed / "summary.json").unlink()
    (resumed / "checkpoints" / "ckpt-00000006.pt").unlink()
    ckpt3 = (resumed / "checkpoints" / "ckpt-00000003.pt").stat().st_mtime_ns
    for p in restarted.iterdir():  # only config.json left: starts again
        if p.name != "config.json":
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    shutil.rmtree(missing)
    kept_mtime = (kept / "summary.json").stat().st_mtime_ns

    states = {(r.cell.id, r.seed): r.state for r in plan_sweep(grid, out).runs}
    assert [states[(r["cell"], r["seed"])] for r in done] == ["resume", "fresh", "fresh", "done"]
    with pytest.raises(ValueError, match=r"holds a different grid \(base\.steps: 6 -> 7\)"):
        plan_sweep(Grid.from_dict({**SMOKE, "base": {**BASE, "steps": 7}}), out)

    rows = run_sweep(grid, out, max_parallel=1, progress=False, plot=False)
    assert [(r["cell"], r["seed"], r["status"], r["model_sha256"]) for r in rows] == \
           [(r["cell"], r["seed"], r["status"], r["model_sha256"]) for r in ref_rows]
    assert (kept / "summary.json").stat().st_mtime_ns == kept_mtime  # finished: not redone
    assert (resumed / "checkpoints" / "ckpt-00000003.pt").stat().st_mtime_ns == ckpt3  # resumed, not restarted
    steps = [json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(6))  # rows after the checkpoint were dropped and written once
    assert [r["model_sha256"] for r in read_csv(out / "results.csv")] == [r["model_sha256"] or "" for r in ref_rows]


@pytest.mark.ray
def test_a_run_that_raises_is_a_failed_row_and_the_sweep_goes_on(ray_session, tmp_path):
    from codedbft.sweep import execute, plan_sweep

    grid = Grid.from_dict({**SMOKE, "zip": [], "include": [], "axes": {"scheme": ["vanilla"]}})
    plan = plan_sweep(grid, tmp_path / "out")
    plan.runs[1].config = {**plan.runs[1].config, "steps": 0}  # passes planning, raises in its task
    rows = execute(plan, max_parallel=1, progress=False, plot=False)
    assert [r["status"] for r in rows] == ["done", "failed"]
    assert rows[1]["error"] == "ValueError: steps must be >= 1, got 0" and rows[1]["model_sha256"] is None
    assert "Traceback" in (plan.runs[1].run_dir / "error.txt").read_text()
    assert [r["status"] for r in read_csv(tmp_path / "out" / "results.csv")] == ["done", "failed"]


# -- an existing cluster ---------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CURRENT = Path("/tmp/ray/ray_current_cluster")  # `ray start` records its address here


@contextlib.contextmanager
def _head(port: int, temp_dir: str):
    """``ray start --head --block`` in its own process group, ended by that group (the pattern of
    tests/test_runtime_cluster.py); the address record is left as it was."""
    before = CURRENT.read_bytes() if CURRENT.exists() else None
    exe = Path(sys.executable).with_name("ray")
    log_path = Path(temp_dir) / "head.log"
    log = open(log_path, "w")
    head = subprocess.Popen(
        [str(exe) if exe.exists() else "ray", "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
        start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in log_path.read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start --head did not come up:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield head
    finally:
        for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
            try:
                os.killpg(head.pid, sig)
            except ProcessLookupError:
                break
            try:
                head.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        log.close()
        if before is None:
            CURRENT.unlink(missing_ok=True)
        else:
            CURRENT.write_bytes(before)


@pytest.mark.ray
def test_sweep_on_an_existing_cluster_matches_the_embedded_one(smoke, tmp_path):
    """Two runs through ``codedbft sweep --address`` in a subprocess (this process holds the session's
    Ray): the head's session gets the sweep's driver, and the models are the embedded sweep's."""
    ref_out, ref_rows = smoke
    grid = {**SMOKE, "zip": [], "axes": {"scheme": ["vanilla"], "aggregator": ["median"]}, "include": []}
    path = tmp_path / "two.yaml"
    path.write_text(json.dumps(grid))
    port = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # short: Ray's socket paths live under it
    try:
        with _head(port, temp_dir) as head:
            env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
            cmd = [sys.executable, "-m", "codedbft.cli", "sweep", str(path), "--out", str(tmp_path / "out"),
                   "--address", f"127.0.0.1:{port}", "--no-progress", "--max-parallel", "1"]
            res = subprocess.run(cmd, capture_output=True, text=True, env={**env, "RAY_USAGE_STATS_ENABLED": "0"},
                                 timeout=300)
            assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
            assert head.poll() is None  # still up after the client left
            drivers = list(Path(temp_dir).glob("session_*/logs/python-core-driver-*"))
            assert drivers, "the sweep's driver never joined the head's session"
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    got = read_csv(tmp_path / "out" / "results.csv")
    assert [r["status"] for r in got] == ["done", "done"]
    ref = {(r["cell"], r["seed"]): r["model_sha256"] for r in ref_rows}
    assert [r["model_sha256"] for r in got] == [ref[("scheme=vanilla,aggregator=median", s)] for s in (0, 1)]
    assert "vanilla" in res.stdout and "2 runs (2 done)" in res.stdout


@pytest.mark.ray
def test_a_sweep_killed_mid_way_completes_on_rerun_without_redoing_finished_runs(ray_session, tmp_path):
    """A real kill: ``codedbft sweep`` in its own process group (its own embedded Ray) gets SIGKILL
    once its first run has finished; the rerun keeps that run's files, resumes or restarts the
    others, and ends on the models of an uninterrupted sweep."""
    from codedbft.sweep import run_sweep

    grid = {**SMOKE, "include": [], "base": {**BASE, "steps": 300, "eval_every": 100, "checkpoint_every": 50}}
    path = tmp_path / "kill.yaml"
    path.write_text(json.dumps(grid))
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [sys.executable, "-m", "codedbft.cli", "sweep", str(path), "--out", str(out), "--max-parallel", "1",
           "--no-progress"]
    proc = subprocess.Popen(cmd, env={**env, "RAY_USAGE_STATS_ENABLED": "0"}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob("runs/*/seed=*/summary.json")) and time.monotonic() < deadline:
            assert proc.poll() is None, "the sweep ended before it could be interrupted"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/seed=*/summary.json")}
    assert 1 <= len(finished) < 4
    rows = run_sweep(Grid.from_dict(grid), out, max_parallel=1, progress=False, plot=False)
    assert all(p.stat().st_mtime_ns == m for p, m in finished.items())  # finished runs: not redone
    ref = run_sweep(Grid.from_dict(grid), tmp_path / "ref", max_parallel=1, progress=False, plot=False)
    assert [r["status"] for r in rows] == ["done"] * 4
    assert [r["model_sha256"] for r in rows] == [r["model_sha256"] for r in ref]
