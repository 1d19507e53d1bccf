"""The metrics computed exactly as a published table computed them (docs/evaluation.md):
``is_cub`` (AttnGAN's CUB Inception score and TISE's IS*), ``fid_dmgan`` (DM-GAN's "Pytorch
FID"), ``clip_rp`` (TISE's CLIP R-precision) and ``clip_score``; each registered with the
evaluation. The numerical work is in ``metrics/``; here each is fed batches and says its
protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from easydict import EasyDict

from ..data.datasets import build_dataset
from ..errors import OptionError
from ..files import sha256_file
from ..metrics import clip_scores, fid_dmgan, inception_cub
from .captions import Batch, load_eval_captions
from .folder import ImageSaver
from .registry import Metric, MetricContext, register_metric
from .scoring import real_test_images


@register_metric
class CubInceptionScore(Metric):
    name = "is_cub"
    comparable_with = "AttnGAN paper Table 1 (CUB IS); DM-GAN README IS (bird); TISE IS* (CUB)"

    def __init__(self, ctx: MetricContext):
        super().__init__(ctx)
        self.path = ctx.cfg.EVAL.CUB_INCEPTION
        self.net, self.sha256 = inception_cub.load_cub_inception(self.path, ctx.device)
        self.logits: list[torch.Tensor] = []

    @torch.no_grad()
    def update(self, batch: Batch) -> None:
        self.logits.append(self.net(inception_cub.preprocess(batch.images).to(self.ctx.device)).float().cpu())

    def result(self, image_size: int) -> dict[str, Any]:
        logits, seed, splits = torch.cat(self.logits), self.ctx.seed, self.ctx.cfg.EVAL.SPLITS
        mean, std, used = inception_cub.cub_inception_score(logits, seed, splits)
        star_mean, star_std, _ = inception_cub.cub_inception_score(logits, seed, splits, inception_cub.TISE_TEMPERATURE)
        return {"mean": mean, "std": std, "star_mean": star_mean, "star_std": star_std, "images": used}

    def protocol(self) -> dict[str, Any]:
        return {
            "network": "StackGAN's Inception v3 fine-tuned on CUB (TF-slim, moving averages), ported to PyTorch",
            "weights": str(self.path),
            "sha256": self.sha256,
            "resize": "PIL bilinear to 299x299 from the uint8 image (scipy.misc.imresize)",
            "scaling": "x / 127.5 - 1, [-1, 1]",
            "softmax": "over logits 1..50 (background logit 0 dropped)",
            "batch": f"{inception_cub.BATCH}, last partial batch dropped",
            "shuffle_seed": self.ctx.seed,
            "splits": self.ctx.cfg.EVAL.SPLITS,
            "is_star_temperature": inception_cub.TISE_TEMPERATURE,
        }


class _Features50:
    """pool3 features in whole batches of 50 (DM-GAN's drop_last), as running moments."""

    def __init__(self):
        self.moments = fid_dmgan.FeatureMoments()
        self.pending: list[torch.Tensor] = []

    def add(self, features: torch.Tensor) -> None:
        self.pending.append(features.double().cpu())
        waiting = torch.cat(self.pending)
        whole = len(waiting) // fid_dmgan.BATCH * fid_dmgan.BATCH
        if whole:
            self.moments.add(waiting[:whole])
        self.pending = [waiting[whole:]]


def generated_size(cfg: EasyDict) -> int:
    """The size of G's last stage: TREE.BASE_SIZE * 2^(TREE.BRANCH_NUM - 1)."""
    return cfg.TREE.BASE_SIZE * 2 ** (cfg.TREE.BRANCH_NUM - 1)


def write_real_images(cfg: EasyDict, folder: Path, batch_size: int) -> Path:
    """``attngan-eval --real``: every test image once (the centre view at G's size, birds
    cropped to their box) with its first caption and class, written as an image folder with
    its manifest, which the evaluation then scores like a model's: the ceiling to set beside
    a model (TISE's real-image rows). Returns the folder."""
    dataset = build_dataset(cfg, "test")
    captions = load_eval_captions(dataset, cfg.EVAL.SEED)
    saver, start = ImageSaver(folder, None), 0
    for images in real_test_images(dataset, generated_size(cfg), batch_size, cfg.WORKERS):
        rows = [(start + j) * captions.captions_per_image for j in range(len(images))]
        texts = [captions.texts[r] for r in rows]
        saver.add(Batch(start, images, torch.empty(0), captions.classes[rows], texts, []))
        start += len(images)
    saver.close()
    return folder


@torch.no_grad()
def dmgan_statistics(
    net: torch.nn.Module, images: Iterable[torch.Tensor], device: torch.device
) -> tuple[np.ndarray, np.ndarray, int]:
    """(mu [2048], sigma [2048,2048], images used) of uint8 image batches, DM-GAN's steps."""
    features = _Features50()
    for batch in images:
        features.add(net(fid_dmgan.preprocess(batch).to(device)))
    moments = _enough(features.moments, "real test images (pad them: EVAL.FID_DMGAN_REAL_IMAGES, --pad_to)")
    return *moments.statistics(), moments.n


def _enough(moments: fid_dmgan.FeatureMoments, what: str) -> fid_dmgan.FeatureMoments:
    if moments.n < 2:
        raise OptionError(
            f"fid_dmgan drops the last partial batch of {fid_dmgan.BATCH} (DM-GAN's drop_last): {moments.n} "
            f"{what} are left; give at least {fid_dmgan.BATCH}"
        )
    return moments


def save_dmgan_statistics(
    cfg: EasyDict, device: torch.device, out: str | Path, size: int, batch_size: int, seed: int
) -> dict[str, Any]:
    """The real test images' statistics for fid_dmgan (at ``size`` px, padded to
    EVAL.FID_DMGAN_REAL_IMAGES views if set) written to ``out`` in DM-GAN's .npz format."""
    net = fid_dmgan.load_dmgan_inception(cfg.EVAL.DMGAN_INCEPTION, device)
    dataset = build_dataset(cfg, "test")
    views = real_test_images(dataset, size, batch_size, cfg.WORKERS, cfg.EVAL.FID_DMGAN_REAL_IMAGES, seed)
    mu, sigma, count = dmgan_statistics(net, views, device)
    fid_dmgan.save_statistics(out, mu, sigma, count)
    return {"statistics": str(out), "images": count, "test_images": len(dataset), "size": size}


@register_metric
class DmganFid(Metric):
    name = "fid_dmgan"
    comparable_with = "DM-GAN README 'Pytorch FID' column (DF-GAN paper FID with its padded statistics)"

    def __init__(self, ctx: MetricContext):
        super().__init__(ctx)
        ev = ctx.cfg.EVAL
        self.path, self.stats_path, self.pad = ev.DMGAN_INCEPTION, ev.FID_DMGAN_STATS, ev.FID_DMGAN_REAL_IMAGES
        self.net = fid_dmgan.load_dmgan_inception(self.path, ctx.device)
        self.sha256 = sha256_file(self.path)
        self.reference = fid_dmgan.load_statistics(self.stats_path) if self.stats_path else None
        self.fake = _Features50()
        self.real_count = 0

    @torch.no_grad()
    def update(self, batch: Batch) -> None:
        self.fake.add(self.net(fid_dmgan.preprocess(batch.images).to(self.ctx.device)))

    def result(self, image_size: int) -> dict[str, Any]:
        if self.reference is not None:
            mu_real, sigma_real = self.reference
        else:
            real = self.ctx.real_images(image_size, self.pad)
            mu_real, sigma_real, self.real_count = dmgan_statistics(self.net, real, self.ctx.device)
        mu, sigma = _enough(self.fake.moments, "generated images (--num_samples)").statistics()
        return {"fid": fid_dmgan.frechet_distance(mu_real, sigma_real, mu, sigma), "images": self.fake.moments.n}

    def protocol(self) -> dict[str, Any]:
        if self.stats_path:
            real = f"statistics file {self.stats_path} (sha256 {sha256_file(self.stats_path)})"
        elif self.pad:
            real = (
                f"{self.real_count} views of the test images (padded to EVAL.FID_DMGAN_REAL_IMAGES = {self.pad}, "
                "DF-GAN style: each image once centred, then seeded random 76/64 crops and flips)"
            )
        else:
            real = f"{self.real_count} test images, each once, centre view at the generated size"
        return {
            "network": "torchvision Inception v3, ImageNet weights, pool3 (2048-d)",
            "weights": str(self.path),
            "sha256": self.sha256,
            "resize": "PIL bilinear Resize((299, 299)) from the uint8 image, ToTensor",
            "scaling": "[0, 1], then x * std_c / 0.5 + (mean_c - 0.5) / 0.5 (DM-GAN's InceptionV3)",
            "batch": f"{fid_dmgan.BATCH}, last partial batch dropped",
            "statistics": "float64 mean, np.cov (unbiased); scipy.linalg.sqrtm",
            "real": real,
        }


def _clip(ctx: MetricContext) -> clip_scores.Clip:
    """One CLIP for clip_rp and clip_score."""
    if "clip" not in ctx.shared:
        ctx.shared["clip"] = clip_scores.load_clip(ctx.cfg.EVAL.CLIP_WEIGHTS, ctx.device)
        ctx.shared["clip_sha256"] = sha256_file(ctx.cfg.EVAL.CLIP_WEIGHTS)
    return ctx.shared["clip"]


def _clip_images(ctx: MetricContext, batch: Batch) -> torch.Tensor:
    """The batch's CLIP image embeddings, computed once for both CLIP metrics."""
    if ctx.shared.get("clip_batch") is not batch:
        ctx.shared["clip_batch"], ctx.shared["clip_images"] = batch, _clip(ctx).images(batch.images)
    return ctx.shared["clip_images"]


class _ClipMetric(Metric):
    def __init__(self, ctx: MetricContext):
        super().__init__(ctx)
        self.clip = _clip(ctx)
        self.images: list[torch.Tensor] = []
        self.texts: list[str] = []
        self.classes: list[np.ndarray] = []

    def update(self, batch: Batch) -> None:
        self.images.append(_clip_images(self.ctx, batch))
        self.texts += batch.texts
        self.classes.append(np.asarray(batch.classes))

    def protocol(self) -> dict[str, Any]:
        return {
            "network": f"CLIP ViT-B/32 (open_clip {clip_scores.ARCHITECTURE}), float32",
            "weights": str(self.ctx.cfg.EVAL.CLIP_WEIGHTS),
            "sha256": self.ctx.shared["clip_sha256"],
            "resize": "CLIP's: bicubic shorter side to 224, centre crop, OpenAI mean/std, from the uint8 image",
            "captions": "as the text encoder reads them (lowercase words)",
        }


@register_metric
class ClipRPrecision(_ClipMetric):
    name = "clip_rp"
    comparable_with = "TISE RP (CLIP ViT-B/32 R-precision)"

    def result(self, image_size: int) -> dict[str, Any]:
        ctx = self.ctx
        if "clip_pool" not in ctx.shared:
            ctx.shared["clip_pool"] = self.clip.texts(ctx.captions.texts)
        return clip_scores.clip_r_precision(
            torch.cat(self.images),
            self.clip.texts(self.texts),
            np.concatenate(self.classes),
            ctx.shared["clip_pool"],
            ctx.captions.classes,
            mismatched=ctx.cfg.EVAL.R_MISMATCHED,
            bins=ctx.cfg.EVAL.SPLITS,
            seed=ctx.seed,
        )

    def protocol(self) -> dict[str, Any]:
        return {
            **super().protocol(),
            "candidates": f"the true caption and {self.ctx.cfg.EVAL.R_MISMATCHED} test captions of other classes",
            "bins": f"{self.ctx.cfg.EVAL.SPLITS} (seeded shuffle, N // bins each, the last takes the remainder)",
            "seed": self.ctx.seed,
        }


@register_metric
class ClipScore(_ClipMetric):
    name = "clip_score"
    comparable_with = "CLIP score, 100 * max(cos, 0) (later text-to-image papers)"

    def result(self, image_size: int) -> dict[str, Any]:
        return {
            **clip_scores.clip_score(torch.cat(self.images), self.clip.texts(self.texts)),
            "images": len(self.texts),
        }
