"""The runtime on the local backend: run directory, resume, isolation, reply validation, and the
README's claim (the default scheme trains through an attack that breaks plain averaging)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from codedbft.cluster import Master, RunConfig
from codedbft.cluster.backend import StackBuilder

SMALL = dict(backend="local", workers=6, byzantine=1, dataset="digits", model="logreg", batch_size=60,
             lr=0.2, steps=12, eval_every=4, checkpoint_every=5)


def test_run_directory_holds_config_metrics_summary_checkpoints_and_plots(tmp_path):
    m = Master(RunConfig(**SMALL), run_dir=str(tmp_path))
    summary = m.run()
    m.close()
    assert json.loads((tmp_path / "config.json").read_text())["scheme"] == "draco-repetition"
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(12))
    for key in ("loss", "flagged", "erasures", "decode_ms", "step_ms"):
        assert all(key in r for r in rows)
    assert [r["step"] for r in rows if "test_accuracy" in r] == [3, 7, 11]
    # One Byzantine worker with the omniscient attack, s = 1: flagged every step, never missed.
    assert all(r["flagged"] == r["byzantine"] and len(r["flagged"]) == 1 and r["exact"] for r in rows)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert saved["flagged_total"] == 12 and saved["model_sha256"] == m.model_sha256
    for key in ("final_loss", "final_test_accuracy", "wall_s"):
        assert saved[key] is not None
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["ckpt-00000010.pt", "ckpt-00000012.pt"]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["accuracy.png", "loss.png"]


def test_resume_reaches_the_same_model_as_an_uninterrupted_run(tmp_path):
    cfg = RunConfig(**{**SMALL, "momentum": 0.9, "attack": "alie", "redraw": True})
    full = Master(cfg, run_dir=str(tmp_path / "full"))
    sha = full.run()["model_sha256"]
    cut = Master(cfg, run_dir=str(tmp_path / "cut"))
    for _ in range(7):  # "killed" after step 7: the last checkpoint is at 5
        cut.step()
    cut.close()
    resumed = Master.resume(str(tmp_path / "cut"))
    assert resumed.step_idx == 5
    assert resumed.run()["model_sha256"] == sha
    rows = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(12))  # rows 5, 6 rewritten once, not duplicated


def test_local_dedup_and_per_worker_computation_give_the_same_bits():
    shas = []
    for dedup in (True, False):
        m = Master(RunConfig(**{**SMALL, "steps": 4, "dedup": dedup}))
        shas.append(m.run()["model_sha256"])
    assert shas[0] == shas[1]


def test_isolation_stops_asking_a_worker_after_k_flags():
    cfg = RunConfig(**{**SMALL, "placement": "fixed", "placement_ids": (4,), "isolate_after": 2, "steps": 5})
    m = Master(cfg)
    rows = [m.step() for _ in range(5)]
    assert [r["flagged"] for r in rows] == [[4], [4], [], [], []]
    assert [r["erasures"] for r in rows] == [0, 0, 1, 1, 1]
    assert all(r["exact"] for r in rows) and rows[-1]["isolated"] == [4]
    assert m.summary()["flagged_per_worker"][4] == 2


def test_invalid_replies_become_flagged_erasures_without_an_exception():
    m = Master(RunConfig(**{**SMALL, "byzantine": 0, "tolerate": 1, "attack": None}))
    d = m.core.model.d
    order = m.scheme.first_order()
    good = np.ones(d, np.float32)
    nan = good.copy()
    nan[5] = np.nan
    replies = [good, nan, np.ones(d + 1, np.float32), np.ones(d, np.float64), None, good * np.float32(1e38)]
    assert order.layout == ((d,), torch.float32)  # the order carries its reply layout
    builder = StackBuilder(6, *order.layout)
    for i, msg in enumerate(replies):
        if msg is not None:  # worker 4 never answered
            builder.put(i, msg)
    rep = m._validate(builder.finish(order.workers, {}))
    assert rep.invalid == (1, 2, 3)
    assert rep.missing.tolist() == [False, True, True, True, True, False]
    assert bool(torch.isfinite(rep.messages).all())  # bad rows are zeroed, never passed on as NaN
    assert float(rep.messages[5, 0]) == pytest.approx(1e38)  # huge but finite: the decoder's business
    assert torch.equal(rep.messages[0], torch.ones(d))


def test_a_bad_configuration_fails_before_any_worker_starts():
    with pytest.raises(ValueError, match="divide"):
        Master(RunConfig(**{**SMALL, "workers": 7}))
    with pytest.raises(ValueError, match="batch_size"):
        Master(RunConfig(**{**SMALL, "batch_size": 1}))
    with pytest.raises(ValueError, match="attack"):
        Master(RunConfig(**{**SMALL, "attack": "no-such-attack"}))


@pytest.mark.slow
def test_default_job_trains_through_an_attack_that_breaks_averaging():
    """README claim: the default job (draco-repetition, 15 workers, 2 Byzantine, omniscient c=10,
    MLP on digits) reaches > 90 % test accuracy; vanilla averaging under the same attack does not.
    Run here on the local backend: the Ray backend produces the same bits (tests/test_runtime_ray.py)."""
    default = Master(RunConfig(backend="local"))
    s = default.run()
    assert s["final_test_accuracy"] > 0.90
    assert s["flagged_total"] == 2 * 300 and s["inexact_steps"] == 0
    vanilla = Master(RunConfig(backend="local", scheme="vanilla", steps=100))
    assert vanilla.run()["final_test_accuracy"] < 0.5


RRR = dict(backend="local", scheme="rrr", workers=15, byzantine=2, dataset="digits", model="logreg", batch_size=150, lr=0.2,
           placement="fixed", placement_ids=(3, 7), attack="omniscient")


def test_rrr_is_exact_every_step_and_isolates_the_liars_forever():
    clean = Master(RunConfig(**{**RRR, "byzantine": 0, "tolerate": 2, "attack": None, "placement": "random", "placement_ids": None,
                               "steps": 6}))
    clean_rows = [clean.step() for _ in range(6)]
    assert all(r["efficiency"] == pytest.approx(1 / 3) for r in clean_rows)  # 1/(f+1) with nobody lying
    m = Master(RunConfig(**{**RRR, "steps": 6}))
    rows = [m.step() for _ in range(6)]
    # Reactive copies are honest bits, summed in partition order: the attacked run IS the clean run.
    assert m.model_sha256 == clean.model_sha256
    assert all(r["exact"] for r in rows)
    assert rows[0]["flagged"] == [3, 7] and rows[0]["rounds"] > 1
    assert all(r["flagged"] == [] and r["isolated_by_scheme"] == [3, 7] for r in rows[1:])
    # Both liars isolated: f' = 0 faults remain, so one copy per partition is enough from then on.
    assert all(r["efficiency"] == 1.0 for r in rows[1:])


def test_rrr_randomized_checks_hide_until_replies_and_checked_steps_are_exact():
    m = Master(RunConfig(**{**RRR, "scheme": "rrr-randomized", "scheme_params": {"q": 0.3}, "steps": 12}))
    rows = [m.step() for _ in range(12)]
    checked = [r["checked"] for r in rows]
    first = checked.index(True)
    assert all(r["exact"] == r["checked"] for r in rows)
    assert rows[first]["flagged"] == [3, 7]  # caught at the first check...
    assert all(r["isolated_by_scheme"] == [3, 7] for r in rows[first:])  # ...and never asked again
    assert all(r["flagged"] == [] for r in rows if r["step"] != first)
    assert all(r["efficiency"] == 1.0 for r in rows if not r["checked"])


@pytest.mark.parametrize("extra", [
    dict(scheme="vanilla", aggregator="centered-clipping", workers=6),
    dict(scheme="detox", aggregator="centered-clipping", workers=6, byzantine=0, tolerate=None),
    # ByzShield's decoder holds the rule it was built with: state must go into that live object
    dict(scheme="byzshield", aggregator="centered-clipping", workers=15, byzantine=3, batch_size=100,
         placement="worst", attack="alie"),
    dict(scheme="rrr", workers=7, byzantine=2, attack="alie"),
], ids=["vanilla-cclip", "detox-cclip", "byzshield-cclip", "rrr"])
def test_stateful_schemes_resume_bit_identically(tmp_path, extra):
    cfg = RunConfig(**{**SMALL, "steps": 8, "checkpoint_every": 3, "momentum": 0.9, **extra})
    full = Master(cfg, run_dir=str(tmp_path / "full"))
    sha = full.run()["model_sha256"]
    cut = Master(cfg, run_dir=str(tmp_path / "cut"))
    for _ in range(5):
        cut.step()
    live = cut.scheme.aggregator
    resumed = Master.resume(str(tmp_path / "cut"))
    assert resumed.step_idx == 3
    if live is not None:  # restored into the objects the scheme (and its decoder) already hold
        decoder_rule = getattr(getattr(resumed.scheme.code, "decoder", lambda: None)(), "aggregator", None)
        assert decoder_rule is None or decoder_rule is resumed.scheme.aggregator
        assert resumed.scheme.aggregator.state_dict().keys() == live.state_dict().keys()
    assert resumed.run()["model_sha256"] == sha


def test_a_backend_registered_by_name_runs_the_self_describing_orders_alone():
    """A backend is a class plus a registry line; it sees orders (partitions, coefficients, reply
    layout, step), never the scheme, and gives the local simulator's model."""
    from codedbft.cluster.backend import BACKENDS
    from codedbft.cluster.local import LocalBackend

    class Recording(LocalBackend):
        orders: list = []

        def execute(self, order, w, coalition, timeout_s):
            self.orders.append(order)
            return super().execute(order, w, coalition, timeout_s)

    BACKENDS.register("recording-for-test", Recording)
    try:
        cfg = RunConfig(**{**SMALL, "scheme": "draco-cyclic", "workers": 5, "attack": "alie", "steps": 3})
        sha = Master(cfg.replace(backend="recording-for-test")).run()["model_sha256"]
    finally:
        BACKENDS.unregister("recording-for-test")
    assert sha == Master(cfg).run()["model_sha256"]
    assert [o.step for o in Recording.orders] == [0, 1, 2]
    d = Master(cfg).core.model.d
    code = Master(cfg).scheme.code
    for order in Recording.orders:
        assert order.layout == ((d,), torch.float64)  # the cyclic code's real coefficients promote
        for w in order.workers:
            assert np.array_equal(order.coefficients_of(w), code.B[w, list(order.tasks[w])])
