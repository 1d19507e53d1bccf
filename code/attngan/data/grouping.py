"""A manifest's rows (data/manifest.py) as attngan-make-dataset's entries: one an image, its
captions in file order, fitted to the same count for every image."""

from __future__ import annotations

import logging
import posixpath
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from attngan.data.manifest import DatasetError, Manifest, image_path
from attngan.data.text import tokenize

log = logging.getLogger(__name__)


@dataclass
class Entry:
    """One image: its key, its file, its captions in manifest order and its class label."""

    key: str
    source: Path
    line: int  # the manifest line that first names it
    label: str
    captions: list[str] = field(default_factory=list)


def group_rows(manifest: Manifest, images_dir: Path) -> list[Entry]:
    """One entry an image of ``images_dir``, in order of first mention; checks paths, names,
    classes and that every caption has a word the tokenizer keeps."""
    entries: dict[str, Entry] = {}
    folded: dict[str, str] = {}  # key.casefold() -> key: keys a case-insensitive disk cannot tell apart
    for row in manifest.rows:
        where = manifest.where(row)
        relative, source = image_path(images_dir, row.file, where)
        for caption in row.captions:
            if not tokenize(caption):
                raise DatasetError(
                    f"{where}: caption {caption!r} of {row.file} has no ASCII word (the tokenizer keeps "
                    "ASCII letters and digits only), so it would load empty"
                )
        key = posixpath.splitext(relative)[0]
        entry = entries.get(key)
        if entry is None:
            other = entries.get(folded.get(key.casefold(), ""))
            if other is not None:
                raise DatasetError(
                    f"{where}: duplicate name: {relative} and {_relative(other, images_dir)} (line "
                    f"{other.line}) would both be stored as images/{key}.jpg; rename one"
                )
            entry = entries[key] = Entry(key, source, row.line, row.label)
            folded[key.casefold()] = key
        elif entry.source != source:
            raise DatasetError(
                f"{where}: duplicate name: {relative} and {_relative(entry, images_dir)} (line "
                f"{entry.line}) would both be stored as images/{key}.jpg; rename one"
            )
        if row.label != entry.label:
            raise DatasetError(
                f"{where}: class {row.label!r} for {relative}, but line {entry.line} gave {entry.label!r}"
            )
        entry.captions.extend(row.captions)
    return list(entries.values())


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
