"""Local steps (average local gradients) and worker momentum: against loop references, through the
codes (exact decoding, flags, attack-free models), across resumes and on real Ray actors."""

from __future__ import annotations

import copy

import pytest
import torch

from codedbft.cli import main
from codedbft.cluster import Master, RunConfig
from codedbft.cluster.worker import WorkerCore, WorkerSpec
from codedbft.training.local_sgd import WorkerMomentum

BASE = dict(backend="local", dataset="digits", model="mlp", workers=9, byzantine=0, attack=None, batch_size=90,
            lr=0.2, momentum=0.0, steps=6, eval_every=6, seed=3)


def run(run_dir=None, **kw):
    m = Master(RunConfig(**{**BASE, **kw}), run_dir=run_dir)
    try:
        return m.run(), m
    finally:
        m.close()


def _reference_local_step(core: WorkerCore, w: torch.Tensor, step: int, j: int, K: int, lr: float) -> torch.Tensor:
    """Partition j's average local gradient, written as a user would with torch.optim on the module."""
    module = copy.deepcopy(core.model.model).double()
    torch.nn.utils.vector_to_parameters(w.double(), module.parameters())
    opt = torch.optim.SGD(module.parameters(), lr=lr)
    for i in range(K):
        X, y = core.rows(step * K + i, [j])
        opt.zero_grad()
        torch.nn.functional.cross_entropy(module(X[0].double()), y[0]).backward()
        opt.step()
    return (w.double() - torch.nn.utils.parameters_to_vector(module.parameters())) / (K * lr)


@pytest.mark.parametrize("K", [1, 3])
def test_average_local_gradient_matches_a_torch_optim_loop_in_float64(K):
    spec = WorkerSpec(dataset="digits", model="mlp", k=4, b=16, seed=1, local_steps=K, local_lr=0.3)
    core = WorkerCore(spec)
    w = core.model.init_params()
    U = core.gradients(w, 5, [0, 2, 3])
    for r, j in enumerate([0, 2, 3]):
        ref = _reference_local_step(core, w, 5, j, K, 0.3)
        assert torch.allclose(U[r].double(), ref, atol=2e-6, rtol=1e-4), (K, j)
    # a partition's row depends on that partition only (copies agree bit for bit whatever they hold)
    assert torch.equal(core.gradients(w, 5, [2])[0], U[1])
    if K == 1:
        assert torch.equal(U, WorkerCore(WorkerSpec(dataset="digits", model="mlp", k=4, b=16, seed=1)).gradients(w, 5, [0, 2, 3]))


def test_vanilla_mean_with_local_steps_is_fedavg():
    # --optimizer sgd --momentum 0 --lr K*eta_l: one master step is w - mean_j (w - w_{j,K})
    K, eta = 3, 0.1
    m = Master(RunConfig(**{**BASE, "scheme": "vanilla", "aggregator": "mean", "local_steps": K, "local_lr": eta,
                            "lr": K * eta, "steps": 1}))
    try:
        w0 = m.w.clone()
        m.step()
        core = m.core
        fedavg = sum(w0.double() - K * eta * _reference_local_step(core, w0, 0, j, K, eta) for j in range(9)) / 9
        assert torch.allclose(m.w.double(), fedavg, atol=1e-5)
        # and it is not one big gradient step (which ignoring K would give)
        one = w0.double() - K * eta * sum(_reference_local_step(core, w0, 0, j, 1, eta) for j in range(9)) / 9
        assert not torch.allclose(m.w.double(), one, atol=1e-5)
    finally:
        m.close()


def test_worker_momentum_is_each_workers_exponential_average_and_idempotent_within_a_step():
    mom = WorkerMomentum(0.8)
    g = [torch.randn(2, 1, 5, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    outs = [mom.update([4, 7], [[1], [2]], t, g[t]) for t in range(3)]
    again = mom.update([4, 7], [[1], [2]], 2, g[2])  # a reactive round asks the same step again
    ref = torch.zeros(2, 1, 5)
    for t in range(3):
        ref = 0.8 * ref + 0.2 * g[t]
        assert torch.allclose(outs[t], ref, atol=1e-7)
    assert torch.equal(again, outs[2])
    state = mom.state_dict([7])
    assert set(state) == {(7, 2)} and state[(7, 2)][0] == 2
    with pytest.raises(ValueError, match="beta"):
        WorkerMomentum(1.0)


@pytest.mark.parametrize("scheme,kw", [
    ("draco-repetition", dict(tolerate=1)),
    ("detox", dict(group_size=3, aggregator="median")),
])
def test_codes_stay_exact_and_flag_the_liars_with_local_steps_and_worker_momentum(scheme, kw):
    extra = dict(scheme=scheme, local_steps=2, local_lr=0.1, worker_momentum=0.9, **kw)
    attacked, m = run(**extra, byzantine=2, attack="omniscient", placement="fixed", placement_ids=(1, 5))
    clean, _ = run(**extra)
    # every copy of a partition sends the same momentum of the same average local gradients, so the
    # vote is exact and the liars are named at every step, and the model is the attack-free one
    assert attacked["inexact_steps"] == (0 if scheme == "draco-repetition" else BASE["steps"])  # DETOX: a rule
    assert attacked["flagged_per_worker"][1] == attacked["flagged_per_worker"][5] == BASE["steps"]
    assert attacked["flagged_total"] == 2 * BASE["steps"]
    assert attacked["model_sha256"] == clean["model_sha256"]


def test_worker_momentum_changes_the_model_and_a_resumed_run_reaches_the_uninterrupted_one(tmp_path):
    kw = dict(scheme="vanilla", aggregator="trimmed-mean", byzantine=2, attack="alie", worker_momentum=0.9,
              local_steps=2, checkpoint_every=2, steps=6)
    full, _ = run(**kw)
    plain, _ = run(**{**kw, "worker_momentum": 0.0})
    assert full["model_sha256"] != plain["model_sha256"]
    run(run_dir=str(tmp_path / "r"), **{**kw, "steps": 3})  # checkpoints at 2 and 3
    from codedbft.cluster.rundir import RunDir

    state = RunDir(tmp_path / "r").load_checkpoint()
    assert len(state["worker_state"]) == 9 and all(s == 2 for s, _ in state["worker_state"].values())
    resumed = Master.resume(str(tmp_path / "r"), steps=6)
    try:
        out = resumed.run()
    finally:
        resumed.close()
    assert out["model_sha256"] == full["model_sha256"]


@pytest.mark.parametrize("bad,match", [
    (dict(scheme="data-encoding", model="linear", dataset="synthetic-regression", local_steps=2), "gradient code"),
    (dict(scheme="rrr", worker_momentum=0.5), "same partitions"),
    (dict(setting="decentralized", worker_momentum=0.5), "setting 'master'"),
    (dict(local_steps=0), "local_steps"),
    (dict(local_lr=-1.0, local_steps=2), "local_lr"),
    (dict(worker_momentum=1.0), "worker_momentum"),
])
def test_bad_local_configurations_raise_naming_the_constraint(bad, match):
    with pytest.raises(ValueError, match=match):
        RunConfig(**{**BASE, **bad})


def test_cli_takes_the_flags_and_exits_2_on_a_bad_combination(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--scheme", "rrr", "--worker-momentum", "0.9", "--backend", "local", "--no-progress"])
    assert e.value.code == 2 and "same partitions" in capsys.readouterr().err
    main(["train", "--scheme", "vanilla", "--aggregator", "median", "--workers", "5", "--byzantine", "0",
          "--backend", "local", "--model", "logreg", "--batch-size", "50", "--steps", "2", "--local-steps", "2",
          "--worker-momentum", "0.5", "--run-dir", str(tmp_path / "c"), "--no-progress"])
    import json

    cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    assert cfg["local_steps"] == 2 and cfg["worker_momentum"] == 0.5


# -- Ray: the same bytes with worker state on the actors --------------------------------------------
@pytest.mark.ray
def test_local_and_ray_agree_bit_for_bit_with_local_steps_and_worker_momentum(ray_session):
    from codedbft.cluster.ray_backend import RayBackend

    kw = dict(scheme="draco-cyclic", tolerate=1, workers=7, batch_size=70, byzantine=1, attack="gaussian",
              placement="random", redraw=True, local_steps=2, worker_momentum=0.9, steps=4, checkpoint_every=2)
    local, _ = run(**kw)
    backend = RayBackend(num_cpus=0.1)
    try:
        m = Master(RunConfig(**{**BASE, **kw, "backend": "ray", "timeout_s": 120.0}), backend=backend)
        out = m.run()
        state = m.state_dict()["worker_state"]
    finally:
        backend.close()
    assert out["model_sha256"] == local["model_sha256"] and out["inexact_steps"] == 0
    # each actor's momentum came back: one entry per (worker, partition it holds)
    assert len(state) == sum(len(t) for t in m.scheme.assignment)
