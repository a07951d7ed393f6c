"""Data encoding (Data, Song & Diggavi) and the L1 decoder: exact recovery, flagged sets, bounds."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from codedbft.decoders import L1Decoder
from codedbft.decoders.l1 import _lp_highs, cosine_locator, make_locator, null_space, vandermonde_locator
from codedbft.encoders import DataEncodingCode
from info_vocabulary import assert_common_info as check_info

REL = 1e-10  # "exact to float64 rounding"


def _problem(n, d, seed=0, o=None):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.standard_normal((n,) if o is None else (n, o))
    w = rng.standard_normal((d,) if o is None else (d, o))
    return X, y, w


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


def _corrupt(M, bad, rng, kind="gauss"):
    M = M.copy()
    if not len(bad):
        return M
    bad = list(bad)
    if kind == "gauss":
        M[bad] += rng.standard_normal(M[bad].shape) * rng.uniform(1e-3, 1e3)
    elif kind == "zeros":
        M[bad] = 0.0
    elif kind == "flip":
        M[bad] *= -1.0
    elif kind == "scale":
        M[bad] *= 10.0
    elif kind == "huge":
        M[bad] = 1e200
    elif kind == "tiny":  # a small but real perturbation: still located
        M[bad] += 1e-6 * np.abs(M).max() * rng.standard_normal(M[bad].shape)
    return M


def _step(code, blocks, w, bad1=(), bad2=(), rng=None, kind="gauss", batch=None, missing=None):
    """One full two-round step with Byzantine rows bad1 (round 1) and bad2 (round 2)."""
    rng = rng or np.random.default_rng(0)
    m = code.n
    M1 = np.stack([code.worker_residual(i, w, blocks[i], batch) for i in range(m)])
    r1 = code.decode_residual(_corrupt(M1, bad1, rng, kind), missing=missing)
    M2 = np.stack([code.worker_gradient(i, w, blocks[i], r1.gradient, batch) for i in range(m)])
    r2 = code.decode(_corrupt(M2, bad2, rng, kind), missing=missing)
    return r1, r2


# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m,t", [(7, 2), (9, 3)])
def test_every_placement_exact(m, t):
    X, y, w = _problem(37, 11, seed=m)
    ref = X.T @ (X @ w - y)
    code = DataEncodingCode(m, t)
    blocks = code.encode_data(X, y)
    rng = np.random.default_rng(1)
    methods = set()
    for q in range(t + 1):
        for bad in itertools.combinations(range(m), q):
            r1, r2 = _step(code, blocks, w, bad, bad, rng)
            assert r1.flagged == bad and r2.flagged == bad
            assert r1.exact and r2.exact
            assert _rel(r2.gradient, ref) < REL
            methods.add(r2.info["locator"])
    assert "l1" in methods  # and the fallbacks took the rest (L1 is weak at small m)


@pytest.mark.parametrize("m,t", [(7, 2), (9, 3)])
def test_one_round_gram_path_every_placement(m, t):
    """The contract's one-call form: worker_gradient(i, w, block) with no residual (the encoded Gram
    matrix) gives the same codeword as round 2, so decode recovers Xᵀ(Xw − y) under every placement."""
    X, y, w = _problem(41, 13, seed=10 + m)
    ref = X.T @ (X @ w - y)
    code = DataEncodingCode(m, t)
    blocks = code.encode_data(X, y)
    M = np.stack([code.worker_gradient(i, w, blocks[i]) for i in range(m)])
    # the same codeword as the paper's round 2 (cols_i r with the decoded residual r)
    r1 = code.decode_residual(np.stack([code.worker_residual(i, w, blocks[i]) for i in range(m)]))
    M2 = np.stack([code.worker_gradient(i, w, blocks[i], r1.gradient) for i in range(m)])
    np.testing.assert_allclose(M, M2, rtol=1e-10, atol=1e-10 * np.abs(M2).max())
    rng = np.random.default_rng(3)
    for q in range(t + 1):
        for bad in itertools.combinations(range(m), q):
            res = code.decode(_corrupt(M, bad, rng))
            assert res.flagged == bad and res.exact
            assert _rel(res.gradient, ref) < REL
    # torch in, torch out
    res_t = code.decode(torch.from_numpy(M))
    assert isinstance(res_t.gradient, torch.Tensor) and _rel(res_t.gradient.numpy(), ref) < REL
    # a mini-batch or a block without the Gram encoding needs the residual round: a clear error
    with pytest.raises(ValueError, match="two-round|residual"):
        code.worker_gradient(0, w, blocks[0], batch=[0])
    bare = code.encode_data(X, y, gram=False)
    assert bare[0].gram is None and blocks[0].gram_storage > 0
    with pytest.raises(ValueError, match="Gram"):
        code.worker_gradient(0, w, bare[0])


def test_random_placements_m30_attack_kinds():
    m, t = 30, 7
    X, y, w = _problem(300, 64, seed=3)
    ref = X.T @ (X @ w - y)
    code = DataEncodingCode(m, t)
    blocks = code.encode_data(X, y)
    rng = np.random.default_rng(2)
    for kind in ("gauss", "zeros", "flip", "scale", "huge", "tiny"):
        for _ in range(3):
            bad = tuple(sorted(rng.choice(m, t, replace=False).tolist()))
            r1, r2 = _step(code, blocks, w, bad, bad, rng, kind)
            assert r1.flagged == bad and r2.flagged == bad, kind
            assert r2.exact and _rel(r2.gradient, ref) < REL, kind
    # the worst-conditioned placement: t contiguous workers
    bad = tuple(range(t))
    _, r2 = _step(code, blocks, w, bad, bad, rng)
    assert r2.flagged == bad and _rel(r2.gradient, ref) < REL


def test_mini_batch_and_multi_output():
    m, t = 11, 3
    X, y, w = _problem(160, 9, seed=4, o=2)
    code = DataEncodingCode(m, t)
    blocks = code.encode_data(X, y)
    batch = [1, 4, 9]
    rows = code.slot_rows(batch)
    rows = rows[rows >= 0]
    assert len(rows) == code.k * len(batch)
    ref = X[rows].T @ (X[rows] @ w - y[rows])
    r1, r2 = _step(code, blocks, w, (0, 5), (2, 6, 10), batch=batch)
    assert r1.flagged == (0, 5)
    lay = code.slot_rows(batch)
    assert _rel(r1.gradient[lay >= 0], X[lay[lay >= 0]] @ w - y[lay[lay >= 0]]) < REL  # round 1: Xw − y
    assert r2.gradient.shape == (9, 2)
    assert r2.flagged == (2, 6, 10) and _rel(r2.gradient, ref) < REL
    # the slots of all batches partition the data rows
    all_rows = np.concatenate([code.slot_rows([q]) for q in range(-(-160 // code.k))])
    assert sorted(all_rows[all_rows >= 0].tolist()) == list(range(160))


def test_erasures_and_nonfinite():
    m, t = 11, 4  # distance 9: 2e + erasures <= 8
    X, y, w = _problem(50, 7, seed=5)
    ref = X.T @ (X @ w - y)
    code = DataEncodingCode(m, t)
    blocks = code.encode_data(X, y)
    rng = np.random.default_rng(6)
    for n_err, n_miss in [(0, 8), (1, 6), (2, 4), (3, 2), (4, 0)]:
        for _ in range(3):
            perm = rng.permutation(m)
            bad, miss = tuple(sorted(perm[:n_err].tolist())), perm[n_err:n_err + n_miss]
            missing = np.zeros(m, dtype=bool)
            missing[miss] = True
            r1, r2 = _step(code, blocks, w, bad, bad, rng, missing=missing)
            assert r2.exact and r2.flagged == bad and _rel(r2.gradient, ref) < REL
    # NaN and Inf rows are erasures, and flagged; together with one real error: 2*1 + 2 <= 8
    M1 = np.stack([code.worker_residual(i, w, blocks[i]) for i in range(m)])
    r1 = code.decode_residual(M1)
    M2 = np.stack([code.worker_gradient(i, w, blocks[i], r1.gradient) for i in range(m)])
    M2[3, 0] = np.nan
    M2[7] = np.inf
    M2[9] += 1.0
    M2[1] = 1e308  # finite but its projection overflows: treated like a non-finite row
    res = code.decode(M2, missing=[0])
    assert res.flagged == (1, 3, 7, 9) and res.exact
    assert np.isfinite(res.gradient).all() and _rel(res.gradient, ref) < REL


def test_beyond_capacity_is_not_exact_and_does_not_crash():
    m, t = 9, 2
    X, y, w = _problem(40, 6, seed=7)
    code = DataEncodingCode(m, t)
    blocks = code.encode_data(X, y)
    rng = np.random.default_rng(8)
    for _ in range(5):
        bad = tuple(sorted(rng.choice(m, t + 2, replace=False).tolist()))
        _, r2 = _step(code, blocks, w, (), bad, rng)
        assert not r2.exact
    M = np.full((m, 2), np.nan)  # round-2 width d_b = ceil(6 / 5)
    res = code.decode(M)
    assert not res.exact and res.flagged == tuple(range(m))


def test_collusion_against_a_public_projection():
    """Colluders who know F and the projections send E = c uᵀ with u ⊥ [α β]: invisible to a decoder
    whose projections are predictable, located by one that draws them privately after the replies."""
    m, t, p = 13, 3, 400
    loc = cosine_locator(m, t)
    rng = np.random.default_rng(9)
    public = L1Decoder(loc, rng=1234)
    Z = rng.standard_normal((public.K, p))
    R = public.G @ Z
    A = np.random.default_rng(1234).random((p, 2)) - 0.5  # what the attackers predict
    u = rng.standard_normal(p)
    u -= A @ np.linalg.lstsq(A, u, rcond=None)[0]
    bad = [2, 3, 4]
    Rb = R.copy()
    Rb[bad] += np.outer(rng.standard_normal(3), u) * 10
    fooled = public.decode(Rb)
    assert fooled.flagged == () and np.abs(fooled.gradient - Z).max() > 1e-3
    private = L1Decoder(loc)  # fresh OS entropy
    res = private.decode(Rb)
    assert res.flagged == tuple(bad) and res.exact and np.abs(res.gradient - Z).max() < 1e-10


def test_l1_failure_pattern_falls_back():
    """A rank-one error E = c uᵀ fixes the projected error pattern up to scale, whatever α is; colluders
    who know F pick a c on which L1 is not the sparsest solution. The fallback still decodes."""
    m, t = 9, 3
    dec = L1Decoder(cosine_locator(m, t))
    rng = np.random.default_rng(10)
    for _ in range(500):
        sup = rng.choice(m, t, replace=False)
        c = np.zeros(m)
        c[sup] = rng.standard_normal(t)
        x, _ = _lp_highs(dec.F, np.zeros((2 * t, 0)), dec.F @ c)
        if np.abs(x - c).max() > 1e-3 * np.abs(c).max():
            break
    else:
        pytest.fail("no L1 failure found at m=9, t=3")
    Z = rng.standard_normal((dec.K, 50))
    R = dec.G @ Z + np.outer(c, rng.standard_normal(50))
    res = dec.decode(R)
    assert res.flagged == tuple(sorted(sup.tolist())) and res.exact
    assert res.info["locator"] in ("exhaustive", "prony")
    assert np.abs(res.gradient - Z).max() < 1e-10


@pytest.mark.parametrize("m,t,locator", [(9, 3, "cosine"), (11, 4, "cosine"), (10, 2, "chebyshev")])
def test_l1_agrees_with_exhaustive(m, t, locator):
    dec = L1Decoder(make_locator(locator, m, t))
    rng = np.random.default_rng(11)
    agree = both = 0
    for _ in range(60):
        q = int(rng.integers(1, t + 1))
        e = np.zeros(m)
        e[rng.choice(m, q, replace=False)] = rng.standard_normal(q)
        y = dec.G @ rng.standard_normal(dec.K) + e
        a = dec.locate(y, methods=["l1"])
        b = dec.locate(y, methods=["exhaustive"])
        assert b.method == "exhaustive" and b.support == tuple(np.flatnonzero(e))
        if a.method == "l1":
            both += 1
            agree += a.support == b.support
            assert np.allclose(a.errors, b.errors, atol=1e-9 * np.abs(e).max())
    assert both > 0 and agree == both


def test_prony_locates_with_erasures():
    for loc in (cosine_locator(20, 5), vandermonde_locator(12, 3, "chebyshev")):
        dec = L1Decoder(loc)
        n = loc.F.shape[1]
        rng = np.random.default_rng(12)
        for n_miss in (0, 2):
            perm = rng.permutation(n)
            er = np.zeros(n, dtype=bool)
            er[perm[:n_miss]] = True
            q = (dec.t * 2 - n_miss) // 2
            e = np.zeros(n)
            e[perm[n_miss:n_miss + q]] = rng.standard_normal(q)
            y = dec.G @ rng.standard_normal(dec.K) + e
            y[er] = 1e3  # garbage in erased rows
            res = dec.locate(y, er, methods=["prony"])
            assert res.method == "prony" and res.support == tuple(sorted(perm[n_miss:n_miss + q].tolist()))


def test_locator_structure():
    m, t = 9, 3
    loc = cosine_locator(m, t)
    assert np.allclose(loc.F @ loc.F.T, np.eye(2 * t), atol=1e-13)  # orthonormal rows
    for cols in itertools.combinations(range(m), 2 * t):  # spark 2t + 1: t errors are identifiable
        assert np.linalg.matrix_rank(loc.F[:, cols]) == 2 * t
    # the power-sum map: T F e = [Σ c_j e_j z_j^p]_p with c_j = exp(-i (t - 1/2) θ_j)
    e = np.random.default_rng(13).standard_normal(m)
    theta = 2 * np.pi * np.arange(m) / m
    c = np.exp(-1j * (t - 0.5) * theta)
    want = np.array([np.sum(c * e * loc.nodes**p) for p in range(2 * t)])
    assert np.allclose(loc.power_map @ loc.F @ e, want, atol=1e-12)
    G = null_space(loc.F)
    assert G.shape == (m, m - 2 * t) and np.allclose(G.T @ G, np.eye(m - 2 * t)) and np.abs(loc.F @ G).max() < 1e-13


def test_redundancy_formula():
    for m, t in [(7, 2), (9, 3), (10, 1), (30, 7), (5, 0)]:
        code = DataEncodingCode(m, t)
        K = m - 2 * t
        assert code.redundancy == pytest.approx(2 * m / (m - 2 * t))
        X, y, _ = _problem(3 * K, 2 * K, seed=m)
        blocks = code.encode_data(X, y)
        assert code.storage_redundancy(blocks) == pytest.approx(2 * m / (m - 2 * t))
        assert code.n == m and code.s == t and code.k == K and len(code.assignment) == m


def test_generic_l1_decoder_reuse_for_a_gradient_code():
    """L1Decoder on its own: a real code B (n, k) with F B = 0; out = ones gives Σ_j g_j."""
    n, t, d = 12, 3, 500
    loc = cosine_locator(n, t)
    B = null_space(loc.F) @ np.random.default_rng(14).standard_normal((n - 2 * t, n - 2 * t))
    dec = L1Decoder(loc, G=B, out=np.ones(n - 2 * t))
    Gp = np.random.default_rng(15).standard_normal((n - 2 * t, d))
    M = B @ Gp
    M[[1, 8, 11]] += 5.0
    res = dec.decode(M)
    assert res.flagged == (1, 8, 11) and res.exact
    assert _rel(res.gradient, Gp.sum(0)) < REL
    # torch in, torch out; float32 messages are decoded in float64
    res_t = dec.decode(torch.from_numpy(M.astype(np.float32)))
    assert isinstance(res_t.gradient, torch.Tensor) and res_t.gradient.dtype == torch.float64
    assert res_t.flagged == (1, 8, 11) and _rel(res_t.gradient.numpy(), Gp.sum(0)) < 1e-6


def test_cvxpy_solver_matches_highs():
    m, t = 13, 3
    X, y, w = _problem(40, 5, seed=16)
    ref = X.T @ (X @ w - y)
    for solver in ("highs", "cvxpy"):
        code = DataEncodingCode(m, t, solver=solver)
        blocks = code.encode_data(X, y)
        _, r2 = _step(code, blocks, w, (4,), (0, 6, 12))
        assert r2.flagged == (0, 6, 12) and _rel(r2.gradient, ref) < REL
        assert solver.split("/")[0] in (r2.info["lp_status"] or "").lower() or r2.info["locator"] != "l1"


def test_config_errors():
    with pytest.raises(ValueError, match=r"floor\(\(m-1\)/2\)"):
        DataEncodingCode(8, 4)
    with pytest.raises(ValueError, match="t <= floor"):
        DataEncodingCode(5, -1)
    with pytest.raises(ValueError, match="least_squares"):
        DataEncodingCode(7, 2, loss="cross_entropy")
    with pytest.raises(ValueError, match="locator"):
        DataEncodingCode(7, 2, locator="random")
    code = DataEncodingCode(7, 2)
    with pytest.raises(NotImplementedError, match="encode_data"):
        code.encode(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="encode_data"):
        code.decode(np.zeros((7, 4)))
    X, y, w = _problem(10, 3)
    blocks = code.encode_data(X, y, gram=False)
    with pytest.raises(ValueError, match="residual"):
        code.worker_gradient(0, w, blocks[0])
    with pytest.raises(ValueError, match="shape"):
        code.worker_residual(0, np.zeros(4), blocks[0])
    with pytest.raises(ValueError, match="n >= 2t\\+1"):
        cosine_locator(6, 3)
    with pytest.raises(ValueError, match="solver"):
        L1Decoder(cosine_locator(7, 2), solver="glpk")
    with pytest.raises(ValueError, match="F @ G"):
        L1Decoder(cosine_locator(7, 2), G=np.ones((7, 3)))
    assert math.isclose(code.redundancy, 14 / 3)


# ---------------------------------------------------------------------------------------------------
# Diagnostics vocabulary (codedbft.decoders.base) and the Code protocol
# ---------------------------------------------------------------------------------------------------
STAGES = {"project_ms", "locate_ms", "solve_ms"}


def assert_common_info(res) -> None:
    check_info(res, STAGES)


def test_info_vocabulary_both_rounds_and_beyond_capacity():
    m, t = 9, 2
    X, y, w = _problem(40, 6, seed=7)
    code = DataEncodingCode(m, t, rng=3)
    blocks = code.encode_data(X, y)
    r1, r2 = _step(code, blocks, w)
    for rnd, res in ((1, r1), (2, r2)):
        assert_common_info(res)
        assert res.exact and res.info["round"] == rnd and res.info["erasures"] == res.info["nonfinite"] == 0
    r1, r2 = _step(code, blocks, w, (), (1, 4, 6, 8), np.random.default_rng(8))  # t + 2 liars
    assert_common_info(r2)
    assert not r2.exact
    M = np.stack([code.worker_gradient(i, w, blocks[i], r1.gradient) for i in range(m)])
    M[2] = np.nan
    res = code.decode(M, missing=[0])
    assert_common_info(res)
    assert res.exact and res.info["erasures"] == 2 and res.info["nonfinite"] == 1 and res.info["missing"] == 1
    assert res.info["erasure_ids"] == (0, 2) and res.info["nonfinite_ids"] == (2,)
    res = code.decode(M, missing=[0, 1, 3, 4])  # with the NaN row: 4 usable rows < K = 5
    assert_common_info(res)
    assert not res.exact and "usable rows" in res.info["reason"]


def test_l1_decoder_info_clean_and_beyond_capacity():
    dec = L1Decoder(cosine_locator(11, 3), rng=0)
    rng = np.random.default_rng(1)
    R = dec.G @ rng.standard_normal((dec.K, 20))
    res = dec.decode(R)
    assert_common_info(res)
    assert res.exact and res.info["locator"] == "clean"
    R[[1, 5]] += rng.standard_normal((2, 20))
    res = dec.decode(R, missing=[8, 9, 10])  # 2e + m = 7 > 2t = 6
    assert_common_info(res)
    assert not res.exact


def test_data_encoding_code_announces_its_optional_pieces():
    code = DataEncodingCode(7, 2)
    assert not code.linear and code.B is None
    assert not code.encodes_gradients and not code.has_distortion
    with pytest.raises(NotImplementedError):
        code.encode(np.zeros((code.k, 4)))
    with pytest.raises(NotImplementedError):
        code.max_distortion(1)
    for flag in ("linear", "has_distortion", "encodes_gradients"):
        with pytest.raises(AttributeError):
            setattr(code, flag, True)
