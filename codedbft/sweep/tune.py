"""Hyperparameters chosen against the worst case (ByzFL's ``find_best_hyperparameters``).

Axes marked ``tune: worst-case`` are chosen, not compared. The other axes but ``attack`` make the
*defence* (scheme, aggregator, n, b, ...). For each defence and each setting of the tuned axes, the
setting's score is its worst (min) mean-over-seeds accuracy over the values of the ``attack`` axis;
the chosen setting is the one whose worst case is best (ties: the first in grid order). A setting
missing a result for some attack (an invalid or failed cell) is not eligible: its worst case is
unknown. Without an ``attack`` axis the score is the accuracy itself.

::

    tuned = worst_case(summary_rows, axes=["scheme", "attack", "lr"], tune_axes=["lr"])
    # [{"scheme": "vanilla", "lr": 0.1, "worst_case_accuracy": 0.71, "worst_attack": "alie",
    #   "accuracy_alie": 0.71, "accuracy_omniscient": 0.83}, ...]

Costs: one pass over the summary rows, ~1 ms for 1000 cells.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from codedbft.sweep.grid import ATTACK_AXIS
from codedbft.sweep.results import fmt

#: the metric tuned on (a summary.csv column)
METRIC = "final_test_accuracy_mean"


def tuned_columns(axes: Sequence[str], tune_axes: Sequence[str], attacks: Sequence[Any]) -> list[str]:
    """tuned.csv's columns: defence axes, tuned axes, the worst case, one accuracy per attack."""
    defence = [a for a in axes if a not in tune_axes and a != ATTACK_AXIS]
    per = [f"accuracy_{fmt(a)}" for a in attacks] if ATTACK_AXIS in axes else []
    return [*defence, *tune_axes, "worst_case_accuracy", "worst_attack", *per]


def attack_values(summary: Sequence[Mapping[str, Any]], axes: Sequence[str]) -> list[Any]:
    """The attack axis' values present in the summary, in order (``[None]`` without that axis)."""
    if ATTACK_AXIS not in axes:
        return [None]
    seen: dict[str, Any] = {}
    for row in summary:
        seen.setdefault(fmt(row.get(ATTACK_AXIS)), row.get(ATTACK_AXIS))
    return list(seen.values())


def worst_case(summary: Sequence[Mapping[str, Any]], axes: Sequence[str], tune_axes: Sequence[str],
               metric: str = METRIC) -> list[dict[str, Any]]:
    """One row per defence: the chosen tuned values (None when no setting is eligible), its
    ``worst_case_accuracy``, ``worst_attack`` and ``accuracy_<attack>`` for each attack.

    ``summary`` rows are :func:`~codedbft.sweep.results.summarize` rows (axis values and
    ``metric``); cells without a finished seed count as missing.
    """
    defence_axes = [a for a in axes if a not in tune_axes and a != ATTACK_AXIS]
    attacks = attack_values(summary, axes)
    has_attack = ATTACK_AXIS in axes
    # defence key -> tuned key -> attack key -> value; insertion order is grid order
    table: dict[tuple[str, ...], dict[tuple[str, ...], dict[str, float]]] = {}
    values: dict[tuple[str, ...], dict[str, Any]] = {}
    for row in summary:
        d = tuple(fmt(row.get(a)) for a in defence_axes)
        t = tuple(fmt(row.get(a)) for a in tune_axes)
        values.setdefault(d, {a: row.get(a) for a in defence_axes})
        values.setdefault(d + ("\0",) + t, {a: row.get(a) for a in tune_axes})
        per = table.setdefault(d, {}).setdefault(t, {})
        v = row.get(metric)
        if v is not None and row.get("seeds", 1) and v == v:  # NaN: no result
            per.setdefault(fmt(row.get(ATTACK_AXIS)) if has_attack else "", float(v))
    out: list[dict[str, Any]] = []
    for d, settings in table.items():
        best: tuple[float, tuple[str, ...], str | None] | None = None
        for t, per in settings.items():
            keys = [fmt(a) for a in attacks] if has_attack else [""]
            if any(k not in per for k in keys):
                continue
            worst_key = min(keys, key=lambda k: per[k])  # first of the minimal ones
            if best is None or per[worst_key] > best[0]:
                best = (per[worst_key], t, worst_key)
        row: dict[str, Any] = dict(values[d])
        if best is None:
            row.update({a: None for a in tune_axes}, worst_case_accuracy=None, worst_attack=None)
            per = {}
        else:
            score, t, worst_key = best
            row.update(values[d + ("\0",) + t], worst_case_accuracy=score,
                       worst_attack=next((a for a in attacks if fmt(a) == worst_key), None) if has_attack else None)
            per = settings[t]
        if has_attack:
            for a in attacks:
                row[f"accuracy_{fmt(a)}"] = per.get(fmt(a))
        out.append(row)
    return out


def mark_best(summary: Sequence[dict[str, Any]], tuned: Sequence[Mapping[str, Any]], axes: Sequence[str],
              tune_axes: Sequence[str]) -> None:
    """Set ``tuned_best`` on every summary row whose defence and tuned values are a chosen pair."""
    defence_axes = [a for a in axes if a not in tune_axes and a != ATTACK_AXIS]
    chosen = {tuple(fmt(r.get(a)) for a in defence_axes + list(tune_axes)) for r in tuned
              if r.get("worst_case_accuracy") is not None}
    for row in summary:
        row["tuned_best"] = tuple(fmt(row.get(a)) for a in defence_axes + list(tune_axes)) in chosen
