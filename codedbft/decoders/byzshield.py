"""Decoding ByzShield's MOLS assignment: explain the copies globally, certify, else a robust rule.

Konstantinidis & Ramamoorthy, "ByzShield: An Efficient and Robust System for Distributed Training",
MLSys 2021. :class:`~codedbft.encoders.byzshield.ByzShieldCode` gives each of the k = l² files
(partitions) to r workers, one per Latin square, so every worker holds l files and two workers share
at most one file. A worker sends one gradient per held file, so the master holds r copies of every
file gradient: messages ``(n, l, d)``, row ``[w, p]`` the copy of file ``assignment[w][p]``.

The decoder is sized for q Byzantine workers (``code.q``, the scheme's b). Honest copies of a file
are identical (deterministic computation), so the question is which workers lied, decided for all
files at once rather than file by file.

1. *erase*: copies of missing workers and copies holding NaN/Inf never vote; a non-finite copy is
   certainly Byzantine, so its sender K ("known") belongs to every explanation below.
2. *vote*: per file, :func:`~codedbft.decoders.majority.majority_vote` among its present copies
   (bitwise fingerprint, bytewise confirmation, exact pairwise slow path, relative-tolerance
   fallback). The vote only supplies the comparison of copies: in the few *contested* files (a
   present copy outside the decided value, or no decided value) the copies outside the vote's winning
   class are compared bytewise among themselves, giving every file a partition of its present holders
   into value classes c(x, w).
3. *explain*: a liar set B *explains* the copies when K ⊆ B, |B| <= q and in every file the present
   holders outside B all sit in one class. The true liar set explains them (when at most q workers
   lie), and so does every superset of an explanation, so the family is summarised by its minimal
   members M_1..M_t. They are enumerated by a depth-first branching search: at a file that B leaves
   inconsistent, one class survives and all other remaining holders join B (the branch that keeps the
   fewest options is expanded first; a file with no branch within q ends the path). Every branch adds
   at least one worker, so the depth is at most q - |K| and the search visits at most
   sum_{i<=q} c^i nodes, c <= r the classes in a file; only holders of contested files can enter B
   (a worker whose files are all unanimous is never needed), and with q liars there are at most q·l
   contested files (each liar holds l). The search is capped (``max_nodes``, default 1e5).
4. *certify*: the step is exact when some explanation exists, no explanation leaves a file without
   a copy (|M_i ∪ P_x| > q for every file x with present holders P_x; a lost or too thinly held file
   could hold any value) and all M_i leave every file the same class: then whichever placement of at
   most q liars is the true one, each file's surviving copies are honest, and the sum of one
   surviving copy per file (accumulated in float64) is the true sum. A file the vote could not decide
   (two liars out of three copies sending different junk) is recovered from its honest third copy.
   ``flagged`` = M_1 ∩ ... ∩ M_t: exactly the workers that lie under EVERY explanation, so an honest
   worker is never flagged while at most q workers lie (the true liar set is one explanation). This
   holds on uncertified steps too; the per-file dissenters (the earlier rule's flags) stay in
   ``info["dissenter_ids"]``.
5. *otherwise* (ambiguous, lost files, no explanation, or the search capped): a robust rule (median
   by default) over the per-file voted values estimates the mean file gradient, scaled by k to the
   sum (``exact=False``, ``info["reason"]`` says why). The rule is built with f = the files an
   optimal q-worker attack corrupts, ``eps_hat(q) · k`` (l = 5, r = 3, q = 2..7: 0.04, 0.12, 0.20,
   0.32, 0.48, 0.56 of the files). When no explanation exists (more than q liars, or non-identical
   honest copies) or the search is capped, nothing is known globally and ``flagged`` falls back to
   the per-file dissenters plus K.

Every step the earlier per-file rule certified (all files decided, no q-liar explanation owning a
whole majority) is certified here with the same sum and the same flags: the dissenters are then the
unique minimal explanation. ``certify="per-file"`` keeps that earlier rule (for comparisons).

Certified placements, l = 5, r = 3, liars sending garbage on all their files (-10x truth, or random;
benchmarks/bench_byzshield_certified.py; q = 2, 3 exhaustive, q = 4, 5 500 seeded samples; the same
counts for both attacks): per-file rule -> global rule

    q = 2:  30 -> 105 of 105     q = 3:  30 -> 430 of 455
    q = 4:   6 -> 389 of 500     q = 5:   1 -> 261 of 500

with no wrong certified sum and no honest worker flagged by the global rule, where the per-file
rule flags one in 75, 400, 494, 499 of them under the colluding -10x attack (an honest third copy
outvoted by two liars). At q = 3 the 25 uncertified placements are the 25 files' holder triples:
three liars holding every copy of a file can replace it undetectably.

Cost (one CPU thread, l = 5, r = 3, float32 messages (15, 5, d), shared machine, medians): the
vote is unchanged; the ``certify`` stage (class comparisons + search) touches only contested files.
Fault-free it costs 0.4-0.5 ms against the per-file rule's 0.3 ms (d = 1e5 and 1e6; the whole
decode is ~8x a plain ``messages.sum``, dominated by the non-finite scan, the gather and the vote).
With liars, the search visits at most 26 nodes at q <= 5 (sum_i 3^i bounds it) and takes 0.3-1.3 ms
at small d; at d = 1e6 the bytewise comparisons of an undecided file's copies add ~2 ms per file
(6.7 ms for the CLI case, liars 9 and 11 sending junk; 18 ms for the worst 3-liar placement). A step certified now
instead of going to the median saves the robust rule (about 4 plain sums over the (25, d) voted
files at d = 1e6): at d = 1e5 the two-liar step decoded in 39 ms instead of 80 ms.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from codedbft._arrays import as_numpy, missing_mask, nonfinite_rows
from codedbft.decoders.base import DecodeResult

if TYPE_CHECKING:  # pragma: no cover - the decoder must not import the encoders at run time
    from codedbft.encoders.byzshield import ByzShieldCode

DEFAULT_MAX_NODES = 100_000


def _alternative_exists(
    major: np.ndarray, dissent: np.ndarray, known: np.ndarray, q: int, max_nodes: int
) -> bool | None:
    """Could at most q liars, consistent with the votes, have won some file's majority?

    ``major``/``dissent``: bool (k, n), the present holders of each file agreeing with / dissenting
    from its decided majority; ``known``: bool (n,), workers certainly Byzantine (non-finite copies).
    Honest copies of a file are identical, so a liar set B is consistent when, in every file, the
    holders outside B all sit on one side. A file's majority is wrong only if all its holders are in
    B. Depth-first search over the side each inconsistent file keeps honest; every branch adds a
    worker, so the depth is at most q. Returns True/False, or None when ``max_nodes`` ran out.
    """
    nodes = 0

    def extend(B: np.ndarray) -> bool | None:
        nonlocal nodes
        nodes += 1
        if nodes > max_nodes:
            return None
        out = ~B
        bad = np.flatnonzero((major & out).any(axis=1) & (dissent & out).any(axis=1))
        if bad.size == 0:
            return True
        y = bad[0]
        undecided = False
        for side in (major[y], dissent[y]):
            B2 = B | side
            if B2.sum() <= q:
                found = extend(B2)
                if found:
                    return True
                undecided |= found is None
        return None if undecided else False

    undecided = False
    sizes = (major | known).sum(axis=1)
    for x in np.flatnonzero(sizes <= q):
        found = extend(major[x] | known)
        if found:
            return True
        undecided |= found is None
    return None if undecided else False


def _same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    """Bytewise equality of two copies (the vote's comparison: -0.0 != 0.0, bits decide).

    Compared as integers of the widest size dividing the item size (float32 as int32: a quarter of
    the temporaries of a byte view).
    """
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    width = next(w for w in (8, 4, 2, 1) if a.dtype.itemsize % w == 0)
    view = np.dtype(f"i{width}")
    return np.array_equal(a.view(view), b.view(view))


def _copy_classes(by_file: np.ndarray, pres: np.ndarray, agr: np.ndarray, decided: np.ndarray,
                  contested: np.ndarray) -> dict[int, list[int]]:
    """The value class of each present copy of the ``contested`` files: ``{x: labels (r,)}``, -1 absent.

    The vote's decided class (bytewise, or its tolerance cluster) is class 0; the other present copies
    of a contested file are split bytewise among themselves. Only contested files are read.
    """
    r = pres.shape[1]
    out: dict[int, list[int]] = {}
    for x in contested.tolist():
        p, a = pres[x].tolist(), agr[x].tolist()
        nxt = 1 if decided[x] else 0
        labels = [0 if (ai and nxt) else -1 for ai in a]
        reps: list[int] = []
        for j in range(r):
            if not p[j] or (a[j] and nxt):
                continue
            row = by_file[x * r + j]
            for c, rj in enumerate(reps):
                if _same_bytes(row, by_file[x * r + rj]):
                    labels[j] = nxt + c
                    break
            else:
                labels[j] = nxt + len(reps)
                reps.append(j)
        out[x] = labels
    return out


class _SearchCapped(Exception):
    pass


def explanations(classes: list[list[int]], known: int, q: int, max_nodes: int = DEFAULT_MAX_NODES
                 ) -> tuple[list[int] | None, int]:
    """The minimal liar sets (worker bitmasks) of size <= q, containing ``known``, explaining the copies.

    ``classes``: for each contested file, the bitmasks of its present holders by value class. B
    explains the copies when, in every file, the holders outside B lie in one class. Depth-first
    branching: at an inconsistent file one class survives and the other remaining holders join B.
    Returns ``(sets, nodes)``, ``sets`` sorted by size then value, or None when the search visited
    more than ``max_nodes`` nodes.
    """
    found: set[int] = set()
    nodes = 0

    def visit(B: int) -> None:
        nonlocal nodes
        nodes += 1
        if nodes > max_nodes:
            raise _SearchCapped
        best: list[int] | None = None
        for cls in classes:
            rem = [m & ~B for m in cls]
            rem = [m for m in rem if m]
            if len(rem) < 2:
                continue
            tot = 0
            for m in rem:
                tot |= m
            opts = [B | (tot & ~m) for m in rem]
            opts = [b for b in opts if b.bit_count() <= q]
            if not opts:
                return  # no placement within q makes this file consistent
            if best is None or len(opts) < len(best):
                best = opts
                if len(opts) == 1:
                    break
        if best is None:
            found.add(B)
            return
        for b in dict.fromkeys(best):
            visit(b)

    if known.bit_count() > q:
        return [], 0
    try:
        visit(known)
    except _SearchCapped:
        return None, nodes
    minimal: list[int] = []
    for b in sorted(found, key=lambda m: (m.bit_count(), m)):
        if not any(m & b == m for m in minimal):
            minimal.append(b)
    return minimal, nodes


def _mask(ids: Any) -> int:
    out = 0
    for w in ids:
        out |= 1 << int(w)
    return out


def _ids(mask: int) -> list[int]:
    return [w for w in range(mask.bit_length()) if mask >> w & 1]


class ByzShieldDecoder:
    """Vote per file among its r copies, explain the copies with at most q liars, certify or fall back.

    ``decode(messages, missing=None)`` takes the (n, l, d) messages of
    :meth:`~codedbft.encoders.byzshield.ByzShieldCode.encode` (row ``[w, p]`` is worker w's gradient
    for file ``assignment[w][p]``); ``missing`` names workers. Copies from missing workers and
    copies holding NaN/Inf are erased before the vote (a non-finite copy also flags its worker).
    Then (see the module docstring):

    * certified (some placement of at most ``code.q`` liars explains the copies, and all of them
      leave every file the same surviving value): ``gradient = sum_x v_x`` of one surviving copy per
      file, accumulated in float64, ``exact=True``.
    * otherwise: ``gradient = k * agg(V)``, V (m, d) the per-file voted gradients of the m files with
      at least one present copy (an undecided file offers its plurality copy): the robust rule
      estimates the mean file gradient, scaled to the SUM of the k files. ``exact=False``. When
      erasures leave fewer files than the rule needs (``agg.min_n()``), the gradient is zero: the
      step is skipped (``info["skipped"]``).

    ``flagged``: the workers in every minimal explanation (never an honest worker while at most q
    lie), plus the senders of non-finite copies. When no explanation exists or the search is capped,
    the per-file dissenters (copies that differ from a decided file's majority) instead.
    ``certify="per-file"`` restores the earlier rule throughout: certified only when every file has
    a strict majority that no q-liar explanation owns, flags = the per-file dissenters.

    ``info``: the common keys of :mod:`codedbft.decoders.base`, counted in copies (a row is one copy
    of one file: ``erasures`` = copies of missing workers + non-finite copies, ``nonfinite`` =
    non-finite copies of present workers); the stages ``vote_ms`` (gather and vote),
    ``certify_ms`` (class comparisons and the explanation search), ``combine_ms`` (certified sum)
    and ``aggregate_ms`` (robust rule); and ``missing`` (workers), ``undecided`` / ``undecided_ids``
    (files without a strict majority of their present copies), ``decided``, ``votes`` and
    ``copies`` (int/bool ndarrays (k,): decided, present copies agreeing with the decided value,
    present copies), ``dissenters`` / ``dissenter_ids`` (workers with a copy outside a decided
    file's majority: the per-file rule's flags), ``contested`` / ``contested_ids`` (files whose
    present copies are not all equal), ``explanations`` (minimal liar sets found; 0 also when the
    search did not run or was capped), ``nodes`` (search nodes visited), ``ambiguous`` /
    ``ambiguous_ids`` (files whose surviving value differs between explanations), ``certified``,
    ``files_aggregated``, ``skipped``, ``q`` and ``f``.
    """

    def __init__(self, code: ByzShieldCode, aggregator: Callable[[Any], Any], f: int,
                 max_nodes: int = DEFAULT_MAX_NODES, certify: str = "global") -> None:
        import torch

        if certify not in ("global", "per-file"):
            raise ValueError(f"certify must be 'global' or 'per-file', got {certify!r}")
        self.code, self.aggregator, self.f = code, aggregator, f
        self.max_nodes = max_nodes  # cap of the explanation search (the step falls back when reached)
        self.certify = certify
        # Private fingerprint randomness for the vote, drawn once (workers must not predict it).
        self._generator = torch.Generator().manual_seed(int.from_bytes(np.random.bytes(8), "little") >> 1)

    def decode(self, messages: Any, missing: Any = None) -> DecodeResult:
        from codedbft.decoders.majority import majority_vote

        t0 = time.perf_counter()
        code = self.code
        arr, kind = as_numpy(messages)
        if arr.ndim != 3 or arr.shape[:2] != (code.n, code.l):
            raise ValueError(f"messages must have shape (n={code.n}, l={code.l}, d), got {arr.shape}")
        d = arr.shape[2]
        out_dtype = np.result_type(arr.dtype, np.float32)
        rows = arr.reshape(code.n * code.l, d)  # a view: one row per (worker, held file)
        worker_of_row = np.repeat(np.arange(code.n), code.l)
        erased_workers = missing_mask(missing, code.n)
        live = ~erased_workers[worker_of_row]
        nonfinite = nonfinite_rows(rows) & live

        t_vote = time.perf_counter()
        fr = code.file_rows  # (k, r)
        pres = (live & ~nonfinite)[fr]
        # One numpy gather into file-major order makes each file's copies contiguous, so the vote
        # works on a view (torch.index_select, the vote's own gather, is ~10x slower on the CPU).
        by_file = rows[fr.ravel()]
        vote = majority_vote(by_file, group_size=code.r, missing=~pres.ravel(), generator=self._generator)
        decided = vote.decided.numpy()
        winners = vote.winners.numpy().copy()  # row of by_file holding each file's (plurality) value
        agr = vote.agree.numpy().reshape(code.k, code.r)  # present and equal to the decided value
        t1 = time.perf_counter()

        # Each file's present holders, split by side of its decided vote, as (k, n) worker masks.
        w_of = worker_of_row[fr]
        major = np.zeros((code.k, code.n), dtype=bool)
        dissent = np.zeros((code.k, code.n), dtype=bool)
        np.put_along_axis(major, w_of, agr, axis=1)
        np.put_along_axis(dissent, w_of, pres & ~agr & decided[:, None], axis=1)
        known = np.zeros(code.n, dtype=bool)
        known[worker_of_row[nonfinite]] = True
        dissenters = dissent.any(axis=0) | known
        contested = np.flatnonzero((pres & ~agr).any(axis=1))
        extra: dict[str, Any] = {"explanations": 0, "nodes": 0, "ambiguous": 0, "ambiguous_ids": ()}
        if self.certify == "per-file":
            flagged_mask = dissenters
            reason = self._uncertified(decided, flagged_mask, major, dissent, known)
        else:
            flagged_mask, reason = self._explain(by_file, pres, agr, decided, w_of, known, dissenters,
                                                 contested, winners, extra)
        t2 = time.perf_counter()

        gradient, reason, info = self._combine(by_file, winners, pres, reason, out_dtype)
        undecided = np.flatnonzero(~decided)
        dissenter_ids = tuple(int(w) for w in np.flatnonzero(dissent.any(axis=0)))
        info.update(
            decided=decided, votes=agr.sum(axis=1), copies=pres.sum(axis=1),
            undecided=int(undecided.size), undecided_ids=tuple(int(x) for x in undecided),
            dissenters=len(dissenter_ids), dissenter_ids=dissenter_ids,
            contested=int(contested.size), contested_ids=tuple(int(x) for x in contested),
            missing=int(erased_workers.sum()), q=code.q, f=self.f,
            vote_ms=(t1 - t_vote) * 1e3, certify_ms=(t2 - t1) * 1e3, **extra,
        )
        return DecodeResult.finish(kind.wrap(gradient), np.flatnonzero(flagged_mask), info, t0=t0,
                                   erasures=int((~pres).sum()), nonfinite=int(nonfinite.sum()), reason=reason)

    def _explain(self, by_file: np.ndarray, pres: np.ndarray, agr: np.ndarray, decided: np.ndarray,
                 w_of: np.ndarray, known: np.ndarray, dissenters: np.ndarray, contested: np.ndarray,
                 winners: np.ndarray, extra: dict[str, Any]) -> tuple[np.ndarray, str | None]:
        """The global rule: ``(flagged mask, reason)``; sets ``winners`` to surviving copies when certified."""
        code = self.code
        q, r = code.q, code.r
        labels = _copy_classes(by_file, pres, agr, decided, contested)
        bits = [[1 << w for w in ws] for ws in w_of.tolist()]  # holder bitmasks (Python ints: any n)
        pres_l = pres.tolist()
        classes = []
        for x, lab in labels.items():
            cls: dict[int, int] = {}
            for j, c in enumerate(lab):
                if c >= 0:
                    cls[c] = cls.get(c, 0) | bits[x][j]
            classes.append(list(cls.values()))
        known_mask = _mask(np.flatnonzero(known))
        sets, nodes = explanations(classes, known_mask, q, self.max_nodes)
        extra["nodes"] = nodes
        if sets is None:
            return dissenters, (f"explanation search ran out of max_nodes = {self.max_nodes}; "
                                f"per-file vote, flags = per-file dissenters")
        if not sets:
            why = (f"{known_mask.bit_count()} workers sent non-finite copies > q = {q}" if known_mask.bit_count() > q
                   else f"no placement of at most q = {q} liars explains the copies")
            return dissenters, f"{why}; flags = per-file dissenters"
        extra["explanations"] = len(sets)
        common = sets[0]
        for m in sets[1:]:
            common &= m
        flagged = np.zeros(code.n, dtype=bool)
        flagged[_ids(common)] = True

        present_masks = [sum(b for b, p in zip(bx, px) if p) for bx, px in zip(bits, pres_l)]
        lost = [x for x in range(code.k) if any((m | present_masks[x]).bit_count() <= q for m in sets)]
        if lost:
            return flagged, (f"{len(lost)} files (ids {lost[:8]}) could have every present copy held by at "
                             f"most q = {q} liars")
        ambiguous = []
        chosen: dict[int, int] = {}
        for x, cls in zip(contested.tolist(), classes):
            survivors = {next(c for c, m in enumerate(cls) if m & ~b) for b in sets}
            if len(survivors) > 1:
                ambiguous.append(int(x))
            else:
                chosen[x] = survivors.pop()
        if ambiguous:
            extra.update(ambiguous=len(ambiguous), ambiguous_ids=tuple(ambiguous))
            return flagged, (f"{len(ambiguous)} files take different values under the {len(sets)} minimal "
                             f"placements of at most q = {q} liars explaining the copies")
        # Certified: one surviving copy per contested file (the vote's winner when it survives, so a
        # step the per-file rule certified sums the very same rows).
        for x, cls in zip(contested.tolist(), classes):
            keep = cls[chosen[x]]
            win = int(winners[x]) - x * r
            if not (pres_l[x][win] and keep & bits[x][win]):
                win = next(j for j in range(r) if pres_l[x][j] and keep & bits[x][j])
                winners[x] = x * r + win
        return flagged, None

    def _uncertified(self, decided: np.ndarray, flagged: np.ndarray, major: np.ndarray, dissent: np.ndarray,
                     known: np.ndarray) -> str | None:
        """The per-file rule: None when the votes certify the sum, else why they do not."""
        q = self.code.q
        if not decided.all():
            return f"{int((~decided).sum())} files have no strict majority of their present copies"
        if int(flagged.sum()) > q:
            return f"{int(flagged.sum())} workers flagged > q = {q} the decoder is sized for"
        found = _alternative_exists(major, dissent, known, q, self.max_nodes)
        if found is None:
            return f"certification search ran out of max_nodes = {self.max_nodes}"
        if found:
            return f"at most q = {q} liars consistent with the votes could hold a whole file majority"
        return None

    def _combine(self, by_file: np.ndarray, winners: np.ndarray, pres: np.ndarray, reason: str | None,
                 out_dtype: np.dtype) -> tuple[np.ndarray, str | None, dict[str, Any]]:
        """The certified float64 sum, or k times the robust rule over the voted files, or a skipped step.

        Returns ``(gradient, reason, info)``; ``reason`` gains what the uncertified path did.
        """
        t0 = time.perf_counter()
        code = self.code
        used = pres.any(axis=1)
        need = getattr(self.aggregator, "min_n", lambda: 1)()
        info: dict[str, Any] = {"certified": reason is None, "skipped": False, "files_aggregated": 0,
                                "combine_ms": 0.0, "aggregate_ms": 0.0}
        if reason is None:
            gradient = by_file[winners].sum(axis=0, dtype=np.float64).astype(out_dtype, copy=False)
            info["combine_ms"] = (time.perf_counter() - t0) * 1e3
        elif used.sum() >= need:
            import torch

            est = self.aggregator(torch.from_numpy(by_file[winners[used]]))
            est = est.detach().cpu().numpy() if hasattr(est, "detach") else np.asarray(est)
            gradient = est * code.k
            info.update(files_aggregated=int(used.sum()), aggregate_ms=(time.perf_counter() - t0) * 1e3)
            reason = f"{reason}; robust rule over {int(used.sum())} voted files"
        else:
            gradient = np.zeros(by_file.shape[1], dtype=out_dtype)
            info["skipped"] = True
            reason = f"{reason}; step skipped: {int(used.sum())} files with a present copy < the rule's {need}"
        return gradient, reason, info


__all__ = ["ByzShieldDecoder"]
