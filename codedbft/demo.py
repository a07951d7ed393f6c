"""``codedbft demo``: encode random partition gradients, let s workers attack, decode, print a table.

Each row encodes k random partition gradients with one code, replaces the messages of s randomly
placed workers with an attack (colluding random vector, huge values, NaN, sign flip), decodes, and
reports the relative error of the recovered sum against the float64 truth, the decoder's own
``decode_ms`` and the flagged workers (and, for a row that is not exact, the decoder's ``reason``).
"""

from __future__ import annotations

import argparse
from typing import Sequence

import numpy as np


def _codes(n: int, s: int):
    from codedbft.encoders import CyclicMDSCode, RepetitionCode

    out = []
    r = 2 * s + 1
    if n % r == 0:
        out.append(("draco-repetition", RepetitionCode(n, s=s)))
    else:  # keep the row: the largest s' <= s whose group size divides n
        s2 = max(x for x in range(s + 1) if n % (2 * x + 1) == 0)
        out.append((f"draco-repetition (s={s2}: 2s+1 must divide n)", RepetitionCode(n, s=s2)))
    out.append(("draco-cyclic", CyclicMDSCode(n, s=s)))
    return out


def run(n: int = 15, s: int = 2, d: int = 100_000, seed: int = 0) -> list[dict]:
    """Run the demo and return one dict per (code, attack) row."""
    rng = np.random.default_rng(seed)
    rows = []
    for name, code in _codes(n, s):
        G = rng.standard_normal((code.k, d))  # float64: the error column then shows decoding, not rounding
        truth = G.sum(0)
        honest = code.encode(G)
        for attack in ("collude", "huge", "nan", "sign-flip"):
            msgs = np.array(honest, copy=True)
            ids = np.sort(rng.choice(code.n, size=code.s, replace=False))
            if attack == "collude":
                msgs[ids] = rng.standard_normal(d)
            elif attack == "huge":
                msgs[ids] = 1e30
            elif attack == "nan":
                msgs[ids] = np.nan
            else:
                msgs[ids] *= -1
            res = code.decode(msgs)
            grad = np.asarray(res.gradient, dtype=np.float64)
            rel = float(np.linalg.norm(grad - truth) / np.linalg.norm(truth))
            rows.append(
                dict(
                    code=name, n=code.n, s=code.s, redundancy=code.redundancy, attack=attack,
                    byzantine=tuple(int(i) for i in ids), flagged=res.flagged, exact=res.exact,
                    rel_error=rel, decode_ms=res.info["decode_ms"], reason=res.info["reason"],
                )
            )
    return rows


def format_table(rows: list[dict]) -> str:
    head = f"{'code':<44} {'n':>3} {'s':>2} {'red.':>5} {'attack':<9} {'rel. error':>10} {'exact':>5} {'decode ms':>9}  flagged (byzantine)"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['code']:<44} {r['n']:>3} {r['s']:>2} {r['redundancy']:>5.1f} {r['attack']:<9} "
            f"{r['rel_error']:>10.1e} {str(r['exact']):>5} {r['decode_ms']:>9.2f}  {list(r['flagged'])} ({list(r['byzantine'])})"
            + ("" if r["reason"] is None else f"  not exact: {r['reason']}")
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="codedbft demo", description=__doc__.splitlines()[0])
    p.add_argument("--workers", "-n", type=int, default=15, help="workers n of each code (default 15)")
    p.add_argument("--byzantine", "-s", type=int, default=2, help="Byzantine workers s the codes correct (default 2)")
    p.add_argument("--dim", "-d", type=int, default=100_000, help="gradient dimension d (default 100000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random gradients and attacks (default 0)")
    a = p.parse_args(argv)
    try:
        rows = run(a.workers, a.byzantine, a.dim, a.seed)
    except ValueError as e:
        p.error(str(e))
    print(format_table(rows))
    ok = all(r["exact"] and r["flagged"] == r["byzantine"] for r in rows)
    print("\nall exact, all Byzantine workers flagged" if ok else "\nSOME ROWS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
