"""ByGARS++ (Regatti, Chen & Gupta, 2020): reputation scores tolerate any number of attackers.

Reputations learnt from the inner product with the server's auxiliary gradient may turn negative,
so a worker that sends a negative multiple of its gradient ("multiplicative noise", the paper's
adversary model) ends up helping: 0, 3, 6 and all 8 of 8 workers sign-flipping (c = 1 and c = 4)
train to the attack-free accuracy. Vanilla averaging is shown beside it. Training runs, vanilla
scheme, the master computing the auxiliary gradient (codedbft/cluster/server_oracle.py).
"""

from __future__ import annotations

from codedbft.reproduce.base import Context, Outcome, claim, train, verdict


@claim("bygars-any-number", paper="ByGARS (Regatti et al., 2020)", where="abstract; §4 Fig. 2 (0, 3, 6, 8 of 8 adversaries)",
       statement="ByGARS++ trains to the attack-free accuracy with any number of multiplicative-noise attackers.",
       paper_value="robust to any number of Byzantine workers (8 of 8 sign-flip: as no attack)", quick_s=25)
def bygars_any_number(ctx: Context) -> Outcome:
    steps = 60 if ctx.quick else 200
    base = dict(backend="local", scheme="vanilla", workers=8, dataset="digits", model="logreg", lr=0.2,
                batch_size=160, steps=steps, eval_every=steps)
    clean = train(ctx, "clean", **base, aggregator="bygars")["final_test_accuracy"]
    acc, mean = {}, {}
    for c in (1.0, 4.0):
        for b in (3, 6, 8):
            acc[(c, b)] = train(ctx, f"bygars-c{c:g}-b{b}", **base, aggregator="bygars", byzantine=b,
                                attack="sign-flip", attack_params={"c": c})["final_test_accuracy"]
        mean[c] = train(ctx, f"mean-c{c:g}-b6", **base, aggregator="mean", byzantine=6, attack="sign-flip",
                        attack_params={"c": c})["final_test_accuracy"]
    ok = {k: v >= clean - 0.02 for k, v in acc.items()}
    ours = (f"8 workers, {steps} steps, attack-free {clean:.3f}; sign-flip " + ", ".join(
        f"c={c:g} b={b}: {v:.3f}" for (c, b), v in acc.items()) + "; mean with b=6: " + ", ".join(
        f"c={c:g} {v:.3f}" for c, v in mean.items()))
    return Outcome(ours, verdict(all(ok.values()), any(ok.values())),
                   {"attack_free": clean, "bygars": {f"c{c:g}-b{b}": v for (c, b), v in acc.items()}, "mean": mean})
