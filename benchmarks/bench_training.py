"""Cost of bit-exact per-partition gradients, against the batched and the textbook ways, in one run.

For each (dataset, model) and ``k`` partitions of ``b`` samples, the median time of

* ``exact``: ``FlatModel.partition_gradients`` (default ``batching="loop"``): one autograd call per
  partition on a fresh aligned copy, bytes independent of the batch (what the majority vote needs);
* ``vmap``: ``FlatModel(batching="vmap")``: all partitions in one ``torch.func.vmap`` call;
* ``naive``: the textbook loop on the ``nn.Module`` (``zero_grad``, ``backward``, concatenate grads);

and the ratios ``exact / vmap`` and ``exact / naive``. It also re-measures the property that decided
the design: whether each row of the vmap result has the same bytes as the partition computed alone
(``vmap bit-exact``), and the same for ``exact`` (must always be ``yes``).

    python benchmarks/bench_training.py [--quick] [--threads 1] [--out runs/bench/training.json]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from _timing import median_ms

from codedbft.training import FlatModel, build_model, load_dataset, set_deterministic

CASES = [
    ("digits", "logreg", {}),
    ("digits", "mlp", {}),
    ("mnist1d", "cnn1d", {}),
    ("digits-linear", "linear", {}),
]


def naive_grads(model: torch.nn.Module, fm: FlatModel, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    rows = []
    for j in range(X.shape[0]):
        model.zero_grad(set_to_none=True)
        out = model(X[j])
        if fm.loss_name == "cross_entropy":
            loss = torch.nn.functional.cross_entropy(out, y[j])
        else:
            loss = 0.5 * (out - y[j]).square().reshape(out.shape[0], -1).sum(1).mean()
        loss.backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    return torch.stack(rows)


def bench_case(dsname: str, mname: str, opts: dict, k: int, b: int, repeats: int) -> dict:
    ds = load_dataset(dsname, seed=0)
    model = build_model(mname, ds, seed=0, **opts)
    exact, batched = FlatModel(model), FlatModel(model, batching="vmap")
    w = exact.init_params()
    X, y = ds.partition_batch(step=0, k=k, b=b, seed=0)
    G = exact.partition_gradients(w, X, y)
    alone = torch.stack([exact.partition_gradient(w, X[j].clone(), y[j].clone()) for j in range(k)])
    Gv = batched.partition_gradients(w, X, y)
    Gn = naive_grads(model, exact, X, y)
    t_exact = median_ms(lambda: exact.partition_gradients(w, X, y), repeats)
    t_vmap = median_ms(lambda: batched.partition_gradients(w, X, y), repeats)
    t_naive = median_ms(lambda: naive_grads(model, exact, X, y), repeats)
    return {
        "dataset": dsname,
        "model": mname,
        "d": exact.d,
        "k": k,
        "b": b,
        "exact_ms": t_exact,
        "vmap_ms": t_vmap,
        "naive_ms": t_naive,
        "exact_over_vmap": t_exact / t_vmap,
        "exact_over_naive": t_exact / t_naive,
        "exact_bit_exact": bool(torch.equal(G, alone)),
        "vmap_bit_exact": bool(torch.equal(Gv, alone)),
        "vmap_max_abs_diff": float((Gv - alone).abs().max()),
        "naive_max_abs_diff": float((Gn - alone).abs().max()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two cases, few repeats (smoke run)")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (1: stable on a shared machine)")
    ap.add_argument("--k", type=int, default=15)
    ap.add_argument("--b", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/training.json"))
    args = ap.parse_args()
    set_deterministic(0, threads=args.threads)
    cases = CASES[:1] + CASES[3:] if args.quick else CASES
    repeats = args.repeats or (3 if args.quick else 15)
    rows = [bench_case(ds, m, o, args.k, args.b, repeats) for ds, m, o in cases]

    head = f"{'dataset/model':<22}{'d':>6}{'exact ms':>10}{'vmap ms':>9}{'naive ms':>10}{'ex/vmap':>9}{'ex/naive':>9}  {'exact bits':>10}{'vmap bits':>10}"
    print(f"k={args.k} partitions of b={args.b}, {args.threads} threads, median of {repeats}")
    print(head)
    for r in rows:
        print(
            f"{r['dataset'] + '/' + r['model']:<22}{r['d']:>6}{r['exact_ms']:>10.2f}{r['vmap_ms']:>9.2f}"
            f"{r['naive_ms']:>10.2f}{r['exact_over_vmap']:>9.2f}{r['exact_over_naive']:>9.2f}  "
            f"{'yes' if r['exact_bit_exact'] else 'NO':>10}{'yes' if r['vmap_bit_exact'] else 'no':>10}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": args.threads, "machine": platform.machine(), "repeats": repeats}
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
