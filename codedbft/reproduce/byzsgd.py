"""ByzSGD (El-Mhamdi et al., PODC 2020): training survives Byzantine parameter servers (up to a third).

With 4 servers of which 1 is Byzantine (1/4 < 1/3) and Byzantine workers too, the correct servers'
models still learn (the attack-free accuracy) and stay close to each other thanks to the
Distributed Median Contraction every T steps; without it (T = 0) they drift apart. Through
``benchmarks/bench_decentralized.py`` (``byzsgd_runs``).
"""

from __future__ import annotations

from codedbft.reproduce.base import Context, Outcome, benchmark, benchmark_missing, claim, verdict


@claim("byzsgd-servers", paper="ByzSGD (El-Mhamdi et al., PODC 2020)", where="abstract; §5 (1/3 Byzantine servers and workers)",
       statement="Training tolerates a Byzantine minority (< 1/3) of parameter servers as well as Byzantine workers.",
       paper_value="tolerates up to 1/3 Byzantine servers and workers; DMC bounds the correct servers' drift",
       requires=lambda: benchmark_missing("bench_decentralized"), quick_s=15)
def byzsgd_servers(ctx: Context) -> Outcome:
    bench = benchmark("bench_decentralized")
    steps = 30 if ctx.quick else 100
    runs = bench.byzsgd_runs(steps)
    ctx.write_json("byzsgd.json", runs)
    clean = next(r for r in runs if r["byzantine_servers"] == 0)
    hit = [r for r in runs if r["byzantine_servers"] == 1 and r["contraction_every"] > 0]
    no_dmc = next(r for r in runs if r["byzantine_servers"] == 1 and r["contraction_every"] == 0)
    learns = all(r["worst"] >= clean["worst"] - 0.05 for r in hit)
    contracts = all(r["final_spread"] <= no_dmc["final_spread"] for r in hit)
    ours = (f"4 servers (1 Byzantine), 15 workers (3 Byzantine), {steps} steps: worst correct-server accuracy "
            + ", ".join(f"{r['attack']} {r['worst']:.3f}" for r in hit) + f" vs {clean['worst']:.3f} with no "
            f"Byzantine server; final spread {max(r['final_spread'] for r in hit):.3f} with DMC vs "
            f"{no_dmc['final_spread']:.3f} without")
    return Outcome(ours, verdict(learns and contracts, learns or contracts), {"runs": runs})
