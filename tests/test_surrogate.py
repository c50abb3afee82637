"""The closed-form parent surrogate against a direct computation of its posterior."""

import jax.numpy as jnp
import numpy as np

from workflow_src.core import surrogate


def direct_fit(values, candidates, target):
    """Posterior mean and variances by solving and inverting the precision matrix in float64."""
    z = (values - values.mean(0)) / np.sqrt(values.var(0) + surrogate.EPS)
    x = z * candidates
    y = z[:, target]
    precision = x.T @ x + np.eye(len(candidates)) / surrogate.PRIOR_VAR
    mean = np.linalg.solve(precision, x.T @ y)
    dof = max(len(values) - candidates.sum(), 1.0)
    noise_var = np.clip(((y - x @ mean) ** 2).sum() / dof, 1e-3, 1.0)
    post_var = np.clip(noise_var * np.diag(np.linalg.inv(precision)), surrogate.EPS, surrogate.PRIOR_VAR)
    log_bf = 0.5 * np.log(post_var / (post_var + surrogate.PRIOR_VAR)) + 0.5 * mean**2 * (
        1.0 / post_var - 1.0 / (post_var + surrogate.PRIOR_VAR))
    prior_logit = np.log(surrogate.PRIOR_PARENT / (1.0 - surrogate.PRIOR_PARENT))
    return mean * candidates, candidates / (1.0 + np.exp(-(prior_logit + log_bf)))


def test_fit_matches_the_direct_posterior_with_padding():
    rng = np.random.default_rng(5)
    n_rows, n_vars, target = 14, 6, 5
    values = rng.normal(size=(n_rows, n_vars))
    values[:, target] = 1.5 * values[:, 0] - 0.7 * values[:, 2] + 0.3 * rng.normal(size=n_rows)
    candidates = np.array([1.0, 1.0, 1.0, 0.0, 1.0, 0.0])  # variable 3 is not a candidate, 5 is the target
    # padded: four more rows and two more variables, all masked out
    padded = np.zeros((n_rows + 4, n_vars + 2))
    padded[:n_rows, :n_vars] = values
    sample_mask = np.arange(n_rows + 4) < n_rows
    fit = surrogate.fit(jnp.asarray(padded, jnp.float32), jnp.asarray(sample_mask),
                        jnp.asarray(np.r_[candidates, 0.0, 0.0] > 0), jnp.asarray(target))
    coef, prob = direct_fit(values, candidates, target)
    np.testing.assert_allclose(fit.coef[:n_vars], coef, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fit.parent_prob[:n_vars], prob, rtol=1e-4, atol=1e-5)
    assert prob[0] > 0.9 and prob[2] > 0.9 and prob[1] < 0.5  # the test data has the expected parents
    assert not np.any(np.asarray(fit.parent_prob[n_vars:])) and not np.any(np.asarray(fit.coef[n_vars:]))
