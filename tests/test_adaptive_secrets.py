"""An adaptive attacker given everything a worker can see still cannot make a decoder accept a wrong sum.

The attacker here is stronger than any worker: it knows the code, every honest message (the
omniscient privilege), the run seed, and runs its OWN copy of the master's decoder (same class,
same parameters, its own randomness) as an oracle. It searches for errors its copy accepts as
exact with a wrong sum: errors orthogonal to its copy's projections (what a worker would send if
the master's projections were predictable, e.g. drawn from the run seed), the smallest possible
error (one ulp in one coordinate), sparse and dense errors, errors forming a shifted codeword on the
liars' rows, and the candidates its oracle accepted. Within the guarantee (at most s liars), the
master's decoder must then either flag the liars and return the true sum, or not claim exactness.
A decoder whose private randomness a worker could reproduce fails the orthogonal-error case.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from codedbft.encoders import CyclicMDSCode, DataEncodingCode, RepetitionCode


def _candidates(honest: np.ndarray, liars: tuple[int, ...], oracle_r: np.ndarray, rng) -> list[np.ndarray]:
    """Forged message stacks, each differing from ``honest`` on the liars' rows only; the first three
    are errors far above rounding (the decoder must name the liars), the last two at rounding level
    (it may not: the sum it returns is then right within rounding, and that is what is asserted)."""
    n, d = honest.shape
    out = []
    e = rng.standard_normal((len(liars), d))
    # orthogonal to the oracle's projection: invisible to a decoder that projects on oracle_r
    e_orth = e - np.outer(e @ oracle_r, oracle_r) / (oracle_r @ oracle_r)
    ulp = np.zeros((len(liars), d))
    ulp[:, d // 2] = np.spacing(np.abs(honest[list(liars), d // 2])) + 1e-300
    sparse = np.zeros((len(liars), d))
    sparse[:, rng.integers(d)] = 1e3
    for err in (e_orth, sparse, 1e6 * e, ulp, 1e-12 * e):
        m = honest.copy()
        m[list(liars)] += err
        out.append(m)
    return out


def _check(decoder, forged: np.ndarray, truth: np.ndarray, liars: tuple[int, ...], rtol: float) -> None:
    res = decoder.decode(forged)
    if res.exact:  # claiming exactness within the guarantee is claiming the true sum
        got = np.asarray(res.gradient, dtype=np.float64)
        assert np.allclose(got, truth, rtol=rtol, atol=rtol * np.abs(truth).max()), "accepted a wrong sum"
        assert set(res.flagged) <= set(liars), "flagged an honest worker"


@pytest.mark.parametrize("n,s", [(7, 1), (9, 2), (11, 3)])
def test_cyclic_syndrome_decoder_resists_an_oracle_guided_attacker(n, s):
    rng = np.random.default_rng(n)
    code = CyclicMDSCode(n, s)
    d = 257
    G = rng.standard_normal((code.k, d))
    honest = np.asarray(code.encode(G))
    truth = G.sum(0)
    oracle = code.decoder()  # the attacker's own copy: same algorithm, its own private randomness
    master = code.decoder()
    for liars in itertools.islice(itertools.combinations(range(n), s), 12):
        for i, forged in enumerate(_candidates(honest, liars, oracle._random_vector(d), rng)):
            _check(master, forged, truth, liars, 1e-7)
            res = master.decode(forged)
            assert res.exact  # s liars: always corrected ...
            assert i >= 3 or set(res.flagged) == set(liars)  # ... and named unless within rounding


def test_majority_vote_resists_the_one_ulp_and_orthogonal_attacks():
    rng = np.random.default_rng(5)
    code = RepetitionCode(9, s=1)
    d = 301
    G = rng.standard_normal((code.k, d)).astype(np.float32)
    honest = np.asarray(code.encode(G))
    truth = np.asarray(code.encode(G))[::3].astype(np.float64).sum(0)  # one copy per group
    master = code.decoder()
    oracle_r = rng.standard_normal(d)
    for liars in [(0,), (4,), (8,)]:
        forged_all = [f.astype(np.float32) for f in _candidates(honest.astype(np.float64), liars, oracle_r, rng)]
        one_ulp = honest.copy()
        one_ulp[liars[0], d // 2] = np.nextafter(one_ulp[liars[0], d // 2], np.float32(np.inf))
        for forged in forged_all[:3] + [one_ulp]:  # copies compare bit for bit: one ulp is a lie too
            res = master.decode(forged)
            assert res.exact and set(res.flagged) == set(liars)
            assert np.allclose(np.asarray(res.gradient, dtype=np.float64), truth, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("m,t", [(7, 2), (11, 3)])
def test_l1_decoder_resists_errors_orthogonal_to_a_guessed_projection(m, t):
    rng = np.random.default_rng(m)
    code = DataEncodingCode(m, t)
    dec, oracle = code.decoder(), code.decoder()
    D = 64
    Z = rng.standard_normal((code.k, D))
    honest = code.generator @ Z
    truth_rows = Z
    guessed = rng.standard_normal(D)  # what the attacker believes the master projects on
    for liars in itertools.islice(itertools.combinations(range(m), t), 10):
        for i, forged in enumerate(_candidates(honest, liars, guessed, rng)):
            res = dec.decode(forged)
            assert res.exact, (liars, i)
            assert np.allclose(np.asarray(res.gradient), truth_rows, rtol=1e-7, atol=1e-7)
            assert set(res.flagged) <= set(liars), (liars, i, res.flagged)
            assert i >= 3 or set(res.flagged) == set(liars)
        oracle.decode(honest)  # the attacker's copy never influences the master's


def test_a_shifted_codeword_on_the_liars_rows_is_corrected():
    """The liars send the code's messages for another gradient G + Δ: consistent among themselves,
    and still only s rows of a distance-(2s+1) code."""
    rng = np.random.default_rng(0)
    code = CyclicMDSCode(11, 3)
    G = rng.standard_normal((code.k, 128))
    honest = np.asarray(code.encode(G))
    shifted = np.asarray(code.encode(G + rng.standard_normal(G.shape)))
    master = code.decoder()
    for liars in itertools.islice(itertools.combinations(range(11), 3), 20):
        forged = honest.copy()
        forged[list(liars)] = shifted[list(liars)]
        res = master.decode(forged)
        assert res.exact and set(res.flagged) == set(liars)
        assert np.allclose(np.asarray(res.gradient), G.sum(0), rtol=1e-8, atol=1e-8)
