"""Processes, pid files and ports for scripts/slurm/local_cluster.py (standard library only)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


class ClusterError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[local_cluster] {msg}", file=sys.stderr, flush=True)


def run(cmd, *, env=None, timeout=20, check=False) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd, check=False, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check and proc.returncode != 0:
        raise ClusterError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def spawn_daemon(cmd, *, env, logfile: Path) -> None:
    """Start a self-daemonizing program detached from our session and stdio; fail if it exits non-zero."""
    with open(logfile, "ab") as out:
        proc = subprocess.run(
            cmd,
            check=False,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            timeout=60,
        )
    if proc.returncode != 0:
        raise ClusterError(f"{' '.join(map(str, cmd))} exited with {proc.returncode}; see {logfile}")


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def process_name(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def alive(pidfile: Path, name: str) -> int | None:
    """The pid in ``pidfile`` when that process exists and is ``name`` (guards against reused pids)."""
    pid = read_pid(pidfile)
    if pid is not None and process_name(pid) == name:
        return pid
    return None


def wait_for(predicate, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def terminate(pidfile: Path, name: str, timeout: float = 20) -> None:
    pid = alive(pidfile, name)
    if pid is not None:
        kill(pid, name, timeout)
    pidfile.unlink(missing_ok=True)


def kill(pid: int, name: str, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds, until ``pid`` is no longer the process ``name``."""
    log(f"stopping {name} (pid {pid})")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:  # it exited meanwhile
        return
    if not wait_for(lambda: process_name(pid) != name, timeout):
        log(f"{name} (pid {pid}) ignored SIGTERM for {timeout:.0f}s, sending SIGKILL")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: process_name(pid) != name, 5)


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/PID/stat): with the pid, names one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def pids_named(name: str) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and process_name(int(p.name)) == name]


def process_conf(pid: int) -> Path | None:
    """The SLURM_CONF a daemon was started with (this script starts each daemon with it in its environment)."""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    conf = next((e[len(b"SLURM_CONF=") :] for e in env if e.startswith(b"SLURM_CONF=")), None)
    return Path(conf.decode()) if conf else None


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} not readable)"
