"""The metrics: their catalogue (direction, label, note, axis title) and the episode metrics computed from
the long evaluation table (one function for all stages)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

OPTIMUM_THRESHOLD = 0.95
EARLY_STEPS = 10  # the budget of ``norm_improvement_best_10``: what a method finds in its first interventions
GAP_TOLERANCE = 1e-3  # a ratio's denominator below this share of the values' scale counts as ~0
EPISODE_KEYS = ["config", "seed", "suite", "scm_id", "family", "level", "method", "episode"]



@dataclass(frozen=True)
class Metric:
    """What the summary and its pages say about a metric: the one definition of each of these facts."""

    better: str | None  # "higher", "lower", or None where neither is better
    label: str = ""  # what it measures, for table headers and chart subtitles
    unit: str = ""
    note: str = ""  # how it is computed, for the page's glossary
    axis: str = ""  # a short axis title (panels are narrow)
    shown_as: str = ""  # how a table prints it (``chart_style.ci_text``): "share" as percent, "percent", else plain


RATIO = "ratio: 0 = no change, 1 = oracle"
Y_UNITS = "Y in the SCM's own units"

# Episode metrics (the columns of ``episode_metrics``, in this order), then the training and curve metrics.
METRICS: dict[str, Metric] = {
    "target_mean": Metric(
        "lower", "average target value over the episode", Y_UNITS,
        "the sampled target values averaged over the episode, in the SCM's own units (lower is better; "
        "scales differ between SCMs).", "average target Y"),
    "target_best": Metric("lower", "best target value in the episode", Y_UNITS),
    "norm_improvement_mean": Metric(
        "higher", "normalized improvement, episode mean", RATIO,
        "the same ratio averaged over every intervention of the episode (rewards finding good actions early)."),
    "norm_improvement_best": Metric(
        "higher", "normalized improvement, best so far at the last step", RATIO,
        "(mu_Y - E[Y | do(a)]) / (mu_Y - y*) of the best action so far, at the episode's last intervention: "
        "0 = no better than not intervening, 1 = the oracle's best action. Simple regret is 1 minus it.",
        "normalized improvement (1 = oracle)"),
    "norm_improvement_best_10": Metric(
        "higher", f"normalized improvement, best so far after {EARLY_STEPS} interventions", RATIO,
        f"the best action's normalized improvement among the first {EARLY_STEPS} interventions of the episode "
        "(all of them in shorter episodes): how quickly a method finds the optimum.",
        f"best after {EARLY_STEPS} (1 = oracle)"),
    "simple_regret": Metric("lower", "simple regret (1 - best normalized improvement)", "ratio"),
    "optimum_found": Metric(
        "higher", f"episodes that found the optimum (>= {OPTIMUM_THRESHOLD})", "share of episodes",
        f"share of episodes whose best action reached a normalized improvement of at least {OPTIMUM_THRESHOLD}.",
        shown_as="share"),
    "parent_rate": Metric(
        "higher", "interventions on a true parent of the target", "share of interventions",
        "share of interventions on a true parent of the target.", "interventions on a true parent", shown_as="share"),
    "optimal_variable_rate": Metric(
        "higher", "interventions on the oracle's variable", "share of interventions",
        "share of interventions on the variable the oracle intervenes on.", "interventions on the oracle's variable",
        shown_as="share"),
    "range_utilization": Metric(
        None, "range utilization |v - center| / radius", "share of the half-range (0 = centre, 1 = range end)",
        "mean |v - center| / radius of the chosen values, a share of the half-range like the rates above (shown "
        "as percent; 100% = always at a range end, where the optimum of a linear SCM lies). The training log's "
        "column is the same quantity over the executed actions.",
        "range utilization |v - center| / radius", shown_as="share"),
    "f1": Metric(
        "higher", "structure F1 of the surrogate", "F1",
        "structure F1 of the surrogate's parent predictions, fitted on the data the method collected.",
        "surrogate structure F1"),
    "improvement_over_random": Metric(
        "higher", "share of the random-to-oracle gap closed", "percent: 0 = random, 100 = oracle",
        "the share of the random-to-oracle gap the method closes, (random - method) / (random - oracle) in "
        "percent, on exact values: the method's exact expected target averaged over the episode, the exact "
        "expected outcome of the uniformly random policy and the oracle's y* on the same SCM (0 = random, 100 = "
        "the oracle, never above 100). Ratios whose denominator is ~0 are left out (n/a).", shown_as="percent"),
    "reward": Metric("higher", "episode reward", axis="episode reward"),
    "norm_improvement": Metric("higher", "normalized improvement of the executed actions", RATIO,
                               axis="normalized improvement (ratio)"),
    "best_so_far": Metric("higher"),
    "level": Metric(None),
    "loss": Metric(None),
}
METRIC_COLUMNS = list(METRICS)[: list(METRICS).index("improvement_over_random") + 1]


def better(metric: str) -> str | None:
    """Which direction is better for ``metric`` (None: neither, or not a known metric)."""
    return METRICS[metric].better if metric in METRICS else None


def episode_metrics(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, SCM, episode) with every metric; lower ``target_*`` is better.

    ``improvement_over_random`` is the share of the random-to-oracle gap the episode closes, on exact
    values: ``(random - mean expected target) / (random - oracle) * 100`` (at most 100, 0 for the random
    policy's expectation). Every ratio is NaN where its denominator is ~0 (``gap_defined``), so an SCM
    on which no action beats doing nothing or random cannot blow a metric up.
    """
    t = with_checked_norm_improvement(table).sort_values(EPISODE_KEYS + ["step"], kind="stable")
    early = t.groupby(EPISODE_KEYS, dropna=False, sort=False).cumcount() < EARLY_STEPS
    t = t.assign(norm_improvement_early=t["norm_improvement"].where(early))
    grouped = t.groupby(EPISODE_KEYS, dropna=False, sort=True)
    out = grouped.agg(
        target_mean=("target", "mean"),
        target_best=("target", "min"),
        norm_improvement_mean=("norm_improvement", "mean"),
        norm_improvement_best=("norm_improvement", "max"),  # best-so-far at the last step
        norm_improvement_best_10=("norm_improvement_early", "max"),
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
