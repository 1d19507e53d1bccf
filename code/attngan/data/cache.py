"""Decoded images kept on disk (RUN.IMAGE_CACHE): every image of a split decoded, cropped
to its bird box and resized once, to the size the random crop is taken from, and stored
as uint8 in one memory-mapped file beside a JSON index. An item then costs a slice of
that file instead of a JPEG decode and a resize; the rest of the transform (random crop,
flip) and the smaller stages' resizes run on those pixels as before, so that an item is
the same to the bit (datasets.TextDataset). The index holds
a fingerprint of the sources (paths, sizes, modification times, boxes) and the size: any
change rebuilds the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms as transforms
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..errors import DataError, SetupError
from ..files import write_atomic

log = logging.getLogger(__name__)
VERSION = 1  # of the file layout and of the decoding below


def open_rgb(path: Path) -> Image.Image:
    """The image at ``path`` in RGB; a missing or unreadable file is an error naming it."""
    if not path.is_file():
        raise DataError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        raise DataError(
            f"cannot read image {path} (truncated or corrupt?): {err}; attngan-check-data lists every "
            "unreadable file of a dataset"
        ) from err


def crop_box(bbox: list[int] | tuple[int, ...], width: int, height: int) -> tuple[int, int, int, int]:
    """The original's square crop ``(x1, y1, x2, y2)``: 0.75 * max(w, h) around the box centre, clipped."""
    x, y, w, h = bbox
    r = int(max(w, h) * 0.75)
    cx = int((2 * x + w) / 2)
    cy = int((2 * y + h) / 2)
    return max(0, cx - r), max(0, cy - r), min(width, cx + r), min(height, cy + r)


def decode(path: Path, bbox: list[int] | None, resize: transforms.Resize | None = None) -> Image.Image:
    """An image as the original's loader sees it before its transform: RGB, cropped to
    the bird box when there is one; then ``resize`` (the transform's first step) if given."""
    img = open_rgb(path)
    if bbox is not None:
        img = img.crop(crop_box(bbox, *img.size))
    return resize(img) if resize is not None else img


class _Decoded(Dataset):
    def __init__(self, paths: list[Path], boxes: list | None, resize: transforms.Resize):
        self.paths, self.boxes, self.resize = paths, boxes, resize

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        box = self.boxes[i] if self.boxes is not None else None
        return np.array(decode(self.paths[i], box, self.resize))


def fingerprint(paths: list[Path], boxes: list | None, resize: transforms.Resize) -> str:
    digest = hashlib.sha256(f"v{VERSION} size {resize.size} {resize.interpolation} {len(paths)}".encode())
    for i, path in enumerate(paths):
        stat = path.stat() if path.is_file() else None
        box = boxes[i] if boxes is not None else None
        digest.update(f"{path}|{stat and stat.st_size}|{stat and stat.st_mtime_ns}|{box}\n".encode())
    return digest.hexdigest()


class ImageCache:
    """The cached pixels of one split: ``cache[i]`` is image i as a PIL RGB image. The
    memory map is opened on first use in each process (DataLoader workers included)."""

    def __init__(self, data_path: Path, shapes: list[list[int]]):
        self.data_path, self.shapes = data_path, shapes
        sizes = [h * w * 3 for h, w in shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._pixels: np.memmap | None = None

    def __len__(self) -> int:
        return len(self.shapes)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pixels": None}

    def __getitem__(self, i: int) -> Image.Image:
        if self._pixels is None:
            self._pixels = np.memmap(self.data_path, dtype=np.uint8, mode="r")
        h, w = self.shapes[i]
        return Image.fromarray(np.asarray(self._pixels[self.offsets[i] : self.offsets[i + 1]]).reshape(h, w, 3))


def open_cache(
    cache_dir: Path, name: str, paths: list[Path], boxes: list | None, resize: transforms.Resize, workers: int = 0
) -> ImageCache:
    """The cache ``cache_dir/name.{u8,json}`` of ``paths`` (with ``boxes``) after ``resize``,
    built first (decoding with ``workers`` processes) if missing or stale."""
    data_path, index_path = cache_dir / f"{name}.u8", cache_dir / f"{name}.json"
    key = fingerprint(paths, boxes, resize)
    if index_path.is_file() and data_path.is_file():
        try:
            index = json.loads(index_path.read_text())
        except ValueError:
            index = {}
        if index.get("fingerprint") == key and data_path.stat().st_size == index.get("bytes"):
            return ImageCache(data_path, index["shapes"])
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SetupError(
            f"cannot create the image cache folder {cache_dir} ({err.strerror}): set RUN.CACHE_DIR "
            "to a writable folder, or RUN.IMAGE_CACHE to False"
        ) from err
    if not os.access(cache_dir, os.W_OK):
        raise SetupError(
            f"the image cache folder {cache_dir} is not writable: set RUN.CACHE_DIR to a writable "
            "folder, or RUN.IMAGE_CACHE to False"
        )
    log.info(
        "caching %d decoded images at size %s in %s (once; rebuilt when the images change)",
        len(paths),
        resize.size,
        data_path,
    )
    shapes: list[list[int]] = []

    def write(f) -> None:
        workers_here = min(workers, os.cpu_count() or 1)
        # Its own generator: the loader draws a seed, which must not move the global one (a run
        # would otherwise start from other weights when its cache had to be built).
        loader = DataLoader(
            _Decoded(paths, boxes, resize),
            batch_size=None,
            num_workers=workers_here,
            generator=torch.Generator().manual_seed(0),
        )
        for pixels in tqdm(loader, desc=f"caching {name}", leave=False, dynamic_ncols=True, disable=None):
            shapes.append(list(pixels.shape[:2]))
            f.write(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())

    write_atomic(data_path, write)
    index = {"version": VERSION, "fingerprint": key, "bytes": os.path.getsize(data_path), "shapes": shapes}
    write_atomic(index_path, json.dumps(index).encode())
    return ImageCache(data_path, shapes)
