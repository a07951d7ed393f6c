"""Build any rule from its aggregators.md name."""

from __future__ import annotations

from typing import Any

from codedbft.aggregators.base import Aggregator
from codedbft.aggregators.bygars import ByGARS
from codedbft.aggregators.clipping import CenteredClipping
from codedbft.aggregators.coordinate import Mean, MeaMed, Median, Phocas, SignMajority, TrimmedMean
from codedbft.aggregators.geomed import GeoMed
from codedbft.aggregators.hierarchical import Hierarchical
from codedbft.aggregators.krum import Bulyan, Krum, MultiKrum
from codedbft.aggregators.selection import CGE, FABA, MDA
from codedbft.aggregators.zeno import Zeno

RULES: dict[str, type[Aggregator]] = {
    cls.name: cls
    for cls in (
        Mean, Median, TrimmedMean, Phocas, MeaMed, GeoMed, Krum, MultiKrum, Bulyan, MDA,
        CenteredClipping, FABA, CGE, SignMajority, Zeno, ByGARS, Hierarchical,
    )
}


def available() -> list[str]:
    """The rule names ``by_name`` accepts (aggregators.md names, plus ``hierarchical``)."""
    return list(RULES)


def by_name(name: str, **params: Any) -> Aggregator:
    """Build the rule called ``name`` (e.g. ``"multi-krum"``; ``_`` and case are normalised) with its
    parameters, e.g. ``by_name("krum", f=3)`` or ``by_name("mda", f=2, max_subsets=10_000)``."""
    key = name.strip().lower().replace("_", "-")
    if key not in RULES:
        raise ValueError(f"unknown aggregator {name!r}; available: {', '.join(RULES)}")
    return RULES[key](**params)
