"""ByzShield (Konstantinidis & Ramamoorthy, MLSys 2021): the distortion fraction of its assignments.

The figure of merit is ε̂(q): the largest fraction of files an optimal set of q Byzantine workers
corrupts (it holds a majority of a file's r copies). Table 3: the MOLS assignment for K = 15, r = 3
(and DETOX's groups for comparison); Table 4: the Ramanujan-bigraph assignment for K = 25, r = 5.
Both by exact search over every q-subset (:meth:`ByzShieldCode.max_distortion`, the same search
``benchmarks/bench_distortion.py`` prints).
"""

from __future__ import annotations

import inspect

from codedbft.reproduce.base import Context, Outcome, claim, verdict

PAPER = "ByzShield (Konstantinidis & Ramamoorthy, MLSys 2021)"
TABLE3 = {2: 0.04, 3: 0.12, 4: 0.20, 5: 0.32, 6: 0.48, 7: 0.56}
TABLE3_DETOX = {2: 0.2, 3: 0.2, 4: 0.4, 5: 0.4, 6: 0.6, 7: 0.6}
TABLE4 = {3: 0.04, 4: 0.04, 5: 0.08, 6: 0.16, 7: 0.20}


def _compare(measured: dict[int, float], paper: dict[int, float]) -> tuple[str, bool, bool]:
    same = {q: abs(measured[q] - v) < 1e-9 for q, v in paper.items()}
    text = ", ".join(f"q={q}: {measured[q]:.2f}" + ("" if same[q] else f" (paper {paper[q]:.2f})") for q in paper)
    return text, all(same.values()), any(same.values())


@claim("byzshield-table3", paper=PAPER, where="Table 3 (MOLS, K = 15, r = 3)",
       statement="An optimal q-worker attack distorts at most these fractions of the MOLS files, far below DETOX's.",
       paper_value="ε̂ = 0.04, 0.12, 0.20, 0.32, 0.48, 0.56 at q = 2..7 (DETOX 0.2 .. 0.6)", quick_s=5)
def byzshield_table3(ctx: Context) -> Outcome:
    from codedbft.encoders import ByzShieldCode

    code = ByzShieldCode(5, 3)
    measured = {q: code.max_distortion(q)[0] for q in TABLE3}
    detox = {q: (q // 2) / 5 for q in TABLE3}  # 5 groups of 3: two liars win a group
    text, all_same, some = _compare(measured, TABLE3)
    dtext, d_same, _ = _compare(detox, TABLE3_DETOX)
    return Outcome(f"exact search: {text}; DETOX groups: {dtext}", verdict(all_same and d_same, some),
                   {"mols": measured, "detox": detox})


def _ramanujan_missing() -> str | None:
    from codedbft.encoders import ByzShieldCode

    if "assignment" in inspect.signature(ByzShieldCode).parameters:
        return None
    return "ByzShieldCode(assignment='ramanujan') (ByzShield's Ramanujan assignments)"


@claim("byzshield-table4", paper=PAPER, where="Table 4 (Ramanujan bigraph, K = 25, r = 5)",
       statement="An optimal q-worker attack distorts at most these fractions of the Ramanujan files.",
       paper_value="ε̂ = 0.04, 0.04, 0.08, 0.16, 0.20 at q = 3..7", requires=_ramanujan_missing, quick_s=5)
def byzshield_table4(ctx: Context) -> Outcome:
    from codedbft.encoders import ByzShieldCode

    code = ByzShieldCode(5, 5, assignment="ramanujan")
    measured = {q: code.max_distortion(q)[0] for q in TABLE4}
    text, all_same, some = _compare(measured, TABLE4)
    return Outcome(f"exact search, K = {code.n}, {code.k} files: {text}", verdict(all_same, some),
                   {"ramanujan": measured})
