"""Writing files so that an interrupted run never leaves a truncated one behind."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from .errors import OutputError


def write_atomic(
    path: str | os.PathLike,
    data: bytes | Callable[[BinaryIO], None],
    durable: bool = False,
    before_replace: Callable[[Path], None] | None = None,
) -> None:
    """Write ``data`` (bytes, or a function writing to a binary file) to a temporary file
    beside ``path``, then rename it over ``path``: the old file stays whole until the new
    one is complete. ``durable``: the new file is synced to the disk before the rename (a
    power cut leaves the old or the new one). ``before_replace(tmp)`` runs once the new
    file is complete, before it takes the name. A file system error (a full disk, a
    read-only folder) is an OutputError naming ``path``."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        if before_replace is not None:
            before_replace(Path(tmp))
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(err, OSError):
            raise OutputError(f"cannot write {path}: {err.strerror or err}") from err
        raise


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of the file at ``path``."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
