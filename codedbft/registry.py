"""One registry mechanism for everything built by name.

Schemes, aggregators, attacks, placements, datasets, models, optimizers and backends each have one
:class:`Registry`; the CLI's choices and help, ``RunConfig``'s validation and every ``by_name``
read from it, so no list of names is written twice. Adding a rule or an attack is one file whose
class is decorated::

    from codedbft.aggregators.registry import AGGREGATORS

    @AGGREGATORS.register()          # name taken from the class attribute ``name``
    class MyRule(FRule):
        name = "my-rule"
        ...

Names are normalised one way everywhere (:func:`canonical`: case, surrounding blanks, ``_`` and
``-`` are the same), an unknown name raises ``ValueError`` listing the available ones, and
:meth:`Registry.build` rejects unknown keyword parameters with the list of valid ones (instead of
the ``TypeError`` a bare call would raise), so a typo in ``--attack-param`` is a configuration
error, reported before any worker starts.

A registry may name *plugin modules* that register into it when imported; they are imported on the
first lookup, which keeps ``import codedbft`` cheap and breaks import cycles (a backend module
imports the registry, the registry never imports the backend until asked).
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Iterator, Mapping, Sequence, TypeVar

T = TypeVar("T")


def canonical(name: str) -> str:
    """The one normalisation of registered names: ``" Sign_Flip "`` -> ``"sign-flip"``."""
    if not isinstance(name, str):
        raise ValueError(f"a name must be a string, got {name!r}")
    return name.strip().lower().replace("_", "-")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered thing: the object (class or factory), its parameter names, a one-line help."""

    name: str
    obj: T
    params: tuple[str, ...] | None  # None: accepts any keyword (the object checks them itself)
    help: str


def _signature_params(obj: Any) -> tuple[str, ...] | None:
    """Keyword parameters a class or function accepts; None when it takes ``**kwargs``."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):  # builtins without a signature: let the object check
        return None
    names = []
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            names.append(p.name)
    return tuple(names)


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry(Generic[T]):
    """Named things of one kind (see the module docstring).

    Args:
        kind: what is registered, for messages ("aggregator", "attack", ...).
        plugins: modules imported on the first lookup; importing them registers their entries.
        package: a package whose every public module (name not starting with ``_``) is imported
            on the first lookup: a new file in that package that registers into this registry is
            found without touching any list.

    Iterating a registry yields its names (sorted), so ``tuple(REG)`` and ``name in REG`` work.
    """

    def __init__(self, kind: str, plugins: Sequence[str] = (), package: str | None = None) -> None:
        self.kind = kind
        self._plugins = tuple(plugins)
        self._package = package
        self._loaded = not (self._plugins or package)
        self._entries: dict[str, Entry[T]] = {}

    # -- registering ------------------------------------------------------------------------
    def register(self, name: str | None = None, obj: T | None = None, *, params: Iterable[str] | None = None,
                 help: str | None = None) -> Any:
        """Register ``obj`` under ``name``; without ``obj``, a decorator.

        ``name`` defaults to ``obj.name``. ``params`` names the keyword parameters :meth:`build`
        accepts (default: read from ``obj``'s signature). Registering a name twice raises ValueError.
        """

        def add(target: T) -> T:
            key = canonical(name if name is not None else getattr(target, "name"))
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} registered twice")
            keys = tuple(params) if params is not None else _signature_params(target)
            self._entries[key] = Entry(key, target, keys, help if help is not None else _first_line(target))
            return target

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return its object (a test's temporary entry; plugins never need it)."""
        return self._entries.pop(self.entry(name).name).obj

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True  # first, so a plugin that looks names up while importing does not recurse
            modules = list(self._plugins)
            if self._package is not None:
                import pkgutil

                pkg = importlib.import_module(self._package)
                modules += [f"{self._package}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__)
                            if not m.name.startswith("_")]
            for module in modules:
                importlib.import_module(module)

    # -- looking up -------------------------------------------------------------------------
    def available(self) -> tuple[str, ...]:
        """The registered names, sorted."""
        self._load()
        return tuple(sorted(self._entries))

    def entry(self, name: str) -> Entry[T]:
        """The entry of ``name`` (normalised); ValueError listing the available names when unknown."""
        self._load()
        key = canonical(name)
        if key not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; available: {', '.join(self.available())}{self.suggest(name)}")
        return self._entries[key]

    def suggest(self, name: str) -> str:
        """``"; did you mean 'alie'?"`` for the closest registered names (empty when none is close)."""
        import difflib

        close = difflib.get_close_matches(canonical(name), self.available(), n=2, cutoff=0.6)
        return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""

    def get(self, name: str) -> T:
        """The registered object (class or factory) called ``name``."""
        return self.entry(name).obj

    def params(self, name: str) -> tuple[str, ...] | None:
        """The keyword parameters ``name`` accepts (None: any; the object checks them itself)."""
        return self.entry(name).params

    def check_params(self, name: str, given: Mapping[str, Any] | Iterable[str], *, fixed: Iterable[str] = ()) -> None:
        """ValueError naming the unknown keys of ``given`` and listing the valid ones.

        ``fixed``: keys the caller supplies itself (e.g. ``f`` for a rule the scheme sizes); they
        are valid but not listed as user parameters.
        """
        valid = self.params(name)
        if valid is None:
            return
        unknown = sorted(set(given) - set(valid))
        if unknown:
            user = [k for k in valid if k not in set(fixed)]
            raise ValueError(f"unknown {self.kind} parameter{'s' if len(unknown) > 1 else ''} {unknown} for "
                             f"{canonical(name)!r}; valid: {user if user else 'none'}")

    def build(self, name: str, /, **params: Any) -> Any:
        """``get(name)(**params)`` after :meth:`check_params`."""
        self.check_params(name, params)
        return self.get(name)(**params)

    def help(self, name: str) -> str:
        """The one-line description of ``name`` (its docstring's first line)."""
        return self.entry(name).help

    def __contains__(self, name: object) -> bool:
        self._load()
        return isinstance(name, str) and canonical(name) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.available())

    def __len__(self) -> int:
        return len(self.available())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.available())})"


def choices_help(registry: Registry[Any], text: str = "") -> str:
    """Help text for a CLI flag whose value is a name in ``registry``: ``text`` plus each name and
    its one-line description (argparse shows it under the flag)."""
    lines = [f"  {n}: {registry.help(n)}" if registry.help(n) else f"  {n}" for n in registry.available()]
    return (text + "; " if text else "") + "one of:\n" + "\n".join(lines)


Factory = Callable[..., Any]
