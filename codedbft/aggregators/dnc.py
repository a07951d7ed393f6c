"""DnC, divide-and-conquer (Shejwalkar & Houmansadr, NDSS 2021).

Shejwalkar, Houmansadr, "Manipulating the Byzantine: Optimizing Model Poisoning Attacks and
Defenses for Federated Learning", NDSS 2021, Algorithm 2. With ``I = {1..n}``, for ``t = 1..niters``:

    r      = b coordinates drawn uniformly without replacement (sorted)
    X_r    = the n x b submatrix of those coordinates;  X_c = X_r - mean_i(X_r)
    v      = top right singular vector of X_c
    s_i    = (X_c[i] . v)^2                              (outlier scores)
    I_good = the n - floor(c f) rows of smallest s_i     (ties: lower index)
    I      = I ∩ I_good
    out    = mean_{i in I} x_i

The scores come from the n x n Gram ``K = X_c X_c^T``: with its top eigenpair ``(lambda, u)``,
``X_c v = sqrt(lambda) u`` so ``s_i = lambda u_i^2`` (no b x b or SVD of X_c). The block is divided by
its largest absolute value first (scores only rank rows), so huge rows cannot overflow.

Randomness: a call draws its ``niters`` coordinate subsets from ``numpy.random.default_rng([seed,
calls])``, ``calls`` counting this object's earlier calls; all batch items of one call share the
subsets. The rule is therefore stateful (``state_dict() == {"calls": calls}``, ``reset()`` restarts
from 0), and two objects built with the same seed and fed the same calls agree bitwise.
``b = min(b, d)`` (default 10_000 as in the paper), ``niters = 5``, ``c = 1``.

Requires n >= 2f+1 (and n > floor(c f)); an empty intersection gives the zero vector. ``last_info["selected"]``: bool
``(B, n)`` mask of I. Measured: one call at (n, d) = (25, 1e5) float32, f = 5, defaults, on a 2-core CPU: about 0.25 s.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from codedbft.aggregators.base import FRule
from codedbft.aggregators.registry import AGGREGATORS


@AGGREGATORS.register()
class DnC(FRule):
    """DnC (Shejwalkar & Houmansadr 2021): intersect spectral filters on random coordinate blocks, average.

    Args:
        f: Byzantine inputs tolerated (requirement n >= 2f+1).
        b: coordinates per block (min(b, d) used).
        niters: number of random blocks.
        c: filtering fraction: each block removes the floor(c f) highest-scoring rows.
        seed: seed of the coordinate sampling (see the module docstring).
    """

    name = "dnc"
    stateful = True

    def __init__(self, f: int = 0, b: int = 10_000, niters: int = 5, c: float = 1.0, seed: int = 0) -> None:
        super().__init__(f)
        if not isinstance(b, int) or b < 1:
            raise ValueError(f"dnc: b must be an int >= 1, got {b!r}")
        if not isinstance(niters, int) or niters < 1:
            raise ValueError(f"dnc: niters must be an int >= 1, got {niters!r}")
        if not c >= 0:
            raise ValueError(f"dnc: c must be >= 0, got {c!r}")
        self.b, self.niters, self.c, self.seed = b, niters, float(c), int(seed)
        self.calls = 0

    def _check_n(self, n: int) -> None:
        super()._check_n(n)
        if n - math.floor(self.c * self.f) < 1:
            raise ValueError(f"dnc needs n > floor(c f), got n={n}, c={self.c}, f={self.f}")

    def _aggregate(self, x3: torch.Tensor) -> torch.Tensor:
        B, n, d = x3.shape
        b = min(self.b, d)
        drop = math.floor(self.c * self.f)
        rng = np.random.default_rng([self.seed, self.calls])
        self.calls += 1
        good = torch.ones(B, n, dtype=torch.bool, device=x3.device)
        for _ in range(self.niters):  # a handful of random blocks (the algorithm's outer loop)
            r = np.sort(rng.choice(d, size=b, replace=False))
            Xr = x3[:, :, torch.from_numpy(r).to(x3.device)].double()  # (B, n, b)
            Xr = Xr / Xr.abs().amax(dim=(1, 2), keepdim=True).clamp(min=torch.finfo(torch.float64).tiny)
            Xc = Xr - Xr.mean(dim=1, keepdim=True)
            K = torch.bmm(Xc, Xc.transpose(1, 2))
            evals, evecs = torch.linalg.eigh((K + K.transpose(1, 2)) / 2)
            s = evals[:, -1:].clamp(min=0.0) * evecs[:, :, -1] ** 2
            order = torch.sort(s, dim=1, stable=True).indices[:, : n - drop]
            good &= torch.zeros(B, n, dtype=torch.bool, device=x3.device).scatter_(1, order, True)
        cnt = good.sum(dim=1, keepdim=True)
        self.last_info["selected"] = good
        w = good.to(x3.dtype) / cnt.to(x3.dtype)  # cnt >= n - niters*drop may be 0: guarded below
        out = torch.bmm(w.unsqueeze(1), x3).squeeze(1)
        return torch.where(cnt > 0, out, torch.zeros((), dtype=x3.dtype, device=x3.device))

    def state_dict(self) -> dict[str, Any]:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calls = int(state["calls"])

    def reset(self) -> None:
        super().reset()
        self.calls = 0

    def __repr__(self) -> str:
        return f"DnC(f={self.f}, b={self.b}, niters={self.niters}, c={self.c}, seed={self.seed})"
