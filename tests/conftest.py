import io
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("ACBO_JAX_CACHE", str(ROOT / ".jax_cache"))

from workflow_src.cli import configure_jax  # noqa: E402  (after the cache location is set)

configure_jax(None)  # the persistent compilation cache, shared with the CLI subprocesses
# In CI (.ci/run sets ACBO_REQUIRE_ALL=1) a missing real component is a failure, not a skip.
REQUIRE_ALL = os.environ.get("ACBO_REQUIRE_ALL") == "1"


def require(condition: bool, what: str) -> None:
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"{what} is required in CI (ACBO_REQUIRE_ALL=1) but not available")
    pytest.skip(f"{what} not available")


def run_cli(*args, cwd=ROOT, check=False, env=None, timeout=600, cpus=None):
    """Run the `acbo` CLI in a subprocess (restricted to the CPU numbers ``cpus`` by ``taskset`` when given)
    and return the CompletedProcess."""
    pin = ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []
    proc = subprocess.run(
        [*pin, sys.executable, "-m", "workflow_src", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"acbo {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def call_cli(*args, cwd=ROOT, check=False):
    """Run the `acbo` CLI's ``main`` in this process, in the folder ``cwd``, and return a CompletedProcess with
    its exit status and what it wrote to stdout and stderr. For the tests that are not about the command's
    start-up, imports or signals: no interpreter start, and programs JAX already traced are reused. The
    environment, the working folder and the signal handlers are as before when it returns."""
    from workflow_src import cli

    argv = list(map(str, args))
    out, err = io.StringIO(), io.StringIO()
    environ, here = dict(os.environ), os.getcwd()
    os.chdir(cwd)
    try:
        with redirect_stdout(out), redirect_stderr(err), mock.patch.object(cli, "stop_on_interrupt", lambda _: None):
            try:
                status = cli.main(argv)
            except SystemExit as exc:  # argparse's usage errors
                status = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(here)
        os.environ.clear()
        os.environ.update(environ)
    proc = subprocess.CompletedProcess(["acbo", *argv], status, out.getvalue(), err.getvalue())
    if check and status != 0:
        raise AssertionError(f"acbo {' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def wait_for(condition, timeout=300, what="condition"):
    """Poll ``condition`` until it returns something true (returned) or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def snakemake_bin() -> str:
    exe = Path(sys.executable).parent / "snakemake"
    return str(exe) if exe.exists() else shutil.which("snakemake")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def default_config():
    from workflow_src.config import load_config

    return load_config(ROOT / "config/config.yaml")


def policy_settings(**settings) -> dict:
    """The built-in policy settings (every key the network reads, so a key added later needs no edit to a test)
    with ``settings`` over them."""
    from workflow_src.config_schema import config_schema

    return {**config_schema()["properties"]["defaults"]["default"]["policy"], **settings}


WORKFLOW_FILES = ("Snakefile", "rules", "config", "profiles", "envs", "report")


def copy_workflow(dest: Path) -> Path:
    """A fresh copy of the workflow definition (not its outputs) in ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dest / name)
    return dest


def venv_env(env: dict | None = None) -> dict:
    """The environment with this interpreter's bin directory (where `acbo` is) first on PATH."""
    env = dict(os.environ if env is None else env)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def snakemake(workdir: Path, *args, check=True, timeout=900, env=None):
    env = venv_env(env)
    proc = subprocess.run(
        [snakemake_bin(), "--cores", "2", *map(str, args)],
        cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env,
    )
    if check and proc.returncode != 0:
        command = " ".join(map(str, args))
        raise AssertionError(f"snakemake {command} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def planned_jobs(workdir: Path, *targets, extra=()) -> dict[str, int]:
    """Jobs per rule that `snakemake -n` would run for ``targets`` (parsed from its job stats)."""
    proc = snakemake(workdir, *targets, "-n", *extra)
    counts: dict[str, int] = {}
    in_table = False
    for line in (proc.stdout + proc.stderr).splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
            continue
        if in_table and len(parts) == 2 and parts[1].isdigit():
            if parts[0] != "total":
                counts[parts[0]] = int(parts[1])
        elif in_table and parts and not set(line.strip()) <= {"-", " "}:
            in_table = False
    return counts


def large_user_suite_doc(n_nodes: int, seed: int = 0) -> dict:
    """A random DAG with free node names, the last node as target, and only every other node intervenable."""
    rng = np.random.default_rng(seed)
    names = [f"gene_{chr(97 + i % 26)}{i}" for i in range(n_nodes)]
    edges = [
        {"parent": names[i], "child": names[j], "coef": float(rng.choice([-1, 1]) * rng.uniform(0.3, 1.0))}
        for j in range(1, n_nodes) for i in rng.choice(j, size=min(j, 2), replace=False)
    ]
    target = names[n_nodes - 1]
    return {
        "format": "acbo-suite/1", "name": "big-user",
        "scms": [{"id": "big-0", "nodes": names, "target": target, "edges": edges,
                  "ranges": {v: [-1.0, 2.0] for v in names[:-1:2]}}],
    }


# --- the finished study shared by the whole session ------------------------------------------------------

STUDY_CONFIG = ROOT / "tests/data/study.yaml"
EXAMPLE_PLUGIN = ROOT / "examples/plugins/surrogate_greedy.py"
STUDY_SUMMARIES = ("results/tiny_a/summary.html", "results/tiny_b/summary.html", "results/tiny_nl/summary.html")
# a test that needs a finished Snakemake study (directly or through a fixture built on it) is a `study` test
STUDY_FIXTURES = {"tiny_study"}
SLURM_TESTS = "tests/test_slurm.py::"  # node ids of the tests that share the session's SLURM cluster


def cbo_toy_doc(cos_weight: float = 1.0) -> dict:
    """The CBO paper's toy graph as a user's acbo-suite/2 file, without oracles (computed when it is copied)."""
    return {
        "format": "acbo-suite/2", "name": "mine",
        "scms": [{"id": "cbo-toy", "nodes": ["X", "Z", "Y"], "target": "Y",
                  "edges": [{"parent": "X", "child": "Z", "terms": [{"fn": "exp", "weight": 1, "scale": -1}]},
                            {"parent": "Z", "child": "Y", "terms": [{"fn": "cos", "weight": cos_weight},
                                                                    {"fn": "exp", "weight": -1, "scale": -0.05}]}],
                  "ranges": {"X": [-5, 5], "Z": [-5, 20]}}],
    }


def study_definition(dest: Path) -> Path:
    """The tiny study's definition in ``dest``: the workflow, its package sources (so code edits are seen), the
    config tests/data/study.yaml, the example plug-in as methods/greedy.py and the user suite mine.json."""
    copy_workflow(dest)
    shutil.copytree(ROOT / "workflow_src", dest / "workflow_src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(STUDY_CONFIG, dest / "config/config.yaml")
    (dest / "methods").mkdir()
    shutil.copy(EXAMPLE_PLUGIN, dest / "methods/greedy.py")
    (dest / "mine.json").write_text(json.dumps(cbo_toy_doc()))
    return dest


def run_folder(tmp_path_factory) -> Path:
    """The temporary folder of this test run: shared by the workers of `pytest -n N` (each has its own
    base folder inside it), the base folder itself without xdist."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> Path:
    """The tiny study run to the summaries of its three configs, built once per test run and shared by every
    test that needs a real finished study (report, plug-in, user suite, nonlinear, staleness, browser, SLURM).
    Tests that only read it use it directly; a test that changes anything works on ``copy_study`` of it.
    Under `pytest -n N` the first worker that needs it builds it while the others wait on a file lock."""
    from filelock import FileLock

    folder = run_folder(tmp_path_factory) / "tiny_study"
    folder.mkdir(exist_ok=True)
    workdir, built = folder / "wf", folder / "built"
    with FileLock(folder / "lock"):
        if not built.exists():
            shutil.rmtree(workdir, ignore_errors=True)  # a worker's failed attempt
            study_definition(workdir)
            snakemake(workdir, *STUDY_SUMMARIES, timeout=1800)
            built.touch()
    assert planned_jobs(workdir, *STUDY_SUMMARIES) == {}
    return workdir


def copy_study(study: Path, dest: Path) -> Path:
    """A private copy of a finished study (outputs, Snakemake's metadata and timestamps included)."""
    shutil.copytree(study, dest, symlinks=True)
    return dest


def pytest_collection_modifyitems(config, items):
    """A test that needs a finished Snakemake study is a `study` test (left out by `make test-fast`)."""
    for item in items:
        if STUDY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.study)


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadgroup` with the SLURM tests as one group: they share one local cluster (a session fixture,
    so one cluster per worker that runs any of them), so one worker runs them all and starts it once. The
    group is chosen here, from the node id: xdist 3.8 groups `xdist_group`-marked tests by rewriting
    `item._nodeid`, which pytest 9 no longer reads, so the marker alone groups nothing."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class SlurmTestsOnOneWorker(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "slurm" if nodeid.startswith(SLURM_TESTS) else super()._split_scope(nodeid)

    return SlurmTestsOnOneWorker(config, log)
