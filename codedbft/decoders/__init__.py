"""Decoders: recover the exact gradient sum and name the Byzantine workers.

Every decoder returns a :class:`DecodeResult` whose ``info`` uses one vocabulary (``decode_ms``,
``<stage>_ms``, ``erasures``, ``nonfinite``, ``reason``, ...), defined in :mod:`codedbft.decoders.base`.
Members are imported lazily; no decoder imports :mod:`codedbft.encoders` at import time (the
encoders import the decoders).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from codedbft._lazy import lazy_getattr

from codedbft.decoders.base import DecodeResult, Decoder

_LAZY = {
    "MajorityDecoder": "codedbft.decoders.majority",
    "VoteResult": "codedbft.decoders.majority",
    "majority_vote": "codedbft.decoders.majority",
    "SyndromeDecoder": "codedbft.decoders.syndrome",
    "L1Decoder": "codedbft.decoders.l1",
    "ByzShieldDecoder": "codedbft.decoders.byzshield",
}

__all__ = ["DecodeResult", "Decoder", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from codedbft.decoders.byzshield import ByzShieldDecoder
    from codedbft.decoders.l1 import L1Decoder
    from codedbft.decoders.majority import MajorityDecoder, VoteResult, majority_vote
    from codedbft.decoders.syndrome import SyndromeDecoder


__getattr__ = lazy_getattr(__name__, globals(), _LAZY)
