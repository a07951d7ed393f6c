"""Run claims one after the other; write the table after each, so an interrupted run keeps its rows.

A claim that raises becomes an ``error`` row (the exception's last line) and the next claim runs;
one whose prerequisite is missing is a ``prerequisite missing`` row naming it. Each claim's runs
live in ``OUT/<claim>/``; a rerun into the same OUT reuses the runs that finished.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from codedbft.cluster.rundir import atomic_write_bytes, atomic_write_json
from codedbft.reproduce.base import CLAIMS, ERROR, MISSING, Claim, Context


@dataclass
class ClaimResult:
    """One row of the reproduction table."""

    claim: str
    paper: str
    where: str
    statement: str
    paper_value: str
    ours: str
    verdict: str
    run_dir: str
    wall_s: float
    numbers: dict[str, Any] = field(default_factory=dict)


def select(names: Sequence[str] = ()) -> list[Claim]:
    """The claims called ``names`` (all when empty); ValueError naming an unknown one, with a suggestion."""
    return [CLAIMS.get(n) for n in names] if names else [CLAIMS.get(n) for n in CLAIMS.available()]


def run_claim(claim: Claim, out: Path, quick: bool, progress: bool = True) -> ClaimResult:
    """Run one claim into ``out/<name>``; never raises for the claim's own failures."""
    ctx = Context(out / claim.name, quick, progress)
    row = dict(claim=claim.name, paper=claim.paper, where=claim.where, statement=claim.statement,
               paper_value=claim.paper_value, run_dir=str(ctx.out))
    t0 = time.perf_counter()
    missing = claim.requires()
    if missing is not None:
        return ClaimResult(**row, ours=f"needs {missing}", verdict=MISSING, wall_s=0.0)
    try:
        ctx.out.mkdir(parents=True, exist_ok=True)
        outcome = claim.run(ctx)
    except Exception as err:  # a claim's failure is a row, not the end of the reproduction
        (ctx.out / "error.txt").write_text(traceback.format_exc())
        return ClaimResult(**row, ours=f"{type(err).__name__}: {err}".splitlines()[0][:300], verdict=ERROR,
                           wall_s=time.perf_counter() - t0)
    return ClaimResult(**row, ours=outcome.ours, verdict=outcome.verdict, wall_s=time.perf_counter() - t0,
                       numbers=_jsonable(dict(outcome.numbers)))


def reproduce(names: Sequence[str] = (), quick: bool = False, out: str | Path = "runs/reproduce",
              progress: bool = True) -> list[ClaimResult]:
    """Run the claims ``names`` (every registered claim when empty); write ``reproduce.json`` and
    ``reproduce.md`` into ``out`` after each one; return the rows."""
    claims = select(names)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    earlier = _earlier_rows(root, quick)  # rows of the claims not rerun now stay in the table
    results: list[ClaimResult] = []
    for claim in claims:
        if progress:
            print(f"[{len(results) + 1}/{len(claims)}] {claim.name}: {claim.statement}", flush=True)
        results.append(run_claim(claim, root, quick, progress))
        if progress:
            r = results[-1]
            print(f"    -> {r.verdict} ({r.wall_s:.0f} s): {r.ours}", flush=True)
        earlier[results[-1].claim] = results[-1]
        write([earlier[n] for n in CLAIMS.available() if n in earlier], root, quick)
    return results


def _earlier_rows(root: Path, quick: bool) -> dict[str, ClaimResult]:
    """The rows a previous reproduction of the same size (``--quick`` or not) wrote into ``root``."""
    try:
        meta = json.loads((root / "reproduce.json").read_text())
    except (OSError, ValueError):
        return {}
    if meta.get("quick") != quick:
        return {}
    fields = set(ClaimResult.__dataclass_fields__)
    rows = {}
    for row in meta.get("claims", []):
        if isinstance(row, dict) and fields <= set(row) and row.get("claim") in CLAIMS:
            rows[row["claim"]] = ClaimResult(**{k: row[k] for k in fields})
    return rows


def write(results: Sequence[ClaimResult], root: Path, quick: bool) -> None:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = {"date": stamp, "quick": quick, "claims": [asdict(r) for r in results]}
    # atomic: an interrupted reproduction keeps the previous table whole (what _earlier_rows reads)
    atomic_write_json(root / "reproduce.json", meta)
    atomic_write_bytes(root / "reproduce.md", (f"codedbft reproduce{' --quick' if quick else ''}, {stamp}\n\n"
                                               + markdown_table(results) + "\n").encode())


def markdown_table(results: Sequence[ClaimResult]) -> str:
    lines = ["| claim | paper (where) | paper's figure | ours | verdict | run directory |", "|---|---|---|---|---|---|"]
    for r in results:
        cells = [f"`{r.claim}`", f"{r.paper}, {r.where}", r.paper_value, r.ours, f"**{r.verdict}**", f"`{r.run_dir}`"]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def text_table(results: Sequence[ClaimResult], width: int = 70) -> str:
    """The terminal table: claim, verdict, paper's figure, ours (wrapped), run directory."""
    import textwrap

    out = []
    for r in results:
        out.append(f"{r.claim}  [{r.verdict}]  {r.paper}, {r.where}")
        out.append(f"    paper: {r.paper_value}")
        out += ["    " + ("ours:  " if i == 0 else "       ") + line
                for i, line in enumerate(textwrap.wrap(r.ours, width) or [""])]
        out.append(f"    runs:  {r.run_dir}  ({r.wall_s:.0f} s)")
    return "\n".join(out)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    try:
        return float(x)
    except (TypeError, ValueError):
        return str(x)
