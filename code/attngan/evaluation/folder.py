"""A folder of images with the manifest of their captions (data/manifest.py, the one
attngan-make-dataset reads): read back and scored (``--image_dir``), or written while
generating (``--save_images``: Hugging Face ImageFolder's ``metadata.jsonl``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from ..data.manifest import DatasetError, find_manifest, image_path, read_manifest
from ..files import write_atomic
from ..visualize import png_bytes
from .captions import Batch, EvalCaptions, encode, inverse, sample_rows

MANIFEST = "metadata.jsonl"  # what --save_images writes: Hugging Face ImageFolder's


@dataclass
class ManifestEntry:
    path: Path
    caption: str
    class_id: int  # -1 when the manifest gives none
    line: int


@dataclass
class ImageFolder:
    """A folder of images to score: its manifest file and one entry an image, in its order."""

    manifest: Path
    entries: list[ManifestEntry]


def read_folder(image_dir: str | Path) -> ImageFolder:
    """The images of ``image_dir`` and their captions, from the manifest in it
    (docs/captioned_images.md: ``metadata.csv``, ``metadata.jsonl`` or ``captions.jsonl``):
    one row an image, one caption a row, the class column (optional) the test split's class
    id. Every row and every image's existence is checked up front; a DatasetError names the
    manifest, the line and the file."""
    image_dir = Path(image_dir)
    manifest = read_manifest(find_manifest(image_dir, "--image_dir"))
    entries = []
    for row in manifest.rows:
        where = manifest.where(row)
        if len(row.captions) != 1:
            raise DatasetError(
                f'{where}: "{manifest.columns.text}" holds {len(row.captions)} captions; an image to score '
                "has the one it was generated from"
            )
        try:
            class_id = int(row.label) if row.label else -1
        except ValueError:
            raise DatasetError(
                f'{where}: "{manifest.columns.label}" must be an integer (the class id of the caption\'s test '
                f"image), got {row.label!r}"
            ) from None
        entries.append(ManifestEntry(image_path(image_dir, row.file, where)[1], row.captions[0], class_id, row.line))
    return ImageFolder(manifest.path, entries)


def _read_image(entry: ManifestEntry, manifest: Path) -> np.ndarray:
    try:
        with Image.open(entry.path) as img:
            return np.asarray(img.convert("RGB"))
    except OSError as err:
        raise DatasetError(f"{manifest} line {entry.line}: cannot read image {entry.path}: {err}") from err


def folder_batches(
    entries: list[ManifestEntry],
    manifest: Path,
    text_encoder: nn.Module,
    wordtoix: dict[str, int],
    device: torch.device,
    batch_size: int,
) -> Iterator[Batch]:
    """The listed images in manifest order, with their captions' sentence vectors. All
    images must have the size of the first one (batches are stacked)."""
    size = None
    for start in range(0, len(entries), batch_size):
        chunk = entries[start : start + batch_size]
        texts = [e.caption for e in chunk]
        encoded, _, sent_emb, _ = encode(texts, text_encoder, wordtoix, device, str(manifest), [e.line for e in chunk])
        pixels = []
        for entry in chunk:
            image = _read_image(entry, manifest)
            size = size or image.shape
            if image.shape != size:
                raise DatasetError(
                    f"{manifest} line {entry.line}: {entry.path} is {image.shape[1]}x{image.shape[0]} "
                    f"but the first image is {size[1]}x{size[0]}; every image must have the same size"
                )
            pixels.append(image)
        images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous().to(device)
        back = inverse(encoded.sorted_indices)
        yield Batch(
            start,
            images,
            sent_emb[torch.as_tensor(back, device=device)],
            np.array([e.class_id for e in chunk]),
            texts,
            [encoded.words[j] for j in back],
        )


class ImageSaver:
    """``--save_images``: every scored image as ``images/<index>.png`` and the manifest
    ``images/metadata.jsonl`` (written last; ``file_name``, ``text``, ``class_id``, and the
    test image's ``key`` and ``caption_index``), which ``--image_dir`` reads back and
    Hugging Face's ``load_dataset("imagefolder")`` reads too."""

    def __init__(self, folder: Path, captions: EvalCaptions | None):
        self.folder, self.captions, self.lines = folder, captions, []

    def add(self, batch: Batch) -> None:
        for j, pixels in enumerate(batch.images.permute(0, 2, 3, 1).cpu().numpy()):
            index = batch.start + j
            name = f"{index:06d}.png"
            write_atomic(self.folder / name, png_bytes(pixels))
            record = {"file_name": name, "text": batch.texts[j], "class_id": int(batch.classes[j])}
            if self.captions is not None:
                row = int(sample_rows(index, index + 1, len(self.captions))[0])
                record.update(key=self.captions.keys[row], caption_index=row % self.captions.captions_per_image)
            self.lines.append(json.dumps(record))

    def close(self) -> Path:
        path = self.folder / MANIFEST
        write_atomic(path, ("\n".join(self.lines) + "\n").encode("utf-8"))
        return path
