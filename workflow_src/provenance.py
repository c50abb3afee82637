"""Provenance: package version, git commit, and hashes of the code each stage depends on.

Snakemake does not notice edits in imported modules, so each rule's params carry the hash of the
modules its stage uses: editing report code reruns summaries only, editing baseline code reruns
baselines (and what reads them), and so on.
"""

from __future__ import annotations

import hashlib
import subprocess
from functools import cache
from pathlib import Path

from . import __version__

# The modules (and schema files) each stage's output depends on, beside the config.
STAGE_SOURCES: dict[str, tuple[str, ...]] = {
    "suite": ("scm.py", "mechanisms.py", "oracle.py", "generators.py", "suite_io.py", "suites.py",
              "schemas/suite.schema.json"),
    "train": (
        "scm.py", "mechanisms.py", "oracle.py", "suite_io.py", "sampler.py", "surrogate.py", "buffer.py",
        "sample_pooling.py", "policy.py",
        "policy_spec.py", "grpo.py", "curriculum.py", "train.py", "checkpoint.py", "tables.py",
    ),
    "evaluate": (
        "scm.py", "mechanisms.py", "oracle.py", "suite_io.py", "sampler.py", "surrogate.py", "buffer.py",
        "sample_pooling.py", "policy.py",
        "policy_spec.py", "checkpoint.py", "rollout.py", "methods.py", "program_store.py", "evaluate.py", "tables.py",
    ),
    "baselines": (
        "scm.py", "mechanisms.py", "oracle.py", "suite_io.py", "sampler.py", "surrogate.py", "buffer.py",
        "sample_pooling.py", "policy.py",
        "policy_spec.py", "rollout.py", "methods.py", "baselines.py", "causal_bo.py", "linalg.py", "program_store.py",
        "evaluate.py", "tables.py",
    ),
    "plugin": (
        "scm.py", "mechanisms.py", "oracle.py", "suite_io.py", "sampler.py", "surrogate.py", "buffer.py",
        "sample_pooling.py", "policy.py",
        "policy_spec.py", "rollout.py", "methods.py", "plugins.py", "program_store.py", "evaluate.py", "tables.py",
    ),
    "summary": (
        "metrics.py", "tables.py", "checkpoint.py", "summary_inputs.py", "bootstrap.py", "summarize.py",
        "chart_style.py", "figures.py", "page.py", "report.py",
    ),
}


PACKAGE_ROOT = Path(__file__).parent


def _source_digest(root: Path, names) -> str:
    """sha256 over the named files under ``root``, each with its name (a missing file hashes as empty)."""
    h = hashlib.sha256()
    for name in names:
        path = root / name
        h.update(name.encode() + b"\0")
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


@cache
def code_hash(stage: str) -> str:
    """sha256 over the stage's source files (missing files hash as empty, so the set can grow)."""
    return _source_digest(PACKAGE_ROOT, STAGE_SOURCES[stage])[:16]


@cache
def package_source_hash(root: Path = PACKAGE_ROOT) -> str:
    """sha256 over the source of every module of the package in ``root`` (this one by default)."""
    return _source_digest(root, sorted(path.relative_to(root).as_posix() for path in root.rglob("*.py")))


@cache
def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def file_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def package_version() -> str:
    return __version__
