"""The suite files whose stored oracles this package computed or checked: a record by content, so a file is
verified once, not in every job that reads it.

A suite/2 file carries Monte-Carlo oracles that scoring trusts; reading one means recomputing them
(``suite_io.load_suite``, ``oracle="verify"``), which costs as much as generating the suite (up to ~15 s for 32
SCMs of level 10). Each file whose oracles were computed here (``acbo suite generate``, the workflow's copy of a
user suite) or recomputed and found equal is recorded by the sha256 of its bytes and of the suite code
(the suite stage's code hash): a later read of the same bytes by the same code skips the recomputation, any
edit of the file (or of the oracle code) is verified afresh. The records live in the ``verified-suites/`` folder
of the compilation cache (``ACBO_JAX_CACHE``), shared by a study's jobs; where it cannot be written, every read
verifies. A record guards against a stale or hand-edited file, not against someone forging records in that
folder (README, "information boundary").
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..atomic import atomic_write_bytes
from ..paths import cache_dir
from ..provenance import code_hash
from ..stages import STAGES

FOLDER = "verified-suites"


def _record(data: bytes) -> Path:
    key = hashlib.sha256(code_hash(STAGES["suite"].entries).encode() + b"\0" + data).hexdigest()
    return cache_dir() / FOLDER / key


def is_verified(data: bytes) -> bool:
    return _record(data).is_file()


def mark_verified(data: bytes) -> None:
    """Record ``data`` (a suite file's bytes whose oracles were computed or verified); a cache that cannot be
    written records nothing."""
    record = _record(data)
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(record, b"")
    except OSError:
        pass
