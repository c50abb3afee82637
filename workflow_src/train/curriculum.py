"""The training curriculum: which SCMs the next episode uses, and when to move to the next level.

An episode is one policy update over ``scms_per_update`` SCMs played side by side (one SCM by default).

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
    replay: float = 0.0

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
    family = names[int(rng.choice(len(names), p=_family_weights(state, settings, level, names)))]
    members = [i for i, f in enumerate(families) if f == family]
    if len(members) > 1 and state["scm"] in members:
        members.remove(state["scm"])
    state["scm"] = int(rng.choice(members))
    state["episodes_on_scm"] = 0
    return state


def batch_members(state: dict, settings: CurriculumSettings, families: dict[int, list[str]], seed: int,
                  episode: int, size: int, replay: float) -> list[tuple[int, int]]:
    """The (level, pool index) of each SCM played in one update; ``state`` comes from ``next_scm``.

    The first member is the curriculum's current SCM. The others are drawn from the current level with the
    same family weights, or, each with probability ``replay``, uniformly from an earlier level, so that
    levels passed are not forgotten.
    """
    level = current_level(state, settings)
    members = [(level, state["scm"])]
    rng = np.random.default_rng([seed, episode, 1])
    earlier = list(settings.levels[: state["level_index"]])
    names = sorted(set(families[level]))
    weights = _family_weights(state, settings, level, names)
    for _ in range(size - 1):
        if earlier and rng.random() < replay:
            old = earlier[int(rng.integers(len(earlier)))]
            members.append((old, int(rng.integers(len(families[old])))))
            continue
        family = names[int(rng.choice(len(names), p=weights))]
        candidates = [i for i, f in enumerate(families[level]) if f == family]
        members.append((level, int(rng.choice(candidates))))
    return members


def _family_weights(state: dict, settings: CurriculumSettings, level: int, names: list[str]) -> np.ndarray:
    """Sampling weights of the families: unseen ones first, then ``exp(-score / family_temperature)``."""
    scores = np.array(
        [state["ema"].get(family_key(level, f), {}).get("norm_improvement", -np.inf) for f in names]
    )
    if np.isinf(scores).any():
        weights = np.isinf(scores).astype(float)
    else:
        logits = -scores / settings.family_temperature
        weights = np.exp(logits - logits.max())
    return weights / weights.sum()


def _ema(old: float | None, new: float, decay: float) -> float:
    return new if old is None else decay * old + (1.0 - decay) * new


def record(state: dict, settings: CurriculumSettings, played: list[tuple[int, str, dict]], episode: int) -> dict:
    """Fold in one update's (level, family, metrics) per SCM played; advance the level when its threshold
    or cap is reached. The level's score moves by the mean over the SCMs of the current level."""
    state = copy.deepcopy(state)
    level = current_level(state, settings)
    for played_level, family, metrics in played:
        tracked = state["ema"].setdefault(family_key(played_level, family), {})
        for name in TRACKED:
            tracked[name] = _ema(tracked.get(name), float(metrics[name]), settings.ema_decay)
        tracked["episodes"] = tracked.get("episodes", 0) + 1
    score = float(np.mean([m["norm_improvement"] for lv, _, m in played if lv == level]))
    state["level_score"] = _ema(state["level_score"], score, settings.ema_decay)
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
