"""Schemes by name: ``build_scheme(config)`` and ``available_schemes()``."""

from __future__ import annotations

from typing import Any, Callable

from codedbft.schemes.base import Scheme
from codedbft.schemes.config import SchemeConfig

_BUILDERS: dict[str, Callable[[SchemeConfig], Scheme]] = {}


def register_scheme(name: str, builder: Callable[[SchemeConfig], Scheme]) -> None:
    """Register ``builder(config) -> Scheme`` under ``name`` (e.g. "data-encoding", see schemes.base)."""
    _BUILDERS[name] = builder


def available_schemes() -> tuple[str, ...]:
    """Names :func:`build_scheme` accepts, sorted."""
    return tuple(sorted(_BUILDERS))


def build_scheme(config: SchemeConfig | None = None, **overrides: Any) -> Scheme:
    """Build the scheme ``config.name`` (fields of :class:`SchemeConfig` may be given as keywords).

    Raises:
        ValueError: unknown name, or a configuration the scheme's code rejects (e.g. "n >= 2s+1").
    """
    if config is None:
        config = SchemeConfig(**overrides)
    elif overrides:
        from dataclasses import replace

        config = replace(config, **overrides)
    builder = _BUILDERS.get(config.name)
    if builder is None:
        raise ValueError(f"unknown scheme {config.name!r}; expected one of {available_schemes()}")
    return builder(config)


def _register_builtins() -> None:
    from codedbft.schemes import builtin

    register_scheme("vanilla", builtin.VanillaScheme)
    register_scheme("draco-repetition", lambda c: builtin.DracoScheme(c, cyclic=False))
    register_scheme("draco-cyclic", lambda c: builtin.DracoScheme(c, cyclic=True))
    register_scheme("detox", builtin.DetoxScheme)
    register_scheme("byzshield", builtin.ByzShieldScheme)
    from codedbft.schemes import rrr

    register_scheme("rrr", rrr.RRRScheme)
    register_scheme("rrr-randomized", lambda c: rrr.RRRScheme(c, randomized=True))
    from codedbft.schemes import data_encoding

    register_scheme("data-encoding", data_encoding.DataEncodingScheme)


_register_builtins()
