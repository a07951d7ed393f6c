"""Neighbourhood rules (codedbft.decentralized.rules) against per-node float64 loop references
written from docs/decentralized_rules.md, on small random graphs with ties, masks and bad rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from codedbft.aggregators import _kernels
from codedbft.decentralized import RULES, NeighbourhoodRule, build_rule, n_hat

NAMES = ("average", "ubar", "dmedian", "bridge", "dkrum", "dbulyan")
NAN, INF = float("nan"), float("inf")


@pytest.fixture(params=["auto", "torch"])
def backend(request):
    """Every rule runs on the numba CPU kernels ("auto") and on the plain torch path."""
    old = _kernels.get_backend()
    _kernels.set_backend(request.param)
    yield request.param
    _kernels.set_backend(old)


# -- loop references (numpy float64, one node at a time) -------------------------------------------
def ref_nhat(v, rho, rc):
    return math.ceil(round(v * min(1 - rho, rc), 9))


def ref_median(cols):
    s = np.sort(cols, axis=0)
    n = s.shape[0]
    return s[n // 2] if n % 2 else 0.5 * s[n // 2 - 1] + 0.5 * s[n // 2]


def ref_stage1(o, X, rho):
    v = len(X)
    if v == 0:
        return []
    k = math.ceil(round(rho * v, 9))
    dist = [float(np.sum((x - o) ** 2)) for x in X]
    return sorted(range(v), key=lambda t: (dist[t], t))[:k]


def ref_ubar(o, X, L, ol, rho=0.4, fallback="own"):
    S = ref_stage1(o, X, rho)
    if not S:
        return o
    ol = INF if math.isnan(ol) else ol
    kept = [t for t in S if not math.isnan(L[t]) and L[t] <= ol]
    if kept:
        return X[kept].mean(axis=0) if len(kept) > 1 else X[kept[0]].copy()
    if fallback == "best":
        cand = [t for t in S if not math.isnan(L[t])]
        if cand:
            return X[min(cand, key=lambda t: (L[t], t))]
    return o


def ref_krum_pick(X, idxs, nh):
    m = len(idxs)
    k = min(max(m - nh - 2, 1), m - 1)
    scores = []
    for a in idxs:
        ds = sorted(float(np.sum((X[a] - X[c]) ** 2)) for c in idxs if c != a)
        scores.append(sum(ds[:k]))
    return idxs[int(np.argmin(scores))]


def ref_rule(name, o, X, L, ol, **p):
    """R for one node: own ``o`` (d,), valid received rows ``X`` (v, d) in slot order."""
    v = len(X)
    if name == "ubar":
        return ref_ubar(o, X, L, ol, **p)
    if v == 0:
        return o
    if name == "average":
        return (o + X.sum(axis=0)) / (v + 1)
    if name == "dmedian":
        return ref_median(np.vstack([o, X]))
    rho = p.get("rho", 0.4)
    rc = p.get("rho_central", {"bridge": 0.5, "dkrum": 0.5, "dbulyan": 0.125}[name])
    nh = ref_nhat(v, rho, rc)
    if name == "bridge":
        b = min(nh, (v - 1) // 2)
        s = np.sort(X, axis=0)
        return (o + s[b:v - b].sum(axis=0)) / (v - 2 * b + 1)
    if name == "dkrum":
        return X[ref_krum_pick(X, list(range(v)), nh)]
    if name == "dbulyan":
        theta, beta = v - 2 * nh, v - 4 * nh
        if beta < 1:
            return ref_median(np.vstack([o, X]))
        rest, chosen = list(range(v)), []
        for _ in range(theta):
            w = ref_krum_pick(X, rest, nh)
            rest.remove(w)
            chosen.append(w)
        S = X[sorted(chosen)]
        out = np.empty(X.shape[1])
        for c in range(X.shape[1]):
            col = S[:, c]
            med = ref_median(col)
            order = sorted(range(theta), key=lambda t: (abs(col[t] - med), t))
            out[c] = col[order[:beta]].sum() / beta
        return out
    raise AssertionError(name)


def reference(name, own, rec, mask, losses=None, own_loss=None, **p):
    own, rec = own.double().numpy(), rec.double().numpy()
    mask = mask.numpy()
    out = np.empty_like(own)
    for i in range(own.shape[0]):
        slots = [j for j in range(rec.shape[1]) if mask[i, j] and np.isfinite(rec[i, j]).all()]
        X = rec[i, slots].reshape(len(slots), own.shape[1])
        L = None if losses is None else np.asarray(losses[i].double())[slots]
        ol = None if own_loss is None else float(own_loss[i])
        out[i] = ref_rule(name, own[i], X, L, ol, **p)
    return out


# -- random graphs ---------------------------------------------------------------------------------
def make_case(seed, N=10, M=7, d=6, p=0.65, dtype=torch.float64):
    """Random neighbourhoods: node 0 isolated, node 1 full, duplicated rows, NaN/Inf rows (in and out
    of the mask), garbage in masked slots, one loss equal to the own loss."""
    g = torch.Generator().manual_seed(seed)
    own = torch.randn(N, d, generator=g, dtype=torch.float64)
    rec = own.unsqueeze(1) + torch.randn(N, M, d, generator=g, dtype=torch.float64) * (
        0.3 + 2 * torch.rand(N, M, 1, generator=g, dtype=torch.float64))
    mask = torch.rand(N, M, generator=g) < p
    mask[0] = False
    mask[1] = True
    mask[2, :5] = True
    rec[2, 3] = rec[2, 1]  # duplicated rows: Krum and UBAR ties
    rec[2, 4] = rec[2, 1]
    mask[3, :6] = True
    rec[3, 5] = rec[3, 0]
    rec[4, 1, 2] = NAN  # non-finite rows inside the mask
    rec[5, 2, 0] = INF
    mask[4, 1] = mask[5, 2] = True
    garbage = ~mask & (torch.rand(N, M, generator=g) < 0.5)
    rec[garbage] = torch.tensor([NAN, INF, 1e300, -INF, 7.0, NAN], dtype=torch.float64)[: d]
    losses = torch.rand(N, M, generator=g, dtype=torch.float64)
    own_loss = 0.2 + 0.6 * torch.rand(N, generator=g, dtype=torch.float64)
    losses[1, 2] = own_loss[1]  # exactly equal: kept
    losses[~mask] = NAN
    nonfinite = int((mask & ~torch.isfinite(rec).all(dim=2)).sum())
    return own.to(dtype), rec.to(dtype), mask, losses, own_loss, nonfinite


PARAMS = [
    ("average", {}), ("dmedian", {}),
    ("ubar", {}), ("ubar", {"rho": 0.7}), ("ubar", {"rho": 1.0}), ("ubar", {"rho": 0.4, "fallback": "best"}),
    ("bridge", {}), ("bridge", {"rho_central": 0.2}), ("bridge", {"rho": 0.9, "rho_central": 0.5}),
    ("dkrum", {}), ("dkrum", {"rho_central": 0.1}), ("dkrum", {"rho": 1.0, "rho_central": 0.5}),
    ("dbulyan", {}), ("dbulyan", {"rho_central": 0.05}), ("dbulyan", {"rho_central": 0.25}),
]


@pytest.mark.parametrize("name,params", PARAMS, ids=[f"{n}-{p}" for n, p in PARAMS])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rule_matches_loop_reference(name, params, seed, backend):
    M = 12 if seed == 2 else 7
    own, rec, mask, losses, own_loss, nonfinite = make_case(seed, M=M)
    rule = build_rule(name, **params)
    out = rule(own, rec, mask, losses=losses, own_loss=own_loss)
    ref = reference(name, own, rec, mask, losses, own_loss, **params)
    assert out.dtype == torch.float64 and out.shape == own.shape
    if name == "dkrum":  # a selection: the very row
        assert torch.equal(out, torch.from_numpy(ref))
    else:
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-12)
    info = rule.last_info
    assert info["nonfinite"] == nonfinite and type(info["nonfinite"]) is int
    assert info["isolated"] == int((info["degree"] == 0).sum()) >= 1
    assert type(info["aggregate_ms"]) is float and info["aggregate_ms"] >= 0
    assert torch.equal(out[0], own[0])  # node 0 has no neighbour


@pytest.mark.parametrize("layout", ["complete", "padded", "mixed"])
@pytest.mark.parametrize("name", NAMES)
def test_graph_layouts_match_reference(name, layout, backend):
    """Every slot valid (a complete graph), valid slots first (padded neighbour lists), and a mix of
    full and partial rows: the kernels' no-copy and prefix paths give the reference too."""
    g = torch.Generator().manual_seed(21)
    N, M, d = 7, 9, 4
    own = torch.randn(N, d, generator=g, dtype=torch.float64)
    rec = own.unsqueeze(1) + torch.randn(N, M, d, generator=g, dtype=torch.float64)
    rec[:, 4] = rec[:, 2]  # ties
    deg = {"complete": [M] * N, "padded": [9, 8, 5, 5, 6, 1, 2], "mixed": [9, 9, 9, 3, 9, 7, 9]}[layout]
    mask = torch.arange(M).unsqueeze(0) < torch.tensor(deg).unsqueeze(1)
    losses = torch.rand(N, M, generator=g, dtype=torch.float64)
    own_loss = torch.rand(N, generator=g, dtype=torch.float64)
    for params in ({}, {"rho_central": 0.1}) if name in ("bridge", "dkrum", "dbulyan") else ({},):
        out = build_rule(name, **params)(own, rec, mask, losses, own_loss)
        ref = reference(name, own, rec, mask, losses, own_loss, **params)
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_float32_keeps_dtype_and_matches(name, backend):
    own, rec, mask, losses, own_loss, _ = make_case(5, dtype=torch.float32)
    rule = build_rule(name)
    out = rule(own, rec, mask, losses, own_loss)
    assert out.dtype == torch.float32
    ref = reference(name, own, rec, mask, losses, own_loss)
    np.testing.assert_allclose(out.numpy(), ref, rtol=2e-6, atol=2e-6)
    # received in float64 with own in float32: the output takes own's dtype
    out2 = rule(own, rec.double(), mask, losses, own_loss)
    assert out2.dtype == torch.float32
    np.testing.assert_allclose(out2.numpy(), ref, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("name", NAMES)
def test_no_valid_neighbour_gives_own(name, backend):
    own, rec, mask, losses, own_loss, _ = make_case(3)
    rule = build_rule(name)
    none = torch.zeros_like(mask)
    assert torch.equal(rule(own, rec, none, losses, own_loss), own)
    assert rule.last_info["isolated"] == own.shape[0]
    # every masked-in row non-finite: missing too
    bad = rec.clone()
    bad[:, :, 0] = NAN
    assert torch.equal(rule(own, bad, mask, losses, own_loss), own)
    assert rule.last_info["nonfinite"] == int(mask.sum())
    # no slots at all
    empty = rec[:, :0]
    out = rule(own, empty, mask[:, :0], losses[:, :0], own_loss)
    assert torch.equal(out, own)
    assert rule.select(own, empty, mask[:, :0]).shape == (own.shape[0], 0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", NAMES)
def test_masked_slots_and_unselected_losses_never_matter(name, dtype, backend):
    own, rec, mask, losses, own_loss, _ = make_case(4, dtype=dtype)
    rule = build_rule(name)
    out = rule(own, rec, mask, losses, own_loss)
    sel = rule.select(own, rec, mask)
    rec2, losses2 = rec.clone(), losses.clone()
    big = torch.finfo(dtype).max
    rec2[~mask] = torch.tensor([big, -INF, NAN, 0.0, -big, 3.0], dtype=torch.float64).to(dtype)
    assert torch.equal(rule(own, rec2, mask, losses2, own_loss), out)
    rec2[~mask] = torch.tensor([big, -big, big, -big, big, 3.0], dtype=torch.float64).to(dtype)  # finite garbage
    losses2[~sel] = -INF  # would be "best" everywhere if it were read
    assert torch.equal(rule(own, rec2, mask, losses2, own_loss), out)


@pytest.mark.parametrize("name", NAMES)
def test_batched_equals_one_node_at_a_time(name, backend):
    own, rec, mask, losses, own_loss, _ = make_case(6, N=9, M=12)
    rule = build_rule(name, **({"rho_central": 0.05} if name == "dbulyan" else {}))
    out = rule(own, rec, mask, losses, own_loss)
    sel = rule.select(own, rec, mask)
    for i in range(own.shape[0]):
        s = slice(i, i + 1)
        assert torch.equal(rule(own[s], rec[s], mask[s], losses[s], own_loss[s]), out[s]), i
        assert torch.equal(rule.select(own[s], rec[s], mask[s]), sel[s])


# -- UBAR ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rho", [0.1, 0.4, 0.5, 0.75, 1.0])
def test_ubar_stage1_matches_reference(rho, backend):
    for seed in range(4):
        own, rec, mask, _, _, _ = make_case(seed, M=12)
        sel = build_rule("ubar", rho=rho).select(own, rec, mask)
        o, R, m = own.numpy(), rec.numpy(), mask.numpy()
        for i in range(own.shape[0]):
            slots = [j for j in range(R.shape[1]) if m[i, j] and np.isfinite(R[i, j]).all()]
            S = {slots[t] for t in ref_stage1(o[i], R[i, slots], rho)}
            assert set(sel[i].nonzero().flatten().tolist()) == S, (seed, i)
            assert len(S) == (math.ceil(round(rho * len(slots), 9)) if slots else 0)


def test_ubar_stage1_ties_go_to_lower_slot():
    own = torch.zeros(1, 3, dtype=torch.float64)
    # four neighbours at exactly the same distance 1, one farther, one missing
    rec = torch.tensor([[[9.0, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, -1], [-1, 0, 0], [0, 0, 1]]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True, False, True, True]])
    rule = build_rule("ubar", rho=0.4)  # |N| = 5: ceil(2) = 2 of the four at distance 1
    assert rule.select(own, rec, mask)[0].tolist() == [False, True, True, False, False, False]
    rule = build_rule("ubar", rho=0.6)  # ceil(3): slots 1, 2 and 4 (the first three at distance 1)
    assert rule.select(own, rec, mask)[0].tolist() == [False, True, True, False, True, False]
    # 0.28 * 25 is 7.000000000000001 in floats: the stage-1 size must still be 7
    g = torch.Generator().manual_seed(0)
    big = torch.randn(2, 25, 3, generator=g, dtype=torch.float64)
    sel = build_rule("ubar", rho=0.28).select(torch.zeros(2, 3, dtype=torch.float64), big,
                                              torch.ones(2, 25, dtype=torch.bool))
    assert sel.sum(dim=1).tolist() == [7, 7]


def test_ubar_stage2_rules():
    own = torch.zeros(1, 2, dtype=torch.float64)
    rec = torch.tensor([[[1.0, 0], [0, 2], [3, 0], [0, 40]]], dtype=torch.float64)
    mask = torch.ones(1, 4, dtype=torch.bool)
    rule = build_rule("ubar", rho=0.75)  # stage 1: slots 0, 1, 2
    ol = torch.tensor([0.5], dtype=torch.float64)
    # nobody better than self -> own
    R = rule(own, rec, mask, torch.tensor([[0.6, 0.7, 0.9, 0.0]], dtype=torch.float64), ol)
    assert torch.equal(R, own) and rule.last_info["fallback"] == 1 and int(rule.last_info["kept"][0]) == 0
    # slot 3 (not in stage 1) has the best loss but is never evaluated
    assert rule.last_info["selected_mask"][0].tolist() == [True, True, True, False]
    # equal loss counts as kept (<=); NaN loss never kept
    R = rule(own, rec, mask, torch.tensor([[0.5, NAN, 0.4, 0.0]], dtype=torch.float64), ol)
    assert torch.equal(R, torch.tensor([[2.0, 0.0]], dtype=torch.float64))
    assert rule.last_info["kept_mask"][0].tolist() == [True, False, True, False]
    # NaN own loss counts as +inf: every non-NaN stage-1 neighbour is kept
    R = rule(own, rec, mask, torch.tensor([[0.5, NAN, 0.4, 0.0]], dtype=torch.float64), torch.tensor([NAN]))
    assert torch.equal(R, torch.tensor([[2.0, 0.0]], dtype=torch.float64))
    # fallback="best" is Eq. 12 literally: the stage-1 estimate of least loss
    best = build_rule("ubar", rho=0.75, fallback="best")
    R = best(own, rec, mask, torch.tensor([[0.9, 0.6, 0.7, 0.0]], dtype=torch.float64), ol)
    assert torch.equal(R, rec[:, 1])
    R = best(own, rec, mask, torch.tensor([[NAN, NAN, NAN, 0.0]], dtype=torch.float64), ol)
    assert torch.equal(R, own)


def test_ubar_needs_losses():
    own, rec, mask, losses, own_loss, _ = make_case(0)
    rule = build_rule("ubar")
    assert rule.needs_losses and not build_rule("average").needs_losses
    with pytest.raises(ValueError, match="losses"):
        rule(own, rec, mask)
    with pytest.raises(ValueError, match="losses"):
        rule(own, rec, mask, losses[:, :3], own_loss)
    with pytest.raises(ValueError, match="own_loss"):
        rule(own, rec, mask, losses, own_loss[:3])
    # the rules without losses ignore them, and select() is the valid mask
    avg = build_rule("average")
    assert torch.equal(avg(own, rec, mask), avg(own, rec, mask, losses, own_loss))
    valid = mask & torch.isfinite(rec).all(dim=2)
    assert torch.equal(avg.select(own, rec, mask), valid)


def test_theorem1_average_moved_exactly_ubar_stays_in_benign_hull(backend):
    g = torch.Generator().manual_seed(11)
    d, m = 5, 8  # node 0 with m neighbours, the last one Byzantine
    own = torch.randn(1, d, generator=g, dtype=torch.float64)
    benign = own.unsqueeze(1) + torch.randn(1, m - 1, d, generator=g, dtype=torch.float64)
    honest = own + 0.05 * torch.randn(1, d, generator=g, dtype=torch.float64)  # what the Byzantine should send
    x_hat = 0.01 * torch.randn(1, d, generator=g, dtype=torch.float64)
    forged = honest + x_hat * (m + 1)  # Eq. 4 with tau' = 1
    mask = torch.ones(1, m, dtype=torch.bool)
    rec_h = torch.cat([benign, honest.unsqueeze(1)], dim=1)
    rec_b = torch.cat([benign, forged.unsqueeze(1)], dim=1)
    avg = build_rule("average")
    np.testing.assert_allclose((avg(own, rec_b, mask) - avg(own, rec_h, mask)).numpy(), x_hat.numpy(),
                               rtol=0, atol=1e-13)
    ubar = build_rule("ubar")
    assert bool(ubar.select(own, rec_b, mask)[0, m - 1])  # the forged estimate passes stage 1 (it is close)
    own_loss = torch.tensor([1.0], dtype=torch.float64)
    hull = torch.cat([own.unsqueeze(1), benign], dim=1)[0]
    for benign_losses in (torch.rand(m - 1, generator=g, dtype=torch.float64) * 2, torch.full((m - 1,), 3.0)):
        losses = torch.cat([benign_losses, torch.tensor([1.5])]).unsqueeze(0)  # Byzantine loss worse than own
        R = ubar(own, rec_b, mask, losses, own_loss)
        kept = ubar.last_info["kept_mask"][0]
        assert not bool(kept[m - 1])
        assert bool((R[0] >= hull.min(dim=0).values - 1e-12).all() and (R[0] <= hull.max(dim=0).values + 1e-12).all())
        expect = rec_b[0, kept].mean(dim=0) if bool(kept.any()) else own[0]
        np.testing.assert_allclose(R[0].numpy(), expect.numpy(), rtol=1e-12, atol=1e-12)


# -- sizing, registry, errors -----------------------------------------------------------------------
def test_n_hat_values():
    assert n_hat(12, 0.4, 0.5) == 6
    assert n_hat(5, 0.4, 1.0) == 3
    assert n_hat(10, 0.7, 0.5) == 3  # (1 - 0.7) * 10 is 3.0000000000000004 in floats
    assert n_hat(torch.tensor([10]), 0.7, 0.5).tolist() == [3]
    assert n_hat(10, 0.4, 0.125) == 2 and n_hat(8, 0.4, 0.125) == 1 and n_hat(12, 0.4, 0.125) == 2
    assert n_hat(0, 0.4, 0.5) == 0 and n_hat(7, 1.0, 0.5) == 0 and n_hat(7, 0.4, 0.0) == 0
    assert n_hat(3, 0.9, 0.5) == 1  # ceil(0.3000000000000001): 1
    assert type(n_hat(12, 0.4, 0.5)) is int
    deg = torch.arange(0, 61)
    for rho, rc in [(0.4, 0.5), (0.4, 0.125), (0.7, 0.5), (0.1, 0.25), (1.0, 0.3)]:
        t = n_hat(deg, rho, rc)
        assert t.dtype == torch.int64 and t.tolist() == [n_hat(int(v), rho, rc) for v in deg]
        assert t.tolist() == [ref_nhat(int(v), rho, rc) for v in deg]
    for bad in [(-1, 0.4, 0.5), (2.0, 0.4, 0.5), (True, 0.4, 0.5), (5, 0.0, 0.5), (5, 1.5, 0.5), (5, 0.4, -0.1),
                (5, 0.4, 1.5), (5, float("nan"), 0.5)]:
        with pytest.raises(ValueError):
            n_hat(*bad)
    with pytest.raises(ValueError):
        n_hat(torch.tensor([1.0]), 0.4, 0.5)


def test_registry_and_errors():
    assert set(RULES) == set(NAMES)
    for name in NAMES:
        rule = build_rule(name)
        assert isinstance(rule, NeighbourhoodRule) and rule.name == name and rule.needs_losses == (name == "ubar")
        assert name in repr(rule).lower() or type(rule).__name__ in repr(rule)
    assert isinstance(build_rule(" DKrum "), RULES.get("dkrum"))
    with pytest.raises(ValueError, match="unknown neighbourhood rule 'krum2'.*average"):
        build_rule("krum2")
    with pytest.raises(ValueError, match=r"unknown neighbourhood rule parameter \['f'\].*rho"):
        build_rule("dkrum", f=2)
    with pytest.raises(ValueError, match="valid: none"):
        build_rule("average", rho=0.4)
    for name in ("ubar", "bridge", "dkrum", "dbulyan"):
        for rho in (0, 0.0, -0.2, 1.01, float("nan"), True, "0.4"):
            with pytest.raises(ValueError, match="rho"):
                build_rule(name, rho=rho)
        assert build_rule(name, rho=1.0).rho == 1.0
    with pytest.raises(ValueError, match="rho_central"):
        build_rule("bridge", rho_central=1.2)
    with pytest.raises(ValueError, match="fallback"):
        build_rule("ubar", fallback="mean")


def test_input_errors():
    own, rec, mask, losses, own_loss, _ = make_case(0)
    rule = build_rule("dmedian")
    with pytest.raises(TypeError):
        rule(own.numpy(), rec, mask)
    with pytest.raises(ValueError, match="received"):
        rule(own, rec[:, :, :3], mask)
    with pytest.raises(ValueError, match="received"):
        rule(own, rec[0], mask)
    with pytest.raises(ValueError, match="mask"):
        rule(own, rec, mask[:, :3])
    with pytest.raises(ValueError, match="bool"):
        rule(own, rec, mask.int())
    with pytest.raises(ValueError, match="floating"):
        rule(own.long(), rec, mask)


def test_dbulyan_fallback_is_dmedian_and_counted(backend):
    own, rec, mask, losses, own_loss, _ = make_case(7, M=7)
    bul, med = build_rule("dbulyan"), build_rule("dmedian")
    out = bul(own, rec, mask)
    info = bul.last_info
    fb = info["fallback_nodes"]
    expect_fb = (info["degree"] > 0) & (info["degree"] - 4 * n_hat(info["degree"], 0.4, 0.125) < 1)
    assert torch.equal(fb, expect_fb) and info["fallback"] == int(fb.sum()) >= 1
    assert bool((~fb & (info["degree"] > 0)).any())  # and some nodes run the real Bulyan
    assert torch.equal(out[fb], med(own, rec, mask)[fb])
    # rho_central=0.25 (Bulyan's own ratio) leaves no room: every node falls back
    b25 = build_rule("dbulyan", rho_central=0.25)
    assert torch.equal(b25(own, rec, mask), med(own, rec, mask))
    assert b25.last_info["fallback"] == int((b25.last_info["degree"] > 0).sum())
    # picks: theta per node, -1 padded
    sel = info["selected"]
    for i in range(own.shape[0]):
        assert int((sel[i] >= 0).sum()) == (int(info["theta"][i]) if not bool(fb[i]) and int(info["degree"][i]) else 0)


def test_adversarial_magnitudes_never_crash(backend):
    own, rec, mask, losses, own_loss, _ = make_case(8, M=9, dtype=torch.float32)
    rec[:, 0] = 3e38
    rec[:, 1] = -3e38
    mask[:, :2] = True
    for name in NAMES:
        rule = build_rule(name)
        out = rule(own, rec, mask, losses, own_loss)
        assert out.shape == own.shape and out.dtype == torch.float32
        if name in ("ubar", "dmedian", "dbulyan"):
            assert bool(torch.isfinite(out).all()), name
    r64 = rec.double()
    r64[:, 0] = 1e308
    r64[:, 1] = -1e308
    for name in NAMES:
        build_rule(name)(own.double(), r64, mask, losses, own_loss)
