"""Object match on a dataset with ground-truth objects (the generated shapes dataset's
``objects.json``): does a generated image draw the object its caption names, in the
named colour and shape? A check without a learned model, so that it cannot be fooled
the way a classifier can, and reads like a look at the image.

Rules, for each generated image, its test image's objects, and the words of its caption:

- An object is *named* when its colour word and its shape word are both among the
  caption's words; it is scored when no other object of the image has its colour.
- The image is area-downsampled to the dataset's image size. The object's *region* is the
  largest 4-connected set of pixels whose nearest palette colour is the object's and lies
  within ``COLOUR_TOLERANCE`` of it (RGB distance). *Colour right*: the region covers
  between ``MIN_AREA`` and ``MAX_AREA`` of the image.
- *Shape right*: the colour is right and, of the dataset's shapes drawn into the region's
  bounding box the way the dataset draws them, the named one overlaps the region best
  (intersection over union) with an IoU of at least ``MIN_IOU``.
- Position and size are not checked (localisation scores where attention goes).
- *Chance*: the same images checked against the objects of the next test image's caption
  (the first caption of image ``(i + 1) mod N`` for image ``i``): what drawing without
  reading the caption scores.

The real test images score 100 % on both (tests/test_object_match.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from skimage.measure import label

from attngan.data.shapes import draw_object

COLOUR_TOLERANCE = 80.0
MIN_AREA, MAX_AREA = 0.003, 0.7
MIN_IOU = 0.6


@dataclass
class ObjectMatch:
    """Shares of the scored objects drawn in the right colour and in the right shape (a
    right shape needs the right colour), and the same against mismatched captions
    (``chance_*``); NaN when no object was scored."""

    colour: float
    shape: float
    objects: int
    chance_colour: float
    chance_shape: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def shape_masks(shapes: Sequence[str], width: int, height: int) -> list[np.ndarray]:
    """Each shape drawn filling a ``width`` x ``height`` box: boolean [height, width] masks."""
    masks = []
    for shape in shapes:
        canvas = Image.new("L", (width, height), 0)
        draw_object(ImageDraw.Draw(canvas), shape, (0, 0, width, height), 1)
        masks.append(np.asarray(canvas, dtype=bool))
    return masks


class ObjectJudge:
    """Colour and shape checks of one dataset's objects (its ``objects.json``)."""

    def __init__(self, objects: dict[str, Any]) -> None:
        self.objects = objects
        self.size = int(objects["image_size"])
        self.shapes = list(objects["shapes"])
        self.colour_names = list(objects["colors"])
        self.palette = np.asarray([objects["colors"][c] for c in self.colour_names], dtype=np.float32)

    def scored_objects(self, key: str, words: Sequence[str]) -> list[dict[str, Any]]:
        """The objects of image ``key`` that ``words`` name and that alone have their colour."""
        entries = self.objects["images"][key]["objects"]
        colours = [obj["color"] for obj in entries]
        tokens = set(words)
        return [
            obj
            for obj in entries
            if obj["color"] in tokens and obj["shape"] in tokens and colours.count(obj["color"]) == 1
        ]

    def check(self, pixels: np.ndarray, obj: dict[str, Any]) -> tuple[bool, bool]:
        """(colour right, shape right) of one object in a uint8 [size, size, 3] image."""
        distance = np.linalg.norm(pixels[:, :, None, :].astype(np.float32) - self.palette, axis=-1)
        index = self.colour_names.index(obj["color"])
        mask = (distance.argmin(axis=-1) == index) & (distance[:, :, index] <= COLOUR_TOLERANCE)
        labels, count = label(mask, connectivity=1, return_num=True)
        if count == 0:
            return False, False
        areas = np.bincount(labels.ravel())[1:]
        if not MIN_AREA <= areas.max() / mask.size <= MAX_AREA:
            return False, False
        largest = labels == areas.argmax() + 1
        ys, xs = np.nonzero(largest)
        region = largest[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        ious = [(region & m).sum() / (region | m).sum() for m in shape_masks(self.shapes, *region.shape[::-1])]
        best = int(np.argmax(ious))
        return True, self.shapes[best] == obj["shape"] and ious[best] >= MIN_IOU

    def downsample(self, images: torch.Tensor) -> np.ndarray:
        """uint8 [b,3,s,s] -> uint8 [b,size,size,3], area-averaged."""
        if images.size(-1) != self.size:
            images = F.interpolate(images.float(), size=(self.size, self.size), mode="area").round().to(torch.uint8)
        return images.permute(0, 2, 3, 1).cpu().numpy()


class ObjectTally:
    """Object-match results accumulated over batches of generated images."""

    def __init__(self, judge: ObjectJudge, keys: Sequence[str], texts: Sequence[str], captions_per_image: int) -> None:
        """``keys`` and ``texts``: the image key and the text of every test caption, image-major."""
        self.judge, self.keys, self.texts, self.cpi = judge, list(keys), list(texts), captions_per_image
        self.right: list[tuple[bool, bool]] = []
        self.chance: list[tuple[bool, bool]] = []

    def add(self, images: torch.Tensor, rows: Sequence[int], words: Sequence[Sequence[str]]) -> None:
        """Images (uint8 [b,3,s,s]) drawn for the test captions ``rows``, whose words the
        generator read are ``words``."""
        for pixels, row, tokens in zip(self.judge.downsample(images), rows, words):
            for obj in self.judge.scored_objects(self.keys[row], tokens):
                self.right.append(self.judge.check(pixels, obj))
            other = (row // self.cpi * self.cpi + self.cpi) % len(self.keys)
            for obj in self.judge.scored_objects(self.keys[other], self.texts[other].split()):
                self.chance.append(self.judge.check(pixels, obj))

    def result(self) -> ObjectMatch:
        right = np.asarray(self.right, dtype=bool).reshape(-1, 2)
        chance = np.asarray(self.chance, dtype=bool).reshape(-1, 2)
        return ObjectMatch(
            colour=_share(right[:, 0]),
            shape=_share(right[:, 1]),
            objects=len(right),
            chance_colour=_share(chance[:, 0]),
            chance_shape=_share(chance[:, 1]),
        )


def _share(flags: np.ndarray) -> float:
    return float(flags.mean()) if flags.size else float("nan")
