"""DRACO's cyclic MDS code (Chen et al., ICML 2018, §4), built over the reals.

DRACO takes k = n partitions; worker i computes the 2s+1 cyclically consecutive partitions
i, i+1, ..., i+2s (mod n) and sends one linear combination of their gradients. The honest messages
of every coordinate then form a codeword of an [n, n−2s] MDS code, so the master corrects any e
errors and m erasures with 2e + m <= 2s (the code distance is 2s+1) and reads off Σ_j g_j.

DRACO's construction uses the n x n DFT matrix, so workers would send complex vectors. We use the
real cyclic MDS construction instead (Raviv, Tamo, Tandon, Dimakis, "Gradient coding from cyclic
MDS codes and expander graphs", ICML 2018), which exists when n − 2s is odd, i.e. for odd n:

* the code is the space of real trigonometric polynomials of degree K = (n − 2s − 1)/2,
  ``c(x) = a_0 + Σ_{f=1..K} (a_f cos f x + b_f sin f x)``, sampled at x_i = 2π i / n. As a complex
  code it is spanned by the DFT frequencies −K..K, a consecutive run of n − 2s frequencies, so it is
  a (cyclic) Reed–Solomon code: distance 2s + 1 by the BCH bound, and its 2s parity frequencies
  K+1..K+2s are consecutive, which is what the syndrome (Hankel/Prony) decoder needs;
* a non-zero trigonometric polynomial of degree K has at most 2K = n − 2s − 1 roots, so the codeword
  that vanishes on the n − 2s − 1 workers *not* holding partition j is unique up to scale:
  ``p(x) = Π_l sin((x − x_l)/2)`` over those roots. Column j of B is that codeword, so row i of B is
  supported exactly on worker i's window. B is circulant,
  ``B[i, (i + t) mod n] = b_t,  b_t ∝ Π_{l=1..2K} sin(π (t + l) / n),  t = 0..2s``,
  all b_t > 0; we normalise Σ_t b_t = 1, so each honest message is a convex combination of its
  window's partition gradients and the plain sum of all n honest messages is exactly Σ_j g_j;
* Σ_i c_i = n a_0 for every codeword (the other basis functions sum to zero over the n points), so
  Σ_j g_j = n a_0, and a_0 is determined by the values on any n − 2s rows (interpolation).

Messages are therefore real float64 vectors, like every other code in this package.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np

from codedbft._arrays import as_numpy
from codedbft.encoders.base import Code


class CyclicMDSCode(Code):
    """``CyclicMDSCode(n, s)``: DRACO's cyclic code, real construction; k = n partitions.

    Worker i holds partitions i..i+2s (mod n) and sends ``m_i = Σ_t b_t g_{(i+t) mod n}``. Any
    n − 2s honest rows determine the sum; e errors and m erasures are corrected when 2e + m <= 2s.

    Args:
        n: number of workers (= number of partitions). Must be odd (a real cyclic MDS code of this
            kind exists only when n − 2s is odd).
        s: Byzantine workers tolerated; needs n >= 2s + 1.
        rtol: the decoder's tolerance on standardised relative residuals (None: 1e-11 for
            float64 messages, 1e-5 for lower precision).
        projections: coordinate groups the decoder projects separately on its private random
            vector, in one pass (see :class:`~codedbft.decoders.syndrome.SyndromeDecoder`).
        seed: seed of the decoder's private random vectors (None: fresh OS entropy).

    Raises:
        ValueError: n < 2s + 1, n even, or s < 0.
    """

    def __init__(self, n: int, s: int, *, rtol: float | None = None, projections: int = 4,
                 seed: int | None = None):
        n, s = int(n), int(s)
        if s < 0:
            raise ValueError(f"s must be >= 0, got s={s}")
        if n < 2 * s + 1:
            raise ValueError(f"cyclic MDS code needs n >= 2s+1, got n={n}, s={s}")
        if n % 2 == 0:
            raise ValueError(
                f"real cyclic MDS code needs n - 2s odd, i.e. n odd, got n={n} "
                "(use an odd number of workers, or RepetitionCode)")
        self.n, self.k, self.s = n, n, s
        #: degree of the trigonometric polynomials that form the code (dimension 2K+1 = n − 2s).
        self.K = (n - 2 * s - 1) // 2
        self._rtol, self._projections, self._seed = rtol, projections, seed

    @cached_property
    def assignment(self) -> tuple[tuple[int, ...], ...]:
        w = 2 * self.s + 1
        return tuple(tuple((i + t) % self.n for t in range(w)) for i in range(self.n))

    @cached_property
    def coefficients(self) -> np.ndarray:
        """(2s+1,) float64 ``b_t``: worker i sends ``Σ_t b_t g_{i+t}``; positive, sum 1, symmetric."""
        n, K = self.n, self.K
        t = np.arange(2 * self.s + 1)[:, None]
        l = np.arange(1, 2 * K + 1)[None, :]
        # Products of up to n−1 sines under/overflow for large n: sum logs, normalise in log space.
        logb = np.log(np.sin(np.pi * (t + l) / n)).sum(axis=1) if K else np.zeros(t.shape[0])
        b = np.exp(logb - logb.max())
        b /= b.sum()
        b.setflags(write=False)
        return b

    @property
    def linear(self) -> bool:
        """True: each message is ``Σ_t b_t g_{i+t}`` (known without building ``B``)."""
        return True

    @cached_property
    def B(self) -> np.ndarray:  # noqa: N802 - the paper's name
        """(n, n) float64 circulant encoding matrix, ``B[i, (i+t) mod n] = b_t`` for t = 0..2s."""
        n = self.n
        B = np.zeros((n, n))
        rows = np.repeat(np.arange(n), 2 * self.s + 1)
        B[rows, np.asarray(self.assignment).ravel()] = np.tile(self.coefficients, n)
        B.setflags(write=False)
        return B

    @cached_property
    def basis(self) -> np.ndarray:
        """(n, n−2s) float64 real basis of the code: columns 1, cos(f x), sin(f x) for f = 1..K.

        Orthogonal on the n sample points (V^T V = diag(n, n/2, ..., n/2)), and only column 0 has a
        non-zero sum, so Σ_i c_i = n · (coefficient of column 0).
        """
        cols = [np.ones(self.n)]
        for f in range(1, self.K + 1):
            q = (f * np.arange(self.n)) % self.n  # reduce f·i mod n first: exact angles for large f·i
            ang = 2 * np.pi * q / self.n
            cols += [np.cos(ang), np.sin(ang)]
        V = np.stack(cols, axis=1)
        V.setflags(write=False)
        return V

    @cached_property
    def parity_check(self) -> np.ndarray:
        """(2s, n) complex128 ``H[l, i] = ω^{−(K+1+l) i}``, ω = e^{2πi/n}: H c = 0 for every codeword.

        The rows are the DFT at the 2s consecutive frequencies K+1..K+2s outside the code's band;
        for an error vector e the syndromes are ``S_l = Σ_j e_j X_j^{K+1} X_j^l`` with locators
        ``X_j = ω^{−i_j}`` (the form the Hankel/Prony locator solves).
        """
        i = np.arange(self.n)
        f = self.K + 1 + np.arange(2 * self.s)
        q = (f[:, None] * i[None, :]) % self.n
        H = np.exp(-2j * np.pi * q / self.n)
        H.setflags(write=False)
        return H

    @cached_property
    def locators(self) -> np.ndarray:
        """(n,) complex128 error locator of each worker, ``X_i = ω^{−i}``."""
        X = np.exp(-2j * np.pi * np.arange(self.n) / self.n)
        X.setflags(write=False)
        return X

    def encode(self, G: Any) -> Any:
        """Honest messages ``m_i = Σ_t b_t g_{(i+t) mod n}``: (k, d) -> (n, d) float64.

        Uses the band structure (2s+1 scaled shifted adds) instead of the dense ``B @ G``, which
        costs n/(2s+1) times more.
        """
        arr, kind = as_numpy(G)
        if arr.ndim != 2 or arr.shape[0] != self.k:
            raise ValueError(f"G must have shape (k={self.k}, d), got {arr.shape}")
        if np.iscomplexobj(arr):
            raise ValueError("partition gradients must be real")
        G64 = arr.astype(np.float64, copy=False)
        n, b = self.n, self.coefficients
        out = G64 * b[0]
        tmp = np.empty_like(out)
        for t in range(1, b.size):
            # rows i take g_{i+t}: rows 0..n−t−1 from G[t:], the wrapped rows from G[:t]
            np.multiply(G64[t:], b[t], out=tmp[: n - t])
            np.multiply(G64[:t], b[t], out=tmp[n - t:])
            out += tmp
        return kind.wrap(out)

    def _build_decoder(self):
        from codedbft.decoders.syndrome import SyndromeDecoder

        return SyndromeDecoder(self, rtol=self._rtol, projections=self._projections, seed=self._seed)
