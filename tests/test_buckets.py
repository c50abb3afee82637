"""Shape buckets and chunks: padding and chunking change no result, programs come from one shared cache."""

import dataclasses
import json
import os
import re

import jax
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, run_cli

from workflow_src.compile_cache import AtomicFileCache, configure_jax
from workflow_src.config import suite_slice, train_slice
from workflow_src.core.scm import bucket_size
from workflow_src.evaluate import run as evaluate
from workflow_src.evaluate.baselines import baseline_methods
from workflow_src.evaluate.methods import policy_methods
from workflow_src.evaluate.registry import BASELINES
from workflow_src.evaluate.rollout import chunk_size
from workflow_src.evaluate.run import evaluate_methods, read_run_infos, run_methods, write_evaluation
from workflow_src.jobstats import read_summary_line
from workflow_src.policy.network import init_params, make_policy
from workflow_src.suites.build import build_suite
from workflow_src.suites.suite_io import load_suite
from workflow_src.tables import EVAL_SCHEMA, read_table, to_table

PROTOCOL = {"seed": 3, "episodes": 2, "interventions": 5, "n_obs": 6, "min_suite_episodes": 1}


@pytest.fixture(scope="module")
def mixed_suite(tmp_path_factory, default_config):
    """Seven SCMs of 4 and 5 variables (heldout-L02)."""
    path = tmp_path_factory.mktemp("suites") / "heldout-L02.json"
    build_suite(suite_slice(default_config, "heldout-L02"), path)
    suite = load_suite(path)
    suite = dataclasses.replace(suite, scms=suite.scms[:7])
    assert len({s.n for s in suite.scms}) > 1
    return suite


@pytest.fixture(scope="module")
def all_methods(default_config):
    config = {**train_slice(default_config, "debug")["policy"], "hidden_dim": 16, "n_heads": 2, "n_layers": 1}
    policy = make_policy(config)
    methods = baseline_methods(BASELINES) + policy_methods(config, ["greedy", "sampled"])
    return methods, init_params(policy, jax.random.PRNGKey(7))


def test_buckets_are_powers_of_two_and_chunks_shrink_as_graphs_grow():
    assert [bucket_size(n) for n in (1, 3, 8, 9, 16, 17, 50, 64, 65, 1000)] == [8, 8, 8, 16, 16, 32, 64, 64, 128, 1024]
    assert [chunk_size(b) for b in (8, 16, 32, 64, 128, 1024)] == [16, 8, 4, 2, 1, 1]


def test_an_unpadded_chunked_run_matches_the_padded_default(mixed_suite, all_methods):
    """The same actions and outcomes whatever the padding and chunking: the draws of an SCM depend on its
    index in the suite and on each variable's index, never on the padded size or the chunk."""
    methods, params = all_methods
    n_max = max(s.n for s in mixed_suite.scms)
    # unpadded, in 3 chunks (the last with 2 fillers) against the default: padded to 8, one chunk of 16 with 9
    # fillers (two compiled layouts; the default's is the one test_table_written_in_pieces compiles too)
    chunked = run_methods(methods, params, mixed_suite, PROTOCOL, bucket=n_max, chunk=3)
    default = run_methods(methods, params, mixed_suite, PROTOCOL)
    for method, a, b in zip(methods, chunked, default):
        assert a["variable"].shape == b["variable"].shape == (7, PROTOCOL["episodes"], PROTOCOL["interventions"])
        np.testing.assert_array_equal(a["variable"], b["variable"], err_msg=method.name)
        for field in ("value", "target", "expected_target", "norm_improvement", "f1"):
            np.testing.assert_allclose(a[field], b[field], rtol=1e-4, atol=1e-4, err_msg=f"{method.name} {field}")
    # the draws really differ between SCMs and episodes (not one repeated stream)
    target = chunked[0]["target"]
    assert len(np.unique(target[:, :, 0])) == target[:, :, 0].size


def test_table_written_in_pieces_equals_the_whole_table(tmp_path, mixed_suite, all_methods, monkeypatch):
    methods, params = all_methods
    frame = evaluate_methods(methods, params, mixed_suite, PROTOCOL, {"config": "c", "seed": 0})
    monkeypatch.setattr(evaluate, "ROW_GROUP_SCMS", 3)
    lines = []
    write_evaluation(methods, params, mixed_suite, PROTOCOL, {"config": "c", "seed": 0}, tmp_path / "t.parquet",
                     "test table", log=lines.append)
    expected = to_table(frame, EVAL_SCHEMA, "test table").to_pandas()
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.parquet", EVAL_SCHEMA), expected)
    info = read_run_infos(lines[0])[0]
    assert (info.bucket, info.chunk, info.chunks) == (8, 16, 1)


def test_cold_and_cached_runs_are_byte_identical_and_say_where_the_program_came_from(tmp_path):
    """The warm job loads both the exported program (no tracing) and its executable from the cache."""
    suite = tmp_path / "classic.json"
    run_cli("suite", "generate", "heldout-classic", "--out", suite, check=True)
    spec = json.dumps({**PROTOCOL, "baselines": ["random", "thompson_bandit"]})
    env = {**os.environ, "ACBO_JAX_CACHE": str(tmp_path / "cache")}
    logs = []
    for name in ("cold", "warm"):
        proc = run_cli("baselines", "--suite", suite, "--out", tmp_path / f"{name}.parquet", "--spec", spec, env=env,
                       check=True)
        logs.append(proc.stdout)
    cold, warm = (read_run_infos(log)[0] for log in logs)
    assert (cold.source, cold.origin) == ("compiled (cache miss, now stored)", "traced"), logs[0]
    assert (warm.source, warm.origin) == ("persistent cache", "stored export"), logs[1]
    assert len(list((tmp_path / "cache" / "exported").glob("*.jaxexport"))) == 1
    assert logs[1].strip().splitlines()[-1].startswith('job stats: {"command": "baselines"'), logs[1]
    assert warm.program == cold.program
    assert (tmp_path / "cold.parquet").read_bytes() == (tmp_path / "warm.parquet").read_bytes()
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_cache_entries_appear_whole_and_are_never_overwritten(tmp_path):
    cache = AtomicFileCache(tmp_path)
    assert cache.get("k1") is None
    cache.put("k1", b"first")
    cache.put("k1", b"second")  # an equivalent program compiled by a concurrent job: the first one stays
    assert cache.get("k1") == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k1-cache"]


def test_a_write_killed_midway_leaves_no_entry(tmp_path, monkeypatch):
    cache = AtomicFileCache(tmp_path)

    def killed(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        cache.put("k2", b"program")
    assert cache.get("k2") is None and not list(tmp_path.iterdir())


def test_jobs_use_the_atomic_cache(tmp_path, monkeypatch):
    from jax._src import compilation_cache

    monkeypatch.setenv("ACBO_JAX_CACHE", str(tmp_path / "c"))
    try:
        configure_jax(None)
        assert isinstance(compilation_cache._cache, AtomicFileCache)
        assert compilation_cache._cache.path == (tmp_path / "c").resolve()
        jax.jit(lambda x: x * 3 + 1)(np.arange(5.0)).block_until_ready()
        assert list((tmp_path / "c").glob("*-cache"))
    finally:
        monkeypatch.setenv("ACBO_JAX_CACHE", str(ROOT / ".jax_cache"))
        configure_jax(None)


@pytest.mark.slow
def test_a_large_suite_stays_within_the_declared_memory(tmp_path, default_config):
    """5000 three-node SCMs (a table of 2 million rows) under the baselines rule's declared mem_mb."""
    rule = (ROOT / "rules/evaluate.smk").read_text().split("rule baselines:")[1]
    mem_mb = int(re.search(r"mem_mb=per_attempt\((\d+)\)", rule).group(1))  # the first attempt's
    spec = {**suite_slice(default_config, "heldout-L01"), "size": 5000}
    suite = tmp_path / "big.json"
    run_cli("suite", "generate", "--spec", json.dumps(spec), "--out", suite, check=True)
    protocol = json.dumps({"seed": 0, "episodes": 10, "interventions": 20, "n_obs": 10, "min_suite_episodes": 1,
                           "baselines": ["random", "oracle"]})
    output = run_cli("baselines", "--suite", suite, "--out", tmp_path / "big.parquet", "--spec", protocol,
                     check=True).stdout
    assert [info.chunks for info in read_run_infos(output)] == [313] and "(2000000 rows)" in output, output
    # the job's own peak (its log's job stats): the worker's rusage would count the pytest worker that forked it
    peak = read_summary_line(output)["peak_mib"]
    assert 0 < peak < mem_mb, (peak, mem_mb)
