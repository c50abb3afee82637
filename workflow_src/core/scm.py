"""Structural causal models with additive Gaussian noise, and their exact quantities.

Model: ``x_j = b_j + sum_{i in pa(j)} f_ij(x_i) + s_j * eps_j`` with ``eps ~ N(0, 1)``, where each edge's
function is ``f_ij(x) = W[i, j] x + sum_k w_k F_k(a_k x + c_k)`` (``Terms``; ``F`` from ``FUNCTIONS``).

Linear SCMs (no terms, or only ``linear`` ones, which fold into ``W`` and ``b``): with ``T = (I - W)^-1``
(``T[i, j]`` is the total effect of ``x_i`` on ``x_j``) the observational means are ``mu = T^T b`` and a
perfect intervention gives ``E[Y | do(X_i = v)] = mu_Y + T[i, Y] (v - mu_i)``: affine in ``v``, so every
variable's best value lies at an end of its range. Nonlinear SCMs have no closed form: their exact quantities
come from the Monte-Carlo ``Oracle`` stored with the suite (``suites/oracle.py`` estimates it; ``curves``
interpolates its curves).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .curves import MAX_CURVE_POINTS, Oracle, spline_slopes
from .graph import topological_order

# Normalized improvement divides by the oracle gap mu_y - y*: SCMs whose best intervention improves E[Y] by no
# more than this are redrawn by the generators and refused in user suites (the ratio would be rounding noise).
MIN_ORACLE_GAP = 0.1

# The mechanism family of acbo-suite/2: a term {"fn": F, "weight": w, "scale": a, "shift": c} is w * F(a x + c).
FUNCTIONS = ("linear", "tanh", "sin", "cos", "exp", "square", "gauss")
LINEAR_FN = 0

MIN_TERM_BUCKET = 16


class Terms(NamedTuple):
    """Nonlinear mechanism terms of an SCM, one entry per term: ``weight * FUNCTIONS[fn](scale * x_parent +
    shift)`` is added to ``x_child``. Order: as in the file (edge by edge)."""

    parent: np.ndarray  # (K,) int
    child: np.ndarray  # (K,) int
    fn: np.ndarray  # (K,) int, index into FUNCTIONS
    weight: np.ndarray  # (K,)
    scale: np.ndarray  # (K,)
    shift: np.ndarray  # (K,)

    @property
    def size(self) -> int:
        return len(self.parent)

    def subset(self, keep: np.ndarray) -> Terms:
        return Terms(*(a[keep] for a in self))


@dataclass(frozen=True)
class SCM:
    """One SCM with node names; arrays are indexed by position in ``nodes``."""

    id: str
    nodes: tuple[str, ...]
    target: int
    weights: np.ndarray  # (n, n), weights[i, j] = coefficient of edge i -> j
    bias: np.ndarray  # (n,)
    noise_std: np.ndarray  # (n,)
    lo: np.ndarray  # (n,), nan where not intervenable
    hi: np.ndarray  # (n,), nan where not intervenable
    family: str = "custom"
    level: int = 0
    terms: Terms | None = None  # acbo-suite/2 mechanism terms (None: an acbo-suite/1 SCM)
    oracle: Oracle | None = None  # stored exact quantities of a nonlinear SCM
    latent: tuple[int, ...] = ()  # simulated but never shown to a method (acbo-suite/2 ``latent``)
    _exact: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def n(self) -> int:
        return len(self.nodes)

    @property
    def intervenable(self) -> np.ndarray:
        return ~np.isnan(self.lo)

    @property
    def observed(self) -> np.ndarray:
        """(n,) bool: the variables a method sees (every one but the latent ones)."""
        mask = np.ones(self.n, bool)
        mask[list(self.latent)] = False
        return mask

    @property
    def nonlinear_terms(self) -> Terms | None:
        """The terms that do not fold into ``W`` and ``b`` (every ``fn`` but ``linear``), or None."""
        if self.terms is None:
            return None
        keep = self.terms.fn != LINEAR_FN
        return self.terms.subset(keep) if keep.any() else None

    @property
    def is_linear(self) -> bool:
        return self.nonlinear_terms is None

    @property
    def linear_weights(self) -> np.ndarray:
        """``W`` with the ``linear`` terms folded in (``w * a`` per term); ``weights`` itself for suite/1 SCMs."""
        if self.terms is None:
            return self.weights
        if "W" not in self._exact:
            lin = self.terms.subset(self.terms.fn == LINEAR_FN)
            weights = self.weights.copy()
            np.add.at(weights, (lin.parent, lin.child), lin.weight * lin.scale)
            self._exact["W"] = weights
        return self._exact["W"]

    @property
    def linear_bias(self) -> np.ndarray:
        """``b`` with the ``linear`` terms' constants (``w * c``) folded in."""
        if self.terms is None:
            return self.bias
        lin = self.terms.subset(self.terms.fn == LINEAR_FN)
        bias = self.bias.copy()
        np.add.at(bias, lin.child, lin.weight * lin.shift)
        return bias

    @property
    def adjacency(self) -> np.ndarray:
        """(n, n) bool: ``i -> j`` has a nonzero coefficient or a term."""
        adjacency = self.weights != 0.0
        if self.terms is not None:
            adjacency = adjacency.copy()
            adjacency[self.terms.parent, self.terms.child] = True
        return adjacency

    @property
    def parents_of_target(self) -> np.ndarray:
        if self.terms is None:
            return self.weights[:, self.target] != 0.0
        return self.adjacency[:, self.target]

    @property
    def total_effects(self) -> np.ndarray:
        """Total effects of the linear part (all of the SCM when ``is_linear``)."""
        if "T" not in self._exact:
            self._exact["T"] = total_effects(self.linear_weights)
        return self._exact["T"]

    @property
    def mu(self) -> np.ndarray:
        """Observational means of a linear SCM."""
        return self.total_effects.T @ self.linear_bias

    def expected_target(self, variable: np.ndarray | int, value: np.ndarray | float) -> np.ndarray:
        """``E[Y | do(X_variable = value)]``, vectorized over variable/value arrays: the closed form of a linear
        SCM, the stored oracle curve (interpolated by its cubic spline) of a nonlinear one."""
        if not self.is_linear:
            if self.oracle is None:
                raise ValueError(f"SCM {self.id!r} is nonlinear and has no oracle (see oracle.with_oracle)")
            return self.oracle.expected_target(variable, value)
        mu = self.mu
        t_col = self.total_effects[:, self.target]
        return mu[self.target] + t_col[variable] * (np.asarray(value) - mu[variable])

    def exact(self) -> ExactQuantities:
        if "exact" not in self._exact:
            self._exact["exact"] = exact_quantities(self) if self.is_linear else oracle_quantities(self)
        return self._exact["exact"]

    @property
    def depth(self) -> int:
        """Edges on the longest directed path: sweeps of the structural equations that solve the SCM."""
        adjacency = self.adjacency
        order = topological_order(adjacency)
        level = np.zeros(self.n, int)
        for node in order:
            for child in np.flatnonzero(adjacency[node]):
                level[child] = max(level[child], level[node] + 1)
        return int(level.max(initial=0))


class ExactQuantities(NamedTuple):
    mu_y: float
    y_star: float
    oracle_variable: int
    oracle_value: float
    random_value: float  # expected outcome of the uniformly random policy
    best_per_variable: np.ndarray  # (n,) best achievable E[Y] per variable (inf if not intervenable)


def has_oracle_gap(ex: ExactQuantities) -> bool:
    """Whether intervening can improve E[Y] by more than ``MIN_ORACLE_GAP`` (the rule for every suite)."""
    return ex.mu_y - ex.y_star > MIN_ORACLE_GAP


def total_effects(weights: np.ndarray) -> np.ndarray:
    """``T = (I - W)^-1`` of a DAG, from ``T = I + W T`` row by row in reverse topological order.

    Each row is its node's unit vector plus its children's rows times the edge coefficients (children in index
    order, plain elementwise arithmetic), so the cost is edges x nodes instead of a cubic dense solve, and the
    numbers do not depend on the BLAS/LAPACK build.
    """
    n = weights.shape[0]
    order = topological_order(weights != 0)
    if order is None:  # not a causal graph; validation refuses these before any exact quantity is needed
        return np.linalg.solve(np.eye(n) - weights, np.eye(n))
    effects = np.eye(n)
    for node in order[::-1]:
        for child in np.flatnonzero(weights[node]):
            effects[node] += weights[node, child] * effects[child]
    return effects


def exact_quantities(scm: SCM) -> ExactQuantities:
    allowed = scm.intervenable
    allowed_idx = np.flatnonzero(allowed)
    lo, hi = scm.lo[allowed_idx], scm.hi[allowed_idx]
    at_lo = scm.expected_target(allowed_idx, lo)
    at_hi = scm.expected_target(allowed_idx, hi)
    best = np.minimum(at_lo, at_hi)
    k = int(np.argmin(best))
    best_per_variable = np.full(scm.n, np.inf)
    best_per_variable[allowed_idx] = best
    mid = scm.expected_target(allowed_idx, 0.5 * (lo + hi))
    return ExactQuantities(
        mu_y=float(scm.mu[scm.target]),
        y_star=float(best[k]),
        oracle_variable=int(allowed_idx[k]),
        oracle_value=float(lo[k] if at_lo[k] <= at_hi[k] else hi[k]),
        random_value=float(mid.mean()),
        best_per_variable=best_per_variable,
    )


def oracle_quantities(scm: SCM) -> ExactQuantities:
    """The exact quantities of a nonlinear SCM, read from its stored oracle."""
    oracle = scm.oracle
    if oracle is None:
        raise ValueError(f"SCM {scm.id!r} is nonlinear and has no oracle (see oracle.with_oracle)")
    best_per_variable = np.full(scm.n, np.inf)
    for i, curve in oracle.curve.items():
        best_per_variable[i] = np.min(curve)
    return ExactQuantities(mu_y=oracle.mu_y, y_star=oracle.y_star, oracle_variable=oracle.variable,
                           oracle_value=oracle.value, random_value=oracle.random_value,
                           best_per_variable=best_per_variable)


# Compiled codes of the nonlinear functions (``sampler``): cos(u) runs as sin(u + pi/2), linear terms fold into W.
TANH, SIN, EXP, SQUARE, GAUSS = range(5)
_COMPILED_FN = {"tanh": TANH, "sin": SIN, "cos": SIN, "exp": EXP, "square": SQUARE, "gauss": GAUSS}
_COMPILED_SHIFT = {"cos": np.pi / 2}


class SCMArrays(NamedTuple):
    """An SCM (or a stack of SCMs) padded to ``n_max`` variables, ready for compiled code.

    Padded variables have zero weights, bias and noise, are not intervenable and have
    ``node_mask == False``; they stay exactly 0 in every sample. Latent variables are simulated like the others
    but have ``node_mask == False`` too: everything a method sees treats them as padding (``buffer.shown``).

    Nonlinear SCMs (suite/2) add their nonlinear terms, padded to ``K`` entries (``term_bucket``), and their
    oracle curves, padded to ``MAX_CURVE_POINTS`` per variable; ``weights`` and ``bias`` then hold the
    linear part (``linear`` terms folded in). A stack without nonlinear terms has ``K = 0`` and no curve
    points: compiled code picks the closed-form linear path from these static shapes (``sampler``), so
    suite/1 programs compute exactly what they did before terms existed.
    """

    weights: np.ndarray  # (..., N, N)
    total_effects: np.ndarray  # (..., N, N), of the linear part
    bias: np.ndarray  # (..., N)
    noise_std: np.ndarray  # (..., N)
    lo: np.ndarray  # (..., N), 0 where not intervenable
    hi: np.ndarray  # (..., N)
    intervenable: np.ndarray  # (..., N) bool
    node_mask: np.ndarray  # (..., N) bool, the variables a method sees: real and not latent
    target: np.ndarray  # (...,) int32
    parents: np.ndarray  # (..., N) bool, true parents of the target (an edge into it)
    mu: np.ndarray  # (..., N), observational means of the linear part
    mu_y: np.ndarray  # (...,)
    y_star: np.ndarray  # (...,)
    random_value: np.ndarray  # (...,)
    oracle_variable: np.ndarray  # (...,) int32
    oracle_value: np.ndarray  # (...,)
    term_parent: np.ndarray  # (..., K) int32
    term_child: np.ndarray  # (..., K) int32
    term_fn: np.ndarray  # (..., K) int32, compiled code (TANH, SIN, EXP, SQUARE, GAUSS)
    term_weight: np.ndarray  # (..., K)
    term_scale: np.ndarray  # (..., K)
    term_shift: np.ndarray  # (..., K)
    term_mask: np.ndarray  # (..., K) bool
    depth: np.ndarray  # (...,) int32, edges on the longest path: sweeps that solve the nonlinear equations
    curve_x: np.ndarray  # (..., N, P) grid of E[Y | do(X_i = v)] per variable (repeats its last point as padding)
    curve_y: np.ndarray  # (..., N, P)
    curve_slope: np.ndarray  # (..., N, P) the curve's spline slopes at the grid points (``Oracle.slope``)


def term_bucket(scms) -> int:
    """Padded nonlinear-term count for a stack of SCMs: 0 when none has nonlinear terms (the linear path),
    else the next power of two of the largest count, at least ``MIN_TERM_BUCKET``."""
    most = max((t.size for s in scms if (t := s.nonlinear_terms) is not None), default=0)
    if most == 0:
        return 0
    bucket = MIN_TERM_BUCKET
    while bucket < most:
        bucket *= 2
    return bucket


def _curves(scm: SCM, n_max: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n_max, MAX_CURVE_POINTS) grid, E[Y | do] and its spline slopes per variable: the stored oracle's, or for
    a linear SCM its closed form at the range ends (a line: exact under the spline); other variables hold mu_y
    with slope 0. Padding repeats the last point (a piece of width 0, never used for values inside the grid)."""
    ex = scm.exact()
    xs = np.zeros((n_max, MAX_CURVE_POINTS))
    ys = np.full((n_max, MAX_CURVE_POINTS), ex.mu_y)
    ds = np.zeros((n_max, MAX_CURVE_POINTS))
    for i in np.flatnonzero(scm.intervenable):
        if scm.is_linear:
            grid = np.array([scm.lo[i], scm.hi[i]])
            curve = scm.expected_target(i, grid)
            slope = spline_slopes(grid, curve)
        else:
            grid, curve, slope = scm.oracle.grid[int(i)], scm.oracle.curve[int(i)], scm.oracle.slope[int(i)]
        if len(grid) > MAX_CURVE_POINTS:
            raise ValueError(f"SCM {scm.id!r}: oracle curve of {scm.nodes[i]!r} has {len(grid)} points, "
                             f"more than {MAX_CURVE_POINTS}")
        pad = MAX_CURVE_POINTS - len(grid)
        xs[i] = np.concatenate([grid, np.full(pad, grid[-1])])
        ys[i] = np.concatenate([curve, np.full(pad, curve[-1])])
        ds[i] = np.concatenate([slope, np.full(pad, slope[-1])])
    return xs.astype(np.float32), ys.astype(np.float32), ds.astype(np.float32)


def pad_scm(scm: SCM, n_max: int, n_terms: int = 0) -> SCMArrays:
    if scm.n > n_max:
        raise ValueError(f"SCM {scm.id!r} has {scm.n} variables, more than the padded size {n_max}")
    n, pad = scm.n, n_max - scm.n

    def vec(x, fill=0.0, dtype=np.float32):
        return np.concatenate([np.asarray(x), np.full(pad, fill)]).astype(dtype)

    def mat(x):
        out = np.zeros((n_max, n_max), np.float32)
        out[:n, :n] = x
        return out

    allowed = scm.intervenable
    ex = scm.exact()
    t_full = np.eye(n_max, dtype=np.float32)
    t_full[:n, :n] = scm.total_effects
    terms = scm.nonlinear_terms
    count = 0 if terms is None else terms.size
    if count > n_terms or (count and not n_terms):
        raise ValueError(f"SCM {scm.id!r} has {count} nonlinear terms, more than the padded count {n_terms}")

    def term_vec(values, dtype):
        out = np.zeros(n_terms, dtype)
        out[:count] = values
        return out

    if count:
        names = [FUNCTIONS[f] for f in terms.fn]
        code = [_COMPILED_FN[name] for name in names]
        shift = terms.shift + np.array([_COMPILED_SHIFT.get(name, 0.0) for name in names])
    else:
        code = shift = []
    curve_x, curve_y, curve_slope = _curves(scm, n_max) if n_terms else (np.zeros((n_max, 0), np.float32),) * 3
    return SCMArrays(
        weights=mat(scm.linear_weights),
        total_effects=t_full,
        bias=vec(scm.linear_bias),
        noise_std=vec(scm.noise_std),
        lo=vec(np.where(allowed, scm.lo, 0.0)),
        hi=vec(np.where(allowed, scm.hi, 0.0)),
        intervenable=vec(allowed, False, bool),
        node_mask=vec(scm.observed, False, bool),
        target=np.int32(scm.target),
        parents=vec(scm.parents_of_target, False, bool),
        mu=vec(scm.mu),
        mu_y=np.float32(ex.mu_y),
        y_star=np.float32(ex.y_star),
        random_value=np.float32(ex.random_value),
        oracle_variable=np.int32(ex.oracle_variable),
        oracle_value=np.float32(ex.oracle_value),
        term_parent=term_vec(terms.parent if count else [], np.int32),
        term_child=term_vec(terms.child if count else [], np.int32),
        term_fn=term_vec(code, np.int32),
        term_weight=term_vec(terms.weight if count else [], np.float32),
        term_scale=term_vec(terms.scale if count else [], np.float32),
        term_shift=term_vec(shift, np.float32),
        term_mask=term_vec(np.ones(count, bool), bool),
        depth=np.int32(scm.depth if n_terms else 0),
        curve_x=curve_x,
        curve_y=curve_y,
        curve_slope=curve_slope,
    )


MIN_BUCKET = 8


def bucket_size(n_vars: int) -> int:
    """The padded node count for SCMs of up to ``n_vars`` variables: 8, 16, 32, 64, ... Training and
    evaluation pad to these shape buckets, so a handful of compiled programs serves every suite."""
    bucket = MIN_BUCKET
    while bucket < n_vars:
        bucket *= 2
    return bucket


def stack_scms(scms: list[SCM], n_max: int | None = None, n_terms: int | None = None) -> SCMArrays:
    """Pad every SCM to ``n_max`` variables (default: the largest) and ``n_terms`` nonlinear terms (default:
    ``term_bucket`` of these SCMs; pass the whole suite's so that every chunk runs in one program) and stack
    them on a leading axis."""
    n_max = n_max or max(s.n for s in scms)
    n_terms = term_bucket(scms) if n_terms is None else n_terms
    padded = [pad_scm(s, n_max, n_terms) for s in scms]
    return SCMArrays(*(np.stack(parts) for parts in zip(*padded)))
