"""``attngan-eval``: the paper's metrics in one command, and ``evaluate()`` for the training loop.

Images come either from a generator (the paper's protocol: every test image with each of
its captions in turn, cycled until EVAL.NUM_SAMPLES images, noise from EVAL.SEED) or from
a folder of images with a ``captions.jsonl`` manifest (any model's images). They stream in
batches through the requested metrics, none of which keeps the images:

- ``rp``: R-precision with the DAMSM encoders of TRAIN.NET_E (metrics/r_precision.py);
- ``is`` and ``fid``: Inception score and FID (metrics/image_quality.py), FID against the
  real test images at the generated images' resolution;
- ``loc``: attention localisation of the generator and of DAMSM (metrics/localisation.py),
  for datasets with ``objects.json`` (the synthetic shapes).

Every image is quantised to uint8 as it would be written to a PNG before it is scored, so
that scoring a folder written with ``save_images`` gives the same numbers as scoring the
generator directly.
"""
from __future__ import annotations

import contextlib
import copy
import datetime
import io
import json
import logging
import math
import os
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import torch.nn as nn
from easydict import EasyDict
from PIL import Image, ImageDraw, ImageFont
from torch.utils.data import DataLoader
from torchvision import transforms
from tqdm import tqdm

from .checkpoint import load_weights
from .config import ConfigError
from .data.datasets import TextDataset, build_dataset
from .data.loader import SeededItems
from .data.text import pad_or_sample
from .metrics.r_precision import r_precision
from .models import build_image_encoder, build_text_encoder, text_features
from .sampling import draw_noise, encode_captions, load_models
from .training.damsm import image_encoder_path
from .visualize import stage_attention_figure

log = logging.getLogger(__name__)

METRICS = ("rp", "is", "fid", "loc")
MANIFEST = "captions.jsonl"
GRID_SIZE = 16  # images in samples.png
ATTENTION_FIGURES = 4  # captions with an attention figure
TILE = 128  # pixels of an image in samples.png


# ---------------------------------------------------------------- small helpers

def parse_metrics(text: str | Iterable[str]) -> set[str]:
    """``"rp,is"`` (or an iterable of names) -> {"rp", "is"}; an unknown name is a ValueError."""
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    unknown = sorted(set(names) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(map(repr, unknown))}; choose from {', '.join(METRICS)}")
    if not names:
        raise ValueError(f"no metric named; choose from {', '.join(METRICS)}")
    return set(names)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``, so
    that an interrupted run never leaves a truncated file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def quantise(images: torch.Tensor) -> torch.Tensor:
    """[B,3,H,W] in [-1,1] -> uint8, truncated as the original writes pixels (visualize.to_uint8)."""
    return ((images.detach().float().clamp(-1, 1) + 1.0) * 127.5).to(torch.uint8)


def dequantise(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 [B,3,H,W] -> float in [-1,1], what the DAMSM image encoder reads."""
    return pixels.float() / 127.5 - 1.0


def _inverse(order: np.ndarray) -> np.ndarray:
    """Rows of a length-sorted batch back to input order: ``sorted[_inverse(order)]``."""
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return inverse


@contextlib.contextmanager
def _eval_mode(*modules: nn.Module | None):
    """Modules in eval mode for the block, their own modes restored afterwards (the
    training loop calls ``evaluate`` on networks it is training)."""
    modes = [(m, m.training) for m in modules if m is not None]
    for m, _ in modes:
        m.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.train(training)


@contextlib.contextmanager
def _forked_rng(device: torch.device):
    """torch's generators (CPU and ``device``) restored after the block, so that evaluating
    during training does not change the training run's random draws."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


# ---------------------------------------------------------------- captions and images

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
            raise ValueError(f"{dataset.data_dir}/text/{key}.txt: caption {row % cpi + 1} has no word; "
                             "R-precision needs every test caption")
        texts.append(" ".join(dataset.ixtoword[int(i)] for i in fixed[:length]))
    classes = np.repeat(np.asarray(dataset.class_id), cpi)
    keys = [dataset.filenames[row // cpi] for row in range(len(texts))]
    return EvalCaptions(texts, classes, keys, cpi)


def sample_rows(start: int, stop: int, num_captions: int) -> np.ndarray:
    """Caption rows of samples ``start..stop-1``: every test caption in turn (image 0's
    captions, then image 1's, ...), cycled."""
    return np.arange(start, stop) % num_captions


def _encode(texts: list[str], text_encoder: nn.Module, wordtoix: dict[str, int], device: torch.device,
            source: str, line_numbers: list[int] | None = None):
    """(CaptionBatch sorted by length, words_embs, sentence vectors, mask), all sorted."""
    batch = encode_captions(texts, wordtoix, source, line_numbers)
    words_embs, sent_emb, mask = text_features(text_encoder, batch.captions.to(device), batch.cap_lens.to(device))
    return batch, words_embs, sent_emb, mask


def generated_batches(net_g: nn.Module, text_encoder: nn.Module, captions: EvalCaptions, wordtoix: dict[str, int],
                      cfg: EasyDict, device: torch.device, num_samples: int, batch_size: int) -> Iterator[Batch]:
    """The paper's protocol: sample i is drawn from test caption ``i mod len(captions)``
    with z ~ N(0,1) drawn per batch in sample order; images of G's last stage."""
    for start in range(0, num_samples, batch_size):
        rows = sample_rows(start, min(start + batch_size, num_samples), len(captions))
        texts = [captions.texts[r] for r in rows]
        encoded, words_embs, sent_emb, mask = _encode(texts, text_encoder, wordtoix, device, "test captions")
        z = draw_noise(len(rows), cfg, device)
        fake_imgs, attention, _, _ = net_g(z[torch.as_tensor(encoded.sorted_indices, device=device)], sent_emb,
                                           words_embs, mask)
        back = torch.as_tensor(_inverse(encoded.sorted_indices), device=device)
        yield Batch(start, quantise(fake_imgs[-1])[back], sent_emb[back], captions.classes[rows], texts,
                    [encoded.words[j] for j in back.tolist()], [img[back] for img in fake_imgs],
                    [maps[back] for maps in attention])


# ---------------------------------------------------------------- a folder of images

@dataclass
class ManifestEntry:
    path: Path
    caption: str
    class_id: int  # -1 when the manifest gives none
    line: int


def read_manifest(image_dir: str | Path) -> list[ManifestEntry]:
    """The entries of ``image_dir/captions.jsonl``: one JSON object a line with "file" (a
    path relative to the folder), "caption" and optionally "class_id" (an int); other
    fields are ignored. Every line and every image's existence is checked up front; an
    error names the manifest, the line and the file."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {image_dir}")
    manifest = image_dir / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found: a folder of images to score needs a manifest, one JSON "
                                'object a line: {"file": "0001.png", "caption": "...", "class_id": 3} '
                                "(class_id optional), see docs/evaluation.md")
    entries = []
    for number, line in enumerate(manifest.read_text(encoding="utf-8").split("\n"), 1):
        if line.strip():
            entries.append(_manifest_entry(image_dir, manifest, number, line))
    if not entries:
        raise ValueError(f"{manifest} lists no image")
    return entries


def _manifest_entry(image_dir: Path, manifest: Path, number: int, line: str) -> ManifestEntry:
    where = f"{manifest} line {number}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: not valid JSON ({err.msg})") from err
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object with \"file\" and \"caption\", got {line.strip()!r}")
    for key in ("file", "caption"):
        if not isinstance(record.get(key), str):
            raise ValueError(f"{where}: \"{key}\" must be a string, got {record.get(key)!r}")
    class_id = record.get("class_id", -1)
    if not isinstance(class_id, int) or isinstance(class_id, bool):
        raise ValueError(f"{where}: \"class_id\" must be an integer, got {class_id!r}")
    path = image_dir / record["file"]
    if not path.is_file():
        raise FileNotFoundError(f"{where}: image not found: {path}")
    return ManifestEntry(path, record["caption"], class_id, number)


def _read_image(entry: ManifestEntry, manifest: Path) -> np.ndarray:
    try:
        with Image.open(entry.path) as img:
            return np.asarray(img.convert("RGB"))
    except OSError as err:
        raise ValueError(f"{manifest} line {entry.line}: cannot read image {entry.path}: {err}") from err


def folder_batches(entries: list[ManifestEntry], manifest: Path, text_encoder: nn.Module, wordtoix: dict[str, int],
                   device: torch.device, batch_size: int) -> Iterator[Batch]:
    """The listed images in manifest order, with their captions' sentence vectors. All
    images must have the size of the first one (batches are stacked)."""
    size = None
    for start in range(0, len(entries), batch_size):
        chunk = entries[start:start + batch_size]
        texts = [e.caption for e in chunk]
        encoded, _, sent_emb, _ = _encode(texts, text_encoder, wordtoix, device, str(manifest), [e.line for e in chunk])
        pixels = []
        for entry in chunk:
            image = _read_image(entry, manifest)
            size = size or image.shape
            if image.shape != size:
                raise ValueError(f"{manifest} line {entry.line}: {entry.path} is {image.shape[1]}x{image.shape[0]} "
                                 f"but the first image is {size[1]}x{size[0]}; every image must have the same size")
            pixels.append(image)
        images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous().to(device)
        back = _inverse(encoded.sorted_indices)
        yield Batch(start, images, sent_emb[torch.as_tensor(back, device=device)],
                    np.array([e.class_id for e in chunk]), texts, [encoded.words[j] for j in back])


# ---------------------------------------------------------------- outputs while streaming

class ImageSaver:
    """``--save_images``: every scored image as ``images/<index>.png`` and the manifest
    ``images/captions.jsonl`` (written last), which ``--image_dir`` reads back."""

    def __init__(self, folder: Path, captions: EvalCaptions | None):
        self.folder, self.captions, self.lines = folder, captions, []

    def add(self, batch: Batch) -> None:
        for j, pixels in enumerate(batch.images.permute(0, 2, 3, 1).cpu().numpy()):
            index = batch.start + j
            name = f"{index:06d}.png"
            _write_atomic(self.folder / name, _png_bytes(pixels))
            record = {"file": name, "caption": batch.texts[j], "class_id": int(batch.classes[j])}
            if self.captions is not None:
                row = int(sample_rows(index, index + 1, len(self.captions))[0])
                record.update(key=self.captions.keys[row], caption_index=row % self.captions.captions_per_image)
            self.lines.append(json.dumps(record))

    def close(self) -> Path:
        path = self.folder / MANIFEST
        _write_atomic(path, ("\n".join(self.lines) + "\n").encode("utf-8"))
        return path


class Showcase:
    """The images of samples.png and the attention figures, picked while streaming:
    ``GRID_SIZE`` samples evenly spaced over the first pass through the captions."""

    def __init__(self, num_samples: int, num_captions: int):
        first_pass = max(min(num_samples, num_captions), 1)
        picks = np.unique(np.linspace(0, first_pass - 1, GRID_SIZE).round().astype(int))
        self.grid_at = set(picks.tolist())
        self.figure_at = set(picks[:ATTENTION_FIGURES].tolist())
        self.grid: dict[int, tuple[np.ndarray, str]] = {}
        self.figures: dict[int, np.ndarray] = {}

    def add(self, batch: Batch) -> None:
        for j in range(len(batch.texts)):
            index = batch.start + j
            if index in self.grid_at:
                self.grid[index] = (batch.images[j].permute(1, 2, 0).cpu().numpy(), batch.texts[j])
            if index in self.figure_at and batch.attention:
                self.figures[index] = self._figure(batch, j)

    @staticmethod
    def _figure(batch: Batch, j: int) -> np.ndarray:
        """Every attention stage of sample j over the image it belongs to (the next
        stage's image, or G_DCGAN's only one), as sampling does."""
        n = len(batch.words[j])
        images = [(batch.stages[k + 1] if len(batch.stages) > 1 else batch.stages[0])[j]
                  for k in range(len(batch.attention))]
        return stage_attention_figure(images, batch.words[j], [maps[j, :n] for maps in batch.attention],
                                      title=batch.texts[j])

    def write(self, out_dir: Path) -> dict[str, Any]:
        files: dict[str, Any] = {}
        if self.grid:
            items = [self.grid[i] for i in sorted(self.grid)]
            _write_atomic(out_dir / "samples.png", _png_bytes(caption_grid(*zip(*items))))
            files["samples"] = "samples.png"
        names = []
        for n, index in enumerate(sorted(self.figures)):
            names.append(f"attention_{n}.png")
            _write_atomic(out_dir / names[-1], _png_bytes(self.figures[index]))
        if names:
            files["attention"] = names
        return files


def caption_grid(images: Iterable[np.ndarray], captions: Iterable[str], columns: int = 4, tile: int = TILE,
                 lines: int = 4) -> np.ndarray:
    """Images [H,W,3] uint8 shown at ``tile`` px with their caption wrapped below:
    -> [rows * (tile + caption strip), columns * tile, 3] uint8."""
    images, captions = list(images), list(captions)
    strip = 12 * lines + 4
    rows = -(-len(images) // columns)
    canvas = Image.new("RGB", (min(columns, len(images)) * tile, rows * (tile + strip)), (255, 255, 255))
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
    for n, (pixels, caption) in enumerate(zip(images, captions, strict=True)):
        x, y = (n % columns) * tile, (n // columns) * (tile + strip)
        canvas.paste(Image.fromarray(pixels).resize((tile, tile), Image.BILINEAR), (x, y))
        ascii_caption = caption.encode("ascii", "replace").decode("ascii")
        for k, text in enumerate(textwrap.wrap(ascii_caption, max(tile // 6, 1))[:lines]):
            draw.text((x + 2, y + tile + 2 + 12 * k), text, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


# ---------------------------------------------------------------- models

def load_text_encoder(cfg: EasyDict, n_words: int, device: torch.device) -> nn.Module:
    """The DAMSM text encoder of TRAIN.NET_E alone (scoring a folder needs no generator)."""
    if not cfg.TRAIN.NET_E:
        raise ConfigError("TRAIN.NET_E is empty: set it to a DAMSM text encoder (text_encoder<N>.pth, the image "
                          "encoder image_encoder<N>.pth beside it), e.g. --set TRAIN.NET_E=DAMSMencoders/bird/"
                          "text_encoder200.pth")
    encoder = load_weights(build_text_encoder(cfg, n_words), cfg.TRAIN.NET_E)
    return encoder.to(device).eval()


def load_image_encoder(cfg: EasyDict, device: torch.device) -> nn.Module:
    """The DAMSM image encoder beside TRAIN.NET_E (``image_encoder<N>.pth``), in eval mode.

    Built TEXT.EMBEDDING_DIM wide whatever TRAIN.FLAG says: the original's sampling
    configs build it 256 wide, which would not match a narrower text encoder.
    """
    training_cfg = copy.deepcopy(cfg)
    training_cfg.TRAIN.FLAG = True
    encoder = load_weights(build_image_encoder(training_cfg), image_encoder_path(cfg.TRAIN.NET_E))
    log.info("loaded the DAMSM image encoder from %s", image_encoder_path(cfg.TRAIN.NET_E))
    return encoder.to(device).eval()


def image_codes(image_encoder: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """DAMSM global image vectors [b,D] (on the CPU) of uint8 images."""
    return image_encoder(dequantise(pixels))[1].float().cpu()


def pool_sentences(text_encoder: nn.Module, captions: EvalCaptions, wordtoix: dict[str, int],
                   device: torch.device, batch_size: int) -> torch.Tensor:
    """Sentence vectors [M,D] (CPU) of every test caption: where R-precision draws the
    mismatched captions from."""
    vectors = []
    for start in tqdm(range(0, len(captions), batch_size), desc="test captions", leave=False, disable=None):
        texts = captions.texts[start:start + batch_size]
        encoded, _, sent_emb, _ = _encode(texts, text_encoder, wordtoix, device, "test captions")
        vectors.append(sent_emb[torch.as_tensor(_inverse(encoded.sorted_indices), device=device)].float().cpu())
    return torch.cat(vectors)


def real_test_images(dataset: TextDataset, size: int, batch_size: int, workers: int) -> Iterator[torch.Tensor]:
    """Every real test image once, uint8 [b,3,size,size]: resized to size*76/64 and
    centre-cropped (the training transform without its random crop and flip; birds are
    cropped to their box first, as always)."""
    real = copy.copy(dataset)
    real.transform = transforms.Compose([transforms.Resize(size * 76 // 64), transforms.CenterCrop(size)])
    real.imsizes = [size]
    keys = [(0, i) for i in range(len(real))]  # SeededItems: the caption draw leaves numpy's state alone
    loader = DataLoader(SeededItems(real), sampler=keys, batch_size=batch_size, num_workers=workers)
    for imgs, *_ in tqdm(loader, desc="real test images", leave=False, disable=None):
        yield quantise(imgs[-1])


# ---------------------------------------------------------------- the metrics

def _image_quality(metrics: set[str], cfg: EasyDict, device: torch.device, feature_extractor: nn.Module | None):
    """The IS/FID accumulator, built before any image is generated so that missing
    Inception weights fail at once."""
    from .metrics.image_quality import ImageQuality

    return ImageQuality(metrics=metrics & {"is", "fid"}, weights=cfg.EVAL.INCEPTION_WEIGHTS, device=device,
                        splits=cfg.EVAL.SPLITS, feature_extractor=feature_extractor)


def _localisation(cfg: EasyDict, net_g: nn.Module, text_encoder: nn.Module, image_encoder: nn.Module,
                  dataset: TextDataset, device: torch.device, batch_size: int, seed: int,
                  max_captions: int) -> dict[str, Any]:
    """Hit rates and chance levels of the generator's attention (one entry per attention
    stage, over at most ``max_captions`` test captions) and of DAMSM's (every test caption)."""
    from .metrics.localisation import damsm_localisation, generator_localisation, load_objects

    objects = load_objects(cfg.DATA_DIR)
    stages = generator_localisation(net_g, text_encoder, dataset, objects, device, batch_size, seed, max_captions)
    out = {f"generator_stage{k + 2}": result.as_dict() for k, result in enumerate(stages)}
    out["damsm"] = damsm_localisation(image_encoder, text_encoder, dataset, objects, device, batch_size,
                                      cfg.TRAIN.SMOOTH.GAMMA1, seed).as_dict()
    return out


@dataclass
class _Networks:
    net_g: nn.Module | None
    text_encoder: nn.Module
    image_encoder: nn.Module | None
    given: dict[str, bool]


def _networks(cfg: EasyDict, n_words: int, device: torch.device, metrics: set[str], generate: bool,
              net_g: nn.Module | None, text_encoder: nn.Module | None,
              image_encoder: nn.Module | None) -> _Networks:
    """The networks given, the others loaded from TRAIN.NET_G / TRAIN.NET_E."""
    given = {"generator": net_g is not None, "text_encoder": text_encoder is not None,
             "image_encoder": image_encoder is not None}
    if generate and (net_g is None or text_encoder is None):
        loaded_g, loaded_e = load_models(cfg, n_words, device)
        net_g = loaded_g if net_g is None else net_g
        text_encoder = loaded_e if text_encoder is None else text_encoder
    if text_encoder is None:
        text_encoder = load_text_encoder(cfg, n_words, device)
    if image_encoder is None and metrics & {"rp", "loc"}:
        image_encoder = load_image_encoder(cfg, device)
    return _Networks(net_g, text_encoder, image_encoder, given)


def evaluate(cfg: EasyDict, device: torch.device, metrics: Iterable[str], out_dir: str | Path, *,
             net_g: nn.Module | None = None, text_encoder: nn.Module | None = None,
             image_encoder: nn.Module | None = None, num_samples: int | None = None, batch_size: int | None = None,
             seed: int | None = None, image_dir: str | Path | None = None, save_images: bool = False,
             feature_extractor: nn.Module | None = None) -> dict[str, Any]:
    """Score a generator (or, with ``image_dir`` / EVAL.IMAGE_DIR, a folder of images with
    its ``captions.jsonl``) on ``metrics`` (names in METRICS); writes ``metrics.json``,
    ``report.md``, ``samples.png`` and attention figures (and, with ``save_images``,
    every image under ``images/``) into ``out_dir`` and returns the content of metrics.json.

    Networks not given are loaded from TRAIN.NET_G and TRAIN.NET_E (and the image encoder
    beside it); given ones are used as they are and left in their own train/eval mode.
    num_samples, batch_size and seed default to EVAL.NUM_SAMPLES, EVAL.BATCH_SIZE and
    EVAL.SEED; a folder is scored whole. The numbers depend on the seed, the batch size
    and the device only; torch's random state is restored afterwards.
    ``feature_extractor`` replaces the Inception network of IS/FID (tests).
    """
    began = time.perf_counter()
    metrics = parse_metrics(metrics)
    out_dir = Path(out_dir)
    image_dir = image_dir if image_dir is not None else (cfg.EVAL.IMAGE_DIR or None)
    num_samples = cfg.EVAL.NUM_SAMPLES if num_samples is None else num_samples
    batch_size = cfg.EVAL.BATCH_SIZE if batch_size is None else batch_size
    seed = cfg.EVAL.SEED if seed is None else seed
    for name, value in (("num_samples", num_samples), ("batch_size", batch_size)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if image_dir is not None and "loc" in metrics:
        raise ValueError("'loc' scores the generator's attention: it needs TRAIN.NET_G, not an image folder")
    if image_dir is not None and save_images:
        raise ValueError("save_images keeps generated images; the images of an image folder are on disk already")
    entries = read_manifest(image_dir) if image_dir is not None else None
    num_samples = len(entries) if entries is not None else num_samples
    if metrics & {"rp", "is"} and num_samples < cfg.EVAL.SPLITS:
        raise ValueError(f"{num_samples} images for {cfg.EVAL.SPLITS} splits (EVAL.SPLITS): R-precision and the Inception "
                         "score need at least one image a split")
    with _forked_rng(device), torch.no_grad():
        quality = _image_quality(metrics, cfg, device, feature_extractor) if metrics & {"is", "fid"} else None
        dataset = build_dataset(cfg, "test")
        captions = load_eval_captions(dataset, seed)
        nets = _networks(cfg, dataset.n_words, device, metrics, entries is None, net_g, text_encoder, image_encoder)
        with _eval_mode(nets.net_g, nets.text_encoder, nets.image_encoder):
            torch.manual_seed(seed)  # z and CA_NET's noise
            if entries is not None:
                batches = folder_batches(entries, Path(image_dir) / MANIFEST, nets.text_encoder, dataset.wordtoix,
                                         device, batch_size)
            else:
                batches = generated_batches(nets.net_g, nets.text_encoder, captions, dataset.wordtoix, cfg, device,
                                            num_samples, batch_size)
            stream = _stream(batches, num_samples, len(captions) if entries is None else num_samples, metrics,
                             nets.image_encoder, quality, out_dir / "images" if save_images else None,
                             captions if entries is None else None)
            result, timings = _scores(stream, metrics, quality, nets, dataset, captions, cfg, device, batch_size,
                                      seed, num_samples)
    files = stream.showcase.write(out_dir)
    if stream.saver is not None:
        files["images"] = str(stream.saver.close().relative_to(out_dir))
    timings["total"] = time.perf_counter() - began
    settings = _settings(cfg, metrics, device, seed, batch_size, image_dir, nets.given, num_samples, stream.size)
    summary = _without_nan({"model": _model_name(cfg, image_dir, nets.given), "metrics": result,
                            "settings": settings, "seconds": {k: round(v, 3) for k, v in timings.items()},
                            "files": {"metrics": "metrics.json", "report": "report.md", **files}})
    _write_atomic(out_dir / "metrics.json", (json.dumps(summary, indent=1) + "\n").encode("utf-8"))
    _write_atomic(out_dir / "report.md", report_markdown(summary).encode("utf-8"))
    log.info("evaluation written to %s (metrics.json, report.md)", out_dir)
    return summary


@dataclass
class _Stream:
    """What streaming the images leaves behind: the DAMSM codes R-precision needs, the
    showcase, the saver, the image size and the time it took."""

    codes: list[torch.Tensor] = field(default_factory=list)
    sentences: list[torch.Tensor] = field(default_factory=list)
    classes: list[np.ndarray] = field(default_factory=list)
    showcase: Showcase | None = None
    saver: ImageSaver | None = None
    size: int = 0
    seconds: float = 0.0


def _stream(batches: Iterator[Batch], total: int, num_captions: int, metrics: set[str],
            image_encoder: nn.Module | None, quality, save_dir: Path | None,
            captions: EvalCaptions | None) -> _Stream:
    """Every batch through the metrics, the showcase and the saver; no image is kept."""
    began = time.perf_counter()
    stream = _Stream(showcase=Showcase(total, num_captions),
                     saver=ImageSaver(save_dir, captions) if save_dir is not None else None)
    with tqdm(total=total, desc="generating" if captions is not None else "scoring", unit="img",
              dynamic_ncols=True, disable=None) as bar:
        for batch in batches:
            if "rp" in metrics:
                stream.codes.append(image_codes(image_encoder, batch.images))
                stream.sentences.append(batch.sentences.float().cpu())
                stream.classes.append(batch.classes)
            if quality is not None:
                quality.update_fake(batch.images)
            stream.showcase.add(batch)
            if stream.saver is not None:
                stream.saver.add(batch)
            stream.size = batch.images.size(-1)
            bar.update(len(batch.texts))
    stream.seconds = time.perf_counter() - began
    return stream


def _scores(stream: _Stream, metrics: set[str], quality, nets: _Networks, dataset: TextDataset,
            captions: EvalCaptions, cfg: EasyDict, device: torch.device, batch_size: int, seed: int,
            num_samples: int) -> tuple[dict[str, Any], dict[str, float]]:
    """The requested metrics from the stream's leftovers (and, for FID, the real images;
    for localisation, the networks), with the seconds each took."""
    result: dict[str, Any] = {}
    timings = {"images": stream.seconds}
    t0 = time.perf_counter()
    if "rp" in metrics:
        pool = pool_sentences(nets.text_encoder, captions, dataset.wordtoix, device, batch_size)
        rp = r_precision(torch.cat(stream.codes), torch.cat(stream.sentences), np.concatenate(stream.classes), pool,
                         captions.classes, mismatched=cfg.EVAL.R_MISMATCHED, splits=cfg.EVAL.SPLITS, seed=seed)
        result["r_precision"] = {"mean": rp.mean, "std": rp.std, "chance": rp.chance, "candidates": rp.candidates,
                                 "images": len(rp.hits)}
        timings["r_precision"], t0 = time.perf_counter() - t0, time.perf_counter()
    if quality is not None:
        for real in real_test_images(dataset, stream.size, batch_size, cfg.WORKERS):
            quality.update_real(real.to(device))
        result.update(_quality_numbers(quality.compute()))
        timings["real_images_and_is_fid"], t0 = time.perf_counter() - t0, time.perf_counter()
    if "loc" in metrics:
        result["localisation"] = _localisation(cfg, nets.net_g, nets.text_encoder, nets.image_encoder, dataset,
                                               device, batch_size, seed, num_samples)
        timings["localisation"] = time.perf_counter() - t0
    return result, timings


def _without_nan(value: Any) -> Any:
    """NaN (a localisation with no word to score) as None, so that metrics.json is strict JSON."""
    if isinstance(value, dict):
        return {k: _without_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nan(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def _quality_numbers(values: dict[str, float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "inception_score_mean" in values:
        out["inception_score"] = {"mean": float(values["inception_score_mean"]),
                                  "std": float(values["inception_score_std"])}
    if "fid" in values:
        out["fid"] = float(values["fid"])
    return out


# ---------------------------------------------------------------- metrics.json and report.md

def _settings(cfg: EasyDict, metrics: set[str], device: torch.device, seed: int, batch_size: int,
              image_dir: str | Path | None, given: dict[str, bool], num_images: int,
              image_size: int) -> dict[str, Any]:
    def checkpoint(name: str, path: str | Path) -> str | None:
        return "in memory" if given[name] else str(path)

    return {
        "metrics": sorted(metrics), "source": "image_dir" if image_dir is not None else "generator",
        "image_dir": str(image_dir) if image_dir is not None else None,
        "num_samples": num_images, "image_size": image_size, "batch_size": batch_size, "seed": seed, "splits": cfg.EVAL.SPLITS,
        "r_mismatched": cfg.EVAL.R_MISMATCHED, "mismatched_from": "test captions of other classes",
        "data_dir": str(cfg.DATA_DIR), "device": str(device),
        "inception_weights": cfg.EVAL.INCEPTION_WEIGHTS or "library default",
        "checkpoints": {
            "generator": None if image_dir is not None else checkpoint("generator", cfg.TRAIN.NET_G),
            "text_encoder": checkpoint("text_encoder", cfg.TRAIN.NET_E),
            "image_encoder": checkpoint("image_encoder", image_encoder_path(cfg.TRAIN.NET_E))
            if metrics & {"rp", "loc"} else None,
        },
    }


def _model_name(cfg: EasyDict, image_dir: str | Path | None, given: dict[str, bool]) -> str:
    if image_dir is not None:
        return Path(image_dir).name
    if given["generator"] or not cfg.TRAIN.NET_G:
        return cfg.CONFIG_NAME or "generator"
    return Path(cfg.TRAIN.NET_G).stem


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _mean_std(values: dict[str, float] | None, scale: float = 1.0) -> str:
    return "–" if values is None else f"{values['mean'] * scale:.2f} ± {values['std'] * scale:.2f}"


def report_markdown(summary: dict[str, Any]) -> str:
    """A short report: the paper's table, the localisation table with chance beside it,
    the settings and links to the figures."""
    m, s, files = summary["metrics"], summary["settings"], summary["files"]
    fid = f"{m['fid']:.2f}" if "fid" in m else "–"
    source = (f"{s['num_samples']} images of {s['image_dir']}" if s["source"] == "image_dir" else
              f"{s['num_samples']} images generated from the test captions of {s['data_dir']} "
              f"(every caption in turn, cycled; seed {s['seed']})")
    lines = [f"# Evaluation: {summary['model']}", "",
             f"{source}, {s['image_size']}x{s['image_size']} px, on {s['device']}, "
             f"in {summary['seconds']['total']:.0f} s.", "",
             "| Model | IS | R-precision (%) | FID |", "|---|---|---|---|",
             f"| {summary['model']} | {_mean_std(m.get('inception_score'))} | "
             f"{_mean_std(m.get('r_precision'), 100)} | {fid} |", ""]
    if "r_precision" in m:
        rp = m["r_precision"]
        lines += [f"R-precision: the true caption ranked first among {rp['candidates']} (itself and "
                  f"{s['r_mismatched']} {s['mismatched_from']}) by the cosine of the DAMSM image and sentence "
                  f"vectors; chance {100 * rp['chance']:.0f} %; mean ± std over {s['splits']} splits.", ""]
    if "inception_score" in m or "fid" in m:
        lines += [f"IS over {s['splits']} splits; FID against the real test images at the same resolution "
                  f"(Inception weights: {s['inception_weights']}).", ""]
    if "localisation" in m:
        lines += _localisation_table(m["localisation"])
    lines += _figure_links(files)
    lines += [f"Every number and setting: [metrics.json]({files['metrics']}).", ""]
    return "\n".join(lines)


def _localisation_table(loc: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["## Attention localisation", "",
             "Share of the caption words naming an object whose attention peaks inside the object's box.", "",
             "| Attention | Hit rate (%) | Chance (%) | Words |", "|---|---|---|---|"]
    for key, values in loc.items():
        name = "DAMSM word–region attention" if key == "damsm" else f"Generator, stage {key[-1]} word attention"
        lines.append(f"| {name} | {_percent(values['hit_rate'])} | {_percent(values['chance'])} | {values['words']} |")
    return lines + [""]


def _figure_links(files: dict[str, Any]) -> list[str]:
    lines = []
    if "samples" in files:
        lines += ["## Samples", "", f"![samples]({files['samples']})", ""]
    if files.get("attention"):
        lines += ["## Attention", ""] + [f"![attention {n}]({name})" for n, name in enumerate(files["attention"])]
        lines.append("")
    if "images" in files:
        lines += [f"Every scored image, with its caption: [{files['images']}]({files['images']}) "
                  "(score it again with `--image_dir`).", ""]
    return lines


def scalars(summary: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of ``evaluate``'s result, flat, for TensorBoard."""
    m = summary["metrics"]
    out: dict[str, float] = {}
    if "r_precision" in m:
        out.update({"eval/r_precision": m["r_precision"]["mean"], "eval/r_precision_std": m["r_precision"]["std"]})
    if "inception_score" in m:
        out.update({"eval/inception_score": m["inception_score"]["mean"],
                    "eval/inception_score_std": m["inception_score"]["std"]})
    if "fid" in m:
        out["eval/fid"] = m["fid"]
    for key, values in m.get("localisation", {}).items():
        if values["hit_rate"] is not None:
            out[f"eval/localisation_{key}"] = values["hit_rate"]
    return out


# ---------------------------------------------------------------- command line

def default_out_dir(cfg: EasyDict, image_dir: str | Path | None) -> Path:
    """``RUN.OUTPUT_DIR/eval/{DATASET_NAME}_{model}_{timestamp}``, a new folder every run."""
    name = Path(image_dir).name if image_dir else Path(cfg.TRAIN.NET_G or "generator").stem
    stamp = datetime.datetime.now().strftime("%Y_%m_%d_%H_%M_%S")
    base = Path(cfg.RUN.OUTPUT_DIR) / "eval" / f"{cfg.DATASET_NAME}_{name}_{stamp}"
    out, n = base, 1
    while out.exists():
        out, n = base.with_name(f"{base.name}_{n}"), n + 1
    return out


def main(argv: list[str] | None = None) -> int:
    """``attngan-eval``: score TRAIN.NET_G (or --image_dir) and write metrics.json, report.md
    and figures into --output_dir (default RUN.OUTPUT_DIR/eval/<dataset>_<model>_<time>)."""
    from .cli import USER_ERRORS, base_parser, report, setup

    parser = base_parser("Score a text-to-image generator (TRAIN.NET_G) or a folder of images with R-precision, "
                         "Inception score, FID and attention localisation.", "cfg/eval_bird.yml")
    parser.add_argument("--metrics", default=None,
                        help=f"comma-separated, of {','.join(METRICS)} (default EVAL.METRICS)")
    parser.add_argument("--num_samples", type=int, default=None, help="images to generate (default EVAL.NUM_SAMPLES)")
    parser.add_argument("--batch_size", type=int, default=None, help="default EVAL.BATCH_SIZE")
    parser.add_argument("--image_dir", default=None,
                        help=f"score this folder's images (listed in its {MANIFEST}) instead of generating")
    parser.add_argument("--save_images", action="store_true",
                        help=f"keep every generated image in <output_dir>/images with a {MANIFEST}")
    args = parser.parse_args(argv)
    try:
        if args.metrics is not None:
            parse_metrics(args.metrics)  # before anything loads
        cfg, device, _ = setup(args)
        image_dir = args.image_dir or cfg.EVAL.IMAGE_DIR or None
        out_dir = Path(args.output_dir) if args.output_dir else default_out_dir(cfg, image_dir)
        summary = evaluate(cfg, device, args.metrics or cfg.EVAL.METRICS, out_dir, num_samples=args.num_samples,
                           batch_size=args.batch_size, seed=args.manualSeed, image_dir=image_dir,
                           save_images=args.save_images)
    except USER_ERRORS as err:
        return report(err)
    print(json.dumps({"output_dir": str(out_dir), "report": str(out_dir / "report.md"),
                      **{k.split("/", 1)[1]: round(v, 4) for k, v in scalars(summary).items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
