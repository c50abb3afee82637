"""Every stage of the workflow, registered once: the modules its command runs (their code is the stage's code
hash, ``provenance.code_hash``), the config slice its jobs depend on (a function of ``config``) and the rule
wildcard it is per, that slice's JSON Schema, and the keys every ``--spec`` for it must hold. The rules
(``rules/common.smk``), ``config.stage_slice`` and ``config.validate_slice``, the CLI's ``--spec`` parser
(``cli_args.stage_spec``) and the training checkpoint's code hash read this table. Imports nothing heavy (no
``config``): training's code hash covers it.

A slice's schema is made of the config schema's own definitions: the same bounds and types as in the config
file, every key required except those a slice may leave out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from .config_schema import config_schema
from .suite_catalogue import kind_of_slice

# the evaluation protocol: in every evaluating stage's slice
PROTOCOL = ("episodes", "min_suite_episodes", "interventions", "n_obs", "seed")
NAME = {"type": "string", "minLength": 1}


def _evaluation(root: dict, *keys: str) -> dict:
    """The config schema of the ``evaluation`` keys ``keys``."""
    return {k: root["properties"]["evaluation"]["properties"][k] for k in keys}


def _experiment(root: dict) -> dict:
    return root["$defs"]["experiment"]["properties"]


def _train_schema(root: dict, spec: dict):
    props = {k: v for k, v in _experiment(root).items() if k not in ("description", "seeds", "eval_suites", "verbose")}
    return props, ()


def _summary_schema(root: dict, spec: dict):
    exp = _experiment(root)
    props = {"config": NAME, "seeds": exp["seeds"], "eval_suites": exp["eval_suites"],
             "plugins": {"type": "array", "uniqueItems": True, "items": NAME},
             **_evaluation(root, *STAGES["summary"].keys), "train_config_hash": NAME,
             "response_model": {"type": "boolean"}}
    return props, ("plugins", "train_config_hash", "response_model")


def _suite_schema(root: dict, spec: dict):
    kind = kind_of_slice(spec)
    return kind.properties(root), kind.optional


class Stage(NamedTuple):
    name: str
    entries: tuple[str, ...]  # the modules its command runs (its code hash covers them and what they import)
    slice: str  # the function of ``config`` that gives the settings its jobs depend on: (config[, key]) -> dict
    wildcard: str | None  # the rule wildcard the slice is per (its key), None: one slice for every job
    keys: tuple[str, ...] = ()  # the ``evaluation`` settings its slice holds
    # (config schema, slice) -> (its properties, the keys it may leave out); default: those of ``keys``, all required
    schema: Callable[[dict, dict], tuple] | None = None
    spec_keys: tuple[str, ...] = ()  # the keys a ``--spec`` must hold (default: those of the packaged defaults'
    # slice, for the experiment "default", but ``unchecked``)
    unchecked: tuple[str, ...] = ()


STAGES = {stage.name: stage for stage in (
    Stage("suite", ("suites.build",), "suite_slice", "suite", schema=_suite_schema, spec_keys=("name",)),
    Stage("train", ("train.loop",), "train_slice", "config", schema=_train_schema),
    Stage("evaluate", ("evaluate.run", "evaluate.methods"), "evaluation_slice", None,
          keys=(*PROTOCOL, "policy_modes")),
    Stage("baselines", ("evaluate.run", "evaluate.baselines"), "baselines_slice", None,
          keys=(*PROTOCOL, "baselines")),
    Stage("plugin", ("evaluate.run", "evaluate.plugins"), "plugin_slice", "method", keys=PROTOCOL,
          schema=lambda root, spec: ({**_evaluation(root, *PROTOCOL), "name": NAME, "file": NAME,
                                      "settings": {"type": "object"}}, ("name", "file", "settings")),
          spec_keys=PROTOCOL),
    # the response model measured as a model, per checkpoint and held-out suite (configs with policy.response_model)
    Stage("response_quality", ("evaluate.response_eval", "evaluate.run"), "response_quality_slice", None,
          keys=("n_obs", "seed", "response_replicates", "response_sizes")),
    # train_config_hash may be left out of a --spec written by hand: then no checkpoint hash is compared
    Stage("summary", ("report.inputs", "report.summarize", "report.pages"), "summary_slice", "config",
          keys=("bootstrap_resamples", "bootstrap_seed"), schema=_summary_schema, unchecked=("train_config_hash",)),
)}


def _require_all(schema: dict) -> dict:
    """``schema`` with every property of every object in it required (a stage's slice is complete)."""
    if not isinstance(schema, dict):
        return schema
    out = {k: _require_all(v) if isinstance(v, dict) else v for k, v in schema.items()}
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {k: _require_all(v) for k, v in schema["properties"].items()}
        out["required"] = sorted(schema["properties"])
    return out


def slice_schema(stage: str, spec: dict) -> dict:
    """The JSON Schema of a stage's config slice (``--spec``) in its complete form (``complete_slice``)."""
    if stage not in STAGES:
        raise ValueError(f"no slice schema for stage {stage!r}")
    root = config_schema()
    entry = STAGES[stage]
    props, optional = entry.schema(root, spec) if entry.schema else (_evaluation(root, *entry.keys), ())
    # other keys at the top are ignored (one spec may serve several commands), but not inside a section
    schema = _require_all({"type": "object", "properties": props})
    schema["required"] = [k for k in schema["required"] if k not in optional]
    return {**schema, "$defs": root["$defs"]}
