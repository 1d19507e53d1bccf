"""The speed settings: checked switches, words padded for a compiled G computing the same
images, Adam's step count carried over from a plain torch.optim.Adam state."""

import pytest
import torch

from attngan.config import ConfigError, load_config
from attngan.models import build_generator
from attngan.speed import adam_options, enabled, pad_words, precision
from attngan.training.optim import OriginalAdam
from conftest import ROOT


def tiny_generator(exact_mask: bool):
    cfg = load_config(ROOT / "cfg/bird_attn2.yml")
    cfg.GAN.GF_DIM, cfg.GAN.Z_DIM, cfg.GAN.CONDITION_DIM, cfg.GAN.R_NUM = 4, 8, 4, 1
    cfg.TEXT.EMBEDDING_DIM, cfg.TREE.BRANCH_NUM, cfg.FIXES.ATTENTION_MASK = 16, 2, exact_mask
    torch.manual_seed(0)
    return build_generator(cfg).eval()


@pytest.mark.parametrize("exact_mask", [False, True], ids=["original_mask", "fixed_mask"])
def test_padded_words_give_the_same_images(exact_mask):
    net_g = tiny_generator(exact_mask)
    g = torch.Generator().manual_seed(1)
    lens = torch.tensor([5, 3, 2])
    mask = torch.arange(5).unsqueeze(0) >= lens.unsqueeze(1)
    words = torch.randn(3, 16, 5, generator=g).masked_fill(mask.unsqueeze(1), 0.0)
    sent, noise = torch.randn(3, 16, generator=g), torch.randn(3, 8, generator=g)
    padded_words, padded_mask = pad_words(words, mask, 18)
    assert padded_words.shape == (3, 16, 18) and padded_mask[:, 5:].all() and not padded_words[:, :, 5:].any()
    outputs = []
    for w, m in ((words, mask), (padded_words, padded_mask)):
        torch.manual_seed(2)  # CA_NET's noise
        with torch.no_grad():
            outputs.append(net_g(noise, sent, w, m))
    (images, maps, _, _), (padded_images, padded_maps, _, _) = outputs
    for a, b in zip(images, padded_images):
        assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(maps[0], padded_maps[0][:, :5], atol=1e-6) and padded_maps[0][:, 5:].abs().max() < 1e-12


def test_switches_are_checked():
    cfg = load_config(ROOT / "cfg/bird_attn2.yml")
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert not enabled(cfg, "COMPILE", cpu) and not enabled(cfg, "CHANNELS_LAST", cuda)  # defaults: 'never'
    cfg.RUN.COMPILE = "auto"
    assert enabled(cfg, "COMPILE", cuda) and not enabled(cfg, "COMPILE", cpu)
    cfg.RUN.COMPILE = "sometimes"
    with pytest.raises(ConfigError, match="RUN.COMPILE must be one of auto, always, never, got 'sometimes'"):
        enabled(cfg, "COMPILE", cpu)
    cfg.RUN.ENCODER_PRECISION = "fp16"
    with pytest.raises(ConfigError, match="RUN.ENCODER_PRECISION must be 'fp32' or 'bf16'"):
        precision(cfg, "ENCODER_PRECISION")
    assert adam_options(cfg, cuda) == {"fused": True} and adam_options(cfg, cpu) == {}


def test_original_adam_continues_a_plain_adam_state():
    """A training state saved by torch.optim.Adam (before OriginalAdam kept its own count)
    continues at its step count."""
    weight = torch.nn.Parameter(torch.ones(3))
    plain = torch.optim.Adam([weight], lr=0.1, betas=(0.5, 0.999))
    for _ in range(2):
        weight.grad = torch.tensor([1e-3, -2.0, 0.0])
        plain.step()
    resumed = OriginalAdam([weight], lr=0.1)
    resumed.load_state_dict(plain.state_dict())
    weight.grad = torch.tensor([1e-3, -2.0, 0.0])
    resumed.step()
    assert resumed.param_groups[0]["steps"] == 3 and int(resumed.state[weight]["step"]) == 3
    assert resumed.param_groups[0]["eps"] == 1e-8  # handed to Adam for the step only
