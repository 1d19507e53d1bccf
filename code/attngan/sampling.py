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

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
from easydict import EasyDict
from PIL import Image
from tqdm import tqdm

from .checkpoint import CheckpointError, load_weights
from .config import ConfigError
from .data.text import _raw_tokens, load_text_data, tokenize
from .errors import CaptionError, DataError, OptionError, user_path
from .models import build_generator, build_text_encoder, text_features
from .speed import pad_words, prepare
from .visualize import stage_attention_figure, to_uint8

log = logging.getLogger(__name__)
# Longest caption attngan-sample draws, in words the vocabulary knows: its attention figure
# has a map per word and stage, and the model was trained on TEXT.WORDS_NUM (18) words.
MAX_CAPTION_WORDS = 100


@dataclass
class CaptionBatch:
    """Captions ready for the text encoder, sorted by length (descending) as the original.

    captions: [n,T] int64 word ids, 0-padded, T = the longest length; cap_lens: [n] int64;
    sorted_indices: [n], row j is input sentence ``sorted_indices[j]``; words: the kept
    tokens of row j (for labels); texts: the sentence of row j as given.
    """

    captions: torch.Tensor
    cap_lens: torch.Tensor
    sorted_indices: np.ndarray
    words: list[list[str]]
    texts: list[str]

    def __len__(self) -> int:
        return self.captions.size(0)

    def repeat(self, row: int, n: int) -> CaptionBatch:
        """``n`` copies of row ``row``, cut to its length."""
        length = int(self.cap_lens[row])
        return CaptionBatch(
            self.captions[row, :length].repeat(n, 1),
            torch.full((n,), length, dtype=torch.int64),
            np.full(n, self.sorted_indices[row]),
            [self.words[row]] * n,
            [self.texts[row]] * n,
        )


def caption_words(sentence: str, wordtoix: dict[str, int], where: str) -> tuple[list[str], list[str]]:
    """(tokens kept, tokens dropped as out of the vocabulary) of ``sentence``, tokenised as
    the original (``tokenize``). No word kept (empty, non-ASCII only, or all out of the
    vocabulary) is a ValueError ``"{where}: caption ... has ..."``."""
    tokens = tokenize(sentence)
    kept = [t for t in tokens if t in wordtoix]
    oov = [t for t in tokens if t not in wordtoix]
    if not kept:
        if not _raw_tokens(sentence):
            reason = "has no words"
        elif not tokens:
            reason = "has no ASCII word (the vocabulary's words are ASCII)"
        else:
            reason = f"has no word in the vocabulary (dropped: {', '.join(oov)})"
        raise CaptionError(f"{where}: caption {sentence!r} {reason}")
    return kept, oov


def batch_of(
    ids: Sequence[Sequence[int]], words: Sequence[list[str]], texts: Sequence[str], order: np.ndarray | None = None
) -> CaptionBatch:
    """A CaptionBatch of captions given as word ids (with their words and sentences), rows
    in ``order`` (input indices, longest first), by default ``np.argsort(cap_lens)[::-1]`` as
    the original."""
    cap_lens = [len(c) for c in ids]
    # the default is exactly the original's order (ties included)
    sorted_indices = np.argsort(cap_lens)[::-1] if order is None else np.asarray(order)
    cap_array = np.zeros((len(ids), max(cap_lens)), dtype="int64")
    for row, idx in enumerate(sorted_indices):
        cap_array[row, : cap_lens[idx]] = ids[idx]
    return CaptionBatch(
        torch.from_numpy(cap_array),
        torch.from_numpy(np.asarray(cap_lens)[sorted_indices]),
        sorted_indices.copy(),
        [words[i] for i in sorted_indices],
        [texts[i] for i in sorted_indices],
    )


def encode_captions(
    sentences: Sequence[str],
    wordtoix: dict[str, int],
    source: str = "<captions>",
    line_numbers: Sequence[int] | None = None,
    max_words: int | None = None,
) -> CaptionBatch:
    """Word ids of ``sentences`` as the original's ``gen_example``: tokens cut to ASCII,
    words outside the vocabulary dropped (each reported with a warning), rows sorted by
    ``np.argsort(cap_lens)[::-1]``.

    A sentence with no word left (empty, non-ASCII only, or all out of the vocabulary) is
    a ValueError naming ``source``, the line (``line_numbers[i]``, else the position) and
    the sentence (``source #i``, 1-based, without line numbers); the original silently
    made an empty caption of it. So is one of more than ``max_words`` words kept.
    """
    if not sentences:
        raise CaptionError(f"{source}: no caption to encode")
    words = []
    for i, sentence in enumerate(sentences):
        where = f"{source} line {line_numbers[i]}" if line_numbers is not None else f"{source} #{i + 1}"
        kept, oov = caption_words(sentence, wordtoix, where)
        if max_words is not None and len(kept) > max_words:
            raise CaptionError(f"{where}: caption {sentence[:40]!r}... has {len(kept)} words; at most {max_words}")
        if oov:
            log.warning(
                "%s: not in the vocabulary, dropped: %s (caption %r)", where, ", ".join(map(repr, oov)), sentence
            )
        words.append(kept)
    return batch_of([[wordtoix[t] for t in kept] for kept in words], words, list(sentences))


@torch.no_grad()
def _forward(
    net_g: nn.Module,
    text_encoder: nn.Module,
    captions: torch.Tensor,
    cap_lens: torch.Tensor,
    z: torch.Tensor,
    ca_noise: torch.Tensor | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    words_embs, sent_emb, mask = text_features(text_encoder, captions.to(z.device), cap_lens)
    length = words_embs.size(2)
    # a compiled G (speed.prepare) takes its words padded to one length; padded words get no attention
    words_embs, mask = pad_words(words_embs, mask, getattr(net_g, "static_words", 0))
    fake_imgs, attention_maps, _, _ = net_g(z, sent_emb, words_embs, mask, ca_noise)
    return fake_imgs, [maps[:, :length] for maps in attention_maps]


def generate(
    net_g: nn.Module,
    text_encoder: nn.Module,
    batch: CaptionBatch,
    z: torch.Tensor,
    ca_noise: torch.Tensor | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Images of ``batch`` from noise ``z`` [n,Z_DIM] (on the models' device), without gradients.

    Returns (images of each stage [n,3,s,s] in [-1,1], s = 64, 128, 256 (G_DCGAN: only the
    last), attention maps of stages 2.. [n,T,s/2,s/2]). The text encoder draws no random
    numbers in eval mode, so drawing ``z`` before this call matches the original's order.
    ``ca_noise`` [n,CONDITION_DIM]: the conditioning augmentation's noise; None lets CA_NET
    draw it from torch's global generator, as the original.
    """
    return _forward(net_g, text_encoder, batch.captions, batch.cap_lens, z, ca_noise)


def draw_noise(n: int, cfg: EasyDict, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    """z [n,Z_DIM] ~ N(0,1), drawn as the original (``normal_`` on the device), from
    ``generator`` (default: torch's global one)."""
    return torch.empty(n, cfg.GAN.Z_DIM, device=device).normal_(0, 1, generator=generator)


def caption_noise(
    cfg: EasyDict, n_captions: int, n_per_caption: int, seed: int, device: torch.device
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per caption, (z [n,Z_DIM], CA noise [n,CONDITION_DIM]) with n = ``n_per_caption``,
    for ``sample_captions`` and the server: the numbers torch's global generator would give
    after ``seed_everything(seed)`` in the original's order (per caption, per batch of up to
    TRAIN.BATCH_SIZE copies, z and then CA_NET's ``randn_like``), drawn from a generator of
    their own so that they depend on nothing else that runs."""
    generator = torch.Generator(device).manual_seed(seed)
    noise = []
    for _ in range(n_captions):
        z, eps = [], []
        for start in range(0, n_per_caption, cfg.TRAIN.BATCH_SIZE):
            n = min(cfg.TRAIN.BATCH_SIZE, n_per_caption - start)
            z.append(draw_noise(n, cfg, device, generator))
            eps.append(torch.randn(n, cfg.GAN.CONDITION_DIM, device=device, generator=generator))
        noise.append((torch.cat(z), torch.cat(eps)))
    return noise


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


def load_models(cfg: EasyDict, n_words: int, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """(generator, text encoder) from TRAIN.NET_G and TRAIN.NET_E, strict, in eval mode on
    ``device``; the generator channels-last and compiled as RUN says (speed.prepare)."""
    output_root(cfg.TRAIN.NET_G)  # checks NET_G is set
    if not cfg.TRAIN.NET_E:
        raise ConfigError(
            "TRAIN.NET_E is empty: set it to the DAMSM text encoder the generator was trained with "
            "(e.g. --set TRAIN.NET_E=DAMSMencoders/bird/text_encoder200.pth)"
        )
    try:
        text_encoder = load_weights(build_text_encoder(cfg, n_words), cfg.TRAIN.NET_E)
    except CheckpointError as err:
        raise CheckpointError(
            f"{err} [the vocabulary of {cfg.DATA_DIR}/captions.pickle has {n_words} words; "
            "the text encoder must be the one trained on this dataset's captions.pickle]"
        ) from err
    net_g = load_weights(build_generator(cfg, initialise=False), cfg.TRAIN.NET_G)
    log.info("loaded G from %s and the text encoder from %s", cfg.TRAIN.NET_G, cfg.TRAIN.NET_E)
    # RUN.CHANNELS_LAST and RUN.COMPILE, as in training
    return prepare(net_g.to(device).eval(), cfg, device), text_encoder.to(device).eval()


def png_bytes(pixels: np.ndarray) -> bytes:
    """[H,W,3] uint8 -> the PNG file that sampling writes (PIL's defaults)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _save_png(pixels: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(pixels))
    return path


def stage_image(fake_imgs: list[torch.Tensor], k: int) -> torch.Tensor:
    """The image that stage ``k``'s attention maps belong to (the original: stage k+1's,
    or the only image of G_DCGAN)."""
    return fake_imgs[k + 1] if len(fake_imgs) > 1 else fake_imgs[0]


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
        fake_imgs, _ = _forward(net_g, text_encoder, captions, cap_lens, z)
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
