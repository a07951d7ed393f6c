"""Step time of the runtime: Ray vs the local simulator vs vanilla data parallelism on the same Ray.

For n = 15 workers and an MLP on digits with d ~ 1e5 and d ~ 1e6 parameters, DRACO repetition
(s = 2, r = 5, k = 3 partitions of 80 samples; no attack, so the timing is the runtime's own):

* ``local``: the in-process simulator computing every (worker, partition) gradient (``dedup=False``:
  the same number of gradient computations as the cluster), torch on all cores;
* ``local-dedup``: the simulator computing each distinct partition once (what it does by default);
* ``ray``: the default actor count (one actor per CPU of the embedded instance, each hosting its
  workers round-robin and computing them batched as the simulator does, one torch thread each);
* ``ray-per-worker``: 15 actors, one per worker (``--actors 15``);
* ``ray-vanilla``: the same 15 actors' worth of work without redundancy (k = 15 partitions of 16
  samples, mean of the 15 messages): what coding costs over plain data parallelism.

Reported per configuration: median step time over the timed steps and the medians of its parts
(broadcast = ray.put of the model, compute = the slowest worker's own gradient time, collect = from
submitting the tasks until every reply is in, assemble = validating the replies and copying them
into the fixed-order (n, d) stack, decode, aggregate, optimizer), plus ratios from this
one run: ray / local (targets <= 1.15 at d ~ 1e6, <= 1.5 at d ~ 1e5; also printed against
local-dedup, since an actor computes each distinct partition of its workers once), whether every
Ray configuration ends on the one-actor-per-worker model (sha256), and (decode + aggregate) / step (target <= 10 %).
The machine is shared: absolute times are noisy, ratios from one run are what to read.

    python benchmarks/bench_runtime.py [--quick] [--out runs/bench/runtime.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from codedbft.cluster import Master, RunConfig  # noqa: E402

SIZES = {"1e5": (320, 256), "1e6": (1000, 1000)}
PARTS = ("broadcast_ms", "compute_ms", "collect_ms", "assemble_ms", "decode_ms", "aggregate_ms", "optimizer_ms")


def measure(cfg: RunConfig, steps: int, warmup: int, backend: Any = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    m = Master(cfg, backend=backend)
    m.start()
    start_s = time.perf_counter() - t0
    rows = [m.step() for _ in range(warmup + steps)][warmup:]
    sha = m.model_sha256
    m.close()
    med = {k: statistics.median(r.get(k, 0.0) for r in rows) for k in ("step_ms", *PARTS)}
    return {"d": m.core.model.d, "start_s": start_s, "steps": steps, "model_sha256": sha, **med,
            "decode_agg_frac": (med["decode_ms"] + med["aggregate_ms"]) / med["step_ms"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="d ~ 1e5 only, 3 timed steps")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per configuration (default 10)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--sizes", nargs="+", choices=list(SIZES), default=None, help="model sizes (default: all)")
    ap.add_argument("--out", default="runs/bench/runtime.json")
    args = ap.parse_args(argv)
    steps = args.steps or (3 if args.quick else 10)
    sizes = args.sizes or (["1e5"] if args.quick else list(SIZES))
    cores = os.cpu_count() or 2
    base = RunConfig(scheme="draco-repetition", workers=15, byzantine=0, tolerate=2, attack=None, model="mlp",
                     batch_size=240, steps=10**6, log_every=10**6, eval_every=10**6, num_cpus=0.1, timeout_s=600)
    results: list[dict[str, Any]] = []
    for size in sizes:
        mp = {"hidden": list(SIZES[size])}
        configs = [
            ("local", base.replace(backend="local", dedup=False, threads=cores, model_params=mp)),
            ("local-dedup", base.replace(backend="local", dedup=True, threads=cores, model_params=mp)),
            ("ray", base.replace(backend="ray", threads=1, model_params=mp)),
            ("ray-per-worker", base.replace(backend="ray", threads=1, actors=15, model_params=mp)),
            ("ray-vanilla", base.replace(backend="ray", scheme="vanilla", tolerate=None, threads=1, model_params=mp)),
        ]
        row_of: dict[str, dict[str, Any]] = {}
        for name, cfg in configs:
            r = {"size": size, "config": name, **measure(cfg, steps, args.warmup)}
            row_of[name] = r
            results.append(r)
            print(f"  {size} {name}: step {r['step_ms']:.1f} ms", flush=True)
        for r in row_of.values():
            r["vs_local"] = r["step_ms"] / row_of["local"]["step_ms"]
            r["vs_local_dedup"] = r["step_ms"] / row_of["local-dedup"]["step_ms"]
            # actor groups vs one actor per worker (both one torch thread: bit-identity needs equal threads)
            r["same_model"] = r["model_sha256"] == row_of["ray-per-worker"]["model_sha256"]
        row_of["ray"]["vs_ray_vanilla"] = row_of["ray"]["step_ms"] / row_of["ray-vanilla"]["step_ms"]

    head = (f"{'d':>9} {'config':<12} {'step ms':>8} {'bcast':>6} {'compute':>8} {'collect':>8} {'assemble':>8} "
            f"{'decode':>7} {'aggr':>6} {'optim':>6} {'dec+agg %':>9} {'vs local':>8} {'vs dedup':>8} {'same':>5}")
    print(head)
    print("-" * len(head))
    for r in results:
        print(f"{r['d']:>9} {r['config']:<12} {r['step_ms']:>8.1f} {r['broadcast_ms']:>6.1f} {r['compute_ms']:>8.1f} "
              f"{r['collect_ms']:>8.1f} {r['assemble_ms']:>8.1f} {r['decode_ms']:>7.2f} {r['aggregate_ms']:>6.2f} {r['optimizer_ms']:>6.2f} "
              f"{100 * r['decode_agg_frac']:>9.1f} {r['vs_local']:>8.2f} {r['vs_local_dedup']:>8.2f} {str(r['same_model']):>5}")
    big = [r for r in results if r["size"] == sizes[-1]]
    ray_row = next(r for r in big if r["config"] == "ray")
    per_size = {sz: next(r for r in results if r["size"] == sz and r["config"] == "ray") for sz in sizes}
    goal = {"1e5": 1.5, "1e6": 1.15}
    targets = {
        "size": sizes[-1],
        "ray_over_local": ray_row["vs_local"],
        "ray_over_local_target": goal.get(sizes[-1], 1.15),
        "ray_over_local_met": ray_row["vs_local"] <= goal.get(sizes[-1], 1.15),
        "per_size": {sz: {"ray_over_local": r["vs_local"], "ray_over_local_dedup": r["vs_local_dedup"],
                          "target": goal[sz], "met": r["vs_local"] <= goal[sz], "same_model": r["same_model"]}
                     for sz, r in per_size.items()},
        "decode_agg_frac_ray": ray_row["decode_agg_frac"],
        "decode_agg_frac_target": 0.10,
        "decode_agg_frac_met": ray_row["decode_agg_frac"] <= 0.10,
        "ray_over_ray_vanilla": ray_row["vs_ray_vanilla"],
    }
    for sz, t in targets["per_size"].items():
        print(f"d ~ {sz}: ray (default actors) / local = {t['ray_over_local']:.2f} (target <= {t['target']}: {t['met']}), "
              f"/ local-dedup = {t['ray_over_local_dedup']:.2f}, same model: {t['same_model']}")
    print(f"targets at d ~ {sizes[-1]}: ray/local = {targets['ray_over_local']:.2f} (<= {targets['ray_over_local_target']}: "
          f"{targets['ray_over_local_met']}), (decode+aggregate)/step = {100 * targets['decode_agg_frac_ray']:.1f} % "
          f"(<= 10 %: {targets['decode_agg_frac_met']}); ray draco / ray vanilla = {targets['ray_over_ray_vanilla']:.2f}")
    out = {"results": results, "targets": targets, "cores": cores, "steps": steps, "warmup": args.warmup,
           "quick": args.quick}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
