"""The word-swap probe: does DAMSM's sentence vector tell an object's shape (or colour)
apart? For datasets with ground-truth objects (the generated shapes' ``objects.json``).

For each test image, its first caption as the model sees it (``pad_or_sample``) is
scored against copies of itself with the word naming the main object's shape replaced
by every shape of the dataset (likewise for its colour): cosine similarity between the
image's global DAMSM code and each sentence vector. A *hit* when the true caption scores
highest; *chance* is one over the number of candidates. Captions whose word does not name
exactly one object (``words_naming_objects``) are skipped.

The sentence vector is what conditions the generator and the discriminators, and the
sentence-level DAMSM loss is what pulls the generator towards the caption: a probe near
chance says the generator gets no signal about that kind of word.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from attngan.data.datasets import TextDataset, centre_view, get_imgs
from attngan.data.text import pad_or_sample
from attngan.generation import encode_captions
from attngan.models import text_features
from attngan.runtime import eval_mode

from .localisation import words_naming_objects


@dataclass
class SwapAccuracy:
    """Share of ``captions`` probed whose true word ranked first, and the chance level."""

    accuracy: float
    chance: float
    captions: int


def swap_variants(
    tokens: Sequence[str], image_objects: Sequence[dict[str, Any]], kind: str, candidates: Sequence[str]
) -> tuple[list[list[str]], int] | None:
    """Copies of ``tokens`` with the last word naming the main (first) of ``image_objects``
    by its ``kind`` ("shape" or "color") replaced by each of ``candidates``, and the index
    of the true one; None when no token names that object alone or the true word is not a
    candidate."""
    main = image_objects[0]
    true = main[kind]
    if true not in candidates:
        return None
    named = words_naming_objects(tokens, image_objects)
    positions = [i for i, (t, box) in enumerate(zip(tokens, named)) if t == true and box is main["box"]]
    if not positions:
        return None
    at = positions[-1]
    return [[*tokens[:at], word, *tokens[at + 1 :]] for word in candidates], list(candidates).index(true)


def word_swap_accuracy(
    image_encoder: nn.Module,
    text_encoder: nn.Module,
    dataset: TextDataset,
    objects: dict[str, Any],
    device: torch.device | str,
    batch_size: int = 32,
    max_images: int | None = None,
    seed: int = 0,
) -> dict[str, SwapAccuracy]:
    """{"shape": ..., "colour": ...} over the first ``max_images`` test images (all by
    default) of ``dataset``, each with its first caption and its main (first) object.

    Candidates are the dataset's shapes / colours that are in the vocabulary. Images go
    through the original's transform with a centred crop at the largest scale, as in
    ``damsm_localisation``; ``seed`` only draws the kept words of captions longer than
    WORDS_NUM. The models' train/eval modes are left as they were.
    """
    device = torch.device(device)
    rng = np.random.default_rng(seed)
    size = dataset.imsizes[-1]
    view = centre_view(size)
    kinds = {"shape": ("shape", objects["shapes"]), "colour": ("color", list(objects["colors"]))}
    candidates = {name: [w for w in vocab if w in dataset.wordtoix] for name, (_, vocab) in kinds.items()}
    probed = {name: field for name, (field, _) in kinds.items() if len(candidates[name]) > 1}
    hits: dict[str, list[bool]] = {name: [] for name in kinds}
    keys = dataset.filenames[:max_images]
    with eval_mode(image_encoder, text_encoder), torch.no_grad():
        for start in range(0, len(keys), batch_size):
            batch = keys[start : start + batch_size]
            images = torch.stack(
                [
                    get_imgs(dataset.image_path(key), [size], transform=view, normalize=dataset.normalize)[-1]
                    for key in batch
                ]
            ).to(device)
            codes = image_encoder(images)[1]
            rows, owners = [], []  # every variant of the batch; (image j, kind, true index, count)
            for j, key in enumerate(batch):
                ids, length = pad_or_sample(
                    dataset.captions[(start + j) * dataset.captions_per_image], dataset.words_num, rng
                )
                tokens = [dataset.ixtoword[int(i)] for i in ids[:length]]
                for name, field in probed.items():
                    probe = swap_variants(tokens, objects["images"][key]["objects"], field, candidates[name])
                    if probe is not None:
                        owners.append((j, name, probe[1], len(probe[0])))
                        rows += probe[0]
            if not rows:
                continue
            encoded = encode_captions([" ".join(row) for row in rows], dataset.wordtoix, "word-swap probe")
            _, sentences, _ = text_features(text_encoder, encoded.captions.to(device), encoded.cap_lens)
            sentences = sentences[torch.as_tensor(np.argsort(encoded.sorted_indices), device=device)]
            first = 0
            for j, name, true, count in owners:
                similarity = F.cosine_similarity(codes[j : j + 1], sentences[first : first + count])
                hits[name].append(int(similarity.argmax()) == true)
                first += count
    return {
        name: SwapAccuracy(float(np.mean(h)) if h else float("nan"), 1.0 / max(len(candidates[name]), 1), len(h))
        for name, h in hits.items()
    }
