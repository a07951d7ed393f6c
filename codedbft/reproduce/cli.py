"""``codedbft reproduce [CLAIM ...] [--quick] [--out DIR] [--list] [--json]`` (docs/reproduce.md).

Exit codes: 0 when every chosen claim ran (whatever its verdict: a claim that does not hold here is
a result, not a failure), 1 when some claim raised or missed a prerequisite, 2 for an unknown claim
name or a bad flag (before anything runs).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

DEFAULT_OUT = "runs/reproduce"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("reproduce", help="test the source papers' headline claims here, one table",
                       description="Run the smallest experiment that tests each source paper's headline claim "
                                   "(reusing train, sweep and the benchmarks) and print claim, the paper's figure, "
                                   "ours and the verdict. See docs/reproduce.md.")
    p.add_argument("claims", nargs="*", metavar="CLAIM", help="claims to run (default: all; see --list)")
    p.add_argument("--quick", action="store_true", help="smaller experiments: every claim in under 10 minutes "
                   "in all on 2 cores (the README's table is from a full run)")
    p.add_argument("--out", metavar="DIR", default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT}): "
                   "reproduce.json, reproduce.md and one directory per claim; rerunning reuses finished runs")
    p.add_argument("--list", action="store_true", help="list the claims (name, paper, where, statement) and exit")
    p.add_argument("--json", action="store_true", help="with --list: as JSON; otherwise print reproduce.json's rows")
    p.add_argument("--no-progress", action="store_true", help="no per-claim progress lines")
    p.set_defaults(handler=lambda args: run(args, p))
    return p


def _list(as_json: bool) -> int:
    from codedbft.reproduce.runner import select

    claims = select()
    if as_json:
        print(json.dumps([{k: getattr(c, k) for k in ("name", "paper", "where", "statement", "paper_value",
                                                       "quick_s")} | {"missing": c.requires()} for c in claims],
                         indent=1))
        return 0
    width = max(len(c.name) for c in claims)
    for c in claims:
        missing = c.requires()
        print(f"{c.name:<{width}}  {c.paper}, {c.where}")
        print(f"{'':<{width}}  {c.statement}  (--quick ~{c.quick_s:.0f} s)"
              + (f"  [needs {missing}]" if missing else ""))
    return 0


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from codedbft.reproduce.base import ERROR, MISSING
    from codedbft.reproduce.runner import reproduce, select, text_table

    if args.list:
        return _list(args.json)
    try:
        select(args.claims)
    except ValueError as err:
        parser.error(str(err))  # exit 2, before anything runs
    results = reproduce(args.claims, quick=args.quick, out=args.out, progress=not args.no_progress)
    if args.json:
        from dataclasses import asdict

        print(json.dumps([asdict(r) for r in results], indent=1))
    else:
        print("\n" + text_table(results))
        print(f"\nwrote {args.out}/reproduce.md and {args.out}/reproduce.json")
    bad = [r for r in results if r.verdict in (ERROR, MISSING)]
    if bad:
        print(f"codedbft reproduce: {len(bad)} claim(s) did not run: {', '.join(r.claim for r in bad)}", file=sys.stderr)
    return 1 if bad else 0
