"""The amortized response model: its scoring rule, its information boundary, that it learns from the simulator,
the ``amortized_ei`` mode and prior, and resume with it."""

import copy
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT, call_cli

from workflow_src.config import ConfigError, deep_merge, resolve_config, suite_slice, train_slice
from workflow_src.config_schema import load_yaml
from workflow_src.core.response_scoring import LOG_SQRT_2PI, response_loss
from workflow_src.core.scm import stack_scms
from workflow_src.evaluate.methods import policy_methods
from workflow_src.evaluate.response_eval import measure_suite
from workflow_src.evaluate.run import load_policy, run_methods
from workflow_src.paths import TrainPaths, train_suite_files
from workflow_src.policy import checkpoint
from workflow_src.policy import network as pol
from workflow_src.suites.build import build_suite
from workflow_src.suites.suite_io import load_suite
from workflow_src.train.grpo import grpo_loss, response_rows
from workflow_src.train.loop import Interrupted, train
from workflow_src.train.rollout import GRPOSettings, play_batch

RESPONSE_POLICY = {"hidden_dim": 16, "n_heads": 2, "n_layers": 1, "response_model": True, "prior": "amortized_ei"}
PROTOCOL = {"seed": 5, "episodes": 2, "interventions": 4, "n_obs": 10}


def spec_with(default_config, **overrides):
    return deep_merge(train_slice(default_config, "debug"), overrides)


@pytest.fixture(scope="module")
def small_suites(tmp_path_factory, default_config):
    """Level-1 training and held-out suites of both kinds, smaller than the config's."""
    cfg = copy.deepcopy(default_config)
    cfg["suites"]["pool_size"] = {"train": 64, "heldout": 8}  # fewer training SCMs over-fit the nonlinear curves
    folder = tmp_path_factory.mktemp("suites")
    for name in ("train-L01", "train-NL01", "heldout-L01", "heldout-NL01"):
        build_suite(suite_slice(cfg, name), folder / f"{name}.json")
    return folder


def test_the_scoring_rule_is_exact_where_the_prediction_is_the_truth():
    target = jnp.array([[0.5, -1.0, 2.0], [3.0, 0.0, 0.0]])
    sd = jnp.full_like(target, 0.3)
    intervenable = jnp.array([True, False])
    exact = response_loss((target, sd), target, intervenable)
    assert float(exact.rmse) == 0.0
    np.testing.assert_allclose(float(exact.nll), np.log(0.3) + float(LOG_SQRT_2PI), rtol=1e-6)
    off = response_loss((target + 0.3, sd), target, intervenable)
    np.testing.assert_allclose(float(off.rmse), 0.3, rtol=1e-5)
    np.testing.assert_allclose(float(off.nll - exact.nll), 0.5, rtol=1e-5)  # one sd off: half a nat more
    # a variable that is not intervenable never counts
    assert float(response_loss((target.at[1].add(9.0), sd), target, intervenable).rmse) == 0.0


def test_the_lower_confidence_bound_takes_the_lowest_optimistic_value_of_each_variable():
    """``amortized_lcb``'s acquisition: per variable the highest ``kappa sd - mean`` over its range, found on the
    grid and refined around it; a variable that is not intervenable is never chosen."""
    from workflow_src.policy.response_model import lower_confidence_bound

    def predict(points):  # X0: a bowl at 0.3, certain; X1: flat at 0.5, sd 1; X2: better, but not intervenable
        mean = jnp.stack([(points[0] - 0.3) ** 2, jnp.full_like(points[1], 0.5), jnp.full_like(points[2], -9.0)])
        return mean, jnp.stack([jnp.zeros_like(points[0]), jnp.ones_like(points[1]), jnp.zeros_like(points[2])])

    allowed = jnp.array([True, True, False])
    obs = pol.Observation(sample_features=jnp.zeros((2, 3, 4)), variable_features=jnp.zeros((3, 1)),
                          sample_mask=jnp.ones(2, bool), node_mask=jnp.ones(3, bool), action_mask=allowed,
                          heuristic=jnp.zeros((3, 2)))
    found = np.asarray(lower_confidence_bound(predict, obs, kappa=1.0))
    np.testing.assert_allclose(found[0], [0.0, 0.3], atol=2e-3)  # the bowl's bottom, between two grid values
    np.testing.assert_allclose(found[1, 0], 0.5, rtol=1e-6)  # optimism: 1 sd below a mean of 0.5
    assert found[2, 0] == -np.inf and int(np.argmax(found[:, 0])) == 1
    assert int(np.argmax(np.asarray(lower_confidence_bound(predict, obs, kappa=0.0))[:, 0])) == 0  # no optimism


@pytest.mark.parametrize("option", ["none", "response_lines", "response_trend"])
def test_a_search_encodes_the_buffer_once_and_decodes_as_the_model_does(default_config, small_suites, option):
    """``response_search`` (the buffer encoded once, then the coarse grid and the refinement decoded) gives the
    acquisition and the bound that the model gives decoding each set of positions from scratch."""
    from workflow_src.core.buffer import fit_surrogate, random_buffer
    from workflow_src.core.problem import problem_of
    from workflow_src.policy.response_model import acquisition, lower_confidence_bound

    options = {} if option == "none" else {option: True}
    policy = pol.make_policy(spec_with(default_config, policy={**RESPONSE_POLICY, **options})["policy"])
    params = pol.init_params(policy, jax.random.PRNGKey(4))
    if option == "response_trend":  # a trend head away from its zero initialization
        params = jax.tree_util.tree_map_with_path(
            lambda path, x: x + 0.3 if "trend" in jax.tree_util.keystr(path) else x, params)
    scms = stack_scms(load_suite(small_suites / "heldout-NL01.json").scms[:1], 8)
    scm = jax.tree.map(lambda a: jnp.asarray(a[0]), scms)
    buffer = random_buffer(scm, jax.random.PRNGKey(5), 10, 20, 6)
    obs = pol.policy_observation(policy, problem_of(scm), buffer, fit_surrogate(scm, buffer))

    def encoded_once(search):
        return pol.response_search(policy, params, obs, search)

    def from_scratch(search):
        return search(lambda points: pol.response_predictions(policy, params, obs, points))

    for search in (lambda predict: acquisition(predict, obs),
                   lambda predict: lower_confidence_bound(predict, obs, 1.0)):
        once, scratch = (np.asarray(jax.jit(functools.partial(way, search))()) for way in (encoded_once, from_scratch))
        np.testing.assert_allclose(once, scratch, rtol=1e-6, atol=1e-6)


def test_the_trend_adds_a_line_in_units_of_the_variables_observed_spread(default_config, small_suites):
    """``response_trend``: the mean is the model's without the trend plus ``a_i + b_i x``, ``x`` the queried
    value's offset from the variable's mean over the buffer in its standard deviations (from the buffer's values
    here); the standard deviation is unchanged."""
    from workflow_src.core.buffer import fit_surrogate, random_buffer
    from workflow_src.core.problem import problem_of

    trend_policy = {**RESPONSE_POLICY, "response_trend": True}
    with_trend = pol.make_policy(spec_with(default_config, policy=trend_policy)["policy"])
    without = pol.make_policy(spec_with(default_config, policy=RESPONSE_POLICY)["policy"])
    params = pol.init_params(with_trend, jax.random.PRNGKey(4))
    model = params["params"]["response_model"]
    intercept, slope = 0.7, -1.3
    model["trend"] = {"kernel": model["trend"]["kernel"], "bias": jnp.array([intercept, slope])}
    plain = {"params": {**params["params"], "response_model": {k: v for k, v in model.items() if k != "trend"}}}
    scms = stack_scms(load_suite(small_suites / "heldout-L01.json").scms[:1], 8)
    scm = jax.tree.map(lambda a: jnp.asarray(a[0]), scms)
    buffer = random_buffer(scm, jax.random.PRNGKey(5), 10, 20, 6)
    obs = pol.policy_observation(with_trend, problem_of(scm), buffer, fit_surrogate(scm, buffer))
    points = jnp.broadcast_to(jnp.array([0.0, 0.3, 1.0]), (8, 3))
    mean, sd = pol.response_predictions(with_trend, params, obs, points)
    plain_mean, plain_sd = pol.response_predictions(without, plain, obs, points)
    rows = np.asarray(buffer.values, np.float64)[np.asarray(buffer.sample_mask)]
    lo, hi = np.asarray(scm.lo, np.float64), np.asarray(scm.hi, np.float64)
    for i in np.flatnonzero(np.asarray(scm.intervenable)):
        x = (lo[i] + np.asarray(points[i]) * (hi[i] - lo[i]) - rows[:, i].mean()) / rows[:, i].std()
        np.testing.assert_allclose(np.asarray(mean - plain_mean)[i], intercept + slope * x, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(sd), np.asarray(plain_sd))


def test_the_regression_lines_are_the_least_squares_lines_of_the_samples():
    """``response_lines``' inputs: per variable the line through all its samples (observational and its own
    interventions) and the interventional one (its interventions, observational samples at ``OBS_WEIGHT``), at
    any query position; samples that set another variable and padded rows never count."""
    from workflow_src.core.buffer import OBS_WEIGHT
    from workflow_src.policy.features import SCALED_CHANNEL, SET_CHANNEL, Y_CHANNEL
    from workflow_src.policy.response_model import regression_lines, sample_pairs

    rng = np.random.default_rng(0)
    position = rng.uniform(0.0, 1.0, (9, 2))  # 9 rows (the last padded), 2 variables
    kind = np.array([0, 0, 0, 0, 1, 1, 1, 2, 0])  # observational, sets X0, sets X1
    y = np.where(kind == 1, 1.0 - 2.0 * position[:, 0], 0.5 + position[:, 0]) + 0.1 * rng.normal(size=9)
    y[7] = 5.0  # set X1: outside X0's lines
    features = np.zeros((9, 2, 7), np.float32)
    features[..., SCALED_CHANNEL] = 2.0 * position - 1.0
    features[..., Y_CHANNEL] = y[:, None]
    features[kind == 1, 0, SET_CHANNEL] = 1.0
    features[kind == 2, 1, SET_CHANNEL] = 1.0
    mask = np.arange(9) < 8
    features[~mask] = 0.0
    obs = pol.Observation(sample_features=jnp.asarray(features), variable_features=jnp.zeros((2, 1)),
                          sample_mask=jnp.asarray(mask), node_mask=jnp.ones(2, bool), action_mask=jnp.ones(2, bool),
                          heuristic=jnp.zeros((2, 2)))
    points = jnp.array([[0.0, 0.25, 1.0], [0.0, 0.5, 1.0]])
    lines = np.asarray(regression_lines(*sample_pairs(obs), points))
    for variable, rows in ((0, kind[:8] <= 1), (1, kind[:8] != 1)):
        x, w = position[:8, variable], rows.astype(float)
        interventional = w * np.where(kind[:8] == variable + 1, 1.0, OBS_WEIGHT)
        for column, weight in enumerate((w, interventional)):
            slope, intercept = np.polyfit(x, y[:8], 1, w=np.sqrt(weight))
            np.testing.assert_allclose(lines[variable, :, column], intercept + slope * np.asarray(points[variable]),
                                       rtol=1e-4, atol=1e-4)


def test_settings_that_need_the_response_model_are_refused_without_it(default_config):
    raw = load_yaml((ROOT / "config" / "config.yaml").read_text())
    for section, key, value in (("training", "response_steps", 10), ("training", "response_coef", 1.0),
                                ("training", "anchor_coef", 0.1), ("policy", "prior", "amortized_ei"),
                                ("policy", "response_lines", True), ("policy", "response_trend", True)):
        doc = copy.deepcopy(raw)
        doc["experiments"]["debug"][section] = {key: value}
        message = rf"experiments\.debug\.{section}\.{key}: .* needs policy\.response_model"
        with pytest.raises(ConfigError, match=message):
            resolve_config(doc)
    doc = copy.deepcopy(raw)
    doc["experiments"]["debug"].update(policy={"response_model": True}, training={"response_states": 20})
    message = r"debug\.training\.response_states: 20 needs training\.response_coef above 0"
    with pytest.raises(ConfigError, match=message):
        resolve_config(doc)


def test_the_response_loss_rows_spread_over_every_step_and_trajectory():
    rows = response_rows(100, 20)  # 10 trajectories of 10 steps, trajectory by trajectory
    assert len(set(rows.tolist())) == 20
    trajectory, step = np.divmod(rows, 10)
    assert (np.bincount(trajectory, minlength=10) == 2).all() and set(step.tolist()) == set(range(10))
    assert response_rows(100, 0) == slice(None) and response_rows(100, 100) == slice(None)


def test_the_response_loss_is_the_mean_over_the_chosen_states(default_config, small_suites):
    """With ``training.response_states`` the response model's loss on an episode is its loss on those states alone
    (the same as the loss of every state of an episode cut down to them), and not the loss on all of them."""
    spec = spec_with(default_config, policy=RESPONSE_POLICY, training={"n_interventions": 4, "response_coef": 1.0})
    policy = pol.make_policy(spec["policy"])
    params = pol.init_params(policy, jax.random.PRNGKey(3))
    scm = stack_scms(load_suite(small_suites / "heldout-NL01.json").scms[:1], 8)
    settings = GRPOSettings.from_experiment(spec)
    batch = play_batch(settings, policy, params, jax.tree.map(jnp.asarray, scm), jnp.zeros(1, jnp.int32),
                       jax.random.PRNGKey(0))
    one = jax.tree.map(lambda a: a[0], (batch.scms, batch.transitions))
    n_states = one[1].response_scale.shape[0]
    rows = response_rows(n_states, 7)

    def response(states, tr):
        return grpo_loss(settings._replace(response_states=states), policy, params, one[0], tr)[1].response

    chosen = response(7, one[1])
    per_row = [f for f in one[1]._fields if f != "executed"]  # per state (S·T) rows: the states and their actions
    cut = one[1]._replace(**{f: jax.tree.map(lambda a: a[rows], getattr(one[1], f)) for f in per_row})
    np.testing.assert_allclose(np.asarray(chosen), np.asarray(response(0, cut)), rtol=1e-5)
    assert not np.allclose(np.asarray(chosen), np.asarray(response(0, one[1])))


def _perturbed_truth(suite):
    """``suite`` with every SCM's exact response curves changed (the oracle's curves moved, linear total effects
    scaled): what the simulator samples is the same, what is true of E[Y | do] is not."""
    scms = []
    for scm in suite.scms:
        if scm.oracle is not None:
            oracle = scm.oracle
            curve = {i: c + 0.7 * np.sin(3.0 * np.arange(len(c))) for i, c in oracle.curve.items()}
            scm = dataclasses.replace(scm, oracle=dataclasses.replace(oracle, curve=curve, slope=None))
        scms.append(scm)
    return dataclasses.replace(suite, scms=tuple(scms))


@pytest.mark.parametrize("lines", [False, True])
def test_the_truth_reaches_the_loss_but_never_an_action(default_config, small_suites, lines):
    """Changing the stored oracle curves changes the response model's loss, and not one action of the trained
    network in any mode (with and without the regression lines among its inputs)."""
    spec = spec_with(default_config, policy={**RESPONSE_POLICY, "response_lines": lines})
    policy = pol.make_policy(spec["policy"])
    params = pol.init_params(policy, jax.random.PRNGKey(1))
    suite = load_suite(small_suites / "heldout-NL01.json")
    changed = _perturbed_truth(suite)
    methods = policy_methods(spec["policy"], ["greedy", "sampled", "amortized_ei", "amortized_lcb"])
    before = run_methods(methods, params, suite, PROTOCOL)
    after = run_methods(methods, params, changed, PROTOCOL)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a["variable"], b["variable"])
        np.testing.assert_array_equal(a["value"], b["value"])
        assert not np.array_equal(a["expected_target"], b["expected_target"])  # the truth did change
    scores = [measure_suite(policy, params, s, replicates=1, sizes=(3,)) for s in (suite, changed)]
    model = [s[s["model"] == "response_model"] for s in scores]
    assert not np.allclose(model[0]["rmse"], model[1]["rmse"])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["L", "NL"])
def test_the_response_model_learns_the_curves_of_level_one(tmp_path, default_config, small_suites, kind):
    """Trained briefly by supervised steps alone on level-1 SCMs, the model predicts held-out curves far better
    than a flat prediction (the buffer's mean of Y): on linear ones at every buffer size; on nonlinear ones on
    average over the sizes and better at each (from 10 observational samples alone a curve is far less known)."""
    spec = spec_with(default_config, levels=[1], episodes=1, checkpoint_every=1000,
                     train_suites="linear" if kind == "L" else "nonlinear", policy=RESPONSE_POLICY,
                     training={"response_steps": 300, "response_batch": 16, "response_learning_rate": 3e-3})
    paths = TrainPaths(tmp_path / "ckpt", tmp_path / "log.parquet")
    train("learn", spec, 0, train_suite_files([1], small_suites, spec["train_suites"]), paths, progress=False)
    header, policy_config, params = load_policy(paths.ckpt("final"))
    assert header["response_pretrain"]["steps"] == 300
    scores = measure_suite(pol.make_policy(policy_config), params, load_suite(small_suites / f"heldout-{kind}01.json"),
                           replicates=2)
    rmse = scores.groupby(["interventions", "model"])["rmse"].mean().unstack()
    ratio = rmse["response_model"] / rmse["flat"]
    if kind == "L":
        assert (ratio < 0.7).all(), rmse
    else:
        assert ratio.mean() < 0.85 and (ratio < 0.95).all(), rmse


def test_resume_with_the_response_model_is_bit_identical(tmp_path, default_config, small_suites):
    spec = spec_with(default_config, levels=[1], episodes=4, checkpoint_every=2,
                     policy={**RESPONSE_POLICY, "response_lines": True},
                     training={"n_interventions": 3, "response_steps": 6, "response_coef": 0.5, "response_states": 4,
                               "anchor_coef": 0.1})
    suites = train_suite_files([1], small_suites)
    whole = TrainPaths(tmp_path / "a", tmp_path / "a" / "log.parquet")
    train("resume", spec, 2, suites, whole, progress=False)
    parts = TrainPaths(tmp_path / "b", tmp_path / "b" / "log.parquet")
    with pytest.raises(Interrupted):
        train("resume", spec, 2, suites, parts, progress=False, stop_after=2)
    train("resume", spec, 2, suites, parts, progress=False)
    assert whole.ckpt("final").read_bytes() == parts.ckpt("final").read_bytes()
    header = checkpoint.read_header(whole.ckpt("final"))
    assert header["response_pretrain"]["steps"] == 6 and header["architecture"]["response_model"] is True
    assert header["architecture"]["response_lines"] is True
    import pandas as pd

    log = pd.read_parquet(whole.log_table)
    assert (log["response_nll"] != 0).all() and (log["response_rmse"] > 0).all()


def test_amortized_ei_needs_a_checkpoint_with_the_response_model(tmp_path, default_config, small_suites):
    from test_train import checkpoint_spec

    spec = checkpoint_spec(default_config, episodes=4, checkpoint_every=2)  # test_train's: its compiled update
    paths = TrainPaths(tmp_path / "ckpt", tmp_path / "log.parquet")
    train("plain", spec, 0, train_suite_files([1], small_suites), paths, progress=False)
    suite, out = small_suites / "heldout-L01.json", tmp_path / "eval.parquet"
    spec_arg = ('{"seed": 0, "episodes": 1, "interventions": 2, "n_obs": 10, "min_suite_episodes": 1, '
                '"policy_modes": ["greedy", "amortized_ei"]}')
    asked = call_cli("evaluate", "--checkpoint", paths.ckpt("final"), "--suite", suite, "--out", out,
                     "--methods", "amortized_ei", "--spec", spec_arg)
    assert asked.returncode != 0 and not out.exists()
    lines = asked.stderr.strip().splitlines()
    assert len(lines) == 1 and "final.ckpt" in lines[0] and "needs a response model" in lines[0], asked.stderr
    # from the config's modes it is left out: the checkpoint's other modes are evaluated
    call_cli("evaluate", "--checkpoint", paths.ckpt("final"), "--suite", suite, "--out", out, "--spec", spec_arg,
             check=True)
    import pandas as pd

    assert set(pd.read_parquet(out)["method"]) == {"policy_greedy"}
