"""Any gradient code as a scheme: :class:`CodeScheme`, and the ``code`` scheme that imports one.

A user's code needs what :class:`~codedbft.encoders.base.Code` describes (subclassing it is the easy
way; any object with these attributes works): ``n`` workers, ``k`` partitions, ``assignment`` (the
partition ids each worker computes on), ``decode(messages, missing=None)`` returning a
:class:`~codedbft.decoders.base.DecodeResult` whose ``gradient`` is the SUM of the k partition
gradients (``flagged``: the workers it judged Byzantine; ``exact``: certified), and, for a code linear
in the partition gradients, ``B``, the ``(n, k)`` encoding matrix. Honest worker i then sends
``sum_j B[i, j] g_j`` over its assigned partitions (a single partition with coefficient 1 is sent as
is, bit for bit, so copies of a partition agree exactly); a code without ``B`` (``B`` None) gets each
worker's raw ``(p, d)`` stack of partition gradients instead (ByzShield's kind of message). The step
uses ``sum / k``, like every built-in scheme.

From Python: ``Master(config, scheme=my_code)`` (see :mod:`codedbft.training.byo`). From the command
line or a config file: ``--scheme code --scheme-param code=mypkg.codes:MY_CODE``, where the attribute is
a code object or a factory called with whichever of ``n`` (``--workers``), ``s`` (``--tolerate``,
default ``--byzantine``) and ``b`` (``--byzantine``) its signature names.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from codedbft.schemes.base import Scheme, SchemeResult
from codedbft.schemes.config import SchemeConfig
from codedbft.schemes.registry import register_scheme

__all__ = ["CodeScheme", "is_code"]


def is_code(obj: Any) -> bool:
    """True for an object with what :class:`CodeScheme` needs (``n``, ``k``, ``assignment``, ``decode``)."""
    return not isinstance(obj, type) and all(hasattr(obj, a) for a in ("n", "k", "assignment", "decode"))


def _real(g: Any) -> torch.Tensor:
    g = g if isinstance(g, torch.Tensor) else torch.from_numpy(np.asarray(g))
    return g.real if g.is_complex() else g


class CodeScheme(Scheme):
    """The scheme of a gradient ``code`` (see the module docstring): its assignment, its coefficients
    (linear codes) or stacked messages (the others), its decoder; mean gradient = decoded sum / k.

    A code decodes on its own: no aggregator and no pre-aggregators (``config``'s must be unset).
    """

    def __init__(self, code: Any, config: SchemeConfig | None = None, name: str = "code"):
        if not is_code(code):
            raise ValueError(f"a code needs n, k, assignment and decode(messages, missing); got {type(code).__name__}")
        self.code = code
        self.name = name
        self.n, self.k = int(code.n), int(code.k)
        self.config = config if config is not None else SchemeConfig(name=name, workers=self.n, byzantine=0)
        if self.config.aggregator not in (None, "mean") or self.config.pre:
            raise ValueError(f"a code scheme decodes with the code's own decoder: no aggregator or pre-aggregators "
                             f"(got aggregator={self.config.aggregator!r}, pre={list(self.config.pre)})")
        assignment = tuple(tuple(int(j) for j in a) for a in code.assignment)
        if len(assignment) != self.n or any(not 0 <= j < self.k for a in assignment for j in a) or \
                any(not a for a in assignment):
            raise ValueError(f"the code's assignment must give each of its n={self.n} workers partition ids in "
                             f"[0, k={self.k})")
        self._assignment = assignment
        B = getattr(code, "B", None)
        self.__dict__["_B"] = None if B is None else np.asarray(B)
        if self.__dict__["_B"] is not None and self.__dict__["_B"].shape != (self.n, self.k):
            raise ValueError(f"the code's B must have shape (n, k) = ({self.n}, {self.k}), got {self.__dict__['_B'].shape}")
        if self._stacked and len({len(a) for a in assignment}) > 1:
            raise ValueError("a code without B sends stacked (p, d) messages: every worker needs the same number "
                             "of partitions")

    @property
    def assignment(self) -> tuple[tuple[int, ...], ...]:
        return self._assignment

    @property
    def _stacked(self) -> bool:
        return self.__dict__["_B"] is None

    @property
    def stacked(self) -> bool:
        return self._stacked

    def decode(self, messages: torch.Tensor, missing: np.ndarray) -> SchemeResult:
        res = self.code.decode(messages, missing=missing)
        info = dict(getattr(res, "info", {}) or {})
        return SchemeResult(_real(res.gradient) / self.k, tuple(int(i) for i in res.flagged), bool(res.exact), info)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "code_class": f"{type(self.code).__module__}.{type(self.code).__qualname__}",
                "linear": not self._stacked}


def _build(config: SchemeConfig) -> CodeScheme:
    """``--scheme code --scheme-param code=pkg.mod:attr``: the code an import path names."""
    from codedbft.training.byo import import_object, is_import_path

    path = config.params.get("code")
    if not is_import_path(path):
        raise ValueError("scheme 'code' needs scheme param code=package.module:attribute (a code object or a "
                         f"factory of n, s, b), got {path!r}")
    obj = import_object(path, "code")
    if not is_code(obj):
        if not callable(obj):
            raise ValueError(f"code {path!r} is neither a code (n, k, assignment, decode) nor a factory of one")
        import inspect

        try:
            names = set(inspect.signature(obj).parameters)
        except (TypeError, ValueError):
            names = set()
        given = {"n": config.workers, "s": config.s, "b": config.byzantine}
        obj = obj(**{k: v for k, v in given.items() if k in names})
        if not is_code(obj):
            raise ValueError(f"code factory {path!r} returned {type(obj).__name__}, not a code")
    scheme = CodeScheme(obj, config)
    if scheme.n != config.workers:
        raise ValueError(f"code {path!r} has n={scheme.n} workers but the run has workers={config.workers}")
    return scheme


register_scheme("code", _build, params=("code",),
                help="your own gradient code: scheme param code=pkg.mod:attr (a Code object or factory of n, s, b)")
