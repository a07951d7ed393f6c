"""The master's secrets: the randomness the decoders' guarantees rest on never reaches a worker.

A Byzantine worker sees its spec, its orders, its program and the broadcast model. With a master
seed set, nothing of those holds it (checked byte for byte on everything the backend is handed),
and randomized RRR's checked steps cannot be predicted from what a worker knows (the run seed);
the decoders' own projections and fingerprints are fresh OS entropy per decoder."""

from __future__ import annotations

import pickle

import numpy as np
import torch

from codedbft.cluster import Master, RunConfig
from codedbft.cluster.local import LocalBackend

SECRET = 0x5EC2E7_1234ABCD  # distinctive bytes: a chance match in the shipped data is ~1e-19 per offset
BASE = dict(backend="local", dataset="digits", model="logreg", batch_size=60, lr=0.2, momentum=0.0, seed=3)


class Recording(LocalBackend):
    """Everything a worker could ever see, as the backend is handed it."""

    def __init__(self) -> None:
        super().__init__()
        self.shipped: list[object] = []

    def start(self, n, spec, dataset=None, programs=None):
        self.shipped += [spec, list(programs or [])]
        super().start(n, spec, dataset, programs)

    def broadcast(self, w):
        self.shipped.append(w.clone())
        return super().broadcast(w)

    def execute(self, order, w, coalition, timeout_s, quorum=None):
        self.shipped.append(order)
        return super().execute(order, w, coalition, timeout_s)


def _holds(blob: bytes, secret: int) -> bool:
    return secret.to_bytes(8, "little") in blob or str(secret).encode() in blob


def _shipped(**kw) -> tuple[bytes, Master]:
    backend = Recording()
    m = Master(RunConfig(**{**BASE, **kw}), backend=backend)
    m.run()
    return pickle.dumps(backend.shipped), m


def test_nothing_shipped_to_a_worker_holds_the_master_seed():
    for kw in (dict(scheme="rrr-randomized", workers=6, byzantine=1, attack="sign-flip", steps=6,
                    scheme_params={"q": 0.5}),
               dict(scheme="data-encoding", dataset="synthetic-regression", model="linear", workers=7, byzantine=1,
                    attack="gaussian", batch_size=70, steps=3)):
        blob, m = _shipped(master_seed=SECRET, **kw)
        assert not _holds(blob, SECRET), kw["scheme"]
        assert m.scheme.secret == SECRET  # ... while the master does use it
        # and the spec carries the public seed only
        assert "master_seed" not in m.spec.__dataclass_fields__ and "secret" not in m.spec.__dataclass_fields__


def test_randomized_rrr_checks_cannot_be_predicted_from_the_run_seed():
    kw = dict(scheme="rrr-randomized", workers=6, byzantine=0, attack=None, steps=40, scheme_params={"q": 0.5})
    m = Master(RunConfig(**{**BASE, **kw}, master_seed=SECRET))
    rows = [m.step() for _ in range(40)]
    checked = [bool(r["checked"]) for r in rows]
    from_secret = [bool(np.random.default_rng([SECRET, t, 0xC4EC]).random() < 0.5) for t in range(40)]
    from_seed = [bool(np.random.default_rng([3, t, 0xC4EC]).random() < 0.5) for t in range(40)]
    assert checked == from_secret and checked != from_seed
    # the default (no master seed) is the seed itself: reproducible, and documented as predictable
    default = Master(RunConfig(**{**BASE, **kw}))
    assert [bool(default.step()["checked"]) for _ in range(40)] == from_seed


def test_decoders_draw_their_private_randomness_from_os_entropy():
    from codedbft.encoders import CyclicMDSCode, RepetitionCode

    a, b = CyclicMDSCode(7, 2).decoder(), CyclicMDSCode(7, 2).decoder()
    assert not np.array_equal(a._random_vector(64), b._random_vector(64))
    x, y = RepetitionCode(9, s=1).decoder(), RepetitionCode(9, s=1).decoder()
    sx = torch.randint(0, 2**62, (1,), generator=x._generator).item()
    sy = torch.randint(0, 2**62, (1,), generator=y._generator).item()
    assert sx != sy
