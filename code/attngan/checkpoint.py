"""Saving and loading weights: atomic writes, safe loads, the authors' file format."""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .errors import UserError
from .files import write_atomic


class CheckpointError(UserError):
    """A checkpoint that does not fit the model it is loaded into."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save through a temporary file and a rename: an interrupted save never leaves
    a truncated checkpoint behind."""
    write_atomic(path, lambda f: torch.save(obj, f))


def original_format(module: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """The state_dict as PyTorch 0.3 wrote it: no ``num_batches_tracked`` buffers, no
    version metadata and contiguous tensors (whatever layout training used), so the
    authors' code (and ours) loads it."""
    return OrderedDict(
        (k, v.detach().cpu().contiguous())
        for k, v in module.state_dict().items()
        if not k.endswith("num_batches_tracked")
    )


def save_weights(module: nn.Module, path: str | Path) -> None:
    """Write ``module``'s weights in the authors' format, atomically."""
    atomic_save(original_format(module), path)


def read_state_dict(path: str | Path) -> "OrderedDict[str, torch.Tensor]":
    """Load a state_dict file safely (weights_only) on the CPU; strips a DataParallel
    ``module.`` prefix."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path}: not a readable PyTorch state_dict ({err})") from err
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{path}: expected a state_dict (a mapping of names to tensors), got {type(state).__name__}"
        )
    if state and all(k.startswith("module.") for k in state):
        state = OrderedDict((k[len("module.") :], v) for k, v in state.items())
    return state


# A key that only this kind of file holds -> what the file is, for errors that say what
# was given where another kind was expected.
_KINDS = (
    ("netG", "an AttnGAN training state (Model/training_state.pth: continue it with --resume)"),
    ("ca_net.fc.weight", "an AttnGAN generator (netG_epoch_<N>.pth)"),
    ("img_code_s16.0.weight", "an AttnGAN discriminator (netD<i>.pth)"),
    ("rnn.weight_ih_l0", "a DAMSM text encoder (text_encoder<N>.pth)"),
    ("emb_cnn_code.weight", "a DAMSM image encoder (image_encoder<N>.pth)"),
    ("epoch", "a training state (continue it with --resume)"),
)


def checkpoint_kind(state: dict) -> str | None:
    """Which of this project's files ``state`` (a loaded checkpoint) looks like, if any."""
    return next((kind for key, kind in _KINDS if key in state), None)


def _misfit_hint(state: dict, own: dict) -> str:
    kind, expected = checkpoint_kind(state), checkpoint_kind(own)
    if kind is None:
        return ""
    if kind == expected:
        return "; the same kind of network built with other settings: use the config it was trained with"
    return f"; the file is {kind}" + (f", not {expected}" if expected else "")


def load_weights(module: nn.Module, path: str | Path) -> nn.Module:
    """Load ``path`` into ``module`` with strict key matching.

    Missing ``num_batches_tracked`` buffers (files written by PyTorch 0.3) are filled
    with 0, as PyTorch does for old files. Any other missing or unexpected key, or a
    tensor of another shape, is a CheckpointError naming the file, the key and both shapes.
    """
    state = read_state_dict(path)
    own = module.state_dict()
    for key, value in own.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not fit {type(module).__name__}: "
            f"missing keys {missing[:8]}{' …' if len(missing) > 8 else ''}, "
            f"unexpected keys {unexpected[:8]}{' …' if len(unexpected) > 8 else ''}{_misfit_hint(state, own)}"
        )
    for key, value in own.items():
        if tuple(state[key].shape) != tuple(value.shape):
            vocabulary = (
                f"; its rows are the vocabulary: the file's text encoder knows {state[key].shape[0]} words, "
                f"this dataset's captions.pickle {value.shape[0]}: use the text encoder trained on it"
                if key == "encoder.weight" and state[key].shape[1:] == value.shape[1:]
                else ""
            )
            raise CheckpointError(
                f"{path}: key {key!r} has shape {tuple(state[key].shape)} in the file but "
                f"{tuple(value.shape)} in {type(module).__name__} (wrong config for this checkpoint?){vocabulary}"
            )
    module.load_state_dict(state, strict=True)
    return module


# ---------------------------------------------------------------- the original's file names


def image_encoder_path(net_e: str | Path) -> Path:
    """The image encoder that goes with a text encoder file, by the original's naming."""
    net_e = Path(net_e)
    return net_e.with_name(net_e.name.replace("text_encoder", "image_encoder"))


def epoch_of(path: str | Path, prefix: str) -> int:
    """N of ``<prefix>N.pth`` (the original parses resume epochs from file names)."""
    match = re.fullmatch(rf"{prefix}(\d+)\.pth", Path(path).name)
    if not match:
        raise CheckpointError(f"{path}: expected a file named {prefix}<epoch>.pth to resume from")
    return int(match.group(1))


def generator_epoch(path: str | Path) -> int:
    """N of TRAIN.NET_G's ``..._N.pth`` (the original reads it after the name's last '_')."""
    match = re.fullmatch(r".*_(\d+)\.pth", Path(path).name)
    if not match:
        raise CheckpointError(f"TRAIN.NET_G {path}: expected a file named netG_epoch_<N>.pth to resume from")
    return int(match.group(1))
