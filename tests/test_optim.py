"""torch.optim optimizers and lr schedules on the flat vector (codedbft.training.optim): the same bits as
torch.optim on a real module, exact state round trips, schedules, resume, CLI and TensorBoard."""

from __future__ import annotations

import importlib.util
import io
import json
import pickle

import pytest
import torch

from codedbft.training import load_dataset
from codedbft.training.optim import OPTIMIZERS, SCHEDULES, make_optimizer, optimizer_params, parse_schedule


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def _module(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.Tanh(), torch.nn.Linear(16, 10))


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


CASES = [
    ("sgd", dict(momentum=0.9, weight_decay=1e-3), {}),
    ("sgd", dict(momentum=0.9), {"nesterov": True}),
    ("sgd", {}, {}),
    ("adam", dict(weight_decay=1e-3), {}),
    ("adam", {}, {"betas": (0.8, 0.99), "amsgrad": True}),
    ("adamw", dict(weight_decay=1e-2), {}),
    ("rmsprop", dict(momentum=0.5), {"centered": True}),
    ("rmsprop", {}, {}),
    ("adagrad", dict(weight_decay=1e-3), {}),
]


@pytest.mark.parametrize("name, kw, params", CASES)
def test_flat_vector_equals_torch_optim_on_the_modules_parameters(digits, name, kw, params):
    """Each optimizer on the flat vector is torch.optim on the module's own parameters, bit for bit."""
    module = _module()
    torch_cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
                 "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad}[name]
    lr = 0.3 if name == "sgd" else 0.01
    topt = torch_cls(module.parameters(), lr=lr, **kw, **params)
    opt = make_optimizer(name, lr=lr, **kw, **params)
    w = _flat(module.parameters())
    for t in range(8):
        X, y = digits.partition_batch(t, 1, 32, seed=0)
        module.zero_grad()
        torch.nn.functional.cross_entropy(module(X[0].reshape(32, -1)), y[0]).backward()
        g = _flat(p.grad for p in module.parameters())
        before_w, before_g = w.clone(), g.clone()
        new = opt.step(w, g)
        assert torch.equal(w, before_w) and torch.equal(g, before_g)  # never in place
        w = new
        topt.step()
        assert torch.equal(w, _flat(module.parameters())), f"step {t}"


@pytest.mark.parametrize("name, kw, params", CASES)
@pytest.mark.parametrize("schedule", [None, "cosine", "step:step_size=2,gamma=0.5"])
def test_state_round_trip_mid_trajectory_continues_identically(name, kw, params, schedule):
    gen = torch.Generator().manual_seed(1)
    grads = [torch.randn(50, generator=gen) for _ in range(10)]
    opt = make_optimizer(name, lr=0.05, schedule=schedule, total_steps=10, **kw, **params)
    w = torch.randn(50, generator=gen)
    traj = []
    for t, g in enumerate(grads):
        w = opt.step(w, g)
        traj.append(w)
        if t == 4:
            buf = io.BytesIO()
            torch.save({"w": w.clone(), "opt": opt.state_dict()}, buf)  # the checkpoint format
            saved = buf.getvalue()
    state = torch.load(io.BytesIO(saved), weights_only=False)
    sd = pickle.loads(pickle.dumps(state["opt"]))
    again = make_optimizer(name, lr=0.05, schedule=schedule, total_steps=10, **kw, **params)
    again.load_state_dict(sd)
    again.load_state_dict(sd)  # the dict is not consumed or aliased
    w2 = state["w"]
    for t in range(5, 10):
        w2 = again.step(w2, grads[t])
        assert torch.equal(w2, traj[t]), t
    assert again.t == opt.t == 10 and again.lr == opt.lr


def test_float64_state_loads_without_a_round_trip_through_float32():
    gen = torch.Generator().manual_seed(2)
    grads = [torch.randn(20, dtype=torch.float64, generator=gen) * 1e-3 for _ in range(6)]
    w = torch.randn(20, dtype=torch.float64, generator=gen)
    opt = make_optimizer("adam", lr=1e-3)
    for g in grads[:3]:
        w = opt.step(w, g)
    again = make_optimizer("adam", lr=1e-3)
    again.load_state_dict(opt.state_dict())
    w1 = w2 = w
    for g in grads[3:]:
        w1, w2 = opt.step(w1, g), again.step(w2, g)
    assert w2.dtype == torch.float64 and torch.equal(w1, w2)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_registered_optimizer_steps_the_flat_vector_without_touching_its_inputs(name):
    gen = torch.Generator().manual_seed(3)
    w, g = torch.randn(30, generator=gen), torch.randn(30, generator=gen)
    w0, g0 = w.clone(), g.clone()
    opt = make_optimizer(name, lr=0.01)
    new = opt.step(w, g)
    new2 = opt.step(new, g)
    kept = new.clone()
    opt.step(new2, g)
    assert torch.equal(w, w0) and torch.equal(g, g0) and torch.equal(new, kept)
    assert torch.isfinite(new2).all() and not torch.equal(new2, w) and OPTIMIZERS.help(name)
    fresh = make_optimizer(name, lr=0.01)  # a state saved before the first step (adagrad's is made eagerly)
    fresh.load_state_dict(make_optimizer(name, lr=0.01).state_dict())
    assert torch.equal(fresh.step(w, g), new)


# ------------------------------------------------------------------------------------------ schedules
SCHEDULE_CASES = [
    ("cosine", torch.optim.lr_scheduler.CosineAnnealingLR, {"T_max": 12}),
    ("cosine:eta_min=1e-3", torch.optim.lr_scheduler.CosineAnnealingLR, {"T_max": 12, "eta_min": 1e-3}),
    ("step:step_size=3,gamma=0.5", torch.optim.lr_scheduler.StepLR, {"step_size": 3, "gamma": 0.5}),
    ("exponential:gamma=0.9", torch.optim.lr_scheduler.ExponentialLR, {"gamma": 0.9}),
    ("linear", torch.optim.lr_scheduler.LinearLR, {"total_iters": 12}),
    ("multistep:milestones=[4,8],gamma=0.1", torch.optim.lr_scheduler.MultiStepLR, {"milestones": [4, 8], "gamma": 0.1}),
    ("onecycle:max_lr=0.5", torch.optim.lr_scheduler.OneCycleLR, {"max_lr": 0.5, "total_steps": 12}),
    ("onecycle", torch.optim.lr_scheduler.OneCycleLR, {"max_lr": 0.1, "total_steps": 12}),
    ("polynomial:power=2", torch.optim.lr_scheduler.PolynomialLR, {"total_iters": 12, "power": 2}),
]


@pytest.mark.parametrize("spec, cls, kw", SCHEDULE_CASES)
def test_schedule_gives_torchs_lr_sequence_one_step_per_training_step(spec, cls, kw):
    dummy = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    sched = cls(dummy, **kw)
    expected = []
    for _ in range(12):
        expected.append(dummy.param_groups[0]["lr"])
        dummy.step()
        sched.step()
    opt = make_optimizer("sgd", lr=0.1, momentum=0.9, schedule=spec, total_steps=12)
    w, got = torch.zeros(3), []
    for t in range(12):
        if t == 5:
            opt.skip()  # a skipped step (non-finite gradient) still counts
        else:
            w = opt.step(w, torch.ones(3))
        got.append(opt.last_lr)
    assert got == expected
    assert opt.t == 11


def test_onecycle_stays_at_its_end_when_a_resumed_run_goes_longer():
    opt = make_optimizer("sgd", lr=0.1, schedule="onecycle", total_steps=4)
    w = torch.zeros(2)
    for _ in range(7):
        w = opt.step(w, torch.ones(2))
    assert opt.lr == opt.last_lr


def test_parse_schedule_and_optimizer_params_normalise_yaml_values():
    assert parse_schedule("multistep:milestones=[100,200],gamma=0.5") == ("multistep", {"milestones": [100, 200], "gamma": 0.5})
    assert parse_schedule("Cosine:eta_min=1e-5") == ("cosine", {"eta_min": 1e-5})
    assert optimizer_params("AdamW", {"betas": "0.9,0.99", "eps": "1e-7"}) == {"betas": (0.9, 0.99), "eps": 1e-7}
    assert optimizer_params("adam", {"betas": [0.9, 0.99]}) == {"betas": (0.9, 0.99)}
    assert "cosine" in SCHEDULES and "onecycle" in SCHEDULES


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: make_optimizer("adamx", lr=0.1), "did you mean"),
        (lambda: make_optimizer("lbfgs", lr=0.1), "closure"),
        (lambda: make_optimizer("adamw", lr=0.1, betass=(0.9, 0.99)),
         "unknown optimizer parameter 'betass' for 'adamw'; valid: ['betas', 'eps', 'amsgrad', 'maximize', "
         "'foreach', 'capturable', 'differentiable', 'fused']; did you mean 'betas'?"),
        (lambda: optimizer_params("sgd", {"momentum": 0.5}), "set it with momentum (--momentum)"),
        (lambda: make_optimizer("rprop", lr=0.1, weight_decay=0.1), "takes no weight_decay"),
        (lambda: make_optimizer("adam", lr=0.1, betas=(1.5, 0.9)), "Invalid beta parameter"),
        (lambda: make_optimizer("sgd", lr=0.1, momentum=1.0), "0 <= momentum < 1"),
        (lambda: make_optimizer("sgd", lr=0.1, schedule="cosin"),
         "unknown lr schedule 'cosin'; available: " + ", ".join(SCHEDULES) + "; did you mean 'cosine'?"),
        (lambda: make_optimizer("sgd", lr=0.1, schedule="step:step_siz=3"),
         "unknown lr schedule parameter 'step_siz' for 'step'; valid: ['step_size', 'gamma']; did you mean 'step_size'?"),
        (lambda: make_optimizer("sgd", lr=0.1, schedule="step"), "lr schedule 'step' needs step_size"),
        (lambda: make_optimizer("sgd", lr=0.1, schedule="cosine"), "needs T_max"),
        (lambda: make_optimizer("sgd", lr=0.1, schedule="step:step_size"), "expected key=value"),
    ],
)
def test_errors_name_the_constraint(build, message):
    with pytest.raises(ValueError) as err:
        build()
    assert message in str(err.value)


def test_state_of_another_schedule_is_refused():
    a = make_optimizer("sgd", lr=0.1, schedule="cosine", total_steps=5)
    with pytest.raises(ValueError, match="lr schedule"):
        make_optimizer("sgd", lr=0.1).load_state_dict(a.state_dict())


# ------------------------------------------------------------------------------------------ runs
def _cfg(tmp_path=None, **kw):
    from codedbft.cluster import RunConfig

    base = dict(backend="local", scheme="vanilla", aggregator="median", workers=5, byzantine=1, attack="sign-flip",
                dataset="digits", model="logreg", batch_size=40, steps=6, eval_every=3, checkpoint_every=3,
                optimizer="adamw", lr=0.05, weight_decay=1e-2, optimizer_params={"betas": "0.9,0.99"},
                lr_schedule="cosine")
    return RunConfig(**{**base, **kw})


def test_config_normalises_and_checks_the_optimizer_and_schedule():
    cfg = _cfg()
    assert cfg.optimizer_params == {"betas": (0.9, 0.99)} and cfg.lr_schedule == "cosine"
    assert _cfg(lr_schedule="none").lr_schedule is None
    with pytest.raises(ValueError, match="did you mean 'eps'"):
        _cfg(optimizer_params={"epss": 1e-6})
    with pytest.raises(ValueError, match="unknown lr schedule 'cosinus'"):
        _cfg(lr_schedule="cosinus")
    with pytest.raises(ValueError, match="setting 'master' only"):
        _cfg(setting="decentralized", aggregator=None, attack=None, byzantine=0)


def test_resume_with_a_schedule_reaches_the_uninterrupted_model(tmp_path):
    from codedbft.cluster import Master

    with Master(_cfg(), run_dir=str(tmp_path / "full")) as m:
        full = m.run()
    with Master(_cfg(), run_dir=str(tmp_path / "cut")) as m:
        m.run(steps=3)
    resumed = Master.resume(str(tmp_path / "cut"))
    try:
        assert resumed.step_idx == 3 and resumed.optimizer.scheduler.last_epoch == 3
        again = resumed.run()
    finally:
        resumed.close()
    assert again["model_sha256"] == full["model_sha256"]
    rows = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    dummy = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(dummy, T_max=6)
    expected = []
    for _ in range(6):
        expected.append(dummy.param_groups[0]["lr"])
        dummy.step()
        sched.step()
    assert [r["step"] for r in rows] == list(range(6)) and [r["lr"] for r in rows] == expected


def test_without_a_schedule_rows_have_no_lr_and_the_default_run_is_unchanged():
    from codedbft.cluster import Master

    with Master(_cfg(lr_schedule=None, optimizer="sgd", optimizer_params={}, momentum=0.9, weight_decay=0.0)) as m:
        row = m.step()
    assert "lr" not in row and m.optimizer.name == "sgd" and m.optimizer.momentum == 0.9


def test_cli_optimizer_flags_reach_config_json(tmp_path):
    from codedbft.cli import main

    run = tmp_path / "run"
    argv = ["train", "--backend", "local", "--scheme", "vanilla", "--aggregator", "median", "--workers", "5",
            "--byzantine", "1", "--attack", "sign-flip", "--model", "logreg", "--batch-size", "40", "--steps", "2",
            "--optimizer", "adamw", "--optimizer-param", "betas=0.9,0.99", "--optimizer-param", "eps=1e-7",
            "--lr-schedule", "cosine", "--lr", "0.05", "--run-dir", str(run), "--no-progress"]
    assert main(argv) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["optimizer"], cfg["optimizer_params"], cfg["lr_schedule"]) == ("adamw", {"betas": [0.9, 0.99], "eps": 1e-7}, "cosine")
    assert "lr" in json.loads((run / "metrics.jsonl").read_text().splitlines()[0])


@pytest.mark.parametrize("argv, message", [
    (["--optimizer-param", "betass=0.9,0.99", "--optimizer", "adam"], "did you mean 'betas'?"),
    (["--lr-schedule", "cosin"], "did you mean 'cosine'?"),
    (["--optimizer", "adamx"], "did you mean"),
])
def test_cli_optimizer_errors_exit_2(tmp_path, capsys, argv, message):
    from codedbft.cli import main

    with pytest.raises(SystemExit) as err:
        main(["train", "--backend", "local", "--run-dir", str(tmp_path), "--no-progress", *argv])
    assert err.value.code == 2 and message in capsys.readouterr().err


HAVE_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


@pytest.mark.skipif(not HAVE_TENSORBOARD, reason="the tensorboard package is not installed")
def test_tensorboard_writes_event_files(tmp_path):
    from codedbft.cluster import Master

    with Master(_cfg(tensorboard=True, steps=3), run_dir=str(tmp_path)) as m:
        m.run()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.skipif(HAVE_TENSORBOARD, reason="the tensorboard package is installed")
def test_tensorboard_without_the_package_is_a_config_error(tmp_path, capsys):
    from codedbft.cli import main

    with pytest.raises(ValueError, match="pip install tensorboard"):
        _cfg(tensorboard=True)
    with pytest.raises(SystemExit) as err:
        main(["train", "--backend", "local", "--tensorboard", "--run-dir", str(tmp_path), "--no-progress"])
    assert err.value.code == 2 and "pip install tensorboard" in capsys.readouterr().err
