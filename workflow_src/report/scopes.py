"""The scopes of a summary: every (suite, level) alone, then one pool per mechanism class present ("all linear
SCMs", "all nonlinear SCMs": ``POOLS``, not valid suite names), and how pages and charts name and order them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .inputs import LINEAR, NONLINEAR

# The pooled scopes, one per mechanism class (not valid suite names), in page order.
POOLS = {LINEAR: "all linear SCMs", NONLINEAR: "all nonlinear SCMs"}
POOLED_SCOPES = tuple(POOLS.values())
MIXED = "mixed"  # a suite holding linear and nonlinear SCMs (``suite_classes``)
CLASS_RANK = {LINEAR: 0, MIXED: 1, NONLINEAR: 2}  # linear suites and their pool first, then the nonlinear ones
POOL_CLASS = {pool: mechanism for mechanism, pool in POOLS.items()}
MECHANISM_KEY = "_mechanism"  # a unit's mechanism class, in the unit tables of ``grouped_rows``


def scopes(units: pd.DataFrame):
    """(suite, level, rows) for each (suite, level) cell of a unit table, then each mechanism class's pool."""
    for (suite, level), rows in units.groupby(["suite", "level"], sort=True):
        yield suite, int(level), rows
    for mechanism, pool in POOLS.items():
        rows = units[units[MECHANISM_KEY] == mechanism]
        if len(rows):
            yield pool, None, rows


def suite_classes(mechanisms: dict[str, dict[str, str]]) -> dict[str, str]:
    """suite -> "linear", "nonlinear" or "mixed" (a user suite may hold both kinds of SCM)."""
    classes = {suite: sorted(set(by_scm.values())) for suite, by_scm in mechanisms.items()}
    return {suite: found[0] if len(found) == 1 else MIXED for suite, found in sorted(classes.items())}


def scope_label(suite: str, level, mechanism: str = LINEAR) -> str:
    """``heldout-L03 (level 3)``; suites outside the curriculum (level 0 or null) keep their bare name; a suite
    that is not linear says so (``heldout-cbo (nonlinear)``); pooled scopes keep their name."""
    if suite in POOL_CLASS:
        return suite
    notes = ([f"level {int(level)}"] if _curriculum_level(level) else []) + ([mechanism] if mechanism != LINEAR else [])
    return f"{suite} ({', '.join(notes)})" if notes else suite


def _curriculum_level(level) -> bool:
    return level is not None and not pd.isna(level) and int(level) >= 1


def with_scope_labels(frame: pd.DataFrame, classes: dict | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Add a ``scope`` label column; the order is by mechanism class (``classes``: suite -> class, linear when
    absent), each class's suites by level then name, followed by that class's pool."""
    classes = classes or {}
    frame = frame.copy()
    mechanism = [POOL_CLASS.get(s) or classes.get(s, LINEAR) for s in frame["suite"]]
    frame["scope"] = [scope_label(s, lv, m) for s, lv, m in zip(frame["suite"], frame["level"], mechanism, strict=True)]
    keys = frame.assign(_rank=[CLASS_RANK[m] for m in mechanism])[["suite", "level", "scope", "_rank"]]
    keys = keys.drop_duplicates().assign(
        _pooled=lambda k: k["suite"].isin(list(POOL_CLASS)),
        _level=lambda k: [float(lv) if _curriculum_level(lv) else np.inf for lv in k["level"]],
    ).sort_values(["_rank", "_pooled", "_level", "suite"], kind="stable")
    return frame, list(dict.fromkeys(keys["scope"]))
