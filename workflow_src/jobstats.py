"""What a job cost, printed as the last line of its log (``job stats: {JSON}``): wall time, start-up time and
peak memory.

``STARTED`` is stamped when the CLI is imported (the interpreter's own start, ~50 ms, is not counted);
a stage calls ``ready()`` when its imports and input parsing are done and the real work begins. ``make bench``
reads these lines from a study's logs (job-seconds per rule, start-up, peak memory per job).
"""

from __future__ import annotations

import json
import resource
import time

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
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
    stats = {"command": command, "wall_s": round(now - STARTED, 2), "startup_s": round(startup, 2),
             "peak_mib": round(peak_mib)}
    return f"{LINE_PREFIX} {json.dumps(stats)}"


def read_summary_line(log: str) -> dict | None:
    """The stats of a job's log (its last ``job stats:`` line), or None when it has none (a failed job)."""
    lines = [line for line in log.splitlines() if line.startswith(LINE_PREFIX)]
    return json.loads(lines[-1].removeprefix(LINE_PREFIX)) if lines else None
