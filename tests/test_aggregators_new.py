"""The 2021-2024 rules (signguard, smea, caf, dnc, monna, fltrust) against plain float64 loop references
written from their definitions (docs/aggregators.md); batching, numpy kinds, huge rows, call args."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from codedbft.aggregators import by_name
from codedbft.aggregators.caf import CAF
from codedbft.aggregators.dnc import DnC
from codedbft.aggregators.fltrust import FLTrust
from codedbft.aggregators.monna import MoNNA
from codedbft.aggregators.signguard import SignGuard
from codedbft.aggregators.smea import SMEA

# ------------------------------------------------------------------------------------------------
# references: one vector set (n, d) in float64, loops over rows / subsets
# ------------------------------------------------------------------------------------------------


def _lower_median(vals):
    return sorted(vals)[(len(vals) - 1) // 2]


def ref_signguard(x, f, L=0.1, R=3.0, eps=0.05):
    n, d = x.shape
    norms = [math.sqrt(sum(v * v for v in row)) for row in x]
    M = _lower_median(norms)
    s1 = {i for i in range(n) if L <= norms[i] / M <= R}
    feats = [(sum(v > 0 for v in row) / d, sum(v == 0 for v in row) / d, sum(v < 0 for v in row) / d) for row in x]
    c = [_lower_median([ft[j] for ft in feats]) for j in range(3)]
    delta = [sum(abs(ft[j] - c[j]) for j in range(3)) for ft in feats]
    radius = max(eps, sorted(delta)[n - f - 1])
    s2 = {i for i in range(n) if delta[i] <= radius}
    S = sorted(s1 & s2) or sorted(s2)
    return np.mean([x[i] * min(1.0, M / norms[i]) for i in S], axis=0)


def ref_smea(x, f):
    n = len(x)
    best, best_s = math.inf, None
    for S in itertools.combinations(range(n), n - f):
        Y = x[list(S)]
        C = np.cov(Y.T, bias=True).reshape(x.shape[1], x.shape[1])
        lam = np.linalg.eigvalsh(C)[-1]
        if lam < best * (1 - 1e-9):  # strict, robust to rounding between equal subsets
            best, best_s = lam, S
    return x[list(best_s)].mean(axis=0)


def ref_caf(x, f, bound=None):
    n = len(x)
    c = np.ones(n)
    best_lam, best_mu = math.inf, x.mean(axis=0)
    while c.sum() > n - 2 * f + 1e-12 * n:
        mu = (c[:, None] * x).sum(axis=0) / c.sum()
        Z = x - mu
        Sigma = sum(c[i] * np.outer(Z[i], Z[i]) for i in range(n)) / c.sum()
        evals, evecs = np.linalg.eigh(Sigma)
        lam, v = max(evals[-1], 0.0), evecs[:, -1]
        if lam < best_lam:
            best_lam, best_mu = lam, mu
        if lam <= 0 or (bound is not None and lam <= bound):
            break
        tau = np.array([(Z[i] @ v) ** 2 if c[i] > 0 else 0.0 for i in range(n)])
        tmax = tau.max()
        c = np.array([0.0 if (tau[i] >= tmax * (1 - 1e-12) and c[i] > 0) else c[i] * (1 - tau[i] / tmax)
                      for i in range(n)])
    return best_mu


def ref_dnc(x, f, b, niters, c, seed, calls=0):
    n, d = x.shape
    rng = np.random.default_rng([seed, calls])
    good = set(range(n))
    drop = math.floor(c * f)
    for _ in range(niters):
        r = np.sort(rng.choice(d, size=min(b, d), replace=False))
        Xr = x[:, r]
        Xc = Xr - Xr.mean(axis=0)
        _, _, Vt = np.linalg.svd(Xc, full_matrices=False)
        s = [(Xc[i] @ Vt[0]) ** 2 for i in range(n)]
        good &= set(np.argsort(s, kind="stable")[: n - drop].tolist())
    return x[sorted(good)].mean(axis=0)


def ref_monna(x, f, ref):
    dist = [float(((row - ref) ** 2).sum()) for row in x]
    keep = np.argsort(dist, kind="stable")[: len(x) - f]
    return x[keep].mean(axis=0)


def ref_fltrust(x, g0):
    n0 = np.linalg.norm(g0)
    num, tot = np.zeros(x.shape[1]), 0.0
    for row in x:
        nx = np.linalg.norm(row)
        ts = max(0.0, row @ g0 / (nx * n0)) if nx > 0 and n0 > 0 else 0.0
        if ts > 0:
            num += ts * row * n0 / nx
            tot += ts
    return num / tot if tot > 0 else np.zeros(x.shape[1])


# ------------------------------------------------------------------------------------------------
# cases: (name, factory, reference(x, aux), needs aux as call arg)
# ------------------------------------------------------------------------------------------------

CASES = {
    "signguard": (lambda f: SignGuard(f=f), lambda x, f, a: ref_signguard(x, f), None),
    "smea": (lambda f: SMEA(f=f), lambda x, f, a: ref_smea(x, f), None),
    "caf": (lambda f: CAF(f=f), lambda x, f, a: ref_caf(x, f), None),
    "dnc": (lambda f: DnC(f=f, b=7, niters=3, c=1.0, seed=5), lambda x, f, a: ref_dnc(x, f, 7, 3, 1.0, 5), None),
    "monna": (lambda f: MoNNA(f=f), lambda x, f, a: ref_monna(x, f, a), "reference"),
    "fltrust": (lambda f: FLTrust(f=f), lambda x, f, a: ref_fltrust(x, a), "root"),
}


def _inputs(seed, n, d, attack=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) + 0.5
    if attack:  # two Byzantine rows: a large one and a sign-flipped one
        x[1] = 8.0 * rng.standard_normal(d)
        x[n - 1] = -3.0 * x[0]
    aux = rng.standard_normal(d) + 0.5
    return x, aux


def _call(name, agg, x, aux):
    key = CASES[name][2]
    return agg(x, **({key: aux} if key else {}))


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("n,d,f", [(5, 8, 1), (7, 20, 2), (9, 13, 3), (9, 6, 2), (6, 11, 1)])
def test_against_loop_reference(name, n, d, f):
    factory, ref, _ = CASES[name]
    for seed in range(3):
        x, aux = _inputs(1000 * n + 10 * d + seed, n, d, attack=seed != 0)
        got = _call(name, factory(f), torch.from_numpy(x), torch.from_numpy(aux)).numpy()
        np.testing.assert_allclose(got, ref(x, f, aux), rtol=1e-9, atol=1e-11, err_msg=name)


def test_caf_with_bound_stops_early():
    x, _ = _inputs(3, 9, 10)
    for bound in (0.0, 1.0, 3.0, 1e9):
        got = CAF(f=3, bound=bound)(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, ref_caf(x, 3, bound=bound), rtol=1e-9, atol=1e-11)
    agg = CAF(f=3, bound=1e9)
    agg(x)
    assert int(agg.last_info["iterations"][0]) == 1  # the first spectral norm is below the bound


def test_signguard_drops_flipped_and_far_rows():
    rng = np.random.default_rng(0)
    honest = np.abs(rng.standard_normal((7, 50))) + 0.1
    x = np.concatenate([honest, -honest[:1], 100 * honest[1:2]])
    agg = SignGuard(f=2)
    agg(x)
    keep = agg.last_info["selected"][0].tolist()
    assert keep[:7] == [True] * 7 and keep[7:] == [False, False]


def test_smea_subset_cap_names_the_parameter():
    with pytest.raises(ValueError, match="max_subsets"):
        SMEA(f=4, max_subsets=100)(np.zeros((9, 3)))
    SMEA(f=4, max_subsets=126)(np.zeros((9, 3)))  # C(9, 4) = 126


def test_dnc_stream_and_state():
    x, _ = _inputs(4, 9, 12)
    a, b = DnC(f=2, b=4, seed=3), DnC(f=2, b=4, seed=3)
    outs = [a(x) for _ in range(3)]
    np.testing.assert_allclose(outs[1], ref_dnc(x, 2, 4, 5, 1.0, 3, calls=1), rtol=1e-9)
    assert a.stateful and a.state_dict() == {"calls": 3}
    b.load_state_dict({"calls": 2})
    assert b(x).tobytes() == outs[2].tobytes()
    b.reset()
    assert b.state_dict() == {"calls": 0} and b(x).tobytes() == outs[0].tobytes()


def test_fltrust_all_zero_trust_gives_zero():
    x = -np.abs(np.random.default_rng(1).standard_normal((5, 4)))
    out = FLTrust()(x, root=np.ones(4))
    assert np.array_equal(out, np.zeros(4))
    assert np.array_equal(FLTrust()(x, root=np.zeros(4)), np.zeros(4))


# ------------------------------------------------------------------------------------------------
# batching, kinds, huge rows, call arguments
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("shared_aux", [True, False])
def test_batching_equals_per_item_calls(name, shared_aux):
    factory, _, key = CASES[name]
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 9, 10))
    aux = rng.standard_normal(10) if shared_aux else rng.standard_normal((2, 3, 10))
    call = (lambda a: {key: a}) if key else (lambda a: {})
    got = factory(2)(torch.from_numpy(x), **call(torch.from_numpy(aux)))
    assert got.shape == (2, 3, 10)
    for i, j in itertools.product(range(2), range(3)):
        a = aux if shared_aux else aux[i, j]
        want = factory(2)(torch.from_numpy(x[i, j]), **call(torch.from_numpy(a)))  # fresh object per item
        torch.testing.assert_close(got[i, j], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_in_numpy_out_same_bytes(name, dtype):
    factory, _, key = CASES[name]
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 9, 6)).astype(dtype)
    x[0, 3, 1] = np.nan
    aux = rng.standard_normal(6).astype(dtype)
    a, b = factory(2), factory(2)
    got = _call(name, a, x, aux)
    want = _call(name, b, torch.from_numpy(x), torch.from_numpy(aux))
    assert type(got) is np.ndarray and got.dtype == dtype and got.shape == (2, 6)
    assert got.tobytes() == want.numpy().tobytes()
    assert a.last_info["nonfinite_rows"] == 1 and np.isfinite(got).all()


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype,big", [(np.float32, 1e30), (np.float64, 1e200), (np.float64, 1e300)])
def test_huge_rows_do_not_crash(name, dtype, big):
    factory, _, _ = CASES[name]
    rng = np.random.default_rng(5)
    x = rng.standard_normal((9, 12)).astype(dtype)
    x[[2, 6]] = big * np.sign(rng.standard_normal((2, 12))).astype(dtype)
    aux = x[0].copy()
    out = _call(name, factory(2), x, aux)
    assert out.shape == (12,) and out.dtype == dtype
    if name in ("signguard", "smea", "caf", "monna", "fltrust"):  # the huge rows are filtered or bounded
        assert np.isfinite(out).all() and np.abs(out).max() < 10, name


@pytest.mark.parametrize("name,key", [("monna", "reference"), ("fltrust", "root")])
def test_missing_or_bad_call_argument(name, key):
    agg = by_name(name, f=1)
    x = np.zeros((5, 4))
    with pytest.raises(ValueError, match=key):
        agg(x)
    with pytest.raises(ValueError, match=key):
        agg(x, **{key: np.zeros(3)})
    with pytest.raises(TypeError, match="unknown call argument"):
        agg(x, params=np.zeros(4))


@pytest.mark.parametrize("name", list(CASES))
def test_min_n_and_registry(name):
    agg = by_name(name, f=2)
    assert type(agg) is type(CASES[name][0](2)) and agg.requirement()
    if name != "fltrust":
        assert agg.min_n() == 5
        with pytest.raises(ValueError, match="needs"):
            _call(name, agg, np.zeros((4, 3)), np.zeros(3))
    else:
        assert agg.min_n() == 1
