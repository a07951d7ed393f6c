"""``codedbft reproduce``: every source paper's headline claim, tested here by one command.

Each claim is a registered :class:`~codedbft.reproduce.base.Claim` in a module named after its
paper (``draco.py``, ``detox.py``, ``byzshield.py``, ``rrr.py``, ``data_encoding.py``, ``ubar.py``,
``byzsgd.py``, ``bygars.py``). :func:`reproduce` runs the chosen claims and returns one
:class:`ClaimResult` each; the CLI prints them as a table and writes ``OUT/reproduce.json`` and
``OUT/reproduce.md``. See docs/reproduce.md.
"""

from codedbft.reproduce.base import CLAIMS, Claim, Context, Outcome
from codedbft.reproduce.runner import ClaimResult, reproduce

__all__ = ["CLAIMS", "Claim", "ClaimResult", "Context", "Outcome", "reproduce"]
