"""Writing files so that an interrupted run never leaves a truncated one behind, and
reading the JSON Lines manifests of image folders."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Callable


def write_atomic(path: str | os.PathLike, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Write ``data`` (bytes, or a function writing to a binary file) to a temporary file
    beside ``path``, then rename it over ``path``: the old file stays whole until the new
    one is complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(err, OSError) and err.errno is not None and err.filename is None:  # a full disk: which file
            err.filename = str(path)
        raise


def json_objects(text: str, source: str | os.PathLike, expected: str) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """The JSON object of every non-blank line of ``text`` (JSON Lines read from ``source``)
    as ``(line number, "<source> line <n>", object)``. A line that is not JSON, or not an
    object (one with ``expected``, e.g. '"file" and "caption"'), is a ValueError naming it."""
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        where = f"{source} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not valid JSON ({err.msg})") from err
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object with {expected}, got {line.strip()!r}")
        yield number, where, record


def sha256_of(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
