"""DETOX (Rajput, Wang, Charles & Papailiopoulos, NeurIPS 2019): a vote first makes robust rules better and cheaper.

DETOX votes within groups of r = 3 and hands the rule n/3 votes instead of n messages: the claim
is that Multi-Krum and Bulyan run that way are more accurate under attack and faster than the same
rules alone ("vanilla"). Tested with the shipped sweep ``detox-vs-vanilla`` (n = 21, logreg on
digits, ALIE and the omniscient attack), trimmed for ``--quick``: accuracy per (rule, b, attack),
and the rule's time per step (``aggregate_ms``) as the speed measure. At this model size (d = 650)
a step is per-call overhead, so the step time itself cannot test the speed claim; the rule's time
can.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from codedbft.reproduce.base import Context, Outcome, claim, shipped_grid, sweep, verdict


@claim("detox-vs-vanilla", paper="DETOX (Rajput et al., NeurIPS 2019)", where="abstract; §5 (vs vanilla Multi-Krum and Bulyan)",
       statement="Robust rules behind DETOX's group vote are more accurate and faster than the same rules alone.",
       paper_value="higher accuracy and up to an order of magnitude speed-up", quick_s=60)
def detox_vs_vanilla(ctx: Context) -> Outcome:
    grid = shipped_grid("detox-vs-vanilla")
    grid["axes"] = {**grid["axes"], "aggregator": ["multi-krum", "bulyan"]}
    if ctx.quick:
        grid["axes"].update(byzantine=[2], attack=["alie"])
        grid["seeds"], grid["base"] = [0], {**grid["base"], "steps": 50, "eval_every": 25}
    rows = sweep(ctx, grid)
    acc: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    agg: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        key = (r["aggregator"], r["byzantine"], r["attack"])
        acc[key][r["scheme"]].append(float(r["final_test_accuracy"]))
        agg[r["aggregator"]][r["scheme"]].append(float(r["aggregate_ms"]))
    gains = {f"{a} b={b} {att}": statistics.mean(v["detox"]) - statistics.mean(v["vanilla"])
             for (a, b, att), v in acc.items()}
    speed = {a: statistics.mean(v["vanilla"]) / statistics.mean(v["detox"]) for a, v in agg.items()}
    better = [g >= -0.005 for g in gains.values()]  # within half a point: the same accuracy
    faster = [s > 1.0 for s in speed.values()]
    ours = ("accuracy DETOX − vanilla: " + ", ".join(f"{k} {g:+.3f}" for k, g in gains.items())
            + "; rule time vanilla/DETOX: " + ", ".join(f"{a} {s:.2f}x" for a, s in speed.items()))
    return Outcome(ours, verdict(all(better) and all(faster), any(better) or any(faster)),
                   {"accuracy_gain": gains, "rule_speedup": speed})
