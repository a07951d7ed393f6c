"""Benchmark the robust aggregation rules against ``mean``, straightforward references and peer libraries.

For (n, d) in {(25, 1e6), (101, 1e5)} and the batch (16, 25, 1e5), float32, with 1 thread and all
threads (``torch.set_num_threads``): the median time of each rule, its ratio to ``mean`` and the
speedup over a straightforward reference (``np.median``; ``np.sort``-based trimmed mean, Phocas and
MeaMed; ``scipy.spatial.distance.cdist``-based Krum, Multi-Krum, Bulyan, FABA, MDA; numpy loops
for the rest). Ratios come from one run (the machine is shared: absolute times are noisy).

Peers (``run_peers``): where ByzFL 0.0.11 and ByzPy 0.1.4 are importable, every rule both have is
timed against them on the same (25, 1e6) float32 input, f = 3, one thread, interleaved call by call
in this process, in two states: *quiet*, and *loaded* (a busy-loop subprocess pinned to a second
core while this process is pinned to the first). Outputs are checked equal to 1e-6
(``max|ours - theirs| / max|theirs|``) where the definitions agree, and each check that cannot be
made says why. A peer that is not importable is skipped with a message. Install them (never in
CI) with ``../shared/tools/install-peers`` or, equivalently::

    pip install --no-deps byzfl==0.0.11 byzpy==0.1.4   # the `bench` extra names them; --no-deps
    pip install cloudpickle scipy networkx pandas       # avoids ByzFL's torchvision pin, which pulls
                                                        # a CUDA torch (ByzFL then needs a stub
                                                        # ``torchvision`` module to import)

    python benchmarks/bench_aggregators.py [--quick] [--peers-only] [--no-peers] [--rules krum,...]
                                           [--out runs/bench/aggregators.json]

``--peers-only`` sets OMP/MKL/OPENBLAS_NUM_THREADS=1 before numpy and torch load.
"""

from __future__ import annotations

import os
import sys

if "--peers-only" in sys.argv:
    for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[_v] = "1"

import argparse
import itertools
import json
import subprocess
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



# --------------------------------------------------------------------------------------------------
# peer libraries: ByzFL and ByzPy on the same input, interleaved, quiet and loaded
# --------------------------------------------------------------------------------------------------

#: speedup targets (their ms / our ms) per rule, from issue 14; others: PEER_TARGET
PEER_TARGET = 2.0
PEER_TARGETS = {("krum", "byzpy"): 3.0}
#: a peer call slower than this (warm-up) is not timed: its rule is reported as skipped
PEER_MAX_S = 20.0


def _import_peers() -> dict:
    """The importable peers, name -> module; a message for each one that is not."""
    peers = {}
    for name, mod in (("byzfl", "byzfl.aggregators.aggregators"), ("byzpy", "byzpy")):
        try:
            peers[name] = __import__(mod, fromlist=["_"])
        except Exception as e:  # noqa: BLE001 - any import failure means "not installed here"
            print(f"peer {name}: not importable ({type(e).__name__}: {e}); skipped "
                  "(install with ../shared/tools/install-peers, see the module docstring)")
    return peers


def _peer_cases(x: torch.Tensor, f: int, peers: dict) -> list[dict]:
    """Per rule: our call, each peer's call, and the reference the peers' outputs are checked
    against (ours under the peers' definition, when it differs from ours in a parameter only), or
    the reason no check is made."""
    n = x.shape[0]
    xn = x.numpy()
    rows = list(x)  # ByzPy takes a sequence of gradients (views: no copy)
    ref0 = x[0].clone()  # MoNNA's trusted reference: input 0, as the peers' ``idx``/``reference_index``

    def fresh_cc():
        agg = by_name("centered-clipping", f=f, tau=10.0, iters=1)
        return lambda: agg(x)  # a new object per call: every call starts from v = 0, like the peers'

    cases = [
        dict(rule="krum", ours=lambda: by_name("krum", f=f)(x), check=lambda: by_name("krum", f=f - 1)(x),
             note="peers score the n-f-1 nearest (ours n-f-2, Blanchard et al.): checked against ours with f-1"),
        dict(rule="multi-krum", ours=lambda: by_name("multi-krum", f=f)(x),
             check=lambda: by_name("multi-krum", f=f - 1, m=n - f)(x),
             note="peers score the n-f-1 nearest: checked against ours with f-1, m = n-f"),
        dict(rule="median", ours=lambda: by_name("median", f=f)(x)),
        dict(rule="trimmed-mean", ours=lambda: by_name("trimmed-mean", f=f)(x)),
        dict(rule="meamed", ours=lambda: by_name("meamed", f=f)(x)),
        dict(rule="geomed", ours=lambda: by_name("geomed", f=f)(x), check=None,
             note="definitions differ: ByzFL runs T=3 Weiszfeld steps from 0 with nu=0.1; ByzPy starts at "
                  "the median, stops at |dz| <= 1e-6; ours starts at the mean, nu=1e-6, relative tolerance"),
        dict(rule="centered-clipping", ours=None, ours_factory=fresh_cc,
             note="tau=10, one iteration, from v = 0 (ByzPy: init='zero', M=1)"),
        dict(rule="mda", ours=lambda: by_name("mda", f=f)(x)),
        dict(rule="monna", ours=lambda: by_name("monna", f=f)(x, reference=ref0),
             note="reference = input 0 (the peers' idx / reference_index)"),
        dict(rule="caf", ours=lambda: by_name("caf", f=f)(x), check=None,
             note="definitions differ: the peers run a randomly started power iteration (ByzFL: one step, "
                  "ByzPy: 3); ours solves the eigenproblem exactly"),
    ]
    for c in cases:
        if c.get("ours_factory"):
            c["ours"] = lambda fac=c["ours_factory"]: fac()()
        c.setdefault("check", c["ours"])
        c["theirs"] = {}
    bf, bp = peers.get("byzfl"), peers.get("byzpy")
    if bf is not None:
        T = dict(krum=bf.Krum(f=f), **{"multi-krum": bf.MultiKrum(f=f)}, median=bf.Median(),
                 **{"trimmed-mean": bf.TrMean(f=f)}, meamed=bf.Meamed(f=f), geomed=bf.GeometricMedian(),
                 mda=bf.MDA(f=f), monna=bf.MoNNA(f=f, idx=0), caf=bf.CAF(f=f))
        for c in cases:
            if c["rule"] == "centered-clipping":
                c["theirs"]["byzfl"] = lambda: bf.CenteredClipping(tau=10.0, L=1)(xn)
            elif c["rule"] in T:
                c["theirs"]["byzfl"] = lambda a=T[c["rule"]]: a(xn)
    if bp is not None:
        from byzpy.aggregators.coordinate_wise.mean_of_medians import MeanOfMedians
        from byzpy.aggregators.coordinate_wise.median import CoordinateWiseMedian
        from byzpy.aggregators.coordinate_wise.trimmed_mean import CoordinateWiseTrimmedMean
        from byzpy.aggregators.geometric_wise.geometric_median import GeometricMedian
        from byzpy.aggregators.geometric_wise.krum import Krum, MultiKrum
        from byzpy.aggregators.geometric_wise.minimum_diameter_average import MinimumDiameterAveraging
        from byzpy.aggregators.geometric_wise.monna import MoNNA
        from byzpy.aggregators.norm_wise.caf import CAF
        from byzpy.aggregators.norm_wise.center_clipping import CenteredClipping

        T = dict(krum=Krum(f=f), **{"multi-krum": MultiKrum(f=f, q=n - f)}, median=CoordinateWiseMedian(),
                 **{"trimmed-mean": CoordinateWiseTrimmedMean(f=f)}, meamed=MeanOfMedians(f=f),
                 geomed=GeometricMedian(), mda=MinimumDiameterAveraging(f=f),
                 monna=MoNNA(f=f, reference_index=0), caf=CAF(f=f),
                 **{"centered-clipping": CenteredClipping(c_tau=10.0, M=1, init="zero")})
        for c in cases:
            if c["rule"] in T:
                c["theirs"]["byzpy"] = lambda a=T[c["rule"]]: a.aggregate(rows)
    return cases


def _np(y) -> np.ndarray:
    return (y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)).astype(np.float64)


def _rel_err(a, b) -> float:
    a, b = _np(a).ravel(), _np(b).ravel()
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


def _timed(fn) -> tuple[float, float]:
    """(wall ms, process CPU time / wall time): the second is ~1 for a call that stays on one thread."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    return 1e3 * wall, (time.process_time() - c0) / max(wall, 1e-9)


class _Loader:
    """A busy-loop subprocess pinned to ``core`` (this session's own process, stopped on exit)."""

    def __init__(self, core: int) -> None:
        self.core = core
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "_Loader":
        code = f"import os\nos.sched_setaffinity(0, {{{self.core}}})\nwhile True:\n    pass\n"
        self.proc = subprocess.Popen([sys.executable, "-c", code])
        time.sleep(0.5)  # let it reach its core
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def run_peers(n: int = 25, d: int = 10**6, f: int = 3, reps: int = 5, rules: list[str] | None = None) -> list[dict]:
    """Our rules (all shared with a peer, or ``rules``) against ByzFL and ByzPy (whichever import),
    quiet and loaded; rows for the JSON."""
    peers = _import_peers()
    if not peers:
        print("no peer library importable: peer comparison skipped")
        return []
    import numba

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        threadpool_limits = None
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    limiter = threadpool_limits(1) if threadpool_limits is not None else None
    cores = sorted(os.sched_getaffinity(0))
    old_aff = set(cores)
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    cases = [c for c in _peer_cases(x, f, peers) if rules is None or c["rule"] in rules]
    out_rows: list[dict] = []
    print(f"\npeers: ({n}, {d:.0e}) float32, f={f}, 1 thread (torch {torch.get_num_threads()}, numba "
          f"{numba.get_num_threads()}), {reps} interleaved calls each, median ms; speedup = their ms / our ms")
    # warm-up (numba compilation, first touch) and the output checks, once
    for c in cases:
        c["ok"] = {}
        ours_out = c["ours"]()
        ref = c["check"]() if c["check"] is not None else None
        for peer, fn in list(c["theirs"].items()):
            t0 = time.perf_counter()
            try:
                y = fn()
            except Exception as e:  # noqa: BLE001 - report and drop the peer's rule
                print(f"  {c['rule']}: {peer} failed ({type(e).__name__}: {e}); not timed")
                del c["theirs"][peer]
                continue
            if time.perf_counter() - t0 > PEER_MAX_S:
                print(f"  {c['rule']}: {peer} took > {PEER_MAX_S:.0f} s per call; not timed")
                del c["theirs"][peer]
                continue
            if ref is None:
                c["ok"][peer] = (None, _rel_err(ours_out, y))
            else:
                err = _rel_err(ref, y)
                c["ok"][peer] = (err <= 1e-6, err)
    states = [("quiet", None)]
    if len(cores) >= 2:
        states.append(("loaded", cores[1]))
    else:
        print("one core available: the loaded state is skipped")
    try:
        os.sched_setaffinity(0, {cores[0]})
        for state, core in states:
            with (_Loader(core) if core is not None else _nullcontext()):
                for c in cases:
                    impls = {"ours": c["ours"], **c["theirs"]}
                    ts: dict[str, list[float]] = {k: [] for k in impls}
                    cpu: dict[str, list[float]] = {k: [] for k in impls}
                    for _ in range(reps):
                        for k, fn in impls.items():
                            w, u = _timed(fn)
                            ts[k].append(w)
                            cpu[k].append(u)
                    med = {k: float(np.median(v)) for k, v in ts.items()}
                    row = dict(state=state, rule=c["rule"], n=n, d=d, f=f, ours_ms=med["ours"],
                               ours_cpu_per_wall=float(np.median(cpu["ours"])), note=c.get("note", ""))
                    for peer in ("byzfl", "byzpy"):
                        if peer in med:
                            ok, err = c["ok"][peer]
                            target = PEER_TARGETS.get((c["rule"], peer), PEER_TARGET)
                            row.update({f"{peer}_ms": med[peer], f"{peer}_speedup": med[peer] / med["ours"],
                                        f"{peer}_target": target, f"{peer}_equal_1e-6": ok,
                                        f"{peer}_rel_err": err})
                    out_rows.append(row)
                    print(_fmt_peer(row), flush=True)
    finally:
        os.sched_setaffinity(0, old_aff)
        if limiter is not None:
            limiter.unregister()
    _print_peer_summary(out_rows)
    return out_rows


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def _fmt_peer(r: dict) -> str:
    parts = [f"  {r['state']:<6} {r['rule']:<18} ours {r['ours_ms']:8.1f} ms (cpu/wall {r['ours_cpu_per_wall']:.2f})"]
    for peer in ("byzfl", "byzpy"):
        if f"{peer}_ms" in r:
            ok = r[f"{peer}_equal_1e-6"]
            chk = "equal" if ok else ("DIFFER" if ok is False else "n/c")
            mark = "ok" if r[f"{peer}_speedup"] >= r[f"{peer}_target"] else "MISS"
            parts.append(f"{peer} {r[f'{peer}_ms']:8.1f} ms {r[f'{peer}_speedup']:6.2f}x "
                         f"(>= {r[f'{peer}_target']:.0f}x {mark}; {chk} {r[f'{peer}_rel_err']:.1e})")
        else:
            parts.append(f"{peer} {'-':>8}")
    return " | ".join(parts)


def _print_peer_summary(rows: list[dict]) -> None:
    notes = {r["rule"]: r["note"] for r in rows if r["note"]}
    if notes:
        print("notes (n/c: not checked, rel err then is ours vs theirs, for information):")
        for rule, note in notes.items():
            print(f"  {rule}: {note}")
    miss = [(r["state"], r["rule"], p, r[f"{p}_speedup"], r[f"{p}_target"]) for r in rows
            for p in ("byzfl", "byzpy") if f"{p}_ms" in r and r[f"{p}_speedup"] < r[f"{p}_target"]]
    if miss:
        print("targets missed: " + "; ".join(f"{s} {rule} vs {p} {v:.2f}x < {t:.0f}x" for s, rule, p, v, t in miss))
    else:
        print("every peer target met")


def _fmt(r):
    ref = f"{r['ref_ms']:10.1f} {r['speedup_vs_ref']:8.2f}x" if r["ref_ms"] is not None else f"{'-':>10} {'-':>9}"
    return (f"{r['batch']:>3} {r['n']:>4} {r['d']:>8} {r['threads']:>2} {r['rule']:<18} {r['f']:>2} "
            f"{r['ms']:9.1f} {r['x_mean']:7.2f} {ref}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one repetition (smoke run)")
    ap.add_argument("--out", default="runs/bench/aggregators.json")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--peers-only", action="store_true", help="only the ByzFL / ByzPy comparison")
    ap.add_argument("--no-peers", action="store_true", help="skip the ByzFL / ByzPy comparison")
    ap.add_argument("--rules", default=None, help="comma-separated rules for the peer comparison (default: all)")
    args = ap.parse_args(argv)
    all_threads = torch.get_num_threads()
    if args.quick:
        cases, reps, ref_reps = [(1, 25, 10**4), (1, 101, 10**3), (4, 25, 10**3)], 1, 1
    else:
        cases, reps, ref_reps = [(1, 25, 10**6), (1, 101, 10**5), (16, 25, 10**5)], args.reps, 1
    rows: list[dict] = []
    if not args.peers_only:
        threads_list = sorted({1, all_threads})
        print(f"{'B':>3} {'n':>4} {'d':>8} {'th':>2} {'rule':<18} {'f':>2} {'ms':>9} {'x mean':>7} {'ref ms':>10} {'vs ref':>9}")
        rows = run(cases, threads_list, reps, ref_reps)
        print("pre-aggregators (1 thread), x mean of the same run")
        rows += run_pre([c for c in cases if c[1] == 25], reps)
    peer_rows: list[dict] = []
    if not args.no_peers:
        peer_rows = run_peers(d=10**4 if args.quick else 10**6, reps=1 if args.quick else args.reps,
                              rules=args.rules.split(",") if args.rules else None)
        torch.set_num_threads(all_threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    meta = dict(torch=torch.__version__, cpu_count=os.cpu_count(), threads_all=all_threads, quick=args.quick,
                reps=reps, dtype="float32", loadavg_at_end=load)
    out.write_text(json.dumps({"meta": meta, "rows": rows, "peers": peer_rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
