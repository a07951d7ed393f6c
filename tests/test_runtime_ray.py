"""The Ray backend: the same model bit for bit as the local simulator, and a worker process killed
mid-run is restarted while its missing replies are corrected as erasures (same final model).

Run as every Ray test is (CONTRIBUTING.md: in a private loopback network namespace). One set of 6
warm actors serves every test of the module (actor start-up costs seconds per process)."""

from __future__ import annotations

import os
import signal

import pytest

from codedbft.cluster import Master, RunConfig
from codedbft.cluster.ray_backend import RayBackend

pytestmark = pytest.mark.ray

# n = 6: draco-repetition with s = 1 and DETOX both use 2 groups of 3 workers, so both schemes run on
# the same worker spec (k = 2 partitions of 30 samples) and share the actors.
BASE = dict(workers=6, byzantine=1, dataset="digits", model="logreg", batch_size=60, lr=0.2, steps=6,
            eval_every=3, timeout_s=120.0, num_cpus=0.1)


@pytest.fixture(scope="module")
def backend(ray_session):
    b = RayBackend(num_cpus=0.1, max_restarts=3)
    yield b
    b.close()


def sha(cfg: RunConfig, backend=None) -> tuple[str, Master]:
    m = Master(cfg, backend=backend)
    s = m.run()
    if backend is None:
        m.close()
    return s["model_sha256"], m


@pytest.mark.parametrize("scheme,attack,extra,flagged", [
    ("draco-repetition", "omniscient", {}, 6),
    ("detox", "alie", {}, 6),
    # Interactive: RRR asks for reactive copies within the step, caught once then isolated (f = 2: k = 2).
    ("rrr", "omniscient", {"tolerate": 2, "redraw": False}, 1),
])
def test_ray_and_local_produce_the_same_model(backend, scheme, attack, extra, flagged):
    cfg = RunConfig(**{**BASE, "scheme": scheme, "attack": attack, "backend": "ray", "redraw": True, **extra})
    local, _ = sha(cfg.replace(backend="local"))
    remote, m = sha(cfg, backend)
    assert remote == local
    assert m.totals["flagged"] == flagged and m.totals["erasures"] == 0


def test_a_killed_worker_is_an_erasure_and_the_run_ends_with_the_exact_model(backend):
    # No Byzantine worker, a code built for s = 1: the crash is one erasure per group, within 2e + m <= 2s.
    cfg = RunConfig(**{**BASE, "byzantine": 0, "tolerate": 1, "attack": None, "steps": 8}, backend="ray")
    reference, _ = sha(cfg.replace(backend="local"))
    m = Master(cfg, backend=backend)
    for _ in range(3):
        m.step()
    victim = backend.pids()[4]
    os.kill(victim, signal.SIGKILL)
    rows = [m.step() for _ in range(5)]
    assert m.model_sha256 == reference
    assert rows[0]["erasures"] >= 1 and all(r["exact"] and not r["flagged"] for r in rows)
    assert victim not in backend.pids()  # restarted: a new process serves worker 4


def test_a_restart_does_not_depend_on_the_freed_dataset_object(backend):
    """The dataset reaches the actors by a method call, not the constructor (no 'constructor
    arguments in the object store' error): a killed actor is restarted from small inline arguments,
    asks for its data again, and the run ends on the simulator's model. Ray keeping the object
    alive for a restart is not what it rests on: the test drops the creation-time reference first."""
    import gc

    cfg = RunConfig(**{**BASE, "byzantine": 0, "tolerate": 1, "attack": None, "steps": 6}, backend="ray")
    reference, _ = sha(cfg.replace(backend="local"))
    m = Master(cfg, backend=backend)
    m.step()
    backend._data_ref = None  # the master no longer keeps the object alive
    gc.collect()
    victim = backend.pids()[1]
    os.kill(victim, signal.SIGKILL)
    rows = [m.step() for _ in range(2)]
    assert victim not in backend.pids()  # waits until restarted
    rows += [m.step() for _ in range(3)]  # the first ask after the restart brings its data back
    assert m.model_sha256 == reference and all(r["exact"] for r in rows)
    assert rows[0]["erasures"] >= 1 and rows[-1]["erasures"] == 0  # back in service
