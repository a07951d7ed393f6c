"""A user's own model, data and code, as a module importable on every worker (``docs/byo.md``).

* :class:`TinyNet`: an ``nn.Module`` class, a model factory as it stands (``in_features`` and ``out``
  are filled in by name); :func:`make_net` the same model from the runtime dataset ``ds``;
* :func:`blobs`: Gaussian blobs as ``(X_train, y_train, X_test, y_test)`` tensors;
  :class:`BlobsDataset` the same rows as a map-style ``torch.utils.data.Dataset``;
* :class:`Triplicate`: a hand-written repetition code (groups of 3 copies) with its own bitwise
  majority decoder :class:`BitwiseVote`; :func:`triplicate` its factory of ``n``.

::

    codedbft train --model codedbft.examples.custom:TinyNet --dataset codedbft.examples.custom:blobs \\
        --scheme code --scheme-param code=codedbft.examples.custom:triplicate --workers 6 --byzantine 1
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from codedbft.decoders.base import DecodeResult
from codedbft.encoders.base import Code


class TinyNet(nn.Module):
    """``Linear -> Tanh -> Linear`` on flattened inputs."""

    def __init__(self, in_features: int, out: int, hidden: int = 16):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.Tanh(), nn.Linear(hidden, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def make_net(ds: Any, hidden: int = 16) -> TinyNet:
    """:class:`TinyNet` sized from the runtime dataset."""
    return TinyNet(int(np.prod(ds.input_shape)), ds.output_dim, hidden)


def blobs(seed: int = 0, n_train: int = 480, n_test: int = 120, classes: int = 3, features: int = 8):
    """``classes`` Gaussian blobs in ``features`` dimensions: four tensors, labels int64."""
    rng = np.random.default_rng([seed, 0xB10B])
    centres = 2.0 * rng.standard_normal((classes, features))
    y = rng.integers(0, classes, n_train + n_test)
    X = (centres[y] + rng.standard_normal((n_train + n_test, features))).astype(np.float32)
    X, y = torch.from_numpy(X), torch.from_numpy(y)
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


class BlobsDataset(torch.utils.data.Dataset):
    """One split of :func:`blobs` as a map-style torch dataset: items ``(x, int label)``."""

    def __init__(self, train: bool = True, seed: int = 0, **kw: Any):
        Xtr, ytr, Xte, yte = blobs(seed, **kw)
        self.X, self.y = (Xtr, ytr) if train else (Xte, yte)

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def __getitem__(self, i: int):
        return self.X[i], int(self.y[i])


class BitwiseVote:
    """In each group of ``r`` copies, the value more than half of the present copies sent bit for bit;
    the others are flagged. Returns the sum of the group values (what a code's decoder returns)."""

    def __init__(self, n: int, r: int):
        self.n, self.r, self.k = n, r, n // r

    def decode(self, messages: torch.Tensor, missing: Any = None) -> DecodeResult:
        t0 = time.perf_counter()
        missing = np.zeros(self.n, dtype=bool) if missing is None else np.asarray(missing, dtype=bool)
        values, flagged, undecided = [], [], []
        for j in range(self.k):
            members = [i for i in range(j * self.r, (j + 1) * self.r) if not missing[i]]
            for cand in members:
                agree = [i for i in members if torch.equal(messages[i], messages[cand])]
                if 2 * len(agree) > len(members):
                    values.append(messages[cand])
                    flagged += [i for i in members if i not in agree]
                    break
            else:  # no strict majority (or nobody replied)
                undecided.append(j)
                values.append(torch.zeros_like(messages[0]))
        reason = f"no majority in groups {undecided}" if undecided else None
        return DecodeResult.finish(torch.stack(values).sum(0), sorted(flagged), {"undecided": len(undecided)},
                                   t0=t0, erasures=int(missing.sum()), nonfinite=0, reason=reason)


class Triplicate(Code):
    """Every partition computed by 3 consecutive workers: k = n / 3, corrects s = 1 liar per group."""

    def __init__(self, n: int):
        if n % 3:
            raise ValueError(f"Triplicate needs 3 | n, got n={n}")
        self.n, self.k, self.s = n, n // 3, 1

    @property
    def assignment(self) -> tuple[tuple[int, ...], ...]:
        return tuple((i // 3,) for i in range(self.n))

    @property
    def B(self) -> np.ndarray:  # noqa: N802
        B = np.zeros((self.n, self.k))
        B[np.arange(self.n), np.arange(self.n) // 3] = 1.0
        return B

    def _build_decoder(self) -> BitwiseVote:
        return BitwiseVote(self.n, 3)


def triplicate(n: int) -> Triplicate:
    """``--scheme code --scheme-param code=codedbft.examples.custom:triplicate``: the code for n workers."""
    return Triplicate(n)
