"""Nonlinear SCM generators for the 15 curriculum levels (``train-NLnn`` / ``heldout-NLnn``, acbo-suite/2).

Linear SCMs keep every optimum at a range end; these families put the best value of a variable inside its range.
Each SCM takes its graph from the level's linear graph family (``generators.LEVELS`` and ``STRUCTURES``: the
same families and sizes) and its mechanisms from one of these kinds (``MECHANISMS``), all in the term family of
acbo-suite/2 (``w * F(a * x + c)``). Inputs are standardized by the parent's notional range ``[-r, r]`` (``r``
from ``suites.range_choices``, drawn for every node): the *lengthscale* of a term is
``nonlinear.lengthscale * 2r`` (a quarter of the range by default), so curves bend inside the ranges.
An edge's amplitude ``A`` is drawn from ``suites.coef_range``.

- ``rff``: every edge is a random Fourier feature sum, ``sum_k w_k cos(omega_k x / l + phi_k)`` over
  ``nonlinear.features`` features, ``omega ~ N(0, 1)``, ``phi ~ U(0, 2 pi)``, ``w ~ A sqrt(2 / K) N(0, 1)``:
  a draw from (an approximation of) a GP with an RBF kernel of lengthscale ``l`` and variance ``A^2``.
- ``periodic``: every edge is ``w1 tanh(a1 x / l + c1) + w2 cos(a2 x / l + c2) + w3 sin(a3 x / l + c3)``,
  ``|a| ~ U(0.5, 1.5)``, ``c ~ U(-pi, pi)`` (``U(-1, 1)`` for tanh), ``w ~ A sqrt(2 / 3) N(0, 1)``.
- ``head_cos``: a linear body with a nonlinear head on the target: each edge into the target is a random cosine
  sum as in ``rff``. The body's coefficients are drawn as the linear families' (``coef_range``, random sign),
  then scaled down, node by node in causal order, where a node's causes explain more than its noise's variance
  (``_tame``; so the head's inputs stay on the scale of their ranges, as in standardized random SCMs).
- ``head_gauss``: the linear body with Gaussian bumps on the target: per parent a dip ``-A U(1, 2)
  gauss((x - m) / l)`` and a hill ``A U(0.5, 1) gauss((x - m') / l)``, ``m, m' ~ U(-0.7 r, 0.7 r)``,
  ``l = lengthscale * 2r * U(0.5, 1)``. Through a linear body ``E[Y | do]`` of such heads has a closed form.
- ``confounded``: the linear body on one node fewer, plus a latent common cause ``U`` (a root, listed in the
  SCM's ``latent``: simulated, never shown to a method nor intervenable, ``U ~ N(0, 1)``) of one parent ``X`` of
  the target and of the target itself (``U -> X`` about as strong as the rest of ``X``). ``X -> Y`` is a
  gentle linear trend ``c`` plus a Gaussian dip inside ``X``'s range; ``U -> X`` and ``U -> Y`` have coefficients
  whose product has the opposite sign of ``c`` and is large, so the observational regression of ``Y`` on ``X``
  slopes the wrong way: a method that trusts it goes to the wrong end of ``X``'s range. Kept only when that
  holds clearly: the observational least-squares slope (``CHECK_SAMPLES`` draws) has the opposite sign of
  ``(E[Y | do(X = hi)] - E[Y | do(X = lo)]) / (hi - lo)`` (oracle curve) and at least its size, and the two
  ends differ by more than ``MIN_ORACLE_GAP``.

**Keep rule** (otherwise the SCM is redrawn from the suite's generator): the oracle is acceptable
(``oracle.oracle_problem``), at least one variable's best value is interior (``oracle.interior_variables``,
``nonlinear.interior_margin`` of the range from either end), and the gap ``mu_Y - y*`` is at least
``nonlinear.min_gap_noise`` times the standard deviation of one outcome of the target under the oracle action
(so one noisy sample does not tell the best action from doing nothing). Candidates are screened on a cheap
Monte-Carlo oracle (``SCREEN_*``) before the stored one is computed, and the rule is checked again on it.

Everything is drawn from one ``numpy.random.Generator`` seeded by the suite seed (the checks use fixed
draws of their own), so the same settings give byte-identical suite files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config_schema import config_schema
from ..core.graph import topological_order
from ..core.mechanisms import term_value
from ..core.scm import FUNCTIONS, MIN_ORACLE_GAP, SCM, Terms, total_effects
from .generators import LEVELS, STRUCTURES, GeneratorSettings, _family_nodes, _pick_target
from .oracle import compute_oracle, estimate_oracle, interior_variables, oracle_problem, with_oracle
from .suite_io import SUITE_FORMAT_V2, Suite

MECHANISMS = ("rff", "periodic", "head_cos", "head_gauss", "confounded")
_FN = {name: k for k, name in enumerate(FUNCTIONS)}
LATENT = "U"  # the name of the confounded family's latent common cause
CHECK_SAMPLES = 4096  # draws for the outcome spread and the confounded family's observational slope
CHECK_SEED = 20250
SCREEN_REPLICATES, SCREEN_POINTS, SCREEN_CHECK = 2, 32, 64  # the cheap oracle a candidate is screened on
MAX_DRAWS = 500  # candidates per SCM before giving up (a setting that can never satisfy the keep rule)

_DEFAULTS = {key: sub["default"] for key, sub in
             config_schema()["properties"]["suites"]["properties"]["nonlinear"]["properties"].items()}


@dataclass(frozen=True)
class NonlinearSettings:
    """The config's ``suites.nonlinear`` section (defaults from the schema)."""

    mechanisms: tuple[str, ...] = tuple(_DEFAULTS["mechanisms"])
    features: int = _DEFAULTS["features"]
    lengthscale: float = _DEFAULTS["lengthscale"]
    interior_margin: float = _DEFAULTS["interior_margin"]
    min_gap_noise: float = _DEFAULTS["min_gap_noise"]

    @classmethod
    def from_config(cls, section: dict) -> NonlinearSettings:
        fields = {k: v for k, v in section.items() if k in cls.__dataclass_fields__}
        if "mechanisms" in fields:
            fields["mechanisms"] = tuple(fields["mechanisms"])
        return cls(**fields)


class _Terms:
    """Terms collected edge by edge (parent, child, fn name, weight, scale, shift), rounded when built."""

    def __init__(self, decimals: int):
        self.rows, self.decimals = [], decimals

    def add(self, parent, child, fn, weight, scale, shift=0.0):
        self.rows.append((parent, child, _FN[fn], weight, scale, shift))

    def build(self) -> Terms:
        rows = sorted(self.rows, key=lambda r: (r[0], r[1]))  # edge by edge, as a file lists them
        cols = list(zip(*rows)) if rows else [()] * 6
        ints = [np.asarray(c, int) for c in cols[:3]]
        floats = [np.round(np.asarray(c, float), self.decimals) for c in cols[3:]]
        return Terms(*ints, *floats)


def _cosines(terms: _Terms, i, j, amplitude, length, k, rng):
    """A random Fourier feature sum of ``k`` cosines on edge i -> j (lengthscale ``length``, variance A^2)."""
    omega = rng.normal(size=k)
    phase = rng.uniform(0.0, 2 * np.pi, size=k)
    weight = amplitude * np.sqrt(2.0 / k) * rng.normal(size=k)
    for w, o, p in zip(weight, omega, phase):
        terms.add(i, j, "cos", w, o / length, p)


def _periodic(terms: _Terms, i, j, amplitude, length, rng):
    weight = amplitude * np.sqrt(2.0 / 3.0) * rng.normal(size=3)
    freq = rng.uniform(0.5, 1.5, size=3) * rng.choice((-1.0, 1.0), size=3)
    terms.add(i, j, "tanh", weight[0], freq[0] / length, rng.uniform(-1.0, 1.0))
    terms.add(i, j, "cos", weight[1], freq[1] / length, rng.uniform(-np.pi, np.pi))
    terms.add(i, j, "sin", weight[2], freq[2] / length, rng.uniform(-np.pi, np.pi))


def _bump(terms: _Terms, i, j, weight, center, length):
    terms.add(i, j, "gauss", weight, 1.0 / length, -center / length)


def _bumps(terms: _Terms, i, j, amplitude, radius, length, rng):
    """A dip and a hill of ``x_i`` inside its range on edge i -> j."""
    for weight in (-amplitude * rng.uniform(1.0, 2.0), amplitude * rng.uniform(0.5, 1.0)):
        _bump(terms, i, j, weight, rng.uniform(-0.7, 0.7) * radius, length * rng.uniform(0.5, 1.0))


def _tame(weights: np.ndarray, noise: np.ndarray, target: int) -> None:
    """Scale, in causal order, each non-target node's incoming linear coefficients (in place) so that its causes
    explain at most its noise's variance (exact: the body is linear-Gaussian). Products of coefficients along
    long paths would otherwise give the target's parents spreads far beyond their ranges (a head then averages
    out, and the oracle needs 8 times the draws)."""
    for j in topological_order(weights != 0):
        if j == target or not weights[:, j].any():
            continue
        effects = total_effects(weights)
        cov = effects.T @ (noise[:, None] ** 2 * effects)
        explained = float(weights[:, j] @ cov @ weights[:, j])
        if explained > noise[j] ** 2:
            weights[:, j] *= noise[j] / np.sqrt(explained)


def draw_candidate(scm_id: str, level: int, graph: str, mechanism: str, rng, gs: GeneratorSettings,
                   ns: NonlinearSettings) -> SCM | None:
    """One candidate SCM (without its oracle), or None when the drawn graph has no usable target."""
    spec = LEVELS[level]
    latent = mechanism == "confounded"
    n = _family_nodes(graph, spec, rng)
    n_graph = n if not latent or spec.canonical else max(2, n - 1)
    edges = STRUCTURES[graph](n_graph, rng, gs)
    adjacency = np.zeros((n_graph, n_graph))
    for a, b in edges:
        adjacency[a, b] = 1.0
    target = _pick_target(adjacency, rng, gs.target)
    if target is None:
        return None
    n_all = n_graph + latent
    radius = rng.choice(np.asarray(gs.range_choices), size=n_all)
    length = ns.lengthscale * 2.0 * radius
    bias = rng.uniform(*gs.bias_range, size=n_all)
    noise = rng.uniform(*gs.noise_range, size=n_all)
    weights = np.zeros((n_all, n_all))
    terms = _Terms(gs.decimals)

    def amplitude():
        return rng.uniform(*gs.coef_range)

    def linear():
        return amplitude() * rng.choice((-1.0, 1.0))

    confounded, depth = None, 0.0
    if latent:
        parents = [a for a, b in edges if b == target]
        confounded = int(rng.choice(parents))
    for a, b in edges:
        if mechanism == "rff":
            _cosines(terms, a, b, amplitude(), length[a], ns.features, rng)
        elif mechanism == "periodic":
            _periodic(terms, a, b, amplitude(), length[a], rng)
        elif b != target:
            weights[a, b] = linear()
        elif mechanism == "head_cos":
            _cosines(terms, a, b, amplitude(), length[a], ns.features, rng)
        elif mechanism == "head_gauss" or a != confounded:
            _bumps(terms, a, b, amplitude(), radius[a], length[a], rng)
        else:  # the confounded edge: a gentle trend (a quarter of the dip across the range) and a dip inside
            depth = amplitude() * rng.uniform(1.0, 2.0)
            trend = rng.choice((-1.0, 1.0)) * 0.25 * depth / (2.0 * radius[a])
            weights[a, b] = trend
            _bump(terms, a, b, -depth, rng.uniform(-0.5, 0.5) * radius[a], length[a] * rng.uniform(0.5, 1.0))
    if mechanism in ("head_cos", "head_gauss", "confounded"):
        _tame(weights, noise, target)
    if latent:
        u = n_graph
        bias[u], noise[u] = 0.0, 1.0
        x = confounded

        def variance_of_x():  # X and its causes are linear-Gaussian in this family: var(X) is exact
            effects = total_effects(weights)
            return float(effects[:, x] ** 2 @ noise**2)

        # U causes X about as strongly as the rest of X's variance (which makes U's coefficient into Y, for a
        # given confounding slope, the smallest)
        into_x = np.sqrt(variance_of_x()) * rng.uniform(0.8, 1.25) * rng.choice((-1.0, 1.0))
        weights[u, x] = into_x
        # U's path makes Y rise with X where the trend makes it fall (and the reverse), more steeply than the trend
        # and the dip's slopes where X's observations lie: cov(X, Y) / var(X) gains into_x * into_y / var(X)
        trend = weights[x, target]
        steep = rng.uniform(1.5, 3.0) * (abs(trend) + depth / (4.0 * radius[x])) * variance_of_x() / abs(into_x)
        weights[u, target] = -np.sign(trend) * np.sign(into_x) * steep
    allowed = np.arange(n_all) != target
    if latent:
        allowed[n_graph] = False
    nodes = tuple(f"X{i}" for i in range(n_graph)) + ((LATENT,) if latent else ())
    return SCM(
        id=scm_id, nodes=nodes, target=int(target), weights=np.round(weights, gs.decimals),
        bias=np.round(bias, gs.decimals), noise_std=np.round(noise, gs.decimals),
        lo=np.where(allowed, -radius, np.nan), hi=np.where(allowed, radius, np.nan),
        family=f"{graph}-{mechanism}", level=level, terms=terms.build(), latent=(n_graph,) if latent else (),
    )


# --- checks on fixed draws -----------------------------------------------------------------------------------


def simulate(scm: SCM, eps: np.ndarray, do: tuple[int, float] | None = None) -> np.ndarray:
    """(S, n) samples of ``scm`` on the standard normal draws ``eps`` (S, n), optionally under ``do(i = v)``."""
    weights, bias, terms = scm.linear_weights, scm.linear_bias, scm.nonlinear_terms
    x = np.zeros_like(eps)
    for j in topological_order(scm.adjacency):
        if do is not None and do[0] == j:
            x[:, j] = do[1]
            continue
        value = bias[j] + scm.noise_std[j] * eps[:, j] + x @ weights[:, j]
        if terms is not None:
            for k in np.flatnonzero(terms.child == j):
                value = value + term_value(terms.fn[k], terms.weight[k], terms.scale[k], terms.shift[k],
                                           x[:, terms.parent[k]])
        x[:, j] = value
    return x


def _check_draws(n: int) -> np.ndarray:
    return np.random.default_rng([CHECK_SEED, n]).standard_normal((CHECK_SAMPLES, n))


def outcome_std(scm: SCM, oracle) -> float:
    """The standard deviation of one outcome of the target under the oracle action."""
    y = simulate(scm, _check_draws(scm.n), (oracle.variable, oracle.value))[:, scm.target]
    return float(y.std())


def observational_slope(scm: SCM, variable: int) -> float:
    """The least-squares slope of the target on ``variable`` in observational samples."""
    x = simulate(scm, _check_draws(scm.n))
    return float(np.polyfit(x[:, variable], x[:, scm.target], 1)[0])


def interventional_slope(scm: SCM, variable: int, oracle) -> float:
    """``(E[Y | do(variable = hi)] - E[Y | do(variable = lo)]) / (hi - lo)`` (oracle curve): which end is better."""
    lo, hi = scm.lo[variable], scm.hi[variable]
    ends = oracle.expected_target(np.array([variable, variable]), np.array([lo, hi]))
    return float((ends[1] - ends[0]) / (hi - lo))


def confounded_variable(scm: SCM) -> int | None:
    """The observed child of the latent common cause (the confounded variable), or None."""
    if LATENT not in scm.nodes:
        return None
    u = scm.nodes.index(LATENT)
    children = [j for j in np.flatnonzero(scm.weights[u]) if j != scm.target]
    return int(children[0]) if children else None


def keep_problem(scm: SCM, oracle, ns: NonlinearSettings, screening: bool = False) -> str | None:
    """Why the keep rule refuses ``scm`` with ``oracle``, or None. ``screening``: a cheap oracle whose standard
    errors are large by design; only its gap is checked against ``MIN_ORACLE_GAP``."""
    if screening:
        if not oracle.mu_y - oracle.y_star > MIN_ORACLE_GAP:
            return "gap too small"
    elif (problem := oracle_problem(oracle)) is not None:
        return problem
    if not interior_variables(scm, oracle, ns.interior_margin).any():
        return "no variable's best value is interior"
    gap = oracle.mu_y - oracle.y_star
    spread = outcome_std(scm, oracle)
    if gap < ns.min_gap_noise * spread:
        return f"gap {gap:.3g} is below {ns.min_gap_noise:g} x the outcome's std {spread:.3g}"
    x = confounded_variable(scm)
    if x is not None:
        causal = interventional_slope(scm, x, oracle)
        if not abs(causal) * (scm.hi[x] - scm.lo[x]) > MIN_ORACLE_GAP:
            return "the ends of the confounded variable's range are too close to tell apart"
        observed = observational_slope(scm, x)
        if not (np.sign(observed) == -np.sign(causal) and abs(observed) >= abs(causal)):
            return (f"the observational slope {observed:.3g} of the confounded variable does not point the wrong "
                    f"way clearly (interventional {causal:.3g})")
    return None


def keep(scm: SCM, ns: NonlinearSettings) -> SCM | None:
    """``scm`` with its oracle when it passes the keep rule, else None: screened on a cheap oracle first, then
    checked on the one that is stored."""
    screen = estimate_oracle(scm, replicates=SCREEN_REPLICATES, points=SCREEN_POINTS, check_points=SCREEN_CHECK)
    if keep_problem(scm, screen, ns, screening=True) is not None:
        return None
    oracle = compute_oracle(scm)
    return with_oracle(scm, oracle) if keep_problem(scm, oracle, ns) is None else None


def generate_nonlinear_scm(scm_id: str, level: int, graph: str, mechanism: str, rng, gs: GeneratorSettings,
                           ns: NonlinearSettings) -> SCM:
    """Draw candidates from ``rng`` until one passes the keep rule (screened, then on its stored oracle)."""
    for _ in range(MAX_DRAWS):
        scm = draw_candidate(scm_id, level, graph, mechanism, rng, gs, ns)
        if scm is not None and not scm.is_linear and (kept := keep(scm, ns)) is not None:
            return kept
    raise RuntimeError(f"{scm_id}: no {graph}-{mechanism} SCM of level {level} passed the keep rule in "
                       f"{MAX_DRAWS} draws (suites.nonlinear settings too strict?)")


def generate_nonlinear_suite(name: str, level: int, size: int, seed: int, gs: GeneratorSettings,
                             ns: NonlinearSettings) -> Suite:
    """``size`` nonlinear SCMs of one level: every (graph family, mechanism) pair in turn, in a seeded order."""
    if level not in LEVELS:
        raise ValueError(f"level must be in 1..{len(LEVELS)}, got {level}")
    rng = np.random.default_rng(seed)
    pairs = [(g, m) for g in LEVELS[level].families for m in ns.mechanisms]
    order = [pairs[i] for i in rng.permutation(len(pairs))]
    scms = tuple(generate_nonlinear_scm(f"{name}-{k:03d}", level, *order[k % len(order)], rng, gs, ns)
                 for k in range(size))
    return Suite(name=name, scms=scms, level=level, seed=seed, format=SUITE_FORMAT_V2)
