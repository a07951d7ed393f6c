"""``codedbft train`` (and ``codedbft demo``): the command line.

``codedbft train`` alone runs the README's main job (see :class:`~codedbft.cluster.RunConfig`'s
defaults). Precedence: RunConfig defaults < ``--config FILE`` (YAML or JSON, same keys as the flags
with ``_`` or ``-``) < flags. ``--resume DIR`` continues the run in DIR from its last checkpoint.
Every configuration error is reported before any worker (or Ray) starts, with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Sequence


def _kv(text: str) -> tuple[str, Any]:
    """``key=value`` with the value parsed as YAML (numbers, booleans, lists)."""
    import yaml

    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def _ids(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated worker ids, got {text!r}") from None


def _train_parser(sub: Any) -> argparse.ArgumentParser:
    from codedbft.schemes import available_schemes

    p = sub.add_parser("train", help="train with a Byzantine-resilient scheme",
                       description="Train a model with coded Byzantine-resilient SGD (DRACO, DETOX, ...).")
    S = argparse.SUPPRESS  # unset flags stay out of the namespace so the config file is not overridden
    p.add_argument("--config", help="YAML/JSON file with the same keys as the flags")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    g = p.add_argument_group("scheme")
    g.add_argument("--scheme", choices=available_schemes(), default=S)
    g.add_argument("--aggregator", default=S, help="robust rule (vanilla: over the n messages; detox: outer)")
    g.add_argument("--aggregator-param", dest="aggregator_params", type=_kv, action="append", default=S,
                   metavar="KEY=VALUE")
    g.add_argument("--workers", "-n", type=int, default=S)
    g.add_argument("--byzantine", "-b", type=int, default=S, help="Byzantine workers placed in the run")
    g.add_argument("--tolerate", "-s", type=int, default=S, help="s the code is built for (default: --byzantine)")
    g.add_argument("--group-size", type=int, default=S, help="DETOX group size r")
    g.add_argument("--bucket", type=int, default=S, help="DETOX bucket size")
    g.add_argument("--scheme-param", dest="scheme_params", type=_kv, action="append", default=S, metavar="KEY=VALUE")
    g = p.add_argument_group("adversary")
    g.add_argument("--attack", default=S, help="attack name, or 'none'")
    g.add_argument("--attack-param", dest="attack_params", type=_kv, action="append", default=S, metavar="KEY=VALUE")
    g.add_argument("--placement", choices=("random", "worst", "fixed"), default=S)
    g.add_argument("--placement-ids", type=_ids, default=S, metavar="I,J,...")
    g.add_argument("--redraw", action="store_true", default=S, help="redraw the random placement every step")
    g = p.add_argument_group("training")
    g.add_argument("--dataset", default=S)
    g.add_argument("--dataset-param", dest="dataset_params", type=_kv, action="append", default=S, metavar="KEY=VALUE")
    g.add_argument("--model", default=S)
    g.add_argument("--model-param", dest="model_params", type=_kv, action="append", default=S, metavar="KEY=VALUE")
    g.add_argument("--steps", type=int, default=S)
    g.add_argument("--batch-size", type=int, default=S, help="global batch (k partitions of batch_size // k)")
    g.add_argument("--optimizer", choices=("sgd", "adam"), default=S)
    g.add_argument("--lr", type=float, default=S)
    g.add_argument("--momentum", type=float, default=S)
    g.add_argument("--weight-decay", type=float, default=S)
    g.add_argument("--seed", type=int, default=S)
    g = p.add_argument_group("runtime")
    g.add_argument("--backend", choices=("local", "ray"), default=S)
    g.add_argument("--address", default=S, help="existing Ray cluster (default: an embedded local instance)")
    g.add_argument("--num-cpus", type=float, default=S, help="CPUs per worker actor")
    g.add_argument("--threads", type=int, default=S, help="torch threads per process")
    g.add_argument("--timeout", dest="timeout_s", type=float, default=S, help="per-step reply deadline (s)")
    g.add_argument("--max-restarts", type=int, default=S)
    g.add_argument("--isolate-after", type=int, default=S, help="stop asking a worker flagged this many times")
    g = p.add_argument_group("output")
    g.add_argument("--run-dir", default=S, help="default: runs/train-<time>")
    g.add_argument("--eval-every", type=int, default=S)
    g.add_argument("--log-every", type=int, default=S)
    g.add_argument("--checkpoint-every", type=int, default=S)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


#: what a resumed run may change: how long and where it runs, never what it computes
_RESUME_KEYS = ("steps", "backend", "address", "num_cpus", "timeout_s", "max_restarts")
_DICT_KEYS = ("aggregator_params", "scheme_params", "attack_params", "dataset_params", "model_params")


def _config_from_args(args: argparse.Namespace) -> Any:
    from codedbft.cluster import RunConfig

    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config", "resume", "no_progress")}
    for key in _DICT_KEYS:
        if key in flags:
            flags[key] = dict(flags[key])
    if args.config:
        cfg = RunConfig.from_file(args.config, **flags)
    else:
        cfg = RunConfig.from_dict(flags)
    if cfg.run_dir is None:
        cfg = cfg.replace(run_dir=f"runs/train-{time.strftime('%Y%m%d-%H%M%S')}")
    return cfg


def _table(summary: dict[str, Any]) -> str:
    keys = ("scheme", "backend", "steps", "d", "final_loss", "final_test_accuracy", "flagged_total",
            "erasures_total", "skipped_steps", "computation_efficiency", "wall_s", "model_sha256")
    rows = []
    for k in keys:
        v = summary.get(k)
        rows.append((k, f"{v:.4f}" if isinstance(v, float) else str(v)))
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 3 + max(len(v) for _, v in rows))
    return "\n".join([line, *(f"{k:<{width}} | {v}" for k, v in rows), line])


def train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from codedbft.cluster.master import Master

    try:
        if args.resume:
            given = {k: v for k, v in vars(args).items() if k not in ("command", "config", "resume", "no_progress")}
            fixed = sorted(set(given) - set(_RESUME_KEYS))
            if fixed or args.config:
                raise ValueError(f"--resume continues the run as configured; only {', '.join(_RESUME_KEYS)} "
                                 f"may change (got {', '.join(fixed) or '--config'})")
            overrides = {k: v for k, v in given.items() if k in _RESUME_KEYS}
            master = Master.resume(args.resume, **overrides)
        else:
            master = Master(_config_from_args(args))
    except (ValueError, OSError) as err:
        parser.error(str(err))  # exit code 2, before any worker starts
    try:
        summary = master.run(progress=not args.no_progress)
    finally:
        master.close()
    print(_table(summary))
    if master.rundir is not None:
        print(f"run directory: {master.rundir.root}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:
        from codedbft import demo  # written separately; imported only when asked for

        return int(demo.main(argv[1:]) or 0)
    parser = argparse.ArgumentParser(prog="codedbft", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train_p = _train_parser(sub)
    sub.add_parser("demo", help="encode, attack and decode random gradients with each code (codedbft.demo)")
    args = parser.parse_args(argv)
    return train(args, train_p)


if __name__ == "__main__":
    sys.exit(main())
