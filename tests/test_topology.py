"""Communication graphs for decentralized training (codedbft.topology)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chisquare

from codedbft.topology import (
    TOPOLOGIES,
    Topology,
    build_topology,
    complete,
    erdos_renyi,
    k_regular,
    redraw_seed,
    ring,
)

REPO = Path(__file__).resolve().parents[1]


# -- an independent connectivity check -----------------------------------------------------------
def union_find_components(n: int, edges, nodes) -> int:
    """Number of components of the subgraph induced by ``nodes``, by union-find on the edge list."""
    nodes = set(nodes)
    parent = {v: v for v in nodes}

    def find(v):
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for i, j in edges:
        if i in nodes and j in nodes:
            ri, rj = find(i), find(j)
            if ri != rj:
                parent[ri] = rj
    return len({find(v) for v in nodes})


def check_simple(t: Topology) -> None:
    a = t.adjacency
    assert a.dtype == bool and a.shape == (t.n, t.n)
    assert np.array_equal(a, a.T)
    assert not a.diagonal().any()
    for i in range(t.n):
        assert t.neighbours(i) == tuple(int(j) for j in np.flatnonzero(a[i]))
        assert t.degree(i) == len(t.neighbours(i))
    e = t.edges()
    assert list(e) == sorted(e) and all(i < j for i, j in e)
    assert len(e) == a.sum() // 2 and len(set(e)) == len(e)


# -- structure of each kind ----------------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 3, 7, 16])
def test_complete(n):
    t = complete(n)
    check_simple(t)
    assert t.name == "complete" and t.n == n
    assert all(t.degree(i) == n - 1 for i in range(n))
    assert len(t.edges()) == n * (n - 1) // 2


@pytest.mark.parametrize("n", [3, 4, 9, 30])
def test_ring(n):
    t = ring(n)
    check_simple(t)
    assert all(t.degree(i) == 2 for i in range(n))
    assert all(t.neighbours(i) == tuple(sorted({(i - 1) % n, (i + 1) % n})) for i in range(n))


@pytest.mark.parametrize("n,k", [(2, 1), (4, 1), (4, 3), (6, 3), (10, 3), (12, 5), (13, 6), (13, 8), (40, 7), (50, 25), (100, 4)])
def test_k_regular_exact_degree(n, k):
    for seed in range(3):
        t = k_regular(n, k, seed=seed)
        check_simple(t)
        assert t.name == "k-regular"
        assert t.degrees.tolist() == [k] * n
        assert len(t.edges()) == n * k // 2


def test_k_regular_is_random():
    # Different seeds give different graphs; a circulant (i ~ i +- 1, ..) would be the same each time.
    graphs = {k_regular(30, 4, seed=s) for s in range(20)}
    assert len(graphs) == 20
    circulant = Topology.from_edges(30, [(i, (i + d) % 30) for i in range(30) for d in (1, 2)])
    assert circulant not in graphs
    # k = n - 1 is the complete graph whatever the seed.
    assert k_regular(7, 6, seed=3) == complete(7)


@pytest.mark.parametrize("n,k,count", [(6, 2, 70), (6, 3, 70)])
def test_k_regular_uniform_on_small_cases(n, k, count):
    # There are 70 labelled 2-regular graphs on 6 nodes (60 hexagons + 10 pairs of triangles), and
    # 70 cubic ones (their complements). A pairing without switches over-weights the rare class
    # about 2.6x; the sampler must be close to uniform.
    draws = Counter(k_regular(n, k, seed=s).edges() for s in range(2100))
    assert len(draws) == count
    assert chisquare(list(draws.values())).pvalue > 1e-4


def test_erdos_renyi_density():
    n = 200
    pairs = n * (n - 1) // 2
    for p, seed in [(0.02, 0), (0.1, 1), (0.5, 2), (0.9, 3)]:
        t = erdos_renyi(n, p, seed=seed)
        check_simple(t)
        m = len(t.edges())
        sd = math.sqrt(pairs * p * (1 - p))
        assert abs(m - pairs * p) < 5 * sd, (p, m, pairs * p, sd)  # Binomial(pairs, p)
    assert erdos_renyi(12, 1.0, seed=5) == complete(12)


# -- reproducibility ---------------------------------------------------------------------------
@pytest.mark.parametrize("name,params", [("erdos-renyi", {"p": 0.2}), ("k-regular", {"k": 4})])
def test_reproducible_from_seed(name, params):
    a = TOPOLOGIES.build(name, n=40, seed=7, **params)
    b = TOPOLOGIES.build(name, n=40, seed=7, **params)
    c = TOPOLOGIES.build(name, n=40, seed=8, **params)
    assert a == b and np.array_equal(a.adjacency, b.adjacency)
    assert a != c
    assert build_topology(name, 40, seed=7, **params) == build_topology(name, 40, seed=7, **params)
    assert build_topology(name, 40, seed=7, **params) != build_topology(name, 40, seed=8, **params)


_DIGESTS = """
import hashlib
import numpy as np
from codedbft.topology import build_topology, k_regular
graphs = [
    build_topology("erdos-renyi", 60, p=0.1, seed=11, byzantine=[0, 5, 9]),
    build_topology("k-regular", 60, k=5, seed=11, byzantine=[0, 5, 9]),
    k_regular(20, 13, seed=2),
]
print(" ".join(hashlib.sha256(np.packbits(g.adjacency).tobytes()).hexdigest() for g in graphs))
"""


def test_reproducible_across_processes():
    outs = []
    for hashseed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed, "PYTHONPATH": str(REPO)}
        res = subprocess.run([sys.executable, "-c", _DIGESTS], capture_output=True, text=True, env=env,
                             cwd=REPO, timeout=120, check=True)
        outs.append(res.stdout.split())
    graphs = [
        build_topology("erdos-renyi", 60, p=0.1, seed=11, byzantine=[0, 5, 9]),
        build_topology("k-regular", 60, k=5, seed=11, byzantine=[0, 5, 9]),
        k_regular(20, 13, seed=2),
    ]
    here = [hashlib.sha256(np.packbits(g.adjacency).tobytes()).hexdigest() for g in graphs]
    assert outs[0] == outs[1] == here


def test_redraw_seed():
    assert redraw_seed(5, 0) == 5
    seeds = [redraw_seed(5, a) for a in range(1, 50)]
    assert len(set(seeds)) == 49 and 5 not in seeds
    assert redraw_seed(5, 3) == redraw_seed(5, 3) != redraw_seed(6, 3)


# -- the benign connectivity requirement (UBAR Assumption 1) --------------------------------------
def test_ring_with_opposite_byzantine_nodes_is_rejected():
    t = ring(10)
    assert not t.benign_connected([0, 5])
    assert t.benign_connected([0, 1])  # adjacent: the rest is a path
    with pytest.raises(ValueError, match="connected") as err:
        build_topology("ring", 10, byzantine=[0, 5])
    msg = str(err.value)
    assert "UBAR Assumption 1" in msg and "n=10" in msg and "2 Byzantine" in msg
    assert build_topology("ring", 10, byzantine=[3, 4]) == ring(10)


def test_tiny_p_raises_with_the_numbers():
    with pytest.raises(ValueError, match="benign induced subgraph must be connected") as err:
        build_topology("erdos-renyi", 50, p=0.01, byzantine=[1, 2, 3], seed=0, max_redraws=20)
    msg = str(err.value)
    assert "n=50" in msg and "p=0.01" in msg and "3 Byzantine" in msg and "21 draws" in msg


def test_small_p_redraws_until_benign_connected():
    n, p, byz = 20, 0.15, [0, 1, 2]
    redrawn = 0
    for seed in range(40):
        t = build_topology("erdos-renyi", n, p=p, byzantine=byz, seed=seed)
        benign = [i for i in range(n) if i not in byz]
        assert union_find_components(n, t.edges(), benign) == 1
        assert all(t.degree(i) >= 1 for i in benign)
        attempt = t.params["attempt"]
        assert t.params["base_seed"] == seed and t.params["seed"] == redraw_seed(seed, attempt)
        assert t == erdos_renyi(n, p, seed=redraw_seed(seed, attempt))
        # every earlier draw violated the requirement
        for a in range(attempt):
            earlier = erdos_renyi(n, p, seed=redraw_seed(seed, a))
            assert union_find_components(n, earlier.edges(), benign) > 1 or \
                any(earlier.degree(i) == 0 for i in benign)
        redrawn += attempt > 0
    assert redrawn >= 5  # at this density many first draws fail, so the redraw path is exercised
    # max_redraws=0: only the first draw; it fails for seed 0 here
    assert build_topology("erdos-renyi", n, p=p, byzantine=byz, seed=0).params["attempt"] > 0
    with pytest.raises(ValueError, match="connected"):
        build_topology("erdos-renyi", n, p=p, byzantine=byz, seed=0, max_redraws=0)


@pytest.mark.parametrize("name,params", [("erdos-renyi", {"p": 0.08}), ("k-regular", {"k": 3}),
                                         ("complete", {}), ("ring", {})])
def test_returned_graph_is_benign_connected(name, params):
    n = 60
    rng = np.random.default_rng(0)
    for seed in range(5):
        byz = [] if name == "ring" else sorted(rng.choice(n, size=12, replace=False).tolist())
        t = build_topology(name, n, byzantine=byz, seed=seed, **params)
        benign = [i for i in range(n) if i not in byz]
        assert union_find_components(n, t.edges(), benign) == 1
        assert t.benign_connected(byz)
        assert all(t.degree(i) >= 1 for i in benign)


def test_single_benign_node_needs_a_neighbour():
    assert build_topology("complete", 2, byzantine=[0]) == complete(2)
    t = build_topology("erdos-renyi", 8, p=0.3, byzantine=range(7), seed=0)
    assert t.degree(7) >= 1
    with pytest.raises(ValueError, match="at least one must be benign"):
        build_topology("complete", 4, byzantine=range(4))


def test_induced_connected_and_components():
    t = ring(8)
    assert t.induced_connected([]) and t.induced_connected([3])
    assert t.induced_connected([1, 2, 3]) and not t.induced_connected([1, 3])
    assert t.components([0, 1, 4, 5, 7]) == ((0, 1, 7), (4, 5))
    two = Topology.from_edges(5, [(0, 1), (2, 3), (3, 4)])
    assert not two.induced_connected(range(5)) and two.components() == ((0, 1), (2, 3, 4))
    rng = np.random.default_rng(3)
    for seed in range(20):
        g = erdos_renyi(25, 0.08, seed=seed)
        nodes = rng.choice(25, size=15, replace=False).tolist()
        assert g.induced_connected(nodes) == (union_find_components(25, g.edges(), nodes) == 1)
        assert len(g.components(nodes)) == union_find_components(25, g.edges(), nodes)
    with pytest.raises(ValueError, match=r"\[0, n=8\)"):
        t.benign_connected([8])


# -- padded neighbour lists ----------------------------------------------------------------------
def test_padded_neighbours_against_a_loop():
    t = Topology.from_edges(6, [(0, 1), (0, 4), (1, 2), (2, 5), (3, 5), (0, 5)])  # 0: 1, 4, 5; 3: 5
    for g in (t, erdos_renyi(30, 0.2, seed=4), ring(5)):
        rng = np.random.default_rng(1)
        nodes = rng.integers(0, g.n, size=12).tolist()
        idx, mask = g.padded_neighbours(nodes)
        width = max(1, max(g.degree(i) for i in nodes))
        assert idx.dtype == np.int64 and mask.dtype == bool
        assert idx.shape == mask.shape == (len(nodes), width)
        for r, i in enumerate(nodes):
            nb = g.neighbours(i)
            assert idx[r, : len(nb)].tolist() == list(nb)
            assert mask[r].tolist() == [True] * len(nb) + [False] * (width - len(nb))
            assert (idx[r, len(nb):] == 0).all()
    iso = Topology.from_edges(3, [(0, 1)])
    idx, mask = iso.padded_neighbours([2])
    assert idx.shape == (1, 1) and not mask.any()
    idx, mask = ring(4).padded_neighbours([])
    assert idx.shape == mask.shape == (0, 1)


# -- immutability, summaries --------------------------------------------------------------------
def test_immutable_and_picklable():
    t = erdos_renyi(10, 0.5, seed=0)
    with pytest.raises(ValueError):
        t.adjacency[0, 1] = not t.adjacency[0, 1]
    with pytest.raises(AttributeError):
        t.n = 3
    with pytest.raises(TypeError):
        t.params["p"] = 1.0
    src = np.zeros((3, 3), dtype=bool)
    src[0, 1] = src[1, 0] = True
    u = Topology(src)
    src[0, 2] = src[2, 0] = True  # the topology copied its input
    assert u.edges() == ((0, 1),)
    back = pickle.loads(pickle.dumps(t))
    assert back == t and back.name == t.name and dict(back.params) == dict(t.params)
    assert hash(back) == hash(t)


def test_describe_is_json():
    t = build_topology("k-regular", 12, k=3, seed=2, byzantine=[0])
    d = json.loads(json.dumps(t.describe()))
    assert d["name"] == "k-regular" and d["n"] == 12 and d["edges"] == 18
    assert d["min_degree"] == d["max_degree"] == 3 and d["mean_degree"] == 3.0
    r = ring(5).describe()
    assert (r["edges"], r["min_degree"], r["max_degree"]) == (5, 2, 2)


def test_bad_adjacency_rejected():
    with pytest.raises(ValueError, match="symmetric"):
        Topology(np.triu(np.ones((3, 3), dtype=bool), k=1))
    with pytest.raises(ValueError, match="self loops"):
        Topology(np.eye(3, dtype=bool))
    with pytest.raises(ValueError, match="square"):
        Topology(np.zeros((2, 3), dtype=bool))


# -- errors: names, parameters, values ------------------------------------------------------------
def test_unknown_name_lists_available():
    assert TOPOLOGIES.available() == ("complete", "erdos-renyi", "k-regular", "ring")
    with pytest.raises(ValueError, match="unknown topology 'star'") as err:
        build_topology("star", 5)
    for name in TOPOLOGIES.available():
        assert name in str(err.value)
    assert build_topology("Erdos_Renyi", 10, p=1.0) == complete(10)  # names are normalised


def test_unknown_param_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown topology parameter \['q'\].*valid: \['n', 'p', 'seed'\]"):
        build_topology("erdos-renyi", 10, q=0.5)
    with pytest.raises(ValueError, match=r"valid: \['n'\]"):
        build_topology("ring", 10, p=0.5)
    with pytest.raises(ValueError, match=r"valid: \['n', 'k', 'seed'\]"):
        TOPOLOGIES.build("k-regular", n=10, degree=3)
    for name in TOPOLOGIES:
        assert TOPOLOGIES.help(name)


@pytest.mark.parametrize("call,match", [
    (lambda: build_topology("complete", 1), "n >= 2"),
    (lambda: build_topology("ring", 2), "n >= 3"),
    (lambda: build_topology("erdos-renyi", 10, p=0.0), r"0 < p <= 1"),
    (lambda: build_topology("erdos-renyi", 10, p=1.5), r"0 < p <= 1"),
    (lambda: build_topology("erdos-renyi", 10, p=float("nan")), r"0 < p <= 1"),
    (lambda: build_topology("erdos-renyi", 10), "needs p="),
    (lambda: build_topology("k-regular", 10), "needs k="),
    (lambda: build_topology("k-regular", 10, k=0), "1 <= k < n"),
    (lambda: build_topology("k-regular", 10, k=10), "1 <= k < n"),
    (lambda: build_topology("k-regular", 9, k=3), "n\\*k even"),
    (lambda: build_topology("k-regular", 10, k=2.5), "k must be an integer"),
    (lambda: build_topology("erdos-renyi", 10, p=0.5, seed=-1), "seed must be >= 0"),
    (lambda: build_topology("ring", 10, max_redraws=-1), "max_redraws must be >= 0"),
    (lambda: build_topology("ring", 10, byzantine=[10]), r"\[0, n=10\)"),
    (lambda: ring(5).neighbours(5), "outside"),
])
def test_bad_values(call, match):
    with pytest.raises(ValueError, match=match):
        call()
