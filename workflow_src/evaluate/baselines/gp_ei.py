"""``gp_ei``: Bayesian optimization with a plain GP per variable and expected improvement, in the common
interface: ``causal_bo`` without its causal prior (``core.response_gp`` with ``causal=False``: a constant prior
mean, the observational mean of Y, and no prior uncertainty in the kernel; everything else is shared), so a
study shows what the causal prior is worth, as CBO's authors report it.

Deterministic (it ignores its key), jittable, static shapes; it sees only the problem view.
"""

from __future__ import annotations

from ...core import response_gp
from ..rollout import StepView


def act(_, view: StepView, key):
    return response_gp.choose(view.scm, view.buffer, view.fit, causal=False)
