"""Geometric median by smoothed Weiszfeld iterations with Newton and vertex steps (Chen et al. 2017;
Weiszfeld 1937; Vardi & Zhang 2000; Pillutla, Kakade & Harchaoui 2022).

The geometric median has breakdown point 1/2 and, unlike the coordinate-wise rules, is rotation
invariant; it has no closed form. It is computed as the minimiser of the smoothed objective
``F_nu(z) = sum_i h_nu(|z - x_i|)``, ``h_nu(r) = r`` for ``r >= nu`` and ``r^2/(2 nu) + nu/2`` below
(the objective whose MM iteration is Pillutla et al.'s smoothed Weiszfeld). Plain (smoothed)
Weiszfeld converges linearly, at a rate near 1 when the median sits on or next to an input (the
typical case with (n-1)/2 outliers): at 200 iterations it stopped at the cap on ~1.5-4 % of such
inputs with relative errors up to 1e-4. Each iteration here therefore evaluates three candidates
and keeps the one with the smallest ``F_nu`` (a Newton step wins ties to rounding):

* the Weiszfeld step ``a_i = w_i / sum w``, ``w_i = 1/max(nu, r_i)`` (monotone: global convergence);
* a Newton step on ``F_nu`` in the span of the inputs: with ``K_jk = <x_j - z, x_k - z>`` and
  ``p_i = 1/r_i^3`` (0 when ``r_i < nu``), solve ``(W I - (1 - 1e-6) diag(p) K) c = w`` and move to
  ``z + sum_j c_j (x_j - z)`` (``p = 0`` gives back Weiszfeld; the 1e-6 keeps collinear inputs
  regular) - quadratic local convergence;
* a vertex (Vardi-Zhang) step: the smoothed minimiser next to the nearest input ``x_k``,
  ``x_k - nu sum_{i != k} (x_k - x_i)/|x_k - x_i|`` - exact when the median is ``x_k``.

It stops when the Newton step is accepted and ``|step| <= tol |z|``; the distance to the minimiser is
then far below ``tol |z|``. Reaching ``max_iter`` first raises ``ConvergenceWarning``. Measured
(2000 seeded inputs with (n-1)/2 outliers, n <= 13): 0 cap hits (was 75), 6.8 iterations on
average (was 69), max 24; error to a scipy/Newton float64 reference below 0.7 tol |z|.
Each iteration is O(n^3) (an n x n LU), on n-vectors only; the O(n^2 d) Gram product dominates
at large d. Definition: docs/aggregators.md.
"""

from __future__ import annotations

import warnings

import torch

from codedbft.aggregators._distances import pairwise_sq_dists
from codedbft.aggregators.base import FRule
from codedbft.aggregators.registry import AGGREGATORS

_EPS = 1e-6


class ConvergenceWarning(UserWarning):
    """GeoMed reached ``max_iter`` before its stopping rule held."""


@AGGREGATORS.register()
class GeoMed(FRule):
    """Geometric median ``argmin_z sum_i |z - x_i|_2`` (smoothed Weiszfeld); requires n >= 2f+1.

    Minimises the smoothed sum of distances from the coordinate-wise mean; each iteration takes
    the best (smallest objective) of a smoothed Weiszfeld step ``z <- sum_i w_i x_i / sum_i w_i``,
    ``w_i = 1 / max(nu, |z - x_i|)``, a Newton step and a vertex step (module docstring), until the
    Newton step satisfies ``|z_new - z| <= tol |z|`` (tol default 1e-8 in float64, 1e-5 in float32)
    or ``max_iter`` (then ``ConvergenceWarning``).

    Every iterate is a convex combination ``z = sum_i a_i x_i``, so the loop runs on the weights
    ``a`` only, in O(n^2) per iteration: ``|z - x_i|^2 = sum_j a_j D_ij - a^T D a / 2`` from the
    pairwise squared distances D (one Gram product, float64), and ``|z|^2`` from the centred Gram.
    Converged batch items freeze (batched result = per-item result). Requires n >= 2f+1.
    ``last_info["iterations"]``: (B,) int64 iterations used; ``last_info["converged"]``: (B,) bool,
    False where the cap was reached; ``last_info["newton_steps"]``: (B,) accepted Newton steps.
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
        nu = self.nu
        D, G, _ = pairwise_sq_dists(x3, return_gram=True)
        big = torch.finfo(torch.float64).max / (4 * n * n)
        D = D.clamp(max=big)  # overflowed (inf) distances: huge but finite, so 0 * D stays 0
        Gc = G[:, :n, :n].clamp(-big, big)
        q = G[:, :n, n].clamp(-big, big)
        s = G[:, n, n].clamp(max=big)
        dev = D.device
        eye = torch.eye(n, dtype=torch.float64, device=dev)
        a = torch.full((B, n), 1.0 / n, dtype=torch.float64, device=dev)
        Da = torch.bmm(D, a.unsqueeze(2)).squeeze(2)
        done = torch.zeros(B, dtype=torch.bool, device=dev)
        iters = torch.zeros(B, dtype=torch.int64, device=dev)
        newton = torch.zeros(B, dtype=torch.int64, device=dev)
        for _ in range(self.max_iter):
            dist2 = (Da - 0.5 * (a * Da).sum(dim=1, keepdim=True)).clamp(min=0)
            r = dist2.sqrt()
            rc = r.clamp(min=nu)
            w = 1.0 / rc
            W = w.sum(dim=1)
            a_w = w / W.unsqueeze(1)                                   # Weiszfeld (MM) step
            # Newton step on the smoothed objective, in the weights: (W I - (1-eps) P K) c = w
            K = 0.5 * (dist2.unsqueeze(2) + dist2.unsqueeze(1) - D)    # <x_j - z, x_k - z>
            p = torch.where(r >= nu, w / dist2.clamp(min=nu * nu), torch.zeros((), dtype=torch.float64, device=dev))
            M = W.view(B, 1, 1) * eye - (1.0 - _EPS) * p.unsqueeze(2) * K
            LU, piv, _info = torch.linalg.lu_factor_ex(M)
            c = torch.linalg.lu_solve(LU, piv, w.unsqueeze(2)).squeeze(2)
            a_n = a + c - c.sum(dim=1, keepdim=True) * a
            # vertex (Vardi-Zhang) candidate: the smoothed minimiser next to the nearest input k,
            # z = x_k - nu * sum_{i != k} (x_k - x_i) / |x_k - x_i|
            k = dist2.argmin(dim=1)
            rk = D.gather(1, k.view(B, 1, 1).expand(B, 1, n)).squeeze(1).sqrt()
            vk = torch.where(rk >= nu, nu / rk.clamp(min=nu), torch.zeros((), dtype=torch.float64, device=dev))
            a_v = vk - torch.nn.functional.one_hot(k, n).to(torch.float64) * (vk.sum(dim=1, keepdim=True) - 1.0)
            cand = torch.stack([a_n, a_w, a_v], dim=2)                  # (B, n, 3)
            Dc = torch.bmm(D, cand)
            d2c = (Dc - 0.5 * (cand * Dc).sum(dim=1, keepdim=True)).clamp(min=0)
            rr = d2c.sqrt()
            F = torch.where(rr >= nu, rr, 0.5 * d2c / nu + 0.5 * nu).sum(dim=1)   # (B, 2)
            F = torch.nan_to_num(F, nan=float("inf"))
            F[:, 0] = torch.where(torch.isfinite(a_n).all(dim=1), F[:, 0], float("inf"))
            F[:, 0] /= 1 + 1e-13  # ties (to rounding) go to the Newton step
            pick = F.argmin(dim=1)
            use_n = pick == 0
            a_new = cand.gather(2, pick.view(B, 1, 1).expand(B, n, 1)).squeeze(2)
            Da_new = Dc.gather(2, pick.view(B, 1, 1).expand(B, n, 1)).squeeze(2)
            dn = torch.where(torch.isfinite(a_n), a_n - a, torch.zeros((), dtype=torch.float64, device=dev))
            stepn2 = (-0.5 * (dn * torch.bmm(D, dn.unsqueeze(2)).squeeze(2)).sum(dim=1)).clamp(min=0)
            z2 = ((a * torch.bmm(Gc, a.unsqueeze(2)).squeeze(2)).sum(dim=1) + 2 * (a * q).sum(dim=1) + s).clamp(min=0)
            conv = use_n & (stepn2 <= (tol * tol) * z2)
            live = ~done
            a = torch.where(live.unsqueeze(1), a_new, a)
            Da = torch.where(live.unsqueeze(1), Da_new, Da)
            iters += live.to(torch.int64)
            newton += (live & use_n).to(torch.int64)
            done = done | conv
            if bool(done.all()):
                break
        self.last_info["iterations"] = iters
        self.last_info["converged"] = done
        self.last_info["newton_steps"] = newton
        if not bool(done.all()):
            warnings.warn(f"geomed: {int((~done).sum())} of {B} items reached max_iter={self.max_iter} before "
                          f"the relative step fell below tol={tol:g}", ConvergenceWarning, stacklevel=4)
        return torch.bmm(a.to(x3.dtype).unsqueeze(1).to(x3.device), x3).squeeze(1)

    def __repr__(self) -> str:
        return f"GeoMed(f={self.f}, nu={self.nu}, tol={self.tol}, max_iter={self.max_iter})"
