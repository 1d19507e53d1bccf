"""Attention localisation on a dataset with ground-truth boxes (the generated shapes
dataset's ``objects.json``): for every caption word that names one object of its image,
does the word's attention map peak inside that object's box?

Scored for the generator's word attention (every attention stage, on generated images
of the test captions: the shapes captions say where the object is, so the real image's
box is the target) and for DAMSM's word-region attention (on the real test images).

Rules:

- A word *names an object* when it is one of the image's object words (colour or shape)
  and names exactly one object of that image; a colour or shape shared by two objects is
  ambiguous and skipped. Background colours name no object (no object has its image's
  background colour). Words are the tokens the model saw: the caption ids after
  ``pad_or_sample`` (WORDS_NUM), read through the dataset's ``ixtoword``.
- Boxes are taken into the frame the models see: the original's image transform
  (``Resize(S * 76 // 64)`` then an ``S``-pixel crop, S the largest scale) with the crop
  centred, which is the mean of its random crops; a box clipped to the frame, and a word
  whose box falls wholly outside it is skipped.
- The *peak* of a word's map [h, w] is its argmax cell (the first one on ties). Cell
  (i, j) covers the half-open pixel rectangle x in [j*S/w, (j+1)*S/w), y in
  [i*S/h, (i+1)*S/h); the box [x, y, bw, bh] covers [x, x+bw) x [y, y+bh). A *hit* is a
  peak cell whose rectangle overlaps the box with positive area.
- *Chance* for a word is the fraction of the h*w cells that would be hits: the expected
  score of a peak drawn uniformly at random. Results average hits and chances over words.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from attngan.data.datasets import TextDataset, centre_view, enlarged, get_imgs
from attngan.data.text import pad_or_sample
from attngan.losses import word_region_attention
from attngan.models import text_features
from attngan.runtime import eval_mode, forked_rng

from ..errors import DataError, user_path

Box = Sequence[float]  # [x, y, w, h] in pixels
KINDS = ("colour", "shape")


@dataclass
class Localisation:
    """Hit rate and chance baseline (means over ``words`` scored words; NaN when none),
    and the same per kind of word ("colour", "shape") in ``by_kind``."""

    hit_rate: float
    chance: float
    words: int
    by_kind: dict[str, Localisation] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hit_rate": self.hit_rate, "chance": self.chance, "words": self.words}
        if self.by_kind:
            out["by_kind"] = {kind: result.as_dict() for kind, result in self.by_kind.items()}
        return out


def load_objects(data_dir: str | Path) -> dict[str, Any]:
    """The parsed ``DATA_DIR/objects.json`` (image_size, colors, shapes, images by key)."""
    path = Path(data_dir) / "objects.json"
    if not path.is_file():
        raise DataError(
            f"{path} not found: attention localisation and object match need a dataset with "
            "objects.json, such as the generated shapes dataset (attngan-make-shapes)"
        )
    try:
        with user_path(path, "cannot read"):
            objects = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:  # not UTF-8, or not JSON
        raise DataError(f"{path}: not readable JSON ({err}); rewrite it with attngan-make-shapes") from err
    if not isinstance(objects, dict) or not isinstance(objects.get("images"), dict):
        raise DataError(
            f'{path}: expected a JSON object with "images" (the objects of each image by key), '
            f"as attngan-make-shapes writes it"
        )
    return objects


def words_naming_objects(tokens: Sequence[str], objects: Sequence[dict[str, Any]]) -> list[Box | None]:
    """For each token, the box of the one object of ``objects`` (an image's entries of
    objects.json, each with ``words`` and ``box``) it names, else None."""
    named = {}
    for obj in objects:
        for word in set(obj["words"]):
            named[word] = None if word in named else obj["box"]
    return [named.get(token) for token in tokens]


def peak_cells(maps: torch.Tensor) -> np.ndarray:
    """maps [..., h, w] -> the flat index of each map's argmax cell [...] (the first on ties),
    on the CPU: one transfer for a whole batch of maps."""
    return maps.detach().flatten(-2).argmax(dim=-1).cpu().numpy()


def peak_hits(
    cells: np.ndarray, grid: Sequence[int], boxes: Sequence[Box | None], image_size: float
) -> tuple[np.ndarray, np.ndarray]:
    """cells [W] (each word's peak, a flat index into its h x w ``grid``), boxes [W] (None:
    not scored), all in an ``image_size`` frame -> (hits [n] bool, chance [n] float) of the
    n words with a box."""
    if len(cells) != len(boxes):
        raise ValueError(f"{len(cells)} peaks for {len(boxes)} boxes")
    h, w = grid
    ys, xs = np.arange(h + 1) * image_size / h, np.arange(w + 1) * image_size / w  # cell edges
    hits, chance = [], []
    for peak, box in zip(cells, boxes):
        if box is None:
            continue
        x, y, bw, bh = box
        inside = ((ys[:-1] < y + bh) & (ys[1:] > y))[:, None] & ((xs[:-1] < x + bw) & (xs[1:] > x))[None, :]
        hits.append(bool(inside.flat[peak]))
        chance.append(float(inside.mean()))
    return np.asarray(hits, dtype=bool), np.asarray(chance, dtype=float)


def view_box(box: Box, source_size: int, size: int) -> tuple[float, float, float, float] | None:
    """A box of a ``source_size`` image in the centre crop of the original's transform
    (Resize(size*76//64), CenterCrop(size)), clipped to it; None if wholly cropped out."""
    resized = enlarged(size)
    scale, offset = resized / source_size, round((resized - size) / 2.0)  # torchvision's CenterCrop
    x0, y0 = (max(0.0, min(size, v * scale - offset)) for v in box[:2])
    x1, y1 = (max(0.0, min(size, (v + d) * scale - offset)) for v, d in zip(box[:2], box[2:]))
    return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None


class _Tally:
    """Hits, chances and word kinds accumulated over captions."""

    def __init__(self) -> None:
        self.hits: list[np.ndarray] = []
        self.chance: list[np.ndarray] = []
        self.kinds: list[str] = []

    def add(
        self,
        cells: np.ndarray,
        grid: Sequence[int],
        tokens: list[str],
        boxes: list[Box | None],
        size: int,
        objects: dict[str, Any],
    ) -> None:
        hits, chance = peak_hits(cells, grid, boxes, size)
        self.hits.append(hits)
        self.chance.append(chance)
        self.kinds += ["colour" if t in objects["colors"] else "shape" for t, b in zip(tokens, boxes) if b is not None]

    def result(self) -> Localisation:
        hits, chance = np.concatenate(self.hits or [[]]), np.concatenate(self.chance or [[]])
        kinds = np.asarray(self.kinds, dtype=str)

        def summary(sel: np.ndarray) -> Localisation:
            n = int(sel.sum())
            return Localisation(
                float(hits[sel].mean()) if n else float("nan"), float(chance[sel].mean()) if n else float("nan"), n
            )

        overall = summary(np.ones(len(hits), dtype=bool))
        overall.by_kind = {kind: summary(kinds == kind) for kind in KINDS}
        return overall


@dataclass
class _Captions:
    """Test captions as the model sees them, sorted by length (descending, stable) for the
    text encoder: ids [B,WORDS_NUM], lengths [B], tokens, boxes of the named objects in
    the frame of the largest scale, and ``order`` (row r is caption ``indices[order[r]]``)."""

    ids: torch.Tensor
    lens: torch.Tensor
    tokens: list[list[str]]
    boxes: list[list[Box | None]]
    order: list[int]


def _captions(
    dataset: TextDataset, objects: dict[str, Any], indices: Sequence[int], rng: np.random.Generator
) -> _Captions:
    """Test captions ``indices`` (into ``dataset.captions``), words drawn from ``rng`` in
    ``indices`` order."""
    size = dataset.imsizes[-1]
    rows = [pad_or_sample(dataset.captions[i], dataset.words_num, rng) for i in indices]
    order = sorted(range(len(rows)), key=lambda r: -rows[r][1])
    tokens, boxes = [], []
    for r in order:
        key = dataset.filenames[indices[r] // dataset.captions_per_image]
        if key not in objects["images"]:
            raise KeyError(f"image {key!r} is not in {dataset.data_dir / 'objects.json'}")
        words = [dataset.ixtoword[int(i)] for i in rows[r][0][: rows[r][1]]]
        named = words_naming_objects(words, objects["images"][key]["objects"])
        tokens.append(words)
        boxes.append([None if b is None else view_box(b, objects["image_size"], size) for b in named])
    ids = torch.from_numpy(np.stack([rows[r][0] for r in order]))
    return _Captions(ids, torch.tensor([rows[r][1] for r in order]), tokens, boxes, order)


def _batches(count: int, batch_size: int) -> Iterator[range]:
    return (range(start, min(start + batch_size, count)) for start in range(0, count, batch_size))


def generator_localisation(
    net_g: nn.Module,
    text_encoder: nn.Module,
    dataset: TextDataset,
    objects: dict[str, Any],
    device: torch.device | str,
    batch_size: int,
    seed: int = 0,
    max_captions: int | None = None,
) -> list[Localisation]:
    """Localisation of G's word attention, one result per attention stage (att_maps[k],
    the attention of G's stage k+2), over every test caption (or a seeded random
    ``max_captions`` of them) in seeded random batches, each with its own noise z.

    The maps are G's own, with the padding mask it was run with (FIXES.ATTENTION_MASK);
    each caption's first cap_len maps are scored. Deterministic given ``seed``; the
    caller's random generators and the models' train/eval modes are left as they were.
    """
    device = torch.device(device)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(dataset.captions))[:max_captions]
    z_dim = net_g.h_net1.fc[0].in_features - net_g.ca_net.c_dim  # INIT_STAGE_G's input is [c, z]
    tallies: list[_Tally] = []
    with eval_mode(net_g, text_encoder), torch.no_grad(), forked_rng(device):
        torch.manual_seed(seed)  # z and CA_NET's noise
        for batch in _batches(len(order), batch_size):
            caps = _captions(dataset, objects, order[batch], rng)
            words_embs, sent_emb, mask = text_features(text_encoder, caps.ids.to(device), caps.lens)
            z = torch.randn(len(caps.ids), z_dim, device=device)
            _, att_maps, _, _ = net_g(z, sent_emb, words_embs, mask)
            tallies = tallies or [_Tally() for _ in att_maps]
            for tally, maps in zip(tallies, att_maps):
                cells = peak_cells(maps)  # [B,T]
                for b, n in enumerate(caps.lens.tolist()):
                    tally.add(
                        cells[b, :n], maps.shape[-2:], caps.tokens[b], caps.boxes[b], dataset.imsizes[-1], objects
                    )
    return [tally.result() for tally in tallies]


def damsm_localisation(
    image_encoder: nn.Module,
    text_encoder: nn.Module,
    dataset: TextDataset,
    objects: dict[str, Any],
    device: torch.device | str,
    batch_size: int,
    gamma1: float,
    seed: int = 0,
) -> Localisation:
    """Localisation of DAMSM's word-region attention (each word's softmax over the regions,
    as ``losses.word_region_attention``, gamma1 = TRAIN.SMOOTH.GAMMA1) on the real test
    images, every test caption with its own image.

    Images at the largest scale through the original's transform with a centred crop
    (no flip); ``seed`` only draws the kept words of captions longer than WORDS_NUM.
    Each image is read and encoded once, with all its captions; batch_size // CAPTIONS_PER_IMAGE
    images (at least one) a batch.
    """
    device = torch.device(device)
    rng = np.random.default_rng(seed)
    size, cpi = dataset.imsizes[-1], dataset.captions_per_image
    view = centre_view(size)
    tally = _Tally()
    with eval_mode(image_encoder, text_encoder), torch.no_grad():
        for batch in _batches(len(dataset.filenames), max(1, batch_size // cpi)):
            caps = _captions(dataset, objects, range(batch.start * cpi, batch.stop * cpi), rng)
            images = torch.stack(
                [
                    get_imgs(
                        dataset.image_path(dataset.filenames[i]), [size], transform=view, normalize=dataset.normalize
                    )[-1]
                    for i in batch
                ]
            ).to(device)
            regions, _ = image_encoder(images)  # [b,D,h,w]
            words_embs, _, mask = text_features(text_encoder, caps.ids.to(device), caps.lens)
            grid, lens = regions.shape[-2:], caps.lens.tolist()
            row = np.argsort(caps.order)  # the batch's caption c is sorted row row[c]
            for j in range(len(batch)):
                own = row[j * cpi : (j + 1) * cpi]  # image j's captions
                index = torch.as_tensor(own, device=device)
                # Padding masked: each caption's softmax over words sees its own words only.
                _, attn = word_region_attention(regions[j : j + 1].flatten(2), words_embs[index], mask[index], gamma1)
                cells = peak_cells(attn[0].unflatten(-1, grid))  # [cpi,T]
                for c, r in enumerate(own):
                    tally.add(cells[c, : lens[r]], grid, caps.tokens[r], caps.boxes[r], size, objects)
    return tally.result()
