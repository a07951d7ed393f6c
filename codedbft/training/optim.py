"""Optimizers and learning-rate schedules: ``torch.optim`` on one flat parameter vector.

The runtime keeps the model as one vector ``w`` and receives one decoded gradient per step, so an
optimizer here is ``w_{t+1} = opt.step(w_t, g_t)``: :class:`Optimizer` wraps a ``torch.optim``
optimizer (and, optionally, a ``torch.optim.lr_scheduler`` schedule) bound to one leaf tensor that
holds the flat vector. Per step it copies ``w`` into that leaf, sets its ``.grad`` to ``g`` and calls
the torch optimizer's own ``step()``, so every update rule is PyTorch's, bit for bit (``foreach=False``
by default: the single-tensor kernels, the same bits in every process), and the state
(buffers, step counts, the schedule's position and the current lr) is the torch objects' own
``state_dict()``, which goes into the run's checkpoints: a resumed run reaches the same model.

Why a wrapper rather than a bare ``torch.optim`` object: the master never holds ``nn.Module``
parameters, only the flat vector it broadcasts; ``step`` keeps the functional contract the runtime
relies on (it returns a new tensor and never modifies ``w`` or ``g`` in place), and
:meth:`Optimizer.state_dict` clones the buffers so a checkpoint is a snapshot.

Names are looked up in :data:`OPTIMIZERS` (every ``torch.optim`` optimizer that can step one dense
vector from one gradient, case-insensitively: ``sgd``, ``adam``, ``adamw``, ``rmsprop``, ``adagrad``,
...) and :data:`SCHEDULES` (``cosine``, ``step``, ``exponential``, ``linear``, ``multistep``,
``onecycle``, ...); an unknown name or keyword raises ValueError naming it, listing the valid ones
and suggesting the closest. ``docs/training.md`` lists them all.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import math
import warnings
from typing import Any, Mapping

import torch

from codedbft.registry import Registry, canonical

__all__ = ["Optimizer", "SGD", "Adam", "make_optimizer", "OPTIMIZERS", "SCHEDULES", "parse_schedule",
           "optimizer_params", "check_optimizer"]

#: The optimizers by name; each entry's object is the ``torch.optim`` class.
OPTIMIZERS: Registry[Any] = Registry("optimizer")
#: The learning-rate schedules by name; each entry's object is the ``torch.optim.lr_scheduler`` class.
SCHEDULES: Registry[Any] = Registry("lr schedule")

#: arguments the wrapper supplies itself (``lr``, ``momentum``, ``weight_decay`` are the run's knobs)
_FIXED = ("lr", "momentum", "weight_decay")
#: torch.optim classes that cannot step one dense vector from one gradient
_UNUSABLE = {
    "lbfgs": "torch.optim.LBFGS re-evaluates the loss through a closure; the master has one decoded gradient per step",
    "sparseadam": "torch.optim.SparseAdam takes sparse gradients only; decoded gradients are dense",
    "muon": "torch.optim.Muon takes 2-D weight matrices only; the model here is one flat vector",
}
_HELP = {
    "sgd": "SGD with optional heavy-ball momentum (--momentum), nesterov, dampening and L2 weight decay",
    "adam": "Adam with bias correction and coupled L2 weight decay (betas, eps, amsgrad)",
    "adamw": "AdamW: Adam with decoupled weight decay (betas, eps, amsgrad)",
    "rmsprop": "RMSprop (alpha, eps, centered; --momentum applies)",
    "adagrad": "Adagrad (lr_decay, initial_accumulator_value, eps)",
}


def _keywords(cls: Any, skip: tuple[str, ...]) -> dict[str, Any]:
    """The keyword parameters of ``cls`` (name -> default, ``inspect.Parameter.empty`` if required)."""
    out = {}
    for p in inspect.signature(cls).parameters.values():
        if p.name not in skip and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            out[p.name] = p.default
    return out


def _register_torch_optimizers() -> None:
    for attr in dir(torch.optim):
        cls = getattr(torch.optim, attr)
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)) or cls is torch.optim.Optimizer:
            continue
        name = canonical(attr)
        if name in _UNUSABLE or name in OPTIMIZERS:
            continue
        doc = (inspect.getdoc(cls) or "").strip().splitlines()
        text = _HELP.get(name) or (doc[0].rstrip(".").removeprefix("Implements ") if doc else attr)
        text = text[:1].upper() + text[1:]
        OPTIMIZERS.register(name, cls, params=tuple(_keywords(cls, ("params",))), help=f"{text} (torch.optim.{attr})")


_register_torch_optimizers()

#: schedule name -> (torch class, {parameter: what the run supplies when the spec does not})
_SCHEDULE_DEFAULTS: dict[str, dict[str, str]] = {}


def _schedule(name: str, cls: Any, help: str, **defaults: str) -> None:
    SCHEDULES.register(name, cls, params=tuple(_keywords(cls, ("optimizer", "last_epoch"))),
                       help=f"{help} (lr_scheduler.{cls.__name__})")
    _SCHEDULE_DEFAULTS[name] = defaults


_S = torch.optim.lr_scheduler
_schedule("cosine", _S.CosineAnnealingLR, "cosine annealing from lr to eta_min (0) over T_max (default: steps)",
          T_max="steps")
_schedule("cosine-restarts", _S.CosineAnnealingWarmRestarts, "cosine annealing restarted every T_0 (x T_mult) steps")
_schedule("step", _S.StepLR, "lr x gamma (0.1) every step_size steps")
_schedule("multistep", _S.MultiStepLR, "lr x gamma (0.1) at each of the milestones, e.g. milestones=[100,200]")
_schedule("exponential", _S.ExponentialLR, "lr x gamma every step")
_schedule("linear", _S.LinearLR, "lr x factor, linear from start_factor (1/3) to end_factor (1) over total_iters "
          "(default: steps)", total_iters="steps")
_schedule("polynomial", _S.PolynomialLR, "polynomial decay to 0 over total_iters (default: steps), power (1)",
          total_iters="steps")
_schedule("constant", _S.ConstantLR, "lr x factor (1/3) for the first total_iters (5) steps")
_schedule("onecycle", _S.OneCycleLR, "1cycle: warm up to max_lr (default: lr), then anneal, over total_steps "
          "(default: steps)", max_lr="lr", total_steps="steps")


# ---------------------------------------------------------------------------------------------- parsing
def _coerce(value: Any) -> Any:
    """YAML leaves ``1e-3`` a string and parses ``[a, b]`` as a list: numbers become numbers,
    lists tuples (torch.optim's convention for betas, etas, ...), element by element."""
    if isinstance(value, str):
        for conv in (int, float):
            try:
                return conv(value.strip())
            except ValueError:
                pass
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_coerce(v) for v in value)
    return value


def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets: ``"milestones=[1,2],gamma=0.5"`` -> two items."""
    items, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    return items


def _did_you_mean(key: str, valid: Any) -> str:
    close = difflib.get_close_matches(key, list(valid), n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _check_keys(kind: str, name: str, given: Mapping[str, Any], valid: Any, hint: Mapping[str, str] = {}) -> None:
    """ValueError naming the first unknown key of ``given``, listing ``valid``, suggesting the closest."""
    valid = list(valid)
    for key in given:
        if key in hint:
            raise ValueError(f"{kind} parameter {key!r} for {name!r}: {hint[key]}")
        if key not in valid:
            raise ValueError(f"unknown {kind} parameter {key!r} for {name!r}; valid: {valid if valid else 'none'}"
                             f"{_did_you_mean(key, valid)}")


def optimizer_params(name: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """``params`` checked against optimizer ``name``'s signature and normalised: YAML strings
    ``"1e-3"`` -> numbers, lists and ``"0.9,0.99"`` (for a tuple-valued parameter such as ``betas``)
    -> tuples. ``lr``, ``momentum`` and ``weight_decay`` are the run's own knobs, not parameters here."""
    import yaml

    entry = OPTIMIZERS.entry(name)
    defaults = _keywords(entry.obj, ("params",))
    params = dict(params or {})
    _check_keys("optimizer", entry.name, params, [k for k in defaults if k not in _FIXED],
                hint={k: f"set it with {k} (--{k.replace('_', '-')}), not as an optimizer parameter" for k in _FIXED})
    out = {}
    for key, value in params.items():
        if isinstance(defaults[key], tuple) and isinstance(value, str) and "," in value:
            value = [yaml.safe_load(v) if v.strip() else v for v in value.strip("()[] ").split(",")]
        out[key] = _coerce(value)
    return out


def parse_schedule(spec: str) -> tuple[str, dict[str, Any]]:
    """``"step:step_size=100,gamma=0.5"`` -> ``("step", {"step_size": 100, "gamma": 0.5})``.

    Values are YAML (``milestones=[100,200]``); the name must be in :data:`SCHEDULES` and the keys
    parameters of its class: ValueError naming the unknown one and listing the valid ones otherwise.
    """
    import yaml

    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"an lr schedule is 'NAME' or 'NAME:KEY=VALUE,...', got {spec!r}")
    name, sep, rest = spec.partition(":")
    entry = SCHEDULES.entry(name.strip())
    params: dict[str, Any] = {}
    if sep and not rest.strip():
        raise ValueError(f"lr schedule {spec!r} has ':' but no key=value parameters")
    if rest.strip():
        for item in _split_top(rest):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or not key or not value.strip():
                raise ValueError(f"lr schedule {spec!r}: expected key=value, got {item.strip()!r}")
            if key in params:
                raise ValueError(f"lr schedule {spec!r}: parameter {key!r} given twice")
            try:
                params[key] = _coerce(yaml.safe_load(value))
            except yaml.YAMLError:
                raise ValueError(f"lr schedule {spec!r}: cannot parse the value of {key!r}: {value!r}") from None
            if isinstance(params[key], tuple):
                params[key] = list(params[key])  # milestones: torch keeps lists
    _check_keys("lr schedule", entry.name, params, entry.params or ())
    return entry.name, params


def _build_schedule(spec: str, opt: torch.optim.Optimizer, total_steps: int | None, lr: float) -> Any:
    name, params = parse_schedule(spec)
    cls = SCHEDULES.get(name)
    run = {"steps": total_steps, "lr": lr}
    for key, source in _SCHEDULE_DEFAULTS[name].items():
        if key not in params and not (name == "onecycle" and key == "total_steps" and "epochs" in params):
            if run[source] is None:
                raise ValueError(f"lr schedule {name!r} needs {key} (or the run's total_steps)")
            params[key] = run[source]
    required = [k for k, d in _keywords(cls, ("optimizer", "last_epoch")).items() if d is inspect.Parameter.empty]
    missing = [k for k in required if k not in params]
    if missing:
        raise ValueError(f"lr schedule {name!r} needs {', '.join(missing)} (e.g. --lr-schedule "
                         f"{name}:{missing[0]}=...)")
    try:
        return cls(opt, **params)
    except (TypeError, KeyError) as err:
        raise ValueError(f"lr schedule {spec!r}: {err}") from None


# ---------------------------------------------------------------------------------------------- the wrapper
class Optimizer:
    """A ``torch.optim`` optimizer (and optional lr schedule) on one flat vector (module docstring).

    Args:
        name: an :data:`OPTIMIZERS` name (case-insensitive: ``"AdamW"`` works).
        lr: the learning rate (> 0); ``momentum`` is passed to the optimizers that take one (sgd,
            rmsprop) and ignored by the others; ``weight_decay`` (>= 0) to those that take it (an
            optimizer without it, rprop, rejects a non-zero value).
        schedule: an lr schedule spec ``NAME[:KEY=VALUE,...]`` (:func:`parse_schedule`), or None.
        total_steps: the run's length, the default of a schedule's horizon (cosine's ``T_max``, ...).
        **params: the optimizer's other keyword arguments (``betas``, ``eps``, ``nesterov``, ...);
            ``foreach`` defaults to False.

    ``step(w, g)`` applies one update and steps the schedule; :meth:`skip` steps the schedule alone
    (a step whose gradient was dropped still counts: schedules count training steps).
    """

    def __init__(self, name: str, lr: float, momentum: float = 0.0, weight_decay: float = 0.0, *,
                 schedule: str | None = None, total_steps: int | None = None, **params: Any) -> None:
        if canonical(name) in _UNUSABLE:
            raise ValueError(f"unknown optimizer {name!r}: {_UNUSABLE[canonical(name)]}; available: "
                             f"{', '.join(OPTIMIZERS.available())}")
        entry = OPTIMIZERS.entry(name)
        self.name = entry.name
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr > 0 required, got {lr}")
        if not (math.isfinite(weight_decay) and weight_decay >= 0):
            raise ValueError(f"weight_decay >= 0 required, got {weight_decay}")
        kwargs: dict[str, Any] = {"lr": float(lr), **optimizer_params(name, params)}
        takes = _keywords(entry.obj, ("params",))
        if "momentum" in takes:
            if not 0.0 <= momentum < 1.0:
                raise ValueError(f"0 <= momentum < 1 required, got {momentum}")
            kwargs["momentum"] = float(momentum)
        if "weight_decay" in takes:
            kwargs["weight_decay"] = float(weight_decay)
        elif weight_decay:
            raise ValueError(f"optimizer {self.name!r} takes no weight_decay, got {weight_decay}")
        if "foreach" in takes:
            kwargs.setdefault("foreach", False)
        # the leaf the torch optimizer updates: a placeholder until the first step gives it w's bytes
        self._p = torch.empty(0)
        self._cls, self._kwargs = entry.obj, kwargs
        try:
            self._opt = entry.obj([self._p], **kwargs)
        except (TypeError, RuntimeError) as err:
            raise ValueError(f"optimizer {self.name!r}: {err}") from None
        # state made at construction (adagrad's sum) is for the placeholder: remade for the real vector
        self._eager_init = self._eager = bool(self._opt.state)
        self.schedule = None if schedule is None or str(schedule).strip().lower() in ("", "none") else str(schedule).strip()
        self.scheduler = _build_schedule(self.schedule, self._opt, total_steps, lr) if self.schedule else None
        self.t = 0  # optimizer steps taken
        self.last_lr = self.lr  # the lr of the last step (or skip)
        self._cast_state = False

    @property
    def lr(self) -> float:
        """The learning rate the next step uses (the schedule's current value)."""
        return float(self._opt.param_groups[0]["lr"])

    @property
    def torch_optimizer(self) -> torch.optim.Optimizer:
        """The wrapped ``torch.optim`` object (its ``param_groups`` hold the hyper-parameters)."""
        return self._opt

    def __getattr__(self, key: str) -> Any:
        # the hyper-parameters read as attributes: opt.momentum, opt.betas, opt.eps, ...
        if not key.startswith("_") and "_opt" in self.__dict__:
            group = self.__dict__["_opt"].param_groups[0]
            if key in group and key != "params":
                return group[key]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {key!r}")

    def _advance_schedule(self) -> None:
        sched = self.scheduler
        if sched is None:
            return
        total = getattr(sched, "total_steps", None)  # onecycle cannot step past its end: it stays there
        if isinstance(total, int) and sched.last_epoch >= total:
            return
        with warnings.catch_warnings():  # a first step skipped for a non-finite gradient is no misuse
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
            sched.step()

    def step(self, w: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """One update of ``w`` by ``grad`` (cast to ``w``'s dtype); returns a new tensor, leaves ``w``
        and ``grad`` untouched; then one step of the schedule."""
        if grad.shape != w.shape:
            raise ValueError(f"grad shape {tuple(grad.shape)} != w shape {tuple(w.shape)}")
        p = self._p
        p.data = w.detach().clone()  # a fresh vector each step: the tensor returned last time stays as it was
        if self._cast_state:
            self._match_state(p)
        if self._eager:
            self._opt.state[p] = self._cls([p], **self._kwargs).state[p]
            self._eager = False
        p.grad = grad.detach().to(dtype=w.dtype, device=w.device)
        self.last_lr = self.lr
        self._opt.step()
        p.grad = None
        self.t += 1
        self._advance_schedule()
        return p.detach()

    def skip(self) -> None:
        """A training step without an update (its gradient was dropped): the schedule still advances."""
        self.last_lr = self.lr
        self._advance_schedule()

    # -- state --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The torch optimizer's and scheduler's state dicts (buffers cloned), the name and step count."""
        return {"name": self.name, "t": self.t, "optimizer": copy.deepcopy(self._opt.state_dict()),
                "schedule": self.schedule,
                "scheduler": None if self.scheduler is None else copy.deepcopy(self.scheduler.state_dict())}

    def load_state_dict(self, sd: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (deep-copied, so the dict can be reused)."""
        if sd.get("name") != self.name:
            raise ValueError(f"state is for optimizer {sd.get('name')!r}, not {self.name!r}")
        if "optimizer" not in sd:  # a checkpoint of the hand-written SGD / Adam that preceded this module
            sd = self._from_legacy(sd)
        if (sd.get("scheduler") is None) != (self.scheduler is None):
            raise ValueError(f"state has lr schedule {sd.get('schedule')!r}, this optimizer {self.schedule!r}")
        opt_sd = copy.deepcopy(dict(sd["optimizer"]))
        floats = [v for st in opt_sd.get("state", {}).values() for k, v in st.items()
                  if k != "step" and torch.is_tensor(v) and v.is_floating_point()]
        if floats:  # torch casts the state to the parameter's dtype: give the placeholder the saved one
            self._p.data = torch.empty(0, dtype=floats[0].dtype, device=floats[0].device)
            self._cast_state = True
        self._opt.load_state_dict(opt_sd)
        if self.scheduler is not None:
            self.scheduler.load_state_dict(copy.deepcopy(dict(sd["scheduler"])))
        self.t = int(sd["t"])
        self._eager = self._eager_init and self.t == 0  # a state saved before the first step is the initial one
        self.last_lr = self.lr

    def _match_state(self, p: torch.Tensor) -> None:
        """After a load, the state tensors in ``w``'s dtype and device (as torch's own load does)."""
        for st in self._opt.state.values():
            for k, v in st.items():
                if k != "step" and torch.is_tensor(v) and v.is_floating_point() and (v.dtype, v.device) != (p.dtype, p.device):
                    st[k] = v.to(dtype=p.dtype, device=p.device)
        self._cast_state = False

    def _from_legacy(self, sd: Mapping[str, Any]) -> dict[str, Any]:
        """The state of the former hand-written ``sgd`` (``buf``) / ``adam`` (``m``, ``v``) in torch's format."""
        new = self._opt.state_dict()
        group = new["param_groups"][0]
        for key in ("lr", "momentum", "weight_decay", "eps"):
            if key in sd and key in group:
                group[key] = sd[key]
        if "beta1" in sd:
            group["betas"] = (sd["beta1"], sd["beta2"])
        state: dict[str, Any] = {}
        if self.name == "sgd" and sd.get("buf") is not None:
            state = {"momentum_buffer": sd["buf"]}
        elif self.name == "adam" and sd.get("m") is not None:
            state = {"step": torch.tensor(float(sd["t"]), dtype=torch.float32), "exp_avg": sd["m"], "exp_avg_sq": sd["v"]}
        new["state"] = {0: state} if state else {}
        return {"name": self.name, "t": sd["t"], "optimizer": new, "schedule": None, "scheduler": None}


class SGD(Optimizer):
    """``torch.optim.SGD`` on the flat vector (``make_optimizer("sgd", ...)``)."""

    def __init__(self, lr: float, momentum: float = 0.0, weight_decay: float = 0.0, **params: Any) -> None:
        super().__init__("sgd", lr, momentum=momentum, weight_decay=weight_decay, **params)


class Adam(Optimizer):
    """``torch.optim.Adam`` on the flat vector (``make_optimizer("adam", ...)``)."""

    def __init__(self, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, **params: Any) -> None:
        super().__init__("adam", lr, weight_decay=weight_decay, betas=betas, eps=eps, **params)


def make_optimizer(name: str, lr: float, momentum: float = 0.0, weight_decay: float = 0.0, *,
                   schedule: str | None = None, total_steps: int | None = None, **params: Any) -> Optimizer:
    """Build optimizer ``name`` (one of :data:`OPTIMIZERS`) with lr schedule ``schedule`` (None: constant).

    ``momentum`` goes to the optimizers that take it (sgd, rmsprop), ``params`` are the torch class's
    keyword arguments (``betas=(0.9, 0.99)``, ``eps``, ``nesterov``, ...); an unknown name or keyword
    raises ValueError naming it and listing the valid ones. See :class:`Optimizer`.
    """
    return Optimizer(name, lr, momentum=momentum, weight_decay=weight_decay, schedule=schedule,
                     total_steps=total_steps, **params)


def check_optimizer(name: str, lr: float, momentum: float, weight_decay: float, params: Mapping[str, Any] | None,
                    schedule: str | None, total_steps: int | None) -> tuple[dict[str, Any], str | None]:
    """Validate a run's optimizer and schedule (by building them on a placeholder: nothing is
    allocated); returns the normalised params (:func:`optimizer_params`) and schedule (None for none)."""
    norm = optimizer_params(name, params)
    opt = make_optimizer(name, lr, momentum=momentum, weight_decay=weight_decay, schedule=schedule,
                         total_steps=total_steps, **norm)
    return norm, opt.schedule
