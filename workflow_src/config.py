"""Loading, validating and resolving the workflow configuration.

The config file holds named experiment configs that override shared ``defaults``, the settings of
generated suites, and one global evaluation protocol. ``resolve_config`` validates it against the JSON
Schema shipped in the package (filling defaults, refusing unknown keys with a message naming the key)
and returns every experiment fully merged. The ``*_slice`` helpers give each stage exactly the part of
the config it depends on, as canonical JSON, so that Snakemake reruns exactly what a change made stale (the
stages and their slices' schemas: ``stages``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from pathlib import Path

import jsonschema
import yaml

from .config_schema import canonical_slice, config_schema, load_yaml, n_levels
from .errors import ConfigError
from .paths import CHECKPOINTS, DEFAULT_CONFIG, RESULTS, suite_file
from .stages import STAGES, slice_schema
from .suite_catalogue import FIXED_SUITES, GENERATED_NAMES, built_in_name, kind_of


def experiment_defaults() -> dict:
    """The built-in experiment settings: the schema's default of ``defaults`` (their one home)."""
    return copy.deepcopy(config_schema()["properties"]["defaults"]["default"])


def _with_defaults(validator_class):
    """A validator class that also fills ``default`` values of missing properties."""
    check_properties = validator_class.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if validator.is_type(instance, "object"):
            for name, sub in props.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from check_properties(validator, props, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": properties})


def describe_error(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - known)
        return f"{where}: unknown key {', '.join(map(repr, unknown))} (allowed: {', '.join(sorted(known))})"
    return f"{where}: {error.message}"


def validate_config(raw: dict, source: str = "config") -> dict:
    """Validate against the schema and fill schema defaults; raise ``ConfigError`` naming every bad key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the config must be a mapping")
    doc = copy.deepcopy(raw)
    validator = _with_defaults(jsonschema.Draft202012Validator)(config_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        raise ConfigError("\n".join(f"{source}: {describe_error(e)}" for e in errors))
    return doc


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def known_suite(name: str, cfg: dict) -> bool:
    return kind_of(name, cfg) is not None


def _check_experiment(where: str, exp: dict) -> None:
    """What the schema cannot say: relations between keys of one (merged) experiment."""
    policy, cur = exp["policy"], exp["curriculum"]
    if policy["hidden_dim"] % policy["n_heads"]:
        raise ConfigError(f"{where}.policy.hidden_dim: {policy['hidden_dim']} is not divisible by "
                          f"policy.n_heads {policy['n_heads']} (attention splits it into equal heads)")
    if cur["min_episodes_per_level"] > cur["max_episodes_per_level"]:
        raise ConfigError(f"{where}.curriculum.min_episodes_per_level: {cur['min_episodes_per_level']} is above "
                          f"max_episodes_per_level {cur['max_episodes_per_level']}")


# settings that need another one on: (section, key, its "on" test) -> (section, key) that must be true
NEEDS = (
    (("training", "effect_coef"), lambda v: v > 0, ("policy", "effect_head")),
    (("training", "response_steps"), lambda v: v > 0, ("policy", "response_model")),
    (("training", "response_coef"), lambda v: v > 0, ("policy", "response_model")),
    (("training", "anchor_coef"), lambda v: v > 0, ("policy", "response_model")),
    (("policy", "prior"), lambda v: v == "amortized_ei", ("policy", "response_model")),
    (("policy", "response_lines"), bool, ("policy", "response_model")),
    (("policy", "response_trend"), bool, ("policy", "response_model")),
    (("training", "response_states"), lambda v: v > 0, ("training", "response_coef")),
)


def _check_needs(where: str, exp: dict) -> None:
    for (section, key), on, (needs_section, needs_key) in NEEDS:
        needed = exp[needs_section][needs_key]
        if on(exp[section][key]) and not needed:
            on_value = ": true" if isinstance(needed, bool) else " above 0"
            raise ConfigError(f"{where}.{section}.{key}: {exp[section][key]!r} needs {needs_section}.{needs_key}"
                              f"{on_value}")


def resolve_config(raw: dict, source: str = "config") -> dict:
    """Validate and merge: every experiment gets ``defaults`` (built-in, then the file's) under it."""
    doc = validate_config(raw, source)
    defaults = deep_merge(experiment_defaults(), doc.get("defaults", {}))
    doc["experiments"] = {name: deep_merge(defaults, exp) for name, exp in doc["experiments"].items()}
    doc["defaults"] = defaults
    for name, exp in doc["experiments"].items():
        _check_needs(f"{source}: experiments.{name}", exp)
        for suite in exp["eval_suites"]:
            if not known_suite(suite, doc):
                raise ConfigError(f"{source}: experiments.{name}.eval_suites: unknown suite {suite!r}")
    for name, exp in doc["experiments"].items():
        _check_experiment(f"{source}: experiments.{name}", exp)
    for name in doc["suites"]["user"]:
        if built_in_name(name):
            raise ConfigError(f"{source}: suites.user.{name}: a user suite may not take the name of a generated suite "
                              f"({GENERATED_NAMES}, {', '.join(FIXED_SUITES)})")
    plugins = doc["evaluation"]["plugins"]
    builtin = config_schema()["properties"]["evaluation"]["properties"]["baselines"]["items"]["enum"]
    for name, entry in plugins.items():
        if name in builtin:
            raise ConfigError(f"{source}: evaluation.plugins: {name!r} is the name of a built-in baseline")
        plugins[name] = {"file": entry, "settings": {}} if isinstance(entry, str) else {"settings": {}, **entry}
    base = doc["suites"]["seed_base"]
    keys = sorted(base)
    for k, a in enumerate(keys):
        for b in keys[k + 1:]:
            if abs(base[a] - base[b]) < n_levels() + 1:
                raise ConfigError(f"{source}: suites.seed_base: the {a} and {b} bases must differ by more than "
                                  f"{n_levels()} (suite seed = base + level: every suite's seed is its own)")
    return doc


def packaged_config() -> dict:
    """The configuration of the schema's defaults alone (one placeholder experiment): the packaged protocol."""
    return resolve_config({"experiments": {"default": {}}}, source="packaged defaults")


def load_config_or_packaged(path: str | Path | None, command: str) -> dict:
    """``path``, else ``config/config.yaml`` when this folder has one, else the packaged default protocol
    (said in one line on stderr), so that the evaluation commands work from any folder."""
    if path is None:
        if not Path(DEFAULT_CONFIG).is_file():
            print(f"acbo {command}: no {DEFAULT_CONFIG} in {Path.cwd()}: using the packaged default protocol",
                  file=sys.stderr)
            return packaged_config()
        path = DEFAULT_CONFIG
    return load_config(path)


def load_config(path: str | Path = DEFAULT_CONFIG) -> dict:
    path = Path(path)
    try:
        raw = load_yaml(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a config file (not UTF-8 text; was it overwritten by a table?)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return resolve_config(raw, str(path))


def check_user_suite_files(cfg: dict, source: str = "config") -> None:
    """Every file named under ``suites.user`` exists and lies outside the workflow's outputs (checked when the
    workflow is parsed): a file in ``results/`` would be (or be replaced by) the validated copy a suite rule
    writes there, so it would be read unvalidated, or lost."""
    outputs = [Path(folder).resolve() for folder in (RESULTS, CHECKPOINTS)]
    for name, path in cfg["suites"]["user"].items():
        if not Path(path).is_file():
            raise ConfigError(f"{source}: suites.user.{name}: no suite file {path!r} (relative to {Path.cwd()})")
        inside = [folder for folder in outputs if Path(path).resolve().is_relative_to(folder)]
        if inside:
            raise ConfigError(f"{source}: suites.user.{name}: {path!r} is inside {inside[0].name}/, where the workflow "
                              f"writes its outputs (its validated copy goes to {suite_file(name)}): keep user suites "
                              "elsewhere")


def check_plugin_files(cfg: dict, source: str = "config") -> None:
    """Every plug-in file named under ``evaluation.plugins`` exists (checked when the workflow is parsed)."""
    for name, entry in cfg["evaluation"]["plugins"].items():
        if not Path(entry["file"]).is_file():
            raise ConfigError(f"{source}: evaluation.plugins.{name}: no plug-in file {entry['file']!r} "
                              f"(relative to {Path.cwd()})")


def experiment(cfg: dict, name: str) -> dict:
    try:
        return cfg["experiments"][name]
    except KeyError:
        raise ConfigError(f"unknown experiment config {name!r} (known: {', '.join(cfg['experiments'])})") from None


def check_option(option: str, value, definition: str) -> None:
    """Refuse a command-line value that the config schema's ``$defs`` entry ``definition`` refuses."""
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator({**config_schema()["$defs"][definition],
                                         "$defs": config_schema()["$defs"]}).iter_errors(value))
    if error is not None:
        raise ConfigError(f"{option}: {error.message}")


# --- canonical slices: what each stage depends on ---------------------------------------------------


def stage_slice(stage: str, cfg: dict, key: str | None = None) -> dict:
    """The config slice of ``stage`` (``stages.STAGES``) for ``key``, the value of its rule's wildcard, in its
    canonical form (``config_schema.canonical_slice``): what rules pass as ``--spec`` and hashes cover."""
    entry = STAGES[stage]
    slice_of = globals()[entry.slice]
    return canonical_slice(stage, slice_of(cfg, key) if entry.wildcard else slice_of(cfg))


def spec_keys(stage: str) -> set[str]:
    """The keys every ``--spec`` of ``stage`` must hold."""
    entry = STAGES[stage]
    return set(entry.spec_keys or stage_slice(stage, packaged_config(), "default")) - set(entry.unchecked)


def validate_slice(stage: str, spec: dict, source: str = "--spec") -> dict:
    """Refuse a stage's slice whose values the config schema would refuse (one line per problem)."""
    validator = jsonschema.Draft202012Validator(slice_schema(stage, spec))
    errors = sorted(validator.iter_errors(spec), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        raise ConfigError("\n".join(f"{source}: {describe_error(e)}" for e in errors))
    return spec


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def digest(obj) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:16]


def suite_slice(cfg: dict, suite: str) -> dict:
    """Settings that determine one suite file (``suite_catalogue``: its kind's slice)."""
    kind = kind_of(suite, cfg)
    if kind is None:
        raise ConfigError(
            f"unknown suite {suite!r} (expected {GENERATED_NAMES} with NN in 01..{n_levels()}, "
            f"{', '.join(FIXED_SUITES)}, or a name under suites.user)"
        )
    return kind.slice(cfg, suite)


def train_slice(cfg: dict, name: str) -> dict:
    """Settings that determine a training run (seeds are a wildcard; logging and evaluation are not here)."""
    exp = experiment(cfg, name)
    return {k: v for k, v in exp.items() if k not in ("description", "seeds", "eval_suites", "verbose")}


def evaluation_keys(cfg: dict, stage: str) -> dict:
    """The ``evaluation`` settings ``stage`` depends on (``stages.Stage.keys``)."""
    return {k: cfg["evaluation"][k] for k in STAGES[stage].keys}


def evaluation_slice(cfg: dict) -> dict:
    """The evaluation protocol of the trained policy."""
    return evaluation_keys(cfg, "evaluate")


def baselines_slice(cfg: dict) -> dict:
    return evaluation_keys(cfg, "baselines")


def plugin_slice(cfg: dict, name: str) -> dict:
    """The protocol and one plug-in's entry (its file's hash is a separate rule param)."""
    ev = cfg["evaluation"]
    try:
        entry = ev["plugins"][name]
    except KeyError:
        known = ", ".join(ev["plugins"]) or "none"
        raise ConfigError(f"unknown plug-in {name!r} (evaluation.plugins: {known})") from None
    return {**evaluation_keys(cfg, "plugin"), "name": name, **entry}


def response_quality_slice(cfg: dict) -> dict:
    """The protocol of the response model measured as a model (``evaluate.response_eval``)."""
    return evaluation_keys(cfg, "response_quality")


def has_response_model(cfg: dict, name: str) -> bool:
    """Whether experiment ``name``'s policy has a response model (its checkpoints are measured as a model)."""
    return bool(experiment(cfg, name)["policy"]["response_model"])


def summary_slice(cfg: dict, name: str) -> dict:
    exp = experiment(cfg, name)
    ev = cfg["evaluation"]
    return {
        "config": name,
        "response_model": exp["policy"]["response_model"],  # left out when false (``LEGACY_DEFAULTS``)
        "seeds": exp["seeds"],
        "eval_suites": exp["eval_suites"],
        **({"plugins": sorted(ev["plugins"])} if ev["plugins"] else {}),
        **evaluation_keys(cfg, "summary"),
        "train_config_hash": digest(stage_slice("train", cfg, name)),  # final.ckpt headers must carry this hash
    }
