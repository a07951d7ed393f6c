"""Small models for the runtime, initialised from a seed without touching the global RNG.

=============  ==========================================================================
``"logreg"``   multinomial logistic regression: ``Linear(D, C)`` on flattened inputs
``"mlp"``      ``Linear -> ReLU`` per hidden size (``hidden=(64,)``), then ``Linear(., C)``
``"cnn1d"``    two strided ``Conv1d`` + ReLU layers on a one-channel signal (MNIST-1D, or
               digits read as a length-64 signal), then ``Linear(., C)``
``"linear"``   least squares ``Linear(D, outputs, bias=False)``; ``bias=True`` adds the bias.
               No bias by default so the gradient ``1/b X^T (X W^T - Y)`` is linear in the data
               rows, as data-encoding codes need (Data, Song & Diggavi 2021), and the flat
               parameter vector matches ``Dataset.optimum``
=============  ==========================================================================

Every model carries ``codedbft_task`` (``"classification"`` | ``"regression"``) and
``codedbft_scalar_output`` (True when a regression target is a scalar, so the (b, 1) output is
squeezed to (b,)), which :class:`~codedbft.training.flat.FlatModel` reads to pick its loss.
No model has buffers (no batch norm), so the flat parameter vector is the whole model state.

Names are looked up in :data:`MODELS`, a :class:`~codedbft.registry.Registry` of builders (each
``builder(in_features, out, **options)``): an unknown name or option key raises ValueError listing
the valid ones. ``docs/training.md`` lists every model and option.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from codedbft.registry import Registry
from codedbft.training.datasets import Dataset

__all__ = ["build_model", "MODELS"]

#: The models by name; each entry builds the bare ``nn.Sequential`` from ``(in_features, out, **options)``.
MODELS: Registry[Any] = Registry("model")

#: What :func:`build_model` supplies itself, so not an option a user can give.
_SIZES = ("in_features", "out")


class _Squeeze(nn.Module):
    """(b, 1) -> (b,) for scalar regression targets."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.squeeze(-1)


class _AsSignal(nn.Module):
    """(b, L) or (b, *shape) -> (b, 1, prod(shape)): one input channel for Conv1d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], 1, -1)


def build_model(name: str, ds: Dataset, seed: int = 0, **opts: Any) -> nn.Module:
    """Build model ``name`` (one of :data:`MODELS`) sized for ``ds``, initialised from ``seed``.

    The PyTorch default initialisations run inside ``torch.random.fork_rng`` seeded with ``seed``,
    so the same ``(name, ds shapes, seed, opts)`` gives the same parameters in every process and
    the caller's global RNG stream is left untouched.

    Options: ``mlp``: ``hidden`` (sequence of ints, default ``(64,)``); ``cnn1d``: ``channels``
    (default 16), ``kernel_size`` (default 5); ``linear``: ``bias`` (default False); ``logreg``: none.
    An unknown ``name`` or option key raises ValueError listing the valid ones. ``name`` may also be an
    import path ``"pkg.mod:attr"``, an ``nn.Module`` or a factory (:mod:`codedbft.training.byo`).
    """
    if not isinstance(name, str) or ":" in name:  # a user's model: path, module or factory
        from codedbft.training.byo import build_user_model

        return build_user_model(name, ds, seed, **opts)
    MODELS.check_params(name, opts, fixed=_SIZES)
    builder = MODELS.get(name)
    in_features = int(math.prod(ds.input_shape))
    out = ds.output_dim
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builder(in_features, out, **opts)
    scalar = ds.task == "regression" and ds.y_train.dim() == 1
    if scalar:
        model.append(_Squeeze())
    model.codedbft_task = ds.task  # type: ignore[assignment]
    model.codedbft_scalar_output = scalar  # type: ignore[assignment]
    return model


@MODELS.register("logreg")
def _logreg(in_features: int, out: int) -> nn.Sequential:
    """Multinomial logistic regression: Linear(D, C) on flattened inputs (no options)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, out))


@MODELS.register("mlp")
def _mlp(in_features: int, out: int, hidden: Sequence[int] = (64,)) -> nn.Sequential:
    """Linear -> ReLU per hidden size, then Linear(., C) (hidden, default (64,))."""
    hidden = tuple(int(h) for h in hidden)
    if any(h < 1 for h in hidden):
        raise ValueError(f"hidden sizes must be >= 1, got {hidden}")
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, out))
    return nn.Sequential(*layers)


@MODELS.register("cnn1d")
def _cnn1d(in_features: int, out: int, channels: int = 16, kernel_size: int = 5) -> nn.Sequential:
    """Two strided Conv1d + ReLU layers on a one-channel signal, then Linear (channels, kernel_size)."""
    if channels < 1 or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"channels >= 1 and odd kernel_size >= 1 required, got {channels}, {kernel_size}")
    pad = kernel_size // 2
    # Two stride-2 convolutions quarter the length; the output length formula of Conv1d with
    # padding k//2 and stride 2 is ceil(L / 2).
    length = math.ceil(math.ceil(in_features / 2) / 2)
    return nn.Sequential(
        _AsSignal(),
        nn.Conv1d(1, channels, kernel_size, stride=2, padding=pad),
        nn.ReLU(),
        nn.Conv1d(channels, channels, kernel_size, stride=2, padding=pad),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(channels * length, out),
    )


@MODELS.register("linear")
def _linear(in_features: int, out: int, bias: bool = False) -> nn.Sequential:
    """Least squares Linear(D, outputs), no bias by default so the gradient is linear in the data (bias)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, out, bias=bool(bias)))
