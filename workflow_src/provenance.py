"""Provenance: package version, git commit, and hashes of the code each stage depends on.

Snakemake does not notice edits in imported modules, so each rule's params carry the hash of the
modules its stage uses: editing report code reruns summaries only, editing baseline code reruns
baselines (and what reads them), and so on.
"""

from __future__ import annotations

import ast
import hashlib
import subprocess
from functools import cache
from pathlib import Path

from . import __version__

# The modules (and schema files) each stage's output depends on, beside the config.
STAGE_SOURCES: dict[str, tuple[str, ...]] = {
    "suite": ("scm.py", "generators.py", "suite_io.py", "suites.py", "schemas/suite.schema.json"),
    "train": (
        "scm.py", "suite_io.py", "sampler.py", "surrogate.py", "buffer.py", "sample_pooling.py", "policy.py",
        "policy_spec.py", "grpo.py", "curriculum.py", "train.py", "checkpoint.py", "tables.py",
    ),
    "evaluate": (
        "scm.py", "suite_io.py", "sampler.py", "surrogate.py", "buffer.py", "sample_pooling.py", "policy.py",
        "policy_spec.py", "checkpoint.py", "rollout.py", "methods.py", "program_store.py", "evaluate.py", "tables.py",
    ),
    "baselines": (
        "scm.py", "suite_io.py", "sampler.py", "surrogate.py", "buffer.py", "sample_pooling.py", "policy.py",
        "policy_spec.py", "rollout.py", "methods.py", "baselines.py", "causal_bo.py", "linalg.py", "program_store.py",
        "evaluate.py", "tables.py",
    ),
    "plugin": (
        "scm.py", "suite_io.py", "sampler.py", "surrogate.py", "buffer.py", "sample_pooling.py", "policy.py",
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


def plugin_sources(path: str | Path) -> list[Path]:
    """A plug-in file and the modules it imports from its own folder, and those they import, in a fixed order:
    ``import helper`` or ``from helper import x`` names ``helper.py`` or the package folder ``helper/`` (all of
    its ``.py`` files) beside the plug-in. Imports of anything else (installed packages) are not its code."""
    path = Path(path)
    folder, found, todo = path.parent, [], [path]
    while todo:
        source = todo.pop()
        if source in found:
            continue
        found.append(source)
        try:
            tree = ast.parse(source.read_bytes())
        except (SyntaxError, ValueError):  # a file that does not parse is refused when the plug-in is imported
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {name.split(".")[0] for name in names}:
                if (folder / f"{top}.py").is_file():
                    todo.append(folder / f"{top}.py")
                elif (folder / top).is_dir():
                    todo += sorted((folder / top).rglob("*.py"))
    return [path, *sorted(found[1:])]


def plugin_source_hash(path: str | Path) -> str:
    """sha256 (16 hex digits) of a plug-in's code: the file's own hash when it imports nothing from its folder,
    else over the file and those modules (``plugin_sources``), each with its name, so editing a helper module
    reruns the plug-in's jobs as editing the file does."""
    sources = plugin_sources(path)
    if len(sources) == 1:
        return file_hash(path)
    folder = Path(path).parent
    return _source_digest(folder, [str(p.relative_to(folder)) for p in sources])[:16]


def package_version() -> str:
    return __version__
