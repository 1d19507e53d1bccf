"""``clip_rp`` and ``clip_score`` with OpenAI's CLIP ViT-B/32, built and loaded by open_clip
(the optional extra ``.[clip]``) from a local weights file (EVAL.CLIP_WEIGHTS).

- CLIP R-precision, TISE's protocol (VinAIResearch/tise-toolbox ``text_relevance/RP_coco.py``):
  for each image, its true caption and 99 mismatched ones ranked by CLIP's image-text
  similarity, a hit when the true one is first (a tie counts as a hit, as ``np.argmax``);
  the images shuffled (seeded here, unseeded there) into 10 bins of ``N // 10``, the last
  bin taking the remainder; mean and population std of the bins' hit rates.
- CLIP score: ``100 * max(cos(image, caption), 0)``, averaged over the images.

Images go through CLIP's own preprocessing (bicubic resize of the shorter side to 224,
centre crop, OpenAI's mean and std) from their uint8 pixels."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..checkpoint import CheckpointError
from ..config import ConfigError
from ..errors import SetupError
from .r_precision import r_precision

ARCHITECTURE = "ViT-B-32-quickgelu"  # OpenAI's ViT-B/32 (its QuickGELU activation; open_clip's 'ViT-B-32' has GELU)
WEIGHTS_URL = (
    "https://openaipublic.azureedge.net/clip/models/"
    "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt"
)
HF_WEIGHTS = "https://huggingface.co/timm/vit_base_patch32_clip_224.openai (open_clip_pytorch_model.bin)"
_JIT_EXTRAS = ("input_resolution", "context_length", "vocab_size")  # in OpenAI's TorchScript state, not weights


def _open_clip():
    try:
        import open_clip
    except ImportError:
        raise SetupError("clip_rp and clip_score need open_clip: pip install -e '.[clip]' (open-clip-torch)") from None
    return open_clip


@dataclass
class Clip:
    """CLIP ViT-B/32 ready to embed: the model (eval mode), its image transform (PIL ->
    [3,224,224]) and tokenizer (list of str -> [n,77] tokens)."""

    model: torch.nn.Module
    transform: Callable[[Image.Image], torch.Tensor]
    tokenizer: Callable[[list[str]], torch.Tensor]
    device: torch.device

    @torch.no_grad()
    def images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [N,3,H,W] -> unit image embeddings [N,512] (float32, CPU)."""
        pixels = images.permute(0, 2, 3, 1).cpu().numpy()
        batch = torch.stack([self.transform(Image.fromarray(p)) for p in pixels]).to(self.device)
        return F.normalize(self.model.encode_image(batch).float(), dim=-1).cpu()

    @torch.no_grad()
    def texts(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        """Captions -> unit text embeddings [N,512] (float32, CPU)."""
        out = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(texts[start : start + batch_size]).to(self.device)
            out.append(F.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.empty(0, 512)


def _state_dict(path: str) -> dict[str, torch.Tensor]:
    """OpenAI's TorchScript ``ViT-B-32.pt``, an open_clip state_dict (.bin/.pt) or .safetensors."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            scripted = any(name.endswith("constants.pkl") for name in archive.namelist())
        if scripted:  # OpenAI's release: TorchScript, which torch.load(weights_only=True) refuses
            state = torch.jit.load(path, map_location="cpu").state_dict()
            return {k: v for k, v in state.items() if k not in _JIT_EXTRAS}
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"EVAL.CLIP_WEIGHTS = {path}: expected a state_dict, got {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_clip(path: str | os.PathLike, device: torch.device | str = "cpu") -> Clip:
    """CLIP ViT-B/32 from the local file ``path`` (EVAL.CLIP_WEIGHTS), frozen, float32."""
    where = f"download OpenAI's ViT-B-32.pt from {WEIGHTS_URL} (or {HF_WEIGHTS})"
    if not path:
        raise ConfigError(f"EVAL.CLIP_WEIGHTS is empty: clip_rp and clip_score need CLIP ViT-B/32; {where}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SetupError(f"EVAL.CLIP_WEIGHTS = {path}: no such file; {where} and put it there")
    open_clip = _open_clip()
    model = open_clip.create_model(ARCHITECTURE, pretrained=None)
    try:
        state = _state_dict(path)
        model.load_state_dict(state)
    except (RuntimeError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"EVAL.CLIP_WEIGHTS = {path}: not CLIP ViT-B/32 weights ({reason[:300]})") from None
    transform = open_clip.image_transform(
        model.visual.image_size, is_train=False, mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD
    )
    device = torch.device(device)
    return Clip(model.requires_grad_(False).eval().to(device), transform, open_clip.get_tokenizer(ARCHITECTURE), device)


def clip_score(images: torch.Tensor, captions: torch.Tensor) -> dict[str, float]:
    """Unit embeddings of images [N,D] and of their captions [N,D] -> {"mean", "std"} of
    100 * max(cos, 0) over the images."""
    per_image = 100.0 * (images.double() * captions.double()).sum(dim=1).clamp(min=0)
    return {"mean": float(per_image.mean()), "std": float(per_image.std(unbiased=False))}


def tise_bins(hits: np.ndarray, seed: int, bins: int = 10) -> tuple[float, float]:
    """RP_coco.py's bins: shuffled, ``N // bins`` each, the last one taking the remainder;
    (mean, population std) of the bins' hit rates."""
    order = np.random.default_rng(seed).permutation(len(hits))
    size = len(hits) // bins
    if size == 0:
        raise ValueError(f"{len(hits)} images for {bins} bins: at least one image a bin")
    rates = [hits[order[i * size : (i + 1) * size if i < bins - 1 else None]].mean() for i in range(bins)]
    return float(np.mean(rates)), float(np.std(rates))


def clip_r_precision(
    images: torch.Tensor,
    captions: torch.Tensor,
    image_classes: np.ndarray,
    pool: torch.Tensor,
    pool_classes: np.ndarray,
    mismatched: int = 99,
    bins: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Unit embeddings of images [N,D], their true captions [N,D] and the caption pool [M,D]
    (mismatched ones drawn from captions of other classes, metrics.r_precision's draw) ->
    {"mean", "std", "candidates", "images"}: TISE's R-precision."""
    ranked = r_precision(images, captions, image_classes, pool, pool_classes, mismatched, splits=1, seed=seed)
    mean, std = tise_bins(ranked.hits, seed, bins)
    return {"mean": mean, "std": std, "candidates": ranked.candidates, "images": len(ranked.hits)}
