"""The configuration's JSON Schema (``schemas/config.schema.yaml``), the one home of every default setting:
the config loader fills missing keys from it, and the library's own defaults (e.g. the suite generator's)
are read from it."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

import yaml


@cache
def config_schema() -> dict:
    return yaml.safe_load(files("workflow_src").joinpath("schemas/config.schema.yaml").read_text())


def section_defaults(section: str) -> dict:
    """``{key: default}`` of the keys of a top-level section that have a default."""
    props = config_schema()["properties"][section]["properties"]
    return {key: sub["default"] for key, sub in props.items() if "default" in sub}
