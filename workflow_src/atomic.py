"""Atomic file writes: write to a temporary file beside the target, then rename over it."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path in the target's directory; rename it to ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def output_problem(path: str | Path, kind: str = "file") -> str | None:
    """Why ``path`` cannot be written, or None: checked before a command starts its work.

    ``kind``: ``"file"`` (written by rename beside itself), ``"into"`` (a folder files are written into) or
    ``"replace"`` (a folder replaced as a whole, beside itself: never the working folder or one above it). A
    folder that does not exist yet must be creatable: its nearest existing ancestor must be a writable folder.
    """
    path = Path(path)
    here = Path.cwd().resolve()
    if kind == "replace" and path.resolve() in (here, *here.parents):
        return "is the working folder or a folder above it"
    if kind == "file" and path.is_dir():
        return "is an existing folder, not a file"
    if kind != "file" and path.exists() and not path.is_dir():
        return "is an existing file, not a folder"
    written = path if kind == "into" else path.parent
    existing = next((p for p in (written, *written.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        return f"cannot be created: {existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot be written: the folder {existing} is not writable"
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def check_outputs(outputs: dict, inputs=()) -> None:
    """Refuse, before any work starts, an output that cannot be written, that is one of the command's inputs
    or another of its outputs, or (a folder replaced as a whole) that holds another output.

    ``outputs``: ``{option: (path, kind)}``, ``kind`` as in ``atomic.output_problem``; ``inputs``: files read.
    """
    taken = {_file_identity(p): "an input of this command" for p in inputs if p}
    for option, (path, kind) in outputs.items():
        problem = output_problem(path, kind)
        if problem is None and _file_identity(path) in taken:
            problem = f"is {taken[_file_identity(path)]}: it would be overwritten"
        if problem is None and kind == "replace":
            inside = [o for o, (p, _) in outputs.items() if o != option and Path(p).resolve().is_relative_to(
                Path(path).resolve())]
            problem = f"holds the output of {inside[0]}, and is replaced as a whole" if inside else None
        if problem:
            raise UserError(f"{option} {path}: {problem}")
        taken[_file_identity(path)] = f"the output of {option} too"


def _file_identity(path) -> tuple | Path:
    """The same for two names of one existing file (links included); else the resolved path."""
    try:
        st = Path(path).stat()
    except OSError:
        return Path(path).resolve()
    return st.st_dev, st.st_ino
