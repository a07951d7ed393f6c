"""Distortion fraction eps_hat(q) of ByzShield (MOLS, Ramanujan) vs DETOX (repetition groups) vs none.

eps_hat(q) is the largest fraction of files whose majority an optimal set of q Byzantine workers can
corrupt (ByzShield, Konstantinidis & Ramamoorthy, MLSys 2021). Also times our vectorised exhaustive
search (attacker sets scored in chunks by one matrix product) against a plain-Python brute force, the
baseline, on the same sets. The Ramanujan table is the paper's Table 4 (Case 2, K = 25, r = 5).

    python benchmarks/bench_distortion.py [--quick] [--out runs/bench/distortion.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import time
from pathlib import Path

from codedbft.encoders import ByzShieldCode, RepetitionCode
from codedbft.encoders.byzshield import incidence_matrix, optimal_attack


def python_brute_force(assignment, k: int, q: int, threshold: int) -> int:
    """Baseline: every q-subset, per-file copy counts in plain Python."""
    best = 0
    for S in itertools.combinations(range(len(assignment)), q):
        copies = [0] * k
        for w in S:
            for x in assignment[w]:
                copies[x] += 1
        best = max(best, sum(c >= threshold for c in copies))
    return best


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def distortion_rows(l: int, r: int, qs, method: str = "auto", assignment: str = "mols") -> list[dict]:
    """eps_hat for ByzShield(l, r), DETOX groups of r on the same K, and no redundancy, per q."""
    code = ByzShieldCode(l, r, assignment=assignment)
    K = code.n
    detox = RepetitionCode(n=K, r=r) if K % r == 0 and r % 2 == 1 else None
    rows = []
    for q in qs:
        info = code.max_distortion_info(q, method=method)
        rows.append(
            dict(
                K=K,
                l=l,
                r=r,
                q=q,
                assignment=assignment,
                files=info.files,
                byzshield=info.fraction,
                method=info.method,
                upper_bound=info.upper_bound,
                detox=detox.max_distortion(q)[0] if detox else None,
                no_redundancy=q / K,
                search_s=info.seconds,
                sets=info.evaluated,
            )
        )
    return rows


def timing_rows(cases, repeats: int) -> list[dict]:
    """Exhaustive search over all q at once: ours (vectorised) vs the plain-Python baseline."""
    out = []
    for l, r, qs in cases:
        code = ByzShieldCode(l, r)
        W, t = incidence_matrix(code.assignment, code.k), (r + 1) // 2
        ours = median_time(lambda: [optimal_attack(W, q, t, method="exhaustive") for q in qs], repeats)
        base = median_time(lambda: [python_brute_force(code.assignment, code.k, q, t) for q in qs], max(1, repeats // 2))
        agree = all(
            optimal_attack(W, q, t, method="exhaustive").files == python_brute_force(code.assignment, code.k, q, t)
            for q in qs
        )
        sets = sum(len(list(itertools.combinations(range(code.n), q))) for q in qs) if code.n <= 15 else None
        out.append(dict(K=code.n, l=l, r=r, qs=list(qs), ours_s=ours, python_s=base, speedup=base / ours, agree=agree, sets=sets))
    return out


def heuristic_rows(l: int, r: int, qs) -> list[dict]:
    """Heuristic (greedy + local search) vs exhaustive on a code small enough for both."""
    code = ByzShieldCode(l, r)
    rows = []
    for q in qs:
        ex = code.max_distortion_info(q, method="exhaustive")
        he = code.max_distortion_info(q, method="heuristic")
        rows.append(dict(K=code.n, q=q, exhaustive=ex.fraction, heuristic=he.fraction, exhaustive_s=ex.seconds, heuristic_s=he.seconds))
    return rows


def fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def print_distortion(title: str, rows: list[dict]) -> None:
    print(title)
    print(f"{'K':>3} {'l':>3} {'r':>2} {'q':>3} | {'ByzShield':>9} {'files':>5} {'method':>10} {'bound':>6} | {'DETOX':>6} {'none':>6} | {'Byz/DETOX':>9}")
    for row in rows:
        ratio = row["byzshield"] / row["detox"] if row["detox"] else None
        print(
            f"{row['K']:>3} {row['l']:>3} {row['r']:>2} {row['q']:>3} | {row['byzshield']:>9.3f} {row['files']:>5} "
            f"{row['method']:>10} {row['upper_bound']:>6.3f} | {fmt(row['detox']):>6} {row['no_redundancy']:>6.3f} | {fmt(ratio):>9}"
        )


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="K = 15 MOLS and K = 25 Ramanujan tables only, fewer repeats (smoke run)")
    ap.add_argument("--out", default="runs/bench/distortion.json", help="JSON output path")
    ap.add_argument("--repeats", type=int, default=None, help="timing repeats (median reported)")
    args = ap.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 5)

    tables = distortion_rows(5, 3, range(2, 8))
    if not args.quick:
        tables += distortion_rows(7, 3, range(2, 11))  # K = 21, exhaustive
        tables += distortion_rows(11, 5, range(3, 22, 3))  # K = 55, heuristic (and spectral bound)
    timings = timing_rows([(5, 3, range(2, 8))] + ([] if args.quick else [(7, 3, range(2, 11))]), repeats)
    heur = heuristic_rows(5, 3, range(2, 8)) if args.quick else heuristic_rows(7, 3, range(2, 11))

    ramanujan = distortion_rows(5, 5, range(3, 8), assignment="ramanujan")  # Table 4: K = 25, r = 5
    print_distortion("eps_hat(q), MOLS: fraction of files an optimal q-worker attack corrupts (lower is better)", tables)
    print_distortion("\neps_hat(q), Ramanujan Case 2, m = s = 5 (paper's Table 4: 0.04 0.04 0.08 0.16 0.20)", ramanujan)
    print("\nexhaustive search, all listed q (median of repeats): ours (vectorised) vs plain-Python brute force")
    print(f"{'K':>3} {'q':>6} | {'ours s':>8} {'python s':>9} {'speedup':>8} {'same eps':>8}")
    for row in timings:
        print(f"{row['K']:>3} {row['qs'][0]:>2}..{row['qs'][-1]:<2} | {row['ours_s']:>8.4f} {row['python_s']:>9.3f} {row['speedup']:>7.1f}x {str(row['agree']):>8}")
    print("\nheuristic (greedy + local search) vs exhaustive")
    print(f"{'K':>3} {'q':>3} | {'exhaustive':>10} {'heuristic':>9} | {'exh s':>7} {'heur s':>7}")
    for row in heur:
        print(f"{row['K']:>3} {row['q']:>3} | {row['exhaustive']:>10.3f} {row['heuristic']:>9.3f} | {row['exhaustive_s']:>7.4f} {row['heuristic_s']:>7.4f}")

    result = dict(
        benchmark="distortion",
        quick=args.quick,
        repeats=repeats,
        machine=dict(python=platform.python_version(), processor=platform.processor() or platform.machine()),
        distortion=tables,
        distortion_ramanujan=ramanujan,
        exhaustive_timing=timings,
        heuristic_vs_exhaustive=heur,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")
    return result


if __name__ == "__main__":
    main()
