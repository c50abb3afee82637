"""acbo-suite/2: nonlinear mechanisms, the Monte-Carlo oracle, compiled sampling and the stages on them."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import call_cli

from workflow_src.core import sampler
from workflow_src.core.graph import reachability, topological_order
from workflow_src.core.mechanisms import FUNCTIONS_NUMPY
from workflow_src.core.scm import FUNCTIONS, SCM, Terms, stack_scms, term_bucket
from workflow_src.suites import oracle
from workflow_src.suites.generators import cbo_toy_scm, classic_suite, literature_suite
from workflow_src.suites.suite_io import SuiteError, load_suite, parse_suite, scm_to_dict, suite_to_json

FN = {name: k for k, name in enumerate(FUNCTIONS)}


def scm_from_edges(n, target, edges, ranges, bias=None, noise=None, scm_id="s"):
    """An SCM from ``edges``: (parent, child, coef, [(fn, weight, scale, shift), ...])."""
    weights = np.zeros((n, n))
    rows = []
    for i, j, coef, terms in edges:
        weights[i, j] = coef
        rows += [(i, j, FN[f], w, a, c) for f, w, a, c in terms]
    cols = list(zip(*rows)) if rows else [()] * 6
    terms = Terms(*(np.asarray(c, int) for c in cols[:3]), *(np.asarray(c, float) for c in cols[3:]))
    lo, hi = np.full(n, np.nan), np.full(n, np.nan)
    for i, (a, b) in ranges.items():
        lo[i], hi[i] = a, b
    return SCM(id=scm_id, nodes=tuple(f"X{i}" for i in range(n)), target=target, weights=weights,
               bias=np.zeros(n) if bias is None else np.asarray(bias, float),
               noise_std=np.ones(n) if noise is None else np.asarray(noise, float), lo=lo, hi=hi, terms=terms)


def random_nonlinear_scm(rng, n=6, scm_id="r"):
    """A random DAG (each node's parents among the earlier ones) with random mixtures of every function."""
    edges = []
    for j in range(1, n):
        parents = rng.choice(j, size=min(j, 2), replace=False)
        for i in parents:
            names = rng.choice(["tanh", "sin", "cos", "square", "gauss", "linear"], size=2, replace=False)
            terms = [(str(f), float(rng.uniform(-1.5, 1.5)), float(rng.uniform(0.3, 1.0)),
                      float(rng.uniform(-1, 1))) for f in names]
            if j == n - 1:
                terms[0] = ("gauss", 2.5, 1.0, float(rng.uniform(-0.5, 0.5)))  # an interior optimum to find
            edges.append((int(i), j, float(rng.uniform(-0.5, 0.5)), terms))
    ranges = {i: (-2.0, 2.0) for i in range(n - 1)}
    return scm_from_edges(n, n - 1, edges, ranges, bias=rng.uniform(-0.5, 0.5, n), noise=rng.uniform(0.3, 0.8, n),
                          scm_id=scm_id)


def plain_monte_carlo(scm, variable, values, n=400_000, seed=0):
    """The independent estimator: independent pseudo-random draws. Returns the observational mean of Y and its
    standard error, and per value the change E[Y | do] - E[Y] (estimated on the same draws) with its standard
    error."""
    eps = np.random.default_rng(seed).standard_normal((n, scm.n))

    def solve(variable=None, v=None):
        x = np.zeros((n, scm.n))
        for j in topological_order(scm.adjacency):
            if j == variable:
                x[:, j] = v
                continue
            x[:, j] = scm.bias[j] + scm.noise_std[j] * eps[:, j] + x @ scm.weights[:, j]
            t = scm.terms
            for k in np.flatnonzero(t.child == j):
                x[:, j] += t.weight[k] * FUNCTIONS_NUMPY[t.fn[k]](t.scale[k] * x[:, t.parent[k]] + t.shift[k])
        return x[:, scm.target]

    y_obs = solve()
    changes = [solve(variable, v) - y_obs for v in values]
    return (y_obs.mean(), y_obs.std() / np.sqrt(n), np.array([c.mean() for c in changes]),
            np.array([c.std() / np.sqrt(n) for c in changes]))


def v2_doc(*scms, name="nl"):
    return {"format": "acbo-suite/2", "name": name, "scms": [scm_to_dict(s, 2) for s in scms]}


# --- format -----------------------------------------------------------------------------------------------


def test_v2_round_trips_with_its_oracle(tmp_path):
    rng = np.random.default_rng(1)
    scms = [oracle.with_oracle(random_nonlinear_scm(rng, scm_id=f"r{k}")) for k in range(2)]
    text = suite_to_json(parse_suite(v2_doc(*scms, cbo_toy_scm())))
    again = parse_suite(json.loads(text))
    assert suite_to_json(again) == text
    for a, b in zip(scms, again.scms):
        assert a.exact().y_star == b.exact().y_star and a.exact().oracle_value == b.exact().oracle_value
        assert sorted(zip(*a.terms)) == sorted(zip(*b.terms))  # written edge by edge in (parent, child) order
    # a file without oracles gets the same ones computed on reading
    doc = json.loads(text)
    for raw in doc["scms"]:
        del raw["oracle"]
    assert suite_to_json(parse_suite(doc)) == text
    # and a verified one passes
    parse_suite(json.loads(text), oracle="verify")


def test_a_hand_written_file_with_defaults_reads():
    doc = {"format": "acbo-suite/2", "name": "cbo", "scms": [{
        "id": "toy", "nodes": ["X", "Z", "Y"], "target": "Y",
        "edges": [{"parent": "X", "child": "Z", "terms": [{"fn": "exp", "weight": 1, "scale": -1}]},
                  {"parent": "Z", "child": "Y", "terms": [{"fn": "cos", "weight": 1},
                                                          {"fn": "exp", "weight": -1, "scale": -0.05}]}],
        "ranges": {"X": [-5, 5], "Z": [-5, 20]}}]}
    scm = parse_suite(doc).scms[0]
    ex = scm.exact()
    assert scm.nodes[ex.oracle_variable] == "Z"
    assert ex.y_star == pytest.approx(-2.172, abs=0.005)


# --- the oracle -------------------------------------------------------------------------------------------


def test_cbo_toy_graph_oracle():
    scm = literature_suite().scms[0]
    o = scm.oracle
    assert scm.nodes[o.variable] == "Z"
    assert o.value == pytest.approx(-3.20, abs=0.03)
    truth = np.cos(o.value) - np.exp(-o.value / 20)  # -2.1718
    assert abs(o.y_star - truth) <= 3 * np.hypot(o.mu_y_se, o.y_star_se)
    best_x = np.min(o.curve[0])
    assert best_x == pytest.approx(-1.464, abs=0.01)  # not the noise-free model's -1.856
    z = o.grid[1]
    others = z != o.value  # the oracle action holds y* = mu_y - (the gap re-estimated on independent draws)
    # do(Z) leaves only Y's noise, which the antithetic draws cancel exactly
    np.testing.assert_allclose(o.curve[1][others], (np.cos(z) - np.exp(-z / 20))[others], atol=1e-6)
    assert oracle.oracle_problem(o) is None
    assert oracle.interior_variables(scm).tolist() == [True, True, False]
    quick = oracle.screen(cbo_toy_scm())
    assert quick.interior and quick.problem is None and quick.gap == pytest.approx(1.45, abs=0.05)
    assert quick.outcome_sd == pytest.approx(1.0, abs=0.1)  # do(Z) leaves Y's unit noise


def test_oracle_agrees_with_a_much_larger_plain_monte_carlo_run():
    scm = random_nonlinear_scm(np.random.default_rng(7))
    o = oracle.estimate_oracle(scm)
    for i in (0, 3):
        picks = np.arange(0, len(o.grid[i]), 12)
        mu, mu_se, change, change_se = plain_monte_carlo(scm, i, o.grid[i][picks])
        assert abs(o.mu_y - mu) <= 3 * np.hypot(o.mu_y_se, mu_se)
        combined = np.sqrt(o.se[i] ** 2 + change_se**2)
        got = o.curve[i][picks] - o.mu_y
        assert np.all(np.abs(got - change) <= 3 * combined), (got - change, combined)
    _, _, gap, gap_se = plain_monte_carlo(scm, o.variable, [o.value], seed=1)
    assert abs((o.mu_y - o.y_star) + gap[0]) <= 3 * np.hypot(o.y_star_se, gap_se[0])


def _mutilated_moments(scm, i, v):
    """Means and variances of every variable of a linear-Gaussian SCM under do(X_i = v)."""
    weights = scm.weights.copy()
    weights[:, i] = 0.0
    bias, noise = scm.bias.copy(), scm.noise_std.copy()
    bias[i], noise[i] = v, 0.0
    effects = np.linalg.inv(np.eye(scm.n) - weights)
    return effects.T @ bias, ((effects * noise[:, None]) ** 2).sum(0)


def _observational_moments(scm):
    effects = np.linalg.inv(np.eye(scm.n) - scm.weights)
    return effects.T @ scm.bias, ((effects * scm.noise_std[:, None]) ** 2).sum(0)


def test_oracle_matches_the_closed_form_of_a_cosine_head():
    # a linear-Gaussian body X0 -> X1 -> X2, X0 -> X2 and the head Y = sum_k w_k cos(a_k X_k + c_k) + eps:
    # E[cos(a X + c)] = cos(a m + c) exp(-a^2 s^2 / 2) for X ~ N(m, s^2)
    scm, closed = _cosine_head_scm()
    o = oracle.estimate_oracle(scm)
    mu = closed()
    assert abs(o.mu_y - mu) <= 3 * o.mu_y_se
    for i in (0, 1, 2):
        truth = np.array([closed(i, v) for v in o.grid[i]]) - mu
        got = o.curve[i] - o.mu_y
        assert np.all(np.abs(got - truth) <= 3 * o.se[i] + 1e-9), np.abs(got - truth).max()
        assert o.se[i] < 0.01 * (o.mu_y - o.y_star)
    dense = {i: np.linspace(scm.lo[i], scm.hi[i], 4001) for i in (0, 1, 2)}
    best = min(min(closed(i, v) for v in dense[i]) for i in dense)
    gap = o.mu_y - o.y_star
    assert abs(gap - (mu - closed(o.variable, o.value))) <= 3 * o.y_star_se + 1e-9
    assert gap - (mu - best) >= -(3 * o.y_star_se + 1e-3)  # the grid's best is the curve's best, up to its spacing


def _cosine_head_scm(frequency=1.0):
    """A linear body with a cosine head (input scales times ``frequency``) and its closed form: ``closed()`` is
    ``E[Y]``, ``closed(i, v)`` is ``E[Y | do(X_i = v)]``."""
    head = [(0, 0.8, 0.7 * frequency, 0.3), (1, -1.2, 0.5 * frequency, -0.4), (2, 1.0, 0.9 * frequency, 1.1)]
    edges = [(0, 1, 0.9, []), (1, 2, -0.6, []), (0, 2, 0.5, [])]
    edges += [(k, 3, 0.0, [("cos", w, a, c)]) for k, w, a, c in head]
    scm = scm_from_edges(4, 3, edges, {0: (-3, 3), 1: (-2, 2), 2: (-4, 4)}, bias=[0.2, -0.3, 0.1, 0.5],
                         noise=[1.0, 0.7, 0.5, 1.0])
    body = scm_from_edges(4, 3, edges[:3], {0: (-3, 3)}, bias=scm.bias, noise=scm.noise_std)

    def closed(i=None, v=None):
        mean, var = _mutilated_moments(body, i, v) if i is not None else _observational_moments(body)
        return scm.bias[3] + sum(w * np.cos(a * mean[k] + c) * np.exp(-0.5 * a * a * var[k]) for k, w, a, c in head)

    return scm, closed


def test_interpolated_curves_match_closed_forms_between_grid_points():
    """``E[Y | do]`` between the oracle's grid points (the cubic spline through the stored values) is as accurate
    as the stored values themselves: its error beyond theirs stays below 0.05% of the gap, where linear
    interpolation was off by up to 1.3% on the CBO toy's do(Z) curve."""
    from scipy.interpolate import CubicSpline

    from workflow_src.core.curves import spline_slopes

    toy = literature_suite().scms[0]
    o = toy.oracle
    gap = o.mu_y - o.y_star
    compiled = _one(stack_scms([toy], 8))
    cases = [  # (oracle, variable, values, closed form of E[Y | do] - mu_y)
        (o, 1, np.linspace(-5, 20, 20001), lambda z: np.cos(z) - np.exp(-z / 20) - o.mu_y),
        # do(X): Z = exp(-X) + eps, so E[Y | do(X = x)] = exp(-1/2) cos(e^-x) - exp(-e^-x / 20 + 1/800). Only where
        # the grid resolves it: towards x = -5 it oscillates with a period down to 0.04, a quarter of the grid's
        # spacing, which no interpolation of 79 points follows
        (o, 0, np.linspace(-1, 5, 20001),
         lambda x: np.exp(-0.5) * np.cos(np.exp(-x)) - np.exp(-np.exp(-x) / 20 + 1 / 800) - o.mu_y),
    ]
    for frequency in (1.0, 3.0):
        scm, closed = _cosine_head_scm(frequency)
        head = oracle.estimate_oracle(scm)
        cases += [(head, i, np.linspace(scm.lo[i], scm.hi[i], 2001),
                   lambda v, i=i, c=closed: np.array([c(i, x) for x in v]) - c()) for i in (0, 1, 2)]
    linear_worst = 0.0
    for orc, i, values, truth in cases:
        gap = orc.mu_y - orc.y_star
        at_knots = np.abs(orc.curve[i] - orc.mu_y - truth(orc.grid[i])).max()  # the Monte-Carlo error
        error = np.abs(orc.expected_target(i, values) - orc.mu_y - truth(values)).max()
        assert error <= at_knots + 5e-4 * gap, (i, error / gap, at_knots / gap)
        linear = np.abs(np.interp(values, orc.grid[i], orc.curve[i]) - orc.mu_y - truth(values)).max()
        linear_worst = max(linear_worst, linear / gap)
        # the spline is scipy's not-a-knot CubicSpline
        np.testing.assert_allclose(orc.expected_target(i, values), CubicSpline(orc.grid[i], orc.curve[i])(values),
                                   rtol=0, atol=1e-9 * (1 + np.abs(orc.curve[i]).max()))
    assert linear_worst > 0.01  # what linear interpolation of the same points gave
    # compiled scores (float32) interpolate alike, and the random policy's value is the exact mean of the curves
    for i, values in ((1, np.linspace(-5, 20, 1001)), (0, np.linspace(-5, 5, 1001))):
        got = np.asarray(sampler.expected_target(compiled, jnp.full(values.shape, i), jnp.asarray(values, jnp.float32)))
        np.testing.assert_allclose(got, o.expected_target(i, values.astype(np.float32)), rtol=0, atol=2e-5 * gap)
    dense = [o.expected_target(i, np.linspace(toy.lo[i], toy.hi[i], 400001)).mean() for i in (0, 1)]
    assert o.random_value == pytest.approx(np.mean(dense), abs=1e-4)
    # two points give the line (linear curves stay exact), three the parabola
    np.testing.assert_allclose(spline_slopes(np.array([-2.0, 3.0]), np.array([1.0, -4.0])), [-1.0, -1.0])
    np.testing.assert_allclose(spline_slopes(np.array([0.0, 1.0, 3.0]), np.array([0.0, 1.0, 9.0])), [0, 2, 6],
                               atol=1e-12)


def test_linear_scms_written_in_v2_equal_their_closed_form():
    suite = classic_suite()
    for scm in suite.scms:
        as_v2 = parse_suite(v2_doc(scm)).scms[0]
        assert as_v2.is_linear
        # the same SCM stated with "linear" terms: (w / 2) * (2 x + 0.25) = w x + w / 8, the constant taken
        # off the child's bias
        rows = [(int(i), int(j), 0.0, [("linear", float(scm.weights[i, j]) / 2, 2.0, 0.25)])
                for i, j in zip(*np.nonzero(scm.weights))]
        constant = np.zeros(scm.n)
        np.add.at(constant, [j for _, j, _, _ in rows], [terms[0][1] * 0.25 for _, _, _, terms in rows])
        ranges = {i: (scm.lo[i], scm.hi[i]) for i in np.flatnonzero(scm.intervenable)}
        as_terms = scm_from_edges(scm.n, scm.target, rows, ranges, bias=scm.bias - constant, noise=scm.noise_std)
        for other in (as_v2, as_terms):
            a, b = scm.exact(), other.exact()
            for name in ("mu_y", "y_star", "oracle_value", "random_value"):
                assert getattr(b, name) == pytest.approx(getattr(a, name), rel=1e-6, abs=1e-9), name
            assert a.oracle_variable == b.oracle_variable
        # the Monte-Carlo estimator itself is exact on affine models (antithetic draws)
        mc = oracle.estimate_oracle(as_terms)
        ex = scm.exact()
        assert mc.y_star == pytest.approx(ex.y_star, rel=1e-6) and mc.mu_y == pytest.approx(ex.mu_y, rel=1e-6, abs=1e-9)
        for i, grid in mc.grid.items():
            np.testing.assert_allclose(mc.curve[i], scm.expected_target(i, grid), rtol=1e-6, atol=1e-9)


# --- compiled sampling ------------------------------------------------------------------------------------


def _one(stack, k=0):
    return jax.tree.map(lambda a: jnp.asarray(a[k]), stack)


def test_compiled_sampler_matches_the_model_and_keeps_common_random_numbers():
    scm = oracle.with_oracle(random_nonlinear_scm(np.random.default_rng(3)))
    arrays = _one(stack_scms([scm], 8))
    eps = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    x = np.asarray(jax.jit(sampler.from_noise)(arrays, eps))
    # the structural equations hold with the same noise
    for j in range(scm.n):
        want = scm.bias[j] + scm.noise_std[j] * eps[:, j] + x[:, :scm.n] @ scm.weights[:, j]
        t = scm.terms
        for k in np.flatnonzero(t.child == j):
            want = want + t.weight[k] * FUNCTIONS_NUMPY[t.fn[k]](t.scale[k] * x[:, t.parent[k]] + t.shift[k])
        np.testing.assert_allclose(x[:, j], want, rtol=1e-4, atol=1e-4)
    assert np.all(x[:, scm.n:] == 0)
    xi = np.asarray(jax.jit(jax.vmap(sampler.intervene, (None, 0, None, None)))(arrays, x, 2, 1.5))
    assert np.all(xi[:, 2] == 1.5)
    untouched = np.zeros(8, bool)
    untouched[: scm.n] = ~reachability(scm.adjacency)[2]
    untouched[2] = False
    assert np.array_equal(xi[:, untouched], x[:, untouched])  # what X2 does not cause keeps its value exactly
    # the same as solving the intervened model from the same noise
    for j in np.flatnonzero(reachability(scm.adjacency)[2]):
        want = scm.bias[j] + scm.noise_std[j] * eps[:, j] + xi[:, :scm.n] @ scm.weights[:, j]
        t = scm.terms
        for k in np.flatnonzero(t.child == j):
            want = want + t.weight[k] * FUNCTIONS_NUMPY[t.fn[k]](t.scale[k] * xi[:, t.parent[k]] + t.shift[k])
        np.testing.assert_allclose(xi[:, j], want, rtol=1e-4, atol=1e-4)


def test_nonlinear_sampling_and_scores_do_not_depend_on_padding():
    scm = oracle.with_oracle(random_nonlinear_scm(np.random.default_rng(4)))
    small, big = _one(stack_scms([scm], 8)), _one(stack_scms([scm], 16, 64))
    key = jax.random.PRNGKey(5)
    a = jax.jit(sampler.sample_observational, static_argnums=2)(small, key, 16)
    b = jax.jit(sampler.sample_observational, static_argnums=2)(big, key, 16)
    np.testing.assert_allclose(a[:, :scm.n], b[:, :scm.n], rtol=1e-6, atol=1e-6)
    values = jnp.linspace(-2, 2, 9)
    for arrays in (small, big):
        got = sampler.expected_target(arrays, jnp.full(9, 1), values)
        np.testing.assert_allclose(got, scm.expected_target(1, np.asarray(values)), rtol=1e-5, atol=1e-5)


def test_a_linear_scm_in_a_nonlinear_stack_scores_and_samples_as_in_its_closed_form():
    linear = classic_suite().scms[1]
    toy = literature_suite().scms[0]
    stack = stack_scms([linear, toy], 8)
    assert term_bucket([linear]) == 0 and term_bucket([linear, toy]) == 16
    mixed, alone = _one(stack), _one(stack_scms([linear], 8))
    assert alone.term_fn.shape == (0,) and alone.curve_x.shape == (8, 0)
    eps = jax.random.normal(jax.random.PRNGKey(0), (32, 8))
    np.testing.assert_allclose(sampler.from_noise(mixed, eps), sampler.from_noise(alone, eps), rtol=1e-5, atol=1e-5)
    x = sampler.from_noise(alone, eps[0])
    np.testing.assert_allclose(sampler.intervene(mixed, x, 2, 1.7), sampler.intervene(alone, x, 2, 1.7), rtol=1e-5,
                               atol=1e-5)
    values = jnp.linspace(-3, 3, 7)
    for i in range(4):
        np.testing.assert_allclose(sampler.expected_target(mixed, jnp.full(7, i), values),
                                   sampler.expected_target(alone, jnp.full(7, i), values), rtol=1e-5, atol=1e-5)


# --- validation -------------------------------------------------------------------------------------------


def _toy_doc():
    return json.loads(suite_to_json(literature_suite("bad")))


BAD_MECHANISMS = {
    "unknown function": (lambda s: s["edges"][0]["terms"][0].update(fn="relu"), "edges[0].terms[0].fn"),
    "huge weight": (lambda s: s["edges"][1]["terms"][0].update(weight=1e300), "edges[1].terms[0].weight"),
    "exp overflow": (lambda s: s["edges"][0]["terms"][0].update(scale=-10.0), "edges[0].terms[0] (exp"),
    "square overflow": (lambda s: s["edges"][0]["terms"].append({"fn": "square", "weight": 1, "scale": 1e9}),
                        "edges[0].terms[1] (square"),
    "no gap": (lambda s: s.update(edges=[{"parent": "X", "child": "Z", "coef": 1.0},
                                         {"parent": "Z", "child": "Y", "terms": [{"fn": "tanh", "weight": 0.01}]}]),
               "oracle gap"),
    "too noisy": (lambda s: s.update(edges=[{"parent": "X", "child": "Z", "coef": 1.0},
                                            {"parent": "Z", "child": "Y", "terms": [{"fn": "exp", "weight": -0.01,
                                                                                      "scale": 1.0}]}],
                                     noise_std={"X": 1.0, "Z": 2.0, "Y": 0.1}, ranges={"X": [-2, 2]}),
                  "standard error"),
    # issue 27: a gap <= 0 was reported as too noisy, and too noisy came without a remedy
    "gap below zero": (lambda s: s.update(edges=[{"parent": "X", "child": "Z", "coef": 1.0},
                                                 {"parent": "Z", "child": "Y", "terms": [{"fn": "exp", "weight": -0.01,
                                                                                           "scale": 1.0}]}],
                                          bias={"Z": 10.0}, noise_std={"X": 1.0, "Z": 1.0, "Y": 0.1},
                                          ranges={"Z": [-1, 1]}),
                       "no intervention in the ranges lowers E[Y] below its observational mean"),
    "too noisy, with the remedy": (lambda s: BAD_MECHANISMS["too noisy"][0](s), "to keep it, lower the noise_std"),
    "stale oracle": (lambda s: s["edges"][1]["terms"][0].update(weight=1.1), "disagrees"),
}


@pytest.mark.parametrize("case", sorted(BAD_MECHANISMS))
def test_bad_mechanisms_are_refused_with_one_line_and_no_output(tmp_path, case):
    change, where = BAD_MECHANISMS[case]
    doc = _toy_doc()
    change(doc["scms"][0])
    if case not in ("stale oracle",):
        doc["scms"][0].pop("oracle")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SuiteError) as err:
        parse_suite(json.loads(path.read_text()), str(path), oracle="verify")
    assert len(err.value.problems) == 1, err.value.problems
    line = err.value.problems[0]
    assert "scm 'bad-toy'" in line and where in line, line
    out = tmp_path / "copy.json"
    spec = json.dumps({"name": "bad", "user_file": str(path)})
    proc = call_cli("suite", "generate", "--spec", spec, "--out", out)
    assert proc.returncode != 0 and not out.exists()
    assert where in proc.stdout + proc.stderr


LYING_ORACLES = {  # what a hand-edited stored oracle claims, and the one line that refuses it
    "y_star": (lambda o: o.update(y_star=o["y_star"] - 0.5), "y_star is"),
    "curve": (lambda o: o["curves"]["Z"]["mean"].__setitem__(3, o["curves"]["Z"]["mean"][3] + 0.2), "curves.Z.mean"),
    "action": (lambda o: o.update(variable="X", value=0.0), "is 'X', recomputed 'Z'"),
    "out of range": (lambda o: o.update(value=99.0), "value: 99.0 is outside the range"),
    "method": (lambda o: o.update(method="closed-form"), "method is 'closed-form'"),
    "samples": (lambda o: o.update(samples=7), "samples is 7"),
}


@pytest.mark.parametrize("lie", sorted(LYING_ORACLES))
def test_a_stored_oracle_that_lies_is_refused_wherever_the_file_enters(tmp_path, lie):
    """A suite file whose stored oracle was edited by hand is refused by every command that reads it directly
    (the baselines, `suite oracle`), in one line naming the SCM and the field, with nothing written."""
    change, where = LYING_ORACLES[lie]
    doc = _toy_doc()
    change(doc["scms"][0]["oracle"])
    path = tmp_path / "lying.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SuiteError, match="scm 'bad-toy'") as err:
        load_suite(path)
    assert len(err.value.problems) == 1 and where in err.value.problems[0], err.value.problems
    out = tmp_path / "b.parquet"
    spec = json.dumps({"episodes": 1, "interventions": 2, "n_obs": 3, "min_suite_episodes": 1, "seed": 0,
                       "baselines": ["oracle"]})
    for args in (["baselines", "--suite", path, "--out", out, "--spec", spec], ["suite", "oracle", path]):
        proc = call_cli(*args)
        assert proc.returncode == 2 and where in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not out.exists()


def test_a_suite_file_is_verified_once_per_content(tmp_path, monkeypatch):
    """The oracles of a file read a second time are not recomputed; an edited copy of it is."""
    from workflow_src.suites import suite_io

    monkeypatch.setenv("ACBO_JAX_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "toy.json"
    path.write_text(suite_to_json(literature_suite("toy")))
    calls = []
    compute = oracle.compute_oracle
    monkeypatch.setattr(oracle, "compute_oracle", lambda scm: calls.append(scm.id) or compute(scm))
    first = suite_io.load_suite(path)
    assert len(calls) == len(first.scms) > 0
    assert suite_to_json(suite_io.load_suite(path)) == suite_to_json(first)
    assert len(calls) == len(first.scms)  # read as stored: these bytes were verified
    path.write_text(path.read_text() + "\n")  # the same suite, other bytes: verified again
    suite_io.load_suite(path)
    assert len(calls) == 2 * len(first.scms)
def _chain_doc(name: str, n: int, terms_per_edge: int) -> dict:
    """An acbo-suite/2 SCM: a chain of ``n`` nodes, every edge ``terms_per_edge`` tanh terms, all but Y intervenable."""
    nodes = [f"X{i}" for i in range(n - 1)] + ["Y"]
    edges = [{"parent": a, "child": b, "terms": [{"fn": "tanh", "weight": 0.5, "shift": k / 10}
                                                 for k in range(terms_per_edge)]} for a, b in zip(nodes, nodes[1:])]
    return {"id": name, "nodes": nodes, "target": "Y", "edges": edges, "ranges": {v: [-1, 1] for v in nodes[:-1]}}


def test_oracle_work_is_bounded_per_scm_and_per_suite_in_one_line_each(tmp_path):
    """Issue 27: a 200-node, 5000-term SCM took minutes to validate, with no size limit and no progress."""
    huge, big = _chain_doc("huge", 150, 10), _chain_doc("big", 81, 10)
    assert oracle.oracle_work(parse_suite({"format": "acbo-suite/2", "name": "ok", "scms": [_chain_doc("s", 5, 1)]},
                                          oracle="verify").scms[0]) == 4 + 3 + 2 + 1
    cases = {"one.json": ([huge], "scm 'huge': edges: its Monte-Carlo oracle needs 111750 mechanism evaluations"),
             "two.json": ([big, {**big, "id": "big2"}], "scms: the Monte-Carlo oracles of its SCMs need 64800 "
                                                         "mechanism evaluations per draw in all, more than the limit")}
    for name, (scms, message) in cases.items():
        path = tmp_path / name
        path.write_text(json.dumps({"format": "acbo-suite/2", "name": "big", "scms": scms}))
        proc = call_cli("suite", "validate", path)
        lines = proc.stdout.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith(f"{path}: {message}"), lines
        assert "split the suite" in lines[0] or "use fewer terms" in lines[0]


def test_a_long_oracle_computation_says_how_far_it_is(monkeypatch, capsys):
    scm = parse_suite({"format": "acbo-suite/2", "name": "s", "scms": [_chain_doc("s", 4, 1)]}).scms[0]
    assert capsys.readouterr().err == ""  # a quick one says nothing
    monkeypatch.setattr(oracle, "PROGRESS_EVERY_S", 0.0)
    oracle.estimate_oracle(scm)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("oracle of SCM 's': 0 of 3 variables' curves after ") and len(lines) == 3, lines


def test_user_v2_file_is_copied_with_its_oracle(tmp_path):
    doc = _toy_doc()
    doc["name"] = "mine"
    del doc["scms"][0]["oracle"]
    src, out = tmp_path / "mine.json", tmp_path / "copy.json"
    src.write_text(json.dumps(doc))
    call_cli("suite", "generate", "--spec", json.dumps({"name": "mine", "user_file": str(src)}), "--out", out,
            check=True)
    copied = json.loads(out.read_text())
    assert copied["scms"][0]["oracle"]["method"] == "rqmc-sobol"
    proc = call_cli("suite", "validate", out)
    assert proc.returncode == 0, proc.stdout
    proc = call_cli("suite", "oracle", out)
    assert "do(Z=" in proc.stdout and "rqmc-sobol" in proc.stdout


# --- the stages -------------------------------------------------------------------------------------------


def test_v1_suite_written_as_v2_runs_the_same_program_numbers():
    from workflow_src.evaluate.baselines import baseline_methods
    from workflow_src.evaluate.run import run_methods

    protocol = {"seed": 3, "episodes": 2, "interventions": 4, "n_obs": 5}
    methods = baseline_methods(["random", "marginal_regression"])
    v1 = classic_suite()
    v2 = parse_suite(v2_doc(*v1.scms))
    a, b = (run_methods(methods, None, s, protocol) for s in (v1, v2))
    for ra, rb in zip(a, b):
        for name in ra:
            assert np.array_equal(ra[name], rb[name]), name


@pytest.mark.slow
def test_nonlinear_suite_runs_through_baselines_training_and_evaluation(tmp_path, default_config):
    import pandas as pd
    from test_train import small_spec

    from workflow_src.paths import TrainPaths
    from workflow_src.suites.suite_io import write_suite
    from workflow_src.train.loop import train

    rng = np.random.default_rng(11)
    scms = [oracle.with_oracle(random_nonlinear_scm(rng, scm_id=f"nl-{k}")) for k in range(3)]
    suite = parse_suite(v2_doc(*scms, cbo_toy_scm("toy"), name="nl"))
    path = tmp_path / "nl.json"
    write_suite(suite, path)
    base = tmp_path / "base.parquet"
    # every baseline of the config, under a short protocol (the GP methods' cost grows with its length)
    protocol = {"seed": 0, "episodes": 2, "interventions": 5, "n_obs": 10, "min_suite_episodes": 1}
    call_cli("baselines", "--suite", path, "--out", base, "--spec",
             json.dumps({**protocol, "baselines": default_config["evaluation"]["baselines"]}), check=True)
    table = pd.read_parquet(base)
    assert set(table.method) == set(default_config["evaluation"]["baselines"])
    numeric = table.select_dtypes("number").drop(columns=["seed"], errors="ignore")
    assert not numeric.isna().any().any()
    oracle_rows = table[table.method == "oracle"]
    np.testing.assert_allclose(oracle_rows.norm_improvement, 1.0, atol=1e-5)
    spec = small_spec(default_config, levels=[1], episodes=3, checkpoint_every=1000,
                      policy={"hidden_dim": 16, "n_heads": 2, "n_layers": 1}, training={"n_interventions": 4})
    paths = TrainPaths(tmp_path / "ckpt", tmp_path / "log.parquet")
    train("nl", spec, 0, [path], paths, progress=False)
    log = pd.read_parquet(paths.log_table)
    assert np.isfinite(log[["reward", "norm_improvement", "loss"]].to_numpy()).all()
    out = tmp_path / "eval.parquet"
    call_cli("evaluate", "--checkpoint", paths.ckpt("final"), "--suite", path, "--out", out, "--spec",
             json.dumps({**protocol, "policy_modes": ["greedy", "sampled"]}), check=True)
    table = pd.read_parquet(out)
    assert set(table.method) == {"policy_greedy", "policy_sampled"}
    assert not table[["expected_target", "norm_improvement", "target"]].isna().any().any()
