"""Exact staleness: on a finished study, `snakemake -n` plans exactly the jobs a change made stale.

Also preemption: a training job killed (SIGTERM, then SIGKILL) and restarted by Snakemake resumes from its
latest checkpoint and ends with the same final checkpoint as an uninterrupted run.
"""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import cbo_toy_doc, copy_study, planned_jobs, snakemake, snakemake_bin, wait_for

SUMMARIES = ["results/tiny_a/summary.html", "results/tiny_b/summary.html"]


@pytest.fixture
def study(tiny_study, tmp_path):
    """A private copy of the session's finished tiny study."""
    return copy_study(tiny_study, tmp_path / "wf")


def edit_config(study: Path, change) -> None:
    path = study / "config/config.yaml"
    cfg = yaml.safe_load(path.read_text())
    change(cfg)
    path.write_text(yaml.safe_dump(cfg))


def test_nothing_changed_plans_nothing_even_after_touch(study):
    assert planned_jobs(study, *SUMMARIES) == {}
    stamp = time.time()
    for path in study.rglob("*"):
        if path.is_file() and ".snakemake" not in path.parts:
            os.utime(path, (stamp, stamp))
    assert planned_jobs(study, *SUMMARIES) == {}


def test_evaluation_setting_reruns_only_evaluations_and_summaries(study):
    edit_config(study, lambda c: c["evaluation"].update(policy_modes=["greedy"]))
    assert planned_jobs(study, "results/tiny_a/summary.html") == {"evaluate": 2, "summary": 1}


def test_training_setting_of_one_config_reruns_only_that_config(study):
    edit_config(study, lambda c: c["experiments"]["tiny_a"].update(training={"learning_rate": 1e-3}))
    assert planned_jobs(study, *SUMMARIES) == {"train": 1, "evaluate": 2, "summary": 1}


def test_added_seed_runs_only_that_seed(study):
    edit_config(study, lambda c: c["experiments"]["tiny_b"].update(seeds=[0, 1]))
    assert planned_jobs(study, *SUMMARIES) == {"train": 1, "evaluate": 2, "summary": 1}


@pytest.mark.parametrize(
    "module, expected",
    [("report/figures.py", {"summary": 2}), ("evaluate/baselines.py", {"baselines": 3, "summary": 2}),
     ("train/grpo.py", {"train": 2, "evaluate": 4, "summary": 2})],
)
def test_code_edit_reruns_its_stage_and_downstream(study, module, expected):
    with open(study / "workflow_src" / module, "a") as f:
        f.write("\n# an edit\n")
    assert planned_jobs(study, *SUMMARIES) == expected


def test_suite_setting_reruns_that_suite_and_downstream(study):
    edit_config(study, lambda c: c["suites"]["pool_size"].update(heldout=2))
    # heldout-L01: its baselines and plug-in jobs, both configs' evaluations on it; not heldout-classic, not mine
    assert planned_jobs(study, *SUMMARIES) == {"suite": 1, "baselines": 1, "plugin": 1, "evaluate": 2, "summary": 2}


# --- a user suite with nonlinear mechanisms ------------------------------------------------------------------


def test_editing_a_mechanism_of_a_user_suite_reruns_exactly_its_downstream_jobs(study):
    """tiny_b is evaluated on heldout-L01 and the user suite ``mine`` (the CBO toy graph, acbo-suite/2)."""
    copy = study / "results/suites/mine.json"
    before = json.loads(copy.read_text())["scms"][0]["oracle"]
    (study / "mine.json").write_text(json.dumps(cbo_toy_doc(cos_weight=1.5)))  # a term's weight
    # its copy, the baselines and the plug-in on it, the one evaluation on it and that config's summary; not the
    # other config, not training, not heldout-L01's jobs
    expected = {"suite": 1, "baselines": 1, "plugin": 1, "evaluate": 1, "summary": 1}
    assert planned_jobs(study, *SUMMARIES) == expected
    snakemake(study, "results/suites/mine.json")
    after = json.loads(copy.read_text())["scms"][0]
    assert after["edges"][1]["terms"][0]["weight"] == 1.5
    assert after["oracle"]["y_star"] != before["y_star"]  # the copy's oracle is computed afresh for the edit
    assert planned_jobs(study, *SUMMARIES) == {k: n for k, n in expected.items() if k != "suite"}
    summary = pd.read_parquet(study / "results/tiny_b/summary.parquet")
    assert {"all linear SCMs", "all nonlinear SCMs"} <= set(summary["suite"])


# --- preemption ------------------------------------------------------------------------------------------


def _train_pids(study: Path) -> list[int]:
    """PIDs of `acbo train` processes running in the study directory."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if cwd == str(study) and b"train" in cmd and any(c.endswith(b"workflow_src") or c.endswith(b"acbo")
                                                         for c in cmd):
            pids.append(int(proc.name))
    return pids


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_final_checkpoint(tiny_study, tmp_path):
    study = copy_study(tiny_study, tmp_path / "wf")  # its suites are there: only the training job runs
    edit_config(study, lambda c: c["experiments"]["tiny_a"].update(episodes=40, checkpoint_every=2))
    ckpt_dir = study / "checkpoints/tiny_a/seed_0"
    target = "checkpoints/tiny_a/seed_0/final.ckpt"
    env = {**os.environ, "PATH": f"{Path(snakemake_bin()).parent}:{os.environ['PATH']}"}
    run = subprocess.Popen([snakemake_bin(), "--cores", "1", "--retries", "2", target], cwd=study, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for sig, after in ((signal.SIGTERM, 6), (signal.SIGKILL, 20)):
            checkpoint = ckpt_dir / f"episode_{after:05d}.ckpt"
            wait_for(checkpoint.exists, what=f"episode {after}")
            pid = wait_for(lambda: _train_pids(study), what="the training process")[0]
            os.kill(pid, sig)
            wait_for(lambda pid=pid: pid not in _train_pids(study), what="the process to end")
        output, _ = run.communicate(timeout=600)
    finally:
        run.kill()
    assert run.returncode == 0, output
    log = (study / "logs/tiny_a/train/seed_0.log").read_text()
    assert "resuming from" in log
    # the uninterrupted run of the same config and seed
    other = tmp_path / "uninterrupted"
    shutil.copytree(study / "results/suites", other / "suites")
    subprocess.run(
        [Path(snakemake_bin()).parent / "acbo", "train", "--experiment", "tiny_a", "--seed", "0", "--config",
         study / "config/config.yaml", "--suites-dir", other / "suites", "--checkpoint-dir", other / "ckpt",
         "--log-table", other / "log.parquet", "--no-progress", "--threads", "1"],
        env=env, check=True, capture_output=True, cwd=study,
    )
    assert (ckpt_dir / "final.ckpt").read_bytes() == (other / "ckpt/final.ckpt").read_bytes()
