#!/usr/bin/env python3
"""Start, inspect and stop a single-node SLURM cluster on this machine (for tests and CI).

    python scripts/slurm/local_cluster.py start  DIR   # write DIR/slurm.conf, start munged/slurmctld/slurmd
    python scripts/slurm/local_cluster.py status DIR   # exit 0 when the node is up and idle or busy
    python scripts/slurm/local_cluster.py stop   DIR   # cancel jobs, stop the daemons started from DIR
    python scripts/slurm/local_cluster.py reap         # stop this script's clusters whose owner process is gone
    eval "$(python scripts/slurm/local_cluster.py env DIR)"   # export SLURM_CONF for sbatch/squeue/snakemake

Everything the cluster writes (config, state, spool, logs, pid files, munge key) lives in DIR, except two
well-known paths that Slurm and MUNGE clients look up on their own: the MUNGE socket
/run/munge/munge.socket.2 and slurmd's configless cache link /run/slurm/conf. slurmd runs in configless mode
(it fetches slurm.conf from slurmctld) because a command started inside a job without SLURM_CONF in its
environment -- `srun` as launched by Snakemake's slurm-jobstep executor, which drops inherited SLURM_*
variables -- finds the configuration only through /run/slurm/conf (or /etc/slurm/slurm.conf).

The configuration needs neither cgroups nor accounting: proctrack/linuxproc, task/none, no job accounting
gather, no accounting storage. select/cons_tres with CR_Core_Memory makes cores and memory consumable, so
every job's --mem is checked against the node's memory and recorded in its TRES. MinJobAge keeps finished
jobs visible to `squeue --states=all` (what Snakemake's squeue status command needs without sacct).
Daemons run as root; starting twice is harmless (a running cluster is reused), and stop is idempotent.
`start --owner PID` ties the cluster to a process (a test session): when that process is gone, `reap` stops
the cluster, so a killed test run leaves no daemons holding the ports for the next one. When Slurm's default
ports stay busy anyway (a cluster this script did not start), the cluster listens on two free ports instead.
"""

from __future__ import annotations

import argparse
import os
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
    port_free,
    port_holders,
    process_cmdline,
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
DEFAULT_PORTS = (6817, 6818)  # slurmctld, slurmd: Slurm's defaults, used when free
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")
CONF_CACHE_LINK = Path("/run/slurm/conf")
SYSTEM_SLURM_CONF = Path("/etc/slurm/slurm.conf")
CONF_HEADER = "# Single-node SLURM cluster on localhost, written by scripts/slurm/local_cluster.py."
SLURMD_COMMAND = ["slurmd", "-N", NODE, "--conf-server"]  # + "localhost:<slurmctld port>"
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
REQUIRED = ("munged", "mungekey", "munge", "unmunge", "slurmctld", "slurmd", "sinfo", "scontrol", "squeue", "scancel")


# ----------------------------------------------------------------------------------------------- helpers


def which_all(names) -> list[str]:
    return [n for n in names if shutil.which(n) is None]


def conf_path(d: Path) -> Path:
    return d / "slurm.conf"


def client_env(d: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["SLURM_CONF"] = str(conf_path(d))
    return env


# ----------------------------------------------------------------------------------------------- munge


def munge_works() -> bool:
    try:
        cred = run(["munge", "-n", "-S", str(MUNGE_SOCKET)], timeout=10)
        if cred.returncode != 0:
            return False
        check = subprocess.run(
            ["unmunge", "-S", str(MUNGE_SOCKET)],
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
    mdir = d / "munge"
    pidfile = mdir / "munged.pid"
    if munge_works():
        owner = "this cluster" if alive(pidfile, "munged") else "an existing munged (left running on stop)"
        log(f"munge is up at {MUNGE_SOCKET}, using {owner}")
        return
    mdir.mkdir(mode=0o700, exist_ok=True)
    os.chmod(mdir, 0o700)  # munged refuses key/log directories writable by others
    key = mdir / "munge.key"
    if not key.exists():
        run(["mungekey", "--create", "--keyfile", str(key)], check=True)
    os.chmod(key, 0o600)
    MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(MUNGE_SOCKET.parent, 0o755)
    log(f"starting munged (socket {MUNGE_SOCKET}, key {key})")
    spawn_daemon(
        [
            "munged",
            "--force",  # take over a stale socket left by a killed munged
            f"--socket={MUNGE_SOCKET}",
            f"--key-file={key}",
            f"--pid-file={pidfile}",
            f"--log-file={mdir / 'munged.log'}",
            f"--seed-file={mdir / 'munged.seed'}",
        ],
        env=dict(os.environ),
        logfile=mdir / "munged.out",
    )
    if not wait_for(munge_works, 15):
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
AuthType=auth/munge
CredType=cred/munge
# slurmd fetches this file from slurmctld (slurmd --conf-server) and caches it for jobs' client commands
SlurmctldParameters=enable_configless
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
    """Stop every cluster this script started whose owner is gone (found through slurmctld's SLURM_CONF)."""
    kept = False
    for pid in pids_named("slurmctld"):
        conf = process_conf(pid)
        if conf is None or not ours(conf):
            continue
        if not orphaned(conf.parent):
            kept = True
        elif conf.exists():
            log(f"reaping the cluster from {conf.parent} (its owner is gone)")
            stop(conf.parent)
        else:
            log(f"reaping slurmctld (pid {pid}) of the deleted {conf.parent}")
            kill(pid, "slurmctld")
    if kept:
        return
    for pid in pids_named("slurmd"):  # a slurmd whose directory was deleted: no live cluster of ours serves it
        if process_cmdline(pid)[: len(SLURMD_COMMAND)] == SLURMD_COMMAND:
            log(f"reaping slurmd (pid {pid}) left without its slurmctld")
            kill(pid, "slurmd")


def choose_ports() -> tuple[int, int]:
    """Slurm's default ports when free (after reaping orphaned clusters of this script); otherwise two
    ports nothing listens on, so a cluster this script cannot stop (another user's, a system one) is no
    obstacle."""
    if not all(port_free(p) for p in DEFAULT_PORTS):
        reap()  # a cluster left behind by a killed run holds the ports
    busy = [p for p in DEFAULT_PORTS if not port_free(p)]
    if not busy:
        return DEFAULT_PORTS
    held = "; ".join(f"{p}: {', '.join(port_holders(p)) or 'unknown process'}" for p in busy)
    ctld = free_port()
    slurmd = next(p for p in iter(free_port, None) if p != ctld)
    log(f"default port(s) in use ({held}); using slurmctld port {ctld}, slurmd port {slurmd}")
    return ctld, slurmd


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
    if SYSTEM_SLURM_CONF.exists():
        raise ClusterError(
            f"{SYSTEM_SLURM_CONF} exists: client commands inside jobs would read it instead of this cluster's "
            "configuration; move it away to use the local cluster"
        )
    ports = choose_ports()

    start_munge(d)
    conf = write_conf(d, min_job_age, ports)
    write_owner(d, owner)
    log(f"starting slurmctld ({conf})")
    spawn_daemon(["slurmctld"], env=client_env(d), logfile=d / "log" / "slurmctld.out")
    if not wait_for(lambda: ctld_responds(d), timeout):
        raise ClusterError(f"slurmctld did not answer within {timeout:.0f}s:\n{tail(d / 'log' / 'slurmctld.log')}")

    log("starting slurmd (configless, config from slurmctld)")
    env = dict(os.environ)
    env.pop("SLURM_CONF", None)  # configless: slurmd must fetch (and cache) the config itself
    spawn_daemon([*SLURMD_COMMAND, f"{NODE}:{ports[0]}"], env=env, logfile=d / "log" / "slurmd.out")

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
    # slurmd's configless cache link points into this directory: drop it so no client reads a stale config
    if CONF_CACHE_LINK.is_symlink() and str(os.readlink(CONF_CACHE_LINK)).startswith(str(d)):
        CONF_CACHE_LINK.unlink()
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
            print(f"export SLURM_CONF={conf_path(args.dir.resolve())}")
        elif args.action == "stop":
            stop(args.dir)
        elif args.action == "status":
            return status(args.dir)
        else:
            print(f"export SLURM_CONF={conf_path(args.dir.resolve())}")
    except ClusterError as err:
        log(f"error: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
