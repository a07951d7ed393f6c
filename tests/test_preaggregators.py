"""Pre-aggregators (nnm, bucketing, clipping, arc), build_pre and Pipeline against float64 loop references."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from codedbft.aggregators import AGGREGATORS, Aggregator, CenteredClipping, Krum, by_name
from codedbft.aggregators.pre import (
    ARC, NNM, PRE_AGGREGATORS, Bucketing, Clipping, Pipeline, PreAggregator, arc_k, build_pre, parse_spec,
)


# -- float64 per-row loop references -------------------------------------------------------------
def ref_nnm(x: np.ndarray, f: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    out = np.empty_like(x)
    for i in range(n):
        d = [float(np.sum((x[i] - x[j]) ** 2)) for j in range(n)]
        order = sorted(range(n), key=lambda j: (d[j], j))[: n - f]
        out[i] = sum(x[j] for j in order) / (n - f)
    return out


def ref_bucketing(x: np.ndarray, s: int, perm: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    rows = []
    for start in range(0, len(x), s):
        members = perm[start:start + s]
        rows.append(sum(x[j] for j in members) / len(members))
    return np.stack(rows)


def _clip_row(v: np.ndarray, c: float) -> np.ndarray:
    norm = math.sqrt(float(np.sum(v * v)))
    return v * (c / norm) if norm > c else v.copy()


def ref_clipping(x: np.ndarray, c: float) -> np.ndarray:
    return np.stack([_clip_row(v, c) for v in np.asarray(x, dtype=np.float64)])


def ref_arc(x: np.ndarray, f: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    k = int(math.floor(2 * (f / n) * (n - f)))
    if k == 0:
        return x.copy()
    norms = [math.sqrt(float(np.sum(v * v))) for v in x]
    order = sorted(range(n), key=lambda i: (-norms[i], i))
    tau = norms[order[k]]
    out = x.copy()
    for i in order[:k]:
        out[i] = _clip_row(x[i], tau)
    return out


def tied_inputs(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """Small integers (exact distances and norms), duplicated rows and a mirrored row: many ties."""
    x = rng.integers(-3, 4, size=(n, d)).astype(np.float64)
    x[1] = x[0]
    x[3] = x[2]
    if n > 4:
        x[4] = -x[2]  # same norm as rows 2, 3
    return x


# -- every pre-aggregator against its reference ---------------------------------------------------
@pytest.mark.parametrize("n,f", [(5, 1), (7, 2), (10, 3), (9, 0), (6, 5)])
@pytest.mark.parametrize("kind", ["random", "ties"])
def test_nnm_matches_reference(n, f, kind):
    rng = np.random.default_rng(n * 10 + f)
    x = rng.normal(size=(n, 6)) if kind == "random" else tied_inputs(rng, n, 6)
    out = NNM(f=f)(x)
    np.testing.assert_allclose(out, ref_nnm(x, f), rtol=1e-12, atol=1e-12)


def test_nnm_ties_go_to_lower_index():
    # row 0 at the origin, rows 1..4 all at distance 1: n-f = 3 keeps 0 and the two lowest others
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    out = NNM(f=2)(x)
    np.testing.assert_array_equal(out[0], (x[0] + x[1] + x[2]) / 3)
    assert NNM(f=2)(x).shape == (5, 2)


def test_nnm_float32_close_to_float64_reference():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, 50)).astype(np.float32)
    out = NNM(f=2)(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref_nnm(x, 2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n,s", [(6, 2), (7, 2), (10, 3), (5, 1), (4, 4), (3, 5)])
@pytest.mark.parametrize("kind", ["random", "ties"])
def test_bucketing_matches_reference(n, s, kind):
    rng = np.random.default_rng(n * 10 + s)
    x = rng.normal(size=(n, 5)) if kind == "random" else tied_inputs(rng, max(n, 5), 5)[:n]
    b = Bucketing(s=s, seed=3)
    perms = [b.permutation(n, call=t) for t in range(3)]
    for t in range(3):
        out = b(x)
        assert out.shape == (math.ceil(n / s), 5)
        np.testing.assert_array_equal(b.last_info["perm"].numpy(), perms[t])
        np.testing.assert_allclose(out, ref_bucketing(x, s, perms[t]), rtol=1e-12, atol=1e-12)
    assert sorted(perms[0]) == list(range(n))


def test_bucketing_permutations_differ_between_calls():
    b = Bucketing(s=2, seed=0)
    perms = {tuple(b.permutation(20, call=t)) for t in range(5)}
    assert len(perms) == 5


@pytest.mark.parametrize("c", [0.5, 1.0, 3.0, 100.0])
def test_clipping_matches_reference(c):
    rng = np.random.default_rng(int(c * 10))
    x = rng.normal(size=(8, 7)) * rng.uniform(0.01, 3.0, size=(8, 1))
    x[2] = 0.0
    x[3] = x[4]
    out = Clipping(c=c)(x)
    np.testing.assert_allclose(out, ref_clipping(x, c), rtol=1e-12, atol=1e-15)
    assert (np.linalg.norm(out, axis=1) <= c * (1 + 1e-12)).all()


@pytest.mark.parametrize("n,f", [(5, 1), (7, 2), (10, 3), (9, 0), (11, 5), (4, 3)])
@pytest.mark.parametrize("kind", ["random", "ties"])
def test_arc_matches_reference(n, f, kind):
    rng = np.random.default_rng(n * 10 + f + 1)
    x = rng.normal(size=(n, 6)) * rng.uniform(0.1, 10.0, size=(n, 1)) if kind == "random" else tied_inputs(rng, n, 6)
    a = ARC(f=f)
    out = a(x)
    np.testing.assert_allclose(out, ref_arc(x, f), rtol=1e-12, atol=1e-12)
    assert a.last_info["k"] == int(math.floor(2 * (f / n) * (n - f)))


@pytest.mark.parametrize("n,f,k", [(10, 0, 0), (10, 1, 1), (10, 2, 3), (10, 3, 4), (10, 4, 4), (25, 5, 8),
                                   (7, 3, 3), (3, 1, 1), (100, 10, 18), (4, 1, 1)])
def test_arc_k_formula(n, f, k):
    assert arc_k(n, f) == k == int(math.floor(2 * (f / n) * (n - f)))
    rng = np.random.default_rng(n + f)
    x = rng.normal(size=(n, 3)) * np.arange(1, n + 1)[:, None]  # distinct norms
    out = ARC(f=f)(x)
    changed = ~np.isclose(out, x).all(axis=1)
    assert changed.sum() == k  # exactly the k largest rows are clipped


def test_arc_k_float_formula_agrees_on_a_grid():
    for n in range(1, 60):
        for f in range(0, n):
            assert arc_k(n, f) == int(math.floor(2 * (f / n) * (n - f) + 1e-12))


# -- batching, kinds, dtypes, non-finite rows ------------------------------------------------------
def _all_pres():
    return [NNM(f=2), Bucketing(s=3, seed=5), Clipping(c=1.5), ARC(f=2)]


@pytest.mark.parametrize("idx", range(4))
def test_batched_equals_per_item_calls(idx):
    pre = _all_pres()[idx]
    rng = np.random.default_rng(idx)
    x = torch.from_numpy(rng.normal(size=(2, 3, 8, 5)))
    state = pre.state_dict()
    out = pre(x)
    assert out.shape == (2, 3, pre.out_n(8), 5)
    for i in range(2):
        for j in range(3):
            pre.load_state_dict(state)  # bucketing: the same permutation as the batched call
            torch.testing.assert_close(pre(x[i, j]), out[i, j], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("idx", range(4))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_in_numpy_out_and_torch_kind_kept(idx, dtype):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4, 9, 6)).astype(dtype)
    pre = _all_pres()[idx]
    state = pre.state_dict()
    out = pre(x)
    assert isinstance(out, np.ndarray) and out.dtype == dtype and out.shape == (4, pre.out_n(9), 6)
    pre.load_state_dict(state)
    t = torch.from_numpy(x)
    out_t = pre(t)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == t.dtype and out_t.device == t.device
    np.testing.assert_array_equal(out_t.numpy(), out)
    assert not np.shares_memory(out, x)


def test_float16_kept():
    x = torch.randn(7, 4).to(torch.float16)
    for pre in _all_pres():
        assert pre(x).dtype == torch.float16


@pytest.mark.parametrize("idx", range(4))
def test_nonfinite_rows_zeroed_and_counted(idx):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 5))
    x[1, 2] = np.nan
    x[5, 0] = np.inf
    clean = x.copy()
    clean[1, 2] = 0.0
    clean[5, 0] = 0.0
    pre = _all_pres()[idx]
    state = pre.state_dict()
    out = pre(x)
    assert pre.last_info["nonfinite_rows"] == 2 and pre.nonfinite_rows_total == 2
    assert np.isfinite(out).all()
    pre.load_state_dict(state)
    np.testing.assert_array_equal(out, pre(clean))
    assert np.isnan(x[1, 2])  # the input is not modified


def test_input_checks():
    with pytest.raises(TypeError):
        NNM(f=1)([[1.0, 2.0]])
    with pytest.raises(ValueError, match="shape"):
        Clipping()(np.zeros(3))
    with pytest.raises(ValueError, match="floating"):
        ARC(f=1)(torch.zeros(4, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="f\\+1"):
        NNM(f=3)(np.zeros((3, 2)))
    with pytest.raises(ValueError):
        Bucketing(s=0)
    with pytest.raises(ValueError):
        Clipping(c=-1.0)
    with pytest.raises(ValueError):
        NNM(f=-1)


# -- bucketing reproducibility and state ----------------------------------------------------------
def test_bucketing_reproducible_from_seed_and_state():
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(11, 4)) for _ in range(5)]
    a, b = Bucketing(s=2, seed=42), Bucketing(s=2, seed=42)
    outs_a = [a(x) for x in xs]
    outs_b = [b(x) for x in xs]
    for u, v in zip(outs_a, outs_b):
        np.testing.assert_array_equal(u, v)
    assert not np.allclose(outs_a[0], Bucketing(s=2, seed=43)(xs[0]))
    # resume after two calls from a pickled state
    c = Bucketing(s=2, seed=42)
    c(xs[0]), c(xs[1])
    state = pickle.loads(pickle.dumps(c.state_dict()))
    assert state == {"calls": 2}
    d = Bucketing(s=2, seed=42)
    d.load_state_dict(state)
    for x, expect in zip(xs[2:], outs_a[2:]):
        np.testing.assert_array_equal(d(x), expect)
    d.reset()
    np.testing.assert_array_equal(d(xs[0]), outs_a[0])
    assert Bucketing.stateful and not NNM.stateful


# -- registry and build_pre -----------------------------------------------------------------------
def test_registry_and_build_pre():
    assert set(PRE_AGGREGATORS.available()) == {"nnm", "bucketing", "clipping", "arc"}
    p = build_pre("bucketing:s=3,seed=7", f=2)
    assert isinstance(p, Bucketing) and (p.s, p.seed) == (3, 7)
    assert build_pre("NNM", f=4).f == 4
    assert build_pre("arc", f=2).f == 2 and build_pre("arc:f=1", f=2).f == 1
    assert build_pre("clipping:c=0.5", f=3).c == 0.5
    assert build_pre("clipping:c=2", f=3).c == 2.0
    assert parse_spec("x:a=1,b=2.5,c=true,d=False,e=abc,g=1e-3,h=none") == (
        "x", {"a": 1, "b": 2.5, "c": True, "d": False, "e": "abc", "g": 1e-3, "h": None})
    assert isinstance(parse_spec("x:a=1")[1]["a"], int)


@pytest.mark.parametrize("spec,match", [
    ("nosuch", "available: arc, bucketing, clipping, nnm"),
    ("bucketing:z=1", "valid: \\['s', 'seed'\\]"),
    ("nnm:s=2", "valid: none"),
    ("bucketing:s", "key=value"),
    ("bucketing:", "no key=value"),
    (":s=2", "no name"),
    ("bucketing:s=2,s=3", "twice"),
    ("", "non-empty"),
    ("bucketing:s=two", "s must be an int"),
])
def test_build_pre_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        build_pre(spec, f=1)


# -- Pipeline -------------------------------------------------------------------------------------
def test_pipeline_nnm_krum_equals_manual_composition():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(3, 9, 12)).astype(np.float32)
    x[:, :2] += 20.0  # two outliers per item
    pipe = Pipeline(pre=["nnm"], rule="krum", f=2)
    out = pipe(x)
    expect = Krum(f=2)(NNM(f=2)(x))
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (3, 12)
    np.testing.assert_array_equal(out, expect)
    assert pipe.last_info["n_out"] == 9 and "selected" in pipe.last_info["rule"]
    assert isinstance(pipe, Aggregator) and pipe.min_n() == 7 and not pipe.stateful
    assert "pipeline" not in AGGREGATORS and "nnm" not in AGGREGATORS  # not a registered rule


def test_pipeline_accepts_objects_specs_and_chains():
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.normal(size=(10, 4)))
    pipe = Pipeline(pre=[Clipping(c=1.0), "bucketing:s=2,seed=3"], rule="multi-krum:m=2", f=1)
    out = pipe(x)
    b = Bucketing(s=2, seed=3)
    expect = by_name("multi-krum", f=1, m=2)(b(Clipping(c=1.0)(x)))
    torch.testing.assert_close(out, expect, rtol=0, atol=0)
    assert pipe.rule.f == 1 and pipe.pre[1].s == 2
    assert Pipeline("arc", rule=Krum(f=2)).f == 2


def test_pipeline_requirement_on_n_prime():
    pipe = Pipeline(pre=["bucketing:s=2"], rule="krum", f=1)  # krum needs n' >= 5, n' = ceil(n/2)
    assert pipe.min_n() == 9
    assert "ceil(n/2)" in pipe.requirement() and "n' >= 2f+3" in pipe.requirement()
    pipe(np.zeros((9, 3)))
    with pytest.raises(ValueError, match="n'=4 from n=8"):
        pipe(np.zeros((8, 3)))
    nnm_pipe = Pipeline(pre=["nnm"], rule="median", f=3)
    assert nnm_pipe.min_n() == 7
    assert Pipeline(pre=[], rule="krum", f=1).min_n() == 5


def test_pipeline_nonfinite_rows_counted_once():
    x = np.random.default_rng(0).normal(size=(7, 3))
    x[0, 0] = np.nan
    pipe = Pipeline(pre=["nnm", "arc"], rule="median", f=1)
    out = pipe(x)
    assert np.isfinite(out).all() and pipe.last_info["nonfinite_rows"] == 1 and pipe.nonfinite_rows_total == 1


def test_pipeline_state_round_trip_with_stateful_rule_and_bucketing():
    rng = np.random.default_rng(5)
    xs = [torch.from_numpy(rng.normal(size=(2, 12, 6)) * 5) for _ in range(6)]

    def make():
        return Pipeline(pre=["bucketing:s=2,seed=9"], rule="centered-clipping:tau=1.0", f=1)

    assert make().stateful and not Pipeline(pre=["nnm"], rule="krum", f=1).stateful
    ref = make()
    ref_out = [ref(x) for x in xs]
    # the same as running the parts by hand
    b, cc = Bucketing(s=2, seed=9), CenteredClipping(f=1, tau=1.0)
    for x, expect in zip(xs, ref_out):
        torch.testing.assert_close(cc(b(x)), expect, rtol=0, atol=0)
    # interrupt after 3 calls, restore into a fresh pipeline's live parts
    first = make()
    for x in xs[:3]:
        first(x)
    state = pickle.loads(pickle.dumps(first.state_dict()))
    assert state["pre"][0] == {"calls": 3} and state["rule"]["v"].shape == (2, 6)
    second = make()
    rule_obj, pre_obj = second.rule, second.pre[0]
    second.load_state_dict(state)
    assert second.rule is rule_obj and second.pre[0] is pre_obj
    for x, expect in zip(xs[3:], ref_out[3:]):
        torch.testing.assert_close(second(x), expect, rtol=0, atol=0)
    state["rule"]["v"].zero_()  # the saved state is a copy
    assert second.state_dict()["rule"]["v"].abs().sum() > 0
    second.reset()
    assert second.state_dict() == {"pre": [{"calls": 0}], "rule": {"v": None}}
    with pytest.raises(ValueError, match="pre-aggregator states"):
        second.load_state_dict({"pre": [], "rule": {}})


def test_pipeline_errors():
    with pytest.raises(ValueError, match="available"):
        Pipeline(pre=["nnm"], rule="nosuch", f=1)
    with pytest.raises(ValueError, match="available"):
        Pipeline(pre=["nosuch"], rule="krum", f=1)
    with pytest.raises(ValueError, match="valid"):
        Pipeline(pre=["nnm"], rule="krum:zz=1", f=1)
    with pytest.raises(TypeError):
        Pipeline(pre=[3], rule="krum")
    with pytest.raises(TypeError):
        Pipeline(pre=["nnm"], rule=NNM(f=1))  # a pre-aggregator is not a rule
    assert issubclass(NNM, PreAggregator)
