"""Summary stage: aggregate one experiment config's tables into ``summary.parquet`` and ``summary.html``.

Inputs are the policy's evaluation tables (one per seed and suite), the shared baseline tables, the
training logs, and the JSON headers of the final checkpoints (provenance only). Every number in the
output is derived from those files with fixed seeds, so rerunning reproduces both outputs byte for byte.

Aggregation: metrics are computed per episode by ``metrics.episode_metrics``, averaged per *unit* (one
SCM under one training seed), and reported as the mean over units with a percentile bootstrap CI at level
``bootstrap.CI_LEVEL`` over SCMs and seeds (``bootstrap``); paired differences compare a policy mode with a
baseline on the same SCM and episode.

Scopes: every (suite, level) alone, then one pool per mechanism class present, "all linear SCMs" and "all
nonlinear SCMs" (``scopes.POOLS``): the class of an SCM is read from its suite file (``inputs.suite_mechanisms``), and
there is no pool over both, so that neither class hides the other.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import atomic_path
from ..errors import UserError
from ..evaluate.registry import POLICY_PREFIX
from ..tables import SUMMARY_SCHEMA
from .bootstrap import CI_LEVEL, SEED_KEY, Units, bootstrap, unit_table, units_of
from .inputs import SummaryInputs
from .metrics import EPISODE_KEYS, METRIC_COLUMNS, better, episode_metrics, step_curves
from .scopes import MECHANISM_KEY, scopes, suite_classes

PROVENANCE_KEY = b"acbo.provenance"

TRAINING_METRICS = ["reward", "norm_improvement", "f1", "parent_rate", "range_utilization", "level", "loss"]
CURVE_METRIC = "best_so_far"

SORT_KEYS = ["kind", "method", "baseline", "suite", "level", "seed", "metric", "step"]


# --- aggregation ---------------------------------------------------------------------------------------------


def with_mechanism(table: pd.DataFrame, mechanisms: dict[str, dict[str, str]]) -> pd.DataFrame:
    """The unit table with each unit's mechanism class (``MECHANISM_KEY``) from suite -> scm_id -> class."""
    classes = [mechanisms[suite][scm] for suite, scm in zip(table["suite"], table["scm_id"], strict=True)]
    return table.assign(**{MECHANISM_KEY: classes})


def seed_groups(rows: pd.DataFrame):
    """The pooled group (seed None), then each training seed alone when there are several seeds."""
    yield None, rows
    seeds = sorted(s for s in rows[SEED_KEY].unique() if s >= 0)
    if len(seeds) > 1:
        for seed in seeds:
            yield int(seed), rows[rows[SEED_KEY] == seed]


def _rows(units: Units, columns: list[str], spec: dict, **identity) -> list[dict]:
    mean, low, high = bootstrap(units, spec["bootstrap_resamples"], spec["bootstrap_seed"])
    base = {
        "n_seeds": units.n_seeds,
        "n_scms": units.values.shape[1],
        "n_episodes": units.n_episodes,
        "baseline": None,
        "step": None,
        **identity,
    }
    return [
        {**base, "metric": col, "mean": m, "ci_low": lo, "ci_high": hi}
        for col, m, lo, hi in zip(columns, mean, low, high, strict=True)
    ]


def grouped_rows(
    table: pd.DataFrame,
    group_keys: list[str],
    columns: list[str],
    spec: dict,
    kind: str,
    mechanisms: dict[str, dict[str, str]],
    per_seed: bool = True,
) -> list[dict]:
    """Bootstrap rows for every group of a unit table, per scope, pooled over seeds (and per seed)."""
    out = []
    table = with_mechanism(table, mechanisms)
    for key, by_group in table.groupby(group_keys, sort=True):
        ident = dict(zip(group_keys, key if isinstance(key, tuple) else (key,), strict=True))
        for suite, level, rows in scopes(by_group):
            for seed, group in seed_groups(rows) if per_seed else [(None, rows)]:
                out += _rows(
                    units_of(group, columns),
                    columns,
                    spec,
                    kind=kind,
                    suite=suite,
                    level=level,
                    seed=seed,
                    **ident,
                )
    return out


def metric_rows(episodes: pd.DataFrame, spec: dict, mechanisms: dict) -> list[dict]:
    """Mean and CI of every metric per (method, scope), pooled over seeds and per seed."""
    table = unit_table(episodes, ["method"], METRIC_COLUMNS)
    return grouped_rows(table, ["method"], METRIC_COLUMNS, spec, "metric", mechanisms)


PAIR_KEYS = ["suite", "scm_id", "family", "level", "episode"]


def paired_differences(episodes: pd.DataFrame) -> pd.DataFrame:
    """Policy minus baseline per (policy mode, seed, baseline, suite, SCM, episode), every metric."""
    is_policy = episodes["method"].str.startswith(POLICY_PREFIX)
    policy, baselines = episodes[is_policy], episodes[~is_policy]
    cols = PAIR_KEYS + METRIC_COLUMNS
    merged = policy[cols + ["method", "seed"]].merge(
        baselines[cols + ["method"]].rename(columns={"method": "baseline"}),
        on=PAIR_KEYS,
        suffixes=("", "_base"),
        how="inner",
        validate="many_to_many",
    )
    diffs = merged[PAIR_KEYS + ["method", "seed", "baseline"]].copy()
    for col in METRIC_COLUMNS:
        diffs[col] = merged[col].astype("float64") - merged[f"{col}_base"].astype("float64")
    return diffs.sort_values(["method", "baseline", "seed"] + PAIR_KEYS, kind="stable", ignore_index=True)


def paired_rows(episodes: pd.DataFrame, spec: dict, mechanisms: dict) -> list[dict]:
    """Mean and CI of the paired differences per (policy mode, baseline, scope), and per seed."""
    table = unit_table(paired_differences(episodes), ["method", "baseline"], METRIC_COLUMNS)
    return grouped_rows(table, ["method", "baseline"], METRIC_COLUMNS, spec, "paired_difference", mechanisms)


def curve_matrix(evals: pd.DataFrame) -> tuple[pd.DataFrame, list[int]]:
    """Best-so-far normalized improvement per episode, one column ``step_{n}`` per intervention number n
    (1 for an episode's first intervention, whatever the tables' step numbering starts from)."""
    curves = step_curves(evals)
    # null config/seed (baselines) as sentinels, so that they survive being index keys
    curves = curves.assign(config=curves["config"].fillna(""), seed=curves["seed"].fillna(-1).astype("int64"))
    curves["intervention"] = curves.groupby(EPISODE_KEYS)["step"].rank(method="dense").astype("int64")
    wide = curves.set_index(EPISODE_KEYS + ["intervention"])["best_so_far"].unstack("intervention")
    steps = [int(c) for c in wide.columns]
    wide.columns = [f"step_{c}" for c in steps]
    wide = wide.reset_index()
    wide["config"] = wide["config"].replace("", None)
    wide["seed"] = wide["seed"].astype("Int64").replace(-1, pd.NA)
    return wide, steps


def step_rows(evals: pd.DataFrame, spec: dict, mechanisms: dict) -> list[dict]:
    """Mean and CI of the best-so-far curve per (method, scope) and intervention number."""
    wide, steps = curve_matrix(evals)
    columns = [f"step_{s}" for s in steps]
    table = unit_table(wide, ["method"], columns)
    out = []
    for row in grouped_rows(table, ["method"], columns, spec, "step_curve", mechanisms, per_seed=False):
        out.append({**row, "metric": CURVE_METRIC, "step": int(row["metric"].removeprefix("step_"))})
    return out


def training_rows(train: pd.DataFrame) -> list[dict]:
    """The training log per seed and episode, long format (no CI: one run per seed)."""
    t = train.sort_values(["seed", "episode"], kind="stable")
    long = t.melt(id_vars=["seed", "episode"], value_vars=TRAINING_METRICS, var_name="metric", value_name="mean")
    return [
        {
            "kind": "training",
            "method": "policy",
            "baseline": None,
            "suite": None,
            "level": None,
            "seed": int(r.seed),
            "step": int(r.episode),
            "metric": r.metric,
            "mean": float(r.mean),
            "ci_low": None,
            "ci_high": None,
            "n_seeds": 1,
            "n_scms": 0,
            "n_episodes": 1,
        }
        for r in long.itertuples(index=False)
    ]


# The response model measured as a model: the scores of ``evaluate.response_eval`` and which way is better.
RESPONSE_SCORES = {"rmse": "lower", "nll": "lower", "best_improvement": "higher"}
RESPONSE_PAIR = ("response_model", "response_gp")  # the paired difference: the first minus the second
RESPONSE_KEYS = ["seed", "suite", "level", "scm_id", "replicate", "step"]  # a pair: the same buffer


def response_rows(response: pd.DataFrame, spec: dict, mechanisms: dict) -> pd.DataFrame:
    """Mean and CI of each score per (model, buffer size k, scope) (kind ``response_quality``; step = k) and of
    the paired difference response_model minus response_gp on the same suite, SCM, replicate and k (kind
    ``response_paired``); a unit is one SCM under one seed (the mean over its replicates)."""
    scores = list(RESPONSE_SCORES)
    frame = response.rename(columns={"model": "method", "interventions": "step"})
    table = unit_table(frame, ["method", "step"], scores)
    rows = grouped_rows(table, ["method", "step"], scores, spec, "response_quality", mechanisms)
    first, second = (frame[frame["method"] == m].set_index(RESPONSE_KEYS)[scores] for m in RESPONSE_PAIR)
    diffs = (first - second.reindex(first.index)).dropna(how="all").reset_index()
    diffs = diffs.assign(method=RESPONSE_PAIR[0], baseline=RESPONSE_PAIR[1])
    if len(diffs):
        table = unit_table(diffs, ["method", "baseline", "step"], scores)
        rows += grouped_rows(table, ["method", "baseline", "step"], scores, spec, "response_paired", mechanisms)
    out = pd.DataFrame(rows)
    return out.assign(config=spec["config"], better=out["metric"].map(RESPONSE_SCORES))


def summarize(inputs: SummaryInputs) -> pd.DataFrame:
    """The summary table (SUMMARY_SCHEMA), sorted, from the loaded inputs."""
    spec = inputs.spec
    episodes = episode_metrics(inputs.evals)
    episodes["optimum_found"] = episodes["optimum_found"].astype("float64")
    mechanisms = inputs.mechanisms
    rows = metric_rows(episodes, spec, mechanisms) + paired_rows(episodes, spec, mechanisms)
    rows += step_rows(inputs.evals, spec, mechanisms)
    rows += training_rows(inputs.train)
    frame = pd.DataFrame(rows)
    frame["config"] = spec["config"]
    frame["better"] = frame["metric"].map(better)
    if inputs.response is not None:
        frame = pd.concat([frame, response_rows(inputs.response, spec, mechanisms)], ignore_index=True)
    return sort_summary(frame)


def sort_summary(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.astype({"level": "Int16", "seed": "Int32", "step": "Int32"})
    frame = frame.sort_values(SORT_KEYS, kind="stable", na_position="first", ignore_index=True)
    return frame[SUMMARY_SCHEMA.names]


# --- provenance ------------------------------------------------------------------------------------------


EPISODE_ID = ["method", "seed", "suite", "scm_id", "episode"]


def _distinct(values) -> list[str]:
    """The distinct non-null values, as sorted strings (a column is reduced to its distinct values first:
    iterating a million-row Arrow-backed column element by element took 1.5 s of a production summary)."""
    if isinstance(values, pd.Series):
        values = values.dropna().unique()
    return sorted({str(v) for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))})


def provenance(inputs: SummaryInputs) -> dict:
    """What produced the summarized tables: read from the tables and checkpoint headers only."""
    spec, evals, train = inputs.spec, inputs.evals, inputs.train
    policy = evals[evals["method"].str.startswith(POLICY_PREFIX)]
    baselines = evals[~evals["method"].str.startswith(POLICY_PREFIX)]
    seeds = []
    for seed in sorted(inputs.headers):
        header = inputs.headers[seed]
        log = train[train["seed"] == seed].sort_values("episode")
        ev = policy[policy["seed"] == seed]
        seeds.append(
            {
                "seed": seed,
                "checkpoint_format": header.get("format"),
                "checkpoint_episode": header.get("episode"),
                "config_hash": header.get("config_hash"),
                "checkpoint_package_version": header.get("package_version"),
                "checkpoint_git_commit": header.get("git_commit"),
                "checkpoint_metrics": header.get("metrics"),
                "checkpoint_file_hash": inputs.checkpoint_hashes.get(seed),
                "evaluated_checkpoint_hashes": _distinct(ev["checkpoint_hash"]),
                **({"response_quality_checkpoint_hashes": _distinct(
                    inputs.response["checkpoint_hash"][inputs.response["seed"] == seed])}
                   if inputs.response is not None else {}),
                "training_episodes": int(log["episode"].nunique()),
                "final_level": int(log["level"].iloc[-1]),
                "training_wall_time_s": float(log["wall_time"].iloc[-1]),
            }
        )
    per_suite = evals.groupby(["method", "suite", "scm_id", "seed"], dropna=False)["episode"].nunique().groupby(
        level="suite").max()  # episodes per SCM on each suite: more on a suite of few SCMs (min_suite_episodes)
    usual = int(per_suite.mode().min())
    return {
        "config": spec["config"],
        "seeds": sorted(spec["seeds"]),
        "eval_suites": sorted(spec["eval_suites"]),
        "mechanisms": suite_classes(inputs.mechanisms),
        "bootstrap": {
            "resamples": spec["bootstrap_resamples"],
            "seed": spec["bootstrap_seed"],
            "level": CI_LEVEL,
        },
        "methods": sorted(evals["method"].unique()),
        "protocol": {
            "scms": int(evals[["suite", "scm_id"]].drop_duplicates().shape[0]),
            "episodes_per_scm": usual,
            "more_episodes": {suite: int(n) for suite, n in per_suite.items() if n != usual},
            "interventions_per_episode": int(evals.groupby(EPISODE_ID, dropna=False)["step"].nunique().max()),
        },
        "package_versions": _distinct(
            [*_distinct(evals["package_version"]), *(h.get("package_version") for h in inputs.headers.values())]
        ),
        "git_commits": {
            "policy evaluation": _distinct(policy["git_commit"]),
            "baselines": _distinct(baselines["git_commit"]),
            "training": _distinct(h.get("git_commit") for h in inputs.headers.values()),
            **({"response quality": _distinct(inputs.response["git_commit"])} if inputs.response is not None else {}),
        },
        "training": seeds,
        "plugins": {  # plug-in method -> hashes of the files its rows came from
            m: _distinct(rows["plugin_hash"]) for m, rows in evals[evals["plugin_hash"].notna()].groupby("method")
        },
    }


# --- outputs -------------------------------------------------------------------------------------------------


def to_arrow(frame: pd.DataFrame, meta: dict | None = None) -> pa.Table:
    table = pa.Table.from_pandas(frame[SUMMARY_SCHEMA.names], schema=SUMMARY_SCHEMA, preserve_index=False)
    metadata = {PROVENANCE_KEY: json.dumps(meta, sort_keys=True).encode()} if meta is not None else {}
    return table.replace_schema_metadata(metadata)


def write_summary(frame: pd.DataFrame, meta: dict, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(to_arrow(frame, meta), tmp, compression="zstd", write_statistics=False)


def read_summary(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """A summary table and its provenance; a missing or foreign file raises ``UserError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"missing summary table {path}")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise UserError(f"{path}: cannot read summary table: {err}") from None
    if table.schema.remove_metadata() != SUMMARY_SCHEMA:
        raise UserError(f"{path}: not a summary table (schema differs from SUMMARY_SCHEMA)")
    meta = json.loads((table.schema.metadata or {}).get(PROVENANCE_KEY, b"{}"))
    return table.to_pandas(), meta


def load_summaries(paths) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Summary tables of distinct configs, concatenated in config order (so not in argument order), and
    their provenance per config."""
    loaded = {}
    for path in paths:
        frame, meta = read_summary(path)
        if frame.empty:
            raise UserError(f"{path}: the summary table has no rows")
        name = frame["config"].iloc[0]
        if name in loaded:
            raise UserError(f"{path}: a second summary of config {name!r}")
        loaded[name] = (frame, meta)
    names = sorted(loaded)
    return pd.concat([loaded[n][0] for n in names], ignore_index=True), {n: loaded[n][1] for n in names}
