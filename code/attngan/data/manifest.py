"""The manifest of a folder of captioned images, one reader for ``attngan-make-dataset`` and
``attngan-eval --image_dir`` (docs/captioned_images.md).

Hugging Face's ImageFolder layout: a ``metadata.csv`` (a header row) or ``metadata.jsonl``
(one JSON object a line) beside the images, with the columns ``file_name`` (the image's
path relative to the folder) and ``text`` (its caption); our earlier names are read alike:
``image`` or ``file`` for ``file_name``, ``caption`` for ``text``; an optional class
column is ``class``, ``class_id`` or ``label``. Other columns are ignored (and listed in
``Columns.ignored``). Every bad input is a ``DatasetError`` naming the file, the line or
the columns found.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attngan.errors import DataError

# Each role's accepted names, the ecosystem's first: Hugging Face ImageFolder's file_name and
# text, then attngan-make-dataset's image/caption/class and attngan-eval's file/class_id.
FILE_COLUMNS = ("file_name", "image", "file")
TEXT_COLUMNS = ("text", "caption")
CLASS_COLUMNS = ("class", "class_id", "label")
# The manifest files looked for in a folder of images, in this order of preference.
IN_FOLDER = ("metadata.csv", "metadata.jsonl", "captions.jsonl")
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class DatasetError(DataError):
    """A bad folder of captioned images or manifest: one line naming the file, line or value."""


@dataclass(frozen=True)
class Columns:
    """The manifest's column of each role (``label`` None without a class column) and the
    columns it ignores."""

    file: str
    text: str
    label: str | None
    ignored: tuple[str, ...]


@dataclass(frozen=True)
class Row:
    """One manifest row: its line, the image's path as written, its captions (one; several
    where a JSON Lines row gives a list) with runs of whitespace made one space, and its
    class ('' without a class column; an integer as its decimal text)."""

    line: int
    file: str
    captions: tuple[str, ...]
    label: str


@dataclass(frozen=True)
class Manifest:
    """A manifest read: its file, its columns and its rows in file order."""

    path: Path
    columns: Columns
    rows: list[Row]

    def where(self, row: Row) -> str:
        """'<manifest> line <n>', the start of an error about ``row``."""
        return f"{self.path} line {row.line}"


# ---------------------------------------------------------------- finding and reading


def find_manifest(folder: Path, option: str) -> Path:
    """The one manifest file of ``IN_FOLDER`` in ``folder`` (given by ``option``, e.g.
    '--images'); a DatasetError when there is none or more than one."""
    if not folder.is_dir():
        raise DatasetError(f"{option} {folder}: not a folder")
    found = [folder / name for name in IN_FOLDER if (folder / name).is_file()]
    if len(found) > 1:
        raise DatasetError(
            f"{option} {folder} holds {' and '.join(p.name for p in found)}: keep one manifest of its captions"
        )
    if not found:
        raise DatasetError(
            f"{option} {folder} holds no manifest of its captions: expected {', '.join(IN_FOLDER)} "
            "with the columns file_name and text (docs/captioned_images.md)"
        )
    return found[0]


def read_manifest(path: Path) -> Manifest:
    """The manifest ``path``, a .csv with a header row or a .jsonl (.ndjson), its rows in
    file order; blank lines are skipped."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DatasetError(
            f"{path}: unknown manifest format {path.suffix.lower() or '(no suffix)'!r}; expected a .csv "
            "file with a header row or a .jsonl file (one JSON object a line)"
        )
    try:
        text = path.read_bytes().decode("utf-8-sig")  # -sig: a spreadsheet's byte-order mark
    except UnicodeDecodeError as err:
        raise DatasetError(
            f"{path}: cannot read manifest: not UTF-8 (byte {err.object[err.start]:#04x} at offset {err.start})"
        ) from err
    except OSError as err:
        raise DatasetError(f"{path}: cannot read manifest: {err.strerror or err}") from err
    columns, records = _csv_records(path, text) if kind == "csv" else _jsonl_records(path, text)
    rows = [_row(columns, record, line, f"{path} line {line}") for line, record in records]
    if not rows:
        raise DatasetError(f"{path}: the manifest lists no image")
    return Manifest(path, columns, rows)


def _columns(path: Path, names: Sequence[str], found: str) -> Columns:
    """Each role's column among ``names`` (a CSV header, a JSON Lines file's fields);
    ``found``: how the error calls them ('columns', 'fields')."""
    shown = f"{found} found: {', '.join(names) or 'none'}"
    twice = [name for name, count in Counter(names).items() if count > 1]
    if twice:
        raise DatasetError(f"{path}: column {twice[0]!r} appears twice ({shown})")
    chosen = {}
    for role, accepted in (("file", FILE_COLUMNS), ("caption", TEXT_COLUMNS), ("class", CLASS_COLUMNS)):
        present = [name for name in accepted if name in names]
        if len(present) > 1:
            raise DatasetError(f"{path}: two {role} columns, {' and '.join(map(repr, present))}: keep one ({shown})")
        if not present and role != "class":
            raise DatasetError(f"{path}: no {role} column: expected one of {', '.join(accepted)} ({shown})")
        chosen[role] = present[0] if present else None
    ignored = tuple(name for name in names if name not in chosen.values())
    return Columns(chosen["file"], chosen["caption"], chosen["class"], ignored)


def _csv_records(path: Path, text: str) -> tuple[Columns, list[tuple[int, dict[str, Any]]]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records = []
    try:
        header = next(reader, None)
        if header is None:
            raise DatasetError(f"{path}: the manifest is empty; expected a header row (file_name,text[,class])")
        names = [name.strip().lower() for name in header]
        columns = _columns(path, names, "columns")
        for values in reader:
            if not any(v.strip() for v in values):
                continue  # a blank line
            if len(values) > len(names):
                raise DatasetError(
                    f"{path} line {reader.line_num}: {len(values)} fields, but the header names {len(names)} "
                    f"({', '.join(names)}); quote a caption that holds a comma"
                )
            records.append((reader.line_num, dict(zip(names, values))))
    except csv.Error as err:
        raise DatasetError(f"{path} line {reader.line_num}: cannot read manifest: {err}") from err
    return columns, records


def _jsonl_records(path: Path, text: str) -> tuple[Columns, list[tuple[int, dict[str, Any]]]]:
    records = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetError(f"{path} line {number}: not valid JSON ({err.msg})") from err
        if not isinstance(record, dict):
            raise DatasetError(
                f'{path} line {number}: expected a JSON object such as {{"file_name": "0001.png", "text": "..."}}, '
                f"got {line.strip()[:80]!r}"
            )
        records.append((number, record))
    if not records:
        raise DatasetError(f"{path}: the manifest lists no image")
    names = list(dict.fromkeys(name for _, record in records for name in record))  # every line's, in order
    return _columns(path, names, "fields"), records


def _row(columns: Columns, record: dict[str, Any], line: int, where: str) -> Row:
    for name in (columns.file, columns.text, columns.label):
        if name is not None and name not in record:
            raise DatasetError(f"{where}: no {name} field (fields: {', '.join(record) or 'none'})")
    file = record[columns.file]
    if not isinstance(file, str):
        raise DatasetError(f'{where}: "{columns.file}" must be a string, got {file!r}')
    file = file.strip()
    if not file:
        raise DatasetError(f"{where}: empty {columns.file} field")
    text = record[columns.text]
    texts = text if isinstance(text, list) and text else [text]
    if not all(isinstance(t, str) for t in texts):
        raise DatasetError(f'{where}: "{columns.text}" must be a string or a list of strings, got {text!r}')
    captions = tuple(" ".join(t.split()) for t in texts)  # a caption is one line of text
    if not all(captions):
        raise DatasetError(f"{where}: empty caption for {file}")
    label = record.get(columns.label, "") if columns.label else ""
    if isinstance(label, bool) or not isinstance(label, (str, int)):
        raise DatasetError(f'{where}: "{columns.label}" must be a string or an integer, got {label!r}')
    label = str(label).strip()
    if columns.label and not label:
        raise DatasetError(f"{where}: empty {columns.label} for {file} (with a class column every row needs one)")
    return Row(line, file, captions, label)


# ---------------------------------------------------------------- the images it names


def image_path(folder: Path, file: str, where: str) -> tuple[str, Path]:
    """A manifest's image path in normal form ('./a//b.png' -> 'a/b.png', '\\' as '/') and
    the file in ``folder``; a DatasetError when it leads outside ``folder`` or is missing."""
    relative = posixpath.normpath(file.replace("\\", "/"))
    if posixpath.isabs(relative) or relative == ".." or relative.startswith("../"):
        raise DatasetError(f"{where}: image {file!r} is not a path inside {folder}")
    path = folder / relative
    if not path.is_file():
        raise DatasetError(f"{where}: image not found: {path}")
    return relative, path
