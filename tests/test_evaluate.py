"""Evaluation: baselines behave as their definitions say, tables are exact, paired, and well-formed."""

import dataclasses
import hashlib
import json

import jax
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, call_cli, large_user_suite_doc, run_cli

from workflow_src.config import deep_merge, suite_slice, train_slice
from workflow_src.core.problem import Problem
from workflow_src.errors import TableError
from workflow_src.evaluate.baselines import baseline_methods
from workflow_src.evaluate.methods import Method
from workflow_src.evaluate.registry import BASELINES, METHODS
from workflow_src.evaluate.run import evaluate_methods, suite_episodes, write_evaluation
from workflow_src.paths import TrainPaths, train_suite_files
from workflow_src.report.metrics import episode_metrics
from workflow_src.suites.build import build_suite
from workflow_src.suites.suite_io import load_suite
from workflow_src.tables import EVAL_SCHEMA
from workflow_src.train.loop import train

PROTOCOL = {"seed": 0, "episodes": 4, "interventions": 8, "n_obs": 10, "min_suite_episodes": 1}


@pytest.fixture(scope="module")
def suites_dir(tmp_path_factory, default_config):
    d = tmp_path_factory.mktemp("suites")
    for name in ("train-L01", "train-L02", "heldout-L01", "heldout-L03"):
        build_suite(suite_slice(default_config, name), d / f"{name}.json")
    return d


@pytest.fixture(scope="module")
def baseline_table(suites_dir):
    suite = load_suite(suites_dir / "heldout-L01.json")
    return suite, evaluate_methods(baseline_methods(BASELINES), None, suite, PROTOCOL, {})


def test_a_suite_of_few_scms_runs_more_episodes_and_keeps_the_first_ones(suites_dir):
    """``min_suite_episodes``: a suite of 2 SCMs under a floor of 7 runs 4 episodes per SCM (not the protocol's 2);
    episodes 0 and 1 are the rows a run without the floor gives (their keys depend on the episode's index only),
    for a method that reads its key (``random``) and one that does not (``causal_bo``)."""
    assert [suite_episodes({"episodes": 10, "min_suite_episodes": 30}, n) for n in (1, 3, 4, 32)] == [30, 10, 10, 10]
    assert suite_episodes({"episodes": 10}, 1) == 10  # a protocol without the key: no floor
    suite = load_suite(suites_dir / "heldout-L01.json")
    suite = dataclasses.replace(suite, scms=suite.scms[:2])
    methods = baseline_methods(["random", "causal_bo"])
    protocol = {**PROTOCOL, "episodes": 2, "interventions": 3}
    floored = evaluate_methods(methods, None, suite, {**protocol, "min_suite_episodes": 7}, {})
    plain = evaluate_methods(methods, None, suite, protocol, {})
    assert floored.groupby(["method", "scm_id"]).episode.nunique().eq(4).all()
    assert plain.groupby(["method", "scm_id"]).episode.nunique().eq(2).all()
    first = floored[floored.episode < 2].reset_index(drop=True)
    pd.testing.assert_frame_equal(first, plain.reset_index(drop=True))


def test_oracle_reaches_one_at_every_step(baseline_table):
    _, table = baseline_table
    oracle = table[table.method == "oracle"]
    assert np.allclose(oracle.norm_improvement, 1.0, atol=1e-5)
    assert oracle.is_optimal_variable.all()


def test_every_registered_baseline_acts_on_every_step_within_the_ranges(baseline_table):
    """Each registered baseline's ``act`` ran on every SCM, episode and step and set an intervenable variable of
    the SCM to a value inside its range; only the oracle reads the truth."""
    suite, table = baseline_table
    assert sorted(set(table.method)) == sorted(BASELINES)
    per_method = len(suite.scms) * PROTOCOL["episodes"] * PROTOCOL["interventions"]
    assert table.groupby("method").size().to_dict() == dict.fromkeys(BASELINES, per_method)
    for scm in suite.scms:
        index = {name: i for i, name in enumerate(scm.nodes)}
        rows = table[table.scm_id == scm.id]
        chosen = rows.variable.map(index).to_numpy()
        assert scm.intervenable[chosen].all(), scm.id
        assert (scm.lo[chosen] - 1e-6 <= rows.value).all() and (rows.value <= scm.hi[chosen] + 1e-6).all(), scm.id
    assert [name for name in BASELINES if METHODS[name].reads_truth] == ["oracle"]


def test_random_matches_its_exact_expectation(baseline_table):
    _, table = baseline_table
    rnd = table[table.method == "random"]
    # per SCM the mean outcome estimates random_target; pool the standardized errors over the suite
    per_scm = rnd.groupby("scm_id").agg(mean=("expected_target", "mean"), sd=("expected_target", "std"),
                                        n=("expected_target", "size"), exact=("random_target", "first"))
    z = ((per_scm["mean"] - per_scm["exact"]) / (per_scm["sd"] / np.sqrt(per_scm["n"]))).to_numpy()
    assert abs(z.mean()) * np.sqrt(len(z)) < 4.0
    assert np.all(np.abs(z) < 5.0)
    assert abs(rnd.range_utilization.mean() - 0.5) < 0.05


def test_heuristics_beat_random_on_level_one(baseline_table):
    _, table = baseline_table
    m = episode_metrics(table).groupby("method")[["norm_improvement_mean", "target_mean"]].mean()
    for heuristic in ("marginal_regression", "thompson_bandit", "causal_bo"):
        assert m.loc[heuristic, "norm_improvement_mean"] > m.loc["random", "norm_improvement_mean"] + 0.1
        assert m.loc[heuristic, "target_mean"] < m.loc["random", "target_mean"]


def test_expected_target_is_exact_for_every_row(baseline_table):
    suite, table = baseline_table
    by_id = {scm.id: scm for scm in suite.scms}
    for scm_id, rows in table.groupby("scm_id"):
        scm = by_id[scm_id]
        # recompute E[Y | do(X_i = v)] from scratch: solve the intervened linear system
        for variable, value, expected in rows[["variable", "value", "expected_target"]].itertuples(index=False):
            i = scm.nodes.index(variable)
            w = scm.weights.copy()
            w[:, i] = 0.0
            b = scm.bias.copy()
            b[i] = value
            mean = np.linalg.solve(np.eye(scm.n) - w.T, b)
            assert mean[scm.target] == pytest.approx(expected, rel=1e-4, abs=1e-4)
        assert rows.is_parent.tolist() == [bool(scm.parents_of_target[scm.nodes.index(v)]) for v in rows.variable]


def _data_driven_act(_, view, key):
    """An action that depends only on the data: the first allowed variable at its first observed value."""
    variable = jax.numpy.argmax(view.scm.intervenable)
    return variable, view.buffer.values[0, variable]


@pytest.mark.parametrize("truth", ["weights", "total_effects", "parents", "curve_y", "oracle_variable", "y_star"])
def test_a_method_that_reads_the_truth_fails_to_trace(suites_dir, truth):
    """The information boundary: a method's view holds the problem (ranges, masks, target), not the SCM."""
    suite = load_suite(suites_dir / "heldout-L01.json")

    def peek(_, view, key):
        return jax.numpy.int32(0), jax.numpy.sum(getattr(view.scm, truth)).astype(jax.numpy.float32)

    with pytest.raises(AttributeError, match=f"'Problem' object has no attribute '{truth}'"):
        evaluate_methods([Method("peek", peek)], None, suite, PROTOCOL, {})
    assert set(Problem._fields) == {"lo", "hi", "intervenable", "node_mask", "target"}


def test_methods_see_the_same_samples(suites_dir):
    suite = load_suite(suites_dir / "heldout-L01.json")
    twins = [Method("twin_a", _data_driven_act), Method("twin_b", _data_driven_act)]
    table = evaluate_methods(twins, None, suite, PROTOCOL, {})
    a, b = (table[table.method == m].drop(columns="method").reset_index(drop=True) for m in ("twin_a", "twin_b"))
    pd.testing.assert_frame_equal(a, b)  # same observational samples and same intervention noise
    assert a.value.nunique() > 1


def test_a_methods_rows_do_not_depend_on_the_methods_beside_it(suites_dir):
    """All of a job's methods share one compiled program (run one after another over the method index): a
    method gets the same rows alone as beside others, whatever its position."""
    suite = load_suite(suites_dir / "heldout-L01.json")
    together = evaluate_methods(baseline_methods(["random", "causal_bo", "marginal_regression"]), None, suite,
                                PROTOCOL, {})
    alone = evaluate_methods(baseline_methods(["marginal_regression"]), None, suite, PROTOCOL, {})
    pd.testing.assert_frame_equal(together[together.method == "marginal_regression"].reset_index(drop=True), alone)


def test_reruns_give_identical_tables(tmp_path, suites_dir):
    spec = json.dumps({**PROTOCOL, "baselines": ["random", "thompson_bandit"]})
    outs = [tmp_path / f"{k}.parquet" for k in "ab"]
    for run, out in zip((run_cli, call_cli), outs):  # in a process of its own, and again in this one
        run("baselines", "--suite", suites_dir / "heldout-L01.json", "--out", out, "--spec", spec, check=True)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    assert pq.read_schema(outs[0]).remove_metadata() == EVAL_SCHEMA


def test_bad_inputs_give_one_line_and_no_output(tmp_path, suites_dir):
    bad_suite = tmp_path / "bad.json"
    bad_suite.write_text('{"format": "acbo-suite/1", "name": "x", "scms": []}')
    spec = json.dumps({**PROTOCOL, "baselines": ["random"]})
    cases = [
        (["--suite", suites_dir / "heldout-L01.json", "--methods", "random,psychic"], "unknown method 'psychic'"),
        (["--suite", bad_suite], "bad.json"),
        (["--suite", tmp_path / "missing.json"], "cannot read file"),
    ]
    for args, message in cases:
        out = tmp_path / "out.parquet"
        proc = call_cli("baselines", *args, "--out", out, "--spec", spec)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert not out.exists()


@pytest.fixture(scope="module")
def checkpoint_l12(tmp_path_factory, suites_dir, default_config):
    spec = deep_merge(train_slice(default_config, "debug"), {
        "levels": [1, 2], "episodes": 4, "checkpoint_every": 4,
        "policy": {"hidden_dim": 16, "n_heads": 2, "n_layers": 1}, "training": {"n_interventions": 4}})
    d = tmp_path_factory.mktemp("ckpt")
    train("small", spec, 0, train_suite_files(spec["levels"], suites_dir), TrainPaths(d, d / "log.parquet"),
          progress=False)
    return d / "final.ckpt"


def test_policy_trained_on_small_graphs_runs_on_a_60_node_user_suite(tmp_path, checkpoint_l12):
    suite_file = tmp_path / "big.json"
    suite_file.write_text(json.dumps(large_user_suite_doc(60, seed=4)))
    out = tmp_path / "big.parquet"
    spec = json.dumps({"seed": 0, "episodes": 2, "interventions": 3, "n_obs": 5, "min_suite_episodes": 1,
                       "policy_modes": ["greedy", "sampled"]})
    proc = call_cli("evaluate", "--checkpoint", checkpoint_l12, "--suite", suite_file, "--out", out, "--spec", spec)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_parquet(out)
    assert len(table) == 2 * 2 * 3 and set(table.method) == {"policy_greedy", "policy_sampled"}
    scm = load_suite(suite_file).scms[0]
    intervenable = {scm.nodes[i] for i in np.flatnonzero(scm.intervenable)}
    assert set(table.variable) <= intervenable
    assert table.checkpoint_hash.notna().all() and (table.config == "small").all() and (table.seed == 0).all()


def test_evaluation_commands_run_from_any_folder_with_the_packaged_protocol(tmp_path, checkpoint_l12):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "my.json").write_text(json.dumps(large_user_suite_doc(4, seed=1)))
    plugin = ROOT / "examples/plugins/surrogate_greedy.py"
    for command, extra in (("evaluate", ["--checkpoint", checkpoint_l12]), ("baselines", ["--methods", "oracle"]),
                           ("plugin", ["--file", plugin])):
        proc = call_cli(command, *extra, "--suite", "my.json", "--out", "t.parquet", cwd=elsewhere)
        assert proc.returncode == 0, proc.stderr
        notes = [line for line in proc.stderr.splitlines() if "packaged default protocol" in line]
        assert len(notes) == 1 and "config/config.yaml" in notes[0], proc.stderr
        table = pd.read_parquet(elsewhere / "t.parquet")
        assert table.episode.nunique() == 10 and table.step.nunique() == 20  # the packaged protocol
        (elsewhere / "t.parquet").unlink()
    # a config named on the command line must exist
    proc = call_cli("baselines", "--suite", "my.json", "--out", "t.parquet", "--config", "nope.yaml", cwd=elsewhere)
    assert proc.returncode == 2 and "nope.yaml: cannot read config" in proc.stderr
    assert not (elsewhere / "t.parquet").exists()


def test_bad_arguments_and_checkpoint_headers_give_one_line_and_no_output(tmp_path, suites_dir, checkpoint_l12):
    head, body = checkpoint_l12.read_bytes().split(b"\n", 1)
    header = json.loads(head)

    def checkpoint_with(name, body=body, **changes):
        path = tmp_path / f"{name}.ckpt"
        changed = {**header, "body_sha256": hashlib.sha256(body).hexdigest(), **changes}
        path.write_bytes(json.dumps(changed).encode() + b"\n" + body)
        return path

    alien = checkpoint_with("alien", architecture="x")
    # a network of another width than its parameters: found out when the program is traced
    wider = checkpoint_with("wider", architecture={**header["architecture"],
                                                   "hidden_dim": 2 * header["architecture"]["hidden_dim"]})
    unreadable = checkpoint_with("unreadable", body=b"\xc1")  # a byte msgpack never uses
    folder = tmp_path / "folder"
    folder.mkdir()
    suite = ["--suite", suites_dir / "heldout-L01.json"]
    spec = json.dumps({**PROTOCOL, "baselines": ["random"], "policy_modes": ["greedy"]})
    out = tmp_path / "out.parquet"
    cases = [
        ("baselines", [*suite, "--methods", ",", "--out", out], "--methods ',': names no method"),
        ("evaluate", [*suite, "--checkpoint", checkpoint_l12, "--methods", " , ", "--out", out], "names no method"),
        ("baselines", [*suite, "--out", folder], f"--out {folder}: is an existing folder, not a file"),
        ("evaluate", [*suite, "--checkpoint", alien, "--out", out], "architecture: expected a JSON object, got 'x'"),
        ("evaluate", [*suite, "--checkpoint", wider, "--out", out],
         f"{wider}: architecture: parameter shapes differ from the configured policy"),
        ("evaluate", [*suite, "--checkpoint", unreadable, "--out", out],
         f"{unreadable}: the saved state cannot be read"),
        ("evaluate", [*suite, "--checkpoint", checkpoint_l12, "--out", out, "--train-config-hash", "beef"],
         f"config_hash {json.loads(head)['config_hash']} differs from beef"),
    ]
    for command, args, message in cases:
        proc = call_cli(command, *args, "--spec", spec)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr
        assert not out.exists() and not any(folder.iterdir())


def test_a_written_table_has_the_documented_columns_with_their_documented_meaning(tmp_path, suites_dir):
    """What the evaluation stage writes: exactly the schema's columns, each documented in the README's section
    on evaluation tables, and the documented definitions hold on its rows."""
    suite = load_suite(suites_dir / "heldout-L01.json")
    out = tmp_path / "t.parquet"
    write_evaluation(baseline_methods(["random", "oracle"]), None, suite, PROTOCOL, {}, out, "baseline table",
                     log=lambda line: None)
    assert pq.read_schema(out).remove_metadata() == EVAL_SCHEMA
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Evaluation tables"):]
    for field in EVAL_SCHEMA:
        assert f"`{field.name}`" in section, field.name
    table = pd.read_parquet(out)
    gap = table.mu_target - table.oracle_target
    np.testing.assert_allclose(table.norm_improvement, (table.mu_target - table.expected_target) / gap, atol=1e-6)
    assert table.range_utilization.between(0, 1).all() and table.config.isna().all()
    assert np.allclose(table[table.method == "oracle"].expected_target, table[table.method == "oracle"].oracle_target)


def test_tables_built_from_buffers_equal_tables_built_by_pandas():
    import pyarrow as pa

    from workflow_src.tables import columns_to_table

    schema = pa.schema([pa.field("name", pa.string()), pa.field("const", pa.string()), pa.field("none", pa.string()),
                        pa.field("seed", pa.int32()), pa.field("level", pa.int16()), pa.field("flag", pa.bool_()),
                        pa.field("x", pa.float64()), pa.field("unicode", pa.string())])
    columns = {"name": np.array(["a", "bc", "", "def", "a"], dtype=object), "const": "suite-1", "none": None,
               "seed": 7, "level": np.array([1, 2, 15, 3, 4]), "flag": np.array([True, False, True, True, False]),
               "x": np.linspace(0, 1, 5, dtype=np.float32), "unicode": np.array(["é", "x", "ß", "→", ""], dtype=object)}
    frame = pd.DataFrame(columns, index=range(5))
    expected = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    got = columns_to_table(columns, 5, schema, "test")
    got.validate(full=True)
    assert got.equals(expected.replace_schema_metadata(None))
    with pytest.raises(TableError, match="test: missing columns \\['x'\\]"):
        columns_to_table({k: v for k, v in columns.items() if k != "x"}, 5, schema, "test")


def test_non_finite_parameters_and_actions_are_refused(tmp_path, suites_dir, checkpoint_l12):
    """A checkpoint with a NaN parameter is refused in one line (its table would be NaN rows, and the summary
    would report an optimal-variable rate of 1.0); so is a run in which a method chose a non-finite value."""
    from workflow_src.evaluate.run import check_finite_actions
    from workflow_src.policy import checkpoint

    header, state = checkpoint.read_saved(checkpoint_l12)
    path, leaf = jax.tree_util.tree_flatten_with_path(state["params"])[0][0]
    leaf = np.array(leaf)
    leaf.flat[0] = np.nan
    state["params"] = jax.tree_util.tree_map_with_path(lambda p, x: leaf if p == path else x, state["params"])
    nan = tmp_path / "nan.ckpt"
    checkpoint.save(nan, {k: v for k, v in header.items() if k not in ("format", "body_sha256")}, state)
    out = tmp_path / "out.parquet"
    spec = json.dumps({**PROTOCOL, "policy_modes": ["greedy"]})
    proc = call_cli("evaluate", "--checkpoint", nan, "--suite", suites_dir / "heldout-L01.json", "--out", out,
                   "--spec", spec)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert f"{nan}: params: non-finite values (NaN or infinity) in {jax.tree_util.keystr(path)}" in proc.stderr
    assert not out.exists()
    suite = load_suite(suites_dir / "heldout-L01.json")
    values = np.zeros((len(suite.scms), 2, 3))
    check_finite_actions([Method("m", None)], [{"value": values}], suite)
    values[1, 0, 2] = np.inf
    with pytest.raises(ValueError, match=f"method m chose a non-finite value on SCM {suite.scms[1].id} "
                                         r"\(episode 0, step 2\)"):
        check_finite_actions([Method("m", None)], [{"value": values}], suite)


def test_a_table_s_temporary_file_is_made_only_when_its_first_piece_is_ready(tmp_path):
    """A job killed while it computes (an evaluation computes every piece before the first) leaves no file."""
    import pyarrow as pa

    from workflow_src.tables import write_table_parts

    def pieces():
        assert list(tmp_path.iterdir()) == [], "a file was made before the first piece was ready"
        yield pa.table({"x": [1, 2]})
        yield pa.table({"x": [3]})

    assert write_table_parts(pieces(), tmp_path / "t.parquet") == 3
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]
    assert pq.read_table(tmp_path / "t.parquet").column("x").to_pylist() == [1, 2, 3]
    with pytest.raises(TableError, match="nothing to write"):
        write_table_parts(iter([]), tmp_path / "empty.parquet")
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]
