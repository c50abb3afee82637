"""`snakemake -n` plans exactly the jobs the config implies."""

import json
import os
import re
import subprocess

import pytest
import yaml
from conftest import ROOT, copy_workflow, large_user_suite_doc, planned_jobs, snakemake

from workflow_src.paths import train_suites


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("wf"))


def test_suite_targets_plan_one_job_each(workdir):
    targets = [f"results/suites/{name}.json" for name in ("train-L01", "heldout-L07", "heldout-classic",
                                                          "train-NL02", "heldout-NL15", "heldout-bnlearn-head")]
    assert planned_jobs(workdir, *targets) == {"suite": 6}


def expected_jobs(cfg: dict, name: str) -> dict[str, int]:
    exp = cfg["experiments"][name]
    seeds, levels, suites = exp["seeds"], exp["levels"], exp["eval_suites"]
    suite_files = {suite for lv in levels for suite in train_suites(lv, exp["train_suites"])} | set(suites)
    jobs = {
        "suite": len(suite_files),
        "train": len(seeds),
        "evaluate": len(seeds) * len(suites),
        "baselines": len(suites),
        "summary": 1,
    }
    if exp["policy"]["response_model"]:  # its response model measured as a model, per checkpoint and suite
        jobs["response_quality"] = len(seeds) * len(suites)
    return jobs


@pytest.mark.parametrize("name", ["debug", "quick_test", "production", "nonlinear"])
def test_summary_plans_expected_jobs(workdir, default_config, name):
    has_model = default_config["experiments"][name]["policy"]["response_model"]
    assert has_model == (name in ("production", "nonlinear"))  # both kinds of config are planned here
    assert planned_jobs(workdir, f"results/{name}/summary.html") == expected_jobs(default_config, name)


def test_a_response_quality_table_of_a_config_without_a_response_model_is_refused(workdir):
    proc = snakemake(workdir, "results/debug/response_quality/seed_0/heldout-L01.parquet", "-n", check=False)
    assert proc.returncode != 0
    assert "config 'debug' has no response model" in proc.stdout + proc.stderr


def test_training_suites_and_training_jobs_are_scheduled_first(workdir):
    """Training is the study's long chain: its suites (priority 2) and jobs (1) start before the baseline,
    held-out suite and evaluation jobs (0) that fill the other cores meanwhile."""
    proc = snakemake(workdir, "results/quick_test/summary.html", "-n")
    priority = {}
    for block in re.split(r"\n(?=\s*\[)", proc.stdout + proc.stderr):
        rule = re.search(r"^\s*rule (\w+):", block, re.M)
        wildcards = re.search(r"^\s*wildcards: (.*)$", block, re.M)
        if rule and wildcards:
            level = re.search(r"^\s*priority: (\d+)", block, re.M)
            priority[(rule[1], wildcards[1])] = int(level[1]) if level else 0
    assert {k: v for k, v in priority.items() if v} == {
        **{("suite", f"suite=train-L0{lv}"): 2 for lv in (1, 2, 3)},
        ("train", "config=quick_test, seed=0"): 1, ("train", "config=quick_test, seed=1"): 1}
    assert priority[("suite", "suite=heldout-L01")] == priority[("baselines", "suite=heldout-L01")] == 0
    assert priority[("evaluate", "config=quick_test, seed=0, suite=heldout-L01")] == 0


def test_bad_config_fails_at_parse_time(workdir, tmp_path):
    bad = tmp_path / "bad.yaml"
    text = (workdir / "config/config.yaml").read_text().replace("  debug:\n", "  debug:\n    learning_rate: 0.1\n")
    bad.write_text(text)
    proc = snakemake(workdir, "results/debug/summary.html", "-n", "--configfile", bad, check=False)
    assert proc.returncode != 0
    assert "experiments.debug: unknown key 'learning_rate'" in proc.stdout + proc.stderr


def test_user_suite_file_is_an_input_and_must_exist(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    config = workdir / "config/config.yaml"
    cfg = yaml.safe_load(config.read_text())
    cfg["suites"]["user"] = {"mine": "my_suite.json"}
    config.write_text(yaml.safe_dump(cfg))
    proc = snakemake(workdir, "results/suites/mine.json", "-n", check=False)
    assert proc.returncode != 0 and "suites.user.mine: no suite file 'my_suite.json'" in proc.stdout + proc.stderr
    doc = large_user_suite_doc(4, seed=1)
    # a user file placed where the workflow writes (its own copy target) is refused, not read unvalidated
    (workdir / "results/suites").mkdir(parents=True, exist_ok=True)
    (workdir / "results/suites/mine.json").write_text(json.dumps({**doc, "name": "mine"}))
    cfg["suites"]["user"] = {"mine": "results/suites/mine.json"}
    config.write_text(yaml.safe_dump(cfg))
    proc = snakemake(workdir, "results/suites/mine.json", check=False)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert ("suites.user.mine: 'results/suites/mine.json' is inside results/, where the workflow writes its outputs"
            in proc.stdout + proc.stderr)
    (workdir / "results/suites/mine.json").unlink()
    cfg["suites"]["user"] = {"mine": "my_suite.json"}
    config.write_text(yaml.safe_dump(cfg))
    (workdir / "my_suite.json").write_text(json.dumps({**doc, "name": "mine"}))
    snakemake(workdir, "results/suites/mine.json")
    assert planned_jobs(workdir, "results/suites/mine.json") == {}
    # an edit of the user's file makes its copy (and everything downstream) stale
    doc["scms"][0]["edges"][0]["coef"] = 0.75
    (workdir / "my_suite.json").write_text(json.dumps({**doc, "name": "mine"}))
    assert planned_jobs(workdir, "results/suites/mine.json") == {"suite": 1}


def test_a_target_with_an_unknown_config_or_plugin_names_the_known_ones(workdir):
    for target, message in (("results/prodution/summary.html", "unknown experiment config 'prodution' (known: debug"),
                            ("checkpoints/prodution/seed_0/final.ckpt", "unknown experiment config 'prodution'"),
                            ("results/plugins/typo/heldout-L01.parquet",
                             "unknown plug-in 'typo' (evaluation.plugins: none)")):
        proc = snakemake(workdir, target, "-n", check=False)
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0 and message in output, output
        assert "KeyError" not in output


def test_every_path_in_a_rule_s_shell_command_is_quoted(tmp_path):
    """A plug-in path with a space and a shell substitution reaches the command as one argument, unexpanded."""
    import shlex
    import stat

    workdir = copy_workflow(tmp_path / "wf")
    odd = workdir / "my methods" / "a$(touch INJECTED).py"
    odd.parent.mkdir()
    odd.write_text((ROOT / "examples/plugins/surrogate_greedy.py").read_text())
    config = workdir / "config/config.yaml"
    cfg = yaml.safe_load(config.read_text())
    cfg["evaluation"]["plugins"] = {"odd": str(odd.relative_to(workdir))}
    config.write_text(yaml.safe_dump(cfg))
    target = "results/plugins/odd/heldout-classic.parquet"
    proc = snakemake(workdir, target, "-n", "-p", "--forceall")
    commands = [line.split(": ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("Shell command: ")]
    assert len(commands) == 2, proc.stdout  # the suite and the plug-in
    # run the planned commands with an `acbo` that only records its arguments
    fake = tmp_path / "bin" / "acbo"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@" >> "$ACBO_ARGS"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}", "ACBO_ARGS": str(tmp_path / "args")}
    for command in commands:
        (workdir / shlex.split(command)[-2]).parent.mkdir(parents=True, exist_ok=True)  # the log's folder
        subprocess.run(["bash", "-c", command], cwd=workdir, env=env, check=True)
    args = (tmp_path / "args").read_text().splitlines()
    assert args[args.index("--file") + 1] == str(odd.relative_to(workdir))
    assert not list(workdir.rglob("INJECTED"))
