"""Attention figures: each image followed by one attention map per word, labelled."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from skimage.transform import resize

TILE = 96  # pixel size of every tile in a figure
LABEL_HEIGHT = 14


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[B,3,H,W] in [-1,1] -> [B,H,W,3] uint8 as the original writes pixels:
    uint8((x + 1) * 127.5), truncated."""
    arr = ((images.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).numpy()
    return arr.astype(np.uint8).transpose(0, 2, 3, 1)


def _tile(image: np.ndarray) -> np.ndarray:
    return (resize(image, (TILE, TILE), order=0, preserve_range=True, anti_aliasing=False)).astype(np.uint8)


def overlay(image: np.ndarray, attention: np.ndarray) -> np.ndarray:
    """Blend an [h,w] attention map, normalised to [0,1] and upsampled bilinearly with
    scikit-image, over an image tile [TILE,TILE,3] uint8."""
    att = attention.astype(np.float64)
    att = (att - att.min()) / max(att.max() - att.min(), 1e-12)
    att = resize(att, (TILE, TILE), order=1, mode="edge", anti_aliasing=False)[..., None]
    heat = np.concatenate([att, att, att], axis=2) * 255.0
    return (0.35 * image + 0.65 * heat).clip(0, 255).astype(np.uint8)


def attention_figure(images: torch.Tensor, captions: torch.Tensor, ixtoword: dict,
                     attn_maps: Sequence[torch.Tensor], max_rows: int = 8, max_words: int | None = None) -> np.ndarray:
    """One row per sample: the image, then its attention map for each word.

    images [B,3,H,W] in [-1,1]; captions [B,T] word ids (0 = padding); attn_maps: per
    sample [1 or more, n_words, h, w] (or [n_words,h,w]) -> figure [H',W',3] uint8.
    """
    rows = min(max_rows, images.size(0))
    tiles = to_uint8(images[:rows])
    lengths = [int(a.reshape(-1, *a.shape[-2:]).size(0)) for a in attn_maps[:rows]]
    cols = 1 + (max(lengths) if lengths else 0)
    if max_words is not None:
        cols = min(cols, 1 + max_words)
    height, width = rows * (TILE + LABEL_HEIGHT), cols * TILE
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for r in range(rows):
        top = r * (TILE + LABEL_HEIGHT)
        image = _tile(tiles[r])
        canvas.paste(Image.fromarray(image), (0, top + LABEL_HEIGHT))
        maps = attn_maps[r].detach().float().cpu().reshape(-1, *attn_maps[r].shape[-2:]).numpy()
        for w in range(min(maps.shape[0], cols - 1)):
            word = ixtoword.get(int(captions[r, w]), "?")
            draw.text(((w + 1) * TILE + 2, top), word, fill=(0, 0, 0), font=font)
            canvas.paste(Image.fromarray(overlay(image, maps[w])), ((w + 1) * TILE, top + LABEL_HEIGHT))
    return np.asarray(canvas)
