"""Intervention-selection methods behind one interface: ``act(method_params, view, key) -> (variable, value)``.

Every method plugs into the same compiled protocol (``rollout``). The trained checkpoint gives a method per
mode: ``policy_greedy`` (the most likely variable at its mean value), ``policy_sampled`` (a draw from the
policy) and, with a response model, ``policy_amortized_ei`` and ``policy_amortized_lcb`` (the response model's
expected improvement, or its lower confidence bound, no policy). The non-learned baselines live in
``baselines``, one file each; ``registry`` names every built-in.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..core.sampler import per_variable_categorical
from ..policy.spec import architecture
from .registry import POLICY_MODES, RESPONSE_MODEL_MODES, policy_method
from .rollout import Act, StepView


class Method(NamedTuple):
    name: str
    act: Act
    needs_policy: bool = False
    # what ``act``'s traced program depends on beyond this package's source (``program_store``); None: the
    # program is traced in every job and never stored (a plug-in, whose file may import code of its own)
    program_id: str | None = None
    reads_truth: bool = False  # its view holds the whole SCM, not only the problem: the oracle alone


def make_policy_act(policy_config: dict, mode: str, source: str) -> Act:
    """The policy's ``act`` in ``mode``. The network is built, and the parameters checked against it, when the
    program is traced: a job that loads its program from the store never imports Flax."""
    fixed_std = policy_config["fixed_std"]

    def act(params, view: StepView, key):
        from ..policy.distribution import greedy_action, squash
        from ..policy.network import (
            check_params,
            make_policy,
            policy_inputs,
            policy_observation,
            response_acquisition,
            response_search,
        )
        from ..policy.response_model import LCB_KAPPA, lower_confidence_bound

        policy = make_policy(policy_config)
        check_params(policy, params, source)
        if mode in RESPONSE_MODEL_MODES:  # the response model's acquisition alone, no policy
            obs = policy_observation(policy, view.scm, view.buffer, view.fit)
            found = response_acquisition(policy, params, obs) if mode == "amortized_ei" else response_search(
                policy, params, obs, lambda predict: lower_confidence_bound(predict, obs, LCB_KAPPA))
            variable = jnp.argmax(found[:, 0])
            lo, hi = view.scm.lo[variable], view.scm.hi[variable]
            return variable, lo + found[variable, 1] * (hi - lo)
        out = policy.apply(params, policy_inputs(policy, params, view.scm, view.buffer, view.fit))
        if mode == "greedy":
            variable, u = greedy_action(out.logits, out.mu)
        else:
            # the policy's distribution, drawn padding-invariantly (the same numbers in every shape bucket)
            k_var, k_u = jax.random.split(key)
            variable = per_variable_categorical(k_var, out.logits)
            u = out.mu[variable] + fixed_std * jax.random.normal(k_u)
        return variable, squash(view.scm, variable, u)

    return act


def policy_methods(policy_config: dict, modes, source: str = "policy parameters",
                   skip_unavailable: bool = False) -> list[Method]:
    """The policy of ``policy_config`` (``policy_spec.POLICY_KEYS``) in each of ``modes``; ``source`` names its
    parameters (a checkpoint file) in the error that refuses them. A mode the network cannot give (``amortized_ei``
    without a response model) is refused, or left out with ``skip_unavailable`` (modes from the config, which
    serve every experiment)."""
    unknown = [m for m in modes if m not in POLICY_MODES]
    if unknown:
        raise ValueError(f"unknown method {', '.join(map(repr, unknown))} (policy modes: {', '.join(POLICY_MODES)})")
    if not policy_config["response_model"]:
        needing = [m for m in modes if m in RESPONSE_MODEL_MODES]
        if needing and not skip_unavailable:
            raise ValueError(f"{source}: {', '.join(map(policy_method, needing))} needs a response model, and this "
                             "checkpoint has none (policy.response_model: false)")
        modes = [m for m in modes if m not in needing]
    # the network's every setting (with the value noise) and the inputs it reads
    network = json.dumps(architecture(policy_config), sort_keys=True)
    return [Method(policy_method(mode), make_policy_act(policy_config, mode, source), True,
                   f"{policy_method(mode)} {network}") for mode in modes]
