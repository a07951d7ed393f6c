"""The settings without a trusted master, at our scale: the UBAR paper's and ByzSGD's headline claims.

UBAR (Guo et al. 2020), Figs. 5-7 and Table I: 30 benign nodes on an Erdős–Rényi graph of
connection rate 0.4, Byzantine ratios 0.1 / 0.3 / 0.5 (Byzantine nodes / all nodes), the gaussian,
bit-flip and ALIE ("Mhamdi"-style, in-distribution) attacks; per rule, the worst test accuracy over
benign nodes after training (the paper: only UBAR converges at every ratio, average fails), and the
aggregation time per iteration per rule at 30 nodes (the paper: UBAR about 8x faster than DKrum and
30x faster than DBulyan).

ByzSGD (El-Mhamdi et al. 2020): test accuracy with 0 and 1 Byzantine servers out of 4, and the
largest distance between correct servers' models with and without the median contraction.

    python benchmarks/bench_decentralized.py [--quick] [--out runs/bench/decentralized.json] [--plot docs/decentralized.png]

Prints the tables and writes JSON (and the plot). Local simulator (the same models as Ray, bit for
bit); times are from one run on this machine: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from codedbft.cluster import RunConfig
from codedbft.cluster.trainer import make_trainer

RULES = ("average", "ubar", "dmedian", "dkrum", "dbulyan", "bridge")
ATTACKS = {"gaussian": {}, "bit-flip": {}, "alie": {}}
RATIOS = (0.1, 0.3, 0.5)


def ubar_run(rule: str, attack: str, ratio: float, benign: int, steps: int, seed: int) -> dict[str, Any]:
    byz = round(benign * ratio / (1 - ratio))
    cfg = RunConfig(setting="decentralized", backend="local", nodes=benign + byz, byzantine=byz, connection=0.4,
                    rule=rule, attack=attack if byz else None, attack_params=ATTACKS[attack], dataset="digits",
                    model="logreg", batch_size=8 * (benign + byz), lr=0.3, steps=steps, eval_every=steps, seed=seed)
    tr = make_trainer(cfg)
    t0 = time.perf_counter()
    agg = [tr.step()["aggregate_ms"] for _ in range(steps)]
    s = tr.summary()
    return {"rule": rule, "attack": attack, "ratio": ratio, "byzantine": byz, "nodes": benign + byz,
            "worst": s["worst_benign_test_accuracy"], "mean": s["final_test_accuracy"],
            "aggregate_ms": statistics.median(agg), "wall_s": time.perf_counter() - t0}


def rule_times(d: int, benign: int, repeats: int) -> dict[str, float]:
    """Median ms of one batched rule call over every benign node's neighbourhood (p = 0.4)."""
    from codedbft.decentralized.rules import build_rule
    from codedbft.topology import build_topology

    topo = build_topology("erdos-renyi", benign, p=0.4, seed=0)
    idx, mask = (torch.from_numpy(a) for a in topo.padded_neighbours(range(benign)))
    g = torch.Generator().manual_seed(0)
    X = torch.randn(benign, d, generator=g)
    received, own = X[idx], X
    out = {}
    for name in RULES:
        rule = build_rule(name)
        losses = torch.rand(mask.shape, generator=g, dtype=torch.float64)
        own_loss = torch.full((benign,), 0.5, dtype=torch.float64)
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            rule(own, received, mask, losses=losses, own_loss=own_loss) if rule.needs_losses else rule(own, received, mask)
            ts.append((time.perf_counter() - t0) * 1e3)
        out[name] = statistics.median(ts)
    return out


def byzsgd_runs(steps: int) -> list[dict[str, Any]]:
    base = dict(setting="byzantine-servers", backend="local", servers=4, workers=15, byzantine=3, dataset="digits",
                model="logreg", batch_size=240, lr=0.2, momentum=0.0, steps=steps, eval_every=steps)
    out = []
    for fps, attack, params, T in [(0, "gaussian", {"sigma": 0.05}, 10), (1, "gaussian", {"sigma": 0.05}, 10),
                                   (1, "gaussian", {"sigma": 0.05}, 0), (1, "gaussian", {"sigma": 200.0}, 10),
                                   (1, "alie", {}, 10)]:
        tr = make_trainer(RunConfig(**base, byzantine_servers=fps, attack=attack, attack_params=params,
                                    contraction_every=T))
        rows = [tr.step() for _ in range(steps)]
        s = tr.summary()
        out.append({"byzantine_servers": fps, "attack": f"{attack} {params or ''}".strip(), "contraction_every": T,
                    "worst": s["worst_benign_test_accuracy"], "max_drift": max(r["server_drift"] for r in rows),
                    "final_spread": s["server_spread"]})
    return out


def plot(results: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(ATTACKS), figsize=(4 * len(ATTACKS), 3.4), sharey=True)
    for ax, attack in zip(axes, ATTACKS):
        for rule in RULES:
            pts = [(r["ratio"], r["worst"]) for r in results if r["rule"] == rule and r["attack"] == attack]
            ax.plot(*zip(*pts), marker="o", label=rule)
        ax.set_title(attack)
        ax.set_xlabel("Byzantine ratio")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("worst benign test accuracy")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10 benign nodes, 30 steps, d = 1e4 for the timings")
    ap.add_argument("--steps", type=int, default=None, help="training steps per run (default 100)")
    ap.add_argument("--benign", type=int, default=None, help="benign nodes (default 30)")
    ap.add_argument("--seed", type=int, default=0, help="seed of graphs, placements, data and attacks")
    ap.add_argument("--out", default="runs/bench/decentralized.json", help="JSON output")
    ap.add_argument("--plot", default=None, help="PNG of worst benign accuracy vs ratio (e.g. docs/decentralized.png)")
    args = ap.parse_args(argv)
    steps = args.steps or (30 if args.quick else 100)
    benign = args.benign or (10 if args.quick else 30)
    from tqdm import tqdm

    grid = [(r, a, q) for a in ATTACKS for q in RATIOS for r in RULES]
    results = [ubar_run(r, a, q, benign, steps, args.seed) for r, a, q in tqdm(grid, desc="ubar grid")]
    print(f"\nworst benign test accuracy after {steps} steps ({benign} benign nodes, p = 0.4, digits, logreg)")
    print(f"{'attack':10s} {'ratio':>5s} " + " ".join(f"{r:>8s}" for r in RULES))
    for a in ATTACKS:
        for q in RATIOS:
            cells = {r["rule"]: r["worst"] for r in results if r["attack"] == a and r["ratio"] == q}
            print(f"{a:10s} {q:5.1f} " + " ".join(f"{cells[r]:8.3f}" for r in RULES))
    d = 10_000 if args.quick else 100_000
    times = rule_times(d, benign, 5 if args.quick else 9)
    print(f"\naggregation ms per iteration ({benign} nodes, p = 0.4, d = {d}), and x ubar")
    for r in RULES:
        print(f"  {r:8s} {times[r]:9.2f} ms  {times[r] / times['ubar']:6.2f}x")
    srv = byzsgd_runs(steps)
    print("\nByzSGD: 4 servers, 15 workers (3 Byzantine, MDA at the servers)")
    print(f"  {'f_ps':>4s} {'attack':24s} {'T':>3s} {'worst acc':>9s} {'max drift':>10s} {'final spread':>12s}")
    for r in srv:
        print(f"  {r['byzantine_servers']:4d} {r['attack']:24s} {r['contraction_every']:3d} {r['worst']:9.3f} "
              f"{r['max_drift']:10.4f} {r['final_spread']:12.4f}")
    out = {"ubar": results, "rule_ms": times, "rule_ms_d": d, "byzsgd": srv, "steps": steps, "benign": benign}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    if args.plot:
        plot(results, args.plot)
    print(f"wrote {args.out}" + (f" and {args.plot}" if args.plot else ""))
    return out


if __name__ == "__main__":
    main()
