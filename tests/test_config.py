"""The config schema: defaults are filled, bad configs are refused naming the key."""

import copy

import pytest
import yaml

from workflow_src.config import (
    ConfigError,
    evaluation_slice,
    resolve_config,
    suite_slice,
    train_slice,
)


@pytest.fixture
def raw(root):
    return yaml.safe_load((root / "config/config.yaml").read_text())


def test_named_configs_resolve_with_defaults(default_config):
    debug = default_config["experiments"]["debug"]
    assert (debug["episodes"], debug["levels"], debug["checkpoint_every"], debug["verbose"]) == (10, [1, 2], 5, True)
    quick = default_config["experiments"]["quick_test"]
    assert (quick["episodes"], quick["levels"], quick["checkpoint_every"]) == (50, [1, 2, 3], 10)
    assert quick["seeds"] == [0, 1]
    prod = default_config["experiments"]["production"]
    assert prod["episodes"] * prod["training"]["scms_per_update"] == 1000  # SCM episodes
    assert prod["levels"] == list(range(1, 11)) and prod["seeds"] == [0, 1, 2]
    assert prod["eval_suites"][:7] == [
        "heldout-L01", "heldout-L02", "heldout-L03", "heldout-L05", "heldout-L07", "heldout-L10", "heldout-classic",
    ]
    for exp in default_config["experiments"].values():
        assert exp["policy"]["name"] == "simple_permutation_invariant" and exp["policy"]["fixed_std"] == 0.5
        assert exp["training"]["learning_rate"] == 5e-4 and exp["training"]["group_size"] == 10
        weights = {k: exp["reward"][k] for k in ("target", "parent", "info_gain")}
        assert weights == {"target": 0.9, "parent": 0.1, "info_gain": 0.0}
        # the seed system's per-step groups over 30 interventions; whole trajectories of 10 by default
        steps = {"step": 30, "trajectory": 10}[exp["training"]["credit"]]
        assert (exp["training"]["n_obs"], exp["training"]["n_interventions"]) == (10, steps)


def test_minimal_config_gets_every_default():
    cfg = resolve_config({"experiments": {"mine": {"episodes": 3}}})
    assert cfg["evaluation"]["episodes"] == 10 and cfg["suites"]["pool_size"] == {"train": 64, "heldout": 32}
    assert cfg["experiments"]["mine"]["training"]["group_size"] == 10


def test_override_is_deep(raw):
    raw["experiments"]["debug"]["training"] = {"learning_rate": 0.01}
    cfg = resolve_config(raw)
    assert cfg["experiments"]["debug"]["training"]["learning_rate"] == 0.01
    assert cfg["experiments"]["debug"]["training"]["group_size"] == 10


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["experiments"]["debug"].update(trainig={}), "experiments.debug: unknown key 'trainig'"),
        (lambda c: c["experiments"]["debug"]["training"].update(lr=1) if "training" in c["experiments"]["debug"]
         else c["experiments"]["debug"].update(training={"lr": 1}), "experiments.debug.training: unknown key 'lr'"),
        (lambda c: c["experiments"]["debug"].update(episodes="ten"), "experiments.debug.episodes"),
        (lambda c: c["experiments"]["debug"].update(levels=[0, 3]), "experiments.debug.levels.0"),
        (lambda c: c["experiments"]["debug"].update(levels=[16]), "experiments.debug.levels.0"),
        (lambda c: c["evaluation"].update(episodes=0), "evaluation.episodes"),
        (lambda c: c["evaluation"].update(baselines=["magic"]), "evaluation.baselines.0"),
        (lambda c: c.update(extra=1), "(top level): unknown key 'extra'"),
        (lambda c: c["experiments"]["debug"].update(eval_suites=["heldout-L42"]), "unknown suite 'heldout-L42'"),
        (lambda c: c["suites"].update(seed_base={"train": 10, "heldout": 12}), "suites.seed_base"),
        (lambda c: c["suites"].update(user={"heldout-L01": "mine.json"}), "suites.user.heldout-L01: a user suite"),
        (lambda c: c["suites"].update(user={"heldout-classic": "mine.json"}), "suites.user.heldout-classic"),
        (lambda c: c["experiments"]["debug"].update(policy={"hidden_dim": 30, "n_heads": 4}),
         "experiments.debug.policy.hidden_dim: 30 is not divisible by policy.n_heads 4"),
        (lambda c: c["defaults"]["curriculum"].update(min_episodes_per_level=200),
         "experiments.debug.curriculum.min_episodes_per_level: 200 is above max_episodes_per_level 150"),
    ],
)
def test_bad_config_names_the_key(raw, change, message):
    bad = copy.deepcopy(raw)
    change(bad)
    with pytest.raises(ConfigError) as err:
        resolve_config(bad, "config/config.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("config/config.yaml: ")


def test_slices_are_independent(default_config):
    cfg = copy.deepcopy(default_config)
    before = (train_slice(cfg, "debug"), suite_slice(cfg, "train-L01"), evaluation_slice(cfg))
    cfg["evaluation"]["episodes"] = 3
    assert train_slice(cfg, "debug") == before[0] and suite_slice(cfg, "train-L01") == before[1]
    assert evaluation_slice(cfg) != before[2]
    cfg["experiments"]["debug"]["verbose"] = False
    assert train_slice(cfg, "debug") == before[0]
