"""The response curves of an SCM's oracle and their interpolation.

An ``Oracle`` holds, per intervenable variable, ``E[Y | do(X_i = v)]`` on a grid over the variable's range
(``suites/oracle.py`` estimates it by Monte Carlo and stores it with the suite). Between grid points it is
interpolated with the not-a-knot cubic spline through the stored values (``spline_slopes``, ``hermite``), which
is exact on lines, so the two-point curves of linear SCMs stay exact; ``sampler.expected_target`` computes the
same in compiled code (``hermite_piece``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Points of a stored oracle curve at most (``oracle.py``: a uniform grid refined around the curve's minimum);
# compiled code pads every curve to this many points.
COARSE_POINTS = 65
REFINE_POINTS = 7  # on each side of the best coarse point, at 1/8 of the coarse spacing
MAX_CURVE_POINTS = COARSE_POINTS + 2 * REFINE_POINTS

def spline_slopes(grid: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Slopes at the knots of the not-a-knot cubic spline through ``(grid, values)`` (increasing ``grid``, both of
    shape (..., G): curves of one length at once), as ``scipy``'s ``CubicSpline`` with its default ends: what
    ``E[Y | do]`` interpolates an oracle's curve with (``hermite``). Its error is O(h^4) in the curve's fourth
    derivative where linear interpolation's is O(h^2) in its second: on the CBO toy's ``do(Z)`` curve (65 + 14
    points over [-5, 20]) 0.033% of the oracle gap against 1.3%. Two points give the line, three the
    parabola, so linear curves stay exact. Plain elementwise numpy (a tridiagonal elimination, no LAPACK): the
    numbers do not depend on the machine."""
    x, y = np.broadcast_arrays(np.asarray(grid, float), np.asarray(values, float))
    n = x.shape[-1]
    h = np.diff(x)
    s = np.diff(y) / h
    if n == 2:
        return np.stack([s[..., 0], s[..., 0]], -1)
    if n == 3:  # the parabola through the three points
        c = (s[..., 1] - s[..., 0]) / (x[..., 2] - x[..., 0])
        return np.stack([s[..., 0] - c * h[..., 0], s[..., 0] + c * h[..., 0], s[..., 1] + c * h[..., 1]], -1)
    # rows 1 .. n-2: h_i d_{i-1} + 2 (h_{i-1} + h_i) d_i + h_{i-1} d_{i+1} = 3 (h_i s_{i-1} + h_{i-1} s_i)
    sub, diag, sup = h[..., 1:], 2.0 * (h[..., :-1] + h[..., 1:]), h[..., :-1]
    rhs = 3.0 * (h[..., 1:] * s[..., :-1] + h[..., :-1] * s[..., 1:])
    # not-a-knot ends (the third derivative continuous at x_1 and x_{n-2}): row 0 is
    # h_1 d_0 + (h_0 + h_1) d_1 = r0 (mirrored at the end); subtracting it from row 1 removes d_0 and leaves a
    # diagonally dominant tridiagonal system in d_1 .. d_{n-2}
    h0, h1, hl, hm = h[..., 0], h[..., 1], h[..., -1], h[..., -2]
    r0 = ((h0 + 2.0 * (h0 + h1)) * h1 * s[..., 0] + h0**2 * s[..., 1]) / (h0 + h1)
    rn = ((hl + 2.0 * (hl + hm)) * hm * s[..., -1] + hl**2 * s[..., -2]) / (hl + hm)
    diag[..., 0] -= h0 + h1
    diag[..., -1] -= hl + hm
    rhs[..., 0] -= r0
    rhs[..., -1] -= rn
    m = n - 2
    c, d = np.zeros_like(rhs), np.zeros_like(rhs)
    c[..., 0], d[..., 0] = sup[..., 0] / diag[..., 0], rhs[..., 0] / diag[..., 0]
    for j in range(1, m):
        denom = diag[..., j] - sub[..., j] * c[..., j - 1]
        c[..., j] = sup[..., j] / denom
        d[..., j] = (rhs[..., j] - sub[..., j] * d[..., j - 1]) / denom
    slopes = np.empty_like(x)
    slopes[..., m] = d[..., m - 1]
    for j in range(m - 2, -1, -1):
        slopes[..., j + 1] = d[..., j] - c[..., j] * slopes[..., j + 2]
    slopes[..., 0] = (r0 - (h0 + h1) * slopes[..., 1]) / h1
    slopes[..., -1] = (rn - (hl + hm) * slopes[..., -2]) / hm
    return slopes


def curve_slopes(grid: dict, curve: dict) -> dict:
    """``spline_slopes`` of every curve of an oracle (variable index -> values), curves of one length at once."""
    out = {}
    for n in {len(g) for g in grid.values()}:
        keys = [i for i, g in grid.items() if len(g) == n]
        slopes = spline_slopes(np.stack([grid[i] for i in keys]), np.stack([curve[i] for i in keys]))
        out.update(zip(keys, slopes))
    return {i: out[i] for i in grid}


def hermite(value, grid: np.ndarray, values: np.ndarray, slopes: np.ndarray) -> np.ndarray:
    """The cubic Hermite interpolant of ``(grid, values)`` with ``slopes`` at the knots, at ``value`` (held at its
    end values outside the grid, as ``np.interp``). ``sampler.expected_target`` computes the same in JAX."""
    x = np.asarray(grid, float)
    v = np.clip(np.asarray(value, float), x[0], x[-1])
    k = np.clip(np.searchsorted(x, v, side="left"), 1, len(x) - 1)
    return hermite_piece(v, x[k - 1], x[k], values[k - 1], values[k], slopes[k - 1], slopes[k])


def hermite_piece(v, x0, x1, y0, y1, d0, d1, xp=np):
    """The cubic with values ``y0``, ``y1`` and slopes ``d0``, ``d1`` at ``x0 <= v <= x1`` (``x1 == x0``: ``y0``)."""
    h = x1 - x0
    t = (v - x0) / xp.where(h > 0, h, 1.0)
    t2 = t * t
    t3 = t2 * t
    return (2 * t3 - 3 * t2 + 1) * y0 + (t3 - 2 * t2 + t) * h * d0 + (3 * t2 - 2 * t3) * y1 + (t3 - t2) * h * d1


def hermite_mean(grid: np.ndarray, values: np.ndarray, slopes: np.ndarray) -> float:
    """The exact average over ``[grid[0], grid[-1]]`` of the ``hermite`` interpolant: the trapezoid rule plus each
    piece's ``h^2 (d_0 - d_1) / 12``."""
    h = np.diff(grid)
    area = (h * (values[:-1] + values[1:]) / 2 + h * h * (slopes[:-1] - slopes[1:]) / 12).sum()
    return float(area / (grid[-1] - grid[0]))


@dataclass(frozen=True)
class Oracle:
    """The exact quantities of a nonlinear SCM, estimated once (``oracle.py``) and stored with its suite.

    ``grid[i]``/``curve[i]``: ``E[Y | do(X_i = v)]`` at increasing values ``v`` spanning ``[lo_i, hi_i]``,
    for every intervenable variable ``i``; ``se[i]`` the largest standard error of ``curve - mu_y`` on it.
    ``slope[i]``: the slopes of the not-a-knot cubic spline through the curve (derived from it, never stored),
    with which ``expected_target`` interpolates it.
    """

    grid: dict  # variable index -> (G_i,) values
    curve: dict  # variable index -> (G_i,) E[Y | do]
    se: dict  # variable index -> float
    mu_y: float
    mu_y_se: float
    y_star: float
    y_star_se: float
    variable: int
    value: float
    random_value: float
    method: str
    samples: int
    replicates: int
    seed: int
    slope: dict = field(default=None, compare=False, repr=False)  # variable index -> (G_i,) spline_slopes

    def __post_init__(self):
        if self.slope is None:
            object.__setattr__(self, "slope", curve_slopes(self.grid, self.curve))

    def expected_target(self, variable, value) -> np.ndarray:
        variable, value = np.broadcast_arrays(np.asarray(variable), np.asarray(value, float))
        out = np.empty(variable.shape)
        for i in np.unique(variable):
            at = variable == i
            out[at] = hermite(value[at], self.grid[int(i)], self.curve[int(i)], self.slope[int(i)])
        return out

    @property
    def effect_se(self) -> float:
        """The largest standard error of a change ``E[Y | do] - mu_y`` (curves and the gap at the optimum)."""
        return max([self.y_star_se, *self.se.values()])
