"""Generated suites: deterministic, well-formed at every level; suite files: validated with clear errors."""

import json
import math

import networkx as nx
import numpy as np
import pytest
from conftest import call_cli, large_user_suite_doc, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workflow_src.config import suite_slice
from workflow_src.core.graph import ancestors, cycle_nodes, reachability, topological_order
from workflow_src.core.scm import total_effects
from workflow_src.suites.generators import LEVELS, GeneratorSettings, generate_level_suite, generate_scm
from workflow_src.suites.suite_io import SuiteError, load_suite, parse_suite, suite_to_json


def test_same_config_gives_byte_identical_files(tmp_path, default_config):
    for name in ("train-L03", "heldout-L09", "heldout-classic"):
        spec = json.dumps(suite_slice(default_config, name))
        a, b = tmp_path / f"a-{name}.json", tmp_path / f"b-{name}.json"
        run_cli("suite", "generate", "--spec", spec, "--out", a, check=True)  # in a process of its own
        call_cli("suite", "generate", "--spec", spec, "--out", b, check=True)
        assert a.read_bytes() == b.read_bytes()
        assert load_suite(a).name == name


def test_different_seeds_give_different_scms():
    s = GeneratorSettings()
    one = generate_level_suite("x", 7, 8, 1, s)
    two = generate_level_suite("x", 7, 8, 2, s)
    assert suite_to_json(one) != suite_to_json(two)
    assert any(a.n != b.n or not np.array_equal(a.weights, b.weights) for a, b in zip(one.scms, two.scms))


def test_train_and_heldout_seeds_are_disjoint(default_config):
    seeds = [suite_slice(default_config, f"{kind}-L{lv:02d}")["seed"] for kind in ("train", "heldout") for lv in LEVELS]
    assert len(set(seeds)) == len(seeds)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(level=st.integers(1, 15), seed=st.integers(0, 2**31 - 1))
def test_generated_scms_are_valid_at_every_level(level, seed):
    spec = LEVELS[level]
    scm = generate_scm("p", level, np.random.default_rng(seed), GeneratorSettings())
    assert scm.family in spec.families
    assert spec.min_nodes <= scm.n <= spec.max_nodes
    assert not np.diag(reachability(scm.weights != 0)).any(), "graph must be acyclic"
    assert (ancestors(scm.weights, scm.target) & scm.intervenable).any()
    assert not scm.intervenable[scm.target]
    nonzero = np.abs(scm.weights[scm.weights != 0])
    assert np.all((nonzero >= 0.5) & (nonzero <= 2.0))
    assert np.all((scm.noise_std >= 0.5) & (scm.noise_std <= 1.5))
    assert set(np.abs(scm.lo[scm.intervenable])) <= {2.0, 3.0, 5.0, 10.0}
    ex = scm.exact()
    assert ex.y_star < ex.mu_y and math.isfinite(ex.random_value)
    # the written file round-trips through validation
    doc = json.loads(suite_to_json(generate_level_suite("p", level, 1, seed, GeneratorSettings())))
    parse_suite(doc)


def _valid_doc():
    return {
        "format": "acbo-suite/1",
        "name": "user",
        "scms": [
            {
                "id": "s0",
                "nodes": ["temp", "pressure", "yield"],
                "target": "yield",
                "edges": [
                    {"parent": "temp", "child": "pressure", "coef": 1.0},
                    {"parent": "pressure", "child": "yield", "coef": -2.0},
                ],
                "ranges": {"temp": [-1, 1], "pressure": [0, 3]},
            }
        ],
    }


def _mutate(change):
    doc = _valid_doc()
    change(doc)
    return doc


MALFORMED = {
    "cycle": (lambda d: d["scms"][0]["edges"].append({"parent": "yield", "child": "temp", "coef": 1.0}),
              "edges", "cycle"),
    "unknown edge node": (lambda d: d["scms"][0]["edges"].append({"parent": "wind", "child": "yield", "coef": 1.0}),
                          "edges[2].parent", "unknown node 'wind'"),
    "missing target": (lambda d: d["scms"][0].pop("target"), "scm 's0'", "'target' is a required property"),
    "unknown target": (lambda d: d["scms"][0].update(target="nope"), "target", "unknown node"),
    "lo >= hi": (lambda d: d["scms"][0]["ranges"].update(temp=[2, 1]), "ranges.temp", "lower bound"),
    "NaN coefficient": (lambda d: d["scms"][0]["edges"][0].update(coef=float("nan")), "", "non-finite"),
    "negative noise": (lambda d: d["scms"][0].update(noise_std={"temp": -1.0}), "noise_std.temp", "positive"),
    "wrong format tag": (lambda d: d.update(format="acbo-suite/3"), "format", "acbo-suite/1"),
    "duplicate ids": (lambda d: d["scms"].append(dict(d["scms"][0])), "id", "duplicate id"),
    "range on target": (lambda d: d["scms"][0]["ranges"].update({"yield": [0, 1]}), "ranges.yield", "target"),
    "no intervenable ancestor": (lambda d: d["scms"][0].update(ranges={"temp": [0, 1]}) or
                                 d["scms"][0]["edges"].pop(0), "ranges", "no intervenable ancestor"),
    "duplicate node names": (lambda d: d["scms"][0]["nodes"].append("temp"), "nodes", "duplicate node"),
    "unknown top-level key": (lambda d: d.update(extra=1), "(top level)", "'extra' was unexpected"),
    "coef not a number": (lambda d: d["scms"][0]["edges"][0].update(coef="big"), "edges[0].coef", "not of type"),
    "self loop": (lambda d: d["scms"][0]["edges"].append({"parent": "temp", "child": "temp", "coef": 1.0}),
                  "edges[2]", "self-loop"),
    # what the compiled float32 path cannot run, or where normalized improvement would be noise
    "coefficient 1e39": (lambda d: d["scms"][0]["edges"][0].update(coef=1e39), "edges[0].coef", "float32"),
    "coefficient 1e308": (lambda d: d["scms"][0]["edges"][1].update(coef=-1e308), "edges[1].coef", "float32"),
    "range of 1e308": (lambda d: d["scms"][0]["ranges"].update(temp=[-1e308, 1e308]), "ranges.temp", "float32"),
    "bias 1e20": (lambda d: d["scms"][0].update(bias={"temp": 1e20}), "bias.temp", "float32"),
    "integer beyond any float": (lambda d: d["scms"][0].update(noise_std={"temp": 10**400}), "noise_std.temp",
                                 "must be finite"),
    "total effect overflows": (lambda d: [e.update(coef=1e8) for e in d["scms"][0]["edges"]], "total effects",
                               "float32"),
    "only path has coefficient 0": (lambda d: d["scms"][0]["edges"][1].update(coef=0.0), "target 'yield'",
                                    "no effective path"),
    "paths cancel": (lambda d: d["scms"][0].update(
        edges=[{"parent": "temp", "child": "pressure", "coef": 1.5},
               {"parent": "pressure", "child": "yield", "coef": -0.7},
               {"parent": "temp", "child": "yield", "coef": 1.05}],
        ranges={"temp": [-1, 1]}), "oracle gap", "not above 0.1"),
    # latent variables (acbo-suite/2): simulated, never shown, never intervenable
    "range on a latent node": (lambda d: d.update(format="acbo-suite/2") or d["scms"][0].update(latent=["temp"]),
                               "ranges.temp", "a latent variable is never shown and may not be intervened on"),
    "latent target": (lambda d: d.update(format="acbo-suite/2") or d["scms"][0].update(latent=["yield"]),
                      "latent[0]", "the target may not be latent"),
    "unknown latent node": (lambda d: d.update(format="acbo-suite/2") or d["scms"][0].update(latent=["wind"]),
                            "latent[0]", "unknown node 'wind'"),
    "latent in acbo-suite/1": (lambda d: d["scms"][0].update(latent=["temp"]), "scm 's0'",
                               "'latent' was unexpected"),
    # names that would reach the terminal raw
    "ANSI escape in id": (lambda d: d["scms"][0].update(id="s0\x1b[31m"), "id", "control character"),
    "newline in node name": (lambda d: d["scms"][0].update(nodes=["temp", "pres\nsure", "yield"]), "nodes",
                             "control characters"),
    "carriage return in suite name": (lambda d: d.update(name="user\rok"), "name", "control character"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_suite_gives_clear_error(tmp_path, case):
    change, field, message = MALFORMED[case]
    doc = _mutate(change)
    path = tmp_path / "bad.json"
    text = json.dumps(doc)  # NaN is written as the (invalid JSON) literal NaN
    path.write_text(text)
    proc = call_cli("suite", "validate", path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines and all(line.startswith(f"{path}: ") for line in lines)
    assert any(field in line and message in line for line in lines), lines
    assert not any(c in line for line in lines for c in "\x1b\r"), lines
    if case not in ("wrong format tag", "unknown top-level key", "NaN coefficient", "carriage return in suite name"):
        assert any("scm 's0'" in line or "scm 's0\\x1b[31m'" in line for line in lines), lines
    with pytest.raises(SuiteError):
        load_suite(path)


def test_valid_and_missing_files(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_valid_doc()))
    proc = call_cli("suite", "validate", good)
    assert proc.returncode == 0 and "ok (1 SCMs)" in proc.stdout
    proc = call_cli("suite", "validate", tmp_path / "missing.json")
    assert proc.returncode == 1 and "cannot read file" in proc.stdout


def test_large_user_suite_with_free_names(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps(large_user_suite_doc(120)))
    suite = load_suite(path)
    scm = suite.scms[0]
    assert scm.n == 120 and scm.intervenable.sum() == 60
    proc = call_cli("suite", "oracle", path, "--json", check=True)
    rows = json.loads(proc.stdout)
    assert len(rows) == 1 and set(rows[0]) == {"id", "variable", "value", "y_star", "mu_y", "random"}
    assert rows[0]["variable"].startswith("gene_") and rows[0]["y_star"] < rows[0]["mu_y"]
    show = call_cli("suite", "show", path, check=True).stdout
    assert "big-0" in show and "120" in show


def test_show_and_oracle_escape_bidi_and_other_unprintable_characters_in_names(tmp_path):
    """Issue 27: a right-to-left override in a name was printed raw and reordered the rest of the line."""
    text = json.dumps(_valid_doc()).replace("pressure", "pres\u202esure").replace('"s0"', '"s\u20280"')
    path = tmp_path / "bidi.json"
    path.write_text(text)
    for command in (("suite", "show", path), ("suite", "oracle", path)):
        out = run_cli(*command, check=True).stdout
        assert "\u202e" not in out and "\u2028" not in out, out
        assert "s\\u20280" in out, out
    assert "pres\\u202esure" in run_cli("suite", "show", path, check=True).stdout


def test_unreadable_files_give_one_line_each_and_validation_goes_on(tmp_path):
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(json.dumps(_valid_doc()).replace("temp", "temp\u00e9").encode("latin-1"))
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    deep_scm = tmp_path / "deep_scm.json"
    deep_scm.write_text(json.dumps(_mutate(lambda d: d.update(name=[]))).replace("[]", "[" * 5000 + "]" * 5000))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_valid_doc()))
    proc = call_cli("suite", "validate", latin1, deep, deep_scm, good)
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr and not proc.stderr, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith(f"{latin1}: not UTF-8 text")
    assert lines[1] == f"{deep}: (top level): nested too deeply to be a suite file"
    assert len([line for line in lines if line.startswith(f"{deep_scm}: ")]) == 1
    assert lines[-1] == f"{good}: ok (1 SCMs)"


def test_a_1000_node_chain_validates():
    names = [f"X{i}" for i in range(1000)]
    doc = {"format": "acbo-suite/1", "name": "chain", "scms": [{
        "id": "c", "nodes": names, "target": names[-1], "ranges": {v: [-1.0, 1.0] for v in names[:-1]},
        "edges": [{"parent": a, "child": b, "coef": 0.9} for a, b in zip(names, names[1:])]}]}
    scm = parse_suite(doc).scms[0]
    assert ancestors(scm.weights, scm.target).sum() == 999
    with pytest.raises(SuiteError, match="cycle through"):
        doc["scms"][0]["edges"].append({"parent": names[-1], "child": names[0], "coef": 0.5})
        parse_suite(doc)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 12), density=st.floats(0, 1), seed=st.integers(0, 2**31 - 1))
def test_graph_algorithms_agree_with_networkx(n, density, seed):
    rng = np.random.default_rng(seed)
    adjacency = rng.random((n, n)) < density
    np.fill_diagonal(adjacency, False)
    graph = nx.DiGraph(adjacency)
    # the nodes on a cycle: those of a strongly connected component of two or more (no self-loops); listing
    # the simple cycles instead takes exponential time on a dense draw (measured: 468 s for one run)
    on_cycles = {v for part in nx.strongly_connected_components(graph) if len(part) > 1 for v in part}
    assert set(cycle_nodes(adjacency)) >= on_cycles
    assert (topological_order(adjacency) is None) == bool(on_cycles)
    dag = np.triu(adjacency, 1)
    closure = nx.to_numpy_array(nx.transitive_closure_dag(nx.DiGraph(dag)), nodelist=range(n)) != 0
    assert np.array_equal(reachability(dag), closure)
    for node in range(n):
        assert set(np.flatnonzero(ancestors(dag, node))) == nx.ancestors(nx.DiGraph(dag), node)
    weights = dag * rng.uniform(-2, 2, (n, n))
    assert np.allclose(total_effects(weights), np.linalg.solve(np.eye(n) - weights, np.eye(n)), rtol=1e-12, atol=1e-12)


def test_user_suite_whose_name_differs_from_its_key_is_refused_when_copied(tmp_path):
    source = tmp_path / "theirs.json"
    source.write_text(json.dumps(_valid_doc()))  # its name is "user"
    out = tmp_path / "mine.json"
    proc = call_cli("suite", "generate", "--spec", json.dumps({"name": "mine", "user_file": str(source)}), "--out", out)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    message = f"{source}: name: 'user' differs from its config key suites.user.mine"
    assert proc.stderr.strip() == f"acbo suite: error: {message}"
    assert not out.exists()
