"""Sweep grids: one YAML file names every training run of a study (format in docs/sweep.md).

::

    name: smoke
    base: {dataset: digits, model: logreg, steps: 20}       # RunConfig keys shared by every run
    axes:                                                   # a cross product
      scheme: [vanilla, draco-repetition]
      lr: {values: [0.1, 0.3], tune: worst-case}            # chosen per defence (codedbft.sweep.tune)
    zip: [{tolerate: [1, 2], workers: [9, 15]}]             # axes that move together: one dimension
    exclude: [{scheme: draco-repetition, lr: 0.3}]          # drop cells matching every given key
    include: [{scheme: detox, group_size: 3}]               # extra cells (on base, no axis crossed)
    seeds: [0, 1]
    resources: {num_cpus: 1}                                # per (cell, seed) Ray task

Cells are the product of the axes (each zip group one dimension, after the plain axes) minus the
excludes, plus the includes (never excluded; one equal to an existing cell is dropped). A cell's
id is ``key=value,...`` over its overrides in grid order, readable and a function of the cell only
(values: ``None`` -> ``none``, a mapping -> ``k_v+k2_v2``, a list -> ``a+b``); characters other than
``[A-Za-z0-9._=,+-]`` become ``_`` and then, like an id over 96 characters (cut to 80) or two cells
that would share one, it ends in ``-`` and 8 hex digits of the overrides' SHA-1.

Every key is checked on load: unknown grid keys, config keys (base, axes, zip, include) that
RunConfig does not have, exclude keys that are not axes, ``seed``/``run_dir`` anywhere (the sweep
sets them), zip groups of unequal lengths, an axis given twice: ValueError naming them. A cell's
*configuration* errors (a code that cannot be built at that n) are not grid errors:
:meth:`Grid.validate` returns them per cell, and the sweep records the cell as ``invalid``.

Costs (measured on the 2-core development machine): loading and expanding the 68-cell redundancy
grid takes ~3 ms; :meth:`Grid.validate` builds one RunConfig and one trainer (dataset, scheme,
code, no worker) per cell: ~5 s the first time in a process (imports and the first dataset load),
then ~10 ms a cell.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

#: top-level keys of a grid file
GRID_KEYS = ("name", "base", "axes", "zip", "exclude", "include", "seeds", "resources")
#: keys of ``resources``
RESOURCE_KEYS = ("num_cpus",)
#: tune markers an axis may carry (``{values: [...], tune: worst-case}``)
TUNE_MODES = ("worst-case",)
#: config keys the sweep sets itself
RESERVED = {"seed": "seeds are the grid's `seeds:` list", "run_dir": "the sweep sets each run's directory"}
#: the axis worst-case tuning minimises over
ATTACK_AXIS = "attack"

_SAFE = re.compile(r"[^A-Za-z0-9._=,+\-]")
_MAX_ID = 96


def _suggest(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=2, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def _config_keys() -> frozenset[str]:
    from codedbft.cluster.config import RunConfig

    return RunConfig.field_names()


def _norm_key(key: Any) -> str:
    return str(key).replace("-", "_")


def _check_config_keys(keys: Sequence[str], where: str) -> None:
    """ValueError naming config keys RunConfig does not have, or keys the sweep sets itself."""
    known = _config_keys()
    unknown = [k for k in keys if k not in known]
    if unknown:
        hints = "".join(_suggest(k, sorted(known)) for k in unknown)
        raise ValueError(f"unknown config keys {unknown} in {where}{hints}; valid keys: {sorted(known)}")
    for k in keys:
        if k in RESERVED:
            raise ValueError(f"{where} may not set {k!r}: {RESERVED[k]}")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a mapping, got {type(value).__name__}: {value!r}")
    return {_norm_key(k): v for k, v in value.items()}


def _values(value: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{where} must be a non-empty list of values, got {value!r}")
    return tuple(value)


def id_value(value: Any) -> str:
    """A value as it appears in a cell id (before sanitising)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "+".join(f"{k}_{id_value(v)}" for k, v in value.items()) or "default"
    if isinstance(value, (list, tuple)):
        return "+".join(id_value(v) for v in value) or "empty"
    return str(value)


def overrides_hash(overrides: Mapping[str, Any]) -> str:
    """8 hex digits of the SHA-1 of the overrides (key order does not matter)."""
    text = json.dumps(overrides, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def cell_id(overrides: Mapping[str, Any]) -> str:
    """The readable, stable id of a cell (see the module docstring); a valid directory name."""
    raw = ",".join(f"{k}={id_value(v)}" for k, v in overrides.items()) or "base"
    safe = _SAFE.sub("_", raw)
    if safe != raw or len(safe) > _MAX_ID:
        safe = f"{safe[:80]}-{overrides_hash(overrides)}"
    return safe


@dataclass(frozen=True)
class Axis:
    """One axis of the grid: its values, its tune marker and its zip group (None: its own dimension)."""

    name: str
    values: tuple[Any, ...]
    tune: str | None = None
    group: int | None = None


@dataclass(frozen=True)
class Cell:
    """One point of the grid: ``overrides`` (config keys on top of ``base``) and its id."""

    id: str
    overrides: Mapping[str, Any]
    included: bool = False


@dataclass
class Grid:
    """A parsed, checked grid (see the module docstring). Build with :meth:`from_file` / :meth:`from_dict`."""

    name: str
    base: dict[str, Any]
    axes: list[Axis]
    exclude: list[dict[str, Any]] = field(default_factory=list)
    include: list[dict[str, Any]] = field(default_factory=list)
    seeds: tuple[int, ...] = (0,)
    num_cpus: float = 1.0
    text: str | None = None  # the file's text when loaded from a file (copied to OUT/grid.yaml)
    path: Path | None = None

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path) -> "Grid":
        """Load a YAML grid; ``name`` defaults to the file's stem."""
        import yaml

        path = Path(path)
        text = path.read_text()
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"grid {path} is not valid YAML: {err}") from None
        if not isinstance(data, Mapping):
            raise ValueError(f"grid {path} must hold a mapping (name, base, axes, ...), got {type(data).__name__}")
        grid = cls.from_dict(data, default_name=path.stem)
        grid.text, grid.path = text, path
        return grid

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], default_name: str = "sweep") -> "Grid":
        """Build from a mapping with the grid file's keys; ValueError naming every problem key."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a grid must be a mapping, got {type(data).__name__}")
        unknown = [str(k) for k in data if k not in GRID_KEYS]
        if unknown:
            hints = "".join(_suggest(k, GRID_KEYS) for k in unknown)
            raise ValueError(f"unknown grid keys {unknown}{hints}; valid grid keys: {list(GRID_KEYS)}")
        name = str(data.get("name") or default_name)
        base = _mapping(data.get("base"), "base")
        _check_config_keys(list(base), "base")

        axes: list[Axis] = []
        for key, spec in _mapping(data.get("axes"), "axes").items():
            tune = None
            if isinstance(spec, Mapping):
                extra = sorted(set(spec) - {"values", "tune"})
                if extra or "values" not in spec:
                    raise ValueError(f"axis {key!r}: a mapping takes 'values' and optionally 'tune', got keys {sorted(spec)}")
                tune = spec.get("tune")
                if tune is not None and tune not in TUNE_MODES:
                    raise ValueError(f"axis {key!r}: unknown tune marker {tune!r}; valid: {list(TUNE_MODES)}")
                spec = spec["values"]
            axes.append(Axis(key, _values(spec, f"axis {key!r}"), tune))
        zips = data.get("zip") or []
        if isinstance(zips, Mapping):
            zips = [zips]
        if not isinstance(zips, list):
            raise ValueError(f"zip must be a list of mappings (axis -> values), got {zips!r}")
        for g, group in enumerate(zips):
            group = _mapping(group, f"zip[{g}]")
            if not group:
                raise ValueError(f"zip[{g}] is empty")
            lengths = {k: len(_values(v, f"zip[{g}] axis {k!r}")) for k, v in group.items()}
            if len(set(lengths.values())) > 1:
                raise ValueError(f"zip[{g}]: zipped axes need equal lengths, got {lengths}")
            axes += [Axis(k, tuple(v), None, g) for k, v in group.items()]
        names = [a.name for a in axes]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"axes given more than once (axes and zip): {twice}")
        _check_config_keys(names, "axes")
        if ATTACK_AXIS in [a.name for a in axes if a.tune]:
            raise ValueError(f"the {ATTACK_AXIS!r} axis is what worst-case tuning minimises over: it cannot be tuned")

        exclude = []
        for i, e in enumerate(data.get("exclude") or []):
            e = _mapping(e, f"exclude[{i}]")
            bad = [k for k in e if k not in names]
            if bad or not e:
                raise ValueError(f"exclude[{i}] keys must be axes {names}, got {bad or 'nothing'}"
                                 + "".join(_suggest(k, names) for k in bad))
            exclude.append(e)
        include = []
        for i, e in enumerate(data.get("include") or []):
            e = _mapping(e, f"include[{i}]")
            if not e:
                raise ValueError(f"include[{i}] is empty")
            _check_config_keys(list(e), f"include[{i}]")
            include.append(e)
        for key in ("exclude", "include"):
            if data.get(key) is not None and not isinstance(data.get(key), list):
                raise ValueError(f"{key} must be a list of mappings, got {data.get(key)!r}")

        seeds_raw = data.get("seeds", [0])
        seeds_raw = [seeds_raw] if isinstance(seeds_raw, int) else seeds_raw
        if not isinstance(seeds_raw, list) or not seeds_raw or not all(isinstance(s, int) and not isinstance(s, bool)
                                                                        for s in seeds_raw):
            raise ValueError(f"seeds must be a non-empty list of integers, got {data.get('seeds')!r}")
        if len(set(seeds_raw)) != len(seeds_raw):
            raise ValueError(f"seeds must be distinct, got {seeds_raw}")
        res = _mapping(data.get("resources"), "resources")
        bad = sorted(set(res) - set(RESOURCE_KEYS))
        if bad:
            raise ValueError(f"unknown resources keys {bad}; valid: {list(RESOURCE_KEYS)}")
        num_cpus = res.get("num_cpus", 1)
        if isinstance(num_cpus, bool) or not isinstance(num_cpus, (int, float)) or not num_cpus > 0:
            raise ValueError(f"resources.num_cpus must be a number > 0, got {num_cpus!r}")
        return cls(name=name, base=base, axes=axes, exclude=exclude, include=include,
                   seeds=tuple(seeds_raw), num_cpus=float(num_cpus))

    # -- what it holds ----------------------------------------------------------------------------
    @property
    def axis_names(self) -> list[str]:
        """Every axis, zipped ones included, in grid order (plain axes, then zip groups)."""
        return [a.name for a in self.axes]

    @property
    def tune_axes(self) -> list[str]:
        """Axes marked ``tune: worst-case``."""
        return [a.name for a in self.axes if a.tune]

    def _dimensions(self) -> list[list[dict[str, Any]]]:
        """Each plain axis and each zip group as a list of partial overrides."""
        dims: list[list[dict[str, Any]]] = []
        groups: dict[int, list[Axis]] = {}
        for a in self.axes:
            if a.group is None:
                dims.append([{a.name: v} for v in a.values])
            else:
                groups.setdefault(a.group, []).append(a)
        for g in sorted(groups):
            members = groups[g]
            dims.append([{a.name: a.values[i] for a in members} for i in range(len(members[0].values))])
        return dims

    def _excluded(self, overrides: Mapping[str, Any]) -> bool:
        return any(all(k in overrides and overrides[k] == v for k, v in e.items()) for e in self.exclude)

    def cell_objects(self) -> list[Cell]:
        """The cells (see the module docstring), ids unique."""
        out: list[Cell] = []
        seen: list[dict[str, Any]] = []
        for combo in itertools.product(*self._dimensions()) if self.axes else [()]:
            ov: dict[str, Any] = {}
            for part in combo:
                ov.update(part)
            if self._excluded(ov) or ov in seen:
                continue
            seen.append(ov)
            out.append(Cell(cell_id(ov), ov))
        for inc in self.include:
            if inc in seen:
                continue
            seen.append(dict(inc))
            out.append(Cell(cell_id(inc), dict(inc), included=True))
        ids = [c.id for c in out]
        clash = {i for i in ids if ids.count(i) > 1}
        if clash:
            out = [Cell(f"{c.id}-{overrides_hash(c.overrides)}" if c.id in clash else c.id, c.overrides, c.included)
                   for c in out]
        return out

    def cells(self) -> list[tuple[str, dict[str, Any]]]:
        """``(cell_id, overrides)`` for every cell, in grid order."""
        return [(c.id, dict(c.overrides)) for c in self.cell_objects()]

    def runs(self) -> Iterator[tuple[Cell, int]]:
        """Every (cell, seed): one training run each."""
        for c in self.cell_objects():
            for s in self.seeds:
                yield c, s

    def effective(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """RunConfig's defaults, then base, then the overrides (what a cell asks for, valid or not)."""
        from dataclasses import MISSING, fields

        from codedbft.cluster.config import RunConfig

        out: dict[str, Any] = {}
        for f in fields(RunConfig):
            if f.default is not MISSING:
                out[f.name] = f.default
            elif f.default_factory is not MISSING:  # type: ignore[misc]
                out[f.name] = f.default_factory()  # type: ignore[misc]
        return {**out, **self.base, **overrides}

    def config(self, overrides: Mapping[str, Any], seed: int) -> Any:
        """The RunConfig of one run: base + overrides + seed, on the ``local`` backend (the run is a
        task of its own; its workers are simulated inside it). Raises ValueError when invalid."""
        from codedbft.cluster.config import RunConfig

        return RunConfig.from_dict({**self.base, **overrides, "seed": seed, "backend": "local", "address": None})

    def validate(self) -> dict[str, str | None]:
        """Per cell id, None or the error (``Type: message``) its RunConfig or trainer constructor
        raises (with the grid's first seed; the trainer is built but no worker starts)."""
        from codedbft.cluster.trainer import make_trainer

        errors: dict[str, str | None] = {}
        for c in self.cell_objects():
            try:
                make_trainer(self.config(c.overrides, self.seeds[0]))
                errors[c.id] = None
            except Exception as err:  # any constructor error makes the cell invalid, never the sweep
                errors[c.id] = error_text(err)
        return errors

    # -- comparison and serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The canonical mapping (keys normalised; loads back to an equal grid)."""
        axes: dict[str, Any] = {}
        zips: dict[int, dict[str, Any]] = {}
        for a in self.axes:
            if a.group is not None:
                zips.setdefault(a.group, {})[a.name] = list(a.values)
            else:
                axes[a.name] = {"values": list(a.values), "tune": a.tune} if a.tune else list(a.values)
        return {"name": self.name, "base": dict(self.base), "axes": axes, "zip": [zips[g] for g in sorted(zips)],
                "exclude": [dict(e) for e in self.exclude], "include": [dict(e) for e in self.include],
                "seeds": list(self.seeds), "resources": {"num_cpus": self.num_cpus}}

    def to_yaml(self) -> str:
        """The grid file's text (its own text when loaded from a file)."""
        if self.text is not None:
            return self.text
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def differences(self, other: "Grid") -> list[str]:
        """What makes ``other`` compute different runs: ``path: ours -> theirs`` for each differing
        key (``name`` and ``resources`` do not count: they change no run)."""
        a, b = self.to_dict(), other.to_dict()
        for d in (a, b):
            d.pop("name")
            d.pop("resources")
        return _diff(a, b, "")


def _diff(a: Any, b: Any, path: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in list(a) + [k for k in b if k not in a]:
            out += _diff(a.get(k, "<unset>"), b.get(k, "<unset>"), f"{path}.{k}" if path else str(k))
        return out
    if a != b:
        return [f"{path}: {_short_repr(a)} -> {_short_repr(b)}"]
    return []


def _short_repr(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def error_text(err: BaseException) -> str:
    """``Type: message`` on one line (what an invalid or failed row records)."""
    msg = " ".join(str(err).split())
    return f"{type(err).__name__}: {msg}" if msg else type(err).__name__


# -- shipped grids --------------------------------------------------------------------------------
def _grids_dir() -> Path:
    return Path(str(resources.files("codedbft") / "grids"))


def shipped_grids() -> dict[str, Path]:
    """The grids shipped in ``codedbft/grids``: name -> path, sorted by name."""
    d = _grids_dir()
    return {p.stem: p for p in sorted(d.glob("*.yaml"))} if d.is_dir() else {}


def describe(path: Path) -> str:
    """A grid file's first comment line (its description)."""
    for line in path.read_text().splitlines():
        if line.strip().startswith("#"):
            return line.strip().lstrip("#").strip()
    return ""


def resolve(arg: str | Path) -> Path:
    """A grid argument: an existing file, else the name of a shipped grid (``smoke``, ``smoke.yaml``)."""
    p = Path(arg)
    if p.is_file():
        return p
    shipped = shipped_grids()
    key = p.name[:-5] if p.name.endswith(".yaml") else p.name
    if key in shipped and p.parent == Path("."):
        return shipped[key]
    raise ValueError(f"no grid file {str(arg)!r} and no shipped grid of that name{_suggest(key, list(shipped))}; "
                     f"shipped grids: {', '.join(shipped) or 'none'} (codedbft sweep --list)")
