"""Attention figures: each image followed by one attention map per word, labelled.

``attention_figure``: one row per sample (the DAMSM loop). ``stage_attention_figure``:
one row per generator stage of one sample (sampling).
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from skimage.transform import resize

TILE = 96  # pixel size of every tile in a figure
LABEL_HEIGHT = 14


def quantise(images: torch.Tensor) -> torch.Tensor:
    """[B,3,H,W] in [-1,1] -> uint8 on the same device, as the original writes pixels:
    uint8((x + 1) * 127.5), truncated."""
    return ((images.detach().float().clamp(-1, 1) + 1.0) * 127.5).to(torch.uint8)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[B,3,H,W] in [-1,1] -> [B,H,W,3] uint8 numpy pixels (``quantise``)."""
    return quantise(images).cpu().numpy().transpose(0, 2, 3, 1)


def _tile(image: np.ndarray) -> np.ndarray:
    return (resize(image, (TILE, TILE), order=0, preserve_range=True, anti_aliasing=False)).astype(np.uint8)


def overlay(image: np.ndarray, attention: np.ndarray) -> np.ndarray:
    """Blend an [h,w] attention map, normalised to [0,1] and upsampled bilinearly with
    scikit-image to the image's size, over an image tile [S,S,3] uint8 (S = TILE in the
    row figures)."""
    att = attention.astype(np.float64)
    att = (att - att.min()) / max(att.max() - att.min(), 1e-12)
    att = resize(att, image.shape[:2], order=1, mode="edge", anti_aliasing=False)[..., None]
    heat = np.concatenate([att, att, att], axis=2) * 255.0
    return (0.35 * image + 0.65 * heat).clip(0, 255).astype(np.uint8)


def attention_figure(
    images: torch.Tensor,
    captions: torch.Tensor,
    ixtoword: dict,
    attn_maps: Sequence[torch.Tensor],
    max_rows: int = 8,
    max_words: int | None = None,
) -> np.ndarray:
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


def _fit(text: str, width: int, char_width: int = 6) -> str:
    """``text`` in ASCII, cut to about ``width`` pixels of the default font."""
    text = text.encode("ascii", "replace").decode("ascii")
    room = max(width // char_width, 1)
    return text if len(text) <= room else text[: max(room - 2, 1)] + ".."


def _resized(image: np.ndarray, size: int) -> np.ndarray:
    """[H,W,3] uint8 -> [size,size,3] uint8, bilinear (anti-aliased when shrinking)."""
    if image.shape[:2] == (size, size):
        return image
    out = resize(image, (size, size), order=1, preserve_range=True, anti_aliasing=size < image.shape[0])
    return out.round().clip(0, 255).astype(np.uint8)


def stage_attention_figure(
    images_per_stage: Sequence[torch.Tensor],
    words: Sequence[str],
    maps_per_stage: Sequence[torch.Tensor],
    tile: int = 128,
    title: str | None = None,
) -> np.ndarray:
    """One sample's attention, one row per generator stage: the stage's image, then its
    attention map of each word (upsampled bilinearly, overlaid on the image), word above.

    images_per_stage: per stage [3,H,W] in [-1,1] (sizes may differ; each shown at
    ``tile`` px); words: the caption's n words; maps_per_stage: per stage [T,h,w] with
    T >= n (the first n are shown). ``title`` (e.g. the caption) is written on top.
    Returns uint8 [LABEL_HEIGHT * (rows + (1 if title else 0)) + rows * tile, (1 + n) * tile, 3].
    """
    if len(images_per_stage) != len(maps_per_stage):
        raise ValueError(f"{len(images_per_stage)} stage images but {len(maps_per_stage)} stage attention maps")
    n = len(words)
    for maps in maps_per_stage:
        if maps.dim() != 3 or maps.size(0) < n:
            raise ValueError(f"attention maps must be [T>={n},h,w] for {n} words, got {tuple(maps.shape)}")
    rows = len(images_per_stage)
    top = LABEL_HEIGHT if title else 0
    width, height = (1 + n) * tile, top + rows * (LABEL_HEIGHT + tile)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    if title:
        draw.text((2, 1), _fit(title, width - 4), fill=(0, 0, 0), font=font)
    for r, (image, maps) in enumerate(zip(images_per_stage, maps_per_stage)):
        y = top + r * (LABEL_HEIGHT + tile)
        pixels = to_uint8(image.unsqueeze(0))[0]
        draw.text((2, y + 1), _fit(f"{pixels.shape[0]}x{pixels.shape[1]}", tile - 4), fill=(0, 0, 0), font=font)
        shown = _resized(pixels, tile)
        canvas.paste(Image.fromarray(shown), (0, y + LABEL_HEIGHT))
        maps_np = maps.detach().float().cpu().numpy()
        for w, word in enumerate(words):
            x = (w + 1) * tile
            draw.text((x + 2, y + 1), _fit(word, tile - 4), fill=(0, 0, 0), font=font)
            canvas.paste(Image.fromarray(overlay(shown, maps_np[w])), (x, y + LABEL_HEIGHT))
    return np.asarray(canvas)


def png_bytes(pixels: np.ndarray) -> bytes:
    """[H,W,3] uint8 -> the PNG file that sampling writes (PIL's defaults)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
