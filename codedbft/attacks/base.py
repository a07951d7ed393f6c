"""The attack contract: what a Byzantine worker sees (:class:`AttackContext`) and sends (:class:`Attack`).

Every attack is defined in ``docs/attacks.md`` (formula, parameters, what it reads from the context,
source paper). Conventions: ``n = h + b`` workers, ``h`` honest and ``b`` Byzantine (``f = b`` in the
papers' formulas); standard deviations are population ones (ddof = 0); every random draw comes from
``ctx.generator`` so an attack is reproducible from the generator's seed.

Attacks are built by name from :data:`ATTACKS`, the project's one :class:`~codedbft.registry.Registry`
of attacks: a file in this package whose class is decorated ``@ATTACKS.register()`` (or
:func:`register`) is found without touching any list, and :func:`by_name` rejects an unknown parameter
with the list of valid ones, before any step runs.

Own messages. sign-flip, bit-flip, gambler and label-flip start from the Byzantine workers' own honest
messages ``ctx.own``. The runtime always passes them (each Byzantine worker computes its honest
gradient first). A context built without them (by hand, or :meth:`AttackContext.build` without
``own=``) uses the documented default: the true gradient ``ctx.true_gradient`` (the honest mean when
the context has none) repeated once per Byzantine worker, as ByzFL's sign-flip does. A Byzantine
worker's own gradient is an unbiased estimate of that true gradient, so the default is the attack on
the gradient the worker would have sent on average.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from codedbft.registry import Registry


def step_generator(seed: int, step: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator seeded from ``(seed, step)`` only.

    The draws of step t then do not depend on how many numbers earlier steps consumed, so a run resumed
    from a checkpoint at step t attacks exactly as the uninterrupted run did (DESIGN.md: resume gives
    the same result). ``numpy.random.SeedSequence`` mixes the pair so that nearby seeds and steps give
    unrelated streams.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, int(step)]).generate_state(1, np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state) & 0x7FFFFFFFFFFFFFFF)


@dataclass
class AttackContext:
    """What the Byzantine workers know at one step.

    Attributes:
        step: the training step (iteration) index.
        true_gradient: (d,) the honest aggregate the master would compute: the mean of the honest
            messages unless the scheme says sum. Omniscient attacks use it; None means "the mean of
            ``honest``" for the attacks that need it.
        own: (b, d) the Byzantine workers' own honest messages, row i for ``byzantine_ids[i]`` (what
            sign-flip, bit-flip, gambler and label-flip start from). None means the default of
            :func:`default_own`: the true gradient repeated once per Byzantine worker.
        assignment: the code's assignment (tuple of n tuples of partition ids), or None.
        n: total number of workers; None means ``h + b``.
        generator: the seeded source of every random draw (see :func:`step_generator`).
    """

    step: int = 0
    true_gradient: torch.Tensor | None = None
    own: torch.Tensor | None = None
    assignment: tuple[tuple[int, ...], ...] | None = None
    n: int | None = None
    generator: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(0))

    def workers(self, h: int, b: int) -> int:
        """The total number of workers: ``n``, or ``h + b`` when the context leaves it out."""
        return h + b if self.n is None else self.n

    @classmethod
    def build(
        cls,
        honest: torch.Tensor,
        byzantine_ids: Sequence[int],
        *,
        step: int = 0,
        seed: int = 0,
        own: torch.Tensor | None = None,
        assignment: tuple[tuple[int, ...], ...] | None = None,
        n: int | None = None,
        true_gradient: torch.Tensor | None = None,
    ) -> AttackContext:
        """A context with the defaults filled in.

        The true gradient defaults to the mean of ``honest``; ``own`` to that true gradient repeated
        once per Byzantine worker (:func:`default_own`; left None only when there is neither a true
        gradient nor an honest message to take it from); ``n`` to ``h + b``; the generator is
        :func:`step_generator(seed, step) <step_generator>`. A given ``own`` is kept as is.
        """
        if true_gradient is None and honest.shape[0] > 0:
            true_gradient = honest.mean(dim=0)
        if own is None and true_gradient is not None:
            own = default_own(true_gradient, honest, len(byzantine_ids))
        return cls(
            step=step,
            true_gradient=true_gradient,
            own=own,
            assignment=assignment,
            n=honest.shape[0] + len(byzantine_ids) if n is None else n,
            generator=step_generator(seed, step),
        )


class Attack(ABC):
    """What the Byzantine workers send: ``attack(honest, byzantine_ids, ctx) -> (b, d)``.

    Row i of the result is the message of worker ``byzantine_ids[i]``; it has the honest messages'
    dtype and device. Subclasses implement :meth:`_forge`; :meth:`__call__` validates the inputs and
    handles ``b = 0``. Attacks never crash on non-finite or zero honest messages: the forged rows then
    carry NaN/Inf or zeros, which the decoders and aggregators downstream handle and count.

    Class attributes:
        name: the registry name (``by_name(name)``).
        data_level: True for data-poisoning attacks (label-flip) whose effect comes from the worker's
            own computation; :class:`~codedbft.attacks.mixed.Mixed` never draws them.
    """

    name: ClassVar[str]
    data_level: ClassVar[bool] = False

    def __call__(self, honest: Any, byzantine_ids: Iterable[int], ctx: AttackContext) -> torch.Tensor:
        honest = torch.as_tensor(honest)
        if honest.ndim != 2:
            raise ValueError(f"honest must have shape (h, d), got {tuple(honest.shape)}")
        ids = tuple(int(i) for i in byzantine_ids)
        if len(set(ids)) != len(ids):
            raise ValueError(f"byzantine_ids must be distinct, got {ids}")
        if ctx.n is not None and any(not 0 <= i < ctx.n for i in ids):
            raise ValueError(f"byzantine_ids must be in [0, n={ctx.n}), got {ids}")
        if ctx.own is not None and tuple(ctx.own.shape) != (len(ids), honest.shape[1]):
            raise ValueError(f"ctx.own must have shape (b={len(ids)}, d={honest.shape[1]}), got {tuple(ctx.own.shape)}")
        if not ids:
            return honest.new_empty((0, honest.shape[1]))
        self.check(ctx.workers(honest.shape[0], len(ids)), honest.shape[0])
        out = self._forge(honest, ids, ctx)
        return out.to(dtype=honest.dtype, device=honest.device)

    def check(self, n: int, h: int) -> None:
        """Raise ValueError when the attack cannot run with n workers, h of them honest (default: it can).

        Called before every forge, so a configuration error surfaces on the first step, not only on
        the steps where a random choice (``mixed``) happens to pick this attack.
        """

    @abstractmethod
    def _forge(self, honest: torch.Tensor, ids: tuple[int, ...], ctx: AttackContext) -> torch.Tensor:
        """The (b, d) forged messages for ``b = len(ids) >= 1`` Byzantine workers."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


# --- shared helpers -------------------------------------------------------------------------------


def default_own(true_gradient: torch.Tensor, honest: torch.Tensor, b: int) -> torch.Tensor:
    """The default own messages: ``true_gradient`` repeated once per Byzantine worker, (b, d).

    In ``honest``'s dtype and device (the dtype honest messages have, so bit-flip flips the same
    bits), and a contiguous copy rather than a stride-0 view, so an attack that sends ``own``
    unchanged (label-flip) returns rows a caller may write into.
    """
    d = honest.shape[1]
    if tuple(true_gradient.shape) != (d,):
        raise ValueError(f"ctx.true_gradient must have shape (d={d},), got {tuple(true_gradient.shape)}")
    return true_gradient.to(dtype=honest.dtype, device=honest.device).unsqueeze(0).repeat(b, 1)


def own_messages(ctx: AttackContext, honest: torch.Tensor, ids: Sequence[int], attack: str) -> torch.Tensor:
    """The (b, d) own messages the attack starts from: ``ctx.own`` when given, else the default.

    The default (:func:`default_own`) is ``ctx.true_gradient``, or the mean of ``honest`` when the
    context has none (a context built by hand), repeated once per Byzantine worker in ``ids``.
    ValueError naming the attack when there is nothing to take it from (no own, no true gradient,
    no honest message).
    """
    if ctx.own is not None:
        return ctx.own
    g = ctx.true_gradient
    if g is None:
        if honest.shape[0] == 0:
            raise ValueError(f"{attack} needs ctx.own (the Byzantine workers' own honest messages, (b, d)), "
                             "ctx.true_gradient or h >= 1 honest messages to default it from")
        g = honest.mean(dim=0)
    return default_own(g, honest, len(ids))


def honest_mean(honest: torch.Tensor, attack: str) -> torch.Tensor:
    """Mean of the honest messages (d,); needs h >= 1."""
    if honest.shape[0] == 0:
        raise ValueError(f"{attack} needs h >= 1 honest messages")
    return honest.mean(dim=0)


def float_dtype(like: torch.Tensor) -> torch.dtype:
    """The dtype random draws are made in: the messages' own when floating, else float32."""
    return like.dtype if like.is_floating_point() else torch.float32


# Below this probability a Bernoulli process is drawn by its geometric gaps (O(numel * p) draws)
# rather than one uniform per entry (O(numel)): gambler's default p = 0.001 on a 1e6-dim message
# needs ~1e3 draws instead of 1e6. Both are exact i.i.d. Bernoulli(p) per entry.
_SPARSE_P = 0.05


def draw_hits(numel: int, p: float, ctx: AttackContext, like: torch.Tensor) -> torch.Tensor:
    """The entries of a flat ``numel`` vector hit by i.i.d. Bernoulli(p) trials, from ``ctx.generator``.

    Returns a bool mask (numel,) when p > 0.05 (one float32 uniform per entry, ``U < p``), else the
    sorted int64 indices of the hits (Geometric(p) gaps); either indexes a flat tensor the same way
    (``flat[hits]``). Drawn on the generator's device, so the same seed hits the same entries whatever
    the messages' dtype and device, and moved to ``like``'s device.
    """
    g = ctx.generator
    if p > _SPARSE_P:
        return (torch.rand(numel, generator=g, device=g.device, dtype=torch.float32) < p).to(like.device)
    if numel == 0 or p <= 0.0:
        return torch.empty(0, dtype=torch.int64, device=like.device)
    mean = numel * p
    chunk = int(mean + 6.0 * math.sqrt(mean) + 16)  # rarely too few: then draw another chunk
    parts, last = [], -1
    while last < numel:
        gaps = torch.empty(chunk, dtype=torch.float64, device=g.device).geometric_(p, generator=g)
        pos = gaps.to(torch.int64).cumsum_(0).add_(last)
        parts.append(pos)
        last = int(pos[-1])
    pos = torch.cat(parts)
    return pos[pos < numel].to(like.device)


def draw_normal(shape: tuple[int, ...], ctx: AttackContext, like: torch.Tensor) -> torch.Tensor:
    """N(0, 1) of ``shape`` from ``ctx.generator`` on the generator's device, moved to ``like``'s device."""
    g = ctx.generator
    return torch.randn(shape, generator=g, device=g.device, dtype=float_dtype(like)).to(like.device)


# --- registry -------------------------------------------------------------------------------------

#: Every attack, by name. The package's modules are imported on the first lookup, so an attack
#: defined in a new file of ``codedbft.attacks`` registers itself; this module imports none of them
#: (they import it), which keeps the registry free of import cycles.
ATTACKS: Registry[type[Attack]] = Registry("attack", package="codedbft.attacks")
A = TypeVar("A", bound=type[Attack])


def register(cls: A) -> A:
    """Class decorator: make the :class:`Attack` subclass ``cls`` available as ``by_name(cls.name)``.

    The same as ``@ATTACKS.register()``; the parameters :func:`by_name` accepts are read from the
    signature of ``cls``. Registering a name twice raises ValueError.
    """
    if not (isinstance(cls, type) and issubclass(cls, Attack)):
        raise ValueError(f"only Attack subclasses can be registered as attacks, got {cls!r}")
    return ATTACKS.register(obj=cls)


def available(*, message_level: bool = False) -> tuple[str, ...]:
    """Names of the registered attacks, sorted; ``message_level=True`` leaves out data attacks."""
    return tuple(k for k in ATTACKS.available() if not (message_level and ATTACKS.get(k).data_level))


def by_name(name: str, **params: Any) -> Attack:
    """Build an attack from its name (``"sign-flip"`` or ``"sign_flip"``) and keyword parameters.

    ValueError for an unknown name (listing the available ones) or an unknown parameter (naming it
    and listing the attack's valid ones), before the attack is built.
    """
    return ATTACKS.build(name, **params)


def check_finite(value: float, what: str) -> float:
    """``float(value)`` or a ValueError when it is NaN/Inf (a bad configuration)."""
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return v

