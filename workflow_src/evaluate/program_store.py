"""Evaluation programs kept in JAX's export format, so a warm job does not trace them again.

The persistent compilation cache is keyed on the lowered program, so even a job whose executable is cached
first traced and lowered it: 1.2 of a warm 64-variable evaluation job's 7 s. The first job that needs a
program exports it (``jax.export``: the lowered StableHLO with its calling convention) into the store, a
folder ``exported/`` in the compilation cache directory; later jobs deserialize it in milliseconds, lower
the call (0.15 s) and then load the executable from the compilation cache as before.

A stored program is found by a key that names everything its tracing depends on, so an edit never runs a
stale program: the source of every module of this package, the versions of jax, jaxlib and flax, the
backend, the JAX settings that change what is traced, the protocol's sizes, each method's name and
``program_id`` (what its ``act`` closes over beyond this package's code: the policy's architecture and mode,
a baseline's name) and the structure, shapes and dtypes of the arguments. A method without a ``program_id``
(a plug-in, whose file may import code of its own) is traced in every job and its program is never stored.

A job that traces a program for the store runs it through its export too, so a job that traced and a job
that loaded run the same program and write the same bits. Entries are written to a temporary file and
renamed into place (safe for concurrent jobs, local or on a shared filesystem) and sealed like the compilation
cache's (``compile_cache.seal``): the entry names its key and its content's sha256, both checked on load, so a
damaged entry, or one copied under another program's name, is never run: the job says so in one line, traces
the program again and replaces the entry. A store the job may not write to is used read-only (one line).
"""

from __future__ import annotations

import hashlib
import json
import sys
from importlib.metadata import version
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import export

from ..atomic import atomic_write_bytes
from ..compile_cache import DamagedEntry, say_damaged, seal, unseal
from ..core.scm import SCMArrays
from ..provenance import package_source_hash
from .rollout import StepRecord

STORE_FOLDER = "exported"
ENTRY_SUFFIX = ".jaxexport"
VERSIONED = ("jax", "jaxlib", "flax")
# JAX settings that change the traced program (not only its compilation, which the compilation cache keys)
TRACING_SETTINGS = ("jax_enable_x64", "jax_default_matmul_precision", "jax_threefry_partitionable",
                    "jax_numpy_rank_promotion", "jax_numpy_dtype_promotion", "jax_default_prng_impl")

export.register_namedtuple_serialization(SCMArrays, serialized_name="workflow_src.core.scm.SCMArrays")
export.register_namedtuple_serialization(StepRecord, serialized_name="workflow_src.evaluate.rollout.StepRecord")


def program_key(program_ids: tuple[str, ...], protocol: dict, args) -> str:
    """The store key of the program that runs methods ``program_ids`` under ``protocol`` on ``args``."""
    leaves, tree = jax.tree.flatten(args)
    record = {
        "code": package_source_hash(),
        "versions": {name: version(name) for name in VERSIONED},
        "backend": jax.default_backend(),
        "settings": {name: str(getattr(jax.config, name)) for name in TRACING_SETTINGS},
        "methods": list(program_ids),
        "protocol": {k: protocol[k] for k in ("n_obs", "interventions", "episodes")},
        "arguments": [str(tree), [[list(np.shape(x)), str(x.dtype if hasattr(x, "dtype") else jnp.result_type(x))]
                                  for x in leaves]],
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:32]


def store_folder() -> Path | None:
    """The store beside the persistent compilation cache; None when no cache directory is configured."""
    cache_dir = jax.config.jax_compilation_cache_dir
    return Path(cache_dir) / STORE_FOLDER if cache_dir else None


def lower_program(run, args, methods, protocol: dict):
    """``(lowered, origin)``: the jitted ``run`` of ``methods`` lowered at ``args``, through its stored export
    when there is one (origin ``"stored export"``), else traced (``"traced"``) and, when every method has a
    ``program_id``, exported and stored for the next job."""
    if any(m.program_id is None for m in methods):
        return run.lower(*args), "traced"
    folder = store_folder()
    # a method's name is traced into the program too (its random stream), beside its program_id
    key = program_key(tuple(f"{m.name}: {m.program_id}" for m in methods), protocol, args)
    entry = folder / f"{key}{ENTRY_SUFFIX}" if folder else None
    try:
        lowered = _load(entry, key, args) if entry else None
    except OSError as exc:  # a store this user may not read, or a file in its place
        _say(f"cannot read {entry}: {exc.strerror or exc}; the program is traced and not stored")
        lowered, entry = None, None
    if lowered is not None:
        return lowered, "stored export"
    exported = export.export(run)(*args)
    if entry:
        _write(entry, seal(key, exported.serialize()))
    return jax.jit(exported.call).lower(*args), "traced"


def _load(entry: Path, key: str, args):
    """The stored program of ``key`` lowered at ``args``, or None: absent, or damaged (said in one line)."""
    try:
        data = entry.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return jax.jit(export.deserialize(bytearray(unseal(key, data))).call).lower(*args)
    except DamagedEntry as exc:
        reason = exc
    except Exception as exc:  # an intact entry JAX cannot load (deserialization raises several kinds)
        reason = f"unreadable ({type(exc).__name__}: {exc})".splitlines()[0]
    say_damaged("program store", entry, reason, "tracing it again")
    return None


def _write(entry: Path, data: bytes) -> None:
    try:
        atomic_write_bytes(entry, data)
    except OSError as exc:  # a shared store this user may only read: the job runs what it traced
        _say(f"cannot write {entry}: {exc.strerror or exc}; this program is traced again in the next job")


def _say(text: str) -> None:
    print(f"program store: {text}", file=sys.stderr, flush=True)
