"""Real-number error correction by L1 minimisation (Candès & Tao, "Decoding by linear programming",
IEEE T-IT 2005), as used by Data, Song and Diggavi ("Data encoding for Byzantine-resilient
distributed optimization", IEEE T-IT 2021) to locate Byzantine workers.

Setting. A real code of length n is given by a locator (parity-check) matrix ``F`` of shape
(r, n), r = 2t, and a generator ``G`` of shape (n, K) with ``F G = 0``: honest messages form the
(n, p) matrix ``R = G Z`` for some information ``Z`` (K, p). Byzantine workers add an error matrix
``E`` whose non-zero rows are the corrupted workers, so ``F (R + E) = F E``. If every 2t columns of F
are linearly independent, any error on at most t rows is determined by its syndrome.

Locate, then solve (never one LP per coordinate):

1. *project*: draw a private random ``A = [α β]`` (p, 2) after the replies arrived (never sent to a
   worker), and compute ``Y = R A`` (n, 2) in one pass. ``E α`` is supported exactly on the corrupted
   rows with probability 1 for any ``E`` chosen without knowing α; an adversary who knew α could send
   an error with ``E α = 0`` that no syndrome reveals. Rows with NaN/Inf (or whose projection
   overflows float64) are treated as erasures and flagged.
2. *locate*: find the sparsest ``e`` (n,) with ``F e = F y`` (``y = Y[:, 0]``), erasure positions
   free. First by L1, ``min Σ_{j not erased} |e_j|  s.t.  F e = syndrome`` (scipy ``linprog`` with
   HiGHS, or cvxpy/CLARABEL), accepted only with a certificate (at most ``t_eff`` non-zeros above a
   relative tolerance, and the polished sparse solution explains the syndrome). L1 recovery is weak
   at small n, so on failure fall back to an exhaustive search over supports of size <= t_eff (when
   ``C(n, t_eff)`` is small), then to a Prony/Hankel locator when the locator has power-sum structure
   (Vandermonde, or the cosine/sine locator below).
3. *verify*: with the independent projection ``β``, fit ``G[H] z = (Rβ)[H]`` on the candidate honest
   rows H and require every row of H to be explained to a relative tolerance; a located row whose
   residual is also tiny is un-flagged (it sent the honest value).
4. *solve*: one pseudo-inverse of the small ``G[H]`` (|H|, K) and one matrix product with the honest
   rows, for all p coordinates at once: ``Z = pinv(G[H]) R[H]``. Cost O(n p K) with BLAS.

Erasures (``missing=``) are known positions: e errors and m erasures are corrected when
``2 e + m <= 2t`` (the code distance is 2t + 1).
"""

from __future__ import annotations

import itertools
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np

from codedbft._arrays import as_numpy, missing_mask
from codedbft.decoders.base import DecodeResult

Solver = Literal["highs", "cvxpy"]
_CHUNK = 1 << 15  # columns per block when a product must not materialise an (n, p) float64 copy


# ---------------------------------------------------------------------------------------------------
# Locator matrices
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Locator:
    """A (2t, n) locator matrix, with its power-sum structure when it has one.

    Attributes:
        F: (2t, n) float64 locator (parity-check) matrix; every 2t columns are independent.
        power_map: (2t, 2t) complex matrix T, or None. When given, for every e (n,),
            ``T @ F @ e = [Σ_j c_j e_j z_j^p]_{p=0..2t-1}`` for some non-zero weights c_j: the syndrome
            holds 2t consecutive power sums, so the Prony/Hankel locator applies.
        nodes: (n,) complex nodes z_j (distinct) of the power-sum structure, or None.
        name: a short label (``"cosine"``, ``"chebyshev"``, ``"vandermonde"``).
    """

    F: np.ndarray
    power_map: np.ndarray | None = None
    nodes: np.ndarray | None = None
    name: str = "custom"


#: a located row is judged an error when its message differs from the recovered codeword by more
#: than this many times rtol (see L1Decoder._solve)
JUDGE_MARGIN = 100.0


def cosine_locator(n: int, t: int) -> Locator:
    """Cosine/sine locator with half-integer frequencies (the real form of a DFT parity check).

    With θ_j = 2πj/n, rows ``cos((q+½) θ_j)`` and ``sin((q+½) θ_j)`` for q = 0..t−1, scaled by
    sqrt(2/n). For 2t <= n − 1 the rows are orthonormal (cond(F) = 1), and since
    ``e^{±i(q+½)θ} = e^{-i(t-½)θ} z^p`` with z = e^{iθ} and p ranging over 0..2t−1, the rows span
    the same space as 2t consecutive powers of distinct nodes on the unit circle: every 2t columns
    are independent and Prony applies. This is the best-conditioned locator measured (docs/codes.md §4).
    """
    _check_nt(n, t)
    theta = 2.0 * np.pi * np.arange(n) / n
    c = math.sqrt(2.0 / n)
    freq = np.arange(t) + 0.5
    F = c * np.vstack([np.cos(np.outer(freq, theta)), np.sin(np.outer(freq, theta))])
    T = np.zeros((2 * t, 2 * t), dtype=np.complex128)
    for q in range(t):
        # S_{t+q} = Σ e_j e^{i(q+½)θ_j}, S_{t-1-q} = its conjugate, with weights u_j = e_j e^{-i(t-½)θ_j}
        T[t + q, q], T[t + q, t + q] = 1.0 / c, 1j / c
        T[t - 1 - q, q], T[t - 1 - q, t + q] = 1.0 / c, -1j / c
    return Locator(F=F, power_map=T, nodes=np.exp(1j * theta), name="cosine")


def vandermonde_locator(n: int, t: int, nodes: Literal["integer", "chebyshev"] = "integer") -> Locator:
    """Real Vandermonde locator ``F[q, j] = x_j^q`` (q = 0..2t−1) on integer nodes x_j = j + 1, or on
    Chebyshev nodes x_j = cos(π(2j+1)/(2n)). Kept as the baseline the benchmark compares against:
    integer nodes are ill-conditioned from n ≈ 15, Chebyshev nodes to about n ≈ 30 (docs/codes.md §4)."""
    _check_nt(n, t)
    if nodes == "integer":
        x = np.arange(1, n + 1, dtype=np.float64)
    elif nodes == "chebyshev":
        x = np.cos(np.pi * (2 * np.arange(n) + 1) / (2 * n))
    else:
        raise ValueError(f"nodes must be 'integer' or 'chebyshev', got {nodes!r}")
    F = np.vander(x, 2 * t, increasing=True).T.copy()
    return Locator(F=F, power_map=np.eye(2 * t, dtype=np.complex128), nodes=x.astype(np.complex128), name=nodes)


def make_locator(kind: str, n: int, t: int) -> Locator:
    """Locator by name: ``"cosine"`` (default choice), ``"chebyshev"`` or ``"vandermonde"`` (integer)."""
    if kind == "cosine":
        return cosine_locator(n, t)
    if kind in ("chebyshev", "vandermonde", "integer"):
        return vandermonde_locator(n, t, "chebyshev" if kind == "chebyshev" else "integer")
    raise ValueError(f"locator must be 'cosine', 'chebyshev' or 'vandermonde', got {kind!r}")


def _check_nt(n: int, t: int) -> None:
    if t < 0:
        raise ValueError(f"t must be >= 0, got t={t}")
    if n < 2 * t + 1:
        raise ValueError(f"need n >= 2t+1 (t <= floor((n-1)/2)), got n={n}, t={t}")


def null_space(F: np.ndarray) -> np.ndarray:
    """Orthonormal basis (n, n − rank F) of the null space of F, by SVD in float64."""
    F = np.asarray(F, dtype=np.float64)
    n = F.shape[1]
    if F.shape[0] == 0:
        return np.eye(n)
    _, sv, vt = np.linalg.svd(F, full_matrices=True)
    rank = int((sv > sv[0] * max(F.shape) * np.finfo(float).eps).sum()) if sv.size else 0
    return vt[rank:].T.copy()


# ---------------------------------------------------------------------------------------------------
# Sparse-error locators on one projected vector
# ---------------------------------------------------------------------------------------------------
@dataclass
class Location:
    """Result of locating the sparse error of one projected vector.

    Attributes:
        support: sorted ids of rows with a non-zero error (erasures excluded).
        errors: (n,) float64 error estimate (erasure positions hold the fitted values).
        method: which locator succeeded: ``"clean"`` (syndrome at noise level), ``"l1"``,
            ``"exhaustive"``, ``"prony"``, or ``"none"`` when all failed.
        info: LP status, residuals, the locators tried.
    """

    support: tuple[int, ...]
    errors: np.ndarray
    method: str
    info: dict[str, Any] = field(default_factory=dict)


class L1Decoder:
    """Generic real-number error-correcting decoder for the code ``{G z}`` with locator ``F``.

    Args:
        F: (r, n) locator / parity-check matrix, or a :class:`Locator` (enables Prony). r = 2t.
        G: (n, K) generator with ``F G = 0`` and full column rank; default: an orthonormal basis of
            the null space of F.
        t: errors to correct; default r // 2.
        out: None to return the information ``Z`` (K, p) in ``res.gradient``; a (K,) vector ``c`` to
            return ``c @ Z`` (p,) (``out = ones(K)`` gives the sum of partition gradients for a
            gradient code with ``B = G``); or a (q, K) matrix.
        solver: ``"highs"`` (scipy ``linprog(method="highs")``, default) or ``"cvxpy"`` (CLARABEL).
        rtol: relative tolerance of the verification: a row is honest when its β-residual is at
            most ``rtol · ‖(Rβ)[H]‖``.
        exhaustive_limit: largest number of candidate supports the exhaustive fallback enumerates.
        rng: seed or ``np.random.Generator`` for the private projections. Default: fresh OS entropy.
            A seed makes the projections predictable; only tests should pass one.
    """

    def __init__(
        self,
        F: np.ndarray | Locator,
        G: np.ndarray | None = None,
        *,
        t: int | None = None,
        out: np.ndarray | None = None,
        solver: Solver = "highs",
        rtol: float = 1e-9,
        exhaustive_limit: int = 20_000,
        rng: int | np.random.Generator | None = None,
    ):
        loc = F if isinstance(F, Locator) else Locator(F=np.asarray(F, dtype=np.float64))
        self.F = np.ascontiguousarray(loc.F, dtype=np.float64)
        if self.F.ndim != 2:
            raise ValueError(f"F must be a 2-D (r, n) matrix, got shape {self.F.shape}")
        self.power_map, self.nodes = loc.power_map, loc.nodes
        r, n = self.F.shape
        self.n = n
        self.t = r // 2 if t is None else int(t)
        if self.t < 0 or 2 * self.t > r:
            raise ValueError(f"t must satisfy 0 <= 2t <= r = {r} (rows of F), got t={self.t}")
        if n < 2 * self.t + 1:
            raise ValueError(f"need n >= 2t+1, got n={n}, t={self.t}")
        self.G = null_space(self.F) if G is None else np.ascontiguousarray(G, dtype=np.float64)
        if self.G.ndim != 2 or self.G.shape[0] != n:
            raise ValueError(f"G must have shape (n={n}, K), got {self.G.shape}")
        scale = max(np.linalg.norm(self.F) * np.linalg.norm(self.G), 1e-300)
        if np.linalg.norm(self.F @ self.G) > 1e-8 * scale:
            raise ValueError("F @ G must be 0: G must span (part of) the null space of F")
        if np.linalg.matrix_rank(self.G) < self.G.shape[1]:
            raise ValueError("G must have full column rank")
        self.K = self.G.shape[1]
        if out is not None:
            out = np.asarray(out, dtype=np.float64)
            if out.shape[-1] != self.K or out.ndim > 2:
                raise ValueError(f"out must have shape (K={self.K},) or (q, K), got {out.shape}")
        self.out = out
        if solver not in ("highs", "cvxpy"):
            raise ValueError(f"solver must be 'highs' or 'cvxpy', got {solver!r}")
        self.solver = solver
        if not rtol > 0:
            raise ValueError(f"rtol must be > 0, got {rtol}")
        self.rtol = float(rtol)
        self.exhaustive_limit = int(exhaustive_limit)
        self._rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(
            secrets.randbits(128) if rng is None else rng
        )

    # ------------------------------------------------------------------ locating on one vector
    def locate(self, y: np.ndarray, erased: np.ndarray | None = None,
               methods: Sequence[str] = ("l1", "exhaustive", "prony")) -> Location:
        """Find the sparsest error explaining the syndrome ``F y`` of the projected messages ``y`` (n,).

        Rows in ``erased`` (bool (n,)) are unknown: their values are ignored and their errors are free
        (not counted). Up to ``t_eff = floor((2t − #erased) / 2)`` errors are located. Tries ``methods``
        in order: ``"l1"`` (certificate checked), ``"exhaustive"`` (when the number of supports
        ``Σ_v C(n', v)`` is at most ``exhaustive_limit``), ``"prony"`` (power-sum locators only).
        """
        return self._locate(np.asarray(y, dtype=np.float64), erased, list(methods))

    def _locate(self, y: np.ndarray, erased: np.ndarray | None, methods: list[str] | None,
                skip: set[tuple[int, ...]] | frozenset = frozenset(), allow_clean: bool = True,
                rtol: float | None = None) -> Location:
        rtol = self.rtol if rtol is None else rtol
        n = self.n
        er = np.zeros(n, dtype=bool) if erased is None else np.asarray(erased, dtype=bool)
        y = np.where(er, 0.0, y)
        # Locating is scale-invariant; normalising keeps squares of huge (1e200) errors finite.
        ymax = float(np.abs(y).max()) if y.size else 0.0
        if ymax > 0 and np.isfinite(ymax):
            loc = self._locate(y / ymax, er, methods, skip, allow_clean, rtol) if ymax != 1.0 else None
            if loc is not None:
                loc.errors *= ymax
                return loc
        ne = np.flatnonzero(~er)
        t_eff = max((2 * self.t - int(er.sum())) // 2, 0)
        s = self.F @ y
        ynorm = float(np.linalg.norm(y))
        floor = 0.1 * rtol * ynorm  # below this the syndrome is rounding noise (harmless errors)
        info: dict[str, Any] = {"syndrome_norm": float(np.linalg.norm(s)), "t_eff": t_eff, "tried": []}
        Fe, Fn = self.F[:, er], self.F[:, ne]
        if t_eff == 0 or (allow_clean and float(np.linalg.norm(s)) <= floor):
            e, res = self._fit_support(s, er, ())
            return Location((), e, "clean", {**info, "residual": res})
        tol = 1e-6 * float(np.linalg.norm(s)) + floor
        if methods is None:
            methods = ["l1", "exhaustive", "prony"]
        for m in methods:
            info["tried"].append(m)
            cand: list[tuple[int, ...]] = []
            if m == "l1":
                sup, st = self._l1_support(s, Fn, Fe, ne, t_eff)
                info["lp_status"] = st
                if sup is not None:
                    cand = [sup]
            elif m == "exhaustive":
                total = sum(math.comb(len(ne), v) for v in range(1, t_eff + 1))
                if total > self.exhaustive_limit:
                    info["exhaustive"] = f"skipped: {total} supports > exhaustive_limit={self.exhaustive_limit}"
                    continue
                cand = self._exhaustive(s, er, ne, t_eff, tol, skip)
            elif m == "prony":
                if self.power_map is None:
                    info["prony"] = "skipped: locator has no power-sum structure"
                    continue
                cand = self._prony(s, er, ne, t_eff)
            for sup in cand:
                if sup in skip:
                    continue
                e, res = self._fit_support(s, er, sup)
                info[f"{m}_residual"] = res
                if res <= tol:
                    return Location(sup, e, m, {**info, "residual": res})
        return Location((), np.zeros(n), "none", info)

    def _fit_support(self, s: np.ndarray, er: np.ndarray, sup: tuple[int, ...]) -> tuple[np.ndarray, float]:
        """Least-squares error values on erasures ∪ support; returns (e, ‖F e − s‖)."""
        cols = np.concatenate([np.flatnonzero(er), np.asarray(sup, dtype=int)]).astype(int)
        e = np.zeros(self.n)
        if cols.size:
            sol, *_ = np.linalg.lstsq(self.F[:, cols], s, rcond=None)
            e[cols] = sol
        return e, float(np.linalg.norm(self.F @ e - s))

    def _l1_support(self, s, Fn, Fe, ne, t_eff) -> tuple[tuple[int, ...] | None, str]:
        """Solve min ‖e_ne‖₁ s.t. Fn e_ne + Fe e_er = s; return the support if it has <= t_eff entries."""
        # Equilibrate rows so the solver's absolute tolerances mean the same thing for every locator.
        rs = np.linalg.norm(np.hstack([Fn, Fe]), axis=1)
        rs[rs == 0] = 1.0
        sn = float(np.linalg.norm(s / rs)) or 1.0
        A_n, A_e, b = Fn / rs[:, None], Fe / rs[:, None], s / rs / sn
        try:
            if self.solver == "highs":
                x, status = _lp_highs(A_n, A_e, b)
            else:
                x, status = _lp_cvxpy(A_n, A_e, b)
        except Exception as exc:  # a solver crash must not stop decoding: fall back
            return None, f"error: {type(exc).__name__}: {exc}"
        if x is None:
            return None, status
        big = np.abs(x) > 1e-6 * max(float(np.abs(x).max()), 1e-300)
        if int(big.sum()) > t_eff:
            return None, f"{status}; certificate failed: {int(big.sum())} non-zeros > t={t_eff}"
        return tuple(int(j) for j in ne[big]), status

    def _exhaustive(self, s, er, ne, t_eff, tol, skip) -> list[tuple[int, ...]]:
        """All supports of size 1..t_eff (smallest first); the first size with a fit under tol wins."""
        if er.any():
            q, _ = np.linalg.qr(self.F[:, er])
            P = np.eye(self.F.shape[0]) - q @ q.T  # remove what the erasures can explain
        else:
            P = np.eye(self.F.shape[0])
        sp, Fp = P @ s, P @ self.F[:, ne]
        for v in range(1, t_eff + 1):
            combos = np.array(list(itertools.combinations(range(len(ne)), v)), dtype=np.intp)
            best, best_res = None, np.inf
            for c0 in range(0, len(combos), 4096):
                cb = combos[c0:c0 + 4096]
                A = np.moveaxis(Fp[:, cb], 1, 0)  # (N, r, v)
                Q, _ = np.linalg.qr(A)
                proj = np.einsum("nrv,nv->nr", Q, np.einsum("nrv,r->nv", Q, sp))
                res = np.linalg.norm(sp[None, :] - proj, axis=1)
                i = int(np.argmin(res))
                if res[i] < best_res:
                    best, best_res = cb[i], float(res[i])
            if best is not None and best_res <= tol:
                sup = tuple(int(ne[j]) for j in best)
                if sup not in skip:
                    return [sup]
        return []

    def _prony(self, s, er, ne, t_eff) -> list[tuple[int, ...]]:
        """Prony/Hankel: error-locator polynomial from the power sums, erasures removed by Forney."""
        S = self.power_map @ s.astype(np.complex128)
        z = self.nodes
        sigma = np.array([1.0 + 0j])
        for j in np.flatnonzero(er):  # σ(x) = Π (x − z_j): Σ_l σ_l S_{p+l} kills erased positions
            sigma = np.convolve(sigma, np.array([-z[j], 1.0]))
        L = len(S) - (len(sigma) - 1)
        Sf = np.array([np.dot(sigma, S[p:p + len(sigma)]) for p in range(L)])
        cands = []
        for v in range(1, min(t_eff, L // 2) + 1):
            H = np.array([Sf[a:a + v + 1] for a in range(L - v)])  # (L − v, v + 1)
            _, _, vh = np.linalg.svd(H)
            lam = vh[-1].conj()
            vals = np.abs(np.polyval(lam[::-1], z[ne]))
            order = np.argsort(vals, kind="stable")[:v]
            cands.append(tuple(sorted(int(ne[j]) for j in order)))
        return cands

    # ------------------------------------------------------------------ full decode
    def decode(self, messages: Any, missing: Any = None) -> DecodeResult:
        """Locate the Byzantine rows of ``messages`` (n, p) and recover the information from the rest.

        Returns a :class:`DecodeResult` whose ``gradient`` is ``Z`` (K, p), or ``out @ Z`` when ``out``
        was given, float64, numpy or torch like the input; ``flagged`` lists the rows that differ from
        the recovered codeword or hold NaN/Inf; ``exact`` is True when the located explanation was
        verified and ``2·errors + erasures <= 2t``.

        ``info``: the common keys of :mod:`codedbft.decoders.base` (``decode_ms``, ``erasures`` =
        missing + non-finite rows, ``nonfinite``, ``reason``); the stages ``project_ms`` (the private
        projections), ``locate_ms`` (locating, verification, peeling) and ``solve_ms`` (pseudo-inverse
        and the product with the honest rows); and ``missing``, ``erasure_ids``, ``nonfinite_ids``,
        ``locator`` (the method whose support was kept, ``" (unverified)"`` / ``" after peeling"``
        appended when so), ``attempts`` (the per-attempt :attr:`Location.info` dicts), ``lp_status``,
        ``verify_residual``, ``errors_located`` (located rows that differ from the codeword) and
        ``cond_honest`` (condition number of ``G[H]``).
        """
        t0 = time.perf_counter()
        R, kind = as_numpy(messages)
        rtol = self.effective_rtol(R.dtype)
        squeeze = R.ndim == 1
        if squeeze:
            R = R[:, None]
        if R.ndim != 2 or R.shape[0] != self.n:
            raise ValueError(f"messages must have shape (n={self.n}, p), got {R.shape}")
        miss = missing_mask(missing, self.n)
        p = R.shape[1]
        # Private projections, drawn only now that the replies are in.
        A = self._rng.random((p, 2))
        A -= 0.5
        Y = _rows_times(R, A)  # (n, 2) float64, one pass
        bad = ~np.isfinite(Y).all(axis=1) & ~miss
        er = miss | bad
        t1 = time.perf_counter()
        info: dict[str, Any] = {"missing": int(miss.sum()), "erasure_ids": tuple(int(i) for i in np.flatnonzero(er)),
                                "nonfinite_ids": tuple(int(i) for i in np.flatnonzero(bad)), "attempts": []}
        n_erasures, n_bad = int(er.sum()), int(bad.sum())
        loc, zb, verified, v_res, Yn, er, peeled = self._locate_peeling(Y, er, rtol, info["attempts"])
        ne = np.flatnonzero(~er)
        if len(ne) < self.K:
            Z = np.full((self.K if self.out is None else (self.out.shape[0] if self.out.ndim == 2 else 1), p), np.nan)
            if self.out is not None and self.out.ndim == 1:
                Z = Z[0]
            flagged = tuple(sorted(set(np.flatnonzero(bad).tolist()) | set(peeled)))
            info.update(locator="none", project_ms=(t1 - t0) * 1e3, locate_ms=(time.perf_counter() - t1) * 1e3,
                        solve_ms=0.0)
            return self._result(Z, kind, squeeze, flagged, info, t0, erasures=n_erasures, nonfinite=n_bad,
                                reason=f"only {len(ne)} usable rows < K={self.K}: cannot decode")
        if loc is None:  # nothing located at all: best effort on every usable row
            loc = Location((), np.zeros(self.n), "none", {})
            _, v_res, _, zb = self._verify(Yn[:, 1], ne, rtol)
        H = np.setdiff1d(ne, loc.support)
        t2 = time.perf_counter()
        info["locator"] = (loc.method if verified else f"{loc.method} (unverified)") + (" after peeling" if peeled else "")
        info["lp_status"] = next((d["lp_status"] for d in info["attempts"] if "lp_status" in d), None)
        info["verify_residual"] = v_res
        Z, errs = self._solve(R, H, loc, zb is not None, all_finite=not (miss | bad).any(), rtol=rtol)
        errs += peeled
        flagged = tuple(sorted(set(errs) | set(np.flatnonzero(bad).tolist())))
        t3 = time.perf_counter()
        info.update(errors_located=sorted(errs), project_ms=(t1 - t0) * 1e3, locate_ms=(t2 - t1) * 1e3,
                    solve_ms=(t3 - t2) * 1e3, cond_honest=float(np.linalg.cond(self.G[H])))
        return self._result(Z, kind, squeeze, flagged, info, t0, erasures=n_erasures, nonfinite=n_bad,
                            reason=self._reason(verified, loc, len(errs), n_erasures))

    def _locate_peeling(self, Y: np.ndarray, er: np.ndarray, rtol: float, attempts: list) -> tuple:
        """Locate on the first projection, verify on the second, peeling located rows between passes.

        Returns ``(loc, zb, verified, v_res, Yn, er, peeled)``: the kept :class:`Location` (None when
        nothing was located), the β-fit, whether it verified, its worst residual, the normalised
        projections of the last pass, the erasures then (peeled rows included) and the peeled rows.
        Every locate attempt's info is appended to ``attempts``.
        """
        peeled: list[int] = []  # rows located as errors in an earlier pass, now treated as erasures
        loc, zb, verified, v_res, Yn = None, None, False, np.inf, Y
        for _ in range(self.t + 1):
            ne = np.flatnonzero(~er)
            if len(ne) < self.K:
                break
            # Unit scale on the usable rows, recomputed after each peel: an error of 1e300 must not push
            # the honest rows into denormals, and squares must not overflow.
            Yn = np.where(er[:, None], 0.0, Y)
            Yn /= np.maximum(np.abs(Yn).max(axis=0), 1e-300)
            tried: set[tuple[int, ...]] = set()
            first = None
            for i, method in enumerate(("l1", "exhaustive", "prony")):
                cand = self._locate(Yn[:, 0], er, [method], skip=tried, allow_clean=i == 0, rtol=rtol)
                attempts.append(cand.info)
                if cand.method == "none":
                    continue
                tried.add(cand.support)
                first = first or cand
                ok, worst, _, z = self._verify(Yn[:, 1], np.setdiff1d(ne, cand.support), rtol)
                if ok:
                    loc, zb, v_res, verified = cand, z, worst, True
                    break
                if loc is None:
                    loc, zb, v_res = cand, z, worst
            if verified or first is None or not first.support:
                break
            # Errors of very different sizes: the largest hide the others below the rounding of one
            # projection. Peel the located rows (erasures now) and locate again among the rest.
            peeled += list(first.support)
            er = er.copy()
            er[list(first.support)] = True
            loc = None
        return loc, zb, verified, v_res, Yn, er, peeled

    def _solve(self, R: np.ndarray, H: np.ndarray, loc: Location, fitted: bool, *, all_finite: bool,
               rtol: float) -> tuple[np.ndarray, list[int]]:
        """``(Z, errs)``: the output from the honest rows H, and the located rows that are errors.

        A located row whose whole message equals the recovered codeword sent the honest value: not
        an error. The codeword rows ``G[sup] D R[H]`` ride in the same pass over R as the output (one
        projection is not enough to judge: a small error can be nearly orthogonal to it). Without a
        β-fit (``fitted`` False) every located row counts as an error.
        """
        D = np.linalg.pinv(self.G[H])  # (K, |H|)
        W = D if self.out is None else self.out @ D
        W2 = W[None, :] if W.ndim == 1 else W
        sup = np.asarray(loc.support, dtype=np.intp) if fitted else np.zeros(0, dtype=np.intp)
        both = _combine_rows(np.vstack([W2, self.G[sup] @ D]), R, H, all_finite=all_finite)
        Z = both[0] if W.ndim == 1 else both[: W2.shape[0]]
        if not sup.size:
            return Z, [] if fitted else list(loc.support)
        C = both[W2.shape[0]:]
        Rs = np.asarray(R[sup], dtype=np.float64)
        # at each row's own scale: the squares of a 1e200 liar must not overflow to Inf <= Inf
        sc = np.maximum(np.abs(Rs).max(axis=1, initial=0.0), np.abs(C).max(axis=1, initial=0.0))
        sc = np.where(sc > 0, sc, 1.0)[:, None]
        Rs, C = Rs / sc, C / sc
        diff = np.linalg.norm(Rs - C, axis=1)
        # The codeword C comes from the rows kept, which the verification fitted only to rtol: liars
        # whose errors sit at that level stay in H and shift C by about as much (measured: 2.5e-9 at
        # rtol 1e-9, m = 11, t = 3), so judging at rtol itself accused an honest located row. A row
        # is an error when it differs by JUDGE_MARGIN x rtol; below, its lie (if any) is rounding,
        # and it is left out of the output either way.
        tol = JUDGE_MARGIN * rtol * np.maximum(np.linalg.norm(C, axis=1), np.linalg.norm(Rs, axis=1))
        return Z, [int(j) for j, dj, tj in zip(sup, diff, tol) if not dj <= tj]

    def _reason(self, verified: bool, loc: Location, errors: int, erasures: int) -> str | None:
        """Why the decode is not exact (None when it is): unverified, or beyond 2e + m <= 2t."""
        if not verified:
            return (f"no error support located ({loc.method!r} last) passed the independent check: "
                    f"likely more faults than 2e + m <= 2t = {2 * self.t}")
        if 2 * errors + erasures > 2 * self.t:
            return f"{errors} errors and {erasures} erasures: 2e + m = {2 * errors + erasures} > 2t = {2 * self.t}"
        return None

    def effective_rtol(self, dtype: Any) -> float:
        """Verification tolerance for messages of ``dtype``.

        Messages rounded to a narrower float than float64 are not exactly codewords: an honest
        float32 row misses the code's column space by about its own rounding (~1e-7 relative), which
        a float64 tolerance of 1e-9 would call an error. The tolerance is therefore never below
        ``1000 · eps(dtype)`` (1.2e-4 for float32): errors smaller than that relative to the
        messages are indistinguishable from the workers' own rounding and are not flagged.
        """
        dt = np.dtype(dtype)
        if not np.issubdtype(dt, np.inexact):
            return self.rtol
        return max(self.rtol, 1000.0 * float(np.finfo(dt).eps)) if np.finfo(dt).bits < 64 else self.rtol

    def _verify(self, yb: np.ndarray, H: np.ndarray, rtol: float | None = None) -> tuple[bool, float, float, np.ndarray | None]:
        """beta-check: fit G[H] z = yb[H]; every row of H must be explained to rtol * ||yb[H]||.

        Returns (ok, worst row residual, ||yb[H]||, z)."""
        if len(H) < self.K:
            return False, np.inf, 0.0, None
        a = float(np.abs(yb[H]).max())
        a = a if a > 0 else 1.0  # work at unit scale: squares of 1e-200 would underflow to 0
        zb, *_ = np.linalg.lstsq(self.G[H], yb[H] / a, rcond=None)
        resid = np.abs(yb[H] / a - self.G[H] @ zb)
        scale = float(np.linalg.norm(yb[H] / a))
        worst = float(resid.max()) if resid.size else 0.0
        rtol = self.rtol if rtol is None else rtol
        return worst <= rtol * max(scale, 1e-300), worst * a, scale * a, zb * a

    @staticmethod
    def _result(Z, kind, squeeze, flagged, info, t0, *, erasures: int, nonfinite: int,
                reason: str | None) -> DecodeResult:
        if squeeze:
            Z = Z[..., 0]
        return DecodeResult.finish(kind.wrap(Z), flagged, info, t0=t0, erasures=erasures, nonfinite=nonfinite,
                                   reason=reason)


# ---------------------------------------------------------------------------------------------------
# LP back ends
# ---------------------------------------------------------------------------------------------------
def _lp_highs(A_n: np.ndarray, A_e: np.ndarray, b: np.ndarray) -> tuple[np.ndarray | None, str]:
    """min 1ᵀ(u + v) s.t. A_n (u − v) + A_e f = b, u, v >= 0, f FREE (explicit bounds: linprog's
    default (0, None) would silently force the erasure values, and any unsplit e, to be >= 0)."""
    from scipy.optimize import linprog

    nn, ne = A_n.shape[1], A_e.shape[1]
    c = np.concatenate([np.ones(2 * nn), np.zeros(ne)])
    A_eq = np.hstack([A_n, -A_n, A_e])
    bounds = [(0.0, None)] * (2 * nn) + [(None, None)] * ne
    res = linprog(c, A_eq=A_eq, b_eq=b, bounds=bounds, method="highs")
    status = f"highs: {res.status} ({res.message.strip()[:60]})"
    if res.status != 0 or res.x is None:
        return None, status
    return res.x[:nn] - res.x[nn:2 * nn], status


def _lp_cvxpy(A_n: np.ndarray, A_e: np.ndarray, b: np.ndarray) -> tuple[np.ndarray | None, str]:
    """The same LP through cvxpy with CLARABEL (interior point; ~1e-8 accuracy, slower than HiGHS)."""
    import cvxpy as cp

    e = cp.Variable(A_n.shape[1])
    cons = [A_n @ e + A_e @ cp.Variable(A_e.shape[1]) == b] if A_e.shape[1] else [A_n @ e == b]
    prob = cp.Problem(cp.Minimize(cp.norm1(e)), cons)
    prob.solve(solver=cp.CLARABEL)
    status = f"cvxpy/CLARABEL: {prob.status}"
    if prob.status not in ("optimal", "optimal_inaccurate") or e.value is None:
        return None, status
    return np.asarray(e.value, dtype=np.float64), status


# ---------------------------------------------------------------------------------------------------
# Products with the (n, p) messages, without (n, p) float64 copies
# ---------------------------------------------------------------------------------------------------
def _rows_times(R: np.ndarray, A: np.ndarray) -> np.ndarray:
    """``R @ A`` in float64 for R of any float dtype; non-float64 R is converted in column blocks."""
    with np.errstate(over="ignore", invalid="ignore"):
        if R.dtype == np.float64:
            return R @ A
        out = np.zeros((R.shape[0], A.shape[1]))
        for c in range(0, R.shape[1], _CHUNK):
            out += R[:, c:c + _CHUNK].astype(np.float64) @ A[c:c + _CHUNK]
        return out


def _combine_rows(W: np.ndarray, R: np.ndarray, H: np.ndarray, all_finite: bool) -> np.ndarray:
    """``W @ R[H]`` (W: (q, |H|) or (|H|,)) in float64 without copying R when avoidable.

    When every row is finite and R is float64, scatter W into zero columns of an (q, n) matrix and
    multiply the whole R (a 0 weight on a finite row contributes exactly 0): no copy of R. Otherwise
    (non-finite rows, where 0 · Inf = NaN, or float32 input) gather the honest rows per column block.
    """
    vec = W.ndim == 1
    W2 = W[None, :] if vec else W
    if all_finite and R.dtype == np.float64:
        Wf = np.zeros((W2.shape[0], R.shape[0]))
        Wf[:, H] = W2
        out = Wf @ R
    else:
        out = np.empty((W2.shape[0], R.shape[1]))
        for c in range(0, R.shape[1], _CHUNK):
            out[:, c:c + _CHUNK] = W2 @ R[H, c:c + _CHUNK].astype(np.float64, copy=False)
    return out[0] if vec else out
