"""The provenance blocks of the pages: what produced a summary (config, seeds, versions, git commits,
checkpoint hashes, run times) on ``summary.html``, and one row per config on ``compare.html``."""

from __future__ import annotations

import json

import altair as alt

from .chart_style import method_order
from .page import esc, html_table


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _mechanisms_text(classes: dict[str, str]) -> str:
    """``linear: a, b; nonlinear: c`` from suite -> class."""
    by_class: dict[str, list[str]] = {}
    for suite, mechanism in sorted(classes.items()):
        by_class.setdefault(mechanism, []).append(suite)
    return "; ".join(f"{m}: {', '.join(suites)}" for m, suites in sorted(by_class.items())) or "n/a"


def more_episodes_text(more: dict[str, int]) -> str:
    """`` (30 on heldout-cbo)`` for the suites of few SCMs that ran more episodes per SCM; empty without."""
    return f" ({'; '.join(f'{n} on {suite}' for suite, n in sorted(more.items()))})" if more else ""


def provenance_html(meta: dict) -> str:
    import vl_convert

    boot = meta["bootstrap"]
    general = [
        ["config", esc(meta["config"])],
        ["training seeds", esc(", ".join(map(str, meta["seeds"])))],
        ["evaluation suites", esc(", ".join(meta["eval_suites"]))],
        ["mechanisms (pooled apart)", esc(_mechanisms_text(meta.get("mechanisms", {})))],
        ["methods", esc(", ".join(method_order(meta["methods"])))],
        [
            "evaluation protocol",
            esc(
                f"{meta['protocol']['scms']} SCMs, {meta['protocol']['episodes_per_scm']} episodes per SCM"
                f"{more_episodes_text(meta['protocol'].get('more_episodes', {}))}, "
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
    ("training run time, s (resumes included)", lambda t: esc(_fmt(t["training_wall_time_s"]))),
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
