"""The non-learned baselines, one file each, every one a ``Method`` of the common interface (``methods``).

Each file defines ``act(settings, view, key) -> (variable, value)``, like a user's plug-in; ``registry`` names
them. A baseline's program depends on nothing but this package's code, so its name identifies it in the
program store.
"""

from __future__ import annotations

from importlib import import_module

from ..methods import Method
from ..registry import BASELINES, METHODS


def baseline_method(name: str) -> Method:
    registration = METHODS[name]
    act = import_module(f"{__name__}.{registration.module}").act
    return Method(name, act, program_id=name, reads_truth=registration.reads_truth)


def baseline_methods(names) -> list[Method]:
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ValueError(f"unknown method {', '.join(map(repr, unknown))} (known: {', '.join(BASELINES)})")
    return [baseline_method(n) for n in names]
