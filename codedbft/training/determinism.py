"""One call that makes a process compute reproducibly: seeds, deterministic kernels, thread count."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["set_deterministic"]


def set_deterministic(seed: int, threads: int | None = None) -> None:
    """Seed Python, numpy and torch; force deterministic kernels; optionally fix the thread count.

    Bitwise-equal gradients across processes (the majority vote hashes them) need the same torch
    build, the same ``threads`` (BLAS splits work, hence float-addition order, by thread count) and
    ``torch.use_deterministic_algorithms(True)`` (which raises on ops with no deterministic kernel
    instead of silently differing). ``CUBLAS_WORKSPACE_CONFIG`` is set for CUDA's deterministic
    cuBLAS; it must be in the environment before the first cuBLAS call, hence set here early.

    Prefer ``threads=1`` for worker processes when several share a machine: measured on a loaded
    2-core host, two OpenMP threads per process made a small model's gradient 10-100x slower than
    one (threads spin waiting for a core), and single-threaded kernels are the same in every actor.
    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads >= 1 required, got {threads}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    if threads is not None:
        torch.set_num_threads(threads)
