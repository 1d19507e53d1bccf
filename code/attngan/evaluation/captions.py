"""The images the protocol scores: every test caption in turn, cycled, each through the
generator with noise drawn per batch; and the ``Batch`` every image source yields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
from easydict import EasyDict

from ..data.datasets import TextDataset
from ..data.text import pad_or_sample
from ..distributed import SINGLE, World, gather_to_main
from ..errors import DataError
from ..generation import draw_noise, encode_captions
from ..models import text_features
from ..visualize import quantise


def inverse(order: np.ndarray) -> np.ndarray:
    """Rows of a length-sorted batch back to input order: ``sorted[inverse(order)]``."""
    out = np.empty_like(order)
    out[order] = np.arange(len(order))
    return out


@dataclass
class Batch:
    """Images of consecutive samples ``start..start+len-1``, in sample order.

    images: uint8 [b,3,s,s] on the device; sentences: DAMSM sentence vectors of their
    captions [b,D]; classes: [b] class ids (-1: unknown); texts/words: the captions.
    stages and attention (generated images only): every stage's images [b,3,s_k,s_k] in
    [-1,1] and every attention stage's maps [b,T,h,w].
    """

    start: int
    images: torch.Tensor
    sentences: torch.Tensor
    classes: np.ndarray
    texts: list[str]
    words: list[list[str]]
    stages: list[torch.Tensor] = field(default_factory=list)
    attention: list[torch.Tensor] = field(default_factory=list)


@dataclass
class EvalCaptions:
    """Every test caption, image-major (row = image * CAPTIONS_PER_IMAGE + k), as text of
    the words the text encoder reads (cut to TEXT.WORDS_NUM as the dataset does)."""

    texts: list[str]
    classes: np.ndarray
    keys: list[str]
    captions_per_image: int

    def __len__(self) -> int:
        return len(self.texts)


def load_eval_captions(dataset: TextDataset, seed: int) -> EvalCaptions:
    """The test split's captions; a caption longer than WORDS_NUM keeps WORDS_NUM of its
    words drawn once from ``seed`` (the dataset's ``pad_or_sample``), so that a caption
    reads the same every time the cycle comes back to it."""
    rng = np.random.default_rng(seed)
    cpi = dataset.captions_per_image
    texts = []
    for row, ids in enumerate(dataset.captions):
        fixed, length = pad_or_sample(ids, dataset.words_num, rng)
        if length == 0:
            key = dataset.filenames[row // cpi]
            raise DataError(
                f"{dataset.data_dir}/text/{key}.txt: caption {row % cpi + 1} has no word; "
                "R-precision needs every test caption"
            )
        texts.append(" ".join(dataset.ixtoword[int(i)] for i in fixed[:length]))
    classes = np.repeat(np.asarray(dataset.class_id), cpi)
    keys = [dataset.filenames[row // cpi] for row in range(len(texts))]
    return EvalCaptions(texts, classes, keys, cpi)


def sample_rows(start: int, stop: int, num_captions: int) -> np.ndarray:
    """Caption rows of samples ``start..stop-1``: every test caption in turn (image 0's
    captions, then image 1's, ...), cycled."""
    return np.arange(start, stop) % num_captions


def encode(
    texts: list[str],
    text_encoder: nn.Module,
    wordtoix: dict[str, int],
    device: torch.device,
    source: str,
    line_numbers: list[int] | None = None,
):
    """(CaptionBatch sorted by length, words_embs, sentence vectors, mask), all sorted."""
    batch = encode_captions(texts, wordtoix, source, line_numbers)
    words_embs, sent_emb, mask = text_features(text_encoder, batch.captions.to(device), batch.cap_lens)
    return batch, words_embs, sent_emb, mask


def _generate(
    net_g: nn.Module,
    text_encoder: nn.Module,
    captions: EvalCaptions,
    wordtoix: dict[str, int],
    cfg: EasyDict,
    device: torch.device,
    start: int,
    stop: int,
) -> Batch:
    rows = sample_rows(start, stop, len(captions))
    texts = [captions.texts[r] for r in rows]
    encoded, words_embs, sent_emb, mask = encode(texts, text_encoder, wordtoix, device, "test captions")
    z = draw_noise(len(rows), cfg, device)
    fake_imgs, attention, _, _ = net_g(
        z[torch.as_tensor(encoded.sorted_indices, device=device)], sent_emb, words_embs, mask
    )
    back = torch.as_tensor(inverse(encoded.sorted_indices), device=device)
    return Batch(
        start,
        quantise(fake_imgs[-1])[back],
        sent_emb[back],
        captions.classes[rows],
        texts,
        [encoded.words[j] for j in back.tolist()],
        [img[back] for img in fake_imgs],
        [maps[back] for maps in attention],
    )


def _skip(cfg: EasyDict, device: torch.device, n: int) -> None:
    """Advance torch's generator past another process's batch of ``n``: its z, then
    CA_NET's eps, as _generate draws them."""
    draw_noise(n, cfg, device)
    torch.randn(n, cfg.GAN.CONDITION_DIM, device=device)


def _moved(batch: Batch, device: torch.device | str, details: bool = True) -> Batch:
    """``batch`` on ``device``; every stage's images and the attention maps only with
    ``details`` (what is sent to rank 0 keeps them for the showcase's samples only)."""
    return Batch(
        batch.start,
        batch.images.to(device),
        batch.sentences.to(device),
        batch.classes,
        batch.texts,
        batch.words,
        [s.to(device) for s in batch.stages] if details else [],
        [a.to(device) for a in batch.attention] if details else [],
    )


def generated_batches(
    net_g: nn.Module,
    text_encoder: nn.Module,
    captions: EvalCaptions,
    wordtoix: dict[str, int],
    cfg: EasyDict,
    device: torch.device,
    num_samples: int,
    batch_size: int,
    world: World = SINGLE,
    details=lambda start, stop: True,
) -> Iterator[Batch]:
    """The paper's protocol: sample i is drawn from test caption ``i mod len(captions)``
    with z ~ N(0,1) drawn per batch in sample order; images of G's last stage.

    Under torchrun the batches are dealt round-robin; each process advances its generator
    past the others' batches, so every batch gets the noise one process gives it, and rank
    0 yields them all, in order (with stages and attention where ``details(start, stop)``);
    the other processes yield nothing."""
    starts = range(0, num_samples, batch_size)
    for first in range(0, len(starts), world.size):
        mine = None
        for k, start in enumerate(starts[first : first + world.size]):
            stop = min(start + batch_size, num_samples)
            if k == world.rank:
                mine = _generate(net_g, text_encoder, captions, wordtoix, cfg, device, start, stop)
            else:
                _skip(cfg, device, stop - start)
        if not world.parallel:
            yield mine
            continue
        sent = None if mine is None else _moved(mine, "cpu", details(mine.start, mine.start + len(mine.texts)))
        for batch in gather_to_main(sent, world):
            if batch is not None:
                yield _moved(batch, device)
