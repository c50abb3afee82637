"""The training curriculum: which SCM the next episode uses, and when to move to the next level.

Per (level, family) it keeps moving averages of reward, normalized improvement and structure F1. An SCM
is kept for ``min_episodes_per_scm`` episodes, then rotated: the next family is drawn with weights
``exp(-score / family_temperature)`` (worse families more often; unseen families first), the SCM
uniformly within it. The curriculum advances to the next level when the level's smoothed normalized
improvement passes ``advance_threshold`` (after ``min_episodes_per_level``) or when
``max_episodes_per_level`` is reached. Its whole state is plain JSON, saved in every checkpoint, and its
random choices are seeded by (seed, episode), so a resumed run makes the same choices.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

TRACKED = ("reward", "norm_improvement", "f1")


@dataclass(frozen=True)
class CurriculumSettings:
    levels: tuple[int, ...]
    ema_decay: float
    min_episodes_per_scm: int
    advance_threshold: float
    min_episodes_per_level: int
    max_episodes_per_level: int
    family_temperature: float

    @classmethod
    def from_experiment(cls, exp: dict) -> CurriculumSettings:
        c = exp["curriculum"]
        return cls(levels=tuple(sorted(exp["levels"])), **c)


def initial_state() -> dict:
    return {
        "level_index": 0,
        "episodes_on_level": 0,
        "level_score": None,
        "scm": None,
        "episodes_on_scm": 0,
        "ema": {},
        "changes": [],
    }


def family_key(level: int, family: str) -> str:
    return f"L{level:02d}/{family}"


def current_level(state: dict, settings: CurriculumSettings) -> int:
    return settings.levels[state["level_index"]]


def next_scm(state: dict, settings: CurriculumSettings, families: list[str], seed: int, episode: int) -> dict:
    """Return a new state whose ``scm`` is the pool index to train on in ``episode``.

    ``families`` lists the family of every SCM in the current level's pool.
    """
    state = copy.deepcopy(state)
    if state["scm"] is not None and state["episodes_on_scm"] < settings.min_episodes_per_scm:
        return state
    rng = np.random.default_rng([seed, episode])
    level = current_level(state, settings)
    names = sorted(set(families))
    scores = np.array(
        [state["ema"].get(family_key(level, f), {}).get("norm_improvement", -np.inf) for f in names]
    )
    if np.isinf(scores).any():  # unseen families first
        weights = np.isinf(scores).astype(float)
    else:
        logits = -scores / settings.family_temperature
        weights = np.exp(logits - logits.max())
    family = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    members = [i for i, f in enumerate(families) if f == family]
    if len(members) > 1 and state["scm"] in members:
        members.remove(state["scm"])
    state["scm"] = int(rng.choice(members))
    state["episodes_on_scm"] = 0
    return state


def _ema(old: float | None, new: float, decay: float) -> float:
    return new if old is None else decay * old + (1.0 - decay) * new


def record(state: dict, settings: CurriculumSettings, family: str, metrics: dict, episode: int) -> dict:
    """Fold one episode's metrics in; advance the level when its threshold or cap is reached."""
    state = copy.deepcopy(state)
    level = current_level(state, settings)
    key = family_key(level, family)
    tracked = state["ema"].setdefault(key, {})
    for name in TRACKED:
        tracked[name] = _ema(tracked.get(name), float(metrics[name]), settings.ema_decay)
    tracked["episodes"] = tracked.get("episodes", 0) + 1
    state["level_score"] = _ema(state["level_score"], float(metrics["norm_improvement"]), settings.ema_decay)
    state["episodes_on_level"] += 1
    state["episodes_on_scm"] += 1
    if state["level_index"] + 1 < len(settings.levels):
        reason = None
        if (
            state["episodes_on_level"] >= settings.min_episodes_per_level
            and state["level_score"] >= settings.advance_threshold
        ):
            reason = "threshold"
        elif state["episodes_on_level"] >= settings.max_episodes_per_level:
            reason = "cap"
        if reason:
            state["changes"].append(
                {"episode": episode, "from": level, "to": settings.levels[state["level_index"] + 1],
                 "reason": reason, "score": state["level_score"]}
            )
            state.update(level_index=state["level_index"] + 1, episodes_on_level=0, level_score=None, scm=None)
    return state
