"""The result every decoder returns, and the decoder protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class DecodeResult:
    """What a decoder recovered from the workers' messages.

    Attributes:
        gradient: the recovered SUM of the k partition gradients, shape ``(d,)``; numpy or torch like
            the messages, float64 where the decoder needs it (syndrome and L1 decoding).
        flagged: sorted worker ids judged Byzantine (their message differs from what an honest worker
            computes, or is non-finite).
        exact: True when the code's guarantee held (few enough errors and erasures) so that ``gradient``
            is the true sum; False when decoding could not certify the result (too many faults).
        info: diagnostics: residuals, timings, group votes, erasures, ...
    """

    gradient: Any
    flagged: tuple[int, ...]
    exact: bool
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Decoder(Protocol):
    """Anything with ``decode(messages, missing=None) -> DecodeResult``."""

    def decode(self, messages: Any, missing: Any = None) -> DecodeResult: ...
