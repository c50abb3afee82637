"""Every built-in method, registered once: its name, what it is, its colour on every chart, and where its
``act`` lives. Imports nothing heavy, so the report reads it without JAX.

A baseline is one file in ``baselines/`` that defines ``act(settings, view, key) -> (variable, value)``, the
interface of a user's plug-in (``plugins``), plus one ``Registration`` here. The trained policy gives one method
per mode, named ``POLICY_PREFIX + mode``; every other method in a table is a baseline or a plug-in.
"""

from __future__ import annotations

from typing import NamedTuple

POLICY_PREFIX = "policy_"
POLICY_MODES = ("greedy", "sampled", "amortized_ei", "amortized_lcb")
RESPONSE_MODEL_MODES = ("amortized_ei", "amortized_lcb")  # modes only a checkpoint with a response model gives


class Registration(NamedTuple):
    name: str
    note: str  # one line for the summary page's method table
    color: str  # the method's fixed colour on every chart
    module: str | None = None  # the module of ``baselines`` that defines its ``act`` (None: a policy mode)
    reads_truth: bool = False  # sees the SCM's truth (``core.problem``): the oracle, the upper bound, alone


def policy_method(mode: str) -> str:
    return POLICY_PREFIX + mode


def is_policy(method: str) -> bool:
    return method.startswith(POLICY_PREFIX)


# the learned policy in blues/purples, heuristics warm, the oracle green, random grey; this order is the charts'
REGISTRATIONS = (
    Registration(policy_method("greedy"), "the trained policy, taking its most likely action (mode) at each step",
                 "#1f5fbf"),
    Registration(policy_method("sampled"), "the trained policy, sampling its action at each step", "#8e44ad"),
    Registration(policy_method("amortized_ei"), "the checkpoint's response model (learned from the simulator) with "
                 "expected improvement, no reinforcement learning", "#17becf"),
    Registration(policy_method("amortized_lcb"), "the checkpoint's response model with a lower confidence bound "
                 "(mean - 1 sd), no reinforcement learning", "#0b6e79"),
    Registration("oracle", "knows the SCM and always takes the best intervention (the upper bound)", "#2a9d3a",
                 "oracle", reads_truth=True),
    Registration("marginal_regression", "regresses the target on each variable and extrapolates to the range ends",
                 "#e67e22", "marginal_regression"),
    Registration("thompson_bandit", "a Thompson-sampling linear bandit over the intervenable variables", "#c0392b",
                 "thompson_bandit"),
    Registration("causal_bo", "causal Bayesian optimization (CBO): per variable a GP around the do-calculus prior "
                 "from the observational data, expected improvement over each range", "#d4a017", "causal_bo"),
    Registration("gp_ei", "causal_bo without the causal prior: per variable a plain GP, expected improvement",
                 "#7f6000", "gp_ei"),
    Registration("random", "a random variable at a uniformly random value (the reference every method must beat)",
                 "#8a8a8a", "random"),
)
METHODS = {r.name: r for r in REGISTRATIONS}
BASELINES = tuple(r.name for r in REGISTRATIONS if r.module)
