"""Drawn images -> PNG files in the responses: stage images, per-word attention overlays and
the attention figures, made by the same code as ``attngan-sample``'s files."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..visualize import overlay, png_bytes, stage_attention_figure, to_uint8
from .engine import Caption, Drawn, Engine
from .schemas import ImageOut, Sample, StageAttention, WordMap
from .store import ImageStore


@dataclass
class Output:
    """Where PNGs go: the store (``url_for(name)`` gives their URL) or inline base64."""

    format: str
    store: ImageStore
    url_for: Callable[[str], str]

    def image(self, pixels: np.ndarray) -> ImageOut:
        png, (height, width) = png_bytes(pixels), pixels.shape[:2]
        if self.format == "base64":
            return ImageOut(width=width, height=height, base64=base64.b64encode(png).decode("ascii"))
        return ImageOut(width=width, height=height, url=self.url_for(self.store.put(png)))


def samples(
    engine: Engine, drawn: Drawn, captions: list[Caption], n: int, stages: list[int], attention: bool, out: Output
) -> list[list[Sample]]:
    """Per caption, its ``n`` samples (row ``i * n + s`` of ``drawn``): the images of stage
    indices ``stages`` and, with ``attention``, each word's map over every attention
    stage's image and the figure of them all (attngan-sample's ``*_attention.png``)."""
    pixels = [to_uint8(drawn.stages[k]) for k in stages]
    attention = attention and bool(drawn.attention)
    under = engine.stage_images(drawn) if attention else []
    under_pixels = [to_uint8(imgs) for imgs in under]
    result = []
    for i, caption in enumerate(captions):
        per_caption = []
        for row in range(i * n, (i + 1) * n):
            sample = Sample(stages=[out.image(stage[row]) for stage in pixels])
            if attention:
                sample.attention = [
                    StageAttention(
                        size=engine.attention_sizes[k],
                        words=[
                            WordMap(word=word, image=out.image(overlay(under_pixels[k][row], maps[row, w].numpy())))
                            for w, word in enumerate(caption.words)
                        ],
                    )
                    for k, maps in enumerate(drawn.attention)
                ]
                figure = stage_attention_figure(
                    [imgs[row] for imgs in under],
                    caption.words,
                    [maps[row] for maps in drawn.attention],
                    title=caption.text,
                )
                sample.attention_figure = out.image(figure)
            per_caption.append(sample)
        result.append(per_caption)
    return result


def original_images(
    engine: Engine, drawn: Drawn, caption: Caption, out: Output, maps: bool = True
) -> list[dict[str, str | None]]:
    """Per sample, the original API's ``small``/``medium``/``large`` (the 64/128/256 images,
    None where the generator has no such stage) and, with ``maps``, ``map1``/``map2``: the
    attention figure of stage 2 and 3 (stage k's maps over its image, words above), as
    ``attngan-sample``'s example ``*_a<k>.png``."""
    base = engine.cfg.TREE.BASE_SIZE
    names = {base: "small", 2 * base: "medium", 4 * base: "large"}
    pixels = [to_uint8(imgs) for imgs in drawn.stages]
    under = engine.stage_images(drawn)
    n_words = len(caption.words)
    result = []
    for row in range(drawn.stages[0].size(0)):
        urls: dict[str, str | None] = dict.fromkeys(("small", "medium", "large", "map1", "map2"))
        for size, stage in zip(engine.sizes, pixels):
            urls[names.get(size, "large")] = out.image(stage[row]).url
        for k, stage_maps in enumerate(drawn.attention[:2] if maps else []):
            figure = stage_attention_figure(
                [under[k][row]], caption.words, [stage_maps[row, :n_words]], title=" ".join(caption.words)
            )
            urls[f"map{k + 1}"] = out.image(figure).url
        result.append(urls)
    return result
