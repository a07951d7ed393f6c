"""Joining an existing Ray cluster: ``codedbft train --address auto`` against a head this test starts.

The head runs as ``ray start --head --block`` in its own process group and is ended by that group id
(never Ray's own stop command, which would end every Ray process on the machine). The training runs in a
subprocess: the test process may already hold the session's embedded Ray instance, and one process
can be connected to one cluster only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

ARGS = ["--scheme", "draco-repetition", "--workers", "3", "--byzantine", "1", "--attack", "sign-flip",
        "--dataset", "digits", "--model", "logreg", "--steps", "4", "--batch-size", "60",
        "--eval-every", "4", "--checkpoint-every", "4", "--seed", "3", "--no-progress"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_executable() -> str:
    exe = Path(sys.executable).with_name("ray")
    return str(exe) if exe.exists() else (shutil.which("ray") or "ray")


CURRENT = Path("/tmp/ray/ray_current_cluster")  # where `ray start` records its address for "auto"


@contextlib.contextmanager
def _record_kept():
    """Leave the record as it was: a stale address would send later `ray.init()`s to a dead head."""
    before = CURRENT.read_bytes() if CURRENT.exists() else None
    try:
        yield
    finally:
        if before is None:
            CURRENT.unlink(missing_ok=True)
        else:
            CURRENT.write_bytes(before)


@pytest.fixture()
def ray_head(tmp_path):
    pytest.importorskip("ray")
    with _record_kept(), _started_head(tmp_path) as head:
        yield head


@contextlib.contextmanager
def _started_head(tmp_path):
    """``ray start --head --block`` in its own process group, ended by that group on exit."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    log = open(tmp_path / "head.log", "w")
    head = subprocess.Popen(
        [_ray_executable(), "start", "--head", "--block", f"--port={_free_port()}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if head.poll() is not None:
                pytest.fail(f"ray start --head exited early:\n{(tmp_path / 'head.log').read_text()[-3000:]}")
            if "Ray runtime started" in (tmp_path / "head.log").read_text():
                break
            time.sleep(0.5)
        else:
            pytest.fail("ray start --head did not come up in 90 s")
        yield head
    finally:
        # Only the group started here: SIGTERM, a short grace, then SIGKILL for what is left
        # (the head's GCS and raylet take their time over SIGTERM, and nothing of them is needed).
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


def _train(run_dir: Path, *extra: str) -> dict:
    cmd = [sys.executable, "-m", "codedbft.cli", "train", *ARGS, "--run-dir", str(run_dir), *extra]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads((run_dir / "summary.json").read_text())


def test_train_joins_an_existing_cluster_and_matches_the_simulator(ray_head, tmp_path):
    remote = _train(tmp_path / "remote", "--backend", "ray", "--address", "auto")
    local = _train(tmp_path / "local", "--backend", "local")
    assert remote["model_sha256"] == local["model_sha256"]
    assert remote["flagged_total"] == local["flagged_total"] == 4  # the liar, flagged every step
    # The run used the head's cluster: the head is still up after the client disconnected.
    assert ray_head.poll() is None


@pytest.fixture()
def stale_record():
    """A /tmp/ray/ray_current_cluster that names a head which is gone (what a killed `ray start` leaves)."""
    with _record_kept():
        CURRENT.parent.mkdir(parents=True, exist_ok=True)
        CURRENT.write_text(f"127.0.0.1:{_free_port()}")
        yield


def test_embedded_default_ignores_a_stale_cluster_record(stale_record, tmp_path):
    """Plain ray.init() would try to join the recorded (dead) head; the embedded default starts its own."""
    summary = _train(tmp_path / "run", "--backend", "ray")
    assert summary["flagged_total"] == 4 and summary["steps"] == 4
