"""Inception score and FID of generated images, on torch-fidelity's port of the TensorFlow
Inception-v3 (bit-compatible with the network, and the TF1 bilinear resize to 299 px, behind
the published IS and FID numbers). One forward pass of that network per batch feeds both
metrics: its 2048-d pool features go to torchmetrics' ``FrechetInceptionDistance`` (which
keeps running float64 sums, so memory does not grow with the number of images) and its
unbiased logits to the Inception score.

Caveat for CUB: the paper's CUB Inception score (4.36) came from StackGAN's Inception model
fine-tuned on CUB, which this network is not; its COCO score and the later FIDs used the
ImageNet network that is used here."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterable
from pathlib import Path
from urllib.error import URLError

import numpy as np
import torch
from torch import nn
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric
from torchmetrics.image.fid import FrechetInceptionDistance

from ..errors import DataError, SetupError, user_path
from ..files import write_atomic
from ..visualize import quantise

INCEPTION_WEIGHTS_URL = URL_INCEPTION_V3
INCEPTION_WEIGHTS_FILE = URL_INCEPTION_V3.rsplit("/", 1)[-1]  # weights-inception-2015-12-05-6726825d.pth
METRICS = frozenset({"is", "fid"})
# TISE's IS* on COCO: the 1008 unbiased logits divided by this before the softmax
# (VinAIResearch/tise-toolbox image_realism/IS/coco/inception_score_star_coco.py).
TISE_COCO_TEMPERATURE = 0.9091363549232483


class InceptionWeightsError(SetupError):
    """The Inception weights can neither be found locally nor downloaded."""


def library_weights_path() -> Path:
    """Where torch-fidelity's download lands (torch.hub's cache, moved by $TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE


def load_inception(weights: str | os.PathLike = "", device: str | torch.device = "cpu") -> nn.Module:
    """torch-fidelity's Inception-v3, frozen: uint8 images [N,3,H,W] (any size, resized to
    299) -> (pool features [N,2048], unbiased logits [N,1008]). ``weights``: a local copy of
    INCEPTION_WEIGHTS_FILE (EVAL.INCEPTION_WEIGHTS); '' = the library's cache or download."""
    features = ["2048", "logits_unbiased"]
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise InceptionWeightsError(
                f"EVAL.INCEPTION_WEIGHTS = {path}: no such file; download "
                f"{INCEPTION_WEIGHTS_URL} there, or set it to '' to use the library's download"
            )
        try:  # the library loads with weights_only=False: admit only a plain state_dict first
            torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
            raise InceptionWeightsError(
                f"{path} is not a state_dict of tensors like {INCEPTION_WEIGHTS_FILE}: {err}"
            ) from None
        net = FeatureExtractorInceptionV3("inception-v3-compat", features, feature_extractor_weights_path=str(path))
    else:
        try:
            net = FeatureExtractorInceptionV3("inception-v3-compat", features)
        except (URLError, OSError) as err:  # offline, or the cache is not writable
            raise InceptionWeightsError(
                f"the Inception weights for IS/FID could not be downloaded ({err}). Fetch "
                f"{INCEPTION_WEIGHTS_URL} and put it at {library_weights_path()} (the library's cache), or "
                f"anywhere and name it in EVAL.INCEPTION_WEIGHTS"
            ) from None
    return net.to(device)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """FID between N(mu1, sigma1) and N(mu2, sigma2) (means [D], covariances [D,D]), by
    torch-fidelity's port of the TTUR reference (eigenvalues of sigma1 @ sigma2), in float64."""

    def as_stats(mu, sigma):
        return {"mu": np.asarray(mu, np.float64), "sigma": np.asarray(sigma, np.float64)}

    return fid_statistics_to_metric(as_stats(mu1, sigma1), as_stats(mu2, sigma2), verbose=False)[KEY_METRIC_FID]


def inception_score_from_probs(probs: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """probs [N,K] (class posteriors of N images) -> (mean, std) of exp(E KL(p(y|x) || p(y)))
    over ``splits`` consecutive groups, as the Improved-GAN code behind the paper's numbers
    does (no shuffling, population std). torchmetrics' InceptionScore differs in both: it
    shuffles with the global RNG and reports the sample std."""
    probs = probs.double()
    scores = []
    for i in range(splits):
        part = probs[i * len(probs) // splits : (i + 1) * len(probs) // splits]
        kl = torch.special.xlogy(part, part) - torch.special.xlogy(part, part.mean(dim=0, keepdim=True))
        scores.append(kl.sum(dim=1).mean().exp().item())
    return float(np.mean(scores)), float(np.std(scores))


def uint8_images(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> uint8 pixels, uint8((x + 1) * 127.5) truncated as the
    original wrote its PNGs; uint8 input passes through."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [N,3,H,W], got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images
    return quantise(images)


class _PrecomputedFeatures(nn.Identity):
    """Lets torchmetrics' FID take the features of our shared Inception pass."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features


class ImageQuality:
    """Accumulates generated (and, for FID, real) images batch by batch; ``compute()`` gives
    {"inception_score_mean", "inception_score_std", "fid"} for the requested ``metrics``.

    Images: float tensors in [-1, 1] as the generator outputs them, or uint8 in [0, 255];
    [N,3,H,W], any square size. ``feature_extractor`` replaces the Inception network (tests,
    or one network loaded once with ``load_inception`` for many evaluations): uint8 images
    -> (features [N,D], logits [N,K])."""

    def __init__(
        self,
        metrics: Iterable[str] = ("is", "fid"),
        weights: str | os.PathLike = "",
        device: str | torch.device = "cpu",
        splits: int = 10,
        feature_extractor: nn.Module | None = None,
    ):
        self.metrics = set(metrics)
        if not self.metrics or not self.metrics <= METRICS:
            raise ValueError(f"metrics must be a non-empty subset of {sorted(METRICS)}, got {sorted(self.metrics)}")
        self.device = torch.device(device)
        self.splits = splits
        self.network = (
            feature_extractor.to(self.device) if feature_extractor is not None else load_inception(weights, self.device)
        )
        self.logits: list[torch.Tensor] = []
        self.fid: FrechetInceptionDistance | None = None  # made at the first batch, once the feature size is known

    @torch.no_grad()
    def _features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.network(uint8_images(images).to(self.device))

    def _fid_metric(self, num_features: int) -> FrechetInceptionDistance:
        if "fid" not in self.metrics:
            raise ValueError("FID was not among the requested metrics")
        if self.fid is None:
            self.fid = FrechetInceptionDistance(feature=_PrecomputedFeatures(num_features)).to(self.device)
        return self.fid

    def update_fake(self, images: torch.Tensor) -> None:
        features, logits = self._features(images)
        if "is" in self.metrics:
            self.logits.append(logits.float().cpu())
        if "fid" in self.metrics:
            self._fid_metric(features.shape[1]).update(features, real=False)

    def update_real(self, images: torch.Tensor) -> None:
        """Real images for FID (test images at the generator's resolution); a no-op without FID."""
        if "fid" in self.metrics:
            features = self._features(images)[0]
            self._fid_metric(features.shape[1]).update(features, real=True)

    def compute(self) -> dict[str, float]:
        out = {}
        if "is" in self.metrics:
            if not self.logits:
                raise RuntimeError("no generated images were given for the Inception score")
            logits = torch.cat(self.logits).double()
            out["inception_score_mean"], out["inception_score_std"] = inception_score_from_probs(
                logits.softmax(dim=1), self.splits
            )
            out["inception_score_star_mean"], out["inception_score_star_std"] = inception_score_from_probs(
                (logits / TISE_COCO_TEMPERATURE).softmax(dim=1), self.splits
            )
        if "fid" in self.metrics:
            if self.fid is None:
                raise RuntimeError("no images were given for FID")
            out["fid"] = float(self.fid.compute())
        return out

    def save_real_statistics(self, path: str | os.PathLike) -> None:
        """Write the real images' feature mean and covariance to an .npz (keys mu, sigma as in
        pytorch-fid, and num_images), so that later evaluations against the same real set
        (name the dataset, split and resolution in the file name) can load them instead."""
        fid, path = self.fid, Path(path)
        if fid is None or fid.real_features_num_samples < 2:
            raise RuntimeError("at least two real images are needed to save their statistics")
        n = fid.real_features_num_samples.double()
        mu = fid.real_features_sum / n
        sigma = (fid.real_features_cov_sum - n * torch.outer(mu, mu)) / (n - 1)
        write_atomic(path, lambda f: np.savez(f, mu=mu.cpu().numpy(), sigma=sigma.cpu().numpy(), num_images=int(n)))

    def load_real_statistics(self, path: str | os.PathLike) -> None:
        """Use the real statistics saved by ``save_real_statistics`` instead of ``update_real``."""
        with user_path(path, "cannot read FID statistics"), np.load(path) as saved:
            mu, sigma, n = (
                torch.as_tensor(saved[key], dtype=torch.float64, device=self.device)
                for key in ("mu", "sigma", "num_images")
            )
        fid = self._fid_metric(len(mu))
        if fid.real_features_sum.shape != mu.shape:
            raise DataError(
                f"{path} holds {len(mu)}-d statistics, the network gives {len(fid.real_features_sum)}-d features"
            )
        fid.real_features_sum = mu * n
        fid.real_features_cov_sum = sigma * (n - 1) + n * torch.outer(mu, mu)
        fid.real_features_num_samples = n.long()
