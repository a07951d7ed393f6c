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
    """Raw replies to one order.

    Either ``stack`` (``(W, ...)`` tensor, all present: the local simulator builds it directly) or
    ``rows`` (one array per worker, None for a missing or late reply: the Ray backend).
    ``timings`` holds ``compute_ms`` (the slowest worker's own compute time), ``forge_ms``, ...
    """

    workers: tuple[int, ...]
    stack: Any = None
    rows: list[Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)


class Backend(Protocol):
    """``start`` once, then per step ``broadcast`` the model and ``execute`` the scheme's orders."""

    name: str

    def start(self, scheme: Scheme, spec: Any, dataset: Any = None) -> None: ...

    def broadcast(self, w: Any) -> Any: ...

    def execute(self, order: Order, w_handle: Any, step: int, byzantine: Sequence[int],
                adversary: Adversary | None, timeout_s: float) -> Collected: ...

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
