"""Provenance: package version, git commit, and hashes of the code each stage depends on.

Snakemake does not notice edits in imported modules, so each rule's params carry the hash of the
modules its stage uses: editing report code reruns summaries only, editing baseline code reruns
baselines (and what reads them), and so on.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from functools import cache
from pathlib import Path

from . import __version__

# The modules each stage's command runs. A stage's code hash covers these and every module of the package they
# import, directly or not (read from the source: module-level and function-level imports alike), so the hashes
# follow the code as it changes; a module that reads a data file of the package brings that file in.
STAGE_ENTRIES: dict[str, tuple[str, ...]] = {
    "suite": ("suites.build",),
    "train": ("train.loop",),
    "evaluate": ("evaluate.run", "evaluate.methods"),
    "baselines": ("evaluate.run", "evaluate.baselines"),
    "plugin": ("evaluate.run", "evaluate.plugins"),
    "summary": ("report.inputs", "report.summarize", "report.pages"),
}
DATA_FILES = {"suites.suite_io": ("schemas/suite.schema.json",)}

# ``from .x import y``, ``from ..core import a, b`` and their parenthesized forms
_RELATIVE_IMPORT = re.compile(r"^[ \t]*from[ \t]+(\.+)([\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#]*)", re.M)


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


def module_file(root: Path, module: str) -> Path | None:
    """The source file of dotted ``module`` (relative to the package), a folder's ``__init__.py``, or None."""
    path = root.joinpath(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(root: Path, module: str) -> set[str]:
    """The package's modules that ``module`` imports (relative imports, anywhere in the file), dotted."""
    path = module_file(root, module)
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    found = set()
    for dots, name, names in _RELATIVE_IMPORT.findall(path.read_text()):
        base = package[: len(package) - (len(dots) - 1)] + ([name] if name else [])
        for imported in names.strip("()").split(","):
            imported = imported.split(" as ")[0].strip()
            if not imported:
                continue
            candidate = ".".join([*base, imported])
            if module_file(root, candidate) and not module_file(root, candidate).samefile(path):
                found.add(candidate)
            elif base and module_file(root, ".".join(base)):
                found.add(".".join(base))
    return found


def stage_modules(stage: str, root: Path = PACKAGE_ROOT) -> list[str]:
    """The entry modules of ``stage`` and everything they import within the package, sorted. A folder imported
    as a package brings in every module in it (it may load them by name, as ``evaluate.baselines`` does)."""
    seen, todo = set(), list(STAGE_ENTRIES[stage])
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            path = module_file(root, module)
            if path.name == "__init__.py":
                todo += [".".join(p.relative_to(root).with_suffix("").parts) for p in sorted(path.parent.glob("*.py"))
                         if p.name != "__init__.py"]
            todo += sorted(imported_modules(root, module) - seen)
    return sorted(seen)


def stage_sources(stage: str, root: Path = PACKAGE_ROOT) -> list[str]:
    """The files (relative to the package) behind ``stage``'s code hash: its modules and the data they read."""
    modules = stage_modules(stage, root)
    files = [module_file(root, m).relative_to(root).as_posix() for m in modules]
    return files + [f for m in modules for f in DATA_FILES.get(m, ())]


@cache
def code_hash(stage: str, root: Path = PACKAGE_ROOT) -> str:
    """sha256 over the stage's source files (its modules and what they import), 16 hex digits."""
    return _source_digest(root, stage_sources(stage, root))[:16]


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
