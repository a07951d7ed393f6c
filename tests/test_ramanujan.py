"""ByzShield's Ramanujan-bigraph assignments: structure, spectrum, Table 4, decoding, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from codedbft.encoders import ByzShieldCode, ramanujan_assignment
from codedbft.encoders.byzshield import incidence_matrix
from codedbft.encoders.ramanujan import (
    biadjacency,
    ramanujan_bound,
    ramanujan_case,
    ramanujan_params,
    ramanujan_sizes,
    second_singular_value,
    worker_file_matrix,
)
from codedbft.schemes.registry import build_scheme
from test_byzshield import corrupted_files  # the same plain-Python reference count

# ByzShield (MLSys 2021) Table 4: Ramanujan Case 2, m = s = 5 (K = 25 workers, 25 files, r = 5),
# files an optimal q-attack corrupts for q = 3..7 (eps_hat = 0.04, 0.04, 0.08, 0.16, 0.20).
TABLE4_FILES = {3: 1, 4: 1, 5: 2, 6: 4, 7: 5}

CASE1 = [(2, 3), (3, 5), (4, 5), (3, 7), (6, 7)]  # (m, s) with m < s
CASE2 = [(5, 5), (3, 3), (6, 3), (10, 5), (4, 2)]  # m >= s, s | m


@pytest.fixture(scope="module")
def code55() -> ByzShieldCode:
    return ByzShieldCode(5, 5, assignment="ramanujan")




# ---- the paper's table ---------------------------------------------------------------------------


def test_table4_reproduced_exactly(code55):
    assert (code55.n, code55.k, code55.l, code55.r, code55.ramanujan) == (25, 25, 5, 5, (5, 5, 2))
    for q, files in TABLE4_FILES.items():
        info = code55.max_distortion_info(q)
        assert info.method == "exhaustive" and info.files == files
        assert code55.max_distortion(q)[0] == pytest.approx(files / 25, abs=1e-12)
        assert corrupted_files(code55.assignment, 25, info.workers, 3) == files
        assert files <= round(info.upper_bound * 25)


@pytest.mark.parametrize(("l", "r"), [(3, 2), (2, 2), (4, 2)])
def test_exhaustive_matches_brute_force(l, r):
    code = ByzShieldCode(l, r, assignment="ramanujan")
    t = (r + 1) // 2
    for q in range(code.n + 1):
        brute = max(corrupted_files(code.assignment, code.k, S, t) for S in itertools.combinations(range(code.n), q))
        assert code.max_distortion_info(q).files == brute


# ---- structure -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("m", "s"), CASE1 + CASE2)
def test_biregular_sizes_and_overlaps(m, s):
    case = ramanujan_case(m, s)
    assert case == (1 if m < s else 2)
    sizes = ramanujan_sizes(m, s)
    A = ramanujan_assignment(m, s)
    W = incidence_matrix(A, sizes["f"])
    assert W.shape == (sizes["K"], sizes["f"])
    assert all(len(a) == sizes["load"] and list(a) == sorted(set(a)) for a in A)
    assert (W.sum(axis=0) == sizes["r"]).all()
    shared = W @ W.T
    np.fill_diagonal(shared, 0)
    # Case 1 and the square Case 2: two workers share at most one file; m > s: up to m / s.
    assert shared.max() == (1 if m <= s else m // s)
    np.testing.assert_array_equal(worker_file_matrix(m, s), biadjacency(m, s).T if case == 1 else biadjacency(m, s))


def test_block_structure_is_powers_of_the_cyclic_shift():
    m, s = 4, 5
    P = np.roll(np.eye(s, dtype=np.int8), -1, axis=1)  # P[a, a - 1] = 1
    B = biadjacency(m, s)
    for i, j in itertools.product(range(s), range(m)):
        np.testing.assert_array_equal(B[i * s:(i + 1) * s, j * s:(j + 1) * s], np.linalg.matrix_power(P, i * j))


@pytest.mark.parametrize(("m", "s"), CASE1 + CASE2)
def test_ramanujan_property(m, s):
    W = worker_file_matrix(m, s).astype(np.float64)
    d_l, d_r = int(W.sum(axis=1)[0]), int(W.sum(axis=0)[0])
    sv = np.linalg.svd(W, compute_uv=False)
    assert sv[0] == pytest.approx(np.sqrt(d_l * d_r))
    lam = second_singular_value(W)
    assert lam == pytest.approx(np.sqrt(d_l))  # sqrt(s) in Case 1, sqrt(m) in Case 2
    assert lam <= ramanujan_bound(d_l, d_r) + 1e-9


def test_case1_matches_mols_sizes_and_code_mapping():
    ram, mols = ByzShieldCode(5, 3, assignment="ramanujan"), ByzShieldCode(5, 3)
    assert (ram.n, ram.k, ram.l, ram.r, ram.s, ram.redundancy) == (mols.n, mols.k, mols.l, mols.r, mols.s, mols.redundancy)
    assert ram.ramanujan == (3, 5, 1) and mols.ramanujan is None and mols.assignment_kind == "mols"
    assert ram.assignment == ramanujan_assignment(3, 5)
    assert ramanujan_params(10, 5) == (10, 5, 2) and ByzShieldCode(10, 5, assignment="ramanujan").n == 25
    G = np.arange(ram.k, dtype=np.float64)[:, None]  # file x's gradient is x: encode returns held ids
    np.testing.assert_array_equal(ram.encode(G)[..., 0], np.asarray(ram.assignment, dtype=np.float64))


# ---- decoding ------------------------------------------------------------------------------------


def test_liars_within_the_guarantee_are_flagged_and_decoding_is_exact(code55):
    # r = 5: s = 2 liars hold at most 2 of any file's 5 copies, so every vote keeps an honest majority.
    G = np.random.default_rng(0).standard_normal((code55.k, 17))
    M = code55.encode(G)
    assert M.shape == (25, 5, 17)
    liars = (3, 17)
    for w in liars:
        M[w] = 1e3 * np.random.default_rng(w).standard_normal(M[w].shape)
    res = code55.decode(M)
    assert res.exact and res.flagged == liars
    np.testing.assert_allclose(res.gradient, G.sum(axis=0), rtol=1e-12)


def test_case2_with_shared_pairs_decodes_exactly():
    code = ByzShieldCode(6, 3, assignment="ramanujan")  # m = 6, s = 3: 9 workers, 18 files, pairs share 2
    G = np.random.default_rng(1).standard_normal((code.k, 8))
    M = code.encode(G)
    M[4] *= -7.0
    res = code.decode(M)
    assert res.exact and res.flagged == (4,)
    np.testing.assert_allclose(res.gradient, G.sum(axis=0), rtol=1e-12)


def test_worst_case_attack_beyond_s_is_masked_by_the_median():
    code = ByzShieldCode(5, 5, assignment="ramanujan", q=5)
    assert code.f_files == 2
    G = np.random.default_rng(2).standard_normal((code.k, 16))
    M = code.encode(G)
    _, byz = code.max_distortion(5)
    won = set(np.flatnonzero(code.incidence[list(byz)].sum(axis=0) >= 3).tolist())
    for w in byz:  # lie only where the colluders win the vote
        for c, f in enumerate(code.assignment[w]):
            if f in won:
                M[w, c] = 1e6
    res = code.decode(M)
    honest = np.delete(G, sorted(won), axis=0)
    assert ((res.gradient >= code.k * honest.min(axis=0)) & (res.gradient <= code.k * honest.max(axis=0))).all()


# ---- scheme layer and errors ---------------------------------------------------------------------


def test_scheme_param_assignment():
    s = build_scheme(name="byzshield", workers=25, byzantine=2, params={"r": 5, "assignment": "ramanujan"})
    assert (s.n, s.k, s.code.ramanujan) == (25, 25, (5, 5, 2))
    assert build_scheme(name="byzshield", workers=15, byzantine=1).code.assignment_kind == "mols"
    with pytest.raises(ValueError, match="mols, ramanujan"):
        build_scheme(name="byzshield", workers=15, byzantine=1, params={"assignment": "latin"})
    with pytest.raises(ValueError, match="n=25 workers, not n=50"):
        build_scheme(name="byzshield", workers=50, byzantine=1, params={"r": 5, "l": 10, "assignment": "ramanujan"})


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: ramanujan_case(3, 4), "s must be prime"),
        (lambda: ramanujan_case(0, 5), "m >= 1"),
        (lambda: ramanujan_case(7, 5), "s | m"),
        (lambda: biadjacency(2, 9), "s must be prime"),
        (lambda: ramanujan_params(4, 6), "r < l with l prime"),
        (lambda: ramanujan_params(6, 4), "r prime with r | l"),
        (lambda: ramanujan_params(5, 0), ">= 1"),
        (lambda: ByzShieldCode(5, 5, assignment="latin"), "'mols', 'ramanujan'"),
        (lambda: ByzShieldCode(5, 7, assignment="ramanujan"), "ramanujan assignment needs"),
        (lambda: ByzShieldCode(5, 5), "r <= l-1"),
    ],
)
def test_bad_parameters_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
