"""The metrics from streamed images: each batch goes through R-precision's DAMSM codes,
the IS/FID accumulator, the object-match tally, the showcase and the saver, and no image
is kept; then the scores, with FID's real images and localisation's own passes."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
from easydict import EasyDict
from torch.utils.data import DataLoader
from torchvision import transforms
from tqdm import tqdm

from ..data.datasets import TextDataset, centre_view, enlarged
from ..data.loader import SeededItems
from ..metrics.localisation import damsm_localisation, generator_localisation, load_objects
from ..metrics.object_match import ObjectTally
from ..metrics.r_precision import r_precision
from ..visualize import quantise
from .captions import Batch, EvalCaptions, encode, inverse, sample_rows
from .folder import ImageSaver
from .networks import Networks
from .registry import Metric
from .report import Showcase


def dequantise(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 [B,3,H,W] -> float in [-1,1], what the DAMSM image encoder reads."""
    return pixels.float() / 127.5 - 1.0


def image_codes(image_encoder: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """DAMSM global image vectors [b,D] (on the CPU) of uint8 images."""
    return image_encoder(dequantise(pixels))[1].float().cpu()


def pool_sentences(
    text_encoder: nn.Module, captions: EvalCaptions, wordtoix: dict[str, int], device: torch.device, batch_size: int
) -> torch.Tensor:
    """Sentence vectors [M,D] (CPU) of every test caption: where R-precision draws the
    mismatched captions from."""
    vectors = []
    for start in tqdm(range(0, len(captions), batch_size), desc="test captions", leave=False, disable=None):
        texts = captions.texts[start : start + batch_size]
        encoded, _, sent_emb, _ = encode(texts, text_encoder, wordtoix, device, "test captions")
        vectors.append(sent_emb[torch.as_tensor(inverse(encoded.sorted_indices), device=device)].float().cpu())
    return torch.cat(vectors)


def real_test_images(
    dataset: TextDataset, size: int, batch_size: int, workers: int, total: int = 0, seed: int = 0
) -> Iterator[torch.Tensor]:
    """Every real test image once, uint8 [b,3,size,size]: resized to size*76/64 and
    centre-cropped (the training transform without its random crop and flip; birds are
    cropped to their box first, as always). ``total`` > the number of test images pads them
    to ``total`` views, as DF-GAN padded CUB's test set for its FID statistics (horizontal
    flips and small shifts): after the centred pass, passes of the training transform's
    random 76/64 crop and random flip, each view drawn from ``seed``, pass and image."""
    real = copy.copy(dataset)
    real.imsizes = [size]
    count, views = len(real), max(total, len(real))
    for k in range(-(-views // count)):
        real.transform = (
            centre_view(size)
            if k == 0
            else transforms.Compose(
                [transforms.Resize(enlarged(size)), transforms.RandomCrop(size), transforms.RandomHorizontalFlip()]
            )
        )
        # SeededItems: each view drawn under its own seed; the caption draw leaves numpy's state alone
        keys = [(0 if k == 0 else seed * 1000 + k, i) for i in range(min(count, views - k * count))]
        loader = DataLoader(SeededItems(real), sampler=keys, batch_size=batch_size, num_workers=workers)
        for imgs, *_ in tqdm(loader, desc="real test images", leave=False, disable=None):
            yield quantise(imgs[-1])


def image_quality(metrics: set[str], cfg: EasyDict, device: torch.device, feature_extractor: nn.Module | None):
    """The IS/FID accumulator, built before any image is generated so that missing
    Inception weights fail at once."""
    from ..metrics.image_quality import ImageQuality  # torch-fidelity and torchmetrics load only for IS/FID

    return ImageQuality(
        metrics=metrics & {"is", "fid"},
        weights=cfg.EVAL.INCEPTION_WEIGHTS,
        device=device,
        splits=cfg.EVAL.SPLITS,
        feature_extractor=feature_extractor,
    )


def _localisation(
    cfg: EasyDict,
    net_g: nn.Module,
    text_encoder: nn.Module,
    image_encoder: nn.Module,
    dataset: TextDataset,
    device: torch.device,
    batch_size: int,
    seed: int,
    max_captions: int,
) -> dict[str, Any]:
    """Hit rates and chance levels of the generator's attention (one entry per attention
    stage, over at most ``max_captions`` test captions) and of DAMSM's (every test caption)."""
    objects = load_objects(cfg.DATA_DIR)
    stages = generator_localisation(net_g, text_encoder, dataset, objects, device, batch_size, seed, max_captions)
    out = {f"generator_stage{k + 2}": result.as_dict() for k, result in enumerate(stages)}
    out["damsm"] = damsm_localisation(
        image_encoder, text_encoder, dataset, objects, device, batch_size, cfg.TRAIN.SMOOTH.GAMMA1, seed
    ).as_dict()
    return out


@dataclass
class Stream:
    """What streaming the images leaves behind: the DAMSM codes R-precision needs, the
    object-match tally, the showcase, the saver, the image size and the time it took."""

    codes: list[torch.Tensor] = field(default_factory=list)
    sentences: list[torch.Tensor] = field(default_factory=list)
    classes: list[np.ndarray] = field(default_factory=list)
    objects: ObjectTally | None = None
    showcase: Showcase | None = None
    saver: ImageSaver | None = None
    size: int = 0
    seconds: float = 0.0


def stream_batches(
    batches: Iterator[Batch],
    total: int,
    num_captions: int,
    metrics: set[str],
    image_encoder: nn.Module | None,
    quality,
    save_dir: Path | None,
    captions: EvalCaptions | None,
    objects: ObjectTally | None = None,
    registered: Sequence[Metric] = (),
) -> Stream:
    """Every batch through the metrics (``registered``: those of the registry), the showcase
    and the saver; no image is kept."""
    began = time.perf_counter()
    stream = Stream(
        objects=objects,
        showcase=Showcase(total, num_captions),
        saver=ImageSaver(save_dir, captions) if save_dir is not None else None,
    )
    with tqdm(
        total=total,
        desc="generating" if captions is not None else "scoring",
        unit="img",
        dynamic_ncols=True,
        disable=None,
    ) as bar:
        for batch in batches:
            if "rp" in metrics:
                stream.codes.append(image_codes(image_encoder, batch.images))
                stream.sentences.append(batch.sentences.float().cpu())
                stream.classes.append(batch.classes)
            if quality is not None:
                quality.update_fake(batch.images)
            for metric in registered:
                metric.update(batch)
            if objects is not None:
                objects.add(
                    batch.images, sample_rows(batch.start, batch.start + len(batch.texts), num_captions), batch.words
                )
            stream.showcase.add(batch)
            if stream.saver is not None:
                stream.saver.add(batch)
            stream.size = batch.images.size(-1)
            bar.update(len(batch.texts))
    stream.seconds = time.perf_counter() - began
    return stream


def scores(
    stream: Stream,
    metrics: set[str],
    quality,
    nets: Networks,
    dataset: TextDataset,
    captions: EvalCaptions,
    cfg: EasyDict,
    device: torch.device,
    batch_size: int,
    seed: int,
    num_samples: int,
    registered: Sequence[Metric] = (),
) -> tuple[dict[str, Any], dict[str, float]]:
    """The requested metrics from the stream's leftovers (and, for FID, the real images;
    for localisation, the networks), with the seconds each took."""
    result: dict[str, Any] = {}
    timings = {"images": stream.seconds}
    t0 = time.perf_counter()
    if "rp" in metrics:
        pool = pool_sentences(nets.text_encoder, captions, dataset.wordtoix, device, batch_size)
        rp = r_precision(
            torch.cat(stream.codes),
            torch.cat(stream.sentences),
            np.concatenate(stream.classes),
            pool,
            captions.classes,
            mismatched=cfg.EVAL.R_MISMATCHED,
            splits=cfg.EVAL.SPLITS,
            seed=seed,
        )
        result["r_precision"] = {
            "mean": rp.mean,
            "std": rp.std,
            "chance": rp.chance,
            "candidates": rp.candidates,
            "images": len(rp.hits),
        }
        timings["r_precision"], t0 = time.perf_counter() - t0, time.perf_counter()
    if stream.objects is not None:
        result["object_match"] = stream.objects.result().as_dict()
    if quality is not None:
        for real in real_test_images(dataset, stream.size, batch_size, cfg.WORKERS):
            quality.update_real(real.to(device))
        result.update(_quality_numbers(quality.compute()))
        timings["real_images_and_is_fid"], t0 = time.perf_counter() - t0, time.perf_counter()
    for metric in registered:
        result[metric.name] = metric.result(stream.size)
        timings[metric.name], t0 = time.perf_counter() - t0, time.perf_counter()
    if "loc" in metrics:
        result["localisation"] = _localisation(
            cfg, nets.net_g, nets.text_encoder, nets.image_encoder, dataset, device, batch_size, seed, num_samples
        )
        timings["localisation"] = time.perf_counter() - t0
    return result, timings


def _quality_numbers(values: dict[str, float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "inception_score_mean" in values:
        out["inception_score"] = {
            "mean": float(values["inception_score_mean"]),
            "std": float(values["inception_score_std"]),
            "star_mean": float(values["inception_score_star_mean"]),  # TISE's COCO temperature
            "star_std": float(values["inception_score_star_std"]),
        }
    if "fid" in values:
        out["fid"] = float(values["fid"])
    return out
