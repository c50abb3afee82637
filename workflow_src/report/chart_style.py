"""The look of every chart and page: one fixed colour per method (so a method looks the same everywhere),
the theme, the method notes, and the pure helpers that order methods and label scopes and intervals."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from ..evaluate.registry import METHODS
from .inputs import LINEAR, NONLINEAR
from .summarize import POOLS

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


MIXED = "mixed"  # a suite holding linear and nonlinear SCMs (``summarize.suite_classes``)
CLASS_RANK = {LINEAR: 0, MIXED: 1, NONLINEAR: 2}  # linear suites and their pool first, then the nonlinear ones
POOL_CLASS = {pool: mechanism for mechanism, pool in POOLS.items()}


def scope_label(suite: str, level, mechanism: str = LINEAR) -> str:
    """``heldout-L03 (level 3)``; suites outside the curriculum (level 0 or null) keep their bare name; a suite
    that is not linear says so (``heldout-cbo (nonlinear)``); pooled scopes keep their name."""
    if suite in POOL_CLASS:
        return suite
    notes = ([f"level {int(level)}"] if _curriculum_level(level) else []) + ([mechanism] if mechanism != LINEAR else [])
    return f"{suite} ({', '.join(notes)})" if notes else suite


def _curriculum_level(level) -> bool:
    return level is not None and not pd.isna(level) and int(level) >= 1


def with_scope_labels(frame: pd.DataFrame, classes: dict | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Add a ``scope`` label column; the order is by mechanism class (``classes``: suite -> class, linear when
    absent), each class's suites by level then name, followed by that class's pool."""
    classes = classes or {}
    frame = frame.copy()
    mechanism = [POOL_CLASS.get(s) or classes.get(s, LINEAR) for s in frame["suite"]]
    frame["scope"] = [scope_label(s, lv, m) for s, lv, m in zip(frame["suite"], frame["level"], mechanism, strict=True)]
    keys = frame.assign(_rank=[CLASS_RANK[m] for m in mechanism])[["suite", "level", "scope", "_rank"]]
    keys = keys.drop_duplicates().assign(
        _pooled=lambda k: k["suite"].isin(list(POOL_CLASS)),
        _level=lambda k: [float(lv) if _curriculum_level(lv) else np.inf for lv in k["level"]],
    ).sort_values(["_rank", "_pooled", "_level", "suite"], kind="stable")
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


def ncols(n: int) -> int:
    return max(1, min(4, n))
