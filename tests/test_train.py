"""GRPO training: unit checks of the loss pieces, a real learning assertion, resume and determinism."""

import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import ROOT, call_cli, policy_settings, run_cli

from workflow_src.config import deep_merge, train_slice
from workflow_src.core import buffer as buffer_mod
from workflow_src.core.scm import SCM, pad_scm
from workflow_src.core.surrogate import masked_standardize
from workflow_src.errors import CheckpointError
from workflow_src.evaluate.methods import policy_methods
from workflow_src.evaluate.run import load_policy, run_methods
from workflow_src.paths import TrainPaths, train_suite_files
from workflow_src.policy import checkpoint, distribution, features
from workflow_src.policy import network as pol
from workflow_src.suites.generators import GeneratorSettings, generate_level_suite
from workflow_src.train import grpo, rollout
from workflow_src.train.loop import Interrupted, train


def test_group_advantages_are_standardized():
    reward = jnp.array([0.0, 1.0, 2.0, 5.0])
    adv = rollout.group_advantages(reward, -1, 1e-6)
    assert float(adv.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(adv.std()) == pytest.approx(1.0, abs=1e-4)
    assert np.all(np.diff(np.asarray(adv)) > 0)
    assert np.allclose(rollout.group_advantages(jnp.full(5, 3.0), -1, 1e-6), 0.0)
    # returns equal up to rounding: the default floor blows the rounding up into advantages of order 1, a
    # floor in units of the returns turns them to nearly 0 and leaves a spread-out group standardized
    rounding = jnp.array([3.0, 3.0 + 2e-7, 3.0 - 2e-7, 3.0])
    assert float(jnp.abs(rollout.group_advantages(rounding, -1, 1e-6)).max()) > 0.1
    assert float(jnp.abs(rollout.group_advantages(rounding, -1, 0.05)).max()) < 1e-5
    assert float(rollout.group_advantages(reward, -1, 0.05).std()) == pytest.approx(1.0, rel=0.05)


def test_clipped_objective_stops_gradient_outside_the_trust_region():
    old = jnp.zeros(3)
    adv = jnp.array([1.0, 1.0, -1.0])
    grad = jax.grad(lambda new: grpo.clipped_objective(new, old, adv, 0.2))
    # ratio e^0.5 > 1.2 with positive advantage: clipped, no gradient; with negative advantage: unclipped
    g = grad(jnp.array([0.5, 0.0, 0.5]))
    assert float(g[0]) == 0.0 and float(g[1]) > 0 and float(g[2]) < 0
    assert float(grpo.clipped_objective(jnp.array([0.5, 0.5, 0.0]), old, adv, 0.2)) == pytest.approx(
        (1.2 + 1.2 - 1.0) / 3
    )


SMALL_POLICY = policy_settings(hidden_dim=16, n_heads=2, n_layers=1, fixed_std=0.5, bandit_features=False,
                               effect_head=False, prior="none", curve_features=False, budget_feature=False,
                               response_model=False, response_lines=False)


def _scm_arrays():
    suite = generate_level_suite("u", 2, 1, 5, GeneratorSettings())
    return suite.scms[0], jax.tree.map(jnp.asarray, pad_scm(suite.scms[0], 7))


def test_log_prob_integrates_to_one_over_variables_and_values():
    scm, arrays = _scm_arrays()
    logits = jnp.where(arrays.intervenable, jnp.linspace(-1.0, 1.0, 7), pol.NEG_INF)
    mu = jnp.linspace(-1.5, 2.0, 7)
    total = 0.0
    for v in np.flatnonzero(scm.intervenable):
        lo, hi = float(arrays.lo[v]), float(arrays.hi[v])
        values = jnp.linspace(lo, hi, 200_001)[1:-1]
        center, radius = (hi + lo) / 2, (hi - lo) / 2
        u = jnp.arctanh((values - center) / radius)
        density = jnp.exp(jax.vmap(lambda uu, v=v: distribution.log_prob(logits, mu, arrays, v, uu, 0.5))(u))
        total += float(jnp.trapezoid(density, values))
    assert total == pytest.approx(1.0, abs=2e-3)


def test_log_prob_change_of_variables_matches_finite_differences():
    _, arrays = _scm_arrays()
    v = int(np.flatnonzero(np.asarray(arrays.intervenable))[0])
    logits = jnp.where(arrays.intervenable, 0.0, pol.NEG_INF)
    mu = jnp.zeros(7)
    for u in (-2.0, -0.3, 0.0, 0.7, 3.0):
        h = 1e-5  # central differences of the squash in float64
        radius = (float(arrays.hi[v]) - float(arrays.lo[v])) / 2
        dvalue_du = radius * (np.tanh(u + h) - np.tanh(u - h)) / (2 * h)
        expected = float(jax.nn.log_softmax(logits)[v]) + float(jax.scipy.stats.norm.logpdf(u, 0.0, 0.5)) - np.log(
            dvalue_du)
        log_p = float(distribution.log_prob(logits, mu, arrays, v, jnp.float32(u), 0.5))
        assert log_p == pytest.approx(expected, abs=1e-3)


def test_masked_variables_never_get_probability():
    scm, arrays = _scm_arrays()
    policy = pol.make_policy(SMALL_POLICY)
    buffer = buffer_mod.initial_buffer(arrays, jax.random.PRNGKey(0), 10, 20)
    obs = features.observe(arrays, buffer, buffer_mod.fit_surrogate(arrays, buffer))
    params = pol.init_params(policy, jax.random.PRNGKey(3))
    out = jax.jit(policy.apply)(params, obs)
    logits, mu = out.logits, out.mu
    probs = np.asarray(jax.nn.softmax(logits))
    forbidden = ~np.asarray(arrays.intervenable & arrays.node_mask)
    assert forbidden[scm.target] and forbidden[scm.n:].all()
    assert np.all(probs[forbidden] == 0.0) and probs.sum() == pytest.approx(1.0)
    draws, _ = distribution.sample_actions(jax.random.PRNGKey(1), logits, mu, 0.5, 5000)
    assert not forbidden[np.asarray(draws)].any()


def with_own_heads_zeroed(params: dict) -> dict:
    """``params`` with the network's own logit and value heads (its two 1-output Dense layers) at zero."""
    top = params["params"]
    heads = [k for k, v in top.items() if k.startswith("Dense") and v["kernel"].shape[-1] == 1]
    assert len(heads) == 2  # the logit head and the value head
    return {"params": {**top, **{k: jax.tree.map(jnp.zeros_like, top[k]) for k in heads}}}


@pytest.mark.parametrize("prior", ["marginal_regression", "interventional_regression"])
def test_the_residual_prior_starts_as_marginal_regression(prior):
    """With the network's own logit and value heads at zero, the prior alone picks ``marginal_regression``'s
    variable, at (nearly) its range end, at the first step of every episode of a suite (before any variable
    was set, both priors are that heuristic)."""
    from workflow_src.evaluate.baselines import baseline_methods

    suite = generate_level_suite("u", 4, 1, 6, GeneratorSettings())
    config = {**SMALL_POLICY, "bandit_features": True, "prior": prior}
    params = with_own_heads_zeroed(pol.init_params(pol.make_policy(config), jax.random.PRNGKey(0)))
    protocol = {"seed": 3, "episodes": 4, "interventions": 1, "n_obs": 10}
    ours = run_methods(policy_methods(config, ["greedy"]), params, suite, protocol)[0]
    heuristic = run_methods(baseline_methods(["marginal_regression"]), None, suite, protocol)[0]
    np.testing.assert_array_equal(ours["variable"], heuristic["variable"])
    spans = np.array([[float(np.ptp([scm.lo[v], scm.hi[v]])) for v in row[:, 0]]
                      for scm, row in zip(suite.scms, np.asarray(heuristic["variable"]))])
    assert np.all(np.abs(ours["value"] - heuristic["value"])[..., 0] <= 0.01 * spans)
    # and without the prior the same zeroed network is indifferent: it does not know the heuristic
    plain = {**SMALL_POLICY, "bandit_features": True}
    zeroed = with_own_heads_zeroed(pol.init_params(pol.make_policy(plain), jax.random.PRNGKey(0)))
    blind = run_methods(policy_methods(plain, ["greedy"]), zeroed, suite, protocol)[0]
    assert not np.array_equal(blind["variable"], heuristic["variable"])


# --- end-to-end training ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def suites_dir(tmp_path_factory, default_config):
    from workflow_src.config import suite_slice
    from workflow_src.suites.build import build_suite

    d = tmp_path_factory.mktemp("suites")
    for name in ("train-L01", "train-L02", "heldout-L01"):
        build_suite(suite_slice(default_config, name), d / f"{name}.json")
    return d


def small_spec(default_config, **overrides):
    spec = train_slice(default_config, "debug")
    return deep_merge(spec, overrides)


def checkpoint_spec(default_config, episodes: int, checkpoint_every: int) -> dict:
    """Level 1, a small network, 3 interventions: the checkpoint and resume tests share one compiled update."""
    return small_spec(default_config, levels=[1], episodes=episodes, checkpoint_every=checkpoint_every,
                      policy={"hidden_dim": 16, "n_heads": 2, "n_layers": 1}, training={"n_interventions": 3})


def greedy_norm_improvement(ckpt_or_params, suite, policy_config=None) -> float:
    from workflow_src.suites.suite_io import load_suite

    if policy_config is None:
        _, policy_config, params = load_policy(ckpt_or_params)
    else:
        params = ckpt_or_params
    method = policy_methods(policy_config, ["greedy"])[0]
    protocol = {"seed": 11, "episodes": 3, "interventions": 5, "n_obs": 10}
    records = run_methods([method], params, load_suite(suite), protocol)[0]
    return float(records["norm_improvement"].mean())


def random_norm_improvement(suite) -> float:
    """The random baseline's mean normalized improvement on ``suite``, with ``greedy_norm_improvement``'s protocol."""
    from workflow_src.evaluate.baselines import baseline_methods
    from workflow_src.suites.suite_io import load_suite

    protocol = {"seed": 11, "episodes": 3, "interventions": 5, "n_obs": 10}
    return float(run_methods(baseline_methods(["random"]), None, load_suite(suite), protocol)[0]
                 ["norm_improvement"].mean())


@pytest.mark.slow
def test_training_learns_on_level_one(tmp_path, suites_dir, default_config):
    """A real learning assertion: greedy normalized improvement on held-out level-1 SCMs goes from ~0 to >= 0.6.
    The network alone (no heuristic prior, which would start it near the answer)."""
    spec = small_spec(default_config, levels=[1], episodes=260, checkpoint_every=1000,
                      training={"n_interventions": 10}, policy={"prior": "none"})
    policy = pol.make_policy(spec["policy"])
    before = greedy_norm_improvement(pol.init_params(policy, jax.random.PRNGKey(0)), suites_dir / "heldout-L01.json",
                                     spec["policy"])
    paths = TrainPaths(tmp_path / "ckpt", tmp_path / "log.parquet")
    train("learn", spec, 0, train_suite_files(spec["levels"], suites_dir), paths, progress=False)
    after = greedy_norm_improvement(paths.ckpt("final"), suites_dir / "heldout-L01.json")
    assert before < 0.4
    assert after >= 0.6, f"greedy normalized improvement {before:.3f} -> {after:.3f}"


@pytest.mark.slow
def test_training_learns_on_nonlinear_level_one(tmp_path, default_config):
    """The same on the nonlinear level-1 suites (optima inside the ranges): the network alone, trained on
    train-NL01, goes from about random's per-step normalized improvement on heldout-NL01 to well above it."""
    from workflow_src.config import suite_slice
    from workflow_src.suites.build import build_suite

    for name in ("train-NL01", "heldout-NL01"):
        build_suite(suite_slice(default_config, name), tmp_path / f"{name}.json")
    heldout = tmp_path / "heldout-NL01.json"
    spec = small_spec(default_config, levels=[1], episodes=260, checkpoint_every=1000, train_suites="nonlinear",
                      training={"n_interventions": 10}, policy={"prior": "none"})
    policy = pol.make_policy(spec["policy"])
    before = greedy_norm_improvement(pol.init_params(policy, jax.random.PRNGKey(0)), heldout, spec["policy"])
    paths = TrainPaths(tmp_path / "ckpt", tmp_path / "log.parquet")
    train("learn", spec, 0, train_suite_files([1], tmp_path, "nonlinear"), paths, progress=False)
    after = greedy_norm_improvement(paths.ckpt("final"), heldout)
    chance = random_norm_improvement(heldout)
    assert after >= max(before, chance) + 0.2, f"{before:.3f} -> {after:.3f} (random {chance:.3f})"


def test_resume_and_determinism_give_identical_checkpoints(tmp_path, suites_dir, default_config):
    import pandas as pd

    spec = checkpoint_spec(default_config, episodes=12, checkpoint_every=4)
    runs = {}
    handler = signal.getsignal(signal.SIGTERM)
    for name in ("a", "b"):
        paths = TrainPaths(tmp_path / name, tmp_path / name / "log.parquet")
        train("resume", spec, 3, train_suite_files(spec["levels"], suites_dir), paths, progress=False)
        runs[name] = paths
        assert signal.getsignal(signal.SIGTERM) is handler  # restored when train returns
    interrupted = TrainPaths(tmp_path / "c", tmp_path / "c" / "log.parquet")
    with pytest.raises(Interrupted, match="stopped after episode 6"):
        train("resume", spec, 3, train_suite_files(spec["levels"], suites_dir), interrupted, progress=False,
              stop_after=6)
    assert signal.getsignal(signal.SIGTERM) is handler  # and when it raises
    assert checkpoint.read_header(interrupted.ckpt("latest"))["episode"] == 6
    assert not interrupted.ckpt("final").exists()
    train("resume", spec, 3, train_suite_files(spec["levels"], suites_dir), interrupted, progress=False)
    for which in ("final", "best", "episode_00008"):
        a = runs["a"].ckpt(which).read_bytes()
        assert a == runs["b"].ckpt(which).read_bytes(), f"{which} differs between identical runs"
        assert a == interrupted.ckpt(which).read_bytes(), f"{which} differs after resume"
    logs = [pd.read_parquet(p.log_table).drop(columns="wall_time") for p in (runs["a"], interrupted)]
    pd.testing.assert_frame_equal(*logs)
    assert logs[0]["episode"].tolist() == list(range(12))
    # each row is labelled with every SCM of its update (its metrics are their mean), the current one first
    ids = logs[0]["scm_ids"].str.split(",")
    assert (ids.str.len() == spec["training"]["scms_per_update"]).all()
    assert (logs[0]["families"].str.split(",").str.len() == ids.str.len()).all()
    assert ids.map(lambda row: all(i.startswith("train-L01-") for i in row)).all()


def test_trajectory_returns_credit_finding_the_optimum_early():
    reward = jnp.zeros((3, 4))
    found_first = jnp.array([1.0, 0.0, 0.0, 0.0])  # optimum at step 0, then nothing
    found_last = jnp.array([0.0, 0.0, 0.0, 1.0])
    never = jnp.array([0.5, 0.5, 0.5, 0.5])
    returns = np.asarray(rollout.trajectory_returns(reward, jnp.stack([found_first, found_last, never]), 1.0))
    # returns-to-go of the best-so-far: early discovery pays at every later step
    np.testing.assert_allclose(returns[0], [4.0, 3.0, 2.0, 1.0])
    np.testing.assert_allclose(returns[1], [1.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(returns[2], [2.0, 1.5, 1.0, 0.5])
    assert returns[0, 0] > returns[2, 0] > returns[1, 0]
    # the per-step reward is summed from each step on, without the bonus when its weight is 0
    np.testing.assert_allclose(rollout.trajectory_returns(jnp.ones((1, 3)), jnp.zeros((1, 3)), 0.0), [[3.0, 2.0, 1.0]])
    adv = np.asarray(rollout.group_advantages(jnp.asarray(returns), 0, 1e-6))
    np.testing.assert_allclose(adv.mean(0), 0.0, atol=1e-6)


# --- the GRPO pieces, called directly --------------------------------------------------------------------


def _chain() -> SCM:
    """X0 -> X1 -> Y: E[Y | do(X1 = a)] = -0.5 - 1.5 a, E[Y | do(X0 = a)] = -2 - 3 a, mu_Y = -3.5, and the
    oracle sets X0 = 2 (y* = -8), so the oracle gap mu_Y - y* is 4.5; X1 is Y's only parent."""
    weights = np.array([[0.0, 2.0, 0.0], [0.0, 0.0, -1.5], [0.0, 0.0, 0.0]])
    return SCM(id="chain", nodes=("X0", "X1", "Y"), target=2, weights=weights, bias=np.array([0.5, 1.0, -0.5]),
               noise_std=np.ones(3), lo=np.array([-2.0, -1.0, np.nan]), hi=np.array([2.0, 3.0, np.nan]))


@pytest.mark.parametrize("exact", [True, False])
def test_the_kernel_scores_each_action_by_the_reward_formula(default_config, exact):
    arrays = jax.tree.map(jnp.asarray, pad_scm(_chain(), 3))
    spec = small_spec(default_config, policy=SMALL_POLICY)
    settings = rollout.GRPOSettings.from_experiment(spec)._replace(
        reward_target=0.9, reward_parent=0.1, reward_info_gain=0.5, exact_reward=exact)
    policy = pol.make_policy(SMALL_POLICY)
    params = pol.init_params(policy, jax.random.PRNGKey(0))
    buffer = buffer_mod.initial_buffer(arrays, jax.random.PRNGKey(1), 5, 8)
    noise = jax.random.normal(jax.random.PRNGKey(2), (64, 3))
    out = jax.jit(rollout.env_step, static_argnums=(0, 1, 8))(settings, policy, params, arrays, buffer, 5,
                                                           jax.random.PRNGKey(3), noise, 64)
    variable, value = np.asarray(out.variable), np.asarray(distribution.squash(arrays, out.variable, out.u))
    assert set(variable) == {0, 1}  # both intervenable variables drawn, never the target
    expected_y = np.where(variable == 1, -0.5 - 1.5 * value, -2.0 - 3.0 * value)
    y = expected_y if exact else np.asarray(out.x)[:, 2]
    np.testing.assert_allclose(out.reward_target, (-3.5 - y) / 4.5, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.norm_improvement, (-3.5 - expected_y) / 4.5, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out.reward_parent, (variable == 1).astype(np.float32))
    assert np.all(np.asarray(out.reward_info_gain) != 0.0)  # counted: one refit per action
    np.testing.assert_allclose(out.reward, 0.9 * np.asarray(out.reward_target) + 0.1 * np.asarray(out.reward_parent)
                               + 0.5 * np.asarray(out.reward_info_gain), rtol=1e-6, atol=1e-6)
    # the samples are the interventions under the noise given: X_v = value, the other variables by the weights
    x = np.asarray(out.x)
    np.testing.assert_allclose(x[np.arange(64), variable], value, atol=1e-5)
    set_x0 = variable == 0
    np.testing.assert_allclose(x[set_x0, 1], 1.0 + 2.0 * value[set_x0] + np.asarray(noise)[set_x0, 1], atol=1e-4)


@pytest.mark.parametrize("credit", ["step", "trajectory"])
def test_both_rollouts_give_one_transition_layout(default_config, credit):
    """(T, G) per-action fields and (T, S) states; the buffer returned holds the member ``executed`` at each
    step; ``per_state`` (the loss's view: (T, G) for step credit, (G·T, 1) for trajectories) and ``per_step``
    undo each other."""
    n_steps, group, n_obs = 3, 4, 5
    arrays = jax.tree.map(jnp.asarray, pad_scm(_chain(), 3))
    spec = small_spec(default_config, policy=SMALL_POLICY,
                      training={"credit": credit, "n_interventions": n_steps, "group_size": group, "n_obs": n_obs})
    settings = rollout.GRPOSettings.from_experiment(spec)
    policy = pol.make_policy(SMALL_POLICY)
    params = pol.init_params(policy, jax.random.PRNGKey(0))
    play = jax.jit(rollout.ROLLOUTS[credit], static_argnums=(0, 1))
    buffer, tr, (executed_variable, _) = play(settings, policy, params, arrays, jax.random.PRNGKey(4))
    n_states = 1 if credit == "step" else group
    for field in ("variable", "u", "log_prob", "advantage", "reward", "reward_target", "reward_parent"):
        assert getattr(tr, field).shape == (n_steps, group), field
    assert tr.executed.shape == (n_steps,)
    assert all(leaf.shape[:2] == (n_steps, n_states) for leaf in jax.tree.leaves(tr.obs))
    steps = np.arange(n_steps)
    appended = np.asarray(tr.variable)[steps, np.asarray(tr.executed)]
    np.testing.assert_array_equal(np.argmax(np.asarray(buffer.intervened)[n_obs:], axis=1), appended)
    assert executed_variable.shape == ((n_steps,) if credit == "step" else (group * n_steps,))
    if credit == "step":  # the group's advantages: its rewards standardized at each step
        np.testing.assert_allclose(tr.advantage, rollout.group_advantages(tr.reward, -1, 1e-6), atol=1e-5)
    flat = rollout.per_state(tr)
    assert flat.variable.shape == (n_states * n_steps, group // n_states)
    assert all(leaf.shape[0] == n_states * n_steps for leaf in jax.tree.leaves(flat.obs))
    for field, value in rollout.per_step(flat).items():
        np.testing.assert_array_equal(value, getattr(tr, field), err_msg=field)


def test_sigterm_sets_the_flag_and_the_handler_is_restored():
    from workflow_src.train.loop import sigterm_flag

    def sentinel(signum, frame):
        raise AssertionError("the training run's handler should have caught it")

    previous = signal.signal(signal.SIGTERM, sentinel)
    try:
        with sigterm_flag() as stop:
            assert not stop["stop"]
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop["stop"]
        assert signal.getsignal(signal.SIGTERM) is sentinel
        with pytest.raises(KeyError), sigterm_flag():
            raise KeyError("a failing run")
        assert signal.getsignal(signal.SIGTERM) is sentinel
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_bandit_statistics_match_a_direct_computation():
    scm, arrays = _scm_arrays()
    buffer = buffer_mod.initial_buffer(arrays, jax.random.PRNGKey(0), 6, 12)
    v = int(np.flatnonzero(np.asarray(arrays.intervenable))[0])
    for row, value in zip(range(6, 10), (-1.0, 1.0, 1.5, -0.5)):
        x = jax.random.normal(jax.random.PRNGKey(row), (7,))
        buffer = buffer_mod.append(arrays, buffer, row, x.at[v].set(value), v)
    z, mean, std = masked_standardize(buffer.values, buffer.sample_mask)
    marginal = features.marginal_predictions(arrays, buffer, z, mean, std)
    count, interventional = features.interventional_predictions(arrays, buffer, z, mean, std)
    stats = np.asarray(features.bandit_statistics(arrays, buffer, z, mean, std, marginal, count, interventional))
    assert stats[v, 0] == pytest.approx(np.log1p(4) / 2)
    others = np.asarray(arrays.intervenable) & (np.arange(7) != v)
    assert np.all(stats[others, 0] == 0.0) and np.all(stats[~np.asarray(arrays.intervenable)] == 0.0)
    # the interventional regression at the ends: weighted least squares, observational rows at OBS_WEIGHT
    zz, y = np.asarray(z)[:10, v], np.asarray(z)[:10, scm.target]
    w = np.where(np.arange(10) < 6, buffer_mod.OBS_WEIGHT, 1.0)
    slope, intercept = np.polyfit(zz, y, 1, w=np.sqrt(w))
    for column, end in ((3, arrays.lo[v]), (4, arrays.hi[v])):
        z_end = (float(end) - float(mean[v])) / float(std[v])
        assert stats[v, column] == pytest.approx(np.clip(intercept + slope * z_end, -10, 10), abs=1e-3)
    assert stats[v, 5] == pytest.approx(y[6:].min(), abs=1e-5)
    # the marginal regression (every sample at full weight): the prior's input and columns 1-2
    slope, intercept = np.polyfit(zz, y, 1)
    for column, end in ((0, arrays.lo[v]), (1, arrays.hi[v])):
        z_end = (float(end) - float(mean[v])) / float(std[v])
        expected = np.clip(intercept + slope * z_end, -10, 10)
        assert float(marginal[v, column]) == pytest.approx(expected, abs=1e-3)
        assert stats[v, column + 1] == pytest.approx(expected, abs=1e-3)
    assert np.all(np.asarray(marginal)[~np.asarray(arrays.intervenable)] == 0.0)
    # the priors: marginal_regression's statistic everywhere, or the interventional one where a variable was set
    fit = buffer_mod.fit_surrogate(arrays, buffer)
    marginal_prior = features.observe(arrays, buffer, fit, prior="marginal_regression").heuristic
    np.testing.assert_array_equal(marginal_prior, marginal)
    heuristic = np.asarray(features.observe(arrays, buffer, fit, prior="interventional_regression").heuristic)
    np.testing.assert_allclose(heuristic[v], stats[v, 3:5], atol=1e-6)
    np.testing.assert_array_equal(heuristic[others], np.asarray(marginal)[others])


def jitted_update_and_state(spec: dict, optimizer=None):
    """The jitted GRPO update of a config slice and a fresh training state (parameters from key 0); the
    config's optimizer unless one is given."""
    policy = pol.make_policy(spec["policy"])
    optimizer = optimizer or grpo.make_optimizer(spec["training"], 10)[0]
    update = jax.jit(grpo.make_train_update(rollout.GRPOSettings.from_experiment(spec), policy, optimizer))
    return update, grpo.initial_state(policy, optimizer, jax.random.PRNGKey(0))


def test_a_batch_plays_each_scm_as_if_alone(default_config):
    from workflow_src.core.scm import stack_scms

    suite = generate_level_suite("u", 1, 1, 3, GeneratorSettings())
    spec = small_spec(default_config, policy=SMALL_POLICY, training={"n_interventions": 4, "update_epochs": 1})
    update, state = jitted_update_and_state(spec)
    pool = jax.tree.map(jnp.asarray, stack_scms(list(suite.scms), 5))
    key = jax.random.PRNGKey(7)
    _, alone, _ = update(state, pool, jnp.array([2], jnp.int32), key)
    batched_state, batch, _ = update(state, pool, jnp.array([2, 0], jnp.int32), key)
    for field in ("reward", "norm_improvement", "parent_rate", "range_utilization", "f1"):
        assert float(getattr(batch, field)[0]) == pytest.approx(float(getattr(alone, field)[0]), abs=1e-6), field
    assert float(batch.reward[0]) != float(batch.reward[1])
    changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params, batched_state.params))
    assert any(changed)


def test_an_update_does_not_depend_on_the_padding(default_config):
    """Training pads each level to its shape bucket: the same SCMs padded to 5, 8 or 13 variables play the
    same episodes (padding-invariant draws) and give the same update, up to float rounding."""
    from workflow_src.core.scm import stack_scms

    suite = generate_level_suite("u", 2, 2, 3, GeneratorSettings())
    residual = {**SMALL_POLICY, "bandit_features": True, "prior": "interventional_regression"}
    spec = small_spec(default_config, policy=residual, training={"n_interventions": 4, "update_epochs": 1})
    # plain gradient steps: Adam's first step is about the learning rate whatever the gradient's size, so the
    # parameters whose gradient is zero (the attention's key bias) would move by a rounding-level gradient
    update, state = jitted_update_and_state(spec, optax.sgd(1.0))
    runs = [update(state, jax.tree.map(jnp.asarray, stack_scms(list(suite.scms), n)), jnp.array([1, 0], jnp.int32),
                   jax.random.PRNGKey(7)) for n in (5, 8, 13)]
    (state_5, stats_5, detail_5), *others = runs
    atol = 2e-5  # the parameters moved by the gradient itself (up to 0.4 here)
    for new_state, stats, detail in others:
        np.testing.assert_array_equal(detail["variable"], detail_5["variable"])
        np.testing.assert_allclose(detail["value"], detail_5["value"], atol=1e-5)
        for field in ("reward", "norm_improvement", "f1", "loss", "grad_norm"):
            np.testing.assert_allclose(getattr(stats, field), getattr(stats_5, field), rtol=1e-4, atol=1e-5,
                                       err_msg=field)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=atol), new_state.params, state_5.params)


def test_pools_pad_each_level_to_its_bucket(tmp_path, default_config):
    """Levels 1 (3 variables) and 6 (9-12) run in buckets 8 and 12 (16 capped at the largest SCM); a batch
    mixing them runs in the larger one, where every member is the same SCM."""
    from workflow_src.suites.suite_io import write_suite
    from workflow_src.train.loop import Pools

    files = []
    for level in (1, 6):
        files.append(tmp_path / f"train-L{level:02d}.json")
        write_suite(generate_level_suite(f"train-L{level:02d}", level, 4, 20 + level, GeneratorSettings()), files[-1])
    pools = Pools(files, [1, 6])
    largest = max(s.n for s in pools.scms[6])
    assert pools.level_bucket == {1: 8, 6: min(16, largest)} and sorted(pools.stacked) == [8, min(16, largest)]
    small, index = pools.locate([(1, 2), (1, 0)])
    assert small.bias.shape == (4, 8) and list(index) == [2, 0]
    mixed, index = pools.locate([(6, 1), (1, 2)])
    assert mixed.bias.shape == (8, largest) and list(index) == [5, 2]
    for (level, i), k in zip([(6, 1), (1, 2)], index):
        n = pools.scms[level][i].n
        np.testing.assert_allclose(mixed.weights[k, :n, :n], pools.scms[level][i].weights)


def test_auxiliary_effect_loss_goes_down(tmp_path, suites_dir, default_config):
    import pandas as pd

    spec = small_spec(default_config, levels=[1], episodes=60, checkpoint_every=1000,
                      policy={**SMALL_POLICY, "effect_head": True},
                      training={"n_interventions": 4, "effect_coef": 1.0, "scms_per_update": 2})
    paths = TrainPaths(tmp_path / "ck", tmp_path / "log.parquet")
    train("aux", spec, 0, train_suite_files(spec["levels"], suites_dir), paths, progress=False)
    loss = pd.read_parquet(paths.log_table)["effect_loss"].to_numpy()
    assert loss[-10:].mean() < 0.5 * loss[:10].mean(), loss
    assert checkpoint.read_header(paths.ckpt("final"))["architecture"]["effect_head"] is True


def test_changed_config_starts_fresh_and_bad_checkpoints_are_refused(tmp_path, suites_dir, default_config, capsys):
    spec = checkpoint_spec(default_config, episodes=4, checkpoint_every=2)
    paths = TrainPaths(tmp_path / "ck", tmp_path / "log.parquet")
    train("x", spec, 0, train_suite_files(spec["levels"], suites_dir), paths, progress=False)
    import io

    out = io.StringIO()
    changed = deep_merge(spec, {"training": {"learning_rate": 1e-3}})
    train("x", changed, 0, train_suite_files(changed["levels"], suites_dir), paths, progress=False, out=out)
    assert "starting fresh" in out.getvalue()
    from workflow_src.config import digest
    from workflow_src.config_schema import canonical_slice

    assert checkpoint.read_header(paths.ckpt("final"))["config_hash"] == digest(canonical_slice("train", changed))
    # a truncated checkpoint and one of another architecture give one clear line and no output file
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(paths.ckpt("final").read_bytes()[:-100])
    header_line, body = paths.ckpt("final").read_bytes().split(b"\n", 1)
    header = json.loads(header_line)

    def with_architecture(name: str, **changes):
        bad = tmp_path / f"{name}.ckpt"
        bad.write_bytes(json.dumps({**header, "architecture": {**header["architecture"], **changes}}).encode()
                        + b"\n" + body)
        return bad

    alien = with_architecture("alien", sample_channels=99)
    unknown_prior = with_architecture("unknown_prior", prior="oracle")
    for bad, message in ((truncated, "body_sha256"), (alien, "architecture"), (unknown_prior, "unknown prior")):
        out_file = tmp_path / f"{bad.stem}.parquet"
        proc = call_cli("evaluate", "--checkpoint", bad, "--suite", suites_dir / "heldout-L01.json", "--out", out_file,
                       "--spec", json.dumps({"episodes": 1, "interventions": 1, "n_obs": 3, "min_suite_episodes": 1,
                                             "seed": 0, "policy_modes": ["greedy"]}))
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not out_file.exists()


def test_a_saved_train_state_reads_back_without_flax_as_flax_reads_it(tmp_path, default_config):
    """``checkpoint.read_saved`` (no Flax) decodes a whole train state, the optimizer's state and step count
    included, to the same arrays, dtypes and structure as Flax's own reader."""
    from flax import serialization

    spec = small_spec(default_config, policy=SMALL_POLICY)
    policy = pol.make_policy(spec["policy"])
    state = grpo.initial_state(policy, grpo.make_optimizer(spec["training"], 10)[0], jax.random.PRNGKey(0))
    path = tmp_path / "state.ckpt"
    checkpoint.save(path, {"architecture": {}, "config_hash": "c", "episode": 0}, state)
    ours = checkpoint.read_saved(path)[1]
    theirs = serialization.msgpack_restore(path.read_bytes().split(b"\n", 1)[1])
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(a, b)
    assert jax.tree.structure(checkpoint.read_saved(path, "params")[1]) == jax.tree.structure(state.params)


def test_cli_train_writes_every_checkpoint(tmp_path, suites_dir):
    # in a process of its own: the verbose lines go to the stderr the command starts with
    proc = run_cli("train", "--experiment", "debug", "--seed", "1", "--config", ROOT / "config/config.yaml",
                   "--suites-dir", suites_dir, "--checkpoint-dir", tmp_path / "ck",
                   "--log-table", tmp_path / "log.parquet",
                   "--episodes", "6", "--no-progress", "--verbose", "--threads", "1")  # as the next test's runs
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert {"final.ckpt", "best.ckpt", "latest.ckpt"} <= set(names)
    assert "step  0" in proc.stderr and "advantages" in proc.stderr
    header = checkpoint.read_header(tmp_path / "ck" / "final.ckpt")
    assert header["config_name"] == "debug" and header["seed"] == 1 and header["episode"] == 6


def test_core_count_and_thread_count_change_no_checkpoint_and_no_table(tmp_path, suites_dir):
    """The same config and seed give the same checkpoint and table on one CPU with ``--threads 1`` and on
    every CPU with ``--threads 2``: XLA would otherwise split the gradient's matrix products across as many
    threads as the process has CPUs, which changes their last bits (``configure_jax``)."""
    every = os.sched_getaffinity(0)
    if len(every) < 2:
        pytest.skip("needs at least two CPUs")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    spec = json.dumps({"seed": 3, "episodes": 2, "interventions": 6, "n_obs": 10, "min_suite_episodes": 1,
                       "policy_modes": ["sampled"]})
    outputs = []
    for threads, cpus in (("1", {min(every)}), ("2", every)):
        out = tmp_path / threads
        run_cli("train", "--experiment", "debug", "--seed", "0", "--config", ROOT / "config/config.yaml",
                "--suites-dir", suites_dir, "--checkpoint-dir", out / "ck", "--log-table", out / "log.parquet",
                "--episodes", "6", "--no-progress", "--threads", threads, check=True, env=env, cpus=cpus)
        run_cli("evaluate", "--checkpoint", out / "ck/final.ckpt", "--suite", suites_dir / "heldout-L01.json",
                "--out", out / "eval.parquet", "--spec", spec, "--threads", threads, check=True, env=env, cpus=cpus)
        outputs.append(((out / "ck/final.ckpt").read_bytes(), (out / "eval.parquet").read_bytes()))
    assert outputs[0][0] == outputs[1][0], "final.ckpt depends on the number of CPUs"
    assert outputs[0][1] == outputs[1][1], "the evaluation table depends on the number of CPUs"


def test_damaged_resume_state_falls_back_to_an_intact_checkpoint_or_starts_fresh(tmp_path, suites_dir,
                                                                                 default_config):
    import io
    import shutil

    spec = checkpoint_spec(default_config, episodes=12, checkpoint_every=4)
    whole = TrainPaths(tmp_path / "whole", tmp_path / "whole" / "log.parquet")
    train("damaged", spec, 2, train_suite_files(spec["levels"], suites_dir), whole, progress=False)
    stopped = TrainPaths(tmp_path / "stopped", tmp_path / "stopped" / "log.parquet")
    with pytest.raises(Interrupted, match="stopped after episode 10"):
        train("damaged", spec, 2, train_suite_files(spec["levels"], suites_dir), stopped, progress=False, stop_after=10)

    def damage(name, *changes):
        paths = TrainPaths(tmp_path / name, tmp_path / name / "log.parquet")
        shutil.copytree(stopped.checkpoint_dir, paths.checkpoint_dir)
        for file, keep in changes:
            path = paths.checkpoint_dir / file
            path.write_bytes(path.read_bytes()[:keep]) if keep is not None else path.unlink()
        out = io.StringIO()
        train("damaged", spec, 2, train_suite_files(spec["levels"], suites_dir), paths, progress=False, out=out)
        for which in ("final", "best"):
            assert paths.ckpt(which).read_bytes() == whole.ckpt(which).read_bytes(), f"{name}: {which} differs"
        return [line for line in out.getvalue().splitlines() if "resuming from" in line or "starting fresh" in line]

    # latest.ckpt and the newest periodic checkpoint truncated: episode 4 is the newest intact one
    lines = damage("truncated", ("latest.ckpt", -50), ("episode_00008.ckpt", 200))
    assert len(lines) == 1 and "resuming from" in lines[0] and "episode_00004.ckpt at episode 4" in lines[0]
    assert "latest.ckpt: body_sha256" in lines[0]
    # without a readable log no checkpoint's log prefix is left: a fresh start that says why
    lines = damage("log truncated", ("latest.log.parquet", 100))
    assert len(lines) == 1 and "latest.log.parquet is unreadable" in lines[0] and "starting fresh" in lines[0]
    lines = damage("log missing", ("latest.log.parquet", None))
    assert len(lines) == 1 and "latest.log.parquet is missing" in lines[0] and "starting fresh" in lines[0]


def test_another_seeds_checkpoints_are_not_resumed_and_a_users_files_survive(tmp_path, suites_dir, default_config):
    """``--checkpoint-dir`` holding a copy of seed 0's interrupted run, and a user's own files: a run of seed 1
    starts fresh (saying why), ends as a fresh seed-1 run does, and clears only the files a run writes."""
    import io
    import shutil

    spec = checkpoint_spec(default_config, episodes=4, checkpoint_every=2)
    suites = train_suite_files(spec["levels"], suites_dir)
    seed_0 = TrainPaths(tmp_path / "seed_0", tmp_path / "seed_0.parquet")
    with pytest.raises(Exception, match="stopped after episode 2"):
        train("x", spec, 0, suites, seed_0, progress=False, stop_after=2)
    mine = TrainPaths(tmp_path / "mine", tmp_path / "mine.parquet")
    shutil.copytree(seed_0.checkpoint_dir, mine.checkpoint_dir)
    users = {"my_model.ckpt": b"precious", "notes.txt": b"keep", "episode_1.ckpt": b"mine too"}
    for name, data in users.items():
        (mine.checkpoint_dir / name).write_bytes(data)
    (mine.checkpoint_dir / "episode_00098.ckpt").write_bytes(b"a stale periodic checkpoint of a longer run")
    out = io.StringIO()
    train("x", spec, 1, suites, mine, progress=False, out=out)
    assert "seed 0 differs from this run's 1: starting fresh" in out.getvalue()
    fresh = TrainPaths(tmp_path / "fresh", tmp_path / "fresh.parquet")
    train("x", spec, 1, suites, fresh, progress=False)
    assert mine.ckpt("final").read_bytes() == fresh.ckpt("final").read_bytes()
    assert checkpoint.read_header(mine.ckpt("final"))["seed"] == 1
    for name, data in users.items():
        assert (mine.checkpoint_dir / name).read_bytes() == data, name
    assert not (mine.checkpoint_dir / "episode_00098.ckpt").exists()


def test_changed_training_suites_start_fresh_instead_of_resuming(tmp_path, suites_dir, default_config):
    """A run interrupted on one set of training suites, resumed after the suites changed (other coefficient
    settings, as `suites.coef_range` edited in the config gives): it starts fresh, saying why, and ends exactly
    as a fresh run on the new suites does — never as the old model."""
    import io
    import shutil

    from workflow_src.config import suite_slice
    from workflow_src.suites.build import build_suite

    spec = checkpoint_spec(default_config, episodes=4, checkpoint_every=2)
    data = tmp_path / "suites"
    data.mkdir()
    shutil.copy(suites_dir / "train-L01.json", data / "train-L01.json")
    suites = train_suite_files(spec["levels"], data)
    paths = TrainPaths(tmp_path / "ck", tmp_path / "log.parquet")
    with pytest.raises(Interrupted):
        train("x", spec, 0, suites, paths, progress=False, stop_after=2)
    old = checkpoint.read_header(paths.ckpt("latest"))["data_hash"]
    changed = deep_merge(default_config, {"suites": {"coef_range": [2.0, 3.0]}})
    build_suite(suite_slice(changed, "train-L01"), data / "train-L01.json")
    out = io.StringIO()
    train("x", spec, 0, suites, paths, progress=False, out=out)
    assert f"data_hash {old} differs" in out.getvalue() and "starting fresh" in out.getvalue()
    assert "resuming" not in out.getvalue()
    fresh = TrainPaths(tmp_path / "fresh", tmp_path / "fresh.parquet")
    train("x", spec, 0, suites, fresh, progress=False)
    assert paths.ckpt("final").read_bytes() == fresh.ckpt("final").read_bytes()
    assert checkpoint.read_header(paths.ckpt("final"))["data_hash"] != old


def test_a_diverging_run_stops_at_the_first_non_finite_update_in_one_line(tmp_path, suites_dir, default_config):
    """A learning rate of 1e8 diverges: the command stops at that update with one line naming it, no traceback,
    no log table, and every checkpoint it wrote before is finite (resuming from them runs)."""
    from workflow_src.evaluate.run import load_policy

    proc = run_cli("train", "--experiment", "debug", "--seed", "0", "--config", ROOT / "config/config.yaml",
                   "--suites-dir", suites_dir, "--checkpoint-dir", tmp_path / "ck", "--log-table", tmp_path / "log.pq",
                   "--episodes", "30", "--no-progress", "--threads", "1",
                   "--spec", json.dumps(deep_merge(train_slice(default_config, "debug"),
                                                   {"checkpoint_every": 1, "training": {"learning_rate": 1e8}})))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert lines[-1].startswith("acbo train: error: training diverged at update "), lines
    assert "learning rate 1e+08" in lines[-1]
    assert not (tmp_path / "log.pq").exists()
    diverged_at = int(lines[-1].split("update ")[1].split()[0])
    latest = tmp_path / "ck/latest.ckpt"
    if diverged_at > 0:  # the checkpoints before the diverging update hold finite parameters
        assert checkpoint.read_header(latest)["episode"] == diverged_at
        load_policy(latest)


def test_a_checkpoint_with_non_finite_values_is_never_resumed(tmp_path, suites_dir, default_config):
    """latest.ckpt with a NaN parameter (an edited file, or a run of older code that diverged): the run falls back
    to the newest finite checkpoint and ends as an uninterrupted run does."""
    import io

    spec = checkpoint_spec(default_config, episodes=6, checkpoint_every=2)
    suites = train_suite_files(spec["levels"], suites_dir)
    whole = TrainPaths(tmp_path / "whole", tmp_path / "whole.parquet")
    train("nan", spec, 0, suites, whole, progress=False)
    paths = TrainPaths(tmp_path / "ck", tmp_path / "log.parquet")
    with pytest.raises(Interrupted):
        train("nan", spec, 0, suites, paths, progress=False, stop_after=4)
    header, state = checkpoint.load(paths.ckpt("latest"), grpo_state(spec))
    poisoned = jax.tree.map(lambda x: x * jnp.nan, state)
    checkpoint.save(paths.ckpt("latest"), {k: v for k, v in header.items() if k not in ("format", "body_sha256")},
                    poisoned)
    out = io.StringIO()
    train("nan", spec, 0, suites, paths, progress=False, out=out)
    assert "non-finite values" in out.getvalue() and "resuming from" in out.getvalue()
    assert "resuming from" in out.getvalue() and "episode_00004.ckpt at episode 4" in out.getvalue()
    assert paths.ckpt("final").read_bytes() == whole.ckpt("final").read_bytes()


def grpo_state(spec):
    """A freshly initialized train state of ``spec`` (the structure a checkpoint is read into)."""
    policy = pol.make_policy(spec["policy"])
    optimizer, _ = grpo.make_optimizer(spec["training"], spec["episodes"])
    return grpo.initial_state(policy, optimizer, jax.random.PRNGKey(0))
def test_another_seeds_finished_run_is_never_deleted(tmp_path, suites_dir, default_config):
    """Issue 27: training seed 1 into seed 0's finished folder deleted seed 0's final.ckpt without asking."""
    spec = checkpoint_spec(default_config, episodes=2, checkpoint_every=2)
    suites = train_suite_files(spec["levels"], suites_dir)
    paths = TrainPaths(tmp_path / "seed_0", tmp_path / "seed_0.parquet")
    train("x", spec, 0, suites, paths, progress=False)
    before = {p.name: p.read_bytes() for p in paths.checkpoint_dir.iterdir()}
    with pytest.raises(CheckpointError) as err:
        train("x", spec, 1, suites, paths, progress=False)
    assert str(err.value) == (f"{paths.checkpoint_dir}: holds the finished run of seed 0 (final.ckpt), which training "
                              "seed 1 here would delete: give seed 1 a folder of its own")
    assert {p.name: p.read_bytes() for p in paths.checkpoint_dir.iterdir()} == before
