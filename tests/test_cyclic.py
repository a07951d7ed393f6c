"""DRACO's cyclic MDS code (real construction) and its syndrome decoder.

References are float64 sums of the partition gradients; placements are exhaustive where C(n, e) is
small and a seeded sample (always including every run of adjacent workers, the ill-conditioned
case for Prony) otherwise.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from codedbft.encoders import CyclicMDSCode
from info_vocabulary import assert_common_info

ATTACKS = ("huge", "tiny", "collude", "sign", "zero", "nan", "inf")


def _attack(M: np.ndarray, ids, kind: str, rng: np.random.Generator) -> None:
    ids = list(ids)
    if not ids:
        return
    d = M.shape[1]
    if kind == "huge":
        M[ids] = 1e30
    elif kind == "tiny":  # 1e-6 relative, per coordinate
        M[ids] *= 1.0 + 1e-6 * rng.standard_normal((len(ids), d))
    elif kind == "collude":  # all send the same wrong vector, of honest size
        M[ids] = rng.standard_normal(d) * np.abs(M).mean()
    elif kind == "sign":
        M[ids] *= -1.0
    elif kind == "zero":
        M[ids] = 0.0
    elif kind == "nan":
        M[ids, ::3] = np.nan
    elif kind == "inf":
        M[ids, 1] = np.inf
        M[ids, 2] = -np.inf
    else:  # pragma: no cover
        raise AssertionError(kind)


def _rel(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _placements(n: int, e: int, rng: np.random.Generator, limit: int):
    if math.comb(n, e) <= limit:
        return [tuple(c) for c in itertools.combinations(range(n), e)]
    adjacent = [tuple(sorted((i + t) % n for t in range(e))) for i in range(n)]
    rand = [tuple(sorted(rng.choice(n, e, replace=False).tolist())) for _ in range(limit - n)]
    return adjacent + rand


# ----------------------------------------------------------------------------- construction
@pytest.mark.parametrize("n,s", [(1, 0), (5, 0), (7, 1), (7, 3), (15, 3), (45, 5), (101, 10)])
def test_structure(n, s):
    code = CyclicMDSCode(n, s)
    assert (code.n, code.k, code.s) == (n, n, s)
    assert code.redundancy == 2 * s + 1
    B = code.B
    assert B.dtype == np.float64 and not np.iscomplexobj(B)
    support = [tuple(sorted(np.flatnonzero(B[i]).tolist())) for i in range(n)]
    assert support == [tuple(sorted(a)) for a in code.assignment]
    assert all(a == tuple((i + t) % n for t in range(2 * s + 1)) for i, a in enumerate(code.assignment))
    b = code.coefficients
    assert np.all(b > 0) and abs(b.sum() - 1) < 1e-15 and np.allclose(b, b[::-1], rtol=1e-12)
    # every column of B is a codeword of the trigonometric code, which the parity check annihilates
    V = code.basis
    assert np.abs(B - V @ np.linalg.lstsq(V, B, rcond=None)[0]).max() < 1e-13
    if s:
        assert np.abs(code.parity_check @ V).max() < 1e-12 * n
    assert np.linalg.matrix_rank(B) == n - 2 * s
    # encode = B @ G (float64 reference), and the honest messages sum to the gradient sum
    G = np.random.default_rng(n).standard_normal((n, 13))
    M = code.encode(G)
    assert np.abs(M - B @ G).max() < 1e-14 * max(1, np.abs(G).max())
    assert _rel(M.sum(0), G.sum(0)) < 1e-14


@pytest.mark.parametrize("n,s", [(7, 2), (15, 3), (45, 5)])
def test_any_n_minus_2s_rows_determine_the_sum(n, s):
    code = CyclicMDSCode(n, s)
    rng = np.random.default_rng(1)
    for rows in _placements(n, n - 2 * s, rng, 60):
        Bs = code.B[list(rows)]
        u, *_ = np.linalg.lstsq(Bs.T, np.ones(n), rcond=None)  # 1^T in the row space of B_rows
        assert np.abs(Bs.T @ u - 1).max() < 1e-6, rows


def test_config_errors():
    with pytest.raises(ValueError, match=r"n >= 2s\+1"):
        CyclicMDSCode(5, 3)
    with pytest.raises(ValueError, match="odd"):
        CyclicMDSCode(16, 3)
    with pytest.raises(ValueError, match="s must be >= 0"):
        CyclicMDSCode(7, -1)
    code = CyclicMDSCode(7, 1)
    with pytest.raises(ValueError, match="shape"):
        code.encode(np.zeros((6, 3)))
    with pytest.raises(ValueError, match="shape"):
        code.decode(np.zeros((6, 3)))
    with pytest.raises(ValueError, match="missing"):
        code.decode(np.zeros((7, 3)), missing=[7])
    from codedbft.decoders import SyndromeDecoder

    with pytest.raises(ValueError, match="projections"):
        SyndromeDecoder(code, projections=0)


# ----------------------------------------------------------------------------- exact decoding
def _check(code, G, ids, attack, rng, missing=None, tol=1e-9):
    M = code.encode(G)
    _attack(M, ids, attack, rng)
    res = code.decode(M, missing=missing)
    assert res.exact, (ids, attack, res.info["reason"])
    assert res.flagged == tuple(sorted(ids)), (ids, attack, res.flagged)
    assert _rel(res.gradient, G.sum(0)) < tol, (ids, attack)
    return res


@pytest.mark.parametrize("n,s,limit", [(7, 1, 100), (7, 2, 100), (7, 3, 100), (11, 2, 100),
                                       (15, 3, 500), (45, 5, 70)])
@pytest.mark.parametrize("attack", ATTACKS)
def test_every_placement_up_to_s(n, s, limit, attack):
    """Every placement of e <= s adversaries (exhaustive while C(n, e) is within the limit, else all
    n adjacent runs plus random ones): exact sum, and the flagged set is exactly the placed workers."""
    rng = np.random.default_rng(n * 100 + s)
    code = CyclicMDSCode(n, s, seed=0)
    G = rng.standard_normal((n, 48))
    for e in range(1, s + 1):
        cap = limit if e == s else max(limit // 4, n)
        placements = _placements(n, e, rng, cap)
        assert len(placements) == (math.comb(n, e) if math.comb(n, e) <= cap else cap)
        flagged = {_check(code, G, ids, attack, rng).flagged for ids in placements}
        assert flagged == set(placements)  # each placement named exactly, none merged or missed


def test_mixed_magnitudes_deflate():
    """1e30 rows next to a 1e-6 relative perturbation: locate the big ones, erase, locate again."""
    rng = np.random.default_rng(3)
    code = CyclicMDSCode(45, 5, seed=1)
    G = rng.standard_normal((45, 64))
    for _ in range(20):
        ids = sorted(rng.choice(45, 5, replace=False).tolist())
        M = code.encode(G)
        _attack(M, ids[:3], "huge", rng)
        _attack(M, ids[3:], "tiny", rng)
        res = code.decode(M)
        assert res.exact and res.flagged == tuple(ids)
        assert _rel(res.gradient, G.sum(0)) < 1e-9


def test_no_fault_is_one_plain_sum():
    code = CyclicMDSCode(15, 3, seed=0)
    G = np.random.default_rng(0).standard_normal((15, 100))
    res = code.decode(code.encode(G))
    assert res.exact and res.flagged == () and res.info["iterations"] == 0
    assert res.info["kept"] == 15 and abs(res.info["amplification"] - 1) < 1e-12
    assert _rel(res.gradient, G.sum(0)) < 1e-15


def test_relative_error_n45_s5_d1e5():
    rng = np.random.default_rng(45)
    code = CyclicMDSCode(45, 5, seed=2)
    G = rng.standard_normal((45, 100_000))
    for ids in ([0, 1, 2, 3, 4], [3, 11, 20, 28, 40]):
        res = _check(code, G, ids, "collude", rng)
        assert _rel(res.gradient, G.sum(0)) < 1e-9


# ----------------------------------------------------------------------------- erasures
@pytest.mark.parametrize("n,s", [(7, 2), (15, 3), (45, 5)])
def test_errors_and_erasures_at_the_limit(n, s):
    rng = np.random.default_rng(n + 7)
    code = CyclicMDSCode(n, s, seed=3)
    G = rng.standard_normal((n, 40))
    for e in range(0, s + 1):
        m = 2 * s - 2 * e
        for trial in range(12):
            perm = rng.permutation(n)
            if trial == 0:  # everything adjacent
                perm = np.roll(np.arange(n), -int(rng.integers(n)))
            err, miss = perm[:e].tolist(), perm[e:e + m].tolist()
            M = code.encode(G)
            M[miss] = np.nan if trial % 2 else 0.0  # a missing row's content must not matter
            attack = ATTACKS[trial % len(ATTACKS)]
            _attack(M, err, attack, rng)
            mask = np.zeros(n, dtype=bool)
            mask[miss] = True
            res = code.decode(M, missing=mask if trial % 3 else miss)  # bool mask or ids
            assert res.exact, (e, m, res.info["reason"])
            assert res.flagged == tuple(sorted(err)), (err, miss, res.flagged)
            assert _rel(res.gradient, G.sum(0)) < 1e-8
            assert set(res.info["erasure_ids"]) >= set(miss) and res.info["erasures"] >= len(miss)


@pytest.mark.parametrize("n,s", [(7, 2), (15, 3), (45, 5)])
def test_one_past_the_limit_is_not_exact(n, s):
    """2e + m = 2s + 1 is always detected (no codeword lies within the budget); nothing crashes."""
    rng = np.random.default_rng(n + 11)
    code = CyclicMDSCode(n, s, seed=4)
    G = rng.standard_normal((n, 40))
    for e in range(1, s + 1):
        m = 2 * s + 1 - 2 * e
        for _ in range(6):
            perm = rng.permutation(n)
            err, miss = perm[:e].tolist(), perm[e:e + m].tolist()
            M = code.encode(G)
            _attack(M, err, "collude", rng)
            res = code.decode(M, missing=miss)
            assert not res.exact and res.info["reason"], (e, m)
            assert np.asarray(res.gradient).shape == (40,)


def test_too_many_erasures_and_nonfinite():
    code = CyclicMDSCode(15, 3, seed=5)
    G = np.random.default_rng(5).standard_normal((15, 30))
    M = code.encode(G)
    M[:4] = np.nan
    res = code.decode(M, missing=[4, 5, 6])  # 7 erasures > 2s = 6
    assert not res.exact and "erasures" in res.info["reason"]
    assert res.flagged == (0, 1, 2, 3)  # non-finite rows are flagged, missing ones are not
    assert np.isfinite(res.gradient).all()
    # s+1 colluders, no erasures: beyond the guarantee, flagged as not exact here
    M = code.encode(G)
    M[[2, 7, 9, 13]] = 5.0
    res = code.decode(M)
    assert not res.exact


# ----------------------------------------------------------------------------- array kinds
def test_torch_in_torch_out_and_float32():
    code = CyclicMDSCode(15, 3, seed=6)
    rng = np.random.default_rng(6)
    G = rng.standard_normal((15, 500))
    Gt = torch.from_numpy(G)
    Mt = code.encode(Gt)
    assert isinstance(Mt, torch.Tensor) and Mt.dtype == torch.float64
    Mt[[1, 8]] = 1e30
    res = code.decode(Mt, missing=torch.tensor([False] * 14 + [True]))
    assert isinstance(res.gradient, torch.Tensor) and res.gradient.dtype == torch.float64
    assert res.exact and res.flagged == (1, 8)
    assert _rel(res.gradient.numpy(), G.sum(0)) < 1e-12
    # float32 messages: decoded in float64, tolerance follows the input precision
    M32 = code.encode(G).astype(np.float32)
    M32[4] *= -1
    res = code.decode(M32)
    assert res.exact and res.flagged == (4,) and res.gradient.dtype == np.float64
    assert _rel(res.gradient, G.sum(0)) < 1e-5


# ----------------------------------------------------------------------------- diagnostics and protocol



def test_info_vocabulary_clean_attacked_and_past_the_limit():
    code = CyclicMDSCode(15, 3, seed=7)
    G = np.random.default_rng(7).standard_normal((15, 60))
    res = code.decode(code.encode(G))
    assert_common_info(res)
    assert res.exact and res.info["erasures"] == res.info["nonfinite"] == 0 and res.info["locator"] == "clean"
    assert {"project_ms", "locate_ms", "combine_ms"} <= res.info.keys()

    M = code.encode(G)
    M[[2, 9]] = 1e6
    M[4, 0] = np.nan
    res = code.decode(M, missing=[11])  # 2 errors, 2 erasures: 2e + m = 6 = 2s
    assert_common_info(res)
    assert res.exact and res.flagged == (2, 4, 9) and res.info["locator"] == "prony"
    assert res.info["erasures"] == 2 and res.info["nonfinite"] == 1 and res.info["missing"] == 1
    assert res.info["erasure_ids"] == (4, 11) and res.info["nonfinite_ids"] == (4,)

    M = code.encode(G)
    M[:4] = np.nan
    res = code.decode(M, missing=[4, 5, 6])  # 7 erasures > 2s
    assert_common_info(res)
    assert not res.exact and res.info["erasures"] == 7 and res.info["nonfinite"] == 4
    M = code.encode(G)
    M[[2, 7, 9, 13]] = 5.0  # s + 1 colluders
    res = code.decode(M)
    assert_common_info(res)
    assert not res.exact


def test_cyclic_code_announces_its_optional_pieces():
    code = CyclicMDSCode(15, 3)
    assert code.linear and code.B is not None and code.B.shape == (15, 15)
    assert code.encodes_gradients and not code.has_distortion
    with pytest.raises(NotImplementedError):
        code.max_distortion(1)
    np.testing.assert_allclose(code.encode(np.eye(15)), code.B, atol=1e-15)
    for flag in ("linear", "has_distortion", "encodes_gradients"):
        with pytest.raises(AttributeError):
            setattr(code, flag, True)
