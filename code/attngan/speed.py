"""The speed settings of the config's RUN section, and applying them.

Those that compute the same numbers (to float32 rounding): fused Adam on CUDA
(RUN.FUSED_ADAM, on), channels-last convolutions (RUN.CHANNELS_LAST) and torch.compile
(RUN.COMPILE), the last two 'auto' (on CUDA), 'always' or 'never' (the default until they
are measured on a GPU: neither paid on the CPU). Those that change the numbers are
opt-in: TF32 (RUN.TF32) and bf16 autocast (RUN.PRECISION for G and D, RUN.ENCODER_PRECISION
for the frozen image encoder of the AttnGAN step). docs/speed.md has the measurements.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from easydict import EasyDict

from .config import ConfigError

CHOICES = ("auto", "always", "never")
PRECISIONS = ("fp32", "bf16")


def enabled(cfg: EasyDict, key: str, device: torch.device) -> bool:
    """Whether RUN.<key> ('auto': on CUDA only, 'always', 'never') is on for ``device``."""
    value = cfg.RUN[key]
    if value not in CHOICES:
        raise ConfigError(f"RUN.{key} must be one of {', '.join(CHOICES)}, got {value!r}")
    return value == "always" or (value == "auto" and device.type == "cuda")


def precision(cfg: EasyDict, key: str) -> str:
    value = cfg.RUN[key]
    if value not in PRECISIONS:
        raise ConfigError(f"RUN.{key} must be 'fp32' or 'bf16', got {value!r}")
    return value


def set_tf32(on: bool) -> None:
    """TF32 for CUDA matrix products and cuDNN convolutions (PyTorch allows it for cuDNN by
    default: off here unless RUN.TF32, since it changes the numbers)."""
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def adam_options(cfg: EasyDict, device: torch.device) -> dict:
    """Adam's implementation: on CUDA with RUN.FUSED_ADAM the fused kernels (one launch for
    all parameters instead of several per tensor), else PyTorch's default for the device
    (on the CPU the fused kernel gained nothing and would change the last bits)."""
    return {"fused": True} if cfg.RUN.FUSED_ADAM and device.type == "cuda" else {}


def prepare(module: nn.Module, cfg: EasyDict, device: torch.device) -> nn.Module:
    """``module`` (in place) in channels-last layout and compiled, as RUN says. Compiled
    random ops draw from PyTorch's own generators (inductor's ``fallback_random``), so a
    compiled step draws the same noise as an eager one. Shapes are static: callers give a
    compiled G its words padded to TEXT.WORDS_NUM (pad_words), so that it compiles once
    rather than once per caption length; the length is the compiled module's
    ``static_words``."""
    if enabled(cfg, "CHANNELS_LAST", device):
        module.to(memory_format=torch.channels_last)
    if enabled(cfg, "COMPILE", device):
        import torch._inductor.config as inductor_config

        inductor_config.fallback_random = True
        module.compile(dynamic=False)
        module.static_words = cfg.TEXT.WORDS_NUM  # what a compiled G's words are padded to
    return module


def pad_words(words_embs: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Word features [B,D,T] and padding mask [B,T] extended to ``length`` words with zero,
    masked words. The attention gives them -inf scores for every caption (also under the
    original's mask quirk, since they pad every caption), so G computes the same."""
    extra = length - words_embs.size(2)
    if extra <= 0:
        return words_embs, mask
    return F.pad(words_embs, (0, extra)), F.pad(mask, (0, extra), value=True)


def mixed_precision(cfg: EasyDict, key: str, device: torch.device):
    """A factory of autocast contexts for RUN.<key>: 'fp32' (no autocast) or 'bf16'. bf16
    keeps float32's exponent range, so no loss scaling is needed."""
    bf16 = precision(cfg, key) == "bf16"
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


class Autocast(nn.Module):
    """A frozen encoder run under bf16 autocast, its outputs returned in float32."""

    def __init__(self, module: nn.Module, device: torch.device):
        super().__init__()
        self.module, self.device_type = module, device.type

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            outputs = self.module(x)
        return tuple(o.float() for o in outputs)
