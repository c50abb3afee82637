"""What a job cost, printed as the last line of its log (``job stats: {JSON}``): wall time, start-up time and
peak memory.

``STARTED`` is stamped when the CLI is imported (the interpreter's own start, ~50 ms, is not counted);
a stage calls ``ready()`` when its imports and input parsing are done and the real work begins. ``make bench``
reads these lines from a study's logs (job-seconds per rule, start-up, peak memory per job).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()
_ready: list[float] = []

LINE_PREFIX = "job stats:"


def ready() -> None:
    """Mark the end of the job's start-up (imports, config and input parsing); only the first call counts."""
    if not _ready:
        _ready.append(time.perf_counter())


def summary_line(command: str) -> str:
    now = time.perf_counter()
    startup = (_ready[0] if _ready else now) - STARTED
    stats = {"command": command, "wall_s": round(now - STARTED, 2), "startup_s": round(startup, 2),
             "peak_mib": round(peak_mib())}
    return f"{LINE_PREFIX} {json.dumps(stats)}"


def peak_mib() -> float:
    """This process's peak resident memory since it started its program, in MiB.

    Linux's ``ru_maxrss`` also counts the memory of the process it was forked from: a process keeps the largest
    resident set of any program it ran, and a forked child was its parent until it ran ``exec`` (measured: a job
    started from a 1 GB Python process reported 967 MiB, its own peak being 14 MiB). ``VmHWM`` in
    ``/proc/self/status`` is the peak of the running program alone; ``ru_maxrss`` is the fallback elsewhere.
    """
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        status = ""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != "darwin" else 1024**2)


def read_summary_line(log: str) -> dict | None:
    """The stats of a job's log (its last ``job stats:`` line), or None when it has none (a failed job)."""
    lines = [line for line in log.splitlines() if line.startswith(LINE_PREFIX)]
    return json.loads(lines[-1].removeprefix(LINE_PREFIX)) if lines else None
