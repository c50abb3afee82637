"""scripts/slurm/local_cluster.py without daemons: the leftover clusters it may stop, its ports, its client wrappers."""

import importlib.util
import os
import socket
import subprocess
import sys

import pytest
from conftest import ROOT

SCRIPTS = ROOT / "scripts/slurm"


@pytest.fixture(scope="module")
def cluster_script():
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec = importlib.util.spec_from_file_location("local_cluster", SCRIPTS / "local_cluster.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPTS))
    return module


def test_a_cluster_is_orphaned_once_its_owner_has_exited(cluster_script, tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        cluster_script.write_owner(tmp_path, owner.pid)
        assert not cluster_script.orphaned(tmp_path)
    finally:
        owner.kill()
        owner.wait()
    assert cluster_script.orphaned(tmp_path)


def test_a_cluster_without_owner_is_kept_and_one_without_owner_file_is_orphaned(cluster_script, tmp_path):
    assert cluster_script.orphaned(tmp_path)  # started by an earlier version of the script, or its directory is gone
    cluster_script.write_owner(tmp_path, None)
    assert not cluster_script.orphaned(tmp_path)


def test_a_recycled_pid_does_not_keep_a_cluster(cluster_script, tmp_path):
    (tmp_path / "owner").write_text("1 not-its-start-time\n")
    assert cluster_script.orphaned(tmp_path)


def test_only_this_scripts_configurations_are_reaped(cluster_script, tmp_path):
    mine, other = tmp_path / "mine.conf", tmp_path / "other.conf"
    mine.write_text(cluster_script.CONF_HEADER + "\nClusterName=acbo-local\n")
    other.write_text("ClusterName=site\n")
    assert cluster_script.ours(mine)
    assert not cluster_script.ours(other)
    assert cluster_script.ours(tmp_path / "deleted" / "slurm.conf")


def test_the_two_ports_are_distinct_and_free(cluster_script):
    ctld, slurmd = cluster_script.choose_ports()
    assert ctld != slurmd
    for port in (ctld, slurmd):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))


def test_client_commands_carry_the_clusters_config_into_an_environment_without_it(cluster_script, tmp_path):
    d = tmp_path / "cluster dir"  # a space: the wrapper quotes its paths
    d.mkdir()
    cluster_script.write_client_commands(d, names=("printenv", "no-such-client-command"))
    assert sorted(p.name for p in (d / "bin").iterdir()) == ["printenv"]  # only installed commands
    for caller in ({}, {"SLURM_CONF": "/elsewhere/slurm.conf"}):
        env = {"PATH": os.environ["PATH"], **caller}
        out = subprocess.run([d / "bin" / "printenv", "SLURM_CONF"], env=env, capture_output=True, text=True)
        assert out.stdout.strip() == str(d / "slurm.conf")
    exports = cluster_script.shell_exports(d)
    shell = f'{exports}\necho "$SLURM_CONF"; command -v printenv'
    out = subprocess.run(["sh", "-c", shell], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == [str(d / "slurm.conf"), str(d / "bin" / "printenv")]


def test_a_munge_socket_path_too_long_for_unix_is_refused_by_name(cluster_script, tmp_path):
    d = tmp_path / ("x" * 120)
    with pytest.raises(cluster_script.ClusterError, match="shorten DIR"):
        cluster_script.start_munge(d)
    assert not d.exists()  # nothing half-made
