"""Data encoding (Data, Song & Diggavi, IEEE T-IT 2021) as a runtime scheme: ``"data-encoding"``.

Only for least squares, whose gradient ``g = Xᵀ(Xw − y)`` is linear in the data rows: the model must
be ``"linear"`` without bias on a regression dataset (``synthetic-regression``, ``digits-linear``);
anything else raises ValueError when the master binds the scheme, before any worker starts.

Set-up (master, once, :meth:`DataEncodingScheme.bind`): the training set is shuffled with a
permutation seeded by the run seed, then encoded by ``DataEncodingCode(m=n, t=s)``: K = m − 2t row
blocks and column blocks mixed by the null-space basis G of the locator F. Worker i's program
(:class:`EncodedWorker`: its :class:`~codedbft.encoders.data_encoding.DataBlock` and the two
operations on it) is shipped to it once, like the dataset.

One step, two rounds (an interactive conversation, like RRR's reactive rounds):

1. the master draws b = batch_size // K *slots* from ``(seed, step)``; slot q is the K data rows
   ``{l·n_b + q}``, so a step uses K·b rows (fewer when it hits the zero padding of the last block);
   ``op="residual"``: worker i sends ``rows_i[slots] W − y_i[slots]``; the master decodes
   ``r = X_B W − y_B`` (private random projection, L1 locating, one pseudo-inverse);
2. ``op="gradient"`` with r, asked only of the workers round 1 did not flag (flagged ones are
   erasures from then on, which cost half an error's distance): worker i sends ``cols_i[:, slots] r``;
   the master decodes ``X_Bᵀ(X_B W − y_B)``, a SUM over the batch rows, and divides it by the number
   of real rows: the exact mean least-squares gradient of the batch, in float64, whenever
   ``2·errors + erasures <= 2t`` in each round.

The decoder's private projections are drawn from a generator re-seeded from ``(seed, step, round)``
before each decode: hidden from workers (they never see it) yet reproducible, so a resumed run and
the other backend take the same steps.

Computation accounting (``SchemeResult.computed``/``useful``): each worker's two products on its
encoded block cost about one K-th of the batch gradient, i.e. one "partition gradient"; useful = K,
computed = the workers asked in round 1, so the efficiency is (m − 2t)/m with every worker active:
the paper's computation redundancy m/(m − 2t) (storage redundancy 2m/(m − 2t)).

Label-flip (a data-level attack) poisons a Byzantine worker's encoded targets: one-hot targets get
their columns reversed (class c -> C−1−c commutes with the encoding, which mixes rows only); scalar
targets are negated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Generator, Sequence

import numpy as np
import torch

from codedbft._arrays import as_numpy
from codedbft.schemes.base import Order, Replies, Scheme, SchemeResult
from codedbft.schemes.config import SchemeConfig
from codedbft.schemes.registry import register_scheme

#: module types a least-squares model may contain (build_model("linear") without bias)
_LINEAR_PARTS = frozenset({"Sequential", "Flatten", "Linear", "_Squeeze"})


def _is_linear_least_squares(flat_model: Any) -> str | None:
    """None when ``flat_model`` is a bias-free linear map under the least-squares loss, else why not."""
    if getattr(flat_model, "loss_name", None) != "mse":
        return f"loss {getattr(flat_model, 'loss_name', None)!r} is not least squares (use a regression dataset)"
    module = flat_model.model
    kinds = {type(m).__name__ for m in module.modules()}
    if not kinds <= _LINEAR_PARTS:
        return f"the model has non-linear parts {sorted(kinds - _LINEAR_PARTS)}"
    linears = [m for m in module.modules() if type(m).__name__ == "Linear"]
    if len(linears) != 1 or linears[0].bias is not None:
        return "the model must be one Linear layer without bias"
    return None


@dataclass(frozen=True)
class EncodedWorker:
    """Worker i's program for the two operation orders of a step (picklable: shipped to Ray actors).

    ``__call__(op, w, step, payload, poisoned)``: ``op="residual"``, payload the slots -> round-1
    message ``rows_i[slots] W − y_i[slots]`` (|slots|·o,); ``op="gradient"``, payload
    ``(slots, r)`` -> round-2 message ``cols_i[:, slots] r`` (d_b·o,). Float64 numpy vectors.
    """

    code: Any  # the DataEncodingCode (its layout: block sizes, K)
    block: Any  # this worker's DataBlock
    outputs: int | None  # o for (N, o) targets; None for a scalar target

    def _w(self, w: Any) -> np.ndarray:
        wa, _ = as_numpy(w)
        wa = wa.astype(np.float64)
        # the flat parameter vector is W (o, D) row-major; the code wants Wᵀ (D, o), or (D,) for a scalar target
        return wa if self.outputs is None else wa.reshape(self.outputs, -1).T

    def _poisoned(self) -> Any:
        from dataclasses import replace

        y = self.block.y
        return replace(self.block, y=-y if self.outputs is None else np.ascontiguousarray(y[:, ::-1]))

    def __call__(self, op: str, w: Any, step: int, payload: Any, poisoned: bool = False) -> np.ndarray:
        block = self._poisoned() if poisoned else self.block
        if op == "residual":
            return np.asarray(self.code.worker_residual(block.worker, self._w(w), block, payload), dtype=np.float64)
        if op == "gradient":
            slots, r = payload
            return np.asarray(self.code.worker_gradient(block.worker, None, block, r, slots), dtype=np.float64)
        raise ValueError(f"unknown data-encoding operation {op!r}; expected 'residual' or 'gradient'")


class DataEncodingScheme(Scheme):
    """``"data-encoding"``: ``DataEncodingCode(m=n, t=s)`` on encoded least-squares data (module docstring).

    Scheme params (``--scheme-param``): ``locator`` ("cosine" default, "chebyshev", "vandermonde"),
    ``solver`` ("highs" default, "cvxpy").

    Raises:
        ValueError: ``n < 2s + 1``, an aggregator other than mean (the decode is exact), or, at
            :meth:`bind`, a model that is not linear least squares.
    """

    name = "data-encoding"

    def __init__(self, config: SchemeConfig):
        from codedbft.encoders import DataEncodingCode

        self.config = config
        if config.aggregator not in (None, "mean") or config.pre:
            raise ValueError(f"data-encoding decodes exactly and takes no aggregator or pre-aggregators "
                             f"(got aggregator={config.aggregator!r}, pre={list(config.pre)})")
        m, t = config.workers, config.s
        if m < 2 * t + 1:
            raise ValueError(f"data-encoding needs n >= 2s+1 (t <= floor((m-1)/2)), got n={m}, s={t}")
        self.seed = int(config.params.get("seed", 0))
        self.secret = int(config.params.get("secret", self.seed))  # the decoder's projections: master-only
        # one generator owned here and handed to the decoder, re-seeded per (step, round) before each decode
        self._gen = np.random.default_rng(self.secret)
        self.code = DataEncodingCode(m, t, locator=str(config.params.get("locator", "cosine")),
                                     solver=config.params.get("solver", "highs"), rng=self._gen)
        self.n, self.k = m, self.code.k
        self.outputs: int | None = None
        self.slots_per_step = 0
        self._programs: list[EncodedWorker] | None = None
        self.perm: np.ndarray | None = None  # training row order the encoding uses (seeded shuffle)

    # -- set-up ---------------------------------------------------------------------------------
    def bind(self, dataset: Any, model: Any, spec: Any) -> None:
        """Check the model is linear least squares, shuffle (seeded) and encode the training set."""
        super().bind(dataset, model, spec)
        why = _is_linear_least_squares(model)
        if why is not None:
            raise ValueError(
                f"data-encoding needs a gradient linear in the data (model='linear' without bias on a regression "
                f"dataset such as synthetic-regression or digits-linear): {why}; for networks use a gradient code "
                f"(draco-repetition, draco-cyclic, detox, byzshield, rrr)")
        X = dataset.X_train.reshape(dataset.num_train, -1).numpy().astype(np.float64)
        Y = dataset.y_train.numpy().astype(np.float64)
        perm = np.random.default_rng([self.seed, 0xDA7A]).permutation(len(X))
        blocks = self.code.encode_data(X[perm], Y[perm], gram=False)  # mini-batch SGD: the two-round protocol
        self.perm = perm
        self.outputs = None if Y.ndim == 1 else int(Y.shape[1])
        self.slots_per_step = int(spec.b)
        n_b = blocks[0].rows.shape[0]
        if not 1 <= self.slots_per_step <= n_b:
            raise ValueError(f"data-encoding needs 1 <= batch_size // K <= n_b={n_b} slots, got {self.slots_per_step}")
        self._programs = [EncodedWorker(self.code, b, self.outputs) for b in blocks]

    def worker_data(self, worker: int) -> EncodedWorker:
        if self._programs is None:
            raise ValueError("data-encoding: bind(dataset, model, spec) must run before the workers start")
        return self._programs[worker]

    @property
    def assignment(self) -> tuple[tuple[int, ...], ...]:
        return self.code.assignment

    def coefficients(self, worker: int, partitions: Sequence[int]) -> None:
        return None  # workers never combine partition gradients here

    def message_dtype(self, grad_dtype: torch.dtype) -> torch.dtype:
        return torch.float64  # the code decodes in float64; encoded messages must not lose bits first

    def slots(self, step: int) -> np.ndarray:
        """The step's mini-batch: ``slots_per_step`` distinct slot ids drawn from ``(seed, step)``, sorted."""
        n_b = self.code.slot_rows(None).size // self.k
        rng = np.random.default_rng([self.seed, step, 0x5107])
        return np.sort(rng.choice(n_b, self.slots_per_step, replace=False))

    def row_ids(self, step: int) -> np.ndarray:
        """Training-set row ids the step's mini-batch covers (the slots' real rows, padding dropped)."""
        rows = self.code.slot_rows(self.slots(step))
        return self.perm[rows[rows >= 0]]

    def _reseed(self, step: int, rnd: int) -> None:
        self._gen.bit_generator.state = np.random.default_rng([self.secret, step, rnd, 0xA1FA]).bit_generator.state

    # -- the conversation -----------------------------------------------------------------------
    def protocol(self, step: int, active: Sequence[bool] | None = None) -> Generator[Order, Replies, SchemeResult]:
        if self._programs is None:
            raise ValueError("data-encoding: bind(dataset, model, spec) must run before the first step")
        act = np.ones(self.n, dtype=bool) if active is None else np.asarray(active, dtype=bool)
        o = self.outputs or 1
        slots = self.slots(step)
        asked = [i for i in range(self.n) if act[i]]
        order1 = self.order({i: (i,) for i in asked}, step, op="residual", payload=slots, shape=(len(slots) * o,))
        rep1 = yield order1
        m1, miss1 = self._full(rep1)
        t0 = time.perf_counter()
        self._reseed(step, 1)
        res1 = self.code.decode_residual(m1, missing=miss1)
        r, _ = as_numpy(res1.gradient)
        dec1 = time.perf_counter() - t0

        # Round 2 skips the workers round 1 caught: as erasures they cost half the distance of errors.
        caught = set(res1.flagged) | set(rep1.invalid)
        width = self._programs[0].block.cols.shape[0] * o  # d_b·o
        order2 = self.order({i: (i,) for i in asked if i not in caught}, step, op="gradient", payload=(slots, r),
                            shape=(width,))
        rep2 = yield order2
        m2, miss2 = self._full(rep2)
        t1 = time.perf_counter()
        self._reseed(step, 2)
        res2 = self.code.decode(m2, missing=miss2)
        g, _ = as_numpy(res2.gradient)
        rows = int((self.code.slot_rows(slots) >= 0).sum())
        flat = g if self.outputs is None else g.T.reshape(-1)  # Wᵀ-shaped (D, o) -> W (o, D) row-major
        grad = torch.from_numpy(np.ascontiguousarray(flat) / rows)
        dec2 = time.perf_counter() - t1
        flagged = tuple(sorted(caught | set(res2.flagged) | set(rep2.invalid)))
        info = {"decode_ms": (dec1 + dec2) * 1e3, "rows": rows, "caught_round1": sorted(caught),
                "exact_round1": bool(res1.exact), "exact_round2": bool(res2.exact),
                "reason": res1.info.get("reason") or res2.info.get("reason")}
        return SchemeResult(grad, flagged, bool(res1.exact and res2.exact), info, computed=len(asked), useful=self.k)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "t": self.code.t, "K": self.k, "storage_redundancy": self.code.redundancy,
                "computation_redundancy": self.n / self.k}


register_scheme("data-encoding", DataEncodingScheme, params=("locator", "solver"),
                help="Data-Song-Diggavi encoded least-squares data, L1 decoding (linear model only)")
