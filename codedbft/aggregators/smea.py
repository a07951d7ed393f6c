"""SMEA, smallest maximum eigenvalue averaging (Allouah et al. 2023).

Allouah, Guerraoui, Gupta, Pinot, Rizk, "Robust Distributed Learning: Tight Error Bounds and
Breakdown Point under Data Heterogeneity", NeurIPS 2023 (the same group's 2023 line of work that
also gave NNM). Output the mean of the subset S of size n - f whose
empirical covariance has the smallest maximum eigenvalue:

    S* = argmin_{|S| = n-f} lambda_max( (1/|S|) Σ_{i in S} (x_i - x̄_S)(x_i - x̄_S)^T ),   out = x̄_{S*}.

The search is exhaustive over the C(n, f) subsets (combinatorial by definition: the one loop is over
chunks of subsets, never over d), ties to the lexicographically first subset (lower indices). The
eigenvalue is computed in the k x k space (k = n - f), not d x d: the nonzero eigenvalues of
``X_S^T H X_S`` equal those of the centred Gram ``H K_S H``, and ``H K_S H = -1/2 H D_S H`` (classical
MDS) with ``D_S`` the float64 squared distances of ``_distances.pairwise_sq_dists`` (guarded against
cancellation), so only an n x n matrix per batch item is ever formed. Distances that overflow
(huge float64 rows) are recomputed on the rows scaled by a power of two (``scaled_sq_dists``).

Requires n >= 2f+1 and C(n, f) <= ``max_subsets`` (default 200_000), else ValueError.
``last_info["selected"]``: ``(B, n-f)`` kept rows; ``last_info["lambda_max"]``: ``(B,)`` float64.
Measured: one call at (n, d) = (25, 1e5) float32, f = 3 (C = 2300 subsets), on a 2-core CPU: about 0.26 s.
"""

from __future__ import annotations

import itertools

import torch

from codedbft.aggregators._distances import pairwise_sq_dists
from codedbft.aggregators.base import FRule, mean_rows
from codedbft.aggregators.selection import check_subset_budget
from codedbft.aggregators.registry import AGGREGATORS


def scaled_sq_dists(x3: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 squared distances ``(B, n, n)`` divided by their per-item maximum, and that scale ``(B,)``.

    When some distance overflows, all are recomputed on the rows scaled by ``2^-e`` (an exact power of
    two with ``2^e >= max |x|``; the returned scale includes the factor ``4^e`` and may read inf). Distances still non-finite are replaced by 4x the largest finite one of the item, so every
    entry lies in [0, 4] and eigen-solvers never see inf or NaN; eigenvectors and the ordering of
    eigenvalues within an item do not change with the scale.
    """
    D = pairwise_sq_dists(x3)
    fin = torch.isfinite(D)
    if not bool(fin.all()):
        # overflow (huge rows): recompute on x scaled by an exact power of two per item, x 2^-e with
        # 2^e >= max |x|; the small rows may underflow to 0, which keeps them close to each other
        amax = x3.abs().amax(dim=(1, 2)).double().clamp(min=1.0)
        e = torch.ceil(torch.log2(amax))
        xs = x3 * torch.exp2(-e).to(x3.dtype).to(x3.device).view(-1, 1, 1)
        D = pairwise_sq_dists(xs)
        fin = torch.isfinite(D)
        unit = torch.exp2(2 * e).to(D.device)  # back to the original units (may read inf)
    else:
        unit = torch.ones(D.shape[0], dtype=D.dtype, device=D.device)
    m = torch.where(fin, D, torch.zeros((), dtype=D.dtype, device=D.device)).amax(dim=(1, 2))
    m = torch.where(m > 0, m, torch.ones((), dtype=D.dtype, device=D.device))
    D = torch.where(fin, D, 4 * m.view(-1, 1, 1)) / m.view(-1, 1, 1)
    return D, m * unit


def centering(k: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.eye(k, dtype=dtype, device=device) - 1.0 / k


@AGGREGATORS.register()
class SMEA(FRule):
    """SMEA (Allouah et al. 2023): mean of the n-f inputs whose covariance has the least top eigenvalue.

    Args:
        f: inputs left out (requirement n >= 2f+1).
        max_subsets: the largest C(n, f) searched (exhaustive search; exponential in f).
    """

    name = "smea"
    _CHUNK = 2048

    def __init__(self, f: int = 0, max_subsets: int = 200_000) -> None:
        super().__init__(f)
        self.max_subsets = int(max_subsets)

    def _check_n(self, n: int) -> None:
        super()._check_n(n)
        check_subset_budget(self.name, n, self.f, self.max_subsets)

    def _aggregate(self, x3: torch.Tensor) -> torch.Tensor:
        B, n, _ = x3.shape
        k = n - self.f
        D, scale = scaled_sq_dists(x3)
        H = centering(k, D.dtype, D.device)
        allc = torch.tensor(list(itertools.combinations(range(n), k)), dtype=torch.int64, device=D.device)
        allc = allc.reshape(-1, k)  # lexicographic order: ties to lower indices
        best = torch.full((B,), float("inf"), dtype=D.dtype, device=D.device)
        best_idx = torch.zeros(B, dtype=torch.int64, device=D.device)
        for s in range(0, len(allc), self._CHUNK):  # chunks of subsets (combinatorial definition)
            c = allc[s : s + self._CHUNK]
            K = -0.5 * (H @ D[:, c.unsqueeze(2), c.unsqueeze(1)] @ H)  # (B, C, k, k) centred Gram
            lam = torch.linalg.eigvalsh((K + K.transpose(-1, -2)) / 2)[..., -1] / k
            i = lam.argmin(dim=1)  # first minimum
            v = lam.gather(1, i.unsqueeze(1)).squeeze(1)
            better = v < best
            best = torch.where(better, v, best)
            best_idx = torch.where(better, i + s, best_idx)
        keep_ids = allc[best_idx]
        keep = torch.zeros(B, n, dtype=torch.bool, device=D.device).scatter_(1, keep_ids, True)
        self.last_info["selected"] = keep_ids
        self.last_info["lambda_max"] = best * scale
        return mean_rows(x3, keep.to(x3.device), k)

    def __repr__(self) -> str:
        return f"SMEA(f={self.f}, max_subsets={self.max_subsets})"
