"""The model side of the server: the generator, the text encoder and the vocabulary loaded
once, as ``attngan-sample`` loads them; captions checked as it checks them; the rows of
several requests drawn in one generator call."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from easydict import EasyDict

from ..data.text import load_text_data, tokenize
from ..files import sha256_file
from ..generation import batch_of, caption_noise, caption_words, generate, load_models, stage_image
from ..sampling import read_caption_file, read_example_list

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    """A weights file the server loaded: its role, path, size and sha256."""

    role: str
    path: str
    bytes: int
    sha256: str


@dataclass
class Caption:
    """One checked caption: its ASCII tokens in order, the words kept (and their ids) and
    the words dropped as out of the vocabulary."""

    text: str
    tokens: list[str]
    words: list[str]
    dropped: list[str]
    ids: list[int]


@dataclass
class Rows:
    """A request's share of a generator call: ``n`` images of each caption, from the noise
    of ``seed`` (row ``i * n + s`` is sample s of caption i)."""

    captions: list[Caption]
    n: int
    seed: int

    def __len__(self) -> int:
        return len(self.captions) * self.n


@dataclass
class Drawn:
    """The images of a Rows, on the CPU: ``stages[k]`` [n,3,s,s] in [-1,1] (s = the stage's
    size), ``attention[k]`` [n,T,h,w] the maps of attention stage k (T >= each row's words),
    and how many rows and requests the generator call held."""

    stages: list[torch.Tensor]
    attention: list[torch.Tensor]
    batch_rows: int
    batch_requests: int


def example_caption(data_dir: str | Path) -> str | None:
    """The first caption of the first file in DATA_DIR/example_filenames.txt, if any."""
    try:
        sentences, _ = read_caption_file(Path(data_dir) / f"{read_example_list(data_dir)[0]}.txt")
    except (FileNotFoundError, ValueError):
        return None
    return sentences[0]


class Engine:
    """TRAIN.NET_G, TRAIN.NET_E and DATA_DIR's vocabulary, loaded by ``load_models`` in eval
    mode on ``device``.

    Rows of different requests share a batch, so every row's padded words are masked by its
    own caption (FIXES.ATTENTION_MASK on): the original's mask would let the other
    captions of the batch change a row's images. A batch of copies of one caption, which
    is every batch of ``attngan-sample --caption``, has no padding, and both masks are the same.
    """

    def __init__(self, cfg: EasyDict, device: torch.device, cfg_file: str = ""):
        cfg = copy.deepcopy(cfg)
        if not cfg.FIXES.ATTENTION_MASK:
            log.info("FIXES.ATTENTION_MASK on: each row of a shared batch masks its own padding")
            cfg.FIXES.ATTENTION_MASK = True
        self.cfg, self.device, self.cfg_file = cfg, device, cfg_file
        text = load_text_data(cfg.DATA_DIR, cfg.TEXT.CAPTIONS_PER_IMAGE)
        self.wordtoix, self.n_words = text.wordtoix, text.n_words
        self.example_caption = example_caption(cfg.DATA_DIR)
        self.net_g, self.text_encoder = load_models(cfg, text.n_words, device)
        self.checkpoints = [
            Checkpoint(role, str(path), Path(path).stat().st_size, sha256_file(path))
            for role, path in (("generator", cfg.TRAIN.NET_G), ("text_encoder", cfg.TRAIN.NET_E))
        ]
        branches, base = cfg.TREE.BRANCH_NUM, cfg.TREE.BASE_SIZE
        all_sizes = [base * 2**k for k in range(branches)]
        self.sizes = all_sizes[-1:] if cfg.GAN.B_DCGAN else all_sizes  # the images G returns, in order
        # the size of the image each attention stage's maps belong to (sampling.stage_image)
        self.attention_sizes = [
            self.sizes[k + 1] if len(self.sizes) > 1 else self.sizes[0] for k in range(branches - 1)
        ]

    def caption(self, text: str, where: str) -> Caption:
        """``text`` checked and encoded as ``attngan-sample --caption``; a caption without any
        known word is a CaptionError starting with ``where``."""
        kept, dropped = caption_words(text, self.wordtoix, where)
        return Caption(text, tokenize(text), kept, dropped, [self.wordtoix[w] for w in kept])

    def noise(self, n_captions: int, n_per_caption: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per caption (z [n,Z_DIM], CA noise [n,CONDITION_DIM]), as ``attngan-sample`` draws
        them for these captions and ``--manualSeed seed``."""
        return caption_noise(self.cfg, n_captions, n_per_caption, seed, self.device)

    def run(self, parts: list[Rows]) -> list[Drawn]:
        """One generator call for the rows of every part; returns each part's images.

        Each part's noise comes from its own seed. Rows go in longest caption first, equal
        lengths in their given order (so that a request alone is the batch ``attngan-sample``
        draws), and come back in input order.
        """
        captions = [c for part in parts for c in part.captions for _ in range(part.n)]
        noise = [pair for part in parts for pair in self.noise(len(part.captions), part.n, part.seed)]
        order = np.argsort(-np.array([len(c.ids) for c in captions]), kind="stable")
        batch = batch_of([c.ids for c in captions], [c.words for c in captions], [c.text for c in captions], order)
        index = torch.from_numpy(order).to(self.device)
        z = torch.cat([z for z, _ in noise])[index]
        ca_noise = torch.cat([eps for _, eps in noise])[index]
        fake_imgs, attention_maps = generate(self.net_g, self.text_encoder, batch, z, ca_noise)
        back = torch.from_numpy(np.argsort(order)).to(self.device)
        stages = [imgs[back].cpu() for imgs in fake_imgs]
        attention = [maps[back].cpu() for maps in attention_maps]
        drawn, start = [], 0
        for part in parts:
            rows = slice(start, start + len(part))
            drawn.append(Drawn([s[rows] for s in stages], [a[rows] for a in attention], len(captions), len(parts)))
            start += len(part)
        return drawn

    def stage_images(self, drawn: Drawn) -> list[torch.Tensor]:
        """The image [n,3,s,s] that each attention stage's maps belong to."""
        return [stage_image(drawn.stages, k) for k in range(len(drawn.attention))]
