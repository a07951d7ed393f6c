"""Don't wait for stragglers: step time on Ray with a seeded straggler model, waiting for all
replies vs decoding from the replies in hand (``--wait-for auto``), same accuracy.

n = 15 workers, one actor per worker (a straggler is one slow process), MLP on digits, no attack
(b = 0) so the timing is the runtime's: each worker is FACTOR = 5 times slower with probability P
per step (``--straggle P:5``, seeded by (seed, step, worker)). Configurations:

* ``vanilla mean``: plain data parallelism, waits for every reply;
* ``draco-cyclic s=2`` and ``draco-repetition s=2`` with ``--wait-for all`` and ``auto``: a code
  with 2s = 4 of spare distance against b = 0 decodes once at most 4 replies are missing (cyclic,
  in the whole code; repetition, per group of 5), the late ones are erasures.

Reported: median and mean step time, ratio auto / all, final test accuracy, exact steps. The
machine is shared: read the ratios of one run.

    python benchmarks/bench_stragglers.py [--steps 30] [--out runs/bench/stragglers.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from codedbft.cluster import Master, RunConfig  # noqa: E402

CONFIGS: dict[str, dict[str, Any]] = {
    "vanilla mean": dict(scheme="vanilla", aggregator="mean"),
    "draco-cyclic s=2 all": dict(scheme="draco-cyclic", tolerate=2),
    "draco-cyclic s=2 auto": dict(scheme="draco-cyclic", tolerate=2, wait_for="auto"),
    "draco-repetition s=2 all": dict(scheme="draco-repetition", tolerate=2),
    "draco-repetition s=2 auto": dict(scheme="draco-repetition", tolerate=2, wait_for="auto"),
}


def one(cfg: dict[str, Any], p: float, steps: int, backend: Any) -> dict[str, Any]:
    base = dict(backend="ray", actors=15, workers=15, byzantine=0, attack=None, dataset="digits", model="mlp",
                model_params={"hidden": [256, 256]}, batch_size=300, lr=0.1, steps=steps, eval_every=steps,
                straggle=f"{p}:5", timeout_s=600.0)
    m = Master(RunConfig(**{**base, **cfg}), backend=backend)  # warm actors shared while the spec is the same
    m.start()
    rows = [m.step() for _ in range(steps)]
    acc = m.test_accuracy()
    times = [r["step_ms"] for r in rows[2:]]  # first steps warm the actors
    return {"p": p, "median_ms": statistics.median(times), "mean_ms": statistics.fmean(times), "accuracy": acc,
            "exact_steps": sum(bool(r["exact"]) for r in rows), "erasures": sum(r["erasures"] for r in rows),
            "steps": steps}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30, help="steps per configuration")
    ap.add_argument("--probabilities", type=float, nargs="+", default=[0.1, 0.2], help="straggle probabilities P")
    ap.add_argument("--out", default="runs/bench/stragglers.json", help="JSON output")
    args = ap.parse_args(argv)
    from codedbft.cluster.ray_backend import RayBackend

    backend = RayBackend(num_cpus=0.1, actors=15)
    rows = []
    for p in args.probabilities:
        for name, cfg in CONFIGS.items():
            r = {"config": name, **one(cfg, p, args.steps, backend)}
            rows.append(r)
            print(f"P={p} {name:27s} median {r['median_ms']:7.1f} ms  mean {r['mean_ms']:7.1f} ms  acc {r['accuracy']:.3f} "
                  f"exact {r['exact_steps']}/{r['steps']}  erasures {r['erasures']}", flush=True)
    backend.close()
    print(f"\n{'P':>4} {'config':27s} {'median ms':>9} {'mean ms':>8} {'auto/all':>8} {'acc':>6} {'exact':>6}")
    for r in rows:
        ref = next((x for x in rows if x["p"] == r["p"] and x["config"] == r["config"].replace(" auto", " all")), None)
        r["auto_over_all"] = r["mean_ms"] / ref["mean_ms"] if r["config"].endswith("auto") and ref else None
        ratio = f"{r['auto_over_all']:.2f}" if r["auto_over_all"] is not None else "-"
        print(f"{r['p']:>4} {r['config']:27s} {r['median_ms']:>9.1f} {r['mean_ms']:>8.1f} {ratio:>8} "
              f"{r['accuracy']:>6.3f} {r['exact_steps']:>3}/{r['steps']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"results": rows, "steps": args.steps}, indent=2))
    print(f"wrote {args.out}")
    return {"results": rows}


if __name__ == "__main__":
    main()
