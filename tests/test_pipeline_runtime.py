"""Pre-aggregation chains in the runtime: ``--pre`` puts vanilla's rule, DETOX's outer rule and
ByzShield's file rule behind a Pipeline, exact schemes refuse it, and a stateful chain resumes
bit-identically."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from codedbft.aggregators import by_name
from codedbft.aggregators.pre import Pipeline
from codedbft.cli import main
from codedbft.cluster import Master, RunConfig
from codedbft.schemes import SchemeConfig, build_scheme

BASE = dict(backend="local", workers=15, byzantine=2, attack="alie", model="logreg", batch_size=150, steps=6,
            eval_every=6)


def test_vanilla_decodes_with_the_pipeline_it_was_given():
    scheme = build_scheme(SchemeConfig(name="vanilla", workers=15, byzantine=2, aggregator="krum",
                                       pre=("nnm", "bucketing:s=2,seed=3")))
    assert isinstance(scheme.aggregator, Pipeline) and [p.name for p in scheme.aggregator.pre] == ["nnm", "bucketing"]
    x = torch.randn(15, 40, generator=torch.Generator().manual_seed(0))
    ref = Pipeline(pre=["nnm", "bucketing:s=2,seed=3"], rule=by_name("krum", f=2), f=2)
    got = scheme.decode(x, np.zeros(15, dtype=bool)).gradient
    assert torch.equal(got, ref(x))


@pytest.mark.parametrize("name,kw", [("detox", dict(aggregator="median")), ("byzshield", dict(aggregator="median"))])
def test_detox_and_byzshield_put_their_rule_behind_the_pipeline(name, kw):
    m = Master(RunConfig(**{**BASE, "scheme": name, "pre": ("nnm",), "attack": "sign-flip", **kw}))
    rule = m.scheme.aggregator.outer if name == "detox" else m.scheme.code.decoder().aggregator
    assert isinstance(rule, Pipeline)
    before = m.train_loss()
    assert m.run()["final_loss"] < before


@pytest.mark.parametrize("name", ["draco-repetition", "draco-cyclic", "rrr", "data-encoding"])
def test_exact_schemes_refuse_pre_aggregators(name):
    with pytest.raises(ValueError, match="pre-aggregators"):
        build_scheme(SchemeConfig(name=name, workers=7, byzantine=1, pre=("nnm",)))


def test_a_stateful_chain_resumes_bit_identically(tmp_path):
    cfg = RunConfig(**{**BASE, "scheme": "vanilla", "aggregator": "centered-clipping", "steps": 8,
                       "checkpoint_every": 3, "pre": ("bucketing:s=2",)})
    sha = Master(cfg, run_dir=str(tmp_path / "full")).run()["model_sha256"]
    cut = Master(cfg, run_dir=str(tmp_path / "cut"))
    for _ in range(5):
        cut.step()
    resumed = Master.resume(str(tmp_path / "cut"))
    assert resumed.run()["model_sha256"] == sha
    saved = json.loads((tmp_path / "full" / "config.json").read_text())
    assert saved["pre"] == ["bucketing:s=2"]


def test_cli_pre_flags_and_their_errors(tmp_path, capsys):
    assert main(["train", "--backend", "local", "--scheme", "vanilla", "--aggregator", "median", "--pre", "nnm",
                 "--pre", "clipping:c=5", "--model", "logreg", "--steps", "2", "--run-dir", str(tmp_path / "ok"),
                 "--no-progress"]) == 0
    assert json.loads((tmp_path / "ok" / "config.json").read_text())["pre"] == ["nnm", "clipping:c=5"]
    for bad, match in ((["--pre", "nope"], "unknown pre-aggregator"), (["--pre", "nnm:zz=1"], "'zz'")):
        with pytest.raises(SystemExit) as e:
            main(["train", "--scheme", "vanilla", *bad, "--run-dir", str(tmp_path / "x")])
        assert e.value.code == 2 and match in capsys.readouterr().err


def test_adaptive_attacks_search_against_vanillas_deployed_pipeline():
    m = Master(RunConfig(**{**BASE, "scheme": "vanilla", "aggregator": "krum", "pre": ("nnm",), "attack": "alie-opt",
                            "steps": 2}))
    assert m.adversary.attack.defence is m.scheme.aggregator  # the deployed chain, nnm included
    coded = Master(RunConfig(**{**BASE, "scheme": "detox", "attack": "alie-opt", "steps": 2}))
    assert coded.adversary.attack.defence is None  # decoded values: the documented default (median)
    assert np.isfinite(m.run()["final_loss"])
