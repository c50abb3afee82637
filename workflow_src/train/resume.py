"""Resuming a training run: only from checkpoints it would have written itself (``RESUME_IDENTITY``: the same
seed, config, training code and training data), the newest intact one whose episodes the partial log still holds,
and never over another seed's finished run."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import CheckpointError
from ..paths import TrainPaths
from ..policy import checkpoint
from ..tables import TRAIN_LOG_SCHEMA, read_table
from .grpo import TrainState


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
    return [paths.ckpt("latest"), *paths.periodic_checkpoints()]


# what a checkpoint must share with this run to be resumed: a run continues only what it would have written itself,
# on the very same training data (a suite regenerated with other settings, or a user's edited suite, starts afresh)
RESUME_IDENTITY = ("seed", "config_hash", "code_hash", "data_hash")


def data_hash(suite_files: list[Path]) -> str:
    """The training data's identity: the sha256 of the training suites' bytes, in the order the run reads them."""
    sha = hashlib.sha256()
    for path in suite_files:
        content = Path(path).read_bytes()
        sha.update(len(content).to_bytes(8, "little"))
        sha.update(content)
    return sha.hexdigest()[:16]


def try_resume(paths: TrainPaths, ctx: dict, target: TrainState, say) -> tuple | None:
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
                problems.append(f"{path} was written by another seed, config, training code or training data")
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


def keep_another_seeds_finished_run(paths: TrainPaths, seed: int) -> None:
    """Refuse to start fresh in a folder whose final.ckpt is another seed's finished run (it would be cleared)."""
    final = paths.ckpt("final")
    try:
        other = checkpoint.read_header(final, verify_body=False).get("seed") if final.exists() else None
    except CheckpointError:  # a damaged final.ckpt is no finished run: cleared like the other files
        return
    if other is not None and other != seed:
        raise CheckpointError(f"{paths.checkpoint_dir}: holds the finished run of seed {other} ({final.name}), which "
                              f"training seed {seed} here would delete: give seed {seed} a folder of its own")
