"""Rules that need the server's own data (ByGARS++, Zeno) train in the master setting.

Before codedbft.cluster.server_oracle existed these rules raised inside the scheme's decode (no
auxiliary gradient / loss oracle), the error became a zero update every step, and the model never
left its initialisation: these tests fail on that code (accuracy at chance, one sha for every run).
"""

from __future__ import annotations

import pytest

from codedbft.cluster import RunConfig
from codedbft.cluster.trainer import Trainer, make_trainer

BASE = dict(backend="local", scheme="vanilla", workers=8, dataset="digits", model="logreg", lr=0.2,
            batch_size=160, steps=40, eval_every=40, log_every=40)


def _run(**kw):
    tr = make_trainer(RunConfig(**{**BASE, **kw}))
    s = tr.run()
    tr.close()
    return s


def test_bygars_is_immune_to_any_number_of_sign_flippers():
    clean = _run(aggregator="bygars")
    assert clean["final_test_accuracy"] > 0.85  # it trains (a zero update left it at 0.1)
    # -x_i earns the reputation -q_i, so q_i x_i is unchanged: the attack-free accuracy (within noise)
    for b in (3, 8):
        s = _run(aggregator="bygars", byzantine=b, attack="sign-flip")
        assert s["final_test_accuracy"] >= clean["final_test_accuracy"] - 0.02, b
    assert _run(aggregator="mean", byzantine=3, attack="sign-flip", attack_params={"c": 4.0})["final_test_accuracy"] < 0.5


def test_bygars_scaled_sign_flip_majority_still_learns():
    s = _run(aggregator="bygars", byzantine=6, attack="sign-flip", attack_params={"c": 4.0})
    assert s["final_test_accuracy"] > 0.85


def test_zeno_gets_a_loss_oracle_and_beats_the_mean():
    attacked = dict(byzantine=3, attack="sign-flip", attack_params={"c": 4.0})
    zeno = _run(aggregator="zeno", aggregator_params={"f": 3}, **attacked)
    mean = _run(aggregator="mean", **attacked)
    assert zeno["final_test_accuracy"] > 0.85 > mean["final_test_accuracy"]


def test_the_auxiliary_batch_is_the_masters_secret():
    """Another master seed draws other auxiliary samples (so another model); the run seed alone does not fix it."""
    a = _run(aggregator="bygars", aggregator_params={"aux_batch": 16})
    b = _run(aggregator="bygars", aggregator_params={"aux_batch": 16}, master_seed=12345)
    c = _run(aggregator="bygars", aggregator_params={"aux_batch": 16}, master_seed=0)  # the run seed's default
    assert a["model_sha256"] != b["model_sha256"] and a["model_sha256"] == c["model_sha256"]


def test_bygars_resume_equals_uninterrupted(tmp_path):
    full = _run(aggregator="bygars", byzantine=3, attack="sign-flip")
    cfg = RunConfig(**{**BASE, "aggregator": "bygars", "byzantine": 3, "attack": "sign-flip", "checkpoint_every": 20})
    tr = make_trainer(cfg, run_dir=str(tmp_path / "r"))
    for _ in range(20):
        tr.step()
    tr.save_checkpoint()
    tr.close()
    tr = Trainer.resume(str(tmp_path / "r"))
    s = tr.run()
    tr.close()
    assert s["model_sha256"] == full["model_sha256"]  # the reputations came back with the model


@pytest.mark.parametrize("scheme, extra", [("detox", {"workers": 9, "group_size": 3}),
                                           ("byzshield", {"workers": 15})])
def test_other_schemes_refuse_rules_that_need_server_data(scheme, extra):
    with pytest.raises(ValueError, match="only the vanilla scheme"):
        make_trainer(RunConfig(**{**BASE, **extra, "scheme": scheme, "aggregator": "bygars", "byzantine": 1}))


def test_bad_aux_batch_is_a_configuration_error():
    with pytest.raises(ValueError, match="aux_batch"):
        make_trainer(RunConfig(**{**BASE, "aggregator": "bygars", "aggregator_params": {"aux_batch": 0}}))
