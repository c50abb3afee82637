"""scripts/slurm/local_cluster.py decides which leftover clusters it may stop (no daemons started here)."""

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


def test_busy_default_ports_give_two_other_free_ports(cluster_script):
    held = []
    try:
        for port in cluster_script.DEFAULT_PORTS:
            if cluster_script.port_free(port):  # else something else already holds it, just as well
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind(("127.0.0.1", port))
                s.listen()
                held.append(s)
        if held:
            port = held[0].getsockname()[1]
            assert f"{os.getpid()} python" in " ".join(cluster_script.port_holders(port)).replace("python3", "python")
        ctld, slurmd = cluster_script.choose_ports()
    finally:
        for s in held:
            s.close()
    assert ctld != slurmd
    assert not {ctld, slurmd} & set(cluster_script.DEFAULT_PORTS)
    assert cluster_script.port_free(ctld) and cluster_script.port_free(slurmd)
