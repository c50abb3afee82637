"""The stratified percentile bootstrap of the summary.

Metrics are averaged per *unit* (one SCM under one training seed) and reported as the mean over units
with a percentile bootstrap CI that resamples SCMs (within each suite) and, when there are several,
training seeds. Every group of one scope draws the same SCM resamples (``default_rng(seed)``), so
methods are compared on common random numbers.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

CI_LEVEL = 0.95
CI_PERCENT = f"{CI_LEVEL:.0%}"  # the level as the pages and charts write it ("95%")


@dataclass(frozen=True)
class Units:
    """Per-unit means: ``values[s, c, k]`` is the mean of column k over the episodes of seed s on SCM c."""

    values: np.ndarray  # (seeds, scms, columns), NaN where a unit has no data
    strata: np.ndarray  # (scms,) suite index of each SCM: SCMs are resampled within their suite
    n_episodes: int
    n_seeds: int  # training seeds among the units (0 for a baseline, which has none)


SEED_KEY = "_seed"  # the training seed, -1 for baselines
UNIT_KEYS = [SEED_KEY, "suite", "level", "scm_id"]


def unit_table(frame: pd.DataFrame, group_keys: list[str], columns: list[str]) -> pd.DataFrame:
    """Episode means of ``columns`` per group and unit (seed, suite, level, scm_id), with the count ``_n``,
    an integer code ``_scm`` per SCM (in (suite, scm_id) order) and ``_stratum`` per suite."""
    data = frame[group_keys + ["suite", "level", "scm_id"]].copy()
    data[SEED_KEY] = frame["seed"].astype("Float64").fillna(-1).astype("int64")
    data[columns] = frame[columns].astype("float64")
    grouped = data.groupby(group_keys + UNIT_KEYS, sort=True)
    out = grouped[columns].mean()
    out["_n"] = grouped.size()
    out = out.reset_index()
    out["_scm"] = pd.factorize(out["suite"] + "\0" + out["scm_id"], sort=True)[0]
    out["_stratum"] = pd.factorize(out["suite"], sort=True)[0]
    return out


def units_of(rows: pd.DataFrame, columns: list[str]) -> Units:
    """The (seeds, SCMs, columns) array of a unit table's rows, for ``bootstrap``."""
    seeds, seed_codes = np.unique(rows[SEED_KEY].to_numpy(), return_inverse=True)
    scms, scm_codes = np.unique(rows["_scm"].to_numpy(), return_inverse=True)
    values = np.full((len(seeds), len(scms), len(columns)), np.nan)
    values[seed_codes, scm_codes] = rows[columns].to_numpy(dtype="float64")
    stratum_of_scm = np.zeros(len(scms), dtype=np.int64)
    stratum_of_scm[scm_codes] = rows["_stratum"].to_numpy()
    strata = np.unique(stratum_of_scm, return_inverse=True)[1]
    return Units(values=values, strata=strata, n_episodes=int(rows["_n"].sum()), n_seeds=int((seeds >= 0).sum()))


def resample_counts(rng: np.random.Generator, strata: np.ndarray, resamples: int) -> np.ndarray:
    """(resamples, n) multiplicities of a stratified bootstrap: each stratum is resampled with replacement
    to its own size, by drawing member indices uniformly."""
    counts = np.zeros((resamples, len(strata)))
    rows = np.arange(resamples)[:, None]
    for label in np.unique(strata):
        members = np.flatnonzero(strata == label)
        picks = members[rng.integers(0, len(members), size=(resamples, len(members)))]
        np.add.at(counts, (np.broadcast_to(rows, picks.shape), picks), 1.0)
    return counts


@lru_cache(maxsize=64)
def _resample_weights(strata: tuple[int, ...], n_seeds: int, resamples: int, seed: int) -> tuple[np.ndarray, ...]:
    """SCM and seed multiplicities, drawn in that order from ``default_rng(seed)`` (so cached per scope)."""
    rng = np.random.default_rng(seed)
    scm_w = resample_counts(rng, np.asarray(strata), resamples)
    if n_seeds > 1:
        seed_w = resample_counts(rng, np.zeros(n_seeds, dtype=np.int64), resamples)
    else:
        seed_w = np.ones((resamples, 1))
    scm_w.flags.writeable = seed_w.flags.writeable = False
    return scm_w, seed_w


def bootstrap(units: Units, resamples: int, seed: int, level: float = CI_LEVEL) -> tuple[np.ndarray, ...]:
    """Mean over units of each column, with a percentile bootstrap CI over SCMs (and seeds when > 1).

    The SCM multiplicities are drawn first from ``default_rng(seed)``, so groups of one scope share them.
    Returns ``(mean, low, high)``, each of shape (columns,).
    """
    values = units.values
    present = ~np.isnan(values)
    filled = np.where(present, values, 0.0)
    scm_w, seed_w = _resample_weights(tuple(units.strata.tolist()), values.shape[0], resamples, seed)
    # weighted sums over the resampled (seed, SCM) cells: one matrix product per seed
    num = sum(seed_w[:, [s]] * (scm_w @ filled[s]) for s in range(values.shape[0]))
    den = sum(seed_w[:, [s]] * (scm_w @ present[s].astype(float)) for s in range(values.shape[0]))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=(0, 1)) / present.sum(axis=(0, 1))
        stats = num / den
    tail = (1.0 - level) / 2.0 * 100.0
    with warnings.catch_warnings():  # a column without any value (e.g. all NaN) gets a NaN interval
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanpercentile(stats, [tail, 100.0 - tail], axis=0)
    return mean, low, high
