"""The aggregator registry: every rule is built by its name through ``AGGREGATORS``.

Each rule file decorates its class with ``@AGGREGATORS.register()`` (the name is the class
attribute ``name``); the registry imports every public module of ``codedbft.aggregators`` on the
first lookup, so adding a rule is one file and its test, and no list of names exists anywhere
else. This module imports no rule file (the rule files import it), which keeps the import graph
acyclic. Names are normalised by ``codedbft.registry.canonical`` (``"Multi_Krum"`` is
``"multi-krum"``); the definitions behind each name are in docs/aggregators.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from codedbft.registry import Registry

if TYPE_CHECKING:
    from codedbft.aggregators.base import Aggregator

AGGREGATORS: Registry[type[Aggregator]] = Registry("aggregator", package="codedbft.aggregators")
"""Every registered rule class by name: ``AGGREGATORS.get("krum")``, ``AGGREGATORS.params("krum")``."""


def available() -> list[str]:
    """The rule names ``by_name`` accepts, sorted (the docs/aggregators.md rules and ``hierarchical``)."""
    return list(AGGREGATORS.available())


def by_name(name: str, /, **params: Any) -> Aggregator:
    """Build the rule called ``name`` with its constructor parameters.

    E.g. ``by_name("krum", f=3)`` or ``by_name("Multi_Krum", f=2, m=5)``: case, surrounding blanks
    and ``_`` / ``-`` are normalised. An unknown name raises ValueError listing the available ones;
    an unknown parameter raises ValueError naming it and listing the valid ones (not TypeError).
    """
    return AGGREGATORS.build(name, **params)
