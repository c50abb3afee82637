"""Validation of a suite file's SCMs: the JSON Schema, then one line per problem naming the SCM and the field
(the graph, the numbers, a stored oracle's structure), and whether the compiled float32 path can run an SCM and
its normalized improvement means something (``suite_io`` reads the files and builds the SCMs)."""

from __future__ import annotations

import json
import math
import unicodedata
from collections import Counter
from functools import cache
from importlib.resources import files

import jsonschema
import numpy as np

from ..core.graph import ancestors, cycle_nodes, topological_order
from ..core.mechanisms import NOISE_REACH, value_bounds
from ..core.scm import FUNCTIONS, MIN_ORACLE_GAP, SCM, has_oracle_gap

# The compiled path runs in float32 and squares sampled values (standardization, regression): every number of an
# SCM and every exact quantity derived from it must stay below this magnitude (sqrt(float32 max) is 1.8e19).
MAX_MAGNITUDE = 1e15


@cache
def suite_schema() -> dict:
    return json.loads(files("workflow_src").joinpath("schemas/suite.schema.json").read_text())


def reject_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name} is not valid JSON")


def _json_path(path) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in path]
    return "".join(parts).lstrip(".") or "(top level)"


def schema_problems(doc) -> list[str]:
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


def control_characters(text: str) -> bool:
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


def scm_problems(raw: dict) -> list[str]:
    """Semantic checks of one schema-valid SCM entry; each line names the field."""
    problems: list[str] = []

    def bad(field: str, msg: str):
        problems.append(f"scm {raw['id']!r}: {field}: {msg}")

    nodes = raw["nodes"]
    index = {name: i for i, name in enumerate(nodes)}
    for field in ("id", "family"):
        if control_characters(raw.get(field, "")):
            bad(field, "contains a control character")
    control = [name for name in nodes if control_characters(name)]
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
        if "coef" in edge and (msg := _number_problem(edge["coef"])) is not None:
            bad(f"edges[{k}].coef", msg)
        for m, term in enumerate(edge.get("terms", ())):
            for key in ("weight", "scale", "shift"):
                if key in term and (msg := _number_problem(term[key])) is not None:
                    bad(f"edges[{k}].terms[{m}].{key}", msg)
    for key in ("bias", "noise_std"):
        for name, value in raw.get(key, {}).items():
            if name not in index:
                bad(f"{key}.{name}", f"unknown node {name!r}")
            elif (msg := _number_problem(value)) is not None:
                bad(f"{key}.{name}", msg)
            elif key == "noise_std" and value <= 0:
                bad(f"{key}.{name}", f"must be positive, got {value}")
    latent = raw.get("latent", [])
    for k, name in enumerate(latent):
        if name not in index:
            bad(f"latent[{k}]", f"unknown node {name!r}")
        elif name == raw["target"]:
            bad(f"latent[{k}]", "the target may not be latent")
    for name, (lo, hi) in raw["ranges"].items():
        if name not in index:
            bad(f"ranges.{name}", f"unknown node {name!r}")
        elif name == raw["target"]:
            bad(f"ranges.{name}", "the target may not be intervened on")
        elif name in latent:
            bad(f"ranges.{name}", "a latent variable is never shown and may not be intervened on")
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
    if "oracle" in raw and not problems:
        problems += [f"scm {raw['id']!r}: oracle.{msg}" for msg in _oracle_problems(raw, raw["oracle"])]
    return problems


def _oracle_problems(raw: dict, oracle: dict) -> list[str]:
    """Structural checks of a stored oracle (its numbers are checked against the SCM by ``oracle="verify"``)."""
    from ..core.curves import MAX_CURVE_POINTS

    problems = []
    ranges = raw["ranges"]
    if oracle["variable"] not in ranges:
        problems.append(f"variable: {oracle['variable']!r} is not an intervenable variable")
    elif not ranges[oracle["variable"]][0] <= oracle["value"] <= ranges[oracle["variable"]][1]:
        problems.append(f"value: {oracle['value']!r} is outside the range {ranges[oracle['variable']]} of "
                        f"{oracle['variable']!r}")
    if set(oracle["curves"]) != set(ranges):
        problems.append(f"curves: for {sorted(oracle['curves'])}, expected one per intervenable variable "
                        f"{sorted(ranges)}")
    for key in ("mu_y", "mu_y_se", "y_star", "y_star_se", "value", "random"):
        if (msg := _number_problem(oracle[key])) is not None:
            problems.append(f"{key}: {msg}")
    for name, curve in oracle["curves"].items():
        grid, mean = curve["grid"], curve["mean"]
        if len(grid) != len(mean) or len(grid) > MAX_CURVE_POINTS:
            problems.append(f"curves.{name}: grid and mean must have the same length, at most {MAX_CURVE_POINTS}")
        elif any(_number_problem(x) for x in grid + mean + [curve["se"]]):
            problems.append(f"curves.{name}: every number must be finite and within +-{MAX_MAGNITUDE:g}")
        elif name in ranges and (grid[0] != ranges[name][0] or grid[-1] != ranges[name][1]
                                 or any(b <= a for a, b in zip(grid, grid[1:]))):
            problems.append(f"curves.{name}.grid: must increase from the range's low to its high end")
    return problems


def mechanism_problem(scm: SCM, term_names: list[str]) -> str | None:
    """Why the compiled float32 path cannot run a nonlinear SCM's mechanisms, or None: an ``exp`` term whose
    input can exceed ``log(MAX_MAGNITUDE)``, or a variable whose reachable values exceed ``MAX_MAGNITUDE``."""
    limit = math.log(MAX_MAGNITUDE)
    found = []

    def on_term(k, u_lo, u_hi):
        name = FUNCTIONS[scm.terms.fn[k]]
        if not found and name == "exp" and not u_hi <= limit:
            found.append(f"{term_names[k]} (exp, into {scm.nodes[scm.terms.child[k]]!r}): its input reaches "
                         f"{u_hi:.3g} on reachable values, and exp of more than {limit:.3g} is beyond "
                         f"+-{MAX_MAGNITUDE:g}: the compiled float32 path would overflow")
        elif not found and name in ("square", "gauss") and not max(abs(u_lo), abs(u_hi)) ** 2 <= MAX_MAGNITUDE:
            found.append(f"{term_names[k]} ({name}, into {scm.nodes[scm.terms.child[k]]!r}): its input reaches "
                         f"{max(abs(u_lo), abs(u_hi)):.3g}, whose square is beyond +-{MAX_MAGNITUDE:g}")

    lo, hi = value_bounds(scm, on_term)
    if found:
        return found[0]
    for j in topological_order(scm.adjacency):
        worst = max(abs(lo[j]), abs(hi[j]))
        if not worst <= MAX_MAGNITUDE:  # also catches nan
            return (f"node {scm.nodes[j]!r}: reachable values reach {worst:.3g}, beyond +-{MAX_MAGNITUDE:g}: "
                    "the compiled float32 path would overflow")
    return None


def exact_problem(scm: SCM) -> str | None:
    """Why the compiled path cannot run ``scm`` or its normalized improvement would mean nothing, or None."""
    if not scm.is_linear:
        from .oracle import oracle_problem

        return oracle_problem(scm.oracle, scm.nodes)
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
