"""``codedbft reproduce``: the claim registry, the table, failures as rows, and reuse of finished runs."""

from __future__ import annotations

import json

import pytest

from codedbft.cli import main
from codedbft.reproduce import CLAIMS, Outcome, reproduce
from codedbft.reproduce.base import ERROR, HOLDS, MISSING, Claim, Context, train

#: one entry per claim issue 16 lists (DRACO x2, DETOX, ByzShield Tables 3 and 4, RRR, data encoding,
#: UBAR convergence and aggregation time, ByzSGD, ByGARS++)
EXPECTED = {"draco-identical", "draco-speed", "detox-vs-vanilla", "byzshield-table3", "byzshield-table4",
            "rrr-efficiency", "data-encoding-bound", "ubar-convergence", "ubar-aggregation-time", "byzsgd-servers",
            "bygars-any-number"}


def test_list_names_every_claim_with_its_paper(capsys):
    assert main(["reproduce", "--list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {c["name"] for c in listed} == EXPECTED
    for c in listed:
        assert c["paper"] and c["where"] and c["paper_value"] and c["missing"] is None


def test_unknown_claim_exits_2_before_running_and_suggests(capsys, tmp_path):
    with pytest.raises(SystemExit) as err:
        main(["reproduce", "draco-identicl", "--out", str(tmp_path / "o")])
    assert err.value.code == 2
    assert "did you mean 'draco-identical'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_the_tables_reproduce_exactly_and_the_outputs_are_written(tmp_path, capsys):
    assert main(["reproduce", "byzshield-table3", "byzshield-table4", "--quick", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    rows = json.loads((tmp_path / "reproduce.json").read_text())["claims"]
    assert [r["verdict"] for r in rows] == [HOLDS, HOLDS]
    assert rows[1]["numbers"]["ramanujan"] == {"3": 0.04, "4": 0.04, "5": 0.08, "6": 0.16, "7": 0.2}
    md = (tmp_path / "reproduce.md").read_text()
    assert "| `byzshield-table4` |" in md and "**holds**" in md


def _temporary(name: str, run, requires=lambda: None) -> Claim:
    c = Claim(name, "Test paper", "Table 0", "a statement", "42", run, requires)
    CLAIMS.register(name, c, params=())
    return c


def test_a_failing_claim_is_a_row_and_the_next_one_still_runs(tmp_path):
    def boom(ctx: Context) -> Outcome:
        raise RuntimeError("the experiment broke")

    _temporary("zz-boom", boom)
    _temporary("zz-missing", boom, requires=lambda: "a GPU")
    try:
        got = reproduce(["zz-boom", "zz-missing", "byzshield-table3"], quick=True, out=tmp_path, progress=False)
    finally:
        CLAIMS.unregister("zz-boom")
        CLAIMS.unregister("zz-missing")
    assert [r.verdict for r in got] == [ERROR, MISSING, HOLDS]
    # a later reproduction of one claim into the same OUT keeps the other rows of the table
    reproduce(["byzshield-table4"], quick=True, out=tmp_path, progress=False)
    rows = json.loads((tmp_path / "reproduce.json").read_text())["claims"]
    assert [r["claim"] for r in rows] == ["byzshield-table3", "byzshield-table4"]
    assert "the experiment broke" in got[0].ours and "a GPU" in got[1].ours
    assert "Traceback" in (tmp_path / "zz-boom" / "error.txt").read_text()


def test_a_rerun_reuses_finished_runs(tmp_path):
    ctx = Context(tmp_path, quick=True, progress=False)
    cfg = dict(backend="local", scheme="draco-repetition", workers=6, byzantine=1, dataset="digits", model="logreg",
               batch_size=60, steps=3, eval_every=3)
    first = train(ctx, "r", **cfg)
    stamp = (tmp_path / "runs" / "r" / "summary.json").stat().st_mtime_ns
    again = train(ctx, "r", **cfg)
    assert again["model_sha256"] == first["model_sha256"]
    assert (tmp_path / "runs" / "r" / "summary.json").stat().st_mtime_ns == stamp  # not run again
    assert len(first["rows"]) == 3 and first["run_dir"].endswith("runs/r")


def test_an_outcome_verdict_is_one_of_three():
    with pytest.raises(ValueError, match="verdict"):
        Outcome("x", "maybe")
