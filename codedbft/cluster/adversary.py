"""The one adversary path: who forges, what an attack may see, and what a failed forgery becomes.

Every backend calls :func:`forging_round` after the honest replies of a round are in; backends
differ only in *where* the forgery is computed (the local simulator computes it once in-process;
the Ray backend ships one :class:`ForgeJob` to every Byzantine actor, which computes the same
coalition forgery and keeps its own row). The local/Ray bit-identity guarantee rests on this being
one function, so the rules live here and nowhere else:

1. *Who forges*: the Byzantine workers of the step that were asked in this round **and** replied
   honestly in time. A Byzantine worker whose honest computation was lost (dead actor, late) has
   nothing to start from and stays an erasure.
2. *What the attack sees*: the present honest replies of this round (a documented simulation
   privilege for omniscient attacks such as ALIE, IPM or omniscient: a real adversary would have to
   eavesdrop) and the forgers' own honest replies, as flat real vectors (complex messages are
   viewed as interleaved re/im pairs), with the generator seeded by ``(seed, step)``.
3. *What a failure is*: a forgery that raises (ALIE on a partial round with too few honest rows,
   an attack's own bug) or does not arrive by the deadline makes every forger of the round an
   **erasure**, never its honest message and never an exception in the master. A configuration
   the attack can never run (checked on the full round with :meth:`Adversary.check`) is rejected
   before any worker starts.
4. *Data-level attacks* (label-flip) have no forging round: the Byzantine workers compute on
   poisoned data (:meth:`Coalition.poisoned`) and send that honestly-computed message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch


@dataclass(frozen=True)
class Adversary:
    """The configured attack for a run (seeded by ``(seed, step)``), before the step's placement."""

    attack: Any
    seed: int
    n: int
    assignment: Any = None

    @property
    def data_level(self) -> bool:
        """Label-flip style attacks poison the worker's own computation; no forging round."""
        return bool(getattr(self.attack, "data_level", False))

    def check(self, byzantine: int) -> None:
        """ValueError when the attack cannot run on a full round with ``byzantine`` forgers."""
        check = getattr(self.attack, "check", None)
        if check is not None and byzantine > 0:
            check(self.n, self.n - byzantine)

    def at(self, step: int, byzantine: Sequence[int]) -> "Coalition":
        """The coalition of step ``step``: this attack run by the workers ``byzantine``."""
        return Coalition(self.attack, tuple(sorted(int(i) for i in byzantine)), int(step), self.seed, self.n,
                         self.assignment)


@dataclass(frozen=True)
class Coalition:
    """The adversary at one step: the attack, who is Byzantine, what seeds their forgery."""

    attack: Any
    byzantine: tuple[int, ...]
    step: int
    seed: int
    n: int
    assignment: Any = None

    @property
    def data_level(self) -> bool:
        return bool(getattr(self.attack, "data_level", False))

    def poisoned(self, worker: int) -> bool:
        """True when ``worker`` computes on poisoned data this step (data-level attacks)."""
        return self.data_level and worker in self.byzantine


@dataclass(frozen=True)
class ForgeJob:
    """Everything a forger needs, and nothing else (picklable: shipped once to Byzantine actors).

    ``rows``/``ids``: the forgers' rows in the reply stack and their worker ids (same order);
    ``honest (h, ...)`` and ``own (b, ...)``: this round's present honest replies and the forgers'
    own honest replies, as numpy arrays (zero-copy in a Ray actor).
    """

    attack: Any
    rows: tuple[int, ...]
    ids: tuple[int, ...]
    honest: np.ndarray
    own: np.ndarray
    step: int
    seed: int
    n: int
    assignment: Any = None

    def forge(self) -> torch.Tensor:
        """The coalition's forged messages ``(b, ...)``, shaped and typed like ``own``."""
        return coalition_messages(self.attack, as_tensor(self.honest), as_tensor(self.own), self.ids,
                                  step=self.step, seed=self.seed, n=self.n, assignment=self.assignment)

    def message_of(self, worker: int) -> np.ndarray:
        """Worker ``worker``'s row of the forgery (what one Byzantine actor sends)."""
        return self.forge()[self.ids.index(worker)].numpy()


def as_tensor(a: Any) -> torch.Tensor:
    """A torch view of a (possibly read-only, Ray-shared) numpy array, without a copy."""
    if isinstance(a, torch.Tensor):
        return a
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # read-only plasma buffer: never written to
        return torch.from_numpy(a)


def _real_view(x: torch.Tensor) -> torch.Tensor:
    """``(W, ...)`` -> real ``(W, D)``: attacks work on flat real vectors (complex: re/im interleaved)."""
    # explicit width: a round with no honest reply (RRR reactive copies) has 0 rows, and -1 is ambiguous there
    x = x.reshape(x.shape[0], int(np.prod(x.shape[1:], dtype=np.int64)))
    return torch.view_as_real(x).reshape(x.shape[0], -1) if x.is_complex() else x


def coalition_messages(attack: Any, honest: torch.Tensor, own: torch.Tensor, byzantine_ids: Sequence[int], *,
                       step: int, seed: int, n: int, assignment: Any = None) -> torch.Tensor:
    """The coalition's forged messages ``(b, ...)``, shaped like ``own`` (rule 2 of the module docstring).

    Every Byzantine worker calls this with the same arguments and the generator seeded by
    ``(seed, step)``, so they agree on the coalition's forgery (``collude``) and each keeps its own
    row; the local simulator calls it once for all.
    """
    from codedbft.attacks.base import AttackContext

    shape = own.shape
    h = _real_view(honest)
    o = _real_view(own)
    ctx = AttackContext.build(h, byzantine_ids, step=step, seed=seed, own=o, assignment=assignment, n=n)
    forged = attack(h, byzantine_ids, ctx)
    if own.is_complex():
        forged = torch.view_as_complex(forged.reshape(forged.shape[0], -1, 2).contiguous())
    return forged.reshape(shape).to(own.dtype)


class ReplySink:
    """What :func:`forging_round` needs of a backend's reply stack (``StackBuilder`` provides it)."""

    stack: torch.Tensor
    missing: np.ndarray
    bad: np.ndarray

    def put(self, i: int, msg: Any) -> None: ...

    def drop(self, i: int) -> None: ...


#: how a backend runs a job: ``{row: message}`` for the forgers whose forgery arrived in time
ForgeRunner = Callable[[ForgeJob], Mapping[int, Any]]


def forging_round(coalition: Coalition | None, workers: Sequence[int], sink: ReplySink,
                  run: ForgeRunner) -> dict[str, Any]:
    """Replace the present Byzantine rows of ``sink`` by the coalition's forgery (module docstring).

    Returns diagnostics: ``forge_ms`` (when a round ran), ``forgers`` (how many forged),
    ``forge_failed`` (the error text when the forgery raised; its forgers are erasures).
    """
    if coalition is None or coalition.attack is None or coalition.data_level or not coalition.byzantine:
        return {}
    t0 = time.perf_counter()
    byz = set(coalition.byzantine)
    present = ~(sink.missing | sink.bad)
    honest = [i for i, w in enumerate(workers) if present[i] and w not in byz]
    forgers = [i for i, w in enumerate(workers) if present[i] and w in byz]
    if not forgers:
        return {}
    job = ForgeJob(coalition.attack, tuple(forgers), tuple(workers[i] for i in forgers),
                   sink.stack[honest].numpy(), sink.stack[forgers].numpy(), coalition.step, coalition.seed,
                   coalition.n, coalition.assignment)
    for i in forgers:
        sink.drop(i)  # from here a forger's row is its forgery or an erasure, never its honest message
    info: dict[str, Any] = {"forgers": len(forgers)}
    try:
        forged = run(job)
    except Exception as err:  # noqa: BLE001 - a Byzantine worker that cannot forge sends nothing
        forged = {}
        info["forge_failed"] = f"{type(err).__name__}: {err}"
    for i, msg in forged.items():
        sink.put(i, msg)
    info["forge_ms"] = (time.perf_counter() - t0) * 1e3
    return info


def forge_here(job: ForgeJob) -> dict[int, Any]:
    """Run ``job`` in this process: the local simulator's :data:`ForgeRunner` (one forge for all)."""
    forged = job.forge()
    return {row: forged[j] for j, row in enumerate(job.rows)}


# -- settings without a trusted master: one forgery per receiver ----------------------------------
def target_seed(seed: int, target: int, stream: int = 0) -> int:
    """The attack seed for what the coalition sends to ``target`` (a node, a server): Byzantine
    participants may send different messages to different receivers, each reproducible."""
    return int(np.random.SeedSequence([int(seed), int(target), int(stream)]).generate_state(1, np.uint64)[0] >> 1)


def forge_for(attack: Any, honest: torch.Tensor, byzantine_ids: Sequence[int], *, step: int, seed: int,
              target: int, stream: int = 0, own: torch.Tensor | None = None) -> torch.Tensor | None:
    """What the Byzantine senders ``byzantine_ids`` send to one receiver ``target``, ``(b, d)``.

    ``honest (h, d)``: what the attack may see at that receiver (the benign messages it gets: a
    node's benign neighbourhood, the correct servers' models, the correct workers' gradients);
    ``own``: the senders' own honest messages (default: the true value per sender, see
    :class:`~codedbft.attacks.base.AttackContext`). Rule 3 of the module docstring holds here too:
    a forgery that raises returns None, and the caller treats those senders as missing at that
    receiver, never as their honest message and never as an exception.
    """
    b, h = len(byzantine_ids), honest.shape[0]
    if not b:
        return honest.new_empty((0, honest.shape[1]))
    # the attack sees the receiver's view: h honest senders, then the b Byzantine ones (ids h..h+b-1)
    local_ids = tuple(range(h, h + b))
    try:
        return coalition_messages(attack, honest, own if own is not None else _default_own(honest, b), local_ids,
                                  step=step, seed=target_seed(seed, target, stream), n=h + b)
    except Exception:  # noqa: BLE001 - a Byzantine sender that cannot forge sends nothing
        return None


def _default_own(honest: torch.Tensor, b: int) -> torch.Tensor:
    """The senders' own honest messages when they hold none: the honest mean, once per sender."""
    if honest.shape[0] == 0:
        return honest.new_zeros((b, honest.shape[1]))
    return honest.mean(dim=0, keepdim=True).expand(b, -1).contiguous()
