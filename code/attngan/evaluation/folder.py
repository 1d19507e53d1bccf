"""A folder of images with its ``captions.jsonl`` manifest: read back and scored
(``--image_dir``), or written while generating (``--save_images``)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from ..errors import DataError
from ..files import json_objects, write_atomic
from .captions import Batch, EvalCaptions, encode, inverse, sample_rows

MANIFEST = "captions.jsonl"


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class ManifestEntry:
    path: Path
    caption: str
    class_id: int  # -1 when the manifest gives none
    line: int


def read_manifest(image_dir: str | Path) -> list[ManifestEntry]:
    """The entries of ``image_dir/captions.jsonl``: one JSON object a line with "file" (a
    path relative to the folder), "caption" and optionally "class_id" (an int); other
    fields are ignored. Every line and every image's existence is checked up front; an
    error names the manifest, the line and the file."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise DataError(f"image folder not found: {image_dir}")
    manifest = image_dir / MANIFEST
    if not manifest.is_file():
        raise DataError(
            f"{manifest} not found: a folder of images to score needs a manifest, one JSON "
            'object a line: {"file": "0001.png", "caption": "...", "class_id": 3} '
            "(class_id optional), see docs/evaluation.md"
        )
    entries = [
        _manifest_entry(image_dir, where, number, record)
        for number, where, record in json_objects(
            manifest.read_text(encoding="utf-8"), manifest, '"file" and "caption"'
        )
    ]
    if not entries:
        raise DataError(f"{manifest} lists no image")
    return entries


def _manifest_entry(image_dir: Path, where: str, number: int, record: dict) -> ManifestEntry:
    for key in ("file", "caption"):
        if not isinstance(record.get(key), str):
            raise DataError(f'{where}: "{key}" must be a string, got {record.get(key)!r}')
    class_id = record.get("class_id", -1)
    if not isinstance(class_id, int) or isinstance(class_id, bool):
        raise DataError(f'{where}: "class_id" must be an integer, got {class_id!r}')
    path = image_dir / record["file"]
    if not path.is_file():
        raise DataError(f"{where}: image not found: {path}")
    return ManifestEntry(path, record["caption"], class_id, number)


def _read_image(entry: ManifestEntry, manifest: Path) -> np.ndarray:
    try:
        with Image.open(entry.path) as img:
            return np.asarray(img.convert("RGB"))
    except OSError as err:
        raise DataError(f"{manifest} line {entry.line}: cannot read image {entry.path}: {err}") from err


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
                raise DataError(
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
    ``images/captions.jsonl`` (written last), which ``--image_dir`` reads back."""

    def __init__(self, folder: Path, captions: EvalCaptions | None):
        self.folder, self.captions, self.lines = folder, captions, []

    def add(self, batch: Batch) -> None:
        for j, pixels in enumerate(batch.images.permute(0, 2, 3, 1).cpu().numpy()):
            index = batch.start + j
            name = f"{index:06d}.png"
            write_atomic(self.folder / name, png_bytes(pixels))
            record = {"file": name, "caption": batch.texts[j], "class_id": int(batch.classes[j])}
            if self.captions is not None:
                row = int(sample_rows(index, index + 1, len(self.captions))[0])
                record.update(key=self.captions.keys[row], caption_index=row % self.captions.captions_per_image)
            self.lines.append(json.dumps(record))

    def close(self) -> Path:
        path = self.folder / MANIFEST
        write_atomic(path, ("\n".join(self.lines) + "\n").encode("utf-8"))
        return path
