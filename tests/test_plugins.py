"""Plug-in methods: a user's method in one file runs like a baseline; a broken one gets one line, no output."""

import json
import signal
import textwrap

import pandas as pd
import pytest
import yaml
from conftest import EXAMPLE_PLUGIN, ROOT, call_cli, copy_study, planned_jobs, run_cli, snakemake, wait_for

from workflow_src.errors import PluginError
from workflow_src.evaluate.plugins import check_act, check_records, load_plugin
from workflow_src.evaluate.registry import BASELINES
from workflow_src.evaluate.run import write_evaluation
from workflow_src.suites.suite_io import parse_suite

EXAMPLE = EXAMPLE_PLUGIN
PROTOCOL = {"seed": 0, "episodes": 2, "interventions": 3, "n_obs": 5, "min_suite_episodes": 1}
SUITE_DOC = {
    "format": "acbo-suite/1", "name": "tiny",
    "scms": [
        {"id": "collider", "nodes": ["A", "B", "Y"], "target": "Y", "ranges": {"A": [-2, 2], "B": [-1, 3]},
         "edges": [{"parent": "A", "child": "Y", "coef": 1.5}, {"parent": "B", "child": "Y", "coef": -1.0}]},
        {"id": "chain", "nodes": ["X0", "X1", "Y"], "target": "Y", "ranges": {"X0": [-5, 5], "X1": [-2, 2]},
         "edges": [{"parent": "X0", "child": "X1", "coef": 1.0}, {"parent": "X1", "child": "Y", "coef": 2.0}]},
    ],
}
SUITE = parse_suite(SUITE_DOC)


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("suite") / "tiny.json"
    path.write_text(json.dumps(SUITE_DOC))
    return path


def write_plugin(tmp_path, body: str, name="broken.py"):
    path = tmp_path / name
    path.write_text("import jax\nimport jax.numpy as jnp\n\n" + textwrap.dedent(body))
    return path


def run_plugin(path, out, settings=None):
    """What `acbo plugin` does, in-process."""
    plugin = load_plugin(path, settings=settings, reserved=BASELINES)
    check_act(plugin, SUITE, PROTOCOL)
    write_evaluation([plugin.method()], None, SUITE, PROTOCOL, {"plugin_hash": plugin.file_hash}, out,
                     "plug-in table", log=lambda line: None, check=check_records(plugin, SUITE))
    return plugin


def test_example_plugin_runs_from_the_cli_with_its_name_and_hash(tmp_path, suite_file):
    out = tmp_path / "t.parquet"
    proc = call_cli("plugin", "--file", EXAMPLE, "--suite", suite_file, "--out", out, "--spec", json.dumps(PROTOCOL),
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_parquet(out)
    assert set(table.method) == {"surrogate_greedy"} and len(table) == 2 * 2 * 3
    from workflow_src.provenance import file_hash

    assert (table.plugin_hash == file_hash(EXAMPLE)).all() and table.checkpoint_hash.isna().all()
    assert table.config.isna().all() and table.seed.isna().all()


def test_a_plugin_sizes_its_arrays_by_the_protocols_observational_samples(tmp_path):
    """``view.buffer.n_obs`` is a plain integer (the protocol's ``n_obs``) at trace time: a static slice of the
    observational rows. The plug-in sets the variable whose observational mean is highest, at its low end."""
    path = write_plugin(tmp_path, """
        def act(settings, view, key):
            assert isinstance(view.buffer.n_obs, int)
            observational = view.buffer.values[:view.buffer.n_obs]  # (n_obs, N): a static shape
            score = jnp.where(view.scm.intervenable, observational.mean(0), -jnp.inf)
            variable = jnp.argmax(score)
            return variable, view.scm.lo[variable]
    """, "by_obs.py")
    out = tmp_path / "t.parquet"
    run_plugin(path, out)
    table = pd.read_parquet(out)
    assert len(table) == 2 * 2 * 3 and table.variable.isin(["A", "B", "X0", "X1"]).all()


def test_settings_reach_act_and_unknown_settings_are_refused(tmp_path):
    path = write_plugin(tmp_path, """
        SETTINGS = {"variable": 0}

        def act(settings, view, key):
            return jnp.int32(settings["variable"]), view.scm.lo[settings["variable"]]
    """, "fixed.py")
    out = tmp_path / "t.parquet"
    run_plugin(path, out, settings={"variable": 1})
    table = pd.read_parquet(out)
    assert set(table.variable) == {"B", "X1"} and table.method.unique().tolist() == ["fixed"]
    with pytest.raises(PluginError, match=r"fixed.py: settings: unknown key 'speed'"):
        load_plugin(path, settings={"speed": 2})


BROKEN = {
    "import error": ("import not_a_module_anywhere\n", "cannot import the plug-in: ModuleNotFoundError"),
    "syntax error": ("def act(settings, view, key)\n    return 0, 0.0\n", "cannot import the plug-in: SyntaxError"),
    "missing act": ("def choose(settings, view, key):\n    return 0, 0.0\n", "defines no act(settings, view, key)"),
    "wrong shape": ("def act(settings, view, key):\n    return jnp.zeros(2, jnp.int32), view.scm.lo[:2]\n",
                    "act must return (variable: an integer scalar, value: a float scalar), "
                    "got a 2-tuple (int32[2], float32[2])"),
    "three outputs": ("def act(settings, view, key):\n    return 0, 0.0, 1.0\n", "got a 3-tuple"),
    "float variable": ("def act(settings, view, key):\n    return jnp.float32(0), view.scm.lo[0]\n",
                       "got a 2-tuple (float32[], float32[])"),
    "not jittable": ("def act(settings, view, key):\n    v = 0 if view.buffer.values[0, 0] > 0 else 1\n"
                     "    return jnp.int32(v), view.scm.lo[v]\n", "act is not jittable: TracerBoolConversionError"),
    "reads the truth": ("def act(settings, view, key):\n    return jnp.argmax(view.scm.parents), view.scm.lo[0]\n",
                        "act is not jittable: AttributeError: 'Problem' object has no attribute 'parents'"),
    "outside the range": ("def act(settings, view, key):\n    return jnp.int32(0), view.scm.hi[0] + 1.0\n",
                          "act chose do(A = 3) on SCM collider, outside the range [-2, 2]"),
    "not intervenable": ("def act(settings, view, key):\n    return view.scm.target, jnp.float32(0.0)\n",
                         "act chose variable Y on SCM collider, which cannot be intervened on"),
    "outside later": ("def act(settings, view, key):\n"
                      "    return jnp.int32(0), jnp.where(view.step == 2, 9.0, view.scm.lo[0])\n",
                      "act chose a variable that cannot be intervened on or a value outside its range on SCM "
                      "collider (episode 0, step 2)"),
    "pure callback": ("def act(settings, view, key):\n"
                      "    pick = jax.pure_callback(lambda: jnp.int32(0), jax.ShapeDtypeStruct((), jnp.int32))\n"
                      "    return pick, view.scm.lo[pick]\n",
                      "act is refused: its program calls back into Python (pure_callback)"),
    "debug print": ("def act(settings, view, key):\n"
                    "    jax.debug.print('{x}', x=view.step)\n"
                    "    return jnp.int32(0), view.scm.lo[0]\n",
                    "act is refused: its program calls back into Python (debug_print)"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_plugin_gets_one_line_naming_the_file_and_no_output(tmp_path, case):
    body, message = BROKEN[case]
    path = write_plugin(tmp_path, body)
    out = tmp_path / "t.parquet"
    with pytest.raises(PluginError) as err:
        run_plugin(path, out)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value), str(err.value)
    assert "\n" not in str(err.value)
    assert not out.exists() and list(tmp_path.glob("*.parquet*")) == []


def test_the_cli_says_it_in_one_line_with_exit_status_2(tmp_path, suite_file):
    path = write_plugin(tmp_path, BROKEN["not jittable"][0])
    out = tmp_path / "t.parquet"
    proc = call_cli("plugin", "--file", path, "--suite", suite_file, "--out", out, "--spec", json.dumps(PROTOCOL))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"acbo plugin: error: {path}: act is not jittable: "
                                                 + proc.stderr.split("act is not jittable: ")[1].strip()]
    assert not out.exists()


HOSTILE = """
import inspect
import sys

FOUND = []
TRUTH = ("total_effects", "oracle_variable", "y_star", "linear_weights", "oracle", "scms", "curve_y")


def holding_truth(value):
    inside = [value, *getattr(value, "__dict__", {}).values()]
    if isinstance(value, dict | list | tuple):
        inside += list(value.values() if isinstance(value, dict) else value)
    for x in inside:
        try:
            if any(hasattr(x, field) for field in TRUTH):
                return x
        except Exception:
            pass
    return None


def act(settings, view, key):
    frame, frames = sys._getframe(), [info.frame for info in inspect.stack()]
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    for frame in frames:
        for name, value in list(frame.f_locals.items()):
            truth = holding_truth(value)
            if truth is not None:
                FOUND.append(f"{frame.f_code.co_name}: {name}")
                if getattr(getattr(truth, "oracle_variable", None), "ndim", None) == 0:
                    return truth.oracle_variable, truth.oracle_value  # the rollout's truth, as a tracer
    variable = jnp.argmax(view.scm.intervenable & view.scm.node_mask)
    return variable, (view.scm.lo[variable] + view.scm.hi[variable]) / 2  # honest, and never the best
"""


def test_a_plugin_walking_the_call_stack_finds_no_truth(tmp_path):
    """Issue 27: a plug-in that walked sys._getframe to the rollout's truth scored as the oracle."""
    plugin = run_plugin(write_plugin(tmp_path, HOSTILE, "hostile.py"), tmp_path / "t.parquet")
    assert plugin.act.__globals__["FOUND"] == []
    table = pd.read_parquet(tmp_path / "t.parquet")
    assert (table.norm_improvement < 0.99).any()  # it never learned the oracle's answer


@pytest.mark.parametrize("name", ["random", "policy_x", "has-dash"])
def test_names_that_clash_or_are_malformed_are_refused(tmp_path, name):
    with pytest.raises(PluginError, match="method name"):
        load_plugin(EXAMPLE, name=name, reserved=BASELINES)


def test_the_readme_worked_example_runs_as_the_shipped_plugin(tmp_path):
    """The README's worked example, copied from it into a file, is the shipped example: the same code, and as a
    plug-in it writes the same rows."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("    import jax\n", readme.index("The example shipped in `examples/plugins/"))
    code = textwrap.dedent(readme[start:readme.index("    # config/config.yaml", start)]).strip()
    assert code == EXAMPLE.read_text().split('"""', 2)[2].strip()
    assert len([line for line in code.splitlines() if line.strip()]) <= 16
    copied = tmp_path / "readme_example.py"
    copied.write_text(code + "\n")
    tables = []
    for path in (EXAMPLE, copied):
        run_plugin(path, tmp_path / f"{path.stem}.parquet")
        tables.append(pd.read_parquet(tmp_path / f"{path.stem}.parquet").drop(columns="plugin_hash"))
    assert set(tables[0].method) == {"surrogate_greedy"} and len(tables[0]) == 2 * 2 * 3
    pd.testing.assert_frame_equal(*tables)


# --- end to end: the session's tiny study has the example plug-in ------------------------------------------

SUMMARY = "results/tiny_b/summary.html"


def test_a_study_with_a_plugin_has_its_rows_everywhere(tiny_study):
    from workflow_src.provenance import file_hash

    table = pd.read_parquet(tiny_study / "results/plugins/greedy/heldout-L01.parquet")
    assert set(table.method) == {"greedy"} and len(table) == 3 * 2 * 3  # SCMs x episodes x interventions
    assert (table.plugin_hash == file_hash(tiny_study / "methods/greedy.py")).all()
    summary = pd.read_parquet(tiny_study / "results/tiny_b/summary.parquet")
    metrics = summary[summary.kind == "metric"]
    assert {"greedy", "random", "oracle", "policy_greedy"} <= set(metrics.method)
    assert set(metrics[metrics.method == "greedy"].metric) == set(metrics[metrics.method == "random"].metric)
    assert "greedy" in set(summary[summary.kind == "step_curve"].method)
    assert "greedy" in set(summary[summary.kind == "paired_difference"].baseline)  # the policy against it
    html = (tiny_study / SUMMARY).read_text()
    assert html.count(">greedy<") >= 2 and file_hash(tiny_study / "methods/greedy.py") in html


def test_editing_the_plugin_reruns_only_its_jobs_and_the_summary(tiny_study, tmp_path):
    study = copy_study(tiny_study, tmp_path / "wf")
    assert planned_jobs(study, SUMMARY) == {}
    with open(study / "methods/greedy.py", "a") as f:
        f.write("\n# an edit\n")
    assert planned_jobs(study, SUMMARY) == {"plugin": 2, "summary": 1}  # on heldout-L01 and mine
    path = study / "config/config.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["evaluation"]["plugins"]["greedy"] = {"file": "methods/greedy.py", "settings": {"epsilon": 0.5}}
    path.write_text(yaml.safe_dump(cfg))
    assert planned_jobs(study, SUMMARY) == {"plugin": 2, "summary": 1}
    # a plug-in named in the config whose file is missing: one line at parse time
    (study / "methods/greedy.py").unlink()
    proc = snakemake(study, SUMMARY, "-n", check=False)
    assert proc.returncode != 0 and "evaluation.plugins.greedy: no plug-in file 'methods/greedy.py'" in (
        proc.stdout + proc.stderr)


def test_helper_modules_beside_a_plugin_are_importable_and_part_of_its_hash(tmp_path):
    from workflow_src.provenance import file_hash, plugin_source_hash

    alone = write_plugin(tmp_path, "def act(settings, view, key):\n    return jnp.int32(0), view.scm.lo[0]\n",
                         "alone.py")
    assert plugin_source_hash(alone) == file_hash(alone)  # the tables of a plug-in without helpers are unchanged
    (tmp_path / "pick.py").write_text("import jax.numpy as jnp\n\n\ndef first(scm):\n"
                                      "    return jnp.argmax(scm.intervenable & scm.node_mask)\n")
    (tmp_path / "values").mkdir()
    (tmp_path / "values/__init__.py").write_text("from .ends import low\n")
    (tmp_path / "values/ends.py").write_text("def low(scm, v):\n    return scm.lo[v]\n")
    path = write_plugin(tmp_path, """
        import pick
        from values import low


        def act(settings, view, key):
            variable = pick.first(view.scm)
            return variable, low(view.scm, variable)
        """, "helped.py")
    plugin = run_plugin(path, tmp_path / "t.parquet")
    assert pd.read_parquet(tmp_path / "t.parquet").plugin_hash.unique().tolist() == [plugin.file_hash]
    hashes = {plugin_source_hash(path)}
    for helper in ("pick.py", "values/ends.py"):
        with open(tmp_path / helper, "a") as f:
            f.write("\n# an edit\n")
        hashes.add(plugin_source_hash(path))
    assert len(hashes) == 3 and plugin.file_hash != file_hash(path)


def test_helpers_imported_by_importlib_and_data_files_are_part_of_the_hash(tmp_path):
    """Issue 27: a helper loaded with importlib.import_module and a data file the plug-in reads were not hashed."""
    from workflow_src.provenance import plugin_source_hash, plugin_sources

    (tmp_path / "pick.py").write_text("def first(scm):\n    return 0\n")
    (tmp_path / "ends.py").write_text("def low(scm, v):\n    return scm.lo[v]\n")
    (tmp_path / "table.json").write_text('{"variable": 0}')
    (tmp_path / "data").mkdir()
    (tmp_path / "data/weights.txt").write_text("1 2 3")
    (tmp_path / "unrelated.txt").write_text("not read")
    path = write_plugin(tmp_path, """
        import importlib
        import json
        from pathlib import Path

        pick = importlib.import_module("pick")
        ends = __import__("ends")
        CHOICE = json.loads(Path(__file__).with_name("table.json").read_text())["variable"]
        WEIGHTS = (Path(__file__).parent / "data" / "weights.txt").read_text()


        def act(settings, view, key):
            return jnp.int32(CHOICE), ends.low(view.scm, CHOICE)
        """, "reads.py")
    assert [p.relative_to(tmp_path).as_posix() for p in plugin_sources(path)] == [
        "reads.py", "data/weights.txt", "ends.py", "pick.py", "table.json"]
    hashes = {plugin_source_hash(path)}
    for name in ("pick.py", "ends.py", "table.json", "data/weights.txt"):
        with open(tmp_path / name, "a") as f:
            f.write("\n")
        hashes.add(plugin_source_hash(path))
    (tmp_path / "unrelated.txt").write_text("edited")
    hashes.add(plugin_source_hash(path))
    assert len(hashes) == 5
    run_plugin(path, tmp_path / "t.parquet")


def test_ctrl_c_stops_a_plugin_that_loops_forever_in_compiled_code(tmp_path, suite_file):
    """Python's SIGINT handler cannot run while XLA runs a program: the command still stops, in one line."""
    import os
    import subprocess
    import sys

    from workflow_src.compile_cache import CACHE_SUFFIX

    traced, cache = tmp_path / "traced", tmp_path / "cache"
    path = write_plugin(tmp_path, f"""
        def act(settings, view, key):
            open({str(traced)!r}, "w").close()  # when traced: then compiled and run forever
            spin = jax.lax.while_loop(lambda c: c >= 0, lambda c: (c + 1) % 2, jnp.int32(0))
            variable = jnp.argmax(view.scm.intervenable & view.scm.node_mask) + spin
            return variable, view.scm.lo[variable]
        """, "forever.py")
    out = tmp_path / "t.parquet"
    proc = subprocess.Popen([sys.executable, "-m", "workflow_src", "plugin", "--file", path, "--suite", suite_file,
                             "--out", out, "--spec", json.dumps(PROTOCOL)], cwd=ROOT, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, env={**os.environ, "ACBO_JAX_CACHE": str(cache)})
    entries = lambda: set(cache.glob(f"*{CACHE_SUFFIX}"))  # noqa: E731
    try:
        wait_for(lambda: traced.exists() or proc.poll() is not None, timeout=120, what="act traced")
        traced_with = entries()
        # act's program is compiled (its entry in the fresh compilation cache): it runs, endlessly, where
        # Python's handler never runs
        wait_for(lambda: entries() - traced_with or proc.poll() is not None, timeout=120, what="act compiled")
        assert proc.poll() is None, proc.stderr.read()
        os.kill(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and stderr == "acbo plugin: interrupted\n", stderr
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# each says "ready" inside its try: a SIGINT right after it is the command's to take
SWALLOWED = """
    try:
        print("ready", flush=True)
        while True:
            time.sleep(0.05)
    except KeyboardInterrupt:
        pass  # lost on the way: the command goes on
    while True:
        time.sleep(0.05)
    """
EXIT_HANGS = """
    atexit.register(time.sleep, 3600)  # an exit handler waiting for something that never ends
    try:
        print("ready", flush=True)
        while True:
            time.sleep(0.05)
    except KeyboardInterrupt:
        sys.exit(interrupt.report("plugin"))  # as the CLI does
    """


@pytest.mark.parametrize("after", [SWALLOWED, EXIT_HANGS], ids=["swallowed", "exit_hangs"])
def test_ctrl_c_taken_by_python_still_ends_a_command_that_does_not(after):
    """The handler ran, but the command did not end (its KeyboardInterrupt lost, or the interpreter's exit stuck):
    the watcher ends it after ``UNWIND_GRACE_S``, in one line (not two) and the status for SIGINT."""
    import subprocess
    import sys

    script = textwrap.dedent("""
        import atexit
        import sys
        import time
        from workflow_src import interrupt
        interrupt.UNWIND_GRACE_S = 0.5
        interrupt.stop_on_interrupt("plugin")
        """) + textwrap.dedent(after)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and stderr == "acbo plugin: interrupted\n", stderr


def test_ctrl_c_while_a_plugin_imports_exits_130(tmp_path, suite_file):
    """Issue 27: the interrupt was taken for a broken plug-in (exit status 2)."""
    path = write_plugin(tmp_path, """
        import os
        import signal
        import time

        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the file imports
        time.sleep(30)


        def act(settings, view, key):
            return jnp.int32(0), view.scm.lo[0]
        """, "slow_import.py")
    out = tmp_path / "t.parquet"
    proc = run_cli("plugin", "--file", path, "--suite", suite_file, "--out", out, "--spec", json.dumps(PROTOCOL))
    assert proc.returncode == 130 and proc.stderr == "acbo plugin: interrupted\n", proc.stderr
    assert not out.exists()
