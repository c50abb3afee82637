"""The mechanism family of ``acbo-suite/2`` in numpy (float64): evaluation and bounds on reachable values.

A term ``{"fn": F, "weight": w, "scale": a, "shift": c}`` of an edge ``i -> j`` adds ``w * F(a * x_i + c)``
to ``x_j``, with ``F`` one of ``scm.FUNCTIONS``: ``linear`` (u), ``tanh``, ``sin``, ``cos``, ``exp``,
``square`` (u^2) and ``gauss`` (exp(-u^2 / 2)). ``value_bounds`` propagates intervals through the graph
(every noise draw within ``NOISE_REACH`` standard deviations, every intervenable variable anywhere in its
range) so validation can refuse what the compiled float32 path could not run.
"""

from __future__ import annotations

import numpy as np

from .graph import topological_order
from .scm import FUNCTIONS, SCM

NOISE_REACH = 10.0  # noise draws counted (in standard deviations) when bounding the values a variable can take

_NUMPY = {
    "linear": lambda u: u,
    "tanh": np.tanh,
    "sin": np.sin,
    "cos": np.cos,
    "exp": np.exp,
    "square": lambda u: u * u,
    "gauss": lambda u: np.exp(-0.5 * u * u),
}
FUNCTIONS_NUMPY = tuple(_NUMPY[name] for name in FUNCTIONS)


def term_value(fn: int, weight: float, scale: float, shift: float, x: np.ndarray) -> np.ndarray:
    return weight * FUNCTIONS_NUMPY[fn](scale * x + shift)


def _image(name: str, lo: float, hi: float) -> tuple[float, float]:
    """An interval holding ``F(u)`` for every ``u`` in ``[lo, hi]``."""
    if name == "linear":
        return lo, hi
    if name == "tanh":
        return float(np.tanh(lo)), float(np.tanh(hi))
    if name in ("sin", "cos"):
        return -1.0, 1.0
    if name == "exp":
        return float(np.exp(lo)), float(np.exp(hi))
    if name == "square":
        low = 0.0 if lo <= 0.0 <= hi else min(lo * lo, hi * hi)
        return low, max(lo * lo, hi * hi)
    if name == "gauss":
        far = max(abs(lo), abs(hi))
        near = 0.0 if lo <= 0.0 <= hi else min(abs(lo), abs(hi))
        return float(np.exp(-0.5 * far * far)), float(np.exp(-0.5 * near * near))
    raise ValueError(f"unknown function {name!r}")


def _scaled(lo, hi, factor, offset=0.0):
    ends = (lo * factor, hi * factor)
    return min(ends) + offset, max(ends) + offset


def value_bounds(scm: SCM, on_term=None) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) per node: every value it can take with noise within ``NOISE_REACH`` standard deviations and
    any interventions within the ranges. ``on_term(k, u_lo, u_hi)`` sees each term's input interval."""
    adjacency = scm.adjacency
    order = topological_order(adjacency)
    lo, hi = np.zeros(scm.n), np.zeros(scm.n)
    terms = scm.terms
    by_child = {} if terms is None else {j: np.flatnonzero(terms.child == j) for j in range(scm.n)}
    with np.errstate(all="ignore"):
        for j in order:
            a = scm.bias[j] - NOISE_REACH * scm.noise_std[j]
            b = scm.bias[j] + NOISE_REACH * scm.noise_std[j]
            for i in np.flatnonzero(scm.weights[:, j]):
                da, db = _scaled(lo[i], hi[i], scm.weights[i, j])
                a, b = a + da, b + db
            for k in by_child.get(j, ()):
                i = terms.parent[k]
                u_lo, u_hi = _scaled(lo[i], hi[i], terms.scale[k], terms.shift[k])
                if on_term is not None:
                    on_term(int(k), u_lo, u_hi)
                f_lo, f_hi = _image(FUNCTIONS[terms.fn[k]], u_lo, u_hi)
                da, db = _scaled(f_lo, f_hi, terms.weight[k])
                a, b = a + da, b + db
            if scm.intervenable[j]:
                a, b = min(a, scm.lo[j]), max(b, scm.hi[j])
            lo[j], hi[j] = a, b
    return lo, hi
