"""Lean jobs: a job imports only what its stage uses (start-up time is paid by every job of a study)."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, policy_settings

PROBE = """
import sys
from workflow_src import cli
cli.configure_jax(1)
from workflow_src.evaluate.baselines import baseline_methods
from workflow_src.config import load_config, baselines_slice
from workflow_src.evaluate.run import write_evaluation
from workflow_src.suites.suite_io import load_suite
baselines_slice(load_config("config/config.yaml"))
print(sorted(m for m in ("networkx", "flax", "optax", "altair", "matplotlib", "scipy.optimize", "pandas")
             if m in sys.modules))
"""


def test_baseline_jobs_import_no_graph_network_or_chart_library():
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout


def acbo(*args, env=None) -> tuple[str, set[str]]:
    """Run an ``acbo`` command under ``-X importtime``: its output and the modules it imported."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "workflow_src", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, check=True, env=env)
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time")}
    return proc.stdout, imported


def test_a_baseline_job_writes_its_table_without_pandas(tmp_path):
    """pandas is 0.3 s of start-up: evaluation tables are built from Arrow buffers (``tables.columns_to_table``)."""
    acbo("suite", "generate", "heldout-classic", "--out", tmp_path / "s.json")
    spec = ('{"seed": 1, "episodes": 2, "interventions": 3, "n_obs": 4, "min_suite_episodes": 1, '
            '"baselines": ["random", "causal_bo"]}')
    out, imported = acbo("baselines", "--suite", tmp_path / "s.json", "--out", tmp_path / "t.parquet", "--spec", spec)
    assert "(36 rows)" in out, out  # 2 methods x 3 SCMs x 2 episodes x 3 steps
    assert "pyarrow" in imported and not {"pandas", "flax", "networkx"} & imported


def test_an_evaluation_job_whose_program_is_stored_imports_no_flax(tmp_path):
    """Flax is 0.25 s of an evaluation job's start-up (its import and the tracing of the network's
    initialization): a job that loads its program from the store reads the checkpoint without it."""
    import os

    import jax

    from workflow_src.evaluate.run import read_run_infos
    from workflow_src.policy import checkpoint
    from workflow_src.policy.network import init_params, make_policy
    from workflow_src.policy.spec import architecture

    config = policy_settings(hidden_dim=8, n_heads=2, n_layers=1, fixed_std=0.5, bandit_features=True,
                             effect_head=False, prior="interventional_regression", curve_features=False,
                             budget_feature=False, response_model=False, response_lines=False)
    params = init_params(make_policy(config), jax.random.PRNGKey(0))
    ckpt = tmp_path / "final.ckpt"
    checkpoint.save(ckpt, {"architecture": architecture(config), "config_hash": "c", "episode": 1}, {"params": params})
    acbo("suite", "generate", "heldout-classic", "--out", tmp_path / "s.json")
    env = {**os.environ, "ACBO_JAX_CACHE": str(tmp_path / "cache")}  # an empty store: the first job traces
    spec = ('{"seed": 1, "episodes": 2, "interventions": 3, "n_obs": 4, "min_suite_episodes": 1, '
            '"policy_modes": ["greedy", "sampled"]}')
    for name, origin, flax in (("cold", "traced", True), ("warm", "stored export", False)):
        out, imported = acbo("evaluate", "--checkpoint", ckpt, "--suite", tmp_path / "s.json",
                             "--out", tmp_path / f"{name}.parquet", "--spec", spec, env=env)
        assert [info.origin for info in read_run_infos(out)] == [origin], out
        assert ("flax" in imported) == flax and "pandas" not in imported
    assert (tmp_path / "cold.parquet").read_bytes() == (tmp_path / "warm.parquet").read_bytes()


def test_the_config_alone_does_not_import_networkx():
    code = ("import sys, workflow_src.cli, workflow_src.config, workflow_src.suites.suite_io; "
            "print('networkx' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"


def test_study_figures_are_read_from_the_job_logs(tmp_path):
    from workflow_src.bench_study import read_job_logs, summarize_jobs
    from workflow_src.evaluate.run import RunInfo

    def run_info(chunk, program, source, compile_s, origin):
        return RunInfo(8, chunk, 1, program, source, compile_s, origin).line()

    def stats(command, wall, startup, peak):
        return "job stats: " + json.dumps({"command": command, "wall_s": wall, "startup_s": startup, "peak_mib": peak})

    logs = {
        "baselines/heldout-L01.log": f"{run_info(32, 'aaa111', 'compiled (cache miss, now stored)', 20.0, 'traced')}"
        f"\nwrote x\n{stats('baselines', 25.5, 2.5, 800)}\n",
        "debug/eval/seed_0/heldout-L01.log": f"{run_info(32, 'bbb222', 'persistent cache', 1.0, 'traced')}\n"
        f"{stats('evaluate', 6.0, 3.0, 600)}\n",
        "debug/eval/seed_0/heldout-L02.log": f"{run_info(32, 'bbb222', 'persistent cache', 0.4, 'stored export')}\n"
        f"{stats('evaluate', 4.0, 2.0, 650)}\n",
        "debug/train/seed_0.log": f"{stats('train', 40.0, 3.0, 900)}\n",
        "suites/broken.log": "Traceback ...\n",  # a failed job has no stats line
    }
    for name, text in logs.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    figures = summarize_jobs(read_job_logs(tmp_path))
    assert figures["by_command"]["evaluate"] == {"jobs": 2, "job_s": 10.0, "startup_s": 2.5, "peak_mib": 650}
    assert figures["by_command"]["train"]["job_s"] == 40.0 and "suite generate" not in figures["by_command"]
    assert figures["programs"] == 2 and figures["buckets"] == [8] and figures["evaluation_jobs_from_cache"] == 2
    assert figures["evaluation_jobs_untraced"] == 1
    assert figures["evaluation_job_s_max"] == 25.5


def test_planned_programs_count_each_variable_and_term_bucket():
    from workflow_src.bench_study import planned_programs

    # (largest SCM, term bucket): heldout-L01/L02 share the linear 8-variable programs, a nonlinear suite of the
    # same size needs its own, and one with more terms (or variables) another
    plan = planned_programs({"heldout-L01": (5, 0), "heldout-L02": (8, 0), "heldout-cbo": (3, 16),
                             "heldout-NL01": (5, 16), "heldout-NL09": (20, 32)})
    assert plan["buckets"] == {"heldout-L01": [8, 0], "heldout-L02": [8, 0], "heldout-cbo": [8, 16],
                               "heldout-NL01": [8, 16], "heldout-NL09": [32, 32]}
    assert plan["programs"] == 2 * 3


def test_every_stage_command_ends_its_log_with_job_stats(tmp_path):
    from conftest import run_cli

    from workflow_src.jobstats import read_summary_line

    proc = run_cli("suite", "generate", "heldout-classic", "--out", tmp_path / "s.json", check=True)
    last = proc.stdout.strip().splitlines()[-1]
    stats = read_summary_line(last)
    assert stats["command"] == "suite generate" and stats["peak_mib"] > 0 and stats["wall_s"] >= stats["startup_s"]


TOUCH = """
def touch(mib):
    block = bytearray(mib * 1024 ** 2)
    block[::4096] = b"x" * len(block[::4096])
    return block
"""
CHILD = TOUCH + "from workflow_src.jobstats import peak_mib\nheld = touch(300)\nprint(peak_mib())\n"
BIG_PARENT = TOUCH + f"""
import subprocess, sys
held = touch(1024)
print(subprocess.run([sys.executable, "-c", {CHILD!r}], capture_output=True, text=True, check=True).stdout)
"""


def test_a_jobs_peak_memory_is_its_own_not_its_parents():
    """A job started by a large process (a Snakemake or pytest worker) reports the peak of its own program: a
    1 GiB parent, a child that touches 300 MiB."""
    proc = subprocess.run([sys.executable, "-c", BIG_PARENT], cwd=ROOT, capture_output=True, text=True, check=True)
    assert 300 < float(proc.stdout) < 600, proc.stdout


def test_the_bench_takes_a_jobs_peak_memory_from_its_job_stats(tmp_path):
    from workflow_src.bench import _acbo, _run

    held = bytearray(512 * 1024**2)  # this process (the bench) grows well past the job's size
    held[::4096] = b"x" * len(held[::4096])
    result = _run(_acbo("suite", "generate", "heldout-classic", "--out", tmp_path / "s.json"), dict(os.environ))
    assert 0 < result["peak_rss_mib"] < 400 and result["wall_s"] > 0, result
    with pytest.raises(RuntimeError, match="suite generate heldout-nope"):
        _run(_acbo("suite", "generate", "heldout-nope", "--out", tmp_path / "t.json"), dict(os.environ))


def test_training_rates_leave_out_the_episodes_that_compiled_a_bucket():
    import pandas as pd

    from workflow_src.bench import _episode_durations

    log = pd.DataFrame({"level": [1, 1, 2, 2, 6, 6, 1], "wall_time": [9.0, 9.5, 10.0, 10.5, 20.0, 21.0, 21.5]})
    duration, compiled = _episode_durations(log, {1: 8, 2: 8, 6: 16})
    assert list(compiled) == [True, False, False, False, True, False, False]
    assert list(duration) == [9.0, 0.5, 0.5, 0.5, 9.5, 1.0, 0.5]


@pytest.mark.slow
def test_the_acquisition_benchmark_times_each_bucket(tmp_path):
    """``acbo bench --only acquisition`` writes, per shape bucket, the ms per observation of the production
    network's search and its search-then-network step, on buffers as long as the protocol's (what the figures
    are is the benchmark's business: nothing here compares times)."""
    import json

    from conftest import call_cli

    proc = call_cli("bench", "--only", "acquisition", "--out", tmp_path, "--threads", 1)
    assert proc.returncode == 0, proc.stderr
    figures = json.loads((tmp_path / "acquisition.json").read_text())
    timed = {f"{mode}_ms_{bucket}" for mode in ("amortized_ei", "greedy") for bucket in (8, 16, 32, 64)}
    assert set(figures) == timed | {"batch", "samples", "machine"}, figures
    assert figures["samples"] == 30 and all(figures[key] > 0 for key in timed), figures
