"""Summary stage: bootstrap aggregation, paired differences, reproducible outputs, the CLI, and the
Snakemake report of a real debug study."""

from __future__ import annotations

import base64
import itertools
import json
import re
import warnings
import zlib
from argparse import Namespace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, call_cli, copy_study, snakemake

from workflow_src.cli import run_compare_cli, run_summarize_cli
from workflow_src.errors import UserError
from workflow_src.paths import summary_inputs
from workflow_src.provenance import file_hash
from workflow_src.report.bootstrap import Units, bootstrap, unit_table, units_of
from workflow_src.report.inputs import load_inputs
from workflow_src.report.metrics import METRIC_COLUMNS, episode_metrics
from workflow_src.report.provenance_page import more_episodes_text
from workflow_src.report.scopes import POOLS
from workflow_src.report.summarize import paired_differences, provenance, read_summary, summarize
from workflow_src.suites.suite_io import parse_suite, write_suite
from workflow_src.tables import EVAL_SCHEMA, SUMMARY_SCHEMA, TRAIN_LOG_SCHEMA, write_table

LINEAR_POOL, NONLINEAR_POOL = POOLS["linear"], POOLS["nonlinear"]

BASELINES = ("random", "oracle", "marginal_regression", "thompson_bandit")
POLICIES = ("policy_greedy", "policy_sampled")
QUALITY = {
    "policy_greedy": 0.8,
    "policy_sampled": 0.7,
    "oracle": 1.0,
    "marginal_regression": 0.6,
    "thompson_bandit": 0.5,
    "random": 0.2,
}


# --- synthetic tables that match EVAL_SCHEMA / TRAIN_LOG_SCHEMA exactly -------------------------------------


def eval_frame(method, suite, level, n_scms=4, episodes=3, steps=5, seed=None, config=None, rng_seed=0):
    """A long evaluation table of one method on one synthetic suite; better methods improve more."""
    rng = np.random.default_rng([rng_seed, level, n_scms, episodes, steps, zlib.crc32(method.encode()), seed or 0])
    rows = []
    for c in range(n_scms):
        scm_rng = np.random.default_rng([level, c])  # per-SCM constants shared by all methods
        mu, gap = scm_rng.uniform(-1, 1), scm_rng.uniform(1, 3)
        oracle, rand = mu - gap, mu - 0.2 * gap
        for e in range(episodes):
            for t in range(steps):
                ni = float(np.clip(rng.normal(QUALITY[method] * (t + 1) / steps, 0.15), -0.5, 1.0))
                expected = mu - ni * gap
                rows.append(
                    {
                        "config": config,
                        "seed": seed,
                        "suite": suite,
                        "scm_id": f"{suite}-{c:03d}",
                        "family": ["chain", "fork"][c % 2],
                        "level": level,
                        "method": method,
                        "episode": e,
                        "step": t,
                        "variable": f"X{t % 3}",
                        "value": float(rng.uniform(-2, 2)),
                        "is_parent": bool(rng.random() < QUALITY[method]),
                        "is_optimal_variable": bool(rng.random() < QUALITY[method] / 2),
                        "range_utilization": float(rng.uniform(0, 1)),
                        "target": float(expected + rng.normal(0, 0.3)),
                        "expected_target": float(expected),
                        "oracle_target": float(oracle),
                        "random_target": float(rand),
                        "mu_target": float(mu),
                        "norm_improvement": ni,
                        "f1": float(rng.uniform(0, 1)),
                        "package_version": "0.1.0",
                        "git_commit": "abc123",
                        "checkpoint_hash": None,
                        "plugin_hash": None,
                    }
                )
    return pd.DataFrame(rows)


def train_frame(config, seed, episodes=12):
    rng = np.random.default_rng(seed)
    levels = np.where(np.arange(episodes) < episodes // 2, 1, 2)
    return pd.DataFrame(
        {
            "config": config,
            "seed": seed,
            "episode": np.arange(episodes),
            "level": levels,
            "level_changed": np.r_[False, np.diff(levels) != 0],
            "scm_ids": "train-L01-000,train-L01-003",
            "families": "chain,fork",
            "reward": rng.uniform(0, 1, episodes),
            "reward_target": rng.uniform(0, 1, episodes),
            "reward_parent": rng.uniform(0, 1, episodes),
            "reward_info_gain": 0.0,
            "norm_improvement": np.linspace(0, 0.8, episodes),
            "parent_rate": rng.uniform(0, 1, episodes),
            "range_utilization": rng.uniform(0, 1, episodes),
            "f1": rng.uniform(0, 1, episodes),
            "loss": rng.normal(0, 1, episodes),
            "effect_loss": np.zeros(episodes),
            "response_nll": np.zeros(episodes),
            "response_rmse": np.zeros(episodes),
            "grad_norm": rng.uniform(0, 1, episodes),
            "learning_rate": 5e-4,
            "wall_time": np.arange(episodes) * 0.5,
        }
    )


SUITES = {"heldout-L01": 1, "heldout-L02": 2}
CHART_NAMES = (
    "comparison_norm_improvement",
    "comparison_target_mean",
    "paired_differences",
    "pool_step_curves",
    "step_curves",
    "training_curves",
    "behaviour",
)


def suite_doc(suite: str, level: int, n_scms: int, nonlinear: bool) -> dict:
    """A suite file whose SCM ids are those of ``eval_frame``: X0 -> X1 linear, or through a Gaussian bump."""
    edge = {"parent": "X0", "child": "X1"}
    edge.update({"terms": [{"fn": "gauss", "weight": -2.0}]} if nonlinear else {"coef": 1.5})
    scms = [{"id": f"{suite}-{c:03d}", "family": "chain", "nodes": ["X0", "X1"], "target": "X1", "edges": [edge],
             "ranges": {"X0": [-2.0, 2.0]}} for c in range(n_scms)]
    fmt = "acbo-suite/2" if nonlinear else "acbo-suite/1"
    return {"format": fmt, "name": suite, "level": level, "seed": 0, "scms": scms}


def write_suite_file(results: Path, suite: str, level: int, n_scms: int, nonlinear: bool) -> None:
    """The suite file as the suite stage writes it (a nonlinear one with its oracles)."""
    doc = suite_doc(suite, level, n_scms, nonlinear)
    path = results / "suites" / f"{suite}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if nonlinear:
        write_suite(parse_suite(doc), path)
    else:
        path.write_text(json.dumps(doc))


def make_study(tmp: Path, config="synth", seeds=(0, 1), suites=SUITES, n_scms=4, episodes=3, steps=5,
               nonlinear=()) -> dict:
    """Write a complete synthetic study (checkpoints, training logs, evals, baselines, suite files; the suites
    named in ``nonlinear`` have nonlinear SCMs); return its spec."""
    results, ckpts = tmp / "results", tmp / "checkpoints"
    hashes = {}
    for seed in seeds:
        write_table(train_frame(config, seed), TRAIN_LOG_SCHEMA, results / config / "train" / f"seed_{seed}.parquet")
        header = {
            "format": "acbo-ckpt/1",
            "config_name": config,
            "seed": seed,
            "episode": 12,
            "config_hash": "cafe",
            "metrics": {"reward": 0.5, "f1": 0.25},
            "package_version": "0.1.0",
            "git_commit": "abc123",
        }
        path = ckpts / config / f"seed_{seed}" / "final.ckpt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(json.dumps(header).encode() + b"\n" + bytes(range(256)) + bytes([seed]))
        hashes[seed] = file_hash(path)
    for suite, level in suites.items():
        write_suite_file(results, suite, level, n_scms, suite in nonlinear)
        base = pd.concat([eval_frame(m, suite, level, n_scms, episodes, steps) for m in BASELINES])
        write_table(base, EVAL_SCHEMA, results / "baselines" / f"{suite}.parquet")
        for seed in seeds:
            pol = pd.concat([eval_frame(m, suite, level, n_scms, episodes, steps, seed, config) for m in POLICIES])
            pol["checkpoint_hash"] = hashes[seed]
            write_table(pol, EVAL_SCHEMA, results / config / "eval" / f"seed_{seed}" / f"{suite}.parquet")
    return {
        "config": config,
        "seeds": list(seeds),
        "eval_suites": sorted(suites),
        "bootstrap_resamples": 300,
        "bootstrap_seed": 0,
    }


def layout(spec: dict, tmp: Path) -> dict:
    """The summary's input files in the standard layout under ``tmp``."""
    return summary_inputs(spec["config"], spec["seeds"], spec["eval_suites"], tmp / "results", tmp / "checkpoints")


def summarize_args(tmp: Path, spec: dict, out: str = "out") -> Namespace:
    return Namespace(
        experiment=spec["config"],
        spec=json.dumps(spec),
        config=None,
        results=str(tmp / "results"),
        checkpoints=str(tmp / "checkpoints"),
        out_table=str(tmp / out / "summary.parquet"),
        out_html=str(tmp / out / "summary.html"),
        charts_dir=str(tmp / out / "charts"),
    )


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    spec = make_study(tmp)
    args = summarize_args(tmp, spec)
    assert run_summarize_cli(args) == 0
    return {"tmp": tmp, "spec": spec, "args": args}


# --- bootstrap --------------------------------------------------------------------------------------------


def _units(values: np.ndarray, n_strata: int = 1) -> Units:
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[None, :, None]
    strata = np.arange(values.shape[1]) % n_strata
    return Units(values=values, strata=strata, n_episodes=values.shape[1], n_seeds=values.shape[0])


def test_the_provenance_names_the_suites_that_ran_more_episodes(tmp_path):
    """A suite of one SCM that ran 6 episodes beside suites of 3 SCMs that ran 2 (``min_suite_episodes``): the
    protocol reads 2 episodes per SCM, and 6 on that suite."""
    make_study(tmp_path, seeds=(0,), suites={"heldout-L01": 1, "heldout-L03": 3}, n_scms=3, episodes=2, steps=3)
    spec = make_study(tmp_path, seeds=(0,), suites={"heldout-L02": 2}, n_scms=1, episodes=6, steps=3)
    spec["eval_suites"] = ["heldout-L01", "heldout-L02", "heldout-L03"]
    protocol = provenance(load_inputs(spec, layout(spec, tmp_path)))["protocol"]
    assert protocol == {"scms": 7, "episodes_per_scm": 2, "more_episodes": {"heldout-L02": 6},
                        "interventions_per_episode": 3}
    assert more_episodes_text(protocol["more_episodes"]) == " (6 on heldout-L02)"


def test_bootstrap_ci_contains_mean_and_is_reproducible():
    rng = np.random.default_rng(1)
    units = _units(rng.normal(2.0, 1.0, size=(3, 20, 4)), n_strata=2)
    mean, low, high = bootstrap(units, 500, seed=7)
    assert np.allclose(mean, units.values.mean(axis=(0, 1)))
    assert np.all(low <= mean) and np.all(mean <= high) and np.all(low < high)
    again = bootstrap(units, 500, seed=7)
    for a, b in zip((mean, low, high), again, strict=True):
        assert np.array_equal(a, b)
    other = bootstrap(units, 500, seed=8)
    assert not np.array_equal(low, other[1])


def test_bootstrap_ci_shrinks_with_more_data():
    rng = np.random.default_rng(2)
    widths = []
    for n in (16, 64, 256, 1024):
        x = rng.normal(0.0, 1.0, n)
        x = (x - x.mean()) / x.std()  # unit spread, so only n changes
        _, low, high = bootstrap(_units(x), 1000, seed=0)
        widths.append(float(high[0] - low[0]))
        # a normal-theory 95% interval of the mean is 2 * 1.96 / sqrt(n) wide
        assert widths[-1] == pytest.approx(2 * 1.96 / np.sqrt(n), rel=0.2)
    assert all(a > b for a, b in itertools.pairwise(widths)), widths


def test_bootstrap_resamples_seeds_when_several():
    # SCM effects identical, seeds differ a lot: the CI must reflect the spread between seeds
    values = np.repeat(np.array([0.0, 1.0, 2.0])[:, None, None], 10, axis=1)
    _, low, high = bootstrap(_units(values), 1000, seed=0)
    assert high[0] - low[0] > 0.9
    _, low1, high1 = bootstrap(_units(values[:1]), 1000, seed=0)
    assert high1[0] - low1[0] == 0.0


def test_bootstrap_skips_missing_units():
    values = np.array([[[1.0, np.nan], [np.nan, np.nan], [3.0, np.nan]]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean, low, high = bootstrap(_units(values), 200, seed=0)
    assert mean[0] == 2.0 and 1.0 <= low[0] <= high[0] <= 3.0
    assert np.isnan([mean[1], low[1], high[1]]).all()  # a metric without any value: no number, no warning


def unit_means(frame: pd.DataFrame, columns: list[str]) -> Units:
    """Average ``columns`` over episodes per (seed, SCM); baselines have one null seed."""
    return units_of(unit_table(frame, [], columns), columns)


def test_unit_means_average_episodes_per_seed_and_scm():
    frame = pd.DataFrame(
        {
            "seed": [0, 0, 0, 1],
            "suite": ["a", "a", "b", "a"],
            "scm_id": ["s1", "s1", "s2", "s1"],
            "level": [1, 1, 2, 1],
            "x": [1.0, 3.0, 10.0, 5.0],
        }
    )
    units = unit_means(frame, ["x"])
    assert units.values.shape == (2, 2, 1) and units.n_seeds == 2 and units.n_episodes == 4
    assert units.values[0, 0, 0] == 2.0 and units.values[0, 1, 0] == 10.0 and units.values[1, 0, 0] == 5.0
    assert np.isnan(units.values[1, 1, 0])
    assert list(units.strata) == [0, 1]
    baseline = unit_means(frame.assign(seed=None), ["x"])
    assert baseline.values.shape == (1, 2, 1) and baseline.n_seeds == 0


# --- paired differences -------------------------------------------------------------------------------------


def test_paired_differences_match_hand_computation():
    pol = eval_frame("policy_greedy", "heldout-L01", 1, n_scms=2, episodes=2, steps=3, seed=0, config="c")
    base = eval_frame("random", "heldout-L01", 1, n_scms=2, episodes=2, steps=3)
    table = pd.concat([pol, base], ignore_index=True)
    diffs = paired_differences(episode_metrics(table))
    assert len(diffs) == 4 and set(diffs["baseline"]) == {"random"}
    for row in diffs.itertuples(index=False):
        p = pol[(pol.scm_id == row.scm_id) & (pol.episode == row.episode)]
        b = base[(base.scm_id == row.scm_id) & (base.episode == row.episode)]
        assert row.target_mean == pytest.approx(p.target.mean() - b.target.mean())
        assert row.norm_improvement_best == pytest.approx(p.norm_improvement.max() - b.norm_improvement.max())
        assert row.parent_rate == pytest.approx(p.is_parent.mean() - b.is_parent.mean())


def test_paired_rows_in_summary_match_hand_computation(tmp_path):
    spec = make_study(tmp_path, seeds=(0,), suites={"heldout-L01": 1}, n_scms=3, episodes=2, steps=4)
    inputs = load_inputs(spec, layout(spec, tmp_path))
    summary = summarize(inputs)
    row = summary[
        (summary.kind == "paired_difference")
        & (summary.method == "policy_greedy")
        & (summary.baseline == "oracle")
        & (summary.suite == "heldout-L01")
        & (summary.metric == "norm_improvement_best")
    ].iloc[0]
    ev = inputs.evals
    best = ev.groupby(["method", "scm_id", "episode"])["norm_improvement"].max()
    per_scm = (best["policy_greedy"] - best["oracle"]).groupby(level="scm_id").mean()
    assert row["mean"] == pytest.approx(per_scm.mean())
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    assert row["n_scms"] == 3 and row["n_episodes"] == 6 and row["better"] == "higher"


# --- the summary table --------------------------------------------------------------------------------------


def test_summary_table_schema_and_content(study):
    frame, meta = read_summary(study["args"].out_table)
    assert pq.read_schema(study["args"].out_table).remove_metadata() == SUMMARY_SCHEMA
    assert set(frame["kind"]) == {"metric", "paired_difference", "step_curve", "training"}
    metrics = frame[frame["kind"] == "metric"]
    assert set(metrics["method"]) == set(BASELINES) | set(POLICIES)
    assert set(metrics["suite"]) == set(SUITES) | {LINEAR_POOL}
    assert set(metrics["metric"]) == set(METRIC_COLUMNS)
    ok = metrics["ci_low"].notna()
    assert (metrics["ci_low"][ok] <= metrics["mean"][ok] + 1e-12).all()
    assert (metrics["mean"][ok] <= metrics["ci_high"][ok] + 1e-12).all()
    pooled = metrics[(metrics["method"] == "policy_greedy") & metrics["seed"].isna()]
    assert set(pooled["n_seeds"]) == {2}
    assert set(metrics[metrics["method"] == "policy_greedy"]["seed"].dropna()) == {0, 1}  # per-seed rows too
    assert metrics[metrics["method"] == "random"]["seed"].isna().all()
    # the synthetic tables rank the methods by QUALITY
    head = metrics[
        (metrics["suite"] == LINEAR_POOL) & metrics["seed"].isna() & (metrics["metric"] == "norm_improvement_best")
    ]
    by = head.set_index("method")["mean"]
    assert by["oracle"] > by["policy_greedy"] > by["marginal_regression"] > by["random"]
    curves = frame[frame["kind"] == "step_curve"]
    assert sorted(curves["step"].unique()) == [1, 2, 3, 4, 5]
    oracle_curve = curves[(curves["method"] == "oracle") & (curves["suite"] == LINEAR_POOL)].sort_values("step")
    assert oracle_curve["mean"].is_monotonic_increasing
    assert meta["config"] == "synth" and [t["seed"] for t in meta["training"]] == [0, 1]
    assert meta["protocol"]["episodes_per_scm"] == 3 and meta["protocol"]["more_episodes"] == {}
    first = meta["training"][0]
    assert first["checkpoint_episode"] == 12 and first["checkpoint_metrics"] == {"reward": 0.5, "f1": 0.25}
    ckpt = study["tmp"] / "checkpoints" / "synth" / "seed_0" / "final.ckpt"
    assert first["evaluated_checkpoint_hashes"] == [file_hash(ckpt)] == [first["checkpoint_file_hash"]]


def test_pooled_mean_equals_mean_over_scms_and_seeds(study):
    frame, _ = read_summary(study["args"].out_table)
    inputs = load_inputs(study["spec"], layout(study["spec"], study["tmp"]))
    ep = episode_metrics(inputs.evals)
    ep = ep[(ep["method"] == "policy_sampled") & (ep["suite"] == "heldout-L02")]
    expected = ep.groupby(["seed", "scm_id"])["target_mean"].mean().mean()
    row = frame[
        (frame["kind"] == "metric")
        & (frame["method"] == "policy_sampled")
        & (frame["suite"] == "heldout-L02")
        & frame["seed"].isna()
        & (frame["metric"] == "target_mean")
    ]
    assert row["mean"].item() == pytest.approx(expected)


def test_summarize_twice_is_byte_identical(study, tmp_path):
    args = summarize_args(study["tmp"], study["spec"], out="again")
    assert run_summarize_cli(args) == 0
    first, second = study["args"], args
    assert Path(first.out_table).read_bytes() == Path(second.out_table).read_bytes()
    assert Path(first.out_html).read_bytes() == Path(second.out_html).read_bytes()
    names = sorted(p.name for p in Path(first.charts_dir).iterdir())
    assert names == sorted(p.name for p in Path(second.charts_dir).iterdir())
    assert names == sorted(f"{n}.png" for n in CHART_NAMES)
    for name in names:
        assert (Path(first.charts_dir) / name).read_bytes() == (Path(second.charts_dir) / name).read_bytes()


def test_summarize_replaces_a_charts_folder_only_when_it_holds_nothing_but_its_charts(study, tmp_path):
    from workflow_src.report.pages import SUMMARY_CHARTS

    assert SUMMARY_CHARTS == CHART_NAMES  # what the command's check accepts is what it writes
    first = study["args"]
    charts = tmp_path / "charts"
    charts.mkdir()
    (charts / "behaviour.png").write_bytes(b"an earlier run's chart")
    args = Namespace(**{**vars(first), "charts_dir": str(charts), "out_table": str(tmp_path / "s.parquet"),
                        "out_html": str(tmp_path / "s.html")})
    assert run_summarize_cli(args) == 0
    assert snapshot_of(charts) == snapshot_of(Path(first.charts_dir))
    (charts / "mine.txt").write_text("a user's file")
    (tmp_path / "s.html").unlink()
    before = snapshot_of(tmp_path)
    with pytest.raises(UserError, match=r"holds files this command did not write \(mine\.txt\)"):
        run_summarize_cli(args)
    assert snapshot_of(tmp_path) == before


def test_charts_are_rendered_before_their_temporary_folder_is_made(tmp_path, monkeypatch):
    """A job killed while rendering (seconds) leaves no ``.charts.*`` folder behind."""
    import vl_convert

    from workflow_src.report.page import write_pngs

    render = vl_convert.vegalite_to_png

    def checked(spec, scale):
        assert list(tmp_path.iterdir()) == [], "a folder was made before the charts were rendered"
        return render(spec, scale=scale)

    monkeypatch.setattr(vl_convert, "vegalite_to_png", checked)
    spec = {"mark": "point", "data": {"values": [{"a": 1}]}, "encoding": {"x": {"field": "a", "type": "quantitative"}}}
    write_pngs([("one", spec), ("two", spec)], tmp_path / "charts")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["charts"]
    assert sorted(p.name for p in (tmp_path / "charts").iterdir()) == ["one.png", "two.png"]


def snapshot_of(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_summary_html_is_self_contained(study):
    page = Path(study["args"].out_html).read_text()
    assert page.count("window.vegaEmbed=") == 1  # the Vega bundle is inlined once
    assert page.count('<div class="chart"') == len(CHART_NAMES)
    assert "<script src" not in page and "<link" not in page
    assert "http://" not in page.replace("http://www.w3.org", "")  # only XML namespaces inside the bundle
    for text in (
        "Headline numbers",
        "Provenance",
        "policy_greedy",
        "abc123",
        'evaluation used this checkpoint</b></td><td class="num">yes</td><td class="num">yes</td>',
        "heldout-L02 (level 2)",
    ):
        assert text in page


def test_missing_table_names_the_file(tmp_path):
    spec = make_study(tmp_path, seeds=(0,), suites={"heldout-L01": 1}, n_scms=2, episodes=1, steps=2)
    missing = tmp_path / "results" / "baselines" / "heldout-L01.parquet"
    missing.unlink()
    with pytest.raises(UserError, match="heldout-L01.parquet"):
        run_summarize_cli(summarize_args(tmp_path, spec))
    proc = call_cli(
        "summarize",
        "--experiment",
        "synth",
        "--spec",
        json.dumps(spec),
        "--results",
        tmp_path / "results",
        "--checkpoints",
        tmp_path / "checkpoints",
        "--out-table",
        tmp_path / "o.parquet",
        "--out-html",
        tmp_path / "o.html",
        "--charts-dir",
        tmp_path / "c",
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and str(missing) in proc.stderr
    assert not (tmp_path / "o.parquet").exists()


def test_foreign_rows_are_refused(tmp_path):
    spec = make_study(tmp_path, seeds=(0,), suites={"heldout-L01": 1}, n_scms=2, episodes=1, steps=2)
    path = tmp_path / "results" / "synth" / "eval" / "seed_0" / "heldout-L01.parquet"
    frame = pd.read_parquet(path)
    write_table(frame.assign(seed=3), EVAL_SCHEMA, path)
    with pytest.raises(UserError, match="column seed holds 3, expected 0"):
        load_inputs(spec, layout(spec, tmp_path))


def test_checkpoint_of_another_training_config_is_refused(tmp_path):
    spec = make_study(tmp_path, seeds=(0,), suites={"heldout-L01": 1}, n_scms=2, episodes=1, steps=2)
    assert load_inputs({**spec, "train_config_hash": "cafe"}, layout(spec, tmp_path))
    with pytest.raises(UserError, match="final.ckpt: config_hash cafe differs from beef, the hash of config 'synth'"):
        load_inputs({**spec, "train_config_hash": "beef"}, layout(spec, tmp_path))


def test_checkpoint_header_fields_are_optional(tmp_path):
    spec = make_study(tmp_path, seeds=(0,), suites={"heldout-L01": 1}, n_scms=2, episodes=1, steps=2)
    ckpt = tmp_path / "checkpoints" / "synth" / "seed_0" / "final.ckpt"
    ckpt.write_bytes(b'{"format": "acbo-ckpt/1"}\n\x00\x01')
    inputs = load_inputs(spec, layout(spec, tmp_path))
    assert inputs.headers[0] == {"format": "acbo-ckpt/1"}
    assert run_summarize_cli(summarize_args(tmp_path, spec)) == 0
    ckpt.write_bytes(b'{"format": "x"}\n\x00\x01')  # a JSON line, but not a checkpoint's
    with pytest.raises(UserError, match="final.ckpt: format: expected 'acbo-ckpt/1', got 'x'"):
        load_inputs(spec, layout(spec, tmp_path))
    (tmp_path / "checkpoints" / "synth" / "seed_0" / "final.ckpt").write_bytes(b"\x93\x00 not json")
    with pytest.raises(UserError, match=r"final.ckpt: not an ACBO checkpoint \(no JSON header line\)"):
        load_inputs(spec, layout(spec, tmp_path))


def test_compare_page(study, tmp_path):
    other = make_study(tmp_path, config="other", seeds=(0,), suites={"heldout-L01": 1})
    args = summarize_args(tmp_path, other)
    assert run_summarize_cli(args) == 0
    out = tmp_path / "compare.html"
    assert run_compare_cli(Namespace(summaries=[study["args"].out_table, args.out_table], out=str(out))) == 0
    page = out.read_text()
    assert page.count("window.vegaEmbed=") == 1 and page.count('<div class="chart"') == 2
    assert "synth" in page and "other" in page and "config hash per seed" in page
    again = tmp_path / "compare2.html"
    run_compare_cli(Namespace(summaries=[args.out_table, study["args"].out_table], out=str(again)))
    assert again.read_bytes() == out.read_bytes()
    with pytest.raises(UserError, match="missing summary table .*nope.parquet"):
        run_compare_cli(Namespace(summaries=[str(tmp_path / "nope.parquet")], out=str(out)))


# --- the session's tiny study through Snakemake ----------------------------------------------------------------


@pytest.mark.slow
def test_snakemake_report_contains_the_charts(tiny_study, tmp_path):
    """`snakemake --report` embeds every PNG chart (labelled by name) and the summary page, with captions."""
    study = copy_study(tiny_study, tmp_path / "wf")
    snakemake(study, "--report", "report.html", "results/tiny_a/summary.html")
    report = (study / "report.html").read_text(errors="replace")
    for caption in ("Amortized causal Bayesian optimization benchmark", "The summary page of config",
                    "Intervals are 95% percentile bootstrap intervals"):  # report/workflow.rst, summary.rst, chart.rst
        assert caption in report, caption
    results = study / "results" / "tiny_a"
    pngs = sorted((results / "charts").glob("*.png"))
    assert [p.stem for p in pngs] == sorted(CHART_NAMES)
    for png in pngs:
        assert f'"figure": "{png.stem}"' in report, png.stem
        assert base64.b64encode(png.read_bytes()).decode()[:2000] in report, png.name
    assert base64.b64encode((results / "summary.html").read_bytes()).decode()[:2000] in report
    table, _ = read_summary(results / "summary.parquet")
    assert {"policy_greedy", "policy_sampled", "random", "oracle"} <= set(table["method"])


def test_spec_comes_from_the_config_file_without_spec(tmp_path):
    args = Namespace(
        experiment="debug",
        spec=None,
        config=str(ROOT / "config" / "config.yaml"),
        results=str(tmp_path / "results"),
        checkpoints=str(tmp_path / "checkpoints"),
        out_table=None,
        out_html=None,
        charts_dir=None,
    )
    # the debug config's first input (seed 0, heldout-L01) is reported missing, by name
    with pytest.raises(UserError, match=r"missing evaluation table .*debug/eval/seed_0/heldout-L01\.parquet"):
        run_summarize_cli(args)
    with pytest.raises(UserError, match="not 'debug'"):
        run_summarize_cli(
            Namespace(
                **{
                    **vars(args),
                    "spec": '{"config": "other", "seeds": [0], '
                    '"eval_suites": ["heldout-L01"], "bootstrap_resamples": 100, "bootstrap_seed": 0}',
                }
            )
        )


def page_specs(page: str) -> dict[str, dict]:
    """The Vega-Lite spec of every chart embedded in a page, by chart name."""
    found = re.finditer(r'<script type="application/json" id="spec-([^"]+)">(.*?)</script>', page, re.S)
    return {m.group(1): json.loads(m.group(2)) for m in found}


def method_scales(node) -> list[dict[str, str]]:
    """Every method -> colour (or dash) mapping in a spec."""
    if isinstance(node, list):
        return [s for item in node for s in method_scales(item)]
    if not isinstance(node, dict):
        return []
    found = []
    scale = node.get("scale")
    if node.get("field") == "method" and isinstance(scale, dict) and "domain" in scale and "range" in scale:
        found.append(dict(zip(scale["domain"], map(str, scale["range"]), strict=True)))
    return found + [s for value in node.values() for s in method_scales(value)]


def test_colours_are_fixed_per_method_and_random_is_on_every_panel(study):
    specs = page_specs(Path(study["args"].out_html).read_text())
    assert sorted(specs) == sorted(CHART_NAMES)
    colours: dict[str, set[str]] = {}
    for spec in specs.values():
        for mapping in method_scales(spec):
            for method, value in mapping.items():
                if value.startswith("#"):
                    colours.setdefault(method, set()).add(value)
    assert set(colours) == set(BASELINES) | set(POLICIES)
    assert all(len(values) == 1 for values in colours.values()), colours
    assert len({next(iter(v)) for v in colours.values()}) == len(colours)  # distinct colours
    for name in ("comparison_norm_improvement", "comparison_target_mean"):
        layers = specs[name]["spec"]["layer"]  # one layered panel per suite
        random_marks = [
            layer["mark"]["type"]
            for layer in layers
            if layer.get("transform") == [{"filter": "(datum.method === 'random')"}]
        ]
        assert sorted(random_marks) == ["rect", "rule"]  # its CI band and dashed mean line, on every panel


def test_the_page_answers_first_whether_the_policy_beats_each_baseline(study):
    page = Path(study["args"].out_html).read_text()
    assert page.index("Does the trained policy beat the baselines?") < page.index("Headline numbers")
    from workflow_src.report.pages import ANSWER_METRICS, answer_html

    def row(baseline, metric, low, high):
        return {"kind": "paired_difference", "suite": LINEAR_POOL, "seed": None, "method": "policy_greedy",
                "baseline": baseline, "metric": metric, "mean": (low + high) / 2, "ci_low": low, "ci_high": high,
                "better": "lower" if metric == "target_mean" else "higher"}

    def ahead(baseline, metric, low, high):  # the policy's side: below 0 for the average target
        return row(baseline, metric, -high, -low) if metric == "target_mean" else row(baseline, metric, low, high)

    rows = [ahead("random", m, 0.1, 0.3) for m in ANSWER_METRICS]
    rows += [ahead("marginal_regression", m, 0.01, 0.05) for m in ANSWER_METRICS if m != "norm_improvement_best_10"]
    rows += [row("marginal_regression", "norm_improvement_best_10", -0.05, -0.01), row("oracle", "f1", -1, -0.5)]
    html = answer_html(pd.DataFrame(rows), LINEAR_POOL)
    assert "<b>policy_greedy</b> beats random on every metric; it is behind marginal_regression " in html
    assert "(normalized improvement, best so far after 10 interventions)" in html
    assert "oracle" not in html  # an upper bound, not a competitor


def test_json_blocks_hold_no_markup_whatever_the_names():
    from workflow_src.report.page import Section, render_page, script_json

    name = "x<!--<script></script>"
    assert "<" not in script_json({"title": name}) and json.loads(script_json({"title": name})) == {"title": name}
    page = render_page(name, "lead", [Section("s", "S", "", charts=(("c", {"title": name}),))])
    blocks = re.findall(r'<script type="application/json" id="spec-c">(.*?)</script>', page, re.S)
    assert len(blocks) == 1 and json.loads(blocks[0]) == {"title": name} and "<" not in blocks[0]


# --- linear and nonlinear SCMs pooled apart ----------------------------------------------------------------

MIXED_SUITES = {"heldout-L01": 1, "heldout-NL01": 1}


@pytest.fixture(scope="module")
def mixed_study(tmp_path_factory):
    """A study evaluated on a linear and a nonlinear suite (its SCMs through a Gaussian bump)."""
    tmp = tmp_path_factory.mktemp("mixed")
    spec = make_study(tmp, config="mixed", seeds=(0,), suites=MIXED_SUITES, nonlinear={"heldout-NL01"})
    args = summarize_args(tmp, spec)
    assert run_summarize_cli(args) == 0
    return {"tmp": tmp, "spec": spec, "args": args}


def test_linear_and_nonlinear_scms_are_pooled_apart(mixed_study):
    frame, meta = read_summary(mixed_study["args"].out_table)
    assert meta["mechanisms"] == {"heldout-L01": "linear", "heldout-NL01": "nonlinear"}
    for kind in ("metric", "paired_difference", "step_curve"):
        rows = frame[frame["kind"] == kind]
        assert set(rows["suite"]) == set(MIXED_SUITES) | {LINEAR_POOL, NONLINEAR_POOL}, kind
    metrics = frame[(frame["kind"] == "metric") & frame["seed"].isna() & (frame["metric"] == "norm_improvement_best")]
    by = metrics.set_index(["method", "suite"])
    for suite, pool in (("heldout-L01", LINEAR_POOL), ("heldout-NL01", NONLINEAR_POOL)):
        # one suite per class: each pool holds exactly that suite's SCMs, with the same resamples
        for col in ("mean", "ci_low", "ci_high", "n_scms", "n_episodes"):
            assert (by.loc[("policy_greedy", pool), col] == by.loc[("policy_greedy", suite), col]), (pool, col)
    assert set(metrics[metrics["suite"] == NONLINEAR_POOL]["n_scms"]) == {4}


def test_a_linear_only_study_has_one_pool(study):
    frame, meta = read_summary(study["args"].out_table)
    assert set(frame["suite"].dropna()) == set(SUITES) | {LINEAR_POOL}
    assert set(meta["mechanisms"].values()) == {"linear"}


def test_the_pages_show_each_pool_on_every_table_and_chart(mixed_study, study, tmp_path):
    page = Path(mixed_study["args"].out_html).read_text()
    answer = page[page.index('<section id="answer">'):page.index('<section id="headline">')]
    assert "<h3>All linear SCMs</h3>" in answer and "<h3>All nonlinear SCMs</h3>" in answer
    for heading in ("Outcomes", "How the methods intervene", "Policy against each baseline (paired)"):
        for pool in (LINEAR_POOL, NONLINEAR_POOL):
            assert f"<h3>{heading}: {pool}</h3>" in page, (heading, pool)
    assert "mechanisms (pooled apart)</b></td><td>linear: heldout-L01; nonlinear: heldout-NL01</td>" in page
    specs = page_specs(page)
    order = ["heldout-L01 (level 1)", LINEAR_POOL, "heldout-NL01 (level 1, nonlinear)", NONLINEAR_POOL]
    for name in ("comparison_norm_improvement", "comparison_target_mean", "paired_differences", "step_curves"):
        assert specs[name]["facet"]["sort"] == order, name
    out = tmp_path / "compare.html"
    assert run_compare_cli(Namespace(summaries=[study["args"].out_table, mixed_study["args"].out_table],
                                     out=str(out))) == 0
    compare = page_specs(out.read_text())
    assert compare["compare_headline"]["facet"]["sort"] == [
        f"mixed: {LINEAR_POOL}", f"mixed: {NONLINEAR_POOL}", f"synth: {LINEAR_POOL}"]
    assert compare["compare_suites"]["facet"]["sort"] == [
        "heldout-L01 (level 1)", "heldout-L02 (level 2)", "heldout-NL01 (level 1, nonlinear)"]
    assert f"<td>mixed</td><td>{NONLINEAR_POOL}</td>" in out.read_text()


def test_scms_missing_from_their_suite_file_are_refused(tmp_path):
    spec = make_study(tmp_path, seeds=(0,), suites={"heldout-L01": 1}, n_scms=2, episodes=1, steps=2)
    suite = tmp_path / "results" / "suites" / "heldout-L01.json"
    doc = json.loads(suite.read_text())
    suite.write_text(json.dumps({**doc, "scms": doc["scms"][:1]}))
    with pytest.raises(UserError, match="suite heldout-L01: the tables hold SCM 'heldout-L01-001', which its suite"):
        load_inputs(spec, layout(spec, tmp_path))
    suite.unlink()
    with pytest.raises(UserError, match=f"missing suite file {suite}"):
        load_inputs(spec, layout(spec, tmp_path))


def test_scopes_are_ordered_by_mechanism_class():
    from workflow_src.report.scopes import suite_classes, with_scope_labels

    classes = suite_classes({"a": {"x": "linear"}, "b": {"x": "nonlinear", "y": "linear"}, "c": {"x": "nonlinear"},
                             "L02": {"x": "linear"}})
    assert classes == {"L02": "linear", "a": "linear", "b": "mixed", "c": "nonlinear"}
    frame = pd.DataFrame({"suite": ["c", NONLINEAR_POOL, "b", LINEAR_POOL, "a", "L02"],
                          "level": [0, None, 0, None, 0, 2]})
    _, order = with_scope_labels(frame, classes)
    assert order == ["L02 (level 2)", "a", LINEAR_POOL, "b (mixed)", "c (nonlinear)", NONLINEAR_POOL]
