"""Coordinate-wise rules: mean, median, trimmed mean, Phocas, MeaMed, sign majority.

Each treats the d coordinates independently: it sorts the n values of every coordinate once
(sorting network kernel, ``_kernels``) and reduces, so nothing loops over d or over batch items in
Python. The trimmed mean ``(1/(n-2f)) sum_{j=f+1}^{n-f} s_(j)`` (Yin et al. 2018) does not sort:
it streams each column through registers of the f smallest and the f largest values (a kernel
unrolled over the n rows, ``_numba_kernels.trim_unrolled``) and sums in float64 what falls out of
both. Definitions and sources: docs/aggregators.md.

Measured costs, (25, 1e6) float32, f = 3, one thread, on a shared 2-core host (load average 2-5
from other sessions, so absolute times are ~2-3x those of an idle machine; the ratios are from
interleaved calls, ``benchmarks/bench_aggregators.py --peers-only``): trimmed mean 25-30 ms, 9-10x
ByzFL 0.0.11 and >40x ByzPy 0.1.4 (the sorting network took ~8x a pass over x: 1.5x ByzFL);
median 87-95 ms (6-8x ByzFL, 9-10x ByzPy); MeaMed 9x ByzFL, 14x ByzPy.
"""

from __future__ import annotations

import torch

from codedbft.aggregators import _kernels
from codedbft.aggregators.base import Aggregator, FRule
from codedbft.aggregators.registry import AGGREGATORS


@AGGREGATORS.register()
class Mean(Aggregator):
    """The plain average (1/n) sum_i x_i; not robust.

    Plain SGD: one Byzantine input moves it arbitrarily. No requirement on n.
    """

    name = "mean"

    def _aggregate(self, x3: torch.Tensor) -> torch.Tensor:
        return x3.mean(dim=1)


@AGGREGATORS.register()
class Median(FRule):
    """Coordinate-wise median (Yin et al. 2018); requires n >= 2f+1.

    Even n: the mean of the two middle values (numpy's rule, not ``torch.median``'s lower middle).
    """

    name = "median"

    def _aggregate(self, x3: torch.Tensor) -> torch.Tensor:
        return _kernels.coord_reduce(x3, "median").to(x3.device)


@AGGREGATORS.register()
class TrimmedMean(FRule):
    """Coordinate-wise trimmed mean (Yin et al. 2018); requires n >= 2f+1.

    Per coordinate drop the f largest and f smallest values and average the n-2f left, by
    selection (never total - top - bottom, which loses the honest values to cancellation when
    outliers are ~1e6 in float32).
    """

    name = "trimmed-mean"

    def _aggregate(self, x3: torch.Tensor) -> torch.Tensor:
        return _kernels.coord_reduce(x3, "trimmed", f=self.f).to(x3.device)


@AGGREGATORS.register()
class Phocas(FRule):
    """Phocas (Xie et al. 2018): mean of the n-f values closest to the trimmed mean; n >= 2f+1.

    Per coordinate, the n-f values closest to the coordinate's trimmed mean ``T`` (distances
    ``|x_i - T|`` in float64; ties: lower index first) are averaged.
    """

    name = "phocas"

    def _aggregate(self, x3: torch.Tensor) -> torch.Tensor:
        n = x3.shape[1]
        return _kernels.coord_reduce(x3, "phocas", f=self.f, k=n - self.f).to(x3.device)


@AGGREGATORS.register()
class MeaMed(FRule):
    """Mean-around-median (Xie et al. 2018, GBT-SGD): mean of the n-f values closest to the median.

    Per coordinate, the n-f values closest to the coordinate's median are averaged (ties: lower
    index first). Requires n >= 2f+1.
    """

    name = "meamed"

    def _aggregate(self, x3: torch.Tensor) -> torch.Tensor:
        n = x3.shape[1]
        return _kernels.coord_reduce(x3, "meamed", k=n - self.f).to(x3.device)


@AGGREGATORS.register()
class SignMajority(Aggregator):
    """signSGD with majority vote (Bernstein et al. 2019): sign(sum_i sign(x_i)), a tie gives 0.

    No requirement on n (``f`` is accepted for a uniform interface and unused).
    """

    name = "sign-majority"

    def _aggregate(self, x3: torch.Tensor) -> torch.Tensor:
        # torch.sign alone costs ~4 means on CPU: one fused counting pass instead
        return _kernels.sign_vote(x3).to(x3.device)
