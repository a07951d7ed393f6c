"""inf, mimic, alie-opt, ipm-opt, min-max, min-sum and gaussian's ``mean`` (docs/attacks.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codedbft.aggregators import by_name as aggregator
from codedbft.attacks.adaptive import damage, default_defence
from codedbft.attacks.base import AttackContext, by_name, step_generator
from codedbft.encoders import RepetitionCode

NEW = ("inf", "mimic", "alie-opt", "ipm-opt", "min-max", "min-sum")


def _honest(h: int = 9, d: int = 16, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # heterogeneous: a common drift plus worker-specific offsets of different sizes
    base = torch.randn(d, generator=g, dtype=torch.float64) + 0.5
    offs = torch.randn(h, d, generator=g, dtype=torch.float64) * torch.linspace(0.2, 2.0, h, dtype=torch.float64)[:, None]
    return (base + offs).to(dtype)


# --- every new attack on the default context ---------------------------------------------------------


@pytest.mark.parametrize("name", NEW + ("gaussian",))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_runs_on_default_context(name, dtype):
    honest = _honest(dtype=dtype)
    ids = [9, 10, 11]
    a = by_name(name)
    out = a(honest, ids, AttackContext.build(honest, ids, step=0, seed=0))
    assert out.shape == (3, honest.shape[1]) and out.dtype == dtype and out.device == honest.device
    again = by_name(name)(honest, ids, AttackContext.build(honest, ids, step=0, seed=0))
    assert torch.equal(out, again) or (name == "inf" and torch.isinf(again).all())
    if name != "inf":
        assert torch.isfinite(out).all()
    assert a(honest, [], AttackContext.build(honest, [], step=0, seed=0)).shape == (0, honest.shape[1])


@pytest.mark.parametrize("name", ("mimic", "alie-opt", "ipm-opt", "min-max", "min-sum"))
def test_needs_honest(name):
    empty = torch.zeros(0, 4)
    with pytest.raises(ValueError):
        by_name(name)(empty, [0, 1], AttackContext(n=2))


# --- inf ---------------------------------------------------------------------------------------------


def test_inf_handled_by_aggregator_and_code():
    honest = _honest(h=12, d=8)
    ids = [12, 13, 14]
    bad = by_name("inf")(honest, ids, AttackContext.build(honest, ids, step=0, seed=0))
    assert torch.isposinf(bad).all()
    med = aggregator("median", f=3)
    out = med(torch.cat([honest, bad]))
    assert torch.isfinite(out).all()
    assert med.last_info["nonfinite_rows"] == 3

    code = RepetitionCode(9, s=1)
    G = _honest(h=3, d=8, seed=1, dtype=torch.float64)
    msgs = code.encode(G).clone()
    byz = [0, 4, 8]  # one worker per group: every vote still has a majority
    ctx = AttackContext.build(msgs[[i for i in range(9) if i not in byz]], byz, step=0, seed=0, n=9)
    msgs[byz] = by_name("inf")(msgs[[i for i in range(9) if i not in byz]], byz, ctx)
    res = code.decode(msgs)
    grad = torch.as_tensor(res.gradient)
    assert torch.isfinite(grad).all()
    assert torch.allclose(grad, G.sum(dim=0))
    assert set(byz) <= set(res.flagged)


def test_inf_rejects_integer_messages():
    honest = torch.ones(3, 4, dtype=torch.int64)
    with pytest.raises(ValueError):
        by_name("inf")(honest, [3], AttackContext(n=4))


# --- mimic -------------------------------------------------------------------------------------------


def _mimic_reference(x: np.ndarray) -> int:
    x = x.astype(np.float64)
    c = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    s = np.abs(c @ vt[0])
    return int(np.flatnonzero(s >= s.max() * (1 - 1e-9))[0])


@pytest.mark.parametrize("seed", range(5))
def test_mimic_copies_largest_projection(seed):
    honest = _honest(h=7, d=20, seed=seed)
    ids = [7, 8]
    a = by_name("mimic")
    out = a(honest, ids, AttackContext.build(honest, ids, step=0, seed=0))
    i = _mimic_reference(honest.numpy())
    assert a.last_choice == i
    assert torch.equal(out, honest[i].expand(2, -1))


def test_mimic_tie_goes_to_lower_index():
    v = torch.tensor([1.0, 2.0, -1.0])
    honest = torch.stack([v, -v, v * 0.0])  # rows 0 and 1 tie in |projection|
    a = by_name("mimic")
    out = a(honest, [3], AttackContext.build(honest, [3], step=0, seed=0))
    assert a.last_choice == 0 and torch.equal(out[0], v)
    same = torch.ones(4, 3)  # all equal: every projection 0, row 0
    assert torch.equal(a(same, [4], AttackContext.build(same, [4])), same[:1])


def test_mimic_online_state_roundtrip():
    a = by_name("mimic", online=True)
    ids = [9]
    outs = []
    for t in range(3):
        h = _honest(seed=t)
        outs.append(a(h, ids, AttackContext.build(h, ids, step=t, seed=0)))
    state = a.state_dict()
    assert state["t"] == 3 and state["direction"].shape == (16,)
    b = by_name("mimic", online=True)
    b.load_state_dict(state)
    h = _honest(seed=7)
    assert torch.equal(a(h, ids, AttackContext.build(h, ids)), b(h, ids, AttackContext.build(h, ids)))
    assert a.last_choice == b.last_choice
    a.reset()
    assert a.state_dict()["direction"] is None


# --- alie-opt / ipm-opt ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["alie-opt", "ipm-opt"])
@pytest.mark.parametrize("how", ["default", "krum-ctor", "krum-ctx", "mean-ctor"])
@pytest.mark.parametrize("refine", [0, 12])
def test_scale_search_beats_brute_force(name, how, refine):
    honest = _honest(h=8, d=10, seed=3, dtype=torch.float64)
    ids = [8, 9]
    b = len(ids)
    grid, low, high = 11, 0.0, 5.0
    krum = aggregator("krum", f=b)
    ctx = AttackContext.build(honest, ids, step=0, seed=0)
    kw = dict(grid=grid, low=low, high=high, refine=refine)
    if how == "krum-ctor":
        kw["defence"] = krum
    if how == "mean-ctor":
        kw["defence"] = aggregator("mean")
    if how == "krum-ctx":
        ctx.defence = krum  # optional attribute, not a field of AttackContext
    defence = {"default": default_defence(b), "krum-ctor": krum, "krum-ctx": krum,
               "mean-ctor": aggregator("mean")}[how]
    a = by_name(name, **kw)
    out = a(honest, ids, ctx)
    assert torch.equal(out[0], out[1])
    mu = honest.mean(dim=0)
    chosen = damage(defence, honest, out[0], b, mu)
    assert chosen == pytest.approx(a.last_damage, rel=1e-12, abs=1e-12)
    assert low <= a.last_scale <= high
    brute = [damage(defence, honest, a.forged_vector(honest, s), b, mu) for s in np.linspace(low, high, grid)]
    assert chosen >= max(brute) - 1e-9
    # against the mean the damage grows linearly with the scale: the optimum is the range's end
    if how == "mean-ctor":
        assert a.last_scale == high


def test_scale_opt_restores_stateful_defence():
    class Counting:
        def __init__(self):
            self.calls = 0

        def __call__(self, x):
            self.calls += 1
            return x.median(dim=0).values

        def state_dict(self):
            return {"calls": self.calls}

        def load_state_dict(self, s):
            self.calls = s["calls"]

    d = Counting()
    honest = _honest()
    by_name("alie-opt", defence=d)(honest, [9], AttackContext.build(honest, [9]))
    assert d.calls == 0


def test_scale_opt_bad_params():
    for kw in ({"grid": 0}, {"refine": -1}, {"low": 2.0, "high": 1.0}, {"defence": 3}, {"low": float("nan")}):
        with pytest.raises(ValueError):
            by_name("alie-opt", **kw)


# --- min-max / min-sum -------------------------------------------------------------------------------


def _np_perturbation(x: np.ndarray, kind: str) -> np.ndarray:
    mu = x.mean(axis=0)
    if kind == "unit":
        return -mu / np.linalg.norm(mu)
    if kind == "std":
        return -x.std(axis=0)
    return -np.sign(mu)


def _violates(x: np.ndarray, v: np.ndarray, rule: str) -> bool:
    pair = ((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)
    dist = ((v[None, :] - x) ** 2).sum(axis=1)
    if rule == "min-max":
        return dist.max() > pair.max() * (1 + 1e-12)
    return dist.sum() > pair.sum(axis=1).max() * (1 + 1e-12)


@pytest.mark.parametrize("rule", ["min-max", "min-sum"])
@pytest.mark.parametrize("kind", ["unit", "std", "sign"])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e3])  # γ* far below and far above gamma_init = 10
def test_gamma_is_largest_feasible(rule, kind, seed, scale):
    honest = _honest(h=8, d=12, seed=seed, dtype=torch.float64) * scale
    ids = [8, 9, 10]
    a = by_name(rule, perturbation=kind)
    out = a(honest, ids, AttackContext.build(honest, ids, step=0, seed=0))
    x = honest.numpy()
    p = _np_perturbation(x, kind)
    mu = x.mean(axis=0)
    g = a.last_gamma
    assert g > 0
    np.testing.assert_allclose(out.numpy(), np.tile(mu + g * p, (3, 1)), rtol=1e-12, atol=1e-12 * scale)
    assert not _violates(x, mu + g * p, rule)
    assert _violates(x, mu + g * (1 + 1e-4) * p, rule)


def test_min_max_zero_perturbation():
    honest = torch.zeros(4, 5)
    honest[0, 0], honest[1, 0] = 1.0, -1.0  # μ = 0: no direction
    a = by_name("min-max")
    out = a(honest, [4], AttackContext.build(honest, [4]))
    assert a.last_gamma == 0.0 and torch.equal(out[0], honest.mean(dim=0))
    with pytest.raises(ValueError):
        by_name("min-sum", perturbation="random")


# --- gaussian's mean ---------------------------------------------------------------------------------


def test_gaussian_default_bit_identical():
    honest = _honest(h=5, d=33)
    ids = [5, 6, 7]
    out = by_name("gaussian", sigma=3.5)(honest, ids, AttackContext.build(honest, ids, step=4, seed=11))
    g = step_generator(11, 4)
    expected = torch.randn((3, 33), generator=g, dtype=torch.float32).mul_(3.5)
    assert torch.equal(out, expected)
    out = by_name("gaussian")(honest, ids, AttackContext.build(honest, ids, step=0, seed=0))
    assert torch.equal(out, torch.randn((3, 33), generator=step_generator(0, 0)).mul_(200.0))


def test_gaussian_mean():
    honest = _honest(h=5, d=33, dtype=torch.float64)
    ids = [5, 6]
    base = by_name("gaussian", sigma=2.0)(honest, ids, AttackContext.build(honest, ids, seed=3))
    shifted = by_name("gaussian", sigma=2.0, mean=1.5)(honest, ids, AttackContext.build(honest, ids, seed=3))
    assert torch.allclose(shifted, base + 1.5)
    at_honest = by_name("gaussian", sigma=2.0, mean="honest")(honest, ids, AttackContext.build(honest, ids, seed=3))
    assert torch.allclose(at_honest, base + honest.mean(dim=0))
    assert torch.equal(by_name("gaussian", sigma=0.0, mean="honest")(honest, ids, AttackContext.build(honest, ids))[0],
                       honest.mean(dim=0))
    for bad in ("median", float("inf")):
        with pytest.raises(ValueError):
            by_name("gaussian", mean=bad)
    with pytest.raises(ValueError):
        by_name("gaussian", mean="honest")(torch.zeros(0, 3), [0], AttackContext(n=1))


@pytest.mark.parametrize("name", NEW)
def test_nonfinite_honest_does_not_crash(name):
    honest = _honest()
    honest[2, 3] = float("nan")
    honest[4, 0] = float("inf")
    ids = [9, 10]
    out = by_name(name)(honest, ids, AttackContext.build(honest, ids, step=0, seed=0))
    assert out.shape == (2, honest.shape[1])
