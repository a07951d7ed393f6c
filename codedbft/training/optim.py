"""Optimizers on flat parameter vectors, with state that is plain tensors and numbers.

The runtime keeps the model as one vector ``w`` and receives one decoded gradient per step, so the
optimizer is a small state machine ``w_{t+1} = step(w_t, g_t)`` rather than a ``torch.optim``
object bound to module parameters. The update rules are exactly those of ``torch.optim.SGD`` and
``torch.optim.Adam`` (coupled L2 weight decay), so trajectories match PyTorch's:

SGD (heavy ball, Polyak 1964; PyTorch's convention)::

    g <- g + lambda w ;  m <- mu m + g  (m_1 = g) ;  w <- w - lr m        (mu = 0: plain SGD)

Adam (Kingma & Ba 2015)::

    g <- g + lambda w ;  m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
    w <- w - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)

Arithmetic runs in ``w``'s dtype (the gradient is cast to it), elementwise only, so a step is a
deterministic function of ``(state, w, g)``: the same on every process. ``step`` never modifies
``w`` or ``g`` in place and returns a new tensor.

Names are looked up in :data:`OPTIMIZERS`, a :class:`~codedbft.registry.Registry` of factories
``factory(lr, momentum=0, weight_decay=0, **options)``: an unknown name or option key raises
ValueError listing the valid ones. ``docs/training.md`` lists every optimizer and option.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from codedbft.registry import Registry

__all__ = ["Optimizer", "SGD", "Adam", "make_optimizer", "OPTIMIZERS"]

#: The optimizers by name; each entry is a factory ``factory(lr, momentum, weight_decay, **options)``.
OPTIMIZERS: Registry[Any] = Registry("optimizer")


class Optimizer:
    """Base: ``step(w, grad) -> w_new``; ``state_dict()`` / ``load_state_dict(sd)`` round-trip exactly."""

    name: str = ""

    def __init__(self, lr: float, weight_decay: float = 0.0) -> None:
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr > 0 required, got {lr}")
        if not (math.isfinite(weight_decay) and weight_decay >= 0):
            raise ValueError(f"weight_decay >= 0 required, got {weight_decay}")
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.t = 0  # steps taken

    def _decayed(self, w: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        if grad.shape != w.shape:
            raise ValueError(f"grad shape {tuple(grad.shape)} != w shape {tuple(w.shape)}")
        g = grad.to(dtype=w.dtype, device=w.device)
        return g.add(w, alpha=self.weight_decay) if self.weight_decay else g

    def step(self, w: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _hyper(self) -> dict[str, Any]:
        return {"lr": self.lr, "weight_decay": self.weight_decay}

    def _buffers(self) -> dict[str, torch.Tensor | None]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Hyper-parameters, step count and cloned buffers (``None`` before the first step)."""
        bufs = {k: (None if v is None else v.detach().clone()) for k, v in self._buffers().items()}
        return {"name": self.name, "t": self.t, **self._hyper(), **bufs}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; buffers are cloned so the dict can be reused."""
        if sd.get("name") != self.name:
            raise ValueError(f"state is for optimizer {sd.get('name')!r}, not {self.name!r}")
        self.t = int(sd["t"])
        for k in self._hyper():
            setattr(self, k, sd[k])
        for k in self._buffers():
            v = sd[k]
            setattr(self, k, None if v is None else v.detach().clone())


class SGD(Optimizer):
    """SGD with optional heavy-ball momentum and L2 weight decay (``torch.optim.SGD`` rule)."""

    name = "sgd"

    def __init__(self, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"0 <= momentum < 1 required, got {momentum}")
        self.momentum = float(momentum)
        self.buf: torch.Tensor | None = None

    def _hyper(self) -> dict[str, Any]:
        return {**super()._hyper(), "momentum": self.momentum}

    def _buffers(self) -> dict[str, torch.Tensor | None]:
        return {"buf": self.buf}

    def step(self, w: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        g = self._decayed(w, grad)
        if self.momentum:
            # torch.optim.SGD seeds the buffer with the first gradient (no (1 - dampening) factor).
            self.buf = g.clone() if self.buf is None else (self.buf * self.momentum).add_(g)
            g = self.buf
        self.t += 1
        return w.add(g, alpha=-self.lr)


class Adam(Optimizer):
    """Adam with bias correction and coupled L2 weight decay (``torch.optim.Adam`` rule)."""

    name = "adam"

    def __init__(
        self,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr, weight_decay)
        b1, b2 = betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"0 <= beta1, beta2 < 1 required, got {betas}")
        if not eps > 0:
            raise ValueError(f"eps > 0 required, got {eps}")
        self.beta1, self.beta2, self.eps = float(b1), float(b2), float(eps)
        self.m: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def _hyper(self) -> dict[str, Any]:
        return {**super()._hyper(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def _buffers(self) -> dict[str, torch.Tensor | None]:
        return {"m": self.m, "v": self.v}

    def step(self, w: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        g = self._decayed(w, grad)
        if self.m is None or self.v is None:
            self.m, self.v = torch.zeros_like(w), torch.zeros_like(w)
        self.t += 1
        self.m = self.m.lerp(g, 1.0 - self.beta1)
        self.v = (self.v * self.beta2).addcmul_(g, g, value=1.0 - self.beta2)
        bc1 = 1.0 - self.beta1**self.t
        bc2 = 1.0 - self.beta2**self.t
        denom = (self.v.sqrt() / math.sqrt(bc2)).add_(self.eps)
        return w.addcdiv(self.m, denom, value=-(self.lr / bc1))


@OPTIMIZERS.register("sgd")
def _sgd(lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> SGD:
    """SGD with optional heavy-ball momentum and L2 weight decay (torch.optim.SGD rule)."""
    return SGD(lr, momentum=momentum, weight_decay=weight_decay)


@OPTIMIZERS.register("adam")
def _adam(
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> Adam:
    """Adam with bias correction and coupled L2 weight decay (betas, eps; momentum, if non-zero, is beta1)."""
    b1, b2 = tuple(betas)
    if momentum:
        # The one momentum knob of the CLI and RunConfig means beta1 for Adam.
        b1 = momentum
    return Adam(lr, betas=(b1, b2), eps=eps, weight_decay=weight_decay)


def make_optimizer(
    name: str, lr: float, momentum: float = 0.0, weight_decay: float = 0.0, **opts: Any
) -> Optimizer:
    """Build optimizer ``name`` (one of :data:`OPTIMIZERS`: ``"sgd"`` or ``"adam"``).

    For Adam, ``momentum`` (if non-zero) is beta1; ``opts``: ``betas``, ``eps``; SGD has no other
    option. An unknown ``name`` or option key raises ValueError listing the valid ones.
    """
    OPTIMIZERS.check_params(name, opts, fixed=("lr",))
    return OPTIMIZERS.get(name)(lr, momentum=momentum, weight_decay=weight_decay, **opts)
