"""Episode metrics of DESIGN §6, computed from the long evaluation table (one function for all stages)."""

from __future__ import annotations

import numpy as np
import pandas as pd

OPTIMUM_THRESHOLD = 0.95
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

    ``improvement_over_random`` compares the episode's ``target_mean`` with the exact expected outcome
    of the uniformly random policy on the same SCM: ``(random - target_mean) / |random| * 100``.
    """
    t = table.sort_values(EPISODE_KEYS + ["step"], kind="stable")
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
        random_target=("random_target", "first"),
    ).reset_index()
    out["simple_regret"] = 1.0 - out["norm_improvement_best"]
    out["optimum_found"] = out["norm_improvement_best"] >= OPTIMUM_THRESHOLD
    out["range_utilization"] *= 100.0
    out["improvement_over_random"] = (
        (out["random_target"] - out["target_mean"]) / out["random_target"].abs().replace(0.0, np.nan) * 100.0
    )
    return out[EPISODE_KEYS + METRIC_COLUMNS]


def step_curves(table: pd.DataFrame) -> pd.DataFrame:
    """Best-so-far normalized improvement after each step, per (method, SCM, episode)."""
    t = table.sort_values(EPISODE_KEYS + ["step"], kind="stable").copy()
    t["best_so_far"] = t.groupby(EPISODE_KEYS, dropna=False)["norm_improvement"].cummax()
    return t[EPISODE_KEYS + ["step", "norm_improvement", "best_so_far"]]
