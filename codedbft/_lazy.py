"""Lazy package exports: ``__getattr__ = lazy_getattr(__name__, globals(), {name: module})``.

Packages import their heavy members (galois, Ray, scipy.optimize) only when a name is first used, so
``import codedbft.encoders`` stays cheap; the first access caches the value in the package's globals.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_getattr(package: str, namespace: dict[str, Any], table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` that imports ``table[name]`` on first access to ``name``."""

    def __getattr__(name: str) -> Any:
        if name in table:
            value = getattr(importlib.import_module(table[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
