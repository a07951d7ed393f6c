"""Robust aggregation rules against plain loop-based float64 references written from aggregators.md."""

from __future__ import annotations

import itertools
import math
import zlib

import numpy as np
import pytest
import torch

from codedbft.aggregators import (
    CGE, FABA, MDA, Bulyan, ByGARS, CenteredClipping, GeoMed, Krum, MeaMed, Mean, Median, MultiKrum,
    Phocas, SignMajority, TrimmedMean, Zeno, available, by_name,
)
from codedbft.aggregators import _kernels

# ------------------------------------------------------------------------------------------------
# references: one vector set (n, d) in float64, loops over coordinates and subsets
# ------------------------------------------------------------------------------------------------


def ref_median(x, f):
    return np.array([np.median(x[:, k]) for k in range(x.shape[1])])


def ref_trimmed(x, f):
    n = len(x)
    return np.array([np.sort(x[:, k])[f : n - f].mean() for k in range(x.shape[1])])


def _closest_mean(col, center, k):
    dist = np.abs(col - center)
    order = np.argsort(dist, kind="stable")  # ties: lower index first
    return col[order[:k]].mean()


def ref_phocas(x, f):
    n = len(x)
    out = []
    for k in range(x.shape[1]):
        t = np.sort(x[:, k])[f : n - f].sum() / (n - 2 * f)
        out.append(_closest_mean(x[:, k], t, n - f))
    return np.array(out)


def ref_meamed(x, f):
    n = len(x)
    return np.array([_closest_mean(x[:, k], np.median(x[:, k]), n - f) for k in range(x.shape[1])])


def _sqd(a, b):
    return float(((a - b) ** 2).sum())


def _krum_score(x, ids, i, nb):
    ds = sorted(_sqd(x[i], x[j]) for j in ids if j != i)
    return sum(ds[:nb])


def ref_krum(x, f):
    n = len(x)
    scores = [_krum_score(x, range(n), i, n - f - 2) for i in range(n)]
    return x[int(np.argmin(scores))]


def ref_multikrum(x, f, m=None):
    n = len(x)
    m = n - f if m is None else m
    scores = [_krum_score(x, range(n), i, n - f - 2) for i in range(n)]
    return x[np.argsort(scores, kind="stable")[:m]].mean(axis=0)


def ref_bulyan(x, f):
    n = len(x)
    theta, beta = n - 2 * f, n - 4 * f
    left, sel = list(range(n)), []
    for _ in range(theta):
        m = len(left)
        scores = [_krum_score(x, left, i, max(0, m - f - 2)) for i in left]
        win = left[int(np.argmin(scores))]
        sel.append(win)
        left.remove(win)
    S = x[sorted(sel)]
    return np.array([_closest_mean(S[:, k], np.median(S[:, k]), beta) for k in range(x.shape[1])])


def ref_mda(x, f):
    n = len(x)
    best, best_s = math.inf, None
    for S in itertools.combinations(range(n), n - f):
        diam = max((_sqd(x[i], x[j]) for i, j in itertools.combinations(S, 2)), default=0.0)
        if diam < best:
            best, best_s = diam, S
    return x[list(best_s)].mean(axis=0)


def ref_faba(x, f):
    left = list(range(len(x)))
    for _ in range(f):
        mu = x[left].mean(axis=0)
        dist = np.array([_sqd(x[i], mu) for i in left])
        # ties go to the lower index; equal distances may differ in the last bits (mu is rounded)
        left.pop(int(np.flatnonzero(dist >= dist.max() * (1 - 1e-12))[0]))
    return x[left].mean(axis=0)


def ref_cge(x, f):
    norms = np.linalg.norm(x, axis=1)
    order = np.argsort(-norms, kind="stable")
    keep = sorted(order[f:])
    return x[keep].mean(axis=0)


def ref_geomed(x, f, nu=1e-6, tol=1e-8, max_iter=200):
    z = x.mean(axis=0)
    for _ in range(max_iter):
        w = 1.0 / np.maximum(nu, np.linalg.norm(z - x, axis=1))
        zn = (w[:, None] * x).sum(axis=0) / w.sum()
        done = np.linalg.norm(zn - z) <= tol * np.linalg.norm(z)
        z = zn
        if done:
            break
    return z


def ref_sign(x, f):
    return np.sign(np.sign(x).sum(axis=0))


def ref_mean(x, f):
    return x.mean(axis=0)


RULES = {
    "mean": (Mean, ref_mean, 1),
    "median": (Median, ref_median, lambda f: 2 * f + 1),
    "trimmed-mean": (TrimmedMean, ref_trimmed, lambda f: 2 * f + 1),
    "phocas": (Phocas, ref_phocas, lambda f: 2 * f + 1),
    "meamed": (MeaMed, ref_meamed, lambda f: 2 * f + 1),
    "krum": (Krum, ref_krum, lambda f: 2 * f + 3),
    "multi-krum": (MultiKrum, ref_multikrum, lambda f: 2 * f + 3),
    "bulyan": (Bulyan, ref_bulyan, lambda f: 4 * f + 3),
    "mda": (MDA, ref_mda, lambda f: 2 * f + 1),
    "faba": (FABA, ref_faba, lambda f: 2 * f + 1),
    "cge": (CGE, ref_cge, lambda f: 2 * f + 1),
    "geomed": (GeoMed, ref_geomed, lambda f: 2 * f + 1),
    "sign-majority": (SignMajority, ref_sign, 1),
}
COORD = ["median", "trimmed-mean", "phocas", "meamed", "bulyan"]
SUBSET_MEANS = ["multi-krum", "mda", "faba", "cge"]


@pytest.fixture(params=["auto", "torch"])
def backend(request):
    _kernels.set_backend(request.param)
    yield request.param
    _kernels.set_backend("auto")


def _cases(name):
    rng = np.random.default_rng(zlib.crc32(name.encode()))  # hash() is salted per process
    out = []
    for f in (0, 1, 2):
        n_min = RULES[name][2] if isinstance(RULES[name][2], int) else RULES[name][2](f)
        for n in sorted({n_min, n_min + 1, n_min + 4}):
            if name == "mda" and math.comb(n, f) > 500:
                continue
            d = 7
            out.append((f, rng.standard_normal((n, d))))
            out.append((f, rng.integers(-2, 3, size=(n, d)).astype(np.float64)))  # many ties
    return out


@pytest.mark.parametrize("name", list(RULES))
def test_matches_float64_reference(name, backend):
    cls, ref, _ = RULES[name]
    for f, x in _cases(name):
        agg = cls(f=f)
        got = agg(torch.from_numpy(x))
        want = ref(x, f)
        assert got.dtype == torch.float64
        tol = 1e-7 if name == "geomed" else 1e-10
        np.testing.assert_allclose(got.numpy(), want, rtol=tol, atol=tol, err_msg=f"{name} f={f} n={len(x)}")


@pytest.mark.parametrize("name", list(RULES))
def test_float32_and_batching(name, backend):
    cls, ref, nmin = RULES[name]
    f = 1
    n = (nmin if isinstance(nmin, int) else nmin(f)) + 2
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, n, 33, generator=g, dtype=torch.float32)
    agg = cls(f=f)
    got = agg(x)
    assert got.shape == (2, 3, 33) and got.dtype == torch.float32
    for a in range(2):
        for b in range(3):
            item = agg(x[a, b])
            torch.testing.assert_close(got[a, b], item, rtol=1e-6, atol=1e-6)
            want = ref(x[a, b].double().numpy(), f)
            np.testing.assert_allclose(item.numpy(), want, rtol=1e-4, atol=1e-4 if name == "geomed" else 1e-5)


def test_multikrum_m():
    rng = np.random.default_rng(1)
    for m in (1, 3, 6):
        x = rng.integers(-2, 3, size=(9, 5)).astype(np.float64)
        got = MultiKrum(f=2, m=m)(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, ref_multikrum(x, 2, m), rtol=1e-12)
    with pytest.raises(ValueError, match="m <= n"):
        MultiKrum(f=1, m=10)(torch.zeros(5, 3))


def test_even_n_median_is_numpy_convention():
    x = torch.tensor([[1.0], [2.0], [10.0], [20.0]])
    assert Median(f=1)(x).item() == 6.0  # torch.median would give the lower middle, 2


@pytest.mark.parametrize("name", list(RULES))
def test_too_small_n_raises(name):
    cls, _, nmin = RULES[name]
    if isinstance(nmin, int):
        return
    f = 2
    with pytest.raises(ValueError, match=r"n >= "):
        cls(f=f)(torch.zeros(nmin(f) - 1, 4))


def test_error_messages_name_the_requirement():
    with pytest.raises(ValueError, match=r"bulyan needs n >= 4f\+3"):
        Bulyan(f=2)(torch.zeros(10, 3))
    with pytest.raises(ValueError, match=r"krum needs n >= 2f\+3"):
        Krum(f=2)(torch.zeros(6, 3))
    with pytest.raises(ValueError, match="C\\(n, f\\)"):
        MDA(f=5, max_subsets=100)(torch.zeros(20, 3))
    with pytest.raises(ValueError, match="zeno needs"):
        Zeno(f=1)(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="f must be"):
        Krum(f=-1)


@pytest.mark.parametrize("name", COORD + SUBSET_MEANS + ["krum"])
def test_breakdown_outliers_at_1e6(name, backend):
    cls, _, nmin = RULES[name]
    f = 2
    n = nmin(f) + 1
    g = torch.Generator().manual_seed(3)
    for dtype in (torch.float32, torch.float64):
        honest = torch.randn(n - f, 50, generator=g, dtype=dtype)
        bad = 1e6 * torch.randn(f, 50, generator=g, dtype=dtype)
        x = torch.cat([bad, honest])[torch.randperm(n, generator=g)]
        out = cls(f=f)(x)
        if name == "krum":
            assert any(torch.equal(out, h) for h in honest)
        else:
            lo, hi = honest.min(dim=0).values, honest.max(dim=0).values
            slack = 1e-5 if dtype == torch.float32 else 1e-12
            assert bool(((out >= lo - slack) & (out <= hi + slack)).all()), name


def test_trimmed_mean_keeps_honest_values_in_float32():
    # total - top - bottom in float32 would lose the honest values next to 1e6 outliers
    honest = torch.tensor([[0.1], [0.2], [0.3], [0.25], [0.15]], dtype=torch.float32)
    x = torch.cat([torch.full((2, 1), 1.0e6), honest, torch.full((2, 1), -1.0e6)])
    got = TrimmedMean(f=2)(x).item()
    assert abs(got - 0.2) < 1e-7


def _naive_f32_krum(x, f):
    G = x @ x.T
    nrm = G.diagonal()
    D = nrm[:, None] + nrm[None, :] - 2 * G
    D.fill_diagonal_(float("inf"))
    s = torch.sort(D, dim=1).values[:, : len(x) - f - 2].sum(1)
    return int(s.argmin())


@pytest.mark.parametrize("backend_name", ["auto", "torch"])
def test_krum_cancellation_nearly_identical_large_vectors(backend_name):
    _kernels.set_backend(backend_name)
    try:
        g = torch.Generator().manual_seed(0)
        d, n, f = 4000, 9, 2
        base = 3.0e3 * (1 + torch.rand(d, generator=g))
        ulp = 2.0**-12 * 4  # float32 spacing around 3e3..6e3 is 2^-12..2^-11
        steps = torch.randint(-3, 4, (n, d), generator=g).double()
        steps[4] *= 0.3  # row 4 is the tightest: the true Krum winner
        x = (base.double() + ulp * steps.round()).float()
        want = ref_krum(x.double().numpy(), f)
        got = Krum(f=f)(x)
        assert torch.equal(got.double(), torch.from_numpy(want))
        # the naive float32 Gram formula picks another winner here: this test catches it
        assert not torch.equal(x[_naive_f32_krum(x, f)].double(), torch.from_numpy(want))
        # and the full distance matrix matches cdist in float64
        from codedbft.aggregators._distances import pairwise_sq_dists

        D = pairwise_sq_dists(x.unsqueeze(0))[0]
        R = torch.cdist(x.double(), x.double()) ** 2
        torch.testing.assert_close(D, R, rtol=1e-9, atol=0)
    finally:
        _kernels.set_backend("auto")


def test_distances_with_far_center_row_recentre():
    g = torch.Generator().manual_seed(5)
    x = (1e3 + 1e-2 * torch.randn(12, 500, generator=g, dtype=torch.float64))
    x[0] = 1e7  # the first centre is an outlier: everything else is "near"
    from codedbft.aggregators._distances import pairwise_sq_dists

    D = pairwise_sq_dists(x.unsqueeze(0))[0]
    R = torch.cdist(x, x) ** 2
    torch.testing.assert_close(D, R, rtol=1e-9, atol=1e-12)
    assert torch.equal(D, D.T)


@pytest.mark.parametrize("n", list(range(1, 15)))
def test_sorting_network_sorts_all_01_inputs(n):
    lo, hi = _kernels.sorting_network(n)
    a = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(np.int8)
    for i, j in zip(lo, hi):
        u, v = np.minimum(a[:, i], a[:, j]), np.maximum(a[:, i], a[:, j])
        a[:, i], a[:, j] = u, v
    assert (np.diff(a, axis=1) >= 0).all()  # 0-1 principle: sorts every input


def test_coord_kernel_large_n_and_block_edges(backend):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 101, 131, generator=g, dtype=torch.float64)
    x[0, :, :5] = torch.randint(-1, 2, (101, 5), generator=g).double()
    xn = x[0].numpy()
    np.testing.assert_allclose(Median(f=10)(x)[0].numpy(), ref_median(xn, 10), rtol=1e-12)
    np.testing.assert_allclose(TrimmedMean(f=10)(x)[0].numpy(), ref_trimmed(xn, 10), rtol=1e-12)
    np.testing.assert_allclose(Phocas(f=10)(x)[0].numpy(), ref_phocas(xn, 10), rtol=1e-12)
    np.testing.assert_allclose(MeaMed(f=10)(x)[0].numpy(), ref_meamed(xn, 10), rtol=1e-12)


@pytest.mark.parametrize("name", ["median", "trimmed-mean", "krum", "bulyan", "geomed", "cge", "mean"])
def test_nonfinite_rows_handled_and_counted(name):
    cls, _, nmin = RULES[name]
    f = 1
    n = (nmin if isinstance(nmin, int) else nmin(f)) + 2
    x = torch.randn(n, 20, dtype=torch.float32)
    x[1, 3] = float("nan")
    x[2] = float("inf")
    agg = cls(f=f)
    out = agg(x)
    assert torch.isfinite(out).all()
    assert agg.last_info["nonfinite_rows"] == 2 and agg.nonfinite_rows_total == 2
    clean = torch.where(torch.isfinite(x), x, torch.zeros(()))
    torch.testing.assert_close(out, cls(f=f)(clean))
    huge = torch.randn(n, 20, dtype=torch.float64)
    huge[0] = 1e300
    assert torch.isfinite(cls(f=f)(huge)).all() or name == "mean"


# ------------------------------------------------------------------------------------------------
# stateful and oracle rules
# ------------------------------------------------------------------------------------------------


def ref_cc(x, v, tau, iters):
    for _ in range(iters):
        u = x - v
        nrm = np.linalg.norm(u, axis=1)
        s = np.minimum(1.0, tau / np.maximum(nrm, 1e-300))
        v = v + (s[:, None] * u).sum(axis=0) / len(x)
    return v


def test_centered_clipping_reference_and_state(backend):
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((7, 9)) * 10 for _ in range(3)]
    agg = CenteredClipping(f=1, tau=3.0, iters=2)
    v = np.zeros(9)
    for i, x in enumerate(xs[:2]):
        v = ref_cc(x, v, 3.0, 2)
        np.testing.assert_allclose(agg(torch.from_numpy(x)).numpy(), v, rtol=1e-12)
    state = agg.state_dict()
    other = CenteredClipping(f=1, tau=3.0, iters=2)
    other.load_state_dict(state)
    torch.testing.assert_close(other(torch.from_numpy(xs[2])), agg(torch.from_numpy(xs[2])))
    agg.reset()
    np.testing.assert_allclose(agg(torch.from_numpy(xs[0])).numpy(), ref_cc(xs[0], np.zeros(9), 3.0, 2), rtol=1e-12)
    with pytest.raises(ValueError, match="reset"):
        agg(torch.zeros(2, 7, 9, dtype=torch.float64))


def test_bygars_reference_and_state():
    rng = np.random.default_rng(6)
    agg = ByGARS(alpha=0.3, decay=0.5, q0=0.1)
    q = np.full(5, 0.1)
    outs = []
    for t in range(4):
        x = rng.standard_normal((5, 8))
        gaux = rng.standard_normal(8)
        want = (q[:, None] * x).sum(axis=0)
        a = 0.3 / (1 + 0.5 * t)
        q = (1 - a) * q + a * (x @ gaux)
        got = agg(torch.from_numpy(x), aux_gradient=torch.from_numpy(gaux))
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
        outs.append(got)
        if t == 1:
            saved = agg.state_dict()
    np.testing.assert_allclose(agg.q.numpy(), q, rtol=1e-12)
    other = ByGARS(alpha=0.3, decay=0.5, q0=0.1)
    other.load_state_dict(saved)
    assert other.t == 2
    with pytest.raises(ValueError, match="auxiliary gradient"):
        ByGARS()(torch.zeros(3, 2))


def test_bygars_learns_negative_reputation_for_sign_flippers():
    # multiplicative-noise adversaries (Regatti et al., Assumption 2): -4 x gradient
    g = torch.Generator().manual_seed(0)
    agg = ByGARS(alpha=0.1, aux_grad=None)
    true = torch.randn(20, generator=g, dtype=torch.float64)
    for _ in range(200):
        honest = true + 0.3 * torch.randn(3, 20, generator=g, dtype=torch.float64)
        flip = -4 * (true + 0.3 * torch.randn(5, 20, generator=g, dtype=torch.float64))
        agg(torch.cat([honest, flip]), aux_gradient=true + 0.3 * torch.randn(20, generator=g, dtype=torch.float64))
    assert (agg.q[:3] > 0).all() and (agg.q[3:] < 0).all()
    out = agg(torch.cat([true.expand(3, 20), -4 * true.expand(5, 20)]), aux_gradient=true)
    assert torch.dot(out, true) > 0  # a descent direction despite 5 of 8 attackers


def test_zeno_reference():
    rng = np.random.default_rng(8)
    A = rng.standard_normal((6, 10))
    w = rng.standard_normal(10)

    def loss_np(v):
        return 0.5 * float(((A @ v) ** 2).sum())

    calls = []

    def oracle(W):
        calls.append(W.shape)
        return 0.5 * ((W @ torch.from_numpy(A).T) ** 2).sum(dim=1)

    x = rng.standard_normal((7, 10))
    x[2] = -5 * (A.T @ A @ w)  # an ascent direction: scored worst
    lr, rho, b = 0.05, 1e-3, 2
    scores = [loss_np(w) - loss_np(w - lr * xi) - rho * float(xi @ xi) for xi in x]
    keep = np.argsort(-np.asarray(scores), kind="stable")[: 7 - b]
    want = x[keep].mean(axis=0)
    agg = Zeno(f=b, loss=oracle, lr=lr, rho=rho)
    got = agg(torch.from_numpy(x), params=torch.from_numpy(w))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    assert [tuple(c) for c in calls] == [(8, 10)] and 2 not in agg.last_info["selected"][0].tolist()


def test_registry():
    names = set(available())
    assert {
        "mean", "median", "trimmed-mean", "phocas", "meamed", "geomed", "krum", "multi-krum", "bulyan",
        "mda", "centered-clipping", "faba", "cge", "sign-majority", "zeno", "bygars",
    } <= names
    assert isinstance(by_name("multi-krum", f=2, m=3), MultiKrum) and by_name("multi-krum", f=2, m=3).m == 3
    assert isinstance(by_name("Trimmed_Mean", f=1), TrimmedMean)
    with pytest.raises(ValueError, match="unknown aggregator"):
        by_name("nope")


def test_geomed_iterations_and_outlier_resistance():
    g = torch.Generator().manual_seed(9)
    honest = torch.randn(9, 30, generator=g, dtype=torch.float64)
    x = torch.cat([honest, 1e6 * torch.ones(4, 30, dtype=torch.float64)])
    agg = GeoMed(f=4)
    out = agg(x)
    assert torch.linalg.vector_norm(out - honest.mean(0)) < 3 * torch.linalg.vector_norm(honest, dim=1).max()
    assert 1 <= int(agg.last_info["iterations"][0]) <= 200
