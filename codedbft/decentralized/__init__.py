"""Decentralized (peer-to-peer) Byzantine-resilient SGD: neighbourhood aggregation rules.

Every benign node ``i`` mixes its own estimate with an aggregate ``R_i`` of its neighbours'
estimates (the GUF of Guo et al. 2020); :mod:`codedbft.decentralized.rules` computes ``R_i`` for all
nodes in one batched call (definitions in docs/decentralized_rules.md)::

    from codedbft.decentralized import build_rule
    rule = build_rule("ubar", rho=0.4)
    R = rule(own, received, mask, losses=losses, own_loss=own_loss)   # (N, d)

Members are imported lazily (``import codedbft.decentralized`` imports no torch); a module added to
this package lists its exports in ``_LAZY``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from codedbft._lazy import lazy_getattr

_LAZY = {
    "NeighbourhoodRule": "codedbft.decentralized.rules",
    "RULES": "codedbft.decentralized.rules",
    "build_rule": "codedbft.decentralized.rules",
    "DecentralizedTrainer": "codedbft.decentralized.trainer",
    "n_hat": "codedbft.decentralized.rules",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from codedbft.decentralized.rules import RULES, NeighbourhoodRule, build_rule, n_hat  # noqa: F401

__getattr__ = lazy_getattr(__name__, globals(), _LAZY)
