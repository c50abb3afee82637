"""`snakemake -n` plans exactly the jobs the config implies."""

import pytest
from conftest import copy_workflow, planned_jobs, snakemake


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("wf"))


def test_suite_targets_plan_one_job_each(workdir):
    targets = [f"results/suites/{name}.json" for name in ("train-L01", "heldout-L07", "heldout-classic")]
    assert planned_jobs(workdir, *targets) == {"suite": 3}


def expected_jobs(cfg: dict, name: str) -> dict[str, int]:
    exp = cfg["experiments"][name]
    seeds, levels, suites = exp["seeds"], exp["levels"], exp["eval_suites"]
    suite_files = {f"train-L{lv:02d}" for lv in levels} | set(suites)
    return {
        "suite": len(suite_files),
        "train": len(seeds),
        "evaluate": len(seeds) * len(suites),
        "baselines": len(suites),
        "summary": 1,
    }


@pytest.mark.parametrize("name", ["debug", "quick_test", "production"])
def test_summary_plans_expected_jobs(workdir, default_config, name):
    assert planned_jobs(workdir, f"results/{name}/summary.html") == expected_jobs(default_config, name)


def test_bad_config_fails_at_parse_time(workdir, tmp_path):
    bad = tmp_path / "bad.yaml"
    text = (workdir / "config/config.yaml").read_text().replace("  debug:\n", "  debug:\n    learning_rate: 0.1\n")
    bad.write_text(text)
    proc = snakemake(workdir, "results/debug/summary.html", "-n", "--configfile", bad, check=False)
    assert proc.returncode != 0
    assert "experiments.debug: unknown key 'learning_rate'" in proc.stdout + proc.stderr
