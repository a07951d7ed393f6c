"""``codedbft train``: invalid combinations exit with code 2 before anything starts (no Ray import),
config files with flag overrides, and ``--resume`` reaching the uninterrupted run's model."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from codedbft.cli import main

INVALID = [
    (["--workers", "14"], "must divide n=14"),
    (["--workers", "3", "--byzantine", "2"], "2s+1"),
    (["--scheme", "draco-cyclic", "--workers", "4", "--byzantine", "2"], "2s"),
    (["--scheme", "detox", "--workers", "15", "--bucket", "2"], "bucket"),
    (["--scheme", "vanilla", "--aggregator", "krum", "--workers", "5", "--byzantine", "2"], "n >="),
    (["--scheme", "draco-repetition", "--aggregator", "krum"], "aggregator"),
    (["--attack", "nonsense"], "unknown attack 'nonsense' (one of: alie,"),
    (["--attack", "alie2"], "did you mean 'alie' or 'alie-opt'?"),
    (["--aggregator", "krun", "--scheme", "vanilla"], "did you mean 'krum'?"),
    (["--placement", "fixed"], "placement_ids"),
    (["--backend", "local", "--address", "10.0.0.1:6379"], "address"),
    (["--batch-size", "2"], "batch_size"),
    (["--byzantine", "16"], "byzantine <= workers"),
    (["--dataset", "cifar"], "unknown dataset 'cifar'"),
    (["--scheme", "nope"], "unknown scheme 'nope'"),
    (["--scheme", "draco-cyclc"], "did you mean 'draco-cyclic'?"),
    # unknown parameter keys: exit 2 naming the key and listing the valid ones (never a TypeError)
    (["--attack", "alie", "--attack-param", "zz=1"], "unknown attack parameter ['zz'] for 'alie'; valid: ['z']"),
    (["--scheme-param", "foo=bar"], "unknown scheme parameter ['foo'] for 'draco-repetition'; valid: none"),
    (["--scheme", "rrr-randomized", "--scheme-param", "p=0.2"], "valid: ['q']"),
    (["--dataset-param", "foo=1"], "foo"),
    (["--model-param", "foo=1"], "foo"),
    (["--scheme", "vanilla", "--aggregator", "median", "--aggregator-param", "zz=1"],
     "unknown aggregator parameter ['zz'] for 'median'"),
    (["--scheme", "detox", "--aggregator", "multi-krum", "--aggregator-param", "zz=1"], "'zz'"),
    (["--scheme", "byzshield", "--aggregator", "median", "--aggregator-param", "zz=1"], "'zz'"),
]


def test_invalid_combinations_exit_2_without_starting_ray(tmp_path):
    """One subprocess checks every case: exit code 2, the constraint in the message, Ray never imported."""
    script = textwrap.dedent(f"""
        import contextlib, io, sys
        from codedbft.cli import main
        for argv, match in {INVALID!r}:
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                try:
                    main(["train", "--no-progress", "--run-dir", {str(tmp_path)!r}, *argv])
                    code = 0
                except SystemExit as e:
                    code = e.code
            assert code == 2, (argv, code, err.getvalue())
            assert match in err.getvalue(), (argv, err.getvalue())
        assert "ray" not in sys.modules, "Ray was imported for an invalid configuration"
        print("ok", len({INVALID!r}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"ok {len(INVALID)}"


def test_config_file_with_flag_overrides_and_resume(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(textwrap.dedent("""
        backend: local
        workers: 6
        byzantine: 1
        model: logreg
        batch-size: 60
        steps: 3
        lr: 0.5
        checkpoint_every: 4
        attack: sign-flip
        attack_params: {c: 4}
    """))
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["train", "--config", str(cfg), "--steps", "9", "--run-dir", str(full), "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "model_sha256" in table and "final_test_accuracy" in table
    config = json.loads((full / "config.json").read_text())
    assert config["steps"] == 9 and config["lr"] == 0.5 and config["attack_params"] == {"c": 4}
    # The same run stopped at step 6 (checkpoint at 4), then resumed to 9.
    assert main(["train", "--config", str(cfg), "--steps", "6", "--run-dir", str(cut), "--no-progress"]) == 0
    # --backend is one of the keys a resume may change (it used to collide with resume's backend object)
    assert main(["train", "--resume", str(cut), "--steps", "9", "--backend", "local", "--no-progress"]) == 0
    a = json.loads((full / "summary.json").read_text())
    b = json.loads((cut / "summary.json").read_text())
    assert a["model_sha256"] == b["model_sha256"] and b["steps"] == 9
    assert a["flagged_total"] == b["flagged_total"] == 9


def test_resume_of_a_missing_directory_or_with_a_changed_computation_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--resume", str(tmp_path / "nothing")])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["train", "--resume", str(tmp_path / "nothing"), "--lr", "0.3"])
    assert e.value.code == 2 and "only steps" in capsys.readouterr().err


def test_train_help_lists_every_registered_name_with_its_description(capsys):
    from codedbft.cli import _registries

    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines (never inside a name)
    for kind, registry in _registries().items():
        for name in registry.available():
            assert name in text, (kind, name)
    assert "alie" in text and "(default: omniscient)" in text and "(default: draco-repetition)" in text
    assert all(a.help for a in _train_actions() if a.dest != "help"), "every flag has help text"


def _train_actions():
    import argparse

    from codedbft.cli import _train_parser

    parser = argparse.ArgumentParser()
    return _train_parser(parser.add_subparsers())._actions


def test_the_final_table_names_the_flagged_workers(tmp_path, capsys):
    from codedbft.cli import main

    main(["train", "--backend", "local", "--scheme", "draco-repetition", "--workers", "6", "--byzantine", "1",
          "--tolerate", "1", "--placement", "fixed", "--placement-ids", "4", "--model", "logreg", "--batch-size", "60",
          "--steps", "3", "--run-dir", str(tmp_path / "r"), "--no-progress"])
    table = capsys.readouterr().out
    rows = {line.split("|")[0].strip(): line.split("|")[-1].strip() for line in table.splitlines() if "|" in line}
    assert rows["flagged_total"] == "3" and rows["flagged_workers"] == "4 (3x)"
