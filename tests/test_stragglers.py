"""Don't wait for stragglers: a DRACO code with spare distance decodes from the replies in hand
(``--wait-for auto``), late replies are erasures, and the model stays exact; actor groups host
several workers per process and give the simulator's bytes."""

from __future__ import annotations

import pytest

from codedbft.cluster import Master, RunConfig
from codedbft.cluster.actor_group import spread
from codedbft.schemes import Quorum, SchemeConfig, build_scheme

BASE = dict(dataset="digits", model="logreg", lr=0.2, momentum=0.0, steps=8, eval_every=8, seed=2)


def test_quorum_budget_is_per_repetition_group_and_global_for_cyclic():
    rep = build_scheme(SchemeConfig(name="draco-repetition", workers=14, byzantine=1, tolerate=3))  # r = 7, 2 groups
    q = rep.quorum(rep.first_order())
    assert q.budget == 4 and sorted(map(len, q.groups)) == [7, 7]
    assert q.enough(set(range(14)) - {0, 1, 2, 3}) and not q.enough(set(range(14)) - {0, 1, 2, 3, 4})
    assert q.enough(set(range(14)) - {0, 1, 7, 8, 9, 10})  # 2 and 4 missing: each group within budget
    cyc = build_scheme(SchemeConfig(name="draco-cyclic", workers=15, byzantine=1, tolerate=2))
    qc = cyc.quorum(cyc.first_order())
    assert qc.groups == (tuple(range(15)),) and qc.budget == 2
    # no spare distance (s = b) or a rule-based scheme: wait for all
    assert build_scheme(SchemeConfig(name="draco-cyclic", workers=15, byzantine=2)).quorum(cyc.first_order()) is None
    van = build_scheme(SchemeConfig(name="vanilla", workers=5, byzantine=1, aggregator="median"))
    assert van.quorum(van.first_order()) is None
    assert Quorum(((0, 1, 2),), 0).enough({0, 1, 2}) and not Quorum(((0, 1, 2),), 0).enough({0, 1})


def test_actors_host_workers_round_robin_so_a_group_spreads_over_processes():
    groups = spread(14, 4)
    assert groups == [(0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10), (3, 7, 11)]
    assert sorted(w for g in groups for w in g) == list(range(14))
    assert spread(3, 8) == [(0,), (1,), (2,)]


@pytest.mark.parametrize("bad,match", [
    (dict(wait_for="soon"), "wait_for"),
    (dict(straggle="0.1"), "P:FACTOR"),
    (dict(straggle="1.5:5"), "0 <= P <= 1"),
    (dict(wait_for="auto", worker_momentum=0.5, scheme="draco-repetition"), "worker momentum"),
    (dict(actors=0), "actors"),
])
def test_bad_runtime_options_raise_naming_the_constraint(bad, match):
    with pytest.raises(ValueError, match=match):
        RunConfig(**{**BASE, **bad})


@pytest.mark.ray
# one actor per worker: a straggler is late alone (actor groups, the default, are what every other Ray
# test runs on; here the test would only wait longer for a whole group)
@pytest.mark.parametrize("actors", [5], ids=["one-per-worker"])
def test_stragglers_are_erasures_and_the_model_is_the_simulators(ray_session, actors):
    from codedbft.cluster.ray_backend import RayBackend

    # one repetition group of r = 5 (s = 2) against b = 1: 2 replies may be late at every step
    kw = dict(BASE, scheme="draco-repetition", workers=5, tolerate=2, byzantine=1, attack="omniscient",
              placement="fixed", placement_ids=(3,), batch_size=50, wait_for="auto", straggle="0.3:40", steps=6)
    m_local = Master(RunConfig(**kw, backend="local"))
    local = m_local.run()
    m_local.close()
    backend = RayBackend(num_cpus=0.1, actors=actors)
    try:
        m = Master(RunConfig(**kw, backend="ray", timeout_s=120.0), backend=backend)
        rows = [m.step() for _ in range(kw["steps"])]
        if actors is None:
            assert 1 < len(backend.actors) < 5  # several workers per process
    finally:
        backend.close()
    # the vote picks identical honest copies, so the model is the simulator's bit for bit, every step
    # exact and only the liar flagged (when its reply was not among the late ones), whatever came late
    assert m.model_sha256 == local["model_sha256"]
    assert all(r["exact"] and set(r["flagged"]) <= {3} for r in rows)
    if actors == 5:  # one process per worker: a straggling worker is late alone, and an erasure
        assert sum(r["erasures"] for r in rows) > 0
