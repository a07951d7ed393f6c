"""``codedbft inspect``: placeholder until inspection lands."""

from __future__ import annotations

from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("inspect", help="inspect a code, a run or a sweep")
    p.set_defaults(handler=lambda args: 0)
