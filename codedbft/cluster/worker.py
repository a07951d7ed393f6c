"""What one worker does, the same code on both backends: load its data, compute, combine, attack.

A worker is built from a :class:`WorkerSpec` (a dataset *spec*, not the data: each process loads
the dataset itself and indexes only the rows of the partitions it is told to compute). Each step it
receives the flat model ``w`` and a task (partition ids plus the code's coefficients), computes the
partition gradients with :meth:`FlatModel.partition_gradients` (bitwise stable per partition, so the
local simulator and a Ray actor produce the same bytes) and combines them with
:func:`~codedbft.schemes.base.combine`. Byzantine workers then run the coalition's forgery inside the
worker (:class:`~codedbft.cluster.adversary.ForgeJob`, the one adversary path). On Ray, an actor
hosts several workers (:mod:`codedbft.cluster.actor_group`) and runs them with the simulator's engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from codedbft.cluster.adversary import ForgeJob, as_tensor, coalition_messages  # noqa: F401 - re-exported


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs to rebuild its data and model (small and picklable).

    ``k`` partitions of ``b`` samples each are drawn per step by ``Dataset.partition_batch``'s
    rule (``batch(step, k*b, seed)`` split in k), or, with a non-IID ``split``
    (:mod:`codedbft.training.splits`), partition j's b rows from its own shard; ``threads`` fixes
    torch's thread count, which must be the same in every process for bit-identical gradients.
    ``local_steps``/``local_lr``/``worker_momentum``: what an honest worker sends instead of a
    plain gradient (:mod:`codedbft.training.local_sgd`; 1 / any / 0 is the plain gradient).
    ``straggle`` ``(P, FACTOR)``: benchmarks' straggler model (a Ray actor hosting a worker that
    straggles this step, seeded by ``(seed, step, worker)`` with probability P, takes FACTOR times
    its compute time; the simulator ignores it).
    ``model`` is a registered name, an import path ``"pkg.mod:attr"`` or a user's ``nn.Module`` or
    factory object (pickled with the spec); ``dataset`` a name, an import path, or the label of a data
    object that travels separately (``WorkerCore``'s ``dataset``), see :mod:`codedbft.training.byo`.
    """

    dataset: str
    model: Any
    k: int
    b: int
    seed: int = 0
    dataset_params: Mapping[str, Any] = field(default_factory=dict)
    model_params: Mapping[str, Any] = field(default_factory=dict)
    threads: int = 1
    split: str = "iid"
    local_steps: int = 1
    local_lr: float = 0.1
    worker_momentum: float = 0.0
    straggle: tuple[float, float] | None = None


class WorkerCore:
    """The worker's state: its dataset and model, built once from a :class:`WorkerSpec`."""

    def __init__(self, spec: WorkerSpec, dataset: Any = None):
        from codedbft.training import Dataset, FlatModel, build_model, load_dataset, set_deterministic

        set_deterministic(spec.seed, spec.threads)
        self.spec = spec
        # A dataset shared by the master (one object in Ray's store) spares every worker process the
        # generation and the scikit-learn import; otherwise the spec rebuilds it (same seed, same data).
        if dataset is not None and not isinstance(dataset, Dataset):  # a user's tensors, torch datasets, factory
            from codedbft.training.byo import as_dataset

            dataset = as_dataset(dataset, seed=spec.seed, params=spec.dataset_params, name=spec.dataset)
        self.ds = dataset if dataset is not None else load_dataset(spec.dataset, spec.seed, **dict(spec.dataset_params))
        module = build_model(spec.model, self.ds, spec.seed, **dict(spec.model_params))
        from codedbft.training.byo import loss_for

        self.model = FlatModel(module, loss=loss_for(module, self.ds))
        from codedbft.training.splits import build_split

        self.shards = build_split(spec.split, self.ds.y_train.numpy(), spec.k, spec.seed)
        from codedbft.training.local_sgd import WorkerMomentum

        self.momentum = WorkerMomentum(spec.worker_momentum) if spec.worker_momentum > 0 else None

    def batch_indices(self, step: int) -> torch.Tensor:
        """``(k, b)`` training indices of the step's partitions (the same rule in every process)."""
        if self.shards is None:
            return self.ds.batch(step, self.spec.k * self.spec.b, self.spec.seed).view(self.spec.k, self.spec.b)
        out = np.empty((self.spec.k, self.spec.b), dtype=np.int64)
        for j, shard in enumerate(self.shards):  # k <= a few hundred: a loop over partitions, not rows
            rng = np.random.default_rng([self.spec.seed, step, j, 0x5917])
            out[j] = shard[rng.choice(shard.size, self.spec.b, replace=shard.size < self.spec.b)]
        return torch.from_numpy(out)

    def rows(self, batch_step: int, partitions: Sequence[int], poisoned: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``X (p, b, ...)``, ``y (p, b, ...)``: the given partitions' rows of batch step ``batch_step``;
        ``poisoned``: labels flipped (label-flip attack)."""
        idx = self.batch_indices(batch_step)[torch.as_tensor(list(partitions), dtype=torch.int64)]
        X = self.ds.X_train[idx.reshape(-1)].view(*idx.shape, *self.ds.X_train.shape[1:])
        y = self.ds.y_train[idx.reshape(-1)].view(*idx.shape, *self.ds.y_train.shape[1:])
        if poisoned:
            from codedbft.attacks.local import LabelFlip

            y = LabelFlip.flip_labels(y, self.ds.num_classes)
        return X, y

    def gradients(self, w: torch.Tensor, step: int, partitions: Sequence[int], poisoned: bool = False) -> torch.Tensor:
        """What honest workers send for the given partitions at step ``step``, ``(p, d)``, before
        worker momentum: the partition gradients, or with ``local_steps > 1`` the average local
        gradients (:func:`~codedbft.training.local_sgd.average_local_gradient`)."""
        if self.spec.local_steps > 1:
            from codedbft.training.local_sgd import average_local_gradient

            return average_local_gradient(self.model, w, step, partitions,
                                          lambda s, parts: self.rows(s, parts, poisoned),
                                          self.spec.local_steps, self.spec.local_lr)
        X, y = self.rows(step, partitions, poisoned)
        return self.model.partition_gradients(w, X, y)

    def with_momentum(self, workers: Sequence[int], tasks: Sequence[Sequence[int]], step: int,
                      G: torch.Tensor) -> torch.Tensor:
        """``G (W, p, d)`` (worker ``workers[r]``'s vectors for ``tasks[r]``) through each worker's
        momentum; ``G`` itself without worker momentum."""
        return G if self.momentum is None else self.momentum.update(workers, tasks, step, G)


def run_program(program: Any, op: str, w: Any, step: int, payload: Any, poisoned: bool,
                core: "WorkerCore | None" = None) -> np.ndarray:
    """One worker's message for an operation order (see ``schemes.base.Order``): its program, shipped
    once at start, run on this step's model and the order's payload. A program with ``needs_core``
    (decentralized nodes, ByzSGD workers) also gets the worker's dataset and model (``core``)."""
    if program is None:
        raise ValueError(f"operation order {op!r} sent to a worker without a program (Scheme.worker_data)")
    if getattr(program, "needs_core", False):
        return np.asarray(program(op, as_tensor(w), step, payload, poisoned, core))
    return np.asarray(program(op, as_tensor(w), step, payload, poisoned))
