"""Provenance: package version, git commit, and hashes of the code each stage depends on.

Snakemake does not notice edits in imported modules, so each rule's params carry the hash of the
modules its stage uses: editing report code reruns summaries only, editing baseline code reruns
baselines (and what reads them), and so on.
"""

from __future__ import annotations

import ast
import hashlib
import re
import subprocess
from functools import cache
from pathlib import Path

from . import __version__

# A stage's code hash covers the modules its command runs (``stages.Stage.entries``, passed in: this module knows no
# stage) and every module of the package they import, directly or not (read from the source: module-level and
# function-level imports alike), so the hashes follow the code as it changes; a module that reads a data file of
# the package brings that file in.
DATA_FILES = {"suites.validation": ("schemas/suite.schema.json",)}

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


def stage_modules(entries: tuple[str, ...], root: Path = PACKAGE_ROOT) -> list[str]:
    """A stage's entry modules (``stages.Stage.entries``) and everything they import within the package, sorted.
    A folder imported as a package brings in every module in it (it may load them by name, as
    ``evaluate.baselines`` does)."""
    seen, todo = set(), list(entries)
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


def stage_sources(entries: tuple[str, ...], root: Path = PACKAGE_ROOT) -> list[str]:
    """The files (relative to the package) behind a stage's code hash: its modules and the data they read."""
    modules = stage_modules(entries, root)
    files = [module_file(root, m).relative_to(root).as_posix() for m in modules]
    return files + [f for m in modules for f in DATA_FILES.get(m, ())]


@cache
def code_hash(entries: tuple[str, ...], root: Path = PACKAGE_ROOT) -> str:
    """sha256 over the source files of a stage with entry modules ``entries`` (its modules and what they import),
    16 hex digits."""
    return _source_digest(root, stage_sources(entries, root))[:16]


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


IMPORT_CALLS = ("import_module", "__import__")  # importlib.import_module("helper"), __import__("helper")


def _imported_names(node) -> list[str]:
    """The module names an AST node imports: ``import``/``from ... import`` statements and calls of
    ``IMPORT_CALLS`` with a literal name."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        return [node.module] if node.level == 0 and node.module else []
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        callee = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        if callee in IMPORT_CALLS and isinstance(node.args[0].value, str):
            return [node.args[0].value]
    return []


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not any(
        part.startswith(".") or part == "__pycache__" for part in p.relative_to(folder).parts))


def _named_data(folder: Path, text: str) -> list[Path]:
    """The files in ``folder`` that the string literal ``text`` names (a file, or a folder's files), if any."""
    parts = Path(text).parts
    if not text.strip() or "\0" in text or "\n" in text or Path(text).is_absolute() or ".." in parts or (
            parts in ((), (".",))):
        return []
    try:
        candidate = folder / text
        return [candidate] if candidate.is_file() else _files_under(candidate) if candidate.is_dir() else []
    except (OSError, ValueError):  # not a name this file system can hold
        return []


def plugin_sources(path: str | Path) -> list[Path]:
    """A plug-in file and what it reads from its own folder, in a fixed order: the modules it imports from there
    (``import helper``, ``from helper import x``, ``importlib.import_module("helper")`` or
    ``__import__("helper")`` with a literal name: ``helper.py`` or every file of the package folder ``helper/``),
    the modules those import, and every file or folder there that a string literal of that code names
    (``"weights.npz"``, ``"data"``, as in ``Path(__file__).parent / "data"``). Imports of anything else
    (installed packages), and file names computed at run time, are not its code."""
    path = Path(path)
    folder, found, todo = path.parent, [], [path]
    while todo:
        source = todo.pop()
        if source in found:
            continue
        found.append(source)
        if source.suffix != ".py":
            continue
        try:
            tree = ast.parse(source.read_bytes())
        except (SyntaxError, ValueError):  # a file that does not parse is refused when the plug-in is imported
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                todo += _named_data(folder, node.value)
            for top in {name.split(".")[0] for name in _imported_names(node)}:
                if (folder / f"{top}.py").is_file():
                    todo.append(folder / f"{top}.py")
                elif (folder / top).is_dir():
                    todo += _files_under(folder / top)
    return [path, *sorted(set(found[1:]) - {path})]


def plugin_source_hash(path: str | Path) -> str:
    """sha256 (16 hex digits) of a plug-in's code and data: the file's own hash when it reads nothing else from its
    folder, else over the file and what it reads there (``plugin_sources``), each with its name, so editing a
    helper module or a data file reruns the plug-in's jobs as editing the file does."""
    sources = plugin_sources(path)
    if len(sources) == 1:
        return file_hash(path)
    folder = Path(path).parent
    return _source_digest(folder, [str(p.relative_to(folder)) for p in sources])[:16]


def package_version() -> str:
    return __version__
