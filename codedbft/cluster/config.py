"""The run configuration: one typed object for the CLI flags, the YAML/JSON config file and config.json.

The defaults are the README's main job: DRACO repetition (r = 5) on 15 workers, 2 of them Byzantine
sending the omniscient attack with c = 10 (which turns plain averaging into gradient ascent:
(13 - 2*10)/15 < 0), an MLP on scikit-learn's digits, on an embedded local Ray instance.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from codedbft.schemes import SchemeConfig


def _check_names(config: "RunConfig") -> None:
    """Every name a run builds must be registered: ValueError listing the available ones otherwise."""
    from codedbft.aggregators.registry import AGGREGATORS
    from codedbft.attacks.base import ATTACKS
    from codedbft.attacks.placement import PLACEMENTS
    from codedbft.cluster.backend import BACKENDS
    from codedbft.schemes.registry import SCHEMES
    from codedbft.training.datasets import DATASETS
    from codedbft.training.models import MODELS
    from codedbft.training.optim import OPTIMIZERS

    from codedbft.cluster.trainer import SETTINGS

    from codedbft.training.byo import check_source, is_object_label

    checks = [(SETTINGS, config.setting), (BACKENDS, config.backend), (PLACEMENTS, config.placement),
              (OPTIMIZERS, config.optimizer)]
    # model and dataset: a registered name, an import path "pkg.mod:attr" (imported here), or the label
    # of a Python object given to the trainer (codedbft.training.byo); the scheme: a name or a label
    checks += [(reg, name) for reg, name, params in ((DATASETS, config.dataset, config.dataset_params),
                                                     (MODELS, config.model, config.model_params))
               if not check_source(reg.kind, name, params)]
    if not is_object_label(config.scheme):
        checks.append((SCHEMES, config.scheme))
    if config.aggregator is not None:
        checks.append((AGGREGATORS, config.aggregator))
    if config.attacked:
        checks.append((ATTACKS, config.attack))
    if config.pre:
        from codedbft.aggregators.pre import PRE_AGGREGATORS, parse_spec

        for spec in config.pre:
            name, params = parse_spec(spec)
            PRE_AGGREGATORS.check_params(name, params, fixed=("f",))
    if config.setting == "decentralized":
        from codedbft.decentralized.rules import RULES
        from codedbft.topology import TOPOLOGIES

        checks += [(TOPOLOGIES, config.topology), (RULES, config.rule)]
    for registry, name in checks:
        registry.entry(name)


def _check_setting(config: "RunConfig") -> None:
    """The constraints of the decentralized and Byzantine-server settings (before any worker starts)."""
    if config.nodes is not None and config.nodes < 2:
        raise ValueError(f"nodes must be >= 2, got {config.nodes}")
    if not 0.0 <= config.alpha < 1.0:
        raise ValueError(f"alpha must satisfy 0 <= alpha < 1 (the GUF's weight of the node's own estimate), got {config.alpha}")
    if config.servers < 1:
        raise ValueError(f"servers must be >= 1, got {config.servers}")
    if not 0 <= config.byzantine_servers or 3 * config.byzantine_servers >= config.servers:
        raise ValueError(f"byzantine-servers needs f_ps < n_ps / 3 (ByzSGD), got byzantine_servers="
                         f"{config.byzantine_servers}, servers={config.servers}")
    if config.contraction_every < 0:
        raise ValueError(f"contraction_every must be >= 0 (0: never), got {config.contraction_every}")
    if config.server_rule not in ("median", "mda"):
        raise ValueError(f"server_rule must be 'median' or 'mda' (ByzSGD), got {config.server_rule!r}")


#: schemes whose per-partition vectors can be average local gradients (K > 1): every gradient code
#: (the codes act on per-partition vectors whatever they are); data encoding encodes the rows and needs
#: the gradient linear in them (K = 1)
LOCAL_STEP_SCHEMES = ("vanilla", "draco-repetition", "draco-cyclic", "detox", "byzshield", "rrr", "rrr-randomized",
                      "code")
#: schemes whose workers compute the same partitions every step, so worker momentum is a function of one
#: history per copy (RRR asks spare workers only on checked steps; data encoding has no partitions)
WORKER_MOMENTUM_SCHEMES = ("vanilla", "draco-repetition", "draco-cyclic", "detox", "byzshield", "code")


def parse_straggle(text: str | None) -> tuple[float, float] | None:
    """``"P:FACTOR"`` -> ``(P, FACTOR)``: each worker straggles with probability P per step, FACTOR
    times slower (benchmarks' straggler model); ValueError naming the constraint."""
    if text in (None, "", "none"):
        return None
    try:
        p_text, f_text = str(text).split(":")
        p, factor = float(p_text), float(f_text)
    except ValueError:
        raise ValueError(f"straggle must be 'P:FACTOR' (e.g. 0.1:5), got {text!r}") from None
    if not (0.0 <= p <= 1.0 and factor >= 1.0):
        raise ValueError(f"straggle needs 0 <= P <= 1 and FACTOR >= 1, got {text!r}")
    return p, factor


def _check_local(config: "RunConfig") -> None:
    """Local steps and worker momentum (:mod:`codedbft.training.local_sgd`)."""
    if config.local_steps < 1:
        raise ValueError(f"local_steps must be >= 1, got {config.local_steps}")
    if config.local_lr is not None and not config.local_lr > 0:
        raise ValueError(f"local_lr must be > 0, got {config.local_lr}")
    if not 0.0 <= config.worker_momentum < 1.0:
        raise ValueError(f"worker_momentum must satisfy 0 <= beta < 1, got {config.worker_momentum}")
    if config.local_steps == 1 and config.worker_momentum == 0:
        return
    if config.setting != "master":
        raise ValueError(f"local_steps > 1 and worker_momentum take setting 'master' only, got {config.setting!r}")
    from codedbft.registry import canonical
    from codedbft.training.byo import is_object_label

    if is_object_label(config.scheme):  # scheme= object: the trainer checks it (a code takes both)
        return
    scheme = canonical(config.scheme)
    if config.local_steps > 1 and scheme not in LOCAL_STEP_SCHEMES:
        raise ValueError(f"local_steps > 1 needs a gradient code ({', '.join(LOCAL_STEP_SCHEMES)}): {scheme} "
                         "encodes the data rows and decodes only a gradient linear in them (K = 1)")
    if config.worker_momentum > 0 and scheme not in WORKER_MOMENTUM_SCHEMES:
        raise ValueError(f"worker_momentum needs a scheme whose workers compute the same partitions every step "
                         f"({', '.join(WORKER_MOMENTUM_SCHEMES)}); {scheme} does not")


def _check_optimizer(config: "RunConfig") -> None:
    """The optimizer's parameters and the lr schedule (normalised in place: ``betas="0.9,0.99"`` is a
    tuple), and TensorBoard's package (:mod:`codedbft.training.optim`)."""
    from codedbft.training.optim import check_optimizer

    params, schedule = check_optimizer(config.optimizer, config.lr, config.momentum, config.weight_decay,
                                       config.optimizer_params, config.lr_schedule, config.steps)
    object.__setattr__(config, "optimizer_params", params)
    object.__setattr__(config, "lr_schedule", schedule)
    if config.setting != "master" and (params or schedule):
        raise ValueError(f"optimizer_params and lr_schedule take setting 'master' only: the {config.setting} "
                         "setting's update is plain SGD with lr")
    if config.tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise ValueError("tensorboard (--tensorboard) needs the tensorboard package: pip install tensorboard "
                             "(or pip install 'codedbft[tensorboard]')")


@dataclass(frozen=True)
class RunConfig:
    """Every knob of a training run (CLI flag ``--foo-bar`` is field ``foo_bar``).

    Scheme: ``scheme``, ``aggregator``, ``aggregator_params``, ``pre`` (pre-aggregator specs before the
    rule, e.g. ``("nnm", "bucketing:s=2")``), ``workers`` (n), ``byzantine`` (b),
    ``tolerate`` (s of the code, default b), ``group_size`` (DETOX r), ``bucket``, ``scheme_params``.
    Adversary: ``attack`` (None or "none": no attack), ``attack_params`` (None: see
    :attr:`attack_kwargs`), ``placement``,
    ``placement_ids`` (for "fixed"), ``redraw`` (random placement redrawn every step).
    Data: ``dataset``, ``split`` (iid, ``dirichlet:alpha=A``, ``gamma:G``, extreme: which rows each
    partition draws from, :mod:`codedbft.training.splits`), ``model``, their params (``dataset`` and ``model`` may
    also be import paths ``"pkg.mod:attr"``, or labels of objects given to the trainer: :mod:`codedbft.training.byo`),
    ``batch_size`` (global: k partitions of
    batch_size // k samples), ``steps``, ``optimizer``, ``lr``, ``momentum``, ``weight_decay``, ``seed``,
    ``optimizer_params`` (the torch.optim class's other keywords, e.g. ``{"betas": (0.9, 0.99)}``),
    ``lr_schedule`` (``NAME[:KEY=VALUE,...]``, stepped once per training step; setting master).
    What honest workers send (:mod:`codedbft.training.local_sgd`): ``local_steps`` K (K > 1: the average
    local gradient of K SGD steps of rate ``local_lr``, default ``lr``; gradient codes only) and
    ``worker_momentum`` beta (each worker's exponential average; schemes with fixed assignments).
    Runtime: ``backend``, ``address`` (existing Ray cluster; default an embedded local one),
    ``num_cpus`` per worker actor, ``threads`` (torch threads per process: bit-identity needs the
    same everywhere), ``timeout_s`` (per-step reply deadline: later replies are erasures),
    ``max_restarts``, ``isolate_after`` (stop asking a worker flagged that many times), ``dedup``
    (local backend, and each Ray actor, computes each distinct partition once), ``actors`` (Ray
    processes hosting the workers round-robin; default one per CPU of an embedded instance, one per
    worker on a named cluster), ``wait_for`` ("all", or "auto": decode once the replies in hand
    leave the code able to correct the placed Byzantine workers, the rest are erasures),
    ``straggle`` ("P:FACTOR", the benchmarks' straggler model on Ray), ``ray_host`` (the address an
    embedded Ray instance binds its ports to; default loopback), ``master_seed`` (the master's
    private seed, :attr:`secret`; never in the worker spec).
    Output: ``run_dir``, ``eval_every``, ``log_every``, ``checkpoint_every``, ``tensorboard`` (also
    write each metrics row's numbers to ``run_dir/tensorboard/``; needs the tensorboard package).
    Trust model: ``setting`` ("master", "decentralized", "byzantine-servers").
    Decentralized (UBAR paper): ``nodes`` (default: ``workers``), ``topology`` with ``connection``
    (Erdős–Rényi p) and ``topology_params``, the neighbourhood ``rule`` and ``rule_params``,
    ``alpha`` of the general update function.
    Byzantine servers (ByzSGD): ``servers`` (n_ps), ``byzantine_servers`` (f_ps < n_ps / 3),
    ``server_rule`` (what a worker takes of the servers' models: "median" or "mda"),
    ``contraction_every`` (T: the distributed median contraction every T steps; 0 never).
    """

    setting: str = "master"
    scheme: str = "draco-repetition"
    aggregator: str | None = None
    aggregator_params: Mapping[str, Any] = field(default_factory=dict)
    pre: tuple[str, ...] = ()
    workers: int = 15
    byzantine: int = 2
    tolerate: int | None = None
    group_size: int | None = None
    bucket: int | None = None
    scheme_params: Mapping[str, Any] = field(default_factory=dict)

    attack: str | None = "omniscient"
    attack_params: Mapping[str, Any] | None = None
    placement: str = "random"
    placement_ids: tuple[int, ...] | None = None
    redraw: bool = False

    dataset: str = "digits"
    dataset_params: Mapping[str, Any] = field(default_factory=dict)
    split: str = "iid"
    model: str = "mlp"
    model_params: Mapping[str, Any] = field(default_factory=dict)
    steps: int = 300
    batch_size: int = 240
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    optimizer_params: Mapping[str, Any] = field(default_factory=dict)
    lr_schedule: str | None = None
    seed: int = 0
    local_steps: int = 1
    local_lr: float | None = None
    worker_momentum: float = 0.0

    backend: str = "ray"
    address: str | None = None
    num_cpus: float = 0.1
    threads: int = 1
    timeout_s: float = 60.0
    max_restarts: int = 3
    isolate_after: int | None = None
    dedup: bool = True
    actors: int | None = None
    wait_for: str = "all"
    straggle: str | None = None
    ray_host: str = "127.0.0.1"
    master_seed: int | None = None

    nodes: int | None = None
    topology: str = "erdos-renyi"
    connection: float = 0.4
    topology_params: Mapping[str, Any] = field(default_factory=dict)
    rule: str = "ubar"
    rule_params: Mapping[str, Any] = field(default_factory=dict)
    alpha: float = 0.5

    servers: int = 4
    byzantine_servers: int = 0
    server_rule: str = "median"
    contraction_every: int = 10

    run_dir: str | None = None
    eval_every: int = 50
    log_every: int = 1
    checkpoint_every: int = 100
    tensorboard: bool = False

    def __post_init__(self) -> None:
        _check_names(self)
        if self.placement == "fixed" and self.placement_ids is None and self.byzantine > 0:
            raise ValueError("placement 'fixed' needs placement_ids (--placement-ids)")
        if self.placement_ids is not None and self.placement != "fixed":
            raise ValueError(f"placement_ids (--placement-ids) needs placement 'fixed', got {self.placement!r}")
        if self.redraw and self.placement != "random":
            raise ValueError(f"redraw (--redraw) needs placement 'random', got {self.placement!r}")
        if self.placement == "fixed" and self.placement_ids is not None and len(self.placement_ids) != self.byzantine:
            raise ValueError(f"fixed placement needs len(placement_ids) == byzantine={self.byzantine}, got {self.placement_ids}")
        for name in ("steps", "batch_size", "threads", "eval_every", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        _check_optimizer(self)
        if not self.num_cpus > 0:
            raise ValueError(f"num_cpus must be > 0, got {self.num_cpus}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.wait_for not in ("all", "auto"):
            raise ValueError(f"wait_for must be 'all' or 'auto', got {self.wait_for!r}")
        if self.wait_for == "auto" and self.worker_momentum > 0:
            raise ValueError("wait_for 'auto' drops the stragglers' replies, whose worker momentum would then "
                             "miss the step: use wait_for 'all' with worker_momentum")
        parse_straggle(self.straggle)
        import ipaddress

        try:
            ipaddress.ip_address(self.ray_host)
        except ValueError:
            raise ValueError(f"ray_host must be an IP address (the embedded Ray instance binds to it), "
                             f"got {self.ray_host!r}") from None
        if self.actors is not None and self.actors < 1:
            raise ValueError(f"actors must be >= 1 (Ray processes hosting the workers), got {self.actors}")
        if self.isolate_after is not None and self.isolate_after < 1:
            raise ValueError(f"isolate_after must be >= 1, got {self.isolate_after}")
        _check_setting(self)
        _check_local(self)
        from codedbft.training.splits import parse_split

        parse_split(self.split)
        if self.address is not None and self.backend != "ray":
            raise ValueError("--address names a Ray cluster: it needs backend='ray'")

    @property
    def secret(self) -> int:
        """The master's private seed: randomized RRR's check coin and the data-encoding decoder's
        projections. ``master_seed`` when set (a deployment sets a number no worker knows); by
        default the run seed, so a simulated run stays reproducible from one number, at the price
        that a worker knowing the seed could predict them (README, threat model)."""
        return int(self.master_seed) if self.master_seed is not None else int(self.seed)

    @property
    def attack_kwargs(self) -> dict[str, Any]:
        """The attack's parameters; unset (None) means the attack's own defaults, except for the
        default job's omniscient attack, whose c = 10 makes it break plain averaging."""
        if self.attack_params is not None:
            return dict(self.attack_params)
        return {"c": 10.0} if self.attack == "omniscient" else {}

    @property
    def attacked(self) -> bool:
        """True when Byzantine workers send forged messages."""
        return self.byzantine > 0 and self.attack not in (None, "", "none")

    def scheme_config(self) -> SchemeConfig:
        return SchemeConfig(
            name=self.scheme, workers=self.workers, byzantine=self.byzantine, tolerate=self.tolerate,
            aggregator=self.aggregator, aggregator_params=dict(self.aggregator_params),
            group_size=self.group_size, bucket=self.bucket, params={"seed": self.seed, "secret": self.secret, **self.scheme_params},
            pre=tuple(self.pre),
        )

    @classmethod
    def field_names(cls) -> frozenset[str]:
        """The configuration keys (a run directory's config.json may hold more, e.g. scheme_info)."""
        return frozenset(f.name for f in fields(cls))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["placement_ids"] = list(self.placement_ids) if self.placement_ids is not None else None
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunConfig":
        """Build from a mapping (YAML/JSON keys are field names; '-' and '_' both accepted)."""
        known = {f.name for f in fields(cls)}
        norm = {str(k).replace("-", "_"): v for k, v in data.items()}
        unknown = sorted(set(norm) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; valid keys: {sorted(known)}")
        if isinstance(norm.get("pre"), str):
            norm["pre"] = (norm["pre"],)
        if norm.get("pre") is not None:
            norm["pre"] = tuple(str(p) for p in norm["pre"])
        if norm.get("placement_ids") is not None:
            norm["placement_ids"] = tuple(int(i) for i in norm["placement_ids"])
        return cls(**norm)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> "RunConfig":
        """Load a ``.json`` or ``.yaml``/``.yml`` config; ``overrides`` (e.g. CLI flags) win."""
        text = Path(path).read_text()
        if str(path).endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        if not isinstance(data, Mapping):
            raise ValueError(f"config file {path} must hold a mapping of keys to values")
        return cls.from_dict({**data, **overrides})

    def replace(self, **changes: Any) -> "RunConfig":
        return replace(self, **changes)
