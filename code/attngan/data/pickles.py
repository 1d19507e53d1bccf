"""Safe reading and atomic writing of the original's metadata pickles.

``captions.pickle``, ``filenames.pickle`` and ``class_info.pickle`` hold only lists,
dicts, strings and numbers, so they are read with an unpickler that refuses every other
global: a tampered pickle cannot run code.

Python-2 pickles: a py2 ``unicode`` loads as ``str`` whatever the encoding; a py2 ``str``
(a byte string) is decoded with the unpickler's ``encoding``. We use UTF-8: it loads the
ASCII strings of the authors' pickles exactly as the default ("ASCII") does, decodes a
UTF-8 byte string correctly, and fails loudly on anything else, where "latin1" would
silently garble UTF-8 bytes. Python-3 pickles are unaffected by the choice.
"""

from __future__ import annotations

import builtins
import collections
import pickle
from pathlib import Path
from typing import Any

from attngan.errors import DataError, user_path
from attngan.files import write_atomic

_ALLOWED_BUILTINS = frozenset(
    {"list", "dict", "tuple", "set", "frozenset", "str", "bytes", "int", "float", "bool", "complex"}
)
# Python 2 pickles name the builtins module "__builtin__".
_BUILTIN_MODULES = frozenset({"builtins", "__builtin__"})


class RefusedGlobalError(DataError):
    """A data pickle names a global outside the allowed plain types."""


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits only plain containers, strings and numbers (and OrderedDict)."""

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="utf-8", errors="strict")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if module in _BUILTIN_MODULES and name in _ALLOWED_BUILTINS:
            return getattr(builtins, name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise RefusedGlobalError(
            f"{self._path}: refused global {module}.{name} (only plain lists, dicts, "
            "strings and numbers are allowed in a data pickle)"
        )


def load_pickle(path: str | Path) -> Any:
    """Load a data pickle (py2 or py3) through the restricted unpickler."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pickle file not found: {path}")
    with user_path(path, "cannot read pickle"), open(path, "rb") as f:
        try:
            return _RestrictedUnpickler(f, path).load()
        except RefusedGlobalError:
            raise
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: a Python-2 string is not UTF-8: {err}") from err
        # what a truncated or garbled pickle raises, as the unpickler meets it
        except (EOFError, ValueError, IndexError, KeyError, TypeError, OverflowError, pickle.UnpicklingError) as err:
            raise DataError(f"{path}: truncated or not a pickle: {err}") from err


def save_pickle(obj: Any, path: str | Path) -> None:
    """Write ``obj`` with protocol 2 (readable by Python 2) atomically: temp file + rename."""
    write_atomic(path, lambda f: pickle.dump(obj, f, protocol=2), durable=True)
