"""Exact quantities of linear-Gaussian SCMs agree with brute force and with the JAX sampler."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from workflow_src.core import sampler
from workflow_src.core.scm import pad_scm, stack_scms
from workflow_src.suites.generators import GeneratorSettings, classic_suite, generate_level_suite


@pytest.fixture(scope="module")
def scms():
    settings = GeneratorSettings()
    out = list(classic_suite().scms)
    for level in (1, 3, 5, 8, 11):
        out += list(generate_level_suite(f"t-L{level:02d}", level, 3, 7 + level, settings).scms)
    return out


def test_oracle_is_best_endpoint_by_brute_force(scms):
    for scm in scms:
        ex = scm.exact()
        candidates = [
            (float(scm.expected_target(i, v)), i, v)
            for i in np.flatnonzero(scm.intervenable)
            for v in (scm.lo[i], scm.hi[i], 0.5 * (scm.lo[i] + scm.hi[i]))
        ]
        best = min(candidates)
        assert ex.y_star == pytest.approx(best[0])
        assert (ex.oracle_variable, ex.oracle_value) == (best[1], best[2])
        assert ex.y_star < ex.mu_y


@jax.jit
def _monte_carlo(arrays, key, var, value):
    key_obs, key_int = jax.random.split(key)
    obs = sampler.sample_observational(arrays, key_obs, 40_000)
    keys = jax.random.split(key_int, 40_000)
    one = lambda kk: sampler.intervene(arrays, sampler.sample_observational(arrays, kk, 1)[0], var, value)  # noqa: E731
    samples = jax.vmap(one)(keys)
    return obs, samples


def test_exact_expectations_match_monte_carlo(scms):
    n_max = max(s.n for s in scms) + 2  # padding must not matter
    rng = np.random.default_rng(0)
    for k, scm in enumerate(scms):
        arrays = jax.tree.map(jnp.asarray, pad_scm(scm, n_max))
        var = int(rng.choice(np.flatnonzero(scm.intervenable)))
        value = float(scm.hi[var])
        obs, samples = _monte_carlo(arrays, jax.random.PRNGKey(k), var, value)
        obs_std_err = np.asarray(obs.std(0))[: scm.n] / np.sqrt(obs.shape[0])
        assert np.all(np.abs(np.asarray(obs.mean(0))[: scm.n] - scm.mu) < 5 * obs_std_err + 1e-4)
        assert np.all(np.asarray(obs[:, scm.n :]) == 0.0)
        y = np.asarray(samples[:, scm.target])
        expected = float(scm.expected_target(var, value))
        assert abs(y.mean() - expected) < 5 * y.std() / np.sqrt(len(y)) + 1e-4
        assert np.allclose(samples[:, var], value)
        assert float(sampler.expected_target(arrays, var, value)) == pytest.approx(expected, rel=1e-4, abs=1e-4)


def test_random_policy_value_matches_monte_carlo(scms):
    rng = np.random.default_rng(1)
    for scm in scms:
        allowed = np.flatnonzero(scm.intervenable)
        var = rng.choice(allowed, 200_000)
        value = rng.uniform(scm.lo[var], scm.hi[var])
        mc = scm.expected_target(var, value).mean()
        spread = np.abs(scm.expected_target(allowed, scm.hi[allowed]) - scm.mu[scm.target]).max()
        assert mc == pytest.approx(scm.exact().random_value, abs=0.01 * (1 + spread))


def test_stacked_arrays_pad_to_largest(scms):
    stacked = stack_scms(scms)
    n_max = max(s.n for s in scms)
    assert stacked.weights.shape == (len(scms), n_max, n_max)
    assert stacked.node_mask.sum(1).tolist() == [s.n for s in scms]
    assert not stacked.intervenable[np.arange(len(scms)), stacked.target].any()
