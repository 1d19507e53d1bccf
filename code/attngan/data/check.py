"""Check a dataset before a long run: every missing or unreadable file, all at once.

Reads the layouts of data/README.md (CUB birds, COCO, and the shapes set, which uses the
COCO layout) the way ``datasets.TextDataset`` does, and collects a ``Problem`` for each
file that would stop or silently spoil training, never stopping at the first one.
Usage: ``attngan-check-data --cfg cfg/DAMSM/bird.yml`` or ``--data_dir data/shapes``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image
from tqdm import tqdm

from attngan import errors
from attngan.config import load_config
from attngan.data.pickles import RefusedGlobalError, load_pickle
from attngan.data.text import tokenize
from attngan.errors import USER_ERRORS, CommandParser, DataError, OptionError

log = logging.getLogger(__name__)

_WORD = re.compile(r"\w")  # a line with a \w run is a caption for the loader (text._raw_tokens)
_SHOWN = 5  # offending caption indices quoted in one problem


@dataclass(frozen=True)
class Problem:
    """One missing, unreadable or inconsistent file: ``path`` and what is wrong with it."""

    path: Path
    what: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


@dataclass
class CheckReport:
    """The problems found and how much was checked."""

    data_dir: Path
    problems: list[Problem] = field(default_factory=list)
    images: int = 0
    caption_files: int = 0
    captions_pickle: bool = False

    def add(self, path: Path, what: str) -> None:
        self.problems.append(Problem(path, what))

    def summary(self) -> str:
        captions = "captions.pickle" if self.captions_pickle else f"{self.caption_files} caption files"
        return f"checked {self.images} images, {captions}"


def check_dataset(
    data_dir: str | Path, captions_per_image: int = 10, splits: Sequence[str] = ("train", "test"), workers: int = 0
) -> list[Problem]:
    """Every problem of the dataset in ``data_dir`` (empty when it is ready to train on).

    ``workers`` > 0 decodes images in that many threads; 0 in the calling thread.
    """
    return scan_dataset(data_dir, captions_per_image, splits, workers).problems


def scan_dataset(
    data_dir: str | Path, captions_per_image: int = 10, splits: Sequence[str] = ("train", "test"), workers: int = 0
) -> CheckReport:
    """``check_dataset`` with the counts of what was checked, for a summary."""
    report = CheckReport(Path(data_dir))
    root = report.data_dir
    if not root.is_dir():
        report.add(root, "data directory not found (see data/README.md for the layouts)")
        return report
    birds = "birds" in str(data_dir)  # as datasets.TextDataset: a substring test on the path
    log.info("checking %s (%s layout)", root, "birds" if birds else "coco")
    names = {split: _check_split(root / split, report) for split in splits}
    report.captions_pickle = (root / "captions.pickle").is_file()
    if report.captions_pickle:
        _check_captions_pickle(root / "captions.pickle", names, captions_per_image, report)
    keys = list(dict.fromkeys(k for split_keys in names.values() for k in split_keys or []))
    sizes = _check_keys(
        _KeyChecker.for_layout(root, birds, captions_per_image, report, len(keys)), keys, workers, report
    )
    if birds:
        _check_boxes(root / "CUB_200_2011", sizes, report)
    return report


# ---------------------------------------------------------------- pickles


def _load(path: Path, report: CheckReport) -> tuple[bool, Any]:
    """``(True, object)`` of a readable data pickle; ``(False, None)`` after adding the problem."""
    if not path.is_file():
        report.add(path, "missing")
        return False, None
    try:
        return True, load_pickle(path)
    except RefusedGlobalError as err:
        report.add(path, f"refused, not loaded: {_reason(err, path)}")
    except DataError as err:  # missing, unreadable, truncated or not a pickle
        report.add(path, f"unreadable: {_reason(err, path)}")
    return False, None


def _reason(err: BaseException, path: Path) -> str:
    return str(err).removeprefix(f"{path}: ") or type(err).__name__


def _check_split(split_dir: Path, report: CheckReport) -> list[str] | None:
    """The keys of ``split_dir/filenames.pickle`` (None if unusable); checks class_info.pickle."""
    path = split_dir / "filenames.pickle"
    ok, names = _load(path, report)
    if ok and not (isinstance(names, (list, tuple)) and all(isinstance(k, str) for k in names)):
        report.add(path, f"expected a list of image keys (str), got {_describe(names)}")
        ok = False
    info_path = split_dir / "class_info.pickle"
    if info_path.is_file():
        _check_class_info(info_path, len(names) if ok else None, report)
    return list(names) if ok else None


def _check_class_info(path: Path, count: int | None, report: CheckReport) -> None:
    ok, ids = _load(path, report)
    if not ok:
        return
    if not (isinstance(ids, (list, tuple)) and all(isinstance(i, int) for i in ids)):
        report.add(path, f"expected a list of class ids (int), got {_describe(ids)}")
    elif count is not None and len(ids) != count:
        report.add(path, f"{len(ids)} class ids, but filenames.pickle has {count} keys")


def _describe(x: Any) -> str:
    """The type of ``x`` and, for a list, of its items: 'dict', 'list of int/str'."""
    if isinstance(x, (list, tuple)):
        return f"{type(x).__name__} of {'/'.join(sorted({type(v).__name__ for v in x})) or 'nothing'}"
    return type(x).__name__


def _check_captions_pickle(
    path: Path, names: dict[str, list[str] | None], captions_per_image: int, report: CheckReport
) -> None:
    ok, x = _load(path, report)
    if not ok:
        return
    if not (isinstance(x, (list, tuple)) and len(x) == 4):
        report.add(path, f"expected [train_captions, test_captions, ixtoword, wordtoix], got {_describe(x)}")
        return
    ixtoword = x[2]
    if not isinstance(ixtoword, dict) or not isinstance(x[3], dict):
        report.add(path, "ixtoword and wordtoix (parts 3 and 4) must be dicts")
        return
    for index, split in enumerate(("train", "test")):
        if split in names:
            _check_split_captions(path, split, x[index], names[split], captions_per_image, ixtoword, report)


def _check_split_captions(
    path: Path,
    split: str,
    captions: Any,
    keys: list[str] | None,
    captions_per_image: int,
    ixtoword: dict,
    report: CheckReport,
) -> None:
    if not isinstance(captions, (list, tuple)):
        report.add(path, f"{split} captions: expected a list of word-id lists, got {_describe(captions)}")
        return
    if keys is not None and len(captions) != len(keys) * captions_per_image:
        report.add(
            path,
            f"{len(captions)} {split} captions, but {len(keys)} {split} images x "
            f"CAPTIONS_PER_IMAGE {captions_per_image} = {len(keys) * captions_per_image}; "
            "wrong CAPTIONS_PER_IMAGE, or a stale captions.pickle (delete it to rebuild)",
        )
    faults: dict[str, list[int]] = {}
    for i, caption in enumerate(captions):
        fault = _caption_fault(caption, ixtoword)
        if fault:
            faults.setdefault(fault, []).append(i)
    for fault, indices in faults.items():
        shown = ", ".join(_caption_name(i, keys, captions_per_image) for i in indices[:_SHOWN])
        more = f" and {len(indices) - _SHOWN} more" if len(indices) > _SHOWN else ""
        report.add(path, f"{len(indices)} {split} captions {fault}: {shown}{more}")


def _caption_fault(caption: Any, ixtoword: dict) -> str | None:
    if not isinstance(caption, (list, tuple)) or not all(isinstance(i, int) for i in caption):
        return "are not lists of word ids"
    if not caption:
        return "are empty (a zero-length caption breaks the text encoder)"
    if 0 in caption:
        return "contain id 0 ('<end>', the padding) inside the caption"
    if any(i not in ixtoword for i in caption):
        return f"contain ids outside the vocabulary ({len(ixtoword)} words)"
    return None


def _caption_name(index: int, keys: list[str] | None, captions_per_image: int) -> str:
    image = index // captions_per_image
    if keys is None or image >= len(keys):
        return f"#{index}"
    return f"#{index} ({keys[image]} caption {index % captions_per_image + 1})"


# ---------------------------------------------------------------- images and text files


@dataclass(frozen=True)
class _KeyChecker:
    """Checks the image (and, without captions.pickle, the text file) of one key."""

    image_dir: Path | None  # None: not checked (folder missing, already reported)
    text_dir: Path | None
    captions_per_image: int

    @classmethod
    def for_layout(
        cls, root: Path, birds: bool, captions_per_image: int, report: CheckReport, count: int
    ) -> _KeyChecker:
        image_dir = (root / "CUB_200_2011" if birds else root) / "images"
        text_dir = None if report.captions_pickle else root / "text"
        for folder, what in ((image_dir, "images"), (text_dir, "caption files")):
            if folder is not None and count and not folder.is_dir():
                report.add(folder, f"folder missing ({count} {what} expected; see data/README.md)")
        return cls(
            image_dir if image_dir.is_dir() else None,
            text_dir if text_dir is not None and text_dir.is_dir() else None,
            captions_per_image,
        )

    def __call__(self, key: str) -> tuple[list[Problem], tuple[int, int] | None]:
        problems: list[Problem] = []
        size = None if self.image_dir is None else _check_image(self.image_dir / f"{key}.jpg", problems)
        if self.text_dir is not None:
            _check_text(self.text_dir / f"{key}.txt", self.captions_per_image, problems)
        return problems, size


def _check_keys(
    checker: _KeyChecker, keys: list[str], workers: int, report: CheckReport
) -> dict[str, tuple[int, int] | None]:
    """Run ``checker`` on every key (in order); the image size of each key (None if unreadable)."""
    sizes: dict[str, tuple[int, int] | None] = {}
    with ThreadPoolExecutor(workers) if workers > 0 else nullcontext() as pool:
        mapped = (pool.map if pool else map)(checker, keys)
        results = tqdm(mapped, total=len(keys), desc="checking", unit="image", disable=None)
        for key, (problems, size) in zip(keys, results):
            report.problems.extend(problems)
            sizes[key] = size
    report.images = len(keys) if checker.image_dir is not None else 0
    report.caption_files = len(keys) if checker.text_dir is not None else 0
    return sizes


def _check_image(path: Path, problems: list[Problem]) -> tuple[int, int] | None:
    """The image's (width, height) after a full decode; None after adding the problem."""
    if not path.is_file():
        problems.append(Problem(path, "missing image"))
        return None
    try:
        with Image.open(path) as img:
            img.load()  # decodes every byte: verify() alone misses a truncated file
            return img.size
    except Exception as err:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, ...
        problems.append(Problem(path, f"cannot decode image: {err}"))
        return None


def _check_text(path: Path, captions_per_image: int, problems: list[Problem]) -> None:
    """The first ``captions_per_image`` captions, read as ``text.load_captions`` reads them."""
    if not path.is_file():
        problems.append(Problem(path, "missing caption file"))
        return
    try:
        data = path.read_bytes()
    except OSError as err:
        problems.append(Problem(path, f"unreadable: {err.strerror}"))
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        problems.append(
            Problem(
                path,
                f"not UTF-8 (byte {data[err.start]:#04x} at offset {err.start}); the loader would read it as U+FFFD",
            )
        )
        text = data.decode("utf-8", errors="replace")
    captions = [tokenize(line) for line in text.split("\n") if _WORD.search(line)][:captions_per_image]
    if len(captions) < captions_per_image:
        problems.append(
            Problem(path, f"{len(captions)} non-empty captions, CAPTIONS_PER_IMAGE needs {captions_per_image}")
        )
    empty = [i + 1 for i, tokens in enumerate(captions) if not tokens]
    if empty:
        problems.append(Problem(path, f"captions {empty} have no ASCII word: they would load empty"))


# ---------------------------------------------------------------- CUB boxes


def _check_boxes(cub: Path, sizes: dict[str, tuple[int, int] | None], report: CheckReport) -> None:
    """images.txt and bounding_boxes.txt: readable, row for row, a valid box for every key."""
    images_txt, boxes_txt = cub / "images.txt", cub / "bounding_boxes.txt"
    files = _read_table(images_txt, ["id", "name"], report)
    boxes = _read_table(boxes_txt, ["id", "x", "y", "w", "h"], report)
    if files is None or boxes is None:
        return
    if len(files) != len(boxes):
        report.add(boxes_txt, f"{len(boxes)} rows, but images.txt has {len(files)}; the loader pairs them row by row")
    elif not (files["id"].to_numpy() == boxes["id"].to_numpy()).all():
        report.add(boxes_txt, "image ids not in the order of images.txt; the loader pairs them row by row")
    id_of = {str(name).removesuffix(".jpg"): image_id for image_id, name in zip(files["id"], files["name"])}
    row_of = {image_id: row for row, image_id in enumerate(boxes["id"])}
    values = boxes[["x", "y", "w", "h"]].to_numpy()
    for key, size in sizes.items():
        if key not in id_of:
            report.add(images_txt, f"{key!r} is not listed")
        elif id_of[key] not in row_of:
            report.add(boxes_txt, f"no box for {key!r} (image id {id_of[key]})")
        else:
            row = row_of[id_of[key]]
            box = [int(v) for v in values[row]]  # truncated, as load_bboxes
            fault = _box_fault(box, size)
            if fault:
                report.add(boxes_txt, f"row {row + 1}: box {box} of {key!r} {fault}")


def _read_table(path: Path, columns: list[str], report: CheckReport) -> pd.DataFrame | None:
    """A whitespace-separated table of ``columns`` (all but 'name' numeric), as load_bboxes reads it."""
    if not path.is_file():
        report.add(path, "missing")
        return None
    try:
        table = pd.read_csv(path, sep=r"\s+", header=None)
    except (OSError, ValueError) as err:  # pandas' ParserError and EmptyDataError are ValueErrors
        report.add(path, f"unreadable: {err}")
        return None
    if table.shape[1] != len(columns):
        report.add(path, f"{table.shape[1]} columns, expected {len(columns)} ({' '.join(columns)})")
        return None
    table.columns = columns
    numeric = [c for c in columns if c != "name"]
    try:
        table[numeric] = table[numeric].apply(pd.to_numeric)
    except ValueError as err:
        report.add(path, f"non-numeric value: {err}")
        return None
    return table


def _box_fault(box: list[int], size: tuple[int, int] | None) -> str | None:
    x, y, w, h = box
    if w <= 0 or h <= 0:
        return "has no area"
    if size is not None and (x < 0 or y < 0 or x + w > size[0] or y + h > size[1]):
        return f"is outside the {size[0]}x{size[1]} image"
    return None


# ---------------------------------------------------------------- CLI


def _settings(args: argparse.Namespace) -> tuple[str, int]:
    """DATA_DIR and CAPTIONS_PER_IMAGE from the arguments and the optional config."""
    cfg = load_config(args.cfg) if args.cfg else None
    data_dir = args.data_dir or (cfg.DATA_DIR if cfg else "")
    if not data_dir:
        raise OptionError("no dataset: give --data_dir, or --cfg with a DATA_DIR")
    cpi = args.captions_per_image
    if cpi is None:
        cpi = cfg.TEXT.CAPTIONS_PER_IMAGE if cfg else 10
    if cpi < 1:
        raise OptionError(f"captions per image must be >= 1, got {cpi}")
    return data_dir, cpi


def main(argv: list[str] | None = None) -> int:
    """CLI: check a dataset; 0 when clean, 1 when problems, 2 for bad arguments."""
    parser = CommandParser(
        prog="attngan-check-data", description="Report every missing or unreadable file of a dataset before a long run."
    )
    parser.add_argument("--cfg", help="config file (its DATA_DIR and TEXT.CAPTIONS_PER_IMAGE)")
    parser.add_argument("--data_dir", help="dataset folder (overrides the config's DATA_DIR)")
    parser.add_argument(
        "--captions_per_image", type=int, default=None, help="captions per image (default: the config's, else 10)"
    )
    parser.add_argument("--splits", nargs="+", default=["train", "test"])
    parser.add_argument(
        "--workers", type=int, default=min(8, os.cpu_count() or 1), help="image-decoding threads (0: none)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        data_dir, cpi = _settings(args)
    except USER_ERRORS as err:  # ConfigError is a ValueError
        return errors.report(err)
    report = scan_dataset(data_dir, cpi, args.splits, max(args.workers, 0))
    for problem in report.problems:
        print(problem)
    if report.problems:
        print(f"{len(report.problems)} problems in {data_dir} ({report.summary()})")
        return 1
    print(f"{data_dir}: {report.summary()}: OK")
    return 0
