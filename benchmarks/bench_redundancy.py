"""Redundancy versus overhead: every scheme at n ~ 15 workers and s in {1, 2, 3} Byzantine ones.

The study is the shipped sweep grid ``codedbft/grids/redundancy.yaml`` (``codedbft sweep
redundancy`` runs it as is); this script runs that grid through :func:`codedbft.sweep.run_sweep`
with its step count, s values, n and seed as flags, then reads every run directory to print the
table below, and writes the JSON and a figure.

For each scheme (vanilla + mean as the undefended reference, vanilla + median, vanilla + multi-krum, DRACO repetition, DRACO cyclic, DETOX,
ByzShield, RRR, RRR-randomized with q in {0.1, 0.5}, data encoding) and each s, two training runs of
T steps on the local backend (``dedup=False``: every (worker, partition) gradient is computed, as on
a cluster), one under ALIE and one under the omniscient attack (c = 10), Byzantine workers placed at
random (seeded, fixed for the run). Reported, all measured in the runs:

* ``redundancy``: partition gradients computed per useful one (``1 / computation_efficiency``; data
  encoding: encoded-block products per block, m / (m - 2t));
* ``decode/step``: median over steps of (decode + aggregate) / step time;
* ``decode/sum``: median (decode + aggregate) time over the time of ``messages.sum(0)`` on a float32
  array of the same (message rows, d), measured in this process;
* ``step ms``: median step time, and ``step x``: its ratio to vanilla + median at the same s in the
  same sweep (the baseline without redundancy);
* ``acc ALIE`` / ``acc omni``: test accuracy after T steps under each attack (``clean``: vanilla +
  mean without attack, the reference);
* ``exact``: fraction of steps the scheme certified exact (under ALIE; omniscient in the JSON).

Data: digits + logistic regression (lr 0.2, momentum 0.9, global batch 300); data encoding needs a
gradient linear in the data, so it runs least squares on ``digits-linear`` + ``linear`` (lr 0.05),
marked ``*`` (its accuracy is that of a linear least-squares classifier, not comparable 1:1).
n is 15 unless the scheme needs another size (DRACO repetition with s = 3 needs (2s+1) | n: n = 14);
a scheme that cannot be built at (n, s) is listed with the reason (the sweep's ``invalid`` rows).

Runs go one at a time by default (``--max-parallel 1``): step times of runs sharing the CPUs would
measure the sharing. The sweep directory (``<out stem>-sweep``) is started afresh unless
``--resume``. Ray starts an embedded local instance (on the development machines: through the
``loopback`` wrapper, see CONTRIBUTING.md).

    python benchmarks/bench_redundancy.py [--quick] [--steps T] [--out runs/bench/redundancy.json]

Writes the JSON and ``<out stem>.png`` (redundancy vs accuracy, redundancy vs step time).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from _timing import median_ms

from codedbft.sweep import Grid, run_sweep
from codedbft.sweep.grid import shipped_grids

#: table labels in the grid's order (the zip group's schemes, then data encoding)
LABELS = ["vanilla+mean", "vanilla+median", "vanilla+multi-krum", "draco-repetition", "draco-cyclic", "detox",
          "byzshield", "rrr", "rrr-rand q=0.1", "rrr-rand q=0.5", "data-encoding*"]
SCHEMES = [(label, {}, label.endswith("*")) for label in LABELS]  # (label, -, least squares): for plot()
ATTACKS = ("alie", "omniscient")


def label_of(row: dict[str, Any]) -> str:
    """The table label of a results row (scheme, rule, q)."""
    scheme = row["scheme"]
    if scheme == "vanilla":
        return f"vanilla+{row['aggregator']}"
    if scheme == "rrr-randomized":
        return f"rrr-rand q={(row.get('scheme_params') or {}).get('q', 0.1)}"
    return "data-encoding*" if scheme == "data-encoding" else scheme


def workers_for(label: str, s: int, n: int) -> int:
    """n, or the nearest size the scheme's structure needs (DRACO repetition: (2s+1) | n)."""
    if label == "draco-repetition" and n % (2 * s + 1):
        r = 2 * s + 1
        return max(r, round(n / r) * r)
    return n


def make_grid(steps: int, ss: list[int], n: int, seed: int) -> Grid:
    """The shipped redundancy grid at T steps, s in ``ss``, n workers, one seed."""
    d = Grid.from_file(shipped_grids()["redundancy"]).to_dict()
    every = max(1, min(50, steps))
    d["base"].update(steps=steps, workers=n, eval_every=every, checkpoint_every=every)
    d["axes"]["byzantine"] = list(ss)
    d["seeds"] = [seed]
    keep = [inc for inc in d["include"] if inc["scheme"] != "draco-repetition"
            and (inc.get("byzantine") in ss or inc.get("byzantine") == 0)]
    d["exclude"] = [e for e in d["exclude"] if e.get("scheme") != "draco-repetition"]
    for s in ss:  # DRACO repetition where (2s+1) does not divide n: its own n
        nn = workers_for("draco-repetition", s, n)
        if nn != n:
            d["exclude"].append({"scheme": "draco-repetition", "byzantine": s})
            keep += [{"scheme": "draco-repetition", "byzantine": s, "workers": nn, "attack": a} for a in ATTACKS]
    d["include"] = keep
    return Grid.from_dict(d)


def sum_ms(rows: int, d: int, repeat: int = 7) -> float:
    """Median time of ``messages.sum(0)`` on a (rows, d) float32 array: the no-redundancy baseline."""
    import numpy as np

    x = np.random.default_rng(0).standard_normal((rows, d), dtype=np.float32)
    return median_ms(lambda: x.sum(axis=0), repeat)


def measured(out: Path, row: dict[str, Any]) -> dict[str, Any]:
    """The bench's numbers of one finished run, from its run directory (medians over steps)."""
    from codedbft.cluster import RunConfig
    from codedbft.cluster.rundir import RunDir
    from codedbft.schemes import build_scheme

    rd = RunDir(out / row["run_dir"])
    cfg = RunConfig.from_dict({k: v for k, v in rd.read_config().items() if k in RunConfig.field_names()})
    summary = json.loads(rd.summary_path.read_text())
    sc = build_scheme(cfg.scheme_config())
    rows = [r for r in rd.read_metrics() if "step_ms" in r]
    rows_per_worker = len(sc.assignment[0]) if getattr(sc, "stacked", False) else 1
    frac = [(r.get("decode_ms", 0.0) + r.get("aggregate_ms", 0.0)) / r["step_ms"] for r in rows if r["step_ms"] > 0]
    return {
        "n": sc.n, "k": sc.k, "d": summary["d"], "redundancy": row["redundancy"],
        "step_ms": statistics.median(r["step_ms"] for r in rows),
        "decode_ms": statistics.median(r.get("decode_ms", 0.0) + r.get("aggregate_ms", 0.0) for r in rows),
        "decode_frac": statistics.median(frac) if frac else None,
        "sum_ms": sum_ms(sc.n * rows_per_worker, summary["d"]),
        "accuracy": row["final_test_accuracy"], "exact_frac": 1.0 - summary["inexact_steps"] / cfg.steps,
        "flagged_total": row["flagged_total"], "isolated": summary["isolated"], "wall_s": row["wall_s"],
    }


def study(steps: int, ss: list[int], n: int, seed: int, sweep_dir: Path | None = None, max_parallel: int = 1,
          resume: bool = False) -> dict[str, Any]:
    sweep_dir = sweep_dir or Path("runs/bench/redundancy-sweep")
    if sweep_dir.exists() and not resume:
        shutil.rmtree(sweep_dir)
    rows = run_sweep(make_grid(steps, ss, n, seed), sweep_dir, max_parallel=max_parallel, plot=False)
    out = sweep_dir.resolve()
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        raise RuntimeError(f"{len(failed)} runs failed, e.g. {failed[0]['cell']}: {failed[0]['error']}")
    clean = {"digits-linear" in r["cell"]: r["final_test_accuracy"] for r in rows if r["byzantine"] == 0}
    by_key: dict[tuple[int, str], dict[str, Any]] = {}
    for r in rows:
        if r["byzantine"] == 0:
            continue
        entry = by_key.setdefault((r["byzantine"], label_of(r)), {"scheme": label_of(r), "s": r["byzantine"],
                                                                   "least_squares": r["scheme"] == "data-encoding"})
        if r["status"] == "invalid":
            entry["unavailable"] = r["error"]
        else:
            entry[r["attack"]] = measured(out, r)
    results = [by_key[(s, label)] for s in ss for label in LABELS if (s, label) in by_key]
    return {"steps": steps, "n": n, "seed": seed, "clean_accuracy": clean.get(False),
            "clean_accuracy_least_squares": clean.get(True), "results": results, "sweep_dir": str(sweep_dir)}


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
    ap.add_argument("--out", default="runs/bench/redundancy.json", help="the JSON report (the sweep: <stem>-sweep/)")
    ap.add_argument("--max-parallel", type=int, default=1, help="runs at a time (default 1: clean step times)")
    ap.add_argument("--resume", action="store_true", help="keep the finished runs of an earlier sweep with the same flags")
    args = ap.parse_args(argv)
    steps = args.steps or (15 if args.quick else 150)
    ss = args.s or ([2] if args.quick else [1, 2, 3])
    t0 = time.perf_counter()
    out = Path(args.out)
    report = study(steps, ss, args.workers, args.seed, out.with_name(out.stem + "-sweep"), args.max_parallel,
                   args.resume)
    report["wall_s"] = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=float))
    png = out.with_suffix(".png")
    plot(report, png)
    print(table(report))
    print(f"\nwall {report['wall_s']:.0f} s; wrote {out} and {png}")
    return report


if __name__ == "__main__":
    main()
