"""Deterministic synthetic captioned dataset ("shapes") for the demo and the tests.

Each image is a plain background with one to ``max_objects`` filled shapes placed in
distinct cells of a 3x3 grid; each image gets ten captions from varied templates. The
files follow the COCO layout of the original AttnGAN (``images/``, ``text/``,
``{train,test}/filenames.pickle``) plus ``class_info.pickle`` (class of the main object)
and ``objects.json`` (every object's box and naming words, to score attention maps).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from attngan.data.shapes import COLORS, SHAPES, class_id, draw_object
from attngan.dataset_tools.writing import (
    check_out_dir,
    make_layout,
    save_captions,
    save_examples,
    save_image,
    save_split,
    write_into_place,
)
from attngan.errors import USER_ERRORS, CommandParser, report

from ..errors import OptionError

logger = logging.getLogger(__name__)

SIZES: tuple[str, ...] = ("small", "large")
SIZE_FRACTION = {"small": 0.5, "large": 0.85}  # side of the shape / side of a grid cell

# Location phrases of the 3x3 grid cells, indexed by (row, column).
LOCATIONS: dict[tuple[int, int], tuple[str, ...]] = {
    (0, 0): ("at the top left", "in the upper left corner", "in the top left corner"),
    (0, 1): ("at the top", "at the top middle", "near the top edge"),
    (0, 2): ("at the top right", "in the upper right corner", "in the top right corner"),
    (1, 0): ("on the left", "on the left side", "in the middle left"),
    (1, 1): ("in the center", "in the middle", "at the center"),
    (1, 2): ("on the right", "on the right side", "in the middle right"),
    (2, 0): ("at the bottom left", "in the lower left corner", "in the bottom left corner"),
    (2, 1): ("at the bottom", "at the bottom middle", "near the bottom edge"),
    (2, 2): ("at the bottom right", "in the lower right corner", "in the bottom right corner"),
}
SHORT_LOCATIONS: dict[tuple[int, int], str] = {
    (0, 0): "top left",
    (0, 1): "top",
    (0, 2): "top right",
    (1, 0): "left",
    (1, 1): "center",
    (1, 2): "right",
    (2, 0): "bottom left",
    (2, 1): "bottom",
    (2, 2): "bottom right",
}

# Fields: {m} main object ("a small red circle"), {bare} "red circle", {loc} location
# phrase of the main object, {short} short location, {bg} background colour, {bg_np}
# "a blue background", {others} the secondary objects ("a yellow triangle and a blue
# square").
SINGLE_TEMPLATES: tuple[str, ...] = (
    "{m} {loc}",
    "{m} {loc} on {bg_np}",
    "there is {bg_np} with {m} {loc}",
    "{bare}, {short}, on {bg}",
    "{m} on {bg_np}",
    "the picture shows {m} {loc}",
    "this image has {m} {loc}",
    "{loc} there is {m}",
    "{bg_np} with {m} {loc}",
    "{m} is drawn {loc}",
    "we see {m} {loc}",
)
MULTI_TEMPLATES: tuple[str, ...] = (
    "{m} {loc} and {others}",
    "the picture shows {m} {loc} and {others}",
    "{m} and {others} on {bg_np}",
    "{bg_np} with {m} and {others}",
    "there is {m} {loc} and also {others}",
    "{bare}, {short}, with {others}",
    "{m} {loc}, plus {others}",
    "this image has {m} and {others}",
    "we see {m} {loc} and {others} on {bg}",
)
MIN_WORDS, MAX_WORDS = 4, 18
MIN_EXAMPLES = 8  # lines of example_captions.txt with a small palette
CAPTIONS_MENTIONING_ALL = 3  # captions per image that name every object, when several

# What may sit in a dataset folder that --force replaces: the files written here and
# captions.pickle, which the loader builds from text/ on first use.
DATASET_ENTRIES = frozenset(
    {
        "images",
        "text",
        "train",
        "test",
        "objects.json",
        "example_filenames.txt",
        "example_captions.txt",
        "README.txt",
        "captions.pickle",
    }
)


@dataclass(frozen=True)
class ShapeObject:
    """One object of a scene; ``cell`` is its (row, column) in the 3x3 grid."""

    shape: str
    color: str
    size: str
    cell: tuple[int, int]

    @property
    def words(self) -> list[str]:
        """The caption words that name this object."""
        return [self.color, self.shape]


@dataclass(frozen=True)
class Scene:
    """A background colour and its objects; the first object is the main one."""

    background: str
    objects: tuple[ShapeObject, ...]


def _sample_scene(
    rng: np.random.Generator, max_objects: int, colors: list[str], main: tuple[str, str] | None = None
) -> Scene:
    """Random scene in the palette ``colors``; ``main`` forces the (shape, colour) of the
    main object.

    Objects sit in distinct grid cells, have distinct (shape, colour) pairs, differ in
    colour from the background, and none is larger than the main object.
    """
    num = int(rng.integers(1, max_objects + 1))
    cells = rng.choice(9, size=num, replace=False)
    main_size = SIZES[int(rng.integers(len(SIZES)))]
    if main is None:
        main = (SHAPES[int(rng.integers(len(SHAPES)))], colors[int(rng.integers(len(colors)))])
    background = str(rng.choice([c for c in colors if c != main[1]]))
    pairs = [main]
    sizes = [main_size]
    while len(pairs) < num:
        pair = (SHAPES[int(rng.integers(len(SHAPES)))], str(rng.choice([c for c in colors if c != background])))
        if pair not in pairs:
            pairs.append(pair)
            sizes.append(SIZES[int(rng.integers(SIZES.index(main_size) + 1))])
    objects = tuple(
        ShapeObject(shape, color, size, divmod(int(cell), 3)) for (shape, color), size, cell in zip(pairs, sizes, cells)
    )
    return Scene(background, objects)


def _shape_box(
    obj: ShapeObject, image_size: int, rng: np.random.Generator, object_scale: float = 1.0
) -> tuple[int, int, int, int]:
    """Box (x, y, w, h) of the object: a square inside its grid cell, 1 px margin; with
    ``object_scale`` > 1, a square of that many times the side, centred near the cell's
    centre (jitter of 1/16 of the image) and kept inside the image."""
    row, col = obj.cell
    x0, x1 = col * image_size // 3, (col + 1) * image_size // 3
    y0, y1 = row * image_size // 3, (row + 1) * image_size // 3
    side = max(2, round(SIZE_FRACTION[obj.size] * object_scale * image_size / 3))
    if object_scale > 1:
        side = min(side, image_size)
        jitter = image_size // 16
        x, y = ((lo + hi) / 2 - side / 2 + int(rng.integers(-jitter, jitter + 1)) for lo, hi in ((x0, x1), (y0, y1)))
        return (
            int(min(max(round(x), 0), image_size - side)),
            int(min(max(round(y), 0), image_size - side)),
            side,
            side,
        )
    side = min(side, x1 - x0 - 2, y1 - y0 - 2)
    x = x0 + 1 + int(rng.integers(x1 - x0 - 2 - side + 1))
    y = y0 + 1 + int(rng.integers(y1 - y0 - 2 - side + 1))
    return x, y, side, side


def _render(
    scene: Scene, image_size: int, rng: np.random.Generator, object_scale: float = 1.0
) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """Draw the scene; returns the RGB image and the box of every object."""
    image = Image.new("RGB", (image_size, image_size), COLORS[scene.background])
    draw = ImageDraw.Draw(image)
    boxes = []
    for obj in scene.objects:
        box = _shape_box(obj, image_size, rng, object_scale)
        draw_object(draw, obj.shape, box, COLORS[obj.color])
        boxes.append(box)
    return image, boxes


def _with_article(words: list[str]) -> str:
    article = "an" if words[0][0] in "aeiou" else "a"
    return " ".join([article, *words])


def _noun_phrase(obj: ShapeObject, with_size: bool) -> str:
    """'a small red circle' (with_size) or 'a red circle'."""
    return _with_article(([obj.size] if with_size else []) + obj.words)


def _fill_template(template: str, scene: Scene, rng: np.random.Generator) -> str:
    main, others = scene.objects[0], scene.objects[1:]
    others_sized = len(others) == 1 and bool(rng.integers(2))
    return template.format(
        m=_noun_phrase(main, with_size=bool(rng.integers(2))),
        bare=" ".join(main.words),
        loc=str(rng.choice(LOCATIONS[main.cell])),
        short=SHORT_LOCATIONS[main.cell],
        bg=scene.background,
        bg_np=_with_article([scene.background, "background"]),
        others=" and ".join(_noun_phrase(o, others_sized) for o in others),
    )


def _word_count(caption: str) -> int:
    return len(caption.replace(",", " ").split())


def _caption(scene: Scene, mention_all: bool, taken: set[str], rng: np.random.Generator) -> str:
    """One caption within the word limits, new among ``taken`` when possible."""
    templates = MULTI_TEMPLATES if mention_all else SINGLE_TEMPLATES
    fallback = None
    for index in rng.permutation(len(templates)):
        caption = _fill_template(templates[index], scene, rng)
        if MIN_WORDS <= _word_count(caption) <= MAX_WORDS:
            if caption not in taken:
                return caption
            fallback = caption
    if fallback is None:
        raise RuntimeError(f"no caption template fits {scene}")
    return fallback


def _captions(scene: Scene, count: int, rng: np.random.Generator) -> list[str]:
    """``count`` captions, all naming the main object; when the scene has several
    objects, the first CAPTIONS_MENTIONING_ALL (before shuffling) name every object and
    the others do so with probability 1/2."""
    several = len(scene.objects) > 1
    captions: list[str] = []
    for k in range(count):
        mention_all = several and (k < CAPTIONS_MENTIONING_ALL or bool(rng.integers(2)))
        captions.append(_caption(scene, mention_all, set(captions), rng))
    return [captions[i] for i in rng.permutation(count)]


def _write_readme(path: Path, args: dict[str, Any]) -> None:
    settings = ", ".join(f"{k}={v}" for k, v in args.items())
    path.write_text(
        "This synthetic captioned dataset of coloured shapes was generated by "
        "attngan.dataset_tools.synthetic.make_shapes_dataset (command attngan-make-shapes) and "
        f"is fully determined by its arguments: {settings}. It follows the COCO layout "
        "of the original AttnGAN (images/, text/, train/ and test/ filenames.pickle) "
        "plus class_info.pickle (class of the main object, shape x colour, from 1) and "
        "objects.json (box and naming words of every object). Regenerate it rather "
        "than editing it.\n",
        encoding="ascii",
    )


def _write_examples(out_dir: Path, max_objects: int, colors: list[str], rng: np.random.Generator) -> None:
    """example_captions.txt: one caption for each colour, shapes in turn, then again with
    the shapes shifted by one, until there are at least MIN_EXAMPLES (distinct pairs)."""
    pairs = [
        (SHAPES[(i + shift) % len(SHAPES)], color) for shift in range(len(SHAPES)) for i, color in enumerate(colors)
    ]
    lines = []
    for main in pairs[: max(len(colors), MIN_EXAMPLES)]:
        scene = _sample_scene(rng, max_objects, colors, main=main)
        lines.append(_caption(scene, len(scene.objects) > 1, set(), rng))
    save_examples(out_dir, lines)


def _validate(
    num_images: int,
    image_size: int,
    test_fraction: float,
    captions_per_image: int,
    max_objects: int,
    object_scale: float,
    colors: list[str],
) -> None:
    if num_images < 2:
        raise OptionError(f"num_images must be >= 2, got {num_images}")
    if image_size < 16:
        raise OptionError(f"image_size must be >= 16, got {image_size}")
    if not 0 < test_fraction < 1:
        raise OptionError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if captions_per_image < 1:
        raise OptionError(f"captions_per_image must be >= 1, got {captions_per_image}")
    if not 1 <= max_objects <= 9:
        raise OptionError(f"max_objects must be in 1..9, got {max_objects}")
    if not 0 < object_scale <= 3:
        raise OptionError(f"object_scale must be in (0, 3], got {object_scale}")
    unknown = [c for c in colors if c not in COLORS]
    if unknown:
        raise OptionError(f"colors: unknown colour(s) {', '.join(map(repr, unknown))}; known: {', '.join(COLORS)}")
    if len(set(colors)) != len(colors) or len(colors) < 2:
        raise OptionError(
            f"colors must name at least two distinct colours (the background differs from "
            f"the main object's), got {colors}"
        )


def make_shapes_dataset(
    out_dir: str | Path,
    num_images: int = 1200,
    image_size: int = 64,
    seed: int = 0,
    test_fraction: float = 1 / 6,
    captions_per_image: int = 10,
    max_objects: int = 3,
    object_scale: float = 1.0,
    colors: Sequence[str] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the shapes dataset to ``out_dir``; the same arguments give identical files.

    ``object_scale`` > 1 draws larger objects, centred on their grid cells (they may
    overlap when there are several): the easier data the demo trains on. ``colors``: the
    palette, a subset of COLORS (default: all of them). With fewer colours, more pairs of
    a batch share their colours and differ in shape only, so a contrastive loss must see
    shapes sooner.
    Written into the sibling folder ``.<name>.partial`` first and moved into place at
    the end, so a failure leaves an existing dataset untouched. Raises OutputError if ``out_dir``
    is non-empty and not ``overwrite`` (and always if it holds files of its own).
    Returns a summary: out_dir, num_images, num_train, num_test, image_size,
    num_classes (distinct main-object classes), vocab_size (distinct caption words).
    """
    colors = list(COLORS if colors is None else colors)
    _validate(num_images, image_size, test_fraction, captions_per_image, max_objects, object_scale, colors)
    out_dir = Path(out_dir)
    check_out_dir(out_dir, overwrite, DATASET_ENTRIES)
    args = dict(
        seed=seed,
        num_images=num_images,
        image_size=image_size,
        test_fraction=test_fraction,
        captions_per_image=captions_per_image,
        max_objects=max_objects,
        object_scale=object_scale,
        colors=colors,
    )

    def write(folder: Path) -> dict[str, Any]:
        summary = _write_dataset(folder, args)
        _write_readme(folder / "README.txt", args)
        return summary

    summary = write_into_place(out_dir, write)
    summary["out_dir"] = str(out_dir)
    logger.info("shapes dataset written: %s", summary)
    return summary


def _write_dataset(out_dir: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Write every file but README.txt into the existing empty folder ``out_dir`` from
    make_shapes_dataset's ``settings`` (recorded in objects.json)."""
    seed, num_images, image_size = settings["seed"], settings["num_images"], settings["image_size"]
    max_objects, colors = settings["max_objects"], settings["colors"]
    rng = np.random.default_rng(seed)
    make_layout(out_dir)
    keys = [f"shape_{i:05d}" for i in range(num_images)]
    num_test = min(max(round(num_images * settings["test_fraction"]), 1), num_images - 1)
    test_keys = set(keys[i] for i in rng.permutation(num_images)[:num_test])
    records: dict[str, Any] = {}
    classes: dict[str, int] = {}
    vocabulary: set[str] = set()
    for key in keys:
        scene = _sample_scene(rng, max_objects, colors)
        image, boxes = _render(scene, image_size, rng, settings["object_scale"])
        save_image(image, out_dir, key)
        captions = _captions(scene, settings["captions_per_image"], rng)
        save_captions(out_dir, key, captions)
        vocabulary.update(w for c in captions for w in c.replace(",", " ").split())
        main = scene.objects[0]
        classes[key] = class_id(main.shape, main.color)
        records[key] = {
            "background": scene.background,
            "objects": [
                {"shape": o.shape, "color": o.color, "size": o.size, "box": list(box), "words": o.words}
                for o, box in zip(scene.objects, boxes)
            ],
        }
    for split, split_keys in (
        ("train", [k for k in keys if k not in test_keys]),
        ("test", [k for k in keys if k in test_keys]),
    ):
        save_split(out_dir, split, split_keys, [classes[k] for k in split_keys])
    side = {
        "settings": settings,
        "image_size": image_size,
        "colors": {k: list(COLORS[k]) for k in colors},
        "shapes": list(SHAPES),
        "images": records,
    }
    (out_dir / "objects.json").write_text(json.dumps(side) + "\n", encoding="ascii")
    _write_examples(out_dir, max_objects, colors, rng)
    return {
        "num_images": num_images,
        "num_train": num_images - num_test,
        "num_test": num_test,
        "image_size": image_size,
        "num_classes": len(set(classes.values())),
        "vocab_size": len(vocabulary),
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: generate the shapes dataset and print a one-line summary."""
    parser = CommandParser(
        prog="attngan-make-shapes", description="Generate the deterministic synthetic captioned shapes dataset."
    )
    parser.add_argument("--out", default="data/shapes", help="output folder")
    parser.add_argument("--num-images", type=int, default=1200)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-fraction", type=float, default=1 / 6)
    parser.add_argument("--max-objects", type=int, default=3)
    parser.add_argument(
        "--object-scale",
        type=float,
        default=1.0,
        help="object size multiplier; above 1, objects centred on their grid cell",
    )
    parser.add_argument(
        "--colors",
        type=lambda text: text.split(","),
        default=None,
        help=f"comma-separated palette, a subset of {','.join(COLORS)} (default: all)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing dataset in --out")
    args = parser.parse_args(argv)
    try:
        summary = make_shapes_dataset(
            args.out,
            num_images=args.num_images,
            image_size=args.image_size,
            seed=args.seed,
            test_fraction=args.test_fraction,
            max_objects=args.max_objects,
            object_scale=args.object_scale,
            colors=args.colors,
            overwrite=args.force,
        )
    except USER_ERRORS as err:  # a bad option, --out exists, or cannot be written
        return report(err)
    print(
        f"wrote {summary['num_images']} images ({summary['num_train']} train, "
        f"{summary['num_test']} test) of {summary['image_size']}x{summary['image_size']} "
        f"px, {summary['num_classes']} classes, {summary['vocab_size']} words "
        f"to {summary['out_dir']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
