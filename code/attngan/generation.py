"""Generation from a trained generator, the library that sampling, evaluation, metrics and
the server share: captions to word ids (``encode_captions``, the original's tokenising and
order), the noise (``draw_noise``, ``caption_noise``), loading G and its text encoder
(``load_models``) and drawing (``generate``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
from easydict import EasyDict

from .checkpoint import CheckpointError, load_weights
from .config import ConfigError
from .data.text import _raw_tokens, tokenize
from .errors import CaptionError
from .models import build_generator, build_text_encoder, text_features
from .speed import pad_words, prepare

log = logging.getLogger(__name__)


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
def generate_from_ids(
    net_g: nn.Module,
    text_encoder: nn.Module,
    captions: torch.Tensor,
    cap_lens: torch.Tensor,
    z: torch.Tensor,
    ca_noise: torch.Tensor | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``generate`` on word ids [n,T] and their lengths [n] as a loader gives them."""
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
    return generate_from_ids(net_g, text_encoder, batch.captions, batch.cap_lens, z, ca_noise)


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


def load_models(cfg: EasyDict, n_words: int, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """(generator, text encoder) from TRAIN.NET_G and TRAIN.NET_E, strict, in eval mode on
    ``device``; the generator channels-last and compiled as RUN says (speed.prepare)."""
    if not cfg.TRAIN.NET_G:
        raise ConfigError(
            "TRAIN.NET_G is empty: set it to a generator checkpoint (e.g. --set TRAIN.NET_G=models/bird_AttnGAN2.pth)"
        )
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


def stage_image(fake_imgs: list[torch.Tensor], k: int) -> torch.Tensor:
    """The image that stage ``k``'s attention maps belong to (the original: stage k+1's,
    or the only image of G_DCGAN)."""
    return fake_imgs[k + 1] if len(fake_imgs) > 1 else fake_imgs[0]
