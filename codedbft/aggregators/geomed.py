"""Geometric median by smoothed Weiszfeld iterations (Chen et al. 2017; Pillutla et al. 2022).

The geometric median has breakdown point 1/2 and, unlike the coordinate-wise rules, is rotation
invariant; it has no closed form, so it is approximated by iterations whose cost is O(n^2) per
step once the pairwise distances are known (see ``GeoMed``). Definition: docs/aggregators.md.
"""

from __future__ import annotations

import torch

from codedbft.aggregators._distances import pairwise_sq_dists
from codedbft.aggregators.base import FRule
from codedbft.aggregators.registry import AGGREGATORS


@AGGREGATORS.register()
class GeoMed(FRule):
    """Geometric median ``argmin_z sum_i |z - x_i|_2`` (smoothed Weiszfeld); requires n >= 2f+1.

    Smoothed Weiszfeld: ``z <- sum_i w_i x_i / sum_i w_i`` with
    ``w_i = 1 / max(nu, |z - x_i|)``, from the coordinate-wise mean, until
    ``|z_new - z| <= tol |z|`` (tol default 1e-8 in float64, 1e-5 in float32) or ``max_iter``.

    Every iterate is a convex combination ``z = sum_i a_i x_i``, so the loop runs on the weights
    ``a`` only, in O(n^2) per iteration: ``|z - x_i|^2 = sum_j a_j D_ij - a^T D a / 2`` from the
    pairwise squared distances D (one Gram product, float64), and ``|z|^2`` from the centred Gram.
    Converged batch items freeze (batched result = per-item result). Requires n >= 2f+1.
    ``last_info["iterations"]``: (B,) iterations used.
    """

    name = "geomed"

    def __init__(self, f: int = 0, nu: float = 1e-6, tol: float | None = None, max_iter: int = 200) -> None:
        super().__init__(f)
        if nu <= 0 or max_iter < 1 or (tol is not None and tol <= 0):
            raise ValueError("geomed needs nu > 0, tol > 0 and max_iter >= 1")
        self.nu, self.tol, self.max_iter = float(nu), tol, int(max_iter)

    def _aggregate(self, x3: torch.Tensor) -> torch.Tensor:
        B, n, _ = x3.shape
        tol = self.tol if self.tol is not None else (1e-8 if x3.dtype == torch.float64 else 1e-5)
        D, G, _ = pairwise_sq_dists(x3, return_gram=True)
        big = torch.finfo(torch.float64).max / (4 * n * n)
        D = D.clamp(max=big)  # overflowed (inf) distances: huge but finite, so 0 * D stays 0
        Gc = G[:, :n, :n].clamp(-big, big)
        q = G[:, :n, n].clamp(-big, big)
        s = G[:, n, n].clamp(max=big)
        a = torch.full((B, n), 1.0 / n, dtype=torch.float64, device=D.device)
        done = torch.zeros(B, dtype=torch.bool, device=D.device)
        iters = torch.zeros(B, dtype=torch.int64, device=D.device)
        for _ in range(self.max_iter):
            Da = torch.bmm(D, a.unsqueeze(2)).squeeze(2)
            dist2 = Da - 0.5 * (a * Da).sum(dim=1, keepdim=True)
            w = 1.0 / dist2.clamp(min=0).sqrt().clamp(min=self.nu)
            a_new = w / w.sum(dim=1, keepdim=True)
            da = a_new - a
            step2 = (-0.5 * (da * torch.bmm(D, da.unsqueeze(2)).squeeze(2)).sum(dim=1)).clamp(min=0)
            z2 = ((a * torch.bmm(Gc, a.unsqueeze(2)).squeeze(2)).sum(dim=1) + 2 * (a * q).sum(dim=1) + s).clamp(min=0)
            conv = step2 <= (tol * tol) * z2
            live = ~done
            a = torch.where(live.unsqueeze(1), a_new, a)
            iters += live.to(torch.int64)
            done = done | conv
            if bool(done.all()):
                break
        self.last_info["iterations"] = iters
        return torch.bmm(a.to(x3.dtype).unsqueeze(1).to(x3.device), x3).squeeze(1)

    def __repr__(self) -> str:
        return f"GeoMed(f={self.f}, nu={self.nu}, tol={self.tol}, max_iter={self.max_iter})"
