"""What Byzantine workers send, and where they sit.

Every attack of ``docs/attacks.md`` behind one call, ``attack(honest, byzantine_ids, ctx)``
returning the (b, d) forged messages (dtype and device of ``honest``), built by name::

    from codedbft.attacks import AttackContext, by_name, placement_by_name
    attack = by_name("alie")
    ids = placement_by_name("random", n=15, b=3, seed=0).byzantine_ids(step)
    forged = attack(honest, ids, AttackContext.build(honest, ids, step=step, seed=0, own=own))

``own`` (the Byzantine workers' own honest messages) may be left out: it then defaults to the true
gradient repeated once per Byzantine worker. Names come from two registries, :data:`ATTACKS` and
:data:`PLACEMENTS` (:class:`codedbft.registry.Registry`); iterating either yields its names.

Torch only (no Ray): attacks are pure objects usable without a cluster.
"""

from __future__ import annotations

from codedbft.attacks.base import ATTACKS, Attack, AttackContext, available, by_name, register, step_generator
from codedbft.attacks.local import BitFlip, Constant, Gambler, Gaussian, LabelFlip, SignFlip
from codedbft.attacks.mixed import Mixed
from codedbft.attacks.omniscient import ALIE, IPM, Collude, Omniscient, alie_z
from codedbft.attacks.placement import (
    PLACEMENTS,
    FixedPlacement,
    Placement,
    RandomPlacement,
    WorstPlacement,
    placement_by_name,
)

__all__ = [
    "ATTACKS",
    "ALIE",
    "IPM",
    "Attack",
    "AttackContext",
    "BitFlip",
    "Collude",
    "Constant",
    "FixedPlacement",
    "Gambler",
    "Gaussian",
    "LabelFlip",
    "Mixed",
    "Omniscient",
    "PLACEMENTS",
    "Placement",
    "RandomPlacement",
    "SignFlip",
    "WorstPlacement",
    "alie_z",
    "available",
    "by_name",
    "placement_by_name",
    "register",
    "step_generator",
]
