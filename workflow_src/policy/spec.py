"""The policy network's description: the settings that build it, the inputs it reads and the record of both
that a checkpoint keeps, checked without Flax or JAX.

An evaluation job whose program is in the program store never builds the network (``methods``): it reads
the checkpoint's record and parameters with this module and ``checkpoint`` alone, and skips Flax's import and
the tracing of the network's initialization (0.25 s of a warm 1.6 s job).
"""

from __future__ import annotations

from ..config_schema import complete_slice

POLICY_NAMES = ("simple_permutation_invariant",)
POLICY_KEYS = ("name", "hidden_dim", "n_heads", "n_layers", "fixed_std", "bandit_features", "effect_head", "prior")
# settings added later, recorded in a checkpoint only when on: a network without them has the record (and the
# program-store identity) it had before they existed
OPTIONAL_KEYS = ("curve_features", "budget_feature", "response_model", "response_lines", "response_trend")
PRIORS = ("none", "marginal_regression", "interventional_regression", "response_gp", "response_gp_ei", "amortized_ei")
GP_PRIORS = ("response_gp", "response_gp_ei")  # priors read from the response-curve GP's posterior
SAMPLE_CHANNELS = 7
BASE_VARIABLE_CHANNELS = 9
BANDIT_CHANNELS = 6  # per variable: interventions on it, two regressions' predictions at both ends, best outcome
CURVE_POINTS = 5  # per variable: the response-curve GP's posterior at this many values across the range
CURVE_CHANNELS = 2 * CURVE_POINTS  # its mean and standard deviation at each
BUDGET_CHANNELS = 1  # the share of the episode's interventions still to come


def variable_channels(bandit_features: bool, curves: bool = False, budget: bool = False) -> int:
    return (BASE_VARIABLE_CHANNELS + (BANDIT_CHANNELS if bandit_features else 0) + (CURVE_CHANNELS if curves else 0)
            + (BUDGET_CHANNELS if budget else 0))


def architecture(policy_config: dict) -> dict:
    """What a checkpoint records to rebuild the network (and to refuse a mismatching one): the settings, and the
    input layout (channel counts; with curve inputs, their number of points per variable)."""
    curves, budget = policy_config["curve_features"], policy_config["budget_feature"]
    settings = {k: v for k, v in policy_config.items() if k not in OPTIONAL_KEYS}
    layout = {"curve_features": True, "curve_points": CURVE_POINTS} if curves else {}
    if budget:
        layout["budget_feature"] = True
    if policy_config["response_model"]:
        layout["response_model"] = True
    for key in ("response_lines", "response_trend"):
        if policy_config[key]:
            layout[key] = True
    return {**settings, **layout, "sample_channels": SAMPLE_CHANNELS,
            "variable_channels": variable_channels(policy_config["bandit_features"], curves, budget)}


def check_policy_config(policy_config: dict) -> None:
    """Raise ``ValueError`` for a network this code cannot build."""
    if policy_config["name"] not in POLICY_NAMES:
        raise ValueError(f"unknown policy {policy_config['name']!r}")
    if policy_config["prior"] not in PRIORS:
        raise ValueError(f"unknown prior {policy_config['prior']!r} (one of {', '.join(PRIORS)})")
    if policy_config["prior"] == "amortized_ei" and not policy_config["response_model"]:
        raise ValueError("prior amortized_ei needs the response model (policy.response_model: true)")
    if policy_config["response_lines"] and not policy_config["response_model"]:
        raise ValueError("response_lines are inputs of the response model (policy.response_model: true)")
    if policy_config["response_trend"] and not policy_config["response_model"]:
        raise ValueError("response_trend is part of the response model (policy.response_model: true)")


def policy_config_of(arch) -> dict:
    """The settings recorded in a checkpoint's ``architecture``, checked against this version's network;
    ``ValueError`` names what does not match."""
    if not isinstance(arch, dict):
        raise ValueError(f"architecture: expected a JSON object, got {arch!r:.80}")
    policy_config = {k: arch.get(k) for k in POLICY_KEYS}
    if None in policy_config.values():
        raise ValueError(f"architecture: {arch} does not match this version's policy inputs "
                         f"({architecture(policy_config)})")
    # those recorded only when on: the training slice's legacy defaults otherwise
    policy_config = complete_slice("train", {"policy": {**policy_config, **{k: arch[k] for k in OPTIONAL_KEYS
                                                                              if k in arch}}})["policy"]
    if arch != architecture(policy_config):
        raise ValueError(f"architecture: {arch} does not match this version's policy inputs "
                         f"({architecture(policy_config)})")
    try:
        check_policy_config(policy_config)
    except ValueError as exc:
        raise ValueError(f"architecture: {exc}") from None
    return policy_config
