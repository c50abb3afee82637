"""Episode metrics of DESIGN §6, computed from the long evaluation table (one function for all stages)."""

from __future__ import annotations

import pandas as pd

OPTIMUM_THRESHOLD = 0.95
GAP_TOLERANCE = 1e-3  # a ratio's denominator below this share of the values' scale counts as ~0
EPISODE_KEYS = ["config", "seed", "suite", "scm_id", "family", "level", "method", "episode"]

METRIC_COLUMNS = [
    "target_mean",
    "target_best",
    "norm_improvement_mean",
    "norm_improvement_best",
    "simple_regret",
    "optimum_found",
    "parent_rate",
    "optimal_variable_rate",
    "range_utilization",
    "f1",
    "improvement_over_random",
]


def episode_metrics(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, SCM, episode) with every metric; lower ``target_*`` is better.

    ``improvement_over_random`` is the share of the random-to-oracle gap the episode closes, on exact
    values: ``(random - mean expected target) / (random - oracle) * 100`` (at most 100, 0 for the random
    policy's expectation). Every ratio is NaN where its denominator is ~0 (``gap_defined``), so an SCM
    on which no action beats doing nothing or random cannot blow a metric up.
    """
    t = with_checked_norm_improvement(table).sort_values(EPISODE_KEYS + ["step"], kind="stable")
    grouped = t.groupby(EPISODE_KEYS, dropna=False, sort=True)
    out = grouped.agg(
        target_mean=("target", "mean"),
        target_best=("target", "min"),
        norm_improvement_mean=("norm_improvement", "mean"),
        norm_improvement_best=("norm_improvement", "max"),  # best-so-far at the last step
        parent_rate=("is_parent", "mean"),
        optimal_variable_rate=("is_optimal_variable", "mean"),
        range_utilization=("range_utilization", "mean"),
        f1=("f1", "last"),
        expected_mean=("expected_target", "mean"),
        random_target=("random_target", "first"),
        oracle_target=("oracle_target", "first"),
    ).reset_index()
    out["simple_regret"] = 1.0 - out["norm_improvement_best"]
    out["optimum_found"] = out["norm_improvement_best"] >= OPTIMUM_THRESHOLD
    out["range_utilization"] *= 100.0
    gap = out["random_target"] - out["oracle_target"]
    defined = gap_defined(gap, out["random_target"], out["oracle_target"])
    out["improvement_over_random"] = ((out["random_target"] - out["expected_mean"]) / gap * 100.0).where(defined)
    # optimum_found is a share of episodes: undefined (NaN) where norm_improvement is
    out["optimum_found"] = out["optimum_found"].astype("float64").where(out["norm_improvement_best"].notna())
    return out[EPISODE_KEYS + METRIC_COLUMNS]


def gap_defined(gap: pd.Series, *values: pd.Series) -> pd.Series:
    """A denominator ``gap`` is usable when it exceeds ``GAP_TOLERANCE`` times the values' scale (at least 1)."""
    scale = pd.concat([v.abs() for v in values], axis=1).max(axis=1).clip(lower=1.0)
    return gap > GAP_TOLERANCE * scale


def with_checked_norm_improvement(table: pd.DataFrame) -> pd.DataFrame:
    """The table with ``norm_improvement`` NaN on SCMs whose gap ``mu_Y - y*`` is ~0 or negative (no action
    beats doing nothing: the normalized scale is undefined there; only user suites can hold such SCMs)."""
    defined = gap_defined(table["mu_target"] - table["oracle_target"], table["mu_target"], table["oracle_target"])
    if defined.all():
        return table
    return table.assign(norm_improvement=table["norm_improvement"].where(defined))


def step_curves(table: pd.DataFrame) -> pd.DataFrame:
    """Best-so-far normalized improvement after each step, per (method, SCM, episode)."""
    t = with_checked_norm_improvement(table).sort_values(EPISODE_KEYS + ["step"], kind="stable").copy()
    t["best_so_far"] = t.groupby(EPISODE_KEYS, dropna=False)["norm_improvement"].cummax()
    return t[EPISODE_KEYS + ["step", "norm_improvement", "best_so_far"]]
