"""``fid_dmgan``: the "Pytorch FID" column of DM-GAN's README table (copied by DF-GAN and
most later papers), as MinfengZhu/DM-GAN ``eval/FID`` computes it (an early
mseitzer/pytorch-fid, 802da39): torchvision's ImageNet Inception v3 (not the TF one behind
``fid``), each image opened with PIL, ``Resize((299, 299))`` (PIL bilinear) and
``ToTensor`` ([0, 1]), then that code's per-channel scaling ``x * std_c / 0.5 + (mean_c -
0.5) / 0.5`` with ImageNet's mean and std, torchvision's blocks up to the final average pool
(2048-d "pool3" features), batches of 50 with the remainder dropped (``--batch-size 50``,
``drop_last=True``), mean and ``np.cov`` (unbiased) in float64, and the Frechet distance with
``scipy.linalg.sqrtm`` (a 1e-6 diagonal offset if the product is singular). Reference
statistics are an .npz with ``mu`` and ``sigma`` (DM-GAN's ``bird_val.npz``/``coco_val.npz``,
DF-GAN's ``bird_val256_FIDK0.npz`` read as they are)."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import linalg
from torch import nn

from ..checkpoint import CheckpointError, read_state_dict
from ..config import ConfigError
from ..errors import DataError, SetupError, user_path
from ..files import write_atomic

WEIGHTS_FILE = "inception_v3_google-0cc3c7bd.pth"  # torchvision's ImageNet weights
WEIGHTS_URL = f"https://download.pytorch.org/models/{WEIGHTS_FILE}"
BATCH = 50  # DM-GAN README's --batch-size; the last partial batch is dropped
DIMS = 2048
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class DmganInception(nn.Module):
    """DM-GAN's ``InceptionV3([3])``: images [N,3,H,W] in [0, 1] -> pool3 features [N,2048]."""

    def __init__(self, inception: nn.Module):
        super().__init__()
        names = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3"]
        names += ["maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d"]
        names += ["Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool"]
        self.blocks = nn.Sequential(*(getattr(inception, name) for name in names))
        self.register_buffer("scale", torch.tensor(STD).view(1, 3, 1, 1) / 0.5)
        self.register_buffer("shift", (torch.tensor(MEAN).view(1, 3, 1, 1) - 0.5) / 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # resize_input (align_corners=True): the identity on the 299 px images the loader gives
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=True)
        x = x * self.scale + self.shift  # normalize_input, as that code wrote it
        return self.blocks(x).flatten(1)


def load_dmgan_inception(path: str | os.PathLike, device: torch.device | str = "cpu") -> DmganInception:
    """torchvision's Inception v3 with the ImageNet weights of the local file ``path``
    (EVAL.DMGAN_INCEPTION), frozen, in eval mode."""
    from torchvision.models import inception_v3

    where = f"download {WEIGHTS_URL} (torchvision's ImageNet Inception v3)"
    if not path:
        raise ConfigError(
            f"EVAL.DMGAN_INCEPTION is empty: fid_dmgan needs {WEIGHTS_FILE}; {where} and set "
            f"EVAL.DMGAN_INCEPTION to it, e.g. --set EVAL.DMGAN_INCEPTION=models/{WEIGHTS_FILE}"
        )
    if not os.path.isfile(path):
        raise SetupError(f"EVAL.DMGAN_INCEPTION = {path}: no such file; {where} and put it there")
    net = inception_v3(weights=None, aux_logits=True, init_weights=False)
    try:
        net.load_state_dict(read_state_dict(path))
    except RuntimeError as err:
        raise CheckpointError(
            f"{path}: not torchvision's Inception v3 weights ({WEIGHTS_FILE}): {str(err).splitlines()[0]}"
        ) from None
    return DmganInception(net).requires_grad_(False).eval().to(device)


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """uint8 images [N,3,H,W] -> [N,3,299,299] in [0, 1]: PIL bilinear ``Resize((299, 299))``
    of the uint8 image, then ``ToTensor``, as DM-GAN's loader."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 images [N,3,H,W], got {images.dtype} {tuple(images.shape)}")
    out = np.empty((len(images), 299, 299, 3), np.uint8)
    for i, pixels in enumerate(images.permute(0, 2, 3, 1).cpu().numpy()):
        out[i] = np.asarray(Image.fromarray(pixels).resize((299, 299), Image.BILINEAR))
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div(255.0)


class FeatureMoments:
    """Running float64 sums of features [b,D] -> mean and unbiased covariance (np.cov's),
    without keeping the features."""

    def __init__(self):
        self.n = 0
        self.total: np.ndarray | float = 0.0
        self.outer: np.ndarray | float = 0.0

    def add(self, features: torch.Tensor) -> None:
        f = features.double().cpu().numpy()
        self.n += len(f)
        self.total = self.total + f.sum(0)
        self.outer = self.outer + f.T @ f

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        if self.n < 2:
            raise ValueError(f"{self.n} images: FID needs at least two")
        mu = self.total / self.n
        return mu, (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2)), with scipy's sqrtm as
    DM-GAN's calculate_frechet_distance (its 1e-6 offset when the product is singular)."""
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ArithmeticError(f"FID: imaginary component {np.max(np.abs(covmean.imag))} in sqrtm")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def save_statistics(path: str | os.PathLike, mu: np.ndarray, sigma: np.ndarray, num_images: int) -> None:
    """DM-GAN's .npz (``mu``, ``sigma``; ``num_images`` beside, which their loader ignores)."""
    with user_path(path, "FID statistics file"):
        write_atomic(path, lambda f: np.savez(f, mu=mu, sigma=sigma, num_images=num_images))


def load_statistics(path: str | os.PathLike, dims: int = DIMS) -> tuple[np.ndarray, np.ndarray]:
    """``mu`` [D] and ``sigma`` [D,D] of an .npz in DM-GAN's format (EVAL.FID_DMGAN_STATS)."""
    what = "EVAL.FID_DMGAN_STATS"
    with user_path(path, what, SetupError):
        try:
            with np.load(path) as saved:
                missing = [k for k in ("mu", "sigma") if k not in saved.files]
                if missing:
                    raise DataError(
                        f"{what} = {path}: no {' or '.join(missing)} array (expected DM-GAN's .npz: mu [{dims}], "
                        f"sigma [{dims},{dims}]); it has {saved.files}"
                    )
                mu, sigma = np.asarray(saved["mu"], np.float64), np.asarray(saved["sigma"], np.float64)
        except (ValueError, zipfile.BadZipFile, EOFError) as err:
            raise DataError(f"{what} = {path}: not an .npz file ({err})") from None
    if mu.shape != (dims,) or sigma.shape != (dims, dims):
        raise DataError(
            f"{what} = {path}: mu {mu.shape} and sigma {sigma.shape}, expected ({dims},) and ({dims}, {dims})"
        )
    return mu, sigma
