"""The CLI's one spec parser and the package's one-way imports (no module reaches back into the CLI)."""

import ast
import os
import subprocess
import sys

import pytest
from conftest import ROOT, run_cli

PACKAGE = ROOT / "workflow_src"

STAGE_ARGS = {
    "suite": ["generate"],
    "train": ["--experiment", "debug", "--seed", "0"],
    "baselines": ["--suite", "x.json", "--out", "x.parquet"],
    "summarize": ["--experiment", "debug"],
}


@pytest.mark.parametrize(
    "command, spec, message",
    [(command, "{bad", "--spec is not valid JSON") for command in STAGE_ARGS]
    + [(command, "{}", "--spec lacks") for command in STAGE_ARGS]
    + [("train", "[1]", "--spec must be a JSON object")],
)
def test_a_bad_spec_gives_one_line_and_no_output(tmp_path, command, spec, message):
    proc = run_cli(command, *STAGE_ARGS[command], "--spec", spec, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"acbo {command}: error: {message}") and proc.stderr.count("\n") == 1, proc.stderr
    assert not any(tmp_path.iterdir())


def _relative_imports(path) -> set[str]:
    """Modules of the package that ``path`` imports (at module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {alias.name for alias in node.names}
    return found


def test_no_module_imports_from_the_cli():
    importers = sorted(p.stem for p in PACKAGE.glob("*.py") if "cli" in _relative_imports(p))
    assert importers == ["__main__"]


def test_the_package_has_no_import_cycle():
    graph = {p.stem: _relative_imports(p) & {q.stem for q in PACKAGE.glob("*.py")} for p in PACKAGE.glob("*.py")}
    done, path = set(), []

    def visit(module):
        assert module not in path, f"import cycle: {' -> '.join(path[path.index(module):] + [module])}"
        if module in done:
            return
        path.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


# The modules each stage's command runs, and those of its imports that cannot change what it writes.
STAGE_ENTRIES = {
    "suite": ["suites"], "train": ["train"], "evaluate": ["evaluate", "methods"],
    "baselines": ["evaluate", "baselines"], "plugin": ["evaluate", "plugins"],
    "summary": ["summary_inputs", "summarize", "report"],
}
INERT = {"atomic", "errors", "provenance", "compile_cache", "paths", "config", "config_schema"}
INERT_FOR = {"train": {"generators"}, "baselines": {"checkpoint"}, "plugin": {"checkpoint"}}  # via config / policies


def test_every_module_a_stage_imports_is_in_its_code_hash():
    from workflow_src.provenance import STAGE_SOURCES

    modules = {p.stem for p in PACKAGE.glob("*.py")}
    for stage, entries in STAGE_ENTRIES.items():
        seen, todo = set(), list(entries)
        while todo:
            module = todo.pop()
            if module not in seen:
                seen.add(module)
                todo += sorted(_relative_imports(PACKAGE / f"{module}.py") & modules)
        hashed = {name.removesuffix(".py") for name in STAGE_SOURCES[stage]}
        assert seen - hashed - INERT - INERT_FOR.get(stage, set()) == set(), stage


def test_importing_the_library_changes_no_environment():
    code = (
        "import os, workflow_src.evaluate, workflow_src.summarize, workflow_src.train; "
        "print([v for v in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS') if v in os.environ])"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
