"""Every kind of suite, registered once: which names it serves, the config slice that determines one of its
files, that slice's JSON Schema, and the function of ``suites/`` that builds the file. ``config`` (slices,
schemas, name checks), ``paths`` (the training suites' names), the CLI's help and ``suites.build`` read this
table; adding a kind is one ``SuiteKind`` here and its builder.

A slice carries no kind field (the hashes of existing slices stand): a kind's slices are told apart by a key
only they hold (``marker``); the generated kind, the one without, comes last. Imports nothing heavy: the config
schema is read when a slice schema is asked for.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

# train-LNN / heldout-LNN: the linear families; train-NLNN / heldout-NLNN: the nonlinear ones (suites/nonlinear.py)
GENERATED_SUITE = re.compile(r"^(train|heldout)-(N?L)(\d{2})$")
GENERATED_FAMILIES = ("L", "NL")
# the suites.seed_base key of each generated kind: suite seed = base + level
SEED_BASES = {("train", "L"): "train", ("heldout", "L"): "heldout", ("train", "NL"): "nonlinear_train",
              ("heldout", "NL"): "nonlinear_heldout"}
GENERATOR_EXCLUDED = ("pool_size", "seed_base", "user", "nonlinear")  # suites.* keys that are not generator settings


def generated_suite(split: str, family: str, level: int) -> str:
    """The name of a generated suite: ``train-L03``, ``heldout-NL12``."""
    return f"{split}-{family}{level:02d}"


def _n_levels() -> int:
    from .config_schema import n_levels

    return n_levels()


def _generated_slice(cfg: dict, suite: str) -> dict:
    split, family, level = GENERATED_SUITE.match(suite).groups()
    level = int(level)
    settings = {k: v for k, v in cfg["suites"].items() if k not in GENERATOR_EXCLUDED}
    spec = {"name": suite, "level": level, "size": cfg["suites"]["pool_size"][split],
            "seed": cfg["suites"]["seed_base"][SEED_BASES[split, family]] + level, "generator": settings}
    if family == "NL":
        spec["nonlinear"] = cfg["suites"]["nonlinear"]
    return spec


def _generated_properties(root: dict) -> dict:
    suites = root["properties"]["suites"]["properties"]
    generator = {k: v for k, v in suites.items() if k not in GENERATOR_EXCLUDED}
    return {"name": {"type": "string", "pattern": GENERATED_SUITE.pattern}, "level": {"$ref": "#/$defs/level"},
            "size": suites["pool_size"]["properties"]["heldout"], "seed": {"type": "integer", "minimum": 0},
            "generator": {"type": "object", "additionalProperties": False, "properties": generator},
            "nonlinear": suites["nonlinear"]}  # train-NLNN / heldout-NLNN only


def _is_generated(suite: str, cfg: dict) -> bool:
    match = GENERATED_SUITE.match(suite)
    return bool(match and 1 <= int(match.group(3)) <= _n_levels())


NAME = {"type": "string", "minLength": 1}


class SuiteKind(NamedTuple):
    kind: str  # also the key that marks its slices (but the user's and the generated kinds')
    serves: Callable[[str, dict], bool]  # (suite name, config) -> whether the suite is of this kind
    slice: Callable[[dict, str], dict]  # (config, suite name) -> the settings that determine the suite file
    properties: Callable[[dict], dict]  # the config schema -> the JSON Schema properties of the slice
    builder: str  # the function of ``suites.build`` that writes the file: (slice, out) -> None
    marker: str | None  # the key only this kind's slices hold (None: the generated kind, tried last)
    fixed: tuple[str, ...] = ()  # the names of a kind of fixed suites (each name one suite)
    optional: tuple[str, ...] = ()  # slice keys that may be left out


def _fixed(kind: str, names: tuple[str, ...], extra: Callable[[str], dict] = lambda _: {},
           extra_properties: dict | None = None, builder: str | None = None) -> SuiteKind:
    """A kind of fixed suites, built by ``builder`` (default: ``suites.build``'s function named ``kind``): each name
    one suite, its slice the name, ``{kind: true}`` and ``extra(name)``."""
    name = {"const": names[0]} if len(names) == 1 else {"enum": list(names)}
    return SuiteKind(kind, lambda suite, cfg: suite in names,
                     lambda cfg, suite: {"name": suite, kind: True, **extra(suite)},
                     lambda root: {"name": name, kind: {"const": True}, **(extra_properties or {})}, builder or kind,
                     kind, fixed=names)


SUITE_KINDS = (
    SuiteKind("user", lambda suite, cfg: suite in cfg["suites"]["user"],
              lambda cfg, suite: {"name": suite, "user_file": cfg["suites"]["user"][suite]},
              lambda root: {"name": NAME, "user_file": NAME}, "copy_user_suite", "user_file"),
    _fixed("classic", ("heldout-classic",)),
    _fixed("literature", ("heldout-cbo",)),  # fixed nonlinear SCMs of the causal BO literature (acbo-suite/2)
    # the four Gaussian Bayesian networks pgmpy ships (suites/bnlearn.py), and the same with a nonlinear head
    _fixed("bnlearn", ("heldout-bnlearn", "heldout-bnlearn-head"),
           lambda suite: {"head": suite == "heldout-bnlearn-head"}, {"head": {"type": "boolean"}}),
    SuiteKind("generated", _is_generated, _generated_slice, _generated_properties, "generated", None,
              optional=("nonlinear",)),
)
FIXED_SUITES = tuple(name for k in SUITE_KINDS for name in k.fixed)
GENERATED_NAMES = "train-LNN, heldout-LNN, train-NLNN, heldout-NLNN"


def kind_of(suite: str, cfg: dict) -> SuiteKind | None:
    """The kind of the suite named ``suite`` under ``cfg``, or None."""
    return next((k for k in SUITE_KINDS if k.serves(suite, cfg)), None)


def kind_of_slice(spec: dict) -> SuiteKind:
    """The kind a suite's slice is of, from the key only its kind's slices hold."""
    return next(k for k in SUITE_KINDS if k.marker is None or k.marker in spec)


def built_in_name(suite: str) -> bool:
    """Whether ``suite`` has the form of a generated suite's name (any level) or is a fixed suite's."""
    return bool(GENERATED_SUITE.match(suite)) or suite in FIXED_SUITES
