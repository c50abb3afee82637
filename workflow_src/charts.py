"""Altair charts and the offline HTML pages (``summary.html``, ``compare.html``) built from summary tables.

Pages are self-contained: the Vega, Vega-Lite and vega-embed JavaScript (from ``vl_convert``) is inlined
once, and each chart's Vega-Lite spec is embedded as JSON and rendered by ``vegaEmbed`` in the browser.
Nothing is fetched when a page is opened. The same specs are rendered to PNG with ``vl_convert``.
Every chart uses one fixed colour per method, so a method looks the same everywhere.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd

from .atomic import atomic_write_text
from .summarize import ALL_SUITES, BETTER

# Fixed colours: the learned policy in blues/purples, heuristics warm, the oracle green, random grey.
METHOD_COLORS = {
    "policy_greedy": "#1f5fbf",
    "policy_sampled": "#8e44ad",
    "oracle": "#2a9d3a",
    "marginal_regression": "#e67e22",
    "thompson_bandit": "#c0392b",
    "causal_bo": "#d4a017",
    "random": "#8a8a8a",
}
EXTRA_COLORS = ["#17becf", "#8c564b", "#e377c2", "#bcbd22", "#7f3c8d", "#11a579", "#3969ac", "#f2b701"]
SEED_COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]
RANDOM = "random"
RANDOM_DASH = [6, 4]

METHOD_NOTES = {
    "policy_greedy": "the trained policy, taking its most likely action (mode) at each step",
    "policy_sampled": "the trained policy, sampling its action at each step",
    "oracle": "knows the SCM and always takes the best intervention (the upper bound)",
    "marginal_regression": "regresses the target on each variable and extrapolates to the range ends",
    "thompson_bandit": "a Thompson-sampling linear bandit over the intervenable variables",
    "causal_bo": "GP-based causal Bayesian optimization (CBO family): per variable a GP around a causal prior "
    "from the observational data, expected improvement over each range",
    "random": "a random variable at a uniformly random value (the reference every method must beat)",
}
METRIC_LABELS = {
    "norm_improvement_best": (
        "normalized improvement, best so far at the last step",
        "ratio: 0 = no change, 1 = oracle",
    ),
    "norm_improvement_mean": ("normalized improvement, episode mean", "ratio: 0 = no change, 1 = oracle"),
    "target_mean": ("average target value over the episode", "Y in the SCM's own units"),
    "target_best": ("best target value in the episode", "Y in the SCM's own units"),
    "simple_regret": ("simple regret (1 - best normalized improvement)", "ratio"),
    "optimum_found": ("episodes that found the optimum (>= 0.95)", "share of episodes"),
    "parent_rate": ("interventions on a true parent of the target", "share of interventions"),
    "optimal_variable_rate": ("interventions on the oracle's variable", "share of interventions"),
    "range_utilization": ("range utilization |v - center| / radius", "percent of the half-range"),
    "f1": ("structure F1 of the surrogate", "F1"),
    "improvement_over_random": ("share of the random-to-oracle gap closed", "percent: 0 = random, 100 = oracle"),
}
# Short axis titles (panels are narrow); the chart titles say the rest.
AXIS_TITLES = {
    "norm_improvement_best": "normalized improvement (1 = oracle)",
    "target_mean": "average target Y",
}
WIDTH = 250
PNG_SCALE = 2.0
EMBED_OPTIONS = {
    "renderer": "svg",
    "actions": {"export": True, "source": False, "compiled": False, "editor": False},
}
THEME = {
    "font": "Liberation Sans, DejaVu Sans, Arial, sans-serif",
    "title": {
        "fontSize": 17,
        "anchor": "start",
        "subtitleFontSize": 13,
        "subtitleColor": "#555",
        "offset": 12,
    },
    "axis": {"labelFontSize": 12, "titleFontSize": 13},
    "header": {"labelFontSize": 13, "titleFontSize": 13, "labelFontWeight": "bold"},
    # legends above the panels, so that wide faceted charts do not push them off screen
    "legend": {"labelFontSize": 12, "titleFontSize": 13, "orient": "top", "direction": "horizontal"},
    "background": "white",
}


# --- data helpers (pure) ---------------------------------------------------------------------------------


def method_order(methods) -> list[str]:
    """Known methods in a fixed order (policy first, random last), unknown ones alphabetically between."""
    methods = set(methods)
    known = [m for m in METHOD_COLORS if m in methods and m != RANDOM]
    extra = sorted(methods - set(METHOD_COLORS))
    return known + extra + ([RANDOM] if RANDOM in methods else [])


def method_colors(methods) -> dict[str, str]:
    """The fixed method -> colour mapping; unknown methods get spare colours in alphabetical order."""
    extra = sorted(set(methods) - set(METHOD_COLORS))
    spare = {m: EXTRA_COLORS[i % len(EXTRA_COLORS)] for i, m in enumerate(extra)}
    return {m: METHOD_COLORS.get(m) or spare[m] for m in method_order(methods)}


def color_encoding(methods, legend: bool | alt.Legend = True) -> alt.Color:
    colors = method_colors(methods)
    scale = alt.Scale(domain=list(colors), range=list(colors.values()))
    if legend is True:
        legend = alt.Legend(title="method")
    return alt.Color("method:N", scale=scale, legend=legend or None)


# a legend of line samples (dashed for random), shared by the layers of a line chart
LINE_LEGEND = alt.Legend(title="method", symbolType="stroke", symbolOpacity=1, symbolStrokeWidth=3, symbolSize=300)


def scope_label(suite: str, level) -> str:
    """``heldout-L03 (level 3)``; suites outside the curriculum (level 0 or null) keep their bare name."""
    if suite == ALL_SUITES:
        return "all suites"
    return f"{suite} (level {int(level)})" if _curriculum_level(level) else suite


def _curriculum_level(level) -> bool:
    return level is not None and not pd.isna(level) and int(level) >= 1


def with_scope_labels(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Add a ``scope`` label column; the order is by level, then suite, with the pooled scope last."""
    frame = frame.copy()
    frame["scope"] = [scope_label(s, lv) for s, lv in zip(frame["suite"], frame["level"], strict=True)]
    keys = frame[["suite", "level", "scope"]].drop_duplicates()
    keys = keys.assign(
        _pooled=keys["suite"] == ALL_SUITES,
        _level=[float(lv) if _curriculum_level(lv) else np.inf for lv in keys["level"]],
    ).sort_values(["_pooled", "_level", "suite"], kind="stable")
    return frame, list(dict.fromkeys(keys["scope"]))


def pooled_metrics(summary: pd.DataFrame, metrics, kind: str = "metric") -> pd.DataFrame:
    """Rows of ``kind`` for ``metrics`` pooled over seeds (seed null), with readable CI text."""
    rows = summary[(summary["kind"] == kind) & summary["metric"].isin(metrics) & summary["seed"].isna()]
    rows = rows.copy()
    rows["ci_text"] = [
        ci_text(m, lo, hi) for m, lo, hi in zip(rows["mean"], rows["ci_low"], rows["ci_high"], strict=True)
    ]
    return rows


def ci_text(mean, low, high, unit: str = "") -> str:
    """``mean [low, high]``; unit "share" shows a share as percent, "percent" a value already in percent."""
    if mean is None or pd.isna(mean):
        return "n/a"
    formats = {
        "share": lambda v: f"{v * 100:.1f}%",
        "percent": lambda v: f"{v:.1f}%",
        "": lambda v: f"{v:.3g}",
    }
    f = formats[unit]
    if low is None or pd.isna(low):
        return f(mean)
    return f"{f(mean)} [{f(low)}, {f(high)}]"


def _columns(n: int) -> int:
    return max(1, min(4, n))


# --- charts ------------------------------------------------------------------------------------------------


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
        alt.Tooltip("ci_text:N", title="mean [95% CI]"),
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
        facet=alt.Facet(f"{facet}:N", sort=facet_order, title=None), columns=_columns(len(facet_order))
    ).properties(title=alt.Title(title, subtitle=subtitle))
    return chart.resolve_scale(x="independent") if independent else chart


def comparison_chart(summary: pd.DataFrame, metric: str, title: str, independent: bool) -> alt.FacetChart:
    rows, order = with_scope_labels(pooled_metrics(summary, [metric]))
    label, unit = METRIC_LABELS[metric]
    subtitle = [
        f"{label[0].upper() + label[1:]} ({unit}). {'Higher' if _higher(metric) else 'Lower'} is better.",
        "Dots: mean over SCMs and seeds; bars: 95% bootstrap CI. Dashed grey line and band: the random baseline.",
    ]
    return interval_chart(rows, AXIS_TITLES[metric], "scope", "suite", order, title, subtitle, independent)


def _higher(metric: str) -> bool:
    return BETTER.get(metric) == "higher"


def paired_chart(summary: pd.DataFrame, metric: str = "norm_improvement_best") -> alt.FacetChart:
    rows, order = with_scope_labels(pooled_metrics(summary, [metric], kind="paired_difference"))
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
            alt.Tooltip("ci_text:N", title="difference [95% CI]"),
            alt.Tooltip("n_scms:Q", title="SCMs"),
        ],
    )
    height = 16 * len(baselines) * max(1, len(policies))
    layer = alt.layer(zero, bars, points, data=rows).properties(width=WIDTH, height=height)
    return layer.facet(facet=alt.Facet("scope:N", sort=order, title=None), columns=_columns(len(order))).properties(
        title=alt.Title(
            "Policy minus baseline, paired on the same SCM and episode",
            subtitle=[
                f"Difference in {METRIC_LABELS[metric][0]}; right of the black line (> 0): the policy is better.",
                "Bars: 95% bootstrap CI over SCMs and seeds.",
            ],
        )
    )


def step_chart(summary: pd.DataFrame) -> alt.FacetChart:
    rows = summary[summary["kind"] == "step_curve"].copy()
    rows, order = with_scope_labels(rows)
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
            alt.Tooltip("ci_text:N", title="mean [95% CI]"),
        ],
    )
    layer = alt.layer(band, line, data=rows).properties(width=WIDTH, height=170)
    return layer.facet(facet=alt.Facet("scope:N", sort=order, title=None), columns=_columns(len(order))).properties(
        title=alt.Title(
            "Best-so-far normalized improvement after each intervention",
            subtitle=[
                "0 = no better than not intervening, 1 = the oracle's value. Lines: mean; bands: 95% bootstrap CI.",
                "The random baseline is the dashed grey line.",
            ],
        )
    )


TRAINING_PANELS = [
    ("reward", "episode reward"),
    ("norm_improvement", "normalized improvement (ratio)"),
    ("f1", "surrogate structure F1"),
]


def smoothing_window(n_episodes: int) -> int:
    return int(max(1, min(50, n_episodes // 20)))


def training_frame(summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, int, pd.DataFrame]:
    """Training metrics per seed with a trailing moving average, and the episodes where the level changed."""
    rows = summary[summary["kind"] == "training"]
    wide = rows.pivot_table(index=["seed", "step"], columns="metric", values="mean", sort=True).reset_index()
    wide = wide.rename(columns={"step": "episode"})
    window = smoothing_window(int(wide.groupby("seed")["episode"].nunique().max()))
    long = wide.melt(id_vars=["seed", "episode"], value_vars=[m for m, _ in TRAINING_PANELS])
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
    for metric, title in TRAINING_PANELS:
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


BEHAVIOUR = [
    ("parent_rate", "interventions on a true parent"),
    ("optimal_variable_rate", "interventions on the oracle's variable"),
    ("range_utilization", "range utilization |v - center| / radius"),
]


def behaviour_chart(summary: pd.DataFrame) -> alt.FacetChart:
    rows, order = with_scope_labels(pooled_metrics(summary, [m for m, _ in BEHAVIOUR]))
    shares = rows["metric"] != "range_utilization"  # rates are shares; range utilization is already in %
    for col in ("mean", "ci_low", "ci_high"):
        rows[col] = rows[col].where(~shares, rows[col] * 100.0)
    rows["ci_text"] = [
        ci_text(m, lo, hi) + " %" for m, lo, hi in zip(rows["mean"], rows["ci_low"], rows["ci_high"], strict=True)
    ]
    rows["what"] = rows["metric"].map(dict(BEHAVIOUR))
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
            alt.Tooltip("ci_text:N", title="mean [95% CI]"),
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
            sort=[w for _, w in BEHAVIOUR],
            title=None,
            header=alt.Header(labelAngle=0, labelOrient="top", labelAnchor="start", labelFontSize=13),
        )
    ).properties(
        title=alt.Title(
            "How each method intervenes",
            subtitle=["Shares of interventions (percent) per method and suite; black bars: 95% bootstrap CI."],
        )
    )


def compare_chart(frame: pd.DataFrame, metric: str = "norm_improvement_best") -> alt.FacetChart:
    """One panel per config: every method's headline metric over all of that config's suites."""
    rows = pooled_metrics(frame, [metric])
    rows = rows[rows["suite"] == ALL_SUITES]
    configs = sorted(rows["config"].unique())
    label, unit = METRIC_LABELS[metric]
    return interval_chart(
        rows,
        AXIS_TITLES[metric],
        "config",
        "config",
        configs,
        "Headline comparison of experiment configs",
        [
            f"{label[0].upper() + label[1:]} ({unit}), pooled over each config's evaluation suites.",
            "Dots: mean, bars: 95% bootstrap CI over SCMs and seeds.",
            "Dashed grey line and band: the random baseline. "
            "Configs evaluated on different suites are not directly comparable.",
        ],
    )


def compare_suite_chart(frame: pd.DataFrame, metric: str = "norm_improvement_best") -> alt.FacetChart:
    """Per suite, the policy modes of every config side by side (baselines are shared, shown once)."""
    rows, order = with_scope_labels(pooled_metrics(frame, [metric]))
    rows = rows[rows["suite"] != ALL_SUITES]
    policy = rows["method"].str.startswith("policy_")
    shared = rows[~policy].drop_duplicates(["method", "suite", "level"]).assign(entry=lambda d: d["method"])
    ours = rows[policy].assign(entry=lambda d: d["config"] + ": " + d["method"])
    rows = pd.concat([ours, shared], ignore_index=True).drop(columns=["config"]).rename(columns={"entry": "row"})
    order = [o for o in order if o in set(rows["scope"])]
    methods = method_order(rows["method"])
    entries = sorted(ours["entry"].unique()) + [m for m in methods if m in set(shared["method"])]
    y = alt.Y("row:N", sort=entries, title=None)
    tooltip = [alt.Tooltip("row:N", title="entry"), alt.Tooltip("ci_text:N", title="mean [95% CI]")]
    bars, points = ci_marks(alt.X("ci_low:Q", title=AXIS_TITLES[metric]), y, methods, tooltip, size=70)
    layer = alt.layer(bars, points, data=rows).properties(width=WIDTH, height=18 * len(entries))
    return layer.facet(facet=alt.Facet("scope:N", sort=order, title=None), columns=_columns(len(order))).properties(
        title=alt.Title(
            "Per suite: each config's policy beside the shared baselines",
            subtitle=["Dots: mean, bars: 95% bootstrap CI."],
        )
    )


# --- HTML ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    intro: str  # HTML
    charts: tuple[tuple[str, dict], ...] = ()  # (name, Vega-Lite spec)
    body: str = ""  # HTML after the charts


def chart_spec(chart) -> dict:
    with alt.data_transformers.disable_max_rows():
        spec = chart.to_dict()
    spec["config"] = {**THEME, **spec.get("config", {})}
    return spec


@cache
def vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed in one classic script that defines ``vegaEmbed`` globally."""
    import vl_convert

    return vl_convert.javascript_bundle().replace("</script", "<\\/script")


def script_json(obj) -> str:
    """JSON safe to place inside a <script> element."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).replace("</", "<\\/")


CSS = """
body{font-family:"Liberation Sans","DejaVu Sans",Arial,sans-serif;color:#222;line-height:1.45;
  margin:0 auto;max-width:1250px;padding:0 24px 60px}
h1{font-size:26px;margin:28px 0 6px}
h2{font-size:20px;margin:34px 0 6px;border-bottom:1px solid #ddd;padding-bottom:4px}
p.lead{font-size:15px;color:#333;margin-top:4px}
nav{background:#f5f6f8;padding:8px 14px;border-radius:6px;font-size:14px}
nav a{margin-right:16px}
.chart{margin:14px 0 22px;overflow-x:auto}
.note{color:#555;font-size:14px}
.table{overflow-x:auto;margin:10px 0 18px}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f5f6f8}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
.swatch{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:6px;vertical-align:-1px}
code{background:#f3f3f3;padding:0 3px;border-radius:3px;font-size:12px}
.chart-error{color:#b00020;font-weight:bold}
dl.glossary dt{font-weight:bold;margin-top:6px}
dl.glossary dd{margin-left:18px}
""".strip()

RENDER_JS = """
(function () {
  const options = %s;
  const divs = Array.from(document.querySelectorAll("div.chart[data-spec]"));
  const jobs = divs.map(function (div) {
    const spec = JSON.parse(document.getElementById(div.dataset.spec).textContent);
    return vegaEmbed(div, spec, options).then(function () { return true; }).catch(function (err) {
      console.error("chart " + div.id + " failed: " + err);
      div.innerHTML = '<p class="chart-error">This chart could not be drawn: ' + String(err) + '</p>';
      return false;
    });
  });
  Promise.all(jobs).then(function (ok) {
    document.body.dataset.chartsRendered = String(ok.filter(Boolean).length);
    document.body.dataset.chartsTotal = String(divs.length);
  });
})();
""".strip()


def render_page(title: str, lead: str, sections: list[Section]) -> str:
    """One self-contained HTML page: sections with charts, the Vega bundle inlined once at the end."""
    nav = "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="lead">{lead}</p>',
        f"<nav>{nav}</nav>",
    ]
    for s in sections:
        parts.append(f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>{s.intro}')
        for name, spec in s.charts:
            parts.append(f'<div class="chart" id="chart-{name}" data-spec="spec-{name}"></div>')
            parts.append(f'<script type="application/json" id="spec-{name}">{script_json(spec)}</script>')
        parts.append(f"{s.body}</section>")
    parts.append(f"<script>{vega_bundle()}</script>")
    parts.append(f"<script>{RENDER_JS % script_json(EMBED_OPTIONS)}</script>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def esc(value) -> str:
    return html.escape(str(value))


def html_table(header: list[str] | None, rows: list[list[str]], numeric_from: int = 1) -> str:
    """A table of already-escaped cells; columns from ``numeric_from`` on are numbers (no wrapping)."""
    head = "<thead><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr></thead>" if header else ""
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if i >= numeric_from else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f'<div class="table"><table>{head}<tbody>{body}</tbody></table></div>'


def swatch(method: str, colors: dict[str, str]) -> str:
    return f'<span class="swatch" style="background:{colors.get(method, "#000")}"></span>{esc(method)}'


HEADLINE_OUTCOMES = [  # (metric, unit for ci_text)
    ("norm_improvement_best", ""),
    ("norm_improvement_mean", ""),
    ("optimum_found", "share"),
    ("target_mean", ""),
    ("improvement_over_random", "percent"),
]
HEADLINE_BEHAVIOUR = [
    ("parent_rate", "share"),
    ("optimal_variable_rate", "share"),
    ("range_utilization", "percent"),
    ("f1", ""),
]
METRIC_NOTES = {
    "norm_improvement_best": "(mu_Y - E[Y | do(a)]) / (mu_Y - y*) of the best action so far, at the episode's last "
    "intervention: 0 = no better than not intervening, 1 = the oracle's best action. Simple regret is 1 minus it.",
    "norm_improvement_mean": "the same ratio averaged over every intervention of the episode (rewards finding "
    "good actions early).",
    "target_mean": "the sampled target values averaged over the episode, in the SCM's own units (lower is better; "
    "scales differ between SCMs).",
    "optimum_found": "share of episodes whose best action reached a normalized improvement of at least 0.95.",
    "improvement_over_random": "the share of the random-to-oracle gap the method closes, (random - method) / "
    "(random - oracle) in percent, on exact values: the method's exact expected target averaged over the "
    "episode, the exact expected outcome of the uniformly random policy and the oracle's y* on the same SCM "
    "(0 = random, 100 = the oracle, never above 100). Ratios whose denominator is ~0 are left out (n/a).",
    "parent_rate": "share of interventions on a true parent of the target.",
    "optimal_variable_rate": "share of interventions on the variable the oracle intervenes on.",
    "range_utilization": "mean |v - center| / radius of the chosen values, in percent (100 = always at a range end, "
    "where the optimum of a linear SCM lies).",
    "f1": "structure F1 of the surrogate's parent predictions, fitted on the data the method collected.",
}


def headline_table(summary: pd.DataFrame, seed=None, columns=None) -> str:
    """Methods (rows) by ``columns`` (default HEADLINE_OUTCOMES) over all suites, pooled or for one seed."""
    columns = columns or HEADLINE_OUTCOMES
    rows = summary[(summary["kind"] == "metric") & (summary["suite"] == ALL_SUITES)]
    rows = rows[rows["seed"].isna()] if seed is None else rows[rows["seed"] == seed]
    colors = method_colors(summary["method"][summary["kind"] == "metric"])
    lookup = {(r.method, r.metric): r for r in rows.itertuples(index=False)}
    out = []
    for method in method_order(rows["method"]):
        cells = [swatch(method, colors)]
        for metric, unit in columns:
            r = lookup.get((method, metric))
            cells.append(esc(ci_text(r.mean, r.ci_low, r.ci_high, unit)) if r is not None else "n/a")
        out.append(cells)
    header = ["method"] + [esc(METRIC_LABELS[m][0]) for m, _ in columns]
    return html_table(header, out)


def verdict(low, high, better) -> str:
    if pd.isna(low) or better is None:
        return "n/a"
    if low > 0 or high < 0:
        policy_better = (low > 0) == (better == "higher")
        return "policy better" if policy_better else "baseline better"
    return "no clear difference"


def paired_table(summary: pd.DataFrame) -> str:
    metrics = ["norm_improvement_best", "target_mean"]
    rows = summary[
        (summary["kind"] == "paired_difference")
        & (summary["suite"] == ALL_SUITES)
        & summary["seed"].isna()
        & summary["metric"].isin(metrics)
    ]
    colors = method_colors(summary["method"][summary["kind"] == "metric"])
    lookup = {(r.method, r.baseline, r.metric): r for r in rows.itertuples(index=False)}
    out = []
    for method in method_order(rows["method"]):
        for baseline in method_order(rows["baseline"]):
            cells = [swatch(method, colors), swatch(baseline, colors)]
            for metric in metrics:
                r = lookup.get((method, baseline, metric))
                if r is None:
                    cells += ["n/a", "n/a"]
                else:
                    cells += [
                        esc(ci_text(r.mean, r.ci_low, r.ci_high)),
                        esc(verdict(r.ci_low, r.ci_high, r.better)),
                    ]
            out.append(cells)
    header = [
        "policy",
        "baseline",
        "&Delta; normalized improvement (best, last step) [95% CI]",
        "verdict",
        "&Delta; average target [95% CI]",
        "verdict",
    ]
    return html_table(header, out, numeric_from=2)


def glossary(methods, plugins: dict | None = None) -> str:
    """What each method is; ``plugins`` (method -> file hashes, from the provenance) marks plug-in methods."""
    colors = method_colors(methods)
    plugins = plugins or {}

    def note(m):
        if m in plugins:
            return f"a plug-in method (file sha256 {', '.join(plugins[m])})"
        return METHOD_NOTES.get(m, "a method found in the tables")

    items = "".join(f"<dt>{swatch(m, colors)}</dt><dd>{esc(note(m))}</dd>" for m in method_order(methods))
    return f'<dl class="glossary">{items}</dl>'


def metric_glossary() -> str:
    items = "".join(
        f"<dt>{esc(METRIC_LABELS[m][0])}</dt><dd>{esc(METRIC_NOTES[m])}</dd>"
        for m, _ in HEADLINE_OUTCOMES + HEADLINE_BEHAVIOUR
    )
    return f'<dl class="glossary">{items}</dl>'


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def provenance_html(meta: dict) -> str:
    import vl_convert

    boot = meta["bootstrap"]
    general = [
        ["config", esc(meta["config"])],
        ["training seeds", esc(", ".join(map(str, meta["seeds"])))],
        ["evaluation suites", esc(", ".join(meta["eval_suites"]))],
        ["methods", esc(", ".join(method_order(meta["methods"])))],
        [
            "evaluation protocol",
            esc(
                f"{meta['protocol']['scms']} SCMs, {meta['protocol']['episodes_per_scm']} episodes per SCM, "
                f"{meta['protocol']['interventions_per_episode']} interventions per episode"
            ),
        ],
        [
            "confidence intervals",
            esc(
                f"{boot['level']:.0%} percentile bootstrap, {boot['resamples']} resamples of SCMs (within suites) "
                f"and seeds, numpy default_rng({boot['seed']})"
            ),
        ],
        ["acbo package versions", esc(", ".join(meta["package_versions"]) or "n/a")],
    ]
    for stage, commits in sorted(meta["git_commits"].items()):
        general.append([f"git commit ({esc(stage)})", "<code>" + esc(", ".join(commits) or "n/a") + "</code>"])
    for method, hashes in sorted(meta.get("plugins", {}).items()):
        general.append([f"plug-in {esc(method)} (file sha256)", "<code>" + esc(", ".join(hashes)) + "</code>"])
    general.append(
        [
            "rendered with",
            esc(
                f"Altair {alt.__version__}, Vega-Lite {alt.SCHEMA_VERSION.lstrip('v')}, "
                f"Vega {vl_convert.get_vega_version()}, "
                f"vega-embed {vl_convert.get_vega_embed_version()} (inlined)"
            ),
        ]
    )
    first = html_table(None, [[f"<b>{k}</b>", v] for k, v in general], numeric_from=9)
    training = meta["training"]
    rows = [[f"<b>{esc(label)}</b>"] + [cell(t) for t in training] for label, cell in SEED_FIELDS]
    header = ["training seed"] + [esc(t["seed"]) for t in training]
    return first + "<h3>Training runs and checkpoints</h3>" + html_table(header, rows)


def _code(value) -> str:
    return "<code>" + esc(value) + "</code>"


def _metrics_text(metrics) -> str:
    if not isinstance(metrics, dict) or not metrics:
        return "n/a"
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in sorted(metrics.items()))


def _evaluated_matches(t: dict) -> str:
    evaluated = t["evaluated_checkpoint_hashes"]
    if not evaluated or t.get("checkpoint_file_hash") is None:
        return "n/a"
    if evaluated == [t["checkpoint_file_hash"]]:
        return "yes"
    return "NO: the evaluation tables were made from another checkpoint"


# (label, cell) rows of the per-seed provenance table; every cell is escaped HTML
SEED_FIELDS = [
    ("training episodes (log)", lambda t: esc(_fmt(t["training_episodes"]))),
    ("final curriculum level", lambda t: esc(_fmt(t["final_level"]))),
    ("training run time, s (since the last start)", lambda t: esc(_fmt(t["training_wall_time_s"]))),
    ("checkpoint episode", lambda t: esc(_fmt(t["checkpoint_episode"]))),
    ("final training metrics (checkpoint)", lambda t: esc(_metrics_text(t.get("checkpoint_metrics")))),
    ("config hash", lambda t: _code(_fmt(t["config_hash"]))),
    ("final.ckpt hash", lambda t: _code(_fmt(t.get("checkpoint_file_hash")))),
    (
        "checkpoint hash in the evaluation tables",
        lambda t: _code(", ".join(t["evaluated_checkpoint_hashes"]) or "n/a"),
    ),
    ("evaluation used this checkpoint", lambda t: esc(_evaluated_matches(t))),
    ("checkpoint format", lambda t: esc(_fmt(t["checkpoint_format"]))),
    ("package version (training)", lambda t: esc(_fmt(t["checkpoint_package_version"]))),
    ("git commit (training)", lambda t: _code(_fmt(t["checkpoint_git_commit"]))),
]


def summary_sections(summary: pd.DataFrame, meta: dict) -> list[Section]:
    methods = summary["method"][summary["kind"] == "metric"].unique()
    seeds = sorted(summary["seed"][(summary["kind"] == "metric")].dropna().unique())
    per_seed = "".join(
        f"<h3>Training seed {int(s)} alone (the policy; baselines have no training seed)</h3>"
        + headline_table(summary, seed=s, columns=HEADLINE_OUTCOMES + HEADLINE_BEHAVIOUR)
        for s in seeds
    )
    headline_intro = (
        '<p class="note">Every evaluation suite pooled. Each cell: mean [95% bootstrap CI] over SCMs and seeds. '
        "Normalized improvement is 0 for doing nothing and 1 for the oracle's best intervention (higher is "
        "better); the average target is the raw value of Y (lower is better). Definitions are below.</p>"
    )
    return [
        Section(
            "headline",
            "Headline numbers",
            headline_intro,
            body="<h3>Outcomes</h3>"
            + headline_table(summary)
            + "<h3>How the methods intervene</h3>"
            + headline_table(summary, columns=HEADLINE_BEHAVIOUR)
            + per_seed
            + "<h3>Policy against each baseline (paired)</h3>"
            + paired_table(summary)
            + "<h3>Methods</h3>"
            + glossary(methods, meta.get("plugins"))
            + "<h3>Metrics</h3>"
            + metric_glossary(),
        ),
        Section(
            "comparison",
            "Per-level comparison of every method",
            '<p class="note">One panel per evaluation suite (held-out SCMs of one curriculum level), the last '
            "panel pools all suites.</p>",
            charts=(
                (
                    "comparison_norm_improvement",
                    chart_spec(
                        comparison_chart(
                            summary,
                            "norm_improvement_best",
                            "Normalized improvement reached by the last intervention",
                            False,
                        )
                    ),
                ),
                (
                    "comparison_target_mean",
                    chart_spec(
                        comparison_chart(
                            summary,
                            "target_mean",
                            "Average target value over the episode (lower is better)",
                            True,
                        )
                    ),
                ),
                ("paired_differences", chart_spec(paired_chart(summary))),
            ),
        ),
        Section(
            "curves",
            "Step-by-step curves",
            '<p class="note">How fast each method finds good interventions within an evaluation episode.</p>',
            charts=(("step_curves", chart_spec(step_chart(summary))),),
        ),
        Section(
            "training",
            "Training curves and curriculum",
            '<p class="note">From the training logs: reward, normalized improvement and surrogate F1 per training '
            "episode, and the curriculum level the trainer was on.</p>",
            charts=(("training_curves", chart_spec(training_chart(summary))),),
        ),
        Section(
            "behaviour",
            "Intervention behaviour",
            '<p class="note">Which variables and values each method chooses: a good method intervenes on parents '
            "of the target, mostly on the oracle's variable, and at the ends of the range (high utilization).</p>",
            charts=(("behaviour", chart_spec(behaviour_chart(summary))),),
        ),
        Section(
            "provenance",
            "Provenance",
            '<p class="note">What produced these numbers.</p>',
            body=provenance_html(meta),
        ),
    ]


def write_pngs(charts: list[tuple[str, dict]], charts_dir: str | Path) -> None:
    """Render each chart to ``{name}.png``; the directory is replaced as a whole (no stale files)."""
    import vl_convert

    charts_dir = Path(charts_dir)
    charts_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{charts_dir.name}.", dir=charts_dir.parent))
    try:
        for name, spec in charts:
            (tmp / f"{name}.png").write_bytes(vl_convert.vegalite_to_png(spec, scale=PNG_SCALE))
        os.chmod(tmp, 0o755)
        if charts_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{charts_dir.name}.old.", dir=charts_dir.parent))
            os.replace(charts_dir, old / "charts")
            os.replace(tmp, charts_dir)
            shutil.rmtree(old)
        else:
            os.replace(tmp, charts_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_summary_page(summary: pd.DataFrame, meta: dict, out_html: str | Path, charts_dir: str | Path) -> None:
    sections = summary_sections(summary, meta)
    boot = meta["bootstrap"]
    lead = (
        f"Amortized causal Bayesian optimization benchmark, experiment config <b>{esc(meta['config'])}</b>: a policy "
        "trained to choose interventions <code>do(X = v)</code> that make a target variable Y as small as possible, "
        f"evaluated on held-out structural causal models beside baselines. Training seeds: "
        f"{esc(', '.join(map(str, meta['seeds'])))}; suites: {esc(', '.join(meta['eval_suites']))}. "
        f"Intervals are {boot['level']:.0%} bootstrap CIs over SCMs and seeds."
    )
    page = render_page(f"ACBO benchmark summary: {meta['config']}", lead, sections)
    write_pngs([c for s in sections for c in s.charts], charts_dir)
    atomic_write_text(out_html, page)


def compare_provenance(metas: dict[str, dict]) -> str:
    def commits(meta: dict) -> str:
        by_stage = meta.get("git_commits", {})
        return "<br>".join(
            f"{esc(stage)}: " + _code(", ".join(c[:12] for c in by_stage[stage]) or "n/a") for stage in sorted(by_stage)
        )

    rows = [
        [
            esc(name),
            esc(", ".join(map(str, meta.get("seeds", [])))),
            esc(", ".join(meta.get("eval_suites", []))),
            esc(", ".join(t.get("config_hash") or "n/a" for t in meta.get("training", []))),
            esc(", ".join(meta.get("package_versions", [])) or "n/a"),
            commits(meta),
        ]
        for name, meta in sorted(metas.items())
    ]
    header = ["config", "seeds", "suites", "config hash per seed", "package versions", "git commits"]
    return html_table(header, rows, numeric_from=9)


def write_compare_page(frame: pd.DataFrame, metas: dict[str, dict], out: str | Path) -> None:
    configs = sorted(metas)
    plugins: dict[str, list[str]] = {}  # plug-in method -> file hashes, over every config
    for name in configs:
        for method, hashes in metas[name].get("plugins", {}).items():
            plugins[method] = sorted(set(plugins.get(method, [])) | set(hashes))
    rows = []
    colors = method_colors(frame["method"][frame["kind"] == "metric"])
    for name in configs:
        meta = metas[name]
        sub = frame[
            (frame["config"] == name)
            & (frame["kind"] == "metric")
            & (frame["suite"] == ALL_SUITES)
            & frame["seed"].isna()
            & (frame["metric"] == "norm_improvement_best")
        ]
        for r in sorted(sub.itertuples(index=False), key=lambda r: method_order(sub["method"]).index(r.method)):
            rows.append(
                [
                    esc(name),
                    swatch(r.method, colors),
                    esc(ci_text(r.mean, r.ci_low, r.ci_high)),
                    esc(", ".join(map(str, meta.get("seeds", [])))),
                    esc(", ".join(meta.get("eval_suites", []))),
                ]
            )
    table = html_table(
        ["config", "method", "normalized improvement, best at last step [95% CI]", "seeds", "suites"],
        rows,
        numeric_from=2,
    )
    sections = [
        Section(
            "headline",
            "Headline metric per config",
            '<p class="note">Each config pools its own evaluation suites; baselines are shared by all configs.</p>',
            charts=(("compare_headline", chart_spec(compare_chart(frame))),),
            body=table,
        ),
        Section(
            "suites",
            "Per suite",
            '<p class="note">Every suite that some config was evaluated on.</p>',
            charts=(("compare_suites", chart_spec(compare_suite_chart(frame))),),
            body="<h3>Methods</h3>" + glossary(frame["method"][frame["kind"] == "metric"].unique(), plugins),
        ),
        Section(
            "provenance",
            "Provenance",
            '<p class="note">Each config\'s summary.parquet records what produced it; its own page has the '
            "details.</p>",
            body=compare_provenance(metas),
        ),
    ]
    lead = f"Comparison of experiment configs {esc(', '.join(configs))} on held-out SCM suites, with 95% bootstrap CIs."
    atomic_write_text(out, render_page("ACBO benchmark: configs compared", lead, sections))
