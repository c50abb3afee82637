"""The closed-form parent surrogate: what it finds in data, and that padding changes nothing."""

import jax.numpy as jnp
import numpy as np
import pytest

from workflow_src.core import surrogate


def fit(values, candidates, target, pad_rows=0, pad_vars=0):
    """``surrogate.fit`` on ``values`` padded with masked rows and variables (all zeros)."""
    n_rows, n_vars = values.shape
    padded = np.zeros((n_rows + pad_rows, n_vars + pad_vars))
    padded[:n_rows, :n_vars] = values
    mask = np.arange(n_rows + pad_rows) < n_rows
    candidates = np.r_[candidates, np.zeros(pad_vars, bool)]
    out = surrogate.fit(jnp.asarray(padded, jnp.float32), jnp.asarray(mask), jnp.asarray(candidates),
                        jnp.asarray(target))
    return np.asarray(out.coef), np.asarray(out.parent_prob), float(out.entropy)


def linear_data(n_rows, seed=5):
    """X0..X4 independent; the target X5 = 1.5 X0 - 0.7 X2 + noise (parents 0 and 2)."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n_rows, 6))
    values[:, 5] = 1.5 * values[:, 0] - 0.7 * values[:, 2] + 0.3 * rng.normal(size=n_rows)
    return values


CANDIDATES = np.array([True, True, True, False, True, False])  # 3 is not a candidate, 5 is the target


def test_with_much_data_the_coefficients_are_the_standardized_regression():
    values = linear_data(4000)
    coef, prob, _ = fit(values, CANDIDATES, 5)
    z = (values - values.mean(0)) / values.std(0)
    ols = np.linalg.lstsq(z[:, CANDIDATES], z[:, 5], rcond=None)[0]
    np.testing.assert_allclose(coef[CANDIDATES], ols, atol=2e-3)
    assert prob[0] > 0.999 and prob[2] > 0.999
    assert prob[1] < surrogate.PRIOR_PARENT and prob[4] < surrogate.PRIOR_PARENT


def test_more_data_makes_a_true_parent_more_certain():
    probs = [fit(linear_data(n, seed=1), CANDIDATES, 5)[1][2] for n in (4, 8, 16, 64)]
    assert probs[-1] > 0.99 and probs[-1] > probs[0]


def test_non_candidates_and_the_target_get_nothing():
    coef, prob, _ = fit(linear_data(50), CANDIDATES, 5)
    assert prob[3] == prob[5] == coef[3] == coef[5] == 0.0


@pytest.mark.parametrize("pad_rows, pad_vars", [(4, 0), (0, 2), (7, 10)])
def test_padding_changes_nothing(pad_rows, pad_vars):
    values = linear_data(14)
    coef, prob, entropy = fit(values, CANDIDATES, 5)
    coef_p, prob_p, entropy_p = fit(values, CANDIDATES, 5, pad_rows, pad_vars)
    np.testing.assert_allclose(coef_p[:6], coef, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(prob_p[:6], prob, rtol=1e-5, atol=1e-6)
    assert entropy_p == pytest.approx(entropy, rel=1e-5)
    assert not prob_p[6:].any() and not coef_p[6:].any()


def test_entropy_is_highest_when_undecided():
    _, _, certain = fit(linear_data(2000), CANDIDATES, 5)
    _, _, unsure = fit(linear_data(3), CANDIDATES, 5)
    assert 0.0 <= certain < unsure <= CANDIDATES.sum() * np.log(2)
