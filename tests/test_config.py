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


def _leaves(tree: dict, prefix=()):
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def _at(tree: dict, path):
    for key in path:
        tree = tree[key]
    return tree


def test_each_experiment_is_its_overrides_on_the_defaults_on_the_schema(raw, default_config):
    """Every key an experiment sets wins; every other key is the file's ``defaults``, else the schema's."""
    from workflow_src.config import experiment_defaults

    schema_defaults = experiment_defaults()
    assert set(default_config["experiments"]) == set(raw["experiments"])
    for name, overrides in raw["experiments"].items():
        resolved = default_config["experiments"][name]
        for path, value in _leaves(resolved):
            for source in (overrides, raw.get("defaults", {}), schema_defaults):
                try:
                    expected = _at(source, path)
                except (KeyError, TypeError):
                    continue
                assert value == expected, (name, path)
                break
            else:
                raise AssertionError(f"{name}: {'.'.join(path)} comes from nowhere")
        for source in (overrides, raw.get("defaults", {}), schema_defaults):  # and no key is lost
            for path, _ in _leaves(source):
                _at(resolved, path)


def test_the_archived_configs_extend_the_main_file_through_snakemake(root, raw, tmp_path):
    """config/archive.yaml holds only experiments, none named as in config/config.yaml, and Snakemake's
    `--configfile` merges them into the main file's: each one plans like a config of its own."""
    from conftest import copy_workflow, planned_jobs

    archive = yaml.safe_load((root / "config/archive.yaml").read_text())
    assert set(archive) == {"experiments"}
    assert not set(archive["experiments"]) & set(raw["experiments"])
    merged = resolve_config({**raw, "experiments": {**raw["experiments"], **archive["experiments"]}})
    for name in archive["experiments"]:
        assert train_slice(merged, name)["episodes"] > 0
    jobs = planned_jobs(copy_workflow(tmp_path), "results/mixed_network_alone/summary.html",
                        extra=("--configfile", "config/archive.yaml"))
    assert jobs["train"] == len(archive["experiments"]["mixed_network_alone"]["seeds"])


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
        (lambda c: c.update(defaults={"curriculum": {"min_episodes_per_level": 200}}),
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


def test_the_canonical_slice_drops_exactly_the_legacy_defaults_and_a_spec_gets_them_back(default_config):
    """Keys added to the training slice later are left out of its hash and ``--spec`` while they hold what they
    meant before they existed; a received slice is filled back to the form the code reads."""
    from types import SimpleNamespace

    from workflow_src.cli_args import stage_spec
    from workflow_src.config import canonical_json, stage_slice
    from workflow_src.config_schema import LEGACY_DEFAULTS, canonical_slice, complete_slice

    full = train_slice(default_config, "debug")
    canonical = stage_slice("train", default_config, "debug")
    legacy = LEGACY_DEFAULTS["train"]
    assert {path for path in legacy if _at(full, path) == legacy[path]} == set(legacy)  # debug: every one legacy
    assert not any(path[-1] in _at(canonical, path[:-1]) for path in legacy)
    assert complete_slice("train", canonical) == full
    assert stage_spec(SimpleNamespace(spec=canonical_json(canonical)), "train") == full
    floored = {**full, "training": {**full["training"], "advantage_std_floor": 0.05}}
    assert canonical_slice("train", floored)["training"]["advantage_std_floor"] == 0.05  # another value is kept
    with pytest.raises(TypeError):
        legacy[("policy", "curve_features")] = True  # frozen


def test_the_schema_names_exactly_the_registered_methods():
    """The config's method names are the registry's: a method is registered once, the schema follows it."""
    from workflow_src.config_schema import config_schema
    from workflow_src.evaluate.registry import BASELINES, METHODS, POLICY_MODES, POLICY_PREFIX, policy_method

    evaluation = config_schema()["properties"]["evaluation"]["properties"]
    assert sorted(evaluation["baselines"]["items"]["enum"]) == sorted(BASELINES)
    assert sorted(evaluation["policy_modes"]["items"]["enum"]) == sorted(POLICY_MODES)
    assert evaluation["plugins"]["propertyNames"]["not"]["pattern"] == f"^{POLICY_PREFIX}"
    assert set(METHODS) == set(BASELINES) | {policy_method(mode) for mode in POLICY_MODES}
