"""The look of every chart and page: one fixed colour per method (so a method looks the same everywhere),
the theme, the method notes, and the pure helpers that order methods and write intervals."""

from __future__ import annotations

import altair as alt
import pandas as pd

from ..evaluate.registry import METHODS

# Every built-in method's fixed colour and note come from its registration; plug-ins get spare colours.
METHOD_COLORS = {name: r.color for name, r in METHODS.items()}
METHOD_NOTES = {name: r.note for name, r in METHODS.items()}
EXTRA_COLORS = ["#17becf", "#8c564b", "#e377c2", "#bcbd22", "#7f3c8d", "#11a579", "#3969ac", "#f2b701"]
SEED_COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]
RANDOM = "random"
RANDOM_DASH = [6, 4]
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


def pooled_metrics(summary: pd.DataFrame, metrics, kind: str = "metric") -> pd.DataFrame:
    """Rows of ``kind`` for ``metrics`` pooled over seeds (seed null), with readable CI text."""
    rows = summary[(summary["kind"] == kind) & summary["metric"].isin(metrics) & summary["seed"].isna()]
    rows = rows.copy()
    rows["ci_text"] = [
        ci_text(m, lo, hi) for m, lo, hi in zip(rows["mean"], rows["ci_low"], rows["ci_high"], strict=True)
    ]
    return rows


def ci_text(mean, low, high, shown_as: str = "") -> str:
    """``mean [low, high]``; ``shown_as`` (``Metric.shown_as``) "share" shows a share as percent, "percent" a value
    already in percent."""
    if mean is None or pd.isna(mean):
        return "n/a"
    formats = {
        "share": lambda v: f"{v * 100:.1f}%",
        "percent": lambda v: f"{v:.1f}%",
        "": lambda v: f"{v:.3g}",
    }
    f = formats[shown_as]
    if low is None or pd.isna(low):
        return f(mean)
    return f"{f(mean)} [{f(low)}, {f(high)}]"


def ncols(n: int) -> int:
    return max(1, min(4, n))
