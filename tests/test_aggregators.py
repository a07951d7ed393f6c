"""Robust aggregation rules against plain loop-based float64 references written from docs/aggregators.md;
the registry, numpy/torch input kinds, per-call arguments and state round trips."""

from __future__ import annotations

import itertools
import math
import pickle
import zlib

import numpy as np
import pytest
import torch

import codedbft.aggregators as aggregators_pkg
from codedbft.aggregators import (
    AGGREGATORS, CGE, FABA, MDA, Aggregator, Bulyan, ByGARS, CenteredClipping, GeoMed, Hierarchical, Krum,
    MeaMed, Mean, Median, MultiKrum, Phocas, SignMajority, TrimmedMean, Zeno, available, by_name,
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


# ------------------------------------------------------------------------------------------------
# registry
# ------------------------------------------------------------------------------------------------


def test_registry_holds_every_exported_rule_class():
    exported = {getattr(aggregators_pkg, n) for n in aggregators_pkg.__all__}
    # Pipeline composes rules and is built as Pipeline(pre=..., rule=...), not by name
    classes = {c for c in exported if isinstance(c, type) and issubclass(c, Aggregator)
               and c not in (Aggregator, aggregators_pkg.Pipeline)}
    # an exported rule without the decorator fails; a new rule file needs no export to be built by name
    assert classes <= {AGGREGATORS.get(n) for n in available()}
    assert all(AGGREGATORS.get(c.name) is c for c in classes)


@pytest.mark.parametrize("spelling", ["multi-krum", "multi_krum", "Multi-Krum", " MULTI_KRUM "])
def test_by_name_normalises_names(spelling):
    agg = by_name(spelling, f=1, m=2)
    assert type(agg) is MultiKrum and agg.m == 2 and agg.f == 1


def test_unknown_parameter_is_a_value_error_listing_valid_keys():
    with pytest.raises(ValueError, match=r"'zz'.*'krum'.*valid: \['f'\]"):
        by_name("krum", f=1, zz=3)
    with pytest.raises(ValueError, match=r"\['typo', 'zz'\].*valid: \['f', 'm'\]"):
        by_name("multi-krum", f=1, zz=3, typo=0)
    with pytest.raises(ValueError, match=r"valid: \['f', 'tau', 'iters'\]"):
        by_name("centered-clipping", f=1, momentum=0.9)
    # hierarchical passes extra parameters to its outer rule: checked against the outer rule
    with pytest.raises(ValueError, match=r"'zz'.*outer 'multi-krum'.*group_size.*\['m'\]"):
        by_name("hierarchical", group_size=3, outer="multi-krum", zz=1)
    with pytest.raises(ValueError, match="by name"):
        Hierarchical(group_size=3, outer=Median(f=1), m=2)  # would be silently dropped
    assert by_name("hierarchical", group_size=3, outer="multi-krum", s=2, m=2).outer.m == 2
    with pytest.raises(ValueError, match="unknown aggregator 'nope'; available: .*krum"):
        by_name("nope")


# ------------------------------------------------------------------------------------------------
# input kinds: numpy in -> numpy out, the same bytes as the torch call
# ------------------------------------------------------------------------------------------------

_A = torch.from_numpy(np.random.default_rng(11).standard_normal((4, 6)))


def _oracle(W):
    W = torch.as_tensor(W, dtype=torch.float64)
    return 0.5 * ((W @ _A.T) ** 2).sum(dim=1)


def _kind_case(name):
    """(factory, n, per-call kwargs as a function of the array kind) for every registered rule."""
    w = np.linspace(-1.0, 1.0, 6)
    if name == "zeno":
        return (lambda: Zeno(f=2, loss=_oracle, lr=0.05)), 9, lambda kind: {"params": kind(w)}
    if name == "bygars":
        return (lambda: ByGARS(alpha=0.3, q0=0.2)), 9, lambda kind: {"aux_gradient": kind(w)}
    if name == "hierarchical":
        return (lambda: Hierarchical(group_size=3, outer="centered-clipping", s=2, tau=0.5)), 15, lambda kind: {}
    if name == "centered-clipping":
        return (lambda: CenteredClipping(f=1, tau=0.5, iters=2)), 9, lambda kind: {}
    if name == "monna":
        return (lambda: by_name(name, f=1)), 9, lambda kind: {"reference": kind(w)}
    if name == "fltrust":
        return (lambda: by_name(name, f=1)), 9, lambda kind: {"root": kind(w)}
    if name == "dnc":
        return (lambda: by_name(name, f=1, b=4)), 9, lambda kind: {}
    return (lambda: by_name(name, f=1)), 9, lambda kind: {}


@pytest.mark.parametrize("name", available())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_input_gives_numpy_output_equal_to_torch(name, dtype):
    factory, n, call = _kind_case(name)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    xs = [rng.standard_normal((2, n, 6)).astype(dtype) for _ in range(3)]
    if name == "hierarchical":  # groups of 3 identical rows, one group corrupted
        xs = [np.repeat(x[:, : n // 3], 3, axis=1) for x in xs]
        for x in xs:
            x[:, :2] = 50.0
    xs[1][0, 1, 2] = np.nan  # the non-finite guard runs on both kinds
    a_np, a_t = factory(), factory()
    for x in xs:  # several calls: stateful rules carry state between them
        got = a_np(x, **call(np.asarray))
        want = a_t(torch.from_numpy(x), **call(torch.from_numpy))
        assert type(got) is np.ndarray and got.dtype == dtype and got.shape == (2, 6), name
        assert isinstance(want, torch.Tensor)
        assert got.tobytes() == want.numpy().tobytes(), name
    assert a_np.nonfinite_rows_total == a_t.nonfinite_rows_total == 1


def test_numpy_views_and_readonly_arrays():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 5))
    want = Median(f=2)(torch.from_numpy(x.copy())).numpy()
    flipped = x[::-1][::-1]  # negative strides twice: same values
    assert Median(f=2)(flipped).tobytes() == want.tobytes()
    ro = x.copy()
    ro.flags.writeable = False
    assert Median(f=2)(ro).tobytes() == want.tobytes()
    assert Median(f=2)(np.asfortranarray(x)).tobytes() == want.tobytes()
    reversed_rows = Median(f=2)(x[::-1])  # a permutation of the rows: median unchanged
    np.testing.assert_array_equal(reversed_rows, want)


@pytest.mark.parametrize("bad", [[[1.0, 2.0], [3.0, 4.0]], "abc", 3.0, None, (1.0, 2.0)])
@pytest.mark.parametrize("name", ["mean", "median", "krum", "hierarchical"])
def test_non_array_input_is_a_type_error(name, bad):
    agg = Hierarchical(group_size=1) if name == "hierarchical" else by_name(name, f=0)
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        agg(bad)


def test_bad_arrays_are_value_errors():
    for x in (np.zeros((5, 3), dtype=np.int64), np.zeros((5, 3), dtype=np.complex128), np.array([["a"]]),
              torch.zeros(5, 3, dtype=torch.int64)):
        with pytest.raises(ValueError):
            Median(f=1)(x)
    with pytest.raises(ValueError, match="shape"):
        Median(f=0)(np.zeros(3))
    with pytest.raises(TypeError, match="unknown call argument"):
        Median(f=1)(np.zeros((5, 3)), params=np.zeros(3))


# ------------------------------------------------------------------------------------------------
# per-call arguments are never stored on the object
# ------------------------------------------------------------------------------------------------


def test_zeno_keeps_no_call_arguments_on_the_object():
    rng = np.random.default_rng(8)
    x = torch.from_numpy(rng.standard_normal((2, 7, 6)))
    w0, w1 = (torch.from_numpy(rng.standard_normal(6)) for _ in range(2))
    agg = Zeno(f=2, loss=_oracle, lr=0.05, params=w0)
    before = {k: v for k, v in vars(agg).items() if k != "last_info"}
    out1 = agg(x, params=w1)  # call arguments win for this call only
    after = {k: v for k, v in vars(agg).items() if k != "last_info"}
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
    assert torch.equal(out1, Zeno(f=2, loss=_oracle, lr=0.05, params=w1)(x))
    assert torch.equal(agg(x), Zeno(f=2, loss=_oracle, lr=0.05, params=w0)(x))  # back to w0
    # the result is the float64 reference of test_zeno_reference's formula
    xn, wn = x[1].numpy(), w1.numpy()
    A = _A.numpy()

    def loss_np(v):
        return 0.5 * float(((A @ v) ** 2).sum())

    scores = [loss_np(wn) - loss_np(wn - 0.05 * xi) - 1e-3 * float(xi @ xi) for xi in xn]
    keep = np.argsort(-np.asarray(scores), kind="stable")[:5]
    np.testing.assert_allclose(out1[1].numpy(), xn[keep].mean(axis=0), rtol=1e-12)
    bare = Zeno(f=2)
    keys = set(vars(bare))
    bare(x, params=w1, loss=_oracle)
    assert set(vars(bare)) == keys and bare.loss is None and bare.params is None
    with pytest.raises(ValueError, match="zeno needs"):
        bare(x)  # nothing from the previous call was kept
    pickle.dumps(bare)


def test_bygars_keeps_no_call_arguments_on_the_object():
    rng = np.random.default_rng(6)
    agg = ByGARS(alpha=0.3, decay=0.5, q0=0.1)
    keys = set(vars(agg))
    q = np.full((2, 5), 0.1)
    for t in range(3):
        x = rng.standard_normal((2, 5, 8))
        g = rng.standard_normal(8)
        want = np.einsum("bn,bnd->bd", q, x)
        a = 0.3 / (1 + 0.5 * t)
        q = (1 - a) * q + a * (x @ g)
        got = agg(torch.from_numpy(x), aux_gradient=torch.from_numpy(g))
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
        assert set(vars(agg)) == keys  # only the reputations q and the step t changed
    np.testing.assert_allclose(agg.q.numpy(), q, rtol=1e-12)
    assert agg.q.shape == (2, 5) and agg.t == 3
    with pytest.raises(ValueError, match="auxiliary gradient"):
        agg(torch.from_numpy(x))  # the previous call's gradient was not kept
    pickle.dumps(agg)


# ------------------------------------------------------------------------------------------------
# state: plain copies, restored into the live object
# ------------------------------------------------------------------------------------------------


def _detox_inputs(seed, steps, r=3, groups=6, d=5):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        x = torch.randn(groups, d, generator=g, dtype=torch.float64).repeat_interleave(r, dim=0)
        x[:2] = 40.0  # group 0 voted wrong: one bad bucket for the outer rule
        out.append(x)
    return out


def test_hierarchical_with_stateful_outer_round_trips_state():
    def make():
        return Hierarchical(group_size=3, outer="centered-clipping", s=2, tau=0.3)

    xs = _detox_inputs(0, 6)
    a = make()
    assert a.stateful and a.outer.stateful and not Hierarchical(group_size=3).stateful
    for x in xs[:3]:
        a(x)
    saved = pickle.loads(pickle.dumps(a.state_dict()))  # plain data: survives pickling
    assert set(saved) == {"outer"} and saved["outer"]["v"].numel() == 5
    cont_a = [a(x) for x in xs[3:]]
    b = make()
    outer_b = b.outer
    b.load_state_dict(saved)
    assert b.outer is outer_b  # restored into the live rule, not replaced
    cont_b = [b(x) for x in xs[3:]]
    assert all(torch.equal(u, v) for u, v in zip(cont_a, cont_b))
    fresh = make()
    assert not torch.equal(fresh(xs[3]), cont_a[0])  # the state matters: the test can fail
    b.reset()
    assert b.outer.v is None and b.state_dict() == {"outer": {"v": None}}
    assert Hierarchical(group_size=3).state_dict() == {}


def _same_state(a, b):
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("kind", ["centered-clipping", "bygars", "hierarchical"])
def test_state_dict_is_a_detached_copy(kind):
    xs = _detox_inputs(1, 3)
    if kind == "hierarchical":
        agg, call = Hierarchical(group_size=3, outer="centered-clipping", s=2, tau=0.3), {}
    elif kind == "bygars":
        xs = [x[:5] for x in xs]
        agg, call = ByGARS(alpha=0.2), {"aux_gradient": torch.ones(5, dtype=torch.float64)}
    else:
        agg, call = CenteredClipping(f=1, tau=0.3), {}
    agg(xs[0], **call)
    sd = agg.state_dict()
    saved = pickle.loads(pickle.dumps(sd))
    agg(xs[1], **call)  # moving on must not change what was saved ...
    assert _same_state(sd, saved) and not _same_state(agg.state_dict(), saved)
    agg.load_state_dict(sd)

    def bump(state):
        for leaf in (state.get("outer", state)).values():
            if isinstance(leaf, torch.Tensor):
                leaf.add_(1.0)

    bump(sd)  # ... editing the loaded dict must not change the object ...
    assert _same_state(agg.state_dict(), saved)
    bump(agg.state_dict())  # ... nor editing a returned one
    assert _same_state(agg.state_dict(), saved)
