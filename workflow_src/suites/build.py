"""The suite stage: build a suite file from its config slice, and human/JSON views of a suite."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..atomic import atomic_path
from ..suite_catalogue import kind_of_slice
from .generators import GeneratorSettings, classic_suite, generate_level_suite, literature_suite
from .suite_io import SUITE_FORMAT_V2, Suite, SuiteError, load_suite, write_suite
from .verified import mark_verified


def build_suite(spec: dict, out: str | Path) -> None:
    """Write the suite described by a ``config.suite_slice`` to ``out`` (atomically): its kind's builder
    (``suite_catalogue.SuiteKind.builder``), a function of this module."""
    globals()[kind_of_slice(spec).builder](spec, out)


def copy_user_suite(spec: dict, out: str | Path) -> None:
    """A user's suite, validated, never regenerated; a suite/2 file's oracles are computed afresh (a stored one
    must agree) and it is written back with every SCM's oracle, read by every later stage."""
    suite = load_suite(spec["user_file"], oracle="verify")
    if suite.name != spec["name"]:
        raise SuiteError(spec["user_file"], [f"name: {suite.name!r} differs from its config key "
                                             f"suites.user.{spec['name']}"])
    if suite.format == SUITE_FORMAT_V2:
        _write(suite, out)
        return
    with atomic_path(out) as tmp:
        shutil.copyfile(spec["user_file"], tmp)


def classic(spec: dict, out: str | Path) -> None:
    _write(classic_suite(spec["name"]), out)


def literature(spec: dict, out: str | Path) -> None:
    _write(literature_suite(spec["name"]), out)


def bnlearn(spec: dict, out: str | Path) -> None:
    from .bnlearn import bnlearn_suite

    _write(bnlearn_suite(spec["name"], head=spec["head"]), out)


def generated(spec: dict, out: str | Path) -> None:
    """A generated level's suite: nonlinear where the slice has the ``nonlinear`` settings."""
    settings = GeneratorSettings.from_config(spec["generator"])
    if "nonlinear" in spec:
        from .nonlinear import NonlinearSettings, generate_nonlinear_suite

        suite = generate_nonlinear_suite(spec["name"], spec["level"], spec["size"], spec["seed"], settings,
                                         NonlinearSettings.from_config(spec["nonlinear"]))
    else:
        suite = generate_level_suite(spec["name"], spec["level"], spec["size"], spec["seed"], settings)
    _write(suite, out)


def _write(suite: Suite, out: str | Path) -> None:
    """Write ``suite`` (its oracles computed or verified here), recorded as verified: later reads need not
    recompute them (``verified``)."""
    write_suite(suite, out)
    mark_verified(Path(out).read_bytes())


def oracle_table(suite: Suite) -> list[dict]:
    """Per SCM: the oracle action, y*, mu_Y and the random value; for a nonlinear SCM also how they were
    estimated and their standard errors."""
    rows = []
    for scm in suite.scms:
        ex = scm.exact()
        row = {
            "id": scm.id,
            "variable": scm.nodes[ex.oracle_variable],
            "value": ex.oracle_value,
            "y_star": ex.y_star,
            "mu_y": ex.mu_y,
            "random": ex.random_value,
        }
        if not scm.is_linear:
            o = scm.oracle
            row.update(method=o.method, samples=o.samples, y_star_se=o.y_star_se, mu_y_se=o.mu_y_se,
                       max_se=o.effect_se)
        rows.append(row)
    return rows


def printable(text: str) -> str:
    """``text`` with every character a terminal would not show as itself escaped (``\\u202e``): control and
    format characters (a right-to-left override would reorder the rest of the line), separators but the space."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def show_suite(suite: Suite) -> str:
    """A readable table: one line per SCM with its size, target, parents and oracle action; names escaped
    (``printable``)."""
    header = f"suite {printable(suite.name)}" + (f" (level {suite.level}, seed {suite.seed})" if suite.level else "")
    lines = [header, f"{len(suite.scms)} SCMs", ""]
    cols = ("id", "family", "nodes", "edges", "target", "parents", "oracle", "y*", "mu_y", "random")
    rows = []
    for scm in suite.scms:
        ex = scm.exact()
        parents = [scm.nodes[i] for i in range(scm.n) if scm.parents_of_target[i]]
        rows.append(tuple(map(printable, (
            scm.id, scm.family, str(scm.n), str(int(scm.adjacency.sum())), scm.nodes[scm.target],
            ",".join(parents) if len(parents) <= 4 else f"{len(parents)} nodes",
            f"do({scm.nodes[ex.oracle_variable]}={ex.oracle_value:g})",
            f"{ex.y_star:.3f}", f"{ex.mu_y:.3f}", f"{ex.random_value:.3f}",
        ))))
    widths = [max(len(c), *(len(r[k]) for r in rows)) for k, c in enumerate(cols)]
    lines.append("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def oracle_json(suite: Suite) -> str:
    return json.dumps(oracle_table(suite), indent=1)
