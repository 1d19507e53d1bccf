"""A command's output folder: made and checked for writing before any work, and left as
it was found when the command fails before it saved anything there (docs/errors.md)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import OutputError, add_note

PROBE = ".attngan-write-probe"
PROBE_BYTES = 1 << 16  # one block or more on any file system: a full disk fails to take it


def probe_writable(folder: Path, option: str) -> None:
    """Write, sync and remove a small file in ``folder``: an unwritable or full file system
    fails now, as an OutputError naming the folder and the ``option`` that chooses another,
    rather than at the first checkpoint."""
    path = folder / PROBE
    try:
        with open(path, "wb") as f:
            f.write(bytes(PROBE_BYTES))
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise OutputError(
            f"cannot write in the output folder {folder} ({err.strerror}): free space there, or "
            f"choose another folder with {option}"
        ) from err
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


def _listing(root: Path) -> tuple[dict[Path, tuple[int, int]], set[Path]]:
    """(every file under ``root`` with its size and modification time, every folder)."""
    files, folders = {}, set()
    for parent, dirnames, filenames in os.walk(root):
        folders.update(Path(parent) / d for d in dirnames)
        for name in filenames:
            with contextlib.suppress(OSError):  # removed meanwhile
                stat = (Path(parent) / name).stat()
                files[Path(parent) / name] = (stat.st_size, stat.st_mtime_ns)
    return files, folders


def _missing(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


@contextlib.contextmanager
def output_folder(
    path: str | Path,
    subfolders: Sequence[str] = (),
    saved_in: Sequence[str] = ("",),
    option: str = "--output_dir",
    active: bool = True,
) -> Iterator[Path]:
    """``path`` (with ``subfolders``) made and probed for writing (an OutputError naming it
    and ``option`` when it cannot be). When the block raises before it wrote a file under
    ``saved_in`` (sub-folders of ``path``; '' is ``path`` itself) or changed a file that
    was there, what it added is removed again: the files new since it began and the
    folders it made, so that a folder that existed is as it was and none is left empty;
    a note on the error says so. ``active`` False (a torchrun process other than rank 0):
    only the path."""
    path = Path(path)
    if not active:
        yield path
        return
    made = _missing(path)
    files_before, folders_before = _listing(path)
    try:
        try:
            for sub in subfolders or ("",):
                (path / sub).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(
                f"cannot make the output folder {path / sub} ({err.strerror}): choose another folder with {option}"
            ) from err
        probe_writable(path, option)
        yield path
    except BaseException as err:
        _undo(path, made, files_before, folders_before, saved_in, err)
        raise


def _undo(
    path: Path,
    made: list[Path],
    files_before: dict,
    folders_before: set[Path],
    saved_in: Sequence[str],
    err: BaseException,
) -> None:
    files, folders = _listing(path) if path.is_dir() else ({}, set())
    changed = [f for f, stat in files.items() if files_before.get(f) != stat]
    kept = [path / sub for sub in saved_in]
    if any(f in files_before or any(f.is_relative_to(k) for k in kept) for f in changed):
        add_note(err, f"{path} keeps what this run saved")
        return
    for f in changed:
        if f not in files_before:
            f.unlink(missing_ok=True)
    for folder in sorted(folders - folders_before, key=lambda p: len(p.parts), reverse=True) + made:
        with contextlib.suppress(OSError):  # not empty: something else wrote there
            folder.rmdir()
    if made and not path.exists():
        add_note(err, f"removed {path}, which this run had made, as nothing was saved in it")
    elif not made:
        add_note(err, f"{path} is left as it was")
