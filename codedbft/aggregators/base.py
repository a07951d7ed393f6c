"""The aggregator base class: input kinds, checks, batching and the non-finite guard every rule shares.

A rule sees ``x`` of shape ``(..., n, d)`` and returns ``(..., d)``. The base flattens the leading
dimensions into one batch axis ``B`` (a view when ``x`` is contiguous), so subclasses implement
``_aggregate(x3: (B, n, d), **call_args) -> (B, d)`` once, vectorised over ``B`` and ``d``, on torch.

Input kinds are handled here once, as the codes in ``codedbft.encoders`` do: a numpy array is
viewed as a tensor without a copy (``torch.from_numpy``) and the result handed back as a numpy
array of the same dtype; a torch tensor keeps its dtype and device. Both kinds run the same torch
code, so a numpy call returns exactly the bytes of the torch call on the same values. Anything else
(a list, a string, a scalar) raises ``TypeError``; an array of the wrong shape or dtype raises
``ValueError``.

Arguments of one call (Zeno's parameters and loss oracle, ByGARS's auxiliary gradient) travel as
keyword arguments ``__call__ -> _forward -> _aggregate`` and are never stored on the object, so an
aggregator holds only its configuration and the state it genuinely carries across calls
(``state_dict``), and stays picklable and safe to reuse.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch


def _check_f(f: int, name: str) -> int:
    if not isinstance(f, int) or isinstance(f, bool) or f < 0:
        raise ValueError(f"{name}: f must be an int >= 0, got {f!r}")
    return f


def as_tensor_input(x: Any, name: str, what: str = "x") -> tuple[torch.Tensor, bool]:
    """``x`` as a torch tensor, and whether it came as numpy (so the caller converts results back).

    A numpy array becomes a zero-copy view, except that a read-only or negatively strided array is
    copied once (``torch.from_numpy`` refuses the latter and warns on the former; the values are
    the same either way). TypeError for anything that is neither a numpy array nor a torch tensor;
    ValueError for a numpy dtype torch has no floating type for (ints and bools pass through to
    the rule's own dtype check).
    """
    if isinstance(x, torch.Tensor):
        return x, False
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "fiub" or x.dtype == np.longdouble:  # torch has no such dtype
            raise ValueError(f"{name}: {what} must hold float16/32/64 values, got a numpy array of {x.dtype}")
        if not x.flags.writeable or any(st < 0 for st in x.strides):
            x = np.array(x, order="C")
        return torch.from_numpy(x), True
    raise TypeError(f"{name}: {what} must be a numpy array or a torch tensor, got {type(x).__name__}")


def prepare_stack(op: Any, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """The checks and the non-finite guard shared by rules and pre-aggregators (``op``: one of them).

    ``x`` ``(..., n, d)`` -> ``(x3 (B, n, d), lead)``: shape and dtype checked, ``op._check_n(n)``,
    leading dims flattened (a view when contiguous), NaN/Inf entries of bad rows replaced by 0 (one
    copy, only when such rows exist) and counted in ``op.last_info`` / ``op.nonfinite_rows_total``.
    """
    if x.dim() < 2:
        raise ValueError(f"{op.name}: expected shape (..., n, d), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{op.name}: expected floating-point values, got {str(x.dtype).removeprefix('torch.')}")
    n, d = x.shape[-2], x.shape[-1]
    if d == 0:  # (..., n, 0) cannot be flattened to (B, n, d): a bad shape, not a RuntimeError
        raise ValueError(f"{op.name}: expected shape (..., n, d) with d >= 1, got {tuple(x.shape)}")
    op._check_n(n)
    lead = tuple(x.shape[:-2])
    x3 = x.detach().reshape(-1, n, d)
    if not x3.is_contiguous():
        x3 = x3.contiguous()
    op.last_info = {}
    count = int(nonfinite_rows(x3).sum())
    if count:
        x3 = torch.where(torch.isfinite(x3), x3, torch.zeros((), dtype=x3.dtype, device=x3.device))
    op.last_info["nonfinite_rows"] = count
    op.nonfinite_rows_total += count
    return x3, lead


def nonfinite_rows(x3: torch.Tensor) -> torch.Tensor:
    """Bool ``(B, n)``: rows holding a NaN or an Inf.

    One reduction pass: a row sum is non-finite iff the row holds a non-finite value or overflows;
    only rows whose sum is non-finite are re-checked elementwise, so huge-but-finite rows are kept.
    """
    bad = ~torch.isfinite(x3.sum(dim=-1))
    if bool(bad.any()):
        idx = bad.nonzero(as_tuple=True)
        bad[idx] = ~torch.isfinite(x3[idx]).all(dim=-1)
    return bad


class Aggregator:
    """Base of every robust rule: ``agg(x)`` maps ``(..., n, d)`` to ``(..., d)``, dtype and device kept.

    ``x`` is a numpy array or a torch tensor; the result is of the same kind (numpy: same dtype;
    torch: same dtype and device). TypeError for any other ``x``, ValueError for a bad shape, a
    non-floating dtype or too small an n (see the module docstring). ``last_info`` and
    ``state_dict()`` hold torch tensors whatever the input kind.

    Subclasses set ``name`` (the registered name, see docs/aggregators.md), implement ``min_n()``
    (the rule's requirement on n, checked at call time) and ``_aggregate``, and are registered with
    ``@AGGREGATORS.register()`` (``codedbft.aggregators.registry``). A rule that takes per-call
    arguments lists them in ``call_args`` and receives them as keyword arguments of ``_aggregate``
    (resolved, e.g. against constructor defaults, in an override of ``_forward``).

    Worker rows holding NaN or Inf are Byzantine by definition: their non-finite entries are
    replaced by 0 (one copy of ``x``, only when such rows exist), which keeps every rule's guarantee
    (a zero is just another Byzantine value) and never lets a NaN reach a comparison. They are
    counted in ``last_info["nonfinite_rows"]`` and ``nonfinite_rows_total``.

    Attributes:
        f: number of Byzantine inputs the rule tolerates.
        stateful: True when outputs depend on earlier calls (the state is ``state_dict()``); a class
            attribute, except where a composite rule derives it from its parts (``Hierarchical``).
        call_args: keyword arguments a call accepts besides ``x`` (empty for most rules).
        last_info: diagnostics of the latest call (selected rows, iterations, ...).
        nonfinite_rows_total: rows with NaN/Inf seen since construction (or ``reset()``).
    """

    name: ClassVar[str] = "aggregator"
    stateful: bool = False
    call_args: ClassVar[tuple[str, ...]] = ()

    def __init__(self, f: int = 0) -> None:
        self.f = _check_f(f, self.name)
        self.last_info: dict[str, Any] = {}
        self.nonfinite_rows_total = 0

    # -- requirements -------------------------------------------------------------------------
    def min_n(self) -> int:
        """Smallest number of inputs the rule accepts for its ``f``."""
        return 1

    def requirement(self) -> str:
        """The constraint on n as text, e.g. ``"n >= 2f+1"``."""
        return "n >= 1"

    def _check_n(self, n: int) -> None:
        if n < self.min_n():
            raise ValueError(
                f"{self.name} needs {self.requirement()} (f={self.f}, so n >= {self.min_n()}), got n={n}"
            )

    # -- call -----------------------------------------------------------------------------------
    def __call__(self, x: Any, /, **call_args: Any) -> Any:
        """Aggregate ``x`` ``(..., n, d)`` (numpy or torch) to ``(..., d)`` of the same kind."""
        t, from_numpy = as_tensor_input(x, self.name)
        unknown = sorted(set(call_args) - set(self.call_args))
        if unknown:
            # TypeError, as Python itself raises for an unexpected keyword argument
            raise TypeError(f"{self.name}: unknown call argument{'s' if len(unknown) > 1 else ''} {unknown}; "
                            f"accepted: {list(self.call_args) if self.call_args else 'none'}")
        out = self._forward(t, **call_args)
        return out.numpy() if from_numpy else out

    def _forward(self, x: torch.Tensor, **call_args: Any) -> torch.Tensor:
        """The torch-level call: checks, batching, ``_aggregate``. Rules with per-call arguments or
        state updated from the output extend this (never ``__call__``, which only converts kinds)."""
        x3, lead = self._prepare(x)
        out = self._aggregate(x3, **call_args)
        return out.reshape(*lead, x3.shape[-1])

    def _prepare(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        return prepare_stack(self, x)

    def _aggregate(self, x3: torch.Tensor, **call_args: Any) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- state (stateless by default) -----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The rule's state across calls (empty for stateless rules): plain values and tensor
        copies, picklable, sharing nothing with the live object."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned into this object (copies: ``state`` stays reusable)."""

    def reset(self) -> None:
        """Forget any state carried across calls (and the non-finite counter)."""
        self.nonfinite_rows_total = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(f={self.f})"


class FRule(Aggregator):
    """A rule whose requirement is ``n >= 2f+1`` (most rules of docs/aggregators.md)."""

    def min_n(self) -> int:
        return 2 * self.f + 1

    def requirement(self) -> str:
        return "n >= 2f+1"


def mean_rows(x3: torch.Tensor, keep: torch.Tensor, m: int) -> torch.Tensor:
    """Mean of the rows ``keep`` (bool ``(B, n)``, ``m`` True per item) of ``x3``: one batched matvec."""
    w = keep.to(x3.dtype) / m
    return torch.bmm(w.unsqueeze(1), x3).squeeze(1)
