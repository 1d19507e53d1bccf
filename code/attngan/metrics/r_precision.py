"""R-precision (the paper's text-image consistency metric), with the protocol the field
adopted from the DM-GAN codebase: for every generated image, its own caption's sentence
vector and those of ``mismatched`` captions of images of other classes, ranked by the cosine
of the DAMSM global image and sentence vectors; a hit when the true caption ranks first.
The hits are shuffled and split into ``splits`` groups; the result is the mean and standard
deviation of the group means."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError


@dataclass
class RPrecision:
    mean: float
    std: float
    hits: np.ndarray  # [N] bool, one per generated image
    candidates: int = 100  # the true caption and the mismatched ones

    @property
    def chance(self) -> float:
        return 1.0 / self.candidates


def draw_mismatched(
    image_classes: np.ndarray, pool_classes: np.ndarray, count: int, rng: np.random.Generator
) -> np.ndarray:
    """For each image, ``count`` indices into the caption pool whose class differs from the
    image's, drawn uniformly with replacement (as DM-GAN's random draws): [N, count]."""
    out = np.empty((len(image_classes), count), dtype=np.int64)
    for cls in np.unique(image_classes):
        rows = np.flatnonzero(image_classes == cls)
        allowed = np.flatnonzero(pool_classes != cls)
        if len(allowed) == 0:
            raise DataError(f"no caption of another class than {cls} to draw mismatched captions from")
        out[rows] = rng.choice(allowed, size=(len(rows), count), replace=True)
    return out


def r_precision(
    image_codes: torch.Tensor,
    true_sentences: torch.Tensor,
    image_classes,
    pool_sentences: torch.Tensor,
    pool_classes,
    mismatched: int = 99,
    splits: int = 10,
    seed: int = 0,
    chunk: int = 100,
) -> RPrecision:
    """image_codes [N,D] (DAMSM cnn_code of each generated image), true_sentences [N,D] (its
    caption's sentence vector), pool_sentences [M,D] with pool_classes [M] (where mismatched
    captions are drawn from) -> R-precision. Deterministic given ``seed``; an exact tie
    with the true caption counts as a hit. Scored ``chunk`` images at a time: the
    [chunk,1+m,D] candidates stay small (all 30,000 images at once took 12 GB)."""
    rng = np.random.default_rng(seed)
    image_classes, pool_classes = np.asarray(image_classes), np.asarray(pool_classes)
    wrong = torch.as_tensor(draw_mismatched(image_classes, pool_classes, mismatched, rng))
    # Copied into one array: a list of the chunks' small tensors kept the freed [chunk,1+m,D]
    # blocks from being reused (RSS grew by GBs).
    hits = np.empty(len(image_codes), dtype=bool)
    for start in range(0, len(image_codes), chunk):
        rows = slice(start, start + chunk)
        candidates = torch.cat([true_sentences[rows].unsqueeze(1), pool_sentences[wrong[rows]]], dim=1)  # [n,1+m,D]
        scores = F.cosine_similarity(image_codes[rows].unsqueeze(1), candidates, dim=2, eps=1e-8)
        hits[rows] = (scores.argmax(dim=1) == 0).cpu().numpy()
    groups = np.array_split(rng.permutation(hits), splits)
    means = np.array([g.mean() for g in groups])
    return RPrecision(float(means.mean()), float(means.std()), hits, candidates=mismatched + 1)
