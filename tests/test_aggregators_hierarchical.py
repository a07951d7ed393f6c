"""DETOX hierarchical aggregation: vote in groups, bucket means, robust rule; the floor(s/ceil(r/2)) bound."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from codedbft.aggregators import Hierarchical, Median, by_name
from codedbft.decoders.majority import majority_vote


@pytest.mark.parametrize("s", range(0, 8))
def test_corrupted_groups_at_most_floor_s_over_half_r_exhaustive(s):
    n, r, d = 15, 3, 4
    g = n // r
    half = math.ceil(r / 2)
    honest_groups = torch.arange(g, dtype=torch.float64).unsqueeze(1) + torch.zeros(g, d, dtype=torch.float64)
    honest = honest_groups.repeat_interleave(r, dim=0)  # (n, d): group members identical
    placements = list(itertools.combinations(range(n), s))
    x = honest.expand(len(placements), n, d).clone()
    for p, ids in enumerate(placements):
        x[p, list(ids)] = -7.0  # colluding: all Byzantine workers send the same wrong vector
    vote = majority_vote(x, group_size=r)
    corrupted = (vote.values != honest_groups).any(dim=-1).sum(dim=-1)  # (placements,)
    bound = s // half
    assert int(corrupted.max()) <= bound
    # worst case: adversaries take ceil(r/2) members of as many groups as they can -> bound reached
    worst = [i for grp in range(min(g, s // half)) for i in range(grp * r, grp * r + half)]
    worst += [i for i in range(n) if i not in worst][: s - len(worst)]
    assert int(corrupted[placements.index(tuple(sorted(worst)))]) == bound
    # the DETOX rule then sees at most `bound` bad group outputs: median with f = bound stays honest
    agg = Hierarchical(group_size=r, bucket=1, outer="median", s=s)
    assert agg.outer.f == bound
    if n // r >= 2 * bound + 1:
        out = agg(x)
        lo, hi = honest_groups.min(0).values, honest_groups.max(0).values
        assert bool(((out >= lo) & (out <= hi)).all())


def test_pipeline_matches_manual_composition():
    g = torch.Generator().manual_seed(1)
    r, groups, bucket = 3, 12, 2
    base = torch.randn(groups, 6, generator=g)
    x = base.repeat_interleave(r, dim=0).clone()
    x[[0, 1, 9]] = 100.0  # group 0 lost (2 of 3), group 3 keeps its majority
    agg = Hierarchical(group_size=r, bucket=bucket, outer="krum", s=3)
    assert agg.outer.f == 1
    out = agg(x)
    vals = base.clone()
    vals[0] = 100.0
    buckets = vals.reshape(groups // bucket, bucket, 6).mean(dim=1)
    torch.testing.assert_close(out, by_name("krum", f=1)(buckets))
    # the vote's view: rows 0, 1 outvote honest row 2 in group 0; row 9 is outvoted in group 3
    disagree = (~agg.last_info["agree"].reshape(-1)).nonzero().flatten().tolist()
    assert disagree == [2, 9] and bool(agg.last_info["decided"].all())


def test_batched_equals_per_item_and_checks():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 5, 6, generator=g).repeat_interleave(3, dim=1)  # (4, 15, 6)
    x[:, 0] += 1.0
    agg = Hierarchical(group_size=3, outer=Median(f=1))
    out = agg(x)
    for b in range(4):
        torch.testing.assert_close(out[b], agg(x[b]))
    with pytest.raises(ValueError, match="group_size"):
        agg(torch.zeros(14, 3))
    with pytest.raises(ValueError, match="bucket"):
        Hierarchical(group_size=3, bucket=2)(torch.zeros(15, 3))
    with pytest.raises(ValueError, match="n >= "):
        Hierarchical(group_size=3, outer="median", f=2)(torch.zeros(12, 3))
    assert by_name("hierarchical", group_size=3, outer="bulyan", s=2).outer.f == 1
