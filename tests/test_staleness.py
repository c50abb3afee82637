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
from conftest import ROOT, copy_workflow, planned_jobs, snakemake, snakemake_bin

SUMMARIES = ["results/tiny_a/summary.html", "results/tiny_b/summary.html"]


def study_copy(dest: Path) -> Path:
    """The workflow, its package sources (so code edits are seen) and the tiny study config."""
    copy_workflow(dest)
    shutil.copytree(ROOT / "workflow_src", dest / "workflow_src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "tests/data/study.yaml", dest / "config/config.yaml")
    return dest


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    study = study_copy(tmp_path_factory.mktemp("study") / "wf")
    snakemake(study, *SUMMARIES)
    assert planned_jobs(study, *SUMMARIES) == {}
    return study


@pytest.fixture
def study(finished_study, tmp_path):
    """A private copy of the finished study (outputs, metadata and timestamps included)."""
    dest = tmp_path / "wf"
    shutil.copytree(finished_study, dest, symlinks=True)
    return dest


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
    assert planned_jobs(study, *SUMMARIES) == {"train": 1, "evaluate": 1, "summary": 1}


@pytest.mark.parametrize(
    "module, expected",
    [("report/figures.py", {"summary": 2}), ("evaluate/baselines.py", {"baselines": 2, "summary": 2}),
     ("train/grpo.py", {"train": 2, "evaluate": 3, "summary": 2})],
)
def test_code_edit_reruns_its_stage_and_downstream(study, module, expected):
    with open(study / "workflow_src" / module, "a") as f:
        f.write("\n# an edit\n")
    assert planned_jobs(study, *SUMMARIES) == expected


def test_suite_setting_reruns_that_suite_and_downstream(study):
    edit_config(study, lambda c: c["suites"]["pool_size"].update(heldout=2))
    assert planned_jobs(study, *SUMMARIES) == {"suite": 1, "baselines": 1, "evaluate": 2, "summary": 2}


# --- a user suite with nonlinear mechanisms ------------------------------------------------------------------

USER_SUMMARIES = ["results/lin/summary.html", "results/both/summary.html"]


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


@pytest.fixture(scope="module")
def user_suite_study(tmp_path_factory):
    """Two configs of the tiny study: ``lin`` evaluated on heldout-L01, ``both`` also on the user suite ``mine``
    (the CBO toy graph, acbo-suite/2), run to their summaries."""
    study = study_copy(tmp_path_factory.mktemp("user_suite") / "wf")
    (study / "mine.json").write_text(json.dumps(cbo_toy_doc()))

    def change(cfg):
        tiny = cfg["experiments"]["tiny_a"]
        cfg["experiments"] = {"lin": {**tiny, "eval_suites": ["heldout-L01"]},
                              "both": {**tiny, "eval_suites": ["heldout-L01", "mine"]}}
        cfg["suites"]["user"] = {"mine": "mine.json"}
        cfg["evaluation"]["baselines"] = ["random", "oracle"]

    edit_config(study, change)
    snakemake(study, *USER_SUMMARIES)
    assert planned_jobs(study, *USER_SUMMARIES) == {}
    return study


def test_editing_a_mechanism_of_a_user_suite_reruns_exactly_its_downstream_jobs(user_suite_study, tmp_path):
    study = tmp_path / "wf"
    shutil.copytree(user_suite_study, study, symlinks=True)
    copy = study / "results/suites/mine.json"
    before = json.loads(copy.read_text())["scms"][0]["oracle"]
    (study / "mine.json").write_text(json.dumps(cbo_toy_doc(cos_weight=1.5)))  # a term's weight
    # its copy, the baselines on it, the one evaluation on it and that config's summary; not the other config,
    # not training, not heldout-L01's jobs
    assert planned_jobs(study, *USER_SUMMARIES) == {"suite": 1, "baselines": 1, "evaluate": 1, "summary": 1}
    snakemake(study, "results/suites/mine.json")
    after = json.loads(copy.read_text())["scms"][0]
    assert after["edges"][1]["terms"][0]["weight"] == 1.5
    assert after["oracle"]["y_star"] != before["y_star"]  # the copy's oracle is computed afresh for the edit
    assert planned_jobs(study, *USER_SUMMARIES) == {"baselines": 1, "evaluate": 1, "summary": 1}
    summary = pd.read_parquet(user_suite_study / "results/both/summary.parquet")
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


def _wait_for(condition, timeout=300, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_final_checkpoint(tmp_path):
    study = study_copy(tmp_path / "wf")
    edit_config(study, lambda c: c["experiments"]["tiny_a"].update(episodes=400, checkpoint_every=10))
    ckpt_dir = study / "checkpoints/tiny_a/seed_0"
    target = "checkpoints/tiny_a/seed_0/final.ckpt"
    env = {**os.environ, "PATH": f"{Path(snakemake_bin()).parent}:{os.environ['PATH']}"}
    run = subprocess.Popen([snakemake_bin(), "--cores", "1", "--retries", "2", target], cwd=study, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for sig, after in ((signal.SIGTERM, 30), (signal.SIGKILL, 200)):
            checkpoint = ckpt_dir / f"episode_{after:05d}.ckpt"
            _wait_for(checkpoint.exists, what=f"episode {after}")
            pid = _wait_for(lambda: _train_pids(study), what="the training process")[0]
            os.kill(pid, sig)
            _wait_for(lambda pid=pid: pid not in _train_pids(study), what="the process to end")
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
