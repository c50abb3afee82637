"""The training driver: curriculum on the host, compiled updates per shape bucket, checkpoints, log.

A run is fully determined by its config slice and seed: the episode keys are ``fold_in(seed, episode)``,
the curriculum's choices are seeded by (seed, episode), and everything needed to continue (parameters,
optimizer state, curriculum state, best-so-far, the log so far) is in ``latest.ckpt``,
``best_so_far.ckpt`` and ``latest.log.parquet``, so a resumed run ends with exactly the parameters of an
uninterrupted one.
"""

from __future__ import annotations

import re
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from tqdm import tqdm

from ..atomic import atomic_path
from ..compile_cache import release_freed_memory
from ..config import digest
from ..core.scm import bucket_size, stack_scms
from ..errors import CheckpointError, SuiteError
from ..policy import checkpoint
from ..policy.network import make_policy
from ..policy.spec import architecture
from ..provenance import code_hash, git_commit, package_version
from ..suites.suite_io import load_suite
from ..tables import TRAIN_LOG_SCHEMA, read_table, write_table
from . import curriculum
from .grpo import GRPOSettings, TrainState, initial_state, make_optimizer, make_train_update

SMOOTHING = 0.9  # EMA of the episode reward that selects best.ckpt


@dataclass
class TrainPaths:
    checkpoint_dir: Path
    log_table: Path

    def ckpt(self, name: str) -> Path:
        return self.checkpoint_dir / f"{name}.ckpt"

    @property
    def partial_log(self) -> Path:
        return self.checkpoint_dir / "latest.log.parquet"

    def clear(self) -> None:
        """Remove the files a training run writes into its checkpoint directory, by their names (``RUN_FILES``):
        a user's own files beside them (``my_model.ckpt``) are kept."""
        if self.checkpoint_dir.is_dir():
            for path in self.checkpoint_dir.iterdir():
                if RUN_FILES.fullmatch(path.name) and not path.is_dir():
                    path.unlink()


# the files train() writes into a checkpoint directory (the periodic ones with 5 or more digits)
RUN_FILES = re.compile(r"(latest|best|best_so_far|final|episode_\d{5,})\.ckpt|latest\.log\.parquet")


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
        self.suites = {lv: load_suite(path) for lv, path in zip(levels, suite_files, strict=True)}
        for (lv, suite), path in zip(self.suites.items(), suite_files):
            if suite.level not in (None, lv):
                raise SuiteError(path, [f"level: {suite.level}, but it is given as the suite of level {lv}"])
        self.n_max = max(s.n for suite in self.suites.values() for s in suite.scms)
        self.families = {lv: [s.family for s in suite.scms] for lv, suite in self.suites.items()}
        self.level_bucket = {lv: min(bucket_size(max(s.n for s in suite.scms)), self.n_max)
                             for lv, suite in self.suites.items()}
        self.stacked, self.offsets = {}, {}
        for bucket in sorted(set(self.level_bucket.values())):
            fits = [lv for lv in levels if self.level_bucket[lv] <= bucket]
            self.offsets[bucket] = dict(zip(fits, np.cumsum([0] + [len(self.suites[lv].scms) for lv in fits[:-1]])))
            every_scm = [s for lv in fits for s in self.suites[lv].scms]
            self.stacked[bucket] = jax.tree.map(jnp.asarray, stack_scms(every_scm, bucket))

    def locate(self, members: list[tuple[int, int]]):
        """The stack of the bucket that fits every (level, pool index) of ``members``, and their positions in it."""
        bucket = max(self.level_bucket[lv] for lv, _ in members)
        return self.stacked[bucket], np.array([self.offsets[bucket][lv] + i for lv, i in members], np.int32)


class Interrupted(Exception):
    pass


def _install_sigterm_handler(flag: dict) -> None:
    def handler(signum, frame):
        flag["stop"] = True

    signal.signal(signal.SIGTERM, handler)


def _header(ctx: dict, episode: int, cur: dict, best: dict, metrics: dict) -> dict:
    return {
        "architecture": ctx["architecture"],
        "config_name": ctx["name"],
        "seed": ctx["seed"],
        "config": ctx["spec"],
        "config_hash": ctx["config_hash"],
        "code_hash": ctx["code_hash"],
        "episode": episode,
        "n_max": ctx["n_max"],
        "metrics": metrics,
        "curriculum": cur,
        "best": best,
        "package_version": package_version(),
        "git_commit": git_commit(),
    }


def _read_partial_log(paths: TrainPaths) -> tuple[list[dict], str | None]:
    """The rows of latest.log.parquet, or no rows and why it cannot be read."""
    if not paths.partial_log.exists():
        return [], f"{paths.partial_log} is missing"
    try:
        return read_table(paths.partial_log, TRAIN_LOG_SCHEMA).to_dict("records"), None
    except (OSError, ValueError) as exc:  # truncated or foreign Parquet, or another schema
        return [], f"{paths.partial_log} is unreadable ({str(exc).splitlines()[0]})"


def _resume_candidates(paths: TrainPaths) -> list[Path]:
    """latest.ckpt, then the periodic episode_NNNNN.ckpt from the newest to the oldest."""
    episodes = sorted(paths.checkpoint_dir.glob("episode_*.ckpt"), reverse=True)
    return [paths.ckpt("latest"), *episodes]


# what a checkpoint must share with this run to be resumed: a run continues only what it would have written itself
RESUME_IDENTITY = ("seed", "config_hash", "code_hash")


def _try_resume(paths: TrainPaths, ctx: dict, target: TrainState, say) -> tuple | None:
    """Continue from the newest intact checkpoint written by the same seed, config and training code.

    That is latest.ckpt, or, when it or the log is damaged, the newest intact episode_NNNNN.ckpt whose episodes
    the log still holds (one line says so); with nothing intact left the run starts fresh, saying why.
    """
    latest = paths.ckpt("latest")
    if not latest.exists():
        return None
    try:
        header = checkpoint.read_header(latest)
    except CheckpointError:
        header = None  # damaged: the fallback below says why
    for key in RESUME_IDENTITY:
        if header is not None and header.get(key) != ctx[key]:
            say(f"{latest}: {key} {header.get(key)} differs from this run's {ctx[key]}: starting fresh")
            return None
    rows, log_problem = _read_partial_log(paths)
    problems = []
    for path in _resume_candidates(paths):
        try:
            header = checkpoint.read_header(path)
            if any(header.get(key) != ctx[key] for key in RESUME_IDENTITY):
                problems.append(f"{path} was written by another seed, config or training code")
                continue
            if len(rows) < header["episode"]:
                problems.append(log_problem or f"{paths.partial_log} holds {len(rows)} episodes, {path.name} "
                                f"{header['episode']}")
                continue
            header, state = checkpoint.load(path, target)
        except CheckpointError as err:
            problems.append(str(err))
            continue
        # episodes logged after the checkpoint was written are replayed
        why = f" ({problems[0]})" if problems else ""
        say(f"resuming from {path} at episode {header['episode']}{why}")
        return header, state, rows[: header["episode"]]
    say(f"no intact checkpoint to resume from ({problems[0]}): starting fresh")
    return None


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
    order); writes checkpoints and the log; returns the final state."""

    def say(msg: str) -> None:
        tqdm.write(msg, file=out)

    stop = {"stop": False}
    _install_sigterm_handler(stop)
    pools = Pools(suite_files, spec["levels"])
    settings = GRPOSettings.from_experiment(spec)
    cur_settings = curriculum.CurriculumSettings.from_experiment(spec)
    policy = make_policy(spec["policy"])
    optimizer, schedule = make_optimizer(spec["training"], spec["episodes"])
    init_key, episodes_key = jax.random.split(jax.random.PRNGKey(seed))
    state = jax.jit(lambda key: initial_state(policy, optimizer, key))(init_key)  # one program, not one per op
    ctx = {
        "architecture": architecture(spec["policy"]), "name": name, "seed": seed, "spec": spec,
        "config_hash": digest(spec), "code_hash": code_hash("train"), "n_max": pools.n_max,
    }
    start, cur, rows = 0, curriculum.initial_state(), []
    best = {"score": None, "smoothed": None, "episode": None}
    resumed = _try_resume(paths, ctx, state, say)
    if resumed:
        header, state, rows = resumed
        start, cur, best = header["episode"], header["curriculum"], header["best"]
    else:
        paths.clear()  # files of an earlier run with another config must not leak into this one
    update = make_train_update(settings, policy, optimizer)
    play, learn = jax.jit(update.play), jax.jit(update.learn)
    compiled_buckets = set()
    batch_size = spec["training"]["scms_per_update"]
    wall_offset = rows[-1]["wall_time"] if rows else 0.0
    t0 = time.perf_counter()
    bar = tqdm(
        total=spec["episodes"], initial=start, file=out, disable=not progress, mininterval=2.0,
        dynamic_ncols=True, desc=f"{name}/seed {seed}",
    )

    def save(which: str, episode: int, metrics: dict) -> None:
        checkpoint.save(paths.ckpt(which), _header(ctx, episode, cur, best, metrics), state)

    for episode in range(start, spec["episodes"]):
        level = curriculum.current_level(cur, cur_settings)
        cur = curriculum.next_scm(cur, cur_settings, pools.families[level], seed, episode)
        members = curriculum.batch_members(cur, cur_settings, pools.families, seed, episode, batch_size,
                                                 cur_settings.replay)
        scm = pools.suites[level].scms[cur["scm"]]
        lr = float(schedule(episode * spec["training"]["update_epochs"]))  # updates done before this episode
        pool, indices = pools.locate(members)
        batch = play(state.params, pool, indices, jax.random.fold_in(episodes_key, episode))
        state, stats, detail = learn(state, batch)
        if pool.bias.shape[-1] not in compiled_buckets:  # this update compiled the bucket's programs
            jax.block_until_ready(state)
            release_freed_memory()
            compiled_buckets.add(pool.bias.shape[-1])
        per_scm = [{k: float(v) for k, v in zip(stats._fields, values)} for values in zip(*map(np.asarray, stats))]
        metrics = {k: float(np.mean([m[k] for m in per_scm])) for k in stats._fields}
        n_changes = len(cur["changes"])
        played = [(lv, pools.families[lv][i], m) for (lv, i), m in zip(members, per_scm)]
        cur = curriculum.record(cur, cur_settings, played, episode)
        rows.append(
            {"config": name, "seed": seed, "episode": episode, "level": level,
             "level_changed": len(cur["changes"]) > n_changes, "scm_id": scm.id, "family": scm.family,
             **metrics, "learning_rate": lr, "wall_time": wall_offset + time.perf_counter() - t0}
        )
        if verbose:
            _print_steps(say, episode, scm, detail)
        if len(cur["changes"]) > n_changes:
            change = cur["changes"][-1]
            say(f"episode {episode}: level {change['from']} -> {change['to']} ({change['reason']}, "
                f"smoothed normalized improvement {change['score']:.3f})")
        best["smoothed"] = (metrics["reward"] if best["smoothed"] is None
                            else SMOOTHING * best["smoothed"] + (1 - SMOOTHING) * metrics["reward"])
        bar.set_postfix(level=level, reward=f"{best['smoothed']:.3f}", refresh=False)
        bar.update(1)
        done = episode + 1
        interrupted = (stop["stop"] or done == stop_after) and done < spec["episodes"]
        if done % spec["checkpoint_every"] == 0 or done == spec["episodes"]:
            # best: the highest smoothed reward at the furthest level reached
            score = [cur["level_index"], best["smoothed"]]
            if best["score"] is None or score >= best["score"]:
                best.update(score=score, episode=done)
                save("best_so_far", done, metrics)
            if done % spec["checkpoint_every"] == 0:
                save(f"episode_{done:05d}", done, metrics)
        if done % spec["checkpoint_every"] == 0 or done == spec["episodes"] or interrupted:
            # the log first, latest.ckpt last: a kill in between leaves a log that is only longer
            write_table(pd.DataFrame(rows), TRAIN_LOG_SCHEMA, paths.partial_log, "training log")
            save("latest", done, metrics)
        if interrupted:
            bar.close()
            raise Interrupted(f"stopped after episode {done}; rerun to resume from {paths.ckpt('latest')}")
    bar.close()
    # best.ckpt is a declared output (a failed job loses it); best_so_far.ckpt survives restarts
    if not paths.ckpt("best_so_far").exists():
        save("best_so_far", spec["episodes"], {})
    with atomic_path(paths.ckpt("best")) as tmp:
        shutil.copyfile(paths.ckpt("best_so_far"), tmp)
    final_metrics = rows[-1] if rows else {}
    save("final", spec["episodes"], {k: final_metrics[k] for k in ("reward", "norm_improvement", "f1")} if rows else {})
    write_table(pd.DataFrame(rows), TRAIN_LOG_SCHEMA, paths.log_table, "training log")
    say(f"trained {spec['episodes']} episodes in {rows[-1]['wall_time']:.1f}s; final level "
        f"{curriculum.current_level(cur, cur_settings)}; wrote {paths.ckpt('final')} and {paths.log_table}")
    return state


def _print_steps(say, episode: int, scm, detail: dict) -> None:
    d = {k: np.asarray(v) for k, v in detail.items()}
    say(f"episode {episode} on {scm.id} ({scm.family}, target {scm.nodes[scm.target]})")
    for t in range(d["variable"].shape[0]):
        actions = " ".join(
            f"{scm.nodes[v]}={x:+.2f}" if v < scm.n else "?" for v, x in zip(d["variable"][t], d["value"][t])
        )
        say(f"  step {t:2d} executed #{d['executed'][t]} | actions {actions}")
        say(f"          rewards {np.array2string(d['reward'][t], precision=2, max_line_width=200)}")
        say(f"          advantages {np.array2string(d['advantage'][t], precision=2, max_line_width=200)}")
