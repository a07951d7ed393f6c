"""Schemes: exact decoding under attack (repetition: bit for bit), erasures, vanilla and DETOX rules,
configuration errors. Real gradients of a real model on real data (digits), real attacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codedbft.attacks import by_name as attack_by_name
from codedbft.attacks import placement_by_name
from codedbft.cluster.worker import coalition_messages
from codedbft.schemes import Replies, SchemeConfig, available_schemes, build_scheme, combine
from codedbft.training import FlatModel, build_model, load_dataset


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits", seed=0)
    return ds, FlatModel(build_model("logreg", ds, seed=0))


def partition_gradients(digits, k: int, step: int = 0, b: int = 16) -> torch.Tensor:
    ds, fm = digits
    X, y = ds.partition_batch(step, k, b, seed=0)
    return fm.partition_gradients(fm.init_params(), X, y)


def honest_messages(scheme, G: torch.Tensor) -> torch.Tensor:
    """What the n honest workers send: each combines the gradients of its own partitions (or, for a
    stacked scheme, sends them as they are)."""
    order = scheme.first_order()
    ws = order.workers
    parts = [order.tasks[w] for w in ws]
    idx = torch.tensor(parts, dtype=torch.long)
    return G[idx] if order.stacked else scheme.combine(ws, parts, G[idx])


def attacked(scheme, msgs: torch.Tensor, attack: str, byz: tuple[int, ...], **params) -> torch.Tensor:
    out = msgs.clone()
    honest = [i for i in range(scheme.n) if i not in byz]
    out[list(byz)] = coalition_messages(attack_by_name(attack, **params), msgs[honest], msgs[list(byz)], byz,
                                        step=3, seed=1, n=scheme.n)
    return out


def run(scheme, msgs: torch.Tensor, missing=None, invalid=()):
    missing = np.zeros(scheme.n, bool) if missing is None else np.asarray(missing)
    gen = scheme.protocol(0)
    next(gen)
    with pytest.raises(StopIteration) as stop:
        gen.send(Replies(tuple(range(scheme.n)), msgs, missing, tuple(invalid)))
    return stop.value.value


def test_registry_lists_the_builtin_schemes():
    assert {"vanilla", "draco-repetition", "draco-cyclic", "detox"} <= set(available_schemes())


@pytest.mark.parametrize("attack,params", [("omniscient", {"c": 10.0}), ("alie", {}), ("gaussian", {}),
                                           ("sign-flip", {"c": 4.0}), ("collude", {})])
@pytest.mark.parametrize("placement", ["worst", "random"])
def test_draco_repetition_is_bitwise_exact_under_attack(digits, attack, params, placement):
    scheme = build_scheme(SchemeConfig(name="draco-repetition", workers=15, byzantine=2))
    G = partition_gradients(digits, scheme.k)
    pl = placement_by_name(placement, code=scheme.code, b=2, seed=5)
    byz = pl.byzantine_ids(0)
    res = run(scheme, attacked(scheme, honest_messages(scheme, G), attack, byz, **params))
    # The vote returns one honest copy per group; the sum runs in a fixed order: the same bits as G.sum(0)/k.
    assert torch.equal(res.gradient, G.sum(0) / scheme.k)
    torch.testing.assert_close(res.gradient.double(), G.double().mean(0), rtol=1e-6, atol=1e-9)
    assert res.exact and set(res.flagged) == set(byz)
    assert res.computed == 15 and res.useful == 3


@pytest.mark.parametrize("attack,params", [("omniscient", {"c": 10.0}), ("alie", {}), ("gaussian", {})])
def test_draco_cyclic_recovers_the_mean_under_attack(digits, attack, params):
    scheme = build_scheme(SchemeConfig(name="draco-cyclic", workers=9, byzantine=2))
    G = partition_gradients(digits, scheme.k)
    byz = (1, 6)
    res = run(scheme, attacked(scheme, honest_messages(scheme, G), attack, byz, **params))
    torch.testing.assert_close(res.gradient.double(), G.double().mean(0), rtol=1e-5, atol=1e-7)
    assert res.exact and set(res.flagged) == set(byz)


@pytest.mark.parametrize("name", ["draco-repetition", "draco-cyclic"])
def test_errors_and_erasures_within_the_distance_stay_exact(digits, name):
    # s = 2: one error and two erasures (2e + m = 4 <= 2s), in the same repetition group.
    scheme = build_scheme(SchemeConfig(name=name, workers=15, byzantine=1, tolerate=2))
    G = partition_gradients(digits, scheme.k)
    msgs = attacked(scheme, honest_messages(scheme, G), "omniscient", (0,), c=10.0)
    missing = np.zeros(15, bool)
    missing[[1, 2]] = True
    msgs[[1, 2]] = 0
    res = run(scheme, msgs, missing)
    torch.testing.assert_close(res.gradient.double(), G.double().mean(0), rtol=1e-5, atol=1e-7)
    assert res.exact and res.flagged == (0,)


def test_invalid_replies_are_flagged_by_the_scheme(digits):
    scheme = build_scheme(SchemeConfig(name="draco-repetition", workers=15, byzantine=2))
    G = partition_gradients(digits, scheme.k)
    msgs = honest_messages(scheme, G)
    missing = np.zeros(15, bool)
    missing[7] = True  # the runtime found NaN in worker 7's reply
    res = run(scheme, msgs, missing, invalid=(7,))
    assert res.flagged == (7,) and res.exact
    assert torch.equal(res.gradient, G.sum(0) / 3)


def test_vanilla_mean_is_the_mean_of_the_present_messages(digits):
    scheme = build_scheme(SchemeConfig(name="vanilla", workers=8, byzantine=0))
    G = partition_gradients(digits, 8)
    msgs = honest_messages(scheme, G)
    assert torch.equal(msgs, G)
    torch.testing.assert_close(run(scheme, msgs).gradient, G.mean(0))
    missing = np.zeros(8, bool)
    missing[3] = True
    msgs[3] = float("nan")  # never read: a missing row
    torch.testing.assert_close(run(scheme, msgs, missing).gradient, G[[0, 1, 2, 4, 5, 6, 7]].mean(0))


def test_vanilla_mean_is_broken_by_the_default_attack(digits):
    """(13 - 2*10)/15 < 0: two omniscient workers with c = 10 turn averaging into ascent."""
    scheme = build_scheme(SchemeConfig(name="vanilla", workers=15, byzantine=2))
    G = partition_gradients(digits, 15)
    res = run(scheme, attacked(scheme, honest_messages(scheme, G), "omniscient", (3, 9), c=10.0))
    assert float(res.gradient.double() @ G.double().mean(0)) < 0


def test_detox_without_a_won_group_is_the_median_of_partition_gradients(digits):
    # b = 1 < ceil(3/2): every group keeps an honest majority, so the outer median sees only true
    # partition gradients; k = 5 is odd, so the median is an exact middle value.
    scheme = build_scheme(SchemeConfig(name="detox", workers=15, byzantine=1))
    G = partition_gradients(digits, scheme.k)
    res = run(scheme, attacked(scheme, honest_messages(scheme, G), "omniscient", (4,), c=10.0))
    assert torch.equal(res.gradient, torch.from_numpy(np.median(G.numpy(), axis=0)))
    assert res.flagged == (4,) and not res.exact


def test_detox_worst_placement_stays_within_the_honest_range(digits):
    scheme = build_scheme(SchemeConfig(name="detox", workers=15, byzantine=2))
    G = partition_gradients(digits, scheme.k)
    byz = placement_by_name("worst", code=scheme.code, b=2).byzantine_ids(0)
    assert scheme.code.max_distortion(2)[0] == pytest.approx(1 / 5)  # one group won
    res = run(scheme, attacked(scheme, honest_messages(scheme, G), "omniscient", byz, c=100.0))
    won = {i // 3 for i in byz}
    honest = G[[j for j in range(scheme.k) if j not in won]]
    assert len(won) == 1
    assert bool((res.gradient >= honest.min(0).values).all() and (res.gradient <= honest.max(0).values).all())


def test_byzshield_sends_stacked_files_and_is_exact_within_s(digits):
    scheme = build_scheme(SchemeConfig(name="byzshield", workers=15, byzantine=1))
    assert scheme.first_order().stacked and scheme.k == 25
    G = partition_gradients(digits, scheme.k, b=8)
    msgs = honest_messages(scheme, G)
    assert msgs.shape == (15, 5, G.shape[1])
    byz = (6,)
    forged = msgs.clone()
    forged[6] = -10 * msgs[6]  # a sign-flipping liar on every file it holds
    res = run(scheme, forged)
    torch.testing.assert_close(res.gradient.double(), G.double().mean(0), rtol=1e-6, atol=1e-9)
    assert res.exact and res.flagged == byz


def test_combine_is_the_same_bits_alone_and_batched():
    g = torch.Generator().manual_seed(0)
    grads = torch.randn(6, 3, 1000, generator=g)
    coefs = [np.random.default_rng(i).standard_normal(3) for i in range(6)]
    batched = combine(coefs, grads)
    for i in range(6):
        assert torch.equal(combine([coefs[i]], grads[i : i + 1])[0], batched[i])
    ref = np.einsum("wp,wpd->wd", np.stack(coefs), grads.double().numpy())
    np.testing.assert_allclose(batched.numpy(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cfg,match", [
    (dict(name="draco-repetition", workers=14, byzantine=2), "divide"),
    (dict(name="draco-repetition", workers=3, byzantine=2), r"2s\+1"),
    (dict(name="draco-cyclic", workers=4, byzantine=2), r"2s\+1|2s \+ 1"),
    (dict(name="detox", workers=15, byzantine=2, bucket=2), "bucket"),
    (dict(name="detox", workers=16, byzantine=2), "divide"),
    (dict(name="draco-repetition", workers=15, byzantine=2, aggregator="krum"), "aggregator"),
    (dict(name="vanilla", workers=4, byzantine=2, aggregator="krum"), "n >="),
    (dict(name="nope", workers=4, byzantine=1), "unknown scheme"),
])
def test_bad_configurations_name_the_constraint(cfg, match):
    with pytest.raises(ValueError, match=match):
        build_scheme(SchemeConfig(**cfg))
