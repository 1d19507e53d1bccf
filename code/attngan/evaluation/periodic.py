"""The evaluation a training run does every EVAL.EVERY_EPOCHS epochs, handed to the AttnGAN
loop as a callable (the training layer does not import the evaluation)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from easydict import EasyDict

from ..distributed import SINGLE, World
from .report import scalars
from .run import evaluate, parse_metrics

Evaluator = Callable[[nn.Module, nn.Module, nn.Module, Path], dict[str, float]]


def during_training(cfg: EasyDict, device: torch.device, world: World = SINGLE) -> Evaluator | None:
    """None without EVAL.EVERY_EPOCHS; else a callable (averaged G, text encoder, image
    encoder, output folder) -> the TensorBoard scalars of EVAL.METRICS on
    EVAL.TRAIN_NUM_SAMPLES images (every process calls it under torchrun). A metric name
    or Inception weights that cannot be used fail now, not after the first epochs."""
    if not cfg.EVAL.EVERY_EPOCHS:
        return None
    metrics = parse_metrics(cfg.EVAL.METRICS)
    if metrics & {"is", "fid"}:
        from ..metrics.image_quality import load_inception

        load_inception(cfg.EVAL.INCEPTION_WEIGHTS)

    def run(net_g: nn.Module, text_encoder: nn.Module, image_encoder: nn.Module, out_dir: Path) -> dict[str, float]:
        result = evaluate(
            cfg,
            device,
            metrics,
            out_dir,
            net_g=net_g,
            text_encoder=text_encoder,
            image_encoder=image_encoder,
            num_samples=cfg.EVAL.TRAIN_NUM_SAMPLES,
            world=world,
        )
        return scalars(result)

    return run
