"""Attacks (docs/attacks.md) and adversary placements.

Every formula is checked against a float64 numpy/scipy reference on fixed inputs; random attacks are
checked for reproducibility from the seed and, statistically, for their rate and magnitude.
"""

from __future__ import annotations

import inspect
import itertools
import math

import re

import numpy as np
import pytest
import scipy.stats
import torch

from codedbft.attacks import (
    ALIE,
    ATTACKS,
    PLACEMENTS,
    Attack,
    AttackContext,
    FixedPlacement,
    Mixed,
    RandomPlacement,
    WorstPlacement,
    alie_z,
    available,
    by_name,
    placement_by_name,
    register,
    step_generator,
)
from codedbft.attacks.base import draw_hits, own_messages
from codedbft.attacks.local import LabelFlip
from codedbft.attacks.omniscient import population_std_mean

ALL = (
    "alie", "alie-opt", "bit-flip", "collude", "constant", "gambler", "gaussian", "inf",
    "ipm", "ipm-opt", "label-flip", "mimic", "min-max", "min-sum", "mixed", "omniscient", "sign-flip",
)  # fmt: skip
RANDOM = ("bit-flip", "collude", "gambler", "gaussian", "mixed")
# parameters under which the random attacks draw visibly on a (3, 64) input
VISIBLE = {"bit-flip": {"fraction": 0.5}, "gambler": {"p": 0.5}}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def setup(h: int = 12, b: int = 3, d: int = 64, seed: int = 0, dtype=torch.float64, device="cpu"):
    """Honest stack, Byzantine ids, and a context whose ``own`` rows differ from the honest ones."""
    g = torch.Generator().manual_seed(1000 + seed)
    honest = (torch.randn(h, d, generator=g, dtype=torch.float64) + 0.5).to(dtype=dtype, device=device)
    own = torch.randn(b, d, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    ids = tuple(range(1, 2 * b, 2))
    ctx = AttackContext.build(honest, ids, step=3, seed=seed, own=own)
    return honest, ids, ctx


def forge(name: str, honest, ids, ctx, **params) -> torch.Tensor:
    """Run an attack on a context with a fresh generator of the same seed (contexts are reusable)."""
    ctx = AttackContext(ctx.step, ctx.true_gradient, ctx.own, ctx.assignment, ctx.n,
                        torch.Generator().manual_seed(ctx.generator.initial_seed()))  # fmt: skip
    return by_name(name, **params)(honest, ids, ctx)


# --- registry -------------------------------------------------------------------------------------


def test_available_lists_every_attack_and_message_level_drops_data_attacks():
    assert set(available()) == set(ALL)
    assert set(available(message_level=True)) == set(ALL) - {"label-flip"}


def test_by_name_normalises_and_rejects_unknown_names():
    assert isinstance(by_name("sign_flip", c=4.0), Attack)
    assert by_name("Sign-Flip", c=4.0).c == 4.0
    with pytest.raises(ValueError, match="unknown attack 'no-such-attack'; available: alie, alie-opt, bit-flip, .*sign-flip"):
        by_name("no-such-attack")


def test_attacks_registry_is_the_one_list_of_names():
    assert tuple(ATTACKS) == ATTACKS.available() == available()
    assert "sign_flip" in ATTACKS and "no-such-attack" not in ATTACKS
    for name in ATTACKS:
        cls = ATTACKS.get(name)
        assert issubclass(cls, Attack) and cls.name == name and ATTACKS.help(name)


@pytest.mark.parametrize("name", ALL)
def test_unknown_parameter_is_a_value_error_naming_it_and_the_valid_ones(name):
    valid = [p for p in inspect.signature(ATTACKS.get(name)).parameters]
    listed = repr(valid) if valid else "none"
    with pytest.raises(ValueError, match=rf"\['zz'\] for '{name}'; valid: {re.escape(listed)}$"):
        by_name(name, zz=1)


def test_by_name_alie_zz_names_zz_and_lists_z():
    with pytest.raises(ValueError) as err:
        by_name("alie", zz=1)
    assert "'zz'" in str(err.value) and "valid: ['z']" in str(err.value)


def test_register_refuses_non_attacks_and_duplicate_names():
    with pytest.raises(ValueError, match="Attack subclasses"):
        register(object)

    class Again(Attack):
        name = "sign-flip"

        def _forge(self, honest, ids, ctx):
            return honest[: len(ids)]

    with pytest.raises(ValueError, match="registered twice"):
        register(Again)
    assert ATTACKS.get("sign-flip").__name__ == "SignFlip"


@pytest.mark.parametrize(
    "name,params,match",
    [
        ("gaussian", {"sigma": -1.0}, "sigma"),
        ("gambler", {"p": 1.5}, "p must be in"),
        ("bit-flip", {"fraction": -0.1}, "fraction"),
        ("sign-flip", {"c": float("nan")}, "c must be finite"),
        ("mixed", {"attacks": ["label-flip"]}, "message-level"),
        ("mixed", {"attacks": []}, "at least one"),
        ("collude", {"vector": torch.zeros(2, 2)}, r"shape \(d,\)"),
    ],
)
def test_bad_configuration_raises_value_error(name, params, match):
    with pytest.raises(ValueError, match=match):
        by_name(name, **params)


# --- formulas -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,f", [(5, 1), (7, 3), (10, 2), (15, 3), (20, 9), (50, 12), (100, 1)])
def test_alie_z_matches_scipy_norm_ppf(n, f):
    m = math.floor(n / 2 + 1) - f
    assert alie_z(n, f) == pytest.approx(scipy.stats.norm.ppf((n - m) / n), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("n,f", [(10, 6), (5, 3), (15, 8)])
def test_alie_rejects_attacker_majority(n, f):
    with pytest.raises(ValueError, match="floor"):
        alie_z(n, f)
    with pytest.raises(ValueError, match="floor"):
        by_name("alie")(torch.randn(n - f, 4, dtype=torch.float64), tuple(range(f)), AttackContext())
    with pytest.raises(ValueError, match="floor"):
        alie_z(1, 0)  # one worker: no majority to speak of


@pytest.mark.parametrize("h,b", [(12, 3), (9, 4), (5, 1)])
def test_alie_is_mean_minus_z_population_std(h, b):
    honest, ids, ctx = setup(h=h, b=b)
    out = forge("alie", honest, ids, ctx)
    x = honest.numpy()
    z = scipy.stats.norm.ppf((h + b - ((h + b) // 2 + 1 - b)) / (h + b))
    ref = x.mean(axis=0) - z * x.std(axis=0, ddof=0)
    for row in out.numpy():
        np.testing.assert_allclose(row, ref, rtol=1e-12, atol=1e-12)
    # a given z overrides the formula
    np.testing.assert_allclose(ALIE(z=1.5)(honest, ids, ctx)[0].numpy(), x.mean(0) - 1.5 * x.std(0), rtol=1e-12)


def test_alie_std_is_stable_for_large_offsets_in_float32():
    # values 1e4 + N(0, 1): E[x^2] - mu^2 in float32 would lose every digit of the variance
    x = (1e4 + torch.randn(9, 5000, generator=torch.Generator().manual_seed(0))).float()
    sigma, mu = population_std_mean(x)
    ref = x.double().numpy()
    np.testing.assert_allclose(sigma.numpy(), ref.std(axis=0, ddof=0), rtol=2e-3)
    np.testing.assert_allclose(mu.numpy(), ref.mean(axis=0), rtol=1e-6)


@pytest.mark.parametrize("eps", [0.1, 100.0])
def test_ipm_is_minus_epsilon_times_honest_mean(eps):
    honest, ids, ctx = setup()
    out = forge("ipm", honest, ids, ctx, epsilon=eps)
    ref = -eps * honest.numpy().mean(axis=0)
    np.testing.assert_allclose(out.numpy(), np.broadcast_to(ref, out.shape), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("c", [1.0, 4.0, 10.0])
def test_sign_flip_is_minus_c_times_own(c):
    honest, ids, ctx = setup()
    out = forge("sign-flip", honest, ids, ctx, c=c)
    assert torch.equal(out, -c * ctx.own)


def test_omniscient_is_minus_c_times_true_gradient():
    honest, ids, ctx = setup()
    out = forge("omniscient", honest, ids, ctx, c=3.0)
    np.testing.assert_allclose(out.numpy(), np.broadcast_to(-3.0 * honest.numpy().mean(0), out.shape), rtol=1e-12)
    # a scheme that aggregates by sum passes the sum: the attack follows the context, not the mean
    ctx_sum = AttackContext(true_gradient=honest.sum(0), own=ctx.own)
    assert torch.equal(by_name("omniscient", c=3.0)(honest, ids, ctx_sum)[2], -3.0 * honest.sum(0))
    # no true gradient in the context: the mean of the honest messages
    assert torch.allclose(by_name("omniscient")(honest, ids, AttackContext())[0], -honest.mean(0))


def test_constant_is_c_times_ones():
    honest, ids, ctx = setup()
    assert torch.equal(forge("constant", honest, ids, ctx, c=-7.5), torch.full((3, 64), -7.5, dtype=torch.float64))


def test_gaussian_has_zero_mean_and_sigma_std():
    honest, ids, ctx = setup(b=4, d=50_000)
    out = forge("gaussian", honest, ids, ctx, sigma=200.0).numpy()
    n = out.size
    assert abs(out.mean()) < 5 * 200.0 / math.sqrt(n)
    assert abs(out.std() / 200.0 - 1) < 5 / math.sqrt(2 * n)
    assert not np.array_equal(out[0], out[1])  # independent rows


def bits(x: torch.Tensor) -> np.ndarray:
    return x.cpu().numpy().view(np.uint64 if x.dtype == torch.float64 else np.uint32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bit_flip_all_flips_exactly_every_sign_bit(dtype):
    honest, ids, ctx = setup(dtype=dtype)
    own = ctx.own.clone()
    own[0, :4] = torch.tensor([0.0, -0.0, float("nan"), float("-inf")], dtype=dtype)
    ctx.own = own
    out = forge("bit-flip", honest, ids, ctx)
    sign = np.uint64(1 << 63) if dtype == torch.float64 else np.uint32(1 << 31)
    assert np.all(bits(out) ^ bits(own) == sign)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bit_flip_fraction_flips_exactly_the_chosen_sign_bits(dtype):
    honest, ids, ctx = setup(d=20_000, dtype=dtype, seed=5)
    out = forge("bit-flip", honest, ids, ctx, fraction=0.3)
    # the chosen coordinates: the generator's first draw, U[0,1) < fraction in float32
    chosen = (torch.rand(ctx.own.shape, generator=torch.Generator().manual_seed(ctx.generator.initial_seed())) < 0.3).numpy()
    sign = np.uint64(1 << 63) if dtype == torch.float64 else np.uint32(1 << 31)
    diff = bits(out) ^ bits(ctx.own)
    assert np.all(diff[chosen] == sign)
    assert np.all(diff[~chosen] == 0)
    p_hat, n = chosen.mean(), chosen.size
    assert abs(p_hat - 0.3) < 5 * math.sqrt(0.3 * 0.7 / n)


def test_gambler_rate_and_magnitude():
    p, mag = 0.001, 1e6
    honest, ids, ctx = setup(b=4, d=250_000, seed=2)
    out = forge("gambler", honest, ids, ctx, p=p, magnitude=mag).numpy()
    own = ctx.own.numpy()
    hit = out != own
    assert np.all(out[hit] == mag)
    n = own.size
    assert abs(hit.sum() - n * p) < 5 * math.sqrt(n * p * (1 - p))
    # reproducible and independent across workers
    again = forge("gambler", honest, ids, ctx, p=p, magnitude=mag).numpy()
    assert np.array_equal(out, again)
    assert not np.array_equal(hit[0], hit[1])


@pytest.mark.parametrize("p", [0.001, 0.03, 0.2])
def test_draw_hits_is_an_iid_bernoulli_process(p):
    numel = 400_000
    hits = draw_hits(numel, p, AttackContext(generator=torch.Generator().manual_seed(9)), torch.empty(0))
    hits = (torch.nonzero(hits).flatten() if hits.dtype == torch.bool else hits).numpy()
    assert np.all(np.diff(hits) > 0) and hits[0] >= 0 and hits[-1] < numel
    assert abs(hits.size - numel * p) < 5 * math.sqrt(numel * p * (1 - p))
    assert scipy.stats.chisquare(np.bincount(hits * 20 // numel, minlength=20)).pvalue > 1e-4
    # small vectors: entry 0 is hit with probability p, the count is Binomial(numel, p)
    g = torch.Generator().manual_seed(10)
    draws = [draw_hits(40, p, AttackContext(generator=g), torch.empty(0)) for _ in range(3000)]
    draws = [(torch.nonzero(d).flatten() if d.dtype == torch.bool else d).numpy() for d in draws]
    first = np.mean([d.size > 0 and d[0] == 0 for d in draws])
    assert abs(first - p) < 5 * math.sqrt(p * (1 - p) / 3000) + 1e-3
    counts = np.array([d.size for d in draws])
    assert abs(counts.mean() - 40 * p) < 5 * math.sqrt(40 * p * (1 - p) / 3000) + 1e-3


def test_collude_rows_identical_wrong_and_scaled_to_honest_norm():
    honest, ids, ctx = setup(b=4)
    out = forge("collude", honest, ids, ctx, scale=2.0)
    assert all(torch.equal(out[0], row) for row in out)
    mean_norm = np.linalg.norm(honest.numpy(), axis=1).mean()
    assert float(out[0].norm()) == pytest.approx(2.0 * mean_norm, rel=1e-12)
    cos = float(out[0] @ honest.mean(0) / (out[0].norm() * honest.mean(0).norm()))
    assert abs(cos) < 0.9  # a random direction, not the honest one
    v = torch.arange(64, dtype=torch.float32)
    given = forge("collude", honest, ids, ctx, vector=v)
    assert given.dtype == torch.float64 and torch.equal(given, v.double().expand(4, -1))


def test_label_flip_maps_y_to_c_minus_1_minus_y_and_sends_own():
    y = torch.tensor([0, 1, 2, 9, 5])
    assert torch.equal(LabelFlip.flip_labels(y, 10), torch.tensor([9, 8, 7, 0, 4]))
    assert torch.equal(LabelFlip.flip_labels(LabelFlip.flip_labels(y, 10), 10), y)
    np.testing.assert_array_equal(LabelFlip.flip_labels(np.array([0, 2]), 3), [2, 0])
    with pytest.raises(ValueError, match="num_classes"):
        LabelFlip.flip_labels(y, 9)
    honest, ids, ctx = setup()
    assert torch.equal(forge("label-flip", honest, ids, ctx), ctx.own)
    assert LabelFlip.data_level and "label-flip" not in available(message_level=True)


# --- mixed ----------------------------------------------------------------------------------------


def test_mixed_rows_follow_the_drawn_attacks():
    honest, ids, ctx = setup(b=8)
    names = ["sign-flip", "constant", "ipm"]
    mixed = Mixed(names)
    choice = mixed.choose(8, AttackContext(generator=torch.Generator().manual_seed(ctx.generator.initial_seed())))
    out = forge("mixed", honest, ids, ctx, attacks=names)
    refs = [-ctx.own, torch.full_like(ctx.own, 100.0), (-0.1 * honest.mean(0)).expand(8, -1)]
    for i, j in enumerate(choice.tolist()):
        assert torch.allclose(out[i], refs[j][i], rtol=1e-12, atol=0)


def test_mixed_reproducible_for_a_seed_and_varying_across_steps():
    honest, ids, _ = setup(b=6)
    mixed = Mixed()
    per_step = []
    for step in range(12):
        ctx = AttackContext.build(honest, ids, step=step, seed=11, own=torch.randn(6, 64, dtype=torch.float64))
        per_step.append(tuple(mixed.choose(6, AttackContext(generator=step_generator(11, step))).tolist()))
        a = mixed(honest, ids, ctx)
        ctx.generator = step_generator(11, step)
        assert torch.equal(a, mixed(honest, ids, ctx))
    assert len(set(per_step)) > 6  # 9^6 possible draws per step: repeats would mean a frozen stream
    assert {j for s in per_step for j in s} == set(range(len(mixed.attacks)))


def test_mixed_checks_every_listed_attack_whatever_is_drawn():
    honest = torch.randn(4, 8, dtype=torch.float64)
    ids = tuple(range(4, 10))  # f = 6 > n // 2 = 5: ALIE impossible
    with pytest.raises(ValueError, match="floor"):
        Mixed(["constant", "alie"])(honest, ids, AttackContext(own=torch.zeros(6, 8, dtype=torch.float64)))


# --- properties shared by every attack ------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("device", DEVICES)
def test_dtype_device_shape_kept_and_reproducible(name, dtype, device):
    honest, ids, ctx = setup(dtype=dtype, device=device)
    params = VISIBLE.get(name, {})
    a = forge(name, honest, ids, ctx, **params)
    assert a.shape == (len(ids), honest.shape[1]) and a.dtype == dtype and a.device == honest.device
    assert torch.equal(a, forge(name, honest, ids, ctx, **params))
    if name in RANDOM:
        ctx.generator = torch.Generator().manual_seed(ctx.generator.initial_seed() + 1)
        assert not torch.equal(a, forge(name, honest, ids, ctx, **params))


@pytest.mark.parametrize("name", ALL)
def test_generator_on_cpu_gives_same_values_on_every_device(name):
    if "cuda" not in DEVICES:
        pytest.skip("needs CUDA to compare devices")
    honest, ids, ctx = setup(dtype=torch.float64)
    params = VISIBLE.get(name, {})
    cpu = forge(name, honest, ids, ctx, **params)
    cuda_ctx = AttackContext.build(honest.cuda(), ids, step=3, seed=0, own=ctx.own.cuda())
    cuda = by_name(name, **params)(honest.cuda(), ids, cuda_ctx)
    torch.testing.assert_close(cuda.cpu(), cpu, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("bad", ["nan", "inf", "zeros", "huge"])
def test_bad_honest_and_own_values_do_not_crash(name, bad):
    honest, ids, ctx = setup(dtype=torch.float32)
    fill = {"nan": float("nan"), "inf": float("inf"), "zeros": 0.0, "huge": 3e38}[bad]
    honest[:, ::2] = fill
    ctx.own[:, ::3] = fill
    ctx.true_gradient = honest.mean(0)
    out = forge(name, honest, ids, ctx)
    assert out.shape == (3, 64) and out.dtype == torch.float32
    if name == "collude":
        assert torch.isfinite(out).all() and out.abs().sum() > 0  # zero or non-finite norm: unit scale


@pytest.mark.parametrize("name", ALL)
def test_no_byzantine_workers_gives_empty_rows(name):
    honest = torch.randn(5, 7)
    out = by_name(name)(honest, (), AttackContext(own=torch.empty(0, 7)))
    assert out.shape == (0, 7) and out.dtype == honest.dtype


def test_call_validates_ids_and_shapes():
    honest, ids, ctx = setup()
    attack = by_name("sign-flip")
    with pytest.raises(ValueError, match="distinct"):
        attack(honest, (1, 1, 3), ctx)
    with pytest.raises(ValueError, match=r"\[0, n=15\)"):
        attack(honest, (1, 3, 15), ctx)
    with pytest.raises(ValueError, match="ctx.own must have shape"):
        attack(honest, (1, 3), ctx)
    with pytest.raises(ValueError, match="needs ctx.own"):  # nothing to default own from
        attack(honest[:0], ids, AttackContext())
    with pytest.raises(ValueError, match=r"shape \(h, d\)"):
        attack(honest[0], ids, ctx)


# --- the default own messages (no ctx.own) -------------------------------------------------------


OWN = ("bit-flip", "gambler", "label-flip", "sign-flip")  # the attacks that start from ctx.own


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_attack_runs_on_a_built_context_without_own(name, dtype):
    g = torch.Generator().manual_seed(4)
    honest = torch.randn(8, 20, generator=g, dtype=torch.float64).to(dtype)
    ids = (0, 4, 9)
    ctx = AttackContext.build(honest, ids, step=0, seed=0)
    assert ctx.own is not None and torch.equal(ctx.own, honest.mean(0).expand(3, -1))
    out = by_name(name)(honest, ids, ctx)
    assert out.shape == (3, 20) and out.dtype == dtype
    if name in OWN:  # the same as passing the repeated true gradient as own
        ref = AttackContext.build(honest, ids, step=0, seed=0, own=honest.mean(0).repeat(3, 1))
        assert torch.equal(out, by_name(name)(honest, ids, ref))


def test_sign_flip_without_own_is_minus_the_true_gradient_per_row():
    honest, ids, _ = setup(h=8, b=3, d=20)
    out = by_name("sign-flip")(honest, ids, AttackContext.build(honest, ids, step=0, seed=0))
    assert torch.equal(out, -honest.mean(0).expand(3, -1))
    # a given true gradient (a scheme that sums) is the one flipped
    total = honest.sum(0)
    out = by_name("sign-flip", c=4.0)(honest, ids, AttackContext.build(honest, ids, true_gradient=total))
    assert torch.equal(out, (-4.0 * total).expand(3, -1))
    # bit-flip of every coordinate is the same negation, bit for bit; label-flip sends the gradient itself
    ctx = AttackContext.build(honest, ids, step=0, seed=0)
    assert torch.equal(by_name("bit-flip")(honest, ids, ctx), -honest.mean(0).expand(3, -1))
    assert torch.equal(by_name("label-flip")(honest, ids, ctx), honest.mean(0).expand(3, -1))


def test_given_own_is_kept_by_build():
    honest, ids, ctx = setup()
    assert AttackContext.build(honest, ids, own=ctx.own).own is ctx.own
    assert torch.equal(forge("sign-flip", honest, ids, ctx), -ctx.own)
    assert not torch.equal(ctx.own, honest.mean(0).expand(3, -1))


def test_default_own_is_a_contiguous_copy_in_the_honest_dtype():
    honest = torch.randn(5, 6)
    tg = torch.randn(6, dtype=torch.float64)
    ctx = AttackContext.build(honest, (0, 1), true_gradient=tg)
    assert ctx.own.dtype == torch.float32 and ctx.own.is_contiguous() and ctx.own.stride() == (6, 1)
    assert torch.equal(ctx.own, tg.float().expand(2, -1))
    out = by_name("label-flip")(honest, (0, 1), ctx)
    out[0, 0] = 123.0  # the rows are the caller's to write
    assert out[1, 0] != 123.0
    with pytest.raises(ValueError, match=r"true_gradient must have shape \(d=6,\)"):
        AttackContext.build(honest, (0, 1), true_gradient=torch.zeros(5))


def test_own_messages_falls_back_for_a_context_built_by_hand():
    honest, ids, _ = setup(b=2)
    assert torch.equal(own_messages(AttackContext(), honest, ids, "x"), honest.mean(0).expand(2, -1))
    tg = torch.arange(64, dtype=torch.float64)
    assert torch.equal(own_messages(AttackContext(true_gradient=tg), honest, ids, "x"), tg.expand(2, -1))
    own = torch.ones(2, 64, dtype=torch.float64)
    assert own_messages(AttackContext(own=own), honest, ids, "x") is own
    # the attacks use it: a hand-built context without own
    assert torch.equal(by_name("sign-flip")(honest, ids, AttackContext()), -honest.mean(0).expand(2, -1))
    with pytest.raises(ValueError, match="x needs ctx.own"):
        own_messages(AttackContext(), honest[:0], ids, "x")


def test_mixed_without_own_uses_the_default_own_for_its_sub_attacks():
    honest, ids, _ = setup(b=8)
    ctx = AttackContext.build(honest, ids, step=2, seed=1)
    mixed = Mixed(["sign-flip", "constant"])
    choice = mixed.choose(8, AttackContext(generator=step_generator(1, 2)))
    out = mixed(honest, ids, ctx)
    refs = [-honest.mean(0), torch.full((64,), 100.0, dtype=torch.float64)]
    for i, j in enumerate(choice.tolist()):
        assert torch.equal(out[i], refs[j])
    hand = AttackContext(generator=step_generator(1, 2))  # no own, no true gradient: the honest mean
    assert torch.equal(mixed(honest, ids, hand), out)


def test_step_generator_depends_only_on_seed_and_step():
    a = torch.rand(8, generator=step_generator(3, 10))
    torch.rand(100, generator=step_generator(3, 9))  # consuming another step's stream changes nothing
    assert torch.equal(a, torch.rand(8, generator=step_generator(3, 10)))
    assert not torch.equal(a, torch.rand(8, generator=step_generator(3, 11)))
    assert not torch.equal(a, torch.rand(8, generator=step_generator(4, 10)))


# --- placement ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"n": 10, "ids": [1, 1]}, "distinct"),
        ({"n": 10, "ids": [3, 10]}, r"\[0, n=10\)"),
        ({"n": 10, "ids": [-1]}, r"\[0, n=10\)"),
        ({"n": 10, "ids": [1, 2], "b": 3}, "b=3"),
        ({"n": 10}, "needs ids"),
        ({"ids": [1]}, "needs n"),
    ],
)
def test_fixed_placement_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        placement_by_name("fixed", **kwargs)


def test_fixed_placement_returns_sorted_ids_every_step():
    p = placement_by_name("fixed", n=10, ids=[7, 2, 5])
    assert p.b == 3 and all(p.byzantine_ids(t) == (2, 5, 7) for t in range(5))


def test_random_placement_reproducible_in_range_and_uniform():
    fixed = placement_by_name("random", n=15, b=4, seed=3)
    assert fixed.byzantine_ids(0) == fixed.byzantine_ids(99) == RandomPlacement(15, 4, seed=3).byzantine_ids(7)
    redraw = placement_by_name("random", n=15, b=4, seed=3, redraw=True)
    sets = [redraw.byzantine_ids(t) for t in range(3000)]
    for s in sets[:50]:
        assert len(s) == 4 and len(set(s)) == 4 and list(s) == sorted(s) and 0 <= s[0] and s[-1] < 15
    assert len(set(sets)) > 1000
    # step t's set depends on (seed, t) only, not on the order of queries
    assert RandomPlacement(15, 4, seed=3, redraw=True).byzantine_ids(2999) == sets[2999]
    counts = np.bincount(np.array(sets).ravel(), minlength=15)
    assert scipy.stats.chisquare(counts).pvalue > 1e-4


def test_placement_bad_configuration():
    with pytest.raises(ValueError, match="0 <= b <= n"):
        placement_by_name("random", n=5, b=6)
    with pytest.raises(ValueError, match="unknown placement 'best'; available: fixed, random, worst$"):
        placement_by_name("best", n=5, b=1)
    with pytest.raises(ValueError, match="needs code"):
        placement_by_name("worst", b=1)
    with pytest.raises(ValueError, match="needs b"):
        placement_by_name("worst", n=5)
    with pytest.raises(ValueError, match="0 <= b <= n"):
        placement_by_name("worst", n=5, b=6)
    with pytest.raises(ValueError, match="needs b"):
        placement_by_name("random", n=5)


@pytest.mark.parametrize(
    "name,kwargs,match",
    [
        ("random", {"n": 5, "b": 2, "ids": [1, 2]}, "random placement takes no ids"),
        ("worst", {"n": 5, "b": 2, "ids": [1, 2]}, "worst placement takes no ids"),
        ("fixed", {"n": 5, "ids": [1, 2], "redraw": True}, "fixed placement takes no redraw"),
        ("worst", {"n": 5, "b": 2, "redraw": True}, "worst placement takes no redraw"),
    ],
)
def test_placement_rejects_options_it_would_ignore(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        placement_by_name(name, **kwargs)


def test_placement_registry_names_and_parameters():
    assert tuple(PLACEMENTS) == ("fixed", "random", "worst")
    assert PLACEMENTS.available() == ("fixed", "random", "worst") and "Worst" in PLACEMENTS
    for name in PLACEMENTS:
        assert PLACEMENTS.help(name) and PLACEMENTS.params(name) == ("n", "b", "code", "ids", "seed", "redraw")
    p = PLACEMENTS.build("random", n=15, b=4, seed=3)
    assert p.byzantine_ids(0) == RandomPlacement(15, 4, seed=3).byzantine_ids(0)
    with pytest.raises(ValueError, match=r"unknown placement parameter \['foo'\] for 'random'; valid: \['n', 'b'"):
        PLACEMENTS.build("random", n=15, b=4, foo=1)
    with pytest.raises(ValueError, match="unknown placement 'nearest'; available: fixed, random, worst"):
        PLACEMENTS.get("nearest")


def test_worst_placement_without_a_code_is_the_first_b_workers():
    p = placement_by_name("worst", n=9, b=2, code=None)
    assert isinstance(p, FixedPlacement) and (p.n, p.b) == (9, 2)
    assert all(p.byzantine_ids(t) == (0, 1) for t in range(4))
    assert placement_by_name("worst", n=4, b=0).byzantine_ids(0) == ()


def test_placement_n_must_agree_with_the_code():
    rep = pytest.importorskip("codedbft.encoders.repetition", reason="RepetitionCode not landed yet")
    code = rep.RepetitionCode(n=15, r=3)
    for name, kw in [("worst", {}), ("random", {}), ("fixed", {"ids": [0]})]:
        with pytest.raises(ValueError, match="disagrees with the code's n=15"):
            placement_by_name(name, n=9, b=1, code=code, **kw)
    assert placement_by_name("fixed", code=code, ids=[3, 14]).n == 15
    assert placement_by_name("random", code=code, b=3).n == 15


class _NoDistortion:
    n = 6


def test_worst_placement_needs_max_distortion():
    with pytest.raises(ValueError, match="max_distortion"):
        placement_by_name("worst", code=_NoDistortion(), b=2)
    # a Code whose max_distortion is the base class's NotImplementedError (cyclic MDS: not an assignment code)
    cyclic = pytest.importorskip("codedbft.encoders.cyclic", reason="CyclicMDSCode not landed yet")
    with pytest.raises(ValueError, match="max_distortion"):
        placement_by_name("worst", code=cyclic.CyclicMDSCode(n=7, s=1), b=2)


def _groups_won(code, ids) -> int:
    bad = set(ids)
    return sum(sum(w in bad for w in grp) > len(grp) / 2 for grp in _groups(code))


def _groups(code):
    members: dict[int, list[int]] = {}
    for w, parts in enumerate(code.assignment):
        for p in parts:
            members.setdefault(p, []).append(w)
    return list(members.values())


@pytest.mark.parametrize("q", range(0, 8))
def test_worst_placement_corrupts_exactly_max_distortion(q):
    rep = pytest.importorskip("codedbft.encoders.repetition", reason="RepetitionCode not landed yet")
    code = rep.RepetitionCode(n=15, r=3)
    place = placement_by_name("worst", code=code, b=q)
    ids = place.byzantine_ids(0)
    assert isinstance(place, WorstPlacement) and len(ids) == q
    assert (place.distortion, ids) == code.max_distortion(q)
    won = _groups_won(code, ids)
    assert won / code.k == place.distortion == min(q // 2, code.k) / code.k
    # no q-subset wins more groups (brute force over the C(15, q) placements)
    if q <= 4:
        assert max(_groups_won(code, s) for s in itertools.combinations(range(15), q)) == won
    # end to end: colluders win exactly those groups' votes, so the decoded sum carries their vector there
    G = np.random.default_rng(q).standard_normal((code.k, 32))
    msgs = code.encode(G)
    honest_ids = [w for w in range(code.n) if w not in ids]
    honest = torch.from_numpy(msgs[honest_ids])
    ctx = AttackContext.build(honest, ids, step=0, seed=q, own=torch.from_numpy(msgs[list(ids)]), n=code.n)
    forged = by_name("collude")(honest, ids, ctx)
    msgs[list(ids)] = forged.numpy()
    res = code.decode(msgs)
    won_parts = [p for p, grp in enumerate(_groups(code)) if sum(w in ids for w in grp) > len(grp) / 2]
    expected = G.sum(0) + sum(forged[0].numpy() - G[p] for p in won_parts)
    np.testing.assert_allclose(res.gradient, expected, rtol=1e-10, atol=1e-10)
