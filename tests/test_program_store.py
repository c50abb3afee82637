"""The program store: a warm job loads its exported program instead of tracing it, and never a stale one."""

import dataclasses
import os
import shutil
import stat

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from workflow_src.config import suite_slice, train_slice
from workflow_src.core.scm import stack_scms
from workflow_src.evaluate import program_store
from workflow_src.evaluate.baselines import baseline_methods
from workflow_src.evaluate.baselines.random import act as act_random
from workflow_src.evaluate.methods import Method, policy_methods
from workflow_src.evaluate.program_store import ENTRY_SUFFIX, package_source_hash, program_key
from workflow_src.evaluate.run import run_methods
from workflow_src.policy.network import init_params, make_policy
from workflow_src.policy.spec import POLICY_KEYS
from workflow_src.provenance import PACKAGE_ROOT
from workflow_src.suites.build import build_suite
from workflow_src.suites.suite_io import load_suite

PROTOCOL = {"seed": 5, "episodes": 2, "interventions": 4, "n_obs": 5}


@pytest.fixture(scope="module")
def suite(tmp_path_factory, default_config):
    path = tmp_path_factory.mktemp("suites") / "heldout-L02.json"
    build_suite(suite_slice(default_config, "heldout-L02"), path)
    suite = load_suite(path)
    return dataclasses.replace(suite, scms=suite.scms[:3])


@pytest.fixture
def store(tmp_path, monkeypatch):
    folder = tmp_path / "exported"
    monkeypatch.setattr(program_store, "store_folder", lambda: folder)
    return folder


def counting_method(traces: list, program_id: str | None = "counting"):
    """``random``, counting how often its program is traced."""

    def act(params, view, key):
        traces.append(1)
        return act_random(params, view, key)

    return Method("counting", act, program_id=program_id)


def run(methods, suite, params=None, protocol=PROTOCOL):
    infos = []
    records = run_methods(methods, params, suite, protocol, log=infos.append)
    return records, infos[0]


def test_a_stored_program_runs_untraced_and_gives_the_same_bits(suite, store):
    traces = []
    methods = [counting_method(traces), *baseline_methods(["thompson_bandit"])]
    first, info = run(methods, suite)
    assert info.origin == "traced" and traces and len(list(store.glob(f"*{ENTRY_SUFFIX}"))) == 1
    traced = len(traces)
    second, info = run(methods, suite)
    assert info.origin == "stored export" and len(traces) == traced  # act was not traced again
    for a, b in zip(first, second):
        for field in a:
            np.testing.assert_array_equal(a[field], b[field], err_msg=field)
    assert "stored export" in info.line() and not list(store.glob("*.tmp"))


def test_the_policy_runs_from_the_store(suite, store, default_config):
    config = {**train_slice(default_config, "debug")["policy"], "hidden_dim": 8, "n_heads": 2, "n_layers": 1}
    methods = policy_methods(config, ["greedy", "sampled"])
    params = init_params(make_policy(config), jax.random.PRNGKey(1))
    first, info = run(methods, suite, params)
    assert info.origin == "traced"
    second, info = run(methods, suite, params)
    assert info.origin == "stored export"
    np.testing.assert_array_equal(first[1]["value"], second[1]["value"])


def test_a_method_renamed_gets_a_program_of_its_own(suite, store):
    """A method's name seeds its random stream inside the program, so it is part of the key."""
    traces = []
    run([counting_method(traces)], suite)
    renamed, info = run([counting_method(traces)._replace(name="renamed")], suite)
    assert info.origin == "traced" and len(list(store.glob(f"*{ENTRY_SUFFIX}"))) == 2
    original, _ = run([counting_method(traces)], suite)
    assert not np.array_equal(renamed[0]["value"], original[0]["value"])  # another stream, other draws


def damage_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "damaged entry" in line]


@pytest.mark.parametrize("damage", ["truncated", "flipped byte"])
def test_a_damaged_entry_is_said_in_one_line_traced_again_and_replaced(suite, store, capsys, damage):
    traces = []
    clean, _ = run([counting_method(traces)], suite)
    (entry,) = store.glob(f"*{ENTRY_SUFFIX}")
    data = bytearray(entry.read_bytes())
    if damage == "truncated":
        del data[len(data) // 2:]
    else:
        data[len(data) // 2] ^= 0x10  # inside the program: without its checksum, a traceback in every job
    entry.write_bytes(bytes(data))
    damaged = entry.read_bytes()
    capsys.readouterr()
    traced = len(traces)
    repaired, info = run([counting_method(traces)], suite)
    assert info.origin == "traced" and len(traces) > traced
    (line,) = damage_lines(capsys.readouterr().err)
    assert line.startswith(f"program store: damaged entry {entry.name}: ") and line.endswith("replacing it")
    assert entry.read_bytes() != damaged
    for a, b in zip(clean, repaired):
        for field in a:
            np.testing.assert_array_equal(a[field], b[field], err_msg=field)
    _, info = run([counting_method(traces)], suite)
    assert info.origin == "stored export" and not capsys.readouterr().err


def test_a_swapped_entry_is_not_run(suite, store, default_config, capsys):
    """The ``sampled, greedy`` program copied under the name of ``greedy, sampled``'s would swap the two modes'
    results: an entry is checked against the key it was stored for, not its file name."""
    config = {**train_slice(default_config, "debug")["policy"], "hidden_dim": 8, "n_heads": 2, "n_layers": 1}
    params = init_params(make_policy(config), jax.random.PRNGKey(1))
    greedy_first, _ = run(policy_methods(config, ["greedy", "sampled"]), suite, params)
    (entry,) = store.glob(f"*{ENTRY_SUFFIX}")
    run(policy_methods(config, ["sampled", "greedy"]), suite, params)
    (other,) = set(store.glob(f"*{ENTRY_SUFFIX}")) - {entry}
    shutil.copyfile(other, entry)
    capsys.readouterr()
    again, info = run(policy_methods(config, ["greedy", "sampled"]), suite, params)
    assert info.origin == "traced"
    (line,) = damage_lines(capsys.readouterr().err)
    assert f"damaged entry {entry.name}: holds the entry of another key" in line
    assert not np.array_equal(greedy_first[0]["value"], greedy_first[1]["value"])  # the swap would show
    for a, b in zip(greedy_first, again):
        np.testing.assert_array_equal(a["value"], b["value"])
    _, info = run(policy_methods(config, ["greedy", "sampled"]), suite, params)
    assert info.origin == "stored export"


def test_entries_are_shared_as_the_umask_allows(suite, store):
    """Group-readable and, under umask 002, group-writable: another member of the group loads them."""
    previous = os.umask(0o002)
    try:
        run([counting_method([])], suite)
    finally:
        os.umask(previous)
    (entry,) = store.glob(f"*{ENTRY_SUFFIX}")
    assert stat.S_IMODE(entry.stat().st_mode) == 0o664 and stat.S_IMODE(store.stat().st_mode) == 0o775


def test_a_store_the_job_cannot_use_is_said_in_one_line(suite, tmp_path, monkeypatch, capsys):
    """A file where the store should be: unreadable and unwritable whoever runs the test (root included)."""
    store = tmp_path / "a file" / "exported"
    (tmp_path / "a file").write_text("")
    monkeypatch.setattr(program_store, "store_folder", lambda: store)
    records, info = run([counting_method([])], suite)
    assert info.origin == "traced" and np.isfinite(records[0]["value"]).all()
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"program store: cannot read {store}/") and line.endswith("traced and not stored"), line


def test_a_store_the_job_cannot_write_to_is_used_read_only(suite, store, monkeypatch, capsys):
    run([counting_method([])], suite)

    def refused(*_):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(program_store, "atomic_write_bytes", refused)  # as for a group member without write access
    _, info = run([counting_method([])], suite)
    assert info.origin == "stored export" and not capsys.readouterr().err
    _, info = run([counting_method([])._replace(name="another")], suite)
    assert info.origin == "traced"
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"program store: cannot write {store}/") and line.endswith("traced again in the next job")


def test_a_method_without_program_id_is_traced_every_time_and_never_stored(suite, store):
    traces = []
    for _ in range(2):
        _, info = run([counting_method(traces, program_id=None), *baseline_methods(["random"])], suite)
        assert info.origin == "traced"
    assert len(traces) >= 2 and not store.exists()


def test_the_key_changes_with_whatever_the_program_depends_on(suite):
    arrays = stack_scms(list(suite.scms), 8)
    args = (None, arrays, jnp.zeros(2, jnp.uint32), np.arange(3, dtype=np.int32))
    key = program_key(("random",), PROTOCOL, args)
    # the values of the arguments are inputs, not part of the program
    assert program_key(("random",), PROTOCOL, (None, arrays._replace(lo=arrays.lo - 1), *args[2:])) == key
    changed = [
        program_key(("oracle",), PROTOCOL, args),
        program_key(("random", "oracle"), PROTOCOL, args),
        program_key(("random",), {**PROTOCOL, "n_obs": 6}, args),
        program_key(("random",), {**PROTOCOL, "interventions": 5}, args),
        program_key(("random",), {**PROTOCOL, "episodes": 3}, args),
        program_key(("random",), PROTOCOL, (None, stack_scms(list(suite.scms), 16), *args[2:])),  # another bucket
        program_key(("random",), PROTOCOL, (None, arrays, *args[2:3], np.arange(3, dtype=np.int64))),  # dtype
        program_key(("random",), PROTOCOL, ({"w": np.zeros(3)}, arrays, *args[2:])),  # parameters
    ]
    assert len({key, *changed}) == len(changed) + 1


def test_the_key_changes_with_the_package_source(suite, tmp_path, monkeypatch):
    copy = tmp_path / "pkg"
    shutil.copytree(PACKAGE_ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert package_source_hash(copy) == package_source_hash()
    hashes = {package_source_hash()}
    module = copy / "core" / "sampler.py"
    for edit in (lambda: module.write_text(module.read_text() + "\n# an edit\n"),
                 lambda: (copy / "extra.py").write_text("X = 1\n")):
        edit()
        package_source_hash.cache_clear()
        hashes.add(package_source_hash(copy))
    assert len(hashes) == 3
    edited = package_source_hash(copy)
    args = (None, stack_scms(list(suite.scms), 8), jnp.zeros(2, jnp.uint32), np.arange(3, dtype=np.int32))
    key = program_key(("random",), PROTOCOL, args)
    monkeypatch.setattr(program_store, "package_source_hash", lambda: edited)
    assert program_key(("random",), PROTOCOL, args) != key


def test_policy_programs_are_identified_by_mode_and_every_network_setting(default_config):
    config = train_slice(default_config, "debug")["policy"]
    changes = ({}, {"n_layers": config["n_layers"] + 1}, {"hidden_dim": 8}, {"n_heads": 1}, {"prior": "none"},
               {"bandit_features": not config["bandit_features"]}, {"effect_head": not config["effect_head"]},
               {"fixed_std": config["fixed_std"] + 0.1})
    assert {key for change in changes for key in change} == set(POLICY_KEYS) - {"name"}
    ids = {m.program_id for change in changes for m in policy_methods({**config, **change}, ["greedy", "sampled"])}
    assert len(ids) == 2 * len(changes)
