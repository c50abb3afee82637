"""The Monte-Carlo oracle of nonlinear SCMs: ``E[Y | do(X_i = v)]`` on a grid over every range.

There is no closed form for a nonlinear SCM's interventional means, so they are estimated once per suite and
stored with it (``Oracle``; every later stage reads the stored numbers):

1. **One shared noise sample** (common random numbers): ``REPLICATES`` independently scrambled Sobol nets of
   ``POINTS`` points (``MORE_POINTS`` when the standard errors come out too large) in as many dimensions as
   the SCM has variables (``scipy.stats.qmc.Sobol``, fixed seeds, so deterministic), mapped to standard
   normals, each with its antithetic copy ``-eps``. Every variable and value is simulated with these same
   draws, so curves are smooth in ``v`` and differences between actions are estimated far more precisely
   than the levels. The antithetic copies make every affine function of the
   noise exact (a linear SCM's curves equal its closed form up to rounding).
2. **Grid**: ``COARSE_POINTS`` evenly spaced values over ``[lo_i, hi_i]`` per intervenable ancestor of the
   target, then ``REFINE_POINTS`` more on each side of the best coarse point at 1/8 of the spacing. A variable
   that is not an ancestor of the target has the flat curve ``mu_y`` (two points, the range ends).
3. **The optimum**: the gap ``mu_y - y*`` at the best grid point is re-estimated with an independent, larger
   sample (``CHECK_POINTS`` per replicate, other seeds) as the mean of ``Y(observational) - Y(do)`` on the same
   draws: the minimum of a noisy curve is biased low. ``y* = mu_y - gap``; the stored curve takes that value
   at the oracle action, so the oracle scores exactly ``y*``.
4. **Standard errors** from the spread of the replicate means (randomized quasi-Monte Carlo). What scoring
   uses is the change an action makes, ``E[Y | do] - mu_y`` (normalized improvement, regret), so ``se[i]`` is
   the largest standard error of that change on variable ``i``'s curve (CRN: noise the action leaves alone
   cancels), and ``y_star_se`` that of the re-estimated gap; ``mu_y_se`` is the level's own standard error
   (common to every action and method). ``oracle_problem`` refuses an SCM whose ``se`` or ``y_star_se``
   exceeds ``MAX_SE_SHARE`` of the gap.
5. **The random policy's expected outcome**: the mean over intervenable variables of each curve's average over
   its range (``curves.hermite_mean``: the exact average of the interpolated curve that scoring uses, the
   not-a-knot cubic spline through the stored values, ``curves.spline_slopes``). For a linear SCM this is the
   value at the range midpoint, as for suite/1 files.

The model is always run with its noise: the deterministic model with noise set to zero is biased wherever a
mechanism is nonlinear. Everything is numpy in float64, vectorized over grid values and samples; only the
nodes that the intervened variable causes and that cause the target are recomputed.

For generators: ``screen(scm)`` is a cheap first look (gap, gap against one noisy outcome, whether the best
intervention is interior); ``with_oracle(scm)`` returns the SCM with its stored oracle attached (what
``suite_to_json`` writes), ``oracle_problem`` says why an oracle would be refused (gap too small, standard error
too large: the same rule as validation), and ``interior_variables`` which variables' best values lie inside
their ranges.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from ..core.curves import COARSE_POINTS, REFINE_POINTS, Oracle, curve_slopes, hermite_mean
from ..core.graph import reachability, topological_order
from ..core.mechanisms import FUNCTIONS_NUMPY
from ..core.scm import MIN_ORACLE_GAP, SCM, exact_quantities

METHOD = "rqmc-sobol"
CLOSED_FORM = "closed-form"
SOBOL_SEED = 20240
REPLICATES = 8
POINTS = 128  # Sobol points per replicate; with antithetic copies 2 * 128 * 8 = 2048 draws per curve point
MORE_POINTS = 1024  # an SCM whose standard errors are too large at POINTS is estimated again with these (16384)
CHECK_POINTS = 1024  # per replicate for the independent estimate at the optimum: 16384 draws
MAX_SE_SHARE = 0.01  # every standard error must be at most this share of the gap mu_y - y*
SIGNIFICANT = 9  # digits kept of every stored number (more than float32 holds)
# Oracle time is proportional to ``oracle_work``: 3.2e-4 CPU s per unit at POINTS (one core of a shared 2-core
# machine: random DAGs of 150 nodes and 2940 tanh terms, work 53060, took 16.6 s; of 100 nodes and 1170 terms,
# work 14358, 5.1 s). An SCM estimated again with MORE_POINTS takes far longer: a 100-node chain of 10 tanh
# terms per edge, work 49500, took 229 s of user and 49 s of system CPU (9 min wall on the loaded machine).
SECONDS_PER_WORK = 3.2e-4
# The most work a suite's oracles may need (so one SCM too): about 13 s, and by the chain's measure under 4 CPU
# minutes even if every SCM needed MORE_POINTS, within the suite rule's 10-minute runtime. Generated SCMs need a
# few hundred each.
MAX_ORACLE_WORK = 40_000
PROGRESS_EVERY_S = 5.0  # a long oracle computation says how far it is on stderr this often


def _round(x):
    return np.asarray([float(f"{v:.{SIGNIFICANT}g}") for v in np.ravel(x)]).reshape(np.shape(x))


@lru_cache(maxsize=16)
def normals(n_dims: int, seed: int, replicates: int, points: int) -> np.ndarray:
    """(replicates, 2 * points, n_dims) standard normals: scrambled Sobol nets, each with its antithetic copy."""
    from scipy.special import ndtri
    from scipy.stats import qmc

    out = np.empty((replicates, 2 * points, n_dims))
    for r in range(replicates):
        u = qmc.Sobol(n_dims, scramble=True, seed=np.random.default_rng([seed, r])).random(points)
        z = ndtri(np.clip(u, 1e-12, 1 - 1e-12))
        out[r, :points], out[r, points:] = z, -z
    out.setflags(write=False)
    return out


class _Simulator:
    """An SCM's structural equations in topological order, run on a fixed noise sample (R, S, N)."""

    def __init__(self, scm: SCM, eps: np.ndarray):
        self.scm = scm
        self.shape = eps.shape[:2]
        adjacency = scm.adjacency
        self.order = topological_order(adjacency)
        self.reach = reachability(adjacency)
        weights, terms = scm.linear_weights, scm.nonlinear_terms
        self.inputs = []
        for j in range(scm.n):
            lin = [(int(i), float(weights[i, j])) for i in np.flatnonzero(weights[:, j])]
            nl = [] if terms is None else [
                (int(terms.parent[k]), FUNCTIONS_NUMPY[terms.fn[k]], float(terms.weight[k]), float(terms.scale[k]),
                 float(terms.shift[k])) for k in np.flatnonzero(terms.child == j)]
            self.inputs.append((lin, nl))
        flat = eps.reshape(-1, eps.shape[-1])
        self.base = scm.linear_bias + scm.noise_std * flat  # (S, N)
        x = np.empty_like(self.base)
        for j in self.order:
            x[:, j] = self._node(j, lambda p: x[:, p])
        self.x_obs = x

    def _node(self, j, get):
        lin, nl = self.inputs[j]
        value = self.base[:, j]
        for i, w in lin:
            value = value + w * get(i)
        with np.errstate(over="ignore", invalid="ignore"):
            for i, fn, w, a, c in nl:
                value = value + w * fn(a * get(i) + c)
        return value

    def target_means(self, variable: int, values: np.ndarray) -> np.ndarray:
        """(G, R) replicate means of Y under do(X_variable = v) for each of the G values."""
        return self.effects(variable, values)[0]

    def effects(self, variable: int, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(G, R) replicate means of Y under do(X_variable = v), and of Y(do) - Y(observational) on the same
        draws (the change that normalized improvement measures, free of the noise the action leaves alone)."""
        y = self.draws(variable, values)
        y_obs = self.x_obs[:, self.scm.target]
        shape = (len(values), *self.shape)
        return y.reshape(shape).mean(-1), (y - y_obs).reshape(shape).mean(-1)

    def draws(self, variable: int, values: np.ndarray) -> np.ndarray:
        """(G, S) samples of Y under do(X_variable = v) for each of the G values."""
        target = self.scm.target
        if variable == target:
            raise ValueError("the target cannot be intervened on")
        cols = {variable: np.asarray(values, float)[:, None]}
        relevant = self.reach[variable] & (self.reach[:, target] | (np.arange(self.scm.n) == target))
        for j in self.order:
            if relevant[j]:
                cols[j] = self._node(j, lambda p: cols[p] if p in cols else self.x_obs[:, p])
        y_obs = self.x_obs[:, target]
        return np.broadcast_to(cols.get(target, y_obs), (len(values), y_obs.shape[0]))

    def mu_y(self) -> np.ndarray:
        return self.x_obs[:, self.scm.target].reshape(self.shape).mean(-1)


def oracle_work(scm: SCM) -> int:
    """The Monte-Carlo oracle's work in mechanism evaluations per draw and grid value: per intervenable ancestor
    of the target, the inputs (edges and terms) of every node it causes that the target depends on (what
    ``_Simulator.draws`` recomputes). Its time is proportional (``SECONDS_PER_WORK``)."""
    adjacency = scm.adjacency
    reach = reachability(adjacency)
    terms = scm.nonlinear_terms
    inputs = (scm.linear_weights != 0).sum(0) + (0 if terms is None else np.bincount(terms.child, minlength=scm.n))
    feeds = reach[:, scm.target] | (np.arange(scm.n) == scm.target)
    causes = np.flatnonzero(scm.intervenable & reach[:, scm.target])
    return int(((reach[causes] & feeds).astype(np.int64) @ inputs.astype(np.int64)).sum()) if len(causes) else 0


def oracle_work_problems(scms: list[SCM]) -> list[str]:
    """The oracles of ``scms`` (to be computed) against ``MAX_ORACLE_WORK``: a line per SCM above it, else one
    when their total is."""
    works = {scm.id: 0 if scm.is_linear else oracle_work(scm) for scm in scms}
    limit = f"the limit of {MAX_ORACLE_WORK} for a suite (about {MAX_ORACLE_WORK * SECONDS_PER_WORK:.0f} s"
    problems = [f"scm {scm_id!r}: edges: its Monte-Carlo oracle needs {work} mechanism evaluations per draw (the "
                "edges and terms into every node that an intervenable variable causes on its way to the target, "
                f"summed over those variables), more than {limit}; this one about {work * SECONDS_PER_WORK:.0f} s): "
                "use fewer terms or intervenable variables" for scm_id, work in works.items() if work > MAX_ORACLE_WORK]
    total = sum(works.values())
    if not problems and total > MAX_ORACLE_WORK:
        problems.append(f"scms: the Monte-Carlo oracles of its SCMs need {total} mechanism evaluations per draw in "
                        f"all, more than {limit}; these about {total * SECONDS_PER_WORK:.0f} s): split the suite")
    return problems


class _Progress:
    """One line on stderr every ``PROGRESS_EVERY_S`` seconds of an SCM's oracle computation (none for a quick one)."""

    def __init__(self, scm_id: str, total: int):
        self.scm_id, self.total = scm_id, total
        self.start = self.last = time.monotonic()

    def say(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            print(f"oracle of SCM {self.scm_id!r}: {done} of {self.total} variables' curves after "
                  f"{now - self.start:.0f} s", file=sys.stderr, flush=True)


def _mean_se(replicate_means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = replicate_means.shape[-1]
    return replicate_means.mean(-1), replicate_means.std(-1, ddof=1) / np.sqrt(r)


def closed_form_oracle(scm: SCM) -> Oracle:
    """The oracle of a linear SCM from its closed form (curves: the two range ends, exact when interpolated)."""
    ex = exact_quantities(scm)
    grid, curve = {}, {}
    for i in np.flatnonzero(scm.intervenable):
        grid[int(i)] = np.array([scm.lo[i], scm.hi[i]])
        curve[int(i)] = _round(scm.expected_target(int(i), grid[int(i)]))
    return Oracle(grid=grid, curve=curve, se={i: 0.0 for i in grid}, mu_y=float(_round(ex.mu_y)), mu_y_se=0.0,
                  y_star=float(_round(ex.y_star)), y_star_se=0.0, variable=ex.oracle_variable,
                  value=ex.oracle_value, random_value=float(_round(ex.random_value)), method=CLOSED_FORM,
                  samples=0, replicates=0, seed=0)


def estimate_oracle(scm: SCM, replicates: int = REPLICATES, points: int = POINTS, check_points: int = CHECK_POINTS,
                    seed: int = SOBOL_SEED) -> Oracle:
    """The Monte-Carlo oracle of ``scm`` (any SCM, linear ones included: see the module's docstring)."""
    sim = _Simulator(scm, normals(scm.n, seed, replicates, points))
    mu_y, mu_y_se = _mean_se(sim.mu_y())
    ancestors = sim.reach[:, scm.target]
    grid, curve, se = {}, {}, {}
    variables = list(map(int, np.flatnonzero(scm.intervenable)))
    progress = _Progress(scm.id, len(variables))
    for done, i in enumerate(variables):
        progress.say(done)
        lo, hi = float(scm.lo[i]), float(scm.hi[i])
        if not ancestors[i]:
            grid[i], curve[i], se[i] = np.array([lo, hi]), np.array([mu_y, mu_y]), 0.0
            continue
        coarse = np.linspace(lo, hi, COARSE_POINTS)
        means, changes = sim.effects(i, coarse)
        k = int(np.argmin(means.mean(-1)))
        step = (hi - lo) / (COARSE_POINTS - 1)
        offsets = np.arange(1, REFINE_POINTS + 1) * step / 8
        fine = np.concatenate([coarse[k] - offsets[::-1], coarse[k] + offsets])
        fine = fine[(fine > lo) & (fine < hi)]
        fine_means, fine_changes = sim.effects(i, fine)
        values = np.concatenate([coarse, fine])
        order = np.argsort(values, kind="stable")
        grid[i] = values[order]
        curve[i] = np.concatenate([means, fine_means]).mean(-1)[order]
        se[i] = float(_mean_se(np.concatenate([changes, fine_changes]))[1].max())
    best = {i: int(np.argmin(c)) for i, c in curve.items()}
    variable = min(curve, key=lambda i: (curve[i][best[i]], i))
    value = float(grid[variable][best[variable]])
    # the gap at the chosen action, re-estimated on independent draws (the minimum of the noisy curve is biased)
    check = _Simulator(scm, normals(scm.n, seed + 1, replicates, check_points))
    gap, y_star_se = _mean_se(-check.effects(variable, np.array([value]))[1][0])
    y_star = float(_round(mu_y - gap))
    curve = {i: _round(c) for i, c in curve.items()}
    curve[variable][best[variable]] = y_star
    grid = {i: _round(g) for i, g in grid.items()}
    slope = curve_slopes(grid, curve)
    random_value = np.mean([hermite_mean(grid[i], curve[i], slope[i]) for i in curve])
    return Oracle(
        grid=grid, curve=curve, slope=slope, se={i: float(_round(e)) for i, e in se.items()},
        mu_y=float(_round(mu_y)), mu_y_se=float(_round(mu_y_se)), y_star=y_star,
        y_star_se=float(_round(y_star_se)), variable=variable, value=float(_round(value)),
        random_value=float(_round(random_value)), method=METHOD, samples=2 * points * replicates,
        replicates=replicates, seed=seed,
    )


def compute_oracle(scm: SCM) -> Oracle:
    """The oracle every stage uses: the closed form for a linear SCM, else ``estimate_oracle`` with ``POINTS``,
    or with ``MORE_POINTS`` when the standard errors are above ``MAX_SE_SHARE`` of the gap (``oracle_problem``
    then refuses the SCM if they still are)."""
    if scm.is_linear:
        return closed_form_oracle(scm)
    estimate = estimate_oracle(scm)
    gap = estimate.mu_y - estimate.y_star
    if _too_noisy(estimate) and gap + 3 * estimate.effect_se > MIN_ORACLE_GAP:  # not refused for its gap anyway
        estimate = estimate_oracle(scm, points=MORE_POINTS)
    return estimate


def _too_noisy(oracle: Oracle) -> bool:
    return not oracle.effect_se <= MAX_SE_SHARE * max(oracle.mu_y - oracle.y_star, MIN_ORACLE_GAP)


def with_oracle(scm: SCM, oracle: Oracle | None = None) -> SCM:
    """``scm`` with ``oracle`` (default: ``compute_oracle(scm)``) attached; exact quantities then read it."""
    return dataclasses.replace(scm, oracle=compute_oracle(scm) if oracle is None else oracle, _exact={})


def oracle_problem(oracle: Oracle, nodes=None) -> str | None:
    """Why an oracle would be refused (its normalized improvement would mean nothing), or None: a gap of at most
    ``MIN_ORACLE_GAP`` (said first when no plausible noise could lift it above, a gap <= 0 as what it is: no
    intervention lowers E[Y]), or a standard error above ``MAX_SE_SHARE`` of the gap (or of ``MIN_ORACLE_GAP``),
    with what would keep the SCM. ``nodes`` names the variables in the message."""
    gap = oracle.mu_y - oracle.y_star
    if not gap + 3 * oracle.effect_se > MIN_ORACLE_GAP or (not _too_noisy(oracle) and not gap > MIN_ORACLE_GAP):
        if not gap > 0:
            return (f"oracle gap mu_y - y* = {gap:.3g}: no intervention in the ranges lowers E[Y] below its "
                    "observational mean, so there is nothing to optimize (widen the ranges or change the mechanisms)")
        return (f"oracle gap mu_y - y* = {gap:.3g} is not above {MIN_ORACLE_GAP:g}: normalized improvement "
                "would be rounding noise")
    if _too_noisy(oracle):
        noisiest = max(oracle.se, key=lambda i: (oracle.se[i], -i)) if oracle.se else None
        where = ("at the optimum" if noisiest is None or oracle.y_star_se >= oracle.se[noisiest]
                 else f"on the curve of {nodes[noisiest] if nodes else noisiest!r}")
        return (f"oracle standard error {oracle.effect_se:.3g} ({where}) is above {MAX_SE_SHARE:.0%} of the gap "
                f"mu_y - y* = {gap:.3g} even with {oracle.samples} draws: the Monte-Carlo estimate is too noisy "
                "for this SCM; to keep it, lower the noise_std of the nodes between that variable and the target, "
                "widen the ranges (a larger gap), or leave the SCM out of the suite")
    return None


def interior_variables(scm: SCM, oracle: Oracle | None = None, margin: float = 0.05) -> np.ndarray:
    """(n,) bool: intervenable variables whose best value (the minimum of their curve) lies inside the range,
    at least ``margin`` of its width from either end. ``interior_variables(...)[oracle.variable]`` says
    whether the oracle action itself is interior."""
    oracle = oracle or scm.oracle or compute_oracle(scm)
    inside = np.zeros(scm.n, bool)
    for i, curve in oracle.curve.items():
        lo, hi = scm.lo[i], scm.hi[i]
        v = oracle.grid[i][int(np.argmin(curve))]
        inside[i] = lo + margin * (hi - lo) <= v <= hi - margin * (hi - lo)
    return inside


class Screen(NamedTuple):
    """A quick look at an SCM for generators (``screen``)."""

    gap: float  # mu_y - y*
    interior: bool  # the oracle action's value lies inside its range (``interior_variables``)
    interior_variables: np.ndarray  # (n,) bool
    outcome_sd: float  # standard deviation of one sampled Y under the oracle action
    problem: str | None  # ``oracle_problem`` of this (cheaper) estimate


def screen(scm: SCM, points: int = 32, margin: float = 0.05) -> Screen:
    """A cheap estimate (``points`` Sobol points per replicate: 512 draws by default) of what a generator keeps
    an SCM for: a large gap (``gap / outcome_sd`` is the gap against one noisy outcome) and an interior best
    intervention. Compute the stored oracle (``with_oracle``) only for the SCMs kept."""
    estimate = estimate_oracle(scm, points=points, check_points=points)
    sim = _Simulator(scm, normals(scm.n, SOBOL_SEED + 1, REPLICATES, points))
    outcome_sd = float(sim.draws(estimate.variable, np.array([estimate.value])).std())
    inside = interior_variables(scm, estimate, margin)
    return Screen(gap=estimate.mu_y - estimate.y_star, interior=bool(inside[estimate.variable]),
                  interior_variables=inside, outcome_sd=outcome_sd, problem=oracle_problem(estimate))


# --- the stored form: the "oracle" key of an SCM in an acbo-suite/2 file ---------------------------------


def oracle_to_dict(oracle: Oracle, nodes) -> dict:
    return {
        "method": oracle.method, "samples": oracle.samples, "replicates": oracle.replicates, "seed": oracle.seed,
        "mu_y": oracle.mu_y, "mu_y_se": oracle.mu_y_se, "y_star": oracle.y_star, "y_star_se": oracle.y_star_se,
        "variable": nodes[oracle.variable], "value": oracle.value, "random": oracle.random_value,
        "curves": {nodes[i]: {"grid": oracle.grid[i].tolist(), "mean": oracle.curve[i].tolist(),
                              "se": oracle.se[i]} for i in sorted(oracle.grid)},
    }


def oracle_from_dict(raw: dict, scm: SCM) -> Oracle:
    index = {name: i for i, name in enumerate(scm.nodes)}
    curves = raw["curves"]
    return Oracle(
        grid={index[v]: np.asarray(c["grid"], float) for v, c in curves.items()},
        curve={index[v]: np.asarray(c["mean"], float) for v, c in curves.items()},
        se={index[v]: float(c["se"]) for v, c in curves.items()},
        mu_y=float(raw["mu_y"]), mu_y_se=float(raw["mu_y_se"]), y_star=float(raw["y_star"]),
        y_star_se=float(raw["y_star_se"]), variable=index[raw["variable"]], value=float(raw["value"]),
        random_value=float(raw["random"]), method=raw["method"], samples=int(raw["samples"]),
        replicates=int(raw["replicates"]), seed=int(raw["seed"]),
    )


def oracle_mismatch(stored: Oracle, fresh: Oracle, nodes) -> str | None:
    """Where a stored oracle differs from a fresh computation (beyond the rounding of stored numbers), or None."""
    if set(stored.grid) != set(fresh.grid):
        return f"curves for {sorted(nodes[i] for i in stored.grid)}, expected {sorted(nodes[i] for i in fresh.grid)}"
    tol = lambda a, b: 1e-6 * (1.0 + np.abs(a) + np.abs(b))  # noqa: E731
    for i in sorted(fresh.grid):
        if stored.grid[i].shape != fresh.grid[i].shape or np.any(
                np.abs(stored.grid[i] - fresh.grid[i]) > tol(stored.grid[i], fresh.grid[i])):
            return f"curves.{nodes[i]}.grid differs from the recomputed grid"
        if abs(stored.se[i] - fresh.se[i]) > tol(stored.se[i], fresh.se[i]):
            return f"curves.{nodes[i]}.se is {stored.se[i]:.6g}, recomputed {fresh.se[i]:.6g}"
        diff = np.abs(stored.curve[i] - fresh.curve[i])
        if np.any(diff > tol(stored.curve[i], fresh.curve[i])):
            k = int(np.argmax(diff))
            return (f"curves.{nodes[i]}.mean at {nodes[i]}={fresh.grid[i][k]:g} is {stored.curve[i][k]:.6g}, "
                    f"recomputed {fresh.curve[i][k]:.6g}")
    if stored.variable != fresh.variable:
        return f"variable is {nodes[stored.variable]!r}, recomputed {nodes[fresh.variable]!r}"
    for name in ("method", "samples", "replicates", "seed"):
        if getattr(stored, name) != getattr(fresh, name):
            return f"{name} is {getattr(stored, name)!r}, recomputed {getattr(fresh, name)!r}"
    for name in ("mu_y", "y_star", "random_value", "value", "mu_y_se", "y_star_se"):
        a, b = getattr(stored, name), getattr(fresh, name)
        if abs(a - b) > tol(a, b):
            return f"{name} is {a:.6g}, recomputed {b:.6g}"
    return None
