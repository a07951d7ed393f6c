"""GeoMed converges to its stated tolerance on the hard case ((n-1)/2 outliers), never silently at its cap."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from codedbft.aggregators.geomed import ConvergenceWarning, GeoMed

NU = 1e-6


def _draw(rng):
    """A small input with f = (n-1)/2 outliers of one of several kinds (scattered, clustered, huge)."""
    n = int(rng.choice([3, 5, 7, 9, 11, 13]))  # odd n: the minimiser is unique even when collinear
    f = (n - 1) // 2
    d = int(rng.choice([2, 3, 5, 10]))
    h = rng.standard_normal((n - f, d))
    kind = int(rng.integers(5))
    if kind == 0:
        o = 1e3 * rng.standard_normal((f, d))
    elif kind == 1:
        o = 10 * rng.standard_normal(d) + 0.1 * rng.standard_normal((f, d))
    elif kind == 2:
        o = 3 * rng.standard_normal((f, d)) + 2
    elif kind == 3:
        o = np.repeat(1e6 * rng.standard_normal((1, d)), f, axis=0)
    else:  # integer grid: ties, duplicates and medians sitting on an input
        h = rng.integers(-2, 3, size=(n - f, d)).astype(np.float64)
        o = rng.integers(-5, 6, size=(f, d)).astype(np.float64)
    return f, np.concatenate([h, o])


def _f(z, x):
    r = np.linalg.norm(z - x, axis=1)
    return np.where(r >= NU, r, r * r / (2 * NU) + NU / 2).sum()


def _grad(z, x):
    v = z - x
    return (v / np.maximum(np.linalg.norm(v, axis=1), NU)[:, None]).sum(0)


def _hess(z, x):
    v = z - x
    r = np.linalg.norm(v, axis=1)
    far = r >= NU
    d = x.shape[1]
    vf, rf = v[far], r[far]
    H = np.eye(d) * ((1 / rf).sum() + (~far).sum() / NU)
    return H - np.einsum("i,ij,ik->jk", 1 / rf**3, vf, vf)


def ref_minimiser(x):
    """The minimiser of the smoothed sum of distances (the objective GeoMed's iteration minimises),
    by scipy's trust-region Newton from the coordinate-wise median, then polished by plain Newton
    steps on the gradient (the objective itself cannot resolve the last digits when outliers are huge)."""
    res = minimize(_f, np.median(x, axis=0), args=(x,), jac=_grad, hess=_hess, method="trust-exact",
                   options=dict(gtol=1e-14, maxiter=2000))
    z = res.x
    best = (np.linalg.norm(_grad(z, x)), z)
    for _ in range(30):
        try:
            z = z - np.linalg.solve(_hess(z, x), _grad(z, x))
        except np.linalg.LinAlgError:
            break
        g = np.linalg.norm(_grad(z, x))
        if g >= best[0]:
            break
        best = (g, z)
    return best[1]


def test_hard_case_always_converges_to_the_reference_minimiser():
    rng = np.random.default_rng(2024)
    worst = 0.0
    for i in range(600):
        f, x = _draw(rng)
        agg = GeoMed(f=f)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            z = agg(torch.from_numpy(x)).numpy()
        assert bool(agg.last_info["converged"].all())
        assert int(agg.last_info["iterations"].max()) < agg.max_iter
        if i % 2:  # the scipy reference costs ~10x the rule: every 2nd draw (300) is checked against it
            continue
        zr = ref_minimiser(x)
        err = np.linalg.norm(z - zr) / (1e-8 * max(np.linalg.norm(zr), 1e-3))
        worst = max(worst, err)
        assert err <= 1.0, (x, z, zr)
    assert worst <= 1.0


def test_float32_converges_to_its_tolerance():
    rng = np.random.default_rng(5)
    for _ in range(150):
        f, x = _draw(rng)
        x32 = x.astype(np.float32)
        agg = GeoMed(f=f)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            z = agg(torch.from_numpy(x32)).numpy()
        assert z.dtype == np.float32 and bool(agg.last_info["converged"].all())
        zr = ref_minimiser(x32.astype(np.float64))
        assert np.linalg.norm(z - zr) <= 1e-5 * max(np.linalg.norm(zr), 1e-3) + 1e-6 * np.abs(x32).max()


def test_warning_and_info_when_the_cap_is_reached():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal((6, 4)), 1e3 * rng.standard_normal((5, 4))])
    agg = GeoMed(f=5, max_iter=1)
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        agg(torch.from_numpy(x))
    assert agg.last_info["iterations"].tolist() == [1]
    assert agg.last_info["converged"].tolist() == [False]
    agg = GeoMed(f=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        agg(torch.from_numpy(x))
    assert agg.last_info["converged"].tolist() == [True]
    assert agg.last_info["iterations"].dtype == torch.int64 and agg.last_info["converged"].dtype == torch.bool


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_batched_equals_per_item(dtype):
    rng = np.random.default_rng(11)
    items = []
    for _ in range(12):
        h = rng.standard_normal((5, 6))
        o = rng.choice([1e3, 10.0, 1.0]) * rng.standard_normal((4, 6)) + rng.standard_normal(6)
        items.append(np.concatenate([h, o]))
    x = torch.from_numpy(np.stack(items)).to(dtype).reshape(3, 4, 9, 6)
    agg = GeoMed(f=4)
    got = agg(x)
    iters = agg.last_info["iterations"].reshape(3, 4)
    assert got.shape == (3, 4, 6) and got.dtype == dtype
    for i in range(3):
        for j in range(4):
            one = GeoMed(f=4)
            torch.testing.assert_close(got[i, j], one(x[i, j]), rtol=1e-12 if dtype == torch.float64 else 1e-6,
                                       atol=1e-12 if dtype == torch.float64 else 1e-6)
            assert int(one.last_info["iterations"][0]) == int(iters[i, j])
