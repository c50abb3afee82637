"""The evaluation stage: run methods on a suite under the shared protocol and write the long table."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
import pyarrow as pa

from ..compile_cache import CompileWatch
from ..core.scm import bucket_size, stack_scms, term_bucket
from ..errors import CheckpointError, UserError
from ..policy import checkpoint
from ..policy.spec import policy_config_of
from ..provenance import git_commit, package_version
from ..suites.suite_io import Suite
from ..tables import EVAL_SCHEMA, columns_to_table, write_table_parts
from .methods import Method
from .program_store import lower_program
from .rollout import chunk_size, make_run_suite

ROW_GROUP_SCMS = 256  # SCMs per table piece (row group) written at a time
RUN_INFO_PREFIX = "run info:"


class RunInfo(NamedTuple):
    """How a suite ran: its shape bucket, chunking, and where its program came from (one line of the job's log)."""

    bucket: int
    chunk: int
    chunks: int
    program: str  # fingerprint of the lowered program: equal fingerprints are one compiled program
    source: str  # of the executable: persistent cache / compiled
    compile_s: float
    origin: str  # of the lowered program: traced / stored export (``program_store``)

    def line(self) -> str:
        """The job log's line (``run info: {JSON}``), read back by ``read_run_infos``."""
        return f"{RUN_INFO_PREFIX} {json.dumps({**self._asdict(), 'compile_s': round(self.compile_s, 1)})}"


def read_run_infos(log: str) -> list[RunInfo]:
    """Every ``RunInfo`` a job's log holds, in order (none for a job that ran no suite)."""
    return [RunInfo(**json.loads(line.removeprefix(RUN_INFO_PREFIX))) for line in log.splitlines()
            if line.startswith(RUN_INFO_PREFIX)]


def suite_episodes(protocol: dict, n_scms: int) -> int:
    """Episodes per SCM on a suite of ``n_scms``: the protocol's ``episodes``, or more on a suite of few SCMs, so
    that it runs at least ``min_suite_episodes`` in all (a protocol without that key: no floor). Episode keys
    depend on the episode's index only (``episode_keys``), so the first ``episodes`` are those of a run without
    the floor."""
    return max(protocol["episodes"], -(-protocol.get("min_suite_episodes", 1) // n_scms))


def run_methods(methods: list[Method], params, suite: Suite, protocol: dict, bucket: int | None = None,
                chunk: int | None = None, log=None) -> list[dict[str, np.ndarray]]:
    """Per method, records of shape (n_scms, episodes, interventions) on one suite (``suite_episodes``).

    The suite runs in chunks of ``chunk`` SCMs padded to ``bucket`` variables (defaults: ``bucket_size`` of
    the largest SCM and its ``chunk_size``), every method through one compiled program (from the program
    store when it holds it, see ``program_store``); ``log`` receives its ``RunInfo``.
    """
    scms = list(suite.scms)
    protocol = {**protocol, "episodes": suite_episodes(protocol, len(scms))}
    bucket = bucket or bucket_size(max(s.n for s in scms))
    chunk = chunk or chunk_size(bucket)
    run = make_run_suite(tuple(m.act for m in methods), protocol["n_obs"], protocol["interventions"],
                         protocol["episodes"], tuple(m.name for m in methods), tuple(m.reads_truth for m in methods))
    base_key = jax.random.PRNGKey(protocol["seed"])
    n_terms = term_bucket(scms)  # the whole suite's: every chunk runs in one program
    program, merged = None, {}
    for start in range(0, len(scms), chunk):
        real = scms[start:start + chunk]
        fill = chunk - len(real)  # the last chunk is filled with copies of its first SCM, dropped below
        arrays = stack_scms(real + real[:1] * fill, bucket, n_terms)
        index = np.arange(start, start + chunk, dtype=np.int32)
        index[len(real):] = start
        if program is None:
            tic = time.perf_counter()
            with CompileWatch() as watch:
                lowered, origin = lower_program(run, (params, arrays, base_key, index), methods, protocol)
                program = lowered.compile()
            if log:
                fingerprint = hashlib.sha256(lowered.as_text().encode()).hexdigest()[:12]
                log(RunInfo(bucket, chunk, -(-len(scms) // chunk), fingerprint, watch.source,
                            time.perf_counter() - tic, origin))
        for name, value in program(params, arrays, base_key, index)._asdict().items():
            value = np.asarray(value)  # to the host first: slicing a device array would dispatch more programs
            if name not in merged:  # (methods, SCMs, episodes, interventions), filled chunk by chunk
                merged[name] = np.empty((value.shape[0], len(scms), *value.shape[2:]), value.dtype)
            merged[name][:, start:start + len(real)] = value[:, :len(real)]
    return [{name: value[i] for name, value in merged.items()} for i in range(len(methods))]


def records_to_table(records: dict, suite: Suite, method: str, identity: dict, start: int = 0) -> pa.Table:
    """Flatten (K, E, T) records of the suite's SCMs ``start:start + K`` into rows ordered by SCM, episode, step."""
    k, e, t = records["variable"].shape
    idx_k, idx_e, idx_t = (a.ravel() for a in np.meshgrid(np.arange(k), np.arange(e), np.arange(t), indexing="ij"))
    scms = suite.scms[start:start + k]
    # each SCM's node names indexed by its chosen variables: a loop over SCMs, not rows
    names = np.concatenate([np.asarray(scm.nodes, dtype=object)[var.ravel()]
                            for scm, var in zip(scms, records["variable"])])
    exact = [scm.exact() for scm in scms]
    per_scm = lambda values: np.asarray(values, dtype=object if isinstance(values[0], str) else None)[idx_k]
    columns = {
        "config": identity.get("config"),
        "seed": identity.get("seed"),
        "suite": suite.name,
        "scm_id": per_scm([s.id for s in scms]),
        "family": per_scm([s.family for s in scms]),
        "level": per_scm([s.level for s in scms]),
        "method": method,
        "episode": idx_e,
        "step": idx_t,
        "variable": names,
        "value": records["value"].ravel().astype(np.float64),
        "is_parent": records["is_parent"].ravel(),
        "is_optimal_variable": records["is_optimal_variable"].ravel(),
        "range_utilization": records["range_utilization"].ravel().astype(np.float64),
        "target": records["target"].ravel().astype(np.float64),
        "expected_target": records["expected_target"].ravel().astype(np.float64),
        "oracle_target": per_scm([x.y_star for x in exact]),
        "random_target": per_scm([x.random_value for x in exact]),
        "mu_target": per_scm([x.mu_y for x in exact]),
        "norm_improvement": records["norm_improvement"].ravel().astype(np.float64),
        "f1": records["f1"].ravel().astype(np.float64),
        "package_version": package_version(),
        "git_commit": git_commit(),
        "checkpoint_hash": identity.get("checkpoint_hash"),
        "plugin_hash": identity.get("plugin_hash"),
    }
    return columns_to_table(columns, k * e * t, EVAL_SCHEMA, "evaluation records")


def evaluate_methods(methods: list[Method], params, suite: Suite, protocol: dict, identity: dict):
    """Every method on the suite as one ``pandas.DataFrame``; policy parameters are passed only when some
    method uses them."""
    pieces = _pieces(methods, params, suite, protocol, identity, None, len(suite.scms))
    return pa.concat_tables([table for _, _, table in pieces]).to_pandas()


def write_evaluation(methods: list[Method], params, suite: Suite, protocol: dict, identity: dict, out,
                     what: str, log=print, check=None) -> None:
    """Run every method on the suite and write its table piece by piece, so memory does not grow with the
    suite: rows ordered by method, SCM, episode, step, one Parquet row group per ``ROW_GROUP_SCMS`` SCMs.
    ``check(records)``, when given, may refuse the run's records before anything is written."""
    summary = {}

    def tables():
        for method, records, table in _pieces(methods, params, suite, protocol, identity,
                                              lambda info: log(info.line()), ROW_GROUP_SCMS, check):
            best = records["norm_improvement"].astype(np.float64).max(-1)  # per (SCM, episode)
            total, count = summary.get(method, (0.0, 0))
            summary[method] = (total + best.sum(), count + best.size)
            yield table

    rows = write_table_parts(tables(), out, what)
    log(f"wrote {out} ({rows} rows); best-so-far normalized improvement at the last step:")
    for method, (total, count) in summary.items():
        log(f"  {method:22s} {total / count:.3f}")
    sys.stdout.flush()


def _pieces(methods, params, suite, protocol, identity, log, per_piece: int, check=None):
    """``(method name, records, table)`` for every ``per_piece`` SCMs of every method, in table order."""
    params = params if any(m.needs_policy for m in methods) else None
    records = run_methods(methods, params, suite, protocol, log=log)
    if check:
        check(records)
    check_finite_actions(methods, records, suite)
    for method, rec in zip(methods, records):
        for start in range(0, len(suite.scms), per_piece):
            piece = {name: value[start:start + per_piece] for name, value in rec.items()}
            yield method.name, piece, records_to_table(piece, suite, method.name, identity, start)


def load_policy(path: str | Path):
    """``(header, policy_config, params)`` of a checkpoint, read without Flax; refuses an architecture this code
    cannot build. The parameters' shapes are checked when the policy's program is traced (``methods``): a
    program found in the store was traced for parameters of the same structure, shapes and dtypes."""
    header = checkpoint.read_header(path)
    try:
        policy_config = policy_config_of(header["architecture"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    _, params = checkpoint.read_saved(path, field="params")
    checkpoint.check_finite(path, params, "params")
    return header, policy_config, params


def check_finite_actions(methods: list[Method], records: list[dict], suite: Suite) -> None:
    """Refuse a run in which a method chose a non-finite value (its table would hold NaN rows and the summary
    meaningless rates); names the first such step."""
    for method, rec in zip(methods, records):
        bad = np.argwhere(~np.isfinite(rec["value"]))
        if len(bad):
            k, e, t = bad[0]
            raise UserError(f"method {method.name} chose a non-finite value on SCM {suite.scms[k].id} (episode {e}, "
                            f"step {t}), {len(bad)} step(s) in all: nothing written")
