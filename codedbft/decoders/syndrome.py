"""Syndrome decoding of DRACO's cyclic MDS code over the reals: locate, then solve.

The honest messages of every coordinate form a codeword of the real [n, n−2s] cyclic Reed–Solomon
code of :class:`~codedbft.encoders.cyclic.CyclicMDSCode`; Byzantine workers add an error of (row)
support e, missing workers are m erasures, and the code corrects 2e + m <= 2s (Chen et al., DRACO,
ICML 2018, §4; docs/codes.md §2). Decoding never touches the d coordinates more than twice (see
"Cost" below for when it touches them once):

1. *project* (one O(n d) pass): ``y = M r`` for a private random vector r ∈ R^d (Gaussian, drawn by
   the master and never sent), kept as p partial projections over p groups of coordinates. For a
   fixed error row e_i, ``e_i · r`` is non-zero with probability one, so the rows in error are the
   rows in error of these scalar words. Rows whose projection is non-finite hold NaN/Inf (or
   overflow): they are erasures, and flagged: this is the finiteness check, no pass of its own.
   After a fault-free step the same pass also sums the rows with the no-error weights (all ones).
2. *locate* (O(n s) scalars): the 2s syndromes ``S_l = Σ_i y_i X_i^{K+1+l}`` (X_i = ω^{−i}, the
   DFT at the parity frequencies) satisfy ``S_l = Σ_j E_j X_j^l`` over the errors j. Erasures are
   removed with Forney's modified syndromes ``T_l = Σ_k γ_k S_{l+k}`` (γ: coefficients of the
   erasure locator Γ(z) = Π_q (z − X_q)), leaving L = 2s − m of them. The error-locator polynomial
   Λ of degree ν = ⌊L/2⌋ annihilates the Hankel system ``Σ_k λ_k T_{l+k} = 0`` (Prony / Peterson);
   we take λ as the last right singular vector of the (stacked) Hankel matrix, which also covers
   fewer than ν errors (rank-deficient Hankel: every null vector vanishes at the true locators).
   The ν workers where |Λ(X_i)| is smallest are *suspects*: flagged by rank, never by an absolute
   threshold (the DRACO reference compared |Λ| with 1e-9 in complex64 and returned relative errors
   up to 7e10 at n = 45, s = 5).
3. *verify*: interpolate the code on the unsuspected rows (least squares on the real trigonometric
   basis, cached per pattern) and compute every row's residual against that partition-consistent
   codeword, relative to the largest projection among the fitted rows. A fitted row above ``rtol``
   means an error escaped the locator; suspects below ``rtol`` are honest after all (unflagged).
   Errors of wildly different sizes (1e30 next to a 1e-6 relative perturbation) are handled by
   deflation: suspects whose residual dwarfs the leftover inconsistency become erasures and the
   locator runs again on what is left (still within 2e + m <= 2s, since an error turned into an
   erasure costs 1 instead of 2).
4. *solve* (one more O(n d) pass): ``Σ_j g_j = n a_0`` is a fixed linear combination
   ``Σ_{i∈U} u_i m_i`` of the consistent rows U, with u cached per pattern. With no faults U is every
   row and u = 1: the sum fused into the projection pass is the answer.

The result is certified (``exact=True``) when every non-erased row it keeps is consistent with the
recovered codeword and at most ⌊(2s − m)/2⌋ rows were flagged as errors: then, if the adversary
respected 2e + m <= 2s, the recovered codeword is the true one (two codewords agreeing on n − 2s
rows are equal). Beyond the limit nothing crashes: ``exact=False`` and ``info["reason"]`` says why
(m > 2s erasures, or no consistent codeword within the budget). An adversary past the limit can
still land on another codeword (distance 2s+1): no decoder can detect that.

Numerics: float64/complex128 throughout; the trigonometric basis is orthogonal on the sample
points, and the combination vectors come from a pseudo-inverse of an (|U|, n−2s) slice of it.

Cost (issue 14; n = 45, s = 5, d = 1e6 float64, one BLAS thread, in units of ``messages.sum(0)``,
which is slower than a gemv here): a projection-only pass costs ~0.6, the projection with the sum
fused in ~0.85, a separate combination pass ~0.6. A step that excludes rows needs the combination
of the kept rows; the fused sum of all rows is then wasted (0.85 + 0.6 ≈ 1.7). So the sum is fused
into the first pass only when the previous decode excluded no row: a fault-free run costs ~0.85, a
run under a persistent attack ~1.2 (projection, then the kept rows' combination), and an adversary
who alternates pays us at most ~1.7 (the old always-fused decoder: 2.4 under attack, with
``np.dot``'s slow strided path). The output is the same bits either way. The alternative of the
issue, computing the syndromes ``H M`` (2s, d) in the first pass so that any recovery combination
is the fault-free sum plus ``λᵀ (H M)`` (it differs from it by a left-null vector of the code),
measured 1.8x (s + 1 rows) to 3.2x (2s + 1 rows) a sum for the (k, n) @ (n, d) gemm alone:
compute-bound on one thread, it loses to reading the stack twice. It would also cancel
catastrophically against a 1e30 liar, which the kept-rows combination never reads.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from codedbft._arrays import as_numpy, missing_mask
from codedbft.decoders.base import DecodeResult

if TYPE_CHECKING:  # pragma: no cover
    from codedbft.encoders.cyclic import CyclicMDSCode

#: A suspect is confirmed as an error (and erased before re-locating) when its relative residual is
#: this many times the largest residual left among the fitted rows.
_DEFLATE_GAP = 1e3
#: Random offsets into the private Gaussian pool: each decode projects on a fresh window of it.
_POOL_SLACK = 4096
#: The pool is redrawn after this many decodes (drawing d Gaussians costs about half a sum).
_POOL_REFRESH = 64
#: Elements per column chunk of every pass (a 2 MiB float64 chunk stays in L3 between the fused
#: pass's two gemvs; 512 KiB chunks, which fit L2, measured slower: per-call and strided-row costs).
_CHUNK_ELEMS = 1 << 18


def _default_rtol(dtype: np.dtype) -> float:
    # Measured: honest float64 messages give standardised residuals of 1e-16..2e-14 (up to 5e-11
    # only with 2s−1 adjacent erasures at n = 101); 1e-11 leaves 500x margin and still sees a 1e-6
    # relative error in a row of leverage 1 − 1e-8. float32 messages carry ~1e-7 of rounding.
    return 1e-11 if np.dtype(dtype).itemsize >= 8 else 1e-5


class SyndromeDecoder:
    """Locate-then-solve decoder of a :class:`~codedbft.encoders.cyclic.CyclicMDSCode`.

    ``decode(messages, missing=None) -> DecodeResult``: messages (n, d) (or (n, ...)) numpy or
    torch, real; missing a bool (n,) mask or worker ids. Returns the float64 sum of the k partition
    gradients (numpy in -> numpy out, torch in -> torch out on the input's device), the flagged
    workers (erasures with NaN/Inf and located errors; missing workers are not flagged), and
    ``exact`` as described in the module docstring.

    Args:
        code: the cyclic MDS code.
        rtol: tolerance on the standardised relative residuals (None: 1e-11 for float64 messages,
            1e-5 for float32).
        projections: number p of coordinate groups projected separately on the private vector, in
            the same single pass (see :meth:`_pass`): an error row spread over the
            coordinates hides below rtol in every group with probability about (rtol/δ)^p.
        seed: seed of the private random vectors (None: OS entropy).
        cache_size: combination/interpolation matrices kept, one per row pattern.

    ``info``: the common keys of :mod:`codedbft.decoders.base` (``decode_ms``, ``erasures`` =
    missing + non-finite rows, ``nonfinite``, ``reason``); the stages ``project_ms`` (the first
    pass), ``locate_ms`` (residual check, locator, verification, deflation) and ``combine_ms``
    (the second pass; about 0 when the first pass already summed the kept rows); and ``missing``,
    ``erasure_ids``, ``nonfinite_ids``, ``locator`` (``"clean"``: no row needed locating,
    ``"prony"``: the locator ran, ``"none"``: past 2s erasures), ``hankel`` (the last locator run:
    ν, |Λ(X_i)| per row, Hankel singular values, ranked suspects), ``suspects`` and ``confirmed``
    (row ids), ``residuals`` ((n,) standardised relative residual of every row, NaN for erasures),
    ``iterations``, ``budget`` (⌊(2s−m)/2⌋, −1 past 2s erasures), ``kept``, ``passes`` (reads of
    the stack: 1 when the fused sum was the answer, else 2), ``fused`` (bool: the first pass also
    summed, because the previous decode excluded no row), ``amplification``, ``projections``,
    ``rtol``.
    """

    def __init__(self, code: "CyclicMDSCode", *, rtol: float | None = None, projections: int = 4,
                 seed: int | None = None, cache_size: int = 256):
        if projections < 1:
            raise ValueError(f"projections must be >= 1, got {projections}")
        if rtol is not None and not rtol > 0:
            raise ValueError(f"rtol must be > 0, got {rtol}")
        self.code = code
        self.n, self.s = code.n, code.s
        self.rtol = rtol
        self.projections = int(projections)
        self._V = code.basis
        self._H = code.parity_check
        self._X = code.locators
        self._rng = np.random.default_rng(seed)
        self._pool: np.ndarray | None = None
        self._pool_uses = 0
        self._cache: OrderedDict[bytes, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_size = cache_size
        #: whether the next first pass also sums the rows (True after a step that excluded none)
        self._fuse = True

    # ---------------------------------------------------------------- the two O(n d) passes
    def _random_vector(self, d: int) -> np.ndarray:
        """A fresh private Gaussian vector of length d: a random window of a cached Gaussian pool."""
        if self._pool is None or self._pool.size < d + _POOL_SLACK or self._pool_uses >= _POOL_REFRESH:
            self._pool = self._rng.standard_normal(d + _POOL_SLACK)
            self._pool_uses = 0
        self._pool_uses += 1
        o = int(self._rng.integers(0, self._pool.size - d + 1))
        return self._pool[o:o + d]

    @staticmethod
    def _step(n: int, d: int, p: int) -> int:
        """Columns per chunk of every pass (shared: the sum's rounding depends on the chunking)."""
        return max(1, min(max(1024, _CHUNK_ELEMS // max(n, 1)), -(-d // p)))

    def _pass(self, M: np.ndarray, r: np.ndarray | None, rows: np.ndarray,
              u: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """One pass over M, column chunk by column chunk: ``(y, out)``, either may be skipped (None).

        * ``y`` (n, p) float64 (when ``r`` is given): column j is the projection ``M[:, C_j] @ r[C_j]``
          on the coordinates C_j of every p-th chunk. Each is the projection of a codeword, hence a
          codeword, so the p columns are p scalar words sharing one error support (stacked in the
          locator, max-ed in the verification): an error row hides only if it hides in every group,
          for the price of a single projection pass. A NaN/Inf row gets a non-finite projection:
          that is the finiteness check, no extra pass;
        * ``out`` = ``Σ_{i∈rows} u_i m_i`` (d,) float64 (when ``u`` is given). Rows outside ``rows``
          (missing replies, any content) are never read into it. Whether it is computed here with
          ``y`` or in a pass of its own, the arithmetic is the same (same chunks, same gemv), so the
          result does not depend on the fusing choice of :meth:`decode`.

        Non-float64 chunks are upcast in cache. ``np.matmul``, not ``np.dot``: on a strided chunk
        ``np.dot`` measured 1.1 sums per pass, ``np.matmul`` 0.65 (same gemv kernel, same bits).
        """
        n, d = M.shape
        p = self.projections
        y = None if r is None else np.zeros((n, p))
        out = None if u is None else np.empty(d)
        idx = None if rows.all() else np.flatnonzero(rows)
        step = self._step(n, d, p)
        with np.errstate(over="ignore", invalid="ignore"):
            for c, a in enumerate(range(0, d, step)):
                chunk = M[:, a:a + step]
                if chunk.dtype != np.float64:
                    chunk = chunk.astype(np.float64)
                if y is not None:
                    y[:, c % p] += chunk @ r[a:a + step]
                if out is not None:
                    np.matmul(u, chunk if idx is None else chunk[idx], out=out[a:a + step])
        return y, out

    @staticmethod
    def _combine(M: np.ndarray, u: np.ndarray, rows: np.ndarray, safe_zero: bool) -> np.ndarray:
        """float64 ``Σ_{i∈rows} u_i m_i`` in one pass, never reading a NaN/Inf row it excludes.

        ``safe_zero``: every excluded row is finite, so ``u_full @ M`` with zeros on them is exact.
        """
        n, d = M.shape
        with np.errstate(over="ignore", invalid="ignore"):
            if M.dtype == np.float64 and (safe_zero or rows.all()):
                u_full = np.zeros(n)
                u_full[rows] = u
                return u_full @ M
            idx = np.flatnonzero(rows)
            if idx.size == 0:  # nothing kept (every row erased): the empty sum, not an IndexError
                return np.zeros(d)
            if M.dtype == np.float64:
                # runs of consecutive kept rows are views: no (n, d) copy, ≤ 2s+1 gemv calls
                out = np.zeros(d)
                cuts = np.flatnonzero(np.diff(idx) != 1) + 1
                starts = np.concatenate(([0], cuts))
                stops = np.concatenate((cuts, [idx.size]))
                for a, b in zip(starts, stops):
                    lo, hi = idx[a], idx[b - 1] + 1
                    out += u[a:b] @ M[lo:hi]
                return out
            out = np.empty(d)
            step = max(1, _CHUNK_ELEMS // max(n, 1))
            for a in range(0, d, step):
                out[a:a + step] = u @ M[idx, a:a + step].astype(np.float64)
            return out

    # ---------------------------------------------------------------- small-scale algebra
    def _solver(self, U: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Cached ``(P_U, u_U, Qp_U, w)`` for the row pattern U (from one complete QR of V[U]).

        * P_U = V[U]^+ interpolates the code on U; u_U = n · P_U[0] are the sum weights
          (Σ_j g_j = n a_0 for every codeword);
        * Qp_U: orthonormal basis of the complement of the code in R^U (a parity check of the code
          punctured to U), so the residual on U is ``Qp Qp^T y_U``, accurate even when V[U] is
          ill-conditioned (adjacent erasures) where ``y − V P y`` cancels catastrophically;
        * w: residual standardisers, ``‖Qp[i]‖ = sqrt(1 − h_i)`` on U and ``sqrt(1 + h_i)`` off U
          (h: leverage, prediction variance), so rounding noise gives every row the same size.
        """
        key = U.tobytes()
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        r = self._V.shape[1]
        VU = self._V[U]
        if VU.shape[0] == 0:  # nobody replied: nothing to interpolate (never certified)
            z = np.zeros((r, 0))
            hit = (z, np.zeros(0), np.zeros((0, 0)), np.ones(self.n))
            self._cache[key] = hit
            return hit
        Q, R = np.linalg.qr(VU, mode="complete")
        Rr = R[:r]
        if VU.shape[0] >= r and np.abs(np.diag(Rr)).min() > 0:
            P = np.linalg.solve(Rr, Q[:, :r].T)
        else:  # fewer than n − 2s rows: min-norm best effort, never certified
            P = np.linalg.pinv(VU)
        Qp = np.ascontiguousarray(Q[:, r:])
        w = np.empty(self.n)
        w[U] = np.sqrt((Qp * Qp).sum(axis=1))
        out = ~U
        w[out] = np.sqrt(1.0 + ((self._V[out] @ P) ** 2).sum(axis=1) if out.any() else 1.0)
        u = self.n * P[0]
        for a in (P, u, Qp, w):
            a.setflags(write=False)
        self._cache[key] = (P, u, Qp, w)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return P, u, Qp, w

    def _residuals(self, y: np.ndarray, U: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """(n,) standardised relative residual of every valid row against the code fitted on U.

        ``|y_i − ŷ_i| / w_i / scale``: w_i (see :meth:`_solver`) undoes the leverage of rows the fit
        leans on (a lone error in a row of leverage 1 − 1e-7 leaves a residual 1e-7 times its size:
        without it, such errors pass). The scale is a robust maximum of |y_i| over U, its (s+1)-th
        largest value per projection: honest rounding grows with the largest honest message, while
        up to s undetected errors in U (a 1e30 row) must not inflate the scale and hide themselves.
        """
        P, _, Qp, w = self._solver(U)
        res = np.zeros_like(y)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            yU = y[U]
            res[U] = Qp @ (Qp.T @ yU)
            out = valid & ~U
            res[out] = y[out] - self._V[out] @ (P @ yU)
            rho = np.abs(res[valid]) / np.maximum(w[valid], np.finfo(float).tiny)[:, None]
            a = np.abs(yU)
            if a.shape[0] == 0:
                scale = np.zeros(y.shape[1])
            else:
                q = max(a.shape[0] - self.s - 1, 0)
                scale = np.partition(a, q, axis=0)[q]
            r = np.where(scale > 0, rho / np.where(scale > 0, scale, 1.0), np.where(rho > 0, np.inf, 0.0))
        rel = np.full(self.n, np.nan)
        rel[valid] = r.max(axis=1)
        return rel

    def _locate(self, y: np.ndarray, erased: np.ndarray, nu: int) -> tuple[np.ndarray, dict]:
        """The ν non-erased rows where the error-locator polynomial is smallest (bool mask)."""
        n, s = self.n, self.s
        suspects = np.zeros(n, dtype=bool)
        if nu == 0:
            return suspects, {"nu": 0, "ranked": np.zeros(0, dtype=np.int64)}
        yz = np.where(erased[:, None], 0.0, y)  # erased values are unknown: any value, 0 avoids NaN
        S = self._H @ yz  # (2s, p) syndromes
        m = int(erased.sum())
        gamma = np.poly(self._X[erased])[::-1] if m else np.ones(1, dtype=complex)
        L = 2 * s - m
        T = sum(gamma[k] * S[k:k + L] for k in range(m + 1))  # (L, p) Forney-modified syndromes
        # Hankel rows [T_l .. T_{l+ν}], l = 0..L−ν−1, stacked over the p projections
        W = np.lib.stride_tricks.sliding_window_view(T, nu + 1, axis=0)  # (L−ν, p, ν+1)
        Hk = np.ascontiguousarray(W.transpose(1, 0, 2)).reshape(-1, nu + 1)
        top = np.abs(Hk).max()
        if top > 0:
            Hk = Hk / top
        _, sv, Vh = np.linalg.svd(Hk)
        lam = Vh[-1].conj()  # ascending coefficients of Λ: Hk @ lam ≈ 0
        cand = np.flatnonzero(~erased)
        vals = np.abs(np.polyval(lam[::-1], self._X[cand]))
        ranked = cand[np.argsort(vals, kind="stable")[:nu]]
        suspects[ranked] = True
        absl = np.full(n, np.nan)
        absl[cand] = vals
        return suspects, {"nu": nu, "abs": absl, "singular_values": sv, "ranked": ranked}

    # ---------------------------------------------------------------- decode
    def decode(self, messages: Any, missing: Any = None) -> DecodeResult:
        """Recover Σ_j g_j from the (n, d) messages and name the Byzantine workers (see class doc)."""
        t0 = time.perf_counter()
        arr, kind = as_numpy(messages)
        n, s = self.n, self.s
        if arr.ndim < 2 or arr.shape[0] != n:
            raise ValueError(f"messages must have shape (n={n}, d), got {arr.shape}")
        if np.iscomplexobj(arr):
            raise ValueError("cyclic MDS messages are real; got a complex array")
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"messages must be a real numeric array, got dtype {arr.dtype}")
        out_shape = arr.shape[1:]
        M = arr.reshape(n, -1)
        rtol = self.rtol if self.rtol is not None else _default_rtol(arr.dtype)
        miss = missing_mask(missing, n)

        # Fuse the no-error sum into the projection pass only when the last step needed no
        # exclusion (see the module docstring, "Cost"): the output never depends on this choice.
        _, u0, _, _ = self._solver(~miss)
        y, g0 = self._pass(M, self._random_vector(M.shape[1]), ~miss, u0 if self._fuse else None)
        t1 = time.perf_counter()
        unreadable = ~np.isfinite(y).all(axis=1)  # holds NaN/Inf (or overflows): never multiply by 0
        nonfinite = unreadable & ~miss  # a missing row's content is irrelevant: not flagged
        erased = miss | nonfinite
        m = int(erased.sum())
        valid = ~erased
        budget = (2 * s - m) // 2 if m <= 2 * s else -1
        info: dict[str, Any] = {
            "missing": int(miss.sum()),
            "erasure_ids": tuple(int(i) for i in np.flatnonzero(erased)),
            "nonfinite_ids": tuple(int(i) for i in np.flatnonzero(nonfinite)),
            "budget": budget, "projections": self.projections, "rtol": rtol,
        }

        reason: str | None = None
        locator: dict[str, Any] = {"nu": 0}
        suspects = np.zeros(n, dtype=bool)
        confirmed = np.zeros(n, dtype=bool)
        iterations = 0
        if m > 2 * s:
            reason = f"{m} erasures exceed 2s = {2 * s}: the sum is not determined"
            keep = valid
            rel = np.full(n, np.nan)
            errors = np.zeros(n, dtype=bool)
        else:
            # fast path: no errors at all (the usual step) needs no locator
            keep = valid
            rel = self._residuals(y, keep, valid)
            errors = np.zeros(n, dtype=bool)
            if (rel[valid] > rtol).any():
                keep, rel, errors, suspects, confirmed, locator, iterations, reason = self._correct(
                    y, erased, valid, m, rtol)
        t2 = time.perf_counter()

        _, u, _, _ = self._solver(keep)
        clean = bool(np.array_equal(keep, ~miss))
        passes = 1 if clean and g0 is not None else 2
        info["fused"] = g0 is not None
        self._fuse = clean
        if clean:  # the no-error weights (all ones when nobody is missing)
            grad = g0 if g0 is not None else self._pass(M, None, keep, u)[1]
        else:
            # excluded rows are safe to multiply by 0 unless their projection was non-finite
            safe = not unreadable[~keep].any()
            grad = self._combine(M, u, keep, safe)
        grad = grad.reshape(out_shape)
        t3 = time.perf_counter()

        flagged = nonfinite | errors
        info.update(
            suspects=tuple(int(i) for i in np.flatnonzero(suspects)),
            confirmed=tuple(int(i) for i in np.flatnonzero(confirmed)),
            residuals=rel, locator="none" if m > 2 * s else ("prony" if iterations else "clean"), hankel=locator,
            iterations=iterations, kept=int(keep.sum()), passes=passes,
            # rounding of the sum grows like eps · Σ|u_i| |m_i|: adjacent erasures make it large
            amplification=float(np.abs(u).sum() / n),
            project_ms=(t1 - t0) * 1e3, locate_ms=(t2 - t1) * 1e3, combine_ms=(t3 - t2) * 1e3,
        )
        return DecodeResult.finish(kind.wrap(grad), np.flatnonzero(flagged), info, t0=t0, erasures=m,
                                   nonfinite=int(nonfinite.sum()), reason=reason)

    def _correct(self, y: np.ndarray, erased: np.ndarray, valid: np.ndarray, m: int,
                 rtol: float) -> tuple:
        """Locate, verify, deflate until the kept rows are consistent or 2e + m <= 2s is exhausted.

        Returns ``(keep, rel, errors, suspects, confirmed, locator, iterations, reason)``.
        Deflation erases, before locating again, the suspects whose residual dwarfs what is left on
        the fitted rows, or else the most confident suspect (smallest |Λ|): Prony on clustered
        locators (adjacent Byzantine workers) is ill-conditioned, and each erased true error leaves
        a smaller, better-conditioned problem. A confirmed row found consistent at the end is
        unflagged again.
        """
        n, s = self.n, self.s
        budget = (2 * s - m) // 2
        cur = erased.copy()
        confirmed = np.zeros(n, dtype=bool)
        it = 0
        while True:
            it += 1
            nu = (2 * s - int(cur.sum())) // 2
            suspects, locator = self._locate(y, cur, nu)
            U = ~cur & ~suspects
            rel = self._residuals(y, U, valid)
            bad_fit = U & (rel > rtol)
            if not bad_fit.any():
                errors = (confirmed | suspects) & (rel > rtol)
                ne = int(errors.sum())
                if ne <= budget:
                    return U, rel, errors, suspects, confirmed, locator, it, None
                reason = f"flagged {ne} errors > budget floor((2s - m)/2) = {budget}: beyond 2e + m <= 2s"
                return U, rel, errors, suspects, confirmed, locator, it, reason
            level = rel[U].max()
            newly = suspects & (rel > _DEFLATE_GAP * level)
            if not newly.any() and locator["ranked"].size:
                newly[locator["ranked"][0]] = True
            if not newly.any() or int(cur.sum() + newly.sum()) > 2 * s:
                errors = (confirmed | suspects) & (rel > rtol)
                reason = (f"no codeword within 2e + m <= 2s fits the messages (largest residual "
                          f"{level:.3g} > rtol {rtol:g} on kept rows)")
                return U, rel, errors, suspects, confirmed, locator, it, reason
            confirmed |= newly
            cur |= newly
