"""Schemes: an encoder + decoder + optional aggregator, the only thing the runtime and the CLI see.

``build_scheme(SchemeConfig(name=..., workers=n, byzantine=b, ...))`` builds one of the schemes
registered in :data:`SCHEMES` (``available_schemes()`` lists them; ``codedbft train --help`` too).
A step is a conversation between the master and the scheme: see :mod:`codedbft.schemes.base` for
the contract and its extension points (stacked ``(p, d)`` messages, interactive schemes that ask
for more computations within a step, data-encoding schemes).
"""

from codedbft.schemes.base import Order, Quorum, Replies, Scheme, SchemeResult, combine
from codedbft.schemes.config import SchemeConfig
from codedbft.schemes.registry import SCHEMES, available_schemes, build_scheme, register_scheme

__all__ = [
    "Order",
    "Quorum",
    "Replies",
    "SCHEMES",
    "Scheme",
    "SchemeConfig",
    "SchemeResult",
    "available_schemes",
    "build_scheme",
    "combine",
    "register_scheme",
]
