"""Configuration: the original AttnGAN defaults, our extension sections, YAML merging, and
the record of a run's resolved config (``<run>/config.yml``).

The original keys keep their names and defaults so that the authors' YAML files load
unchanged (``cfg.TRAIN.SMOOTH.GAMMA1`` and friends). Our additions live in their own
sections: ``FIXES`` (switches that repair a quirk of the original, all off by default),
``DAMSM`` (image backbone choices for DAMSM), ``EMA`` (G's moving average), ``AUGMENT`` (image augmentation), ``EVAL`` (the metrics)
and ``RUN`` (outputs, resuming, logging intervals).
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path
from typing import Any

import yaml
from easydict import EasyDict

from .errors import UserError, user_path


def default_config() -> EasyDict:
    """A fresh copy of every key a YAML file may set, with its default."""
    return EasyDict(copy.deepcopy(_DEFAULTS))


_DEFAULTS: dict[str, Any] = {
    "DATASET_NAME": "birds",
    "CONFIG_NAME": "",
    "DATA_DIR": "",
    "GPU_ID": 0,
    "CUDA": True,
    "WORKERS": 6,
    "RNN_TYPE": "LSTM",
    "B_VALIDATION": False,
    "TREE": {"BRANCH_NUM": 3, "BASE_SIZE": 64},
    "TRAIN": {
        "BATCH_SIZE": 64,
        "MAX_EPOCH": 600,
        "SNAPSHOT_INTERVAL": 2000,
        "DISCRIMINATOR_LR": 2e-4,
        "GENERATOR_LR": 2e-4,
        "ENCODER_LR": 2e-4,
        "RNN_GRAD_CLIP": 0.25,
        "FLAG": True,
        "NET_E": "",
        "NET_G": "",
        "B_NET_D": True,
        "SMOOTH": {"GAMMA1": 5.0, "GAMMA2": 5.0, "GAMMA3": 10.0, "LAMBDA": 1.0},
    },
    "GAN": {
        "DF_DIM": 64,
        "GF_DIM": 128,
        "Z_DIM": 100,
        "CONDITION_DIM": 100,
        "R_NUM": 2,
        "B_ATTENTION": True,
        "B_DCGAN": False,
    },
    "TEXT": {"CAPTIONS_PER_IMAGE": 10, "EMBEDDING_DIM": 256, "WORDS_NUM": 18},
    # Repairs of the original's quirks. Off reproduces the original exactly.
    "FIXES": {
        # The original masks padded words with mask.repeat(queryL, 1), which gives
        # attention row b*queryL+q the mask of caption (b*queryL+q) mod B.
        "ATTENTION_MASK": False,
    },
    "DAMSM": {
        # 'inception_v3' (the paper's, ImageNet weights) or 'compact' (small, trained from
        # scratch: for the offline synthetic data, where no ImageNet weights exist).
        "IMAGE_BACKBONE": "inception_v3",
        # Local file of torchvision's Inception-v3 ImageNet weights; '' = torchvision's
        # download cache.
        "INCEPTION_WEIGHTS": "",
        # The official encoders were trained under PyTorch 0.3, whose bilinear resize to
        # 299x299 had align_corners=True semantics.
        "RESIZE_ALIGN_CORNERS": True,
        # Linear layer on the text encoder's outputs (a published Python-3 fork's variant).
        "TEXT_FC": False,
        # Input size of the 'compact' backbone (images are resized to it).
        "COMPACT_IMAGE_SIZE": 64,
        # Validation batches per epoch (the original breaks after batch 50).
        "VAL_BATCHES": 50,
    },
    # Moving average of G's parameters (the original: 0.999, from G's initial weights).
    # A short run needs a faster average, or its snapshots stay close to the random start.
    "EMA": {"DECAY": 0.999},
    # Training-time image augmentation. The original always flips; captions that name
    # left and right (the synthetic data) need it off.
    "AUGMENT": {"HORIZONTAL_FLIP": True},
    # Evaluation (attngan-eval, and during training when EVERY_EPOCHS > 0).
    "EVAL": {
        # Metrics to compute, comma-separated: rp (R-precision), is, fid, loc (attention
        # localisation) and obj (object match: colour and shape), the last two for datasets
        # with objects.json; and the published protocols (docs/evaluation.md): is_cub,
        # fid_dmgan, clip_rp, clip_score.
        "METRICS": "rp,is,fid",
        # Generated images to score: every test caption in turn, cycled until this many
        # (the paper's protocol: 30,000).
        "NUM_SAMPLES": 30000,
        "BATCH_SIZE": 50,
        # Groups for the mean and standard deviation of R-precision and the Inception score.
        "SPLITS": 10,
        # Captions of other classes ranked against the true one in R-precision.
        "R_MISMATCHED": 99,
        # Local file of the Inception weights used for IS and FID (torch-fidelity's
        # pt_inception-2015-12-05); '' = the library's usual download.
        "INCEPTION_WEIGHTS": "",
        # is_cub: StackGAN's CUB Inception v3, converted by attngan-convert-inception.
        "CUB_INCEPTION": "",
        # fid_dmgan: torchvision's ImageNet Inception v3 weights (inception_v3_google-0cc3c7bd.pth);
        # the real statistics from a DM-GAN-format .npz ('' = computed from the test split),
        # and the number of real views the test split is padded to (0 = each image once;
        # DF-GAN padded CUB to about 30,000 with flips and shifts).
        "DMGAN_INCEPTION": "",
        "FID_DMGAN_STATS": "",
        "FID_DMGAN_REAL_IMAGES": 0,
        # clip_rp and clip_score: OpenAI's CLIP ViT-B/32 weights (ViT-B-32.pt, or open_clip's file).
        "CLIP_WEIGHTS": "",
        # Score the images of this folder (with their captions) instead of generating.
        "IMAGE_DIR": "",
        # During training: evaluate every N epochs (0 = never), on this many samples.
        "EVERY_EPOCHS": 0,
        "TRAIN_NUM_SAMPLES": 2000,
        "SEED": 0,
    },
    "RUN": {
        "OUTPUT_DIR": "output",
        # A full training-state checkpoint (Model/training_state.pth) to continue from.
        "RESUME": "",
        # G steps between TensorBoard scalars, and between monitoring images (the
        # original printed every 100 steps and drew images every 1000).
        "LOG_INTERVAL": 100,
        "IMAGE_INTERVAL": 1000,
        # AttnGAN's G and D arithmetic: 'fp32' (the original) or 'bf16' (autocast; the
        # frozen text encoder, the losses' reductions and the weights stay float32).
        "PRECISION": "fp32",
        # Speed settings that compute the same numbers (to float32 rounding) (docs/speed.md): Adam's fused kernels on CUDA; convolutions in channels-last layout, and
        # G, the Ds and the image encoder compiled by torch.compile: 'auto' (on CUDA),
        # 'always' or 'never'. Neither paid on the CPU; both stay off until measured on a GPU.
        "FUSED_ADAM": True,
        "CHANNELS_LAST": "never",
        "COMPILE": "never",
        # Settings that change the numbers, off by default: TF32 matrix products and
        # convolutions on CUDA (10 mantissa bits; PyTorch enables them for cuDNN unless
        # told not to, the original had none); the frozen DAMSM image encoder of the AttnGAN
        # step in 'bf16' autocast.
        "TF32": False,
        "ENCODER_PRECISION": "fp32",
        # Decoded, cropped and resized images cached once per split and size (uint8, memory
        # mapped; rebuilt when the images change), in CACHE_DIR ('' = DATA_DIR/cache).
        "IMAGE_CACHE": True,
        "CACHE_DIR": "",
        # Under torchrun (docs/distributed.md): TRAIN.BATCH_SIZE is the global batch, split
        # across the processes, unless BATCH_PER_PROCESS makes it each process's batch;
        # BatchNorm over the global batch (SyncBatchNorm) on CUDA with SYNC_BN.
        "BATCH_PER_PROCESS": False,
        "SYNC_BN": True,
        # The full training state (Model/training_state.pth) is also written inside an
        # epoch every STATE_EVERY_STEPS steps (2000: about 5 minutes of the bird recipe on
        # one GPU) and/or every STATE_EVERY_MINUTES minutes (0 = off), besides epoch ends
        # and stops; the previous one is kept (training_state.previous.pth).
        "STATE_EVERY_STEPS": 2000,
        "STATE_EVERY_MINUTES": 0.0,
    },
}


class ConfigError(UserError):
    """A config file that cannot be used: unknown key, wrong type, unreadable YAML."""


def merge_into(cfg: EasyDict, overrides: dict, source: str = "<dict>", prefix: str = "") -> None:
    """Merge ``overrides`` into ``cfg`` in place, checking every key and type.

    An int is accepted where a float is expected (YAML reads ``LAMBDA: 5`` as an int);
    every other type difference, and every key not in the defaults, is a ConfigError
    naming the dotted key and ``source``.
    """
    if not isinstance(overrides, dict):
        raise ConfigError(f"{source}: section {prefix or '<top>'} must be a mapping, got {overrides!r}")
    for key, value in overrides.items():
        dotted = f"{prefix}{key}"
        if key not in cfg:
            known = ", ".join(sorted(cfg.keys()))
            raise ConfigError(f"{source}: unknown config key {dotted!r} (known here: {known})")
        default = cfg[key]
        if isinstance(default, dict):
            merge_into(default, value, source, dotted + ".")
            continue
        cfg[key] = _checked_value(default, value, dotted, source)


def _checked_value(default: Any, value: Any, dotted: str, source: str) -> Any:
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not type(default):
        raise ConfigError(
            f"{source}: config key {dotted!r} expects {type(default).__name__} "
            f"(default {default!r}), got {type(value).__name__} {value!r}"
        )
    return value


# Bounds of the numbers a config holds, checked once after every merge (check_values):
# sizes and counts at least 1; intervals and rates whose 0 means "never" or "off" at least 0.
_AT_LEAST: dict[str, float] = {
    "WORKERS": 0,
    "TREE.BRANCH_NUM": 1,
    "TREE.BASE_SIZE": 1,
    "TRAIN.BATCH_SIZE": 1,
    "TRAIN.MAX_EPOCH": 1,
    "TRAIN.SNAPSHOT_INTERVAL": 1,
    "TRAIN.DISCRIMINATOR_LR": 0,
    "TRAIN.GENERATOR_LR": 0,
    "TRAIN.ENCODER_LR": 0,
    "TRAIN.RNN_GRAD_CLIP": 0,
    "TRAIN.SMOOTH.GAMMA1": 0,
    "TRAIN.SMOOTH.GAMMA2": 0,
    "TRAIN.SMOOTH.GAMMA3": 0,
    "TRAIN.SMOOTH.LAMBDA": 0,
    "GAN.DF_DIM": 1,
    "GAN.GF_DIM": 1,
    "GAN.Z_DIM": 1,
    "GAN.CONDITION_DIM": 1,
    "GAN.R_NUM": 0,
    "TEXT.CAPTIONS_PER_IMAGE": 1,
    "TEXT.EMBEDDING_DIM": 2,
    "TEXT.WORDS_NUM": 1,
    "DAMSM.COMPACT_IMAGE_SIZE": 1,
    "DAMSM.VAL_BATCHES": 1,
    "EMA.DECAY": 0,
    "EVAL.NUM_SAMPLES": 1,
    "EVAL.BATCH_SIZE": 1,
    "EVAL.SPLITS": 1,
    "EVAL.R_MISMATCHED": 1,
    "EVAL.EVERY_EPOCHS": 0,
    "EVAL.TRAIN_NUM_SAMPLES": 1,
    "EVAL.SEED": 0,
    "EVAL.FID_DMGAN_REAL_IMAGES": 0,
    "RUN.LOG_INTERVAL": 1,
    "RUN.IMAGE_INTERVAL": 1,
    "RUN.STATE_EVERY_STEPS": 0,
    "RUN.STATE_EVERY_MINUTES": 0,
}
_AT_MOST: dict[str, float] = {"TREE.BRANCH_NUM": 3, "EMA.DECAY": 1}


# Keys whose value is one of a few names (the builders would fail later, with a traceback).
_CHOICES: dict[str, tuple[str, ...]] = {
    "RNN_TYPE": ("LSTM", "GRU"),
    "DAMSM.IMAGE_BACKBONE": ("inception_v3", "compact"),
}


def _value(cfg: EasyDict, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def check_values(cfg: EasyDict, training: str | None = None) -> None:
    """Every number of the merged config within its bounds (a ConfigError naming the key,
    the value and the bound); ``training`` ('DAMSM' or 'AttnGAN') adds what training needs."""
    for dotted, low in _AT_LEAST.items():
        value, high = _value(cfg, dotted), _AT_MOST.get(dotted, math.inf)
        if not low <= value <= high:  # also refuses a NaN
            bound = f">= {low}" if high == math.inf else f"between {low} and {high}"
            raise ConfigError(f"config key {dotted!r} must be {bound}, got {value!r}")
    for dotted, choices in _CHOICES.items():
        if _value(cfg, dotted) not in choices:
            raise ConfigError(f"config key {dotted!r} must be one of {', '.join(choices)}, got {_value(cfg, dotted)!r}")
    if cfg.TEXT.EMBEDDING_DIM % 2:
        raise ConfigError(
            f"config key 'TEXT.EMBEDDING_DIM' must be even (the text encoder's two directions "
            f"share it), got {cfg.TEXT.EMBEDDING_DIM}"
        )
    if training and cfg.TRAIN.BATCH_SIZE < 2:
        raise ConfigError(
            f"config key 'TRAIN.BATCH_SIZE' must be >= 2 for {training} training (its losses compare "
            f"each image with the batch's other captions), got {cfg.TRAIN.BATCH_SIZE}"
        )
    if training == "AttnGAN" and cfg.TREE.BASE_SIZE != 64:
        raise ConfigError(
            f"config key 'TREE.BASE_SIZE' must be 64 for AttnGAN (the generator's first stage draws "
            f"64x64 images), got {cfg.TREE.BASE_SIZE}"
        )


def load_config(path: str | Path | None = None) -> EasyDict:
    """Defaults merged with the YAML file at ``path`` (None: defaults only)."""
    cfg = default_config()
    if path is None:
        return cfg
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with user_path(path, "cannot read config file", ConfigError), open(path, encoding="utf-8") as f:
            overrides = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    merge_into(cfg, overrides, source=str(path))
    return cfg


def apply_overrides(cfg: EasyDict, pairs: list[str], source: str = "--set") -> None:
    """Apply ``KEY.SUB=value`` strings (values parsed as YAML, empty = '') with the same checks."""
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"{source}: expected KEY=VALUE, got {pair!r}")
        dotted, raw = pair.split("=", 1)
        nested: dict = {}
        node = nested
        parts = dotted.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"{source}: the value of {dotted.strip()!r} is not valid YAML: {raw!r}") from err
        merge_into(cfg, nested, source=source)


def as_plain(cfg: Any) -> Any:
    """The config as plain dicts and lists, for YAML."""
    if isinstance(cfg, dict):
        return {key: as_plain(value) for key, value in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [as_plain(value) for value in cfg]
    return cfg


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``KEY: old -> new`` for every dotted key whose value differs between two plain configs."""
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            changes.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return changes


def record_config(cfg: EasyDict, out_dir: str | Path, header: str) -> Path:
    """Write the resolved config of a run to ``out_dir/config.yml`` (a file ``--cfg`` loads),
    under a comment ``header`` (the command, the seed). A run continued in the same folder
    with other settings than the last recorded (RUN.RESUME aside: it only says where to
    continue from) keeps the earlier files, writes its own as ``config.1.yml``,
    ``config.2.yml``... and names each changed key in a warning."""
    plain = as_plain(cfg)
    text = "".join(f"# {line}\n" for line in header.splitlines()) + yaml.safe_dump(plain, sort_keys=False)
    path, last, index = Path(out_dir) / "config.yml", None, 0
    while path.exists():
        last, index = path, index + 1
        path = last.with_name(f"config.{index}.yml")
    if last is not None:
        try:
            old = yaml.safe_load(last.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            old = None
        if isinstance(old, dict):
            changes = [c for c in differences(old, plain) if not c.startswith("RUN.RESUME:")]
        else:
            changes = [f"{last.name} is not a config"]
        if not changes:
            return last
        logging.getLogger(__name__).warning("%s: settings changed since %s: %s", path, last.name, "; ".join(changes))
    path.write_text(text, encoding="utf-8")
    return path
