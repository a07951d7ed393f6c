"""Training glue for the runtime: datasets, models, flat-vector gradients, optimizers.

::

    ds = load_dataset("digits", seed=0)
    fm = FlatModel(build_model("logreg", ds, seed=0))
    w = fm.init_params()
    X, y = ds.partition_batch(step=0, k=15, b=8, seed=0)
    G = fm.partition_gradients(w, X, y)          # (k, d); row j's bytes depend on partition j only
    opt = make_optimizer("sgd", lr=0.1)
    w = opt.step(w, G.mean(0))

Datasets, models and optimizers are looked up by name in :data:`DATASETS`, :data:`MODELS` and
:data:`OPTIMIZERS` (:class:`codedbft.registry.Registry`; iterating one yields its names); an unknown
name or option key raises ValueError listing the valid ones. ``docs/training.md`` lists them all.
"""

from codedbft.training.datasets import DATASETS, Dataset, load_dataset, step_generator
from codedbft.training.determinism import set_deterministic
from codedbft.training.flat import LOSSES, FlatModel
from codedbft.training.models import MODELS, build_model
from codedbft.training.optim import OPTIMIZERS, SGD, Adam, Optimizer, make_optimizer

__all__ = [
    "DATASETS",
    "Dataset",
    "load_dataset",
    "step_generator",
    "set_deterministic",
    "LOSSES",
    "FlatModel",
    "MODELS",
    "build_model",
    "OPTIMIZERS",
    "Optimizer",
    "SGD",
    "Adam",
    "make_optimizer",
]
