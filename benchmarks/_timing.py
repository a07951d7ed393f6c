"""Shared by the benchmark scripts (run as ``python benchmarks/bench_*.py``, so this directory is on
``sys.path``): one timing rule for every table."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def median_ms(fn: Callable[[], object], repeats: int, warmup: bool = True) -> float:
    """Median wall time of ``fn()`` in ms over ``repeats`` calls, after one untimed warm-up call
    (first-touch allocations, lazy initialisation, numba compilation)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)
