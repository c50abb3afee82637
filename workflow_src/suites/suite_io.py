"""Suite files (``acbo-suite/1`` linear, ``acbo-suite/2`` nonlinear): reading, validation and deterministic writing.

``acbo-suite/2`` keeps everything of ``/1`` and lets each edge carry mechanism ``terms`` (``mechanisms.py``)
beside its optional linear ``coef`` (default 0 when terms are given), each SCM a list of ``latent`` nodes
(simulated, never shown to a method nor intervenable) and an ``oracle`` (``oracle.py``): written at generation,
computed on reading when a file lacks it, and verified against a fresh computation wherever a file is read
(``load_suite``; once per file content, ``verified``), so a stored oracle that lies is never used as the truth.
"""

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
from ..core.graph import ancestors, cycle_nodes, topological_order
from ..core.mechanisms import value_bounds
from ..core.scm import FUNCTIONS, MIN_ORACLE_GAP, SCM, Terms, has_oracle_gap
from ..errors import SuiteError
from .verified import is_verified, mark_verified

# The compiled path runs in float32 and squares sampled values (standardization, regression): every number of an
# SCM and every exact quantity derived from it must stay below this magnitude (sqrt(float32 max) is 1.8e19).
MAX_MAGNITUDE = 1e15
NOISE_REACH = 10.0  # noise draws counted (in standard deviations) when bounding the values a variable can take

SUITE_FORMAT = "acbo-suite/1"
SUITE_FORMAT_V2 = "acbo-suite/2"
FORMATS = (SUITE_FORMAT, SUITE_FORMAT_V2)


@dataclass(frozen=True)
class Suite:
    name: str
    scms: tuple[SCM, ...]
    level: int | None = None
    seed: int | None = None
    format: str = SUITE_FORMAT


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


def _mechanism_problem(scm: SCM, term_names: list[str]) -> str | None:
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


def _exact_problem(scm: SCM) -> str | None:
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


def _build_terms(raw: dict, index: dict) -> tuple[Terms | None, list[str]]:
    """The SCM's terms (edge by edge, in file order) and each one's name in messages (``edges[k].terms[m]``)."""
    rows, names = [], []
    for k, edge in enumerate(raw["edges"]):
        for m, term in enumerate(edge.get("terms", ())):
            rows.append((index[edge["parent"]], index[edge["child"]], FUNCTIONS.index(term["fn"]), term["weight"],
                         term.get("scale", 1.0), term.get("shift", 0.0)))
            names.append(f"edges[{k}].terms[{m}]")
    if not rows:
        return None, names
    cols = list(zip(*rows))
    return Terms(*(np.asarray(c, int) for c in cols[:3]), *(np.asarray(c, float) for c in cols[3:])), names


def _build_scm(raw: dict, version: int = 1) -> SCM:
    nodes = tuple(raw["nodes"])
    index = {name: i for i, name in enumerate(nodes)}
    n = len(nodes)
    weights = np.zeros((n, n))
    for edge in raw["edges"]:
        weights[index[edge["parent"]], index[edge["child"]]] = edge.get("coef", 0.0)
    bias = np.array([raw.get("bias", {}).get(v, 0.0) for v in nodes], float)
    noise = np.array([raw.get("noise_std", {}).get(v, 1.0) for v in nodes], float)
    lo = np.full(n, np.nan)
    hi = np.full(n, np.nan)
    for name, (a, b) in raw["ranges"].items():
        lo[index[name]], hi[index[name]] = a, b
    if version == 1:
        return SCM(
            id=raw["id"], nodes=nodes, target=index[raw["target"]], weights=weights, bias=bias,
            noise_std=noise, lo=lo, hi=hi, family=raw.get("family", "custom"), level=raw.get("level", 0),
        )
    terms, _ = _build_terms(raw, index)
    if terms is None:  # a suite/2 SCM without terms: linear, but written back in the suite/2 form
        terms = Terms(*(np.zeros(0, int),) * 3, *(np.zeros(0),) * 3)
    return SCM(
        id=raw["id"], nodes=nodes, target=index[raw["target"]], weights=weights, bias=bias,
        noise_std=noise, lo=lo, hi=hi, family=raw.get("family", "custom"), level=raw.get("level", 0), terms=terms,
        latent=tuple(sorted(index[name] for name in raw.get("latent", ()))),
    )


def _attach_oracle(scm: SCM, raw: dict, how: str) -> tuple[SCM, str | None]:
    """The SCM with its oracle: the stored one, computed when missing; with ``how="verify"`` always computed and
    a stored one compared with it."""
    from .oracle import compute_oracle, oracle_from_dict, oracle_mismatch, with_oracle

    stored = oracle_from_dict(raw["oracle"], scm) if "oracle" in raw else None
    if stored is not None and how != "verify":
        return with_oracle(scm, stored), None
    fresh = compute_oracle(scm)
    if stored is not None and (msg := oracle_mismatch(stored, fresh, scm.nodes)) is not None:
        return scm, (f"oracle: the stored oracle disagrees with a fresh computation ({msg}); was a mechanism "
                     "edited? Delete the SCM's \"oracle\" key to have it recomputed")
    return with_oracle(scm, fresh), None


def parse_suite(doc, path: str = "<suite>", oracle: str = "stored") -> Suite:
    """Validate a decoded suite document and build its SCMs; raise ``SuiteError`` listing all problems.

    ``oracle`` (suite/2 only): ``"stored"`` reads each SCM's stored oracle and computes a missing one;
    ``"verify"`` computes every oracle afresh and refuses a stored one that disagrees with it."""
    if not isinstance(doc, dict):
        raise SuiteError(path, ["(top level): must be a JSON object"])
    if doc.get("format") not in FORMATS:
        expected = " or ".join(map(repr, FORMATS))
        raise SuiteError(path, [f"format: expected {expected}, got {doc.get('format')!r}"])
    version = FORMATS.index(doc["format"]) + 1
    problems = _schema_problems(doc)
    if problems:
        raise SuiteError(path, problems)
    if _control_characters(doc["name"]):
        problems.append("name: contains a control character")
    counts = Counter(s["id"] for s in doc["scms"])
    problems += [f"scm {i!r}: id: duplicate id" for i in sorted(i for i, c in counts.items() if c > 1)]
    for raw in doc["scms"]:
        problems.extend(_scm_problems(raw))
    if not problems and version == 2:  # the oracles this read computes: missing ones, or all when verifying
        from .oracle import oracle_work_problems

        problems = oracle_work_problems([_build_scm(raw, 2) for raw in doc["scms"]
                                         if "oracle" not in raw or oracle == "verify"])
    if problems:
        raise SuiteError(path, problems)
    level = doc.get("level")
    scms = []
    for raw in doc["scms"]:
        raw = {"level": level or 0, **raw}
        scm = _build_scm(raw, version)
        if version == 2:
            _, term_names = _build_terms(raw, {name: i for i, name in enumerate(scm.nodes)})
            if not scm.is_linear and (msg := _mechanism_problem(scm, term_names)) is not None:
                problems.append(f"scm {scm.id!r}: {msg}")
                continue
            scm, msg = _attach_oracle(scm, raw, oracle)
            if msg is not None:
                problems.append(f"scm {scm.id!r}: {msg}")
                continue
        if (msg := _exact_problem(scm)) is not None:
            problems.append(f"scm {scm.id!r}: {msg}")
        scms.append(scm)
    if problems:
        raise SuiteError(path, problems)
    return Suite(name=doc["name"], scms=tuple(scms), level=level, seed=doc.get("seed"), format=doc["format"])


def load_suite(path: str | Path, oracle: str = "verify") -> Suite:
    """Read and validate a suite file. A suite/2 file's stored oracles are what scoring trusts, so by default
    (``oracle="verify"``) they are recomputed and a stored one that disagrees is refused, unless these very bytes
    were computed or verified before (``verified``: then they are read as stored, and only then)."""
    path = str(path)
    try:
        data = Path(path).read_bytes()
        text = data.decode("utf-8")
    except OSError as exc:
        raise SuiteError(path, [f"cannot read file: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise SuiteError(path, [f"not UTF-8 text: byte {exc.start} cannot be decoded"]) from None
    if oracle == "verify" and is_verified(data):
        oracle = "stored"
    too_deep = SuiteError(path, ["(top level): nested too deeply to be a suite file"])
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise too_deep from None
    except ValueError as exc:
        raise SuiteError(path, [f"not valid JSON: {exc}"]) from None
    try:
        suite = parse_suite(doc, path, oracle)
    except RecursionError:
        raise too_deep from None
    if oracle == "verify" and suite.format == SUITE_FORMAT_V2:
        mark_verified(data)
    return suite


def _edges_v2(scm: SCM) -> list[dict]:
    """Edges in (parent, child) index order: ``coef`` when nonzero (or the edge has no terms), then its terms."""
    names, terms = scm.nodes, scm.terms
    edges = []
    for i, j in zip(*np.nonzero(scm.adjacency)):
        edge = {"parent": names[i], "child": names[j]}
        mine = [] if terms is None else np.flatnonzero((terms.parent == i) & (terms.child == j))
        if scm.weights[i, j] != 0.0 or not len(mine):
            edge["coef"] = float(scm.weights[i, j])
        if len(mine):
            edge["terms"] = [{"fn": FUNCTIONS[terms.fn[k]], "weight": float(terms.weight[k]),
                              "scale": float(terms.scale[k]), "shift": float(terms.shift[k])} for k in mine]
        edges.append(edge)
    return edges


def scm_to_dict(scm: SCM, version: int = 1) -> dict:
    names = scm.nodes
    if version == 2:
        edges = _edges_v2(scm)
    else:
        edges = [
            {"parent": names[i], "child": names[j], "coef": float(scm.weights[i, j])}
            for i, j in zip(*np.nonzero(scm.weights))
        ]
    allowed = scm.intervenable
    out = {
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
    if version == 2 and scm.latent:
        out["latent"] = [names[i] for i in scm.latent]
    if version == 2:
        from .oracle import compute_oracle, oracle_to_dict

        out["oracle"] = oracle_to_dict(scm.oracle or compute_oracle(scm), names)
    return out


def suite_to_json(suite: Suite) -> str:
    """The suite's file: suite/1 when every SCM is linear and the suite is not marked suite/2, else suite/2
    (every SCM with its oracle)."""
    version = 2 if suite.format == SUITE_FORMAT_V2 or any(s.terms is not None for s in suite.scms) else 1
    doc = {"format": FORMATS[version - 1], "name": suite.name}
    if suite.level is not None:
        doc["level"] = suite.level
    if suite.seed is not None:
        doc["seed"] = suite.seed
    # one SCM per line: diffable, and small enough to read
    head = json.dumps(doc)[:-1]
    scms = ",\n  ".join(json.dumps(scm_to_dict(s, version)) for s in suite.scms)
    return f'{head}, "scms": [\n  {scms}\n]}}\n'


def write_suite(suite: Suite, path: str | Path) -> None:
    atomic_write_text(path, suite_to_json(suite))
