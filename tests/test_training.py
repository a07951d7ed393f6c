"""Tests for codedbft.training: datasets, models, bit-exact partition gradients, optimizers."""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from codedbft.registry import Registry
from codedbft.training import (
    DATASETS,
    MODELS,
    OPTIMIZERS,
    FlatModel,
    build_model,
    load_dataset,
    make_optimizer,
    set_deterministic,
)
from codedbft.training.datasets import MNIST1D_OPTIONS, _mnist1d_arrays


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread per test (restored after): two OpenMP threads on this shared 2-core
    machine are pathologically slow under load. The two-thread case is covered by the fresh-process
    test, which sets it explicitly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def deterministic():
    """set_deterministic(0, threads=1) for one test, then restore the process-wide torch settings."""
    was_det, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    set_deterministic(0, threads=1)
    yield
    torch.use_deterministic_algorithms(was_det)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def _sha(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


# ----------------------------------------------------------------------------- datasets
@pytest.mark.parametrize(
    "name, n_train, n_test, shape, task, classes, y_shape",
    [
        ("digits", 1438, 359, (64,), "classification", 10, ()),
        ("digits-linear", 1438, 359, (64,), "regression", 10, (10,)),
        ("synthetic-regression", 2000, 500, (50,), "regression", None, ()),
    ],
)
def test_dataset_shapes_types_and_seed(name, n_train, n_test, shape, task, classes, y_shape):
    ds = load_dataset(name, seed=3)
    assert ds.name == name and ds.task == task and ds.num_classes == classes
    assert ds.input_shape == shape
    assert ds.X_train.shape == (n_train, *shape) and ds.X_test.shape == (n_test, *shape)
    assert ds.y_train.shape == (n_train, *y_shape) and ds.y_test.shape == (n_test, *y_shape)
    assert ds.X_train.dtype == torch.float32
    assert ds.y_train.dtype == (torch.int64 if task == "classification" else torch.float32)
    if name.startswith("digits"):
        assert float(ds.X_train.min()) == 0.0 and float(ds.X_train.max()) == 1.0
        # train and test are a partition of the 1797 bundled images (no duplicates across the split).
        assert n_train + n_test == 1797
    same = load_dataset(name, seed=3)
    other = load_dataset(name, seed=4)
    assert torch.equal(same.X_train, ds.X_train) and torch.equal(same.y_train, ds.y_train)
    assert not torch.equal(other.X_train, ds.X_train)
    assert (ds.optimum is None) == (task == "classification")
    if ds.optimum is not None:
        assert ds.optimum.dtype == torch.float64


def test_mnist1d_generated_offline_without_side_effects(tmp_path, monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("mnist1d loader touched the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.chdir(tmp_path)
    _mnist1d_arrays.cache_clear()  # really run the generator, not an earlier test's cached copy
    np_state, py_state = np.random.get_state(), random.getstate()
    ds = load_dataset("mnist1d")
    assert list(tmp_path.iterdir()) == []  # nothing cached on disk
    assert np.array_equal(np.random.get_state()[1], np_state[1]) and random.getstate() == py_state
    # the canonical MNIST-1D: 4000 train + 1000 test signals of length 40, 500 per class
    assert ds.X_train.shape == (4000, 40) and ds.X_test.shape == (1000, 40) and ds.input_shape == (40,)
    assert ds.X_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64 and ds.num_classes == 10
    assert torch.bincount(torch.cat([ds.y_train, ds.y_test])).tolist() == [500] * 10
    allx = torch.cat([ds.X_train, ds.X_test]).double()
    assert abs(float(allx.mean())) < 1e-5 and abs(float(allx.std(unbiased=False)) - 1) < 1e-5
    # reproducible from the generator seed (two real generations, small size)
    small = load_dataset("mnist1d", num_samples=200)
    _mnist1d_arrays.cache_clear()
    assert torch.equal(load_dataset("mnist1d", num_samples=200).X_train, small.X_train)
    assert not torch.equal(load_dataset("mnist1d", num_samples=200, generator_seed=7).X_train, small.X_train)


def test_batches_are_deterministic_distinct_and_seeded(digits):
    a = digits.batch(step=5, batch_size=300, seed=1)
    assert a.dtype == torch.int64 and a.shape == (300,)
    assert torch.equal(a, digits.batch(step=5, batch_size=300, seed=1))  # a resumed run redraws it
    assert a.unique().numel() == 300  # without replacement within a step
    assert int(a.min()) >= 0 and int(a.max()) < digits.num_train
    assert not torch.equal(a, digits.batch(step=6, batch_size=300, seed=1))
    assert not torch.equal(a, digits.batch(step=5, batch_size=300, seed=2))
    full = digits.batch(step=0, batch_size=digits.num_train, seed=0)
    assert torch.equal(full.sort().values, torch.arange(digits.num_train))
    X, y = digits.partition_batch(step=5, k=10, b=30, seed=1)
    assert X.shape == (10, 30, 64) and y.shape == (10, 30)
    assert torch.equal(X[2], digits.X_train[a[60:90]]) and torch.equal(y[9], digits.y_train[a[270:]])
    with pytest.raises(ValueError, match="batch_size"):
        digits.batch(0, digits.num_train + 1, 0)


def test_bad_configuration_raises():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match="noise >= 0"):
        load_dataset("synthetic-regression", noise=-1.0)
    ds = load_dataset("synthetic-regression", p=3, n_train=10, n_test=5)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet", ds)
    with pytest.raises(ValueError, match="hidden sizes"):
        build_model("mlp", ds, hidden=(0,))
    with pytest.raises(ValueError, match="lr > 0"):
        make_optimizer("sgd", lr=0.0)
    with pytest.raises(ValueError, match="momentum < 1"):
        make_optimizer("sgd", lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("lbfgs", lr=0.1)


# ----------------------------------------------------------------------------- registries
def test_registries_yield_their_names():
    assert isinstance(DATASETS, Registry) and isinstance(MODELS, Registry) and isinstance(OPTIMIZERS, Registry)
    assert tuple(DATASETS) == ("digits", "digits-linear", "mnist1d", "synthetic-regression")
    assert tuple(MODELS) == ("cnn1d", "linear", "logreg", "mlp")
    assert {"adam", "adamw", "adagrad", "rmsprop", "sgd"} <= set(OPTIMIZERS)
    assert "digits" in DATASETS and "synthetic_regression" in DATASETS and "cifar" not in DATASETS
    assert "mlp" in MODELS and "sgd" in OPTIMIZERS and "lbfgs" not in OPTIMIZERS
    for reg in (DATASETS, MODELS, OPTIMIZERS):
        assert all(reg.help(name) for name in reg)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: load_dataset("cifar"), "unknown dataset 'cifar'; available: digits, digits-linear, mnist1d, synthetic-regression"),
        (lambda: build_model("resnet", None), "unknown model 'resnet'; available: cnn1d, linear, logreg, mlp"),
        (lambda: make_optimizer("rmsprob", lr=0.1), "unknown optimizer 'rmsprob'; available: " + ", ".join(OPTIMIZERS)
         + "; did you mean 'rmsprop' or 'rprop'?"),
    ],
)
def test_unknown_names_list_the_available_ones(build, message):
    with pytest.raises(ValueError) as err:
        build()
    assert str(err.value) == message


@pytest.mark.parametrize(
    "name, valid",
    [
        ("digits", ["test_fraction"]),
        ("digits-linear", ["test_fraction", "target"]),
        ("synthetic-regression", ["n_train", "n_test", "p", "noise"]),
        ("mnist1d", ["generator_seed", "num_samples", *MNIST1D_OPTIONS]),
    ],
)
def test_unknown_dataset_option_names_the_key_and_lists_the_valid_ones(name, valid, monkeypatch):
    import codedbft.training.datasets as datasets

    # the check comes first: nothing is loaded or generated for a misconfigured dataset
    monkeypatch.setattr(datasets, "_digits_arrays", lambda: pytest.fail("loaded data"))
    monkeypatch.setattr(datasets, "_mnist1d_arrays", lambda key: pytest.fail("generated data"))
    with pytest.raises(ValueError) as err:
        load_dataset(name, foo=1)
    assert str(err.value) == f"unknown dataset parameter ['foo'] for {name!r}; valid: {valid}"


def test_mnist1d_options_are_the_generators_own():
    from mnist1d.data import get_dataset_args

    assert set(MNIST1D_OPTIONS) == set(get_dataset_args(as_dict=True)) - {"url", "seed", "num_samples"}
    with pytest.raises(ValueError, match=r"\['url'\] for 'mnist1d'"):
        load_dataset("mnist1d", url="http://example.invalid")  # the downloader's option is never taken


@pytest.mark.parametrize(
    "name, valid", [("logreg", "none"), ("mlp", "['hidden']"), ("cnn1d", "['channels', 'kernel_size']"), ("linear", "['bias']")]
)
def test_unknown_model_option_names_the_key_and_lists_the_valid_ones(digits, name, valid):
    with pytest.raises(ValueError) as err:
        build_model(name, digits, foo=1)
    assert str(err.value) == f"unknown model parameter ['foo'] for {name!r}; valid: {valid}"


@pytest.mark.parametrize(
    "name, valid",
    [("sgd", ["dampening", "nesterov", "maximize", "foreach", "differentiable", "fused"]),
     ("adam", ["betas", "eps", "amsgrad", "foreach", "maximize", "capturable", "differentiable", "fused",
               "decoupled_weight_decay"])],
)
def test_unknown_optimizer_option_names_the_key_and_lists_the_valid_ones(name, valid):
    with pytest.raises(ValueError) as err:
        make_optimizer(name, lr=0.1, foo=1, bar=2)
    assert str(err.value) == f"unknown optimizer parameter 'foo' for {name!r}; valid: {valid}"


def test_momentum_goes_to_the_optimizers_that_take_it_and_options_reach_the_optimizer():
    opt = make_optimizer("adam", lr=0.1, momentum=0.8, betas=(0.5, 0.99), eps=1e-6)
    assert (opt.betas, opt.eps) == ((0.5, 0.99), 1e-6) and "momentum" not in opt.torch_optimizer.defaults
    sgd = make_optimizer("SGD", lr=0.1, momentum=0.5, weight_decay=0.1)
    assert (sgd.name, sgd.momentum, sgd.weight_decay, sgd.foreach) == ("sgd", 0.5, 0.1, False)
    assert make_optimizer("rmsprop", lr=0.1, momentum=0.5).momentum == 0.5


# ----------------------------------------------------------------------------- models
def test_model_init_is_seeded_and_leaves_global_rng_alone(digits):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = FlatModel(build_model("mlp", digits, seed=5)).init_params()
    assert torch.equal(torch.rand(3), expected_next)
    b = FlatModel(build_model("mlp", digits, seed=5)).init_params()
    c = FlatModel(build_model("mlp", digits, seed=6)).init_params()
    assert a.dtype == torch.float32 and a.shape == (64 * 64 + 64 + 64 * 10 + 10,)
    assert torch.equal(a, b) and not torch.equal(a, c)


def _reference_grads(model, X_parts, y_parts, loss):
    """Float64 autograd on a double copy of the module, one partition and one .backward() at a time."""
    ref = pickle.loads(pickle.dumps(model)).double()
    rows = []
    for X, y in zip(X_parts, y_parts):
        ref.zero_grad()
        out = ref(X.double())
        if loss == "mse":
            yy = y.double()
            val = 0.5 * ((out - yy) ** 2).reshape(len(yy), -1).sum(1).mean()
        else:
            val = torch.nn.functional.cross_entropy(out, y)
        val.backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in ref.parameters()]))
    return torch.stack(rows)


@pytest.mark.parametrize(
    "dsname, model, opts",
    [
        ("digits", "logreg", {}),
        ("digits", "mlp", {"hidden": (32, 16)}),
        ("digits", "cnn1d", {"channels": 4}),
        ("digits-linear", "linear", {}),
        ("synthetic-regression", "linear", {"bias": True}),
    ],
)
def test_partition_gradients_match_float64_autograd(dsname, model, opts):
    ds = load_dataset(dsname, seed=0)
    m = build_model(model, ds, seed=1, **opts)
    fm = FlatModel(m)
    X, y = ds.partition_batch(step=0, k=4, b=16, seed=0)
    w = fm.init_params() + 0.05 * torch.randn(fm.d, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # the reference module must hold the same perturbed parameters
        for p, v in zip(m.parameters(), fm.unflatten(w).values()):
            p.copy_(v)
    ref = _reference_grads(m, X, y, fm.loss_name)
    G32 = fm.partition_gradients(w, X, y)
    G64 = fm.partition_gradients(w.double(), X, y)
    assert G32.shape == (4, fm.d) and G32.dtype == torch.float32 and G64.dtype == torch.float64
    torch.testing.assert_close(G64, ref, rtol=1e-12, atol=1e-13)
    scale = ref.abs().max()
    assert (G32.double() - ref).abs().max() <= 1e-5 * scale


def test_partition_gradient_matches_central_finite_differences():
    ds = load_dataset("digits", seed=0)
    X, y = ds.X_train[:12], ds.y_train[:12]
    for model, opts in [("mlp", {"hidden": (3,)}), ("cnn1d", {"channels": 2, "kernel_size": 3})]:
        fm = FlatModel(build_model(model, ds, seed=0, **opts))
        w = fm.init_params().double()
        g = fm.partition_gradient(w, X, y)
        h = 1e-6
        H = h * torch.eye(fm.d, dtype=torch.float64)
        # all 2d perturbed losses in one batched call (vmap over parameter vectors, not data)
        losses = torch.func.vmap(fm.loss_fn, in_dims=(0, None, None))
        with torch.no_grad():
            fd = (losses(w + H, X, y) - losses(w - H, X, y)) / (2 * h)
        # ReLU kinks make some coordinates non-differentiable in principle; at a random point with
        # h = 1e-6 none is crossed, so agreement is to finite-difference accuracy everywhere.
        torch.testing.assert_close(g, fd, rtol=1e-6, atol=1e-8)


def test_synthetic_regression_optimum_zeroes_the_gradient():
    for noise in (0.0, 0.5):
        ds = load_dataset("synthetic-regression", seed=2, noise=noise)
        fm = FlatModel(build_model("linear", ds))
        assert fm.d == 50
        g = fm.partition_gradient(ds.optimum, ds.X_train, ds.y_train)
        assert g.dtype == torch.float64 and float(g.norm()) < 1e-10
        g_start = fm.partition_gradient(torch.zeros(50, dtype=torch.float64), ds.X_train, ds.y_train)
        assert float(g_start.norm()) > 1.0
        w_star = ds.info["w_star"]
        gap = float((ds.optimum - w_star).norm() / w_star.norm())
        assert gap < 1e-6 if noise == 0 else gap > 1e-4
    dl = load_dataset("digits-linear", seed=0)
    fl = FlatModel(build_model("linear", dl))
    assert float(fl.partition_gradient(dl.optimum, dl.X_train, dl.y_train).norm()) < 1e-10
    assert fl.accuracy(dl.optimum, dl.X_test, dl.y_test) > 0.9  # the least-squares classifier works
    assert FlatModel(build_model("linear", ds)).accuracy(ds.optimum, ds.X_test, ds.y_test) is None


# ----------------------------------------------------------------------------- bit-exactness
_SUBPROCESS = textwrap.dedent(
    """
    import hashlib, pickle, sys, torch
    from codedbft.training import FlatModel, build_model, set_deterministic
    with open(sys.argv[1], "rb") as f:  # the parent's Dataset: spares this process the sklearn import
        ds = pickle.load(f)
    X, y = ds.partition_batch(step=7, k=6, b=20, seed=3)
    for threads in (1, 2):
        set_deterministic(0, threads=threads)
        for name, opts in [("logreg", {}), ("mlp", {}), ("cnn1d", {"channels": 4})]:
            fm = FlatModel(build_model(name, ds, seed=0, **opts))
            w = fm.init_params()
            # partition 4 in a call of 3, at position 1, with other neighbours than in the parent
            G = fm.partition_gradients(w, X[[0, 4, 5]], y[[0, 4, 5]])
            print(f"{threads}/{name}", hashlib.sha256(G[1].numpy().tobytes()).hexdigest())
    """
)


@pytest.mark.parametrize("model, opts", [("logreg", {}), ("mlp", {}), ("cnn1d", {"channels": 4}), ("linear", {})])
def test_partition_gradient_bits_independent_of_batch_and_position(deterministic, model, opts):
    dsname = "digits-linear" if model == "linear" else "digits"
    ds = load_dataset(dsname, seed=0)
    fm = FlatModel(build_model(model, ds, seed=0, **opts))
    w = fm.init_params()
    X, y = ds.partition_batch(step=7, k=6, b=20, seed=3)
    G = fm.partition_gradients(w, X, y)
    perm = torch.tensor([5, 3, 0, 4, 1, 2])
    Gp = fm.partition_gradients(w, X[perm], y[perm])
    for j in range(6):
        alone = fm.partition_gradient(w, X[j].clone(), y[j].clone())
        assert _sha(alone) == _sha(G[j])  # alone == in a batch of k
        assert _sha(Gp[int((perm == j).nonzero())]) == _sha(G[j])  # another position, other neighbours
    # a pickled copy (how Ray ships it to an actor) gives the same bytes, before and after vmap use
    FlatModel(fm.model, batching="vmap").partition_gradients(w, X, y)
    shipped = pickle.loads(pickle.dumps(fm))
    assert _sha(shipped.partition_gradients(w, X, y)) == _sha(G)
    # a misaligned view of the same data (offset by 3 floats in a bigger buffer) gives the same bytes
    buf = torch.empty(X.numel() + 3)
    Xu = buf[3:].view_as(X)
    Xu.copy_(X)
    assert _sha(fm.partition_gradients(w, Xu, y)) == _sha(G)
    # a poisoned partition (NaN/Inf/huge data) is computed without error and leaves the others' bytes intact
    Xbad = X.clone()
    Xbad[2, 0, 0], Xbad[2, 1, 1], Xbad[3] = float("nan"), float("inf"), 3e38
    Gbad = fm.partition_gradients(w, Xbad, y)
    assert not torch.isfinite(Gbad[2]).all()
    for j in (0, 1, 4, 5):
        assert _sha(Gbad[j]) == _sha(G[j])


def test_partition_gradient_bits_identical_in_a_fresh_process(deterministic, tmp_path):
    ds = load_dataset("digits", seed=0)
    (tmp_path / "ds.pkl").write_bytes(pickle.dumps(ds))
    X, y = ds.partition_batch(step=7, k=6, b=20, seed=3)
    expected = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)  # the fixture restores the original count
        for name, opts in [("logreg", {}), ("mlp", {}), ("cnn1d", {"channels": 4})]:
            fm = FlatModel(build_model(name, ds, seed=0, **opts))
            expected[f"{threads}/{name}"] = _sha(fm.partition_gradients(fm.init_params(), X, y)[4])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS, str(tmp_path / "ds.pkl")], capture_output=True, text=True, check=True, env=env, timeout=120
    ).stdout
    got = dict(line.split() for line in out.strip().splitlines())
    assert got == expected


# ----------------------------------------------------------------------------- training + optimizers
def test_logreg_digits_full_batch_sgd_reaches_90_percent(digits):
    fm = FlatModel(build_model("logreg", digits, seed=0))
    w = fm.init_params()
    assert fm.accuracy(w, digits.X_test, digits.y_test) < 0.3
    opt = make_optimizer("sgd", lr=0.5)
    for _ in range(200):
        w = opt.step(w, fm.partition_gradient(w, digits.X_train, digits.y_train))
    assert fm.accuracy(w, digits.X_test, digits.y_test) > 0.9
    assert fm.loss(w, digits.X_train, digits.y_train) < 0.5


@pytest.mark.parametrize(
    "name, kw, torch_cls, torch_kw",
    [
        ("sgd", {"momentum": 0.9, "weight_decay": 1e-3}, torch.optim.SGD, {"momentum": 0.9, "weight_decay": 1e-3}),
        ("sgd", {}, torch.optim.SGD, {}),
        ("adam", {"weight_decay": 1e-3}, torch.optim.Adam, {"weight_decay": 1e-3}),
    ],
)
def test_optimizer_matches_torch_and_state_round_trip(digits, name, kw, torch_cls, torch_kw):
    fm = FlatModel(build_model("logreg", digits, seed=0))
    def grad(w, t):
        X, y = digits.partition_batch(t, 1, 64, seed=0)
        return fm.partition_gradient(w, X[0], y[0])
    lr = 0.05 if name == "adam" else 0.3
    opt = make_optimizer(name, lr=lr, **kw)
    p = torch.nn.Parameter(fm.init_params())
    topt = torch_cls([p], lr=lr, foreach=False, **torch_kw)
    w = fm.init_params()
    traj = []
    for t in range(12):
        g = grad(w, t)
        w = opt.step(w, g)
        p.grad = g.clone()
        topt.step()
        traj.append(w)
        if t == 5:
            saved_w, saved_sd = w.clone(), pickle.loads(pickle.dumps(opt.state_dict()))
    # same update rule as PyTorch's own optimizer, bit for bit
    assert torch.equal(w, p.detach())
    # resume from the pickled state: identical trajectory
    opt2 = make_optimizer(name, lr=lr, **kw)
    opt2.load_state_dict(saved_sd)
    w2 = saved_w
    for t in range(6, 12):
        w2 = opt2.step(w2, grad(w2, t))
        assert torch.equal(w2, traj[t])
    with pytest.raises(ValueError, match="state is for optimizer"):
        make_optimizer("adam" if name == "sgd" else "sgd", lr=0.1).load_state_dict(saved_sd)


@pytest.mark.parametrize("name, kw", [("sgd", {"momentum": 0.9, "weight_decay": 1e-3}), ("adam", {"weight_decay": 1e-3})])
def test_checkpoints_of_the_hand_written_optimizers_still_load(digits, name, kw):
    """The state format of the hand-written SGD/Adam that torch.optim replaced: an old checkpoint resumes."""
    fm = FlatModel(build_model("logreg", digits, seed=0))
    X, y = digits.partition_batch(0, 1, 64, seed=0)
    opt = make_optimizer(name, lr=0.05, **kw)
    w = fm.init_params()
    for _ in range(3):
        w = opt.step(w, fm.partition_gradient(w, X[0], y[0]))
    tstate = opt.state_dict()["optimizer"]["state"][0]
    legacy = {"name": name, "t": 3, "lr": 0.05, "weight_decay": kw["weight_decay"]}
    if name == "sgd":
        legacy.update(momentum=0.9, buf=tstate["momentum_buffer"].clone())
    else:
        legacy.update(beta1=0.9, beta2=0.999, eps=1e-8, m=tstate["exp_avg"].clone(), v=tstate["exp_avg_sq"].clone())
    old = make_optimizer(name, lr=0.05, **kw)
    old.load_state_dict(legacy)
    g = fm.partition_gradient(w, X[0], y[0])
    assert torch.equal(old.step(w, g), opt.step(w, g)) and old.t == opt.t == 4
