"""Heterogeneous (non-IID) data: which training rows each partition (or node) draws its batches from.

``--split`` takes ``iid`` (default: every partition's batch is drawn from the whole training set,
the runtime's original rule), ``dirichlet:alpha=A``, ``gamma:G`` (or ``gamma:gamma=G``) or
``extreme``; every split is a deterministic function of the labels, the number of partitions k and
the run seed, so every process (master, Ray actors, a resumed run) rebuilds the same shards.

* ``dirichlet`` (Hsu, Qi, Brown 2019, the usual federated benchmark): for each class c, the
  proportions ``p_c ~ Dir(α 1_k)`` split that class's (shuffled) rows among the k partitions;
  small α (0.1) gives partitions dominated by one or two classes, large α approaches iid.
* ``gamma`` (γ-similarity, Karimireddy et al. 2020, SCAFFOLD): a fraction γ of the rows is dealt
  iid, the remaining 1 − γ is sorted by label and cut into k contiguous chunks; γ = 1 is iid,
  γ = 0 is ``extreme``.
* ``extreme``: all rows sorted by label, cut into k contiguous chunks (each partition sees one or
  two classes).

A partition whose shard is smaller than its per-step batch draws with replacement; a draw that
leaves a partition empty is redrawn from the same seeded generator (up to 100 draws, then a
ValueError naming the split). What a split means for each code: a repetition group (DRACO, DETOX) computes ONE partition, so
its copies agree whatever the split and the vote is unaffected; the heterogeneity shows between the
groups, where DETOX's robust outer rule sees it (as vanilla's rules see it between workers); cyclic
MDS and data encoding recover the exact sum of all partitions, so the decoded gradient is the
full-batch one whatever the split (data encoding keeps its own encoded row order and takes iid only).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from codedbft.registry import Registry

#: draws of a split before an empty partition is a ValueError (only Dirichlet with small alpha redraws)
_REDRAWS = 100

#: split kinds by name; each entry ``f(labels, k, rng, **params) -> list of k index arrays``
SPLITS: Registry[Any] = Registry("split")


def parse_split(spec: str) -> tuple[str, dict[str, float]]:
    """``"dirichlet:alpha=0.1"`` -> ``("dirichlet", {"alpha": 0.1})``; ``"gamma:0.5"`` -> gamma=0.5.

    Raises ValueError for an unknown kind or parameter (listing the valid ones) or a bad value.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"split must be a string such as 'iid' or 'dirichlet:alpha=0.1', got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    entry = SPLITS.entry(name)
    params: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:  # a bare value: the split's one parameter
            if not entry.params:
                raise ValueError(f"split {entry.name!r} takes no parameter, got {item!r}")
            key, value = entry.params[0], item
        try:
            params[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"split parameter {key.strip()!r} must be a number, got {value!r}") from None
    SPLITS.check_params(entry.name, params)
    return entry.name, params


def class_labels(y: Any) -> np.ndarray:
    """Integer class labels of the training targets (one-hot targets: their argmax)."""
    y = np.asarray(y)
    if y.ndim == 2:
        return y.argmax(axis=1)
    if np.issubdtype(y.dtype, np.integer):
        return y
    raise ValueError("non-IID splits need class labels (a classification dataset or one-hot targets); "
                     "this dataset has scalar regression targets: use split 'iid'")


def build_split(spec: str, y: Any, k: int, seed: int) -> list[np.ndarray] | None:
    """The k shards (sorted row ids) of ``spec`` for targets ``y``; None for ``iid``."""
    name, params = parse_split(spec)
    if name == "iid":
        return None
    labels = class_labels(y)
    if k > labels.size:
        raise ValueError(f"split {spec!r}: k={k} partitions for {labels.size} training rows")
    rng = np.random.default_rng([int(seed), 0x5B17])
    for _ in range(_REDRAWS):  # small alphas leave a partition empty now and then: redraw (seeded)
        shards = [np.sort(np.asarray(s, dtype=np.int64)) for s in SPLITS.get(name)(labels, k, rng, **params)]
        empty = [j for j, s in enumerate(shards) if s.size == 0]
        if not empty:
            return shards
    raise ValueError(f"split {spec!r} left partitions {empty[:8]} without any training row in {_REDRAWS} "
                     f"draws (k={k}, {labels.size} rows): use a larger alpha or fewer partitions")


def histogram(shards: list[np.ndarray], y: Any) -> list[list[int]]:
    """Per shard, the number of rows of each class (for split.json and the tests)."""
    labels = class_labels(y)
    C = int(labels.max()) + 1
    return [np.bincount(labels[s], minlength=C).tolist() for s in shards]


@SPLITS.register("iid", params=(), help="every partition draws from the whole training set (default)")
def _iid(labels: np.ndarray, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    raise AssertionError("iid has no shards")  # pragma: no cover - build_split returns None first


@SPLITS.register("dirichlet", params=("alpha",), help="class proportions per partition ~ Dir(alpha) (alpha=0.1: strongly skewed)")
def _dirichlet(labels: np.ndarray, k: int, rng: np.random.Generator, alpha: float = 0.5) -> list[np.ndarray]:
    if not alpha > 0:
        raise ValueError(f"dirichlet split needs alpha > 0, got {alpha}")
    parts: list[list[np.ndarray]] = [[] for _ in range(k)]
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        p = rng.dirichlet(np.full(k, alpha))
        cuts = np.floor(np.cumsum(p)[:-1] * rows.size).astype(np.int64)
        for j, chunk in enumerate(np.split(rows, cuts)):
            parts[j].append(chunk)
    return [np.concatenate(p) for p in parts]


@SPLITS.register("gamma", params=("gamma",), help="gamma-similarity: a fraction gamma dealt iid, the rest sorted by label")
def _gamma(labels: np.ndarray, k: int, rng: np.random.Generator, gamma: float = 0.5) -> list[np.ndarray]:
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma split needs 0 <= gamma <= 1, got {gamma}")
    rows = rng.permutation(labels.size)
    n_iid = int(round(gamma * labels.size))
    iid, rest = rows[:n_iid], rows[n_iid:]
    rest = rest[np.argsort(labels[rest], kind="stable")]
    return [np.concatenate([iid[j::k], chunk]) for j, chunk in enumerate(np.array_split(rest, k))]


@SPLITS.register("extreme", params=(), help="sorted by label, k contiguous chunks (one or two classes each)")
def _extreme(labels: np.ndarray, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    return _gamma(labels, k, rng, gamma=0.0)
