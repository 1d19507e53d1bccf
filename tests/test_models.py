"""Networks: state_dict layout against the reference, shapes, the attention mask quirk,
initialisation, and building the image encoder without any download."""

import json

import pytest
import torch
import torch.nn as nn

from attngan.config import load_config
from attngan.errors import SetupError
from attngan.models import (
    CA_NET,
    D_NET64,
    G_DCGAN,
    G_NET,
    GLU,
    RNN_ENCODER,
    GlobalAttentionGeneral,
    build_discriminators,
    build_generator,
    build_image_encoder,
    build_text_encoder,
    weights_init,
)
from attngan.models.attention import quirk_row_mask
from conftest import ROOT

# The keys, shapes and parameter counts of the authors' checkpoints (tests/fixtures: facts
# about the original's files), so that they load into our networks with strict key matching.
REFERENCE = json.loads((ROOT / "tests" / "fixtures" / "original_state_dict_shapes.json").read_text())["nets"]
CONFIGS = {"bird": "cfg/bird_attn2.yml", "coco": "cfg/coco_attn2.yml", "bird_dcgan": "cfg/bird_attnDCGAN2.yml"}


def layout(module: nn.Module) -> list:
    return [(k, list(v.shape)) for k, v in module.state_dict().items()]


def reference_nets(name: str) -> dict:
    cfg = load_config(ROOT / CONFIGS[name])
    with torch.device("meta"):  # keys and shapes only: no memory, no initialisation
        nets = {"netG": build_generator(cfg, initialise=False), "text_encoder": build_text_encoder(cfg, 5450)}
        for i, net in enumerate(build_discriminators(cfg, initialise=False)):
            nets[f"netD{i}"] = net
    if name == "bird":
        nets["image_encoder"] = build_image_encoder(cfg)
    return nets


@pytest.mark.parametrize("name", list(CONFIGS))
def test_state_dict_layout_matches_reference(name):
    ref = REFERENCE[name]
    nets = reference_nets(name)
    assert set(nets) == set(ref) or name == "bird_dcgan", (sorted(nets), sorted(ref))
    for key, net in nets.items():
        expected, params = [(k, s) for k, s in ref[key]["keys"]], ref[key]["params"]
        if name == "bird_dcgan" and key == "netD0":
            # The original trainer builds one D_NET256(b_jcu=False) for the AttnDCGAN; the
            # reference lists the standard three Ds, so compare with its 256 D less the
            # unconditional head.
            expected = [(k, s) for k, s in ref["netD2"]["keys"] if not k.startswith("UNCOND_DNET")]
            params = sum(int(torch.tensor(s).prod()) for k, s in expected if is_parameter(k))
        assert layout(net) == expected, f"{name}/{key}"
        assert sum(p.numel() for p in net.parameters()) == params, f"{name}/{key}"


def is_parameter(key: str) -> bool:
    return not key.endswith("num_batches_tracked") and "running_" not in key


def test_reference_parameter_counts_are_its_shapes():
    """The fixture's counts and shapes agree, so neither was mistyped."""
    for nets in REFERENCE.values():
        for net in nets.values():
            assert net["params"] == sum(int(torch.tensor(s).prod()) for k, s in net["keys"] if is_parameter(k))


def tiny_cfg(**tree):
    cfg = load_config()
    cfg.GAN.GF_DIM, cfg.GAN.DF_DIM, cfg.GAN.R_NUM = 4, 4, 1
    cfg.TEXT.EMBEDDING_DIM, cfg.GAN.CONDITION_DIM, cfg.GAN.Z_DIM = 16, 8, 10
    cfg.TREE.update(tree)
    return cfg


@pytest.mark.parametrize("dcgan", [False, True])
def test_generator_and_discriminator_shapes(dcgan):
    cfg = tiny_cfg(BRANCH_NUM=3)
    cfg.GAN.B_DCGAN = dcgan
    net_g, nets_d = build_generator(cfg), build_discriminators(cfg)
    b, t = 3, 5
    words, sent = torch.randn(b, 16, t), torch.randn(b, 16)
    mask = torch.zeros(b, t, dtype=torch.bool)
    mask[2, 3:] = True
    imgs, atts, mu, logvar = net_g(torch.randn(b, 10), sent, words, mask)
    assert [tuple(i.shape) for i in imgs] == ([(b, 3, 256, 256)] if dcgan else [(b, 3, s, s) for s in (64, 128, 256)])
    assert [tuple(a.shape) for a in atts] == [(b, t, 64, 64), (b, t, 128, 128)]
    assert mu.shape == logvar.shape == (b, 8)
    assert all(i.abs().max() <= 1 for i in imgs)
    assert len(nets_d) == (1 if dcgan else 3)
    for net_d, img in zip(nets_d, imgs):
        code = net_d(img)
        assert code.shape == (b, 32, 4, 4)
        assert net_d.COND_DNET(code, sent).shape == (b,)
        assert (net_d.UNCOND_DNET is None) == dcgan


def naive_original_attention(h, words, conv, mask):
    """GlobalAttentionGeneral written as the original: flatten to [B*Q, T], mask with
    mask.repeat(Q, 1), softmax."""
    b, _, ih, iw = h.shape
    q = ih * iw
    target = h.view(b, -1, q).transpose(1, 2)
    source = conv(words.unsqueeze(3)).squeeze(3)
    attn = torch.bmm(target, source).view(b * q, -1)
    attn = attn.masked_fill(mask.repeat(q, 1), float("-inf"))
    attn = torch.softmax(attn, dim=1).view(b, q, -1).transpose(1, 2)
    return torch.bmm(source, attn).view(b, -1, ih, iw), attn.reshape(b, -1, ih, iw)


def test_attention_reproduces_the_original_mask_quirk():
    torch.manual_seed(0)
    att = GlobalAttentionGeneral(6, 5)
    h, words = torch.randn(3, 6, 2, 3), torch.randn(3, 5, 4)
    mask = torch.tensor([[0, 0, 0, 0], [0, 0, 1, 1], [0, 1, 1, 1]], dtype=torch.bool)
    att.applyMask(mask)
    ctx, attn = att(h, words)
    ref_ctx, ref_attn = naive_original_attention(h, words, att.conv_context, mask)
    assert torch.allclose(ctx, ref_ctx, atol=1e-6) and torch.allclose(attn, ref_attn, atol=1e-6)
    # The quirk: caption 0 (no padding) gets some rows masked with another caption's mask.
    assert (attn[0, 3] == 0).any()
    exact = GlobalAttentionGeneral(6, 5, exact_mask=True)
    exact.load_state_dict(att.state_dict())
    exact.applyMask(mask)
    _, exact_attn = exact(h, words)
    assert (exact_attn[0] > 0).all()
    assert (exact_attn[2, 1:] == 0).all() and torch.allclose(exact_attn.sum(1), torch.ones(3, 2, 3))


def test_quirk_mask_equals_exact_mask_for_equal_lengths():
    mask = torch.tensor([[0, 0, 1], [0, 0, 1]], dtype=torch.bool)
    assert torch.equal(quirk_row_mask(mask, 4), mask.unsqueeze(1).expand(2, 4, 3))


def test_mask_longer_than_words_is_cut():
    att = GlobalAttentionGeneral(4, 4)
    att.applyMask(torch.zeros(2, 18, dtype=torch.bool))
    ctx, attn = att(torch.randn(2, 4, 2, 2), torch.randn(2, 4, 5))
    assert attn.shape == (2, 5, 2, 2)


def test_glu_and_ca_net():
    x = torch.tensor([[1.0, -2.0, 0.0, 100.0]])
    assert torch.allclose(GLU()(x), torch.tensor([[0.5, -2.0]]))
    ca = CA_NET(8, 3).eval()
    sent = torch.randn(4, 8)
    c1, mu, logvar = ca(sent)
    c2, _, _ = ca(sent)
    assert mu.shape == (4, 3) and not torch.equal(c1, c2)  # sampled in eval mode too


def test_weights_init_follows_the_original():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 4), nn.Conv2d(2, 3, 1, bias=True), nn.BatchNorm2d(500))
    conv_bias = net[1].bias.detach().clone()
    net.apply(weights_init)
    w = net[0].weight
    assert torch.allclose(w @ w.t(), torch.eye(4), atol=1e-5) and (net[0].bias == 0).all()
    cw = net[1].weight.view(3, 2)
    assert torch.allclose(cw.t() @ cw, torch.eye(2), atol=1e-5)
    assert torch.equal(net[1].bias, conv_bias)  # conv biases keep their default
    assert abs(net[2].weight.mean().item() - 1) < 0.01 and abs(net[2].weight.std().item() - 0.02) < 0.005
    assert (net[2].bias == 0).all()


def test_text_encoder_outputs():
    torch.manual_seed(0)
    enc = RNN_ENCODER(20, nhidden=8).eval()
    caps = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]])
    words, sent = enc(caps, torch.tensor([4, 2]), enc.init_hidden(2))
    assert words.shape == (2, 8, 4) and sent.shape == (2, 8)
    assert (words[1, :, 2:] == 0).all()
    # Forward half of sent_emb = forward state after the last real word; backward half =
    # the backward state at the first word.
    assert torch.allclose(sent[1, :4], words[1, :4, 1]) and torch.allclose(sent[1, 4:], words[1, 4:, 0])
    assert (enc.encoder.weight.abs() <= 0.1).all()
    fc = RNN_ENCODER(20, nhidden=8, text_fc=True)
    assert fc.rnn.input_size == 150 and "rdc_text.weight" in fc.state_dict()


def test_image_encoder_for_a_checkpoint_never_downloads(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    enc = build_image_encoder(load_config())
    assert not any(p.requires_grad for n, p in enc.named_parameters() if not n.startswith("emb_"))
    feats, code = enc.eval()(torch.zeros(1, 3, 64, 64))
    assert feats.shape == (1, 256, 17, 17) and code.shape == (1, 256)


def test_pretrained_image_encoder_offline_says_where_to_put_the_weights(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(SetupError, match="inception_v3_google-0cc3c7bd.pth.*DAMSM.INCEPTION_WEIGHTS"):
        build_image_encoder(load_config(), pretrained=True)
    cfg = load_config()
    cfg.DAMSM.INCEPTION_WEIGHTS = str(tmp_path / "missing.pth")
    with pytest.raises(SetupError, match="missing.pth"):
        build_image_encoder(cfg, pretrained=True)


def test_original_class_names_importable():
    assert issubclass(G_NET, nn.Module) and issubclass(G_DCGAN, nn.Module) and issubclass(D_NET64, nn.Module)
