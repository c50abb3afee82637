"""JAX set-up for every job: thread-count-independent numerics and one persistent compilation cache.

The cache directory (``ACBO_JAX_CACHE``, default ``.jax_cache``) is shared by every job of a study, local or
SLURM. JAX's own file cache (``jax._src.lru_cache.LRUCache`` in jax 0.10) writes an entry in place
(``Path.write_bytes``), so a job reading while another writes sees a truncated entry (JAX warns and
recompiles), and a job killed mid-write leaves a truncated entry that is never replaced (every later job
warns and recompiles). ``AtomicFileCache`` writes each entry to a temporary file in the same directory and
renames it into place, so readers see either no entry or a complete one, on a local disk and on a shared
POSIX filesystem alike; two jobs that compile the same program both rename an equivalent entry, and the
last one wins. ``CompileWatch`` reports whether a compilation was served from the cache.
"""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
from pathlib import Path

from .atomic import output_problem

CACHE_SUFFIX = "-cache"  # JAX's file naming, so entries written by plain JAX stay readable
_events: list[str] = []
XLA_DEFAULTS = {"xla_cpu_multi_thread_eigen": "false", "xla_backend_optimization_level": "2"}


def configure_jax(threads: int | None) -> None:
    """Make XLA's CPU numerics independent of the machine's core count and enable the shared compilation cache.

    XLA splits large matrix products (the gradient of a Dense layer over a whole batch, for one) across the
    thread pool of its CPU client, whose size is the number of CPUs the process may use when the client is
    created; the split changes the last bits of the product, so checkpoints and tables depended on the
    machine, ``--cores`` or a SLURM job's ``--cpus-per-task`` (measured: training on one CPU and on two gave
    other parameters after the first update). ``--xla_cpu_multi_thread_eigen=false`` is kept, but in jax 0.10
    it no longer prevents that split. So the client is created while the process may use a single CPU
    (``_one_thread_client``): its pool has one thread, and the job's threads may then run on every CPU it
    was given. Parallelism comes from running jobs side by side; ``threads`` is the job's reservation and
    changes no number.

    LLVM runs at optimization level 2 instead of XLA's default 3: measured on the training program, 10.1 s
    of compilation become 6.3 s and an update runs as fast; the evaluation programs of the 64-variable bucket
    compile in 3.8 instead of 6.6 s and run 2% slower. A flag already in ``XLA_FLAGS`` is kept.

    A cache folder that cannot be created or written (a job run from a read-only folder) is said in one warning
    line, and the job runs without the persistent cache and the program store.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    for flag, value in XLA_DEFAULTS.items():
        if flag not in flags:
            flags = f"{flags} --{flag}={value}".strip()
    os.environ["XLA_FLAGS"] = flags
    import jax

    _one_thread_client(jax)

    cache_dir = Path(os.environ.get("ACBO_JAX_CACHE", ".jax_cache")).resolve()
    problem = output_problem(cache_dir, "into")
    if problem:  # e.g. run from a read-only folder: every program is compiled in the job, as without a cache
        print(f"acbo: warning: the compilation cache {cache_dir} {problem}: running without it (set "
              "ACBO_JAX_CACHE to a writable folder to keep compiled programs)", file=sys.stderr)
    else:
        jax.config.update("jax_compilation_cache_dir", str(cache_dir))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
        _install_atomic_cache(cache_dir)
    if not getattr(configure_jax, "_listening", False):
        jax.monitoring.register_event_listener(lambda event, **_: _events.append(event))
        configure_jax._listening = True


def _one_thread_client(jax) -> None:
    """Create JAX's CPU client (and its thread pool) while the process may run on one CPU only, then give
    every thread of the process back the CPUs it had. No effect where the client already exists."""
    if not hasattr(os, "sched_setaffinity"):
        return
    allowed = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(allowed)})
    except OSError:  # a sandbox that forbids it: the client gets the default pool
        return
    try:
        jax.devices("cpu")
    finally:
        for task in os.listdir("/proc/self/task"):
            try:
                os.sched_setaffinity(int(task), allowed)
            except OSError:  # a thread that has ended meanwhile
                pass


def release_freed_memory() -> None:
    """Return the heap that XLA's compiler freed to the operating system.

    glibc keeps freed heap pages mapped, so a job's resident memory stays at its compile peak (measured: 830
    MiB after compiling the training programs, 580 MiB after this), and memory the program then allocates
    comes on top of that peak. No-op where the C library has no ``malloc_trim``.
    """
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _install_atomic_cache(cache_dir: Path) -> None:
    from jax._src import compilation_cache as cc

    with cc._cache_initialized_mutex:
        current = cc._cache
        if isinstance(current, AtomicFileCache) and current.path == cache_dir:
            return
        cc._cache = AtomicFileCache(cache_dir)
        cc._cache_initialized = True


class AtomicFileCache:
    """A persistent compilation cache directory whose entries appear atomically (temp file + rename)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def _entry(self, key: str) -> Path:
        if not key or "/" in key:
            raise ValueError(f"bad compilation cache key {key!r}")
        return self.path / f"{key}{CACHE_SUFFIX}"

    def get(self, key: str) -> bytes | None:
        try:
            return self._entry(key).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, key: str, value: bytes) -> None:
        entry = self._entry(key)
        if entry.exists():
            return
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{key}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(value)
            os.replace(tmp, entry)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class CompileWatch:
    """Counts persistent-cache hits and misses of the compilations made inside a ``with`` block."""

    def __enter__(self) -> CompileWatch:
        self._start = len(_events)
        return self

    def __exit__(self, *exc) -> None:
        seen = _events[self._start:]
        self.hits = seen.count("/jax/compilation_cache/cache_hits")
        self.requests = seen.count("/jax/compilation_cache/compile_requests_use_cache")

    @property
    def source(self) -> str:
        if self.requests == 0:
            return "in-process (already compiled)"
        return "persistent cache" if self.hits == self.requests else "compiled (cache miss, now stored)"
