"""Checkpoint files: one line of JSON header, then the msgpack-serialized train state. Never pickle.

The header holds the format version, the architecture, the config slice and its hash, the episode,
metrics, the curriculum state, the package version and git commit, and the sha256 of the body, so a
truncated or edited file is refused. Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .atomic import atomic_write_bytes
from .errors import CheckpointError

CHECKPOINT_FORMAT = "acbo-ckpt/1"
REQUIRED_FIELDS = ("format", "architecture", "config_hash", "episode", "body_sha256")


def encode(header: dict, state) -> bytes:
    from flax import serialization  # imported here: reading a header needs no JAX

    body = serialization.msgpack_serialize(serialization.to_state_dict(state))
    header = {**header, "format": CHECKPOINT_FORMAT, "body_sha256": hashlib.sha256(body).hexdigest()}
    return json.dumps(header, sort_keys=True).encode() + b"\n" + body


def save(path: str | Path, header: dict, state) -> None:
    atomic_write_bytes(path, encode(header, state))


def read_header(path: str | Path) -> dict:
    header, _ = _split(path)
    return header


def _split(path) -> tuple[dict, bytes]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint: {exc.strerror}") from None
    head, sep, body = data.partition(b"\n")
    try:
        header = json.loads(head) if sep else None
    except ValueError:
        header = None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not an ACBO checkpoint (no JSON header line)")
    missing = [f for f in REQUIRED_FIELDS if f not in header]
    if missing:
        raise CheckpointError(f"{path}: checkpoint header lacks {', '.join(missing)}")
    if header["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: format: expected {CHECKPOINT_FORMAT!r}, got {header['format']!r}")
    if hashlib.sha256(body).hexdigest() != header["body_sha256"]:
        raise CheckpointError(f"{path}: body_sha256: the parameters are corrupt or truncated")
    return header, body


def load(path: str | Path, target, field: str | None = None) -> tuple[dict, object]:
    """Read a checkpoint into the structure of ``target`` (e.g. a freshly initialized state).

    With ``field``, only that entry of the saved state (e.g. ``"params"``) is restored.
    """
    from flax import serialization

    header, body = _split(path)
    try:
        saved = serialization.msgpack_restore(body)
        if field is not None:
            saved = saved[field]
        restored = serialization.from_state_dict(target, saved)
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: parameters do not match the architecture: {exc}") from None
    _check_shapes(path, target, restored)
    return header, restored


def _check_shapes(path, target, restored) -> None:
    import jax

    want = jax.tree.map(lambda x: getattr(x, "shape", None), target)
    got = jax.tree.map(lambda x: getattr(x, "shape", None), restored)
    if want != got:
        raise CheckpointError(f"{path}: architecture: parameter shapes differ from the configured policy")
