"""The evaluation stage: run methods on a suite under the shared protocol and write the long table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from . import checkpoint
from .baselines import baseline_methods
from .checkpoint_errors import CheckpointError
from .config import baselines_slice, evaluation_slice, load_config_or_packaged
from .methods import Method, policy_methods
from .policy import architecture, init_params, make_policy
from .provenance import file_hash, git_commit, package_version
from .rollout import episode_keys, make_run_suite
from .scm import stack_scms
from .suite_io import Suite, load_suite
from .tables import EVAL_SCHEMA, write_table


def run_methods(methods: list[Method], params, suite: Suite, protocol: dict) -> list[dict[str, np.ndarray]]:
    """Per method, records of shape (n_scms, episodes, interventions) on one suite (one compiled program)."""
    scms = stack_scms(list(suite.scms))
    keys = episode_keys(protocol["seed"], len(suite.scms), protocol["episodes"])
    run = make_run_suite(tuple(m.act for m in methods), protocol["n_obs"], protocol["interventions"],
                         tuple(m.name for m in methods))
    records = {name: np.asarray(value) for name, value in run(params, scms, keys)._asdict().items()}
    return [{name: value[i] for name, value in records.items()} for i in range(len(methods))]


def run_method(method: Method, params, suite: Suite, protocol: dict) -> dict[str, np.ndarray]:
    """Records of shape (n_scms, episodes, interventions) for one method on one suite."""
    return run_methods([method], params, suite, protocol)[0]


def records_to_frame(records: dict, suite: Suite, method: str, identity: dict) -> pd.DataFrame:
    """Flatten (K, E, T) records into rows ordered by SCM, episode, step."""
    k, e, t = records["variable"].shape
    idx_k, idx_e, idx_t = (a.ravel() for a in np.meshgrid(np.arange(k), np.arange(e), np.arange(t), indexing="ij"))
    scms = suite.scms
    names = np.array([scm.nodes[v] for scm, var in zip(scms, records["variable"]) for v in var.ravel()], dtype=object)
    exact = [scm.exact() for scm in scms]
    per_scm = lambda values: np.asarray(values)[idx_k]
    frame = pd.DataFrame(
        {
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
        }
    )
    return frame


def evaluate_methods(methods: list[Method], params, suite: Suite, protocol: dict, identity: dict) -> pd.DataFrame:
    """Every method on the suite; policy parameters are passed only when some method uses them."""
    params = params if any(m.needs_policy for m in methods) else None
    records = run_methods(methods, params, suite, protocol)
    return pd.concat(
        [records_to_frame(r, suite, m.name, identity) for m, r in zip(methods, records)], ignore_index=True
    )


def load_policy(path: str | Path):
    """The policy network and parameters of a checkpoint; refuses an architecture this code cannot run."""
    header = checkpoint.read_header(path)
    arch = header["architecture"]
    if not isinstance(arch, dict):
        raise CheckpointError(f"{path}: architecture: expected a JSON object, got {arch!r:.80}")
    policy_config = {k: arch.get(k) for k in ("name", "hidden_dim", "n_heads", "n_layers", "fixed_std")}
    if arch != architecture(policy_config) or None in policy_config.values():
        raise CheckpointError(
            f"{path}: architecture: {arch} does not match this version's policy inputs "
            f"({architecture(policy_config)})"
        )
    try:
        policy = make_policy(policy_config)
    except ValueError as exc:
        raise CheckpointError(f"{path}: architecture: {exc}") from None
    _, params = checkpoint.load(path, init_params(policy, jax.random.PRNGKey(0)), field="params")
    return header, policy, policy_config, params


def _protocol(args, build) -> dict:
    return json.loads(args.spec) if args.spec else build(load_config_or_packaged(args.config, args.command))


def _methods_arg(value: str | None, default) -> list[str]:
    if value is None:
        return list(default)
    names = [m.strip() for m in value.split(",") if m.strip()]
    if not names:
        raise ValueError(f"--methods {value!r}: names no method")
    return names


def run_evaluate_cli(args) -> int:
    from .cli import CLIError

    protocol = _protocol(args, evaluation_slice)
    suite = load_suite(args.suite)
    header, policy, policy_config, params = load_policy(args.checkpoint)
    try:
        modes = _methods_arg(args.methods, protocol["policy_modes"])
        methods = policy_methods(policy, policy_config["fixed_std"], modes)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    identity = {
        "config": args.experiment or header.get("config_name"),
        "seed": args.seed if args.seed is not None else header.get("seed"),
        "checkpoint_hash": file_hash(args.checkpoint),
    }
    frame = evaluate_methods(methods, params, suite, protocol, identity)
    write_table(frame, EVAL_SCHEMA, args.out, "evaluation table")
    _report(frame, args.out)
    return 0


def run_baselines_cli(args) -> int:
    from .cli import CLIError

    protocol = _protocol(args, baselines_slice)
    suite = load_suite(args.suite)
    try:
        methods = baseline_methods(_methods_arg(args.methods, protocol["baselines"]))
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    frame = evaluate_methods(methods, None, suite, protocol, {})
    write_table(frame, EVAL_SCHEMA, args.out, "baseline table")
    _report(frame, args.out)
    return 0


def _report(frame: pd.DataFrame, out) -> None:
    last = frame.groupby(["method", "scm_id", "episode"]).norm_improvement.max().groupby("method").mean()
    print(f"wrote {out} ({len(frame)} rows); best-so-far normalized improvement at the last step:")
    for method, value in last.items():
        print(f"  {method:22s} {value:.3f}")
    sys.stdout.flush()
