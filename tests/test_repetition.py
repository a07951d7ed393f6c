"""RepetitionCode + majority vote: exact recovery under every placement of up to s adversaries."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from codedbft.decoders.majority import MajorityDecoder, majority_vote
from codedbft.encoders import RepetitionCode
from info_vocabulary import assert_common_info

ATTACKS = ["huge", "tiny", "collude", "signflip", "zeros", "nan", "inf"]


def corrupt(msgs: np.ndarray, ids, kind: str, rng: np.random.Generator) -> np.ndarray:
    out = msgs.copy()
    ids = list(ids)
    if not ids:
        return out
    if kind == "huge":
        out[ids] = 1e30
    elif kind == "tiny":
        out[ids] *= 1 + 1e-6
    elif kind == "collude":
        out[ids] = rng.standard_normal(msgs.shape[1]).astype(msgs.dtype)
    elif kind == "signflip":
        out[ids] *= -1
    elif kind == "zeros":
        out[ids] = 0
    elif kind == "nan":
        out[ids, ::3] = np.nan
    elif kind == "inf":
        out[ids, 0] = np.inf
    return out


def partitions(k: int, d: int, seed: int = 0, dtype=np.float32) -> np.ndarray:
    # no exact zeros, so sign flips and zeroing always change a message
    g = np.random.default_rng(seed).standard_normal((k, d)) + 3.0
    return g.astype(dtype)


@pytest.mark.parametrize("n,s", [(9, 1), (15, 2), (21, 3), (15, 7)])
def test_exact_under_every_placement(n, s):
    code = RepetitionCode(n, s=s)
    G = partitions(code.k, 32, seed=n + s)
    honest = code.encode(G)
    truth = G.sum(0)
    rng = np.random.default_rng(1)
    placements = [c for q in range(s + 1) for c in itertools.combinations(range(n), q)]
    if len(placements) > 400:
        placements = [placements[i] for i in rng.choice(len(placements), 400, replace=False)]
    for i, ids in enumerate(placements):
        attack = ATTACKS[i % len(ATTACKS)]
        res = code.decode(corrupt(honest, ids, attack, rng))
        assert res.exact, (ids, attack)
        np.testing.assert_array_equal(res.gradient, truth)
        assert res.flagged == tuple(sorted(ids)), (ids, attack)


@pytest.mark.parametrize("attack", ATTACKS)
def test_large_n_random_placements(attack):
    code = RepetitionCode(45, s=7)  # r = 15 divides 45
    G = partitions(code.k, 2000, seed=3)
    honest = code.encode(G)
    rng = np.random.default_rng(7)
    for _ in range(20):
        ids = rng.choice(45, size=7, replace=False)
        res = code.decode(corrupt(honest, ids, attack, rng))
        assert res.exact
        np.testing.assert_array_equal(res.gradient, G.sum(0))
        assert res.flagged == tuple(sorted(int(i) for i in ids))


def test_worst_case_group_full_of_adversaries_at_limit():
    code = RepetitionCode(15, s=2)  # r = 5: 2 liars in one group still lose
    G = partitions(code.k, 50)
    msgs = code.encode(G)
    msgs[[0, 1]] = 123.0  # colluding, identical
    res = code.decode(msgs)
    assert res.exact and res.flagged == (0, 1)
    np.testing.assert_array_equal(res.gradient, G.sum(0))


@pytest.mark.parametrize("e,m", [(0, 4), (1, 2), (2, 0)])
def test_errors_and_erasures_at_the_limit(e, m):
    code = RepetitionCode(15, s=2)  # r = 5, 2e + m <= 4 in a group
    G = partitions(code.k, 40)
    rng = np.random.default_rng(0)
    msgs = corrupt(code.encode(G), range(e), "collude", rng)
    missing = np.zeros(15, bool)
    missing[e : e + m] = True
    res = code.decode(msgs, missing=missing)
    assert res.exact
    np.testing.assert_array_equal(res.gradient, G.sum(0))
    assert res.flagged == tuple(range(e))


@pytest.mark.parametrize("e,m", [(0, 5), (2, 1), (1, 3)])
def test_one_past_the_limit_is_reported_not_raised(e, m):
    code = RepetitionCode(15, s=2)
    G = partitions(code.k, 40)
    msgs = code.encode(G)
    rng = np.random.default_rng(0)
    for i in range(e):  # distinct wrong values: no value keeps a majority of the present members
        msgs[i] = rng.standard_normal(40)
    missing = list(range(e, e + m))
    res = code.decode(msgs, missing=missing)
    assert not res.exact
    assert res.info["undecided_ids"] == (0,)
    # the other groups are still decoded exactly
    assert res.info["undecided"] == 1 and "1 of 3 groups" in res.info["reason"]


def test_missing_rows_are_not_flagged_and_ids_or_mask_agree():
    code = RepetitionCode(9, s=1)
    G = partitions(code.k, 10)
    msgs = code.encode(G)
    a = code.decode(msgs, missing=[4])
    mask = np.zeros(9, bool)
    mask[4] = True
    b = code.decode(msgs, missing=mask)
    assert a.flagged == b.flagged == ()
    np.testing.assert_array_equal(a.gradient, b.gradient)


def test_torch_in_torch_out_and_numpy_in_numpy_out():
    code = RepetitionCode(9, s=1)
    G = partitions(code.k, 16)
    msgs_np = code.encode(G)
    msgs_t = code.encode(torch.from_numpy(G))
    assert isinstance(msgs_np, np.ndarray) and isinstance(msgs_t, torch.Tensor)
    msgs_t[3] = -5
    res_t = code.decode(msgs_t)
    res_np = code.decode(msgs_t.numpy())
    assert isinstance(res_t.gradient, torch.Tensor) and res_t.gradient.dtype == torch.float32
    assert isinstance(res_np.gradient, np.ndarray)
    np.testing.assert_array_equal(res_t.gradient.numpy(), res_np.gradient)
    assert res_t.flagged == res_np.flagged == (3,)


def test_tolerance_fallback_is_relative_not_absolute():
    """Non-deterministic honest copies (last-bit noise) are grouped within a relative tolerance, while
    an attack that is small in absolute terms but large relative to the gradient is rejected."""
    rng = np.random.default_rng(5)
    r, d = 5, 1000
    base = rng.standard_normal(d) * 1e-3  # tiny gradients: an absolute tolerance of 10 would accept anything
    honest = base * (1 + 1e-7 * rng.standard_normal((r, d)))  # GPU-like last-bit differences
    msgs = honest.copy()
    msgs[0] = base * 1.01  # 1 % relative change: an attack
    msgs[1] = -base
    vote = majority_vote(msgs, group_size=r, rtol=1e-5)
    assert bool(vote.decided[0]) and bool(vote.tolerance[0])
    assert vote.flagged == (0, 1)
    np.testing.assert_allclose(vote.values[0], base, rtol=1e-6)
    # without enough close copies the group stays undecided (never an exception)
    msgs[2] = base * 2
    vote = majority_vote(msgs, group_size=r, rtol=1e-5)
    assert not bool(vote.decided[0]) and vote.flagged == ()


def test_tolerance_fallback_survives_huge_finite_liars():
    """A liar at 1e300 must not overflow the fallback's distances: squared norms of 1e300 are Inf,
    and Inf <= rtol * Inf once made every copy "close" to the liar."""
    rng = np.random.default_rng(6)
    g = rng.standard_normal(200)
    # three different values, no majority: undecided, nobody flagged
    vote = majority_vote(np.stack([np.zeros(200), np.full(200, 1e300), g]), group_size=3)
    assert not bool(vote.decided[0]) and vote.flagged == ()
    # two honest copies that differ in the last bits still beat the huge liar
    msgs = np.stack([g, np.full(200, 1e300), g * (1 + 1e-9 * rng.standard_normal(200))])
    vote = majority_vote(msgs, group_size=3)
    assert bool(vote.decided[0]) and bool(vote.tolerance[0]) and vote.flagged == (1,)
    # an honest copy is not dragged below underflow next to the liar
    msgs = np.stack([g * 1e-200, np.full(200, -1e300), g * 1e-200 * (1 + 1e-9)])
    vote = majority_vote(msgs, group_size=3)
    assert bool(vote.decided[0]) and vote.flagged == (1,)


def test_fingerprint_collision_cannot_make_a_wrong_value_win():
    """Adversaries that agree with the honest value almost everywhere (so most fingerprints collide)
    never win: the bytewise confirmation catches them."""
    code = RepetitionCode(5, s=2)
    d = 100_000
    G = partitions(1, d)
    for trial in range(10):
        msgs = code.encode(G)
        msgs[[0, 1]] = msgs[0]
        msgs[[0, 1], trial * 997] += 1.0  # one coordinate changed, colluding
        res = code.decode(msgs)
        assert res.exact and res.flagged == (0, 1)
        np.testing.assert_array_equal(res.gradient, G.sum(0))


def test_batched_vote_equals_per_item():
    rng = np.random.default_rng(2)
    x = torch.from_numpy(np.repeat(rng.standard_normal((4, 3, 1, 20)), 3, axis=2).reshape(4, 9, 20))
    x[0, 1] = 9.0
    x[2, 4] = float("nan")
    x[3, 6:8] = 1.0  # two liars in a group of 3: that group is lost (beyond s = 1)
    batched = majority_vote(x, group_size=3)
    for b in range(4):
        single = majority_vote(x[b], group_size=3)
        torch.testing.assert_close(batched.values[b], single.values, rtol=0, atol=0, equal_nan=True)
        assert torch.equal(batched.decided[b], single.decided)
        assert torch.equal(batched.agree[b], single.agree)
    assert batched.agree[0].tolist() == [True, False] + [True] * 7
    assert batched.agree[3, 6:9].tolist() == [True, True, False]  # the colluding pair now looks honest


def test_explicit_groups_match_contiguous_groups():
    code = RepetitionCode(9, s=1)
    msgs = code.encode(partitions(3, 12))
    msgs[4] = 0
    perm = np.random.default_rng(0).permutation(9)
    inv = np.argsort(perm)
    shuffled = msgs[perm]
    groups = [inv[[3 * j, 3 * j + 1, 3 * j + 2]].tolist() for j in range(3)]
    a = majority_vote(msgs, group_size=3)
    b = majority_vote(shuffled, groups=groups)
    np.testing.assert_array_equal(a.values, b.values)
    assert b.flagged == (int(inv[4]),)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(n=10, s=1), "must divide"),
        (dict(n=15, r=4), "odd"),
        (dict(n=2, s=1), "n >= 2s\\+1"),
        (dict(n=15, s=2, r=3), "r >= 2s\\+1"),
        (dict(n=15), "give s"),
        (dict(n=15, s=-1), "s must be"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RepetitionCode(**kwargs)


def test_parameters_and_matrix():
    code = RepetitionCode(15, r=3)
    assert (code.n, code.k, code.s, code.redundancy) == (15, 5, 1, 3.0)
    assert code.assignment[:4] == ((0,), (0,), (0,), (1,))
    G = partitions(5, 7, dtype=np.float64)
    np.testing.assert_array_equal(code.B @ G, code.encode(G))
    assert MajorityDecoder is type(code.decoder()) and code.decoder() is code.decoder()


@pytest.mark.parametrize("n,r", [(15, 3), (15, 5), (21, 7)])
def test_max_distortion_matches_brute_force(n, r):
    code = RepetitionCode(n, r=r)
    need = math.ceil(r / 2)
    for q in range(0, 8):
        frac, ids = code.max_distortion(q)
        assert len(ids) == q
        won = lambda S: sum(sum(1 for w in S if w // r == j) >= need for j in range(code.k))  # noqa: E731
        best = max(won(S) for S in itertools.combinations(range(n), q))
        assert frac == best / code.k
        assert won(ids) == best
    # DETOX's row of the ByzShield paper (K = 15, r = 3, q = 2..7)
    if (n, r) == (15, 3):
        assert [code.max_distortion(q)[0] for q in range(2, 8)] == [0.2, 0.2, 0.4, 0.4, 0.6, 0.6]


# ---- diagnostics vocabulary (codedbft.decoders.base) and the Code protocol -----------------------




def check_optional_pieces(code) -> tuple[bool, bool, bool]:
    """Each optional piece of the Code protocol is announced by its flag: (linear, has_distortion,
    encodes_gradients), each checked against what calling the piece does."""
    assert code.linear == (code.B is not None)
    if code.linear:
        assert np.asarray(code.B).shape == (code.n, code.k)
    try:
        code.max_distortion(1)
        distortion = True
    except NotImplementedError:
        distortion = False
    assert code.has_distortion == distortion
    try:
        code.encode(np.ones((code.k, 3)))
        encodes = True
    except NotImplementedError:
        encodes = False
    assert code.encodes_gradients == encodes
    for flag in ("linear", "has_distortion", "encodes_gradients"):
        with pytest.raises(AttributeError):
            setattr(code, flag, not getattr(code, flag))
    return code.linear, code.has_distortion, code.encodes_gradients


@pytest.mark.parametrize("as_torch", [False, True])
def test_info_vocabulary_clean_and_past_the_limit(as_torch):
    code = RepetitionCode(15, s=2)  # 3 groups of 5
    G = partitions(code.k, 40)
    wrap = torch.from_numpy if as_torch else (lambda a: a)
    res = code.decode(wrap(code.encode(G)))
    assert_common_info(res)
    assert res.exact and res.info["erasures"] == res.info["nonfinite"] == res.info["undecided"] == 0
    assert res.info["missing"] == 0 and res.info["undecided_ids"] == ()

    msgs = code.encode(G)
    msgs[0] = np.nan  # group 0: NaN, a liar and a missing member leave the 2 honest ones short
    msgs[1] = np.random.default_rng(0).standard_normal(40)
    msgs[5, 3] = np.inf  # a non-finite liar in group 1, outvoted
    res = code.decode(wrap(msgs), missing=[2])
    assert_common_info(res)
    assert not res.exact and res.info["undecided_ids"] == (0,) and res.info["undecided"] == 1
    assert res.info["erasures"] == res.info["missing"] == 1  # the vote erases no NaN row: it loses
    assert res.info["nonfinite"] == 2 and 5 in res.flagged


def test_nonfinite_counts_identical_nan_copies_that_win_their_group():
    code = RepetitionCode(15, s=2)
    msgs = code.encode(partitions(code.k, 12))
    msgs[10:15] = np.nan  # all of group 2 agree on NaN: decided, counted, and never claimed exact
    msgs[0] = np.inf  # outvoted
    res = code.decode(msgs)
    assert_common_info(res)
    assert not res.exact and "not finite" in res.info["reason"]
    assert res.flagged == (0,) and res.info["nonfinite"] == 6


def test_repetition_code_announces_its_optional_pieces():
    assert check_optional_pieces(RepetitionCode(15, s=2)) == (True, True, True)
    assert check_optional_pieces(RepetitionCode(15, r=3)) == (True, True, True)
