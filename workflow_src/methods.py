"""Intervention-selection methods behind one interface: ``act(method_params, view, key) -> (variable, value)``.

Every method plugs into the same compiled protocol (``rollout``). The trained policy gives two methods:
``policy_greedy`` (the most likely variable at its mean value) and ``policy_sampled`` (a draw from the
policy). The non-learned baselines live in ``baselines``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import NamedTuple

import jax

from .rollout import Act, StepView
from .sampler import per_variable_categorical

POLICY_MODES = ("greedy", "sampled")


class Method(NamedTuple):
    name: str
    act: Act
    needs_policy: bool = False
    # what ``act``'s traced program depends on beyond this package's source (``program_store``); None: the
    # program is traced in every job and never stored (a plug-in, whose file may import code of its own)
    program_id: str | None = None


def make_policy_act(policy, fixed_std: float, greedy: bool) -> Act:
    from .policy import act_outputs, greedy_action, policy_observation, squash  # flax: policy jobs only

    def act(params, view: StepView, key):
        logits, mu = act_outputs(policy, params, policy_observation(policy, view.scm, view.buffer, view.fit))
        if greedy:
            variable, u = greedy_action(logits, mu)
        else:
            # the policy's distribution, drawn padding-invariantly (the same numbers in every shape bucket)
            k_var, k_u = jax.random.split(key)
            variable = per_variable_categorical(k_var, logits)
            u = mu[variable] + fixed_std * jax.random.normal(k_u)
        return variable, squash(view.scm, variable, u)

    return act


def policy_methods(policy, fixed_std: float, modes) -> list[Method]:
    unknown = [m for m in modes if m not in POLICY_MODES]
    if unknown:
        raise ValueError(f"unknown method {', '.join(map(repr, unknown))} (policy modes: {', '.join(POLICY_MODES)})")
    # the network's every attribute (Flax module fields; parent and name are bookkeeping) and the value noise
    fields = {f.name: getattr(policy, f.name) for f in dataclasses.fields(policy) if f.name not in ("parent", "name")}
    network = f"{type(policy).__name__} {json.dumps(fields, sort_keys=True, default=repr)} fixed_std={fixed_std!r}"
    return [Method(f"policy_{mode}", make_policy_act(policy, fixed_std, mode == "greedy"), True,
                   f"policy_{mode} {network}") for mode in modes]
