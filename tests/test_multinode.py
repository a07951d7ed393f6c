"""Existing clusters and several nodes (issue 15, item 3).

* ``--address`` naming a cluster that is not there fails in seconds, naming the address (Ray itself
  would retry for minutes);
* on a cluster of several nodes (``ray.cluster_utils.Cluster``: a head without CPUs and three nodes of
  one CPU) the worker actors are spread over distinct nodes (``scheduling_strategy="SPREAD"``); a node
  removed mid-run makes its workers erasures, its actor restarts on a node left, and the run ends on
  the fault-free model (one lost node is within the code's budget).

``Cluster`` starts its own processes and a driver can join one cluster only, so that scenario runs in
a subprocess (this file run as a script), never in the test session's shared Ray instance; it shuts
the cluster down itself. Run as every Ray test is (CONTRIBUTING.md: in a private loopback namespace).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_address_where_no_cluster_listens_fails_in_seconds_naming_it(tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    cmd = [sys.executable, "-m", "codedbft.cli", "train", "--backend", "ray", "--address", address,
           "--scheme", "draco-repetition", "--workers", "3", "--byzantine", "1", "--dataset", "digits",
           "--model", "logreg", "--steps", "2", "--batch-size", "60", "--no-progress",
           "--run-dir", str(tmp_path / "run")]
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=90, cwd=tmp_path)
    elapsed = time.monotonic() - t0
    assert out.returncode == 2, out.stderr[-2000:]  # a bad --address: one line, no traceback
    assert f"codedbft train: no Ray cluster reachable at '{address}'" in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert elapsed < 60  # imports included; the connection check itself gives up after 5 s


def test_the_api_raises_connection_error_naming_the_address():
    from codedbft.cluster.ray_backend import check_reachable

    address = f"127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match=address):
        check_reachable(address, timeout_s=1.0)
    assert time.monotonic() - t0 < 5


# -- several nodes: the scenario runs in a subprocess (this file as a script) ---------------------
SCENARIO_STEPS, REMOVE_AT = 24, 5


def _scenario() -> dict:
    """Head (0 CPU) + 3 nodes (1 CPU each); a 24-step DRACO repetition run (n = 6, s = 1, 3 actors);
    the node of actor 0 removed after step 5. Returns what the test checks, as JSON."""
    from ray.cluster_utils import Cluster

    ip = dict(node_ip_address="127.0.0.1")
    cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=0, include_dashboard=False, **ip))
    try:
        nodes = [cluster.add_node(num_cpus=1, **ip) for _ in range(3)]
        cluster.wait_for_nodes()
        from codedbft.cluster import Master, RunConfig
        from codedbft.cluster.ray_backend import RayBackend

        cfg = RunConfig(scheme="draco-repetition", workers=6, tolerate=1, byzantine=0, attack=None,
                        dataset="synthetic-regression", model="linear", batch_size=40, lr=0.05, momentum=0.0,
                        steps=SCENARIO_STEPS, seed=5, timeout_s=1.0, actors=3, backend="ray",
                        address=cluster.address, eval_every=SCENARIO_STEPS, log_every=SCENARIO_STEPS)
        backend = RayBackend.from_config(cfg)
        m = Master(cfg, backend=backend)
        m.start()
        before = backend.nodes()
        rows = [m.step() for _ in range(REMOVE_AT)]
        victim = next(n for n in nodes if n.node_id == before[0])
        cluster.remove_node(victim)
        rows += [m.step() for _ in range(SCENARIO_STEPS - REMOVE_AT)]
        after = backend.nodes()
        backend.close()
        reference = Master(cfg.replace(backend="local", address=None))
        reference.run()
        return {"nodes": [n.node_id for n in nodes], "head": cluster.head_node.node_id, "before": before,
                "after": after, "victim": victim.node_id, "erasures": [r["erasures"] for r in rows],
                "exact": [r["exact"] for r in rows], "groups": [list(g) for g in backend.groups or []],
                "sha": m.model_sha256, "reference": reference.model_sha256}
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()


@pytest.mark.slow
def test_actors_spread_over_nodes_and_a_lost_node_is_erasures_then_restarts_elsewhere(tmp_path):
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "scenario"], capture_output=True,
                         text=True, env=ENV, timeout=240, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    # spread: one actor per worker node, none on the CPU-less head
    assert sorted(res["before"]) == sorted(res["nodes"]) and res["head"] not in res["before"]
    # the lost node's workers (actor 0: workers 0 and 3, one copy per group) are erasures from then on
    # until their actor is back, on one of the nodes left
    er = res["erasures"]
    assert er[:REMOVE_AT] == [0] * REMOVE_AT and er[REMOVE_AT] == 2 and er[-1] == 0
    assert set(er) <= {0, 2}
    assert res["after"][0] != res["victim"] and res["after"][0] in res["nodes"]
    assert res["after"][1:] == res["before"][1:]
    # one node is within s = 1 per group: every step exact, the fault-free model bit for bit
    assert all(res["exact"]) and res["sha"] == res["reference"]


@pytest.mark.slow
def test_the_head_going_away_mid_run_ends_the_run_without_a_hang(tmp_path):
    """``ray start --head --block`` (its own process group) killed mid-run: the driver ends within
    seconds (Ray's core worker ends the process once its raylet is gone, exit code 1: no Python code
    runs then, so no last checkpoint and no message of ours), and the last periodic checkpoint resumes,
    here on the simulator, to the uninterrupted model."""
    import signal

    from test_runtime_cluster import _record_kept, _started_head

    from codedbft.cluster import Master, RunConfig
    from codedbft.cluster.local import LocalBackend
    from codedbft.cluster.trainer import Trainer

    args = ["--scheme", "draco-repetition", "--workers", "6", "--tolerate", "1", "--byzantine", "0",
            "--attack", "none", "--dataset", "synthetic-regression", "--model", "linear", "--batch-size", "40",
            "--lr", "0.05", "--steps", "40", "--log-every", "1", "--eval-every", "40", "--checkpoint-every", "5",
            "--timeout", "1", "--actors", "3", "--seed", "5"]
    run = tmp_path / "run"
    with _record_kept(), _started_head(tmp_path) as head:
        cmd = [sys.executable, "-m", "codedbft.cli", "train", *args, "--backend", "ray", "--address", "auto",
               "--no-progress", "--run-dir", str(run)]
        with open(tmp_path / "train.err", "w") as err:
            train = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=ENV, cwd=tmp_path)
            try:
                deadline = time.monotonic() + 150
                while time.monotonic() < deadline and train.poll() is None:
                    rows = (run / "metrics.jsonl").read_text().count("\n") if (run / "metrics.jsonl").exists() else 0
                    if rows >= 12:
                        break
                    time.sleep(0.2)
                assert train.poll() is None, (tmp_path / "train.err").read_text()[-3000:]
                os.killpg(head.pid, signal.SIGKILL)
                t0 = time.monotonic()
                rc = train.wait(timeout=60)  # not a hang
                assert time.monotonic() - t0 < 30
            finally:
                if train.poll() is None:
                    train.kill()
                    train.wait()
    assert rc != 0
    ckpts = sorted((run / "checkpoints").glob("ckpt-*.pt"))
    assert ckpts and not (run / "summary.json").exists()
    # (``backend`` of Trainer.resume is the backend object: the simulator given as one)
    resumed = Trainer.resume(str(run), backend=LocalBackend(), address=None).run()
    cfg = RunConfig(backend="local", scheme="draco-repetition", workers=6, tolerate=1, byzantine=0, attack=None,
                    dataset="synthetic-regression", model="linear", batch_size=40, lr=0.05, steps=40, seed=5)
    assert resumed["model_sha256"] == Master(cfg).run()["model_sha256"]


if __name__ == "__main__" and sys.argv[1:] == ["scenario"]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    result = _scenario()
    print(json.dumps(result))
