"""The summary page's section on the response model measured as a model (configs whose policy has one): per pool,
RMSE, NLL and the normalized improvement of the predicted best point against the number of interventions k in
the buffer, for the response model, the response-curve GP (``causal_bo``'s posterior) and a flat prediction, and
the paired difference response model minus GP. Built from the summary table's ``response_quality`` and
``response_paired`` rows (``summarize.response_rows``); pure: no files."""

from __future__ import annotations

import altair as alt
import pandas as pd

from .bootstrap import CI_PERCENT
from .chart_style import METHOD_COLORS, RANDOM, RANDOM_DASH, WIDTH, ci_text
from .page import Section, chart_spec, esc, html_table
from .scopes import POOLED_SCOPES

CHART = "response_quality"  # its PNG's name in the charts folder
# the models in legend order, each with its colour: the response model as the policy it serves, the GP as the
# method whose posterior it is, the flat prediction as the reference (grey, dashed, like random)
MODELS = {"response_model": METHOD_COLORS["policy_amortized_ei"], "response_gp": METHOD_COLORS["causal_bo"],
          "flat": METHOD_COLORS[RANDOM]}
SCORES = {"rmse": "RMSE of the predicted mean (Y's spread)", "nll": "NLL of the exact curve (nats)",
          "best_improvement": "normalized improvement of the predicted best"}


def has_response_quality(summary: pd.DataFrame) -> bool:
    return bool((summary["kind"] == "response_quality").any())


def pools(summary: pd.DataFrame) -> list[str]:
    """The pooled scopes of the response quality rows, linear first."""
    return [p for p in POOLED_SCOPES if p in set(summary["suite"][summary["kind"] == "response_quality"])]


def _pooled(summary: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The pooled rows of ``kind`` (every seed together) over the pooled scopes, with readable CI text."""
    rows = summary[(summary["kind"] == kind) & summary["seed"].isna() & summary["suite"].isin(pools(summary))]
    return rows.assign(ci_text=[ci_text(m, lo, hi) for m, lo, hi in zip(rows["mean"], rows["ci_low"], rows["ci_high"])],
                       score=rows["metric"].map(SCORES), k=rows["step"].astype(int))


def response_chart(summary: pd.DataFrame) -> alt.FacetChart:
    """One panel per (score, pool): each model's mean and CI against k, a line per model."""
    rows = _pooled(summary, "response_quality")
    models = [m for m in MODELS if m in set(rows["method"])]
    legend = alt.Legend(title="model", symbolType="stroke", symbolOpacity=1, symbolStrokeWidth=3, symbolSize=300)
    color = alt.Color("method:N", sort=models, legend=legend,
                      scale=alt.Scale(domain=models, range=[MODELS[m] for m in models]))
    dash = [RANDOM_DASH if m == "flat" else [1, 0] for m in models]
    dashes = alt.StrokeDash("method:N", sort=models, legend=legend, scale=alt.Scale(domain=models, range=dash))
    ks = sorted(rows["k"].unique())
    x = alt.X("k:Q", title="interventions in the buffer (k)", scale=alt.Scale(domain=[min(ks), max(max(ks), 1)]),
              axis=alt.Axis(values=[int(k) for k in ks], format="d"))
    base = alt.Chart().encode(x=x, color=color)
    bars = base.mark_errorbar(ticks=True, thickness=2).encode(y=alt.Y("ci_low:Q", title=None, scale=alt.Scale(
        zero=False)), y2="ci_high:Q")
    line = base.mark_line(strokeWidth=2).encode(y="mean:Q", strokeDash=dashes)
    points = base.mark_point(filled=True, size=60, opacity=1).encode(
        y="mean:Q", tooltip=[alt.Tooltip("method:N", title="model"), alt.Tooltip("k:Q", title="interventions"),
                             alt.Tooltip("suite:N", title="pool"),
                             alt.Tooltip("ci_text:N", title=f"mean [{CI_PERCENT} CI]"),
                             alt.Tooltip("n_scms:Q", title="SCMs")])
    layer = alt.layer(bars, line, points, data=rows).properties(width=WIDTH, height=150)
    chart = layer.facet(
        row=alt.Row("score:N", sort=[SCORES[s] for s in SCORES], title=None,
                    header=alt.Header(labelAngle=0, labelOrient="top", labelAnchor="start")),
        column=alt.Column("suite:N", sort=pools(summary), title=None),
    )
    return chart.resolve_scale(y="independent").properties(title=alt.Title(
        "The response model measured as a model, beside the response-curve GP",
        subtitle=["On held-out SCMs: buffers of the protocol's observational samples plus k random interventions; "
                  "RMSE and NLL (lower is better) on the exact curve,",
                  "and the normalized improvement of the point each model predicts best (higher is better). "
                  f"Dots: mean over SCMs and seeds; bars: {CI_PERCENT} bootstrap CI; dashed grey: a flat "
                  "prediction."]))


def _verdict(low, high, better: str) -> str:
    if pd.isna(low) or not (low > 0 or high < 0):
        return "no clear difference" if not pd.isna(low) else "n/a"
    return "response model better" if (low > 0) == (better == "higher") else "GP better"


def paired_table(summary: pd.DataFrame, pool: str) -> str:
    """k (rows) by score: response model minus GP on the same buffers, with its CI and verdict."""
    rows = _pooled(summary, "response_paired")
    rows = rows[rows["suite"] == pool]
    lookup = {(r.k, r.metric): r for r in rows.itertuples(index=False)}
    out = []
    for k in sorted(rows["k"].unique()):
        cells = [esc(k)]
        for score in SCORES:
            r = lookup.get((k, score))
            verdict = "" if r is None else _verdict(r.ci_low, r.ci_high, r.better)
            cells.append("n/a" if r is None else f"{esc(r.ci_text)}<br>{esc(verdict)}")
        out.append(cells)
    header = ["k"] + [f"&Delta; {esc(SCORES[s])} [{CI_PERCENT} CI]" for s in SCORES]
    return html_table(header, out)


def response_section(summary: pd.DataFrame) -> Section | None:
    """The section, or None for a summary without response quality rows (a config without a response model)."""
    if not has_response_quality(summary):
        return None
    intro = ('<p class="note">The checkpoint\'s response model predicts E[Y | do(X = v)] for every intervenable '
             "variable from the buffer alone; here it is scored as a model on every SCM of the evaluation suites, "
             "beside the response-curve GP that causal_bo uses and a flat prediction (the buffer's mean of Y), on the "
             "same buffers (<code>acbo response-quality</code>).</p>")
    table = ("<h3>Response model minus response-curve GP (paired)</h3>"
             f'<p class="note">On the same suite, SCM, replicate and k; {CI_PERCENT} bootstrap CI over SCMs and '
             "seeds. Lower RMSE and NLL, higher improvement: the response model is better.</p>"
             + "".join((f"<h4>{esc(pool[0].upper() + pool[1:])}</h4>" if len(pools(summary)) > 1 else "")
                       + paired_table(summary, pool) for pool in pools(summary)))
    return Section("response_quality", "The response model as a model", intro,
                   charts=((CHART, chart_spec(response_chart(summary))),), body=table)
