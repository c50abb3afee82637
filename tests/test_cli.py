"""The CLI's one spec parser and the package's one-way imports (no module reaches back into the CLI)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import ROOT, call_cli

from workflow_src.config import packaged_config, suite_slice
from workflow_src.provenance import code_hash, imported_modules
from workflow_src.stages import STAGES

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
    proc = call_cli(command, *STAGE_ARGS[command], "--spec", spec, cwd=tmp_path)
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
SHARED = {"paths", "errors", "config", "config_schema", "atomic", "tables", "provenance", "compile_cache", "jobstats",
          "suite_catalogue", "stages"}


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
    [("compile_cache.py", {"train", "evaluate", "baselines", "plugin", "response_quality"}),
     # the summary reads suite files (which SCMs are linear); an edit reruns every suite, so summaries anyway
     ("core/scm.py", {"suite", "train", "evaluate", "baselines", "plugin", "response_quality", "summary"}),
     ("evaluate/baselines/causal_bo.py", {"baselines"}), ("report/figures.py", {"summary"}),
     ("evaluate/registry.py", {"evaluate", "baselines", "plugin", "response_quality", "summary"}),
     ("train/grpo.py", {"train"}),
     ("policy/checkpoint.py", {"train", "evaluate", "baselines", "plugin", "response_quality", "summary"}),
     ("evaluate/response_eval.py", {"response_quality"}), ("report/response_quality.py", {"summary"}),
     ("bench.py", set())],
)
def test_a_stage_code_hash_changes_exactly_when_its_code_does(tmp_path, module, stages):
    import shutil

    root = tmp_path / "workflow_src"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    before = {stage: code_hash.__wrapped__(STAGES[stage].entries, root) for stage in STAGES}
    with open(root / module, "a") as f:
        f.write("\n# edited\n")
    after = {stage: code_hash.__wrapped__(STAGES[stage].entries, root) for stage in STAGES}
    assert {stage for stage in STAGES if before[stage] != after[stage]} == stages


def test_importing_the_library_changes_no_environment():
    code = (
        "import os, workflow_src.evaluate.run, workflow_src.report.summarize, workflow_src.train.loop; "
        "print([v for v in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS') if v in os.environ])"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- a user's files survive every command; bad values and unwritable places: one line, nothing written -----

CONFIG = ROOT / "config/config.yaml"
SUMMARY_SPEC = json.dumps({"config": "synth", "seeds": [0], "eval_suites": ["heldout-L01"],
                           "bootstrap_resamples": 100, "bootstrap_seed": 0})
PROTOCOL = {"episodes": 1, "interventions": 2, "n_obs": 3, "min_suite_episodes": 1, "seed": 0}


def assert_refused(proc, command: str, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"acbo {command}: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def snapshot(folder) -> dict:
    """Every file under ``folder`` with its bytes (the hidden ones, temporary files, included)."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def summarize_into(cwd, charts_dir, *extra):
    return call_cli("summarize", "--experiment", "synth", "--spec", SUMMARY_SPEC, "--results", cwd / "results",
                   "--checkpoints", cwd / "ck", "--out-table", cwd / "s.parquet", "--out-html", cwd / "s.html",
                   "--charts-dir", charts_dir, *extra, cwd=cwd)


@pytest.mark.parametrize("case", ["foreign folder", "working folder", "its path", "a file", "inside"])
def test_summarize_never_replaces_a_charts_folder_it_did_not_write(tmp_path, case):
    (tmp_path / "mydata").mkdir()
    (tmp_path / "mydata" / "important.txt").write_text("mine")
    (tmp_path / "behaviour.png").write_bytes(b"a user's picture")  # a chart's name, but in the working folder
    (tmp_path / "notes").write_text("a file")
    charts, extra, message = {
        "foreign folder": ("mydata", (), "holds files this command did not write (important.txt)"),
        "working folder": (".", (), "is the working folder"),
        "its path": (str(tmp_path), (), "is the working folder"),
        "a file": ("notes", (), "is an existing file, not a folder"),
        "inside": ("new", ("--out-html", tmp_path / "new" / "s.html"), "holds the output of --out-html"),
    }[case]
    before = snapshot(tmp_path)
    assert_refused(summarize_into(tmp_path, charts, *extra), "summarize", f"--charts-dir {charts}: {message}")
    assert snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["mydata", "behaviour.png", "notes"])


def test_an_output_that_is_an_input_or_another_output_is_refused(tmp_path):
    files = {name: tmp_path / name for name in ("f.ckpt", "s.json", "s.parquet", "p.py")}
    for path in files.values():
        path.write_bytes(b"the user's " + path.name.encode())
    (tmp_path / "link.json").symlink_to(files["s.json"])
    spec = json.dumps({**PROTOCOL, "policy_modes": ["greedy"], "baselines": ["random"]})
    cases = [
        ("evaluate", ["--checkpoint", files["f.ckpt"], "--suite", files["s.json"], "--out", files["f.ckpt"]],
         f"--out {files['f.ckpt']}: is an input of this command"),
        ("baselines", ["--suite", files["s.json"], "--out", tmp_path / "link.json"], "is an input of this command"),
        ("plugin", ["--file", files["p.py"], "--suite", files["s.json"], "--out", files["p.py"]], "is an input"),
        ("compare", [files["s.parquet"], "--out", files["s.parquet"]], "is an input of this command"),
        ("summarize", ["--experiment", "synth", "--out-table", tmp_path / "o", "--out-html", tmp_path / "o",
                       "--charts-dir", tmp_path / "c"], "--out-html"),
    ]
    before = snapshot(tmp_path)
    for command, args, message in cases:
        spec_args = ["--spec", SUMMARY_SPEC if command == "summarize" else spec] if command != "compare" else []
        assert_refused(call_cli(command, *args, *spec_args, cwd=tmp_path), command, message)
        assert snapshot(tmp_path) == before, command


@pytest.mark.parametrize("with_spec", [False, True], ids=["config read", "spec given"])
def test_the_default_config_is_never_an_output(tmp_path, with_spec):
    """The config a command reads by default (``config/config.yaml`` of the working folder) is protected like
    any named input, also when a ``--spec`` stands in for it: one line, nothing written."""
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config/config.yaml", tmp_path / "config/config.yaml")
    for name in ("f.ckpt", "s.json", "p.py"):
        (tmp_path / name).write_bytes(b"the user's " + name.encode())
    spec = ["--spec", json.dumps({**PROTOCOL, "policy_modes": ["greedy"], "baselines": ["random"]})] * with_spec
    cases = {
        "evaluate": ["--checkpoint", "f.ckpt", "--suite", "s.json"],
        "baselines": ["--suite", "s.json"],
        "plugin": ["--file", "p.py", "--suite", "s.json"],
    }
    before = snapshot(tmp_path)
    for command, args in cases.items():
        proc = call_cli(command, *args, "--out", "config/config.yaml", *spec, cwd=tmp_path)
        assert_refused(proc, command, "--out config/config.yaml: is an input of this command")
        assert snapshot(tmp_path) == before, command


def test_a_config_overwritten_by_a_table_is_one_line(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.yaml").write_bytes(b"PAR1\x15\x04\x15\xff\xfe binary Parquet bytes")
    (tmp_path / "s.json").write_text("{}")
    proc = call_cli("baselines", "--suite", "s.json", "--out", "b.parquet", cwd=tmp_path)
    assert_refused(proc, "baselines", "config/config.yaml: not a config file (not UTF-8 text")
    assert not (tmp_path / "b.parquet").exists()


OUTPUT_OPTIONS = [  # (command, arguments with OUT where the output goes, the option)
    ("train", ["--experiment", "debug", "--seed", "0", "--config", CONFIG, "--checkpoint-dir", "OUT"],
     "--checkpoint-dir"),
    ("train", ["--experiment", "debug", "--seed", "0", "--config", CONFIG, "--log-table", "OUT"], "--log-table"),
    ("suite", ["generate", "heldout-L01", "--config", CONFIG, "--out", "OUT"], "--out"),
    ("evaluate", ["--checkpoint", "x.ckpt", "--suite", "x.json", "--out", "OUT"], "--out"),
    ("baselines", ["--suite", "x.json", "--out", "OUT"], "--out"),
    ("plugin", ["--file", "x.py", "--suite", "x.json", "--out", "OUT"], "--out"),
    ("summarize", ["--experiment", "synth", "--spec", SUMMARY_SPEC, "--out-table", "OUT"], "--out-table"),
    ("summarize", ["--experiment", "synth", "--spec", SUMMARY_SPEC, "--out-html", "OUT"], "--out-html"),
    ("summarize", ["--experiment", "synth", "--spec", SUMMARY_SPEC, "--charts-dir", "OUT"], "--charts-dir"),
    ("compare", ["x.parquet", "--out", "OUT"], "--out"),
    ("bench", ["--config", CONFIG, "--out", "OUT"], "--out"),
]


def unprivileged() -> list[str]:
    """A prefix that runs a command as an unprivileged user (root may write into read-only folders)."""
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []


@pytest.mark.parametrize("command, args, option", OUTPUT_OPTIONS, ids=[f"{c} {o}" for c, _, o in OUTPUT_OPTIONS])
def test_an_output_under_a_file_or_in_a_read_only_folder_is_one_line_before_any_work(command, args, option):
    evaluation = {**PROTOCOL, "policy_modes": ["greedy"], "baselines": ["random"]}
    spec = [] if "--spec" in args or command in ("compare", "bench", "train", "suite") else [
        "--spec", json.dumps(evaluation)]
    folder = Path(tempfile.mkdtemp())  # outside pytest's folder, which only root may enter
    try:
        (folder / "file").write_text("a file")
        readonly = folder / "readonly"
        readonly.mkdir()
        os.chmod(folder, 0o777)
        os.chmod(readonly, 0o555)
        for out, message in ((folder / "file" / "out", "is a file, not a folder"),
                             (readonly / "out", f"the folder {readonly} is not writable"),
                             (readonly / "new" / "out", f"the folder {readonly} is not writable")):
            before = snapshot(folder)
            argv = [a if a != "OUT" else out for a in args]
            proc = subprocess.run([*unprivileged(), sys.executable, "-m", "workflow_src", command, *map(str, argv),
                                   *spec], cwd=folder, capture_output=True, text=True,
                                  env={**os.environ, "ACBO_JAX_CACHE": str(folder / "cache")})
            assert_refused(proc, command, f"{option} {out}: ", message)
            assert snapshot(folder) == before
    finally:
        shutil.rmtree(folder)


@pytest.mark.parametrize("command, args, message", [
    ("train", ["--seed", "-1"], "--seed: -1 is less than the minimum of 0"),
    ("train", ["--seed", str(2**70)], "--seed: 1180591620717411303424 is greater than the maximum"),
    ("train", ["--seed", "0", "--episodes", "-5"], "--episodes: -5 is less than the minimum of 1"),
    ("train", ["--seed", "0", "--episodes", "0"], "--episodes: 0 is less than the minimum of 1"),
    ("train", ["--seed", "0", "--stop-after", "0"], "--stop-after: 0 is less than the minimum of 1"),
    ("evaluate", ["--checkpoint", "x.ckpt", "--suite", "x.json", "--out", "o.parquet", "--seed", "-3"],
     "--seed: -3 is less than the minimum of 0"),
    ("evaluate", ["--checkpoint", "x.ckpt", "--suite", "x.json", "--out", "o.parquet", "--methods",
                  "greedy,greedy"], "--methods 'greedy,greedy': names greedy more than once"),
    ("baselines", ["--suite", "x.json", "--out", "o.parquet", "--methods", "random,oracle,random"],
     "names random more than once"),
    ("bench", ["--only", "train,typo", "--out", "b"], "--only: unknown benchmark 'typo' (known: suites, train"),
])
def test_bad_option_values_are_one_line_and_nothing_is_written(tmp_path, command, args, message):
    (tmp_path / "x.ckpt").write_bytes(b"not read")
    (tmp_path / "x.json").write_bytes(b"not read")
    before = snapshot(tmp_path)
    base = ["--experiment", "debug", "--config", CONFIG, "--checkpoint-dir", "ck"] if command == "train" else []
    spec = ["--spec", json.dumps({**PROTOCOL, "policy_modes": ["greedy"], "baselines": ["random"]})] if command in (
        "evaluate", "baselines") else []
    assert_refused(call_cli(command, *base, *args, *spec, cwd=tmp_path), command, message)
    assert snapshot(tmp_path) == before


SUITE_SPEC = suite_slice(packaged_config(), "train-L01")
SPEC_VALUES = [  # (command, --spec, what the line says)
    ("evaluate", {**PROTOCOL, "episodes": 0, "policy_modes": ["greedy"]}, "--spec: episodes: 0 is less than"),
    ("baselines", {**PROTOCOL, "interventions": -1, "baselines": ["random"]}, "--spec: interventions: -1 is less"),
    ("baselines", {**PROTOCOL, "n_obs": "ten", "baselines": ["random"]}, "--spec: n_obs: 'ten' is not of type"),
    ("evaluate", {**PROTOCOL, "seed": 2**70, "policy_modes": ["greedy"]}, "--spec: seed: 1180591620717411303424 is"),
    ("baselines", {**PROTOCOL, "baselines": []}, "--spec: baselines: [] should be non-empty"),
    ("evaluate", {**PROTOCOL, "policy_modes": []}, "--spec: policy_modes: [] should be non-empty"),
    ("baselines", {**PROTOCOL, "baselines": ["random", "random"]}, "--spec: baselines: ['random', 'random'] has"),
    ("suite", {k: v for k, v in SUITE_SPEC.items() if k != "generator"}, "'generator' is a required property"),
    ("suite", {**SUITE_SPEC, "size": 0}, "--spec: size: 0 is less than the minimum of 1"),
    ("plugin", {**PROTOCOL, "n_obs": 1}, "--spec: n_obs: 1 is less than the minimum of 2"),
    # sizes are bounded above too: a huge protocol is one line, not a JAX traceback or an XLA abort
    ("evaluate", {**PROTOCOL, "episodes": 1e20, "policy_modes": ["greedy"]}, "--spec: episodes: 1e+20 is greater than"),
    ("baselines", {**PROTOCOL, "interventions": 10**8, "baselines": ["random"]},
     "--spec: interventions: 100000000 is greater than the maximum of 1000"),
    ("suite", {**SUITE_SPEC, "size": 10**9}, "--spec: size: 1000000000 is greater than the maximum of 100000"),
    ("baselines", {**PROTOCOL, "min_suite_episodes": 10**6, "baselines": ["random"]},
     "--spec: min_suite_episodes: 1000000 is greater than the maximum of 1000"),
    ("evaluate", {**PROTOCOL, "min_suite_episodes": 0, "policy_modes": ["greedy"]},
     "--spec: min_suite_episodes: 0 is less than the minimum of 1"),
    ("summarize", {**json.loads(SUMMARY_SPEC), "bootstrap_seed": -1}, "--spec: bootstrap_seed: -1 is less"),
]


@pytest.mark.parametrize("command, spec, message", SPEC_VALUES, ids=lambda v: None)
def test_spec_values_are_checked_with_the_config_schema(tmp_path, command, spec, message):
    args = {"evaluate": ["--checkpoint", "x.ckpt", "--suite", "x.json", "--out", "o.parquet"],
            "baselines": ["--suite", "x.json", "--out", "o.parquet"], "suite": ["generate", "--out", "s.json"],
            "plugin": ["--file", "x.py", "--suite", "x.json", "--out", "o.parquet"],
            "summarize": ["--experiment", "synth"]}[command]
    proc = call_cli(command, *args, "--spec", json.dumps(spec), cwd=tmp_path)
    assert_refused(proc, command if command != "suite" else "suite", message)
    assert not any(tmp_path.iterdir())


def test_a_train_spec_lacking_a_nested_key_is_refused(tmp_path, default_config):
    from workflow_src.config import train_slice

    spec = json.loads(json.dumps(train_slice(default_config, "debug")))  # a copy: the fixture is shared
    del spec["policy"]["hidden_dim"]
    proc = call_cli("train", "--experiment", "debug", "--seed", "0", "--spec", json.dumps(spec), cwd=tmp_path)
    assert_refused(proc, "train", "--spec: policy: 'hidden_dim' is a required property")
    assert not any(tmp_path.iterdir())


def test_a_cache_folder_that_cannot_be_written_is_one_warning_and_the_job_runs(tmp_path):
    """Run from a read-only folder (the default cache .jax_cache is made there): one warning line, no cache."""
    from workflow_src.config import suite_slice
    from workflow_src.suites.build import build_suite

    folder = Path(tempfile.mkdtemp())
    try:
        readonly, out = folder / "readonly", folder / "out"
        readonly.mkdir()
        out.mkdir()
        build_suite(suite_slice(packaged_config(), "heldout-classic"), out / "s.json")
        for path, mode in ((folder, 0o755), (out, 0o777), (readonly, 0o555)):
            os.chmod(path, mode)
        spec = json.dumps({**PROTOCOL, "baselines": ["random"]})
        env = {k: v for k, v in os.environ.items() if k != "ACBO_JAX_CACHE"}
        proc = subprocess.run([*unprivileged(), sys.executable, "-m", "workflow_src", "baselines", "--suite",
                               out / "s.json", "--out", out / "t.parquet", "--spec", spec], cwd=readonly, env=env,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.startswith(f"acbo: warning: the compilation cache {readonly}/.jax_cache cannot be "
                                      f"written: the folder {readonly} is not writable: running without it")
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert (out / "t.parquet").is_file() and not any(readonly.iterdir())
    finally:
        shutil.rmtree(folder)
