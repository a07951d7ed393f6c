"""A model seen as a function of one flat parameter vector: losses and per-partition gradients.

Coded schemes need, for a model vector ``w in R^d`` and ``k`` data partitions ``(X_j, y_j)`` of
``b`` samples each, the matrix of partition gradients

    G[j] = grad_w  (1/b) sum_{i in partition j} loss(f(w, x_i), y_i)        (k, d)

(DRACO, Chen et al. 2018; DETOX, Rajput et al. 2019; ByzShield, Konstantinidis & Ramamoorthy
2021). The parameters are laid out in ``model.named_parameters()`` order, each flattened
row-major, so ``G[j]`` is a fixed function of ``(w, X_j, y_j)``.

Bit-exactness. Repetition codes decide by majority vote over *hashes* of the messages, so the
bytes of ``G[j]`` must not depend on which other partitions share the call, on ``j``'s position,
or on the process computing it (given the same torch build, thread count and
``torch.use_deterministic_algorithms(True)``). Measured on torch 2.13 CPU (1 and 2 threads; digits
logreg/mlp/cnn1d, MNIST-1D cnn1d, least squares; ``benchmarks/bench_training.py`` re-measures it):

* batching the partitions with ``torch.func.vmap`` turns the products into batched kernels whose
  float-addition order depends on the batch size ``k`` and the thread count (and, for the
  least-squares model, even on the partition's position): with 2 threads every model's rows
  differ from the one-partition result in the low bits (up to ~2e-7 absolute); with 1 thread the
  matmul-only models happened to match but the convolutional one did not. vmap therefore does NOT
  guarantee bit-identity;
* even one-by-one, a partition read from a 12-byte-misaligned slice of a larger buffer gives other
  bits than the same data freshly allocated (BLAS picks another code path for the matmul-only
  models), so every partition is first copied into a fresh, aligned, contiguous buffer (``b`` rows,
  small next to the gradient itself).

Hence the default ``batching="loop"`` computes partitions one by one, identical shapes and
allocation each time; a partition's gradient then has the same bytes alone, in any batch, at any
position and in any process (checked in ``tests/test_training.py``). It costs a Python-level
autograd call per partition: as fast as the textbook ``backward()`` loop on the module, and
3-5x slower than vmap for these small models (k = 15, b = 32).
``batching="vmap"`` is offered for aggregation-only schemes where bit-identity is not needed.
"""

from __future__ import annotations

import copy
import math
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call

__all__ = ["FlatModel", "LOSSES"]

LOSSES = ("cross_entropy", "mse")


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(1/b) sum_i 1/2 ||out_i - y_i||^2``: the least-squares loss whose gradient is linear in data."""
    sq = (out - y).square()
    if sq.dim() > 1:
        sq = sq.sum(dim=tuple(range(1, sq.dim())))
    return 0.5 * sq.mean()


def _cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(out, y)


class FlatModel:
    """Wrap ``model`` so that every method takes the flat parameter vector ``w`` of shape ``(d,)``.

    ``loss`` is ``"cross_entropy"`` (mean over the batch, integer labels) or ``"mse"`` (mean over the
    batch of half the squared error summed over outputs); ``None`` picks cross entropy for models
    built for classification and mse for regression (read from ``model.codedbft_task``, set by
    :func:`~codedbft.training.models.build_model`).

    The module itself is never mutated: gradients run on a private copy whose parameters are views
    of one flat buffer (set to ``w`` at each call), losses and predictions substitute ``w`` with
    ``torch.func.functional_call``. One ``FlatModel`` thus serves any ``w``, in float32 or float64
    and on any device (inputs are cast and moved to ``w``'s; float64 references are computed that
    way). Not thread-safe: use one per thread (Ray actors each hold their own).
    """

    def __init__(self, model: nn.Module, loss: str | None = None, batching: str = "loop") -> None:
        if loss is None:
            task = getattr(model, "codedbft_task", None)
            if task is None:
                raise ValueError("loss=None needs a model from build_model (codedbft_task); pass loss=")
            loss = "cross_entropy" if task == "classification" else "mse"
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if batching not in ("loop", "vmap"):
            raise ValueError(f"batching must be 'loop' or 'vmap', got {batching!r}")
        if any(True for _ in model.buffers()):
            raise ValueError("models with buffers (e.g. batch norm) are not supported: state must be w alone")
        self.model = model
        self.loss_name = loss
        self.batching = batching
        self._loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = (
            _cross_entropy if loss == "cross_entropy" else _mse
        )
        named = [(n, p) for n, p in model.named_parameters()]
        self.names: tuple[str, ...] = tuple(n for n, _ in named)
        self.shapes: tuple[torch.Size, ...] = tuple(p.shape for _, p in named)
        self.numels: tuple[int, ...] = tuple(math.prod(s) for s in self.shapes)
        self.d: int = int(sum(self.numels))
        self._init = torch.cat([p.detach().reshape(-1) for _, p in named]).to(torch.float32)
        self._vmapped = None
        # (dtype, device) -> (module copy whose parameters are views of buf, buf, parameters in order)
        self._engines: dict[tuple[torch.dtype, torch.device], tuple[nn.Module, torch.Tensor, list[nn.Parameter]]] = {}

    def __getstate__(self) -> dict:
        # The vmapped closure does not pickle and the engines are caches: rebuild both on arrival
        # (Ray ships a FlatModel to each actor this way).
        state = self.__dict__.copy()
        state["_vmapped"], state["_engines"] = None, {}
        return state

    # ---------------------------------------------------------------- parameter vector
    def init_params(self) -> torch.Tensor:
        """The module's (seeded) initial parameters as a fresh float32 ``(d,)`` tensor."""
        return self._init.clone()

    def unflatten(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of ``w`` shaped as the module's parameters (no copy)."""
        if w.dim() != 1 or w.shape[0] != self.d:
            raise ValueError(f"w must have shape ({self.d},), got {tuple(w.shape)}")
        return {n: t.view(s) for n, t, s in zip(self.names, torch.split(w, self.numels), self.shapes)}

    def flatten(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Inverse of :meth:`unflatten`."""
        return torch.cat([params[n].reshape(-1) for n in self.names])

    # ---------------------------------------------------------------- forward pieces
    def _prep(self, w: torch.Tensor, X: torch.Tensor, y: torch.Tensor | None):
        X = X.to(device=w.device, dtype=w.dtype)
        if y is not None:
            y = y.to(device=w.device, dtype=torch.int64 if self.loss_name == "cross_entropy" else w.dtype)
        return X, y

    def _loss_of(self, w: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(self.model, self.unflatten(w), (X,))
        return self._loss(out, y)

    def loss_fn(self, w: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Differentiable scalar mean loss (a tensor), composable with ``torch.func`` (grad, vmap)."""
        X, y = self._prep(w, X, y)
        return self._loss_of(w, X, y)

    def predict(self, w: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """Model output for inputs ``X`` ``(N, *input_shape)``: logits, or regression predictions."""
        with torch.no_grad():
            return functional_call(self.model, self.unflatten(w), (X.to(device=w.device, dtype=w.dtype),))

    def loss(self, w: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> float:
        """Mean loss over the samples of ``(X, y)``."""
        X, y = self._prep(w, X, y)
        with torch.no_grad():
            return float(self._loss_of(w, X, y))

    def accuracy(self, w: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> float | None:
        """Fraction of correct argmax predictions; ``None`` for scalar regression targets.

        One-hot regression targets (``digits-linear``) count as correct when the argmax of the
        prediction is the argmax of the target.
        """
        if self.loss_name == "mse" and y.dim() < 2:
            return None
        pred = self.predict(w, X).argmax(dim=-1)
        labels = (y.argmax(dim=-1) if y.dim() >= 2 else y).to(pred.device)
        return float((pred == labels).to(torch.float64).mean())

    # ---------------------------------------------------------------- gradients
    def partition_gradient(self, w: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Gradient ``(d,)`` of the mean loss over one partition ``(X, y)``; same bits as in a batch."""
        if self.batching == "vmap":
            return self.partition_gradients(w, X.unsqueeze(0), y.unsqueeze(0))[0]
        out = torch.empty(self.d, dtype=w.dtype, device=w.device)
        module, params = self._load(w)
        self._grad_into(module, params, w, X, y, out)
        return out

    def partition_gradients(self, w: torch.Tensor, X_parts: torch.Tensor, y_parts: torch.Tensor) -> torch.Tensor:
        """Gradients ``(k, d)`` of the mean loss over each partition.

        ``X_parts``: ``(k, b, *input_shape)``, ``y_parts``: ``(k, b)`` (or ``(k, b, outputs)``).
        Row ``j`` is bitwise equal to ``partition_gradient(w, X_parts[j], y_parts[j])`` whatever
        the other rows are (with the default ``batching="loop"``).
        """
        if X_parts.shape[0] != y_parts.shape[0] or X_parts.shape[1] != y_parts.shape[1]:
            raise ValueError(
                f"X_parts (k, b, ...) and y_parts (k, b, ...) disagree: {tuple(X_parts.shape)} vs {tuple(y_parts.shape)}"
            )
        k = X_parts.shape[0]
        if self.batching == "vmap":
            return self._vmap_grads(w, X_parts, y_parts)
        G = torch.empty(k, self.d, dtype=w.dtype, device=w.device)
        module, params = self._load(w)
        for j in range(k):  # over partitions only (k ~ n workers), never over samples or coordinates
            self._grad_into(module, params, w, X_parts[j], y_parts[j], G[j])
        return G

    def _load(self, w: torch.Tensor) -> tuple[nn.Module, list[nn.Parameter]]:
        """A private copy of the module whose parameters are views of one flat buffer, set to ``w``.

        Autograd on an ordinary module avoids ``functional_call``'s per-call parameter swapping
        (about 1.5x faster for the small models here, same bytes); one copy per (dtype, device).
        Not thread-safe: concurrent calls on one FlatModel would share the buffer.
        """
        if w.dim() != 1 or w.shape[0] != self.d:
            raise ValueError(f"w must have shape ({self.d},), got {tuple(w.shape)}")
        key = (w.dtype, w.device)
        if key not in self._engines:
            module = copy.deepcopy(self.model).to(device=w.device)
            buf = torch.zeros(self.d, dtype=w.dtype, device=w.device)
            for name, view in self.unflatten(buf).items():
                owner, _, attr = name.rpartition(".")
                setattr(module.get_submodule(owner), attr, nn.Parameter(view))
            self._engines[key] = (module, buf, [module.get_parameter(n) for n in self.names])
        module, buf, params = self._engines[key]
        with torch.no_grad():
            buf.copy_(w)
        return module, params

    def _grad_into(
        self,
        module: nn.Module,
        params: list[nn.Parameter],
        w: torch.Tensor,
        X: torch.Tensor,
        y: torch.Tensor,
        out: torch.Tensor,
    ) -> None:
        # A fresh allocation gives every partition the same alignment however it was sliced.
        X, y = self._prep(w, X, y)
        X, y = X.clone(memory_format=torch.contiguous_format), y.clone()
        with torch.enable_grad():
            grads = torch.autograd.grad(self._loss(module(X), y), params)
        torch.cat([g.reshape(-1) for g in grads], out=out)

    def _vmap_grads(self, w: torch.Tensor, X_parts: torch.Tensor, y_parts: torch.Tensor) -> torch.Tensor:
        if self._vmapped is None:
            self._vmapped = torch.func.vmap(torch.func.grad(self._loss_of), in_dims=(None, 0, 0))
        X, y = self._prep(w, X_parts, y_parts)
        return self._vmapped(w.detach(), X, y)
