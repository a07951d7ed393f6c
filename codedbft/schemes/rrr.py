"""Reactive redundancy (RRR-BFT, Gupta & Vaidya 2019): an *interactive* scheme.

Deterministic (``"rrr"``): n workers, k = floor(n / (f+1)) partitions; partition j first goes to the
f+1 consecutive workers of group j (workers j(f+1) .. j(f+1)+f); the n mod (f+1) workers left over are
spares (no first-round partition, asked only for reactive copies), so any n >= 2f+1 works. If all present copies agree bit for bit, at least one is honest, so the value is
correct. Otherwise, within the same step, the master asks f more workers (2f+1 copies in total),
takes the value that f+1 copies share, and isolates forever every worker whose copy differed.
Exact whenever n >= 2f+1; computation efficiency 1/(f+1) when nobody lies.

Randomized (``"rrr-randomized"``, check probability ``q``): k = n, each partition first computed by
one worker; after the replies arrive the master draws (privately, from ``(seed, step)``) whether to
check this step; a check asks f more copies of every partition and proceeds as above. Efficiency
about 1/(1 + q f); unchecked steps are not exact.

Isolated workers are known faulty, so only f' = f - |isolated| faults remain: f'+1 agreeing copies
(2f'+1 on disagreement) suffice from then on. These mechanics are our reconstruction of the paper
(docs/codes.md, RRR section); the tests check the invariants: exact gradient on every checked step, caught liars
isolated forever, the efficiency figures.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Generator, Sequence

import numpy as np
import torch

from codedbft.schemes.base import Order, Replies, Scheme, SchemeResult
from codedbft.schemes.config import SchemeConfig
from codedbft.schemes.registry import register_scheme


class RRRScheme(Scheme):
    """RRR-BFT, deterministic or randomized (see the module docstring)."""

    def __init__(self, config: SchemeConfig, randomized: bool = False):
        self.config = config
        if config.pre or config.aggregator not in (None, "mean"):
            raise ValueError("rrr decodes exactly (majority of copies) and takes no aggregator or pre-aggregators")
        self.randomized = randomized
        self.name = "rrr-randomized" if randomized else "rrr"
        n, f = config.workers, config.s
        if n < 2 * f + 1:
            raise ValueError(f"{self.name} needs n >= 2f+1 for a majority of 2f+1 copies, got n={n}, f={f}")
        self.n, self.f = n, f
        self.k = n if randomized else n // (f + 1)
        self.q = float(config.params.get("q", 0.1))
        if not 0.0 <= self.q <= 1.0:
            raise ValueError(f"rrr-randomized needs 0 <= q <= 1, got q={self.q}")
        self.seed = int(config.params.get("seed", 0))
        # the check coin is the master's secret: a liar that could predict it would lie on unchecked steps only
        self.secret = int(config.params.get("secret", self.seed))
        self.isolated: set[int] = set()

    @property
    def assignment(self) -> tuple[tuple[int, ...], ...]:
        """Worker i's first-round partition ``(i // (f+1),)``; ``()`` for the spares past k(f+1)."""
        r = 1 if self.randomized else self.f + 1
        return tuple((i // r,) if i < self.k * r else () for i in range(self.n))

    def coefficients(self, worker: int, partitions: Sequence[int]) -> None:
        return None  # every RRR message is one raw partition gradient

    def state_dict(self) -> dict[str, Any]:
        return {"isolated": sorted(self.isolated)}

    def load_state_dict(self, state: Any) -> None:
        self.isolated = set(state.get("isolated", ()))

    # -- the conversation -----------------------------------------------------------------------
    def _ask(self, wanted: dict[int, list[int]], step: int) -> Generator[Order, Replies, dict[tuple[int, int], torch.Tensor | None]]:
        """Have worker w compute partition j for every j in wanted[w]; one partition per worker per
        order (messages stay (d,)). Returns {(worker, partition): message or None (missing/invalid)}."""
        got: dict[tuple[int, int], torch.Tensor | None] = {}
        queue = {w: list(js) for w, js in wanted.items() if js}
        while queue:
            order = self.order({w: (js[0],) for w, js in queue.items()}, step)
            replies = yield order
            for row, w in enumerate(replies.workers):
                got[(w, order.tasks[w][0])] = None if replies.missing[row] else replies.messages[row]
            queue = {w: js[1:] for w, js in queue.items() if len(js) > 1}
        return got

    def _candidates(self, j: int, have: set[int], active: np.ndarray) -> list[int]:
        """Workers that may add a copy of partition j, in a fixed rotation starting after its group."""
        start = (j + 1) * (1 if self.randomized else self.f + 1)
        order = [(start + i) % self.n for i in range(self.n)]
        return [w for w in order if active[w] and w not in have]

    def protocol(self, step: int, active: Sequence[bool] | None = None) -> Generator[Order, Replies, SchemeResult]:
        act = np.ones(self.n, dtype=bool) if active is None else np.asarray(active, dtype=bool).copy()
        act[list(self.isolated)] = False
        f_rem = max(0, self.f - len(self.isolated))
        copies: dict[int, dict[int, torch.Tensor | None]] = defaultdict(dict)
        computed = 0

        def absorb(got: dict[tuple[int, int], torch.Tensor | None]) -> None:
            for (w, j), msg in got.items():
                copies[j][w] = msg

        # Round 1: f'+1 copies (deterministic) or one copy (randomized) of every partition.
        first: dict[int, list[int]] = defaultdict(list)
        for j in range(self.k):
            owners = [w for w, a in enumerate(self.assignment) if j in a and act[w]]
            need = 1 if self.randomized else f_rem + 1
            owners = owners[:need] + self._candidates(j, set(owners), act)[: max(0, need - len(owners))]
            for w in owners:
                first[w].append(j)
        computed += sum(len(v) for v in first.values())
        absorb((yield from self._ask(first, step)))

        # The check is drawn only now, after the replies: workers could not know it in advance.
        check = (not self.randomized) or bool(np.random.default_rng([self.secret, step, 0xC4EC]).random() < self.q)
        target = {j: (f_rem + 1 if check else 1) for j in range(self.k)}
        flagged: set[int] = set()
        decided: dict[int, torch.Tensor] = {}
        exact = check
        reason = None if check else "unchecked step: one unverified copy per partition"
        while True:
            more: dict[int, list[int]] = defaultdict(list)
            for j in range(self.k):
                if j in decided:
                    continue
                present = [(w, m) for w, m in sorted(copies[j].items()) if m is not None]
                classes: list[tuple[torch.Tensor, list[int]]] = []
                for w, m in present:
                    for value, ws in classes:
                        if torch.equal(value, m):
                            ws.append(w)
                            break
                    else:
                        classes.append((m, [w]))
                best = max(classes, key=lambda c: len(c[1]), default=None)
                if len(classes) > 1:
                    target[j] = 2 * f_rem + 1  # disagreement: extend to a majority of 2f'+1
                if best is not None and len(classes) == 1 and len(best[1]) >= target[j]:
                    decided[j] = best[0]
                    continue
                if best is not None and len(classes) > 1 and len(best[1]) >= f_rem + 1:
                    decided[j] = best[0]  # f'+1 equal copies among at most f' liars: the truth
                    liars = {w for w, m in present if w not in best[1]}
                    flagged |= liars
                    continue
                cand = self._candidates(j, set(copies[j]), act)
                missing_copies = target[j] - len(present) if len(classes) <= 1 else (f_rem + 1) - len(best[1])
                if not cand:
                    decided[j] = best[0] if best is not None else None  # out of workers: best effort
                    exact = False
                    reason = reason or f"partition {j}: out of workers before f'+1 copies agreed"
                    continue
                for w in cand[: max(1, missing_copies)]:
                    more[w].append(j)
            if not more:
                break
            computed += sum(len(v) for v in more.values())
            absorb((yield from self._ask(more, step)))

        t0 = time.perf_counter()
        vals = [decided[j] for j in range(self.k)]
        if any(v is None for v in vals):
            exact = False
            reason = reason or "a partition has no valid copy"
            like = next((v for v in vals if v is not None), None)
            vals = [torch.zeros_like(like) if v is None else v for v in vals] if like is not None else []
        grad = torch.stack(vals).sum(0) / self.k if vals else torch.zeros(0)
        self.isolated |= flagged
        info = {"decode_ms": (time.perf_counter() - t0) * 1e3, "checked": check,
                "isolated_by_scheme": sorted(self.isolated), "f_remaining": f_rem,
                "reason": None if exact else reason}
        return SchemeResult(grad, tuple(sorted(flagged)), exact, info, computed=computed, useful=self.k)


register_scheme("rrr", RRRScheme, params=(),
                help="RRR-BFT reactive redundancy: f+1 copies, 2f+1 on disagreement, liars isolated")
register_scheme("rrr-randomized", lambda c: RRRScheme(c, randomized=True), params=("q",),
                help="randomized RRR-BFT: one copy, checked with probability q (scheme param q, default 0.1)")
