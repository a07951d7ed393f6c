"""Communication graphs for decentralized training: who exchanges models with whom.

In decentralized SGD there is no master: node ``i`` only talks to its neighbours ``N(i)`` in an
undirected graph ``G = (V, E)`` on ``V = {0, ..., n-1}``, and aggregates what they send. UBAR
(S. Guo et al., "Towards Byzantine-resilient Learning in Decentralized Systems", 2020,
arXiv:2002.08569) connects every pair of nodes independently with a *connection rate* ``p``, i.e.
an Erdős–Rényi graph ``G(n, p)``, and asks (its Assumption 1) that the subgraph induced by the
benign nodes be connected: with ``B`` the Byzantine set, ``G[V \\ B]`` must have one component,
otherwise two benign groups never hear from each other except through Byzantine relays and no rule
can make them agree.

Graphs (built by name from :data:`TOPOLOGIES`, a :class:`~codedbft.registry.Registry`):

* ``complete`` (``n``): every pair, degree ``n - 1``; the master/worker setting seen as a graph.
* ``ring`` (``n >= 3``): ``i ~ i ± 1 (mod n)``, degree 2. Removing two non-adjacent nodes
  disconnects it, so it is the standard counter-example to Assumption 1.
* ``k-regular`` (``n, k, seed``): a random simple graph with every degree exactly ``k``
  (``1 <= k < n``, ``n k`` even), drawn by the Steger–Wormald pairing algorithm (the configuration
  model where each round pairs the remaining half-edges uniformly and keeps only pairs that make
  neither a loop nor a repeated edge; a round that leaves no admissible pair restarts), followed
  by ``SWITCH_SWEEPS * m`` steps of the double-edge switch Markov chain. The pairing alone is
  close to uniform over the k-regular graphs for large ``n`` (Steger & Wormald 1999; Kim & Vu
  2003) but visibly biased on small ones; the switch chain is symmetric with the uniform law as its
  stationary law, and starting it from the pairing's near-uniform output removes that bias (a
  heuristic mixing length, not a proven bound). It is never a deterministic circulant. For
  ``k > (n-1)/2`` the complement of a random ``(n-1-k)``-regular graph is drawn instead
  (complementing is a bijection between the two classes, so the law is the same and far fewer
  pairings are rejected).
* ``erdos-renyi`` (``n, p, seed``): each of the ``n(n-1)/2`` pairs independently with probability
  ``0 < p <= 1``, from ``numpy.random.default_rng(seed)`` (pairs in row-major order of the upper
  triangle). The edge count is Binomial(n(n-1)/2, p); ``G(n, p)`` is connected with high
  probability once ``p > (1 + ε) ln n / n``, and removing ``b`` random nodes leaves a
  ``G(n - b, p)``, so the benign requirement reads ``p ≳ ln(n - b) / (n - b)``.

:func:`build_topology` enforces the requirement. A random graph is redrawn from seeds derived from
``(seed, attempt)`` only (:func:`redraw_seed`; attempt 0 uses ``seed`` itself) until the benign
induced subgraph is connected and every benign node has a neighbour; after ``max_redraws`` failed
redraws it raises ``ValueError``. A deterministic graph that fails raises at once. Everything is a
function of the arguments: the same call gives the same graph in every process (numpy's PCG64
streams; no Python ``hash`` or set order is involved).

Costs: a :class:`Topology` stores its ``(n, n)`` boolean adjacency (``n^2`` bytes) and the sorted
neighbour lists, built in O(n^2). ``induced_connected`` is a level-synchronous BFS over the
adjacency rows, O(n^2) numpy work at most; ``padded_neighbours`` is O(len(nodes) · n).
Erdős–Rényi draws ``n(n-1)/2`` uniforms; a k-regular draw is O(n k) expected for the pairing
plus ``SWITCH_SWEEPS * m`` switch steps in Python (m = min(k, n-1-k) n / 2: about 0.1 s for n=1000,
k=10; 2 s for n=1000, k=100).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Callable

import numpy as np

from codedbft.registry import Registry, canonical

__all__ = [
    "TOPOLOGIES",
    "Topology",
    "build_topology",
    "complete",
    "erdos_renyi",
    "k_regular",
    "SWITCH_SWEEPS",
    "redraw_seed",
    "ring",
]

_CONSTRAINT = "the benign induced subgraph must be connected (UBAR Assumption 1)"


# -- parameter checks -------------------------------------------------------------------------
def _as_int(what: str, value: Any) -> int:
    """``value`` as an int; ValueError for bools, non-integral numbers and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, float, np.floating)):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if isinstance(value, (float, np.floating)):
        if not float(value).is_integer():
            raise ValueError(f"{what} must be an integer, got {value!r}")
    return int(value)


def _check_n(n: Any, minimum: int = 2, kind: str = "topology") -> int:
    n = _as_int("n", n)
    if n < minimum:
        raise ValueError(f"{kind} needs n >= {minimum} nodes, got n={n}")
    return n


def _check_seed(seed: Any) -> int:
    seed = _as_int("seed", seed)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return seed


def _check_nodes(nodes: Iterable[int], n: int, what: str) -> np.ndarray:
    """Distinct sorted node ids in [0, n) as an int64 array (duplicates are merged)."""
    ids = sorted({_as_int(f"{what} id", i) for i in nodes})
    if ids and (ids[0] < 0 or ids[-1] >= n):
        raise ValueError(f"{what} ids must be in [0, n={n}), got {ids}")
    return np.asarray(ids, dtype=np.int64)


def redraw_seed(seed: int, attempt: int) -> int:
    """The seed of draw number ``attempt`` of :func:`build_topology`: ``seed`` itself for attempt 0,
    otherwise a 64-bit integer derived from ``(seed, attempt)`` by ``numpy.random.SeedSequence``
    (independent streams, the same in every process)."""
    seed, attempt = _check_seed(seed), _as_int("attempt", attempt)
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if attempt == 0:
        return seed
    return int(np.random.SeedSequence([seed, attempt]).generate_state(1, dtype=np.uint64)[0])


# -- the graph --------------------------------------------------------------------------------
class Topology:
    """An immutable undirected simple graph on nodes ``0, ..., n-1``.

    Args:
        adjacency: ``(n, n)`` array, symmetric, with a zero/False diagonal; any dtype whose nonzero
            entries mean an edge. It is copied into a read-only boolean array.
        name: the graph's kind (``"ring"``, ...), a label only.
        params: the parameters it was built with (a label, shown by :meth:`describe`).

    Attributes:
        n: the number of nodes.
        name: the kind of graph.
        adjacency: the read-only ``(n, n)`` bool adjacency matrix.
        params: read-only mapping of the build parameters.

    Two topologies are equal when they are the same graph (same ``n`` and edges); ``name`` and
    ``params`` do not take part.
    """

    __slots__ = ("n", "name", "adjacency", "params", "_neighbours", "_degrees")

    n: int
    name: str
    adjacency: np.ndarray
    params: Mapping[str, Any]

    def __init__(self, adjacency: Any, name: str = "custom", params: Mapping[str, Any] | None = None) -> None:
        a = np.array(adjacency, copy=True)
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise ValueError(f"adjacency must be a square (n, n) matrix, got shape {a.shape}")
        a = a.astype(bool)
        if a.shape[0] < 1:
            raise ValueError("a topology needs at least one node")
        if a.diagonal().any():
            raise ValueError(f"adjacency must have no self loops; loops at {np.flatnonzero(a.diagonal()).tolist()}")
        if not np.array_equal(a, a.T):
            i, j = np.argwhere(a != a.T)[0]
            raise ValueError(f"adjacency must be symmetric (undirected graph); a[{i}, {j}] != a[{j}, {i}]")
        a.flags.writeable = False
        set_ = object.__setattr__
        set_(self, "n", int(a.shape[0]))
        set_(self, "name", str(name))
        set_(self, "adjacency", a)
        set_(self, "params", MappingProxyType(dict(params or {})))
        set_(self, "_neighbours", tuple(tuple(int(j) for j in np.flatnonzero(row)) for row in a))
        degrees = a.sum(axis=1).astype(np.int64)
        degrees.flags.writeable = False
        set_(self, "_degrees", degrees)

    @classmethod
    def from_edges(cls, n: int, edges: Iterable[tuple[int, int]], name: str = "custom",
                   params: Mapping[str, Any] | None = None) -> Topology:
        """The graph on ``n`` nodes with the given undirected edges (a loop is a ValueError)."""
        n = _check_n(n, 1)
        a = np.zeros((n, n), dtype=bool)
        for i, j in edges:
            i, j = _as_int("edge end", i), _as_int("edge end", j)
            if not (0 <= i < n and 0 <= j < n):
                raise ValueError(f"edge ({i}, {j}) has an end outside [0, n={n})")
            if i == j:
                raise ValueError(f"edge ({i}, {j}) is a self loop")
            a[i, j] = a[j, i] = True
        return cls(a, name, params)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(f"Topology is immutable (cannot set {key!r})")

    def __delattr__(self, key: str) -> None:
        raise AttributeError(f"Topology is immutable (cannot delete {key!r})")

    def __reduce__(self) -> tuple[Any, ...]:  # pickling (e.g. to a Ray actor) rebuilds through __init__
        return (Topology, (np.array(self.adjacency), self.name, dict(self.params)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Topology):
            return NotImplemented
        return self.n == other.n and np.array_equal(self.adjacency, other.adjacency)

    def __hash__(self) -> int:
        return hash((self.n, np.packbits(self.adjacency).tobytes()))

    def __repr__(self) -> str:
        return f"Topology({self.name!r}, n={self.n}, edges={len(self.edges())})"

    # -- local structure ----------------------------------------------------------------------
    def _node(self, i: int) -> int:
        i = _as_int("node", i)
        if not 0 <= i < self.n:
            raise ValueError(f"node {i} is outside [0, n={self.n})")
        return i

    def neighbours(self, i: int) -> tuple[int, ...]:
        """The neighbours of node ``i``, sorted increasingly."""
        return self._neighbours[self._node(i)]

    def degree(self, i: int) -> int:
        """The number of neighbours of node ``i``."""
        return int(self._degrees[self._node(i)])

    @property
    def degrees(self) -> np.ndarray:
        """All degrees, a read-only ``(n,)`` int64 array."""
        return self._degrees

    def edges(self) -> tuple[tuple[int, int], ...]:
        """Every edge once as ``(i, j)`` with ``i < j``, sorted lexicographically."""
        i, j = np.nonzero(np.triu(self.adjacency, k=1))  # row-major: already sorted
        return tuple(zip(i.tolist(), j.tolist()))

    # -- connectivity -------------------------------------------------------------------------
    def components(self, nodes: Iterable[int] | None = None) -> tuple[tuple[int, ...], ...]:
        """The connected components of the subgraph induced by ``nodes`` (default: all nodes),
        each sorted, ordered by their smallest node."""
        ids = np.arange(self.n) if nodes is None else _check_nodes(nodes, self.n, "node")
        allowed = np.zeros(self.n, dtype=bool)
        allowed[ids] = True
        seen = np.zeros(self.n, dtype=bool)
        out = []
        for start in ids.tolist():
            if seen[start]:
                continue
            seen[start] = True
            frontier = np.array([start])
            members = [start]
            while frontier.size:  # level-synchronous BFS on the induced subgraph
                reach = self.adjacency[frontier].any(axis=0) & allowed & ~seen
                frontier = np.flatnonzero(reach)
                seen[frontier] = True
                members.extend(frontier.tolist())
            out.append(tuple(sorted(members)))
        return tuple(out)

    def induced_connected(self, nodes: Iterable[int]) -> bool:
        """Whether the subgraph induced by ``nodes`` is connected (an empty set or a single node is)."""
        return len(self.components(nodes)) <= 1

    def benign_connected(self, byzantine: Iterable[int]) -> bool:
        """Whether the nodes not in ``byzantine`` induce a connected subgraph (UBAR Assumption 1)."""
        bad = _check_nodes(byzantine, self.n, "Byzantine")
        return self.induced_connected(np.setdiff1d(np.arange(self.n), bad))

    # -- batched neighbour lists --------------------------------------------------------------
    def padded_neighbours(self, nodes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Neighbour lists of ``nodes`` as a padded ``(idx, mask)`` pair, for batched gathers.

        Row ``r`` holds ``neighbours(nodes[r])`` in increasing order, then ``0`` padding; ``mask``
        is True exactly on the real entries. Both are ``(len(nodes), M)`` with ``M`` the largest
        degree among ``nodes`` (at least 1); ``idx`` is int64, ``mask`` bool. Nodes may repeat.
        """
        rows_ids = np.asarray([self._node(i) for i in nodes], dtype=np.int64)
        rows = self.adjacency[rows_ids] if rows_ids.size else np.zeros((0, self.n), dtype=bool)
        width = max(1, int(rows.sum(axis=1).max())) if rows_ids.size else 1
        idx = np.zeros((rows_ids.size, width), dtype=np.int64)
        mask = np.zeros((rows_ids.size, width), dtype=bool)
        r, c = np.nonzero(rows)  # row-major, so columns come sorted within each row
        slot = np.cumsum(rows, axis=1)[r, c] - 1
        idx[r, slot] = c
        mask[r, slot] = True
        return idx, mask

    # -- summary ------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: name, n, edge count, min/mean/max degree, connectedness, params."""
        d = self._degrees
        return {
            "name": self.name,
            "n": self.n,
            "edges": int(d.sum()) // 2,
            "min_degree": int(d.min()),
            "mean_degree": float(d.mean()),
            "max_degree": int(d.max()),
            "connected": self.induced_connected(range(self.n)),
            "params": {k: (v.item() if isinstance(v, np.generic) else v) for k, v in self.params.items()},
        }


# -- the graphs -------------------------------------------------------------------------------
def complete(n: int) -> Topology:
    """Every pair of nodes connected (degree n - 1)."""
    n = _check_n(n, 2, "complete graph")
    return Topology(~np.eye(n, dtype=bool), "complete", {"n": n})


def ring(n: int) -> Topology:
    """A cycle: node i talks to i - 1 and i + 1 (mod n); degree 2, needs n >= 3."""
    n = _check_n(n, 3, "ring")
    a = np.zeros((n, n), dtype=bool)
    i = np.arange(n)
    a[i, (i + 1) % n] = a[(i + 1) % n, i] = True
    return Topology(a, "ring", {"n": n})


def _pairing(n: int, k: int, rng: np.random.Generator, restarts: int) -> np.ndarray:
    """Steger–Wormald: a random simple k-regular graph as an adjacency matrix (k <= (n-1)/2 here)."""
    for _ in range(restarts):
        a = np.zeros((n, n), dtype=bool)
        stubs = np.repeat(np.arange(n, dtype=np.int64), k)
        ok = True
        while stubs.size:
            pairs = rng.permutation(stubs).reshape(-1, 2)
            left = []
            for u, v in pairs.tolist():
                if u != v and not a[u, v]:
                    a[u, v] = a[v, u] = True
                else:
                    left += (u, v)
            if not left:
                break
            stubs = np.sort(np.asarray(left, dtype=np.int64))
            # Is any admissible pair left among the remaining half-edges? If not, restart.
            rest = np.unique(stubs)
            sub = a[np.ix_(rest, rest)]
            if not (~sub & ~np.eye(rest.size, dtype=bool)).any():
                ok = False
                break
        if ok:
            return a
    raise ValueError(f"k-regular: no simple {k}-regular graph on n={n} nodes found in {restarts} pairing restarts")


def _switch_mix(a: np.ndarray, rng: np.random.Generator, sweeps: int) -> np.ndarray:
    """``sweeps * m`` steps of the double-edge switch chain on the simple graph ``a`` (in place).

    A step draws two edge slots and a coin; edges ``{x, y}, {z, w}`` become ``{x, z}, {y, w}`` (coin
    0) or ``{x, w}, {y, z}`` (coin 1) unless that creates a loop or a repeated edge, in which case
    the graph stays. Every switch has probability ``1 / m^2`` both ways, so the chain is symmetric
    and its stationary law is uniform over the graphs with this degree sequence (the switch graph of
    a degree sequence is connected: Taylor 1981); it keeps every degree.
    """
    n = a.shape[0]
    iu, ju = np.nonzero(np.triu(a, k=1))
    m = iu.size
    if m < 2:
        return a
    steps = sweeps * m
    first = rng.integers(m, size=steps).tolist()
    second = rng.integers(m, size=steps).tolist()
    coins = (rng.random(steps) < 0.5).tolist()
    edges = [[x, y] for x, y in zip(iu.tolist(), ju.tolist())]
    # An edge {x, y} is the key min * n + max in ``present``.
    present = {x * n + y for x, y in edges}
    discard, add = present.discard, present.add
    for i, j, coin in zip(first, second, coins):
        if i == j:
            continue
        x, y = edges[i]
        z, w = edges[j]
        if coin:
            z, w = w, z
        if x == z or y == w:
            continue
        new1 = x * n + z if x < z else z * n + x
        new2 = y * n + w if y < w else w * n + y
        if new1 in present or new2 in present:
            continue
        discard(x * n + y if x < y else y * n + x)
        discard(z * n + w if z < w else w * n + z)
        add(new1)
        add(new2)
        edges[i], edges[j] = [x, z], [y, w]
    out = np.zeros_like(a)
    e = np.asarray(edges, dtype=np.int64)
    out[e[:, 0], e[:, 1]] = out[e[:, 1], e[:, 0]] = True
    a[...] = out
    return a


#: Double-edge-switch sweeps (steps per edge) run after the pairing of a k-regular draw.
SWITCH_SWEEPS = 10


def k_regular(n: int, k: int | None = None, seed: int = 0) -> Topology:
    """A random simple graph with every degree exactly k (1 <= k < n, n*k even), seeded."""
    n = _check_n(n, 2, "k-regular graph")
    if k is None:
        raise ValueError("k-regular graph needs k= (the degree of every node)")
    k = _as_int("k", k)
    if not 1 <= k < n:
        raise ValueError(f"k-regular graph needs 1 <= k < n; got k={k}, n={n}")
    if (n * k) % 2:
        raise ValueError(f"k-regular graph needs n*k even (each edge has two ends); got n={n}, k={k}")
    seed = _check_seed(seed)
    rng = np.random.default_rng(seed)
    if 2 * k > n - 1:  # draw the sparser complement: same law, far fewer rejections
        kc = n - 1 - k
        a = ~np.eye(n, dtype=bool)
        if kc > 0:
            a &= ~_switch_mix(_pairing(n, kc, rng, restarts=1000), rng, SWITCH_SWEEPS)
    else:
        a = _switch_mix(_pairing(n, k, rng, restarts=1000), rng, SWITCH_SWEEPS)
    return Topology(a, "k-regular", {"n": n, "k": k, "seed": seed})


def erdos_renyi(n: int, p: float | None = None, seed: int = 0) -> Topology:
    """Erdős–Rényi G(n, p): each pair independently with probability p (UBAR's connection rate), seeded."""
    n = _check_n(n, 2, "Erdős–Rényi graph")
    if p is None:
        raise ValueError("erdos-renyi graph needs p= (the connection rate, 0 < p <= 1)")
    if isinstance(p, bool) or not isinstance(p, (numbers.Real, np.floating)):
        raise ValueError(f"p must be a number in (0, 1], got {p!r}")
    p = float(p)
    if not 0.0 < p <= 1.0:  # also rejects NaN
        raise ValueError(f"erdos-renyi graph needs 0 < p <= 1 (the connection rate), got p={p}")
    seed = _check_seed(seed)
    rng = np.random.default_rng(seed)
    iu, ju = np.triu_indices(n, k=1)
    keep = rng.random(iu.size) < p
    a = np.zeros((n, n), dtype=bool)
    a[iu[keep], ju[keep]] = True
    a |= a.T
    return Topology(a, "erdos-renyi", {"n": n, "p": p, "seed": seed})


#: The graphs by name; each entry is a factory returning a :class:`Topology`. Entries taking a
#: ``seed`` are random and :func:`build_topology` redraws them.
TOPOLOGIES: Registry[Callable[..., Topology]] = Registry("topology")
TOPOLOGIES.register("complete", complete, params=("n",))
TOPOLOGIES.register("ring", ring, params=("n",))
TOPOLOGIES.register("k-regular", k_regular, params=("n", "k", "seed"))
TOPOLOGIES.register("erdos-renyi", erdos_renyi, params=("n", "p", "seed"))


def _violation(topo: Topology, benign: np.ndarray) -> str | None:
    """Why ``topo`` breaks the benign requirement for the ``benign`` nodes, or None when it holds."""
    comps = topo.components(benign)
    if len(comps) > 1:
        return f"the benign subgraph has {len(comps)} components"
    lonely = [int(i) for i in benign if topo.degree(int(i)) == 0]
    if lonely:
        return f"benign node{'s' if len(lonely) > 1 else ''} {lonely} ha{'ve' if len(lonely) > 1 else 's'} no neighbour"
    return None


def build_topology(name: str, n: int, *, byzantine: Iterable[int] = (), seed: int = 0, max_redraws: int = 100,
                   **params: Any) -> Topology:
    """Build the :data:`TOPOLOGIES` graph ``name`` on ``n`` nodes that satisfies UBAR's Assumption 1.

    The requirement: the nodes not in ``byzantine`` induce a connected subgraph and each of them has
    at least one neighbour. A random graph (an entry taking ``seed``) is drawn with
    ``redraw_seed(seed, attempt)`` for ``attempt = 0, 1, ..., max_redraws`` (the first draw, then up
    to ``max_redraws`` redraws) and the first draw that satisfies it is returned; its ``params``
    record the draw's ``seed``, plus ``base_seed`` and ``attempt``. A deterministic graph is checked
    once and ``seed`` is unused.

    Args:
        name: a :data:`TOPOLOGIES` name (normalised: case, blanks, ``_``/``-``).
        n: number of nodes (>= 2; >= 3 for a ring).
        byzantine: the Byzantine node ids (distinct ids in [0, n); at least one node must be benign).
        seed: base seed (>= 0) of the random graphs.
        max_redraws: how many redraws after the first draw (>= 0).
        **params: the graph's own parameters (``p`` for ``erdos-renyi``, ``k`` for ``k-regular``).

    Raises:
        ValueError: unknown name or parameter (listing the valid ones), a bad parameter value, or
            no draw satisfying the requirement (the message starts "the benign induced subgraph must
            be connected (UBAR Assumption 1)" and gives n, the graph's parameters and the number of
            Byzantine nodes).
    """
    entry = TOPOLOGIES.entry(name)
    accepted = TOPOLOGIES.params(name) or ()
    random = "seed" in accepted
    TOPOLOGIES.check_params(name, {"n": n, **params, **({"seed": seed} if random else {})})
    n = _check_n(n, 2, f"{entry.name} graph")
    seed = _check_seed(seed)
    max_redraws = _as_int("max_redraws", max_redraws)
    if max_redraws < 0:
        raise ValueError(f"max_redraws must be >= 0, got {max_redraws}")
    bad = _check_nodes(byzantine, n, "Byzantine")
    benign = np.setdiff1d(np.arange(n), bad)
    if benign.size == 0:
        raise ValueError(f"{_CONSTRAINT}: all n={n} nodes are Byzantine, at least one must be benign")
    shown = ", ".join(f"{k}={v!r}" for k, v in sorted(params.items()))
    setting = f"{entry.name} with n={n}{', ' + shown if shown else ''} and {bad.size} Byzantine node{'s' if bad.size != 1 else ''}"

    if not random:
        topo = entry.obj(n=n, **params)
        why = _violation(topo, benign)
        if why is not None:
            raise ValueError(f"{_CONSTRAINT}: {setting} {bad.tolist()}: {why}")
        return topo

    why = None
    for attempt in range(max_redraws + 1):
        draw = redraw_seed(seed, attempt)
        topo = entry.obj(n=n, seed=draw, **params)
        why = _violation(topo, benign)
        if why is None:
            return Topology(topo.adjacency, topo.name, {**topo.params, "base_seed": seed, "attempt": attempt})
    hint = " (raise p: G(n, p) needs p above about ln(n)/n to be connected)" if canonical(name) == "erdos-renyi" else ""
    raise ValueError(f"{_CONSTRAINT}: no draw of {setting} satisfied it in {max_redraws + 1} draws "
                     f"(seed={seed}, max_redraws={max_redraws}); last draw: {why}{hint}")
