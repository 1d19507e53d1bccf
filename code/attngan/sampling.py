"""Sampling from a trained generator, as the original's ``main.py``/``trainer.py`` do it
with TRAIN.FLAG False, and from one's own captions.

- ``gen_example`` (B_VALIDATION False): the captions of the files listed in
  ``DATA_DIR/example_filenames.txt``, one batch per file, written to
  ``<NET_G without .pth>/<file's base name>/0_s_<sentence>_g<k>.png`` (stage k) and
  ``..._a<k>.png`` (attention maps of stage k+2, over the image of stage k+1).
- ``sample_validation`` (B_VALIDATION True): one caption of every test image (shuffled,
  drop_last batches) -> ``<NET_G without .pth>/valid/single/<key>_s-1.png``.
- ``sample_captions``: captions given on the command line, several images each.
- ``sample_main``: the ``attngan-sample`` command.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from easydict import EasyDict
from tqdm import tqdm

from .config import ConfigError
from .data.text import _raw_tokens, load_text_data, tokenize
from .errors import DataError, OptionError, user_path
from .generation import (
    CaptionBatch,
    caption_noise,
    draw_noise,
    encode_captions,
    generate,
    generate_from_ids,
    load_models,
    stage_image,
)
from .visualize import png_bytes, stage_attention_figure, to_uint8

log = logging.getLogger(__name__)
# Longest caption attngan-sample draws, in words the vocabulary knows: its attention figure
# has a map per word and stage, and the model was trained on TEXT.WORDS_NUM (18) words.
MAX_CAPTION_WORDS = 100


def output_root(net_g: str) -> Path:
    """``<NET_G without .pth>``, the folder the original writes samples under."""
    if not net_g:
        raise ConfigError(
            "TRAIN.NET_G is empty: set it to a generator checkpoint (e.g. --set TRAIN.NET_G=models/bird_AttnGAN2.pth)"
        )
    cut = net_g.rfind(".pth")
    if cut > 0:
        return Path(net_g[:cut])
    path = Path(net_g)
    return path.with_suffix("") if path.suffix else path.with_name(path.name + "_samples")


def _save_png(pixels: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(pixels))
    return path


# ---------------------------------------------------------------- example captions


def read_example_list(data_dir: str | Path) -> list[str]:
    """Names in ``DATA_DIR/example_filenames.txt`` (caption files under DATA_DIR without
    ``.txt``), empty lines skipped."""
    path = Path(data_dir) / "example_filenames.txt"
    if not path.is_file():
        raise DataError(
            f"{path} not found: with B_VALIDATION False, sampling reads the caption files "
            "it lists (one path under DATA_DIR without '.txt' a line); or pass --caption TEXT"
        )
    with user_path(path, "cannot read"):
        names = [line.strip() for line in path.read_text(encoding="utf-8").split("\n")]
    names = [n for n in names if n]
    if not names:
        raise DataError(f"{path} lists no caption file")
    return names


def read_caption_file(path: Path) -> tuple[list[str], list[int]]:
    """Sentences of a caption file and their line numbers (1-based). As the original, empty
    lines and lines without any word are skipped (the latter with a warning)."""
    if not path.is_file():
        raise DataError(f"caption file not found: {path} (listed in example_filenames.txt)")
    sentences, numbers = [], []
    with user_path(path, "cannot read caption file"):
        text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        if not _raw_tokens(line):
            if line.strip():
                log.warning("%s line %d: no words in %r; skipped", path, number, line)
            continue
        sentences.append(line)
        numbers.append(number)
    if not sentences:
        raise DataError(f"{path} has no caption")
    return sentences, numbers


def save_example_batch(
    save_dir: Path,
    batch: CaptionBatch,
    fake_imgs: list[torch.Tensor],
    attention_maps: list[torch.Tensor],
    prefix: str = "0",
) -> list[Path]:
    """The original's files for one batch: ``{prefix}_s_{sentence}_g{k}.png`` per stage and
    ``..._a{k}.png`` (the attention figure of stage k+2) per attention stage."""
    written: list[Path] = []
    pixels = [to_uint8(imgs) for imgs in fake_imgs]
    for j in range(len(batch)):
        name = f"{prefix}_s_{batch.sorted_indices[j]}"
        for k, stage in enumerate(pixels):
            written.append(_save_png(stage[j], save_dir / f"{name}_g{k}.png"))
        n = int(batch.cap_lens[j])
        for k, maps in enumerate(attention_maps):
            figure = stage_attention_figure(
                [stage_image(fake_imgs, k)[j]], batch.words[j], [maps[j, :n]], title=" ".join(batch.words[j])
            )
            written.append(_save_png(figure, save_dir / f"{name}_a{k}.png"))
    return written


def gen_example(cfg: EasyDict, device: torch.device) -> list[Path]:
    """Images of the example captions (B_VALIDATION False); returns the files written.

    Each file listed in ``DATA_DIR/example_filenames.txt`` is one batch; every caption is
    checked before the models load.
    """
    text = load_text_data(cfg.DATA_DIR, cfg.TEXT.CAPTIONS_PER_IMAGE)
    root = output_root(cfg.TRAIN.NET_G)
    batches: list[tuple[str, CaptionBatch]] = []
    for name in read_example_list(cfg.DATA_DIR):
        path = Path(cfg.DATA_DIR) / f"{name}.txt"
        sentences, numbers = read_caption_file(path)
        key = name[name.rfind("/") + 1 :]
        if any(key == k for k, _ in batches):
            log.warning("%s: another listed file has the base name %r; its images are overwritten", path, key)
        batches.append((key, encode_captions(sentences, text.wordtoix, str(path), numbers, MAX_CAPTION_WORDS)))
    net_g, text_encoder = load_models(cfg, text.n_words, device)
    written: list[Path] = []
    for key, batch in batches:
        z = draw_noise(len(batch), cfg, device)
        fake_imgs, attention_maps = generate(net_g, text_encoder, batch, z)
        written += save_example_batch(root / key, batch, fake_imgs, attention_maps)
        log.info("%s: %d captions -> %s", key, len(batch), root / key)
    return written


# ---------------------------------------------------------------- validation split


def sample_validation(cfg: EasyDict, device: torch.device, seed: int = 100) -> int:
    """The last-stage image of one caption of every test image (B_VALIDATION True), in
    shuffled batches of TRAIN.BATCH_SIZE, the last incomplete one dropped (as the
    original); returns the number of images written to ``<NET_G without .pth>/valid/single``.

    Batch order and caption choice are drawn from ``seed``.
    """
    from .data.datasets import build_dataset, prepare_data
    from .data.loader import epoch_loader

    save_dir = output_root(cfg.TRAIN.NET_G) / "valid" / "single"
    dataset = build_dataset(cfg, "test")
    loader = epoch_loader(dataset, cfg.TRAIN.BATCH_SIZE, cfg.WORKERS, seed, epoch=0)
    net_g, text_encoder = load_models(cfg, dataset.n_words, device)
    count = 0
    for batch in tqdm(loader, desc="sampling", dynamic_ncols=True, disable=None):
        _, captions, cap_lens, _, keys = prepare_data(batch, device)
        z = draw_noise(captions.size(0), cfg, device)
        fake_imgs, _ = generate_from_ids(net_g, text_encoder, captions, cap_lens, z)
        for key, pixels in zip(keys, to_uint8(fake_imgs[-1])):
            _save_png(pixels, save_dir / f"{key}_s-1.png")
        count += len(keys)
    log.info("%d images -> %s", count, save_dir)
    return count


# ---------------------------------------------------------------- one's own captions


def slug(text: str, max_len: int = 60) -> str:
    """File-name part for a caption: its ASCII tokens joined by '_', cut to ``max_len``."""
    return "_".join(tokenize(text))[:max_len].rstrip("_") or "caption"


def sample_captions(
    cfg: EasyDict,
    device: torch.device,
    sentences: Sequence[str],
    out_dir: str | Path,
    n_per_caption: int = 1,
    seed: int = 100,
) -> list[Path]:
    """``n_per_caption`` images (different z) for each caption; returns the files written.

    Writes ``<out_dir>/<i>_<slug>_<s>_g<k>.png`` (caption i as given, sample s, stage k)
    and ``<out_dir>/<i>_<slug>_<s>_attention.png``: every attention stage's image with one
    map per word. Each caption is its own batch (of up to TRAIN.BATCH_SIZE copies), so
    its images do not depend on the other captions.
    """
    if n_per_caption < 1:
        raise OptionError(f"--n must be >= 1, got {n_per_caption}")
    text = load_text_data(cfg.DATA_DIR, cfg.TEXT.CAPTIONS_PER_IMAGE)
    encoded = encode_captions(list(sentences), text.wordtoix, "--caption", max_words=MAX_CAPTION_WORDS)
    net_g, text_encoder = load_models(cfg, text.n_words, device)
    noise = caption_noise(cfg, len(sentences), n_per_caption, seed, device)
    out_dir = Path(out_dir)
    row_of = {int(i): row for row, i in enumerate(encoded.sorted_indices)}
    written: list[Path] = []
    for i, sentence in enumerate(sentences):
        row, name = row_of[i], f"{i}_{slug(sentence)}"
        z, eps = noise[i]
        for start in range(0, n_per_caption, cfg.TRAIN.BATCH_SIZE):
            batch = encoded.repeat(row, min(cfg.TRAIN.BATCH_SIZE, n_per_caption - start))
            chunk = slice(start, start + len(batch))
            fake_imgs, attention_maps = generate(net_g, text_encoder, batch, z[chunk], eps[chunk])
            pixels = [to_uint8(imgs) for imgs in fake_imgs]
            for j in range(len(batch)):
                stem = f"{name}_{start + j}"
                for k, stage in enumerate(pixels):
                    written.append(_save_png(stage[j], out_dir / f"{stem}_g{k}.png"))
                if attention_maps:
                    figure = stage_attention_figure(
                        [stage_image(fake_imgs, k)[j] for k in range(len(attention_maps))],
                        batch.words[j],
                        [maps[j] for maps in attention_maps],
                        title=sentence,
                    )
                    written.append(_save_png(figure, out_dir / f"{stem}_attention.png"))
        log.info("caption %d %r: %d images -> %s", i, sentence, n_per_caption, out_dir)
    return written


# ---------------------------------------------------------------- command line
