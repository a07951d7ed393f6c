"""Codes: which partitions each worker computes on, and with which coefficients.

Imported lazily so that ``import codedbft.encoders`` stays cheap (galois compiles kernels on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from codedbft._lazy import lazy_getattr

from codedbft.encoders.base import Code

_LAZY = {
    "RepetitionCode": "codedbft.encoders.repetition",
    "CyclicMDSCode": "codedbft.encoders.cyclic",
    "ByzShieldCode": "codedbft.encoders.byzshield",
    "DataEncodingCode": "codedbft.encoders.data_encoding",
    "ramanujan_assignment": "codedbft.encoders.ramanujan",
}

__all__ = ["Code", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from codedbft.encoders.byzshield import ByzShieldCode
    from codedbft.encoders.cyclic import CyclicMDSCode
    from codedbft.encoders.data_encoding import DataEncodingCode
    from codedbft.encoders.ramanujan import ramanujan_assignment
    from codedbft.encoders.repetition import RepetitionCode


__getattr__ = lazy_getattr(__name__, globals(), _LAZY)
