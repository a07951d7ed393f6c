"""The typed configuration a :class:`~codedbft.schemes.base.Scheme` is built from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class SchemeConfig:
    """What :func:`~codedbft.schemes.build_scheme` needs to build a scheme.

    Attributes:
        name: scheme name, one of :func:`~codedbft.schemes.available_schemes`.
        workers: n, the number of workers.
        byzantine: b, the number of Byzantine workers the run places (the attack's coalition size).
        tolerate: s, the number of Byzantine workers the code is built to correct; defaults to
            ``byzantine``. A code with ``tolerate > byzantine`` has spare distance for erasures
            (crashed or late workers): 2e + m <= 2s.
        aggregator: robust rule name (``codedbft.aggregators.by_name``); vanilla's rule over the n
            messages (default ``"mean"``), DETOX's outer rule (default ``"median"``).
        aggregator_params: keyword arguments of the rule (``f`` defaults to what the scheme needs).
        group_size: r, DETOX's repetition group size (default 3).
        bucket: DETOX bucket size for bucket means before the outer rule (default 1: no bucketing).
        params: scheme-specific extras (e.g. RRR's check probability ``q``).
        pre: pre-aggregator specs run before the rule (``("nnm", "bucketing:s=2")``): vanilla's rule,
            DETOX's outer rule and ByzShield's file rule become a
            :class:`~codedbft.aggregators.pre.Pipeline`; exact schemes take none.
    """

    name: str = "draco-repetition"
    workers: int = 15
    byzantine: int = 2
    tolerate: int | None = None
    aggregator: str | None = None
    aggregator_params: Mapping[str, Any] = field(default_factory=dict)
    group_size: int | None = None
    bucket: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    pre: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got workers={self.workers}")
        if not 0 <= self.byzantine <= self.workers:
            raise ValueError(f"need 0 <= byzantine <= workers, got byzantine={self.byzantine}, workers={self.workers}")
        if self.tolerate is not None and self.tolerate < 0:
            raise ValueError(f"tolerate must be >= 0, got {self.tolerate}")

    @property
    def s(self) -> int:
        """The number of Byzantine workers the code corrects: ``tolerate`` or ``byzantine``."""
        return self.byzantine if self.tolerate is None else self.tolerate
