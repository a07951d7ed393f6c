"""Issue 14 (decoding in about one pass): the restructured passes compute what the old ones did.

* syndrome decoder: the sum is fused into the projection pass only after a step that excluded no
  row; whichever pass computes it, the output is bit for bit the old fused pass's (``np.dot`` per
  chunk) when nothing is excluded, and the old kept-rows combination otherwise; flagged sets are
  the liars under every placement of up to s liars of a small code;
* majority decoder: the fused confirm-and-sum pass (libc ``memcmp``) gives the same votes and the
  same sum bits as the separate confirmation and gather-and-add;
* non-finite rows (NaN, Inf, 1e308) never yield ``exact=True`` with a wrong sum.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from codedbft.decoders import majority as maj
from codedbft.decoders.syndrome import SyndromeDecoder
from codedbft.encoders import CyclicMDSCode, RepetitionCode


def _old_fused_sum(dec: SyndromeDecoder, M: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The pre-issue-14 first pass's sum, verbatim: ``np.dot`` per chunk, gather of present rows."""
    n, d = M.shape
    out = np.empty(d)
    idx = None if rows.all() else np.flatnonzero(rows)
    step = dec._step(n, d, dec.projections)
    for a in range(0, d, step):
        b = min(a + step, d)
        chunk = M[:, a:b]
        if chunk.dtype != np.float64:
            chunk = chunk.astype(np.float64)
        np.dot(u, chunk if idx is None else chunk[idx], out=out[a:b])
    return out


def _decode_both(code: CyclicMDSCode, M, missing=None):
    """Decode with the sum fused into the first pass and without (fresh decoders, same private
    randomness: the kept set may depend on the projection when fewer than s rows lie); both results."""
    out = []
    for fuse in (True, False):
        dec = code._build_decoder()
        dec._fuse = fuse
        out.append(dec.decode(M, missing=missing))
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d", [1, 3000, 70_001])
def test_clean_sum_is_the_old_fused_pass_bit_for_bit(dtype, d):
    rng = np.random.default_rng(d)
    code = CyclicMDSCode(15, 3, seed=1)
    M = code.encode(rng.standard_normal((15, d))).astype(dtype)
    for missing in (None, [2], [0, 7, 14]):
        fused, unfused = _decode_both(code, M, missing)
        dec = code._build_decoder()
        rows = ~np.isin(np.arange(15), missing if missing is not None else [])
        ref = _old_fused_sum(dec, M, rows, dec._solver(rows)[1])
        for res in (fused, unfused):
            assert res.exact and res.flagged == ()
            assert np.array_equal(res.gradient, ref)
        assert fused.info["passes"] == 1 and fused.info["fused"]
        assert unfused.info["passes"] == 2 and not unfused.info["fused"]


def test_every_placement_of_up_to_s_liars_same_output_and_flags():
    """n = 9, s = 2: all 45 placements; fused and unfused agree bitwise, flag the liars, and match
    a float64 reference to the accuracy the old combination had (it is the same combination)."""
    n, s, d = 9, 2, 4000
    rng = np.random.default_rng(0)
    code = CyclicMDSCode(n, s, seed=3)
    G = rng.standard_normal((n, d))
    honest = code.encode(G)
    truth = np.array([np.sum(np.sort(G[:, j].astype(np.longdouble))) for j in range(d)], dtype=np.float64)
    for e in range(1, s + 1):
        for liars in itertools.combinations(range(n), e):
            M = honest.copy()
            M[list(liars)] += rng.standard_normal((e, d)) * 10.0 ** rng.integers(-3, 4)
            fused, unfused = _decode_both(code, M)
            assert fused.exact and unfused.exact
            assert fused.flagged == unfused.flagged == liars
            assert np.array_equal(fused.gradient, unfused.gradient)
            assert fused.info["passes"] == unfused.info["passes"] == 2
            assert np.abs(fused.gradient - truth).max() <= 1e-11 * np.abs(truth).max()


def test_fusing_follows_the_previous_step():
    rng = np.random.default_rng(5)
    code = CyclicMDSCode(15, 2, seed=0)
    M = code.encode(rng.standard_normal((15, 500)))
    bad = M.copy()
    bad[4] += 1.0
    dec = code._build_decoder()
    seen = [dec.decode(x).info["fused"] for x in (M, bad, bad, M, M)]
    assert seen == [True, True, False, False, True]


@pytest.mark.parametrize("poison", [np.nan, np.inf, -np.inf, 1e308])
@pytest.mark.parametrize("fuse", [True, False])
def test_nonfinite_rows_never_certify_a_wrong_sum(poison, fuse):
    n, s, d = 11, 2, 3000
    rng = np.random.default_rng(1)
    code = CyclicMDSCode(n, s, seed=2)
    G = rng.standard_normal((n, d))
    truth = G.sum(0)
    for rows in ([0], [3, 4], [1, 5, 9], [0, 1, 2, 3, 4]):
        M = code.encode(G)
        M[rows, rng.integers(0, d, len(rows))] = poison
        if poison == 1e308:
            M[rows] = 1e308  # finite, but every projection of these rows overflows
        dec = code._build_decoder()
        dec._fuse = fuse
        res = dec.decode(M)
        if res.exact:
            assert np.all(np.isfinite(res.gradient))
            assert np.abs(res.gradient - truth).max() <= 1e-9 * np.abs(truth).max()
            assert set(rows) <= set(res.flagged)


# ------------------------------------------------------------------------------------ majority
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d", [5, (1 << 16) + 17])
def test_fused_vote_same_bits_and_votes(dtype, d):
    rng = np.random.default_rng(d)
    n, r = 15, 5
    G = rng.standard_normal((n // r, d))
    for trial in range(6):
        x = torch.from_numpy(np.repeat(G, r, axis=0)).to(dtype)
        liars = rng.choice(n, int(rng.integers(0, 3)), replace=False)
        for i in liars:
            x[i, rng.integers(0, d)] += 1.0  # one coordinate: a liar the fingerprints may miss
        missing = rng.choice(n, 1) if trial % 2 else None
        gen_a, gen_b = torch.Generator().manual_seed(trial), torch.Generator().manual_seed(trial)
        a = maj.majority_vote(x, group_size=r, missing=missing, generator=gen_a, fuse_sum=True)
        b = maj.majority_vote(x, group_size=r, missing=missing, generator=gen_b)
        # a fingerprint collision sends a group to the slow path, which may change its winner
        assert (a._fused_sum is None) == (a.info["slow_path"] > 0) and b._fused_sum is None
        assert torch.equal(a.agree, b.agree) and torch.equal(a.decided, b.decided)
        assert a.flagged == b.flagged == tuple(sorted(set(liars.tolist()) - set(np.atleast_1d(missing).tolist()
                                                                                  if missing is not None else set())))
        assert torch.equal(a.value_sum(), b.value_sum())


@pytest.mark.parametrize("poison", [float("nan"), float("inf"), 3e38])
def test_repetition_nonfinite_never_exact_and_wrong(poison):
    rng = np.random.default_rng(2)
    code = RepetitionCode(9, s=1)
    G = rng.standard_normal((3, 70_000)).astype(np.float32)
    for rows in ([0], [0, 1], [0, 1, 2], [1, 4, 7]):
        M = code.encode(G)
        M[rows, 5] = poison
        if poison == 3e38:
            M[rows] = 3e38  # finite, but its sum overflows float32
        res = code.decode(M)
        truth = G.astype(np.float64).sum(0)
        within = bool((np.bincount(np.asarray(rows) // 3, minlength=3) < 2).all())  # s = 1 per group
        if within:
            assert res.exact and np.abs(res.gradient - truth).max() <= 1e-5 * np.abs(truth).max()
        elif poison != 3e38:  # a non-finite majority is never certified (a finite one is undetectable)
            assert not res.exact
        assert res.info["nonfinite"] == (len(rows) if np.isnan(poison) or np.isinf(poison) else 0)


def test_all_finite_matches_torch():
    for t in (torch.zeros(10), torch.tensor([1.0, float("nan")]), torch.tensor([float("inf"), -float("inf")]),
              torch.full((4,), 3e38), torch.full((4,), 1e308, dtype=torch.float64), torch.tensor([], dtype=torch.float32)):
        assert maj._all_finite(t) == bool(torch.isfinite(t).all())
