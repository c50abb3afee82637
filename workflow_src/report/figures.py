"""The Altair charts of the summary and comparison pages, built from summary tables (pure: no files)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from ..evaluate.registry import POLICY_PREFIX
from .bootstrap import CI_PERCENT
from .chart_style import (
    LINE_LEGEND,
    METHOD_COLORS,
    RANDOM,
    RANDOM_DASH,
    SEED_COLORS,
    WIDTH,
    ci_text,
    color_encoding,
    method_order,
    ncols,
    pooled_metrics,
)
from .metrics import METRICS
from .scopes import POOLED_SCOPES, with_scope_labels


def ci_marks(x_axis, y, methods, tooltip, size: int, **point_encoding):
    """CI bars (``ci_low``..``ci_high``) and mean points per row, coloured by method."""
    base = alt.Chart()
    bars = base.mark_errorbar(ticks=True, thickness=2).encode(
        x=x_axis, x2="ci_high:Q", y=y, color=color_encoding(methods, legend=False)
    )
    points = base.mark_point(filled=True, size=size, opacity=1).encode(
        x="mean:Q", y=y, color=color_encoding(methods), tooltip=tooltip, **point_encoding
    )
    return bars, points


def interval_chart(frame, value_title, facet, facet_title, facet_order, title, subtitle, independent=False):
    """Mean with CI per method (one row each), one panel per facet value; random shown as a dashed line
    with a grey band for its CI on every panel."""
    methods = method_order(frame["method"])
    y = alt.Y("method:N", sort=methods, title=None)
    tooltip = [
        alt.Tooltip("method:N"),
        alt.Tooltip(f"{facet}:N", title=facet_title),
        alt.Tooltip("ci_text:N", title=f"mean [{CI_PERCENT} CI]"),
        alt.Tooltip("n_scms:Q", title="SCMs"),
        alt.Tooltip("n_seeds:Q", title="seeds"),
    ]
    base = alt.Chart()
    is_random = alt.datum.method == RANDOM
    band = (
        base.transform_filter(is_random)
        .mark_rect(color=METHOD_COLORS[RANDOM], opacity=0.18)
        .encode(x="ci_low:Q", x2="ci_high:Q")
    )
    rule = (
        base.transform_filter(is_random)
        .mark_rule(color=METHOD_COLORS[RANDOM], strokeDash=RANDOM_DASH, size=2)
        .encode(x="mean:Q")
    )
    bars, points = ci_marks(
        alt.X("ci_low:Q", title=value_title, scale=alt.Scale(zero=False), axis=alt.Axis(tickCount=6)),
        y, methods, tooltip, size=80, shape=alt.condition(is_random, alt.value("diamond"), alt.value("circle")),
    )
    layer = alt.layer(band, rule, bars, points, data=frame).properties(width=WIDTH, height=22 * len(methods))
    chart = layer.facet(
        facet=alt.Facet(f"{facet}:N", sort=facet_order, title=None), columns=ncols(len(facet_order))
    ).properties(title=alt.Title(title, subtitle=subtitle))
    return chart.resolve_scale(x="independent") if independent else chart


def comparison_chart(summary: pd.DataFrame, metric: str, title: str, independent: bool,
                     classes: dict | None = None) -> alt.FacetChart:
    rows, order = with_scope_labels(pooled_metrics(summary, [metric]), classes)
    label, unit = METRICS[metric].label, METRICS[metric].unit
    direction = "Higher" if METRICS[metric].better == "higher" else "Lower"
    subtitle = [
        f"{label[0].upper() + label[1:]} ({unit}). {direction} is better.",
        f"Dots: mean over SCMs and seeds; bars: {CI_PERCENT} bootstrap CI. "
        "Dashed grey line and band: the random baseline.",
    ]
    return interval_chart(rows, METRICS[metric].axis, "scope", "suite", order, title, subtitle, independent)


def paired_chart(summary: pd.DataFrame, metric: str = "norm_improvement_best",
                 classes: dict | None = None) -> alt.FacetChart:
    rows, order = with_scope_labels(pooled_metrics(summary, [metric], kind="paired_difference"), classes)
    policies = method_order(rows["method"])
    baselines = method_order(rows["baseline"])
    y = alt.Y("baseline:N", sort=baselines, title="against baseline")
    base = alt.Chart()
    zero = base.mark_rule(color="#333", size=1).encode(x=alt.datum(0))
    bars = base.mark_errorbar(ticks=True, thickness=2).encode(
        x=alt.X("ci_low:Q", title="policy \u2212 baseline"),
        x2="ci_high:Q",
        y=y,
        yOffset=alt.YOffset("method:N", sort=policies),
        color=color_encoding(policies, legend=False),
    )
    points = base.mark_point(filled=True, size=70, opacity=1).encode(
        x="mean:Q",
        y=y,
        yOffset=alt.YOffset("method:N", sort=policies),
        color=color_encoding(policies),
        tooltip=[
            alt.Tooltip("method:N", title="policy"),
            alt.Tooltip("baseline:N"),
            alt.Tooltip("scope:N", title="suite"),
            alt.Tooltip("ci_text:N", title=f"difference [{CI_PERCENT} CI]"),
            alt.Tooltip("n_scms:Q", title="SCMs"),
        ],
    )
    height = 16 * len(baselines) * max(1, len(policies))
    layer = alt.layer(zero, bars, points, data=rows).properties(width=WIDTH, height=height)
    return layer.facet(facet=alt.Facet("scope:N", sort=order, title=None), columns=ncols(len(order))).properties(
        title=alt.Title(
            "Policy minus baseline, paired on the same SCM and episode",
            subtitle=[
                f"Difference in {METRICS[metric].label}; right of the black line (> 0): the policy is better.",
                f"Bars: {CI_PERCENT} bootstrap CI over SCMs and seeds.",
            ],
        )
    )


def step_chart(summary: pd.DataFrame, classes: dict | None = None, pools_only: bool = False) -> alt.FacetChart:
    """Best-so-far curves of every method, one panel per scope (``pools_only``: the pooled scopes alone)."""
    rows = summary[summary["kind"] == "step_curve"].copy()
    if pools_only:
        rows = rows[rows["suite"].isin(POOLED_SCOPES)]
    rows, order = with_scope_labels(rows, classes)
    rows["ci_text"] = [
        ci_text(m, lo, hi) for m, lo, hi in zip(rows["mean"], rows["ci_low"], rows["ci_high"], strict=True)
    ]
    methods = method_order(rows["method"])
    dashes = alt.Scale(domain=methods, range=[RANDOM_DASH if m == RANDOM else [1, 0] for m in methods])
    first, last = int(rows["step"].min()), int(rows["step"].max())
    base = alt.Chart().encode(
        x=alt.X(
            "step:Q",
            title="intervention number",
            scale=alt.Scale(domain=[first, max(last, first + 1)], nice=False),
            axis=alt.Axis(tickMinStep=1, format="d", tickCount=10),
        ),
    )
    band = base.mark_area(opacity=0.13).encode(y="ci_low:Q", y2="ci_high:Q", color=color_encoding(methods, LINE_LEGEND))
    line = base.mark_line(strokeWidth=2).encode(
        y=alt.Y("mean:Q", title="best-so-far normalized improvement"),
        color=color_encoding(methods, LINE_LEGEND),
        strokeDash=alt.StrokeDash("method:N", scale=dashes, legend=LINE_LEGEND),
        tooltip=[
            alt.Tooltip("method:N"),
            alt.Tooltip("step:Q", title="intervention"),
            alt.Tooltip("ci_text:N", title=f"mean [{CI_PERCENT} CI]"),
        ],
    )
    layer = alt.layer(band, line, data=rows).properties(width=WIDTH, height=170)
    return layer.facet(facet=alt.Facet("scope:N", sort=order, title=None), columns=ncols(len(order))).properties(
        title=alt.Title(
            "Best-so-far normalized improvement after each intervention",
            subtitle=[
                "0 = no better than not intervening, 1 = the oracle's value. "
                f"Lines: mean; bands: {CI_PERCENT} bootstrap CI.",
                "The random baseline is the dashed grey line.",
            ],
        )
    )


TRAINING_PANELS = ["reward", "norm_improvement", "f1"]  # titled by their axis titles in ``metrics.METRICS``


def smoothing_window(n_episodes: int) -> int:
    return int(max(1, min(50, n_episodes // 20)))


def training_frame(summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, int, pd.DataFrame]:
    """Training metrics per seed with a trailing moving average, and the episodes where the level changed."""
    rows = summary[summary["kind"] == "training"]
    wide = rows.pivot_table(index=["seed", "step"], columns="metric", values="mean", sort=True).reset_index()
    wide = wide.rename(columns={"step": "episode"})
    window = smoothing_window(int(wide.groupby("seed")["episode"].nunique().max()))
    long = wide.melt(id_vars=["seed", "episode"], value_vars=TRAINING_PANELS)
    long = long.sort_values(["metric", "seed", "episode"], kind="stable")
    long["smoothed"] = long.groupby(["metric", "seed"])["value"].transform(
        lambda v: v.rolling(window, min_periods=1).mean()
    )
    levels = wide[["seed", "episode", "level"]].sort_values(["seed", "episode"]).copy()
    levels["level"] = levels["level"].astype(int)
    changed = levels[levels.groupby("seed")["level"].diff().fillna(0) != 0]
    long["seed"] = long["seed"].astype(int).astype(str)
    levels["seed"] = levels["seed"].astype(int).astype(str)
    changed = changed.assign(seed=changed["seed"].astype(int).astype(str))
    return long, levels, window, changed


def training_chart(summary: pd.DataFrame) -> alt.VConcatChart:
    long, levels, window, changed = training_frame(summary)
    seeds = sorted(long["seed"].unique(), key=int)
    seed_color = alt.Color(
        "seed:N",
        sort=seeds,
        title="training seed",
        scale=alt.Scale(domain=seeds, range=[SEED_COLORS[i % len(SEED_COLORS)] for i in range(len(seeds))]),
    )
    first, last = int(long["episode"].min()), int(long["episode"].max())
    x = alt.X(
        "episode:Q",
        title="training episode",
        scale=alt.Scale(domain=[first, max(last, first + 1)], nice=False),
        axis=alt.Axis(tickMinStep=1, format="d", tickCount=10, labelOverlap=True),
    )
    marks = alt.Chart(changed).mark_rule(strokeDash=[3, 3], opacity=0.7).encode(x="episode:Q", color=seed_color)
    panels = []
    for metric in TRAINING_PANELS:
        title = METRICS[metric].axis
        data = long[long["metric"] == metric]
        raw = alt.Chart(data).mark_line(opacity=0.25, strokeWidth=1).encode(x=x, y="value:Q", color=seed_color)
        smooth = (
            alt.Chart(data)
            .mark_line(strokeWidth=2)
            .encode(
                x=x,
                y=alt.Y("smoothed:Q", title=title),
                color=seed_color,
                tooltip=[
                    "seed:N",
                    "episode:Q",
                    alt.Tooltip("value:Q", format=".3f"),
                    alt.Tooltip("smoothed:Q", format=".3f"),
                ],
            )
        )
        panels.append(alt.layer(marks, raw, smooth).properties(width=3 * WIDTH, height=120))
    lo, hi = int(levels["level"].min()), int(levels["level"].max())
    level = (
        alt.Chart(levels)
        .mark_line(interpolate="step-after", strokeWidth=2)
        .encode(
            x=x,
            color=seed_color,
            y=alt.Y(
                "level:Q",
                title="curriculum level",
                scale=alt.Scale(domain=[lo - 0.5, hi + 0.5], nice=False),
                axis=alt.Axis(values=list(range(lo, hi + 1)), format="d"),
            ),
            tooltip=["seed:N", "episode:Q", "level:Q"],
        )
    )
    panels.append(alt.layer(marks, level).properties(width=3 * WIDTH, height=90))
    smoothing = f"thick: moving average over {window} episodes, thin: per episode" if window > 1 else "per episode"
    return alt.vconcat(*panels).properties(
        title=alt.Title(
            "Training curves per seed",
            subtitle=[f"Lines per seed ({smoothing}); dotted vertical lines: curriculum level changes."],
        )
    )


BEHAVIOUR = ["parent_rate", "optimal_variable_rate", "range_utilization"]  # shares, shown as percent


def behaviour_chart(summary: pd.DataFrame, classes: dict | None = None) -> alt.FacetChart:
    rows, order = with_scope_labels(pooled_metrics(summary, BEHAVIOUR), classes)
    for col in ("mean", "ci_low", "ci_high"):
        rows[col] = rows[col] * 100.0
    rows["ci_text"] = [
        ci_text(m, lo, hi) + " %" for m, lo, hi in zip(rows["mean"], rows["ci_low"], rows["ci_high"], strict=True)
    ]
    rows["what"] = rows["metric"].map({m: METRICS[m].axis for m in BEHAVIOUR})
    methods = method_order(rows["method"])
    x = alt.X("scope:N", sort=order, title="suite", axis=alt.Axis(labelAngle=-30))
    offset = alt.XOffset("method:N", sort=methods)
    base = alt.Chart()
    bars = base.mark_bar(opacity=0.85).encode(
        x=x,
        xOffset=offset,
        y=alt.Y("mean:Q", title="percent", scale=alt.Scale(domain=[0, 100])),
        color=color_encoding(methods),
        tooltip=[
            alt.Tooltip("method:N"),
            alt.Tooltip("scope:N", title="suite"),
            alt.Tooltip("ci_text:N", title=f"mean [{CI_PERCENT} CI]"),
        ],
    )
    errs = base.mark_errorbar(ticks=True, color="#222").encode(
        x=x, xOffset=offset, y=alt.Y("ci_low:Q", title="percent"), y2="ci_high:Q"
    )
    width = max(WIDTH, 14 * len(methods) * len(order))
    layer = alt.layer(bars, errs, data=rows).properties(width=width, height=150)
    return layer.facet(
        row=alt.Row(
            "what:N",
            sort=[METRICS[m].axis for m in BEHAVIOUR],
            title=None,
            header=alt.Header(labelAngle=0, labelOrient="top", labelAnchor="start", labelFontSize=13),
        )
    ).properties(
        title=alt.Title(
            "How each method intervenes",
            subtitle=["Shares of interventions (percent) per method and suite; "
                      f"black bars: {CI_PERCENT} bootstrap CI."],
        )
    )


def compare_chart(frame: pd.DataFrame, metric: str = "norm_improvement_best") -> alt.FacetChart:
    """One panel per config and pool: every method's headline metric over the linear (or nonlinear) SCMs of all
    of that config's suites."""
    rows = pooled_metrics(frame, [metric])
    rows = rows[rows["suite"].isin(POOLED_SCOPES)]
    rows = rows.assign(panel=rows["config"] + ": " + rows["suite"])
    keys = rows[["config", "suite", "panel"]].drop_duplicates()
    keys = keys.assign(_pool=keys["suite"].map(POOLED_SCOPES.index)).sort_values(["config", "_pool"])
    label, unit = METRICS[metric].label, METRICS[metric].unit
    return interval_chart(
        rows,
        METRICS[metric].axis,
        "panel",
        "config: scope",
        list(keys["panel"]),
        "Headline comparison of experiment configs",
        [
            f"{label[0].upper() + label[1:]} ({unit}), pooled over each config's linear (or nonlinear) SCMs.",
            f"Dots: mean, bars: {CI_PERCENT} bootstrap CI over SCMs and seeds.",
            "Dashed grey line and band: the random baseline. "
            "Configs evaluated on different suites are not directly comparable.",
        ],
    )


def compare_suite_chart(frame: pd.DataFrame, metric: str = "norm_improvement_best",
                        classes: dict | None = None) -> alt.FacetChart:
    """Per suite, the policy modes of every config side by side (baselines are shared, shown once)."""
    rows, order = with_scope_labels(pooled_metrics(frame, [metric]), classes)
    rows = rows[~rows["suite"].isin(POOLED_SCOPES)]
    policy = rows["method"].str.startswith(POLICY_PREFIX)
    shared = rows[~policy].drop_duplicates(["method", "suite", "level"]).assign(entry=lambda d: d["method"])
    ours = rows[policy].assign(entry=lambda d: d["config"] + ": " + d["method"])
    rows = pd.concat([ours, shared], ignore_index=True).drop(columns=["config"]).rename(columns={"entry": "row"})
    order = [o for o in order if o in set(rows["scope"])]
    methods = method_order(rows["method"])
    entries = sorted(ours["entry"].unique()) + [m for m in methods if m in set(shared["method"])]
    y = alt.Y("row:N", sort=entries, title=None)
    tooltip = [alt.Tooltip("row:N", title="entry"), alt.Tooltip("ci_text:N", title=f"mean [{CI_PERCENT} CI]")]
    bars, points = ci_marks(alt.X("ci_low:Q", title=METRICS[metric].axis), y, methods, tooltip, size=70)
    layer = alt.layer(bars, points, data=rows).properties(width=WIDTH, height=18 * len(entries))
    return layer.facet(facet=alt.Facet("scope:N", sort=order, title=None), columns=ncols(len(order))).properties(
        title=alt.Title(
            "Per suite: each config's policy beside the shared baselines",
            subtitle=[f"Dots: mean, bars: {CI_PERCENT} bootstrap CI."],
        )
    )
