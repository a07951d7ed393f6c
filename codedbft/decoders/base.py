"""The result every decoder returns, the decoder protocol, and the one diagnostics vocabulary.

Every decoder (:class:`~codedbft.decoders.majority.MajorityDecoder`,
:class:`~codedbft.decoders.syndrome.SyndromeDecoder`, :class:`~codedbft.decoders.l1.L1Decoder`,
:class:`~codedbft.decoders.byzshield.ByzShieldDecoder`, and the data-encoding rounds built on the L1
decoder) fills ``DecodeResult.info`` with the same keys for the same things, so callers (schemes,
the runtime's metrics, benchmarks) read diagnostics without knowing which decoder ran.

A *row* is one message row the decoder judges: one worker's message for the repetition, cyclic and
L1 decoders; one copy of one file (a worker's gradient for one of its files) for ByzShield.

Common keys, present after every decode (:meth:`DecodeResult.finish` sets all but the stage timings):

==================  ==================  ==============================================================
key                 type                meaning
==================  ==================  ==============================================================
``decode_ms``       float               total wall time of the decode, in milliseconds
``<stage>_ms``      float               wall time of one stage, a part of ``decode_ms`` (0.0 when the
                                        stage did not run); names below
``erasures``        int                 rows treated as missing: the caller's missing rows plus the
                                        non-finite rows the decoder erased (syndrome, L1, ByzShield;
                                        the majority vote does not erase them: they lose the vote)
``nonfinite``       int                 present rows holding NaN or Inf (a missing row is never read;
                                        syndrome and L1 also count a finite row whose projection
                                        overflows float64)
``reason``          str | None          None when ``exact``; otherwise a short sentence saying why the
                                        result is not certified. ``exact == (reason is None)``
==================  ==================  ==============================================================

Stage timings (flat floats, never a nested dict, always milliseconds):

==================  ==============================================================================
key                 stage
==================  ==============================================================================
``vote_ms``         majority vote inside groups (repetition groups, ByzShield files)
``project_ms``      the pass over the messages that projects them on private random vectors
``locate_ms``       locating the errors on the projections, verification and deflation included
``certify_ms``      ByzShield: the search for a liar placement that could explain the votes
``solve_ms``        L1: pseudo-inverse on the honest rows and the product with them
``combine_ms``      summing the kept rows / decided values into the returned gradient
``aggregate_ms``    ByzShield: the robust rule over the voted files (when not certified)
==================  ==============================================================================

Shared names for decoder-specific diagnostics (present where the decoder has the concept):

==================  ==================  ==============================================================
key                 type                meaning
==================  ==================  ==============================================================
``missing``         int                 workers the caller marked missing
``erasure_ids``     tuple[int, ...]     the erased rows (syndrome, L1)
``nonfinite_ids``   tuple[int, ...]     the non-finite rows (syndrome, L1)
``undecided``       int                 vote groups (repetition groups, ByzShield files) in which no
                                        value holds a strict majority of the present members
``undecided_ids``   tuple[int, ...]     those groups' ids
``locator``         str                 which locator produced the accepted error support:
                                        ``"clean"`` (nothing to locate), ``"prony"``, ``"l1"``,
                                        ``"exhaustive"``, ``"none"``; the L1 decoder appends
                                        ``" (unverified)"`` / ``" after peeling"``
``iterations``      int                 locate/verify rounds the syndrome decoder ran (0: no fault)
==================  ==================  ==============================================================

Naming convention: a plain noun is a count (int), ``<noun>_ids`` the matching ids (sorted tuple),
``<stage>_ms`` a duration. Each decoder's docstring lists its own further keys.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class DecodeResult:
    """What a decoder recovered from the workers' messages.

    Attributes:
        gradient: the recovered SUM of the k partition gradients, shape ``(d,)``; numpy or torch like
            the messages, float64 where the decoder needs it (syndrome and L1 decoding).
        flagged: sorted worker ids judged Byzantine (their message differs from what an honest worker
            computes, or is non-finite).
        exact: True when the code's guarantee held (few enough errors and erasures) so that ``gradient``
            is the true sum; False when decoding could not certify the result (too many faults).
        info: diagnostics, in the vocabulary of the module docstring (``decode_ms``, ``erasures``,
            ``nonfinite``, ``reason``, stage timings, ...).
    """

    gradient: Any
    flagged: tuple[int, ...]
    exact: bool
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def finish(cls, gradient: Any, flagged: Any, info: dict[str, Any], *, t0: float, erasures: int,
               nonfinite: int, reason: str | None) -> "DecodeResult":
        """A result with the common keys filled in: ``exact`` is ``reason is None``.

        Deriving ``exact`` from ``reason`` makes "every inexact result says why" hold by construction.
        ``t0`` is the ``time.perf_counter()`` taken when the decode started; ``decode_ms`` is measured
        here, so call this last.
        """
        if reason is not None and not (isinstance(reason, str) and reason):
            raise ValueError(f"reason must be None or a non-empty string, got {reason!r}")
        info.update(erasures=int(erasures), nonfinite=int(nonfinite), reason=reason,
                    decode_ms=(time.perf_counter() - t0) * 1e3)
        return cls(gradient=gradient, flagged=tuple(int(i) for i in flagged), exact=reason is None, info=info)


@runtime_checkable
class Decoder(Protocol):
    """Anything with ``decode(messages, missing=None) -> DecodeResult``."""

    def decode(self, messages: Any, missing: Any = None) -> DecodeResult: ...
