"""The networks a run scores with: those a training loop hands over, the others loaded
from TRAIN.NET_G and TRAIN.NET_E (and the DAMSM image encoder beside it)."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import torch
import torch.nn as nn
from easydict import EasyDict

from ..checkpoint import image_encoder_path, load_weights
from ..config import ConfigError
from ..generation import load_models
from ..models import build_image_encoder, build_text_encoder

log = logging.getLogger(__name__)


def load_text_encoder(cfg: EasyDict, n_words: int, device: torch.device) -> nn.Module:
    """The DAMSM text encoder of TRAIN.NET_E alone (scoring a folder needs no generator)."""
    if not cfg.TRAIN.NET_E:
        raise ConfigError(
            "TRAIN.NET_E is empty: set it to a DAMSM text encoder (text_encoder<N>.pth, the image "
            "encoder image_encoder<N>.pth beside it), e.g. --set TRAIN.NET_E=DAMSMencoders/bird/"
            "text_encoder200.pth"
        )
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


@dataclass
class Networks:
    net_g: nn.Module | None
    text_encoder: nn.Module
    image_encoder: nn.Module | None
    given: dict[str, bool]


def load_networks(
    cfg: EasyDict,
    n_words: int,
    device: torch.device,
    metrics: set[str],
    generate: bool,
    net_g: nn.Module | None,
    text_encoder: nn.Module | None,
    image_encoder: nn.Module | None,
) -> Networks:
    """The networks given, the others loaded from TRAIN.NET_G / TRAIN.NET_E."""
    given = {
        "generator": net_g is not None,
        "text_encoder": text_encoder is not None,
        "image_encoder": image_encoder is not None,
    }
    if generate and (net_g is None or text_encoder is None):
        loaded_g, loaded_e = load_models(cfg, n_words, device)
        net_g = loaded_g if net_g is None else net_g
        text_encoder = loaded_e if text_encoder is None else text_encoder
    if text_encoder is None:
        text_encoder = load_text_encoder(cfg, n_words, device)
    if image_encoder is None and metrics & {"rp", "loc"}:
        image_encoder = load_image_encoder(cfg, device)
    return Networks(net_g, text_encoder, image_encoder, given)
