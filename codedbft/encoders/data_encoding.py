"""Data encoding for least squares (Data, Song & Diggavi, "Data encoding for Byzantine-resilient
distributed optimization", IEEE T-IT 2021), on m workers of which up to t are Byzantine.

Only for models whose gradient is linear in the data: least squares, where the gradient of
``½‖Xw − y‖²`` is ``g = Xᵀ(Xw − y)``. A network's gradient is not a linear function of its data
rows, so encoded rows would give meaningless gradients: ``DataEncodingCode(..., loss=...)`` raises
ValueError for any loss but ``"least_squares"``; use a gradient code (``draco-*``, ``detox``,
``byzshield``, ``rrr``) there.

Code. A locator ``F`` (2t, m) (default: cosine/sine rows with half-integer frequencies, orthonormal,
see :func:`~codedbft.decoders.l1.cosine_locator`) and an orthonormal basis ``G`` (m, K) of its null
space, K = m − 2t. Any t-row error is located from its syndrome, and any m − t rows of G have rank K.

Encoding (two matrix-vector products, as in the paper: the gradient is quadratic in the data X, so
no single round on encoded X yields it; it is linear in (XᵀX, Xᵀy), which :meth:`encode_data` also
encodes for a one-round full-batch path, see :meth:`worker_gradient`). Pad X (n, d) with zero rows and columns to (K·n_b, K·d_b)
and split it two ways, into K row blocks ``X_l`` (n_b, ·) and K column blocks ``X^(l)`` (·, d_b).
Worker i stores

* ``rows_i = Σ_l G[i, l] X_l`` (n_b, K·d_b) and ``y_i = Σ_l G[i, l] y_l`` (round 1), and
* ``cols_i = Σ_l G[i, l] X^(l)ᵀ`` (d_b, K·n_b) (round 2),

so it holds 2·n·d/K numbers of X-derived data: storage redundancy ``2m/(m − 2t)`` (exactly, when K
divides n and d). Zero padding changes nothing: a zero row adds 0 to the gradient and padded
coordinates are cut off.

One step:

1. *round 1*: the master sends w; worker i sends ``rows_i w − y_i`` (n_b,). Honest messages are
   ``G Z1`` with ``Z1[l] = X_l w − y_l``: :meth:`decode_residual` locates and drops the Byzantine
   rows and returns the residual ``r = Xw − y`` (in the code's row layout).
2. *round 2*: the master sends r; worker i sends ``cols_i r`` (d_b,). Honest messages are ``G Z2``
   with ``Z2[l] = X^(l)ᵀ r``: :meth:`decode` returns ``g = Xᵀ(Xw − y)``, the SUM over data rows
   (the gradient of ½‖Xw − y‖²; divide by the number of rows for the mean).

Both rounds use the :class:`~codedbft.decoders.l1.L1Decoder` (private random projection, L1 /
exhaustive / Prony locating, one pseudo-inverse on the honest rows), in float64, so ``g`` is exact
to float64 rounding (relative error ~1e-13 at m = 30, t = 7).

Mini-batch SGD. Row ``q`` of every row block is one *slot*: slot q holds the data rows
``{l·n_b + q : l < K}``. A mini-batch is a set of slots ``batch`` (drawn by the master each step):
round 1 uses only those rows of ``rows_i``/``y_i``, round 2 only the matching columns of ``cols_i``,
and the result is exactly ``X_Bᵀ(X_B w − y_B)`` over the K·|batch| data rows of those slots (shuffle
the data before :meth:`encode_data` if its order is meaningful). Storage is unchanged; computation
and communication scale with |batch|.

Multi-output least squares: ``y`` (n, o) and ``w`` (d, o) work the same way, with g of shape (d, o).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from codedbft._arrays import as_numpy
from codedbft.decoders.base import DecodeResult
from codedbft.decoders.l1 import L1Decoder, Locator, Solver, make_locator, null_space
from codedbft.encoders.base import Code


@dataclass(frozen=True)
class DataBlock:
    """What worker ``worker`` stores (views into the stacks :meth:`DataEncodingCode.encode_data` built).

    Attributes:
        worker: the worker id i.
        rows: (n_b, K·d_b) ``Σ_l G[i, l] X_l``, for round 1.
        y: (n_b, o) ``Σ_l G[i, l] y_l`` (o = 1 for a vector target).
        cols: (d_b, K·n_b) ``Σ_l G[i, l] X^(l)ᵀ``, for round 2.
        gram: (d_b, K·d_b) ``Σ_l G[i, l] (XᵀX)_l`` (row block l of the padded Gram matrix) or None:
            the one-round, full-batch path of :meth:`DataEncodingCode.worker_gradient`.
        xty: (d_b, o) ``Σ_l G[i, l] (Xᵀy)_l`` or None, with ``gram``.
    """

    worker: int
    rows: np.ndarray
    y: np.ndarray
    cols: np.ndarray
    gram: np.ndarray | None = None
    xty: np.ndarray | None = None

    @property
    def storage(self) -> int:
        """Numbers of X-derived data this worker stores (rows and cols)."""
        return int(self.rows.size + self.cols.size)

    @property
    def gram_storage(self) -> int:
        """Numbers of the one-round Gram encoding this worker stores (0 when there is none)."""
        return 0 if self.gram is None else int(self.gram.size + self.xty.size)


@dataclass(frozen=True)
class _Layout:
    n: int
    d: int
    o: int | None  # None: vector target y (n,)
    n_b: int
    d_b: int


class DataEncodingCode(Code):
    """``DataEncodingCode(m, t)``: least-squares gradient descent on m workers, up to t Byzantine.

    Args:
        m: number of workers (``n`` = m).
        t: Byzantine workers tolerated; requires ``t <= floor((m − 1)/2)``.
        locator: ``"cosine"`` (default, orthonormal rows), ``"chebyshev"`` or ``"vandermonde"``.
        solver: L1 solver, ``"highs"`` (default) or ``"cvxpy"``.
        rtol: relative tolerance of the decoder's verification.
        loss: must be ``"least_squares"`` (see the module docstring).
        rng: seed or generator of the decoder's private projections (default: OS entropy).

    Attributes (the :class:`Code` contract, read for this code):
        n: m workers.  s: t.  k: K = m − 2t, the number of row (and column) blocks X is split into:
        the information length of the underlying real [m, K] code.
        assignment: worker i's encoded block mixes every one of the K data blocks (G is dense), so
        every entry is ``(0, ..., K − 1)``.
        B: None (``linear`` is False): the messages are linear in encoded data, not in partition
        gradients; ``encodes_gradients`` and ``has_distortion`` are False too.
        redundancy: storage redundancy ``2m / (m − 2t)`` (not the mean length of ``assignment``).
        locator: the (2t, m) matrix F.  generator: the (m, K) matrix G, F G = 0, orthonormal columns.

    Raises:
        ValueError: t < 0, t > floor((m − 1)/2), or a loss other than least squares.
    """

    def __init__(
        self,
        m: int,
        t: int,
        *,
        locator: str = "cosine",
        solver: Solver = "highs",
        rtol: float = 1e-9,
        loss: str = "least_squares",
        rng: int | np.random.Generator | None = None,
    ):
        if loss != "least_squares":
            raise ValueError(
                f"data encoding needs a gradient linear in the data rows (loss='least_squares'), got "
                f"loss={loss!r}: for networks use a gradient code (draco-repetition, draco-cyclic, detox, byzshield, rrr)"
            )
        if m < 1:
            raise ValueError(f"m must be >= 1, got m={m}")
        if t < 0 or t > (m - 1) // 2:
            raise ValueError(f"data encoding needs 0 <= t <= floor((m-1)/2) (m >= 2t+1), got m={m}, t={t}")
        self.m = self.n = int(m)
        self.t = self.s = int(t)
        self.k = self.m - 2 * self.t
        self._loc: Locator = make_locator(locator, self.m, self.t)
        self.locator = self._loc.F
        self.generator = null_space(self.locator) if self.t else np.eye(self.m)
        self.solver, self.rtol, self._rng = solver, rtol, rng
        self._layout: _Layout | None = None

    # ------------------------------------------------------------------ Code contract
    @property
    def assignment(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(range(self.k)) for _ in range(self.m))

    @property
    def redundancy(self) -> float:
        """Storage redundancy 2m/(m − 2t): X is stored twice (row- and column-encoded), each m/K times."""
        return 2.0 * self.m / self.k

    @property
    def encodes_gradients(self) -> bool:
        """False: workers encode the data (:meth:`encode_data`), so :meth:`encode` raises."""
        return False

    def encode(self, G: Any) -> Any:
        """Not available (:attr:`encodes_gradients` is False): this code encodes data, not gradients.

        Raises:
            NotImplementedError: always; see :meth:`encode_data`, :meth:`worker_residual`,
                :meth:`worker_gradient`.
        """
        raise NotImplementedError(
            "DataEncodingCode encodes data, not partition gradients: use encode_data(X, y), "
            "worker_residual / decode_residual (round 1), worker_gradient / decode (round 2)"
        )

    def _build_decoder(self) -> L1Decoder:
        return L1Decoder(self._loc, G=self.generator, t=self.t, solver=self.solver, rtol=self.rtol, rng=self._rng)

    # ------------------------------------------------------------------ encoding
    #: ``encode_data(..., gram=None)`` stores the one-round Gram encoding up to this many features.
    GRAM_MAX_FEATURES = 4096

    def encode_data(self, X: Any, y: Any, *, gram: bool | None = None) -> tuple[DataBlock, ...]:
        """Encode X (n, d) and y (n,) or (n, o) into one :class:`DataBlock` per worker (float64).

        Records the layout (n, d, block sizes) on the code: later rounds decode with it.

        ``gram``: also store the one-round encoding of ``(XᵀX, Xᵀy)`` (d²/K more numbers per worker),
        which lets ``worker_gradient(i, w, block)`` answer a full-batch step without the residual
        round. ``None`` (default): only when d <= :attr:`GRAM_MAX_FEATURES`.
        """
        Xa, _ = as_numpy(X)
        ya, _ = as_numpy(y)
        if Xa.ndim != 2:
            raise ValueError(f"X must be a 2-D (n, d) data matrix, got shape {Xa.shape}")
        n, d = Xa.shape
        if ya.shape[:1] != (n,) or ya.ndim > 2:
            raise ValueError(f"y must have shape (n={n},) or (n={n}, o), got {ya.shape}")
        o = None if ya.ndim == 1 else ya.shape[1]
        K = self.k
        n_b, d_b = -(-n // K), -(-d // K)
        Xp = np.zeros((K * n_b, K * d_b))
        Xp[:n, :d] = Xa
        yp = np.zeros((K * n_b, o or 1))
        yp[:n] = ya.reshape(n, -1)
        G = self.generator
        rows = np.einsum("il,lbd->ibd", G, Xp.reshape(K, n_b, K * d_b), optimize=True)
        ys = np.einsum("il,lbo->ibo", G, yp.reshape(K, n_b, -1), optimize=True)
        cols = np.einsum("il,lcn->icn", G, Xp.T.reshape(K, d_b, K * n_b), optimize=True)
        self._layout = _Layout(n, d, o, n_b, d_b)
        if gram is None:
            gram = d <= self.GRAM_MAX_FEATURES
        if not gram:
            return tuple(DataBlock(i, rows[i], ys[i], cols[i]) for i in range(self.m))
        # The least-squares gradient Xᵀ(Xw − y) = (XᵀX) w − Xᵀy is LINEAR in (XᵀX, Xᵀy): encoding the
        # Gram matrix's row blocks gives the same codeword G·Z2 as round 2, in one round.
        A = Xp.T @ Xp  # (K·d_b, K·d_b), symmetric
        b = Xp.T @ yp  # (K·d_b, o)
        grams = np.einsum("il,lbd->ibd", G, A.reshape(K, d_b, K * d_b), optimize=True)
        xtys = np.einsum("il,lbo->ibo", G, b.reshape(K, d_b, -1), optimize=True)
        return tuple(DataBlock(i, rows[i], ys[i], cols[i], grams[i], xtys[i]) for i in range(self.m))

    def storage_redundancy(self, blocks: Sequence[DataBlock]) -> float:
        """Measured storage: Σ_i stored X-derived numbers / (n·d); 2m/(m − 2t) when K divides n and d."""
        lay = self._require_layout()
        return sum(b.storage for b in blocks) / (lay.n * lay.d)

    def slot_rows(self, batch: Sequence[int] | None = None) -> np.ndarray:
        """Data row ids of the round-1 layout (K·|batch|,), block-major; −1 marks padding rows."""
        lay = self._require_layout()
        q = self._slots(batch)
        ids = (np.arange(self.k)[:, None] * lay.n_b + q[None, :]).ravel()
        return np.where(ids < lay.n, ids, -1)

    # ------------------------------------------------------------------ round 1
    def worker_residual(self, i: int, w: Any, block: DataBlock, batch: Sequence[int] | None = None) -> Any:
        """Round 1, honest worker i: ``rows_i[batch] w − y_i[batch]``, flattened to (|batch|·o,)."""
        lay = self._require_layout()
        wa, kind = as_numpy(w)
        wp = self._pad_w(wa, lay)
        q = self._slots(batch)
        rows = block.rows if batch is None else block.rows[q]
        ys = block.y if batch is None else block.y[q]
        return kind.wrap((rows @ wp - ys).ravel())

    def decode_residual(self, messages: Any, missing: Any = None) -> DecodeResult:
        """Round 1: locate the Byzantine workers and recover ``r = X_B w − y_B``.

        ``messages``: (m, |batch|·o) round-1 replies. ``res.gradient`` holds r (K·|batch|,) or
        (K·|batch|, o) in the slot layout (data row ids: :meth:`slot_rows`); pass it to
        :meth:`worker_gradient`. ``res.info``: the L1 decoder's (see
        :meth:`~codedbft.decoders.l1.L1Decoder.decode`), with ``round`` = 1.
        """
        t0 = time.perf_counter()
        lay = self._require_layout()
        res = self.decoder().decode(messages, missing=missing)
        Z, kind = as_numpy(res.gradient)  # (K, |batch|·o)
        r = Z.reshape(-1) if lay.o is None else Z.reshape(-1, lay.o)
        return _round_result(res, kind.wrap(r), 1, t0)

    # ------------------------------------------------------------------ round 2
    def worker_gradient(self, i: int, w: Any, block: DataBlock, residual: Any = None,
                        batch: Sequence[int] | None = None) -> Any:
        """What honest worker i sends for the gradient: a (d_b·o,) share that :meth:`decode` decodes.

        Two ways, same codeword (so :meth:`decode` takes either):

        * ``worker_gradient(i, w, block)`` (one round, full batch): ``gram_i w − xty_i`` from the
          encoded Gram matrix (needs ``block.gram``, see :meth:`encode_data`).
        * ``worker_gradient(i, w, block, residual, batch)`` (round 2 of the paper's protocol, any
          mini-batch): ``cols_i[:, slots] r`` with ``r`` the decoded round-1 residual
          (:meth:`decode_residual`) and ``batch`` the same slots as in round 1; ``w`` is not used.
        """
        lay = self._require_layout()
        if residual is None:
            if batch is not None:
                raise ValueError(
                    "a mini-batch gradient needs the two-round protocol: pass "
                    "residual=decode_residual(round-1 messages).gradient with the same batch"
                )
            if block.gram is None:
                raise ValueError(
                    "this block has no Gram encoding (encode_data(..., gram=False) or d > GRAM_MAX_FEATURES): "
                    "pass residual=decode_residual(round-1 messages).gradient (two rounds)"
                )
            wa, kind = as_numpy(w)
            wp = self._pad_w(wa, lay)
            return kind.wrap((block.gram @ wp - block.xty).ravel())
        ra, kind = as_numpy(residual)
        q = self._slots(batch)
        if ra.shape[0] != self.k * len(q):
            raise ValueError(f"residual must have K*|batch| = {self.k * len(q)} rows, got {ra.shape}")
        cols = block.cols
        if batch is not None:
            cols = cols[:, (np.arange(self.k)[:, None] * lay.n_b + q[None, :]).ravel()]
        return kind.wrap((cols @ ra.astype(np.float64, copy=False).reshape(ra.shape[0], -1)).ravel())

    def decode(self, messages: Any, missing: Any = None) -> DecodeResult:
        """Round 2: the exact full (or mini-batch) gradient ``Xᵀ(Xw − y)``, a SUM over data rows.

        ``messages``: (m, d_b·o) round-2 replies. ``res.gradient``: (d,) or (d, o), float64;
        ``res.flagged``: the workers whose round-2 reply differs from the honest one (or is NaN/Inf).
        ``res.info``: the L1 decoder's (see :meth:`~codedbft.decoders.l1.L1Decoder.decode`), with
        ``round`` = 2.
        """
        t0 = time.perf_counter()
        lay = self._require_layout()
        width = lay.d_b * (lay.o or 1)
        if tuple(messages.shape) != (self.m, width):
            raise ValueError(f"round-2 messages must have shape (m={self.m}, d_b*o={width}), got {tuple(messages.shape)}")
        res = self.decoder().decode(messages, missing=missing)
        Z, kind = as_numpy(res.gradient)  # (K, d_b·o)
        g = Z.reshape(self.k * lay.d_b, -1)[: lay.d]
        g = g[:, 0] if lay.o is None else g
        return _round_result(res, kind.wrap(np.ascontiguousarray(g)), 2, t0)

    # ------------------------------------------------------------------ helpers
    def _require_layout(self) -> _Layout:
        if self._layout is None:
            raise ValueError("call encode_data(X, y) first: the decoder needs the data layout")
        return self._layout

    def _slots(self, batch: Sequence[int] | None) -> np.ndarray:
        lay = self._require_layout()
        if batch is None:
            return np.arange(lay.n_b)
        q = np.asarray(batch, dtype=np.intp).ravel()
        if q.size == 0 or q.min() < 0 or q.max() >= lay.n_b:
            raise ValueError(f"batch slots must be a non-empty set of ids in [0, n_b={lay.n_b})")
        return q

    def _pad_w(self, w: np.ndarray, lay: _Layout) -> np.ndarray:
        if w.shape[0] != lay.d or (lay.o is None and w.ndim != 1) or (lay.o is not None and w.shape[1:] != (lay.o,)):
            want = (lay.d,) if lay.o is None else (lay.d, lay.o)
            raise ValueError(f"w must have shape {want}, got {w.shape}")
        wp = np.zeros((self.k * lay.d_b, lay.o or 1))
        wp[: lay.d] = w.reshape(lay.d, -1)
        return wp

    def __repr__(self) -> str:
        return f"DataEncodingCode(m={self.m}, t={self.t}, k={self.k}, redundancy={self.redundancy:g})"


def _round_result(res: DecodeResult, gradient: Any, rnd: int, t0: float) -> DecodeResult:
    """The L1 result ``res`` carrying one round's ``gradient``; ``decode_ms`` re-measured from ``t0``
    so that it covers the whole round (the reshaping included), as the vocabulary says."""
    info = {**res.info, "round": rnd, "decode_ms": (time.perf_counter() - t0) * 1e3}
    return DecodeResult(gradient, res.flagged, res.exact, info)
