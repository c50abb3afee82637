"""The configuration's JSON Schema (``schemas/config.schema.yaml``), the one home of every default setting:
the config loader fills missing keys from it, and the library's own defaults (e.g. the suite generator's)
are read from it."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

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


def n_levels() -> int:
    """The number of curriculum levels: the schema's bound on a level."""
    return config_schema()["$defs"]["level"]["maximum"]
