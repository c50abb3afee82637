#!/usr/bin/env python3
"""Start, inspect and stop a single-node SLURM cluster on this machine (for tests and CI).

    python scripts/slurm/local_cluster.py start  DIR   # write DIR/slurm.conf, start munged/slurmctld/slurmd
    python scripts/slurm/local_cluster.py status DIR   # exit 0 when the node is up and idle or busy
    python scripts/slurm/local_cluster.py stop   DIR   # cancel jobs, stop the daemons started from DIR
    python scripts/slurm/local_cluster.py reap         # stop this script's clusters whose owner process is gone
    eval "$(python scripts/slurm/local_cluster.py env DIR)"   # SLURM_CONF and PATH for sbatch/squeue/snakemake

Everything the cluster uses lives in DIR: config, state, spool, logs, pid files, its own munged (key and
socket, named in slurm.conf's AuthInfo) and DIR/bin, one small wrapper per Slurm client command that runs
the real one with this cluster's SLURM_CONF. Jobs inherit PATH, so a client command started inside a job
without SLURM_CONF in its environment -- `srun` as launched by Snakemake's slurm-jobstep executor, which
drops inherited SLURM_* variables -- still reaches this cluster. The daemons listen on two ports the kernel
picks. Nothing is shared with other clusters on the machine (no /etc/slurm, no /run/munge or /run/slurm, not
Slurm's default ports 6817/6818), so clusters started side by side -- two test runs, a system cluster -- do
not see each other.

The configuration needs neither cgroups nor accounting: proctrack/linuxproc, task/none, no job accounting
gather, no accounting storage. select/cons_tres with CR_Core_Memory makes cores and memory consumable, so
every job's --mem is checked against the node's memory and recorded in its TRES. MinJobAge keeps finished
jobs visible to `squeue --states=all` (what Snakemake's squeue status command needs without sacct).
Daemons run as root; starting twice is harmless (a running cluster is reused), and stop is idempotent.
`start --owner PID` ties the cluster to a process (a test session): when that process is gone, `reap` (and
every `start`) stops the cluster, so a killed test run leaves no daemons behind.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from processes import (
    ClusterError,
    alive,
    free_port,
    kill,
    log,
    pids_named,
    process_conf,
    run,
    spawn_daemon,
    start_time,
    tail,
    terminate,
    wait_for,
)

NODE = "localhost"
PARTITION = "local"
CONF_HEADER = "# Single-node SLURM cluster on localhost, written by scripts/slurm/local_cluster.py."
DAEMONS = ("slurmctld", "slurmd", "munged")  # each started with this cluster's SLURM_CONF in its environment
CLIENT_COMMANDS = ("srun", "sbatch", "salloc", "squeue", "scontrol", "scancel", "sinfo", "sacct", "sstat")
MAX_SOCKET_PATH = 107  # bytes of a Unix socket path (sun_path holds 108 with the terminating NUL)
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
REQUIRED = ("munged", "mungekey", "munge", "unmunge", "slurmctld", "slurmd", "sinfo", "scontrol", "squeue", "scancel")


# ----------------------------------------------------------------------------------------------- helpers


def which_all(names) -> list[str]:
    return [n for n in names if shutil.which(n) is None]


def conf_path(d: Path) -> Path:
    return d / "slurm.conf"


def client_dir(d: Path) -> Path:
    return d / "bin"


def client_env(d: Path) -> dict[str, str]:
    """This cluster's SLURM_CONF, and its client wrappers first on PATH (for the daemons, and jobs, too)."""
    env = dict(os.environ)
    env["SLURM_CONF"] = str(conf_path(d))
    env["PATH"] = os.pathsep.join([str(client_dir(d)), env.get("PATH", "")])
    return env


def shell_exports(d: Path) -> str:
    """Shell lines that point sbatch/squeue/snakemake at this cluster (what `env` prints)."""
    return f'export SLURM_CONF={shlex.quote(str(conf_path(d)))}\nexport PATH={shlex.quote(str(client_dir(d)))}:"$PATH"'


def write_client_commands(d: Path, names=CLIENT_COMMANDS) -> None:
    """DIR/bin/NAME for each installed client command: runs it with this cluster's SLURM_CONF."""
    bindir = client_dir(d)
    bindir.mkdir(exist_ok=True)
    search = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != bindir)
    for name in names:
        real = shutil.which(name, path=search)
        if real is None:
            continue
        wrapper = bindir / name
        tmp = wrapper.with_name(f".{name}.tmp")
        tmp.write_text(
            f"#!/bin/sh\n# {name} of the cluster in {d} (scripts/slurm/local_cluster.py)\n"
            f"export SLURM_CONF={shlex.quote(str(conf_path(d)))}\n"
            f'exec {shlex.quote(real)} "$@"\n'
        )
        tmp.chmod(0o755)
        tmp.replace(wrapper)


# ----------------------------------------------------------------------------------------------- munge


def munge_socket(d: Path) -> Path:
    return d / "munge" / "munge.socket"


def munge_works(socket: Path) -> bool:
    try:
        cred = run(["munge", "-n", "-S", str(socket)], timeout=10)
        if cred.returncode != 0:
            return False
        check = subprocess.run(
            ["unmunge", "-S", str(socket)],
            check=False,
            input=cred.stdout,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return check.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def start_munge(d: Path) -> None:
    mdir, socket = d / "munge", munge_socket(d)
    pidfile = mdir / "munged.pid"
    if alive(pidfile, "munged") and munge_works(socket):
        log(f"munged of this cluster is up at {socket}")
        return
    terminate(pidfile, "munged")
    if len(os.fsencode(socket)) > MAX_SOCKET_PATH:
        raise ClusterError(f"{socket}: longer than a Unix socket path may be ({MAX_SOCKET_PATH} bytes); shorten DIR")
    mdir.mkdir(mode=0o700, exist_ok=True)
    os.chmod(mdir, 0o700)  # munged refuses key/log directories writable by others
    key = mdir / "munge.key"
    if not key.exists():
        run(["mungekey", "--create", "--keyfile", str(key)], check=True)
    os.chmod(key, 0o600)
    log(f"starting munged (socket {socket}, key {key})")
    spawn_daemon(
        [
            "munged",
            "--force",  # take over a stale socket left by a killed munged
            f"--socket={socket}",
            f"--key-file={key}",
            f"--pid-file={pidfile}",
            f"--log-file={mdir / 'munged.log'}",
            f"--seed-file={mdir / 'munged.seed'}",
        ],
        env=client_env(d),
        logfile=mdir / "munged.out",
    )
    if not wait_for(lambda: munge_works(socket), 15):
        raise ClusterError(f"munged did not come up:\n{tail(mdir / 'munged.log')}")


# ----------------------------------------------------------------------------------------------- slurm


def node_hardware() -> str:
    """`slurmd -C`'s view of this machine (CPUs, sockets, cores, threads, RealMemory) without NodeName."""
    out = run(["slurmd", "-C"], check=True).stdout
    first = out.splitlines()[0].split()
    fields = [f for f in first if not f.startswith("NodeName=") and f.split("=")[0] != "UpTime"]
    return " ".join(fields)


def hardware_value(hw: str, key: str) -> int:
    for field in hw.split():
        name, _, value = field.partition("=")
        if name == key:
            return int(value)
    raise ClusterError(f"`slurmd -C` reported no {key}: {hw}")


def write_conf(d: Path, min_job_age: int, ports: tuple[int, int]) -> Path:
    hw = node_hardware()
    cpus, mem = hardware_value(hw, "CPUs"), hardware_value(hw, "RealMemory")
    for sub in ("state", "spool", "log"):
        (d / sub).mkdir(exist_ok=True)
    text = f"""\
{CONF_HEADER}
ClusterName=acbo-local
SlurmctldHost={NODE}
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
SlurmUser=root
SlurmdUser=root
# this cluster's own munged
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket(d)}
StateSaveLocation={d / "state"}
SlurmdSpoolDir={d / "spool"}
SlurmctldPidFile={d / "slurmctld.pid"}
SlurmdPidFile={d / "slurmd.pid"}
SlurmctldLogFile={d / "log" / "slurmctld.log"}
SlurmdLogFile={d / "log" / "slurmd.log"}
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups, no accounting
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
# cores and memory are consumable; a job without --mem gets its CPUs' share of the node's memory
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU={max(1, mem // cpus)}
# finished jobs stay visible to squeue --states=all for this long (Snakemake's squeue status checks)
MinJobAge={min_job_age}
ReturnToService=2
NodeName={NODE} NodeAddr=127.0.0.1 {hw} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""
    path = conf_path(d)
    path.write_text(text)
    return path


def ctld_responds(d: Path) -> bool:
    try:
        return run(["scontrol", "ping"], env=client_env(d), timeout=10).stdout.count("UP") > 0
    except subprocess.TimeoutExpired:
        return False


def node_state(d: Path) -> str:
    try:
        proc = run(["sinfo", "-h", "-N", "-n", NODE, "-o", "%T"], env=client_env(d), timeout=10)
    except subprocess.TimeoutExpired:
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def node_usable(d: Path) -> bool:
    return node_state(d) in {"idle", "mixed", "allocated", "completing"}


def running_daemons(d: Path) -> dict[str, int | None]:
    return {
        "munged": alive(d / "munge" / "munged.pid", "munged"),
        "slurmctld": alive(d / "slurmctld.pid", "slurmctld"),
        "slurmd": alive(d / "slurmd.pid", "slurmd"),
    }


def write_owner(d: Path, owner: int | None) -> None:
    """DIR/owner: "PID START_TIME" of the process the cluster serves, or "-" for a cluster kept until stopped."""
    text = "-" if owner is None else f"{owner} {start_time(owner)}"
    (d / "owner").write_text(text + "\n")


def orphaned(d: Path) -> bool:
    """A cluster nobody will stop: its directory is gone, it has no owner file (an earlier version of this
    script started it), or the process it served has exited."""
    try:
        owner = (d / "owner").read_text().split()
    except OSError:
        return True
    if owner == ["-"]:
        return False
    return len(owner) != 2 or start_time(int(owner[0])) != owner[1]


def ours(conf: Path) -> bool:
    try:
        return conf.read_text().startswith(CONF_HEADER)
    except OSError:
        return not conf.parent.exists()  # a cluster whose directory was deleted under it


def reap() -> None:
    """Stop every cluster this script started whose owner is gone, found through its daemons' SLURM_CONF."""
    for name in DAEMONS:
        for pid in pids_named(name):
            conf = process_conf(pid)
            if conf is None or not ours(conf) or not orphaned(conf.parent):
                continue
            if conf.exists():
                log(f"reaping the cluster from {conf.parent} (its owner is gone)")
                stop(conf.parent)
            else:
                log(f"reaping {name} (pid {pid}) of the deleted {conf.parent}")
                kill(pid, name)


def choose_ports() -> tuple[int, int]:
    """Two distinct ports nothing listens on (the kernel's choice), for slurmctld and slurmd."""
    ctld = free_port()
    return ctld, next(p for p in iter(free_port, None) if p != ctld)


def start(d: Path, min_job_age: int, timeout: float, owner: int | None = None) -> None:
    missing = which_all(REQUIRED)
    if missing:
        raise ClusterError(f"not installed: {', '.join(missing)} (Debian: apt-get install slurm-wlm munge)")
    if os.geteuid() != 0:
        raise ClusterError("the local cluster runs its daemons as root; run this as root")
    d.mkdir(parents=True, exist_ok=True)
    d = d.resolve()
    daemons = running_daemons(d)
    if daemons["slurmctld"] and daemons["slurmd"] and ctld_responds(d) and node_usable(d):
        log(f"cluster from {d} already running (node {NODE}: {node_state(d)})")
        write_owner(d, owner)
        return
    # a half-started or crashed cluster from this directory: stop what is left, then start afresh
    for name, pidfile in (("slurmd", d / "slurmd.pid"), ("slurmctld", d / "slurmctld.pid")):
        terminate(pidfile, name)
    reap()  # daemons of clusters whose test run was killed
    ports = choose_ports()

    write_owner(d, owner)
    conf = write_conf(d, min_job_age, ports)
    write_client_commands(d)
    start_munge(d)
    log(f"starting slurmctld ({conf})")
    spawn_daemon(["slurmctld"], env=client_env(d), logfile=d / "log" / "slurmctld.out")
    if not wait_for(lambda: ctld_responds(d), timeout):
        raise ClusterError(f"slurmctld did not answer within {timeout:.0f}s:\n{tail(d / 'log' / 'slurmctld.log')}")

    log(f"starting slurmd (port {ports[1]})")
    spawn_daemon(["slurmd", "-N", NODE], env=client_env(d), logfile=d / "log" / "slurmd.out")

    def ready() -> bool:
        state = node_state(d)
        if state.startswith(("down", "drain")):
            run(["scontrol", "update", f"NodeName={NODE}", "State=RESUME"], env=client_env(d))
        return state == "idle"

    if not wait_for(ready, timeout, interval=1.0):
        raise ClusterError(
            f"node {NODE} not idle within {timeout:.0f}s (state: {node_state(d) or 'unknown'}):\n"
            f"{tail(d / 'log' / 'slurmd.log')}\n{tail(d / 'log' / 'slurmd.out')}"
        )
    log(f"cluster up: partition {PARTITION}, node {NODE} idle; SLURM_CONF={conf}")


def cancel_jobs(d: Path, timeout: float = 30) -> None:
    env = client_env(d)
    active = "PENDING,RUNNING,SUSPENDED,COMPLETING,CONFIGURING,REQUEUED,RESIZING"

    def job_ids() -> list[str]:
        proc = run(["squeue", "-h", "-t", active, "-o", "%i"], env=env, timeout=10)
        return proc.stdout.split() if proc.returncode == 0 else []

    ids = job_ids()
    if ids:
        log(f"cancelling {len(ids)} job(s): {' '.join(ids)}")
        run(["scancel", *ids], env=env)
        if not wait_for(lambda: not job_ids(), timeout):
            log(f"jobs still active after {timeout:.0f}s: {' '.join(job_ids())}")


def stop(d: Path) -> None:
    d = d.resolve()
    daemons = running_daemons(d)
    if daemons["slurmctld"] and daemons["slurmd"] and conf_path(d).exists():
        try:
            cancel_jobs(d)
        except subprocess.TimeoutExpired:
            log("squeue/scancel timed out; stopping the daemons anyway")
    terminate(d / "slurmd.pid", "slurmd")
    terminate(d / "slurmctld.pid", "slurmctld")
    terminate(d / "munge" / "munged.pid", "munged")
    log(f"cluster from {d} stopped")


def status(d: Path) -> int:
    d = d.resolve()
    for name, pid in running_daemons(d).items():
        print(f"{name}: " + (f"running (pid {pid})" if pid else "not running (from this directory)"))
    if not conf_path(d).exists():
        print(f"no {conf_path(d)}")
        return 1
    state = node_state(d)
    print(f"node {NODE}: {state or 'unreachable'}")
    return 0 if node_usable(d) else 1


def add_sbin_to_path() -> None:
    """The daemons live in sbin directories, which a non-login shell's PATH may lack."""
    path = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join(path + [d for d in SBIN_DIRS if d not in path])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "status", "env", "reap"])
    parser.add_argument("dir", type=Path, nargs="?", help="directory for slurm.conf, state, spool, logs and pid files")
    parser.add_argument("--owner", type=int, help="start: stop the cluster on `reap` once this process has exited")
    parser.add_argument("--min-job-age", type=int, default=900, help="seconds finished jobs stay in squeue")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for each daemon")
    args = parser.parse_args(argv)
    if args.action != "reap" and args.dir is None:
        parser.error(f"{args.action} needs DIR")
    add_sbin_to_path()
    try:
        if args.action == "reap":
            reap()
        elif args.action == "start":
            start(args.dir, args.min_job_age, args.timeout, args.owner)
            print(shell_exports(args.dir.resolve()))
        elif args.action == "stop":
            stop(args.dir)
        elif args.action == "status":
            return status(args.dir)
        else:
            print(shell_exports(args.dir.resolve()))
    except ClusterError as err:
        log(f"error: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
