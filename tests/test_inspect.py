"""``codedbft inspect``: the content of each report (assignment, guarantee, distortion table, registry
listings, a real run directory, a hand-written sweep directory), exit code 2 with a message naming the
constraint for bad input, ``--json`` printing exactly one JSON object, and the help of ``codedbft train``."""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import subprocess
import sys

import pytest

from codedbft.cli import _train_parser, main


def run(capsys, *argv):
    """``codedbft ARGV`` -> (exit code, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)  # the whole of stdout is one JSON object


# ---------------------------------------------------------------------------------------------
# inspect code
# ---------------------------------------------------------------------------------------------


def test_code_draco_repetition_text(capsys):
    code, out, _ = run(capsys, "inspect", "code", "draco-repetition", "--workers", "9", "--byzantine", "1")
    assert code == 0
    assert "n = 9 workers, k = 3 partitions, redundancy 3 " in out
    assert "group 0: workers [0, 1, 2]" in out  # worker 0 in a group of 3 ...
    assert "groups of 3" in out
    assert re.search(r"^  worker 0: \[0\]$", out, re.M)  # ... holding partition 0
    assert re.search(r"^  partition 0: \[0, 1, 2\]  3 copies$", out, re.M)
    assert "exact while 2·errors + erasures ≤ 2s = 2" in out
    assert "1 error + up to 0 erasures" in out and "0 errors + up to 2 erasures" in out
    assert re.search(r"^  2  1/3 +0\.3333 +\[0, 1\]$", out, re.M)  # two liars win one group
    assert "one vector of d" in out and "(d,) x 9 workers" in out


def test_code_json_matches_the_scheme(capsys):
    from codedbft.schemes import SchemeConfig, build_scheme

    rep = run_json(capsys, "inspect", "code", "draco-repetition", "--workers", "9", "--byzantine", "1")
    scheme = build_scheme(SchemeConfig(name="draco-repetition", workers=9, byzantine=1))
    assert rep["assignment"] == [list(a) for a in scheme.assignment]
    assert rep["k"] == 3 and rep["n"] == 9 and rep["redundancy"] == 3.0
    assert rep["holders"][0] == [0, 1, 2] and rep["groups"][0] == [0, 1, 2] and rep["group_size"] == 3
    assert rep["guarantee"]["exact"] is True
    assert rep["guarantee"]["corrects"]["pairs"] == [{"errors": 0, "erasures": 2}, {"errors": 1, "erasures": 0}]
    assert [d["q"] for d in rep["distortion"]] == [1, 2]
    assert rep["message"]["shapes"] == {"(d,)": 9}


def test_code_byzshield_distortion_table(capsys):
    from codedbft.schemes import SchemeConfig, build_scheme

    rep = run_json(capsys, "inspect", "code", "byzshield", "--workers", "15", "--byzantine", "2")
    code = build_scheme(SchemeConfig(name="byzshield", workers=15, byzantine=2)).code
    assert [d["q"] for d in rep["distortion"]] == [1, 2, 3, 4]  # q = 1..2s
    for row in rep["distortion"]:
        fraction, ids = code.max_distortion(row["q"])
        assert row["fraction"] == pytest.approx(fraction) and row["workers"] == list(ids)
        assert row["partitions"] == round(fraction * code.k) and row["method"] == "exhaustive"
    assert rep["assignment"] == [list(a) for a in code.assignment]
    assert rep["k"] == 25 and rep["redundancy"] == 3.0
    assert rep["message"]["kind"] == "stacked" and rep["message"]["shapes"] == {"(5, d)": 15}
    assert rep["guarantee"]["max_tolerated"] == code.max_tolerated()

    _, out, _ = run(capsys, "inspect", "code", "byzshield", "--workers", "15", "--byzantine", "2", "--max-q", "5")
    for q in range(1, 6):  # the text table: the same figures, and --max-q extends it
        fraction, ids = code.max_distortion(q)
        files = round(fraction * 25)
        assert re.search(rf"^  {q}  {files}/25 +{fraction:.4f} +\[{', '.join(map(str, ids))}\] +exhaustive", out, re.M)
    assert "(5, d) x 15 workers" in out and "max_tolerated" in out


def test_code_other_schemes(capsys):
    rep = run_json(capsys, "inspect", "code", "draco-cyclic", "--workers", "5", "--byzantine", "1")
    assert rep["assignment"][3] == [3, 4, 0] and rep["distortion"] is None
    assert all(len(c) == 3 and sum(c) == pytest.approx(1.0) for c in rep["coefficients"])  # convex combinations
    rep = run_json(capsys, "inspect", "code", "detox", "--workers", "9", "--byzantine", "2")
    assert rep["guarantee"]["exact"] is False and "floor(b/2) = 1" in rep["guarantee"]["text"]
    assert [d["partitions"] for d in rep["distortion"]] == [0, 1, 1, 2]
    rep = run_json(capsys, "inspect", "code", "vanilla", "--workers", "5", "--byzantine", "1", "--aggregator", "median")
    assert rep["redundancy"] == 1.0 and "median" in rep["guarantee"]["text"] and rep["code"] is None
    rep = run_json(capsys, "inspect", "code", "rrr", "--workers", "7", "--byzantine", "2")
    assert rep["assignment"][6] == [] and rep["message"]["interactive"] is True
    rep = run_json(capsys, "inspect", "code", "rrr-randomized", "--workers", "5", "--byzantine", "1",
                   "--scheme-param", "q=0.3")
    assert "q = 0.3" in rep["guarantee"]["text"]
    rep = run_json(capsys, "inspect", "code", "data-encoding", "--workers", "7", "--byzantine", "2")
    assert rep["k"] == 3 and rep["message"]["kind"] == "operations" and "2t = 4" in rep["guarantee"]["text"]


@pytest.mark.parametrize("argv, needle", [
    (["byzshild"], "did you mean 'byzshield'?"),
    (["draco-repetition", "--workers", "2", "--byzantine", "1"], "n >= 2s+1"),
    (["byzshield", "--workers", "14"], "must divide n=14"),
    (["draco-cyclic", "--workers", "6", "--byzantine", "1"], "n odd"),
    (["vanilla", "--workers", "3", "--byzantine", "5"], "byzantine <= workers"),
    (["detox", "--scheme-param", "foo=1"], "unknown scheme parameter ['foo']"),
    (["vanilla", "--aggregator", "krun"], "did you mean 'krum'?"),
    (["byzshield", "--max-q", "-1"], "--max-q must be >= 0"),
])
def test_code_bad_input_exits_2(capsys, argv, needle):
    code, out, err = run(capsys, "inspect", "code", *argv)
    assert code == 2 and needle in err and out == ""


# ---------------------------------------------------------------------------------------------
# inspect schemes and the registries
# ---------------------------------------------------------------------------------------------


def test_schemes_byzshield_parameters(capsys):
    from codedbft.schemes.registry import RUNTIME_PARAMS, SCHEMES

    code, out, _ = run(capsys, "inspect", "schemes", "byzshield")
    assert code == 0
    assert re.search(r"^  r +group_size or 3$", out, re.M) and re.search(r"^  l +unset$", out, re.M)
    assert re.search(r"^  group_size +--group-size +3 ", out, re.M)
    assert re.search(r"^  aggregator +--aggregator +median ", out, re.M)
    assert "l must be a prime or a prime power" in out and "byzshield needs n = r*l" in out
    rep = run_json(capsys, "inspect", "schemes", "byzshield")
    assert [p["name"] for p in rep["scheme_params"]] == [p for p in SCHEMES.params("byzshield") if p not in RUNTIME_PARAMS]
    assert rep["help"] == SCHEMES.help("byzshield") and rep["code"] == "ByzShieldCode"
    options = {o["name"]: o["default"] for o in rep["options"]}
    assert options["group_size"] == 3 and options["workers"] == 15 and "tolerate" not in options


def test_schemes_listing(capsys):
    from codedbft.schemes.registry import SCHEMES

    rep = run_json(capsys, "inspect", "schemes")
    assert [s["name"] for s in rep["schemes"]] == list(SCHEMES.available())
    by = {s["name"]: s for s in rep["schemes"]}
    assert [(p["name"], p["default"]) for p in by["rrr-randomized"]["scheme_params"]] == [("q", 0.1)]
    assert any("n >= 2s+1" in c for c in by["draco-repetition"]["constraints"])
    assert any("n odd" in c for c in by["draco-cyclic"]["constraints"])
    assert not any("n odd" in c for c in by["draco-repetition"]["constraints"])
    assert {o["name"]: o["default"] for o in by["detox"]["options"]}["bucket"] == 1
    code, out, _ = run(capsys, "inspect", "schemes")
    assert code == 0 and all(re.search(rf"^  {re.escape(n)} ", out, re.M) for n in SCHEMES.available())
    code, _, err = run(capsys, "inspect", "schemes", "dracco-cyclic")
    assert code == 2 and "did you mean 'draco-cyclic'" in err


def test_registry_listings(capsys):
    import importlib

    from codedbft.inspection import LISTINGS

    for what, (module, attr, *_) in LISTINGS.items():
        registry = getattr(importlib.import_module(module), attr)
        rep = run_json(capsys, "inspect", what)
        assert [e["name"] for e in rep["entries"]] == list(registry.available()), what
        assert [e["help"] for e in rep["entries"]] == [registry.help(n) for n in registry.available()]
        code, out, _ = run(capsys, "inspect", what)
        assert code == 0 and all(re.search(rf"^  {re.escape(n)} ", out, re.M) for n in registry.available()), what
    rep = run_json(capsys, "inspect", "attacks", "alie")
    assert [p["name"] for p in rep["entry"]["params"]] == ["z"]
    rep = run_json(capsys, "inspect", "pre", "bucketing")  # the alias of pre-aggregators
    assert {p["name"]: p["default"] for p in rep["entry"]["params"]}["s"] == 2
    code, out, _ = run(capsys, "inspect", "splits", "dirichlet")
    assert code == 0 and re.search(r"^  alpha +0\.5$", out, re.M)
    code, _, err = run(capsys, "inspect", "attacks", "alei")
    assert code == 2 and "did you mean 'alie'" in err


# ---------------------------------------------------------------------------------------------
# inspect run
# ---------------------------------------------------------------------------------------------


RUN = dict(backend="local", scheme="vanilla", aggregator="median", workers=5, byzantine=1, attack="alie",
           dataset="digits", model="logreg", batch_size=50, steps=4, eval_every=4)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from codedbft.cluster import Master, RunConfig

    root = tmp_path_factory.mktemp("inspect") / "run"
    master = Master(RunConfig(**RUN), run_dir=str(root))
    try:
        master.run()
    finally:
        master.close()
    return root


def _histogram(out):
    """{worker: (flag count, bar length, byz steps or None)} from the text histogram."""
    rows = {}
    for m in re.finditer(r"^  worker +(\d+) \| +(\d+) ?(#*)(?: +byz (\d+))?$", out, re.M):
        rows[int(m.group(1))] = (int(m.group(2)), len(m.group(3)), None if m.group(4) is None else int(m.group(4)))
    return rows


def test_run_report(capsys, run_dir):
    from dataclasses import fields

    from codedbft.cluster import RunConfig

    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    byz = [sum(w in r["byzantine"] for r in metrics) for w in range(5)]
    assert sum(byz) == 4  # one Byzantine worker on each of the 4 steps

    code, out, _ = run(capsys, "inspect", "run", str(run_dir))
    assert code == 0
    hist = _histogram(out)
    assert [hist[w][0] for w in range(5)] == summary["flagged_per_worker"]
    assert [hist[w][2] or 0 for w in range(5)] == byz
    assert re.search(r"^  \* scheme +vanilla +\(default: draco-repetition\)$", out, re.M)
    assert re.search(r"^  \* workers +5 +\(default: 15\)$", out, re.M)
    assert re.search(r"^    lr +0\.1$", out, re.M)  # a default value, not marked
    assert str(run_dir / "plots" / "loss.png") in out and "metrics.jsonl: 4 rows, steps 0..3" in out
    assert re.search(rf"^  final_test_accuracy +{summary['final_test_accuracy']:.4g}$", out, re.M)

    rep = run_json(capsys, "inspect", "run", str(run_dir))
    assert rep["flagged_per_worker"] == summary["flagged_per_worker"] and rep["summary"] == summary
    assert rep["byzantine_steps_per_worker"] == byz and rep["byzantine_workers"] == [w for w in range(5) if byz[w]]
    defaults = {f.name: f.default for f in fields(RunConfig)}
    assert set(rep["changed"]) == {k for k, v in RUN.items() if v != defaults[k]}
    assert rep["changed"]["steps"] == {"value": 4, "default": 300}
    assert "scheme_info" in rep["extra"]
    assert {p.rsplit("/", 1)[-1] for p in rep["plots"]} == {"loss.png", "accuracy.png"}

    code, out, _ = run(capsys, "inspect", "run", str(run_dir), "--changed")
    assert code == 0 and "* steps" in out and not re.search(r"^    lr ", out, re.M)


def test_run_histogram_bars(capsys, run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    summary = json.loads((copy / "summary.json").read_text())
    summary["flagged_per_worker"] = [0, 4, 0, 1, 2]
    (copy / "summary.json").write_text(json.dumps(summary))
    code, out, _ = run(capsys, "inspect", "run", str(copy))
    assert code == 0
    hist = _histogram(out)
    assert [hist[w][0] for w in range(5)] == [0, 4, 0, 1, 2]
    assert [hist[w][1] for w in range(5)] == [0, 40, 0, 10, 20]  # bars scaled to the largest count
    assert "total 7" in out

    (copy / "summary.json").unlink()  # an unfinished run: flags counted from metrics.jsonl
    rep = run_json(capsys, "inspect", "run", str(copy))
    assert rep["summary"] is None and rep["flagged_source"] == "metrics.jsonl flagged lists"
    assert rep["flagged_per_worker"] == [0] * 5


def test_run_bad_dirs_exit_2(capsys, tmp_path):
    code, out, err = run(capsys, "inspect", "run", str(tmp_path / "missing"))
    assert code == 2 and "no such run directory" in err and out == ""
    code, _, err = run(capsys, "inspect", "run", str(tmp_path))
    assert code == 2 and "is not a run directory (no config.json" in err
    (tmp_path / "config.json").write_text("{not json")
    code, _, err = run(capsys, "inspect", "run", str(tmp_path))
    assert code == 2 and "cannot read" in err


# ---------------------------------------------------------------------------------------------
# inspect sweep (a directory written by hand: independent of the sweep code)
# ---------------------------------------------------------------------------------------------


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture
def sweep_dir(tmp_path):
    root = tmp_path / "sweep"
    (root / "plots" / "by-attack").mkdir(parents=True)
    cells = [{"scheme": s, "attack": a} for s in ("vanilla", "detox") for a in ("alie", "ipm")]
    (root / "sweep.json").write_text(json.dumps({"name": "grid", "axes": {"scheme": ["vanilla", "detox"],
                                                                          "attack": ["alie", "ipm"]},
                                                 "tune": None, "seeds": [0, 1], "cells": cells}))
    _write_csv(root / "results.csv",
               ["cell", "seed", "status", "error", "scheme", "attack", "final_test_accuracy", "step_ms", "run_dir"],
               [[0, 0, "ok", "", "vanilla", "alie", 0.81, 12.5, "r/0-0"], [0, 1, "ok", "", "vanilla", "alie", 0.83, 12.7, "r/0-1"],
                [1, 0, "ok", "", "vanilla", "ipm", 0.52, 12.1, "r/1-0"],
                [1, 1, "failed", "RuntimeError: worker 3 died", "vanilla", "ipm", "", "", "r/1-1"],
                [2, 0, "ok", "", "detox", "alie", 0.91, 20.0, "r/2-0"], [2, 1, "ok", "", "detox", "alie", 0.90, 19.0, "r/2-1"],
                [3, 0, "invalid", "ValueError: detox needs bucket | k", "detox", "ipm", "", "", ""],
                [3, 1, "invalid", "ValueError: detox needs bucket | k", "detox", "ipm", "", "", ""]])
    _write_csv(root / "summary.csv",
               ["cell", "scheme", "attack", "seeds", "final_test_accuracy_mean", "final_test_accuracy_std",
                "step_ms_mean", "step_ms_std", "flagged_total_mean"],
               [[0, "vanilla", "alie", 2, 0.82, 0.0141421356, 12.6, 0.14, 0],
                [1, "vanilla", "ipm", 1, 0.52, 0.0, 12.1, 0.0, 0],
                [2, "detox", "alie", 2, 0.905, 0.00707107, 19.5, 0.7, 3.5],
                [3, "detox", "ipm", 0, "", "", "", "", ""]])
    for name in ("accuracy.png", "by-attack/alie.png"):
        (root / "plots" / name).write_bytes(b"\x89PNG")
    return root


def test_sweep_report(capsys, sweep_dir):
    code, out, _ = run(capsys, "inspect", "sweep", str(sweep_dir))
    assert code == 0
    assert "sweep grid" in out and "cells: 4, runs: 8" in out
    assert "status (results.csv): failed 1, invalid 2, ok 5" in out
    lines = out.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.split()[:3] == ["cell", "scheme", "attack"])
    assert lines[head].split() == ["cell", "scheme", "attack", "seeds", "final_test_accuracy_mean",
                                   "final_test_accuracy_std", "step_ms_mean"]
    assert lines[head + 2].split() == ["0", "vanilla", "alie", "2", "0.82", "0.01414", "12.6"]
    assert lines[head + 5].split() == ["3", "detox", "ipm", "0", "-", "-", "-"]
    col = lines[head].index("final_test_accuracy_mean")  # aligned: every value starts under its header
    assert all(lines[head + 2 + i][col - 2:col] == "  " and lines[head + 2 + i][col] != " " for i in range(4))
    assert "cell 1 seed 1 [failed] (scheme=vanilla, attack=ipm): RuntimeError: worker 3 died" in out
    assert out.count("ValueError: detox needs bucket | k") == 2
    assert str(sweep_dir / "plots" / "accuracy.png") in out and str(sweep_dir / "plots" / "by-attack" / "alie.png") in out

    rep = run_json(capsys, "inspect", "sweep", str(sweep_dir))
    assert rep["status_counts"] == {"ok": 5, "failed": 1, "invalid": 2} and rep["seeds"] == [0, 1]
    assert [(f["cell"], f["seed"], f["status"]) for f in rep["failures"]] == [("1", "1", "failed"), ("3", "0", "invalid"),
                                                                           ("3", "1", "invalid")]
    with open(sweep_dir / "summary.csv", newline="") as f:
        assert rep["summary"]["rows"] == list(csv.DictReader(f))
    assert rep["axis_names"] == ["scheme", "attack"] and rep["tuned"] is None and len(rep["plots"]) == 2

    code, out, _ = run(capsys, "inspect", "sweep", str(sweep_dir), "--columns", "scheme,flagged_total_mean")
    assert code == 0 and re.search(r"^  detox +3\.5$", out, re.M)


def test_sweep_tuned_and_partial(capsys, sweep_dir):
    _write_csv(sweep_dir / "tuned.csv", ["scheme", "lr", "final_test_accuracy_mean"], [["vanilla", 0.05, 0.83]])
    (sweep_dir / "sweep.json").unlink()  # no sweep.json: the axes are the summary's non-statistic columns
    rep = run_json(capsys, "inspect", "sweep", str(sweep_dir))
    assert rep["axis_names"] == ["scheme", "attack"] and rep["tuned"]["rows"] == [
        {"scheme": "vanilla", "lr": "0.05", "final_test_accuracy_mean": "0.83"}]
    code, out, _ = run(capsys, "inspect", "sweep", str(sweep_dir))
    assert code == 0 and "tuned.csv (1 rows)" in out and re.search(r"^  vanilla +0\.05 +0\.83$", out, re.M)


def test_sweep_bad_input_exits_2(capsys, sweep_dir, tmp_path):
    code, _, err = run(capsys, "inspect", "sweep", str(tmp_path / "missing"))
    assert code == 2 and "no such sweep directory" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "inspect", "sweep", str(tmp_path / "empty"))
    assert code == 2 and "is not a sweep directory" in err
    code, _, err = run(capsys, "inspect", "sweep", str(sweep_dir), "--columns", "nope")
    assert code == 2 and "'nope'" in err and "not in summary.csv" in err


# ---------------------------------------------------------------------------------------------
# help texts and import cost
# ---------------------------------------------------------------------------------------------


def test_train_help_lists_every_attack(capsys):
    from codedbft.attacks.base import ATTACKS

    code, out, _ = run(capsys, "train", "--help")
    assert code == 0
    for name in ATTACKS.available():
        assert re.search(rf"^\s+{re.escape(name)}: ", out, re.M), name


def _actions(parser):
    for action in parser._actions:
        yield parser, action
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                yield from _actions(sub)


def test_every_train_flag_has_help():
    parser = _train_parser(argparse.ArgumentParser().add_subparsers())
    missing = [a.dest for _, a in _actions(parser) if not (a.help and a.help.strip())]
    assert not missing, missing


def test_every_inspect_flag_has_help():
    from codedbft.inspection import add_parser

    sub = argparse.ArgumentParser().add_subparsers()
    add_parser(sub)
    parser = sub.choices["inspect"]
    missing = [(p.prog, a.dest) for p, a in _actions(parser)
               if not isinstance(a, argparse._SubParsersAction) and not (a.help and a.help.strip())]
    assert not missing, missing
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert all(c.help for c in commands._choices_actions)  # each WHAT has a line in `inspect --help`


def test_module_import_is_light():
    code = "import sys, codedbft.inspection; print(sorted(m for m in ('torch', 'ray', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
