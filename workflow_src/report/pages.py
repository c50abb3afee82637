"""The pages of a study: ``summary.html`` of one experiment config and ``compare.html`` of several, from
summary tables and their provenance (sections, tables, glossaries; charts from ``figures``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..atomic import atomic_write_text
from .bootstrap import CI_PERCENT
from .chart_style import METHOD_NOTES, ci_text, method_colors, method_order
from .figures import (
    behaviour_chart,
    compare_chart,
    compare_suite_chart,
    comparison_chart,
    paired_chart,
    step_chart,
    training_chart,
)
from .metrics import METRICS
from .page import Section, chart_spec, esc, html_table, render_page, swatch, write_pngs
from .provenance_page import compare_provenance, provenance_html
from .response_quality import CHART as RESPONSE_CHART
from .response_quality import response_section
from .scopes import POOLED_SCOPES

HEADLINE_OUTCOMES = ["norm_improvement_best", "norm_improvement_mean", "optimum_found", "target_mean",
                     "improvement_over_random"]
HEADLINE_BEHAVIOUR = ["parent_rate", "optimal_variable_rate", "range_utilization", "f1"]


# the charts of a summary page, also saved as {name}.png in its charts folder (which may hold nothing else)
SUMMARY_CHARTS = ("comparison_norm_improvement", "comparison_target_mean", "paired_differences",
                  "pool_step_curves", "step_curves", "training_curves", "behaviour")
OPTIONAL_CHARTS = (RESPONSE_CHART,)  # on the pages of configs with a response model only


def pools(summary: pd.DataFrame) -> list[str]:
    """The pooled scopes (``scopes.POOLS``) of a summary, linear first."""
    return [p for p in POOLED_SCOPES if p in set(summary["suite"])]


def by_pool(summary: pd.DataFrame, render, heading: str = "h3") -> str:
    """``render(pool)`` for each pooled scope; under a heading naming it when there are both (linear and
    nonlinear SCMs), as it is when there is one."""
    found = pools(summary)
    if len(found) == 1:
        return render(found[0])
    return "".join(f"<{heading}>{esc(pool[0].upper() + pool[1:])}</{heading}>" + render(pool) for pool in found)


def pool_text(summary: pd.DataFrame) -> str:
    """What the pooled numbers pool, in words."""
    if len(pools(summary)) > 1:
        return ("the linear SCMs of every evaluation suite, and apart from them the nonlinear ones (each in its own "
                "tables)")
    return f"every evaluation suite ({pools(summary)[0].removeprefix('all ')})" if pools(summary) else "no suite"


def headline_table(summary: pd.DataFrame, pool: str, seed=None, columns=None) -> str:
    """Methods (rows) by ``columns`` (default HEADLINE_OUTCOMES) over a pooled scope, pooled over seeds or for one
    seed."""
    columns = columns or HEADLINE_OUTCOMES
    rows = summary[(summary["kind"] == "metric") & (summary["suite"] == pool)]
    rows = rows[rows["seed"].isna()] if seed is None else rows[rows["seed"] == seed]
    colors = method_colors(summary["method"][summary["kind"] == "metric"])
    lookup = {(r.method, r.metric): r for r in rows.itertuples(index=False)}
    out = []
    for method in method_order(rows["method"]):
        cells = [swatch(method, colors)]
        for metric in columns:
            r = lookup.get((method, metric))
            cells.append(esc(ci_text(r.mean, r.ci_low, r.ci_high, METRICS[metric].shown_as)) if r is not None
                         else "n/a")
        out.append(cells)
    header = ["method"] + [esc(METRICS[m].label) for m in columns]
    return html_table(header, out)


def verdict(low, high, better) -> str:
    if pd.isna(low) or better is None:
        return "n/a"
    if low > 0 or high < 0:
        policy_better = (low > 0) == (better == "higher")
        return "policy better" if policy_better else "baseline better"
    return "no clear difference"


ANSWER_METRICS = ["norm_improvement_mean", "norm_improvement_best_10", "norm_improvement_best", "optimum_found",
                  "target_mean"]


def answer_html(summary: pd.DataFrame, pool: str) -> str:
    """The user's first question, answered: does each policy mode beat each baseline, metric by metric?

    One sentence per policy mode, then the paired differences (policy minus baseline on the same SCM and
    episode, the SCMs of one pooled scope) with their CIs. The oracle is an upper bound, not a competitor.
    """
    rows = summary[
        (summary["kind"] == "paired_difference") & (summary["suite"] == pool) & summary["seed"].isna()
        & summary["metric"].isin(ANSWER_METRICS) & (summary["baseline"] != "oracle")
    ]
    if rows.empty:
        return '<p class="note">No paired comparison: the study has no policy or no baseline tables.</p>'
    colors = method_colors(summary["method"][summary["kind"] == "metric"])
    lookup = {(r.method, r.baseline, r.metric): r for r in rows.itertuples(index=False)}
    sentences, table = [], []
    for method in method_order(rows["method"]):
        wins, losses = [], []
        for baseline in method_order(rows["baseline"]):
            found = {m: lookup[(method, baseline, m)] for m in ANSWER_METRICS if (method, baseline, m) in lookup}
            verdicts = {m: verdict(r.ci_low, r.ci_high, r.better) for m, r in found.items()}
            if verdicts and all(v == "policy better" for v in verdicts.values()):
                wins.append(esc(baseline))
            behind = [METRICS[m].label for m, v in verdicts.items() if v == "baseline better"]
            if behind:
                losses.append(f"{esc(baseline)} ({esc('; '.join(behind))})")
            cells = [swatch(method, colors), swatch(baseline, colors)]
            for metric in ANSWER_METRICS:
                r = found.get(metric)
                cells.append("n/a" if r is None else
                             f"{esc(ci_text(r.mean, r.ci_low, r.ci_high))}<br>{esc(verdicts[metric])}")
            table.append(cells)
        sentence = f"<b>{esc(method)}</b> beats " + (", ".join(wins) if wins else "no baseline") + " on every metric"
        sentence += "; it is behind " + ", ".join(losses) if losses else "; no baseline is ahead of it on any metric"
        sentences.append(f"<li>{sentence}.</li>")
    header = ["policy", "baseline"] + [f"&Delta; {esc(METRICS[m].label)} [{CI_PERCENT} CI]" for m in ANSWER_METRICS]
    return (f"<ul>{''.join(sentences)}</ul>"
            '<p class="note">Each cell: the policy minus the baseline on the same suite, SCM and evaluation '
            f"episode, averaged over {esc(pool.removeprefix('all '))} and every seed, with its {CI_PERCENT} "
            "bootstrap CI; "
            "\"policy better\" where the whole CI lies on the policy's side (for the average target, lower is "
            "better).</p>"
            + html_table(header, table, numeric_from=2))


def paired_table(summary: pd.DataFrame, pool: str) -> str:
    metrics = ["norm_improvement_best", "target_mean"]
    rows = summary[
        (summary["kind"] == "paired_difference")
        & (summary["suite"] == pool)
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
    header = ["policy", "baseline"]
    for metric in metrics:
        header += [f"&Delta; {esc(METRICS[metric].label)} [{CI_PERCENT} CI]", "verdict"]
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
        f"<dt>{esc(METRICS[m].label)}</dt><dd>{esc(METRICS[m].note)}</dd>"
        for m in HEADLINE_OUTCOMES + HEADLINE_BEHAVIOUR
    )
    return f'<dl class="glossary">{items}</dl>'


HEADLINE_NOTE = (
    f"Each cell: mean [{CI_PERCENT} bootstrap CI] over SCMs and seeds. Normalized improvement is 0 for doing nothing "
    "and 1 "
    "for the oracle's best intervention (higher is better); the average target is the raw value of Y (lower is "
    "better). Definitions are below."
)


def headline_tables(summary: pd.DataFrame, pool: str) -> str:
    """The outcome, behaviour, per-seed and paired tables of one pooled scope."""
    seeds = sorted(summary["seed"][(summary["kind"] == "metric")].dropna().unique())
    scope = "" if len(pools(summary)) == 1 else f": {esc(pool)}"
    per_seed = "".join(
        f"<h3>Training seed {int(s)} alone (the policy; baselines have no training seed){scope}</h3>"
        + headline_table(summary, pool, seed=s, columns=HEADLINE_OUTCOMES + HEADLINE_BEHAVIOUR)
        for s in seeds
    )
    return (
        f"<h3>Outcomes{scope}</h3>" + headline_table(summary, pool)
        + f"<h3>How the methods intervene{scope}</h3>" + headline_table(summary, pool, columns=HEADLINE_BEHAVIOUR)
        + per_seed
        + f"<h3>Policy against each baseline (paired){scope}</h3>" + paired_table(summary, pool)
    )


def headline_section(summary: pd.DataFrame, meta: dict) -> Section:
    methods = summary["method"][summary["kind"] == "metric"].unique()
    body = (
        "".join(headline_tables(summary, pool) for pool in pools(summary))
        + "<h3>Methods</h3>" + glossary(methods, meta.get("plugins"))
        + "<h3>Metrics</h3>" + metric_glossary()
    )
    intro = f'<p class="note">Pooled: {esc(pool_text(summary))}. {HEADLINE_NOTE}</p>'
    return Section("headline", "Headline numbers", intro, body=body)


def comparison_section(summary: pd.DataFrame, classes: dict | None) -> Section:
    charts = (
        ("comparison_norm_improvement", chart_spec(comparison_chart(
            summary, "norm_improvement_best", "Normalized improvement reached by the last intervention", False,
            classes))),
        ("comparison_target_mean", chart_spec(comparison_chart(
            summary, "target_mean", "Average target value over the episode (lower is better)", True, classes))),
        ("paired_differences", chart_spec(paired_chart(summary, classes=classes))),
    )
    last = ("the last panel pools all suites" if len(pools(summary)) == 1 else
            "the linear suites come first, then a panel pooling their SCMs, then the nonlinear suites and theirs")
    return Section("comparison", "Per-level comparison of every method",
                   '<p class="note">One panel per evaluation suite (held-out SCMs of one curriculum level); '
                   f"{last}.</p>", charts=charts)


def summary_sections(summary: pd.DataFrame, meta: dict) -> list[Section]:
    classes = meta.get("mechanisms")  # suite -> linear / nonlinear / mixed
    return [
        Section("answer", "Does the trained policy beat the baselines?", "",
                body=by_pool(summary, lambda pool: answer_html(summary, pool))),
        headline_section(summary, meta),
        comparison_section(summary, classes),
        Section(
            "convergence", "Convergence per pool",
            '<p class="note">Every method\'s best-so-far normalized improvement after each intervention, over all '
            "linear and over all nonlinear SCMs: where each method stands against random search (dashed grey) "
            "at every budget up to the episode's last intervention.</p>",
            charts=(("pool_step_curves", chart_spec(step_chart(summary, classes, pools_only=True))),),
        ),
        Section(
            "curves", "Step-by-step curves",
            '<p class="note">How fast each method finds good interventions within an evaluation episode.</p>',
            charts=(("step_curves", chart_spec(step_chart(summary, classes))),),
        ),
        Section(
            "training", "Training curves and curriculum",
            '<p class="note">From the training logs: reward, normalized improvement and surrogate F1 per training '
            "episode, and the curriculum level the trainer was on.</p>",
            charts=(("training_curves", chart_spec(training_chart(summary))),),
        ),
        Section(
            "behaviour", "Intervention behaviour",
            '<p class="note">Which variables and values each method chooses: a good method intervenes on parents '
            "of the target, mostly on the oracle's variable, and at the ends of the range (high utilization).</p>",
            charts=(("behaviour", chart_spec(behaviour_chart(summary, classes))),),
        ),
        *filter(None, [response_section(summary)]),
        Section("provenance", "Provenance", '<p class="note">What produced these numbers.</p>',
                body=provenance_html(meta)),
    ]


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


COMPARE_METRIC = "norm_improvement_best"  # the comparison page's headline metric


def compare_rows(frame: pd.DataFrame, metas: dict[str, dict]) -> list[list[str]]:
    """The headline table of the comparison page: per config, pooled scope and method."""
    rows = []
    colors = method_colors(frame["method"][frame["kind"] == "metric"])
    for name in sorted(metas):
        meta = metas[name]
        for pool in POOLED_SCOPES:
            sub = frame[
                (frame["config"] == name)
                & (frame["kind"] == "metric")
                & (frame["suite"] == pool)
                & frame["seed"].isna()
                & (frame["metric"] == COMPARE_METRIC)
            ]
            for r in sorted(sub.itertuples(index=False), key=lambda r: method_order(sub["method"]).index(r.method)):
                rows.append(
                    [
                        esc(name),
                        esc(pool),
                        swatch(r.method, colors),
                        esc(ci_text(r.mean, r.ci_low, r.ci_high)),
                        esc(", ".join(map(str, meta.get("seeds", [])))),
                        esc(", ".join(meta.get("eval_suites", []))),
                    ]
                )
    return rows


def write_compare_page(frame: pd.DataFrame, metas: dict[str, dict], out: str | Path) -> None:
    configs = sorted(metas)
    plugins: dict[str, list[str]] = {}  # plug-in method -> file hashes, over every config
    classes: dict[str, str] = {}  # suite -> mechanism class, over every config
    for name in configs:
        classes.update(metas[name].get("mechanisms", {}))
        for method, hashes in metas[name].get("plugins", {}).items():
            plugins[method] = sorted(set(plugins.get(method, [])) | set(hashes))
    table = html_table(
        ["config", "pooled", "method", f"{esc(METRICS[COMPARE_METRIC].label)} [{CI_PERCENT} CI]", "seeds", "suites"],
        compare_rows(frame, metas),
        numeric_from=3,
    )
    sections = [
        Section(
            "headline",
            "Headline metric per config",
            '<p class="note">Each config pools its own evaluation suites, linear SCMs apart from nonlinear ones; '
            "baselines are shared by all configs.</p>",
            charts=(("compare_headline", chart_spec(compare_chart(frame))),),
            body=table,
        ),
        Section(
            "suites",
            "Per suite",
            '<p class="note">Every suite that some config was evaluated on, the linear ones first.</p>',
            charts=(("compare_suites", chart_spec(compare_suite_chart(frame, classes=classes))),),
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
    lead = (f"Comparison of experiment configs {esc(', '.join(configs))} on held-out SCM suites, with {CI_PERCENT} "
            "bootstrap CIs.")
    atomic_write_text(out, render_page("ACBO benchmark: configs compared", lead, sections))
