"""The CLI's one spec parser and the package's one-way imports (no module reaches back into the CLI)."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT, run_cli

from workflow_src.provenance import STAGE_ENTRIES, code_hash, imported_modules

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


def _graph() -> dict[str, set[str]]:
    """Every module of the package (dotted, relative to it) and the package's modules it imports."""
    modules = [p.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".") for p in PACKAGE.rglob("*.py")]
    packages = [m.removesuffix(".__init__") for m in modules if m.endswith(".__init__")]  # a folder's own code
    return {m: imported_modules(PACKAGE, m) for m in modules + packages if not m.endswith("__init__")}


def test_imported_modules_reads_every_form_of_relative_import(tmp_path):
    for name in ("a.py", "b.py", "sub/__init__.py", "sub/c.py", "sub/d.py", "sub/e.py", "other/__init__.py",
                 "other/f.py"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).touch()
    (tmp_path / "sub/c.py").write_text(
        "import os\nfrom . import d, e as renamed  # two\nfrom .. import a\nfrom ..b import thing\n"
        "def later():\n    from ..other import (\n        f,\n    )\n    from .d import x\n"
    )
    assert imported_modules(tmp_path, "sub.c") == {"sub.d", "sub.e", "a", "b", "other.f"}


def test_no_module_imports_from_the_cli():
    assert sorted(m for m, imports in _graph().items() if "cli" in imports) == ["__main__"]


def test_the_package_has_no_import_cycle():
    graph = _graph()
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


# Data flows one way: a module imports from its own stage or an earlier one, never from a later one or the CLI.
STAGE_ORDER = ["shared", "core", "suites", "policy", "train", "evaluate", "report", "command line"]
SHARED = {"paths", "errors", "config", "config_schema", "atomic", "tables", "provenance", "compile_cache", "jobstats"}


def _stage(module: str) -> str:
    if "." in module:
        return module.split(".")[0]
    return "shared" if module in SHARED else "command line"


def test_no_module_imports_from_a_later_stage():
    later = [f"{m} ({_stage(m)}) imports {i} ({_stage(i)})" for m, imports in _graph().items() for i in imports
             if STAGE_ORDER.index(_stage(i)) > STAGE_ORDER.index(_stage(m))]
    assert later == []
    assert {_stage(m) for m in _graph()} == set(STAGE_ORDER)


@pytest.mark.parametrize(
    "module, stages",
    [("compile_cache.py", {"train", "evaluate", "baselines", "plugin"}),
     # the summary reads suite files (which SCMs are linear); an edit reruns every suite, so summaries anyway
     ("core/scm.py", {"suite", "train", "evaluate", "baselines", "plugin", "summary"}),
     ("evaluate/baselines/causal_bo.py", {"baselines"}), ("report/figures.py", {"summary"}),
     ("evaluate/registry.py", {"evaluate", "baselines", "plugin", "summary"}),
     ("train/grpo.py", {"train"}), ("policy/checkpoint.py", {"train", "evaluate", "baselines", "plugin", "summary"}),
     ("bench.py", set())],
)
def test_a_stage_code_hash_changes_exactly_when_its_code_does(tmp_path, module, stages):
    import shutil

    root = tmp_path / "workflow_src"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    before = {stage: code_hash.__wrapped__(stage, root) for stage in STAGE_ENTRIES}
    with open(root / module, "a") as f:
        f.write("\n# edited\n")
    after = {stage: code_hash.__wrapped__(stage, root) for stage in STAGE_ENTRIES}
    assert {stage for stage in STAGE_ENTRIES if before[stage] != after[stage]} == stages


def test_importing_the_library_changes_no_environment():
    code = (
        "import os, workflow_src.evaluate.run, workflow_src.report.summarize, workflow_src.train.loop; "
        "print([v for v in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS') if v in os.environ])"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
