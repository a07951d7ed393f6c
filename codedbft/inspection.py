"""``codedbft inspect``: look at a code, the registries, a run directory or a sweep directory.

::

    codedbft inspect code SCHEME --workers N --byzantine B [--tolerate S] [--group-size R]
                                 [--aggregator RULE] [--bucket K] [--scheme-param KEY=VALUE ...]
                                 [--max-q Q] [--json]
    codedbft inspect schemes [NAME] [--json]
    codedbft inspect attacks|aggregators|pre-aggregators|datasets|models|splits|placements|
                     optimizers|topologies|rules [NAME] [--json]
    codedbft inspect run DIR [--changed] [--json]
    codedbft inspect sweep DIR [--columns A,B,...] [--json]

Everything shown is read from the objects themselves (the registries, the built scheme and its code,
the scheme classes' source and docstrings, ``RunConfig``'s defaults, the files of a directory), so no
list of names or parameters is written twice. ``--json`` prints one JSON object and nothing else on
stdout, built from the same dictionary the text is rendered from. A bad input (unknown name, a
configuration the code rejects, a directory that is not a run or a sweep) exits with code 2 and a
message naming the constraint, before anything is computed. See docs/inspect.md.

Module-level imports stay light: the CLI imports every subcommand module at start, so torch, numpy
and the registries are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

#: ``inspect WHAT`` for each listed registry: (module, attribute, aliases, what it holds)
LISTINGS: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "attacks": ("codedbft.attacks.base", "ATTACKS", (), "attacks (what Byzantine workers send)"),
    "aggregators": ("codedbft.aggregators.registry", "AGGREGATORS", (), "robust aggregation rules"),
    "pre-aggregators": ("codedbft.aggregators.pre", "PRE_AGGREGATORS", ("pre",), "pre-aggregators (--pre)"),
    "datasets": ("codedbft.training.datasets", "DATASETS", (), "datasets"),
    "models": ("codedbft.training.models", "MODELS", (), "models"),
    "splits": ("codedbft.training.splits", "SPLITS", (), "data splits (--split)"),
    "placements": ("codedbft.attacks.placement", "PLACEMENTS", (), "Byzantine placements"),
    "optimizers": ("codedbft.training.optim", "OPTIMIZERS", (), "optimizers"),
    "topologies": ("codedbft.topology", "TOPOLOGIES", (), "decentralized topologies"),
    "rules": ("codedbft.decentralized.rules", "RULES", (), "decentralized neighbourhood rules"),
}

#: SchemeConfig fields and the ``codedbft train`` flag that sets each
_CONFIG_FLAGS = {"workers": "--workers", "byzantine": "--byzantine", "tolerate": "--tolerate",
                 "aggregator": "--aggregator", "aggregator_params": "--aggregator-param KEY=VALUE",
                 "group_size": "--group-size", "bucket": "--bucket", "pre": "--pre", "params": "--scheme-param KEY=VALUE"}

#: failed runs a sweep's text report lists (--json has them all)
_MAX_FAILURES = 50

#: statuses of a sweep's results.csv rows that count as a success (anything else is listed)
_OK_STATUSES = frozenset({"ok", "done", "success", "succeeded", "completed", "finished", "cached"})


# ==================================================================================================
# small helpers
# ==================================================================================================


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, (set, frozenset, tuple)):
        return list(x)
    if isinstance(x, Path):
        return str(x)
    return str(x)


def _norm(x: Any) -> Any:
    """``x`` as JSON would give it back (tuples -> lists, mappings -> dicts)."""
    return json.loads(json.dumps(x, default=_jsonable, sort_keys=True))


def _emit(args: argparse.Namespace, report: dict[str, Any], render: Callable[[dict[str, Any]], str]) -> int:
    text = json.dumps(report, indent=2, default=_jsonable) if getattr(args, "json", False) else render(report)
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the reader left; not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=_jsonable, ensure_ascii=False)
    return str(v)


def _cell(v: Any) -> str:
    """A CSV value for a table: numbers to 4 significant digits, empty as '-'."""
    if v is None or v == "":
        return "-"
    if isinstance(v, str):
        try:
            x = float(v)
        except ValueError:
            return v
        if x.is_integer() and re.fullmatch(r"[+-]?\d+", v.strip()):
            return v.strip()
        return f"{x:.4g}"
    return _fmt(v)


def _table(headers: list[str], rows: list[list[str]], indent: str = "  ") -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    line = lambda cells: indent + "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), indent + "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def _ids(ids: Any) -> str:
    return "[" + ", ".join(str(i) for i in ids) + "]"


def _bold(text: str) -> str:
    return f"\033[1m{text}\033[0m" if sys.stdout.isatty() else text


def _first_paragraph(doc: str | None) -> str:
    import inspect

    text = inspect.cleandoc(doc or "")
    return " ".join(text.split("\n\n")[0].split()) if text else ""


def _doc_section(doc: str | None, header: str) -> dict[str, str]:
    """``{name: text}`` of a Google-style docstring section (``Attributes:``, ``Args:``)."""
    import inspect

    lines = inspect.cleandoc(doc or "").splitlines()
    out: dict[str, str] = {}
    try:
        start = next(i for i, ln in enumerate(lines) if ln.strip() == f"{header}:")
    except StopIteration:
        return out
    base = len(lines[start]) - len(lines[start].lstrip())
    item_indent: int | None = None
    current: str | None = None
    for ln in lines[start + 1:]:
        if not ln.strip():
            continue
        ind = len(ln) - len(ln.lstrip())
        if ind <= base:
            break
        if item_indent is None:
            item_indent = ind
        m = re.match(r"\s*([A-Za-z_][\w]*)\s*(?:\([^)]*\))?:\s*(.*)", ln)
        if ind == item_indent and m:
            current = m.group(1)
            out[current] = m.group(2).strip()
        elif current is not None:
            out[current] += " " + ln.strip()
    return out


def _entry(registry: Any, name: str, parser: argparse.ArgumentParser) -> Any:
    """The registry entry of ``name``; exit 2 naming the available names (and the closest) otherwise."""
    try:
        return registry.entry(name)
    except ValueError as err:
        parser.error(str(err))


# ==================================================================================================
# reading a scheme's parameters from its source (schemes, inspect schemes)
# ==================================================================================================


def _render_message(node: Any) -> str | None:
    """The text of a ``ValueError(...)`` message node; ``{expr}`` for the formatted parts."""
    import ast

    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(str(v.value))
            elif isinstance(v, ast.FormattedValue):
                parts.append("{" + ast.unparse(v.value) + "}")
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):  # "a" "b" split over lines, or a + b
        left, right = _render_message(node.left), _render_message(node.right)
        return None if left is None or right is None else left + right
    return None


def _constraint_text(message: str, scheme: str) -> str:
    """A raise message as a constraint: the value report (", got ...") cut, placeholders tidied."""
    msg = message
    for cut in (", got ", " (got ", "; got ", ": got ", " got "):
        i = msg.find(cut)
        if i > 0:
            msg = msg[:i]
    msg = re.sub(r"\{(self\.)?name\}", scheme, msg)
    msg = re.sub(r"\s*\(\w+=\{[^{}]*\}\)", "", msg)  # a value report in parentheses: "(f={b})"
    msg = re.sub(r"=\{[^{}]*\}", "", msg)  # "r={r} must divide n={n}" -> "r must divide n"
    msg = re.sub(r":\s*\w+(?:\s\w+)?(?:,\s*\w+(?:\s\w+)?)*$", "", msg)  # a trailing list of bare names
    msg = re.sub(r"\{([^{}]*)\}", lambda m: "<" + re.sub(r"\b(self|config)\.", "", m.group(1)) + ">", msg)
    return msg.strip().rstrip(":;,")


def _source_facts(objs: list[Any]) -> dict[str, Any]:
    """What the builder classes (and the module functions they hand ``config`` to) read:

    ``fields`` (``config.X`` in order), ``or_defaults`` (``config.X or D``), ``param_defaults``
    (``config.params.get(KEY, D)``; None when read without a default), ``messages`` (ValueError texts).
    """
    import ast
    import inspect
    import textwrap

    facts: dict[str, Any] = {"fields": [], "or_defaults": {}, "param_defaults": {}, "messages": []}
    seen: set[int] = set()

    def is_config(node: Any) -> bool:
        return isinstance(node, ast.Name) and node.id == "config"

    def scan(obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
        except (OSError, TypeError, SyntaxError):
            return
        module = sys.modules.get(getattr(obj, "__module__", ""), None)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and is_config(node.value) and node.attr not in facts["fields"]:
                facts["fields"].append(node.attr)
            if (isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or) and len(node.values) == 2
                    and isinstance(node.values[0], ast.Attribute) and is_config(node.values[0].value)
                    and isinstance(node.values[1], ast.Constant)):
                facts["or_defaults"].setdefault(node.values[0].attr, ast.unparse(node.values[1]))
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                    and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "params"
                    and is_config(node.func.value.value) and node.args and isinstance(node.args[0], ast.Constant)):
                key = str(node.args[0].value)
                default = ast.unparse(node.args[1]) if len(node.args) > 1 else None
                if facts["param_defaults"].get(key) is None:
                    facts["param_defaults"][key] = default
            if (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.In)
                    and isinstance(node.left, ast.Constant) and isinstance(node.comparators[0], ast.Attribute)
                    and node.comparators[0].attr == "params" and is_config(node.comparators[0].value)):
                facts["param_defaults"].setdefault(str(node.left.value), None)
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and module is not None
                    and any(is_config(a) for a in node.args)):
                helper = getattr(module, node.func.id, None)
                if inspect.isfunction(helper):
                    scan(helper)

        # constraints: what construction (and bind, which checks the data and model) rejects
        checks = [f for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  and (f.name in ("__init__", "bind") or inspect.isfunction(obj))]
        for func in checks:
            for node in ast.walk(func):
                if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                    name = node.exc.func
                    if isinstance(name, ast.Name) and name.id == "ValueError" and node.exc.args:
                        text = _render_message(node.exc.args[0])
                        if text and text not in facts["messages"]:
                            facts["messages"].append(text)

    for obj in objs:
        scan(obj)
    return facts


def _builder_classes(builder: Any) -> list[Any]:
    """The Scheme classes a registered builder makes (the class itself, or those a lambda calls)."""
    import inspect

    from codedbft.schemes.base import Scheme

    if inspect.isclass(builder):
        return [builder]
    code = getattr(builder, "__code__", None)
    glb = getattr(builder, "__globals__", {})
    found = [glb[n] for n in (code.co_names if code else ()) if inspect.isclass(glb.get(n))
             and issubclass(glb[n], Scheme)]
    return found or [builder]


def _literal(text: str | None) -> Any:
    """A default expression as a JSON value when it is a literal, else its source text."""
    import ast

    if text is None:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return re.sub(r"\b(config|self)\.", "", text)


def scheme_info(name: str) -> dict[str, Any]:
    """Parameters (``--scheme-param`` keys and the SchemeConfig fields the scheme reads), their defaults,
    the constraints (the ValueError messages of the scheme class and of its code) and descriptions."""
    from dataclasses import MISSING, fields

    from codedbft.schemes.config import SchemeConfig
    from codedbft.schemes.registry import RUNTIME_PARAMS, SCHEMES, build_scheme

    entry = SCHEMES.entry(name)
    classes = _builder_classes(entry.obj)
    import inspect

    builders = [entry.obj] if inspect.isfunction(entry.obj) and entry.obj.__name__ != "<lambda>" else []
    code_cls = None
    try:  # the default configuration builds every built-in scheme: it tells which code class is used
        sample = build_scheme(SchemeConfig(name=entry.name))
        code_cls = type(sample.code) if sample.code is not None else None
    except Exception:  # noqa: BLE001 - a plugin scheme that needs parameters: no sample, no code facts
        sample = None
    facts = _source_facts([*builders, *classes])
    code_facts = _source_facts([code_cls.__init__]) if code_cls is not None else {"messages": []}

    attr_help = _doc_section(SchemeConfig.__doc__, "Attributes")
    defaults = {f.name: (f.default if f.default is not MISSING else f.default_factory())  # type: ignore[misc]
                for f in fields(SchemeConfig)}
    used = list(facts["fields"])
    if "s" in used:  # the property: tolerate, else byzantine
        used = [f for f in used if f != "s"] + [f for f in ("byzantine", "tolerate") if f not in used]
    options = []
    for f in [f for f in defaults if f in used and f != "params"]:
        default = _literal(facts["or_defaults"].get(f)) if f in facts["or_defaults"] else _norm(defaults[f])
        if f == "tolerate" and default is None:
            default = "byzantine"
        options.append({"name": f, "flag": _CONFIG_FLAGS.get(f, "--" + f.replace("_", "-")), "default": default,
                        "help": attr_help.get(f, "")})
    params = []
    for p in entry.params or ():
        if p in RUNTIME_PARAMS:
            continue
        params.append({"name": p, "flag": f"--scheme-param {p}=VALUE", "default": _literal(facts["param_defaults"].get(p))})
    others = set(SCHEMES.available()) - {entry.name}
    constraints = []
    for msg in [*facts["messages"], *code_facts["messages"]]:
        text = _constraint_text(msg, entry.name)
        first = text.split(" ", 1)[0].rstrip(":")
        if first in others or text in constraints:  # a sibling scheme's message (same class, other mode)
            continue
        constraints.append(text)
    doc = _first_paragraph(classes[0].__doc__) if classes else ""
    return {"name": entry.name, "help": entry.help, "doc": doc, "class": [c.__name__ for c in classes],
            "code": code_cls.__name__ if code_cls is not None else None,
            "scheme_params": params, "accepts_any_param": entry.params is None,
            "runtime_params": [p for p in RUNTIME_PARAMS if entry.params is None or p in entry.params],
            "options": options, "constraints": constraints,
            "example": sample.describe() if sample is not None else None}


def _short(text: str) -> str:
    """The first clause of a description, without reST markup (the full text is in --json)."""
    text = re.split(r"(?<=[^.]\.) |; ", text.replace("``", ""), maxsplit=1)[0]
    return text.rstrip(".")


def _render_scheme(info: dict[str, Any]) -> str:
    out = [f"scheme {info['name']}: {info['help']}"]
    if info["doc"]:
        out.append(f"  {info['doc']}")
    out.append(f"  class: {', '.join(info['class'])}" + (f"; code: {info['code']}" if info["code"] else ""))
    if info["scheme_params"]:
        out.append("scheme parameters (--scheme-param KEY=VALUE):")
        out.append(_table(["key", "default"], [[p["name"], "unset" if p["default"] is None else _fmt(p["default"])]
                                                   for p in info["scheme_params"]]))
    else:
        out.append("scheme parameters (--scheme-param KEY=VALUE): "
                   + ("any (checked by the scheme)" if info["accepts_any_param"] else "none"))
    if info["runtime_params"]:
        out.append(f"  set by the runtime: {', '.join(info['runtime_params'])} (from --seed)")
    out.append("options it reads (SchemeConfig fields):")
    out.append(_table(["option", "flag", "default", "meaning"],
                      [[o["name"], o["flag"], _fmt(o["default"]), _short(o["help"])]
                       for o in info["options"]]))
    out.append("constraints (a configuration that breaks one is rejected before any worker starts):")
    out += [f"  - {c}" for c in info["constraints"]] or ["  - none"]
    if info["example"]:
        out.append(f"default configuration (n=15, b=2): {json.dumps(_norm(info['example']))}")
    return "\n".join(out)


# ==================================================================================================
# inspect code
# ==================================================================================================


def _guarantee(scheme: Any) -> dict[str, Any]:
    """What the scheme guarantees, in words, with its numbers (and the e/m pairs an exact code corrects)."""
    code = scheme.code
    cname = type(code).__name__ if code is not None else None
    out: dict[str, Any] = {"exact": False, "corrects": None}

    def distance(s: int, scope: str) -> dict[str, Any]:
        return {"scope": scope, "pairs": [{"errors": e, "erasures": 2 * s - 2 * e} for e in range(s + 1)]}

    agg = scheme.aggregator
    rule = getattr(agg, "name", type(agg).__name__) if agg is not None else None
    if cname == "RepetitionCode" and scheme.name != "detox":
        s, r = code.s, code.r
        out.update(exact=True, corrects=distance(s, "in every group"), text=(
            f"exact while 2·errors + erasures ≤ 2s = {2 * s} in every group of r = {r} = 2s+1 (s = {s}): each group's "
            f"majority vote returns its partition gradient and the decoder sums the k = {code.k} votes"))
    elif cname == "RepetitionCode":  # DETOX
        r, k = code.r, code.k
        need = -(-r // 2)
        f = getattr(agg, "f", None)
        outer = getattr(getattr(agg, "outer", None), "name", "median")
        bucket = getattr(agg, "bucket", 1)
        out.update(text=(
            f"a group's vote is right while 2·errors + erasures ≤ {r - 1} inside it (groups of r = {r}); an adversary must "
            f"hold ceil(r/2) = {need} members of a group to win it, so b = {scheme.config.byzantine} Byzantine workers "
            f"decide at most floor(b/{need}) = {f} of the k = {k} group outputs; the outer rule {outer} runs over "
            f"{k // bucket} bucket means (bucket = {bucket}) with f = {f} ({agg.outer.requirement()}): a robust estimate, "
            f"never certified exact"))
    elif cname == "CyclicMDSCode":
        s = code.s
        out.update(exact=True, corrects=distance(s, "over all n messages"), text=(
            f"exact while 2·errors + erasures ≤ 2s = {2 * s} (cyclic MDS code of distance 2s+1 = {2 * s + 1}): any "
            f"n − 2s = {code.n - 2 * s} honest rows determine the sum"))
    elif cname == "ByzShieldCode":
        s, q = code.s, code.q
        tol = code.max_tolerated() if code.n <= _byzshield_exhaustive() else None
        text = (f"certified exact when no file lost its honest majority: always while q ≤ s = (r−1)/2 = {s} Byzantine "
                f"workers (each file has r = {code.r} copies); the decoder is sized for q = {q}: an optimal q-attack corrupts "
                f"f = {code.f_files} of the k = {code.k} files (max_distortion), and the robust rule {rule} runs over the "
                f"k voted files with that f when the votes cannot be certified")
        if tol is not None:
            text += f"; the rule stays honest (fewer than half the files corrupted) up to q = {tol} (max_tolerated)"
        out.update(exact=q <= s, corrects=distance(s, "among the r copies of every file"), text=text, max_tolerated=tol)
    elif cname == "DataEncodingCode":
        t = code.t
        out.update(exact=True, corrects=distance(t, "in each round, over all n messages"), text=(
            f"exact while 2·errors + erasures ≤ 2t = {2 * t} in each of the two rounds (residual, gradient); workers "
            f"caught in round 1 are erasures in round 2 (least-squares models only)"))
    elif scheme.name in ("rrr", "rrr-randomized") or hasattr(scheme, "isolated"):
        f = getattr(scheme, "f", scheme.config.s)
        if getattr(scheme, "randomized", False):
            out.update(text=(
                f"one copy per partition; a step is checked with probability q = {scheme.q} (drawn after the replies): "
                f"a checked step asks f = {f} more copies and is exact (f+1 equal copies among at most f liars), "
                f"liars are isolated forever; unchecked steps are not certified"))
        else:
            out.update(exact=True, text=(
                f"exact on every step while n ≥ 2f+1 = {2 * f + 1}: f+1 = {f + 1} equal copies include an honest one; on "
                f"disagreement up to 2f+1 = {2 * f + 1} copies and the value f+1 of them share; liars are isolated forever"))
    elif scheme.name == "vanilla" or code is None:
        req = agg.requirement() if hasattr(agg, "requirement") else ""
        out.update(text=(
            f"no redundancy, never certified exact: {rule} over the n = {scheme.n} messages with f = "
            f"{getattr(agg, 'f', scheme.config.byzantine)}" + (f" ({req})" if req else "")
            + "; each Byzantine worker corrupts its own partition"))
    else:  # a plugin scheme: its docstring's words
        out.update(text=_first_paragraph(type(scheme).__doc__) or "see the scheme's documentation")
    return out


def _byzshield_exhaustive() -> int:
    from codedbft.encoders.byzshield import EXHAUSTIVE_MAX_WORKERS

    return EXHAUSTIVE_MAX_WORKERS


def _message(scheme: Any) -> dict[str, Any]:
    """What one worker sends: shapes (symbolic in d) and what the vector is."""
    from collections import Counter

    from codedbft.schemes.base import Scheme

    cls = type(scheme)
    interactive = cls.protocol is not Scheme.protocol
    if cls.worker_data is not Scheme.worker_data:  # data encoding: operation orders on encoded data
        text = ("operation orders: each worker runs two operations per step on its encoded data block (shipped once "
                "at start) and sends one float64 vector per operation (residual, then gradient), not partition gradients")
        return {"kind": "operations", "shapes": {}, "interactive": True, "text": text}
    shapes: Counter[str] = Counter()
    per_worker = []
    for w, parts in enumerate(scheme.assignment):
        p = len(parts)
        try:
            shape = scheme.message_shape("d", max(p, 1), scheme.stacked)
            shape_text = "(" + ", ".join(str(x) for x in shape) + ("," if len(shape) == 1 else "") + ")"
        except Exception:  # noqa: BLE001 - a shape that needs a numeric d
            shape_text = "?"
        if p == 0:
            shape_text = "none (spare: asked only for reactive copies)"
        per_worker.append(shape_text)
        shapes[shape_text] += 1
    if scheme.stacked:
        text = "one gradient (a vector of d) per held partition, stacked: the master votes per partition"
    elif scheme.encoding_matrix is not None and any(
            scheme.coefficients(w, p) is not None for w, p in enumerate(scheme.assignment) if p):
        text = "one vector of d: the combination Σ_j B[i, j] g_j of its partition gradients (coefficients on each worker's line)"
    else:
        text = "one vector of d: its partition gradient as is, no arithmetic"
        if any(len(h) > 1 for h in _holders(scheme)):
            text += " (the holders of a partition send bit-identical copies)"
    if interactive:
        text += "; interactive: more single-partition rounds within a step when copies disagree"
    return {"kind": "stacked" if scheme.stacked else "vector", "shapes": dict(shapes), "per_worker": per_worker,
            "interactive": interactive, "text": text}


def code_report(scheme: Any, max_q: int | None = None) -> dict[str, Any]:
    """Everything ``inspect code`` shows about a built scheme (a JSON-able dict)."""
    import inspect

    code = scheme.code
    assignment = [list(a) for a in scheme.assignment]
    holders = _holders(scheme)
    if code is not None:
        redundancy = float(code.redundancy)
        note = re.split(r" \(|: |\. ", (inspect.getdoc(type(code).redundancy) or "").strip().rstrip("."), maxsplit=1)[0]
        note = note[:1].lower() + note[1:]
    else:
        redundancy = sum(len(a) for a in assignment) / scheme.n
        note = "mean partitions per worker in the first round"
    s = scheme.config.s
    q_max = min(2 * s if max_q is None else max_q, scheme.n)
    distortion = None
    if code is not None and getattr(code, "has_distortion", False):
        distortion = []
        for q in range(1, q_max + 1):
            fraction, ids = code.max_distortion(q)
            row = {"q": q, "fraction": float(fraction), "partitions": round(float(fraction) * code.k), "workers": list(ids)}
            if hasattr(code, "max_distortion_info"):
                info = code.max_distortion_info(q)
                row.update(method=info.method, upper_bound=float(info.upper_bound))
            distortion.append(row)
    coefficients = None
    if scheme.encoding_matrix is not None:
        coefs = [scheme.coefficients(w, p) if p else None for w, p in enumerate(scheme.assignment)]
        if any(c is not None for c in coefs):
            coefficients = [None if c is None else [float(x.real) if hasattr(x, "real") else float(x) for x in c]
                            for c in coefs]
    groups = [list(g) for g in code.groups] if hasattr(code, "groups") else None
    return {"scheme": scheme.name, "help": _scheme_help(scheme.name), "n": scheme.n, "k": scheme.k,
            "s": s, "code_s": getattr(code, "s", None), "byzantine": scheme.config.byzantine,
            "redundancy": redundancy, "redundancy_note": note, "code": repr(code) if code is not None else None,
            "group_size": getattr(code, "r", None) if groups is not None else None, "groups": groups,
            "assignment": assignment, "holders": holders, "coefficients": coefficients,
            "guarantee": _guarantee(scheme), "distortion": distortion,
            "distortion_note": None if distortion is not None else (
                "none: every message mixes several partitions, so an attack does not win whole partitions"
                if code is not None else "none: max_distortion belongs to assignment codes and this scheme has no code"),
            "message": _message(scheme), "describe": _norm(scheme.describe())}


def _holders(scheme: Any) -> list[list[int]]:
    """For each partition, the workers whose first-round assignment holds it."""
    holders: list[list[int]] = [[] for _ in range(scheme.k)]
    for w, parts in enumerate(scheme.assignment):
        for j in parts:
            if 0 <= j < scheme.k:
                holders[j].append(w)
    return holders


def _scheme_help(name: str) -> str:
    from codedbft.schemes.registry import SCHEMES

    return SCHEMES.help(name)


def _render_code(r: dict[str, Any]) -> str:
    out = [f"scheme {r['scheme']}: {r['help']}",
           f"  n = {r['n']} workers, k = {r['k']} partitions, redundancy {r['redundancy']:g} ({r['redundancy_note']}), "
           f"byzantine b = {r['byzantine']}, s = {r['s']}"
           + (f" (code s = {r['code_s']})" if r["code_s"] not in (None, r["s"]) else ""),
           f"  code: {r['code'] or 'none'}"]
    g = r["guarantee"]
    out.append("guarantee:")
    out.append(f"  {g['text']}")
    if g.get("corrects"):
        out.append(f"  corrects ({g['corrects']['scope']}): " + "; ".join(
            f"{c['errors']} error{'s' if c['errors'] != 1 else ''} + up to {c['erasures']} "
            f"erasure{'s' if c['erasures'] != 1 else ''}" for c in g["corrects"]["pairs"]))
    if r["groups"] is not None:
        out.append(f"groups of {r['group_size']} (group j computes partition j):")
        out += [f"  group {j}: workers {_ids(ws)}" for j, ws in enumerate(r["groups"])]
    out.append("assignment (worker: partitions it computes):")
    wid = len(str(r["n"] - 1))
    for w, parts in enumerate(r["assignment"]):
        line = f"  worker {w:>{wid}}: {_ids(parts)}"
        if r["coefficients"] is not None and r["coefficients"][w] is not None:
            line += "  coefficients " + _ids(f"{c:.4g}" for c in r["coefficients"][w])
        out.append(line)
    out.append("copies (partition: workers holding it):")
    pid = len(str(r["k"] - 1))
    out += [f"  partition {j:>{pid}}: {_ids(ws)}  {len(ws)} cop{'y' if len(ws) == 1 else 'ies'}"
            for j, ws in enumerate(r["holders"])]
    if r["distortion"] is not None:
        out.append(f"worst-case distortion max_distortion(q), q = 1..{len(r['distortion'])} "
                   f"(fraction of the k partitions an optimal q-worker attack corrupts):")
        heads = ["q", "corrupted", "fraction", "workers"]
        extra = r["distortion"] and "method" in r["distortion"][0]
        if extra:
            heads += ["method", "upper bound"]
        rows = []
        for d in r["distortion"]:
            row = [str(d["q"]), f"{d['partitions']}/{r['k']}", f"{d['fraction']:.4f}", _ids(d["workers"])]
            if extra:
                row += [d["method"], f"{d['upper_bound']:.4f}"]
            rows.append(row)
        out.append(_table(heads, rows) if rows else "  (q range empty: b = 0; use --max-q)")
        if any(d.get("method") == "heuristic" for d in r["distortion"]):
            out.append("  heuristic rows: greedy + local search, a lower bound on the maximum (the upper bound is proven)")
    else:
        out.append(f"worst-case distortion: {r['distortion_note']}")
    m = r["message"]
    out.append("message per worker:")
    out.append(f"  {m['text']}")
    if m["shapes"]:
        out.append("  shapes: " + ", ".join(f"{shape} x {count} worker{'s' if count != 1 else ''}"
                                            for shape, count in m["shapes"].items()))
    return "\n".join(out)


def _code_handler(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from codedbft.schemes.config import SchemeConfig
    from codedbft.schemes.registry import SCHEMES, build_scheme

    name = _entry(SCHEMES, args.scheme, parser).name
    if args.max_q is not None and args.max_q < 0:
        parser.error(f"--max-q must be >= 0, got {args.max_q}")
    try:
        config = SchemeConfig(name=name, workers=args.workers, byzantine=args.byzantine, tolerate=args.tolerate,
                              aggregator=args.aggregator, group_size=args.group_size, bucket=args.bucket,
                              params=dict(args.scheme_params or ()))
        scheme = build_scheme(config)
        report = code_report(scheme, args.max_q)
    except (ValueError, ImportError) as err:
        text = str(err)
        parser.error(text if text.split(" ", 1)[0].strip(":'\"") == name else f"{name}: {text}")
    return _emit(args, report, _render_code)


# ==================================================================================================
# inspect schemes / attacks / aggregators / ...
# ==================================================================================================


def _registry(what: str) -> Any:
    import importlib

    module, attr, _, _ = LISTINGS[what]
    return getattr(importlib.import_module(module), attr)


def registry_info(registry: Any, name: str) -> dict[str, Any]:
    """One entry: its help, its parameters with their defaults (from the signature) and its docstring."""
    import inspect

    entry = registry.entry(name)
    params: list[dict[str, Any]] = []
    try:
        sig = inspect.signature(entry.obj)
    except (TypeError, ValueError):
        sig = None
    for p in entry.params or ():
        default: Any = None
        required = False
        if sig is not None and p in sig.parameters:
            d = sig.parameters[p].default
            required = d is inspect.Parameter.empty
            plain = isinstance(d, (int, float, str, bool, list, tuple, dict, type(None)))
            default = None if required else _norm(d) if plain else repr(d)
        params.append({"name": p, "default": default, "required": required})
    return {"name": entry.name, "help": entry.help, "params": params, "accepts_any_param": entry.params is None,
            "doc": _first_paragraph(getattr(entry.obj, "__doc__", None))}


def _render_params(params: list[dict[str, Any]], any_param: bool) -> str:
    if any_param:
        return "any (checked by the object)"
    text = ", ".join(p["name"] + ("" if p["required"] else "=" + ("None" if p["default"] is None else _fmt(p["default"])))
                     for p in params) or "none"
    return text if len(text) <= 60 else text[:57] + "..."  # the detail view (inspect WHAT NAME) has them all


def _render_listing(r: dict[str, Any]) -> str:
    if "entry" in r:
        e = r["entry"]
        out = [f"{r['kind']} {e['name']}: {e['help']}"]
        if e["doc"] and e["doc"] != e["help"]:
            out.append(f"  {e['doc']}")
        out.append("parameters:")
        if e["accepts_any_param"]:
            out.append("  any keyword (checked by the object)")
        elif e["params"]:
            out.append(_table(["name", "default"], [[p["name"], "(required)" if p["required"] else
                                                     "None" if p["default"] is None else _fmt(p["default"])]
                                                    for p in e["params"]]))
        else:
            out.append("  none")
        return "\n".join(out)
    rows = [[e["name"], _render_params(e["params"], e["accepts_any_param"]), e["help"]] for e in r["entries"]]
    return f"{len(rows)} {r['what']} ({r['kind']} registry):\n" + _table(["name", "parameters", "description"], rows)


def _listing_handler(args: argparse.Namespace, parser: argparse.ArgumentParser, what: str) -> int:
    registry = _registry(what)
    if args.name:
        name = _entry(registry, args.name, parser).name
        return _emit(args, {"what": what, "kind": registry.kind, "entry": registry_info(registry, name)}, _render_listing)
    return _emit(args, {"what": what, "kind": registry.kind,
                        "entries": [registry_info(registry, n) for n in registry.available()]}, _render_listing)


def _schemes_handler(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from codedbft.schemes.registry import SCHEMES

    if args.name:
        name = _entry(SCHEMES, args.name, parser).name
        return _emit(args, scheme_info(name), _render_scheme)
    report = {"schemes": [scheme_info(n) for n in SCHEMES.available()]}

    def render(r: dict[str, Any]) -> str:
        rows = []
        for s in r["schemes"]:
            ps = ", ".join(f"{p['name']}=" + ("unset" if p["default"] is None else _fmt(p["default"]))
                           for p in s["scheme_params"]) or "-"
            opts = ", ".join(o["name"] + (f"={_fmt(o['default'])}" if o["default"] is not None else "") for o in s["options"])
            rows.append([s["name"], ps, opts, s["help"]])
        return (f"{len(rows)} schemes (codedbft inspect schemes NAME for constraints):\n"
                + _table(["name", "scheme params", "options read (defaults)", "description"], rows))

    return _emit(args, report, render)


# ==================================================================================================
# inspect run
# ==================================================================================================


def _runconfig_defaults() -> dict[str, Any]:
    from dataclasses import MISSING, fields

    from codedbft.cluster.config import RunConfig

    return {f.name: _norm(f.default if f.default is not MISSING else f.default_factory())  # type: ignore[misc]
            for f in fields(RunConfig)}


def _read_json(path: Path, parser: argparse.ArgumentParser) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        parser.error(f"cannot read {path}: {err}")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a partial last line from a killed run
            break
    return rows


def _files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")) if folder.is_dir() else []


def _check_dir(path: str, what: str, parser: argparse.ArgumentParser) -> Path:
    root = Path(path)
    if not root.exists():
        parser.error(f"no such {what} directory: {root}")
    if not root.is_dir():
        parser.error(f"{root} is not a directory (expected a {what} directory)")
    return root


def run_report(root: Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """config (with the keys that differ from RunConfig's defaults), summary, flags per worker, plots."""
    if not (root / "config.json").is_file():
        parser.error(f"{root} is not a run directory (no config.json; a run directory holds config.json, "
                     f"metrics.jsonl, summary.json, checkpoints/ and plots/)")
    config = _read_json(root / "config.json", parser)
    if not isinstance(config, dict):
        parser.error(f"{root / 'config.json'} does not hold a JSON object")
    summary = _read_json(root / "summary.json", parser) if (root / "summary.json").is_file() else None
    metrics = _read_jsonl(root / "metrics.jsonl")
    defaults = _runconfig_defaults()
    changed = {k: {"value": v, "default": defaults[k]} for k, v in config.items()
               if k in defaults and _norm(v) != defaults[k]}
    extra = {k: v for k, v in config.items() if k not in defaults}

    n = None
    scheme_info = config.get("scheme_info") if isinstance(config.get("scheme_info"), dict) else {}
    if isinstance(scheme_info.get("n"), int):
        n = scheme_info["n"]
    flagged = summary.get("flagged_per_worker") if isinstance(summary, dict) else None
    source = "summary.json flagged_per_worker"
    if flagged is None and any("flagged" in r for r in metrics):
        source = "metrics.jsonl flagged lists"
        n = n or config.get("workers") or 0
        flagged = [0] * int(n)
        for row in metrics:
            for w in row.get("flagged") or ():
                if 0 <= int(w) < len(flagged):
                    flagged[int(w)] += 1
    byz_steps = None
    if any("byzantine" in r for r in metrics):
        size = len(flagged) if flagged is not None else int(n or config.get("workers") or 0)
        byz_steps = [0] * size
        for row in metrics:
            for w in row.get("byzantine") or ():
                if 0 <= int(w) < size:
                    byz_steps[int(w)] += 1
    steps = [r["step"] for r in metrics if isinstance(r.get("step"), int)]
    last_acc = next((r["test_accuracy"] for r in reversed(metrics) if r.get("test_accuracy") is not None), None)
    return {"dir": str(root), "config": config, "changed": changed, "extra": extra, "summary": summary,
            "flagged_per_worker": flagged, "flagged_source": source if flagged is not None else None,
            "byzantine_steps_per_worker": byz_steps,
            "byzantine_workers": [w for w, c in enumerate(byz_steps or []) if c],
            "metrics": {"rows": len(metrics), "first_step": min(steps) if steps else None,
                        "last_step": max(steps) if steps else None, "last_test_accuracy": last_acc},
            "plots": _files(root / "plots"), "checkpoints": _files(root / "checkpoints")}


def _bars(values: list[int], width: int = 40) -> list[str]:
    top = max(values) if values else 0
    return ["#" * (round(v / top * width) if top else 0) + ("." if v and top and round(v / top * width) == 0 else "")
            for v in values]


def _render_run(r: dict[str, Any], changed_only: bool = False) -> str:
    out = [f"run {r['dir']}"]
    out.append(f"config ({len(r['changed'])} key{'s' if len(r['changed']) != 1 else ''} differ from the RunConfig "
               f"defaults, marked *" + ("; --changed: only those" if changed_only else "") + "):")
    keys = [k for k in r["config"] if k not in r["extra"]]
    width = max((len(k) for k in keys), default=0)
    for k in keys:
        mark = k in r["changed"]
        if changed_only and not mark:
            continue
        line = f"  {'*' if mark else ' '} {k:<{width}}  {_fmt(r['config'][k])}"
        if mark:
            default = r["changed"][k]["default"]
            line = _bold(line + f"   (default: {'none' if default is None else _fmt(default)})")
        out.append(line)
    for k, v in r["extra"].items():
        out.append(f"  {k}: {_fmt(v)}")
    s = r["summary"]
    if isinstance(s, dict):
        out.append("summary (summary.json):")
        skip = {"flagged_per_worker"}
        width = max((len(k) for k in s if k not in skip), default=0)
        out += [f"  {k:<{width}}  {_fmt(v)}" for k, v in s.items() if k not in skip]
    else:
        out.append("summary: none (summary.json missing: the run has not finished)")
    flagged, byz = r["flagged_per_worker"], r["byzantine_steps_per_worker"]
    if flagged is not None:
        total = sum(flagged)
        out.append(f"flagged per worker ({r['flagged_source']}; total {total}"
                   + ("; byz = steps the worker was Byzantine, from metrics.jsonl" if byz is not None else "") + "):")
        wid = len(str(len(flagged) - 1))
        cw = len(str(max(flagged, default=0)))
        for w, (v, bar) in enumerate(zip(flagged, _bars(flagged))):
            line = f"  worker {w:>{wid}} | {v:>{cw}} {bar}"
            if byz is not None and w < len(byz) and byz[w]:
                line = line.ljust(12 + wid + cw + 40) + f"  byz {byz[w]}"
            out.append(line.rstrip())
    if byz is not None:
        out.append(f"byzantine workers (metrics.jsonl): {_ids(r['byzantine_workers']) if r['byzantine_workers'] else 'none'}")
    m = r["metrics"]
    out.append(f"metrics.jsonl: {m['rows']} rows" + (f", steps {m['first_step']}..{m['last_step']}" if m["rows"] else ""))
    out.append("plots:" + ("" if r["plots"] else " none"))
    out += [f"  {p}" for p in r["plots"]]
    if r["checkpoints"]:
        out.append("checkpoints:")
        out += [f"  {p}" for p in r["checkpoints"]]
    return "\n".join(out)


def _run_handler(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    root = _check_dir(args.dir, "run", parser)
    report = run_report(root, parser)
    return _emit(args, report, lambda r: _render_run(r, args.changed))


# ==================================================================================================
# inspect sweep
# ==================================================================================================


def _read_csv(path: Path, parser: argparse.ArgumentParser) -> tuple[list[str], list[dict[str, str]]] | None:
    import csv

    if not path.is_file():
        return None
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = [dict(r) for r in reader]
            return list(reader.fieldnames or []), rows
    except (OSError, csv.Error, UnicodeDecodeError) as err:
        parser.error(f"cannot read {path}: {err}")


def _axis_names(axes: Any) -> list[str]:
    if isinstance(axes, dict):
        return [str(k) for k in axes]
    names = []
    for a in axes or ():
        if isinstance(a, str):
            names.append(a)
        elif isinstance(a, dict):
            for key in ("name", "key", "axis", "field"):
                if key in a:
                    names.append(str(a[key]))
                    break
    return names


def sweep_report(root: Path, parser: argparse.ArgumentParser, columns: list[str] | None = None) -> dict[str, Any]:
    """sweep.json, the summary table, status counts, failures and plots of a sweep directory."""
    found = [n for n in ("sweep.json", "results.csv", "summary.csv") if (root / n).is_file()]
    if not found:
        parser.error(f"{root} is not a sweep directory (no sweep.json, results.csv or summary.csv)")
    meta = _read_json(root / "sweep.json", parser) if (root / "sweep.json").is_file() else {}
    if not isinstance(meta, dict):
        parser.error(f"{root / 'sweep.json'} does not hold a JSON object")
    results = _read_csv(root / "results.csv", parser)
    summary = _read_csv(root / "summary.csv", parser)
    tuned = _read_csv(root / "tuned.csv", parser)
    axes = _axis_names(meta.get("axes"))
    scols = summary[0] if summary else []
    if not axes and summary:  # no sweep.json: the columns that are not statistics
        axes = [c for c in scols if not c.endswith(("_mean", "_std")) and c not in ("cell", "seeds", "n_seeds", "runs")]
    if columns:
        unknown = [c for c in columns if c not in scols]
        if unknown:
            parser.error(f"--columns: {unknown} not in summary.csv (columns: {', '.join(scols)})")
        chosen = list(columns)
    else:
        lead = [c for c in ("cell",) if c in scols]
        stats = [c for c in ("seeds", "n_seeds", "final_test_accuracy_mean", "final_test_accuracy_std", "step_ms_mean")
                 if c in scols]
        if not any(c.endswith(("_mean", "_std")) for c in stats):
            stats += [c for c in scols if c.endswith("_mean")][:3]
        chosen = lead + [a for a in axes if a in scols and a not in lead] + stats
    counts: dict[str, int] = {}
    failures = []
    if results:
        for row in results[1]:
            status = (row.get("status") or "").strip() or "unknown"
            counts[status] = counts.get(status, 0) + 1
            error = (row.get("error") or "").strip()
            if status.lower() not in _OK_STATUSES or error:
                failures.append({"cell": row.get("cell"), "seed": row.get("seed"), "status": status, "error": error,
                                 **{a: row.get(a) for a in axes if a in row}, "run_dir": row.get("run_dir")})
    cells = meta.get("cells")
    return {"dir": str(root), "name": meta.get("name"), "axes": meta.get("axes"), "axis_names": axes,
            "tune": meta.get("tune"), "seeds": meta.get("seeds"),
            "cells": len(cells) if isinstance(cells, (list, dict)) else cells,
            "runs": len(results[1]) if results else None, "status_counts": counts, "failures": failures,
            "summary": {"columns": chosen, "all_columns": scols, "rows": summary[1] if summary else []},
            "tuned": {"columns": tuned[0], "rows": tuned[1]} if tuned else None,
            "plots": _files(root / "plots"), "files": found}


def _render_sweep(r: dict[str, Any]) -> str:
    out = [f"sweep {r['name'] or '(unnamed)'} in {r['dir']}"]
    if r["axes"] is not None:
        out.append(f"  axes: {_fmt(r['axes'])}")
    if r["tune"]:
        out.append(f"  tune: {_fmt(r['tune'])}")
    if r["seeds"] is not None:
        out.append(f"  seeds: {_fmt(r['seeds'])}")
    out.append(f"  cells: {_fmt(r['cells'])}, runs: {_fmt(r['runs'])}")
    if r["status_counts"]:
        out.append("status (results.csv): " + ", ".join(f"{k} {v}" for k, v in sorted(r["status_counts"].items())))
    rows = r["summary"]["rows"]
    cols = r["summary"]["columns"]
    if rows:
        out.append(f"summary.csv ({len(rows)} cell{'s' if len(rows) != 1 else ''}; --columns to choose):")
        out.append(_table(cols, [[_cell(row.get(c)) for c in cols] for row in rows]))
    else:
        out.append("summary.csv: none")
    if r["tuned"]:
        out.append(f"tuned.csv ({len(r['tuned']['rows'])} rows):")
        out.append(_table(r["tuned"]["columns"], [[_cell(row.get(c)) for c in r["tuned"]["columns"]]
                                                  for row in r["tuned"]["rows"]]))
    if r["failures"]:
        out.append(f"failed or invalid runs ({len(r['failures'])}):")
        for f in r["failures"][:_MAX_FAILURES]:
            where = ", ".join(f"{a}={f[a]}" for a in r["axis_names"] if a in f)
            err = f["error"] if len(f["error"]) <= 300 else f["error"][:297] + "..."
            out.append(f"  cell {f['cell']} seed {f['seed']} [{f['status']}]" + (f" ({where})" if where else "")
                       + (f": {err}" if err else ""))
        if len(r["failures"]) > _MAX_FAILURES:
            out.append(f"  ... {len(r['failures']) - _MAX_FAILURES} more (--json lists them all)")
    out.append("plots:" + ("" if r["plots"] else " none"))
    out += [f"  {p}" for p in r["plots"]]
    return "\n".join(out)


def _sweep_handler(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    root = _check_dir(args.dir, "sweep", parser)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    return _emit(args, sweep_report(root, parser, columns), _render_sweep)


# ==================================================================================================
# the parser
# ==================================================================================================


def add_parser(sub: Any) -> None:
    """Add ``inspect`` and its sub-subcommands (each sets ``handler(args) -> exit code``)."""
    from dataclasses import fields

    from codedbft.cli import _Formatter, _kv
    from codedbft.schemes.config import SchemeConfig

    p = sub.add_parser("inspect", help="inspect a code, the registries, a run or a sweep",
                       description="Show what a scheme's code does, what the registries hold, what a run or a sweep "
                                   "produced. --json on each prints one JSON object for scripts.",
                       formatter_class=_Formatter)
    isub = p.add_subparsers(dest="inspect_what", required=True, metavar="WHAT")

    def leaf(name: str, help: str, handler: Callable[..., int], aliases: tuple[str, ...] = ()) -> argparse.ArgumentParser:
        q = isub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", aliases=list(aliases),
                            formatter_class=_Formatter)
        q.add_argument("--json", action="store_true", help="print one JSON object (and nothing else) on stdout")
        q.set_defaults(handler=lambda a: handler(a, q))
        return q

    defaults = {f.name: f.default for f in fields(SchemeConfig)}
    c = leaf("code", "a scheme's code: assignment, guarantee, worst-case distortion, message shape", _code_handler)
    c.add_argument("scheme", metavar="SCHEME", help="scheme name (codedbft inspect schemes lists them)")
    c.add_argument("--workers", "-n", type=int, default=defaults["workers"],
                   help=f"number of workers n (default: {defaults['workers']})")
    c.add_argument("--byzantine", "-b", type=int, default=defaults["byzantine"],
                   help=f"Byzantine workers b; also the q range of the distortion table, 1..2s "
                        f"(default: {defaults['byzantine']})")
    c.add_argument("--tolerate", "-s", type=int, default=None, help="s the code is built for (default: --byzantine)")
    c.add_argument("--group-size", type=int, default=None, help="DETOX group size r / ByzShield replication r")
    c.add_argument("--aggregator", default=None, help="robust rule (vanilla, detox outer, byzshield files)")
    c.add_argument("--bucket", type=int, default=None, help="DETOX bucket size (groups per bucket mean)")
    c.add_argument("--scheme-param", dest="scheme_params", type=_kv, action="append", default=None,
                   metavar="KEY=VALUE", help="a scheme parameter (repeatable), e.g. l=5 for byzshield")
    c.add_argument("--max-q", type=int, default=None,
                   help="largest q of the distortion table (default: 2s; 0: no table)")

    sc = leaf("schemes", "the schemes: parameters, defaults, constraints, description", _schemes_handler)
    sc.add_argument("name", nargs="?", metavar="NAME", help="one scheme in detail (its constraints)")
    for what, (_, _, aliases, noun) in LISTINGS.items():
        lp = leaf(what, f"the registered {noun}: names, parameters with defaults, one-line help",
                  lambda a, q, w=what: _listing_handler(a, q, w), aliases)
        lp.add_argument("name", nargs="?", metavar="NAME", help=f"one of the {what} in detail")

    r = leaf("run", "a run directory: config (changes from the defaults), summary, flags per worker, plots", _run_handler)
    r.add_argument("dir", metavar="DIR", help="the run directory (holds config.json)")
    r.add_argument("--changed", action="store_true", help="show only the config keys that differ from the defaults")

    s = leaf("sweep", "a sweep directory: summary table, run statuses, failures, plots", _sweep_handler)
    s.add_argument("dir", metavar="DIR", help="the sweep directory (holds sweep.json, results.csv, summary.csv)")
    s.add_argument("--columns", default=None, metavar="A,B,...",
                   help="summary.csv columns to show (default: cell, the axes, final_test_accuracy_mean/_std, step_ms_mean)")
