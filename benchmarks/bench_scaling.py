"""How cost grows with n and d: decode and aggregation time, peak memory, fitted exponents.

For n in {15, 45, 105, 255} (where each scheme allows it) and d in {1e4, 1e5, 1e6}, on synthetic
message stacks of the shape each scheme's master receives (honest messages from random partition
gradients, s Byzantine rows replaced by -10x their value at the first positions):

* ``vanilla+mean``, ``vanilla+krum`` (f = s): the rule on the (n, d) float32 stack;
* ``draco-repetition`` (r = 2s+1 majority vote), ``draco-cyclic`` (syndrome decoding, float64),
  ``detox`` (groups of 3 voted, median over the group outputs): the scheme's decode;
* ``data-encoding`` is measured by ``bench_l1.py`` (its cost is the L1 locate, one LP of m
  variables, plus one (m, d) pass) and is not repeated here.

Per (scheme, n, d): the median time over ``--repeats`` calls, the peak traced memory of one call
(``tracemalloc``: numpy allocations; torch CPU allocations are not traced, so peak memory is also
reported as the process RSS growth during the call, sampled) in units of the input stack's bytes
(target: <= 3x the (n, d) stack), and per
scheme the least-squares exponents a, b of ``time ~ n^a d^b`` (decoders should be ~1 and ~1; Krum's
Gram matrix ~2 in n). Reported from one run: the machine is shared and noisy.

    python benchmarks/bench_scaling.py [--quick] [--out runs/bench/scaling.json] [--plot docs/scaling.png]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median_ms  # noqa: E402

NS = (15, 45, 105, 255)
DS = (10_000, 100_000, 1_000_000)


def _stack(n: int, d: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float32).to(dtype)


def case(scheme: str, n: int, d: int, s: int) -> tuple[Callable[[], Any], torch.Tensor] | None:
    """``(call, stack)`` for one decode/aggregate, or None when the scheme does not take this n."""
    from codedbft.aggregators import by_name
    from codedbft.encoders import CyclicMDSCode, RepetitionCode

    if scheme in ("vanilla+mean", "vanilla+krum"):
        x = _stack(n, d, torch.float32, n)
        x[:s] *= -10
        rule = by_name("mean") if scheme.endswith("mean") else by_name("krum", f=s)
        return (lambda: rule(x)), x
    if scheme == "draco-repetition":
        r = 2 * s + 1
        if n % r:
            return None
        code = RepetitionCode(n, s=s)
        G = _stack(code.k, d, torch.float32, n)
        msgs = code.encode(G)
        msgs[: s] = -10 * msgs[: s]
        return (lambda: code.decode(msgs)), msgs
    if scheme == "draco-cyclic":
        if n % 2 == 0:
            return None
        code = CyclicMDSCode(n, s)
        G = _stack(code.k, d, torch.float64, n)
        msgs = code.encode(G)
        msgs[:s] = -10 * msgs[:s]
        return (lambda: code.decode(msgs)), msgs
    if scheme == "detox":
        if n % 3:
            return None
        from codedbft.schemes import SchemeConfig, build_scheme

        sch = build_scheme(SchemeConfig(name="detox", workers=n, byzantine=s, group_size=3, aggregator="median"))
        G = _stack(sch.k, d, torch.float32, n)
        msgs = G.repeat_interleave(3, dim=0)
        msgs[:s] *= -10
        missing = np.zeros(n, dtype=bool)
        return (lambda: sch.decode(msgs, missing)), msgs
    raise ValueError(scheme)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def peak(call: Callable[[], Any]) -> tuple[int, int]:
    """(tracemalloc peak bytes: numpy and Python allocations; sampled RSS growth bytes: everything,
    torch's CPU allocations included) of one call. Large buffers are mmap'd and returned on free,
    so RSS sampled every 0.5 ms after ``malloc_trim`` sees each call's own temporaries."""
    import ctypes
    import threading
    import time

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc: RSS growth is then a lower bound
        pass
    base, top, stop = _rss(), [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            top[0] = max(top[0], _rss())
            time.sleep(0.0005)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    tracemalloc.start()
    call()
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    stop.set()
    t.join()
    return traced, max(0, max(top[0], _rss()) - base)


def fit(rows: list[dict[str, Any]]) -> tuple[float, float] | None:
    """Least-squares exponents (a, b) of ``ms ~ c n^a d^b`` over the rows (None with < 3 points)."""
    pts = [(math.log(r["n"]), math.log(r["d"]), math.log(r["ms"])) for r in rows if r["ms"] > 0]
    if len(pts) < 3 or len({p[0] for p in pts}) < 2 or len({p[1] for p in pts}) < 2:
        return None
    A = np.array([[1.0, p[0], p[1]] for p in pts])
    y = np.array([p[2] for p in pts])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    return float(coef[1]), float(coef[2])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="n <= 45 and d <= 1e5")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per point (median)")
    ap.add_argument("--s", type=int, default=2, help="Byzantine rows / code tolerance s")
    ap.add_argument("--out", default="runs/bench/scaling.json", help="JSON output")
    ap.add_argument("--plot", default=None, help="log-log plot of time vs n*d (PNG)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ns = [n for n in NS if not args.quick or n <= 45]
    ds = [d for d in DS if not args.quick or d <= 100_000]
    schemes = ("vanilla+mean", "vanilla+krum", "draco-repetition", "draco-cyclic", "detox")
    rows: list[dict[str, Any]] = []
    for scheme in schemes:
        for n in ns:
            for d in ds:
                built = case(scheme, n if scheme != "draco-repetition" else n - n % (2 * args.s + 1), d, args.s)
                if built is None:
                    continue
                call, stack = built
                nn = stack.shape[0]
                ms = median_ms(call, args.repeats)
                traced, rss = peak(call)  # after the timed calls: caches and numba kernels are warm
                stack_bytes = stack.numel() * stack.element_size()
                r = {"scheme": scheme, "n": nn, "d": d, "ms": ms, "stack_mb": stack_bytes / 2**20,
                     "peak_traced_x": traced / stack_bytes, "rss_growth_x": rss / stack_bytes}
                rows.append(r)
                print(f"{scheme:17s} n={nn:4d} d={d:8d}  {ms:9.2f} ms  peak {r['peak_traced_x']:.2f}x stack "
                      f"(rss +{r['rss_growth_x']:.2f}x)", flush=True)
                del call, stack, built
    fits = {s: fit([r for r in rows if r["scheme"] == s]) for s in schemes}
    print(f"\n{'scheme':17s} {'exp n':>6s} {'exp d':>6s} {'max mem/stack':>14s}")
    for s in schemes:
        f = fits[s]
        worst = max((max(r["peak_traced_x"], r["rss_growth_x"]) for r in rows if r["scheme"] == s), default=float("nan"))
        print(f"{s:17s} {f[0] if f else float('nan'):6.2f} {f[1] if f else float('nan'):6.2f} {worst:14.2f}")
    out = {"rows": rows, "fits": {s: (list(f) if f else None) for s, f in fits.items()}, "s": args.s,
           "repeats": args.repeats, "threads": 1}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for s in schemes:
            pts = sorted((r["n"] * r["d"], r["ms"]) for r in rows if r["scheme"] == s)
            if pts:
                ax.loglog([p[0] for p in pts], [p[1] for p in pts], "o-", label=s, markersize=3)
        ax.set_xlabel("n x d (message stack entries)")
        ax.set_ylabel("decode / aggregate time (ms, 1 thread)")
        ax.set_title("How cost grows (bench_scaling.py)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
