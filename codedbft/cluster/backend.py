"""What a backend does for the master: run one :class:`~codedbft.schemes.Order` on the workers.

Both backends run the same worker code (:mod:`codedbft.cluster.worker`); they differ only in where
gradients are computed. ``execute`` returns the replies in the order's fixed worker order (never in
arrival order), so the master combines them identically on both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

from codedbft.schemes import Order, Scheme


@dataclass(frozen=True)
class Adversary:
    """The configured attack as the workers see it (seeded by ``(seed, step)``)."""

    attack: Any
    seed: int
    n: int
    assignment: Any = None

    @property
    def data_level(self) -> bool:
        """Label-flip style attacks poison the worker's own computation; no forging round."""
        return bool(getattr(self.attack, "data_level", False))


@dataclass
class Collected:
    """Replies to one order, assembled in the order's fixed worker order.

    ``stack``: ``(W, *shape)`` tensor, row i for ``workers[i]``; ``missing``: bool (W,), no reply in
    time (the row is zeros); ``bad``: bool (W,), a reply of the wrong shape or dtype (zeros too; the
    master adds non-finite rows and flags them). ``timings`` holds ``compute_ms`` (the slowest
    worker's own compute time), ``collect_ms``, ``forge_ms``, ...
    """

    workers: tuple[int, ...]
    stack: Any
    missing: np.ndarray | None = None
    bad: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)


class StackBuilder:
    """Copies replies into their fixed rows as they arrive (so the copy overlaps the slower workers'
    compute), checking shape and dtype first: a wrong reply is ``bad``, never an exception."""

    def __init__(self, count: int, shape: tuple[int, ...], dtype: Any):
        import torch

        # empty, not zeros: zero-filling (W, d) costs more than the copy; only unfilled rows are zeroed.
        self.stack = torch.empty((count, *shape), dtype=dtype)
        self._rows = self.stack.numpy()
        self.shape = tuple(shape)
        self.dtype = self._rows.dtype
        self.missing = np.ones(count, dtype=bool)
        self.bad = np.zeros(count, dtype=bool)

    def put(self, i: int, msg: Any) -> None:
        if not isinstance(msg, np.ndarray) or msg.shape != self.shape or msg.dtype != self.dtype:
            self.bad[i], self.missing[i] = True, False
            return
        self._rows[i] = msg  # the one copy: the (read-only, shared) reply -> its fixed row
        self.missing[i] = self.bad[i] = False

    def drop(self, i: int) -> None:
        self.missing[i], self.bad[i] = True, False

    def finish(self, workers: tuple[int, ...], timings: dict[str, float]) -> Collected:
        empty = self.missing | self.bad
        if empty.any():
            self.stack[__import__("torch").from_numpy(empty)] = 0
        return Collected(workers, self.stack, self.missing, self.bad, timings)


class Backend(Protocol):
    """``start`` once, then per step ``broadcast`` the model and ``execute`` the scheme's orders."""

    name: str

    def start(self, scheme: Scheme, spec: Any, dataset: Any = None) -> None: ...

    def broadcast(self, w: Any) -> Any: ...

    def execute(self, order: Order, w_handle: Any, step: int, byzantine: Sequence[int],
                adversary: Adversary | None, timeout_s: float, layout: tuple[tuple[int, ...], Any]) -> Collected:
        """Run ``order``; ``layout`` = (message shape, torch dtype) the scheme expects."""
        ...

    def close(self) -> None: ...


def task_coefficients(scheme: Scheme, order: Order) -> list[np.ndarray | None]:
    """Per-worker combination coefficients of an order, in its worker order (None: stacked or plain)."""
    if order.stacked:
        return [None] * len(order.tasks)
    return [scheme.coefficients(w, order.tasks[w]) for w in order.workers]


def split_coalition(workers: Sequence[int], byzantine: Sequence[int], present: Sequence[bool]) -> tuple[list[int], list[int]]:
    """Row indices of the present honest workers and of the present Byzantine ones (worker order)."""
    byz = set(byzantine)
    honest = [i for i, w in enumerate(workers) if present[i] and w not in byz]
    forgers = [i for i, w in enumerate(workers) if present[i] and w in byz]
    return honest, forgers
