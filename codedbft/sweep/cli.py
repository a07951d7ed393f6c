"""``codedbft sweep``: placeholder until the sweep lands."""

from __future__ import annotations

from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("sweep", help="run a grid of training runs")
    p.set_defaults(handler=lambda args: 0)
