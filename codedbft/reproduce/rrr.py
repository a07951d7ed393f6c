"""RRR-BFT (Gupta & Vaidya, 2019): reactive redundancy is exact at a fraction of the replication cost.

Deterministic: f+1 copies first, f more only on disagreement; exact whenever n >= 2f+1, with
computation efficiency (useful partition gradients per computed one) 1/(f+1) when nobody lies,
against DRACO's 1/(2f+1). Randomized (check probability q): efficiency about 1/(1 + q f). Tested by
training runs: the efficiency from the run's own accounting, exact steps, and the liars isolated.
"""

from __future__ import annotations

from codedbft.reproduce.base import Context, Outcome, claim, train, verdict


@claim("rrr-efficiency", paper="RRR-BFT (Gupta & Vaidya, 2019)", where="§3-4 (efficiency of the deterministic and randomized schemes)",
       statement="Reactive redundancy is exact with efficiency 1/(f+1) fault-free (randomized: about 1/(1+qf)).",
       paper_value="efficiency 1/(f+1) deterministic, ≈ 1/(1+qf) randomized; liars isolated", quick_s=20)
def rrr_efficiency(ctx: Context) -> Outcome:
    steps = 30 if ctx.quick else 100
    base = dict(backend="local", workers=13, dataset="digits", model="logreg", lr=0.2, batch_size=240,
                steps=steps, eval_every=steps)
    parts, ok, numbers = [], [], {}
    for f in (1, 2):
        clean = train(ctx, f"rrr-f{f}-clean", **base, scheme="rrr", byzantine=f, attack=None)
        hit = train(ctx, f"rrr-f{f}-alie", **base, scheme="rrr", byzantine=f, attack="alie")
        eff, want = clean["computation_efficiency"], 1 / (f + 1)  # spares compute nothing in round one
        isolated = hit["rows"][-1].get("isolated_by_scheme", [])
        good = abs(eff - want) < 1e-9 and clean["inexact_steps"] == 0 and hit["inexact_steps"] == 0 \
            and len(isolated) == f
        ok.append(good)
        parts.append(f"f={f}: fault-free efficiency {eff:.3f} (1/(f+1) = {want:.3f}); under ALIE exact "
                     f"{steps - hit['inexact_steps']}/{steps}, isolated {isolated}")
        numbers[f"f{f}"] = {"efficiency": eff, "expected": want, "isolated": isolated}
    steps = 200 if ctx.quick else 500  # the checked fraction is a binomial draw: 30 steps say little
    for q in (0.1, 0.5):
        f = 2
        run = train(ctx, f"rrr-rand-q{q}", **{**base, "steps": steps, "eval_every": steps}, scheme="rrr-randomized",
                    byzantine=f, attack=None, scheme_params={"q": q})
        checked = sum(bool(r.get("checked")) for r in run["rows"]) / steps
        eff, want = run["computation_efficiency"], 1 / (1 + checked * f)
        # the coin is private and random: the checked fraction is within 3 sigma of q, and the
        # efficiency is exactly 1/(1 + (checked fraction) f)
        sigma = (q * (1 - q) / steps) ** 0.5
        ok.append(abs(eff - want) < 1e-9 and abs(checked - q) <= 3 * sigma)
        parts.append(f"randomized q={q}, f={f}: checked {checked:.2f} of the steps, efficiency {eff:.3f} "
                     f"(1/(1+qf) = {1 / (1 + q * f):.3f})")
        numbers[f"q{q}"] = {"efficiency": eff, "checked_fraction": checked, "expected_at_q": 1 / (1 + q * f)}
    return Outcome("; ".join(parts), verdict(all(ok), any(ok)), numbers)
