"""The summary's inputs: the policy's evaluation tables (one per seed and suite), the shared baseline tables,
the training logs, the JSON headers of the final checkpoints, the suite files (which SCMs are linear) and, for a
config whose policy has a response model, its response quality tables (one per seed and suite), each checked
to hold what its place says (config, seed, suite, methods); a missing or foreign file is refused in one line
naming it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa

from ..errors import TableError, UserError
from ..evaluate.registry import POLICY_PREFIX
from ..policy.checkpoint import check_config_hash, read_header
from ..provenance import file_hash
from ..suites.suite_io import load_suite
from ..tables import EVAL_SCHEMA, RESPONSE_QUALITY_SCHEMA, TRAIN_LOG_SCHEMA, read_table


@dataclass(frozen=True)
class SummaryInputs:
    """Everything the summary reads: evaluation rows of all methods, training logs, checkpoint headers."""

    spec: dict
    evals: pd.DataFrame
    train: pd.DataFrame
    headers: dict[int, dict] = field(default_factory=dict)  # seed -> final checkpoint header
    checkpoint_hashes: dict[int, str] = field(default_factory=dict)  # seed -> final.ckpt file hash
    # suite -> scm_id -> "linear" / "nonlinear" (``SCM.is_linear``: no mechanism terms but linear ones)
    mechanisms: dict[str, dict[str, str]] = field(default_factory=dict)
    # the response model measured as a model (``tables.RESPONSE_QUALITY_SCHEMA``), None without a response model
    response: pd.DataFrame | None = None


LINEAR, NONLINEAR = "linear", "nonlinear"  # the mechanism classes, in the order the summary pools them


def suite_mechanisms(path: Path, suite: str) -> dict[str, str]:
    """scm_id -> mechanism class of a suite file (as written by the suite stage: oracles stored, not recomputed)."""
    if not path.is_file():
        raise UserError(f"missing suite file {path}")
    loaded = load_suite(path)
    if loaded.name != suite:
        raise UserError(f"{path}: holds suite {loaded.name!r}, expected {suite!r}")
    return {scm.id: LINEAR if scm.is_linear else NONLINEAR for scm in loaded.scms}


def check_mechanisms(evals: pd.DataFrame, mechanisms: dict[str, dict[str, str]]) -> None:
    """Refuse evaluation rows of an SCM that its suite file does not hold (tables of another version of it)."""
    pairs = evals[["suite", "scm_id"]].drop_duplicates()
    missing = [(s, c) for s, c in zip(pairs["suite"], pairs["scm_id"], strict=True) if c not in mechanisms[s]]
    if missing:
        suite, scm = min(missing)
        raise UserError(f"suite {suite}: the tables hold SCM {scm!r}, which its suite file does not")


def _read(path: Path, schema: pa.Schema, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise UserError(f"missing {what} {path}")
    try:
        return read_table(path, schema)
    except TableError as err:
        raise UserError(str(err)) from None
    except (OSError, pa.ArrowException) as err:
        raise UserError(f"{path}: cannot read {what}: {err}") from None


def _check_identity(frame: pd.DataFrame, path: Path, config, seed, suite: str, methods: str | None) -> None:
    """Refuse a table that holds rows of another config, seed or suite, or unexpected methods (None: no method
    column)."""
    if frame.empty:
        raise UserError(f"{path}: the table has no rows")
    checks = {"config": config, "seed": seed, "suite": suite}
    for column, expected in checks.items():
        values = frame[column]
        ok = values.isna().all() if expected is None else (values == expected).all()
        if not ok:
            found = sorted(map(str, values.dropna().unique())) or ["null"]
            raise UserError(
                f"{path}: column {column} holds {', '.join(found)}, "
                f"expected {expected if expected is not None else 'null'}"
            )
    if methods is None:
        return
    is_policy = frame["method"].str.startswith(POLICY_PREFIX)
    if methods in ("policy", "baseline"):
        bad = frame["method"][~is_policy if methods == "policy" else is_policy]
    else:  # a plug-in's table holds that method only
        bad = frame["method"][frame["method"] != methods]
    if len(bad):
        raise UserError(f"{path}: unexpected method {min(bad.unique())!r} in a {methods} table")


def load_inputs(spec: dict, files: dict[str, list]) -> SummaryInputs:
    """Read and check the files of ``paths.summary_inputs`` (same keys and order): each table must hold the
    config, seed and suite of its position."""
    kinds = ("evals", "baselines", "plugins", "train_logs", "checkpoints", "suites", "response_quality")
    paths = {kind: [Path(p) for p in files.get(kind, [])] for kind in kinds}
    name, seeds, suites = spec["config"], sorted(spec["seeds"]), sorted(spec["eval_suites"])
    plugins = sorted(spec.get("plugins", []))
    counts = {"evals": len(seeds) * len(suites), "baselines": len(suites), "plugins": len(plugins) * len(suites),
              "train_logs": len(seeds), "checkpoints": len(seeds), "suites": len(suites),
              "response_quality": len(seeds) * len(suites) if spec.get("response_model") else 0}
    for kind, count in counts.items():
        if len(paths[kind]) != count:
            raise UserError(f"{kind}: {len(paths[kind])} files given, {name}'s seeds and suites need {count}")
    frames = []
    for path, (seed, suite) in zip(paths["evals"], [(s, x) for s in seeds for x in suites], strict=True):
        frame = _read(path, EVAL_SCHEMA, "evaluation table")
        _check_identity(frame, path, name, seed, suite, "policy")
        frames.append(frame)
    for path, suite in zip(paths["baselines"], suites, strict=True):
        frame = _read(path, EVAL_SCHEMA, "baseline table")
        _check_identity(frame, path, None, None, suite, "baseline")
        frames.append(frame)
    plugin_tables = [(m, x) for m in plugins for x in suites]
    for path, (method, suite) in zip(paths["plugins"], plugin_tables, strict=True):
        frame = _read(path, EVAL_SCHEMA, "plug-in table")
        _check_identity(frame, path, None, None, suite, method)
        frames.append(frame)
    logs = []
    for path, seed in zip(paths["train_logs"], seeds, strict=True):
        log = _read(path, TRAIN_LOG_SCHEMA, "training log")
        if log.empty:
            raise UserError(f"{path}: the training log has no rows")
        if not ((log["config"] == name) & (log["seed"] == seed)).all():
            raise UserError(f"{path}: the training log holds another config or seed than {name}/seed_{seed}")
        logs.append(log)
    headers = {}
    for path, seed in zip(paths["checkpoints"], seeds, strict=True):
        headers[seed] = read_header(path, verify_body=False, required=())
        # absent from a spec written by hand: nothing to compare
        check_config_hash(path, headers[seed], spec.get("train_config_hash"), name)
    hashes = {seed: file_hash(path) for path, seed in zip(paths["checkpoints"], seeds, strict=True)}
    mechanisms = {suite: suite_mechanisms(path, suite) for path, suite in zip(paths["suites"], suites, strict=True)}
    evals = pd.concat(frames, ignore_index=True)
    check_mechanisms(evals, mechanisms)
    train = pd.concat(logs, ignore_index=True)
    return SummaryInputs(spec=spec, evals=evals, train=train, headers=headers, checkpoint_hashes=hashes,
                         mechanisms=mechanisms, response=_response_tables(paths["response_quality"], name, seeds,
                                                                          suites, mechanisms))


def _response_tables(paths: list[Path], name: str, seeds, suites, mechanisms) -> pd.DataFrame | None:
    """The response quality tables (seed-major), each checked to hold its config, seed and suite; None if none."""
    if not paths:  # a config without a response model (``load_inputs`` checked the count)
        return None
    frames = []
    for path, (seed, suite) in zip(paths, [(s, x) for s in seeds for x in suites], strict=True):
        frame = _read(path, RESPONSE_QUALITY_SCHEMA, "response quality table")
        _check_identity(frame, path, name, seed, suite, None)
        frames.append(frame)
    response = pd.concat(frames, ignore_index=True)
    check_mechanisms(response, mechanisms)
    return response
