"""The configuration's JSON Schema (``schemas/config.schema.yaml``), the one home of every default setting:
the config loader fills missing keys from it, and the library's own defaults (e.g. the suite generator's)
are read from it. Beside it the frozen table of what keys added later meant before they existed, and the two
forms of a stage's slice it defines: canonical (hashed, passed as ``--spec``) and complete (read by the code)."""

from __future__ import annotations

import copy
from functools import cache
from importlib.resources import files
from types import MappingProxyType

import yaml

# libyaml's parser where PyYAML was built with it: the same documents, parsed in a tenth of the time (the schema
# is read by every job at start-up: 22 ms with the pure-Python parser)
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str):
    return yaml.load(text, Loader=SAFE_LOADER)


@cache
def config_schema() -> dict:
    return load_yaml(files("workflow_src").joinpath("schemas/config.schema.yaml").read_text())


def section_defaults(section: str) -> dict:
    """``{key: default}`` of the keys of a top-level section that have a default."""
    props = config_schema()["properties"][section]["properties"]
    return {key: sub["default"] for key, sub in props.items() if "default" in sub}


# What each key added to a stage's slice after that slice was first hashed meant when it was left out: the
# value its default had then. A slice's canonical form (``canonical_slice``: its hash, its rule's ``--spec``, a
# checkpoint's header) leaves out a key holding it, so every slice from before the key keeps its bytes, and a
# received slice gets it back (``complete_slice``). Frozen: a value here never changes; a setting added later adds
# its key here with the value that keeps the old behaviour, whatever default the schema gives it.
LEGACY_DEFAULTS = MappingProxyType({"train": MappingProxyType({
    ("train_suites",): "linear",
    ("training", "advantage_std_floor"): 1e-6,
    ("policy", "curve_features"): False,
    ("policy", "budget_feature"): False,
    ("policy", "response_model"): False,
    ("training", "response_steps"): 0,
    ("training", "response_batch"): 16,
    ("training", "response_learning_rate"): 1e-3,
    ("training", "response_coef"): 0.0,
    ("training", "anchor_coef"): 0.0,
    ("policy", "response_lines"): False,
    ("policy", "response_trend"): False,
    ("training", "response_states"): 0,
}), "summary": MappingProxyType({
    ("response_model",): False,  # the config's policy has a response model: its response quality tables are read
})})


def _legacy_keys(stage: str, slice_: dict):
    """``(section, key, legacy value)`` of each legacy key of ``stage`` whose section ``slice_`` holds."""
    for (*path, key), value in LEGACY_DEFAULTS.get(stage, {}).items():
        section = slice_
        for name in path:
            section = section.get(name) if isinstance(section, dict) else None
        if isinstance(section, dict):
            yield section, key, value


def canonical_slice(stage: str, slice_: dict) -> dict:
    """``slice_`` of ``stage`` without the keys that hold their legacy default (``LEGACY_DEFAULTS``): the form
    that is hashed and passed between jobs."""
    out = copy.deepcopy(slice_)
    for section, key, value in _legacy_keys(stage, out):
        if key in section and section[key] == value:
            del section[key]
    return out


def complete_slice(stage: str, slice_: dict) -> dict:
    """A received slice of ``stage`` (a ``--spec``, a canonical slice) with every key it left out at its legacy
    default: the form the code reads."""
    out = copy.deepcopy(slice_)
    for section, key, value in _legacy_keys(stage, out):
        section.setdefault(key, value)
    return out


def n_levels() -> int:
    """The number of curriculum levels: the schema's bound on a level."""
    return config_schema()["$defs"]["level"]["maximum"]
