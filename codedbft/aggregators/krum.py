"""Krum, Multi-Krum (Blanchard et al. 2017) and Bulyan (El Mhamdi et al. 2018).

All three read the float64 pairwise squared distances of ``_distances.pairwise_sq_dists`` (one Gram
product, cancellation guarded); what is left is O(n^2) per batch item.

Krum: ``x_{i*}``, ``i* = argmin_i sum_{j in N_i} |x_i - x_j|^2`` over the n-f-2 nearest others
(Blanchard et al., NeurIPS 2017). Cost: the Gram kernel (``_numba_kernels.gram_kernel``, float64,
two rows against four per sweep). Measured (25, 1e6) float32, f = 3, one thread, shared 2-core host
(see coordinate.py): 75-82 ms, 7x ByzFL 0.0.11, 3.8x ByzPy 0.1.4 quiet, 5.5x with the second core
loaded (ByzPy's float32 GEMM is the floor); Multi-Krum 5.4x ByzPy.
"""

from __future__ import annotations

import torch

from codedbft.aggregators import _kernels
from codedbft.aggregators._distances import pairwise_sq_dists
from codedbft.aggregators.base import Aggregator, mean_rows
from codedbft.aggregators.registry import AGGREGATORS

_INF = float("inf")


def krum_scores(D: torch.Tensor, alive: torch.Tensor, neighbours: int) -> torch.Tensor:
    """Krum scores ``(B, n)``: the sum of each alive row's ``neighbours`` smallest squared distances
    to the other alive rows; dead rows score +inf, alive rows at most float64 max (so an alive row
    always beats a dead one even when distances overflowed)."""
    mask = alive.unsqueeze(1) & alive.unsqueeze(2)
    mask = mask & ~torch.eye(D.shape[1], dtype=torch.bool, device=D.device)
    Dm = torch.where(mask, D, torch.full((), _INF, dtype=D.dtype, device=D.device))
    if neighbours > 0:
        s = torch.sort(Dm, dim=2).values[:, :, :neighbours].sum(dim=2)
    else:
        s = torch.zeros(D.shape[:2], dtype=D.dtype, device=D.device)
    s = s.clamp(max=torch.finfo(D.dtype).max)
    return torch.where(alive, s, torch.full((), _INF, dtype=D.dtype, device=D.device))


@AGGREGATORS.register()
class Krum(Aggregator):
    """Krum (Blanchard et al. 2017): the input with the smallest Krum score; requires n >= 2f+3.

    ``x_{i*}``, ``i* = argmin_i score(i)``, ``score(i)`` the sum of the squared distances from x_i
    to its n-f-2 nearest other inputs; ties go to the lowest index.
    ``last_info["selected"]``: ``(B,)`` winners.
    """

    name = "krum"

    def min_n(self) -> int:
        return 2 * self.f + 3

    def requirement(self) -> str:
        return "n >= 2f+3"

    def _aggregate(self, x3: torch.Tensor) -> torch.Tensor:
        B, n, _ = x3.shape
        D = pairwise_sq_dists(x3)
        alive = torch.ones(B, n, dtype=torch.bool, device=D.device)
        win = krum_scores(D, alive, n - self.f - 2).argmin(dim=1)
        self.last_info["selected"] = win
        return x3[torch.arange(B, device=x3.device), win.to(x3.device)]


@AGGREGATORS.register()
class MultiKrum(Krum):
    """Multi-Krum (Blanchard et al. 2017): the mean of the m inputs with the smallest Krum scores.

    Scores are computed once (as in ``Krum``); default m = n - f; ties at the cut: lower index.
    Requires n >= 2f+3 and 1 <= m <= n. ``last_info["selected"]``: ``(B, m)`` in score order.
    """

    name = "multi-krum"

    def __init__(self, f: int = 0, m: int | None = None) -> None:
        super().__init__(f)
        if m is not None and (not isinstance(m, int) or m < 1):
            raise ValueError(f"multi-krum: m must be an int >= 1, got {m!r}")
        self.m = m

    def _aggregate(self, x3: torch.Tensor) -> torch.Tensor:
        B, n, _ = x3.shape
        m = n - self.f if self.m is None else self.m
        if m > n:
            raise ValueError(f"multi-krum needs m <= n, got m={m}, n={n}")
        D = pairwise_sq_dists(x3)
        alive = torch.ones(B, n, dtype=torch.bool, device=D.device)
        scores = krum_scores(D, alive, n - self.f - 2)
        order = torch.sort(scores, dim=1, stable=True).indices[:, :m]
        keep = torch.zeros(B, n, dtype=torch.bool, device=D.device).scatter_(1, order, True)
        self.last_info["selected"] = order
        return mean_rows(x3, keep.to(x3.device), m)

    def __repr__(self) -> str:
        return f"MultiKrum(f={self.f}, m={self.m})"


@AGGREGATORS.register()
class Bulyan(Aggregator):
    """Bulyan (El Mhamdi et al. 2018) over Krum, as docs/aggregators.md fixes it; requires n >= 4f+3.

    (1) Selection: theta = n - 2f times, run Krum on the m inputs not yet selected (scores recomputed
    on that set with max(0, m - f - 2) neighbours, ties to the lowest original index) and move the
    winner to the selection. (2) Per coordinate, the mean of the beta = theta - 2f selected values
    closest to the selection's coordinate median (ties: lower original index first).
    Requires n >= 4f+3. ``last_info["selected"]``: ``(B, theta)`` in selection order.
    """

    name = "bulyan"

    def min_n(self) -> int:
        return 4 * self.f + 3

    def requirement(self) -> str:
        return "n >= 4f+3"

    def _aggregate(self, x3: torch.Tensor) -> torch.Tensor:
        B, n, _ = x3.shape
        theta = n - 2 * self.f
        beta = theta - 2 * self.f
        D = pairwise_sq_dists(x3)
        alive = torch.ones(B, n, dtype=torch.bool, device=D.device)
        rows = torch.arange(B, device=D.device)
        chosen = []
        for it in range(theta):
            m = n - it
            win = krum_scores(D, alive, max(0, m - self.f - 2)).argmin(dim=1)
            alive[rows, win] = False
            chosen.append(win)
        sel = torch.stack(chosen, dim=1)
        self.last_info["selected"] = sel
        # rows in original-index order so that the coordinate step's ties go to the lower index
        idx = torch.sort(sel, dim=1).values.to(x3.device)
        S = torch.gather(x3, 1, idx.unsqueeze(2).expand(-1, -1, x3.shape[2]))
        return _kernels.coord_reduce(S, "meamed", k=beta).to(x3.device)
