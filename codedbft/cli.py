"""``codedbft train``, ``sweep``, ``inspect`` (and ``demo``): the command line.

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


class _Formatter(argparse.HelpFormatter):
    """Keeps the explicit line breaks of a help text (one registered name per line) and never
    breaks a line inside a hyphenated name."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        import textwrap

        out: list[str] = []
        for line in text.splitlines():
            indent = " " * (len(line) - len(line.lstrip()))
            hang = indent + "  " if indent else ""  # a name's description hangs under its name
            out += textwrap.wrap(line, width, break_on_hyphens=False, subsequent_indent=hang) or [""]
        return out


def _registries() -> dict[str, Any]:
    """The registries the flags' choices and help come from (no name list is written here)."""
    from codedbft.aggregators.registry import AGGREGATORS
    from codedbft.attacks.base import ATTACKS
    from codedbft.attacks.placement import PLACEMENTS
    from codedbft.cluster.backend import BACKENDS
    from codedbft.cluster.trainer import SETTINGS
    from codedbft.decentralized.rules import RULES
    from codedbft.schemes.registry import SCHEMES
    from codedbft.topology import TOPOLOGIES
    from codedbft.training.datasets import DATASETS
    from codedbft.training.models import MODELS
    from codedbft.training.optim import OPTIMIZERS

    return dict(setting=SETTINGS, scheme=SCHEMES, aggregator=AGGREGATORS, attack=ATTACKS, placement=PLACEMENTS,
                dataset=DATASETS, model=MODELS, optimizer=OPTIMIZERS, backend=BACKENDS, topology=TOPOLOGIES,
                rule=RULES)


def _name_flag(group: Any, flag: str, registry: Any, text: str, extra: tuple[str, ...] = (),
               paths: bool = False) -> None:
    """A flag whose value is a registered name: choices and per-name help read from ``registry``;
    ``paths``: an import path ``pkg.mod:attr`` is accepted too (imported when the config is validated)."""
    from codedbft.registry import canonical, choices_help

    names = (*registry.available(), *extra)

    def name(text: str) -> str:  # argparse's own choices error gives no suggestion
        if paths and ":" in text:  # a user's object (codedbft.training.byo), kept as typed
            return text.strip()
        key = canonical(text)
        if key not in names:
            raise argparse.ArgumentTypeError(f"unknown {registry.kind} {text!r}{registry.suggest(text)} "
                                             f"(one of: {', '.join(names)})")
        return key

    name.__name__ = registry.kind
    group.add_argument(flag, type=name, default=argparse.SUPPRESS, metavar=flag.lstrip("-").upper(),
                       help=(choices_help(registry, text) + (f"\n  {', '.join(extra)}" if extra else "")
                             + ("\n  or an import path package.module:attribute (docs/byo.md)" if paths else "")).replace("%", "%%"))


def _train_parser(sub: Any) -> argparse.ArgumentParser:
    reg = _registries()
    p = sub.add_parser("train", help="train with a Byzantine-resilient scheme",
                       description="Train a model with coded Byzantine-resilient SGD (DRACO, DETOX, ...).",
                       formatter_class=_Formatter)
    S = argparse.SUPPRESS  # unset flags stay out of the namespace so the config file is not overridden
    kv = dict(type=_kv, action="append", default=S, metavar="KEY=VALUE")
    p.add_argument("--config", help="YAML/JSON file with the same keys as the flags")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    _name_flag(p, "--setting", reg["setting"], "the trust model")
    g = p.add_argument_group("scheme (setting master)")
    _name_flag(g, "--scheme", reg["scheme"], "the Byzantine-resilient method")
    _name_flag(g, "--aggregator", reg["aggregator"], "robust rule (vanilla: over the n messages; detox: outer; "
               "byzshield: over the files)")
    g.add_argument("--aggregator-param", dest="aggregator_params", **kv,
                   help="a parameter of the rule (repeatable); unknown keys are an error listing the valid ones")
    from codedbft.aggregators.pre import PRE_AGGREGATORS
    from codedbft.registry import choices_help

    g.add_argument("--pre", action="append", default=S, metavar="NAME[:KEY=VALUE,...]",
                   help=choices_help(PRE_AGGREGATORS, "a pre-aggregator before the rule (repeatable, applied in "
                                     "order), e.g. --pre nnm --pre bucketing:s=2").replace("%", "%%"))
    g.add_argument("--workers", "-n", type=int, default=S, help="number of workers n")
    g.add_argument("--byzantine", "-b", type=int, default=S, help="Byzantine workers placed in the run")
    g.add_argument("--tolerate", "-s", type=int, default=S, help="s the code is built for (default: --byzantine)")
    g.add_argument("--group-size", type=int, default=S, help="DETOX group size r / ByzShield replication r")
    g.add_argument("--bucket", type=int, default=S, help="DETOX bucket size (groups per bucket mean)")
    g.add_argument("--scheme-param", dest="scheme_params", **kv,
                   help="a scheme parameter (repeatable), e.g. q=0.2 for rrr-randomized")
    g = p.add_argument_group("decentralized (setting decentralized: UBAR paper)")
    g.add_argument("--nodes", type=int, default=S, help="number of nodes (default: --workers)")
    _name_flag(g, "--topology", reg["topology"], "the communication graph")
    g.add_argument("--connection", type=float, default=S, help="connection rate p of the erdos-renyi graph")
    g.add_argument("--topology-param", dest="topology_params", **kv, help="a topology parameter (repeatable), e.g. k=4")
    _name_flag(g, "--rule", reg["rule"], "the neighbourhood aggregation rule")
    g.add_argument("--rule-param", dest="rule_params", **kv, help="a rule parameter (repeatable), e.g. rho=0.4")
    g.add_argument("--alpha", type=float, default=S, help="weight of the node's own estimate in the update (GUF)")
    g = p.add_argument_group("byzantine servers (setting byzantine-servers: ByzSGD)")
    g.add_argument("--servers", type=int, default=S, help="replicated parameter servers n_ps")
    g.add_argument("--byzantine-servers", type=int, default=S, help="Byzantine servers f_ps (< n_ps / 3)")
    g.add_argument("--server-rule", choices=("median", "mda"), default=S,
                   help="what a worker takes of the servers' models")
    g.add_argument("--contraction-every", type=int, default=S,
                   help="T: distributed median contraction of the servers every T steps (0: never)")
    g = p.add_argument_group("adversary")
    _name_flag(g, "--attack", reg["attack"], "what the Byzantine workers send", extra=("none",))
    g.add_argument("--attack-param", dest="attack_params", **kv, help="a parameter of the attack (repeatable)")
    _name_flag(g, "--placement", reg["placement"], "which workers are Byzantine")
    g.add_argument("--placement-ids", type=_ids, default=S, metavar="I,J,...", help="worker ids for --placement fixed")
    g.add_argument("--redraw", action="store_true", default=S, help="redraw the random placement every step")
    g = p.add_argument_group("training")
    _name_flag(g, "--dataset", reg["dataset"], "training data", paths=True)
    g.add_argument("--dataset-param", dest="dataset_params", **kv, help="a dataset option (repeatable)")
    g.add_argument("--split", default=S, metavar="SPLIT",
                   help="which rows each partition (or node) draws from: iid, dirichlet:alpha=0.1, gamma:0.5, extreme")
    _name_flag(g, "--model", reg["model"], "the model", paths=True)
    g.add_argument("--model-param", dest="model_params", **kv, help="a model option (repeatable)")
    g.add_argument("--steps", type=int, default=S, help="training steps")
    g.add_argument("--batch-size", type=int, default=S, help="global batch (k partitions of batch_size // k)")
    _name_flag(g, "--optimizer", reg["optimizer"], "how the decoded gradient is applied")
    g.add_argument("--lr", type=float, default=S, help="learning rate")
    g.add_argument("--momentum", type=float, default=S,
                   help="momentum of the optimizers that take one (sgd, rmsprop); ignored by the others")
    g.add_argument("--weight-decay", type=float, default=S, help="weight decay (L2; decoupled for adamw)")
    g.add_argument("--optimizer-param", dest="optimizer_params", **kv,
                   help="another keyword of the torch.optim optimizer (repeatable), e.g. betas=0.9,0.99, eps=1e-7, "
                        "nesterov=true; unknown keys are an error listing the valid ones")
    from codedbft.training.optim import SCHEDULES

    g.add_argument("--lr-schedule", default=S, metavar="NAME[:KEY=VALUE,...]",
                   help=choices_help(SCHEDULES, "torch.optim.lr_scheduler schedule of the lr, stepped once per "
                                     "training step (also a skipped one), e.g. cosine, step:step_size=100,gamma=0.5, "
                                     "multistep:milestones=[100,200]").replace("%", "%%"))
    g.add_argument("--seed", type=int, default=S, help="seed of every random draw the workers may know")
    g.add_argument("--master-seed", type=int, default=S, metavar="INT",
                   help="the master's private seed (randomized RRR's coin, data encoding's decoder projections); "
                        "never sent to a worker; default: --seed, reproducible but predictable by a worker")
    g.add_argument("--local-steps", type=int, default=S, metavar="K",
                   help="honest workers take K local SGD steps per partition and send the average local gradient "
                        "(FedAvg-style; K > 1: gradient codes only, not data-encoding)")
    g.add_argument("--local-lr", type=float, default=S, help="rate of the local steps (default: --lr)")
    g.add_argument("--worker-momentum", type=float, default=S, metavar="BETA",
                   help="each worker sends its momentum m <- beta m + (1-beta) g (Karimireddy et al. 2021); "
                        "vanilla, draco-*, detox, byzshield")
    g = p.add_argument_group("runtime")
    _name_flag(g, "--backend", reg["backend"], "where the workers run")
    g.add_argument("--address", default=S, help="existing Ray cluster (default: an embedded local instance)")
    g.add_argument("--num-cpus", type=float, default=S, help="CPUs reserved per Ray actor")
    g.add_argument("--ray-host", default=S, metavar="IP",
                   help="address the embedded Ray instance binds its ports to (loopback by default: Ray's services "
                        "accept unauthenticated code, so widen it only on a trusted network)")
    g.add_argument("--actors", type=int, default=S, metavar="N",
                   help="Ray actors (processes) hosting the workers round-robin, each computing its workers batched "
                        "(default: one per CPU of the embedded instance, one per worker with --address)")
    g.add_argument("--threads", type=int, default=S, help="torch threads per process")
    g.add_argument("--timeout", dest="timeout_s", type=float, default=S, help="per-step reply deadline (s)")
    g.add_argument("--wait-for", dest="wait_for", choices=("all", "auto"), default=S,
                   help="auto: decode as soon as the replies in hand leave the code able to correct the placed "
                        "Byzantine workers (DRACO with --tolerate > --byzantine); late replies are erasures")
    g.add_argument("--straggle", default=S, metavar="P:FACTOR",
                   help="straggler model (Ray): each worker is FACTOR times slower with probability P per step, seeded")
    g.add_argument("--max-restarts", type=int, default=S, help="Ray restarts of a dead worker actor")
    g.add_argument("--isolate-after", type=int, default=S, help="stop asking a worker flagged this many times")
    g = p.add_argument_group("output")
    g.add_argument("--run-dir", default=S, help="default: runs/train-<time>")
    g.add_argument("--eval-every", type=int, default=S, help="test accuracy every k steps")
    g.add_argument("--log-every", type=int, default=S, help="metrics row every k steps")
    g.add_argument("--checkpoint-every", type=int, default=S, help="checkpoint every k steps")
    g.add_argument("--tensorboard", action="store_true", default=S,
                   help="also write the metrics as TensorBoard scalars to RUN_DIR/tensorboard (pip install tensorboard)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_defaults(p)
    return p


def _add_defaults(parser: argparse.ArgumentParser) -> None:
    """Append each flag's RunConfig default to its help (read from RunConfig, never written twice)."""
    from dataclasses import MISSING, fields

    from codedbft.cluster.config import RunConfig

    defaults = {f.name: f.default for f in fields(RunConfig) if f.default is not MISSING}
    for action in parser._actions:
        if action.dest in defaults and action.help and "(default:" not in action.help:
            value = defaults[action.dest]
            head, sep, names = action.help.partition("; one of:")  # the default goes before a name list
            action.help = f"{head} (default: {'none' if value is None else value}){sep}{names}"


#: what a resumed run may change: how long and where it runs, never what it computes
_RESUME_KEYS = ("steps", "backend", "address", "num_cpus", "timeout_s", "max_restarts", "actors", "tensorboard")
_DICT_KEYS = ("aggregator_params", "scheme_params", "attack_params", "dataset_params", "model_params",
              "topology_params", "rule_params", "optimizer_params")


def _config_from_args(args: argparse.Namespace) -> Any:
    from codedbft.cluster import RunConfig

    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config", "resume", "no_progress", "handler")}
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
    keys = ("setting", "scheme", "rule", "backend", "steps", "d", "final_loss", "final_test_accuracy",
            "worst_benign_test_accuracy", "spread", "server_spread", "flagged_total", "erasures_total",
            "missing_total", "skipped_steps", "computation_efficiency", "wall_s", "model_sha256")
    rows = []
    for k in keys:
        if k not in summary:
            continue
        v = summary.get(k)
        rows.append((k, f"{v:.4f}" if isinstance(v, float) else str(v)))
        if k == "flagged_total" and summary.get("flagged_per_worker"):  # who, not only how many
            who = [f"{i} ({c}x)" for i, c in enumerate(summary["flagged_per_worker"]) if c]
            rows.append(("flagged_workers", ", ".join(who) or "none"))
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 3 + max(len(v) for _, v in rows))
    return "\n".join([line, *(f"{k:<{width}} | {v}" for k, v in rows), line])


def train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from codedbft.cluster.trainer import Trainer, make_trainer

    try:
        if args.resume:
            given = {k: v for k, v in vars(args).items() if k not in ("command", "config", "resume", "no_progress", "handler")}
            fixed = sorted(set(given) - set(_RESUME_KEYS))
            if fixed or args.config:
                raise ValueError(f"--resume continues the run as configured; only {', '.join(_RESUME_KEYS)} "
                                 f"may change (got {', '.join(fixed) or '--config'})")
            overrides = {k: v for k, v in given.items() if k in _RESUME_KEYS}
            master = Trainer.resume(args.resume, **overrides)
        else:
            master = make_trainer(_config_from_args(args))
    except (ValueError, OSError) as err:
        parser.error(str(err))  # exit code 2, before any worker starts
    import errno
    import signal

    from codedbft.cluster.trainer import RunInterrupted

    where = master.rundir.root if master.rundir is not None else "the run directory"
    try:
        summary = master.run(progress=not args.no_progress)
    except ConnectionError as err:  # --address names no reachable cluster (checked before ray.init)
        print(f"codedbft train: {err}", file=sys.stderr)
        return 2
    except RunInterrupted as err:  # a second signal during the clean-up of an interrupted run
        print(f"codedbft train: {err}; the last complete checkpoint in {where} is kept", file=sys.stderr)
        return 128 + err.signum
    except OSError as err:
        if err.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise
        print(f"codedbft train: no space left on device in {where} (writing {err.filename}); the last good "
              f"checkpoint is kept, free some space and continue with --resume {where}", file=sys.stderr)
        return 1
    finally:
        master.close()  # also shuts an embedded Ray instance down
    print(_table(summary))
    if master.rundir is not None:
        print(f"run directory: {master.rundir.root}")
    if summary.get("interrupted"):
        name = summary.get("signal", "SIGINT")
        print(f"codedbft train: interrupted by {name} at step {summary.get('steps')}; checkpoint written, "
              f"continue with: codedbft train --resume {where}", file=sys.stderr)
        return 128 + int(getattr(signal, name, signal.SIGINT))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:
        from codedbft import demo  # written separately; imported only when asked for

        return int(demo.main(argv[1:]) or 0)
    parser = argparse.ArgumentParser(prog="codedbft", description="Byzantine-resilient distributed SGD with "
                                     "coding theory: train one run, sweep a grid of runs, inspect codes, runs and sweeps.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}",
                        help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train_p = _train_parser(sub)
    train_p.set_defaults(handler=lambda a: train(a, train_p))
    sub.add_parser("demo", help="encode, attack and decode random gradients with each code (codedbft.demo)")
    import importlib

    for module in SUBCOMMANDS:  # each adds its parser and sets ``handler`` (args -> exit code)
        importlib.import_module(module).add_parser(sub)
    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)


#: modules that add a subcommand: ``add_parser(subparsers)`` sets ``handler(args) -> exit code``
SUBCOMMANDS = ("codedbft.sweep.cli", "codedbft.inspection", "codedbft.reproduce.cli")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("codedbft")
    except PackageNotFoundError:  # a source checkout that was not installed
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
