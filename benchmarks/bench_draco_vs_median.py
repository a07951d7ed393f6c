"""DRACO against median-based rules on the same Ray actors: time per step, time to accuracy, distance.

DRACO (Chen et al., ICML 2018) claims two things: the model trained under attack is the one trained
without adversaries, and DRACO is "several times, to orders of magnitude, faster than median-based
approaches" to reach a target accuracy. Here: the same model (MLP on digits, d = 4810), data, batch,
attack (ALIE, b = 2 of n = 15, worst placement left to the seed) and Ray actors for DRACO repetition
(r = 5), DRACO cyclic, vanilla + coordinate-wise median and vanilla + geometric median. Per
defence: the median step time on Ray, the training time until the test accuracy first reaches the
target (evaluated every ``--eval-every`` steps; summed step times, so evaluation is not counted),
the final accuracy, and the relative distance ‖w − w₀‖ / ‖w₀‖ of the final model from the same
defence's attack-free run (w₀, on the local simulator, which is the Ray model bit for bit).

    python benchmarks/bench_draco_vs_median.py [--steps 300] [--target 0.9] [--out runs/bench/draco_vs_median.json]

Prints the table and writes JSON. Ray: the embedded local instance (one actor per CPU).
``codedbft reproduce draco-speed`` runs :func:`measure` through this file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

DEFENCES: tuple[tuple[str, str | None], ...] = (
    ("draco-repetition", None), ("draco-cyclic", None), ("vanilla", "median"), ("vanilla", "geomed"))


def label(scheme: str, aggregator: str | None) -> str:
    return scheme if aggregator is None else f"{scheme}+{aggregator}"


def _config(scheme: str, aggregator: str | None, steps: int, eval_every: int, attacked: bool, backend: str,
            seed: int) -> Any:
    from codedbft.cluster import RunConfig

    # attack-free keeps byzantine = 2: the code (r = 2s+1) and the rule's f are sized by it
    return RunConfig(backend=backend, scheme=scheme, aggregator=aggregator, workers=15,
                     byzantine=2, attack="alie" if attacked else None,
                     dataset="digits", model="mlp", lr=0.1, momentum=0.9, batch_size=300, steps=steps,
                     eval_every=eval_every, log_every=eval_every, seed=seed)


def _train(config: Any) -> tuple[list[dict[str, Any]], torch.Tensor]:
    from codedbft.cluster.trainer import make_trainer

    tr = make_trainer(config)
    try:
        tr.start()
        rows = [tr.step() for _ in range(config.steps)]
        return rows, tr.w.clone()
    finally:
        tr.close()


def time_to_target(rows: list[dict[str, Any]], target: float) -> float | None:
    """Seconds of training (summed step times) until the first evaluation at or above ``target``."""
    elapsed = 0.0
    for row in rows:
        elapsed += row["step_ms"] / 1e3
        acc = row.get("test_accuracy")
        if acc is not None and acc >= target:
            return elapsed
    return None


def measure(steps: int = 300, target: float = 0.9, eval_every: int = 10, seed: int = 0,
            progress: bool = True) -> list[dict[str, Any]]:
    """One row per defence (see the module docstring); starts the embedded Ray instance if needed."""
    from codedbft.cluster.ray_backend import init_ray

    init_ray()
    rows_out = []
    for scheme, agg in DEFENCES:
        t0 = time.perf_counter()
        rows, w = _train(_config(scheme, agg, steps, eval_every, True, "ray", seed))
        _, w0 = _train(_config(scheme, agg, steps, eval_every, False, "local", seed))
        step_ms = statistics.median(r["step_ms"] for r in rows[2:])  # the first steps warm the actors
        accs = [r["test_accuracy"] for r in rows if r.get("test_accuracy") is not None]
        out = {"defence": label(scheme, agg), "step_ms": step_ms, "time_to_target_s": time_to_target(rows, target),
               "target": target, "final_accuracy": accs[-1], "exact_steps": sum(bool(r["exact"]) for r in rows),
               "steps": steps, "distance_from_attack_free": float((w - w0).norm() / w0.norm()),
               "wall_s": time.perf_counter() - t0}
        rows_out.append(out)
        if progress:
            print(f"  {out['defence']:24s} done in {out['wall_s']:.1f} s", flush=True)
    return rows_out


def table(rows: list[dict[str, Any]]) -> str:
    """The measured table, with each defence's time to target as a multiple of the fastest DRACO's."""
    draco = [r["time_to_target_s"] for r in rows if r["defence"].startswith("draco") and r["time_to_target_s"]]
    best = min(draco) if draco else None
    lines = [f"{'defence':24s} {'step ms':>8s} {'to target s':>11s} {'x DRACO':>8s} {'final acc':>9s} "
             f"{'exact':>6s} {'dist':>9s}"]
    for r in rows:
        ttt = r["time_to_target_s"]
        ratio = f"{ttt / best:8.2f}" if ttt is not None and best else f"{'-':>8s}"
        lines.append(f"{r['defence']:24s} {r['step_ms']:8.2f} {ttt if ttt is not None else float('nan'):11.2f} "
                     f"{ratio} {r['final_accuracy']:9.3f} {r['exact_steps']:>3d}/{r['steps']:<3d}"
                     f"{r['distance_from_attack_free']:9.2e}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300, help="training steps per run (default 300)")
    ap.add_argument("--target", type=float, default=0.9, help="target test accuracy (default 0.9)")
    ap.add_argument("--eval-every", type=int, default=10, help="evaluate the test accuracy every N steps")
    ap.add_argument("--seed", type=int, default=0, help="run seed")
    ap.add_argument("--out", default="runs/bench/draco_vs_median.json", help="JSON output")
    args = ap.parse_args(argv)
    rows = measure(args.steps, args.target, args.eval_every, args.seed)
    print(f"\nALIE, b = 2 of n = 15, MLP on digits, {args.steps} steps, Ray actors; target accuracy {args.target}")
    print(table(rows))
    out = {"rows": rows, "steps": args.steps, "target": args.target}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
