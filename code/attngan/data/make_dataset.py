"""``attngan-make-dataset``: one's own captioned images as a dataset the loaders read, with
DAMSM, AttnGAN and evaluation configs for it (docs/own_data.md).

In: ``--images DIR``, a folder of images with the manifest of their captions
(docs/captioned_images.md, data/manifest.py): Hugging Face ImageFolder's ``metadata.csv`` or
``metadata.jsonl`` in DIR, or ``--captions FILE`` elsewhere; one row a caption (or a list of
captions), several rows an image, optionally a class.

Out (``--out data/NAME``), the COCO-like layout of data/README.md:
``images/<key>.jpg`` (key: the image's path without its suffix; RGB, the shorter side
brought down to what the configs' loaders read, never up), ``text/<key>.txt``,
``{train,test}/filenames.pickle``, with classes ``{train,test}/class_info.pickle`` and
``classes.txt``, ``example_captions.txt`` (the example captions attngan-sample draws),
``damsm.yml``, ``attngan.yml``, ``eval.yml`` and ``README.txt``. The data check
(``check.py``) runs on it before it is moved into place.

Rules: an image with more than ``--captions-per-image`` captions keeps the first ones in
file order; one with fewer repeats its own in order; either is said in a warning.
Every bad input is a ``DatasetError`` (a DataError) naming the file, line or value, and
nothing is written: the dataset is made in a temporary folder renamed at the end.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from easydict import EasyDict
from PIL import Image, ImageOps
from tqdm import tqdm

from attngan.config import differences, load_config
from attngan.data.check import scan_dataset
from attngan.data.datasets import enlarged
from attngan.data.grouping import Entry, fit_captions, group_rows
from attngan.data.manifest import DatasetError, find_manifest, read_manifest
from attngan.data.text import tokenize
from attngan.data.writing import (
    check_out_dir,
    make_layout,
    save_captions,
    save_examples,
    save_image,
    save_split,
    write_into_place,
)
from attngan.errors import USER_ERRORS, CommandParser, report

from ..errors import SetupError

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
MIN_SPLIT_IMAGES = 2  # a DAMSM batch must hold two images to tell apart
IMAGE_SIZES = {128: 2, 256: 3}  # AttnGAN's largest image -> TREE.BRANCH_NUM (stages from 64 px)
EXAMPLES = 8  # test captions in example_captions.txt
# What may sit in a dataset folder that --force replaces: what this tool writes, and
# captions.pickle and cache/, which training adds.
DATASET_ENTRIES = frozenset(
    {
        "images",
        "text",
        "train",
        "test",
        "classes.txt",
        "example_captions.txt",
        "example_filenames.txt",
        "damsm.yml",
        "attngan.yml",
        "eval.yml",
        "README.txt",
        "captions.pickle",
        "cache",
    }
)


@dataclass(frozen=True)
class Recipe:
    """The repository configs that the dataset's configs are derived from."""

    damsm: str
    attngan: str
    eval: str
    image_size: int  # the default --image-size


RECIPES = {
    # Narrow networks and the compact DAMSM image encoder: trains on a CPU (the demo's).
    "small": Recipe("cfg/DAMSM/shapes.yml", "cfg/shapes_attn2.yml", "cfg/eval_shapes.yml", 128),
    # The paper's CUB recipe: Inception-v3 DAMSM at 299 px, 256 px images, for a GPU.
    "paper": Recipe("cfg/DAMSM/bird.yml", "cfg/bird_attn2.yml", "cfg/eval_bird.yml", 256),
}


def split_keys(keys: list[str], labels: list[str], test_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """``round(len(keys) * test_fraction)`` keys drawn at random for the test split, each
    class (``labels``, one a key) in proportion to its size; both splits keep the manifest
    order."""
    if not 0 < test_fraction < 1:
        raise DatasetError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
    num_test = round(len(keys) * test_fraction)
    if min(num_test, len(keys) - num_test) < MIN_SPLIT_IMAGES:
        raise DatasetError(
            f"too few images for the split: {len(keys)} images with --test-fraction {test_fraction} "
            f"give {len(keys) - num_test} train and {num_test} test images; each split needs at "
            f"least {MIN_SPLIT_IMAGES} (a DAMSM batch tells images apart): add images or change "
            "--test-fraction"
        )
    # Each key's place in a random order of its class, as a fraction of the class: taking
    # the lowest places takes every class's share (ties in the random order).
    order = np.random.default_rng(seed).permutation(len(keys))
    sizes, seen = Counter(labels), Counter()
    place = {}
    for rank, i in enumerate(order):
        place[i] = ((seen[labels[i]] + 0.5) / sizes[labels[i]], rank)
        seen[labels[i]] += 1
    test = {keys[i] for i in sorted(place, key=place.__getitem__)[:num_test]}
    return [k for k in keys if k not in test], [k for k in keys if k in test]


def load_image(path: Path, min_side: int, stored_side: int, where: str) -> Image.Image:
    """The image upright (EXIF orientation), RGB (transparency on white), its shorter side
    brought down to ``stored_side`` (never up). DatasetError when it cannot be decoded or
    its shorter side is under ``min_side``."""
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            image.load()
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        raise DatasetError(f"{path}: cannot read image ({err}; listed at {where})") from err
    if min(image.size) < min_side:
        raise DatasetError(
            f"{path}: image too small: {image.size[0]}x{image.size[1]} px, --image-size {min_side} "
            f"needs both sides at least {min_side} (listed at {where})"
        )
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, (255, 255, 255))
        image.paste(rgba, mask=rgba.getchannel("A"))
    image = image.convert("RGB")
    short = min(image.size)
    if short > stored_side:
        scale = stored_side / short
        image = image.resize(
            (max(stored_side, round(image.size[0] * scale)), max(stored_side, round(image.size[1] * scale))),
            Image.Resampling.LANCZOS,
        )
    return image


# ---------------------------------------------------------------- configs


def _source(name: str) -> Path:
    """The repository config ``name`` (cfg/...)."""
    path = REPO / name
    if not path.is_file():
        raise SetupError(
            f"{path} not found: attngan-make-dataset derives its configs from the repository's "
            "cfg/ folder (run it from a clone with the package installed in place)"
        )
    return path


def _read_yaml(name: str) -> dict[str, Any]:
    """The repository config ``name`` as it is written (no defaults merged)."""
    return yaml.safe_load(_source(name).read_text(encoding="utf-8"))


def _set(config: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


@dataclass(frozen=True)
class Plan:
    """What the configs need to know of the dataset."""

    data_dir: str  # as given on the command line: the configs' DATA_DIR
    name: str
    captions_per_image: int
    image_size: int
    num_train: int
    num_test: int
    flip: bool


@dataclass(frozen=True)
class Configs:
    """The dataset's configs (``{file name: (config, source file)}``) and the run folders
    they chain through: DAMSM's, whose last text encoder AttnGAN reads, and AttnGAN's,
    whose last generator evaluation reads."""

    files: dict[str, tuple[dict[str, Any], str]]
    damsm_run: Path
    attngan_run: Path
    notes: list[str]  # what was sized to the dataset, and why: said in the command's output


def fit_batch(file: str, recipe_batch: int, splits: dict[str, int], why: str, notes: list[str]) -> int:
    """The recipe's batch size, or the size of the smallest split in ``splits`` ({name:
    images}) when that is smaller: a loader drops the last incomplete batch, so a batch
    larger than its split would never run. A lowered size is said in ``notes`` with ``why``
    (what reads the split)."""
    split, size = min(splits.items(), key=lambda item: item[1])
    if recipe_batch <= size:
        return recipe_batch
    notes.append(
        f"{file}: TRAIN.BATCH_SIZE {size}, not the recipe's {recipe_batch}: {why}, and the {split} split has "
        f"{size} images" + (" (a larger --test-fraction allows larger batches)" if split == "test" else "")
    )
    return size


def derive_configs(recipe: Recipe, plan: Plan) -> Configs:
    """The recipe's configs pointed at the dataset, training into ``RUN.OUTPUT_DIR/<name>/DAMSM``
    and ``.../AttnGAN`` (the folders docs/own_data.md names)."""
    damsm, attngan, evaluation = (load_config(_source(name)) for name in (recipe.damsm, recipe.attngan, recipe.eval))
    runs = Path(attngan.RUN.OUTPUT_DIR) / plan.name
    damsm_run, attngan_run = runs / "DAMSM", runs / "AttnGAN"
    text_encoder = str(damsm_run / "Model" / f"text_encoder{damsm.TRAIN.MAX_EPOCH - 1}.pth")
    branches = IMAGE_SIZES[plan.image_size]
    common = {
        "DATASET_NAME": plan.name,
        "DATA_DIR": plan.data_dir,
        "TEXT.CAPTIONS_PER_IMAGE": plan.captions_per_image,
        "AUGMENT.HORIZONTAL_FLIP": plan.flip,
    }
    notes: list[str] = []
    train, test = {"training": plan.num_train}, {"test": plan.num_test}
    changes = {
        recipe.damsm: {
            "TRAIN.BATCH_SIZE": fit_batch(
                "damsm.yml",
                damsm.TRAIN.BATCH_SIZE,
                {**train, **test},
                "DAMSM trains on the training split and validates on the test split in whole batches of this size",
                notes,
            )
        },
        recipe.attngan: {
            "TREE.BRANCH_NUM": branches,
            "TRAIN.NET_E": text_encoder,
            "TRAIN.BATCH_SIZE": fit_batch(
                "attngan.yml", attngan.TRAIN.BATCH_SIZE, train, "AttnGAN trains in whole batches", notes
            ),
        },
        recipe.eval: {
            "TREE.BRANCH_NUM": branches,
            "TRAIN.NET_E": text_encoder,
            "TRAIN.NET_G": str(attngan_run / "Model" / f"netG_epoch_{attngan.TRAIN.MAX_EPOCH}.pth"),
            "TRAIN.BATCH_SIZE": fit_batch(
                "eval.yml",
                evaluation.TRAIN.BATCH_SIZE,
                test,
                "attngan-sample's validation (B_VALIDATION) draws the test split in whole batches",
                notes,
            ),
            # loc and obj need objects.json, which only the generated shapes have.
            "EVAL.METRICS": ",".join(m for m in evaluation.EVAL.METRICS.split(",") if m not in ("loc", "obj")),
            # One pass over the test captions, as the paper's 30,000 on CUB.
            "EVAL.NUM_SAMPLES": min(
                evaluation.EVAL.NUM_SAMPLES, max(evaluation.EVAL.SPLITS, plan.num_test * plan.captions_per_image)
            ),
        },
    }
    files = {}
    for file, source in (("damsm.yml", recipe.damsm), ("attngan.yml", recipe.attngan), ("eval.yml", recipe.eval)):
        config = _read_yaml(source)  # the source's own keys: the file reads like it
        for dotted, value in {**common, **changes[source]}.items():
            _set(config, dotted, value)
        files[file] = (config, source)
    return Configs(files, damsm_run, attngan_run, notes)


def write_config(path: Path, config: dict[str, Any], source: str) -> EasyDict:
    """The config as YAML under a header naming its source and what differs from it;
    returns it loaded (which checks every key)."""
    changed = differences(_read_yaml(source), config)
    header = [
        f"Written by attngan-make-dataset from {source} (docs/own_data.md). Changed from it:",
        *(f"  {line}" for line in changed),
    ]
    path.write_text(
        "".join(f"# {line}\n" for line in header) + yaml.safe_dump(config, sort_keys=False), encoding="utf-8"
    )
    return load_config(path)


# ---------------------------------------------------------------- the dataset


def make_dataset(
    images: str | Path,
    captions: str | Path | None,
    out: str | Path,
    *,
    test_fraction: float = 0.1,
    seed: int = 0,
    image_size: int | None = None,
    captions_per_image: int | None = None,
    recipe: str = "small",
    overwrite: bool = False,
    workers: int = 0,
) -> dict[str, Any]:
    """Write the dataset of ``images`` captioned by the manifest ``captions`` (None: the
    one in ``images``) to ``out`` (see the module docstring); the same inputs and arguments
    give identical files.

    ``image_size``: AttnGAN's largest image, 128 or 256 (default: the recipe's); every
    image's shorter side must be at least that. ``workers`` > 0 decodes images in that
    many threads. Returns a summary: counts, the configs, the data check's line and the
    next commands.
    """
    images_dir, out = Path(images), Path(out)
    if recipe not in RECIPES:
        raise DatasetError(f"--recipe {recipe!r}: choose from {', '.join(RECIPES)}")
    image_size = RECIPES[recipe].image_size if image_size is None else image_size
    if image_size not in IMAGE_SIZES:
        raise DatasetError(
            f"--image-size {image_size}: AttnGAN's stages double from 64 px; choose from "
            f"{', '.join(map(str, IMAGE_SIZES))}"
        )
    if not images_dir.is_dir():
        raise DatasetError(f"--images {images_dir}: not a folder")
    if not out.name or out.name in (".", ".."):
        raise DatasetError(f"--out {out}: name the dataset's folder, e.g. data/mine")
    if "birds" in str(out):
        raise DatasetError(
            f"--out {out}: the loaders read a DATA_DIR whose path holds 'birds' as CUB-200 "
            "(CUB_200_2011/ images and boxes); choose a name without it"
        )
    check_out_dir(out, overwrite, DATASET_ENTRIES)
    manifest = find_manifest(images_dir, "--images") if captions is None else Path(captions)
    read = read_manifest(manifest)
    if read.columns.ignored:
        log.warning("%s: ignoring its columns %s", manifest, ", ".join(read.columns.ignored))
    entries = group_rows(read, images_dir)
    entries, n = fit_captions(entries, captions_per_image)
    train, test = split_keys([e.key for e in entries], [e.label for e in entries], test_fraction, seed)
    non_ascii = sum(not c.isascii() for e in entries for c in e.captions)
    if non_ascii:
        log.warning("%d captions hold non-ASCII characters: the tokenizer keeps the ASCII ones of each word", non_ascii)
    words = {w for e in entries for c in e.captions for w in tokenize(c)}
    plan = Plan(str(out), out.name, n, image_size, len(train), len(test), flip=not words & {"left", "right"})
    if not plan.flip:
        log.info("captions name left or right: AUGMENT.HORIZONTAL_FLIP off in the configs")
    configs = derive_configs(RECIPES[recipe], plan)
    settings = dict(test_fraction=test_fraction, seed=seed, image_size=image_size, captions_per_image=n, recipe=recipe)

    def write(folder: Path) -> str:
        _write_files(folder, manifest, entries, train, test, configs, image_size, workers)
        _write_readme(folder / "README.txt", images_dir, manifest, settings)
        checked = scan_dataset(folder, n, workers=workers)
        if checked.problems:  # a bug here, not the user's input
            raise AssertionError(
                f"the data check failed on the dataset just written: {checked.problems[0]} "
                f"({len(checked.problems)} problems)"
            )
        return f"{out}: {checked.summary()}: OK"

    check = write_into_place(out, write)
    summary = {
        "out_dir": str(out),
        "images": len(entries),
        "train": len(train),
        "test": len(test),
        "captions_per_image": n,
        "classes": len({e.label for e in entries if e.label}),
        "words": len(words),
        "image_size": image_size,
        "configs": [str(out / file) for file in configs.files],
        "manifest": str(manifest),
        "notes": configs.notes,
        "check": check,
        "next": [
            f"attngan-pretrain-damsm --cfg {out / 'damsm.yml'} --output_dir {configs.damsm_run}",
            f"attngan-train --cfg {out / 'attngan.yml'} --output_dir {configs.attngan_run}",
        ],
    }
    return summary


def _write_files(
    folder: Path,
    manifest: Path,
    entries: list[Entry],
    train: list[str],
    test: list[str],
    configs: Configs,
    image_size: int,
    workers: int,
) -> None:
    make_layout(folder)
    loaded = [write_config(folder / file, config, source) for file, (config, source) in configs.files.items()]
    # Stored at the largest size a config's loader resizes to, so that none upsamples.
    stored_side = max(enlarged(c.TREE.BASE_SIZE * 2 ** (c.TREE.BRANCH_NUM - 1)) for c in loaded)

    def copy(entry: Entry) -> None:
        image = load_image(entry.source, image_size, stored_side, f"{manifest} line {entry.line}")
        save_image(image, folder, entry.key)
        save_captions(folder, entry.key, entry.captions)

    _for_each(copy, entries, workers)
    by_key = {e.key: e for e in entries}
    has_classes = bool(entries[0].label)  # with a class column every row has one
    class_of = {label: i for i, label in enumerate(dict.fromkeys(e.label for e in entries), 1)}  # by first mention
    for split, keys in (("train", train), ("test", test)):
        save_split(folder, split, keys, [class_of[by_key[k].label] for k in keys] if has_classes else None)
    if has_classes:
        (folder / "classes.txt").write_text(
            "".join(f"{i} {label}\n" for label, i in class_of.items()), encoding="utf-8"
        )
        if len({by_key[k].label for k in test}) < 2:
            log.warning(
                "every test image has the same class: R-precision (attngan-eval) ranks a caption against "
                "captions of other classes and will find none"
            )
    save_examples(folder, [by_key[k].captions[0] for k in test[:EXAMPLES]])


def _for_each(function: Callable[[Entry], None], entries: Iterable[Entry], workers: int) -> None:
    """``function(entry)`` for every entry, in ``workers`` threads when > 0; the first
    failure, in entry order, is raised and cancels what has not started."""
    entries = list(entries)
    progress = {"total": len(entries), "desc": "images", "unit": "image", "disable": None}
    if workers <= 0:
        for entry in tqdm(entries, **progress):
            function(entry)
        return
    pool = ThreadPoolExecutor(workers)
    try:
        for _ in tqdm(pool.map(function, entries), **progress):
            pass
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _write_readme(path: Path, images_dir: Path, manifest: Path, settings: dict[str, Any]) -> None:
    options = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in settings.items())
    path.write_text(
        f"Written by attngan-make-dataset from the images in {images_dir} and the captions in {manifest} "
        f"({options}). Keys are the images' paths without their suffix. Rebuild it rather than edit it "
        "(--force replaces it, configs included: copy a config elsewhere before editing it). See "
        "docs/own_data.md.\n",
        encoding="utf-8",
    )


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """CLI: write the dataset, print its check and the next commands; 2 on a bad input."""
    parser = CommandParser(
        prog="attngan-make-dataset",
        description="Turn a folder of images and a manifest of captions into a dataset with DAMSM, AttnGAN and "
        "evaluation configs (docs/own_data.md).",
    )
    parser.add_argument("--images", required=True, help="folder of the images")
    parser.add_argument(
        "--captions",
        default=None,
        help="manifest of the captions, .csv with a header row or .jsonl: columns file_name (or image; the "
        "path relative to --images), text (or caption), optionally class; one row a caption (default: the "
        "metadata.csv or metadata.jsonl in --images; docs/captioned_images.md)",
    )
    parser.add_argument("--out", required=True, help="dataset folder to write, e.g. data/mine")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="share of the images in the test split")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split")
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="AttnGAN's largest image, 128 or 256 (default: the recipe's); smaller images are refused",
    )
    parser.add_argument(
        "--captions-per-image",
        type=int,
        default=None,
        help="captions an image (default: the most common count); more: the first ones in file "
        "order; fewer: repeated in order",
    )
    parser.add_argument(
        "--recipe",
        default="small",
        help="small (narrow networks, compact DAMSM: a CPU) or paper (the CUB recipe: a GPU)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing dataset in --out")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="image threads (0: none)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = make_dataset(
            args.images,
            args.captions,
            args.out,
            test_fraction=args.test_fraction,
            seed=args.seed,
            image_size=args.image_size,
            captions_per_image=args.captions_per_image,
            recipe=args.recipe,
            overwrite=args.force,
            workers=max(args.workers, 0),
        )
    except USER_ERRORS as err:  # OSError: --out exists, or cannot be written
        return report(err)
    print(summary["check"])
    print(
        f"wrote {summary['images']} images ({summary['train']} train, {summary['test']} test), "
        f"{summary['captions_per_image']} captions each, {summary['classes'] or 'no'} classes, "
        f"{summary['words']} words to {summary['out_dir']} (captions from {summary['manifest']}); "
        f"configs {', '.join(summary['configs'])}"
    )
    for note in summary["notes"]:
        print(f"sized to the dataset: {note}")
    print("next:\n  " + "\n  ".join(summary["next"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
