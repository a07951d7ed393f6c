"""What a backend does for the master: run one self-describing :class:`~codedbft.schemes.Order`.

An order carries everything needed to run it (per worker: the partitions and the combination
coefficients, or an operation and its payload; the reply shape and dtype), so a backend needs
neither the scheme nor the master. Both backends run the same worker code
(:mod:`codedbft.cluster.worker`) and the same forging round (:mod:`codedbft.cluster.adversary`);
they differ only in where gradients are computed and how replies travel. ``execute`` returns the
replies in the order's fixed worker order (never in arrival order), so the master combines them
identically on both.

Backends are registered by name in :data:`BACKENDS`; a new backend is one module that decorates
its class with ``@BACKENDS.register("name")`` (the class takes ``from_config(config)``), plus its
module name in the registry's plugin list below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from codedbft.cluster.adversary import Coalition
from codedbft.registry import Registry
from codedbft.schemes import Order

#: backends by name ("local", "ray"); each entry is a class with ``from_config(config)``
BACKENDS: Registry[Any] = Registry("backend", plugins=("codedbft.cluster.local", "codedbft.cluster.ray_backend"))


@dataclass
class Collected:
    """Replies to one order, assembled in the order's fixed worker order.

    ``stack``: ``(W, *shape)`` tensor, row i for ``workers[i]``; ``missing``: bool (W,), no reply in
    time (the row is zeros); ``bad``: bool (W,), a reply of the wrong shape, dtype or type (zeros
    too; the master adds non-finite rows and flags them). ``timings`` holds ``compute_ms`` (the
    slowest worker's own compute time), ``collect_ms``, ``forge_ms``, ...; ``info`` the forging
    round's diagnostics (``forgers``, ``forge_failed``).
    """

    workers: tuple[int, ...]
    stack: Any
    missing: np.ndarray | None = None
    bad: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


class StackBuilder:
    """Copies replies into their fixed rows as they arrive (so the copy overlaps the slower workers'
    compute), checking type, shape and dtype first: a wrong reply is ``bad``, never an exception."""

    def __init__(self, count: int, shape: tuple[int, ...], dtype: Any, stack: torch.Tensor | None = None):
        # empty, not zeros: zero-filling (W, d) costs more than the copy; only unfilled rows are zeroed.
        self.stack = torch.empty((count, *shape), dtype=dtype) if stack is None else stack
        self._rows = self.stack.numpy()
        self.shape = tuple(shape)
        self.dtype = self._rows.dtype
        self.missing = np.ones(count, dtype=bool)
        self.bad = np.zeros(count, dtype=bool)

    @classmethod
    def around(cls, stack: torch.Tensor) -> "StackBuilder":
        """A builder whose every row is already filled by ``stack`` itself (no copy: the simulator)."""
        out = cls(stack.shape[0], tuple(stack.shape[1:]), stack.dtype, stack=stack)
        out.missing[:] = False
        return out

    def put(self, i: int, msg: Any) -> None:
        if isinstance(msg, torch.Tensor) and msg.device.type == "cpu":
            try:
                msg = msg.detach().numpy()
            except (TypeError, RuntimeError):  # bfloat16, sparse, conjugate-bit: no numpy view, a bad reply
                msg = None
        if not isinstance(msg, np.ndarray) or msg.shape != self.shape or msg.dtype != self.dtype:
            self.bad[i], self.missing[i] = True, False
            return
        self._rows[i] = msg  # the one copy: the (read-only, shared) reply -> its fixed row
        self.missing[i] = self.bad[i] = False

    def drop(self, i: int) -> None:
        self.missing[i], self.bad[i] = True, False

    def finish(self, workers: tuple[int, ...], timings: dict[str, float], info: dict[str, Any] | None = None) -> Collected:
        empty = self.missing | self.bad
        if empty.any():
            self.stack[torch.from_numpy(empty)] = 0
        return Collected(workers, self.stack, self.missing, self.bad, timings, dict(info or {}))


class Backend(Protocol):
    """``start`` once, then per step ``broadcast`` the model and ``execute`` the scheme's orders."""

    name: str

    @classmethod
    def from_config(cls, config: Any) -> "Backend": ...

    def start(self, n: int, spec: Any, dataset: Any = None, programs: list[Any] | None = None) -> None:
        """Start ``n`` workers from the worker ``spec``; ``programs[i]`` is worker i's program for
        operation orders (data-encoding schemes), shipped once."""
        ...

    def broadcast(self, w: Any) -> Any: ...

    def execute(self, order: Order, w_handle: Any, coalition: Coalition | None, timeout_s: float,
                quorum: Any = None) -> Collected:
        """Run ``order`` for step ``order.step`` (Byzantine workers of ``coalition`` forge or poison);
        with a :class:`~codedbft.schemes.Quorum`, stop waiting once the replies in hand meet it."""
        ...

    def worker_state(self) -> dict[Any, Any]:
        """The workers' own state (worker momentum, ``{(worker, partition): (step, m)}``) for checkpoints."""
        ...

    def load_worker_state(self, state: dict[Any, Any]) -> None:
        """Put :meth:`worker_state`'s output back (resume), after :meth:`start`."""
        ...

    def close(self) -> None: ...


def make_backend(config: Any) -> Any:
    """The backend ``config.backend`` names, built from the run configuration."""
    return BACKENDS.get(config.backend).from_config(config)
