"""Decoders: recover the exact gradient sum and name the Byzantine workers."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from codedbft.decoders.base import DecodeResult, Decoder

_LAZY = {
    "MajorityDecoder": "codedbft.decoders.majority",
    "VoteResult": "codedbft.decoders.majority",
    "majority_vote": "codedbft.decoders.majority",
    "SyndromeDecoder": "codedbft.decoders.syndrome",
    "L1Decoder": "codedbft.decoders.l1",
}

__all__ = ["DecodeResult", "Decoder", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from codedbft.decoders.l1 import L1Decoder
    from codedbft.decoders.majority import MajorityDecoder, VoteResult, majority_vote
    from codedbft.decoders.syndrome import SyndromeDecoder


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'codedbft.decoders' has no attribute {name!r}")
