"""The one adversary path (codedbft.cluster.adversary): who forges, what the attack sees, what a failed
forgery becomes, and the same erasures, flags and model on the local and the Ray backend for rounds
where the attack cannot run (ALIE on RRR's reactive rounds) or fails (an attack that raises)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from codedbft.attacks.base import ATTACKS, Attack
from codedbft.cluster import Master, RunConfig
from codedbft.cluster.adversary import Adversary, forge_here, forging_round
from codedbft.cluster.backend import StackBuilder


class FlakyForTest(Attack):
    """Sends -10x its own honest message on even steps and raises on odd ones (a failing attack)."""

    name = "flaky-for-test"

    def _forge(self, honest, ids, ctx):
        if ctx.step % 2:
            raise RuntimeError(f"cannot forge at step {ctx.step}")
        return -10.0 * ctx.own


@pytest.fixture(scope="module", autouse=True)
def flaky_registered():
    """Registered for this module only: other modules see the built-in attacks alone."""
    ATTACKS.register(obj=FlakyForTest)
    yield
    ATTACKS.unregister(FlakyForTest.name)


def test_a_registered_attack_does_not_join_mixeds_default_pool():
    from codedbft.attacks import Mixed

    assert "flaky-for-test" in ATTACKS and "flaky-for-test" not in {a.name for a in Mixed().attacks}


def _sink(rows: np.ndarray, missing=()) -> StackBuilder:
    sink = StackBuilder(rows.shape[0], rows.shape[1:], torch.float64)
    for i, r in enumerate(rows):
        if i not in missing:
            sink.put(i, r)
    return sink


def test_only_present_byzantine_workers_forge_and_the_attack_sees_only_present_honest_rows():
    rows = np.arange(12, dtype=np.float64).reshape(6, 2)
    seen = {}

    def run(job):
        seen.update(ids=job.ids, honest=job.honest.copy(), own=job.own.copy())
        return forge_here(job)

    sink = _sink(rows, missing=(1, 4))
    coalition = Adversary(FlakyForTest(), seed=0, n=6).at(step=0, byzantine=(2, 4))
    info = forging_round(coalition, (0, 1, 2, 3, 4, 5), sink, run)
    assert seen["ids"] == (2,)  # worker 4 never replied: it has nothing to forge from
    assert np.array_equal(seen["honest"], rows[[0, 3, 5]]) and np.array_equal(seen["own"], rows[[2]])
    assert np.array_equal(sink.stack[2].numpy(), -10 * rows[2]) and info["forgers"] == 1
    assert sink.missing.tolist() == [False, True, False, False, True, False]


def test_a_forgery_that_raises_makes_every_forger_an_erasure_never_its_honest_message():
    rows = np.ones((5, 3))
    sink = _sink(rows)
    coalition = Adversary(FlakyForTest(), seed=0, n=5).at(step=1, byzantine=(0, 3))
    info = forging_round(coalition, tuple(range(5)), sink, forge_here)
    assert sink.missing.tolist() == [True, False, False, True, False] and not sink.bad.any()
    assert "cannot forge at step 1" in info["forge_failed"]
    done = sink.finish(tuple(range(5)), {})
    assert float(done.stack[[0, 3]].abs().sum()) == 0.0


def test_a_forgery_of_the_wrong_shape_is_a_bad_reply():
    sink = _sink(np.ones((4, 3)))
    coalition = Adversary(FlakyForTest(), seed=0, n=4).at(step=0, byzantine=(1,))
    forging_round(coalition, tuple(range(4)), sink, lambda job: {1: np.ones(7)})
    assert sink.bad.tolist() == [False, True, False, False]


def test_data_level_attacks_and_rounds_without_byzantine_workers_have_no_forging_round():
    from codedbft.attacks import by_name

    sink = _sink(np.ones((4, 2)))
    called = []
    flip = Adversary(by_name("label-flip"), seed=0, n=4).at(0, (1,))
    assert forging_round(flip, tuple(range(4)), sink, called.append) == {} and flip.poisoned(1)
    none = Adversary(FlakyForTest(), seed=0, n=4).at(0, ())
    assert forging_round(none, tuple(range(4)), sink, called.append) == {} and not called
    assert not sink.missing.any()


def test_an_attack_that_cannot_run_on_a_full_round_is_rejected_before_any_worker_starts():
    # ALIE's statistics need h >= 1 honest messages; every worker Byzantine leaves none
    with pytest.raises(ValueError, match="h >= 1"):
        Master(RunConfig(backend="ray", scheme="vanilla", workers=4, byzantine=4, attack="alie",
                         aggregator="mean", dataset="digits", model="logreg", batch_size=40))


# -- the same cases on both backends ---------------------------------------------------------------
CASES = {
    # f = 2 of n = 5: one partition, group {0, 1, 2}, spares 3, 4. Round 1: 2 honest rows of 5 make
    # ALIE's f = n - h = 3 exceed n // 2, so liar 2's forgery fails (an erasure); the reactive round
    # asks worker 3 alone, a liar with no honest row at all (another erasure); then worker 4.
    "rrr-alie-partial-rounds": dict(scheme="rrr", workers=5, byzantine=2, attack="alie", placement="fixed",
                                    placement_ids=(2, 3)),
    # the forgery raises on odd steps: the forger is an erasure there, corrected within 2e + m <= 2s
    "repetition-failing-attack": dict(scheme="draco-repetition", workers=6, byzantine=1, attack="flaky-for-test"),
}
COMMON = dict(dataset="digits", model="logreg", batch_size=60, lr=0.2, steps=4, eval_every=4, timeout_s=120.0)


def _rows(cfg: RunConfig, backend=None) -> tuple[list[tuple], str]:
    m = Master(cfg, backend=backend)
    rows = [m.step() for _ in range(cfg.steps)]
    if backend is None:
        m.close()
    return [(r["erasures"], tuple(r["flagged"]), r["exact"], r["rounds"]) for r in rows], m.model_sha256


def test_alie_on_a_reactive_round_without_honest_rows_is_an_erasure_and_the_step_stays_exact():
    rows, _ = _rows(RunConfig(backend="local", **COMMON, **CASES["rrr-alie-partial-rounds"]))
    # every step: both forgeries fail (2 erasures, nobody flagged), three rounds, still exact
    assert rows == [(2, (), True, 3)] * 4


def test_the_failing_attack_case_erases_the_forger_on_odd_steps_locally():
    rows, _ = _rows(RunConfig(backend="local", **COMMON, **CASES["repetition-failing-attack"]))
    assert [r[0] for r in rows] == [0, 1, 0, 1]  # erasure exactly when the forgery raised
    assert all(r[2] for r in rows) and [bool(r[1]) for r in rows] == [True, False, True, False]


@pytest.fixture(scope="module")
def ray_backend(ray_session):
    from ray import cloudpickle

    from codedbft.cluster.ray_backend import RayBackend

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # actors cannot import this test module
    b = RayBackend(num_cpus=0.1, max_restarts=1)
    yield b
    b.close()


@pytest.mark.ray
@pytest.mark.parametrize("case", list(CASES))
def test_local_and_ray_agree_on_erasures_flags_and_model_when_forging_fails(ray_backend, case):
    cfg = RunConfig(backend="ray", **COMMON, **CASES[case])
    local_rows, local_sha = _rows(cfg.replace(backend="local"))
    ray_rows, ray_sha = _rows(cfg, ray_backend)
    assert ray_rows == local_rows and ray_sha == local_sha
    assert sum(r[0] for r in local_rows) > 0  # the case really produced failed forgeries
