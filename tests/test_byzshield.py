"""ByzShield MOLS codes: assignment structure, optimal-attack distortion, vote + robust decoding."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from codedbft.encoders import ByzShieldCode, RepetitionCode
from codedbft.encoders.byzshield import incidence_matrix, mols, optimal_attack
from info_vocabulary import assert_common_info as check_info

# docs/codes.md §3 (ByzShield, MLSys 2021, reproduced by exhaustive search): K = 15, q = 2..7.
BYZSHIELD_L5_R3 = [0.04, 0.12, 0.20, 0.32, 0.48, 0.56]
DETOX_K15_R3 = [0.2, 0.2, 0.4, 0.4, 0.6, 0.6]


def corrupted_files(assignment, k: int, workers, threshold: int) -> int:
    """Reference count, in plain Python: files holding >= threshold copies from ``workers``."""
    copies = [0] * k
    for w in workers:
        for x in assignment[w]:
            copies[x] += 1
    return sum(c >= threshold for c in copies)


def brute_force_eps(assignment, k: int, q: int, threshold: int) -> int:
    return max(corrupted_files(assignment, k, S, threshold) for S in itertools.combinations(range(len(assignment)), q))


@pytest.fixture(scope="module")
def code53() -> ByzShieldCode:
    return ByzShieldCode(5, 3)


# ---- the distortion table ------------------------------------------------------------------------


def test_byzshield_table_reproduced_exactly(code53):
    got = [code53.max_distortion(q)[0] for q in range(2, 8)]
    assert got == pytest.approx(BYZSHIELD_L5_R3, abs=1e-12)
    assert all(code53.max_distortion_info(q).method == "exhaustive" for q in range(2, 8))


def test_detox_row_with_repetition_code():
    rep = RepetitionCode(n=15, r=3)
    assert [rep.max_distortion(q)[0] for q in range(2, 8)] == pytest.approx(DETOX_K15_R3, abs=1e-12)
    # The same numbers from our generic exhaustive search on DETOX's assignment.
    W = incidence_matrix(rep.assignment, rep.k)
    assert [optimal_attack(W, q, 2).fraction for q in range(2, 8)] == pytest.approx(DETOX_K15_R3, abs=1e-12)


def test_no_redundancy_is_q_over_k():
    K = 15
    W = incidence_matrix(RepetitionCode(n=K, r=1).assignment, K)
    for q in range(K + 1):
        assert optimal_attack(W, q, 1).fraction == pytest.approx(q / K)
    # r = 1 MOLS (one square): every worker holds l whole files, so q workers corrupt q/K of them.
    one = ByzShieldCode(5, 1)
    assert [one.max_distortion(q)[0] for q in range(6)] == pytest.approx([q / 5 for q in range(6)])


@pytest.mark.parametrize("q", range(0, 8))
def test_returned_workers_corrupt_that_many_files(code53, q):
    frac, workers = code53.max_distortion(q)
    assert len(workers) == q == len(set(workers))
    assert corrupted_files(code53.assignment, code53.k, workers, 2) == round(frac * code53.k)


@pytest.mark.parametrize(("l", "r"), [(3, 2), (4, 3), (5, 2)])
def test_exhaustive_matches_brute_force(l, r):
    code = ByzShieldCode(l, r)
    t = (r + 1) // 2
    for q in range(code.n + 1):
        info = code.max_distortion_info(q)
        assert info.files == brute_force_eps(code.assignment, code.k, q, t)
        assert info.files <= round(info.upper_bound * code.k)


def test_upper_bound_holds_and_is_tight_somewhere(code53):
    infos = [code53.max_distortion_info(q) for q in range(code53.n + 1)]
    assert all(i.fraction <= i.upper_bound + 1e-12 for i in infos)
    # The spectral bound beats edge counting (q*l // 2) at small q: 2 files for q = 2, not 5.
    assert round(infos[2].upper_bound * 25) == 2


def test_heuristic_finds_the_optimum_at_k15_and_stays_below_the_bound(code53):
    for q in range(1, 9):
        h = code53.max_distortion_info(q, method="heuristic")
        assert h.method == "heuristic"
        assert h.files == code53.max_distortion_info(q).files
        assert corrupted_files(code53.assignment, code53.k, h.workers, 2) == h.files


def test_large_code_uses_heuristic_within_bound():
    code = ByzShieldCode(11, 5)  # K = 55 > 25: exhaustive search is out of reach
    for q in (2, 3, 9, 14):
        info = code.max_distortion_info(q)
        assert info.method == "heuristic"
        assert info.fraction <= info.upper_bound
        assert corrupted_files(code.assignment, code.k, info.workers, 3) == info.files
    # q <= s = 2 workers cannot own 3 copies of any file; 3 workers from distinct squares meet in 1.
    assert code.max_distortion(2)[0] == 0.0
    assert code.max_distortion_info(3).files == 1


def test_s_and_max_tolerated(code53):
    assert code53.s == 1 and code53.max_distortion(code53.s)[0] == 0.0
    assert code53.max_distortion(code53.s + 1)[0] > 0.0
    assert code53.max_tolerated() == 6  # eps_hat(6) = 0.48 < 1/2 <= eps_hat(7) = 0.56


# ---- MOLS structure ------------------------------------------------------------------------------


@pytest.mark.parametrize(("l", "r"), [(2, 1), (3, 2), (5, 3), (5, 4), (7, 3), (4, 3), (8, 5)])
def test_mols_assignment_properties(l, r):
    code = ByzShieldCode(l, r)
    assert (code.n, code.k, code.redundancy) == (r * l, l * l, r)
    W = code.incidence.astype(int)
    assert W.shape == (r * l, l * l)
    assert (W.sum(axis=1) == l).all()  # each worker holds l files
    assert (W.sum(axis=0) == r).all()  # each file goes to r workers ...
    square_of = np.arange(code.n) // l
    for x in range(code.k):
        holders = np.flatnonzero(W[:, x])
        assert sorted(square_of[holders]) == list(range(r))  # ... one per square
    shared = W @ W.T
    same_square = square_of[:, None] == square_of[None, :]
    off = ~np.eye(code.n, dtype=bool)
    assert (shared[off & same_square] == 0).all()  # a square partitions the files
    assert (shared[off & ~same_square] == 1).all()  # orthogonality: exactly one common file
    assert code.assignment == tuple(tuple(np.flatnonzero(row)) for row in W)
    # file_rows maps each file to the message rows that carry it
    flat = np.asarray(code.assignment).ravel()
    assert (flat[code.file_rows] == np.arange(code.k)[:, None]).all()


def test_latin_squares_are_latin_and_orthogonal():
    for l in (4, 7, 8):
        L = mols(l, l - 1)
        for a in range(l - 1):
            assert all(sorted(row) == list(range(l)) for row in L[a])
            assert all(sorted(col) == list(range(l)) for col in L[a].T)
            for b in range(a + 1, l - 1):
                assert len(set(zip(L[a].ravel(), L[b].ravel()))) == l * l


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(l=6, r=2), "prime power"),
        (dict(l=12, r=3), "prime power"),
        (dict(l=1, r=1), "prime power"),
        (dict(l=5, r=5), "r <= l-1"),
        (dict(l=5, r=0), "1 <= r"),
        (dict(l=5, r=3, q=16), "q <= n"),
        (dict(l=5, r=3, q=-1), "0 <= q"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ByzShieldCode(**kwargs)


def test_bad_search_arguments(code53):
    with pytest.raises(ValueError, match="q <= K"):
        code53.max_distortion(16)
    with pytest.raises(ValueError, match="method"):
        code53.max_distortion_info(3, method="annealing")
    with pytest.raises(ValueError, match="K <= 40"):
        ByzShieldCode(11, 5).max_distortion_info(3, method="exhaustive")


# ---- encode / decode -----------------------------------------------------------------------------


def file_gradients(code, d=33, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal((code.k, d)).astype(dtype)


def assert_within_honest_range(gradient, G, k, corrupted):
    """k * (robust estimate) lies, per coordinate, between k * min and k * max of the honest files.

    Scaling by k is monotone under rounding, so the comparison is exact in floating point.
    """
    honest = np.delete(G, np.asarray(corrupted, dtype=int), axis=0)
    assert ((gradient >= k * honest.min(axis=0)) & (gradient <= k * honest.max(axis=0))).all()


def test_encode_sends_each_held_file(code53):
    G = file_gradients(code53)
    M = code53.encode(G)
    assert M.shape == (code53.n, code53.l, G.shape[1])
    for w, files in enumerate(code53.assignment):
        np.testing.assert_array_equal(M[w], G[list(files)])
    Mt = code53.encode(torch.from_numpy(G))
    assert isinstance(Mt, torch.Tensor) and torch.equal(Mt, torch.from_numpy(M))


def test_no_fault_is_exact(code53):
    G = file_gradients(code53)
    res = code53.decode(code53.encode(G))
    assert res.exact and res.flagged == ()
    np.testing.assert_allclose(res.gradient, G.sum(axis=0), rtol=1e-15, atol=1e-14)
    assert (res.info["votes"] == 3).all()


@pytest.mark.parametrize("as_torch", [False, True])
def test_liars_that_corrupt_no_file_are_named_and_gradient_is_exact(as_torch):
    # Two liars in the same square hold disjoint files: one bad copy out of three everywhere.
    code = ByzShieldCode(5, 3, q=2)
    G = file_gradients(code, dtype=np.float32)
    M = code.encode(G)
    liars = (1, 3)
    rng = np.random.default_rng(1)
    for w in liars:
        M[w] = rng.standard_normal(M[w].shape) * 100
    res = code.decode(torch.from_numpy(M) if as_torch else M)
    assert isinstance(res.gradient, torch.Tensor) == as_torch
    assert res.exact and res.info["certified"]
    assert res.flagged == liars
    g = res.gradient.numpy() if as_torch else res.gradient
    np.testing.assert_allclose(g, G.astype(np.float64).sum(axis=0), rtol=1e-6, atol=1e-6)


def test_single_liar_with_default_q_is_exact(code53):
    G = file_gradients(code53)
    M = code53.encode(G)
    M[7] *= -3.0
    res = code53.decode(M)
    assert res.exact and res.flagged == (7,)
    np.testing.assert_allclose(res.gradient, G.sum(axis=0), rtol=1e-15, atol=1e-14)


def test_colluders_winning_a_file_are_not_certified():
    # Workers 0 (square 1) and 5 (square 2) share one file; they agree on a false value there and
    # are honest elsewhere, so the observations look like one liar (the honest third holder). With
    # q = 2 the decoder must consider that explanation and fall back to the robust rule; and since
    # {0, 5} and {third} both explain the copies, nobody is in every explanation: nobody is flagged.
    code = ByzShieldCode(5, 3, q=2)
    G = file_gradients(code)
    M = code.encode(G)
    (x,) = set(code.assignment[0]) & set(code.assignment[5])
    for w in (0, 5):
        M[w, code.assignment[w].index(x)] = 1e6
    res = code.decode(M)
    assert not res.exact and res.info["files_aggregated"] == code.k
    honest_third = [w for w in range(code.n) if x in code.assignment[w] and w not in (0, 5)]
    assert res.flagged == () and res.info["dissenter_ids"] == tuple(honest_third)
    assert_within_honest_range(res.gradient, G, code.k, corrupted=[x])


def _lie_where_they_win(code, M, byz):
    """Colluders send 1e6 only on the files where they hold 2 of 3 copies (and win the vote there),
    honest values elsewhere: lying everywhere would give them away in their other files."""
    won = set(np.flatnonzero(code.incidence[list(byz)].sum(axis=0) >= 2).tolist())
    for w in byz:
        for c, f in enumerate(code.assignment[w]):
            if f in won:
                M[w, c] = 1e6


@pytest.mark.parametrize("q", [3, 6])
def test_worst_case_placement_is_masked_by_the_median_or_explained(code53, q):
    code = ByzShieldCode(5, 3, q=q)
    G = file_gradients(code, d=64, seed=q)
    M = code.encode(G)
    eps, byz = code.max_distortion(q)
    everywhere = M.copy()
    everywhere[list(byz)] = 1e6
    res = code.decode(everywhere)  # lying on every file: the liars' other files name them, globally
    assert res.exact and res.flagged == tuple(sorted(byz))
    np.testing.assert_allclose(res.gradient, G.sum(axis=0), rtol=1e-12)
    _lie_where_they_win(code, M, byz)
    res = code.decode(M)
    if q == 6:  # 6 liars winning 12 files: no other set of <= 6 workers explains the copies
        assert res.exact and res.flagged == tuple(sorted(byz))
        np.testing.assert_allclose(res.gradient, G.sum(axis=0), rtol=1e-12)
        return
    # q = 3: the 3 honest third holders of the won files explain the copies as well: not certified
    assert not res.exact and res.info["explanations"] == 2 and res.flagged == ()
    won = int(round(eps * code.k))
    assert res.info["decided"].all() and int((res.info["votes"] >= 2).sum()) == code.k
    assert res.info["f"] == won
    copies = code.incidence[list(byz)].sum(axis=0)
    corrupted = np.flatnonzero(copies >= 2)
    assert corrupted.size == won
    assert_within_honest_range(res.gradient, G, code.k, corrupted)


def test_bad_worker_input_is_handled_and_counted(code53):
    G = file_gradients(code53)
    M = code53.encode(G)
    M[2, 0] = np.nan
    M[2, 3, 5] = np.inf
    res = code53.decode(M)
    assert res.exact and res.flagged == (2,) and res.info["nonfinite"] == 2
    np.testing.assert_allclose(res.gradient, G.sum(axis=0), rtol=1e-15, atol=1e-14)

    M = code53.encode(G)
    M[4] = 0.0
    M[9] = 1e300  # huge but finite
    res = ByzShieldCode(5, 3, q=2).decode(M)
    assert res.flagged == (4, 9) and np.isfinite(res.gradient).all()


def test_erasures(code53):
    G = file_gradients(code53)
    M = code53.encode(G)
    res = code53.decode(M, missing=[6])
    assert res.exact and res.flagged == () and res.info["missing"] == 1
    assert res.info["erasures"] == code53.l  # the missing worker's l copies
    assert (res.info["copies"] >= 2).all()
    np.testing.assert_allclose(res.gradient, G.sum(axis=0), rtol=1e-15, atol=1e-14)
    # An erasure and a liar in the same file leave a 1-1 tie: that file is undecided, never exact.
    (x,) = set(code53.assignment[0]) & set(code53.assignment[5])
    M[5, code53.assignment[5].index(x)] += 1.0
    res = code53.decode(M, missing=[0])
    assert not res.exact and res.info["undecided"] == 1 and res.info["undecided_ids"] == (x,)
    assert np.isfinite(res.gradient).all()


def test_custom_aggregator_callable():
    code = ByzShieldCode(5, 3, aggregator=lambda V: V.mean(dim=0), q=2)
    G = file_gradients(code)
    M = code.encode(G)
    (x,) = set(code.assignment[0]) & set(code.assignment[5])
    for w in (0, 5):
        M[w, code.assignment[w].index(x)] += 1.0  # same shift on both: they win file x
    res = code.decode(M)
    assert not res.exact
    # mean over files, times k, is the sum with file x shifted by one
    np.testing.assert_allclose(res.gradient, G.sum(axis=0) + 1.0, rtol=1e-12)


def test_certification_is_sound_under_random_collusion():
    """Whenever the decoder says exact, the gradient is the true sum and only liars are flagged.

    Liar sets of size <= q, each liar copy honest, a value shared by the liars of that file
    (collusion), or its own junk, chosen at random; the tests must hit both outcomes.
    """
    rng = np.random.default_rng(7)
    code = ByzShieldCode(5, 3, q=2)
    G = file_gradients(code, d=8)
    truth = G.sum(axis=0)
    outcomes = {True: 0, False: 0}
    for _ in range(150):
        M = code.encode(G)
        liars = rng.choice(code.n, size=int(rng.integers(1, 3)), replace=False)
        shared = rng.standard_normal((code.k, 8))
        for w in liars:
            for p, x in enumerate(code.assignment[w]):
                kind = rng.integers(3)
                if kind == 1:
                    M[w, p] = shared[x]
                elif kind == 2:
                    M[w, p] = rng.standard_normal(8)
        res = code.decode(M)
        outcomes[res.exact] += 1
        if res.exact:
            np.testing.assert_allclose(res.gradient, truth, rtol=1e-12, atol=1e-12)
            assert set(res.flagged) <= set(int(w) for w in liars)
    # deciding globally certifies all but the few colluding placements a third holder could explain
    assert outcomes[True] > 100 and outcomes[False] >= 1


def test_robust_rule_that_cannot_run_on_the_files_is_a_config_error():
    # q = 6 corrupts 12 of 25 files: Multi-Krum needs n >= 2f+3 = 27 files.
    with pytest.raises(ValueError, match="n >= 2f\\+3"):
        ByzShieldCode(5, 3, q=6, aggregator="multi-krum")
    # q = 7 corrupts 14 files: even the median (n >= 2f+1) cannot keep an honest majority.
    with pytest.raises(ValueError, match="n >= 2f\\+1"):
        ByzShieldCode(5, 3, q=7)
    assert ByzShieldCode(5, 3, q=6).f_files == 12


def test_erasures_that_lose_files_skip_the_step():
    code = ByzShieldCode(5, 3, q=6)  # median sized for f = 12 needs all 25 files
    G = file_gradients(code)
    lost = [w for w in range(code.n) if 0 in code.assignment[w]]  # the r holders of file 0
    res = code.decode(code.encode(G), missing=lost)
    assert res.info["skipped"] and not res.exact
    assert (res.gradient == 0).all()
    # With the default q = s the median needs one file: the other 24 are aggregated.
    res = ByzShieldCode(5, 3).decode(code.encode(G), missing=lost)
    assert not res.info["skipped"] and res.info["files_aggregated"] == 24
    assert_within_honest_range(res.gradient, G, code.k, corrupted=[])


# ---- diagnostics vocabulary (codedbft.decoders.base), the decoder's home, the Code protocol ------

STAGES = {"vote_ms", "certify_ms", "combine_ms", "aggregate_ms"}


def assert_common_info(res) -> None:
    check_info(res, STAGES)


def test_info_vocabulary_certified_robust_and_skipped(code53):
    G = file_gradients(code53)
    M = code53.encode(G)
    M[3, 1, 0] = np.nan  # one non-finite copy of a present worker
    res = code53.decode(M, missing=[6])
    assert_common_info(res)
    assert res.exact and res.info["certified"] and res.info["aggregate_ms"] == 0.0
    assert res.info["erasures"] == code53.l + 1 and res.info["nonfinite"] == 1 and res.info["missing"] == 1

    code = ByzShieldCode(5, 3, q=3)
    _, byz = code.max_distortion(3)
    M = code.encode(G)
    _lie_where_they_win(code, M, byz)
    res = code.decode(M)  # colluders win files and a third-holder set explains them too: the median runs
    assert_common_info(res)
    assert not res.exact and "robust rule" in res.info["reason"] and res.info["combine_ms"] == 0.0

    lost = [w for w in range(code.n) if 0 in code.assignment[w]]
    res = ByzShieldCode(5, 3, q=6).decode(code.encode(G), missing=lost)
    assert_common_info(res)
    assert not res.exact and res.info["skipped"] and "skipped" in res.info["reason"]
    assert res.info["undecided"] == 1 and res.info["undecided_ids"] == (0,)
    assert res.info["erasures"] == len(lost) * code.l


def test_decoder_lives_in_decoders_and_is_reexported():
    import subprocess
    import sys

    import codedbft.decoders
    import codedbft.decoders.byzshield as home
    import codedbft.encoders.byzshield as old

    assert old.ByzShieldDecoder is home.ByzShieldDecoder is codedbft.decoders.ByzShieldDecoder
    assert type(ByzShieldCode(5, 3).decoder()) is home.ByzShieldDecoder
    # the decoders never import the encoders at import time (the encoders import the decoders)
    probe = ("import sys, codedbft.decoders.byzshield; "
             "assert not [m for m in sys.modules if m.startswith('codedbft.encoders')], 'cycle'; "
             "from codedbft.encoders.byzshield import ByzShieldDecoder")
    subprocess.run([sys.executable, "-c", probe], check=True)


def test_byzshield_code_announces_its_optional_pieces(code53):
    assert not code53.linear and code53.B is None
    assert code53.has_distortion and code53.max_distortion(1)[0] == 0.0
    assert code53.encodes_gradients and code53.encode(np.ones((code53.k, 2))).shape == (code53.n, code53.l, 2)
    assert RepetitionCode(15, r=3).has_distortion
    for flag in ("linear", "has_distortion", "encodes_gradients"):
        with pytest.raises(AttributeError):
            setattr(code53, flag, True)
