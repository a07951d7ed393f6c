"""Data encoding (Data, Song & Diggavi, IEEE T-IT 2021): t <= floor((m-1)/2) errors at overhead m/(m-2t).

The master encodes the data (least squares) so that honest replies form a codeword; up to
t = floor((m-1)/2) Byzantine workers of m are corrected exactly, and each encoded copy of the data
costs m/(m-2t) (the SGD variant; gradient descent stores two encodings, 2m/(m-2t)). Tested by
training runs at the bound (every step exact under the omniscient attack; the run's computation
efficiency is (m-2t)/m), the stored redundancy of the code, and t beyond the bound refused.
"""

from __future__ import annotations

from codedbft.reproduce.base import Context, Outcome, claim, train, verdict


@claim("data-encoding-bound", paper="Data encoding (Data, Song & Diggavi, IEEE T-IT 2021)",
       where="Theorem 1 and §III (t <= ⌊(m−1)/2⌋, storage overhead)",
       statement="Up to t = ⌊(m−1)/2⌋ Byzantine workers of m are corrected exactly, at overhead m/(m−2t).",
       paper_value="t ≤ ⌊(m−1)/2⌋; overhead m/(m−2t) (SGD), 2m/(m−2t) (GD)", quick_s=25)
def data_encoding_bound(ctx: Context) -> Outcome:
    from codedbft.encoders import DataEncodingCode
    from codedbft.schemes import SchemeConfig, build_scheme

    steps = 10 if ctx.quick else 50
    parts, ok, numbers = [], [], {}
    for m, t in ((11, 2), (11, 5), (15, 7)):
        run = train(ctx, f"m{m}-t{t}", backend="local", scheme="data-encoding", workers=m, byzantine=t,
                    attack="omniscient", attack_params={"c": 10.0}, dataset="synthetic-regression", model="linear",
                    lr=0.05, batch_size=(m - 2 * t) * 20, steps=steps, eval_every=steps)
        eff, want = run["computation_efficiency"], (m - 2 * t) / m
        red = DataEncodingCode(m, t).redundancy
        good = run["inexact_steps"] == 0 and abs(eff - want) < 1e-9 and abs(red - 2 * m / (m - 2 * t)) < 1e-9
        ok.append(good)
        parts.append(f"m={m}, t={t}: exact {steps - run['inexact_steps']}/{steps}, overhead {1 / eff:.2f} "
                     f"(m/(m−2t) = {m / (m - 2 * t):.2f}), stored {red:.2f}")
        numbers[f"m{m}-t{t}"] = {"efficiency": eff, "stored_redundancy": red, "inexact": run["inexact_steps"]}
    try:
        build_scheme(SchemeConfig(name="data-encoding", workers=11, byzantine=6))
        refused = False
    except ValueError:
        refused = True
    ok.append(refused)
    parts.append(f"t = 6 > ⌊(11−1)/2⌋ {'refused' if refused else 'accepted'}")
    return Outcome("; ".join(parts), verdict(all(ok), any(ok)), numbers)
