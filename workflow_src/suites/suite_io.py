"""Suite files (``acbo-suite/1``): reading, validation and deterministic writing."""

from __future__ import annotations

import json
import math
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path

import jsonschema
import numpy as np

from ..atomic import atomic_write_text
from ..core.scm import MIN_ORACLE_GAP, SCM, ancestors, cycle_nodes, has_oracle_gap, topological_order
from ..errors import SuiteError

# The compiled path runs in float32 and squares sampled values (standardization, regression): every number of an
# SCM and every exact quantity derived from it must stay below this magnitude (sqrt(float32 max) is 1.8e19).
MAX_MAGNITUDE = 1e15
NOISE_REACH = 10.0  # noise draws counted (in standard deviations) when bounding the values a variable can take

SUITE_FORMAT = "acbo-suite/1"


@dataclass(frozen=True)
class Suite:
    name: str
    scms: tuple[SCM, ...]
    level: int | None = None
    seed: int | None = None


@cache
def suite_schema() -> dict:
    return json.loads(files("workflow_src").joinpath("schemas/suite.schema.json").read_text())


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name} is not valid JSON")


def _json_path(path) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in path]
    return "".join(parts).lstrip(".") or "(top level)"


def _schema_problems(doc) -> list[str]:
    validator = jsonschema.Draft202012Validator(suite_schema())
    problems = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        path = list(err.absolute_path)
        where = _json_path(path)
        if len(path) >= 2 and path[0] == "scms" and isinstance(path[1], int):
            scm = doc["scms"][path[1]]
            scm_id = scm.get("id", f"#{path[1]}") if isinstance(scm, dict) else f"#{path[1]}"
            where = f"scm {scm_id!r}: " + (_json_path(path[2:]) if len(path) > 2 else "(scm)")
        problems.append(f"{where}: {err.message}")
    return problems


def _control_characters(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


def _number_problem(value: float) -> str | None:
    try:
        value = float(value)  # a JSON integer may be too large for any float
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        return f"must be finite, got {value}"
    if abs(value) > MAX_MAGNITUDE:
        return f"{value:g} is beyond +-{MAX_MAGNITUDE:g}, which overflows the compiled float32 path"
    return None


def _scm_problems(raw: dict) -> list[str]:
    """Semantic checks of one schema-valid SCM entry; each line names the field."""
    problems: list[str] = []

    def bad(field: str, msg: str):
        problems.append(f"scm {raw['id']!r}: {field}: {msg}")

    nodes = raw["nodes"]
    index = {name: i for i, name in enumerate(nodes)}
    for field in ("id", "family"):
        if _control_characters(raw.get(field, "")):
            bad(field, "contains a control character")
    control = [name for name in nodes if _control_characters(name)]
    if control:
        bad("nodes", f"control characters in node names {control}")
    if len(index) != len(nodes):
        dupes = sorted(name for name, count in Counter(nodes).items() if count > 1)
        bad("nodes", f"duplicate node names {dupes}")
    if raw["target"] not in index:
        bad("target", f"unknown node {raw['target']!r}")
    seen_edges = set()
    for k, edge in enumerate(raw["edges"]):
        for end in ("parent", "child"):
            if edge[end] not in index:
                bad(f"edges[{k}].{end}", f"unknown node {edge[end]!r}")
        if edge["parent"] == edge["child"]:
            bad(f"edges[{k}]", f"self-loop on {edge['parent']!r}")
        if (edge["parent"], edge["child"]) in seen_edges:
            bad(f"edges[{k}]", f"duplicate edge {edge['parent']!r} -> {edge['child']!r}")
        seen_edges.add((edge["parent"], edge["child"]))
        if (msg := _number_problem(edge["coef"])) is not None:
            bad(f"edges[{k}].coef", msg)
    for key in ("bias", "noise_std"):
        for name, value in raw.get(key, {}).items():
            if name not in index:
                bad(f"{key}.{name}", f"unknown node {name!r}")
            elif (msg := _number_problem(value)) is not None:
                bad(f"{key}.{name}", msg)
            elif key == "noise_std" and value <= 0:
                bad(f"{key}.{name}", f"must be positive, got {value}")
    for name, (lo, hi) in raw["ranges"].items():
        if name not in index:
            bad(f"ranges.{name}", f"unknown node {name!r}")
        elif name == raw["target"]:
            bad(f"ranges.{name}", "the target may not be intervened on")
        if (msg := _number_problem(lo) or _number_problem(hi)) is not None:
            bad(f"ranges.{name}", msg)
        elif lo >= hi:
            bad(f"ranges.{name}", f"lower bound must be below upper bound, got [{lo}, {hi}]")
    if problems:
        return problems
    adjacency = np.zeros((len(nodes), len(nodes)), bool)
    for edge in raw["edges"]:
        adjacency[index[edge["parent"]], index[edge["child"]]] = True
    if topological_order(adjacency) is None:
        bad("edges", f"graph has a cycle through {[nodes[i] for i in cycle_nodes(adjacency)]}")
        return problems
    anc = ancestors(adjacency, index[raw["target"]])
    if not any(anc[index[name]] for name in raw["ranges"]):
        bad("ranges", f"target {raw['target']!r} has no intervenable ancestor")
    return problems


def _exact_problem(scm: SCM) -> str | None:
    """Why the compiled path cannot run ``scm`` or its normalized improvement would mean nothing, or None."""
    allowed = scm.intervenable
    with np.errstate(all="ignore"):
        effects = scm.total_effects
        mu = scm.mu
        ends = np.concatenate([scm.expected_target(np.flatnonzero(allowed), scm.lo[allowed]),
                               scm.expected_target(np.flatnonzero(allowed), scm.hi[allowed])])
        # how far any variable can go: every cause at its mean shift, noise draw or range end, through |T|
        ends_abs = np.where(allowed, np.maximum(abs(scm.lo), abs(scm.hi)), 0.0)
        push = np.abs(scm.bias) + NOISE_REACH * scm.noise_std + ends_abs
        reach = np.abs(effects).T @ push
    for what, values in (("total effects", effects), ("observational means", mu),
                         ("E[Y|do] at the range ends", ends), ("reachable variable values", reach)):
        worst = np.max(np.abs(values))
        if not worst <= MAX_MAGNITUDE:  # also catches nan
            return f"{what} reach {worst:.3g}, beyond +-{MAX_MAGNITUDE:g}: the compiled float32 path would overflow"
    target = scm.nodes[scm.target]
    if not np.any(effects[allowed, scm.target] != 0):
        return f"target {target!r} has no effective path: every intervenable variable's total effect on it is 0"
    ex = scm.exact()
    if not has_oracle_gap(ex):
        return (f"oracle gap mu_y - y* = {ex.mu_y - ex.y_star:.3g} is not above {MIN_ORACLE_GAP:g}: "
                "normalized improvement would be rounding noise")
    return None


def _build_scm(raw: dict) -> SCM:
    nodes = tuple(raw["nodes"])
    index = {name: i for i, name in enumerate(nodes)}
    n = len(nodes)
    weights = np.zeros((n, n))
    for edge in raw["edges"]:
        weights[index[edge["parent"]], index[edge["child"]]] = edge["coef"]
    bias = np.array([raw.get("bias", {}).get(v, 0.0) for v in nodes], float)
    noise = np.array([raw.get("noise_std", {}).get(v, 1.0) for v in nodes], float)
    lo = np.full(n, np.nan)
    hi = np.full(n, np.nan)
    for name, (a, b) in raw["ranges"].items():
        lo[index[name]], hi[index[name]] = a, b
    return SCM(
        id=raw["id"], nodes=nodes, target=index[raw["target"]], weights=weights, bias=bias,
        noise_std=noise, lo=lo, hi=hi, family=raw.get("family", "custom"), level=raw.get("level", 0),
    )


def parse_suite(doc, path: str = "<suite>") -> Suite:
    """Validate a decoded suite document and build its SCMs; raise ``SuiteError`` listing all problems."""
    if not isinstance(doc, dict):
        raise SuiteError(path, ["(top level): must be a JSON object"])
    if doc.get("format") != SUITE_FORMAT:
        raise SuiteError(path, [f"format: expected {SUITE_FORMAT!r}, got {doc.get('format')!r}"])
    problems = _schema_problems(doc)
    if problems:
        raise SuiteError(path, problems)
    if _control_characters(doc["name"]):
        problems.append("name: contains a control character")
    counts = Counter(s["id"] for s in doc["scms"])
    problems += [f"scm {i!r}: id: duplicate id" for i in sorted(i for i, c in counts.items() if c > 1)]
    for raw in doc["scms"]:
        problems.extend(_scm_problems(raw))
    if problems:
        raise SuiteError(path, problems)
    level = doc.get("level")
    scms = []
    for raw in doc["scms"]:
        raw = {"level": level or 0, **raw}
        scm = _build_scm(raw)
        if (msg := _exact_problem(scm)) is not None:
            problems.append(f"scm {scm.id!r}: {msg}")
        scms.append(scm)
    if problems:
        raise SuiteError(path, problems)
    return Suite(name=doc["name"], scms=tuple(scms), level=level, seed=doc.get("seed"))


def load_suite(path: str | Path) -> Suite:
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SuiteError(path, [f"cannot read file: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise SuiteError(path, [f"not UTF-8 text: byte {exc.start} cannot be decoded"]) from None
    too_deep = SuiteError(path, ["(top level): nested too deeply to be a suite file"])
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise too_deep from None
    except ValueError as exc:
        raise SuiteError(path, [f"not valid JSON: {exc}"]) from None
    try:
        return parse_suite(doc, path)
    except RecursionError:
        raise too_deep from None


def scm_to_dict(scm: SCM) -> dict:
    names = scm.nodes
    edges = [
        {"parent": names[i], "child": names[j], "coef": float(scm.weights[i, j])}
        for i, j in zip(*np.nonzero(scm.weights))
    ]
    allowed = scm.intervenable
    return {
        "id": scm.id,
        "family": scm.family,
        "level": scm.level,
        "nodes": list(names),
        "target": names[scm.target],
        "edges": edges,
        "bias": {v: float(b) for v, b in zip(names, scm.bias)},
        "noise_std": {v: float(s) for v, s in zip(names, scm.noise_std)},
        "ranges": {v: [float(scm.lo[i]), float(scm.hi[i])] for i, v in enumerate(names) if allowed[i]},
    }


def suite_to_json(suite: Suite) -> str:
    doc = {"format": SUITE_FORMAT, "name": suite.name}
    if suite.level is not None:
        doc["level"] = suite.level
    if suite.seed is not None:
        doc["seed"] = suite.seed
    # one SCM per line: diffable, and small enough to read
    head = json.dumps(doc)[:-1]
    scms = ",\n  ".join(json.dumps(scm_to_dict(s)) for s in suite.scms)
    return f'{head}, "scms": [\n  {scms}\n]}}\n'


def write_suite(suite: Suite, path: str | Path) -> None:
    atomic_write_text(path, suite_to_json(suite))
