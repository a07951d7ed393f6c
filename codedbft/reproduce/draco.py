"""DRACO (Chen, Wang, Charles & Papailiopoulos, ICML 2018): exact model, and faster than median rules.

``draco-identical``: with r = 2s+1 copies (repetition) or the cyclic MDS code, the model trained
under s Byzantine workers is the attack-free one. Tested bit for bit: the same configuration with and
without the attack (``byzantine`` stays 2, so the code and the placement are the same; only the
forging differs), under ALIE and the omniscient attack.

``draco-speed``: the abstract's "several times, to orders of magnitude faster than median-based
approaches", as time to a target test accuracy on the same Ray actors
(``benchmarks/bench_draco_vs_median.py``).
"""

from __future__ import annotations

from typing import Any

from codedbft.reproduce.base import Context, Outcome, benchmark, benchmark_missing, claim, final_params, train, verdict

PAPER = "DRACO (Chen et al., ICML 2018)"


def _pair(ctx: Context, scheme: str, attack: str, steps: int) -> dict[str, Any]:
    base = dict(backend="local", scheme=scheme, workers=15, byzantine=2, dataset="digits", model="mlp", lr=0.1,
                momentum=0.9, batch_size=300, steps=steps, eval_every=steps, checkpoint_every=steps)
    clean = train(ctx, f"{scheme}-clean", **base, attack=None)  # byzantine stays 2: same code
    hit = train(ctx, f"{scheme}-{attack}", **base, attack=attack)
    w0, w = final_params(clean), final_params(hit)
    return {"scheme": scheme, "attack": attack, "same_sha": clean["model_sha256"] == hit["model_sha256"],
            "rel_distance": float((w - w0).norm() / w0.norm()), "exact_steps": steps - hit["inexact_steps"],
            "steps": steps, "accuracy": hit["final_test_accuracy"], "run_dir": hit["run_dir"]}


@claim("draco-identical", paper=PAPER, where="abstract; §3 (decoding recovers the exact sum)",
       statement="The model trained with s Byzantine workers is identical to the attack-free one (r = 2s+1).",
       paper_value="identical model", quick_s=25)
def draco_identical(ctx: Context) -> Outcome:
    steps = 50 if ctx.quick else 300
    rows = [_pair(ctx, scheme, attack, steps) for scheme in ("draco-repetition", "draco-cyclic")
            for attack in ("alie", "omniscient")]
    rep = [r for r in rows if r["scheme"] == "draco-repetition"]
    cyc = [r for r in rows if r["scheme"] == "draco-cyclic"]
    rep_ok = all(r["same_sha"] for r in rep)
    cyc_dist = max(r["rel_distance"] for r in cyc)
    exact = all(r["exact_steps"] == steps for r in rows)
    cyc_text = "bit for bit" if cyc_dist == 0 else f"within {cyc_dist:.1e} relative (float32 rounding of a float64 decode)"
    ours = (f"n=15, s=2, {steps} steps, ALIE and omniscient: repetition {'bit for bit' if rep_ok else 'differs'}; "
            f"cyclic {cyc_text}; "
            f"every step exact: {'yes' if exact else 'no'}")
    return Outcome(ours, verdict(rep_ok and cyc_dist <= 1e-6 and exact, rep_ok or exact), {"runs": rows})


@claim("draco-speed", paper=PAPER, where="abstract; §5 (time to accuracy vs geometric median and median)",
       statement="DRACO reaches a target accuracy several times faster than median-based rules.",
       paper_value="several times to orders of magnitude faster", requires=lambda: benchmark_missing(
           "bench_draco_vs_median"), quick_s=150)
def draco_speed(ctx: Context) -> Outcome:
    bench = benchmark("bench_draco_vs_median")
    rows = bench.measure(steps=60 if ctx.quick else 300, target=0.9, progress=ctx.progress)
    ctx.write_json("draco_vs_median.json", rows)
    ttt = {r["defence"]: r["time_to_target_s"] for r in rows}
    draco = min((v for k, v in ttt.items() if k.startswith("draco") and v is not None), default=None)
    ratios = {k: (v / draco if v is not None and draco else None) for k, v in ttt.items() if not k.startswith("draco")}
    parts = ", ".join(f"{k} {'never' if x is None else f'{x:.2f}x'}" for k, x in ratios.items())
    dist = ", ".join(f"{r['defence']} {r['distance_from_attack_free']:.1e}" for r in rows)
    ours = (f"time to 0.9 test accuracy on Ray (ALIE, b=2 of 15), as a multiple of DRACO's: {parts}; "
            f"distance from the attack-free model: {dist}")
    several = [x is None or x >= 2.0 for x in ratios.values()]
    faster = [x is None or x > 1.0 for x in ratios.values()]
    return Outcome(ours, verdict(draco is not None and all(several), draco is not None and any(faster)),
                   {"rows": rows, "ratios": ratios})
