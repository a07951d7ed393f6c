"""Interrupted runs (docs/reliability.md): SIGINT/SIGTERM stop ``codedbft train`` cleanly (checkpoint,
summary marked interrupted, exit 130/143, embedded Ray shut down) and ``--resume`` reaches the
uninterrupted model; a torn last checkpoint is skipped for the previous one; a checkpoint of another
configuration or version is refused; a full disk ends the run with exit 1 and leaves the last good
checkpoint and no temporary file."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from codedbft.cli import main
from codedbft.cluster import RunConfig
from codedbft.cluster import rundir as rundir_mod
from codedbft.cluster import trainer as trainer_mod
from codedbft.cluster.master import Master
from codedbft.cluster.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
STEPS = 400
KW = dict(backend="local", scheme="draco-repetition", workers=6, byzantine=1, tolerate=1, model="logreg",
          batch_size=60, steps=STEPS, checkpoint_every=50)
ARGV = ["train", "--backend", "local", "--scheme", "draco-repetition", "--workers", "6", "--byzantine", "1",
        "--tolerate", "1", "--model", "logreg", "--batch-size", "60", "--steps", str(STEPS),
        "--checkpoint-every", "50", "--no-progress"]


@pytest.fixture(scope="module")
def reference_sha() -> str:
    """The uninterrupted 400-step model, in process."""
    return Master(RunConfig(**KW)).run()["model_sha256"]


def _rows(run_dir: Path) -> int:
    try:
        return len((run_dir / "metrics.jsonl").read_text().splitlines())
    except FileNotFoundError:
        return 0


def _children(pid: int) -> dict[int, str]:
    """Every live descendant of ``pid`` (pid -> command name), from /proc."""
    parent: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
            if rest[0] != "Z":
                parent[int(entry)], names[int(entry)] = int(rest[1]), name
    out, todo = {}, [pid]
    while todo:
        p = todo.pop()
        for c, pp in parent.items():
            if pp == p and c not in out:
                out[c] = names[c]
                todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _interrupt(run_dir: Path, sig: int, extra: tuple[str, ...] = (), env: dict | None = None,
               watch_children: bool = False) -> tuple[subprocess.CompletedProcess, dict[int, str], int]:
    """Start ``codedbft train`` in its own session, wait for metrics rows, send ``sig`` to it alone."""
    proc = subprocess.Popen([sys.executable, "-m", "codedbft.cli", *ARGV, "--run-dir", str(run_dir), *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, **(env or {})})
    seen: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 120
        while _rows(run_dir) < 1:
            assert proc.poll() is None, f"training ended before the signal: {proc.communicate()}"
            assert time.monotonic() < deadline, "no metrics rows in time"
            time.sleep(0.005)
        if watch_children:
            seen = _children(proc.pid)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)  # only the session this test started
        proc.wait()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), seen, proc.pid


def _check_interrupted(run_dir: Path, res: subprocess.CompletedProcess, sig: int) -> int:
    assert res.returncode == 128 + sig, (res.returncode, res.stderr[-3000:])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["signal"] == signal.Signals(sig).name
    assert 0 < summary["steps"] < STEPS, "the signal came after the run had finished"
    ckpts = sorted((run_dir / "checkpoints").iterdir())
    assert ckpts[-1].name == f"ckpt-{summary['steps']:08d}.pt"  # the checkpoint of the step it stopped at
    assert "--resume" in res.stderr
    return summary["steps"]


def test_sigint_stops_cleanly_and_resume_reaches_the_uninterrupted_model(tmp_path, reference_sha):
    run_dir = tmp_path / "run"
    res, _, _ = _interrupt(run_dir, signal.SIGINT)
    stopped = _check_interrupted(run_dir, res, signal.SIGINT)
    resumed = Trainer.resume(str(run_dir))
    assert resumed.step_idx == stopped
    with resumed:
        summary = resumed.run()
    assert "interrupted" not in summary and summary["model_sha256"] == reference_sha
    assert [r["step"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())] == list(range(STEPS))


def test_sigterm_exits_143_and_cli_resume_reaches_the_uninterrupted_model(tmp_path, reference_sha, capsys):
    run_dir = tmp_path / "run"
    res, _, _ = _interrupt(run_dir, signal.SIGTERM)
    _check_interrupted(run_dir, res, signal.SIGTERM)
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "interrupted" not in summary and summary["steps"] == STEPS
    assert summary["model_sha256"] == reference_sha


@pytest.mark.ray
def test_sigterm_with_embedded_ray_shuts_ray_down(tmp_path, reference_sha):
    pytest.importorskip("ray")
    run_dir = tmp_path / "run"
    res, seen, pgid = _interrupt(run_dir, signal.SIGTERM, extra=("--backend", "ray", "--actors", "2"),
                           env={"RAY_USAGE_STATS_ENABLED": "0"}, watch_children=True)
    _check_interrupted(run_dir, res, signal.SIGTERM)
    assert "raylet" in seen.values(), f"no embedded raylet seen among {sorted(set(seen.values()))}"
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = {p: n for p, n in seen.items() if _alive(p)}
    assert not left, f"Ray processes left after exit: {left}"
    group = [p for p in map(int, filter(str.isdigit, os.listdir("/proc"))) if _alive(p) and _pgid(p) == pgid]
    assert not group, f"processes left in the run's process group: {group}"
    cfg_path = run_dir / "config.json"  # the backend does not change the bits: resume on the local one
    cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), "backend": "local", "actors": None}))
    resumed = Trainer.resume(str(run_dir))
    with resumed:
        assert resumed.run()["model_sha256"] == reference_sha


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def test_torn_last_checkpoint_is_skipped_with_a_warning(tmp_path, reference_sha):
    run_dir = tmp_path / "run"
    with Master(RunConfig(**KW), run_dir=str(run_dir)) as m:
        m.run(steps=120)  # checkpoints 100 and 120 are kept
    last = run_dir / "checkpoints" / "ckpt-00000120.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    with pytest.warns(RuntimeWarning, match=r"ckpt-00000120\.pt"):
        resumed = Trainer.resume(str(run_dir))
    assert resumed.step_idx == 100
    with resumed:
        assert resumed.run()["model_sha256"] == reference_sha


def _short_run(run_dir: Path, **kw) -> None:
    with Master(RunConfig(**{**KW, **kw}), run_dir=str(run_dir)) as m:
        m.run(steps=10)


def test_a_checkpoint_of_another_configuration_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "run"
    _short_run(run_dir, checkpoint_every=5)
    cfg_path = run_dir / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "scheme": "vanilla", "tolerate": None}))
    with pytest.raises(ValueError, match=r"checkpoint was written for scheme='draco-repetition', the run directory says 'vanilla'"):
        Trainer.resume(str(run_dir))
    with pytest.raises(SystemExit) as info:  # the CLI: a usage error, exit code 2, before any worker starts
        main(["train", "--resume", str(run_dir), "--no-progress"])
    assert info.value.code == 2 and "the run directory says 'vanilla'" in capsys.readouterr().err
    # keys that do not change what is computed may differ (the logging cadence, the step count, the backend)
    cfg_path.write_text(json.dumps({**cfg, "log_every": 3, "eval_every": 7, "steps": 20}))
    with Trainer.resume(str(run_dir)) as t:
        assert t.step_idx == 10 and t.run()["steps"] == 20


def test_a_checkpoint_of_another_version_is_refused(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    _short_run(run_dir, checkpoint_every=5)
    ckpt = sorted((run_dir / "checkpoints").glob("ckpt-*.pt"))[-1]
    state = torch.load(ckpt, weights_only=False)
    assert state["codedbft"]["version"] == trainer_mod.codedbft_version()
    assert len(state["codedbft"]["config_sha256"]) == 64
    monkeypatch.setattr(trainer_mod, "codedbft_version", lambda: "0.1.7")
    state["codedbft"]["version"] = "0.1.0"  # another patch release: compatible
    torch.save(state, ckpt)
    assert Trainer.resume(str(run_dir)).step_idx == 10
    monkeypatch.setattr(trainer_mod, "codedbft_version", lambda: "0.2.0")
    with pytest.raises(ValueError, match=r"checkpoint from codedbft 0\.1 cannot be resumed by 0\.2"):
        Trainer.resume(str(run_dir))


def _enospc_save(obj, f, *args, **kwargs):
    f.write(b"partial")  # a half-written file, then the disk is full
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_keeps_the_last_good_checkpoint_and_no_temp_file(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    m = Master(RunConfig(**KW), run_dir=str(run_dir))
    with m:
        m.run(steps=50)
        good = (run_dir / "checkpoints" / "ckpt-00000050.pt").read_bytes()
        monkeypatch.setattr(rundir_mod.torch, "save", _enospc_save)
        with pytest.raises(OSError) as info:
            m.run(steps=100)
    assert info.value.errno == errno.ENOSPC and info.value.filename.endswith("ckpt-00000100.pt")
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["ckpt-00000050.pt"]  # no temporary file, the good one untouched
    assert (run_dir / "checkpoints" / "ckpt-00000050.pt").read_bytes() == good
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the good checkpoint is read, nothing skipped
        assert Trainer.resume(str(run_dir)).step_idx == 50


def test_full_disk_cli_exits_1_with_a_one_line_message(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    monkeypatch.setattr(rundir_mod.torch, "save", _enospc_save)
    code = main([*ARGV[:-3], "--checkpoint-every", "5", "--steps", "10", "--no-progress", "--run-dir", str(run_dir)])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and "no space left" in err and str(run_dir) in err, err
    assert list((run_dir / "checkpoints").iterdir()) == []


def test_a_second_signal_during_the_cleanup_aborts_and_handlers_are_restored(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    m = Master(RunConfig(**KW), run_dir=str(run_dir))
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    step, save = m.step, rundir_mod.RunDir.save_checkpoint

    def step_then_signal():
        row = step()
        if m.step_idx == 7:
            os.kill(os.getpid(), signal.SIGTERM)
        return row

    def second_signal_mid_write(self, n, state):  # the clean-up's checkpoint is under way
        def write(obj, f, *a, **k):
            f.write(b"half")
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs here
        monkeypatch.setattr(rundir_mod.torch, "save", write)
        return save(self, n, state)

    monkeypatch.setattr(m, "step", step_then_signal)
    monkeypatch.setattr(rundir_mod.RunDir, "save_checkpoint", second_signal_mid_write)
    with m, pytest.raises(trainer_mod.RunInterrupted) as info:
        m.run()
    assert info.value.signum == signal.SIGINT and m.step_idx == 7
    assert {s: signal.getsignal(s) for s in before} == before
    assert list((run_dir / "checkpoints").iterdir()) == []  # the abandoned write left nothing
    assert not (run_dir / "summary.json").exists()
