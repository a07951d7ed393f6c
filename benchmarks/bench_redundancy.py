"""Redundancy versus overhead: every scheme at n ~ 15 workers and s in {1, 2, 3} Byzantine ones.

For each scheme (vanilla + mean as the undefended reference, vanilla + median, vanilla + multi-krum, DRACO repetition, DRACO cyclic, DETOX,
ByzShield, RRR, RRR-randomized with q in {0.1, 0.5}, data encoding) and each s, two training runs of
T steps on the local backend (``dedup=False``: every (worker, partition) gradient is computed, as on
a cluster), one under ALIE and one under the omniscient attack (c = 10), Byzantine workers placed at
random (seeded, fixed for the run). Reported, all measured in the runs:

* ``redundancy``: partition gradients computed per useful one (``1 / computation_efficiency``; data
  encoding: encoded-block products per block, m / (m - 2t));
* ``decode/step``: median over steps of (decode + aggregate) / step time;
* ``decode/sum``: median (decode + aggregate) time over the time of ``messages.sum(0)`` on a float32
  array of the same (message rows, d), measured in the same process;
* ``step ms``: median step time, and ``step x``: its ratio to vanilla + median at the same s in the
  same run (the baseline without redundancy);
* ``acc ALIE`` / ``acc omni``: test accuracy after T steps under each attack (``clean``: vanilla +
  mean without attack, the reference);
* ``exact``: fraction of steps the scheme certified exact (under ALIE; omniscient in the JSON).

Data: digits + logistic regression (lr 0.2, momentum 0.9, global batch 300); data encoding needs a
gradient linear in the data, so it runs least squares on ``digits-linear`` + ``linear`` (lr 0.05),
marked ``*`` (its accuracy is that of a linear least-squares classifier, not comparable 1:1).
n is 15 unless the scheme needs another size (DRACO repetition with s = 3 needs (2s+1) | n: n = 14);
a scheme that cannot be built at (n, s) is listed with the reason.

    python benchmarks/bench_redundancy.py [--quick] [--steps T] [--out runs/bench/redundancy.json]

Writes the JSON and ``<out stem>.png`` (redundancy vs accuracy, redundancy vs step time).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from _timing import median_ms

from codedbft.cluster import Master, RunConfig

LOGREG = dict(dataset="digits", model="logreg", lr=0.2)
LINEAR = dict(dataset="digits-linear", model="linear", lr=0.05)

#: (label, RunConfig overrides, needs least squares)
SCHEMES: list[tuple[str, dict[str, Any], bool]] = [
    ("vanilla+mean", dict(scheme="vanilla", aggregator="mean"), False),  # no defence: what the attacks do
    ("vanilla+median", dict(scheme="vanilla", aggregator="median"), False),
    ("vanilla+multi-krum", dict(scheme="vanilla", aggregator="multi-krum"), False),
    ("draco-repetition", dict(scheme="draco-repetition"), False),
    ("draco-cyclic", dict(scheme="draco-cyclic"), False),
    ("detox", dict(scheme="detox"), False),
    ("byzshield", dict(scheme="byzshield"), False),
    ("rrr", dict(scheme="rrr"), False),
    ("rrr-rand q=0.1", dict(scheme="rrr-randomized", scheme_params={"q": 0.1}), False),
    ("rrr-rand q=0.5", dict(scheme="rrr-randomized", scheme_params={"q": 0.5}), False),
    ("data-encoding*", dict(scheme="data-encoding"), True),
]
ATTACKS = {"alie": {}, "omniscient": {"c": 10.0}}


def workers_for(label: str, s: int, n: int) -> int:
    """n, or the nearest size the scheme's structure needs (DRACO repetition: (2s+1) | n)."""
    if label == "draco-repetition" and n % (2 * s + 1):
        r = 2 * s + 1
        return max(r, round(n / r) * r)
    return n


def sum_ms(rows: int, d: int, repeat: int = 7) -> float:
    """Median time of ``messages.sum(0)`` on a (rows, d) float32 array: the no-redundancy baseline."""
    import numpy as np

    x = np.random.default_rng(0).standard_normal((rows, d), dtype=np.float32)
    return median_ms(lambda: x.sum(axis=0), repeat)


def run_one(cfg: RunConfig) -> dict[str, Any]:
    m = Master(cfg)
    t0 = time.perf_counter()
    rows = [m.step() for _ in range(cfg.steps)]
    wall = time.perf_counter() - t0
    s = m.summary()
    m.close()
    sc = m.scheme
    rows_per_worker = len(sc.assignment[0]) if getattr(sc, "stacked", False) else 1
    base_sum = sum_ms(sc.n * rows_per_worker, s["d"])
    frac = [(r.get("decode_ms", 0.0) + r.get("aggregate_ms", 0.0)) / r["step_ms"] for r in rows if r["step_ms"] > 0]
    return {
        "n": m.scheme.n, "k": m.scheme.k, "d": s["d"],
        "redundancy": 1.0 / s["computation_efficiency"] if s["computation_efficiency"] else None,
        "step_ms": statistics.median(r["step_ms"] for r in rows),
        "decode_ms": statistics.median(r.get("decode_ms", 0.0) + r.get("aggregate_ms", 0.0) for r in rows),
        "decode_frac": statistics.median(frac) if frac else None,
        "sum_ms": base_sum,
        "accuracy": s["final_test_accuracy"], "exact_frac": 1.0 - s["inexact_steps"] / cfg.steps,
        "flagged_total": s["flagged_total"], "isolated": s["isolated"], "wall_s": wall,
    }


def study(steps: int, ss: list[int], n: int, seed: int) -> dict[str, Any]:
    base = dict(backend="local", dedup=False, batch_size=300, momentum=0.9, steps=steps, eval_every=steps,
                log_every=steps, seed=seed, placement="random")
    results: list[dict[str, Any]] = []
    clean = run_one(RunConfig(**base, **LOGREG, scheme="vanilla", workers=n, byzantine=0, attack=None))
    clean_ls = run_one(RunConfig(**base, **LINEAR, scheme="vanilla", workers=n, byzantine=0, attack=None))
    for s in ss:
        for label, over, linear in SCHEMES:
            entry: dict[str, Any] = {"scheme": label, "s": s, "least_squares": linear}
            nn = workers_for(label, s, n)
            for attack, params in ATTACKS.items():
                try:
                    cfg = RunConfig(**base, **(LINEAR if linear else LOGREG), **over, workers=nn, byzantine=s,
                                    attack=attack, attack_params=params)
                    entry[attack] = run_one(cfg)
                except ValueError as err:  # the scheme cannot be built at (n, s): say why
                    entry["unavailable"] = str(err)
                    break
            results.append(entry)
            print(f"  s={s} {label:<20} {'n/a' if 'unavailable' in entry else 'done'}", flush=True)
    return {"steps": steps, "n": n, "seed": seed, "clean_accuracy": clean["accuracy"],
            "clean_accuracy_least_squares": clean_ls["accuracy"], "results": results}


def table(report: dict[str, Any]) -> str:
    head = ("| s | scheme | n | redundancy | step ms | step x | decode/step | decode/sum | acc ALIE | acc omni | exact |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    base = {e["s"]: e["alie"]["step_ms"] for e in report["results"]
            if e["scheme"] == "vanilla+median" and "alie" in e}
    for e in report["results"]:
        if "unavailable" in e:
            lines.append(f"| {e['s']} | {e['scheme']} | - | n/a: {e['unavailable']} | | | | | | | |")
            continue
        a, o = e["alie"], e["omniscient"]
        ratio = a["step_ms"] / base[e["s"]] if e["s"] in base else float("nan")
        lines.append(
            f"| {e['s']} | {e['scheme']} | {a['n']} | {a['redundancy']:.2f} | {a['step_ms']:.1f} | {ratio:.2f} | "
            f"{a['decode_frac']:.0%} | {a['decode_ms'] / a['sum_ms']:.1f} | {a['accuracy']:.3f} | {o['accuracy']:.3f} | {a['exact_frac']:.2f} |")
    lines.append(f"\nclean (vanilla + mean, no attack, {report['steps']} steps): logreg {report['clean_accuracy']:.3f}, "
                 f"least squares* {report['clean_accuracy_least_squares']:.3f}")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    marks = {1: "o", 2: "s", 3: "^"}
    colors = {label: plt.cm.tab20(i / 20) for i, (label, _, _) in enumerate(SCHEMES)}
    for e in report["results"]:
        if "unavailable" in e:
            continue
        c, mk = colors[e["scheme"]], marks.get(e["s"], "x")
        r = e["alie"]["redundancy"]
        axes[0].scatter(r, e["alie"]["accuracy"], color=c, marker=mk)
        axes[1].scatter(r, e["omniscient"]["accuracy"], color=c, marker=mk)
        axes[2].scatter(r, e["alie"]["step_ms"], color=c, marker=mk)
    for ax, title, ylabel in ((axes[0], "ALIE", "test accuracy"), (axes[1], "omniscient (c = 10)", "test accuracy"),
                              (axes[2], "step time (ALIE)", "median step ms")):
        ax.set_xlabel("redundancy (computed / useful gradients)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=colors[lbl], marker="o", ls="", label=lbl) for lbl, _, _ in SCHEMES]
    handles += [plt.Line2D([], [], color="k", marker=m, ls="", label=f"s = {s}") for s, m in marks.items()]
    fig.legend(handles=handles, loc="center right", fontsize=8)
    fig.suptitle(f"n ~ {report['n']}, {report['steps']} steps, digits (* least squares on digits-linear)")
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="s = 2 only, 15 steps: a smoke run")
    ap.add_argument("--steps", type=int, default=None, help="training steps per run (default 150)")
    ap.add_argument("--s", type=int, nargs="+", default=None, help="Byzantine counts (default 1 2 3)")
    ap.add_argument("--workers", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/bench/redundancy.json")
    args = ap.parse_args(argv)
    steps = args.steps or (15 if args.quick else 150)
    ss = args.s or ([2] if args.quick else [1, 2, 3])
    t0 = time.perf_counter()
    report = study(steps, ss, args.workers, args.seed)
    report["wall_s"] = time.perf_counter() - t0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=float))
    png = out.with_suffix(".png")
    plot(report, png)
    print(table(report))
    print(f"\nwall {report['wall_s']:.0f} s; wrote {out} and {png}")
    return report


if __name__ == "__main__":
    main()
