"""Numpy/torch interop: codes and decoders take either kind and return the kind they were given.

Conversions are zero-copy on the CPU (``torch.from_numpy`` / ``Tensor.numpy``); a CUDA tensor is
moved to the host once and the result moved back to the same device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def is_torch(x: Any) -> bool:
    """True when ``x`` is a torch tensor (checked without importing torch)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


@dataclass(frozen=True)
class ArrayKind:
    """Remembers whether an input was numpy or torch (and on which device) to convert results back."""

    torch: bool
    device: Any = None

    def wrap(self, arr: np.ndarray) -> Any:
        if not self.torch:
            return arr
        import torch

        t = torch.from_numpy(np.ascontiguousarray(arr))
        return t if self.device is None or str(self.device) == "cpu" else t.to(self.device)


def as_numpy(x: Any) -> tuple[np.ndarray, ArrayKind]:
    """Return a numpy view of ``x`` (no copy for numpy input or CPU tensors) and its kind."""
    if is_torch(x):
        kind = ArrayKind(torch=True, device=x.device)
        return x.detach().cpu().numpy(), kind
    return np.asarray(x), ArrayKind(torch=False)


def as_torch(x: Any):
    """Return a torch view of ``x`` (zero-copy from numpy) and its kind."""
    import torch

    if is_torch(x):
        return x, ArrayKind(torch=True, device=x.device)
    return torch.from_numpy(np.ascontiguousarray(x)), ArrayKind(torch=False)


def missing_mask(missing: Any, n: int) -> np.ndarray:
    """Normalise a ``missing=`` argument (None, bool mask of length n, or iterable of ids) to a bool (n,) mask."""
    if missing is None:
        return np.zeros(n, dtype=bool)
    if is_torch(missing):
        missing = missing.detach().cpu().numpy()
    arr = np.asarray(missing)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"missing mask must have shape ({n},), got {arr.shape}")
        return arr.copy()
    mask = np.zeros(n, dtype=bool)
    ids = arr.astype(int).ravel()
    if ids.size and (ids.min() < 0 or ids.max() >= n):
        raise ValueError(f"missing worker ids must be in [0, {n}), got {ids.tolist()}")
    mask[ids] = True
    return mask


def nonfinite_rows(messages: np.ndarray) -> np.ndarray:
    """Bool (n,) mask of rows holding any NaN or Inf, in one pass and without an (n, d) temporary.

    ``sum`` of a row is non-finite iff the row holds a non-finite value or overflows; an overflowing
    row of finite values is re-checked exactly so huge-but-finite messages are not mislabelled.
    """
    flat = messages.reshape(messages.shape[0], -1)
    if not np.issubdtype(flat.dtype, np.floating) and not np.issubdtype(flat.dtype, np.complexfloating):
        return np.zeros(flat.shape[0], dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        sums = flat.sum(axis=1, dtype=np.float64 if flat.dtype != np.complex128 else None)
    bad = ~np.isfinite(sums)
    for i in np.flatnonzero(bad):
        bad[i] = not np.isfinite(flat[i]).all()
    return bad
