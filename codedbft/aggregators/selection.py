"""Rules that drop whole inputs and average the rest: MDA (minimum diameter averaging), FABA, CGE.

Each decides per batch item which n-f rows to keep (from the float64 pairwise distances, or the
row norms) and returns their mean with one batched matvec; definitions: docs/aggregators.md.
"""

from __future__ import annotations

import itertools
import math

import torch

from codedbft.aggregators import _kernels
from codedbft.aggregators._distances import pairwise_sq_dists
from codedbft.aggregators.base import FRule, mean_rows
from codedbft.aggregators.registry import AGGREGATORS



def check_subset_budget(name: str, n: int, f: int, max_subsets: int) -> None:
    """ValueError when an exhaustive search over the C(n, f) subsets (MDA, SMEA) exceeds its cap."""
    c = math.comb(n, f)
    if c > max_subsets:
        raise ValueError(f"{name} needs C(n, f) <= max_subsets, got C({n}, {f}) = {c} > {max_subsets}")

@AGGREGATORS.register()
class MDA(FRule):
    """Minimum-diameter averaging (El Mhamdi et al. 2018): mean of the n-f inputs of least diameter.

    The mean of the subset S of size n-f with the smallest diameter ``max_{i,j in S} |x_i - x_j|``;
    exact search over the C(n, f) subsets, ties to the lexicographically first subset (lower
    indices). Requires n >= 2f+1 and C(n, f) <= ``max_subsets`` (default 200_000; the search is
    exponential in f), else ValueError. ``last_info["selected"]``: ``(B, n-f)`` kept rows.
    """

    name = "mda"
    _CHUNK = 4096

    def __init__(self, f: int = 0, max_subsets: int = 200_000) -> None:
        super().__init__(f)
        self.max_subsets = int(max_subsets)

    def _check_n(self, n: int) -> None:
        super()._check_n(n)
        check_subset_budget(self.name, n, self.f, self.max_subsets)

    def _aggregate(self, x3: torch.Tensor) -> torch.Tensor:
        B, n, _ = x3.shape
        D = pairwise_sq_dists(x3)
        k = n - self.f
        best = torch.full((B,), float("inf"), dtype=D.dtype, device=D.device)
        best_idx = torch.zeros(B, dtype=torch.int64, device=D.device)
        combos = list(itertools.combinations(range(n), k))  # lexicographic: ties to lower indices
        allc = torch.tensor(combos, dtype=torch.int64, device=D.device).reshape(-1, k)
        for s in range(0, len(allc), self._CHUNK):
            c = allc[s : s + self._CHUNK]
            sub = D[:, c.unsqueeze(2), c.unsqueeze(1)]  # (B, C, k, k)
            diam = sub.flatten(2).amax(dim=2)
            v, i = diam.min(dim=1)
            better = v < best
            best = torch.where(better, v, best)
            best_idx = torch.where(better, i + s, best_idx)
        keep_ids = allc[best_idx]
        keep = torch.zeros(B, n, dtype=torch.bool, device=D.device).scatter_(1, keep_ids, True)
        self.last_info["selected"] = keep_ids
        return mean_rows(x3, keep.to(x3.device), k)

    def __repr__(self) -> str:
        return f"MDA(f={self.f}, max_subsets={self.max_subsets})"


@AGGREGATORS.register()
class FABA(FRule):
    """FABA (Xia et al. 2019): f times drop the input farthest from the mean; average the rest.

    Each round drops the input farthest from the mean of those remaining (ties: the lower index
    is dropped); the output is the mean of the n-f left. Distances to the mean come from the
    pairwise distances, ``|x_i - mu|^2 = (1/m) sum_j D_ij - (1/2m^2) sum_jk D_jk`` over the m
    remaining rows (translation invariant). Requires n >= 2f+1. ``last_info["dropped"]``: (B, f).
    """

    name = "faba"

    def _aggregate(self, x3: torch.Tensor) -> torch.Tensor:
        B, n, _ = x3.shape
        D = pairwise_sq_dists(x3)
        alive = torch.ones(B, n, dtype=torch.bool, device=D.device)
        rows = torch.arange(B, device=D.device)
        dropped = []
        for it in range(self.f):
            m = n - it
            Da = torch.where(alive.unsqueeze(1) & alive.unsqueeze(2), D, torch.zeros((), dtype=D.dtype))
            row = Da.sum(dim=2)
            center = row.sum(dim=1, keepdim=True) / (2 * m * m)
            dist = row / m - center
            dist = torch.where(alive, torch.nan_to_num(dist, nan=float("inf")), -torch.ones((), dtype=D.dtype))
            # Equal distances (ties: the lower index goes) come out of the formula a few ulps apart,
            # in whichever direction the summation order rounds: within the formula's own rounding
            # of the maximum, every candidate is a tie.
            top = dist.max(dim=1, keepdim=True).values
            tol = 64 * torch.finfo(D.dtype).eps * (top.abs() + 2 * center.abs())
            far = (dist >= top - torch.nan_to_num(tol, nan=0.0, posinf=0.0)).to(torch.uint8).argmax(dim=1)
            alive[rows, far] = False
            dropped.append(far)
        self.last_info["dropped"] = torch.stack(dropped, dim=1) if dropped else torch.zeros(B, 0, dtype=torch.int64)
        return mean_rows(x3, alive.to(x3.device), n - self.f)


@AGGREGATORS.register()
class CGE(FRule):
    """Comparative gradient elimination (Gupta et al. 2021): drop the f largest-norm inputs, average.

    The f inputs with the largest Euclidean norms are dropped (ties: the lower index is dropped
    first) and the n-f left averaged. Norms accumulate in float64. Requires n >= 2f+1.
    ``last_info["dropped"]``: ``(B, f)``.
    """

    name = "cge"

    def _aggregate(self, x3: torch.Tensor) -> torch.Tensor:
        B, n, _ = x3.shape
        norms = torch.nan_to_num(_kernels.row_sq_norms(x3), nan=float("inf")).to(x3.device)
        # descending stable sort: among equal norms the lower index comes first, so it is dropped
        order = torch.sort(norms, dim=1, descending=True, stable=True).indices
        keep = torch.ones(B, n, dtype=torch.bool, device=x3.device)
        keep.scatter_(1, order[:, : self.f], False)
        self.last_info["dropped"] = order[:, : self.f]
        return mean_rows(x3, keep, n - self.f)
