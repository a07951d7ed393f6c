"""Benchmark the robust aggregation rules against ``mean`` and against straightforward references.

For (n, d) in {(25, 1e6), (101, 1e5)} and the batch (16, 25, 1e5), float32, with 1 thread and all
threads (``torch.set_num_threads``): the median time of each rule, its ratio to ``mean`` and the
speedup over a straightforward reference (``np.median``; ``np.sort``-based trimmed mean, Phocas and
MeaMed; ``scipy.spatial.distance.cdist``-based Krum, Multi-Krum, Bulyan, FABA, MDA; numpy loops
for the rest). Ratios come from one run (the machine is shared: absolute times are noisy).

    python benchmarks/bench_aggregators.py [--quick] [--out runs/bench/aggregators.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.distance import cdist

from codedbft.aggregators import available, by_name

# --------------------------------------------------------------------------------------------------
# straightforward references, one (n, d) item at a time (float64 where the rule accumulates)
# --------------------------------------------------------------------------------------------------


def _closest(x, c, k):
    idx = np.argsort(np.abs(x - c), axis=0, kind="stable")[:k]
    return np.take_along_axis(x, idx, axis=0).mean(axis=0)


def _krum_scores(D, ids, f):
    m = len(ids)
    sub = D[np.ix_(ids, ids)].copy()
    np.fill_diagonal(sub, np.inf)
    nb = max(0, m - f - 2)
    return np.sort(sub, axis=1)[:, :nb].sum(axis=1)


def ref_krum(x, f):
    D = cdist(x, x, "sqeuclidean")
    return x[int(np.argmin(_krum_scores(D, list(range(len(x))), f)))]


def ref_multikrum(x, f):
    D = cdist(x, x, "sqeuclidean")
    s = _krum_scores(D, list(range(len(x))), f)
    return x[np.argsort(s, kind="stable")[: len(x) - f]].mean(axis=0)


def ref_bulyan(x, f):
    n = len(x)
    D = cdist(x, x, "sqeuclidean")
    left, sel = list(range(n)), []
    for _ in range(n - 2 * f):
        w = left[int(np.argmin(_krum_scores(D, left, f)))]
        sel.append(w)
        left.remove(w)
    S = x[sorted(sel)]
    return _closest(S, np.median(S, axis=0), n - 4 * f)


def ref_faba(x, f):
    left = list(range(len(x)))
    for _ in range(f):
        mu = x[left].mean(axis=0, keepdims=True)
        left.pop(int(np.argmax(cdist(x[left], mu, "sqeuclidean")[:, 0])))
    return x[left].mean(axis=0)


def ref_mda(x, f):
    n = len(x)
    D = cdist(x, x, "sqeuclidean")
    best = min(itertools.combinations(range(n), n - f), key=lambda S: D[np.ix_(S, S)].max())
    return x[list(best)].mean(axis=0)


def ref_geomed(x, f, nu=1e-6, tol=1e-5):
    z = x.mean(axis=0)
    for _ in range(200):
        w = 1.0 / np.maximum(nu, np.linalg.norm(z - x, axis=1))
        zn = (w[:, None] * x).sum(axis=0) / w.sum()
        done = np.linalg.norm(zn - z) <= tol * np.linalg.norm(z)
        z = zn
        if done:
            break
    return z


def ref_cc(x, f, tau=10.0):
    u = x - np.zeros(x.shape[1], dtype=x.dtype)  # the centre v (0 at the first call)
    s = np.minimum(1.0, tau / np.maximum(np.linalg.norm(u, axis=1), 1e-300))
    return (s[:, None] * u).mean(axis=0)


def ref_cge(x, f):
    order = np.argsort(-np.linalg.norm(x, axis=1), kind="stable")
    return x[np.sort(order[f:])].mean(axis=0)


def ref_phocas(x, f):
    n = len(x)
    t = np.sort(x, axis=0)[f : n - f].mean(axis=0)
    return _closest(x, t, n - f)


REFS = {
    "mean": lambda x, f: x.mean(axis=0),
    "median": lambda x, f: np.median(x, axis=0),
    "trimmed-mean": lambda x, f: np.sort(x, axis=0)[f : len(x) - f].mean(axis=0),
    "phocas": ref_phocas,
    "meamed": lambda x, f: _closest(x, np.median(x, axis=0), len(x) - f),
    "geomed": ref_geomed,
    "krum": ref_krum,
    "multi-krum": ref_multikrum,
    "bulyan": ref_bulyan,
    "mda": ref_mda,
    "centered-clipping": ref_cc,
    "faba": ref_faba,
    "cge": ref_cge,
    "sign-majority": lambda x, f: np.sign(np.sign(x).sum(axis=0)),
}
#: every registered rule, except those that need more than ``f`` to be built or called (zeno: a loss
#: oracle; hierarchical: a group structure, timed by bench_runtime through the detox scheme)
RULES = [name for name in available() if name not in ("zeno", "hierarchical")]


def _time(fn, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


#: per-call arguments of the rules that take them (a trusted vector: MoNNA's reference, FLTrust's root)
CALL_ARGS = {"bygars": "aux_gradient", "monna": "reference", "fltrust": "root"}


def _f_for(name, n):
    if name in ("mda", "smea"):
        return 2  # exact search over C(n, f) subsets: keep it small
    return min(5, (n - 3) // 4) if n <= 30 else 10


def run(cases, threads_list, reps, ref_reps):
    rows = []
    g = torch.Generator().manual_seed(0)
    for B, n, d in cases:
        x = torch.randn(B, n, d, generator=g, dtype=torch.float32)
        xin = x[0] if B == 1 else x
        xn = x.numpy()
        aux = torch.randn(d, generator=g)
        for threads in threads_list:
            torch.set_num_threads(threads)
            res = {}
            for name in RULES:
                f = _f_for(name, n)
                agg = by_name(name, f=f)
                kw = {CALL_ARGS[name]: aux} if name in CALL_ARGS else {}
                call = lambda: agg(xin, **kw)  # noqa: E731
                call()  # warm-up (and numba compile on first use)
                t = _time(call, reps)
                tr = None
                if name in REFS:
                    ref = REFS[name]
                    tr = _time(lambda: [ref(xn[b], f) for b in range(B)], ref_reps)
                res[name] = (f, t, tr)
            tm = res["mean"][1]
            for name, (f, t, tr) in res.items():
                rows.append(
                    dict(batch=B, n=n, d=d, threads=threads, rule=name, f=f, ms=1e3 * t,
                         x_mean=t / tm, ref_ms=None if tr is None else 1e3 * tr,
                         speedup_vs_ref=None if tr is None else tr / t)
                )
                print(_fmt(rows[-1]), flush=True)
    return rows


def run_pre(cases, reps):
    """Pre-aggregators alone and in front of Krum, timed like the rules (x mean of the same run)."""
    from codedbft.aggregators import PRE_AGGREGATORS, Pipeline, build_pre

    rows = []
    g = torch.Generator().manual_seed(1)
    torch.set_num_threads(1)
    for B, n, d in cases:
        x = torch.randn(B, n, d, generator=g, dtype=torch.float32)
        xin = x[0] if B == 1 else x
        f = _f_for("krum", n)
        mean = by_name("mean")
        tm = _time(lambda: mean(xin), reps)
        parts = {name: build_pre(name, f=f) for name in PRE_AGGREGATORS.available()}
        parts["nnm -> krum"] = Pipeline(pre=["nnm"], rule="krum", f=f)
        parts["bucketing:s=2 -> krum"] = Pipeline(pre=["bucketing:s=2"], rule="krum", f=f // 2)
        for name, op in parts.items():
            op(xin)  # warm-up
            t = _time(lambda: op(xin), reps)
            rows.append(dict(batch=B, n=n, d=d, threads=1, rule=name, f=f, ms=1e3 * t, x_mean=t / tm,
                             ref_ms=None, speedup_vs_ref=None))
            print(_fmt(rows[-1]), flush=True)
    return rows


def _fmt(r):
    ref = f"{r['ref_ms']:10.1f} {r['speedup_vs_ref']:8.2f}x" if r["ref_ms"] is not None else f"{'-':>10} {'-':>9}"
    return (f"{r['batch']:>3} {r['n']:>4} {r['d']:>8} {r['threads']:>2} {r['rule']:<18} {r['f']:>2} "
            f"{r['ms']:9.1f} {r['x_mean']:7.2f} {ref}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one repetition (smoke run)")
    ap.add_argument("--out", default="runs/bench/aggregators.json")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    all_threads = torch.get_num_threads()
    if args.quick:
        cases, reps, ref_reps = [(1, 25, 10**4), (1, 101, 10**3), (4, 25, 10**3)], 1, 1
    else:
        cases, reps, ref_reps = [(1, 25, 10**6), (1, 101, 10**5), (16, 25, 10**5)], args.reps, 1
    threads_list = sorted({1, all_threads})
    print(f"{'B':>3} {'n':>4} {'d':>8} {'th':>2} {'rule':<18} {'f':>2} {'ms':>9} {'x mean':>7} {'ref ms':>10} {'vs ref':>9}")
    rows = run(cases, threads_list, reps, ref_reps)
    print("pre-aggregators (1 thread), x mean of the same run")
    rows += run_pre([c for c in cases if c[1] == 25], reps)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(torch=torch.__version__, cpu_count=os.cpu_count(), threads_all=all_threads, quick=args.quick,
                reps=reps, dtype="float32")
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
