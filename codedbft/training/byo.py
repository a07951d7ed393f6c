"""Bring your own model, data and code: import paths, Python objects, and their conversion.

A run's model, dataset and scheme are normally names in a registry (``RunConfig(model="mlp")``). Three
other sources are accepted (``docs/byo.md`` has a runnable example of each):

* **Import paths** ``"package.module:attribute"`` (a ``:`` marks one), in ``RunConfig.model`` and
  ``RunConfig.dataset`` (``--model`` / ``--dataset`` on the command line). The path is imported when
  the configuration is validated (a ValueError names the path and the import error), and again in
  every worker process, so the module must be importable there too: an installed package, a module on
  ``PYTHONPATH``, or, for Ray's embedded local instance, one under the driver's working directory
  (Ray puts it on the workers' ``sys.path``). ``config.json`` records the path itself; a resumed run
  imports it again.
* **Python objects** given to the trainer next to the configuration:
  ``Master(config, model=..., dataset=..., scheme=...)`` (also ``make_trainer`` and
  ``Trainer.resume``; the decentralized and Byzantine-server trainers take ``model=`` and
  ``dataset=``). ``config.json`` records a label such as ``"<object: mypkg.nets.MyNet>"`` in place of
  the name (so ``codedbft inspect`` shows it); a run configured so cannot be rebuilt from its
  directory alone: ``Trainer.resume(run_dir, model=..., dataset=...)`` needs the same objects again (a
  ValueError says so otherwise, or names the label that does not match). Objects reach the Ray actors
  once, at start: the dataset through the object store (as every dataset does), the model inside the
  worker spec (cloudpickle: a class defined in ``__main__`` or a notebook travels by value; one from a
  module is imported by the workers, as for import paths).
* **Own codes**: ``scheme=`` a :class:`~codedbft.encoders.base.Code` object (wrapped by
  :class:`~codedbft.schemes.code.CodeScheme`) or a ready :class:`~codedbft.schemes.base.Scheme`; from
  the command line ``--scheme code --scheme-param code=pkg.mod:attr``; or a named scheme registered
  with :func:`~codedbft.schemes.register_scheme`.

Conventions
-----------

*Models.* A model source is an ``nn.Module`` instance (its current parameters are the initial model;
the seed plays no part), or a *factory*: a function or an ``nn.Module`` class. A factory is called with
the run's ``model_params`` as keywords, plus whichever of these its signature names: ``ds`` (the
runtime :class:`~codedbft.training.datasets.Dataset`), ``seed`` (the run's), ``in_features``
(``prod(ds.input_shape)``) and ``out`` (``ds.output_dim``: classes, or regression outputs), so the
registered builders' ``builder(in_features, out, **options)`` signature works as is. It runs inside
``torch.random.fork_rng`` seeded with the run's seed, like :func:`~codedbft.training.models.build_model`,
so every process builds the same parameters. The loss is cross entropy for a classification dataset
and the mean half squared error for regression (the model's output must have the target's shape: for
a scalar target ``(N,)``, an output ``(b,)``). As for the built-in models, the state must be the
parameters alone (no buffers such as batch norm statistics), and the model's operations must have
deterministic kernels (``torch.use_deterministic_algorithms(True)`` holds in every worker).

*Datasets.* A data source is one of

* the runtime :class:`~codedbft.training.datasets.Dataset` (used as is);
* four tensors (or arrays) ``(X_train, y_train, X_test, y_test)``;
* a pair of ``torch.utils.data.Dataset`` ``(train, test)``, whose items are ``(x, y)``; they are read
  once, item by item (a ``TensorDataset`` directly from its tensors), into tensors;
* a factory returning one of these, called with the run's ``dataset_params`` as keywords, plus
  ``seed=`` when its signature names ``seed``.

Features become float32 (not rescaled). Integer labels (any integer dtype) make a classification task:
int64 labels, ``num_classes`` = the train set's ``classes`` attribute's length when it has one
(torchvision's convention), else ``max(label) + 1`` over both splits; labels must be ``>= 0``.
Floating targets make a regression task (float32, ``(N,)`` or ``(N, outputs)``). The batches are the
runtime's (epoch-free draws of a seeded generator), so a user dataset gets the same bit-identity and
resume guarantees as a built-in one.
"""

from __future__ import annotations

import importlib
import inspect
import math
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from codedbft.training.datasets import Dataset

__all__ = [
    "OBJECT_PREFIX", "object_label", "is_object_label", "is_import_path", "import_object", "check_source",
    "bind_objects", "build_user_model", "loss_for", "as_dataset", "load_user_dataset", "as_scheme",
]

#: how config.json labels a source given as a Python object: ``"<object: mypkg.nets.MyNet>"``
OBJECT_PREFIX = "<object: "

#: the runtime values a model factory receives when its signature names them
MODEL_ARGS = ("ds", "seed", "in_features", "out")
#: the runtime values a dataset factory receives when its signature names them
DATASET_ARGS = ("seed",)


# -- names, paths and labels ------------------------------------------------------------------------
def _qualname(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or ""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__name__
    return name if module in ("", "builtins", "__main__") else f"{module}.{name}"


def object_label(obj: Any) -> str:
    """What config.json records for a source given as an object: its qualified name for a function or
    a class (a factory), its type's for anything else (``"<object: mypkg.nets.MyNet>"``)."""
    target = obj if inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj) else type(obj)
    return f"{OBJECT_PREFIX}{_qualname(target)}>"


def is_object_label(name: Any) -> bool:
    """True for a label written by :func:`object_label` (the source was a Python object)."""
    return isinstance(name, str) and name.startswith(OBJECT_PREFIX) and name.endswith(">")


def is_import_path(name: Any) -> bool:
    """True for ``"package.module:attribute"`` (registered names never hold a ``:``)."""
    return isinstance(name, str) and ":" in name and not is_object_label(name)


def import_object(path: str, kind: str = "object") -> Any:
    """The attribute ``path`` (``"package.module:attr"``, ``attr`` may be dotted) names.

    Raises:
        ValueError: naming the path and what went wrong (no such module, an error while importing it,
            no such attribute).
    """
    module_name, _, attr = path.strip().partition(":")
    if not module_name or not attr:
        raise ValueError(f"{kind} import path {path!r} must read 'package.module:attribute'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as err:  # ImportError, or anything the module raises while importing
        raise ValueError(f"cannot import {kind} {path!r}: {type(err).__name__}: {err}") from err
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"cannot import {kind} {path!r}: module {module_name!r} has no attribute "
                             f"{attr!r}") from None
    return obj


def _is_factory(obj: Any, data: bool) -> bool:
    if isinstance(obj, nn.Module) or not callable(obj):
        return False
    if data and isinstance(obj, (Dataset, tuple, list, torch.utils.data.Dataset)):
        return False
    return True


def _accepts(factory: Any) -> tuple[set[str], bool, set[str]]:
    """Keyword names ``factory`` accepts, whether it takes ``**kwargs``, and the names it requires."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # no signature (a builtin): let the call check
        return set(), True, set()
    named = [p for p in sig.parameters.values()
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    required = {p.name for p in named if p.default is inspect.Parameter.empty}
    return {p.name for p in named}, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()), required


def _check_params(kind: str, label: str, factory: Any, params: Mapping[str, Any], runtime: tuple[str, ...]) -> None:
    """ValueError for ``params`` a factory cannot take (or that the runtime supplies itself)."""
    clash = sorted(set(params) & set(runtime))
    if clash:
        raise ValueError(f"{kind} parameters {clash} of {label} are supplied by the runtime, not by {kind}_params")
    names, var, required = _accepts(factory)
    unknown = sorted(set(params) - names)
    if unknown and not var:
        valid = sorted(names - set(runtime))
        raise ValueError(f"unknown {kind} parameter{'s' if len(unknown) > 1 else ''} {unknown} for {label}; "
                         f"valid: {valid if valid else 'none'}")
    missing = sorted(required - set(params) - set(runtime))
    if missing:
        raise ValueError(f"{kind} factory {label} needs parameters {missing}: give them as {kind}_params "
                         f"(the runtime supplies only {', '.join(runtime)})")


def _call(factory: Any, runtime: Mapping[str, Any], params: Mapping[str, Any]) -> Any:
    names, _, _ = _accepts(factory)
    return factory(**{k: v for k, v in runtime.items() if k in names}, **dict(params))


def check_source(kind: str, name: Any, params: Mapping[str, Any] | None = None) -> bool:
    """Validate a model or dataset source named in a :class:`~codedbft.cluster.config.RunConfig`.

    Returns False for a registry name (the caller checks it against the registry), True for an import
    path (imported here: ValueError naming the path when that fails, or when ``params`` do not fit the
    factory) or an object label (the object itself is given to the trainer).
    """
    if is_object_label(name):
        return True
    if not is_import_path(name):
        return False
    obj = import_object(name, kind)
    params = dict(params or {})
    data = kind == "dataset"
    if _is_factory(obj, data):
        _check_params(kind, repr(name), obj, params, DATASET_ARGS if data else MODEL_ARGS)
    elif params:
        raise ValueError(f"{kind} {name!r} is not a factory (it takes no {kind}_params), got {sorted(params)}")
    elif not data and not isinstance(obj, nn.Module):
        raise ValueError(f"model {name!r} must name an nn.Module, an nn.Module class or a factory; "
                         f"got {type(obj).__name__}")
    elif data and not isinstance(obj, (Dataset, tuple, list)):
        raise ValueError(f"dataset {name!r} must name a codedbft Dataset, (X_train, y_train, X_test, y_test), a "
                         f"(train, test) pair of torch Datasets or a factory; got {type(obj).__name__}")
    return True


# -- models --------------------------------------------------------------------------------------------
def build_user_model(source: Any, ds: Dataset, seed: int = 0, **params: Any) -> nn.Module:
    """The ``nn.Module`` of a model source (an import path, an ``nn.Module`` or a factory), see the
    module docstring; ValueError when it is none of these or the factory returns no module."""
    label = source if isinstance(source, str) else object_label(source)
    if isinstance(source, str):
        if not is_import_path(source):
            raise ValueError(f"model {source!r} was given as a Python object (config.json records its label): "
                             "pass it again, model=...") if is_object_label(source) else \
                ValueError(f"model {source!r} is not an import path 'package.module:attribute'")
        source = import_object(source, "model")
    if isinstance(source, nn.Module):
        if params:
            raise ValueError(f"model {label} is an nn.Module instance: it takes no model_params (give a factory), "
                             f"got {sorted(params)}")
        return source
    if not callable(source):
        raise ValueError(f"model {label} must be an nn.Module, an nn.Module class or a factory; got "
                         f"{type(source).__name__}")
    _check_params("model", label, source, params, MODEL_ARGS)
    runtime = {"ds": ds, "seed": seed, "in_features": int(math.prod(ds.input_shape)), "out": ds.output_dim}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _call(source, runtime, params)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model factory {label} returned {type(model).__name__}, not an nn.Module")
    return model


def loss_for(model: nn.Module, ds: Dataset) -> str | None:
    """The :class:`~codedbft.training.flat.FlatModel` loss of ``model`` on ``ds``: None (the model's own
    ``codedbft_task``, set by the registered builders), else cross entropy for classification, mse for
    regression."""
    if getattr(model, "codedbft_task", None) is not None:
        return None
    return "cross_entropy" if ds.task == "classification" else "mse"


# -- datasets ------------------------------------------------------------------------------------------
def _tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    return torch.as_tensor(np.asarray(x))


def _read(split: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(X, y)`` tensors of a torch ``Dataset`` whose items are ``(x, y)``."""
    tensors = getattr(split, "tensors", None)
    if isinstance(split, torch.utils.data.TensorDataset) and tensors is not None and len(tensors) == 2:
        return _tensor(tensors[0]), _tensor(tensors[1])
    try:
        n = len(split)
    except TypeError:
        raise ValueError(f"the {what} dataset must have a length (a map-style torch Dataset)") from None
    if n < 1:
        raise ValueError(f"the {what} dataset is empty")
    xs, ys = [], []
    for i in range(n):
        item = split[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"items of the {what} dataset must be (x, y) pairs, item {i} is {type(item).__name__}")
        xs.append(_tensor(item[0]))
        ys.append(_tensor(item[1]))
    return torch.stack(xs), torch.stack(ys)


def _from_tensors(X_train: Any, y_train: Any, X_test: Any, y_test: Any, name: str,
                  num_classes: int | None = None) -> Dataset:
    Xtr, ytr, Xte, yte = (_tensor(t) for t in (X_train, y_train, X_test, y_test))
    for X, y, what in ((Xtr, ytr, "train"), (Xte, yte, "test")):
        if X.dim() < 1 or X.shape[0] < 1:
            raise ValueError(f"the {what} features must have shape (N, ...) with N >= 1, got {tuple(X.shape)}")
        if y.dim() < 1 or y.shape[0] != X.shape[0]:
            raise ValueError(f"the {what} labels must have shape (N, ...) with N = {X.shape[0]} rows, got {tuple(y.shape)}")
    if Xtr.shape[1:] != Xte.shape[1:]:
        raise ValueError(f"train and test features differ in shape: {tuple(Xtr.shape[1:])} vs {tuple(Xte.shape[1:])}")
    if ytr.dtype.is_floating_point != yte.dtype.is_floating_point or ytr.shape[1:] != yte.shape[1:]:
        raise ValueError("train and test targets must have the same kind (integer labels or float targets) and shape")
    if ytr.is_complex() or Xtr.is_complex():
        raise ValueError("complex features or targets are not supported")
    classification = not ytr.dtype.is_floating_point
    if classification:
        ytr, yte = ytr.to(torch.int64).contiguous(), yte.to(torch.int64).contiguous()
        if ytr.dim() != 1:
            raise ValueError(f"integer labels must have shape (N,), got {tuple(ytr.shape)}")
        low = min(int(ytr.min()), int(yte.min()))
        if low < 0:
            raise ValueError(f"class labels must be >= 0, got {low}")
        top = max(int(ytr.max()), int(yte.max())) + 1
        if num_classes is None:
            num_classes = top
        elif top > num_classes:
            raise ValueError(f"labels reach {top - 1} but the dataset names {num_classes} classes")
    else:
        ytr, yte = ytr.to(torch.float32).contiguous(), yte.to(torch.float32).contiguous()
        num_classes = None
    return Dataset(name=name, task="classification" if classification else "regression",
                   X_train=Xtr.to(torch.float32).contiguous(), y_train=ytr,
                   X_test=Xte.to(torch.float32).contiguous(), y_test=yte,
                   num_classes=num_classes, input_shape=tuple(int(s) for s in Xtr.shape[1:]))


def as_dataset(source: Any, *, seed: int = 0, params: Mapping[str, Any] | None = None, name: str | None = None) -> Dataset:
    """The runtime :class:`~codedbft.training.datasets.Dataset` of a data source (see the module
    docstring): a ``Dataset`` is returned as is; four tensors or a pair of torch datasets are
    converted; a factory is called first (with ``params`` and, if it names it, ``seed``)."""
    params = dict(params or {})
    label = name or (source if isinstance(source, str) else object_label(source))
    if isinstance(source, str):
        if is_object_label(source):
            raise ValueError(f"dataset {source!r} was given as a Python object (config.json records its label): "
                             "pass it again, dataset=...")
        return load_user_dataset(source, seed, **params)
    if _is_factory(source, data=True):
        _check_params("dataset", label, source, params, DATASET_ARGS)
        source = _call(source, {"seed": seed}, params)
        if _is_factory(source, data=True):
            raise ValueError(f"dataset factory {label} returned another callable ({type(source).__name__})")
    elif params:
        raise ValueError(f"dataset {label} is not a factory: it takes no dataset_params, got {sorted(params)}")
    if isinstance(source, Dataset):
        return source
    text = label[len(OBJECT_PREFIX):-1] if is_object_label(label) else label
    if isinstance(source, (tuple, list)) and len(source) == 2 and all(
            isinstance(s, torch.utils.data.Dataset) for s in source):
        train, test = source
        classes = getattr(train, "classes", None)
        (Xtr, ytr), (Xte, yte) = _read(train, "train"), _read(test, "test")
        return _from_tensors(Xtr, ytr, Xte, yte, text, len(classes) if classes is not None and not
                             ytr.dtype.is_floating_point else None)
    if isinstance(source, (tuple, list)) and len(source) == 4:
        return _from_tensors(*source, name=text)
    raise ValueError(f"dataset {label} must be a codedbft Dataset, (X_train, y_train, X_test, y_test) tensors, "
                     f"a (train, test) pair of torch Datasets, or a factory returning one; got {type(source).__name__}"
                     + (f" of length {len(source)}" if isinstance(source, (tuple, list)) else ""))


def load_user_dataset(path: str, seed: int = 0, **params: Any) -> Dataset:
    """The dataset an import path names (an object or a factory of the accepted kinds)."""
    return as_dataset(import_object(path, "dataset"), seed=seed, params=params, name=path)


# -- the objects a trainer is given ----------------------------------------------------------------------
def bind_objects(config: Any, *, model: Any = None, dataset: Any = None, scheme: Any = None) -> tuple[Any, Any, Any]:
    """``(config, model_source, dataset)`` for a trainer given objects next to its configuration.

    ``config`` comes back with each given object's label in its field (what config.json records);
    ``model_source`` is what the worker spec carries (the object, or the configured name or path);
    ``dataset`` the data object (None: the spec loads it). A field that holds a label needs its object
    again (a resumed run), and the label must match it: ValueError otherwise.
    """
    changes: dict[str, str] = {}
    for field, obj in (("model", model), ("dataset", dataset), ("scheme", scheme)):
        current = getattr(config, field)
        if obj is None:
            if is_object_label(current):
                raise ValueError(f"{field} {current!r} was given as a Python object: pass the same object again "
                                 f"({field}=... to Master, make_trainer or Trainer.resume)")
            continue
        if isinstance(obj, str):
            raise ValueError(f"{field}= takes a Python object; give a name or an import path as RunConfig({field}=...)")
        label = object_label(obj)
        if is_object_label(current) and current != label:
            raise ValueError(f"this run's {field} was {current}, got {label}: a resumed run needs the same object")
        changes[field] = label
    if isinstance(model, nn.Module) and config.model_params:
        raise ValueError(f"model= is an nn.Module instance: it takes no model_params (give a factory), got "
                         f"{sorted(config.model_params)}")
    if model is not None and not isinstance(model, nn.Module) and not callable(model):
        raise ValueError(f"model= must be an nn.Module, an nn.Module class or a factory; got {type(model).__name__}")
    if changes:
        config = config.replace(**changes)
    return config, (model if model is not None else config.model), dataset


def as_scheme(obj: Any, config: Any) -> Any:
    """The :class:`~codedbft.schemes.base.Scheme` of ``scheme=``: a Scheme as is, a code wrapped by
    :class:`~codedbft.schemes.code.CodeScheme` (with the run's scheme settings); its ``n`` must be the
    run's ``workers``."""
    from codedbft.schemes.base import Scheme
    from codedbft.schemes.code import CodeScheme, is_code

    if isinstance(obj, Scheme):
        scheme = obj
    elif is_code(obj):
        scheme = CodeScheme(obj, config.scheme_config())
    else:
        raise ValueError(f"scheme= must be a Scheme or a Code (n, k, assignment, decode); got {type(obj).__name__}")
    if scheme.n != config.workers:
        raise ValueError(f"scheme= has n={scheme.n} workers but the run has workers={config.workers}: set "
                         f"workers={scheme.n}")
    return scheme
