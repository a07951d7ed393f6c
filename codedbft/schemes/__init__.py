"""Schemes: an encoder + decoder + optional aggregator, the only thing the runtime and the CLI see.

``build_scheme(SchemeConfig(name=..., workers=n, byzantine=b, ...))`` builds one of
:func:`available_schemes` ("vanilla", "draco-repetition", "draco-cyclic", "detox", "byzshield", "rrr", "rrr-randomized").
A step is a conversation between the master and the scheme: see :mod:`codedbft.schemes.base` for
the contract and its extension points (stacked ``(p, d)`` messages, interactive schemes that ask
for more computations within a step, data-encoding schemes).
"""

from codedbft.schemes.base import Order, Replies, Scheme, SchemeResult, combine
from codedbft.schemes.config import SchemeConfig
from codedbft.schemes.registry import available_schemes, build_scheme, register_scheme

__all__ = [
    "Order",
    "Replies",
    "Scheme",
    "SchemeConfig",
    "SchemeResult",
    "available_schemes",
    "build_scheme",
    "combine",
    "register_scheme",
]
