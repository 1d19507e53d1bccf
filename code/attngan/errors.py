"""The command-line error contract, below every layer so that any command can follow it
(docs/errors.md): an error the user can cause is one line on stderr, ``error (<type>):
<what, naming the file, key or value, and what was expected>``, and exit status 2; with
``--debug`` or ATTNGAN_DEBUG=1 its traceback comes first. A programming error is not
caught and keeps its traceback."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import traceback
from collections.abc import Iterator


class UserError(Exception):
    """An error the user can cause and fix: input that does not fit (a config, a data file,
    a checkpoint, a caption, an output folder) or a machine that cannot do what was asked.
    The commands print it as one line (``report``); every other exception is a programming
    error and keeps its traceback. Raise a subclass where the input is validated, and
    translate an OSError where a user's path is opened (``user_path``)."""


class DataError(UserError):
    """A dataset or data file that is missing, unreadable or malformed."""


class CaptionError(UserError):
    """A caption that cannot be drawn: empty, no known word, too long."""


class OutputError(UserError):
    """An output folder or file that cannot be made or written."""


class OptionError(UserError):
    """A command's option or argument value that does not fit (beyond what argparse checks)."""


class SetupError(UserError):
    """The command cannot run on this machine as asked: a CUDA id without CUDA, weights it
    cannot fetch offline, too little GPU memory."""


class GpuMemoryError(SetupError):
    """Out of GPU memory (torch.cuda.OutOfMemoryError), with the batch size to lower."""


# The errors a user can cause. Not a bare ValueError or OSError: a model's shape check or a
# bug's file error raises those, and a programming error keeps its traceback.
USER_ERRORS = (UserError,)


@contextlib.contextmanager
def user_path(path: str | os.PathLike, what: str, error: type[UserError] = DataError) -> Iterator[None]:
    """An OSError raised in the block (missing, unreadable, unwritable, disk full) becomes
    ``error`` naming ``what`` and ``path``; use it exactly where a user's path is opened."""
    try:
        yield
    except OSError as err:
        reason = err.strerror or str(err) or type(err).__name__
        raise error(f"{what} {os.fspath(path)}: {reason}") from err


_DEBUG_ENV = "ATTNGAN_DEBUG"
_parsed = {"debug": False}  # --debug of the last command line parsed by a CommandParser
_WORKER_TRACEBACK = "Original Traceback (most recent call last):"


def debug_requested() -> bool:
    """--debug on the last command line parsed, or ATTNGAN_DEBUG set (not to 0/false/no)."""
    return _parsed["debug"] or os.environ.get(_DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def add_note(err: BaseException, note: str) -> None:
    """``err.add_note(note)`` (Python 3.11), also on 3.10; ``report`` prints the notes."""
    if hasattr(err, "add_note"):
        err.add_note(note)
    else:
        err.__notes__ = [*getattr(err, "__notes__", []), note]


def _worker_message(text: str) -> str:
    """The error text raised inside a DataLoader worker, without the worker's traceback
    that PyTorch puts into the message it re-raises in the main process."""
    lines = text.split(_WORKER_TRACEBACK, 1)[1].splitlines()
    last_frame = max((i for i, line in enumerate(lines) if line.startswith("  File ")), default=-1)
    rest = lines[last_frame + 1 :]
    while rest and rest[0].startswith("    "):  # the frame's source line and its ^^^ markers
        rest = rest[1:]
    return re.sub(r"^[\w.]+: ", "", "\n".join(rest).strip(), count=1)


def one_line(err: BaseException) -> str:
    """``err``'s message and notes as one line (a DataLoader worker's traceback dropped)."""
    text = str(err)
    if _WORKER_TRACEBACK in text:
        text = _worker_message(text)
    parts = [text, *getattr(err, "__notes__", [])]
    return "; ".join(" ".join(line.strip() for line in part.splitlines() if line.strip()) for part in parts)


def report(err: BaseException) -> int:
    """Print a user error as one line on stderr (its traceback first with --debug or
    ATTNGAN_DEBUG=1); returns the exit status, 2."""
    if debug_requested():
        traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
    print(f"error ({type(err).__name__}): {one_line(err)}", file=sys.stderr)
    return 2


@contextlib.contextmanager
def lower_on_oom(setting: str, value: int) -> Iterator[None]:
    """Running out of GPU memory in the block is a GpuMemoryError that names the batch
    size to lower: ``setting`` is a config key (TRAIN.BATCH_SIZE, set with --set) or an
    option (--batch_size)."""
    import torch  # here, not above: the data tools use this module without torch

    try:
        yield
    except torch.cuda.OutOfMemoryError as err:
        smaller = max(1, value // 2)
        how = f"{setting} {smaller}" if setting.startswith("-") else f"--set {setting}={smaller}"
        what = str(err).splitlines()[0].split(" Including non-PyTorch memory")[0]  # the rest: allocator advice
        raise GpuMemoryError(f"out of GPU memory ({what}): lower {setting} (now {value}; e.g. {how})") from err


class CommandParser(argparse.ArgumentParser):
    """argparse under the contract: a usage error is one line and exit status 2, and every
    command takes ``--debug``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true", help=f"show the traceback of an error (also {_DEBUG_ENV}=1)")

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        _parsed["debug"] = bool(getattr(namespace, "debug", False))
        return namespace, extras

    def error(self, message: str):
        self.exit(2, f"error (arguments): {self.prog}: {message} (see {self.prog} --help)\n")
