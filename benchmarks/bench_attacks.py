"""Cost of forging the Byzantine messages, per attack, relative to baselines measured in the same run.

For each attack: the median time of ``attack(honest, ids, ctx)`` on an (h, d) float32 honest stack
with b Byzantine workers, as a ratio to (1) the honest mean (one pass over the stack: what the master
pays anyway to aggregate, so a ratio near 1 means the simulated adversary costs no more than a mean)
and (2) a straightforward numpy float64 implementation of the same formula where one exists. Every
attack in the registry (``codedbft.attacks.ATTACKS``) is measured, so a new attack file is benchmarked
without touching this script. Definitions: ``docs/attacks.md``.

    python benchmarks/bench_attacks.py [--quick] [--out runs/bench/attacks.json]
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.stats
import torch

from _timing import median_ms

from codedbft.attacks import ATTACKS, AttackContext, by_name

PARAMS = {"bit-flip": {"fraction": 0.5}}  # fraction 1 is a plain negation; 0.5 exercises the mask


def numpy_reference(name: str, x: np.ndarray, own: np.ndarray, rng: np.random.Generator) -> Callable[[], object] | None:
    """The textbook numpy float64 version of an attack (None where there is none to compare)."""
    h, b = x.shape[0], own.shape[0]
    n = h + b

    def alie():
        z = scipy.stats.norm.ppf((n - (n // 2 + 1 - b)) / n)
        return np.tile(x.mean(0) - z * x.std(0), (b, 1))

    refs = {
        "alie": alie,
        "ipm": lambda: np.tile(-0.1 * x.mean(0), (b, 1)),
        "omniscient": lambda: np.tile(-x.mean(0), (b, 1)),
        "sign-flip": lambda: -own,
        "constant": lambda: np.full(own.shape, 100.0),
        "gaussian": lambda: 200.0 * rng.standard_normal(own.shape),
        "gambler": lambda: np.where(rng.random(own.shape) < 0.001, 1e6, own),
        "bit-flip": lambda: np.where(rng.random(own.shape) < 0.5, -own, own),
    }
    return refs.get(name)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small d and few repeats (smoke run)")
    ap.add_argument("--d", type=int, default=None, help="message dimension (default 1e6, quick 1e5)")
    ap.add_argument("--h", type=int, default=12, help="honest workers")
    ap.add_argument("--b", type=int, default=3, help="Byzantine workers")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats (median reported)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (1: on a shared 2-core machine, a thread pool waiting on a busy core "
                         "turns 0.2 ms kernels into 10+ ms ones)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/attacks.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    d = args.d or (100_000 if args.quick else 1_000_000)
    repeats = args.repeats or (3 if args.quick else 9)

    g = torch.Generator().manual_seed(0)
    honest = torch.randn(args.h, d, generator=g)
    own = torch.randn(args.b, d, generator=g)
    ids = tuple(range(args.h, args.h + args.b))
    x64, own64 = honest.double().numpy(), own.double().numpy()
    rng = np.random.default_rng(0)

    base_ms = median_ms(lambda: honest.mean(dim=0), repeats)
    rows = []
    for name in ATTACKS:
        attack = by_name(name, **PARAMS.get(name, {}))
        ctx = AttackContext.build(honest, ids, step=1, seed=0, own=own)
        ms = median_ms(lambda: attack(honest, ids, ctx), repeats)
        ref = numpy_reference(name, x64, own64, rng)
        ref_ms = median_ms(ref, repeats) if ref is not None else None
        rows.append({
            "attack": name, "ms": ms, "x_honest_mean": ms / base_ms,
            "numpy_f64_ms": ref_ms, "speedup_vs_numpy": None if ref_ms is None else ref_ms / ms,
        })  # fmt: skip

    print(f"h={args.h} b={args.b} d={d} float32, median of {repeats}; honest mean: {base_ms:.2f} ms "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")  # fmt: skip
    print(f"{'attack':<11} {'ms':>8} {'x mean':>7} {'numpy f64 ms':>13} {'speedup':>8}")
    for r in rows:
        ref = "-" if r["numpy_f64_ms"] is None else f"{r['numpy_f64_ms']:.2f}"
        sp = "-" if r["speedup_vs_numpy"] is None else f"{r['speedup_vs_numpy']:.1f}x"
        print(f"{r['attack']:<11} {r['ms']:>8.2f} {r['x_honest_mean']:>7.2f} {ref:>13} {sp:>8}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"h": args.h, "b": args.b, "d": d, "repeats": repeats, "honest_mean_ms": base_ms,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine()}  # fmt: skip
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.out}")
    return rows


if __name__ == "__main__":
    main()
