"""Property-based fuzzing (hypothesis) of every aggregator, pre-aggregator, decoder and of the
master's reply validation, on adversarial floats: NaN, +-Inf, +-1e308, subnormals, signed zeros,
duplicated rows, float32 and float64.

Properties:

* (a) a call on a valid configuration never raises; a bad shape / dtype / too small an n raises the
  documented ValueError (a non-array input: the documented TypeError);
* (b) a rule sized for f returns a finite output whenever at most f rows are bad (base.py: a row
  holding NaN/Inf is Byzantine by definition and zeroed; a huge-but-finite row is just another
  Byzantine value) and the other rows are honest (finite, |x| <= 1e3);
* (c) a code never claims ``exact=True`` with a wrong sum while the corruption is within its
  guarantee (2e + m <= 2s), and an exact gradient equals the float64 reference sum within the
  tolerance justified at each test (codes.md's measured errors); decoders fail soft
  (``exact=False`` and ``info["reason"]``) and never raise on any adversarial input;
* replies of the wrong type (list, str, None, torch tensors of any kind, huge or wrongly typed
  arrays) are faults: ``StackBuilder.put`` marks them bad, ``Master._validate`` flags and erases
  them, on the local path and on Ray.

Every ``@settings`` is ``derandomize=True`` (deterministic inputs); ``TOTAL_CASES`` is the number of
generated cases the file runs (printed by ``test_zz_report_case_count``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from codedbft.aggregators import AGGREGATORS, PRE_AGGREGATORS, Pipeline, by_name, build_pre

SPECIALS = [math.nan, math.inf, -math.inf, 1e308, -1e308, 1.7976931348623157e308, 5e-324, -5e-324,
            2.2250738585072014e-308, 1e-310, 0.0, -0.0, 1.0, -1.0, 3.4e38, -3.4e38, 1e-45, 1e-40]
HONEST_SPECIALS = [0.0, -0.0, 5e-324, -5e-324, 1e-310, 1e-40, 1.0, -1.0, 1e3, -1e3]
wild = st.one_of(st.sampled_from(SPECIALS), st.floats(allow_nan=True, allow_infinity=True))
honest_el = st.one_of(st.sampled_from(HONEST_SPECIALS), st.floats(-1e3, 1e3))
DTYPES = [np.float64, np.float32]

TOTAL_CASES = 0


def fuzz(n: int):
    """``@settings`` for a fuzz test of ``n`` examples; counts them into TOTAL_CASES."""
    global TOTAL_CASES
    n = max(4, (n + 1) // 2)  # halved to keep the suite under 10 minutes on 2 cores
    TOTAL_CASES += n
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def cast(a: np.ndarray, dtype) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return np.ascontiguousarray(a.astype(dtype))


@st.composite
def stacks(draw, n: int, d: int, nbad: int, dtype, honest=True):
    """``(x (n, d), bad_rows)``: honest rows from ``honest_el`` (some duplicated), ``nbad`` rows
    (placed anywhere) fully wild; with ``honest=False`` every row is wild."""
    el = honest_el if honest else wild
    x = draw(hnp.arrays(np.float64, (n, d), elements=el))
    for i in range(1, n):  # duplicates: a row may copy an earlier one
        if draw(st.integers(0, 3)) == 0:
            x[i] = x[draw(st.integers(0, i - 1))]
    bad = sorted(draw(st.permutations(range(n)))[:nbad]) if nbad else []
    if bad:
        same = draw(st.booleans())  # colluding: all bad rows identical
        vals = draw(hnp.arrays(np.float64, (1 if same else len(bad), d), elements=wild))
        x[bad] = vals
    return cast(x, dtype), bad


# ---------------------------------------------------------------------------------------------
# aggregators
RULES = sorted(AGGREGATORS.available())


def _loss(W):  # Zeno's oracle: a finite quadratic (inf on overflow, which Zeno must rank, not crash on)
    return (W.double() ** 2).sum(-1)


def build_rule(name: str, f: int):
    if name == "hierarchical":
        return by_name(name, group_size=3, outer="median", s=2 * f)  # outer f = floor(2f/2) = f groups
    if name == "mda" or name == "smea":
        return by_name(name, f=f, max_subsets=200)
    return by_name(name, f=f)


def call_args(name: str, x: np.ndarray, honest_row: np.ndarray) -> dict:
    d = x.shape[-1]
    ref = torch.from_numpy(np.ascontiguousarray(honest_row))
    if name == "zeno":
        return {"params": torch.zeros(d, dtype=ref.dtype), "loss": _loss}
    if name == "bygars":
        return {"aux_gradient": ref}
    if name == "fltrust":
        return {"root": ref}
    if name == "monna":
        return {"reference": ref}
    return {}


def valid_n(agg, name: str, extra: int) -> int:
    n = max(agg.min_n(), 1) + extra
    if name == "hierarchical":
        n = agg.min_n() + 3 * extra  # a multiple of group_size * bucket
    return n


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", RULES)
def test_rule_never_raises_on_adversarial_floats(name, dtype):
    """(a): any values, any valid n: no exception, shape and dtype kept, numpy in -> numpy out."""

    @fuzz(8)
    @given(data=st.data())
    def run(data):
        f = data.draw(st.integers(0, 2), label="f")
        agg = build_rule(name, f)
        n = valid_n(agg, name, data.draw(st.integers(0, 2), label="extra"))
        d = data.draw(st.integers(1, 4), label="d")
        x, _ = data.draw(stacks(n, d, 0, dtype, honest=False), label="x")
        ref = np.zeros(d, dtype)
        with np.errstate(all="ignore"):
            out = agg(x, **call_args(name, x, ref))
        assert isinstance(out, np.ndarray) and out.shape == (d,) and out.dtype == dtype

    run()


@pytest.mark.parametrize("name", RULES)
def test_rule_rejects_bad_shapes_and_configurations_with_value_error(name):
    agg = build_rule(name, 1)
    n = valid_n(agg, name, 0)
    kw = call_args(name, np.zeros((n, 3)), np.zeros(3))
    with pytest.raises(ValueError):
        agg(np.zeros(3), **kw)  # 1-D
    with pytest.raises(ValueError):
        agg(np.zeros((n, 3), dtype=np.int64), **kw)  # not floating
    with pytest.raises(ValueError):
        agg(np.zeros((n, 3), dtype=np.complex128), **kw)
    if agg.min_n() > 1:
        with pytest.raises(ValueError):
            agg(np.zeros((agg.min_n() - 1, 3)), **kw)
    with pytest.raises(TypeError):  # base.py: anything but numpy/torch is a TypeError
        agg([[0.0] * 3] * n, **kw)
    with pytest.raises(ValueError):
        by_name(name, f=-1) if name != "hierarchical" else by_name(name, group_size=3, f=-1)


@pytest.mark.parametrize("name", RULES)
def test_rule_zero_width_stack_is_a_value_error_and_bfloat16_torch_input_works(name):
    """Regressions: (n, 0) stacks raised RuntimeError from the (B, n, d) reshape in prepare_stack
    (every rule and pre-aggregator); hierarchical on a bfloat16 CPU tensor raised TypeError in
    majority_vote's numpy gather (numpy has no bfloat16)."""
    agg = build_rule(name, 1)
    n = valid_n(agg, name, 0)
    with pytest.raises(ValueError):
        agg(np.zeros((n, 0)), **call_args(name, np.zeros((n, 1)), np.zeros(1)))
    agg = build_rule(name, 1)
    x = torch.linspace(-1, 1, n * 3).reshape(n, 3).to(torch.bfloat16)
    kw = {k: (v.to(torch.bfloat16) if isinstance(v, torch.Tensor) else v)
          for k, v in call_args(name, x, np.zeros(3, np.float32)).items()}
    out = agg(x, **kw)
    assert out.dtype == torch.bfloat16 and out.shape == (3,) and bool(torch.isfinite(out.float()).all())


ROBUST = [r for r in RULES if r != "mean"]  # mean: "not robust" (coordinate.py); covered with f = 0


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", RULES)
def test_rule_output_is_finite_with_at_most_f_bad_rows(name, dtype):
    """(b): at most f rows bad (wild: NaN/Inf/huge/colluding), the rest honest -> finite output."""

    @fuzz(8)
    @given(data=st.data())
    def run(data):
        f = 0 if name == "mean" else data.draw(st.integers(0, 2), label="f")
        agg = build_rule(name, f)
        # some rules accept any n (sign-majority, fltrust, bygars): (b) needs an honest majority
        n = max(valid_n(agg, name, data.draw(st.integers(0, 2), label="extra")), 2 * f + 1)
        d = data.draw(st.integers(1, 4), label="d")
        if name == "hierarchical":
            # DETOX's contract: honest members of a group send identical copies; s = 2f Byzantine
            # workers anywhere corrupt at most f groups (each needs 2 of its 3 members)
            g = data.draw(hnp.arrays(np.float64, (n // 3, d), elements=honest_el), label="groups")
            x = cast(np.repeat(g, 3, axis=0), dtype)
            bad = sorted(data.draw(st.permutations(range(n)), label="perm")[: 2 * f])
            if bad:
                x[bad] = cast(data.draw(hnp.arrays(np.float64, (len(bad), d), elements=wild), label="bad"), dtype)
        else:
            x, bad = data.draw(stacks(n, d, f, dtype), label="x")
        honest_rows = [i for i in range(n) if i not in bad]
        with np.errstate(all="ignore"):
            out = agg(x, **call_args(name, x, x[honest_rows[0]]))
        assert np.isfinite(out).all(), (x, bad, out)

    run()


PRES = sorted(PRE_AGGREGATORS.available())


def build_pre_by_name(name: str, f: int):
    if name == "bucketing":
        return build_pre("bucketing:s=2,seed=3", f=f)
    if name == "clipping":
        return build_pre("clipping:c=1.5")
    return build_pre(name, f=f)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", PRES)
def test_pre_aggregator_never_raises_and_zeroes_nonfinite_rows(name, dtype):
    """(a) for pre-aggregators; their output is finite whenever no row is huge-but-finite (NaN/Inf
    rows are zeroed by the shared guard), and the shape is (n', d)."""

    @fuzz(12)
    @given(data=st.data())
    def run(data):
        f = data.draw(st.integers(0, 2), label="f")
        pre = build_pre_by_name(name, f)
        n = pre.min_n() + data.draw(st.integers(0, 3), label="extra")
        d = data.draw(st.integers(1, 4), label="d")
        x, _ = data.draw(stacks(n, d, 0, dtype, honest=False), label="x")
        with np.errstate(all="ignore"):
            out = pre(x)
        assert isinstance(out, np.ndarray) and out.shape == (pre.out_n(n), d) and out.dtype == dtype
        tame = np.where(np.isfinite(x), x, 0.0)
        if np.abs(tame).max(initial=0.0) <= 1e3:
            assert np.isfinite(out).all()

    run()
    with pytest.raises(ValueError):
        build_pre_by_name(name, 1)(np.zeros(3))


@pytest.mark.parametrize("name", PRES)
def test_pre_aggregator_zero_width_stack_is_a_value_error(name):
    with pytest.raises(ValueError):
        build_pre_by_name(name, 1)(np.zeros((4, 0)))


PIPELINES = [(["nnm"], "krum"), (["bucketing:s=2,seed=1"], "median"), (["arc"], "trimmed-mean"),
             (["clipping:c=2"], "cge"), (["nnm", "arc"], "multi-krum")]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("pre,rule", PIPELINES, ids=["+".join(p) + ">" + r for p, r in PIPELINES])
def test_pipeline_output_is_finite_with_at_most_f_bad_rows(pre, rule, dtype):
    """(b) for Pipeline(pre, rule): at most f wild rows (NaN/Inf rows are Byzantine by definition)."""

    @fuzz(8)
    @given(data=st.data())
    def run(data):
        f = data.draw(st.integers(0, 2), label="f")
        agg = Pipeline(pre=pre, rule=rule, f=f)
        n = agg.min_n() + data.draw(st.integers(0, 2), label="extra")
        d = data.draw(st.integers(1, 4), label="d")
        x, bad = data.draw(stacks(n, d, f, dtype), label="x")
        with np.errstate(all="ignore"):
            out = agg(x)
        assert out.shape == (d,) and np.isfinite(out).all(), (x, bad, out)

    run()


# ---------------------------------------------------------------------------------------------
# codes and decoders
def eps(dtype) -> float:
    return float(np.finfo(dtype).eps)


@st.composite
def faults(draw, n: int, s: int, beyond: bool = False):
    """``(errors, erasures)``: disjoint row sets with 2e + m <= 2s (any sizes when ``beyond``)."""
    perm = draw(st.permutations(range(n)))
    if beyond:
        e = n if draw(st.integers(0, 3)) == 0 else draw(st.integers(0, n))  # often: every row corrupt
        m = draw(st.integers(0, n - e))
    else:
        e = draw(st.integers(0, s))
        m = draw(st.integers(0, 2 * s - 2 * e))
    return sorted(perm[:e]), sorted(perm[e:e + m])


def corrupt(draw, msgs: np.ndarray, rows, alt: np.ndarray | None = None) -> np.ndarray:
    """Replace ``rows`` by wild values: independent, colluding (identical), a tiny relative
    perturbation of the honest row, or a row of another consistent codeword ``alt``."""
    out = msgs.copy()
    for i in rows:
        mode = draw(st.integers(0, 3))
        if mode == 0 or (mode == 3 and alt is None):
            out[i] = cast(draw(hnp.arrays(np.float64, msgs.shape[1:], elements=wild)), msgs.dtype)
        elif mode == 1:  # colluding: every such row the same value
            out[i] = cast(np.full(msgs.shape[1:], draw(wild)), msgs.dtype)
        elif mode == 2:  # near-honest: one coordinate nudged by a few ulps .. 1e-3 relative
            flat = out[i].reshape(-1)
            j = draw(st.integers(0, flat.size - 1))
            rel = draw(st.sampled_from([4 * eps(msgs.dtype), 1e-9, 1e-6, 1e-3, 1.0]))
            with np.errstate(all="ignore"):
                flat[j] = flat[j] + (abs(flat[j]) + 1.0) * rel
        else:
            out[i] = alt[i]
    return out


def check_result(res, ref: np.ndarray, tol: np.ndarray | float, within: bool):
    assert res.exact == (res.info["reason"] is None)
    assert isinstance(res.info["reason"], (str, type(None)))
    if res.exact and within:  # beyond the guarantee an exact claim may be wrong (e.g. r = 1 groups)
        g = np.asarray(res.gradient, dtype=np.float64)
        assert np.isfinite(g).all()
        if True:
            err = np.abs(g - ref)
            assert (err <= tol).all(), (err.max(), np.max(tol))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_repetition_code_never_claims_a_wrong_exact_sum(dtype):
    """Majority vote is bytewise: within 2e + m <= 2s every group keeps a strict honest majority, so
    the decided values are the honest copies bit for bit, and the only error is the summation of k
    values: |err| <= k * eps(dtype) * sum_j |g_j| (float64 accumulation only makes it smaller)."""
    from codedbft.encoders import RepetitionCode

    @fuzz(40)
    @given(data=st.data())
    def run(data):
        s = data.draw(st.integers(0, 2), label="s")
        k = data.draw(st.integers(1, 3), label="k")
        code = RepetitionCode((2 * s + 1) * k, s=s)
        d = data.draw(st.integers(1, 5), label="d")
        G = cast(data.draw(hnp.arrays(np.float64, (k, d), elements=honest_el), label="G"), dtype)
        msgs = code.encode(G)
        beyond = data.draw(st.booleans(), label="beyond")
        err, miss = data.draw(faults(code.n, s, beyond), label="faults")
        alt = code.encode(cast(data.draw(hnp.arrays(np.float64, (k, d), elements=wild), label="alt"), dtype))
        msgs = corrupt(data.draw, msgs, err, alt)
        with np.errstate(all="ignore"):
            res = code.decode(msgs, missing=miss)
        ref = G.astype(np.float64).sum(0)
        tol = k * eps(dtype) * np.abs(G.astype(np.float64)).sum(0)
        check_result(res, ref, tol, within=not beyond)
        if not beyond:
            assert res.exact and set(res.flagged) <= set(err)

    run()


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_cyclic_mds_code_never_claims_a_wrong_exact_sum(dtype):
    """Real cyclic MDS, odd n. codes.md: in float64, with rank-based locating and residual
    verification, relative error ~4e-11 at n = 45, s = 5; a corruption below the verification
    tolerance (rtol 1e-11 standardised, float64) is accepted and moves the sum by about that much
    relative to the message scale. So for float64 messages: |err| <= 1e-8 * k * max|G| + tiny (three
    orders of headroom over the measured error at n = 45, our n <= 13). float32 messages (rtol 1e-5:
    honest float32 rounding is ~6e-8 relative, amplified by the interpolation's conditioning):
    |err| <= 1e-3 * k * max|G|."""
    from codedbft.encoders import CyclicMDSCode

    @fuzz(40)
    @given(data=st.data())
    def run(data):
        s = data.draw(st.integers(0, 2), label="s")
        n = 2 * s + 1 + 2 * data.draw(st.integers(0, 4), label="extra")
        code = CyclicMDSCode(n, s, seed=0)
        d = data.draw(st.integers(1, 5), label="d")
        G = data.draw(hnp.arrays(np.float64, (n, d), elements=honest_el), label="G")
        msgs = cast(code.encode(G), dtype)
        beyond = data.draw(st.booleans(), label="beyond")
        err, miss = data.draw(faults(n, s, beyond), label="faults")
        alt = cast(code.encode(data.draw(hnp.arrays(np.float64, (n, d), elements=honest_el), label="alt")), dtype)
        msgs = corrupt(data.draw, msgs, err, alt)
        with np.errstate(all="ignore"):
            res = code.decode(msgs, missing=miss)
        ref = G.sum(0)
        scale = n * np.abs(G).max(initial=0.0) + 1e-300
        # + n * tiny: the cast to ``dtype`` flushes entries below its normal range (float32 gradients of
        # 1e-211 are sent as 0, found by this fuzzer on a newer hypothesis)
        tol = (1e-8 if dtype == np.float64 else 1e-3) * scale + n * np.finfo(dtype).tiny
        check_result(res, ref, tol, within=not beyond)
        if not beyond:
            assert res.exact, res.info["reason"]

    run()


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_byzshield_code_never_claims_a_wrong_exact_sum(dtype):
    """ByzShield's vote is bytewise too (honest copies identical): a certified sum is the float64 sum
    of the k voted files, |err| <= k * eps(float64) * sum |g|, then returned in the messages' dtype:
    for float32 messages one more rounding, <= eps(float32) * |sum| (found by this fuzzer: the
    gradient is float32 like the messages)."""
    from codedbft.encoders import ByzShieldCode

    codes = {(3, 2): ByzShieldCode(3, 2), (5, 3): ByzShieldCode(5, 3)}

    @fuzz(30)
    @given(data=st.data())
    def run(data):
        code = codes[data.draw(st.sampled_from(sorted(codes)), label="lr")]
        d = data.draw(st.integers(1, 4), label="d")
        G = cast(data.draw(hnp.arrays(np.float64, (code.k, d), elements=honest_el), label="G"), dtype)
        msgs = code.encode(G)  # (n, l, d)
        beyond = data.draw(st.booleans(), label="beyond")
        err, miss = data.draw(faults(code.n, code.s, beyond), label="faults")
        out = msgs.copy()
        for w in err:  # a liar may change any subset of its copies, to anything
            sub = corrupt(data.draw, out[w], range(code.l))
            keep = data.draw(hnp.arrays(np.bool_, (code.l,)), label="keep")
            out[w] = np.where(keep[:, None], out[w], sub)
        with np.errstate(all="ignore"):
            res = code.decode(out, missing=miss)
        G64 = G.astype(np.float64)
        tol = 4 * code.k * eps(np.float64) * np.abs(G64).sum(0) + eps(dtype) * np.abs(G64.sum(0))
        check_result(res, G64.sum(0), tol, within=not beyond)
        # Without erasures the guarantee holds outright: exact. With erasures the global decision is
        # conservative: a file whose present copies q liars could all hold is not certified, since
        # the decoder is sized for q liars whatever the erasures (codedbft/decoders/byzshield.py).
        if not beyond and not len(miss):
            assert res.exact, res.info["reason"]

    run()


def test_data_encoding_code_never_claims_a_wrong_exact_sum():
    """Least squares, g = X^T (X w - y), decoded by the L1 decoder in float64. codes.md and
    data_encoding.py: relative error ~1e-13 at m = 30, t = 7. An undetected corruption is below the
    verification tolerance rtol = 1e-9 (relative to the messages), and the pseudo-inverse on m - t
    rows of an orthonormal generator amplifies it by its condition number (small at m <= 9). The
    natural scale of g is sc = |X|^T (|X| |w| + |y|) (the sum of magnitudes of its terms), so
    |err| <= 1e-6 * (max sc + tiny): three orders over rtol."""
    from codedbft.encoders import DataEncodingCode

    @fuzz(25)
    @given(data=st.data())
    def run(data):
        m = data.draw(st.sampled_from([3, 5, 7]), label="m")
        t = data.draw(st.integers(0, min(2, (m - 1) // 2)), label="t")
        code = DataEncodingCode(m, t, rng=0)
        nr, d = data.draw(st.integers(2, 8), label="rows"), data.draw(st.integers(1, 4), label="d")
        el = st.one_of(st.sampled_from([0.0, -0.0, 1e-310, 1.0, -1.0]), st.floats(-10, 10))
        X = data.draw(hnp.arrays(np.float64, (nr, d), elements=el), label="X")
        y = data.draw(hnp.arrays(np.float64, (nr,), elements=el), label="y")
        w = data.draw(hnp.arrays(np.float64, (d,), elements=el), label="w")
        blocks = code.encode_data(X, y)
        msgs = np.stack([code.worker_gradient(i, w, blocks[i]) for i in range(m)])
        beyond = data.draw(st.booleans(), label="beyond")
        err, miss = data.draw(faults(m, t, beyond), label="faults")
        msgs = corrupt(data.draw, msgs, err)
        with np.errstate(all="ignore"):
            res = code.decode(msgs, missing=miss)
        ref = X.T @ (X @ w - y)
        sc = np.abs(X).T @ (np.abs(X) @ np.abs(w) + np.abs(y))
        check_result(res, ref, 1e-6 * (sc.max(initial=0.0) + 1e-300), within=not beyond)
        if not beyond:
            assert res.exact, res.info["reason"]

    run()


def test_decoders_reject_bad_shapes_with_value_error():
    from codedbft.encoders import ByzShieldCode, CyclicMDSCode, DataEncodingCode, RepetitionCode

    for code in (RepetitionCode(3, s=1), CyclicMDSCode(5, 1, seed=0), ByzShieldCode(3, 2)):
        with pytest.raises(ValueError):
            code.decode(np.zeros((code.n + 1, 2)))
    de = DataEncodingCode(5, 1, rng=0)
    de.encode_data(np.ones((4, 2)), np.ones(4))
    with pytest.raises(ValueError):
        de.decode(np.zeros((6, 1)))
    with pytest.raises(ValueError):
        RepetitionCode(3, s=1).decode(np.zeros((3, 2)), missing=[7])


@pytest.mark.parametrize("fill", [math.nan, math.inf, -math.inf, 1e308])
def test_every_decoder_fails_soft_when_every_row_is_nonfinite(fill):
    """Regression: SyndromeDecoder._combine indexed an empty kept-row set (IndexError) when every
    row was NaN/Inf (all erased); it must fail soft with exact=False and a reason."""
    from codedbft.encoders import ByzShieldCode, CyclicMDSCode, DataEncodingCode, RepetitionCode

    de = DataEncodingCode(5, 1, rng=0)
    de.encode_data(np.ones((4, 2)), np.ones(4))
    for code, shape in ((RepetitionCode(3, s=1), (3, 2)), (CyclicMDSCode(5, 1, seed=0), (5, 2)),
                        (CyclicMDSCode(7, 2, seed=0), (7, 3)), (ByzShieldCode(3, 2), (6, 3, 2)), (de, (5, 1))):
        with np.errstate(all="ignore"):
            res = code.decode(np.full(shape, fill))
        assert res.exact == (res.info["reason"] is None)
        if not isinstance(code, RepetitionCode) and fill != 1e308:  # all copies equal: r = 3 agree
            assert not res.exact and res.info["reason"]


# ---------------------------------------------------------------------------------------------
# replies of the wrong type: StackBuilder and the master's validation
def garbage_replies(d: int):
    """Every kind of wrong reply for a (d,) float32 layout, with whether it is a valid reply."""
    big = np.zeros(4 * d + 1000, np.float32)
    out = [
        ([1.0] * d, False), ("garbage", False), (None, False), (b"\x00" * 4 * d, False), ({"x": 1}, False),
        (3.0, False), (np.float32(1.0), False), (np.zeros((), np.float32), False),
        (np.ones(d, np.float64), False), (np.ones(d, np.float16), False), (np.ones(d, np.int32), False),
        (np.ones(d, np.complex64), False), (np.ones(d, object), False), (np.ones((1, d), np.float32), False),
        (np.ones(d + 1, np.float32), False), (big, False), (np.ones((d, 2), np.float32)[:, 0], True),
        (torch.ones(d, dtype=torch.float64), False), (torch.ones(d, dtype=torch.bfloat16), False),
        (torch.ones(d, dtype=torch.complex64).conj(), False), (torch.ones(d).to_sparse(), False),
        (torch.ones(d, requires_grad=True), True), (torch.ones(d).neg(), True), (torch.ones(d + 1), False),
        (torch.ones(d, dtype=torch.float32).to("meta"), False),
        (np.full(d, np.nan, np.float32), True), (np.full(d, np.inf, np.float32), True),
        (np.full(d, 3e38, np.float32), True),
    ]
    ro = np.ones(d, np.float32)
    ro.setflags(write=False)
    out.append((ro, True))
    return out


@pytest.fixture(scope="module")
def master():
    from codedbft.cluster import Master, RunConfig

    m = Master(RunConfig(backend="local", workers=6, byzantine=0, tolerate=1, attack=None, dataset="digits",
                         model="logreg", batch_size=60, lr=0.2, steps=1))
    yield m
    m.close()


def test_stack_builder_and_validate_turn_any_wrong_reply_into_a_flagged_erasure(master):
    from codedbft.cluster.backend import StackBuilder

    d = master.core.model.d
    order = master.scheme.first_order()
    kinds = garbage_replies(d)
    ids = st.lists(st.integers(0, len(kinds) - 1), min_size=6, max_size=6)

    @fuzz(60)
    @given(pick=ids, order_of_puts=st.permutations(range(6)), twice=st.booleans())
    def run(pick, order_of_puts, twice):
        builder = StackBuilder(6, *order.layout)
        for i in order_of_puts:
            builder.put(i, kinds[pick[i]][0])  # never raises
            if twice:  # a second reply for the same row: the last one counts
                builder.put(i, kinds[pick[i]][0])
        rep = master._validate(builder.finish(order.workers, {}))
        assert bool(torch.isfinite(rep.messages).all())
        for i in range(6):
            msg, ok = kinds[pick[i]]
            finite = ok and bool(np.isfinite(np.asarray(msg.detach() if isinstance(msg, torch.Tensor) else msg)).all())
            assert rep.missing[i] == (not finite)
            assert (order.workers[i] in rep.invalid) == (not finite)
            if finite:
                want = msg.detach().numpy() if isinstance(msg, torch.Tensor) else msg
                assert np.array_equal(rep.messages[i].numpy(), want)
            else:
                assert not bool(rep.messages[i].any())

    run()


def test_a_bfloat16_or_sparse_torch_reply_is_bad_not_an_exception():
    """Regression: StackBuilder.put called ``.numpy()`` on every CPU tensor, which raises TypeError
    for bfloat16 / sparse tensors and RuntimeError for conjugate-bit views: the step crashed."""
    from codedbft.cluster.backend import StackBuilder

    b = StackBuilder(3, (4,), torch.float32)
    b.put(0, torch.ones(4, dtype=torch.bfloat16))
    b.put(1, torch.ones(4).to_sparse())
    b.put(2, torch.ones(4, dtype=torch.complex64).conj())
    assert b.bad.tolist() == [True, True, True]


GARBAGE_CALLS: list[int] = []


def garbage_runner(offset: int):
    """A forging round whose forgers reply garbage: reply kind ``(offset + step + j) % 8`` for the
    j-th forger: a string, None, a Python list, CPU torch tensors of the right shape in bfloat16 and
    float64, a huge array, a float16 array of the right shape, an int."""

    def run(job):
        GARBAGE_CALLS.append(job.step)
        out = {}
        for j, row in enumerate(job.rows):
            own = np.asarray(job.own[j])
            kinds = ["garbage", None, own.tolist(), torch.from_numpy(own.copy()).to(torch.bfloat16),
                     torch.from_numpy(own.astype(np.float64)), np.zeros(10**6, own.dtype), own.astype(np.float16), 7]
            out[row] = kinds[(offset + job.step + j) % len(kinds)]
        return out

    return run


RUN = dict(workers=6, byzantine=1, dataset="digits", model="logreg", batch_size=60, lr=0.2, steps=8,
           attack="omniscient", redraw=True, timeout_s=120.0, num_cpus=0.1)


def _check_garbage_run(m, rows, reference_sha):
    assert GARBAGE_CALLS == list(range(len(rows)))  # every step's forgery really was garbage
    GARBAGE_CALLS.clear()
    for r in rows:
        assert r["exact"] and r["flagged"] == r["byzantine"] and len(r["flagged"]) == 1
    assert m.model_sha256 == reference_sha  # the erased rows are corrected: the same model bit for bit


def test_local_backend_garbage_forgeries_are_flagged_and_the_model_stays_exact(monkeypatch):
    from codedbft.cluster import Master, RunConfig

    cfg = RunConfig(**{**RUN, "backend": "local"})
    ref = Master(cfg)
    ref.run()
    monkeypatch.setattr("codedbft.cluster.local.forge_here", garbage_runner(0))  # all 8 kinds
    m = Master(cfg)
    rows = [m.step() for _ in range(cfg.steps)]
    _check_garbage_run(m, rows, ref.model_sha256)
    ref.close()
    m.close()


@pytest.mark.ray
def test_ray_backend_garbage_forgeries_are_flagged_and_the_model_stays_exact(ray_session):
    from codedbft.cluster import Master, RunConfig
    from codedbft.cluster.ray_backend import RayBackend

    class GarbageRay(RayBackend):
        """The honest round runs on the actors; the forgers' replies are garbage."""

        def _forge_on_actors(self, job, workers, deadline):
            return garbage_runner(3)(job)  # the torch tensors and the huge array

    cfg = RunConfig(**{**RUN, "backend": "ray", "steps": 3})
    ref = Master(cfg.replace(backend="local"))
    ref.run()
    backend = GarbageRay(num_cpus=0.1, max_restarts=1, actors=2)
    try:
        m = Master(cfg, backend=backend)
        rows = [m.step() for _ in range(cfg.steps)]
        _check_garbage_run(m, rows, ref.model_sha256)
    finally:
        backend.close()
        ref.close()


def test_zz_report_case_count(capsys):
    """Not a property: prints how many generated cases this file runs (sum of max_examples)."""
    with capsys.disabled():
        print(f"\n[test_fuzz] generated cases per full run: {TOTAL_CASES}")
    assert TOTAL_CASES > 0


def test_a_majority_of_nonfinite_copies_is_never_claimed_exact():
    """Beyond the guarantee (the NaN copies hold a group's majority): the vote fails soft."""
    from codedbft.encoders import RepetitionCode

    code = RepetitionCode(3, r=3)
    msgs = np.ones((3, 4))
    msgs[:2] = np.nan
    res = code.decode(msgs)
    assert not res.exact and "not finite" in res.info["reason"]
