"""Non-IID splits (codedbft.training.splits): the intended skew per partition, seeded, disjoint, used by
every partition's batches, written to the run directory, and refused where they cannot apply."""

from __future__ import annotations

import json

import numpy as np
import pytest

from codedbft.cluster import Master, RunConfig
from codedbft.training import load_dataset
from codedbft.training.splits import build_split, histogram, parse_split


@pytest.fixture(scope="module")
def labels():
    return load_dataset("digits", seed=0).y_train.numpy()


def top_class_fraction(shards, y):
    h = np.asarray(histogram(shards, y), dtype=float)
    return (h.max(axis=1) / h.sum(axis=1)).mean()


def test_shards_partition_the_training_rows_and_are_seeded(labels):
    for spec in ("dirichlet:alpha=0.1", "gamma:0.5", "extreme"):
        shards = build_split(spec, labels, 10, seed=3)
        rows = np.concatenate(shards)
        assert np.array_equal(np.sort(rows), np.arange(labels.size)), spec  # disjoint, everything used
        again = build_split(spec, labels, 10, seed=3)
        assert all(np.array_equal(a, b) for a, b in zip(shards, again))
    other = build_split("dirichlet:alpha=0.1", labels, 10, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(build_split("dirichlet:alpha=0.1", labels, 10, 3), other))


def test_each_split_has_its_intended_skew(labels):
    iid_like = top_class_fraction(build_split("dirichlet:alpha=1000", labels, 10, 0), labels)
    skewed = top_class_fraction(build_split("dirichlet:alpha=0.1", labels, 10, 0), labels)
    assert iid_like < 0.2 and skewed > 0.4  # 10 classes: uniform is 0.1
    extreme = histogram(build_split("extreme", labels, 10, 0), labels)
    # sorted chunks: each partition is (almost) one class, at most three where chunk and class borders cross
    assert all(sum(c > 0 for c in row) <= 3 and max(row) >= 0.9 * sum(row) for row in extreme)
    assert top_class_fraction(build_split("gamma:1", labels, 10, 0), labels) < 0.2
    half = top_class_fraction(build_split("gamma:0.5", labels, 10, 0), labels)
    assert top_class_fraction(build_split("gamma:0", labels, 10, 0), labels) > half > iid_like


def test_partition_batches_come_from_their_own_shard():
    m = Master(RunConfig(backend="local", scheme="vanilla", workers=8, byzantine=0, attack=None, model="logreg",
                         batch_size=80, split="extreme"))
    for step in (0, 5):
        idx = m.core.batch_indices(step).numpy()
        for j, shard in enumerate(m.core.shards):
            assert np.isin(idx[j], shard).all()
    h = m.describe()["split_info"]["class_histogram"]
    assert len(h) == 8 and all(sum(c > 0 for c in row) <= 3 for row in h)


def test_the_split_is_written_to_the_run_directory_and_training_uses_it(tmp_path):
    cfg = RunConfig(backend="local", scheme="draco-repetition", workers=6, byzantine=1, model="logreg",
                    batch_size=60, steps=3, split="dirichlet:alpha=0.1")
    iid = Master(cfg.replace(split="iid")).run()["model_sha256"]
    m = Master(cfg, run_dir=str(tmp_path))
    assert m.run()["model_sha256"] != iid
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["split"] == "dirichlet:alpha=0.1" and len(saved["split_info"]["class_histogram"]) == m.scheme.k


@pytest.mark.parametrize("spec,match", [("cifar", "unknown split"), ("dirichlet:beta=1", "valid: \\['alpha'\\]"),
                                        ("dirichlet:alpha=0", "alpha > 0"), ("extreme:3", "no parameter"),
                                        ("gamma:1.5", "gamma <= 1")])
def test_bad_split_specs_are_value_errors(spec, match, labels):
    with pytest.raises(ValueError, match=match):
        build_split(spec, labels, 4, 0)
    assert parse_split("gamma:0.25") == ("gamma", {"gamma": 0.25})


def test_splits_that_cannot_apply_are_refused_before_any_worker_starts():
    with pytest.raises(ValueError, match="class labels"):
        Master(RunConfig(backend="ray", dataset="synthetic-regression", model="linear", split="extreme",
                         scheme="vanilla", workers=4, byzantine=0, attack=None, batch_size=40))
    with pytest.raises(ValueError, match="iid"):
        Master(RunConfig(backend="ray", scheme="data-encoding", dataset="synthetic-regression", model="linear",
                         workers=7, byzantine=1, split="gamma:0.5", batch_size=120))
