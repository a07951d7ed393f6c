"""The Scheme contract: what the runtime asks a scheme, round by round, within one training step.

A step is a small conversation between the master and the scheme (a generator, see
:meth:`Scheme.protocol`):

1. the scheme yields an :class:`Order` (which worker computes which partitions, and whether its
   message is a combination ``(d,)`` or the raw stack ``(p, d)``);
2. the runtime has the workers run it (Byzantine workers replace their messages by the attack's),
   validates every reply and sends back :class:`Replies` (a fixed-order stack plus the missing mask);
3. the scheme either yields another :class:`Order` (interactive schemes, RRR-BFT: more copies of the
   partitions whose replies disagreed, within the same step) or returns a :class:`SchemeResult`
   whose ``gradient`` is the MEAN partition gradient (decoders return the sum of the k partition
   gradients; dividing by k makes every scheme train at the same scale).

Extension points:

* *stacked messages* (ByzShield sends one gradient per assigned file): set ``Order.stacked`` so the
  worker sends its ``(p, d)`` partition gradients; the scheme's decoder sees an ``(n, p, d)`` stack.
* *interactive schemes* (RRR-BFT): override :meth:`Scheme.protocol` and yield more orders; the
  runtime runs them on either backend exactly like the first one, and the scheme reports
  ``computed``/``useful`` gradient counts for the computation-efficiency metric.
* *data-encoding schemes* (Data-Song-Diggavi, ``DataEncodingCode(m, t)``, :mod:`codedbft.schemes.data_encoding`):
  workers compute on encoded data blocks, not on partition gradients. :meth:`Scheme.bind` gives the
  scheme the dataset and model once (master side; it encodes the data); :meth:`Scheme.worker_data`
  gives each worker its program (its encoded block and the operations on it), shipped once at start
  like the dataset; an *operation order* (``Order.op`` set, with ``payload`` and the message
  ``shape``) makes each worker call ``program(op, w, step, payload, poisoned)`` instead of computing
  partition gradients. Two such rounds per step, the second yielded after decoding the first,
  exactly like RRR's reactive rounds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generator, Mapping, Sequence

import numpy as np
import torch

from codedbft.encoders.base import Code
from codedbft.schemes.config import SchemeConfig


@dataclass(frozen=True)
class Order:
    """One round of work, self-describing: a backend runs it without the scheme or the master.

    ``tasks[worker]`` is the tuple of partition ids that worker computes, ``coefficients[worker]``
    the code's row ``B[worker, partitions]`` it combines them with (absent or None: it sends its
    single gradient as is, no arithmetic, so repetition copies stay bitwise identical). ``stacked``
    True: it sends its raw ``(p, d)`` partition gradients instead (every task of a stacked order has
    the same length p). ``shape`` and ``dtype`` are one worker's reply layout; ``step`` the training
    step the partitions are drawn for. Build orders with :meth:`Scheme.order`, which fills the
    coefficients and the layout from the bound scheme.

    Operation orders (``op`` not None, data-encoding schemes): each worker in ``tasks`` runs
    ``program(op, w, step, payload, poisoned)`` on its :meth:`Scheme.worker_data` program instead of
    computing partition gradients, and sends a message of ``shape``; its ``tasks`` entries only say
    who is asked (and count computations).
    """

    tasks: Mapping[int, tuple[int, ...]]
    stacked: bool = False
    op: str | None = None
    payload: Any = None
    shape: tuple[int, ...] | None = None
    dtype: torch.dtype | None = None
    coefficients: Mapping[int, np.ndarray | None] = field(default_factory=dict)
    step: int = 0

    @property
    def workers(self) -> tuple[int, ...]:
        """Worker ids in increasing order: the fixed order of the reply stack."""
        return tuple(sorted(self.tasks))

    @property
    def gradients(self) -> int:
        """Partition gradients this order makes the workers compute."""
        return sum(len(p) for p in self.tasks.values())

    def coefficients_of(self, worker: int) -> np.ndarray | None:
        """Worker ``worker``'s combination coefficients (None: its single gradient, or stacked)."""
        return self.coefficients.get(worker)

    @property
    def layout(self) -> tuple[tuple[int, ...], torch.dtype]:
        """``(shape, dtype)`` of one reply; ValueError for an order built without a bound scheme."""
        if self.shape is None or self.dtype is None:
            raise ValueError("this order has no reply layout: build it with Scheme.order() after Scheme.bind()")
        return tuple(self.shape), self.dtype


@dataclass(frozen=True)
class Quorum:
    """When a round has enough replies to decode (``--wait-for auto``): every group of workers has
    at most ``budget`` missing. A code correcting e errors and m erasures with 2e + m <= 2s, run
    against b Byzantine workers, can lose ``2(s - b)`` replies per decoding group (the whole code
    for a cyclic MDS code, each repetition group for DRACO repetition) and still decode exactly, so
    the master need not wait for its slowest workers (Tandon et al. 2017, gradient coding)."""

    groups: tuple[tuple[int, ...], ...]
    budget: int

    def enough(self, arrived: set[int] | frozenset[int]) -> bool:
        return all(sum(w not in arrived for w in g) <= self.budget for g in self.groups)


@dataclass(frozen=True)
class Replies:
    """The validated replies to an :class:`Order`, in the order's fixed worker order.

    Attributes:
        workers: worker ids, increasing (row i of ``messages`` is worker ``workers[i]``).
        messages: ``(len(workers), d)`` or ``(len(workers), p, d)``; rows of missing workers hold
            zeros (never read by the decoders, which treat them as erasures).
        missing: bool ``(len(workers),)``: no reply, a late reply, or an invalid one (wrong shape or
            dtype, NaN or Inf); invalid ones are also in ``invalid``.
        invalid: worker ids whose reply failed validation (certainly faulty; reported as flagged).
    """

    workers: tuple[int, ...]
    messages: torch.Tensor
    missing: np.ndarray
    invalid: tuple[int, ...] = ()


@dataclass(frozen=True)
class SchemeResult:
    """What a scheme made of one step's replies.

    Attributes:
        gradient: ``(d,)`` float tensor, the MEAN partition gradient (what the optimizer steps on).
        flagged: sorted worker ids judged Byzantine this step (decoder flags and invalid replies).
        exact: True when the code certified that ``gradient`` is the true mean.
        info: diagnostics in the vocabulary of :mod:`codedbft.decoders.base` (``decode_ms``,
            ``aggregate_ms``, ``reason`` when not exact, ...).
        computed: partition gradients the workers computed this step (all rounds).
        useful: distinct partition gradients the step needed (k).
    """

    gradient: torch.Tensor
    flagged: tuple[int, ...]
    exact: bool
    info: dict[str, Any] = field(default_factory=dict)
    computed: int = 0
    useful: int = 0


def combine(coefs: Sequence[np.ndarray | None], grads: torch.Tensor) -> torch.Tensor:
    """Messages ``(W, d)`` from partition gradients ``grads (W, p, d)`` and per-worker coefficients.

    ``None`` coefficients mean "send the single gradient as is" (repetition, vanilla: no arithmetic).
    Otherwise ``sum_j c_j g_j`` (the code's row ``B[i, A_i]``) accumulated sequentially over j with
    elementwise operations only, so a worker alone (W = 1) and the batched simulator (W = n) produce
    the same bits.
    """
    if all(c is None for c in coefs):
        return grads[:, 0]
    p = grads.shape[1]
    C = torch.from_numpy(np.stack([np.ones(p) if c is None else np.asarray(c) for c in coefs]))
    dtype = torch.promote_types(grads.dtype, C.dtype)
    out = C[:, 0, None].to(dtype) * grads[:, 0].to(dtype)
    for j in range(1, p):  # p <= 2s+1 partitions per worker
        out += C[:, j, None].to(dtype) * grads[:, j].to(dtype)
    return out


class Scheme:
    """An encoder + decoder + optional aggregator: everything the runtime knows about a method.

    Subclasses set ``name``, ``n``, ``k``, ``assignment`` (and ``code`` when there is one) and
    implement :meth:`decode`. The runtime calls only :meth:`bind`, :meth:`worker_data`,
    :meth:`protocol` and the state hooks; everything a backend needs travels in the orders.
    Schemes are registered by name in :data:`~codedbft.schemes.registry.SCHEMES` with the scheme
    parameters (``--scheme-param``) they read from ``config.params``.
    """

    name: str
    config: SchemeConfig
    n: int
    k: int
    code: Code | None = None
    aggregator: Any = None
    #: the runtime may stop asking a worker isolated after repeated flags (treated as an erasure).
    supports_isolation: bool = True
    #: this step's per-call arguments of the rule (ByGARS++'s auxiliary gradient, Zeno's loss oracle),
    #: set by the master before each step (:mod:`codedbft.cluster.server_oracle`); replaced, never mutated
    call_context: Mapping[str, Any] = MappingProxyType({})

    @property
    def assignment(self) -> tuple[tuple[int, ...], ...]:
        """Partition ids each worker computes on (first round)."""
        assert self.code is not None
        return self.code.assignment

    @property
    def stacked(self) -> bool:
        """True when a worker's first-round message is its raw ``(p, d)`` stack (ByzShield)."""
        return False

    # ---- worker side (runs inside the worker, on either backend) ---------------------------------
    @property
    def encoding_matrix(self) -> np.ndarray | None:
        """The code's ``(n, k)`` matrix B, computed once; None for schemes without a linear code."""
        if "_B" not in self.__dict__:
            linear = self.code is not None and self.code.linear
            self.__dict__["_B"] = np.asarray(self.code.B) if linear else None
        return self.__dict__["_B"]

    def coefficients(self, worker: int, partitions: Sequence[int]) -> np.ndarray | None:
        """Coefficients ``B[worker, partitions]`` of the combination a worker sends; None: the single
        gradient as is (no arithmetic, so repetition copies stay bitwise identical)."""
        B = self.encoding_matrix
        if B is None:
            return None
        c = B[worker, list(partitions)]
        return None if len(partitions) == 1 and c[0] == 1 else c

    def combine(self, workers: Sequence[int], partitions: Sequence[Sequence[int]], grads: torch.Tensor) -> torch.Tensor:
        """Messages of ``workers`` from their partition gradients ``grads (W, p, d)`` -> ``(W, d)``."""
        return combine([self.coefficients(w, p) for w, p in zip(workers, partitions)], grads)

    def message_shape(self, d: int, partitions: int = 1, stacked: bool = False) -> tuple[int, ...]:
        """Shape of one worker's message for a task of ``partitions`` partitions."""
        return (partitions, d) if stacked else (d,)

    def message_dtype(self, grad_dtype: torch.dtype) -> torch.dtype:
        """Dtype of the messages when gradients have ``grad_dtype`` (complex for complex codes)."""
        B = self.encoding_matrix
        if B is None or np.all(np.isin(B, (0.0, 1.0))):
            return grad_dtype
        if np.iscomplexobj(B) and np.any(np.imag(B)):
            return torch.promote_types(grad_dtype, torch.complex128)
        return torch.promote_types(grad_dtype, torch.from_numpy(np.zeros(1, dtype=B.dtype)).dtype)

    # ---- master side -----------------------------------------------------------------------------
    def order(self, tasks: Mapping[int, tuple[int, ...]], step: int = 0, *, stacked: bool = False,
              op: str | None = None, payload: Any = None, shape: tuple[int, ...] | None = None,
              dtype: torch.dtype | None = None) -> Order:
        """A self-describing :class:`Order`: the coefficients of every task and the reply layout
        (``message_shape``/``message_dtype`` of the bound model) filled in here, once."""
        tasks = {int(w): tuple(p) for w, p in tasks.items()}
        coefs: dict[int, np.ndarray | None] = {}
        if op is None and not stacked:
            coefs = {w: c for w, p in tasks.items() if (c := self.coefficients(w, p)) is not None}
        reply = self.__dict__.get("_reply")
        if reply is not None:
            d, grad_dtype = reply
            if shape is None and op is None:
                p = len(next(iter(tasks.values()))) if tasks else 1
                shape = self.message_shape(d, p, stacked)
            dtype = dtype if dtype is not None else self.message_dtype(grad_dtype)
        return Order(tasks, stacked=stacked, op=op, payload=payload, shape=None if shape is None else tuple(shape),
                     dtype=dtype, coefficients=coefs, step=int(step))

    def quorum(self, order: Order) -> Quorum | None:
        """The replies of ``order`` enough to decode it exactly (:class:`Quorum`); None: wait for
        all (the default: rules, reactive and data-encoding schemes)."""
        return None

    def first_order(self, active: Sequence[bool] | None = None, step: int = 0) -> Order:
        """The first round: every active worker computes its assigned partitions."""
        act = np.ones(self.n, dtype=bool) if active is None else np.asarray(active, dtype=bool)
        return self.order({i: tuple(self.assignment[i]) for i in range(self.n) if act[i]}, step, stacked=self.stacked)

    def protocol(self, step: int, active: Sequence[bool] | None = None) -> Generator[Order, Replies, SchemeResult]:
        """One step's conversation with the runtime (see the module docstring).

        ``active`` (bool (n,)): workers still trusted; the others (isolated) are not asked and count
        as erasures. The default is one round: the first order, then :meth:`decode`.
        """
        order = self.first_order(active, step)
        replies = yield order
        messages, missing = self._full(replies)
        t0 = time.perf_counter()
        res = self.decode(messages, missing)
        flagged = tuple(sorted(set(res.flagged) | set(replies.invalid)))
        info = {"decode_ms": (time.perf_counter() - t0) * 1e3, **res.info}
        return SchemeResult(res.gradient, flagged, res.exact, info, computed=order.gradients, useful=self.k)

    def _full(self, replies: Replies) -> tuple[torch.Tensor, np.ndarray]:
        """The reply stack padded to all n workers (workers not asked are missing)."""
        if replies.workers == tuple(range(self.n)):
            return replies.messages, replies.missing
        full = replies.messages.new_zeros((self.n, *replies.messages.shape[1:]))
        missing = np.ones(self.n, dtype=bool)
        idx = list(replies.workers)
        if idx:
            full[idx] = replies.messages
            missing[idx] = replies.missing
        return full, missing

    def decode(self, messages: torch.Tensor, missing: np.ndarray) -> SchemeResult:
        """Mean partition gradient from the ``(n, ...)`` first-round messages and the erasure mask."""
        raise NotImplementedError

    # ---- data-encoding extension points (no-ops for gradient codes) ------------------------------
    def bind(self, dataset: Any, model: Any, spec: Any) -> None:
        """Called once by the master with the dataset, its ``FlatModel`` and the ``WorkerSpec``, before
        any worker starts. The base records the reply layout (``model.d``, the gradient dtype) that
        :meth:`order` writes into every order; schemes that encode the data (or need the model) also
        check and prepare here, raising ValueError for a combination they cannot run."""
        self.__dict__["_reply"] = (int(model.d), model.init_params().dtype)

    def worker_data(self, worker: int) -> Any:
        """Worker ``worker``'s program for operation orders (see :class:`Order`), shipped to it once at
        start; None (the default) for schemes whose workers compute partition gradients."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint: the aggregator's own ``state_dict()`` (stateful rules keep state on the
        object). Plain data, never the live object, so a checkpoint restores *into* the objects the
        decoder already holds (ByzShield's decoder keeps the rule it was built with)."""
        return {} if self.aggregator is None else {"aggregator": self.aggregator.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` into the live objects (as ``torch.optim`` does)."""
        saved = state.get("aggregator")
        if saved is None or self.aggregator is None:
            return
        if hasattr(saved, "state_dict"):  # checkpoints before 0.2 pickled the rule object itself
            saved = saved.state_dict()
        self.aggregator.load_state_dict(saved)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary for config.json and logs."""
        return {"name": self.name, "n": self.n, "k": self.k, "code": repr(self.code) if self.code else None,
                "aggregator": type(self.aggregator).__name__ if self.aggregator is not None else None}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, n={self.n}, k={self.k}, code={self.code!r})"
