"""The response model measured as a model: ``acbo response-quality`` writes its table (or refuses a checkpoint without
a response model in one line), and the summary page shows its chart and paired table only for a config whose policy
has a response model. The workflow's plan: tests/test_dryrun.py."""

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import call_cli
from test_summary import make_study, summarize_args

from workflow_src.cli import run_summarize_cli
from workflow_src.config import suite_slice
from workflow_src.evaluate.response_eval import MODELS
from workflow_src.paths import response_quality_table
from workflow_src.provenance import file_hash
from workflow_src.report.summarize import read_summary
from workflow_src.suites.build import build_suite
from workflow_src.tables import RESPONSE_PROTOCOL_KEY, RESPONSE_QUALITY_SCHEMA, read_table, write_table

TINY = {"hidden_dim": 16, "n_heads": 2, "n_layers": 1}
SPEC = {"n_obs": 5, "seed": 3, "response_replicates": 2, "response_sizes": [0, 2]}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, default_config):
    """Two untrained checkpoints of a small network, with and without a response model, and a 4-SCM held-out
    suite (the command measures whatever the parameters are)."""
    import jax

    from workflow_src.policy import checkpoint
    from workflow_src.policy.network import init_params, make_policy
    from workflow_src.policy.spec import architecture

    cfg = copy.deepcopy(default_config)
    cfg["suites"]["pool_size"] = {"train": 4, "heldout": 4}
    folder = tmp_path_factory.mktemp("quality")
    out = {"suite": folder / "heldout-L01.json"}
    build_suite(suite_slice(cfg, "heldout-L01"), out["suite"])
    base = cfg["experiments"]["debug"]["policy"]
    for name, response_model in (("with", True), ("without", False)):
        config = {**base, **TINY, "response_model": response_model, "prior": "none"}
        params = init_params(make_policy(config), jax.random.PRNGKey(0))
        out[name] = folder / name / "final.ckpt"
        out[name].parent.mkdir()
        checkpoint.save(out[name], {"architecture": architecture(config), "config_hash": "c", "episode": 1},
                        {"params": params})
    return out


def test_the_command_writes_a_valid_table(checkpoints, tmp_path):
    out = tmp_path / "rq.parquet"
    proc = call_cli("response-quality", "--checkpoint", checkpoints["with"], "--suite", checkpoints["suite"],
                    "--out", out, "--experiment", "mine", "--seed", 7, "--spec", json.dumps(SPEC), check=True)
    assert f"wrote {out}" in proc.stdout
    table = read_table(out, RESPONSE_QUALITY_SCHEMA)  # exactly the documented schema
    assert len(table) == 4 * 2 * 2 * len(MODELS)  # SCMs x replicates x sizes x models
    assert set(table["model"]) == set(MODELS) and sorted(table["interventions"].unique()) == [0, 2]
    assert (table["config"] == "mine").all() and (table["seed"] == 7).all()
    assert (table["checkpoint_hash"] == file_hash(checkpoints["with"])).all()
    assert (table["suite"] == "heldout-L01").all() and (table["level"] == 1).all()
    assert np.isfinite(table[["rmse", "nll", "best_improvement"]].to_numpy()).all()
    protocol = json.loads(pq.read_schema(out).metadata[RESPONSE_PROTOCOL_KEY])
    assert protocol == {"n_obs": 5, "replicates": 2, "sizes": [0, 2], "seed": 3, "grid": 33}
    assert not list(tmp_path.glob(".*.tmp"))  # written by rename


def test_a_checkpoint_without_a_response_model_is_refused_in_one_line(checkpoints, tmp_path):
    out = tmp_path / "rq.parquet"
    proc = call_cli("response-quality", "--checkpoint", checkpoints["without"], "--suite", checkpoints["suite"],
                    "--out", out, "--spec", json.dumps(SPEC))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and not out.exists()
    assert len(lines) == 1 and str(checkpoints["without"]) in lines[0] and "has no response model" in lines[0], lines


# --- the summary page -----------------------------------------------------------------------------------------


def response_frame(config: str, seed: int, suite: str, level: int, n_scms: int) -> pd.DataFrame:
    """A synthetic response quality table of one seed and suite (the SCM ids of ``test_summary.eval_frame``): the
    response model better than the GP, both better than flat."""
    rng = np.random.default_rng([seed, level])
    rows = []
    for c in range(n_scms):
        for replicate in range(2):
            for k in (0, 5, 10):
                for model, skill in zip(MODELS, (0.3, 0.6, 1.0)):
                    rows.append({"config": config, "seed": seed, "suite": suite, "scm_id": f"{suite}-{c:03d}",
                                 "family": "chain", "level": level, "replicate": replicate, "interventions": k,
                                 "model": model, "rmse": skill / (1 + k / 5) + rng.uniform(0, 0.05),
                                 "nll": 2 * skill + rng.normal(0, 0.05),
                                 "best_improvement": 1 - skill / 2 + rng.normal(0, 0.05),
                                 "package_version": "0.1.0", "git_commit": "abc123", "checkpoint_hash": "cafe"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """The summaries of one synthetic study, with and without its response quality tables."""
    tmp = tmp_path_factory.mktemp("pages")
    suites = {"heldout-L01": 1, "heldout-NL01": 1}
    spec = make_study(tmp, seeds=(0,), suites=suites, nonlinear={"heldout-NL01"}, n_scms=3, episodes=2, steps=3)
    for suite, level in suites.items():
        path = response_quality_table(spec["config"], 0, suite, str(tmp / "results"))
        write_table(response_frame(spec["config"], 0, suite, level, 3), RESPONSE_QUALITY_SCHEMA, path)
    out = {}
    for name, extra in (("with", {"response_model": True}), ("without", {})):
        args = summarize_args(tmp, {**spec, **extra}, out=name)
        assert run_summarize_cli(args) == 0
        out[name] = args
    return out


def test_the_chart_and_paired_table_are_on_the_page_of_a_response_model_config(pages):
    page = Path(pages["with"].out_html).read_text()
    section = page[page.index('<section id="response_quality">'):page.index('<section id="provenance">')]
    assert 'id="chart-response_quality"' in section
    assert "<h4>All linear SCMs</h4>" in section and "<h4>All nonlinear SCMs</h4>" in section
    assert "response model better" in section  # the synthetic model is better than the GP on every score
    assert (Path(pages["with"].charts_dir) / "response_quality.png").is_file()
    frame, meta = read_summary(pages["with"].out_table)
    quality = frame[(frame["kind"] == "response_quality") & frame["seed"].isna()]
    assert set(quality["method"]) == set(MODELS) and set(quality["step"]) == {0, 5, 10}
    paired = frame[(frame["kind"] == "response_paired") & (frame["suite"] == "all nonlinear SCMs")]
    assert set(paired["method"]) == {"response_model"} and set(paired["baseline"]) == {"response_gp"}
    rmse = paired[paired["metric"] == "rmse"]
    assert len(rmse) == 3 and (rmse["ci_high"] < 0).all() and (rmse["better"] == "lower").all()
    assert (quality.loc[quality["metric"] == "best_improvement", "better"] == "higher").all()
    assert meta["git_commits"]["response quality"] == ["abc123"]


def test_no_response_section_for_a_config_without_a_response_model(pages):
    page = Path(pages["without"].out_html).read_text()
    assert 'id="response_quality"' not in page and "chart-response_quality" not in page
    assert not (Path(pages["without"].charts_dir) / "response_quality.png").exists()
    frame, _ = read_summary(pages["without"].out_table)
    assert not frame["kind"].str.startswith("response").any()
