"""Linear-Gaussian structural causal models and their exact quantities.

Model: ``x_j = b_j + sum_i W[i, j] x_i + s_j * eps_j`` with ``eps ~ N(0, 1)``.
With ``T = (I - W)^-1`` (``T[i, j]`` is the total effect of ``x_i`` on ``x_j``) the observational
means are ``mu = T^T b`` and a perfect intervention gives
``E[Y | do(X_i = v)] = mu_Y + T[i, Y] (v - mu_i)``: affine in ``v``, so every variable's best value
lies at an end of its range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

# Normalized improvement divides by the oracle gap mu_y - y*: SCMs whose best intervention improves E[Y] by no
# more than this are redrawn by the generators and refused in user suites (the ratio would be rounding noise).
MIN_ORACLE_GAP = 0.1


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
    _exact: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def n(self) -> int:
        return len(self.nodes)

    @property
    def intervenable(self) -> np.ndarray:
        return ~np.isnan(self.lo)

    @property
    def parents_of_target(self) -> np.ndarray:
        return self.weights[:, self.target] != 0.0

    @property
    def total_effects(self) -> np.ndarray:
        if "T" not in self._exact:
            self._exact["T"] = total_effects(self.weights)
        return self._exact["T"]

    @property
    def mu(self) -> np.ndarray:
        return self.total_effects.T @ self.bias

    def expected_target(self, variable: np.ndarray | int, value: np.ndarray | float) -> np.ndarray:
        """``E[Y | do(X_variable = value)]``, vectorized over variable/value arrays."""
        mu = self.mu
        t_col = self.total_effects[:, self.target]
        return mu[self.target] + t_col[variable] * (np.asarray(value) - mu[variable])

    def exact(self) -> ExactQuantities:
        if "exact" not in self._exact:
            self._exact["exact"] = exact_quantities(self)
        return self._exact["exact"]


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


def _peel(adjacency: np.ndarray) -> list[int]:
    """Kahn's algorithm: nodes in a topological order, as far as one exists (cycles stop it)."""
    children = [np.flatnonzero(row) for row in adjacency]
    indegree = adjacency.sum(axis=0)
    ready = list(np.flatnonzero(indegree == 0)[::-1])
    order = []
    while ready:
        node = ready.pop()
        order.append(int(node))
        for child in children[node]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    return order


def topological_order(adjacency: np.ndarray) -> np.ndarray | None:
    """A topological order of the graph ``adjacency[i, j]`` (edge i -> j), or None when it has a cycle."""
    adjacency = np.asarray(adjacency, bool)
    order = _peel(adjacency)
    return np.asarray(order, int) if len(order) == adjacency.shape[0] else None


def cycle_nodes(adjacency: np.ndarray) -> np.ndarray:
    """Indices of the nodes on a cycle or between cycles (empty for a DAG): what peeling sources and sinks leaves."""
    adjacency = np.asarray(adjacency, bool)
    left = np.ones(adjacency.shape[0], bool)
    left[_peel(adjacency)] = False
    left[_peel(adjacency.T)] = False
    return np.flatnonzero(left)


def reachability(adjacency: np.ndarray) -> np.ndarray:
    """Transitive closure of a DAG: ``out[i, j]`` is True when a directed path of length >= 1 leads i -> j.

    One pass in reverse topological order (each node's row is its children's rows combined), so the cost is
    (edges x nodes) / vector width rather than repeated matrix products.
    """
    adjacency = np.asarray(adjacency, bool)
    order = topological_order(adjacency)
    if order is None:
        raise ValueError("reachability: the graph has a cycle")
    reach = adjacency.copy()
    for node in order[::-1]:
        children = np.flatnonzero(adjacency[node])
        if children.size:
            reach[node] |= reach[children].any(axis=0)
    return reach


def ancestors(weights: np.ndarray, node: int) -> np.ndarray:
    """Boolean mask of the (strict) ancestors of ``node``: a walk up the parents, linear in the graph's size."""
    adjacency = np.asarray(weights) != 0
    mask = np.zeros(adjacency.shape[0], bool)
    stack = [node]
    while stack:
        for parent in np.flatnonzero(adjacency[:, stack.pop()]):
            if not mask[parent]:
                mask[parent] = True
                stack.append(parent)
    return mask


class SCMArrays(NamedTuple):
    """An SCM (or a stack of SCMs) padded to ``n_max`` variables, ready for compiled code.

    Padded variables have zero weights, bias and noise, are not intervenable and have
    ``node_mask == False``; they stay exactly 0 in every sample.
    """

    weights: np.ndarray  # (..., N, N)
    total_effects: np.ndarray  # (..., N, N)
    bias: np.ndarray  # (..., N)
    noise_std: np.ndarray  # (..., N)
    lo: np.ndarray  # (..., N), 0 where not intervenable
    hi: np.ndarray  # (..., N)
    intervenable: np.ndarray  # (..., N) bool
    node_mask: np.ndarray  # (..., N) bool
    target: np.ndarray  # (...,) int32
    parents: np.ndarray  # (..., N) bool, true parents of the target
    mu: np.ndarray  # (..., N)
    mu_y: np.ndarray  # (...,)
    y_star: np.ndarray  # (...,)
    random_value: np.ndarray  # (...,)
    oracle_variable: np.ndarray  # (...,) int32
    oracle_value: np.ndarray  # (...,)


def pad_scm(scm: SCM, n_max: int) -> SCMArrays:
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
    return SCMArrays(
        weights=mat(scm.weights),
        total_effects=t_full,
        bias=vec(scm.bias),
        noise_std=vec(scm.noise_std),
        lo=vec(np.where(allowed, scm.lo, 0.0)),
        hi=vec(np.where(allowed, scm.hi, 0.0)),
        intervenable=vec(allowed, False, bool),
        node_mask=vec(np.ones(n, bool), False, bool),
        target=np.int32(scm.target),
        parents=vec(scm.parents_of_target, False, bool),
        mu=vec(scm.mu),
        mu_y=np.float32(ex.mu_y),
        y_star=np.float32(ex.y_star),
        random_value=np.float32(ex.random_value),
        oracle_variable=np.int32(ex.oracle_variable),
        oracle_value=np.float32(ex.oracle_value),
    )


MIN_BUCKET = 8


def bucket_size(n_vars: int) -> int:
    """The padded node count for SCMs of up to ``n_vars`` variables: 8, 16, 32, 64, ... Training and
    evaluation pad to these shape buckets, so a handful of compiled programs serves every suite."""
    bucket = MIN_BUCKET
    while bucket < n_vars:
        bucket *= 2
    return bucket


def stack_scms(scms: list[SCM], n_max: int | None = None) -> SCMArrays:
    """Pad every SCM to ``n_max`` (default: the largest) and stack them on a leading axis."""
    n_max = n_max or max(s.n for s in scms)
    padded = [pad_scm(s, n_max) for s in scms]
    return SCMArrays(*(np.stack(parts) for parts in zip(*padded)))
