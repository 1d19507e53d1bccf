"""The manifest of a folder of captioned images (attngan-make-dataset, docs/own_data.md):
a CSV file with a header row, or JSON Lines, told apart by the suffix; each row one caption,
with the fields ``image`` (a path relative to the folder), ``caption`` and optionally
``class``. Read into one ``Entry`` an image, its captions in file order; every bad row is a
``DatasetError`` naming the file and line.
"""

from __future__ import annotations

import csv
import io
import logging
import posixpath
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from attngan.data.text import tokenize
from attngan.errors import DataError
from attngan.files import json_objects

log = logging.getLogger(__name__)

FIELDS = ("image", "caption", "class")
REQUIRED = ("image", "caption")


class DatasetError(DataError):
    """A bad input of attngan-make-dataset: one line naming the file, line or value."""


@dataclass(frozen=True)
class Row:
    """One manifest row: its line number and its fields ('' when the class column is absent)."""

    line: int
    image: str
    caption: str
    label: str


@dataclass
class Entry:
    """One image: its key, its file, its captions in manifest order and its class label."""

    key: str
    source: Path
    line: int  # the manifest line that first names it
    label: str
    captions: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- reading the manifest


def read_manifest(path: Path) -> list[Row]:
    """The rows of a CSV (.csv) or JSON Lines (.jsonl, .ndjson) manifest, in file order."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        raise DatasetError(
            f"{path}: unknown manifest format {suffix or '(no suffix)'!r}; expected a .csv file "
            "with a header row or a .jsonl file (one JSON object a line)"
        )
    try:
        text = path.read_bytes().decode("utf-8-sig")  # -sig: a spreadsheet's byte-order mark
    except UnicodeDecodeError as err:
        raise DatasetError(
            f"{path}: cannot read manifest: not UTF-8 (byte {err.object[err.start]:#04x} at offset {err.start})"
        ) from err
    except OSError as err:
        raise DatasetError(f"{path}: cannot read manifest: {err.strerror or err}") from err
    rows = list(_csv_rows(path, text) if suffix == ".csv" else _jsonl_rows(path, text))
    if not rows:
        raise DatasetError(f"{path}: the manifest has no rows")
    return rows


def _known_fields(names: Sequence[str], where: str, what: str) -> None:
    """Every name a known field, none twice; ``what``: 'column' or 'field'."""
    for name in names:
        if name not in FIELDS:
            raise DatasetError(
                f"{where}: unknown {what} {name!r}; expected {', '.join(REQUIRED)} and optionally class"
                + (", comma-separated" if what == "column" else "")
            )
    twice = [name for name, count in Counter(names).items() if count > 1]
    if twice:
        raise DatasetError(f"{where}: {what} {twice[0]!r} appears twice")


def _csv_rows(path: Path, text: str) -> Iterator[Row]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise DatasetError(f"{path}: the manifest is empty; expected a header row (image,caption[,class])")
        names = [name.strip().lower() for name in header]
        _known_fields(names, f"{path} header", "column")
        for name in REQUIRED:
            if name not in names:
                raise DatasetError(f"{path} header: no {name!r} column (columns: {', '.join(names)})")
        for values in reader:
            if not any(v.strip() for v in values):
                continue  # a blank line
            where = f"{path} line {reader.line_num}"
            if len(values) > len(names):
                raise DatasetError(
                    f"{where}: {len(values)} fields, but the header names {len(names)} "
                    f"({', '.join(names)}); quote a caption that holds a comma"
                )
            record = dict(zip(names, values))
            yield _row(record, reader.line_num, where)
    except csv.Error as err:
        raise DatasetError(f"{path} line {reader.line_num}: cannot read manifest: {err}") from err


def _jsonl_rows(path: Path, text: str) -> Iterator[Row]:
    for number, where, record in json_objects(text, path, '"image" and "caption"'):
        _known_fields(list(record), where, "field")
        for name, value in record.items():
            if name == "class" and isinstance(value, int) and not isinstance(value, bool):
                record[name] = str(value)
            elif not isinstance(value, str):
                raise DatasetError(f'{where}: "{name}" must be a string, got {value!r}')
        yield _row(record, number, where)


def _row(record: dict[str, str], line: int, where: str) -> Row:
    for name in REQUIRED:
        if name not in record:
            raise DatasetError(f"{where}: no {name} field")
    image = record["image"].strip()
    if not image:
        raise DatasetError(f"{where}: empty image field")
    caption = " ".join(record["caption"].split())  # one line in text/<key>.txt
    if not caption:
        raise DatasetError(f"{where}: empty caption for {image}")
    if not tokenize(caption):
        raise DatasetError(
            f"{where}: caption {caption!r} of {image} has no ASCII word (the tokenizer keeps "
            "ASCII letters and digits only), so it would load empty"
        )
    label = record.get("class", "").strip()
    if "class" in record and not label:
        raise DatasetError(f"{where}: empty class for {image} (with a class column every row needs one)")
    return Row(line, image, caption, label)


# ---------------------------------------------------------------- images and their captions


def group_rows(rows: list[Row], images_dir: Path, manifest: Path) -> list[Entry]:
    """One entry an image, in order of first mention; checks paths, names and classes."""
    entries: dict[str, Entry] = {}
    folded: dict[str, str] = {}  # key.casefold() -> key: keys a case-insensitive disk cannot tell apart
    for row in rows:
        where = f"{manifest} line {row.line}"
        relative = _relative_path(row.image, where, images_dir)
        key = posixpath.splitext(relative)[0]
        entry = entries.get(key)
        if entry is None:
            other = entries.get(folded.get(key.casefold(), ""))
            if other is not None:
                raise DatasetError(
                    f"{where}: duplicate name: {relative} and {_relative(other, images_dir)} (line "
                    f"{other.line}) would both be stored as images/{key}.jpg; rename one"
                )
            source = images_dir / relative
            if not source.is_file():
                raise DatasetError(f"{where}: image not found: {source}")
            entry = entries[key] = Entry(key, source, row.line, row.label)
            folded[key.casefold()] = key
        elif entry.source != images_dir / relative:
            raise DatasetError(
                f"{where}: duplicate name: {relative} and {_relative(entry, images_dir)} (line "
                f"{entry.line}) would both be stored as images/{key}.jpg; rename one"
            )
        if row.label != entry.label:
            raise DatasetError(
                f"{where}: class {row.label!r} for {relative}, but line {entry.line} gave {entry.label!r}"
            )
        entry.captions.append(row.caption)
    return list(entries.values())


def _relative_path(image: str, where: str, images_dir: Path) -> str:
    """The manifest's path in normal form ('./a//b.png' -> 'a/b.png'); inside --images."""
    relative = posixpath.normpath(image.replace("\\", "/"))
    if posixpath.isabs(relative) or relative == ".." or relative.startswith("../"):
        raise DatasetError(f"{where}: image {image!r} is not a path inside --images {images_dir}")
    return relative


def _relative(entry: Entry, images_dir: Path) -> str:
    return entry.source.relative_to(images_dir).as_posix()


def fit_captions(entries: list[Entry], captions_per_image: int | None) -> tuple[list[Entry], int]:
    """Exactly ``captions_per_image`` captions an image (default: the most common count,
    the larger on a tie): the first ones in file order when an image has more, its own
    repeated in order when it has fewer. Returns the entries and the count."""
    counts = Counter(len(e.captions) for e in entries)
    n = max(counts, key=lambda c: (counts[c], c)) if captions_per_image is None else captions_per_image
    if n < 1:
        raise DatasetError(f"--captions-per-image must be >= 1, got {n}")
    more = [e for e in entries if len(e.captions) > n]
    fewer = [e for e in entries if len(e.captions) < n]
    if more:
        log.warning(
            "%d images have more than %d captions: each keeps its first %d in file order (e.g. %s: %d)",
            len(more),
            n,
            n,
            more[0].key,
            len(more[0].captions),
        )
    if fewer:
        log.warning(
            "%d images have fewer than %d captions: each repeats its own in order to make %d (e.g. %s: %d)",
            len(fewer),
            n,
            n,
            fewer[0].key,
            len(fewer[0].captions),
        )
    fitted = [replace(e, captions=[e.captions[i % len(e.captions)] for i in range(n)]) for e in entries]
    return fitted, n
