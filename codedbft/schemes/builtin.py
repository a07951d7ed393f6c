"""The built-in schemes: vanilla data parallelism, DRACO (repetition and cyclic MDS), DETOX, ByzShield.

* ``vanilla``: k = n partitions, one per worker, no redundancy; a robust rule (default: mean) over
  the n messages. The baseline every coded scheme is compared with.
* ``draco-repetition`` (Chen et al., ICML 2018): ``RepetitionCode(n, s)``, groups of r = 2s+1,
  majority vote, exact whenever 2e + m <= 2s in every group.
* ``draco-cyclic`` (same paper, cyclic MDS code): ``CyclicMDSCode(n, s)``, k = n partitions, each
  worker 2s+1 of them; exact whenever 2e + m <= 2s.
* ``detox`` (Rajput et al., NeurIPS 2019): ``RepetitionCode(n, r=3)``, vote per group, bucket means
  of the group outputs, then a robust rule over the buckets with f = floor(b / ceil(r/2)), the
  number of groups the b Byzantine workers can win.
* ``byzshield`` (Konstantinidis & Ramamoorthy, MLSys 2021): ``ByzShieldCode(n / r, r)`` (scheme param
  ``assignment=mols``, the default, or ``ramanujan``), stacked ``(l, d)`` messages (one gradient per
  file), vote per file, certified sum or robust rule.

RRR-BFT (interactive) lives in :mod:`codedbft.schemes.rrr`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from codedbft.schemes.base import Order, Quorum, Scheme, SchemeResult
from codedbft.schemes.config import SchemeConfig
from codedbft.schemes.registry import register_scheme


def _rule(name: str, params: Any, f: int, pre: tuple[str, ...] = ()) -> Any:
    """The rule ``name`` with ``f`` and its params, behind the pre-aggregators ``pre`` if any."""
    from codedbft.aggregators import by_name

    rule = by_name(name, **{"f": f, **dict(params)})
    if not pre:
        return rule
    from codedbft.aggregators.pre import Pipeline

    return Pipeline(pre=list(pre), rule=rule, f=f)


def _no_pre(config: SchemeConfig, name: str) -> None:
    if config.pre:
        raise ValueError(f"{name} decodes exactly and takes no pre-aggregators (got {list(config.pre)}); "
                         f"use vanilla, detox or byzshield")


def _real(g: Any) -> torch.Tensor:
    g = g if isinstance(g, torch.Tensor) else torch.from_numpy(np.asarray(g))
    return g.real if g.is_complex() else g


class VanillaScheme(Scheme):
    """No redundancy: worker i computes partition i; ``aggregator`` (default mean) over the messages.

    Missing and invalid messages are dropped before the rule runs (a NaN row would poison the mean);
    a rule that cannot run on what is left (too few rows for its n >= ... bound) gives a zero step,
    reported as ``exact=False`` and ``info["skipped"]``.
    """

    name = "vanilla"

    def __init__(self, config: SchemeConfig):
        self.config = config
        self.n = self.k = config.workers
        rule = config.aggregator or "mean"
        self.aggregator = _rule(rule, config.aggregator_params, config.byzantine, tuple(config.pre))
        if self.n < self.aggregator.min_n():
            raise ValueError(f"vanilla with {rule}: needs {self.aggregator.requirement()} "
                             f"(f={config.byzantine}), got n={self.n}")

    @property
    def assignment(self) -> tuple[tuple[int, ...], ...]:
        return tuple((i,) for i in range(self.n))

    def decode(self, messages: torch.Tensor, missing: np.ndarray) -> SchemeResult:
        t0 = time.perf_counter()
        present = np.flatnonzero(~missing)
        x = messages if present.size == self.n else messages[torch.from_numpy(present)]
        info: dict[str, Any] = {}
        try:
            grad = self.aggregator(x, **self.call_context)
        except ValueError as err:  # too few rows left for the rule's bound
            grad = messages.new_zeros(messages.shape[1:])
            info["skipped"] = str(err)
        info["aggregate_ms"] = (time.perf_counter() - t0) * 1e3
        info["reason"] = info.get("skipped") or "vanilla: a robust rule's output is an estimate, never certified"
        return SchemeResult(grad, (), False, info)


class DracoScheme(Scheme):
    """DRACO: an exact code (repetition or cyclic MDS) decoded to the sum; the step uses sum / k."""

    def __init__(self, config: SchemeConfig, cyclic: bool):
        self.config = config
        self.name = "draco-cyclic" if cyclic else "draco-repetition"
        if config.aggregator not in (None, "mean"):
            raise ValueError(f"{self.name} decodes exactly and takes no aggregator (got {config.aggregator!r}); use detox")
        _no_pre(config, self.name)
        s = config.s
        if cyclic:
            from codedbft.encoders import CyclicMDSCode

            # the decoder's projections from the master's secret: a run is reproducible (with fewer
            # liars than s the decoder also leaves out honest suspects, which changes the rounding of the
            # sum), and a deployment that sets --master-seed keeps them from every worker
            self.code = CyclicMDSCode(config.workers, s, seed=int(config.params.get("secret", config.params.get("seed", 0))))
        else:
            from codedbft.encoders import RepetitionCode

            self.code = RepetitionCode(config.workers, s=s)
        self.n, self.k = self.code.n, self.code.k

    def quorum(self, order: Order) -> Quorum | None:
        """Within 2e + m <= 2s against the b placed workers: 2(s - b) replies may be missing per
        repetition group, or in the whole cyclic code."""
        budget = 2 * (self.code.s - self.config.byzantine)
        if budget <= 0 or order.op is not None:
            return None
        if self.name == "draco-cyclic":
            return Quorum((tuple(order.workers),), budget)
        groups: dict[tuple[int, ...], list[int]] = {}
        for w in order.workers:  # a repetition group: the workers holding the same partition
            groups.setdefault(order.tasks[w], []).append(w)
        return Quorum(tuple(tuple(g) for g in groups.values()), budget)

    def decode(self, messages: torch.Tensor, missing: np.ndarray) -> SchemeResult:
        res = self.code.decode(messages, missing=missing)
        grad = _real(res.gradient) / self.k
        return SchemeResult(grad, tuple(res.flagged), bool(res.exact), dict(res.info))


class DetoxScheme(Scheme):
    """DETOX: groups of r (default 3) vote; bucket means of the group outputs; a robust outer rule.

    The rule is :class:`~codedbft.aggregators.Hierarchical` (outer default ``"median"``, built with
    f = floor(b / ceil(r/2))). The vote runs here, with the erasure mask, so a missing member never
    votes (zero-filled rows of two missing members would otherwise agree); the Hierarchical rule's
    inner (bucket) and outer steps then run on the group values.
    """

    name = "detox"

    def __init__(self, config: SchemeConfig):
        from codedbft.aggregators import Hierarchical
        from codedbft.encoders import RepetitionCode

        self.config = config
        r = config.group_size or 3
        self.code = RepetitionCode(config.workers, r=r)
        self.n, self.k, self.r = self.code.n, self.code.k, r
        bucket = config.bucket or 1
        if self.k % bucket:
            raise ValueError(f"detox needs bucket | k: bucket={bucket}, k={self.k} groups")
        outer: Any = config.aggregator or "median"
        if config.pre:  # the outer rule behind the pre-aggregators, with the f DETOX gives it
            import math

            f = config.byzantine // math.ceil(r / 2)
            outer = _rule(outer, config.aggregator_params, f, tuple(config.pre))
            self.aggregator = Hierarchical(group_size=r, bucket=bucket, outer=outer, s=config.byzantine)
        else:
            self.aggregator = Hierarchical(group_size=r, bucket=bucket, outer=outer, s=config.byzantine,
                                           **dict(config.aggregator_params))
        if self.k // bucket < self.aggregator.outer.min_n():
            raise ValueError(f"detox: {self.k // bucket} buckets < the outer rule's minimum "
                             f"({self.aggregator.outer.requirement()} with f={self.aggregator.f})")

    def decode(self, messages: torch.Tensor, missing: np.ndarray) -> SchemeResult:
        from codedbft.decoders.majority import majority_vote

        t0 = time.perf_counter()
        vote = majority_vote(messages, group_size=self.r, missing=missing, rtol=self.code.rtol)
        t1 = time.perf_counter()
        agg, g = self.aggregator, vote.values
        buckets = agg.inner(g.reshape(self.k // agg.bucket, agg.bucket, -1))
        grad = agg.outer(buckets)
        info = dict(vote.info)
        info.update(decode_ms=(t1 - t0) * 1e3, aggregate_ms=(time.perf_counter() - t1) * 1e3,
                    undecided_ids=tuple(torch.nonzero(~vote.decided).flatten().tolist()),
                    reason="detox: a robust rule over the group outputs is an estimate, never certified")
        # A robust rule over honest group values need not return their mean: DETOX never claims exactness.
        return SchemeResult(grad, vote.flagged, False, info)


class ByzShieldScheme(Scheme):
    """ByzShield (Konstantinidis & Ramamoorthy, MLSys 2021): ``ByzShieldCode(l, r, assignment=...)``.

    Each worker computes the l files (partitions) its assignment gives it and sends them as a
    stacked ``(l, d)`` message (``Order.stacked``); the decoder votes per file among its r copies and
    certifies the sum, or falls back to the robust rule (default median) over the k files.
    ``group_size`` (or scheme param ``r``) is r (default 3); ``byzantine`` sizes the decoder (q).
    Scheme param ``assignment``: ``mols`` (default; n = r*l, l = n / r, scheme param ``l`` if given
    must agree) or ``ramanujan`` (l = scheme param ``l``, default n / r; Case 1 r < l, l prime, has
    n = r*l; Case 2 r prime dividing l has n = r**2, e.g. n = 25 with l = r = 5).
    """

    name = "byzshield"

    def __init__(self, config: SchemeConfig):
        from codedbft.encoders import ByzShieldCode
        from codedbft.encoders.byzshield import ASSIGNMENTS

        self.config = config
        r = int(config.params.get("r", config.group_size or 3))
        assignment = str(config.params.get("assignment", "mols"))
        if assignment not in ASSIGNMENTS:
            raise ValueError(f"byzshield assignment must be one of {', '.join(ASSIGNMENTS)}, got {assignment!r}")
        rule = config.aggregator or "median"
        if assignment == "mols" and config.workers % r:
            raise ValueError(f"byzshield needs n = r*l: r={r} must divide n={config.workers}")
        if assignment == "mols" and "l" in config.params and int(config.params["l"]) * r != config.workers:
            raise ValueError(f"byzshield needs n = r*l: l={config.params['l']}, r={r}, n={config.workers}")
        l = int(config.params["l"]) if "l" in config.params else config.workers // r
        self.code = ByzShieldCode(l, r, aggregator=rule, q=config.byzantine, assignment=assignment)
        if self.code.n != config.workers:  # only Ramanujan gets here: Case 2 has n = r**2, not r*l
            raise ValueError(f"byzshield ramanujan with l={l}, r={r} has n={self.code.n} workers, "
                             f"not n={config.workers} (Case 1: n = r*l; Case 2: n = r**2)")
        if config.aggregator_params or config.pre:  # sized by the code (f = files an optimal attack wins)
            tuned = _rule(rule, config.aggregator_params, self.code.f_files, tuple(config.pre))
            self.code = ByzShieldCode(l, r, aggregator=tuned, q=config.byzantine, assignment=assignment)
        self.n, self.k = self.code.n, self.code.k
        self.aggregator = self.code.aggregator

    @property
    def stacked(self) -> bool:
        return True

    def decode(self, messages: torch.Tensor, missing: np.ndarray) -> SchemeResult:
        res = self.code.decode(messages, missing=missing)
        return SchemeResult(_real(res.gradient) / self.k, tuple(res.flagged), bool(res.exact), dict(res.info))


register_scheme("vanilla", VanillaScheme, params=(),
                help="no redundancy: one partition per worker, a robust rule (default mean) over the n messages")
register_scheme("draco-repetition", lambda c: DracoScheme(c, cyclic=False), params=(),
                help="DRACO repetition groups of 2s+1, majority vote, exact when 2e+m <= 2s per group")
register_scheme("draco-cyclic", lambda c: DracoScheme(c, cyclic=True), params=(),
                help="DRACO cyclic MDS code, syndrome decoding, exact when 2e+m <= 2s")
register_scheme("detox", DetoxScheme, params=(),
                help="DETOX groups of r (default 3): vote, bucket means, a robust outer rule (default median)")
register_scheme("byzshield", ByzShieldScheme, params=("r", "l", "assignment"),
                help="ByzShield MOLS (n = r*l) or Ramanujan assignment, vote per file, certified sum or robust rule")
