"""The metric registry (in the way of stylegan2-ada-pytorch's ``metrics/metric_main.py``):
a metric is one class, registered with ``@register_metric``, that sees every batch of
images as it streams and gives its numbers at the end, with the protocol it followed and
the published table it can be set beside. ``evaluate`` builds the requested ones before
generating anything, so that a missing weights file stops the run at once.

The paper's own metrics (rp, is, fid, loc, obj) still run through ``scoring``; the
published-protocol ones (``published``: is_cub, fid_dmgan, clip_rp, clip_score) live here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

import torch
from easydict import EasyDict

from ..data.datasets import TextDataset
from .captions import Batch, EvalCaptions


@dataclass
class MetricContext:
    """What a metric may use: the config, device, seed and batch size of the run, the test
    split and its captions, the real test images (``real_images(size, total)``: uint8
    batches at ``size`` px, every test image once, or padded to ``total``), and ``shared``
    for networks that two metrics load once (CLIP)."""

    cfg: EasyDict
    device: torch.device
    seed: int
    batch_size: int
    dataset: TextDataset
    captions: EvalCaptions
    real_images: Callable[[int, int], Iterator[torch.Tensor]]
    shared: dict[str, Any] = field(default_factory=dict)


class Metric:
    """A registered metric. ``name``: its --metrics name; ``comparable_with``: the published
    table its number can be set beside."""

    name: ClassVar[str]
    comparable_with: ClassVar[str]

    def __init__(self, ctx: MetricContext):
        self.ctx = ctx

    def update(self, batch: Batch) -> None:
        """One batch of scored images (uint8 ``batch.images`` [b,3,s,s], captions ``batch.texts``)."""
        raise NotImplementedError

    def result(self, image_size: int) -> dict[str, Any]:
        """The numbers, after the last batch (``image_size``: the scored images' size)."""
        raise NotImplementedError

    def protocol(self) -> dict[str, Any]:
        """What metrics.json records: network, weights file and sha256, resize, scaling, ..."""
        raise NotImplementedError


REGISTRY: dict[str, type[Metric]] = {}


def register_metric(cls: type[Metric]) -> type[Metric]:
    """Class decorator: ``cls.name`` becomes a metric of ``attngan-eval --metrics``."""
    if cls.name in REGISTRY:
        raise ValueError(f"metric {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls
