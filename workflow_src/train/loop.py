"""The training driver: curriculum on the host, compiled updates per shape bucket, checkpoints, log.

A run is fully determined by its config slice and seed: the episode keys are ``fold_in(seed, episode)``,
the curriculum's choices are seeded by (seed, episode), and everything needed to continue (parameters,
optimizer state, curriculum state, best-so-far, the log so far) is in ``latest.ckpt``,
``best_so_far.ckpt`` and ``latest.log.parquet``, so a resumed run ends with exactly the parameters of an
uninterrupted one.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from tqdm import tqdm

from ..atomic import atomic_path
from ..compile_cache import release_freed_memory
from ..config import digest
from ..config_schema import canonical_slice
from ..core.scm import bucket_size, stack_scms
from ..errors import SuiteError, UserError
from ..paths import TrainPaths, periodic_checkpoint
from ..policy import checkpoint
from ..policy.network import make_policy
from ..policy.spec import architecture
from ..provenance import code_hash, git_commit, package_version
from ..stages import STAGES
from ..suites.suite_io import load_suite
from ..tables import TRAIN_LOG_SCHEMA, write_table
from . import curriculum
from .grpo import TrainState, initial_state, make_optimizer, make_train_update
from .response import pretrain_response
from .resume import data_hash, keep_another_seeds_finished_run, try_resume
from .rollout import GRPOSettings

SMOOTHING = 0.9  # EMA of the episode reward that selects best.ckpt


class Pools:
    """The training suites of the config's levels on the device, in shape buckets.

    A level's SCMs are padded to the shape bucket of its largest SCM (``bucket_size``, capped at the largest
    SCM of all levels), not to the largest SCM of the config: early levels run on small arrays, and each
    bucket the curriculum reaches compiles its own programs. Every bucket's stack holds all levels that fit
    in it, so a batch that mixes levels (replay) runs in its largest member's bucket; an update sends only
    the positions of its SCMs.
    Training draws are padding-invariant, so a level's episodes do not depend on its bucket.
    """

    def __init__(self, suite_files: list[Path], levels: list[int]):
        """``suite_files``: the training suites of ``levels``, grouped by level in that order, the same number
        per level (``paths.train_suite_files``: one, or two for the mixed curriculum); a level's pool holds the
        SCMs of all its suites."""
        if not suite_files or len(suite_files) % len(levels):
            raise ValueError(f"{len(suite_files)} training suites for the {len(levels)} levels {levels}: "
                             "give the same number for each level")
        per_level = len(suite_files) // len(levels)
        self.scms = {lv: [] for lv in levels}
        for index, path in enumerate(suite_files):
            lv, suite = levels[index // per_level], load_suite(Path(path))
            if suite.level not in (None, lv):
                raise SuiteError(path, [f"level: {suite.level}, but it is given as a suite of level {lv}"])
            self.scms[lv].extend(suite.scms)
        self.n_max = max(s.n for scms in self.scms.values() for s in scms)
        self.families = {lv: [s.family for s in scms] for lv, scms in self.scms.items()}
        self.level_bucket = {lv: min(bucket_size(max(s.n for s in scms)), self.n_max) for lv, scms in self.scms.items()}
        self.stacked, self.offsets = {}, {}
        for bucket in sorted(set(self.level_bucket.values())):
            fits = [lv for lv in levels if self.level_bucket[lv] <= bucket]
            self.offsets[bucket] = dict(zip(fits, np.cumsum([0] + [len(self.scms[lv]) for lv in fits[:-1]])))
            every_scm = [s for lv in fits for s in self.scms[lv]]
            self.stacked[bucket] = jax.tree.map(jnp.asarray, stack_scms(every_scm, bucket))

    def locate(self, members: list[tuple[int, int]]):
        """The stack of the bucket that fits every (level, pool index) of ``members``, and their positions in it."""
        bucket = max(self.level_bucket[lv] for lv, _ in members)
        return self.stacked[bucket], np.array([self.offsets[bucket][lv] + i for lv, i in members], np.int32)


class Interrupted(Exception):
    pass


class Diverged(UserError):
    """An update gave a non-finite loss, statistic or parameter: the run stops there, its checkpoints finite."""


def learn_checked(learn):
    """``learn`` that also says whether the new parameters are all finite (in the same program: no extra round
    trip to the device)."""

    def run(state, batch):
        state, stats, detail = learn(state, batch)
        finite = jnp.all(jnp.stack([jnp.isfinite(leaf).all() for leaf in jax.tree.leaves(state.params)]))
        return state, stats, detail, finite

    return run


@contextlib.contextmanager
def sigterm_flag():
    """``{"stop": bool}``, set when SIGTERM arrives while the block runs; the previous handler is restored on
    exit (a handler installed outside Python, reported as None, is left alone)."""
    flag = {"stop": False}

    def handler(signum, frame):
        flag["stop"] = True

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield flag
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _header(ctx: dict, episode: int, cur: dict, best: dict, metrics: dict, pretrain: dict) -> dict:
    return {
        "architecture": ctx["architecture"],
        "config_name": ctx["name"],
        "seed": ctx["seed"],
        "config": ctx["spec"],
        "config_hash": ctx["config_hash"],
        "code_hash": ctx["code_hash"],
        "data_hash": ctx["data_hash"],
        "episode": episode,
        "n_max": ctx["n_max"],
        "metrics": metrics,
        "curriculum": cur,
        "best": best,
        "package_version": package_version(),
        "git_commit": git_commit(),
        **({"response_pretrain": pretrain} if pretrain else {}),
    }


@dataclass
class _Run:
    """A training run's fixed parts: its data, the compiled update, and what its checkpoint headers hold."""

    name: str
    spec: dict
    seed: int
    pools: Pools
    cur_settings: curriculum.CurriculumSettings
    schedule: object
    episodes_key: jax.Array
    ctx: dict
    play: object
    learn: object


@dataclass
class _Progress:
    """What changes from one update to the next, all of it in the checkpoints and the partial log."""

    state: TrainState
    start: int
    cur: dict
    best: dict
    rows: list
    pretrain: dict  # the response model's supervised steps before the updates: their count and last loss


@functools.lru_cache(maxsize=4)
def _programs(spec_json: str) -> tuple:
    """The jitted programs of a training spec (canonical JSON) and its learning-rate schedule, built once per
    process: another run of the same spec in the process (a resumed run, a test) traces nothing again."""
    spec = json.loads(spec_json)
    policy = make_policy(spec["policy"])
    optimizer, schedule = make_optimizer(spec["training"], spec["episodes"])
    update = make_train_update(GRPOSettings.from_experiment(spec), policy, optimizer)
    init = jax.jit(lambda key: initial_state(policy, optimizer, key))  # one program, not one per op
    return init, jax.jit(update.play), jax.jit(learn_checked(update.learn)), schedule


def _prepare(name: str, spec: dict, seed: int, suite_files: list[Path]) -> tuple[_Run, TrainState]:
    """The run's fixed parts and its initial state (parameters from the seed)."""
    pools = Pools(suite_files, spec["levels"])
    init, play, learn, schedule = _programs(json.dumps(spec, sort_keys=True))
    init_key, episodes_key = jax.random.split(jax.random.PRNGKey(seed))
    canonical = canonical_slice("train", spec)  # the header's form: as before the keys added later
    state = init(init_key)
    ctx = {
        "architecture": architecture(spec["policy"]), "name": name, "seed": seed,
        "spec": canonical, "config_hash": digest(canonical), "code_hash": code_hash(STAGES["train"].entries),
        "data_hash": data_hash(suite_files), "n_max": pools.n_max,
    }
    run = _Run(name, spec, seed, pools, curriculum.CurriculumSettings.from_experiment(spec), schedule, episodes_key,
               ctx, play, learn)
    return run, state


def _start(run: _Run, state: TrainState, paths: TrainPaths, say) -> _Progress:
    """Resume from the checkpoints in ``paths`` (``resume.try_resume``), or start fresh in a cleared directory."""
    keep_another_seeds_finished_run(paths, run.seed)
    resumed = try_resume(paths, run.ctx, state, say)
    if resumed:
        header, state, rows = resumed
        return _Progress(state, header["episode"], header["curriculum"], header["best"], rows,
                         header.get("response_pretrain", {}))
    paths.clear()  # files of an earlier run with another config must not leak into this one
    params, pretrain = pretrain_response(run.spec, run.seed, run.pools.stacked, run.pools.level_bucket, state.params,
                                         say)
    state = state._replace(params=params)
    return _Progress(state, 0, curriculum.initial_state(), {"score": None, "smoothed": None, "episode": None}, [],
                     pretrain)


def _save(run: _Run, progress: _Progress, paths: TrainPaths, which: str, episode: int, metrics: dict) -> None:
    header = _header(run.ctx, episode, progress.cur, progress.best, metrics, progress.pretrain)
    checkpoint.save(paths.ckpt(which), header, progress.state)


class _Update(NamedTuple):
    members: list  # (level, pool index) of each SCM played, the curriculum's current SCM first
    level: int  # the curriculum's level
    learning_rate: float
    per_scm: list  # the EpisodeStats of each SCM as a dict
    detail: dict  # the first SCM's steps (grpo.step_detail)


def _update(run: _Run, progress: _Progress, episode: int, compiled_buckets: set) -> _Update:
    """One policy update: the curriculum picks the batch, it is played and learnt from."""
    cs, pools = run.cur_settings, run.pools
    level = curriculum.current_level(progress.cur, cs)
    progress.cur = curriculum.next_scm(progress.cur, cs, pools.families[level], run.seed, episode)
    members = curriculum.batch_members(progress.cur, cs, pools.families, run.seed, episode,
                                       run.spec["training"]["scms_per_update"], cs.replay)
    lr = float(run.schedule(episode * run.spec["training"]["update_epochs"]))  # updates done before this episode
    pool, indices = pools.locate(members)
    batch = run.play(progress.state.params, pool, indices, jax.random.fold_in(run.episodes_key, episode))
    state, stats, detail, finite = run.learn(progress.state, batch)
    per_scm = [{k: float(v) for k, v in zip(stats._fields, values)} for values in zip(*map(np.asarray, stats))]
    bad = sorted({k for m in per_scm for k, v in m.items() if not np.isfinite(v)})
    if bad or not finite:
        what = f"non-finite {', '.join(bad)}" if bad else "non-finite parameters after the gradient step"
        raise Diverged(f"training diverged at update {episode} ({what}; learning rate {lr:g}): stopped; the "
                       "checkpoints written before it are finite (lower training.learning_rate)")
    progress.state = state
    if pool.bias.shape[-1] not in compiled_buckets:  # this update compiled the bucket's programs
        jax.block_until_ready(progress.state)
        release_freed_memory()
        compiled_buckets.add(pool.bias.shape[-1])
    return _Update(members, level, lr, per_scm, detail)


def _record(run: _Run, progress: _Progress, episode: int, update: _Update, wall_time: float) -> tuple[dict, bool]:
    """The curriculum and the log take in one update's statistics (the log row holds their mean over the
    batch, labelled with its SCMs); returns the mean and whether the level changed."""
    members, level, lr, per_scm, _ = update
    metrics = {k: float(np.mean([m[k] for m in per_scm])) for k in per_scm[0]}
    n_changes = len(progress.cur["changes"])
    played = [(lv, run.pools.families[lv][i], m) for (lv, i), m in zip(members, per_scm)]
    progress.cur = curriculum.record(progress.cur, run.cur_settings, played, episode)
    changed = len(progress.cur["changes"]) > n_changes
    scms = [run.pools.scms[lv][i] for lv, i in members]
    progress.rows.append(
        {"config": run.name, "seed": run.seed, "episode": episode, "level": level, "level_changed": changed,
         "scm_ids": ",".join(s.id for s in scms), "families": ",".join(s.family for s in scms),
         **metrics, "learning_rate": lr, "wall_time": wall_time}
    )
    best = progress.best
    best["smoothed"] = (metrics["reward"] if best["smoothed"] is None
                        else SMOOTHING * best["smoothed"] + (1 - SMOOTHING) * metrics["reward"])
    return metrics, changed


def _checkpoint(run: _Run, progress: _Progress, paths: TrainPaths, done: int, metrics: dict, interrupted: bool):
    """The checkpoints due after ``done`` episodes: every ``checkpoint_every`` and at the end best_so_far (when
    it is the best yet), episode_NNNNN, the partial log and latest; on an interruption the last two."""
    every, total = run.spec["checkpoint_every"], run.spec["episodes"]
    if done % every == 0 or done == total:
        # best: the highest smoothed reward at the furthest level reached
        score = [progress.cur["level_index"], progress.best["smoothed"]]
        if progress.best["score"] is None or score >= progress.best["score"]:
            progress.best.update(score=score, episode=done)
            _save(run, progress, paths, "best_so_far", done, metrics)
        if done % every == 0:
            _save(run, progress, paths, periodic_checkpoint(done), done, metrics)
    if done % every == 0 or done == total or interrupted:
        # the log first, latest.ckpt last: a kill in between leaves a log that is only longer
        write_table(pd.DataFrame(progress.rows), TRAIN_LOG_SCHEMA, paths.partial_log, "training log")
        _save(run, progress, paths, "latest", done, metrics)


def _finish(run: _Run, progress: _Progress, paths: TrainPaths, say) -> None:
    """best.ckpt, final.ckpt and the log table of a finished run."""
    total = run.spec["episodes"]
    # best.ckpt is a declared output (a failed job loses it); best_so_far.ckpt survives restarts
    if not paths.ckpt("best_so_far").exists():
        _save(run, progress, paths, "best_so_far", total, {})
    with atomic_path(paths.ckpt("best")) as tmp:
        shutil.copyfile(paths.ckpt("best_so_far"), tmp)
    rows = progress.rows
    _save(run, progress, paths, "final", total, {k: rows[-1][k] for k in ("reward", "norm_improvement", "f1")} if rows
          else {})
    write_table(pd.DataFrame(rows), TRAIN_LOG_SCHEMA, paths.log_table, "training log")
    level = curriculum.current_level(progress.cur, run.cur_settings)
    say(f"trained {total} episodes in {rows[-1]['wall_time']:.1f}s; final level {level}; wrote {paths.ckpt('final')} "
        f"and {paths.log_table}")


def train(
    name: str,
    spec: dict,
    seed: int,
    suite_files: list[Path],
    paths: TrainPaths,
    verbose: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    out=sys.stderr,
) -> TrainState:
    """Train one (config, seed) on ``suite_files`` (the training suite of each of ``spec["levels"]``, in
    order); writes checkpoints and the log; returns the final state. SIGTERM stops it after the current
    update, as ``stop_after`` does, with ``latest.ckpt`` written (``Interrupted``)."""

    def say(msg: str) -> None:
        tqdm.write(msg, file=out)

    with sigterm_flag() as stop:
        run, state = _prepare(name, spec, seed, suite_files)
        prog = _start(run, state, paths, say)
        compiled_buckets = set()
        wall_offset = prog.rows[-1]["wall_time"] if prog.rows else 0.0
        t0 = time.perf_counter()
        bar = tqdm(total=spec["episodes"], initial=prog.start, file=out, disable=not progress, mininterval=2.0,
                   dynamic_ncols=True, desc=f"{name}/seed {seed}")
        for episode in range(prog.start, spec["episodes"]):
            update = _update(run, prog, episode, compiled_buckets)
            metrics, changed = _record(run, prog, episode, update, wall_offset + time.perf_counter() - t0)
            if verbose:
                level, index = update.members[0]  # the detail is the first SCM's
                scm = run.pools.scms[level][index]
                _print_steps(say, episode, scm, update.detail, spec["training"]["credit"])
            if changed:
                change = prog.cur["changes"][-1]
                say(f"episode {episode}: level {change['from']} -> {change['to']} ({change['reason']}, "
                    f"smoothed normalized improvement {change['score']:.3f})")
            bar.set_postfix(level=update.level, reward=f"{prog.best['smoothed']:.3f}", refresh=False)
            bar.update(1)
            done = episode + 1
            interrupted = (stop["stop"] or done == stop_after) and done < spec["episodes"]
            _checkpoint(run, prog, paths, done, metrics, interrupted)
            if interrupted:
                bar.close()
                raise Interrupted(f"stopped after episode {done}; rerun to resume from {paths.ckpt('latest')}")
        bar.close()
        _finish(run, prog, paths, say)
    return prog.state


def _print_steps(say, episode: int, scm, detail: dict, credit: str) -> None:
    """The first SCM's actions at each step: the group of a state (credit "step", one of them executed) or
    the G trajectories' actions (credit "trajectory", each executed in its own trajectory)."""
    d = {k: np.asarray(v) for k, v in detail.items()}
    say(f"episode {episode} on {scm.id} ({scm.family}, target {scm.nodes[scm.target]})")
    for t in range(d["variable"].shape[0]):
        actions = " ".join(
            f"{scm.nodes[v]}={x:+.2f}" if v < scm.n else "?" for v, x in zip(d["variable"][t], d["value"][t])
        )
        executed = f"executed #{d['executed'][t]}" if credit == "step" else "one per trajectory"
        say(f"  step {t:2d} {executed} | actions {actions}")
        say(f"          rewards {np.array2string(d['reward'][t], precision=2, max_line_width=200)}")
        say(f"          advantages {np.array2string(d['advantage'][t], precision=2, max_line_width=200)}")
