"""Schemes by name: :data:`SCHEMES`, ``build_scheme(config)`` and ``available_schemes()``.

Each module of the ``codedbft.schemes`` package registers its schemes at its end (a new scheme is
one new module there, found without touching any list) (``SCHEMES.register(name, builder, params=...)``,
``builder(config) -> Scheme``); ``params`` are the scheme parameters (``--scheme-param KEY=VALUE``)
it reads, so an unknown key is a configuration error that names the valid ones.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from codedbft.registry import Registry
from codedbft.schemes.base import Scheme
from codedbft.schemes.config import SchemeConfig

#: schemes by name; each entry is ``builder(SchemeConfig) -> Scheme``
SCHEMES: Registry[Callable[[SchemeConfig], Scheme]] = Registry("scheme", package="codedbft.schemes")

#: scheme parameters the runtime always supplies, valid for every scheme: the run seed (public: every
#: worker's spec holds it) and the master's secret (``RunConfig.master_seed``; never shipped to a worker)
RUNTIME_PARAMS = ("seed", "secret")


def register_scheme(name: str, builder: Callable[[SchemeConfig], Scheme], *, params: Iterable[str] | None = None,
                    help: str | None = None) -> None:
    """Register ``builder(config) -> Scheme`` under ``name`` (e.g. "data-encoding", see schemes.base).

    ``params``: the keys of ``config.params`` the scheme reads (None: any key, unchecked).
    """
    SCHEMES.register(name, builder, params=None if params is None else (*params, *RUNTIME_PARAMS), help=help)


def available_schemes() -> tuple[str, ...]:
    """Names :func:`build_scheme` accepts, sorted."""
    return SCHEMES.available()


def build_scheme(config: SchemeConfig | None = None, **overrides: Any) -> Scheme:
    """Build the scheme ``config.name`` (fields of :class:`SchemeConfig` may be given as keywords).

    Raises:
        ValueError: unknown name, unknown scheme parameter, or a configuration the scheme's code
            rejects (e.g. "n >= 2s+1").
    """
    if config is None:
        config = SchemeConfig(**overrides)
    elif overrides:
        from dataclasses import replace

        config = replace(config, **overrides)
    SCHEMES.check_params(config.name, config.params, fixed=RUNTIME_PARAMS)
    return SCHEMES.get(config.name)(config)
