"""The nonlinear curriculum suites (train-NLnn / heldout-NLnn), the pgmpy Gaussian networks and the configs on them."""

import json

import jax
import numpy as np
import pytest
from conftest import require

from workflow_src.config import ConfigError, known_suite, resolve_config, stage_slice, suite_slice, train_slice
from workflow_src.core import sampler
from workflow_src.core.scm import stack_scms
from workflow_src.paths import train_suite_files
from workflow_src.suites import nonlinear as nl
from workflow_src.suites.build import build_suite
from workflow_src.suites.generators import GeneratorSettings
from workflow_src.suites.oracle import interior_variables, oracle_problem
from workflow_src.suites.suite_io import SUITE_FORMAT_V2, load_suite, suite_to_json

GS, NS = GeneratorSettings(), nl.NonlinearSettings()


def small_config(default_config, size=6):
    raw = {"suites": {"pool_size": {"train": size, "heldout": size}}, "experiments": {"x": {}}}
    return resolve_config(raw)


@pytest.fixture(scope="module")
def level_suites():
    """Small suites of a few levels (every mechanism on each level's graph families), drawn once."""
    return {level: nl.generate_nonlinear_suite(f"heldout-NL{level:02d}", level, 10, 2300 + level, GS, NS)
            for level in (1, 4, 7)}


def test_generated_suites_are_byte_identical_on_rerun(tmp_path, default_config):
    cfg = small_config(default_config)
    for name in ("heldout-NL02", "train-NL07"):
        spec = suite_slice(cfg, name)
        build_suite(spec, tmp_path / "a.json")
        build_suite(json.loads(json.dumps(spec)), tmp_path / "b.json")
        assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    # seeds differ per kind: the nonlinear held-out suite is not the training suite of its level
    assert suite_slice(cfg, "heldout-NL02")["seed"] not in {suite_slice(cfg, s)["seed"] for s in (
        "train-NL02", "heldout-L02", "train-L02")}


def test_every_kept_scm_has_an_interior_best_value_and_a_large_gap(level_suites):
    for suite in level_suites.values():
        assert suite.format == SUITE_FORMAT_V2
        for scm in suite.scms:
            oracle = scm.oracle
            assert not scm.is_linear and oracle_problem(oracle) is None, scm.id
            assert interior_variables(scm, oracle, NS.interior_margin).any(), scm.id
            # the gap stands out of one noisy outcome at the optimum (measured on independent draws)
            y = nl.simulate(scm, np.random.default_rng(99).standard_normal((20000, scm.n)),
                            (oracle.variable, oracle.value))[:, scm.target]
            assert oracle.mu_y - oracle.y_star >= 0.95 * NS.min_gap_noise * y.std(), scm.id
    families = {scm.family.rsplit("-", 1)[1] for s in level_suites.values() for scm in s.scms}
    assert families == set(nl.MECHANISMS)
    # the graphs are the linear levels' families and sizes
    assert {scm.family.rsplit("-", 1)[0] for scm in level_suites[7].scms} == {"erdos_renyi"}
    assert all(scm.n == 3 for scm in level_suites[1].scms if "confounded" not in scm.family)


def test_half_of_the_best_interventions_are_interior(level_suites):
    scms = [scm for s in level_suites.values() for scm in s.scms]
    share = np.mean([interior_variables(scm, scm.oracle)[scm.oracle.variable] for scm in scms])
    assert share >= 0.5


def test_confounded_family_misleads_the_observational_regression():
    ns = nl.NonlinearSettings(mechanisms=("confounded",))
    for level in (1, 3, 7):
        suite = nl.generate_nonlinear_suite(f"c{level}", level, 4, 77 + level, GS, ns)
        for scm in suite.scms:
            x = nl.confounded_variable(scm)
            u = scm.nodes.index(nl.LATENT)
            assert x is not None and not scm.intervenable[u]
            assert scm.weights[u, scm.target] != 0 and scm.weights[u, x] != 0  # a common cause of X and Y
            # observational samples (independent of the generator's checks): the slope of Y on X
            obs = nl.simulate(scm, np.random.default_rng(5).standard_normal((50000, scm.n)))
            slope = np.polyfit(obs[:, x], obs[:, scm.target], 1)[0]
            # the end of X's range the regression recommends for minimizing Y, against the true E[Y | do(X)]
            lo, hi = scm.lo[x], scm.hi[x]
            chosen, other = (hi, lo) if slope < 0 else (lo, hi)
            curve = scm.oracle.expected_target(np.array([x, x]), np.array([chosen, other]))
            assert curve[0] > curve[1], f"{scm.id}: the observational slope {slope:.3f} points the right way"
            assert scm.oracle.expected_target(x, chosen) > scm.exact().best_per_variable[x] + 0.1


def test_the_latent_cause_is_simulated_but_never_shown(tmp_path):
    """Issue 27: U was in every method's samples and the surrogate gave it parent probability 0.99."""
    from workflow_src.evaluate.baselines import baseline_methods
    from workflow_src.evaluate.plugins import probe_views
    from workflow_src.evaluate.run import evaluate_methods

    suite = nl.generate_nonlinear_suite("c", 1, 2, 78, GS, nl.NonlinearSettings(mechanisms=("confounded",)))
    path = tmp_path / "c.json"
    path.write_text(suite_to_json(suite))
    doc = json.loads(path.read_text())
    assert [raw["latent"] for raw in doc["scms"]] == [["U"], ["U"]] and all("U" not in raw["ranges"]
                                                                             for raw in doc["scms"])
    loaded = load_suite(path)
    u = loaded.scms[0].nodes.index(nl.LATENT)
    assert [scm.latent for scm in loaded.scms] == [(u,), (u,)]
    protocol = {"seed": 0, "episodes": 2, "interventions": 3, "n_obs": 200}
    views = probe_views(loaded, protocol)
    assert not np.asarray(views.scm.node_mask)[:, u].any() and not np.asarray(views.scm.intervenable)[:, u].any()
    assert (np.asarray(views.buffer.values)[..., u] == 0).all() and (np.asarray(views.fit.parent_prob)[:, u] == 0).all()
    # simulated all the same: U moves the samples, and the oracle is the one with U shown
    arrays = stack_scms(list(loaded.scms), 8)
    drawn = np.asarray(jax.vmap(sampler.sample_observational, (0, None, None))(arrays, jax.random.PRNGKey(1), 200))
    assert (drawn[:, :, u].std(axis=1) > 0.5).all()
    for raw in doc["scms"]:
        raw.pop("latent")
    shown = tmp_path / "shown.json"
    shown.write_text(json.dumps(doc))
    answer = lambda scms: [s.exact()[:5] for s in scms]  # noqa: E731
    assert answer(load_suite(shown).scms) == answer(loaded.scms)
    table = evaluate_methods(baseline_methods(["random", "marginal_regression"]), None, loaded, protocol, {})
    assert nl.LATENT not in set(table.variable)


def test_suite_validates_and_samples_without_nan(tmp_path, level_suites):
    for level, suite in level_suites.items():
        path = tmp_path / f"{suite.name}.json"
        path.write_text(suite_to_json(suite))
        # level 1: every stored oracle also agrees with a fresh computation (what `acbo suite validate` checks)
        loaded = load_suite(path, oracle="verify" if level == 1 else "stored")
        assert [s.id for s in loaded.scms] == [s.id for s in suite.scms]
        arrays = stack_scms(list(loaded.scms), 16)
        draw = jax.jit(jax.vmap(sampler.sample_observational, (0, None, None)), static_argnums=2)
        x = np.asarray(draw(arrays, jax.random.PRNGKey(level), 256))
        assert np.isfinite(x).all()


def test_config_names_seeds_and_training_suites(default_config):
    cfg = default_config
    assert known_suite("heldout-NL15", cfg) and known_suite("train-NL01", cfg) and not known_suite("heldout-NL16", cfg)
    assert "nonlinear" not in suite_slice(cfg, "heldout-L03")  # linear suites' slices are as before
    assert suite_slice(cfg, "heldout-NL03")["nonlinear"] == cfg["suites"]["nonlinear"]
    exp = cfg["experiments"]["nonlinear"]
    assert exp["train_suites"] == "nonlinear"
    assert train_suite_files(exp["levels"][:2], curriculum=exp["train_suites"]) == [
        "results/suites/train-NL01.json", "results/suites/train-NL02.json"]
    assert "train_suites" not in stage_slice("train", cfg, "quick_test")  # linear: training hashes stand
    assert train_slice(cfg, "quick_test")["train_suites"] == "linear"
    assert train_slice(cfg, "production")["train_suites"] == "mixed"  # one checkpoint for both kinds
    assert train_slice(cfg, "nonlinear")["train_suites"] == "nonlinear"
    assert {s for s in exp["eval_suites"] if not s.startswith("heldout-NL")} == {"heldout-cbo"}
    assert any(s.startswith("heldout-NL") for s in cfg["experiments"]["production"]["eval_suites"])
    raw = {"suites": {"seed_base": {"nonlinear_heldout": 1305}}, "experiments": {"x": {}}}
    with pytest.raises(ConfigError, match="seed_base"):
        resolve_config(raw)
    with pytest.raises(ConfigError, match="train_suites"):
        resolve_config({"experiments": {"x": {"train_suites": "both"}}})
    assert train_suite_files([1, 2], curriculum="mixed") == [
        "results/suites/train-L01.json", "results/suites/train-NL01.json",
        "results/suites/train-L02.json", "results/suites/train-NL02.json"]


def test_a_mixed_level_pools_both_suites_and_trains_on_both(tmp_path, default_config):
    """The mixed curriculum: a level's pool is its linear and its nonlinear suite, stacked in one program
    (linear SCMs padded with empty terms), and the curriculum plays families of both."""
    import pandas as pd

    from workflow_src.paths import TrainPaths
    from workflow_src.train.loop import Pools, train

    cfg = small_config(default_config, size=4)
    files = [tmp_path / "train-L01.json", tmp_path / "train-NL01.json"]
    for path in files:
        build_suite(suite_slice(cfg, path.stem), path)
    pools = Pools(files, [1])
    assert [s.is_linear for s in pools.scms[1]] == [True] * 4 + [False] * 4
    assert not set(pools.families[1][:4]) & set(pools.families[1][4:])
    with pytest.raises(ValueError, match="3 training suites for the 2 levels"):
        Pools([*files, files[0]], [1, 2])
    spec = {**train_slice(default_config, "debug"), "levels": [1], "episodes": 12, "checkpoint_every": 12,
            "train_suites": "mixed"}
    spec["training"] = {**spec["training"], "n_interventions": 3, "scms_per_update": 2}
    out = TrainPaths(checkpoint_dir=tmp_path / "ck", log_table=tmp_path / "log.parquet")
    train("mixed", spec, 0, files, out, progress=False)
    log = pd.read_parquet(out.log_table)
    played = {f for row in log["families"] for f in row.split(",")}
    assert played & set(pools.families[1][:4]) and played & set(pools.families[1][4:])
    assert np.isfinite(log["reward"]).all()


def test_pgmpy_networks_load_as_a_linear_suite(tmp_path, default_config):
    from workflow_src.suites.bnlearn import pgmpy_data_dir

    require(pgmpy_data_dir() is not None, "pgmpy>=1.0 (its Gaussian Bayesian networks, extra 'bnlearn')")
    build_suite(suite_slice(default_config, "heldout-bnlearn"), tmp_path / "b.json")
    suite = load_suite(tmp_path / "b.json")
    assert [s.id.rsplit("-", 1)[-1] if "magic" not in s.id else s.id[-10:] for s in suite.scms] == [
        "ecoli70", "magic-niab", "magic-irri", "arth150"]
    assert [s.n for s in suite.scms] == [46, 44, 64, 107]
    for scm in suite.scms:
        assert scm.is_linear and scm.terms is None
        allowed = np.flatnonzero(scm.intervenable)
        # ranges: two observational standard deviations around the mean, centred on it
        mid = (scm.lo[allowed] + scm.hi[allowed]) / 2
        np.testing.assert_allclose(mid, scm.mu[allowed], atol=1e-3)
        assert not (scm.adjacency[scm.target]).any()  # a sink
    assert [s.nodes[s.target] for s in suite.scms][1:3] == ["YLD", "YLD"]


@pytest.mark.slow
def test_pgmpy_networks_with_a_nonlinear_head(tmp_path, default_config):
    from workflow_src.suites.bnlearn import pgmpy_data_dir

    require(pgmpy_data_dir() is not None, "pgmpy>=1.0 (its Gaussian Bayesian networks, extra 'bnlearn')")
    build_suite(suite_slice(default_config, "heldout-bnlearn-head"), tmp_path / "h.json")
    suite = load_suite(tmp_path / "h.json")
    for scm in suite.scms:
        assert not scm.is_linear and set(scm.nonlinear_terms.child) == {scm.target}
        assert interior_variables(scm, scm.oracle).any()


def test_a_study_trains_on_the_nonlinear_curriculum_and_reports_its_scms_as_nonlinear(tiny_study):
    """The tiny study's config tiny_nl: trained on train-NL01/02, evaluated on heldout-NL01, summarized."""
    import pandas as pd

    from workflow_src.report.scopes import POOLS
    from workflow_src.report.summarize import read_summary

    results = tiny_study / "results"
    for name, size in (("train-NL01", 4), ("train-NL02", 4), ("heldout-NL01", 3)):  # tests/data/study.yaml's pools
        suite = load_suite(results / "suites" / f"{name}.json")
        assert len(suite.scms) == size and not any(scm.is_linear for scm in suite.scms), name
    log = pd.read_parquet(results / "tiny_nl/train/seed_0.parquet")
    assert log["episode"].tolist() == list(range(4)) and np.isfinite(log["loss"]).all()
    assert log["scm_ids"].str.split(",").map(lambda ids: all(i.startswith("train-NL01-") for i in ids)).all()
    summary, meta = read_summary(results / "tiny_nl/summary.parquet")
    assert meta["mechanisms"] == {"heldout-NL01": "nonlinear"}
    best = summary[(summary["kind"] == "metric") & summary["seed"].isna()
                   & (summary["metric"] == "norm_improvement_best")].set_index(["method", "suite"])
    from workflow_src.config import load_config

    baselines = load_config(tiny_study / "config/config.yaml")["evaluation"]["baselines"]  # the schema's default list
    methods = {"policy_greedy", "policy_sampled", "greedy", *baselines}
    assert {"random", "oracle", "causal_bo", "gp_ei"} <= methods
    assert set(best.index) == {(m, s) for m in methods for s in ("heldout-NL01", POOLS["nonlinear"])}
    assert (best["n_scms"] == 3).all() and np.isfinite(best["mean"]).all()
    assert (best.loc["oracle", "mean"] == 1.0).all() and (best["mean"] <= 1.0 + 1e-9).all()
    assert {"training", "step_curve", "paired_difference"} <= set(summary["kind"])
    assert "mechanisms (pooled apart)</b></td><td>nonlinear: heldout-NL01</td>" in (
        results / "tiny_nl/summary.html").read_text()


def test_bnlearn_suites_without_pgmpy_say_what_to_install(tmp_path, default_config, monkeypatch):
    from workflow_src.errors import SuiteError
    from workflow_src.suites import bnlearn

    monkeypatch.setattr(bnlearn, "pgmpy_data_dir", lambda: None)
    with pytest.raises(SuiteError, match=r"pgmpy>=1.0.*not installed.*\[bnlearn\]"):
        build_suite(suite_slice(default_config, "heldout-bnlearn"), tmp_path / "b.json")
    assert not (tmp_path / "b.json").exists()
