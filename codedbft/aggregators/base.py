"""The aggregator base class: input checks, batching and the non-finite guard every rule shares.

A rule sees ``x`` of shape ``(..., n, d)`` and returns ``(..., d)``. The base flattens the leading
dimensions into one batch axis ``B`` (a view when ``x`` is contiguous), so subclasses implement
``_aggregate(x3: (B, n, d)) -> (B, d)`` once, vectorised over ``B`` and ``d``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch


def _check_f(f: int, name: str) -> int:
    if not isinstance(f, int) or isinstance(f, bool) or f < 0:
        raise ValueError(f"{name}: f must be an int >= 0, got {f!r}")
    return f


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

    Subclasses set ``name`` (the aggregators.md name), implement ``min_n()`` (the rule's requirement
    on n, checked at call time) and ``_aggregate``. Worker rows holding NaN or Inf are Byzantine by
    definition: their non-finite entries are replaced by 0 (one copy of ``x``, only when such rows
    exist), which keeps every rule's guarantee (a zero is just another Byzantine value) and never
    lets a NaN reach a comparison. They are counted in ``last_info["nonfinite_rows"]`` and
    ``nonfinite_rows_total``.

    Attributes:
        f: number of Byzantine inputs the rule tolerates.
        last_info: diagnostics of the latest call (selected rows, iterations, ...).
        nonfinite_rows_total: rows with NaN/Inf seen since construction (or ``reset()``).
    """

    name: ClassVar[str] = "aggregator"
    stateful: ClassVar[bool] = False

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
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x3, lead = self._prepare(x)
        out = self._aggregate(x3)
        return out.reshape(*lead, x3.shape[-1])

    def _prepare(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.name}: expected a torch tensor (..., n, d), got {type(x).__name__}")
        if x.dim() < 2:
            raise ValueError(f"{self.name}: expected shape (..., n, d), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"{self.name}: expected a floating-point tensor, got {x.dtype}")
        n, d = x.shape[-2], x.shape[-1]
        self._check_n(n)
        lead = tuple(x.shape[:-2])
        x3 = x.detach().reshape(-1, n, d)
        if not x3.is_contiguous():
            x3 = x3.contiguous()
        self.last_info = {}
        bad = nonfinite_rows(x3)
        count = int(bad.sum())
        if count:
            x3 = torch.where(torch.isfinite(x3), x3, torch.zeros((), dtype=x3.dtype, device=x3.device))
        self.last_info["nonfinite_rows"] = count
        self.nonfinite_rows_total += count
        return x3, lead

    def _aggregate(self, x3: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- state (stateless by default) -----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The rule's state across calls (empty for stateless rules)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    def reset(self) -> None:
        """Forget any state carried across calls (and the non-finite counter)."""
        self.nonfinite_rows_total = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(f={self.f})"


class FRule(Aggregator):
    """A rule whose requirement is ``n >= 2f+1`` (most of aggregators.md)."""

    def min_n(self) -> int:
        return 2 * self.f + 1

    def requirement(self) -> str:
        return "n >= 2f+1"


def mean_rows(x3: torch.Tensor, keep: torch.Tensor, m: int) -> torch.Tensor:
    """Mean of the rows ``keep`` (bool ``(B, n)``, ``m`` True per item) of ``x3``: one batched matvec."""
    w = keep.to(x3.dtype) / m
    return torch.bmm(w.unsqueeze(1), x3).squeeze(1)
