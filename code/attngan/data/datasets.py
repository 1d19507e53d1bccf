"""Image-caption datasets in the original's on-disk layouts (CUB birds, COCO, shapes).

See data/README.md for the layouts. Each item is the multi-scale images of one key and
one of its captions, as the original ``TextDataset``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import torchvision.transforms as transforms
from PIL import Image
from torch.utils.data import Dataset

from attngan.data.cache import ImageCache, decode, open_cache
from attngan.data.pickles import load_pickle
from attngan.data.text import load_text_data, pad_or_sample

from ..errors import DataError

log = logging.getLogger(__name__)

_BIRDS_LAYOUT = """expected layout (birds / CUB-200-2011):
  DATA_DIR/CUB_200_2011/images.txt, bounding_boxes.txt, images/<class>/<file>.jpg
  DATA_DIR/text/<key>.txt                      (needed only to build captions.pickle)
  DATA_DIR/{train,test}/filenames.pickle, class_info.pickle
  DATA_DIR/captions.pickle                     (built from text/ when absent)
see data/README.md"""

_COCO_LAYOUT = """expected layout (coco-like: COCO, shapes):
  DATA_DIR/images/<key>.jpg
  DATA_DIR/text/<key>.txt                      (needed only to build captions.pickle)
  DATA_DIR/{train,test}/filenames.pickle       (class_info.pickle optional)
  DATA_DIR/captions.pickle                     (built from text/ when absent)
see data/README.md"""


def load_bboxes(data_dir: str | Path) -> dict[str, list[int]]:
    """CUB boxes ``[x, y, w, h]`` (truncated to int, as the original) by key (path without '.jpg').

    Rows of ``bounding_boxes.txt`` and ``images.txt`` are paired by position, as the original.
    """
    cub = Path(data_dir) / "CUB_200_2011"
    try:
        boxes = pd.read_csv(cub / "bounding_boxes.txt", sep=r"\s+", header=None).astype(int)
        files = pd.read_csv(cub / "images.txt", sep=r"\s+", header=None)[1].tolist()
    except (ValueError, KeyError) as err:  # pandas' parser errors are ValueErrors; KeyError: no 2nd column
        raise DataError(
            f"{cub}: bounding_boxes.txt or images.txt is not the CUB table it should be ({err}); "
            "attngan-check-data names the file"
        ) from err
    if len(boxes) != len(files):
        raise DataError(f"{cub}: {len(boxes)} rows in bounding_boxes.txt but {len(files)} in images.txt")
    return {name[:-4]: boxes.iloc[i, 1:].tolist() for i, name in enumerate(files)}


def enlarged(imsize: int) -> int:
    """The size the original resizes to before cropping ``imsize`` pixels out."""
    return imsize * 76 // 64


def image_transform(imsize: int, flip: bool = True) -> transforms.Compose:
    """The original's (training and test) transform for the largest scale ``imsize``;
    ``flip=False`` drops the random horizontal flip (config AUGMENT.HORIZONTAL_FLIP)."""
    steps = [transforms.Resize(enlarged(imsize)), transforms.RandomCrop(imsize)]
    return transforms.Compose(steps + [transforms.RandomHorizontalFlip()] if flip else steps)


def centre_view(imsize: int) -> transforms.Compose:
    """The original's transform with its crop centred (the mean of its random crops) and
    no flip: how evaluation sees a real image."""
    return transforms.Compose([transforms.Resize(enlarged(imsize)), transforms.CenterCrop(imsize)])


def _default_normalize() -> transforms.Compose:
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])


def get_imgs(
    img_path: str | Path,
    imsizes: list[int],
    bbox: list[int] | None = None,
    transform: Callable | None = None,
    normalize: Callable | None = None,
    single: bool = False,
) -> list[torch.Tensor]:
    """One image at every scale: ``[3, s, s]`` tensors in [-1, 1] for s in ``imsizes``.

    Bird crop (``bbox``), then ``transform``; scale i < last is ``Resize(imsizes[i])`` of
    the transformed image, the last is the transformed image itself. ``single`` (the
    original's B_DCGAN) returns only the transformed image.
    """
    return scales(decode(Path(img_path), bbox), imsizes, transform, normalize, single)


def scales(
    img: Image.Image,
    imsizes: list[int],
    transform: Callable | None = None,
    normalize: Callable | None = None,
    single: bool = False,
) -> list[torch.Tensor]:
    """``get_imgs`` from a decoded (and cropped) image: ``transform``, then the smaller
    scales resized from its result. A cached image (the transform's first Resize done)
    comes here with the rest of the transform."""
    normalize = normalize or _default_normalize()
    if transform is not None:
        img = transform(img)
    if single:
        return [normalize(img)]
    smaller = [normalize(transforms.Resize(size)(img)) for size in imsizes[:-1]]
    return smaller + [normalize(img)]


class TextDataset(Dataset):
    """Items ``(imgs, caption [words_num] int64, cap_len, class_id, key)`` of one split.

    ``imgs`` is one ``[3, s, s]`` tensor per scale ``base_size * 2**i``, i < branch_num
    (only the largest when ``single_image``). The caption is a random one of the image's
    ``captions_per_image``, drawn with the global ``np.random`` as the original (seed numpy
    to reproduce), its words padded or sampled to ``words_num`` by ``pad_or_sample``.
    DataLoader workers: PyTorch >= 1.9 seeds numpy in each worker from the loader's base
    seed (PyTorch 0.3 left every worker the same forked numpy state).
    """

    def __init__(
        self,
        data_dir: str | Path,
        split: str = "train",
        base_size: int = 64,
        branch_num: int = 3,
        captions_per_image: int = 10,
        words_num: int = 18,
        transform: Callable | None = None,
        single_image: bool = False,
        cache_dir: str | Path | None = None,
        workers: int = 0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.birds = "birds" in str(data_dir)  # as the original: a substring test on the path
        _check_layout(self.data_dir, split, self.birds)
        self.split = split
        self.imsizes = [base_size * 2**i for i in range(branch_num)]
        self.captions_per_image = captions_per_image
        self.words_num = words_num
        self.transform = transform
        self.single_image = single_image
        self.normalize = _default_normalize()
        self.bboxes = load_bboxes(self.data_dir) if self.birds else None
        text = load_text_data(self.data_dir, captions_per_image)
        self.filenames = text.train_names if split == "train" else text.test_names
        self.captions = text.train_captions if split == "train" else text.test_captions
        self.ixtoword, self.wordtoix, self.n_words = text.ixtoword, text.wordtoix, text.n_words
        self.class_id = _load_class_ids(self.data_dir / split, len(self.filenames))
        self.cache: ImageCache | None = None
        self.cache_rest: Callable | None = None  # the transform after its first Resize, for cached images
        if cache_dir is not None:
            self._open_cache(Path(cache_dir), workers)
        log.info(
            "%s %s: %d images, %d words, scales %s",
            self.data_dir,
            split,
            len(self.filenames),
            self.n_words,
            self.imsizes,
        )

    def __len__(self) -> int:
        return len(self.filenames)

    def image_path(self, key: str) -> Path:
        """Where the image of ``key`` lives."""
        root = self.data_dir / "CUB_200_2011" if self.birds else self.data_dir
        return root / "images" / f"{key}.jpg"

    def _open_cache(self, cache_dir: Path, workers: int) -> None:
        """Decoded images from the cache when the transform starts with a Resize (the
        original's, and the evaluation's centre view): that far the pixels are the same for
        every epoch."""
        steps = getattr(self.transform, "transforms", [])
        if not steps or not isinstance(steps[0], transforms.Resize):
            log.info("%s: no image cache (the transform does not start with a Resize)", self.data_dir)
            return
        self.cache_rest = transforms.Compose(steps[1:])
        paths = [self.image_path(key) for key in self.filenames]
        boxes = [self._bbox(key) for key in self.filenames] if self.birds else None
        self.cache = open_cache(cache_dir, f"{self.split}_{steps[0].size}", paths, boxes, steps[0], workers)

    def _bbox(self, key: str) -> list[int] | None:
        if self.bboxes is None:
            return None
        if key not in self.bboxes:
            raise DataError(f"{key!r} is not in {self.data_dir / 'CUB_200_2011' / 'images.txt'}")
        return self.bboxes[key]

    def __getitem__(self, index: int) -> tuple[list[torch.Tensor], torch.Tensor, int, int, str]:
        key = self.filenames[index]
        if self.cache is not None:
            imgs = scales(self.cache[index], self.imsizes, self.cache_rest, self.normalize, self.single_image)
        else:
            imgs = get_imgs(
                self.image_path(key), self.imsizes, self._bbox(key), self.transform, self.normalize, self.single_image
            )
        caption, cap_len = self.caption(index)
        return imgs, torch.from_numpy(caption), cap_len, int(self.class_id[index]), key

    def caption(self, index: int) -> tuple[np.ndarray, int]:
        """Item ``index``'s caption (padded or sampled to WORDS_NUM) and its length, drawn
        with the global ``np.random`` only (the images draw from torch's generator), so the
        same seed gives it with or without the images (data/loader.py shards by it)."""
        # The original's `random.randint(0, CAPTIONS_PER_IMAGE)` is numpy's (it imports
        # numpy.random as random): high exclusive, so always one of this image's captions.
        sent_ix = index * self.captions_per_image + np.random.randint(0, self.captions_per_image)
        return pad_or_sample(self.captions[sent_ix], self.words_num)


def _check_layout(data_dir: Path, split: str, birds: bool) -> None:
    """One FileNotFoundError listing every missing input, with the expected layout."""
    layout = _BIRDS_LAYOUT if birds else _COCO_LAYOUT
    if not data_dir.is_dir():
        raise DataError(f"data directory not found: {data_dir}\n{layout}")
    cub = data_dir / "CUB_200_2011"
    needed = [data_dir / split / "filenames.pickle"]
    if birds:
        needed += [cub / "images.txt", cub / "bounding_boxes.txt", cub / "images"]
    else:
        needed.append(data_dir / "images")
    missing = [str(p) for p in needed if not p.exists()]
    if not (data_dir / "captions.pickle").is_file() and not (data_dir / "text").is_dir():
        missing.append(f"{data_dir / 'text'} (or {data_dir / 'captions.pickle'})")
    if missing:
        raise DataError(f"dataset {data_dir} is incomplete; missing:\n  " + "\n  ".join(missing) + "\n" + layout)


def _load_class_ids(split_dir: Path, count: int) -> np.ndarray:
    """Class id per key from ``class_info.pickle``; without it every image is its own class."""
    path = split_dir / "class_info.pickle"
    if not path.is_file():
        return np.arange(count)
    try:
        class_id = np.asarray(load_pickle(path), dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as err:
        raise DataError(f"{path}: expected a list of integer class ids, one per image ({err})") from err
    if class_id.ndim != 1 or len(class_id) != count:
        raise DataError(f"{path}: {len(class_id)} class ids for {count} images")
    return class_id


def prepare_data(
    batch: tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, Any, list[str]], device: torch.device | str
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, np.ndarray, list[str]]:
    """Sort a collated batch by caption length, descending, and move it to ``device``.

    In: imgs (list of ``[B, 3, H, W]``), captions ``[B, T]``, cap_lens ``[B]``, class ids
    ``[B]``, keys. Out: the same order-permuted: images and captions on ``device``, cap_lens
    on the CPU (the text encoder packs by them there; the losses copy them to the device
    without waiting), class ids as a numpy array. The copies do not wait for the device
    (from pinned memory they overlap with its work). The sort is stable (ties keep batch
    order) so that runs are deterministic; the original's ``torch.sort`` did not promise an
    order for ties.
    """
    imgs, captions, cap_lens, class_ids, keys = batch
    sorted_lens, order = torch.sort(torch.as_tensor(cap_lens), descending=True, stable=True)
    on_device = order.to(device, non_blocking=True)
    real_imgs = [img.to(device, non_blocking=True).index_select(0, on_device) for img in imgs]
    order_np = order.numpy()
    return (
        real_imgs,
        captions.to(device, non_blocking=True).index_select(0, on_device),
        sorted_lens,
        np.asarray(class_ids)[order_np],
        [keys[i] for i in order_np],
    )


def build_dataset(cfg: Any, split: str, transform: Callable | None = None) -> TextDataset:
    """The ``TextDataset`` a config describes (DATA_DIR, TREE, TEXT, GAN.B_DCGAN, and
    RUN.IMAGE_CACHE / RUN.CACHE_DIR: decoded images cached in DATA_DIR/cache by default).

    ``transform`` None: the original's random transform at the largest scale, for both
    splits as the original.
    """
    largest = cfg.TREE.BASE_SIZE * 2 ** (cfg.TREE.BRANCH_NUM - 1)
    return TextDataset(
        cfg.DATA_DIR,
        split,
        base_size=cfg.TREE.BASE_SIZE,
        branch_num=cfg.TREE.BRANCH_NUM,
        captions_per_image=cfg.TEXT.CAPTIONS_PER_IMAGE,
        words_num=cfg.TEXT.WORDS_NUM,
        transform=image_transform(largest, cfg.AUGMENT.HORIZONTAL_FLIP) if transform is None else transform,
        single_image=cfg.GAN.B_DCGAN,
        cache_dir=(cfg.RUN.CACHE_DIR or Path(cfg.DATA_DIR) / "cache") if cfg.RUN.IMAGE_CACHE else None,
        workers=cfg.WORKERS,
    )
