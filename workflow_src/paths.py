"""Where the workflow reads and writes: the one definition of the results and checkpoints layout.

The Snakemake rules (``rules/common.smk``) declare their inputs and outputs with these functions and pass
them to the CLI, whose defaults (for use without Snakemake) come from here too, so a job reads exactly the
files its rule declares. Paths are strings relative to the working directory (they may hold Snakemake
wildcards such as ``"{config}"``); each root is a parameter for use outside the standard layout.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .suite_catalogue import GENERATED_FAMILIES, generated_suite

DEFAULT_CONFIG = "config/config.yaml"
RESULTS = "results"
CHECKPOINTS = "checkpoints"
SUITES = f"{RESULTS}/suites"
LOGS = "logs"


def cache_dir() -> Path:
    """The compilation cache folder (``ACBO_JAX_CACHE``, default ``.jax_cache``), shared by a study's jobs: compiled
    programs, the program store and the records of verified suite files."""
    return Path(os.environ.get("ACBO_JAX_CACHE", ".jax_cache")).resolve()


def job_log(*parts: str, logs: str = LOGS) -> str:
    """A job's log file: ``logs/a/b.log`` for ``job_log("a", "b")``."""
    return f"{logs}/{'/'.join(parts)}.log"


def suite_file(suite: str, suites_dir: str = SUITES) -> str:
    return f"{suites_dir}/{suite}.json"


# an experiment's train_suites: the generated training suites each of its levels names
CURRICULA = {"linear": ("L",), "nonlinear": ("NL",), "mixed": GENERATED_FAMILIES}


def train_suites(level: int, curriculum: str = "linear") -> list[str]:
    """The names of the generated training suites of a curriculum level: ``train-LNN`` (linear), ``train-NLNN``
    (nonlinear), or both (mixed: the level's pool holds both suites' SCMs)."""
    if curriculum not in CURRICULA:
        raise ValueError(f"train_suites must be one of {', '.join(CURRICULA)}, got {curriculum!r}")
    return [generated_suite("train", family, level) for family in CURRICULA[curriculum]]


def is_train_suite(suite: str) -> bool:
    return suite.startswith(tuple(f"train-{family}" for family in GENERATED_FAMILIES))


def train_suite_files(levels, suites_dir: str = SUITES, curriculum: str = "linear") -> list[str]:
    """The training suite files of ``levels``, grouped by level in that order (``train_suites`` of each)."""
    return [suite_file(suite, suites_dir) for level in levels for suite in train_suites(level, curriculum)]


def checkpoint_dir(config: str, seed, checkpoints: str = CHECKPOINTS) -> str:
    return f"{checkpoints}/{config}/seed_{seed}"


def checkpoint_name(which: str) -> str:
    """The file name of checkpoint ``which`` (final, best, latest, ...) in a checkpoint directory."""
    return f"{which}.ckpt"


PERIODIC = "episode_"


def periodic_checkpoint(episode: int) -> str:
    """The periodic checkpoint written after ``episode`` episodes: ``episode_NNNNN``."""
    return f"{PERIODIC}{episode:05d}"


PARTIAL_LOG = "latest.log.parquet"  # the training log so far, beside latest.ckpt (for resuming)
# the files a training run writes into its checkpoint directory (the periodic ones with 5 or more digits)
RUN_FILES = re.compile(rf"(latest|best|best_so_far|final|{PERIODIC}\d{{5,}})\.ckpt|{re.escape(PARTIAL_LOG)}")


def checkpoint_file(config: str, seed, which: str = "final", checkpoints: str = CHECKPOINTS) -> str:
    return f"{checkpoint_dir(config, seed, checkpoints)}/{checkpoint_name(which)}"


@dataclass
class TrainPaths:
    """Where one training run writes: its checkpoint directory (the names above) and its log table."""

    checkpoint_dir: Path
    log_table: Path

    def ckpt(self, which: str) -> Path:
        return self.checkpoint_dir / checkpoint_name(which)

    @property
    def partial_log(self) -> Path:
        return self.checkpoint_dir / PARTIAL_LOG

    def periodic_checkpoints(self) -> list[Path]:
        """The periodic checkpoints in the directory, newest first."""
        return sorted(self.checkpoint_dir.glob(checkpoint_name(f"{PERIODIC}*")), reverse=True)

    def clear(self) -> None:
        """Remove the files a training run writes into its checkpoint directory, by their names (``RUN_FILES``):
        a user's own files beside them (``my_model.ckpt``) are kept."""
        if self.checkpoint_dir.is_dir():
            for path in self.checkpoint_dir.iterdir():
                if RUN_FILES.fullmatch(path.name) and not path.is_dir():
                    path.unlink()


def train_log(config: str, seed, results: str = RESULTS) -> str:
    return f"{results}/{config}/train/seed_{seed}.parquet"


def eval_table(config: str, seed, suite: str, results: str = RESULTS) -> str:
    return f"{results}/{config}/eval/seed_{seed}/{suite}.parquet"


def response_quality_table(config: str, seed, suite: str, results: str = RESULTS) -> str:
    """The response model of a checkpoint measured as a model on one suite (``acbo response-quality``)."""
    return f"{results}/{config}/response_quality/seed_{seed}/{suite}.parquet"


def baseline_table(suite: str, results: str = RESULTS) -> str:
    return f"{results}/baselines/{suite}.parquet"


def plugin_table(method: str, suite: str, results: str = RESULTS) -> str:
    return f"{results}/plugins/{method}/{suite}.parquet"


def summary_table(config: str, results: str = RESULTS) -> str:
    return f"{results}/{config}/summary.parquet"


def summary_html(config: str, results: str = RESULTS) -> str:
    return f"{results}/{config}/summary.html"


def charts_dir(config: str, results: str = RESULTS) -> str:
    return f"{results}/{config}/charts"


def compare_html(results: str = RESULTS) -> str:
    return f"{results}/compare.html"


def summary_inputs(config: str, seeds, suites, results: str = RESULTS, checkpoints: str = CHECKPOINTS,
                   plugins=(), response_model: bool = False) -> dict:
    """The files a config's summary reads, per kind, in sorted seed and suite order (evaluation and response
    quality tables: seed-major; plug-in tables: method-major), which is the order ``summarize.load_inputs`` expects
    them in. The suite files tell which SCMs are linear (the summary pools linear and nonlinear SCMs apart). Response
    quality tables only where the config's policy has a response model."""
    seeds, suites = sorted(seeds), sorted(suites)
    return {
        "evals": [eval_table(config, seed, suite, results) for seed in seeds for suite in suites],
        "baselines": [baseline_table(suite, results) for suite in suites],
        "plugins": [plugin_table(method, suite, results) for method in sorted(plugins) for suite in suites],
        "train_logs": [train_log(config, seed, results) for seed in seeds],
        "checkpoints": [checkpoint_file(config, seed, "final", checkpoints) for seed in seeds],
        "suites": [suite_file(suite, f"{results}/suites") for suite in suites],
        "response_quality": [response_quality_table(config, seed, suite, results) for seed in seeds for suite in suites]
        if response_model else [],
    }
