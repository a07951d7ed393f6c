"""Neighbourhood aggregation rules for decentralized SGD, batched over nodes.

The math (S. Guo, T. Zhang, H. Yu, X. Xie, L. Ma, T. Xiang, Y. Liu, "Byzantine-resilient
Decentralized Stochastic Gradient Descent", 2020, arXiv:2002.08569; docs/decentralized_rules.md
has every choice below with its reason). Node ``i`` holds ``x_i``, receives ``x_j`` from its
neighbours ``j in N_i`` and updates with the General Update Function (Definition 2)::

    x_i <- alpha x_i + (1 - alpha) R_i - lambda grad l(x_i, xi_i)

A rule computes ``R_i`` for every node in one call. ``|N_i|`` below is the number of *valid*
received estimates (slot in the mask and every entry finite); Eq. 13 sizes the Byzantine
allowance ``n^_i = ceil(|N_i| min(1 - rho, rho_central))`` (:func:`n_hat`).

* ``average`` (Eq. 3, with the node itself as in ``R(x_i, j in N_i)``):
  ``R_i = (x_i + sum_j x_j) / (|N_i| + 1)``.
* ``ubar`` (Definition 3 / Algorithm 1, ``rho=0.4``): stage 1 keeps the ``k_i = ceil(rho |N_i|)``
  neighbours nearest to ``x_i`` in Euclidean distance (ties: lower slot); stage 2 keeps those whose
  loss on node i's sample satisfies ``l_j <= l_i``; ``R_i`` is their mean. If none is kept,
  ``fallback="own"`` (default) gives ``R_i = x_i``; ``fallback="best"`` is Eq. 12 / Algorithm 1
  lines 12-14 literally: the stage-1 estimate of least loss.
* ``dmedian``: coordinate-wise median of ``{x_i} u {x_j}``; an even count takes the mean of the two
  middle values.
* ``bridge`` (BRIDGE-T, Yang & Bajwa 2019, ``rho=0.4, rho_central=0.5``): per coordinate, drop the
  ``b_i`` largest and ``b_i`` smallest received values, ``b_i = min(n^_i, floor((|N_i|-1)/2))``, and
  average the rest together with ``x_i`` (never trimmed): ``/(|N_i| - 2 b_i + 1)``.
* ``dkrum`` (``rho=0.4, rho_central=0.5``): Krum over the received estimates with ``f = n^_i``:
  ``s(j)`` = sum of the squared distances to the ``k_i = |N_i| - n^_i - 2`` nearest other neighbours
  (the standard Krum count; the paper's ``+ 2`` is a sign slip), clipped to ``[1, |N_i| - 1]``;
  ``R_i = x_{argmin s}`` (ties: lower slot).
* ``dbulyan`` (``rho=0.4, rho_central=0.125``): ``theta_i = |N_i| - 2 n^_i`` recursive DKrum picks
  (each on the remaining set, with its own clipped count), then per coordinate the mean of the
  ``beta_i = |N_i| - 4 n^_i`` picked values closest to their median (ties: lower slot). When
  ``beta_i < 1`` the node falls back to ``dmedian`` and is counted in ``last_info["fallback"]``.

Every node with no valid neighbour gets ``R_i = x_i`` under every rule.

Batching: one call aggregates all ``N`` nodes on ``(N, M, d)`` tensors with a ``(N, M)`` mask; there is
no Python loop over nodes or over ``d``. Two loops remain, both documented where they run: DBulyan's
``max_i theta_i <= M`` recursion steps (each batched over all nodes), and, for the order statistics
(dmedian, bridge, DBulyan's coordinate step), one fixed-n call of ``_kernels.coord_reduce`` per
distinct degree (at most M calls; nodes of equal degree share one). Row ``i`` of the result depends
only on ``own[i]``, ``received[i][mask[i]]`` (and ``losses[i]`` where ``select`` is True,
``own_loss[i]``): masked slots may hold anything, NaN included, and a batched call returns exactly
the rows of one-node calls (DKrum/DBulyan: up to the batch-wide Gram re-centring of
``pairwise_sq_dists``, which only changes distance rounding, ~1e-12 relative).

Numerics: distances and sums accumulate in float64 (numba kernels on CPU float32/float64, the same
formulas in torch elsewhere) and the result is rounded once to the dtype of ``own`` (BRIDGE twice:
its trimmed mean is rounded to the work dtype before being mixed with ``x_i``, within one ulp). A
received row holding NaN/Inf is treated as missing and counted in ``last_info["nonfinite"]``; a
NaN loss is never kept; huge finite values never crash a rule. ``own`` is trusted, not screened.

Measured cost: one call at N=30 nodes, M=12 slots, d=1e5, float32, on this project's 2-core CPU
development machine (shared, so +-30%), median of 9 calls after a warm-up, numba kernels on. Every
slot valid: ``average`` 26 ms, ``ubar`` 38 ms (stage 1 + stage 2; the losses are the caller's),
``dmedian`` 140 ms, ``bridge`` 100 ms, ``dkrum`` 50 ms, ``dbulyan`` 240 ms (``n^=2``: 8 Krum
steps; the gather of the picked rows and the meamed kernel dominate). Padded degrees 6..12:
26 / 40 / 105 / 80 / 50 / 160 ms. The torch path (``_kernels.set_backend("torch")``, what a GPU
runs) on the same CPU: 520 / 890 / 300 / 310 / 550 / 1930 ms.

>>> from codedbft.decentralized.rules import build_rule
>>> rule = build_rule("ubar", rho=0.4)
>>> cand = rule.select(own, received, mask)           # which neighbours' losses to evaluate
>>> R = rule(own, received, mask, losses=losses, own_loss=own_loss)
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from codedbft.aggregators import _kernels
from codedbft.aggregators._distances import pairwise_sq_dists
from codedbft.aggregators.base import nonfinite_rows
from codedbft.registry import Registry

__all__ = ["NeighbourhoodRule", "RULES", "build_rule", "n_hat", "Average", "UBAR", "DMedian", "Bridge",
           "DKrum", "DBulyan"]

_INF = float("inf")
_F64MAX = torch.finfo(torch.float64).max
#: products like rho * |N_i| are rounded to this many decimals before ceil: (1 - 0.7) * 10 is 3, not 4
_DECIMALS = 9

RULES: Registry[type["NeighbourhoodRule"]] = Registry("neighbourhood rule")
"""Every neighbourhood rule class by name: average, ubar, dmedian, bridge, dkrum, dbulyan."""


def build_rule(name: str, /, **params: Any) -> "NeighbourhoodRule":
    """Build the rule called ``name``; ValueError for an unknown name or parameter (listing valid ones)."""
    return RULES.build(name, **params)


# -- parameters ------------------------------------------------------------------------------------
def _real(value: Any, what: str, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{owner}: {what} must be a finite real number, got {value!r}")
    return float(value)


def _check_rho(rho: Any, owner: str) -> float:
    r = _real(rho, "rho", owner)
    if not 0.0 < r <= 1.0:
        raise ValueError(f"{owner}: rho (ratio of benign neighbours) must be in (0, 1], got {rho!r}")
    return r


def _check_rho_central(rho_central: Any, owner: str) -> float:
    r = _real(rho_central, "rho_central", owner)
    if not 0.0 <= r <= 1.0:
        raise ValueError(f"{owner}: rho_central must be in [0, 1], got {rho_central!r}")
    return r


def _ceil_counts(x: torch.Tensor) -> torch.Tensor:
    return torch.ceil(torch.round(x.to(torch.float64), decimals=_DECIMALS)).to(torch.int64)


def n_hat(degree: int | torch.Tensor, rho: float, rho_central: float) -> int | torch.Tensor:
    """Eq. 13: the Byzantine allowance ``ceil(|N_i| * min(1 - rho, rho_central))``.

    ``degree``: an int >= 0 (returns an int) or an integer tensor (returns int64 of the same shape and
    device). The product is rounded to 9 decimals before the ceil, so float noise never adds one
    (``(1 - 0.7) * 10`` is 3.0000000000000004 in floats, and gives 3). ValueError for a negative or
    non-integer degree, rho not in (0, 1] or rho_central not in [0, 1].
    """
    rho = _check_rho(rho, "n_hat")
    rc = _check_rho_central(rho_central, "n_hat")
    r = min(1.0 - rho, rc)
    if isinstance(degree, torch.Tensor):
        if degree.is_floating_point() or degree.is_complex() or degree.dtype == torch.bool:
            raise ValueError(f"n_hat: degree must be an integer tensor, got {degree.dtype}")
        if degree.numel() and bool((degree < 0).any()):
            raise ValueError("n_hat: degree must be >= 0")
        return _ceil_counts(degree.to(torch.float64) * r)
    if isinstance(degree, bool) or not isinstance(degree, numbers.Integral) or degree < 0:
        raise ValueError(f"n_hat: degree must be an int >= 0, got {degree!r}")
    return math.ceil(round(int(degree) * r, _DECIMALS))


# -- inputs ----------------------------------------------------------------------------------------
@dataclass
class _Batch:
    own: torch.Tensor    # (N, d) work dtype, detached
    rec: torch.Tensor    # (N, M, d) work dtype, contiguous; finite (see _prepare)
    valid: torch.Tensor  # (N, M) bool: in the mask and finite
    deg: torch.Tensor    # (N,) int64: valid slots per node (|N_i|)
    nonfinite: torch.Tensor  # (N,) int64: masked-in slots dropped for NaN/Inf


def _prepare(name: str, own: Any, received: Any, mask: Any) -> _Batch:
    for what, t in (("own", own), ("received", received), ("mask", mask)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: {what} must be a torch tensor, got {type(t).__name__}")
    if own.dim() != 2:
        raise ValueError(f"{name}: own must be (N, d), got shape {tuple(own.shape)}")
    N, d = own.shape
    if received.dim() != 3 or received.shape[0] != N or received.shape[2] != d:
        raise ValueError(f"{name}: received must be (N, M, d) = ({N}, M, {d}), got shape {tuple(received.shape)}")
    M = received.shape[1]
    if tuple(mask.shape) != (N, M):
        raise ValueError(f"{name}: mask must be (N, M) = ({N}, {M}), got shape {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise ValueError(f"{name}: mask must be a bool tensor, got {mask.dtype}")
    if not own.is_floating_point() or not received.is_floating_point():
        raise ValueError(f"{name}: own and received must hold floating-point values, got {own.dtype}, {received.dtype}")
    dev = own.device
    wd = torch.promote_types(own.dtype, received.dtype)
    own_w = own.detach().to(wd)
    rec = received.detach().to(device=dev, dtype=wd)
    if not rec.is_contiguous():
        rec = rec.contiguous()
    mask = mask.to(dev)
    if M == 0:  # one dummy missing slot keeps every kernel on non-empty shapes
        rec = torch.zeros(N, 1, d, dtype=wd, device=dev)
        mask = torch.zeros(N, 1, dtype=torch.bool, device=dev)
    bad = nonfinite_rows(rec) if N else torch.zeros_like(mask)
    valid = mask & ~bad
    # Rows zeroed (in one copy) before any kernel reads them: the non-finite ones, and with a float64
    # work dtype every invalid row, whose finite garbage could overflow a float64 accumulation. Finite
    # float32/16 garbage cannot (squares stay below 1e78), and the kernels give it weight 0 or skip it.
    zero = (bad | ~mask) if wd == torch.float64 else bad
    if bool(zero.any()):
        rec = rec.clone()
        rec[zero] = 0
    return _Batch(own_w, rec, valid, valid.sum(dim=1), (mask & bad).sum(dim=1))


def _float64_losses(name: str, b: _Batch, losses: Any, own_loss: Any, M: int) -> tuple[torch.Tensor, torch.Tensor]:
    if losses is None or own_loss is None:
        raise ValueError(f"{name} needs losses (N, M) and own_loss (N,): call select() first and evaluate "
                         f"the selected neighbours' estimates on the node's own sample")
    N = b.own.shape[0]
    lo = torch.as_tensor(losses).to(device=b.own.device, dtype=torch.float64)
    ol = torch.as_tensor(own_loss).to(device=b.own.device, dtype=torch.float64)
    if tuple(lo.shape) != (N, M):
        raise ValueError(f"{name}: losses must be (N, M) = ({N}, {M}), got shape {tuple(lo.shape)}")
    if tuple(ol.shape) != (N,):
        raise ValueError(f"{name}: own_loss must be (N,) = ({N},), got shape {tuple(ol.shape)}")
    if M == 0:
        lo = torch.full((N, 1), _INF, dtype=torch.float64, device=b.own.device)
    return lo, ol


# -- batched kernels -------------------------------------------------------------------------------
def _sq_dists_to_own(rec: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """float64 (N, M) ``|rec[i, j] - own[i]|^2``, differences and squares in float64 (one fused pass
    on CPU: ``_numba_kernels.dist_to_kernel``)."""
    if _kernels.use_numba(rec):
        _kernels._threads()
        return torch.from_numpy(_kernels._numba().dist_to_kernel(rec.numpy(), own.contiguous().numpy()))
    diff = rec.to(torch.float64) - own.to(torch.float64).unsqueeze(1)
    return diff.square_().sum(dim=2)


def _weighted_step(own: torch.Tensor, rec: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``own + sum_j w[:, j] (rec[:, j] - own)`` (N, d), accumulated in float64 (with ``sum_j w <= 1``
    this is ``(1 - sum w) own + sum w rec``: the average and UBAR's mean). CPU: one fused pass
    (``_numba_kernels.weighted_step_kernel``, rounded once to the work dtype); elsewhere float64. Rows
    of weight 0 contribute exactly 0 (they hold finite values: ``_prepare`` zeroed the invalid ones)."""
    w = w.to(torch.float64)
    if _kernels.use_numba(rec):
        _kernels._threads()
        return torch.from_numpy(_kernels._numba().weighted_step_kernel(
            rec.numpy(), own.contiguous().numpy(), w.cpu().contiguous().numpy()))
    o = own.to(torch.float64)
    return o + ((rec.to(torch.float64) - o.unsqueeze(1)) * w.unsqueeze(2)).sum(dim=1)


def _degree_groups(count: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """``(c, nodes)`` for every distinct count ``c >= 1``: nodes with equal counts share one batched
    fixed-n call of the order-statistics kernels (at most M groups, never a loop over nodes)."""
    return [(int(c), (count == c).nonzero().squeeze(1)) for c in torch.unique(count[count > 0]).tolist()]


def _rows(rec: torch.Tensor, keep: torch.Tensor, nodes: torch.Tensor, c: int) -> torch.Tensor:
    """(len(nodes), c, d): the ``c`` rows of ``rec`` that ``keep`` marks for each node, in slot order
    (``rec`` itself when that is all of it, one copy of only those rows otherwise)."""
    N, M, _ = rec.shape
    if c == M:
        return rec if len(nodes) == N else rec[nodes]
    kn = keep[nodes]
    if bool(kn[:, :c].all()):  # valid slots first (padded neighbour lists)
        return rec[nodes, :c]
    slots = torch.argsort((~kn).to(torch.int8), dim=1, stable=True)[:, :c]
    return rec[nodes.unsqueeze(1), slots]


def _dmedian(own: torch.Tensor, rec: torch.Tensor, valid: torch.Tensor, deg: torch.Tensor,
             out: torch.Tensor) -> torch.Tensor:
    """Write into ``out`` (N, d) the coordinate-wise median of own and the valid rows, per node with
    ``deg >= 1`` (even count: mean of the two middle values, ``_kernels.coord_reduce``)."""
    for c, nodes in _degree_groups(deg):
        x = torch.cat([own[nodes].unsqueeze(1), _rows(rec, valid, nodes, c)], dim=1)
        out[nodes] = _kernels.coord_reduce(x, "median").to(device=out.device, dtype=out.dtype)
    return out


def _krum_counts(m: torch.Tensor, nh: torch.Tensor) -> torch.Tensor:
    """Krum's neighbour count ``m - n^ - 2`` clipped to ``[1, m - 1]`` (0 when m <= 1)."""
    return torch.minimum((m - nh - 2).clamp(min=1), (m - 1).clamp(min=0))


def _krum_scores(D: torch.Tensor, alive: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """float64 (N, M) Krum scores: each alive row's sum of its ``k[i]`` smallest squared distances to
    the other alive rows of node i; dead rows +inf, alive rows at most float64 max."""
    N, M, _ = D.shape
    pair = alive.unsqueeze(2) & alive.unsqueeze(1) & ~torch.eye(M, dtype=torch.bool, device=D.device)
    inf = torch.full((), _INF, dtype=D.dtype, device=D.device)
    s = torch.sort(torch.where(pair, D, inf), dim=2).values
    pos = torch.arange(M, device=D.device)
    # positions < k[i] <= alive-1 only ever read alive pairs
    sc = torch.where(pos.view(1, 1, M) < k.view(N, 1, 1), s, torch.zeros((), dtype=D.dtype, device=D.device)).sum(2)
    return torch.where(alive, sc.clamp(max=_F64MAX), inf)


# -- the rules -------------------------------------------------------------------------------------
class NeighbourhoodRule:
    """Base of the neighbourhood rules: ``rule(own, received, mask, ...) -> R`` of shape (N, d).

    Args of a call (torch tensors on one device; TypeError for anything else, ValueError for a wrong
    shape or dtype):
        own: (N, d) each node's own estimate x_i (trusted).
        received: (N, M, d) slot j of row i is what node i received from its j-th neighbour.
        mask: (N, M) bool, True where slot j of node i holds a real neighbour's estimate.
        losses: (N, M) loss of received[i, j] on node i's sample; only read where ``select`` was
            True (rules with ``needs_losses``; others ignore it).
        own_loss: (N,) loss of own[i] on the same sample.

    Returns (N, d) in the dtype of ``own``. ``last_info`` (replaced by every call) always holds
    ``nonfinite`` (int: masked-in slots dropped for NaN/Inf), ``degree`` ((N,) int64 valid slots),
    ``isolated`` (int: nodes with no valid slot, R = own) and ``aggregate_ms`` (float), plus the
    rule's own keys (see each class).
    """

    name: ClassVar[str] = "neighbourhood-rule"
    needs_losses: ClassVar[bool] = False

    def __init__(self) -> None:
        self.last_info: dict[str, Any] = {}

    def select(self, own: torch.Tensor, received: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Stage-1 candidates: (N, M) bool, the received estimates whose loss the node must evaluate
        before ``__call__``. Default (rules without losses): the valid slots, i.e. ``mask`` minus
        the rows holding NaN/Inf."""
        b = _prepare(self.name, own, received, mask)
        return self._select(b)[:, : received.shape[1]]

    def _select(self, b: _Batch) -> torch.Tensor:
        return b.valid

    def __call__(self, own: torch.Tensor, received: torch.Tensor, mask: torch.Tensor,
                 losses: torch.Tensor | None = None, own_loss: torch.Tensor | None = None) -> torch.Tensor:
        """R_i for every node (before the GUF mix); see the class docstring."""
        t0 = time.perf_counter()
        b = _prepare(self.name, own, received, mask)
        M = received.shape[1]
        lo = ol = None
        if self.needs_losses:
            lo, ol = _float64_losses(self.name, b, losses, own_loss, M)
        isolated = b.deg == 0
        info: dict[str, Any] = {"nonfinite": int(b.nonfinite.sum()), "degree": b.deg.clone(),
                                "isolated": int(isolated.sum())}
        self.last_info = info
        if b.own.shape[0] == 0:
            out = b.own
        else:
            out = self._aggregate(b, info, lo, ol)
            out = torch.where(isolated.unsqueeze(1), b.own, out.to(b.own.dtype))
        for k, v in list(info.items()):  # slot-indexed diagnostics lose the dummy slot of M == 0
            if M == 0 and isinstance(v, torch.Tensor) and v.dim() == 2 and v.shape[1] == 1 and k.endswith("_mask"):
                info[k] = v[:, :0]
        out = out.to(own.dtype)
        info["aggregate_ms"] = (time.perf_counter() - t0) * 1e3
        return out

    def _aggregate(self, b: _Batch, info: dict[str, Any], losses: torch.Tensor | None,
                   own_loss: torch.Tensor | None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@RULES.register()
class Average(NeighbourhoodRule):
    """Average (Eq. 3): the mean of the node's own estimate and every valid received estimate."""

    name = "average"

    def _aggregate(self, b, info, losses, own_loss):
        # own + sum_j (x_j - own) / (|N_i| + 1) over the valid j: the mean of own and the valid rows
        return _weighted_step(b.own, b.rec, b.valid / (b.deg + 1).to(torch.float64).unsqueeze(1))


@RULES.register()
class UBAR(NeighbourhoodRule):
    """UBAR (Definition 3): nearest ceil(rho|N_i|) neighbours, then those with loss <= own; their mean.

    Stage 1 (``select``): the ``k_i = ceil(rho |N_i|)`` valid neighbours with the smallest Euclidean
    distance to ``own[i]`` (float64; ties: lower slot first; ``1 <= k_i <= |N_i|`` for rho in (0, 1]).
    Stage 2: of those, the ones with ``losses[i, j] <= own_loss[i]`` (a NaN loss is never kept; a NaN
    own loss counts as +inf). ``R_i`` = their mean; if none is kept, ``fallback="own"`` gives
    ``R_i = own[i]`` and ``fallback="best"`` the stage-1 estimate of least loss (Eq. 12; own when
    every stage-1 loss is NaN).

    ``last_info``: ``selected`` / ``kept`` ((N,) counts), ``selected_mask`` / ``kept_mask`` ((N, M)
    bool), ``k`` ((N,) stage-1 size), ``fallback`` (int: nodes with a neighbour but none kept).
    """

    name = "ubar"
    needs_losses = True

    def __init__(self, rho: float = 0.4, fallback: str = "own") -> None:
        super().__init__()
        self.rho = _check_rho(rho, "ubar")
        if fallback not in ("own", "best"):
            raise ValueError(f"ubar: fallback must be 'own' or 'best', got {fallback!r}")
        self.fallback = fallback

    def _stage1(self, b: _Batch) -> tuple[torch.Tensor, torch.Tensor]:
        N, M, _ = b.rec.shape
        dist = _sq_dists_to_own(b.rec, b.own).to(b.valid.device)
        dist = torch.nan_to_num(dist, nan=_F64MAX, posinf=_F64MAX)  # valid rows always rank before missing
        key = torch.where(b.valid, dist, torch.full((), _INF, dtype=torch.float64, device=dist.device))
        order = torch.sort(key, dim=1, stable=True).indices
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(M, device=order.device).expand(N, M))
        k = _ceil_counts(b.deg.to(torch.float64) * self.rho)
        return (rank < k.unsqueeze(1)) & b.valid, k

    def _select(self, b: _Batch) -> torch.Tensor:
        return self._stage1(b)[0]

    def _aggregate(self, b, info, losses, own_loss):
        sel, k = self._stage1(b)
        ol = torch.where(torch.isnan(own_loss), torch.full_like(own_loss, _INF), own_loss)
        ok = sel & ~torch.isnan(losses)
        kept = ok & (losses <= ol.unsqueeze(1))
        cnt = kept.sum(dim=1)
        out = _weighted_step(b.own, b.rec, kept / cnt.clamp(min=1).unsqueeze(1).to(torch.float64))
        none = (cnt == 0) & (b.deg > 0)
        use_own = none
        if self.fallback == "best":
            key = torch.where(ok, losses.clamp(max=_F64MAX), torch.full_like(losses, _INF))
            j = key.argmin(dim=1)
            has = ok.any(dim=1)
            best = b.rec[torch.arange(b.rec.shape[0], device=j.device), j]
            out = torch.where((none & has).unsqueeze(1), best.to(out.dtype), out)
            use_own = none & ~has
        out = torch.where(use_own.unsqueeze(1), b.own.to(out.dtype), out)
        info.update(selected=sel.sum(dim=1), kept=cnt, selected_mask=sel, kept_mask=kept, k=k,
                    fallback=int(none.sum()))
        return out

    def __repr__(self) -> str:
        return f"UBAR(rho={self.rho}, fallback={self.fallback!r})"


@RULES.register()
class DMedian(NeighbourhoodRule):
    """Dmedian: coordinate-wise median of own and the valid received (even count: mean of the middle two)."""

    name = "dmedian"

    def _aggregate(self, b, info, losses, own_loss):
        return _dmedian(b.own, b.rec, b.valid, b.deg, b.own.clone())


class _NHatRule(NeighbourhoodRule):
    """A rule sized by Eq. 13's ``n^_i`` (``rho``, ``rho_central``; each subclass sets its defaults)."""

    def __init__(self, rho: float, rho_central: float) -> None:
        super().__init__()
        self.rho = _check_rho(rho, self.name)
        self.rho_central = _check_rho_central(rho_central, self.name)

    def _n_hat(self, b: _Batch) -> torch.Tensor:
        return n_hat(b.deg, self.rho, self.rho_central)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rho={self.rho}, rho_central={self.rho_central})"


@RULES.register()
class Bridge(_NHatRule):
    """BRIDGE-T: per coordinate, trim n^_i largest and smallest received values, average the rest with own.

    ``b_i = min(n^_i, floor((|N_i| - 1) / 2))`` (BRIDGE needs ``|N_i| >= 2 b_i + 1``: at least one
    received value survives); ``R_i = (x_i + sum of the kept received values) / (|N_i| - 2 b_i + 1)``.
    Defaults ``rho=0.4, rho_central=0.5``.
    ``last_info``: ``n_hat``, ``trim`` ((N,) b_i), ``clipped`` (int: nodes with b_i < n^_i).
    """

    name = "bridge"

    def __init__(self, rho: float = 0.4, rho_central: float = 0.5) -> None:
        super().__init__(rho, rho_central)

    def _aggregate(self, b, info, losses, own_loss):
        nh = self._n_hat(b)
        trim = torch.minimum(nh, (b.deg - 1).clamp(min=0) // 2)
        out = b.own.to(torch.float64, copy=True)
        for c, nodes in _degree_groups(b.deg):
            t = int(trim[nodes[0]])  # n^ and the trim are functions of the degree
            # mean of the sorted values t..c-t-1, accumulated in float64, rounded to the work dtype
            tm = _kernels.coord_reduce(_rows(b.rec, b.valid, nodes, c), "trimmed", f=t).to(out)
            kept = c - 2 * t
            out[nodes] = (b.own[nodes].to(torch.float64) + kept * tm) / (kept + 1)
        info.update(n_hat=nh, trim=trim, clipped=int(((trim < nh) & (b.deg > 0)).sum()))
        return out


@RULES.register()
class DKrum(_NHatRule):
    """DKrum: the received estimate with the least Krum score, f = n^_i (Eq. 13).

    ``s(j)`` = sum of the squared distances from x_j to its ``k_i`` nearest other valid neighbours,
    ``k_i = |N_i| - n^_i - 2`` clipped to ``[1, |N_i| - 1]`` (one neighbour: itself); ``R_i = x_{j*}``,
    ``j* = argmin s`` (ties: lower slot). Defaults ``rho=0.4, rho_central=0.5``.
    ``last_info``: ``selected`` ((N,) slot, -1 when isolated), ``n_hat``, ``neighbours`` ((N,) k_i),
    ``clipped`` (int: nodes whose k_i was raised to 1).
    """

    name = "dkrum"

    def __init__(self, rho: float = 0.4, rho_central: float = 0.5) -> None:
        super().__init__(rho, rho_central)

    def _aggregate(self, b, info, losses, own_loss):
        N = b.rec.shape[0]
        nh = self._n_hat(b)
        k = _krum_counts(b.deg, nh)
        D = pairwise_sq_dists(b.rec)
        win = _krum_scores(D, b.valid.to(D.device), k.to(D.device)).argmin(dim=1).to(b.rec.device)
        info.update(selected=torch.where(b.deg > 0, win, torch.full_like(win, -1)), n_hat=nh, neighbours=k,
                    clipped=int(((b.deg - nh - 2 < 1) & (b.deg > 1)).sum()))
        return b.rec[torch.arange(N, device=win.device), win]


@RULES.register()
class DBulyan(_NHatRule):
    """DBulyan: theta_i = |N_i| - 2n^_i recursive DKrum picks, then per coordinate the mean of the
    beta_i = |N_i| - 4n^_i picked values closest to their median; beta_i < 1 falls back to dmedian.

    Recursion: each step runs DKrum on the not-yet-picked valid neighbours (``m`` of them, count
    ``m - n^_i - 2`` clipped to ``[1, m - 1]``) and moves the winner to the pick (ties: lower slot).
    All nodes step together: ``max_i theta_i`` batched steps. Coordinate step: median of the picked
    values (even: mean of the middle two), then the ``beta_i`` values nearest to it, ties to the lower
    slot. Defaults ``rho=0.4, rho_central=0.125`` (0.25, Bulyan's own ratio, makes
    ``beta = |N| - 4 ceil(|N|/4) <= 0`` for every degree, i.e. always the fallback).
    ``last_info``: ``selected`` ((N, max theta) slots in pick order, -1 padded), ``n_hat``, ``theta``,
    ``beta``, ``fallback`` (int: nodes with a neighbour but beta_i < 1), ``fallback_nodes`` ((N,) bool).
    """

    name = "dbulyan"

    def __init__(self, rho: float = 0.4, rho_central: float = 0.125) -> None:
        super().__init__(rho, rho_central)

    def _aggregate(self, b, info, losses, own_loss):
        N, M, d = b.rec.shape
        dev = b.rec.device
        nh = self._n_hat(b)
        theta = (b.deg - 2 * nh).clamp(min=0)
        beta = b.deg - 4 * nh
        use = beta >= 1
        fb = ~use & (b.deg > 0)
        out = b.own.clone()
        picks = torch.full((N, 0), -1, dtype=torch.int64, device=dev)
        if bool(use.any()):
            th_u = torch.where(use, theta, torch.zeros_like(theta))  # fallback nodes take no step
            D = pairwise_sq_dists(b.rec)  # all nodes (no copy of rec); fallback rows stay dead
            alive = (b.valid & use.unsqueeze(1)).to(D.device)
            nh_d, th_d = nh.to(D.device), th_u.to(D.device)
            rows = torch.arange(N, device=D.device)
            chosen = torch.zeros_like(alive)
            seq = []
            for it in range(int(th_u.max())):  # recursion steps, each batched over the nodes
                act = it < th_d
                win = _krum_scores(D, alive, _krum_counts(alive.sum(dim=1), nh_d)).argmin(dim=1)
                r, w = rows[act], win[act]
                alive[r, w] = False
                chosen[r, w] = True
                seq.append(torch.where(act, win, torch.full_like(win, -1)))
            chosen = chosen.to(dev)
            picks = torch.stack(seq, dim=1).to(dev)
            # coordinate step per degree (theta, beta are functions of it); rows in slot order, so
            # the kernel's ties (lower row) go to the lower slot
            for c, nodes in _degree_groups(torch.where(use, b.deg, torch.zeros_like(b.deg))):
                t, k = int(theta[nodes[0]]), int(beta[nodes[0]])
                res = _kernels.coord_reduce(_rows(b.rec, chosen, nodes, t), "meamed", k=k)
                out[nodes] = res.to(device=dev, dtype=out.dtype)
        if bool(fb.any()):
            _dmedian(b.own, b.rec, b.valid, torch.where(fb, b.deg, torch.zeros_like(b.deg)), out)
        info.update(selected=picks, n_hat=nh, theta=theta, beta=beta, fallback=int(fb.sum()), fallback_nodes=fb)
        return out
