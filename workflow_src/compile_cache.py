"""JAX set-up for every job: thread-count-independent numerics and one persistent compilation cache.

The cache directory (``ACBO_JAX_CACHE``, default ``.jax_cache``) is shared by every job of a study, local or
SLURM. JAX's own file cache (``jax._src.lru_cache.LRUCache`` in jax 0.10) writes an entry in place
(``Path.write_bytes``), so a job reading while another writes sees a truncated entry (JAX warns and
recompiles), and a job killed mid-write leaves a truncated entry that is never replaced (every later job
warns and recompiles). ``AtomicFileCache`` writes each entry to a temporary file in the same directory and
renames it into place, so readers see either no entry or a complete one, on a local disk and on a shared
POSIX filesystem alike; two jobs that compile the same program both rename an equivalent entry, and the
last one wins. ``CompileWatch`` reports whether a compilation was served from the cache.

Every entry is sealed (``seal``): a header names its key and the sha256 of its content, both checked when it
is read (``unseal``). An entry that fails (a flipped byte, a truncated or swapped file, an entry of plain JAX
or of an older version of this workflow) is reported in one line on stderr, compiled again and replaced; so is
one whose content checks but that JAX could not load. The program store (``evaluate/program_store.py``) seals
its entries the same way. Entries get the usual permissions (``0666`` less the umask, not ``mkstemp``'s
``0600``), so a cache folder shared by a group serves every member; nothing in a key depends on where the
folder is (JAX's GPU autotuning cache, whose path it would put in every key, is off), so a copied, moved or
differently mounted cache still hits. A sealed entry guards against damage, not against a forger: whoever
may write to the folder chooses native code that every job runs.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import sys
from pathlib import Path

from .atomic import atomic_write_bytes, output_problem
from .paths import cache_dir

CACHE_SUFFIX = "-cache"  # JAX's file naming: a plain JAX entry found in the folder fails its check and is replaced
SEAL = b"acbo sealed entry 1\n"  # then the key, a line, the content's sha256 (hex), a line, the content
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

    cache = cache_dir()
    problem = output_problem(cache, "into") or _creation_problem(cache)
    if problem:  # e.g. run from a read-only folder: every program is compiled in the job, as without a cache
        print(f"acbo: warning: the compilation cache {cache} {problem}: running without it (set "
              "ACBO_JAX_CACHE to a writable folder to keep compiled programs)", file=sys.stderr)
    else:
        jax.config.update("jax_compilation_cache_dir", str(cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
        # GPU autotuning results kept in a folder of the cache, whose absolute path JAX puts in every key (on the
        # CPU too): a moved or differently mounted cache would never hit. Compiled executables keep their tuning.
        jax.config.update("jax_persistent_cache_enable_xla_caches", "none")
        _install_atomic_cache(cache)
    if not getattr(configure_jax, "_listening", False):
        jax.monitoring.register_event_listener(lambda event, **_: _events.append(event))
        configure_jax._listening = True


def _creation_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be created, or None once it exists: tried, since permission bits do not bind root
    (``os.access`` says yes to root where ``/proc`` or a read-only mount still refuses)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot be created ({exc.strerror or exc})"
    return None


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
    """A persistent compilation cache directory whose entries appear atomically (temp file + rename) and are
    checked against their key and content hash when read (``unseal``)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._served: set[str] = set()  # keys whose entry this process was given

    def _entry(self, key: str) -> Path:
        if not key or "/" in key:
            raise ValueError(f"bad compilation cache key {key!r}")
        return self.path / f"{key}{CACHE_SUFFIX}"

    def get(self, key: str) -> bytes | None:
        entry = self._entry(key)
        try:
            content = unseal(key, entry.read_bytes())
        except FileNotFoundError:
            return None
        except DamagedEntry as exc:
            say_damaged("compilation cache", entry, exc, "compiling it again")
            return None
        self._served.add(key)
        return content

    def put(self, key: str, value: bytes) -> None:
        """Store an entry, unless an intact one is there already (a concurrent job's equivalent program). JAX
        puts a key it was served only when it could not load that entry: then it is replaced."""
        entry = self._entry(key)
        if key not in self._served and _intact(entry, key):
            return
        self._served.discard(key)
        atomic_write_bytes(entry, seal(key, value))


class DamagedEntry(Exception):
    """A cache entry that does not hold what its key names."""


def seal(key: str, content: bytes) -> bytes:
    """An entry for ``key``: a header naming the key and the sha256 of ``content``, then ``content``."""
    if "\n" in key:
        raise ValueError(f"bad cache key {key!r}")
    return b"".join((SEAL, key.encode(), b"\n", hashlib.sha256(content).hexdigest().encode(), b"\n", content))


def unseal(key: str, entry: bytes) -> bytes:
    """The content of an entry sealed for ``key``; ``DamagedEntry`` saying what is wrong otherwise."""
    if not entry.startswith(SEAL):
        raise DamagedEntry("no checksum header (damaged, or written by plain JAX or an older version)")
    parts = entry[len(SEAL):].split(b"\n", 2)
    if len(parts) < 3:
        raise DamagedEntry("truncated")
    stored_key, digest, content = parts
    if stored_key != key.encode():
        raise DamagedEntry(f"holds the entry of another key ({stored_key.decode(errors='replace')[:48]})")
    if hashlib.sha256(content).hexdigest().encode() != digest:
        raise DamagedEntry("content does not match its checksum")
    return content


def say_damaged(cache: str, entry: Path, reason, action: str) -> None:
    """The one line a job writes for a damaged entry (stderr, so into the job's log)."""
    print(f"{cache}: damaged entry {entry.name}: {reason}; {action} and replacing it", file=sys.stderr, flush=True)


def _intact(entry: Path, key: str) -> bool:
    try:
        unseal(key, entry.read_bytes())
    except (OSError, DamagedEntry):
        return False
    return True


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
