"""Replicated parameter servers that may be Byzantine: ByzSGD (``--setting byzantine-servers``).

See :mod:`codedbft.servers.trainer`.
"""

from __future__ import annotations

from codedbft._lazy import lazy_getattr

_LAZY = {"ByzSGDTrainer": "codedbft.servers.trainer", "WorkerProgram": "codedbft.servers.trainer"}
__all__ = list(_LAZY)
__getattr__ = lazy_getattr(__name__, globals(), _LAZY)
