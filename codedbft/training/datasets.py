"""Datasets for the training runtime, all built in-process and offline.

=========================  ==============  =========================================================
name                       task            contents
=========================  ==============  =========================================================
``"digits"``               classification  scikit-learn's bundled ``load_digits`` (1797 8x8 images,
                                           10 classes), pixels scaled to [0, 1], flattened to (64,)
``"mnist1d"``              classification  MNIST-1D (Greydanus 2020) generated offline with
                                           ``mnist1d.data.make_dataset``: 4000 train + 1000 test
                                           signals of length 40, 10 classes
``"synthetic-regression"`` regression      ``X ~ N(0, 1)`` of shape (N, p), ``y = X w* + sigma eps``;
                                           ``optimum = w*`` exactly when ``noise == 0``, otherwise
                                           the float64 least-squares minimiser of the training loss
``"digits-linear"``        regression      digits features with least-squares targets (below)
=========================  ==============  =========================================================

``digits-linear`` exists for codes that are linear in the *data* (Data, Song & Diggavi, IEEE T-IT
2021): with the least-squares loss ``f(w) = 1/(2b) sum_i ||W x_i - y_i||^2`` the gradient
``1/b X^T (X W^T - Y)`` is linear in the rows of (X, Y), so encoded rows give encoded gradients.
``target="onehot"`` (default) uses one-hot float rows, Y of shape (N, 10), so the argmax of the
linear prediction is a classifier (``accuracy`` is reported); ``target="index"`` regresses the
class index as a scalar (N,) target. ``optimum`` is the float64 minimum-norm least-squares solution
on the training split, flattened in the parameter order of ``build_model("linear", ds)`` (no bias):
row-major ``W`` of shape (outputs, 64). Digits has constant-zero pixels, so the normal equations
are singular and the minimum-norm solution is the one reported (the gradient vanishes there too).

Batches (``Dataset.batch``) are *epoch-free*: step ``t`` draws ``batch_size`` distinct indices,
uniformly without replacement, from a generator seeded by ``(seed, t)`` only. A run resumed at step
``t`` therefore draws exactly the batches it would have drawn, with no epoch bookkeeping; samples
are without replacement within a step and independent across steps.

Names are looked up in :data:`DATASETS`, a :class:`~codedbft.registry.Registry` of loaders (each
``loader(seed, **options)``): an unknown name or option key raises ValueError listing the valid
ones before anything is generated. ``docs/training.md`` lists every dataset and option.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from codedbft.registry import Registry

__all__ = ["Dataset", "load_dataset", "DATASETS", "step_generator"]

#: The datasets by name; each entry is a loader ``loader(seed, **options)`` returning a :class:`Dataset`.
DATASETS: Registry[Any] = Registry("dataset")

#: ``mnist1d.data.get_dataset_args`` fields a user may set, besides ``num_samples`` and the seed
#: (``generator_seed`` here, so that it is not confused with the run's seed). Listed rather than read
#: from the package so that naming the valid keys does not import it; ``url`` is left out on purpose
#: (only the downloader reads it, and nothing here downloads). tests/test_training.py checks the list
#: against the installed package.
MNIST1D_OPTIONS = (
    "train_split", "template_len", "padding", "scale_coeff", "max_translation", "corr_noise_scale",
    "iid_noise_scale", "shear_scale", "shuffle_seq", "final_seq_length",
)  # fmt: skip


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A torch CPU generator seeded by a hash of ``(seed, step, stream)``.

    ``np.random.SeedSequence`` mixes the words so neighbouring seeds/steps give unrelated streams
    (``manual_seed(seed + step)`` would make run ``seed=1`` replay run ``seed=0`` shifted by a step).
    """
    if seed < 0 or step < 0:
        raise ValueError(f"seed >= 0 and step >= 0 required, got seed={seed}, step={step}")
    state = np.random.SeedSequence([int(seed), int(step), int(stream)]).generate_state(2, np.uint32)
    g = torch.Generator(device="cpu")
    g.manual_seed(int(state[0]) << 31 | int(state[1] >> 1))
    return g


@dataclass
class Dataset:
    """A train/test split held as torch tensors, plus what a model needs to know about it.

    Features are float32 with shape ``(N, *input_shape)``. Labels are int64 ``(N,)`` for
    classification; regression targets are float32, ``(N,)`` or ``(N, outputs)``.
    """

    name: str
    task: str  # "classification" | "regression"
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int | None
    input_shape: tuple[int, ...]
    optimum: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_train(self) -> int:
        return int(self.X_train.shape[0])

    @property
    def output_dim(self) -> int:
        """Width of the model's output: classes, regression outputs, or 1 for a scalar target."""
        if self.task == "classification":
            assert self.num_classes is not None
            return self.num_classes
        return 1 if self.y_train.dim() == 1 else int(self.y_train.shape[1])

    def batch(self, step: int, batch_size: int, seed: int) -> torch.Tensor:
        """Indices (int64, ``(batch_size,)``) of the training samples used at ``step``.

        A deterministic function of ``(seed, step)``: ``batch_size`` distinct indices drawn
        uniformly without replacement from ``range(num_train)`` (epoch-free, see module doc).
        """
        n = self.num_train
        if not 1 <= batch_size <= n:
            raise ValueError(f"1 <= batch_size <= num_train={n} required, got {batch_size}")
        g = step_generator(seed, step)
        return torch.randperm(n, generator=g)[:batch_size]

    def partition_batch(
        self, step: int, k: int, b: int, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's ``k * b`` samples split into ``k`` partitions of ``b``: ``(k, b, *shape), (k, b, ...)``.

        Partition ``j`` holds ``batch(step, k*b, seed)[j*b:(j+1)*b]``.
        """
        if k < 1 or b < 1:
            raise ValueError(f"k >= 1 and b >= 1 required, got k={k}, b={b}")
        idx = self.batch(step, k * b, seed)
        X = self.X_train.index_select(0, idx)
        y = self.y_train.index_select(0, idx)
        return X.view(k, b, *X.shape[1:]), y.view(k, b, *y.shape[1:])


def load_dataset(name: str, seed: int = 0, **opts: Any) -> Dataset:
    """Build dataset ``name`` (one of :data:`DATASETS`); ``seed`` fixes every random choice.

    Options:

    * ``digits``, ``digits-linear``: ``test_fraction`` (0.2; the split is a seeded permutation);
      ``digits-linear`` also ``target`` (``"onehot"`` | ``"index"``).
    * ``mnist1d``: ``num_samples`` (5000, 80 % train), ``generator_seed`` (42, the package default,
      which gives the canonical MNIST-1D; ``seed`` is not used so every run sees the same data),
      any other ``mnist1d.data.get_dataset_args`` field. Never downloads and writes nothing to disk.
    * ``synthetic-regression``: ``n_train`` (2000), ``n_test`` (500), ``p`` (50), ``noise`` (0.0,
      standard deviation of the additive Gaussian noise).

    An unknown ``name`` or option key raises ValueError listing the valid ones. An import path
    ``"pkg.mod:attr"`` loads a user dataset (:mod:`codedbft.training.byo`), ``opts`` going to its factory.
    """
    if isinstance(name, str) and ":" in name:  # an import path (or an object's label: a clear error)
        from codedbft.training.byo import as_dataset

        return as_dataset(name, seed=seed, params=opts)
    DATASETS.check_params(name, opts, fixed=("seed",))
    return DATASETS.get(name)(seed, **opts)


def _split(n: int, seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"0 < test_fraction < 1 required, got {test_fraction}")
    perm = np.random.default_rng([seed, 0x5EED]).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    return perm[n_test:], perm[:n_test]


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    # Pixel intensities are integers 0..16; dividing by 16 maps them exactly onto [0, 1].
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)


@DATASETS.register("digits")
def _digits(seed: int, test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's 1797 8x8 digit images, 10 classes, pixels in [0, 1] (test_fraction)."""
    X, y = _digits_arrays()
    tr, te = _split(len(y), seed, test_fraction)
    return Dataset(
        name="digits",
        task="classification",
        X_train=torch.from_numpy(X[tr]),
        y_train=torch.from_numpy(y[tr]),
        X_test=torch.from_numpy(X[te]),
        y_test=torch.from_numpy(y[te]),
        num_classes=10,
        input_shape=(64,),
    )


def _lstsq_optimum(X: np.ndarray, Y: np.ndarray) -> torch.Tensor:
    """Minimum-norm float64 minimiser of ``||X W^T - Y||^2``, flattened as ``W`` (outputs, p) row-major."""
    W, *_ = np.linalg.lstsq(X.astype(np.float64), Y.astype(np.float64), rcond=None)
    return torch.from_numpy(np.ascontiguousarray(W.T).reshape(-1))


@DATASETS.register("digits-linear")
def _digits_linear(seed: int, test_fraction: float = 0.2, target: str = "onehot") -> Dataset:
    """Digits with least-squares targets, for codes linear in the data (test_fraction, target)."""
    X, labels = _digits_arrays()
    if target == "onehot":
        Y = np.eye(10, dtype=np.float32)[labels]
    elif target == "index":
        Y = labels.astype(np.float32)
    else:
        raise ValueError(f"target must be 'onehot' or 'index', got {target!r}")
    tr, te = _split(len(labels), seed, test_fraction)
    return Dataset(
        name="digits-linear",
        task="regression",
        X_train=torch.from_numpy(X[tr]),
        y_train=torch.from_numpy(Y[tr]),
        X_test=torch.from_numpy(X[te]),
        y_test=torch.from_numpy(Y[te]),
        num_classes=10 if target == "onehot" else None,
        input_shape=(64,),
        optimum=_lstsq_optimum(X[tr], Y[tr]),
        info={"target": target},
    )


@lru_cache(maxsize=4)
def _mnist1d_arrays(items: tuple[tuple[str, Any], ...]) -> tuple[np.ndarray, ...]:
    from mnist1d.data import get_dataset_args, make_dataset
    from mnist1d.utils import ObjectView

    args = get_dataset_args(as_dict=True)
    unknown = set(dict(items)) - set(args)
    if unknown:
        raise ValueError(f"unknown mnist1d options {sorted(unknown)}; valid: {sorted(args)}")
    args.update(dict(items))
    args.pop("url")  # only the downloader reads it; keep it out of reach
    # make_dataset reseeds the *global* numpy and random generators; restore them so loading data
    # does not silently change the random stream of the caller.
    import random

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(args))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return (
        data["x"].astype(np.float32),
        data["y"].astype(np.int64),
        data["x_test"].astype(np.float32),
        data["y_test"].astype(np.int64),
    )


@DATASETS.register("mnist1d", params=("seed", "generator_seed", "num_samples", *MNIST1D_OPTIONS))
def _mnist1d(seed: int = 0, generator_seed: int = 42, num_samples: int = 5000, **args: Any) -> Dataset:
    """MNIST-1D (Greydanus 2020), generated offline: length-40 signals, 10 classes (num_samples, ...).

    ``seed`` (the run's) is not used: every run sees the canonical data of ``generator_seed``.
    """
    if num_samples < 20:
        raise ValueError(f"num_samples >= 20 required (at least 2 per class), got {num_samples}")
    key = tuple(sorted({"seed": generator_seed, "num_samples": num_samples, **args}.items()))
    key = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in key)
    Xtr, ytr, Xte, yte = _mnist1d_arrays(key)
    return Dataset(
        name="mnist1d",
        task="classification",
        # Clones: the cached arrays must not be mutated through a caller's tensor.
        X_train=torch.from_numpy(Xtr.copy()),
        y_train=torch.from_numpy(ytr.copy()),
        X_test=torch.from_numpy(Xte.copy()),
        y_test=torch.from_numpy(yte.copy()),
        num_classes=10,
        input_shape=(int(Xtr.shape[1]),),
        info={"generator_seed": generator_seed, "num_samples": num_samples},
    )


@DATASETS.register("synthetic-regression")
def _synthetic_regression(
    seed: int, n_train: int = 2000, n_test: int = 500, p: int = 50, noise: float = 0.0
) -> Dataset:
    """Linear regression y = X w* + noise, X ~ N(0, 1) of p features (n_train, n_test, p, noise)."""
    if p < 1 or n_train < 1 or n_test < 1:
        raise ValueError(f"p >= 1, n_train >= 1, n_test >= 1 required, got {p}, {n_train}, {n_test}")
    if noise < 0:
        raise ValueError(f"noise >= 0 required, got {noise}")
    rng = np.random.default_rng([seed, 0x2E6])
    w_star = rng.standard_normal(p)
    X = rng.standard_normal((n_train + n_test, p))
    y = X @ w_star + noise * rng.standard_normal(n_train + n_test)
    X32, y32 = X.astype(np.float32), y.astype(np.float32)
    # The optimum is the minimiser of the loss on the float32 training data the model actually sees
    # (equal to w* up to float32 rounding when noise == 0), so "the gradient vanishes there" holds.
    opt = _lstsq_optimum(X32[:n_train], y32[:n_train])
    return Dataset(
        name="synthetic-regression",
        task="regression",
        X_train=torch.from_numpy(X32[:n_train]),
        y_train=torch.from_numpy(y32[:n_train]),
        X_test=torch.from_numpy(X32[n_train:]),
        y_test=torch.from_numpy(y32[n_train:]),
        num_classes=None,
        input_shape=(p,),
        optimum=opt,
        info={"w_star": torch.from_numpy(w_star), "noise": noise},
    )
