"""Suite files (``acbo-suite/1`` linear, ``acbo-suite/2`` nonlinear): reading, validation and deterministic writing.

``acbo-suite/2`` keeps everything of ``/1`` and lets each edge carry mechanism ``terms`` (``mechanisms.py``)
beside its optional linear ``coef`` (default 0 when terms are given), each SCM a list of ``latent`` nodes
(simulated, never shown to a method nor intervenable) and an ``oracle`` (``oracle.py``): written at generation,
computed on reading when a file lacks it, and verified against a fresh computation wherever a file is read
(``load_suite``; once per file content, ``verified``), so a stored oracle that lies is never used as the truth.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_text
from ..core.scm import FUNCTIONS, SCM, Terms
from ..errors import SuiteError
from .validation import (
    control_characters,
    exact_problem,
    mechanism_problem,
    reject_constant,
    schema_problems,
    scm_problems,
)
from .verified import is_verified, mark_verified

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
    problems = schema_problems(doc)
    if problems:
        raise SuiteError(path, problems)
    if control_characters(doc["name"]):
        problems.append("name: contains a control character")
    counts = Counter(s["id"] for s in doc["scms"])
    problems += [f"scm {i!r}: id: duplicate id" for i in sorted(i for i, c in counts.items() if c > 1)]
    for raw in doc["scms"]:
        problems.extend(scm_problems(raw))
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
            if not scm.is_linear and (msg := mechanism_problem(scm, term_names)) is not None:
                problems.append(f"scm {scm.id!r}: {msg}")
                continue
            scm, msg = _attach_oracle(scm, raw, oracle)
            if msg is not None:
                problems.append(f"scm {scm.id!r}: {msg}")
                continue
        if (msg := exact_problem(scm)) is not None:
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
        doc = json.loads(text, parse_constant=reject_constant)
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
