"""The schemes beyond DRACO and DETOX in the runtime: ByzShield, data encoding, RRR-BFT (deterministic and randomized).

Scheme level (the protocol driven by real worker programs / real partition gradients, real attacks):
exact mean gradients under attack, flagged sets, RRR's efficiency figures and isolation. Runtime
level (local backend): exactness through ``Master``, isolation surviving checkpoint/resume, the
clear error for data encoding on a non-linear model. Ray parity: the last test (local vs Ray, same model).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codedbft.attacks import by_name as attack_by_name
from codedbft.cluster import Master, RunConfig
from codedbft.cluster.local import LocalBackend
from codedbft.cluster.worker import WorkerSpec, coalition_messages
from codedbft.schemes import Replies, SchemeConfig, build_scheme
from codedbft.training import FlatModel, build_model, load_dataset


# ---------------------------------------------------------------- helpers
def drive(scheme, step: int, reply, byz=(), attack=None):
    """Run one step of ``scheme.protocol``: ``reply(order) -> (W, ...) honest messages`` for the
    order's workers; Byzantine rows are replaced by the coalition's forgery (a real attack)."""
    gen = scheme.protocol(step)
    order = next(gen)
    orders = []
    while True:
        orders.append(order)
        ws = order.workers
        msgs = reply(order)
        rows = [i for i, w in enumerate(ws) if w in byz]
        if rows and attack is not None:
            honest = [i for i in range(len(ws)) if i not in rows]
            msgs[rows] = coalition_messages(attack, msgs[honest], msgs[rows], tuple(ws[i] for i in rows),
                                            step=step, seed=7, n=scheme.n)
        try:
            order = gen.send(Replies(ws, msgs, np.zeros(len(ws), dtype=bool)))
        except StopIteration as stop:
            return stop.value, orders


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits", seed=0)
    return ds, FlatModel(build_model("logreg", ds, seed=0))


# ---------------------------------------------------------------- data encoding
def bound_data_encoding(name: str, n: int = 15, s: int = 2, batch: int = 220):
    ds = load_dataset(name, seed=0)
    fm = FlatModel(build_model("linear", ds, seed=0))
    scheme = build_scheme(SchemeConfig(name="data-encoding", workers=n, byzantine=s, params={"seed": 3}))
    scheme.bind(ds, fm, WorkerSpec(dataset=name, model="linear", k=scheme.k, b=batch // scheme.k, seed=3))
    return scheme, ds, fm


def program_replies(scheme, w):
    def reply(order):
        return torch.from_numpy(np.stack([scheme.worker_data(i)(order.op, w, 0, order.payload) for i in order.workers]))
    return reply


@pytest.mark.parametrize("dataset", ["synthetic-regression", "digits-linear"])
@pytest.mark.parametrize("attack,params", [("alie", {}), ("omniscient", {"c": 10.0}), ("constant", {"c": 1e30})])
def test_data_encoding_gives_the_exact_mean_least_squares_gradient_under_attack(dataset, attack, params):
    scheme, ds, fm = bound_data_encoding(dataset)
    w = fm.init_params() + 0.1  # away from zero so the residual is not just -y
    byz = (4, 11)
    res, orders = drive(scheme, 5, program_replies(scheme, w), byz, attack_by_name(attack, **params))
    ids = torch.from_numpy(scheme.row_ids(5))
    # Independent float64 reference: autograd on the very rows the step's slots cover.
    ref = fm.partition_gradient(w.double(), ds.X_train[ids], ds.y_train[ids])
    assert ids.numel() == res.info["rows"] and len(set(ids.tolist())) == ids.numel()
    torch.testing.assert_close(res.gradient, ref, rtol=1e-9, atol=1e-12)
    assert res.exact and res.flagged == byz
    # Round 2 never asks the workers round 1 caught; computation counts the m round-1 workers.
    assert [o.op for o in orders] == ["residual", "gradient"]
    assert set(orders[1].workers) == set(range(15)) - set(byz)
    assert (res.computed, res.useful) == (15, scheme.k) and scheme.k == 15 - 2 * 2


def test_data_encoding_beyond_t_is_not_claimed_exact():
    scheme, ds, fm = bound_data_encoding("synthetic-regression", n=9, s=1, batch=140)
    w = fm.init_params()
    res, _ = drive(scheme, 0, program_replies(scheme, w), (1, 5, 7), attack_by_name("constant", c=3.0))
    ids = torch.from_numpy(scheme.row_ids(0))
    ref = fm.partition_gradient(w.double(), ds.X_train[ids], ds.y_train[ids])
    assert not res.exact or torch.allclose(res.gradient, ref, rtol=1e-9)


def test_data_encoding_through_the_master_flags_nonfinite_and_huge_replies_and_stays_exact():
    for attack, params in (("bit-flip", {}), ("constant", {"c": 1e300})):
        m = Master(RunConfig(backend="local", scheme="data-encoding", workers=11, byzantine=2, dataset="digits-linear",
                             model="linear", batch_size=140, lr=0.05, steps=4, attack=attack, attack_params=params,
                             placement="fixed", placement_ids=(2, 9)))
        s = m.run()
        assert s["inexact_steps"] == 0 and s["skipped_steps"] == 0
        assert s["flagged_per_worker"][2] == s["flagged_per_worker"][9] == 4 and s["flagged_total"] == 8
        assert s["computation_efficiency"] == pytest.approx(7 / 11)  # K/m = (m - 2t)/m


@pytest.mark.parametrize("dataset,model", [("digits", "mlp"), ("digits", "linear"), ("digits-linear", "mlp")])
def test_data_encoding_refuses_models_whose_gradient_is_not_linear_in_the_data(dataset, model):
    with pytest.raises(ValueError, match="linear in the data"):
        Master(RunConfig(backend="local", scheme="data-encoding", workers=15, byzantine=2, dataset=dataset,
                         model=model, batch_size=220))


def test_data_encoding_rejects_too_many_byzantine_workers():
    with pytest.raises(ValueError, match=r"n >= 2s\+1"):
        build_scheme(SchemeConfig(name="data-encoding", workers=6, byzantine=3))


def test_data_encoding_resume_and_decoder_randomness_are_reproducible(tmp_path):
    cfg = RunConfig(backend="local", scheme="data-encoding", workers=9, byzantine=1, dataset="synthetic-regression",
                    model="linear", batch_size=140, lr=0.05, steps=6, attack="alie", checkpoint_every=3,
                    run_dir=str(tmp_path / "a"))
    full = Master(cfg).run()["model_sha256"]
    first = Master(cfg.replace(run_dir=str(tmp_path / "b"), steps=3))
    first.run()
    resumed = Master.resume(str(tmp_path / "b"), steps=6).run()
    assert resumed["model_sha256"] == full


# ---------------------------------------------------------------- ByzShield
def test_byzshield_liars_in_one_parallel_class_corrupt_no_file_and_the_step_is_the_clean_one():
    # Workers 0 and 1 are (a=1, v=0) and (a=1, v=1): one Latin square's classes are disjoint, so no
    # file has two liars; the decoder sized for q = 2 certifies the vote, bit for bit the clean sum.
    base = dict(backend="local", scheme="byzshield", workers=15, dataset="digits", model="logreg", batch_size=250,
                lr=0.2, steps=4)
    clean = Master(RunConfig(**base, byzantine=0, attack=None)).run()
    m = Master(RunConfig(**base, byzantine=2, attack="omniscient", placement="fixed", placement_ids=(0, 1)))
    code = m.scheme.code
    assert not set(code.assignment[0]) & set(code.assignment[1])
    s = m.run()
    assert s["model_sha256"] == clean["model_sha256"]
    assert s["inexact_steps"] == 0 and s["flagged_per_worker"][:2] == [4, 4] and s["flagged_total"] == 8


def test_byzshield_worst_placement_wins_a_file_and_is_still_explained_globally(digits):
    scheme = build_scheme(SchemeConfig(name="byzshield", workers=15, byzantine=2))
    frac, byz = scheme.code.max_distortion(2)
    assert frac == pytest.approx(0.04)  # one of the 25 files (docs/codes.md, ByzShield)
    ds, fm = digits
    X, y = ds.partition_batch(0, scheme.k, 10, seed=0)
    G = fm.partition_gradients(fm.init_params(), X, y)

    def reply(order):
        return G[torch.tensor([order.tasks[w] for w in order.workers])]

    res, _ = drive(scheme, 0, reply, tuple(byz), attack_by_name("omniscient", c=10.0))
    # the two colluders win one file, but they lie on their other files too, where each is outvoted:
    # only {byz} explains every file's copies, so the step is certified from the honest copies
    assert res.exact and res.flagged == tuple(sorted(byz))
    torch.testing.assert_close(res.gradient.to(G.dtype), G.mean(0), rtol=1e-5, atol=1e-7)


def test_byzshield_workers_must_factor_as_r_times_l():
    with pytest.raises(ValueError, match="n = r\\*l"):
        build_scheme(SchemeConfig(name="byzshield", workers=14, byzantine=1))
    with pytest.raises(ValueError, match="prime"):
        build_scheme(SchemeConfig(name="byzshield", workers=18, byzantine=1))  # l = 6


# ---------------------------------------------------------------- RRR-BFT
def rrr_replies(G):
    """Honest replies: worker w asked for partition j sends g_j (one partition per worker per order)."""
    def reply(order):
        return G[torch.tensor([order.tasks[w][0] for w in order.workers])].clone()
    return reply


@pytest.mark.parametrize("f", [1, 2, 3, 4])
def test_rrr_efficiency_is_exactly_one_over_f_plus_one_without_liars(digits, f):
    scheme = build_scheme(SchemeConfig(name="rrr", workers=15, byzantine=f))
    assert scheme.k == 15 // (f + 1)  # the 15 mod (f+1) leftover workers are spares
    ds, fm = digits
    X, y = ds.partition_batch(0, scheme.k, 10, seed=0)
    G = fm.partition_gradients(fm.init_params(), X, y)
    res, orders = drive(scheme, 0, rrr_replies(G))
    assert res.useful / res.computed == 1 / (f + 1) and len(orders) == 1
    assert res.exact and res.flagged == ()
    assert torch.equal(res.gradient, G.sum(0) / scheme.k)


@pytest.mark.parametrize("n,f,liars", [(5, 2, (0, 1)), (5, 2, (1, 3)), (7, 3, (0, 1, 2)), (15, 3, (0, 4, 12))])
def test_rrr_is_exact_whenever_2f_below_n_and_names_every_liar(digits, n, f, liars):
    scheme = build_scheme(SchemeConfig(name="rrr", workers=n, byzantine=f))
    ds, fm = digits
    X, y = ds.partition_batch(1, scheme.k, 10, seed=0)
    G = fm.partition_gradients(fm.init_params(), X, y)
    # Colluding liars send the same wrong value, which can outvote the honest copies of the first round.
    res, orders = drive(scheme, 1, rrr_replies(G), liars, attack_by_name("constant", c=5.0))
    assert res.exact and torch.equal(res.gradient, G.sum(0) / scheme.k)
    assert set(res.flagged) == {w for w in liars if any(w in o.workers for o in orders)}
    assert len(orders) > 1
    # Next step: the liars are isolated (never asked) and f' = f - |caught| faults remain.
    res2, orders2 = drive(scheme, 2, rrr_replies(G), liars, attack_by_name("constant", c=5.0))
    assert not any(w in o.workers for o in orders2 for w in res.flagged)
    assert res2.exact and torch.equal(res2.gradient, G.sum(0) / scheme.k)


def test_rrr_randomized_efficiency_is_one_over_one_plus_q_f(digits):
    f, q, steps = 2, 0.3, 400
    scheme = build_scheme(SchemeConfig(name="rrr-randomized", workers=15, byzantine=f, params={"q": q, "seed": 11}))
    G = torch.arange(15, dtype=torch.float64)[:, None].repeat(1, 4)  # distinct honest values per partition
    computed = useful = checks = 0
    for t in range(steps):
        res, _ = drive(scheme, t, rrr_replies(G))
        computed, useful, checks = computed + res.computed, useful + res.useful, checks + res.info["checked"]
        assert res.computed == (15 * (1 + f) if res.info["checked"] else 15)
        assert torch.equal(res.gradient, G.sum(0) / 15)  # no liars: exact values either way
    q_hat = checks / steps
    assert abs(q_hat - q) < 4 * np.sqrt(q * (1 - q) / steps)  # binomial, 4 sigma
    assert useful / computed == pytest.approx(1 / (1 + q_hat * f), rel=1e-12)
    # The coin depends on (seed, step) only: the same seed replays the same checks, another differs.
    again = build_scheme(SchemeConfig(name="rrr-randomized", workers=15, byzantine=f, params={"q": q, "seed": 11}))
    other = build_scheme(SchemeConfig(name="rrr-randomized", workers=15, byzantine=f, params={"q": q, "seed": 12}))
    draws = [[drive(s, t, rrr_replies(G))[0].info["checked"] for t in range(40)] for s in (scheme, again, other)]
    assert draws[0] == draws[1] and draws[0] != draws[2]


class RecordingBackend(LocalBackend):
    """The local backend, recording which workers each order asked (to check isolation)."""

    def __init__(self):
        super().__init__()
        self.asked: list[tuple[int, tuple[int, ...]]] = []

    def execute(self, order, w, *args, **kw):
        self.asked.append((order.step, order.workers))
        return super().execute(order, w, *args, **kw)


def test_rrr_caught_liars_stay_isolated_across_checkpoint_and_resume(tmp_path):
    cfg = RunConfig(backend="local", scheme="rrr", workers=15, byzantine=2, dataset="digits", model="logreg",
                    batch_size=150, lr=0.2, steps=8, attack="alie", placement="fixed", placement_ids=(3, 10),
                    checkpoint_every=2, run_dir=str(tmp_path / "full"))
    full = Master(cfg).run()
    part = Master(cfg.replace(run_dir=str(tmp_path / "part"), steps=3))
    part.run()
    assert part.scheme.isolated == {3, 10}
    rec = RecordingBackend()
    resumed = Master.resume(str(tmp_path / "part"), backend=rec, steps=8)
    assert resumed.scheme.isolated == {3, 10}  # scheme state came back from the checkpoint
    s = resumed.run()
    assert s["model_sha256"] == full["model_sha256"] and s["inexact_steps"] == 0
    assert rec.asked and all(3 not in ws and 10 not in ws for _, ws in rec.asked)
    assert all(r == 1.0 for r in [resumed.last_row["efficiency"]])  # f' = 0 left: single copies suffice


def test_rrr_randomized_checked_steps_are_exact_and_unchecked_ones_use_single_replies():
    m = Master(RunConfig(backend="local", scheme="rrr-randomized", workers=15, byzantine=3, dataset="digits",
                         model="logreg", batch_size=150, lr=0.2, steps=10, attack="alie",
                         scheme_params={"q": 0.5}))
    rows = [m.step() for _ in range(10)]
    assert any(r["checked"] for r in rows) and not all(r["checked"] for r in rows)
    for r in rows:
        assert r["exact"] == r["checked"]
        if not r["checked"]:  # one reply per partition (isolated workers' partitions go to others)
            assert r["efficiency"] == 1.0
    caught = [set(r["flagged"]) for r in rows if r["flagged"]]
    assert set().union(*caught) <= set(rows[0]["byzantine"])


# ---------------------------------------------------------------- Ray parity (run through loopback)
@pytest.fixture(scope="module")
def ray_backend(ray_session):
    from codedbft.cluster.ray_backend import RayBackend

    b = RayBackend(num_cpus=0.1, max_restarts=3)
    yield b
    b.close()


# Actor start-up costs seconds per process on 2 cores: n <= 6, and rrr (f = 2: k = 2 groups
# of 3) and data-encoding (t = 2: K = 2 blocks) share one worker spec, hence one set of warm actors.
SHARED = dict(workers=6, byzantine=2, dataset="digits-linear", model="linear", batch_size=60)
RAY_CASES = {
    "data-encoding": dict(SHARED, scheme="data-encoding", attack="alie"),
    "rrr": dict(SHARED, scheme="rrr", attack="omniscient"),
    # k = n for the randomized scheme: the smallest n >= 2f+1 keeps its own actor set cheap.
    "rrr-randomized": dict(SHARED, scheme="rrr-randomized", workers=3, byzantine=1, attack="omniscient",
                           scheme_params={"q": 0.5}),
    # l = 3, r = 2 (n = 6): an even r ties, so files a liar holds go to the robust rule.
    "byzshield": dict(SHARED, scheme="byzshield", byzantine=1, group_size=2, attack="alie", batch_size=63),
    # The schemes not covered by test_runtime_ray, on the same 3 warm actors as rrr-randomized.
    "draco-cyclic": dict(SHARED, scheme="draco-cyclic", workers=3, byzantine=1, attack="alie"),
    "vanilla": dict(SHARED, scheme="vanilla", workers=3, byzantine=1, aggregator="median", attack="sign-flip"),
}


@pytest.mark.ray
@pytest.mark.parametrize("case", list(RAY_CASES))
def test_ray_and_local_give_the_same_model_for_byzshield_data_encoding_and_rrr(ray_backend, case):
    cfg = RunConfig(**RAY_CASES[case], steps=4, lr=0.1, eval_every=4, timeout_s=120.0, backend="ray")
    local = Master(cfg.replace(backend="local")).run()
    m = Master(cfg, backend=ray_backend)
    remote = m.run()
    assert remote["model_sha256"] == local["model_sha256"]
    assert remote["flagged_per_worker"] == local["flagged_per_worker"] and remote["erasures_total"] == 0
    assert remote["inexact_steps"] == local["inexact_steps"]
    if case in ("data-encoding", "rrr"):
        assert remote["inexact_steps"] == 0 and remote["flagged_total"] >= 2
