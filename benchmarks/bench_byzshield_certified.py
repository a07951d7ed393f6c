"""How many liar placements ByzShield certifies exact: the per-file vote vs the global explanation.

ByzShield (Konstantinidis & Ramamoorthy, MLSys 2021), l = 5, r = 3 (n = 15 workers, K = 25 files),
the decoder sized for q = the number of liars. Each placement of q liars sends garbage on all its
files: ``neg10`` (-10x the true file gradient: liars sharing a file agree there) and ``random``
(independent junk). For each q: placements certified exact by the earlier per-file rule
(``certify="per-file"``) and by the global rule (the default), placements where an honest worker is
flagged (false accusations), and the decode cost of both rules. Exhaustive for q = 2 (C(15, 2) =
105), seeded samples for q >= 3. A second table times the decode at large d for a fault-free, a
certified and an uncertified step.

    python benchmarks/bench_byzshield_certified.py [--quick] [--out runs/bench/byzshield_certified.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from codedbft.decoders.byzshield import ByzShieldDecoder
from codedbft.encoders import ByzShieldCode


def forge(code, M, G, liars, attack, rng):
    M = M.copy()
    for w in liars:
        for p, x in enumerate(code.assignment[w]):
            M[w, p] = -10.0 * G[x] if attack == "neg10" else rng.standard_normal(G.shape[1]) * 100
    return M


def certified_rows(qs, samples: int, d: int, seed: int) -> list[dict]:
    rows = []
    for q in qs:
        code = ByzShieldCode(5, 3, q=q)
        rules = {"per_file": ByzShieldDecoder(code, code.aggregator, code.f_files, certify="per-file"),
                 "global": code.decoder()}
        rng = np.random.default_rng(seed + q)
        G = rng.standard_normal((code.k, d)).astype(np.float32)
        truth = G.astype(np.float64).sum(axis=0).astype(np.float32)
        honest = code.encode(G)
        total = math.comb(code.n, q)
        if total <= samples:
            placements, how = list(itertools.combinations(range(code.n), q)), "exhaustive"
        else:
            seen: set[tuple[int, ...]] = set()
            while len(seen) < samples:
                seen.add(tuple(sorted(int(w) for w in rng.choice(code.n, size=q, replace=False))))
            placements, how = sorted(seen), f"sampled (seed {seed + q})"
        for attack in ("neg10", "random"):
            row = dict(q=q, attack=attack, placements=len(placements), of=total, how=how)
            for name, dec in rules.items():
                exact = accused = wrong = 0
                ms, certify_ms = [], []
                for liars in placements:
                    res = dec.decode(forge(code, honest, G, liars, attack, rng))
                    exact += res.exact
                    accused += not set(res.flagged) <= set(liars)
                    wrong += bool(res.exact and not np.array_equal(res.gradient, truth))
                    ms.append(res.info["decode_ms"])
                    certify_ms.append(res.info["certify_ms"])
                row.update({f"{name}_exact": exact, f"{name}_false_accusations": accused,
                            f"{name}_wrong_exact": wrong, f"{name}_decode_ms": statistics.median(ms),
                            f"{name}_certify_ms": statistics.median(certify_ms),
                            f"{name}_certify_ms_max": max(certify_ms)})
            rows.append(row)
    return rows


def cost_rows(ds, repeats: int) -> list[dict]:
    """Median decode time, per-file vs global, at large d: fault-free, 2 liars certified, 3 uncertified."""
    rows = []
    for d in ds:
        rng = np.random.default_rng(0)
        for case, q, liars in (("fault-free", 2, ()), ("2 liars (9, 11), certified", 2, (9, 11)),
                               ("worst 3 liars, q = 3", 3, None)):
            code = ByzShieldCode(5, 3, q=q)
            G = rng.standard_normal((code.k, d)).astype(np.float32)
            if liars is None:
                liars = code.max_distortion(3)[1]
            M = forge(code, code.encode(G), G, liars, "random", rng)
            plain = []
            for _ in range(repeats):
                t = time.perf_counter()
                M.sum(axis=(0, 1))
                plain.append((time.perf_counter() - t) * 1e3)
            row = dict(d=d, case=case, sum_ms=statistics.median(plain))
            for name, certify in (("per_file", "per-file"), ("global", "global")):
                dec = ByzShieldDecoder(code, code.aggregator, code.f_files, certify=certify)
                dec.decode(M)
                ms, cert, exact = [], [], None
                for _ in range(repeats):
                    res = dec.decode(M)
                    ms.append(res.info["decode_ms"])
                    cert.append(res.info["certify_ms"])
                    exact = res.exact
                row.update({f"{name}_ms": statistics.median(ms), f"{name}_certify_ms": statistics.median(cert),
                            f"{name}_exact": exact})
            rows.append(row)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples and a smaller d")
    ap.add_argument("--samples", type=int, default=None, help="placements per q >= 3 (default 500; 60 with --quick)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/bench/byzshield_certified.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    samples = args.samples or (60 if args.quick else 500)
    qs = (2, 3, 4, 5)
    certified = certified_rows(qs, samples, d=32, seed=args.seed)
    print("ByzShield l=5 r=3 (n=15, K=25), decoder sized for q = liars; garbage on all the liars' files")
    print(f"{'q':>2} {'attack':>7} {'placements':>14} {'exact: per-file':>16} {'global':>7} "
          f"{'false acc.: per-file':>21} {'global':>7} {'wrong exact':>12} "
          f"{'certify ms: per-file':>21} {'global (max)':>14}")
    for r in certified:
        print(f"{r['q']:>2} {r['attack']:>7} {r['placements']:>6}/{r['of']:<7} {r['per_file_exact']:>16} "
              f"{r['global_exact']:>7} {r['per_file_false_accusations']:>21} {r['global_false_accusations']:>7} "
              f"{r['per_file_wrong_exact'] + r['global_wrong_exact']:>12} "
              f"{r['per_file_certify_ms']:>21.3f} {r['global_certify_ms']:>7.3f} ({r['global_certify_ms_max']:.2f})")
    costs = cost_rows((10_000,) if args.quick else (100_000, 1_000_000), repeats=3 if args.quick else 7)
    print("\ndecode cost, one thread, float32 (15, 5, d): median ms (certify stage)")
    print(f"{'d':>8} {'case':>28} {'plain sum':>10} {'per-file':>18} {'global':>18} {'exact p/g':>10}")
    for r in costs:
        exact = f"{str(r['per_file_exact'])[0]}/{str(r['global_exact'])[0]}"
        print(f"{r['d']:>8} {r['case']:>28} {r['sum_ms']:>10.2f} {r['per_file_ms']:>9.2f} "
              f"({r['per_file_certify_ms']:>5.2f}) {r['global_ms']:>9.2f} ({r['global_certify_ms']:>5.2f}) {exact:>10}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"certified": certified, "cost": costs, "samples": samples, "seed": args.seed,
                               "python": platform.python_version(), "machine": platform.machine()}, indent=1) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
