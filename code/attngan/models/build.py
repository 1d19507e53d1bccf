"""Builders: the only place where the networks read the config."""

from __future__ import annotations

import torch.nn as nn
from easydict import EasyDict

from .discriminator import D_NETS
from .encoders import CNN_ENCODER, RNN_ENCODER, CompactImageEncoder
from .generator import G_DCGAN, G_NET
from .layers import weights_init


def build_text_encoder(cfg: EasyDict, n_words: int) -> RNN_ENCODER:
    return RNN_ENCODER(n_words, nhidden=cfg.TEXT.EMBEDDING_DIM, rnn_type=cfg.RNN_TYPE, text_fc=cfg.DAMSM.TEXT_FC)


def build_image_encoder(cfg: EasyDict, pretrained: bool = False) -> nn.Module:
    """DAMSM image encoder. ``pretrained``: start Inception-v3 from ImageNet weights (for
    DAMSM training); False builds it without any download, to load a checkpoint into.

    As the original, the encoder is 256-wide when TRAIN.FLAG is False (sampling).
    """
    nef = cfg.TEXT.EMBEDDING_DIM if cfg.TRAIN.FLAG else 256
    backbone = cfg.DAMSM.IMAGE_BACKBONE
    if backbone == "compact":
        return CompactImageEncoder(nef, image_size=cfg.DAMSM.COMPACT_IMAGE_SIZE)
    if backbone != "inception_v3":
        raise ValueError(f"DAMSM.IMAGE_BACKBONE must be 'inception_v3' or 'compact', got {backbone!r}")
    weights = (cfg.DAMSM.INCEPTION_WEIGHTS or True) if pretrained else None
    return CNN_ENCODER(nef, weights=weights, align_corners=cfg.DAMSM.RESIZE_ALIGN_CORNERS)


def build_generator(cfg: EasyDict, initialise: bool = True) -> nn.Module:
    """G_NET, or G_DCGAN when GAN.B_DCGAN, initialised as the original (skip the
    initialisation with ``initialise=False`` when a checkpoint is loaded next)."""
    cls = G_DCGAN if cfg.GAN.B_DCGAN else G_NET
    net = cls(
        gf_dim=cfg.GAN.GF_DIM,
        emb_dim=cfg.TEXT.EMBEDDING_DIM,
        condition_dim=cfg.GAN.CONDITION_DIM,
        z_dim=cfg.GAN.Z_DIM,
        r_num=cfg.GAN.R_NUM,
        branch_num=cfg.TREE.BRANCH_NUM,
        exact_mask=cfg.FIXES.ATTENTION_MASK,
    )
    if initialise:
        net.apply(weights_init)
    return net


def build_discriminators(cfg: EasyDict, initialise: bool = True) -> list[nn.Module]:
    """One D per stage (D_NET64, D_NET128, D_NET256); the AttnDCGAN has one D of the
    final size without the unconditional head, as the original trainer builds it."""
    ndf, nef, branches = cfg.GAN.DF_DIM, cfg.TEXT.EMBEDDING_DIM, cfg.TREE.BRANCH_NUM
    if cfg.GAN.B_DCGAN:
        nets = [D_NETS[branches - 1](ndf, nef, b_jcu=False)]
    else:
        nets = [D_NETS[i](ndf, nef) for i in range(branches)]
    if initialise:
        for net in nets:
            net.apply(weights_init)
    return nets
