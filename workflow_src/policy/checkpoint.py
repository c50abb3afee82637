"""Checkpoint files: one line of JSON header, then the msgpack-serialized train state. Never pickle.

The header holds the format version, the architecture, the config slice and its hash, the episode,
metrics, the curriculum state, the package version and git commit, and the sha256 of the body, so a
truncated or edited file is refused. Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import msgpack
import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import CheckpointError

CHECKPOINT_FORMAT = "acbo-ckpt/1"
REQUIRED_FIELDS = ("format", "architecture", "config_hash", "episode", "body_sha256")
HEADER_LIMIT = 1 << 20  # bytes read at most for the JSON header line alone
NDARRAY, NUMPY_SCALAR = 1, 3  # Flax's msgpack extension codes


def encode(header: dict, state) -> bytes:
    from flax import serialization  # imported here: reading a header needs no JAX

    body = serialization.msgpack_serialize(serialization.to_state_dict(state))
    header = {**header, "format": CHECKPOINT_FORMAT, "body_sha256": hashlib.sha256(body).hexdigest()}
    return json.dumps(header, sort_keys=True).encode() + b"\n" + body


def save(path: str | Path, header: dict, state) -> None:
    atomic_write_bytes(path, encode(header, state))


def read_header(path: str | Path, verify_body: bool = True, required=REQUIRED_FIELDS) -> dict:
    """The checkpoint's JSON header, checked for the ``required`` fields and the format; with ``verify_body``
    the parameters' hash too (the whole file is read), else only the first line is read (the summary reads
    every seed's header and nothing else, and records what it finds)."""
    if verify_body:
        header, _ = _split(path)
        return header
    try:
        with open(path, "rb") as fh:
            line = fh.readline(HEADER_LIMIT)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint: {exc.strerror}") from None
    return _parse_header(path, line, required)


def check_config_hash(path, header: dict, expected: str | None, config: str | None = None) -> None:
    """Refuse a checkpoint whose ``config_hash`` is not ``expected``, the hash of its config's training settings
    (None: nothing to compare)."""
    if expected is not None and header.get("config_hash") != expected:
        of = f"config {config!r}'s" if config else "the config's"
        raise CheckpointError(f"{path}: config_hash {header.get('config_hash')} differs from {expected}, the hash of "
                              f"{of} training settings: trained under another config (retrain it)")


def _parse_header(path, line: bytes, required=REQUIRED_FIELDS) -> dict:
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not an ACBO checkpoint (no JSON header line)")
    missing = [f for f in (*required, "format") if f not in header]
    if missing:
        raise CheckpointError(f"{path}: checkpoint header lacks {', '.join(missing)}")
    if header["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: format: expected {CHECKPOINT_FORMAT!r}, got {header['format']!r}")
    return header


def _split(path) -> tuple[dict, bytes]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint: {exc.strerror}") from None
    head, sep, body = data.partition(b"\n")
    header = _parse_header(path, head if sep else b"")
    if hashlib.sha256(body).hexdigest() != header["body_sha256"]:
        raise CheckpointError(f"{path}: body_sha256: the parameters are corrupt or truncated")
    return header, body


def read_saved(path: str | Path, field: str | None = None):
    """The saved state (or its entry ``field``, e.g. ``"params"``) as nested dicts of numpy arrays, read
    without Flax: an evaluation job that finds its program in the store needs nothing else (``policy_spec``)."""
    header, body = _split(path)
    try:
        saved = msgpack.unpackb(body, ext_hook=_decode_extension, raw=False, strict_map_key=False)
        if field is not None:
            saved = saved[field]
    except (ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
        raise CheckpointError(f"{path}: the saved state cannot be read: {exc}") from None
    return header, saved


def _decode_extension(code: int, data: bytes):
    """Flax's msgpack encoding of arrays: extension ``NDARRAY`` (or ``NUMPY_SCALAR``) holding
    ``(shape, dtype name, C-ordered bytes)``."""
    if code not in (NDARRAY, NUMPY_SCALAR):
        raise ValueError(f"unknown msgpack extension type {code}")
    shape, dtype, buffer = msgpack.unpackb(data, raw=True)
    array = np.frombuffer(buffer, dtype=np.dtype(dtype.decode())).reshape(shape)
    return array[()] if code == NUMPY_SCALAR else array


def load(path: str | Path, target, field: str | None = None) -> tuple[dict, object]:
    """Read a checkpoint into the structure of ``target`` (e.g. a freshly initialized state).

    With ``field``, only that entry of the saved state (e.g. ``"params"``) is restored.
    """
    from flax import serialization

    header, saved = read_saved(path, field)
    try:
        restored = serialization.from_state_dict(target, saved)
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: parameters do not match the architecture: {exc}") from None
    check_shapes(path, target, restored)
    check_finite(path, restored, field or "state")
    return header, restored


def check_finite(path, tree, what: str) -> None:
    """Refuse a checkpoint whose ``tree`` (its parameters, or the whole saved state) holds NaN or infinity."""
    import jax

    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    broken = [jax.tree_util.keystr(key) for key, leaf in leaves if not np.all(np.isfinite(leaf))]
    if broken:
        more = f" and {len(broken) - 1} more" if len(broken) > 1 else ""
        raise CheckpointError(f"{path}: {what}: non-finite values (NaN or infinity) in {broken[0]}{more}: the "
                              "training diverged or the file was edited")


def check_shapes(path, target, restored) -> None:
    """Refuse ``restored`` unless it has ``target``'s structure and shapes."""
    import jax

    want = jax.tree.map(lambda x: getattr(x, "shape", None), target)
    got = jax.tree.map(lambda x: getattr(x, "shape", None), restored)
    if want != got:
        raise CheckpointError(f"{path}: architecture: parameter shapes differ from the configured policy")
