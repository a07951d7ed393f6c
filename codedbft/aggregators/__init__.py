"""Robust aggregation rules over stacked worker vectors ``(..., n, d)``; definitions in docs/aggregators.md.

>>> from codedbft.aggregators import by_name, Krum
>>> agg = Krum(f=3)            # or by_name("krum", f=3)
>>> out = agg(x)               # (..., n, d) -> (..., d), batched, dtype and device kept

``x`` may be a torch tensor or a numpy array; the result is of the same kind (TypeError for
anything else). Every rule is registered by name in ``AGGREGATORS``
(``codedbft.aggregators.registry``): ``by_name`` builds one and rejects unknown parameters with
ValueError, ``available()`` lists the names. Stateful rules (``CenteredClipping``, ``ByGARS``, and
``Hierarchical`` over a stateful rule) keep their state on the object (``state_dict`` /
``load_state_dict`` / ``reset``).
"""

from codedbft.aggregators.base import Aggregator
from codedbft.aggregators.bygars import ByGARS
from codedbft.aggregators.clipping import CenteredClipping
from codedbft.aggregators.coordinate import Mean, MeaMed, Median, Phocas, SignMajority, TrimmedMean
from codedbft.aggregators.geomed import GeoMed
from codedbft.aggregators.hierarchical import Hierarchical
from codedbft.aggregators.krum import Bulyan, Krum, MultiKrum
from codedbft.aggregators.registry import AGGREGATORS, available, by_name
from codedbft.aggregators.selection import CGE, FABA, MDA
from codedbft.aggregators.zeno import Zeno
from codedbft.aggregators.caf import CAF
from codedbft.aggregators.dnc import DnC
from codedbft.aggregators.fltrust import FLTrust
from codedbft.aggregators.monna import MoNNA
from codedbft.aggregators.pre import ARC, NNM, PRE_AGGREGATORS, Bucketing, Clipping, Pipeline, PreAggregator, build_pre
from codedbft.aggregators.signguard import SignGuard
from codedbft.aggregators.smea import SMEA

__all__ = [
    "Aggregator", "AGGREGATORS", "by_name", "available", "Mean", "Median", "TrimmedMean", "Phocas", "MeaMed",
    "GeoMed", "Krum", "MultiKrum", "Bulyan", "MDA", "CenteredClipping", "FABA", "CGE",
    "SignMajority", "Zeno", "ByGARS", "Hierarchical", "MoNNA", "CAF", "SMEA", "DnC", "SignGuard", "FLTrust",
    "PreAggregator", "PRE_AGGREGATORS", "build_pre", "NNM", "Bucketing", "Clipping", "ARC", "Pipeline",
]
