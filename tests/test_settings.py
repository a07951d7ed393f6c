"""The settings without a trusted master: decentralized training (UBAR paper) and Byzantine parameter
servers (ByzSGD), on the local simulator and on real Ray actors (same models bit for bit), with
resume, missing nodes and the CLI."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch

from codedbft.cli import main
from codedbft.cluster import RunConfig
from codedbft.cluster.trainer import Trainer, make_trainer

DEC = dict(setting="decentralized", backend="local", nodes=10, byzantine=2, connection=0.6, dataset="digits",
           model="logreg", batch_size=200, lr=0.3, steps=40, eval_every=20, seed=1)
SRV = dict(setting="byzantine-servers", backend="local", servers=4, byzantine_servers=1, workers=7, byzantine=1,
           dataset="digits", model="logreg", batch_size=70, lr=0.2, momentum=0.0, steps=30, eval_every=30,
           attack="gaussian", attack_params={"sigma": 0.05})


def run(**kw):
    tr = make_trainer(RunConfig(**kw))
    try:
        return tr.run(), tr
    finally:
        tr.close()


# -- decentralized ---------------------------------------------------------------------------------
def test_one_byzantine_neighbour_breaks_average_but_not_ubar():
    # omniscient c = 10 sends -10x the neighbourhood mean: averaging is dragged away (Theorem 1),
    # UBAR's stage 2 rejects estimates that do worse than the node's own on its own sample
    avg, _ = run(**DEC, rule="average", attack="omniscient")
    ubar, tr = run(**DEC, rule="ubar", attack="omniscient")
    clean, _ = run(**{**DEC, "byzantine": 0}, rule="average", attack=None)
    assert clean["worst_benign_test_accuracy"] > 0.8
    assert ubar["worst_benign_test_accuracy"] > 0.7  # 40 steps: UBAR keeps fewer estimates, learns a little slower
    assert avg["worst_benign_test_accuracy"] < 0.3
    assert len(ubar["benign_test_accuracy"]) == 8 and ubar["nodes"] == 10
    assert tr.topology.benign_connected(tr.byzantine)


def test_decentralized_resume_reaches_the_uninterrupted_model(tmp_path):
    cfg = RunConfig(**{**DEC, "steps": 9, "checkpoint_every": 4}, rule="ubar", attack="gaussian")
    full = make_trainer(cfg, run_dir=str(tmp_path / "full")).run()
    cut = make_trainer(cfg, run_dir=str(tmp_path / "cut"))
    for _ in range(6):
        cut.step()
    resumed = Trainer.resume(str(tmp_path / "cut"))
    assert type(resumed).__name__ == "DecentralizedTrainer" and resumed.step_idx == 4
    assert resumed.run()["model_sha256"] == full["model_sha256"]
    saved = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert saved["worst_benign_test_accuracy"] == full["worst_benign_test_accuracy"]
    rows = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert all({"spread", "aggregate_ms", "missing"} <= r.keys() for r in rows)
    assert "worst_benign_test_accuracy" in rows[-1]


def test_a_node_that_does_not_reply_keeps_its_estimate_and_drops_out_of_its_neighbours():
    from codedbft.cluster.local import LocalBackend

    class Drops(LocalBackend):
        """Node 3's reply is lost at step 1 (a timeout)."""

        def execute(self, order, w, coalition, timeout_s):
            got = super().execute(order, w, coalition, timeout_s)
            if order.step == 1:
                row = order.workers.index(3)
                got.missing[row] = True
                got.stack[row] = 0
            return got

    cfg = RunConfig(**{**DEC, "byzantine": 0}, rule="average", attack=None, placement="random")
    tr = make_trainer(cfg, backend=Drops())
    tr.step()
    before = tr.X[3].clone()
    row = tr.step()
    assert row["missing"] == 1 and torch.equal(tr.X[3], before)
    assert not torch.equal(tr.X[tr.benign[0] if tr.benign[0] != 3 else tr.benign[1]], tr.core.model.init_params())


@pytest.mark.parametrize("bad,match", [
    (dict(topology="ring", nodes=10, byzantine=2, placement="fixed", placement_ids=(0, 5)), "connected"),
    (dict(rule="ubar", rule_params={"rho": 0.0}), "rho"),
    (dict(attack="label-flip"), "message attack"),
    (dict(redraw=True), "redraw"),
])
def test_decentralized_bad_configurations_raise_before_any_worker_starts(bad, match):
    with pytest.raises(ValueError, match=match):
        make_trainer(RunConfig(**{**DEC, "backend": "ray", "attack": "gaussian", **bad}))


# -- Byzantine servers -----------------------------------------------------------------------------
def test_median_contraction_keeps_correct_servers_close_while_a_byzantine_server_sends_garbage():
    with_dmc, _ = run(**SRV, contraction_every=5)
    without, _ = run(**SRV, contraction_every=0)
    assert with_dmc["server_spread"] < without["server_spread"] / 5
    garbage, _ = run(**{**SRV, "attack_params": {"sigma": 200.0}}, contraction_every=5)
    clean, _ = run(**{**SRV, "byzantine_servers": 0, "byzantine": 0, "attack": None}, contraction_every=5)
    # median at the workers, MDA at the servers: the garbage changes (almost) nothing
    assert garbage["worst_benign_test_accuracy"] > clean["worst_benign_test_accuracy"] - 0.05 > 0.6


@pytest.mark.parametrize("bad,match", [
    (dict(servers=3, byzantine_servers=1), "f_ps < n_ps / 3"),
    (dict(workers=4, byzantine=2), "2 f_w \\+ 1"),
])
def test_byzantine_server_bad_configurations_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        make_trainer(RunConfig(**{**SRV, "backend": "ray", **bad}))


# -- the command line ------------------------------------------------------------------------------
def test_cli_runs_both_settings_and_rejects_a_disconnected_graph(tmp_path, capsys):
    assert main(["train", "--setting", "decentralized", "--backend", "local", "--nodes", "8", "--byzantine", "1",
                 "--rule", "ubar", "--attack", "gaussian", "--model", "logreg", "--steps", "3",
                 "--run-dir", str(tmp_path / "d"), "--no-progress"]) == 0
    assert "worst_benign_test_accuracy" in capsys.readouterr().out
    assert main(["train", "--setting", "byzantine-servers", "--backend", "local", "--servers", "4",
                 "--byzantine-servers", "1", "--workers", "7", "--byzantine", "1", "--attack", "alie",
                 "--model", "logreg", "--steps", "3", "--run-dir", str(tmp_path / "s"), "--no-progress"]) == 0
    with pytest.raises(SystemExit) as e:
        main(["train", "--setting", "decentralized", "--topology", "ring", "--nodes", "10", "--byzantine", "2",
              "--placement", "fixed", "--placement-ids", "0,5", "--run-dir", str(tmp_path / "x")])
    assert e.value.code == 2 and "connected" in capsys.readouterr().err


# -- Ray: the same models bit for bit, a killed node restarted ----------------------------------------
@pytest.mark.ray
@pytest.mark.parametrize("kw", [
    {**DEC, "nodes": 6, "byzantine": 1, "steps": 3, "rule": "ubar", "attack": "gaussian"},
    {**SRV, "steps": 4, "contraction_every": 2, "workers": 6},
], ids=["decentralized", "byzantine-servers"])
def test_local_and_ray_give_the_same_models(ray_backend, kw):
    local, _ = run(**kw)
    tr = make_trainer(RunConfig(**{**kw, "backend": "ray", "timeout_s": 120.0}), backend=ray_backend)
    remote = tr.run()
    if hasattr(tr, "server_backend"):  # the correct servers are actors of their own (3 here)
        assert len(tr.server_backend.actors) == 3
        tr.server_backend.close()
    assert remote["model_sha256"] == local["model_sha256"] and remote["missing_total"] == 0


@pytest.mark.ray
def test_a_killed_node_actor_is_a_missing_neighbour_for_a_step_and_is_restarted(ray_backend):
    kw = {**DEC, "nodes": 6, "byzantine": 1, "rule": "average", "attack": "gaussian", "backend": "ray",
          "timeout_s": 60.0}
    tr = make_trainer(RunConfig(**kw), backend=ray_backend)
    tr.step()
    node = tr.benign[0]
    pids = ray_backend.pids()
    victim = pids[node]
    hosted = [i for i, p in enumerate(pids) if p == victim]  # the nodes that actor hosts (round-robin)
    os.kill(victim, signal.SIGKILL)
    down = tr.step()
    assert node in hosted and down["missing"] == len(hosted) < 6  # its nodes only; the others aggregate without them
    assert victim not in ray_backend.pids()  # waits until Ray has restarted the actor
    assert tr.step()["missing"] == len(hosted)  # restarted bare: this ask gives it its data and programs again
    assert tr.step()["missing"] == 0  # back, with its programs
    assert np.isfinite(tr.X.numpy()).all()
