"""All pairwise squared distances of the n rows, from one Gram product, with the cancellation guarded.

``|x_i - x_j|^2 = G_ii + G_jj - 2 G_ij`` costs one (n, d) x (d, n) product instead of n^2/2
passes over d, but loses precision when the vectors are large and close. Three guards:

1. the Gram matrix is of the rows centred on one row ``x_c`` (distances are translation invariant),
   accumulated in float64 (float32 products are exact in float64);
2. a pair is *near* when ``D_ij <= TAU * (G_ii + G_jj)``: there the Gram error (at most about
   ``d * 2^-53 * |c_i| |c_j|``) could be a visible fraction of ``D_ij``, so near pairs are recomputed
   exactly as ``sum((x_i - x_j)^2)`` in float64. Outside them the relative error of ``D_ij`` is at
   most ``~4 d 2^-53 / TAU`` (below 4e-6 for d = 1e6);
3. when many pairs are near (the centre row is far from the others, e.g. an outlier), the Gram is
   recomputed once centred on the medoid of the first estimate.

The result is exactly symmetric with a zero diagonal; overflow (huge rows) reads as +inf.
"""

from __future__ import annotations

import torch

from codedbft.aggregators import _kernels

#: relative nearness below which a distance is recomputed exactly (see module docstring)
TAU = 2.0**-13


def _dists_from_gram(G: torch.Tensor, n: int) -> torch.Tensor:
    Gc = G[:, :n, :n]
    diag = Gc.diagonal(dim1=1, dim2=2)
    D = diag.unsqueeze(2) + diag.unsqueeze(1) - 2 * Gc
    D = torch.nan_to_num(D, nan=float("inf")).clamp_(min=0.0)
    D.diagonal(dim1=1, dim2=2).zero_()
    return D


def _near(D: torch.Tensor, G: torch.Tensor, n: int) -> torch.Tensor:
    diag = G[:, :n, :n].diagonal(dim1=1, dim2=2)
    scale = diag.unsqueeze(2) + diag.unsqueeze(1)
    near = D <= TAU * scale
    return torch.triu(near, diagonal=1)


def pairwise_sq_dists(x3: torch.Tensor, *, return_gram: bool = False):
    """float64 ``(B, n, n)`` squared Euclidean distances between the rows of ``x3`` (B, n, d).

    With ``return_gram=True`` also returns the float64 ``(B, n+1, n+1)`` centred Gram of
    ``_kernels.centered_gram`` and the centre rows ``(B,)`` (for rules that need raw dot products).
    """
    B, n, _ = x3.shape
    center = torch.zeros(B, dtype=torch.int64)
    G = _kernels.centered_gram(x3, center)
    D = _dists_from_gram(G, n)
    near = _near(D, G, n)
    if int(near.sum()) > 2 * n * B:
        # many near pairs: the centre row is far from a tight cluster; recentre on the medoid
        center = D.sum(dim=2).argmin(dim=1).cpu()
        G = _kernels.centered_gram(x3, center)
        D = _dists_from_gram(G, n)
        near = _near(D, G, n)
    if bool(near.any()):
        b, i, j = near.nonzero(as_tuple=True)
        exact = _kernels.pair_sq_dists(x3, b.cpu(), i.cpu(), j.cpu()).to(D.device)
        exact = torch.nan_to_num(exact, nan=float("inf"))
        D[b, i, j] = exact
        D[b, j, i] = exact
    if return_gram:
        return D, G, center
    return D
