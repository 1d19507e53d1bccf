"""One training step of each stage, in float64, against a plain step written here from
docs/fidelity.md#recipes and docs/fidelity.md#losses with the loops of tests/plain.py: from the same
small weights, batch and noise, the project's step functions must give the same
parameters, buffers, optimiser states and averaged parameters to 1e-10 relative.

The second half shows that the comparison can fail: the plain step with one thing of the
recipe changed (a term, its weight, the clipping set, the learning rate, the update order,
the average, Adam's eps) is far outside that tolerance.
"""

import copy

import numpy as np
import pytest
import torch
from easydict import EasyDict

from attngan.config import load_config
from attngan.models import build_discriminators, build_generator, build_image_encoder, build_text_encoder
from attngan.training.damsm import damsm_optimizer, damsm_train_step, learning_rate
from attngan.training.gan import StepInputs, gan_optimizers, gan_step
from conftest import ROOT
from plain import PlainAdam, plain_bce, plain_clip, plain_kl, plain_sent_loss, plain_words_loss

RTOL = 1e-10
SEED = 11  # torch's generator before each step: the text encoder's dropout, the CA noise
CAP_LENS = torch.tensor([7, 6, 6, 4, 2, 1])  # ragged, sorted descending
CLASS_IDS = np.array([3, 1, 3, 2, 1, 5])  # two same-class pairs to mask


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Adam turns the last bits of a gradient near its eps into visible differences (a
    1e-16 change of a 1e-7 gradient moves the weight by ~1e-12 at lr 0.002): one thread
    keeps the summation order of both sides fixed, and the margin to RTOL about tenfold."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def worst_difference(project: dict, reference: dict) -> tuple[str, float]:
    """The named tensor that differs most, and by how much: max |a - b| / max |b| (the
    absolute difference where b is all 0)."""
    assert project.keys() == reference.keys()
    out = {}
    for name, b in reference.items():
        a = project[name]
        assert a.dtype == b.dtype == torch.float64 or not a.is_floating_point(), name
        scale = b.abs().max().item()
        diff = (a - b).abs().max().item()
        out[name] = diff / scale if scale else diff
    worst = max(out, key=out.get)
    return worst, out[worst]


def snapshot(modules: dict, optimizers: dict | None = None, plain: dict | None = None, averages=None) -> dict:
    """Every parameter and buffer of ``modules``, the Adam state of each parameter (from
    torch optimisers or PlainAdams keyed by parameter name) and the averaged parameters."""
    out = {}
    for prefix, module in modules.items():
        for name, t in module.state_dict(keep_vars=True).items():
            if t.is_floating_point():
                out[f"{prefix}.{name}"] = t.detach().clone()
        for name, p in module.named_parameters():
            key = f"{prefix}.{name}"
            if optimizers is not None and p in optimizers[prefix].state:
                state = optimizers[prefix].state[p]
            elif plain is not None and key in plain[prefix].state:
                state = plain[prefix].state[key]
            else:
                continue
            out[f"{key}:exp_avg"], out[f"{key}:exp_avg_sq"] = state["exp_avg"], state["exp_avg_sq"]
            out[f"{key}:step"] = torch.tensor(float(state["step"]), dtype=torch.float64)
    for name, avg in (averages or {}).items():
        out[f"avg.{name}"] = avg.detach().clone()
    return out


def gradients(loss, named_params) -> list[torch.Tensor]:
    """d loss / d p for each (name, p); zeros for a parameter the loss does not reach."""
    grads = torch.autograd.grad(loss, [p for _, p in named_params], allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for (_, p), g in zip(named_params, grads)]


# ---- DAMSM -------------------------------------------------------------------------------

DAMSM_EPOCH = 3  # the epoch's learning rate: ENCODER_LR x 0.98^3


def damsm_cfg(text_fc: bool) -> EasyDict:
    cfg = load_config(ROOT / "cfg/DAMSM/shapes.yml")
    cfg.TEXT.EMBEDDING_DIM, cfg.DAMSM.COMPACT_IMAGE_SIZE, cfg.DAMSM.TEXT_FC = 16, 32, text_fc
    return cfg


@pytest.fixture(scope="module", params=[False, True], ids=["lstm", "text_fc"])
def damsm_case(request):
    """Small float64 encoders (part of the image encoder frozen, like Inception-v3's
    backbone) and a fixed batch of six captions; with the project's step from them."""
    cfg = damsm_cfg(request.param)
    torch.manual_seed(0)
    text = build_text_encoder(cfg, 20).double()
    image = build_image_encoder(cfg).double()
    for p in image.local[0].parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    imgs = torch.rand(6, 3, 32, 32, generator=g, dtype=torch.float64) * 2 - 1
    captions = torch.randint(1, 20, (6, 7), generator=g)
    captions[torch.arange(7).unsqueeze(0) >= CAP_LENS.unsqueeze(1)] = 0
    case = cfg, text, image, (imgs, captions)
    return case, project_damsm(case)


def project_damsm(case):
    cfg, text, image, (imgs, captions) = case
    text, image = copy.deepcopy(text), copy.deepcopy(image)
    optimizer = damsm_optimizer(text, image, learning_rate(cfg.TRAIN.ENCODER_LR, DAMSM_EPOCH))
    torch.manual_seed(SEED)
    losses, _ = damsm_train_step(
        text, image, optimizer, imgs, captions, CAP_LENS, CLASS_IDS, cfg.TRAIN.SMOOTH, cfg.TRAIN.RNN_GRAD_CLIP
    )
    assert all(v.dtype == torch.float64 for v in losses.values())
    by_name = {"text": optimizer, "image": optimizer}
    return snapshot({"text": text, "image": image}, by_name)


def reference_damsm(case, clip="text", lr_epoch=DAMSM_EPOCH, sentence_terms=True, modern_eps=False):
    """docs/fidelity.md#damsm-pretraining's step, plainly. The keywords change one thing of the recipe."""
    cfg, text, image, (imgs, captions) = case
    text, image = copy.deepcopy(text), copy.deepcopy(image)
    smooth = cfg.TRAIN.SMOOTH
    lr = cfg.TRAIN.ENCODER_LR
    for _ in range(lr_epoch):  # x 0.98 after each epoch while lr > ENCODER_LR / 10
        lr = lr * 0.98 if lr > cfg.TRAIN.ENCODER_LR / 10 else lr
    text_params = list(text.named_parameters())
    image_params = [(n, p) for n, p in image.named_parameters() if p.requires_grad]
    torch.manual_seed(SEED)
    region_features, cnn_code = image(imgs)
    half = text.nhidden
    hidden = (torch.zeros(2, 6, half, dtype=torch.float64), torch.zeros(2, 6, half, dtype=torch.float64))
    words_emb, sent_emb = text(captions, CAP_LENS, hidden)
    labels = torch.arange(6)
    w0, w1, _ = plain_words_loss(
        region_features, words_emb, labels, CAP_LENS, CLASS_IDS, smooth.GAMMA1, smooth.GAMMA2, smooth.GAMMA3
    )
    loss = w0 + w1
    if sentence_terms:
        s0, s1 = plain_sent_loss(cnn_code, sent_emb, labels, CLASS_IDS, smooth.GAMMA3)
        loss = loss + s0 + s1
    grads = gradients(loss, text_params + image_params)
    n_text = len(text_params)
    if clip == "text":  # the original: every parameter of the text encoder, one norm
        grads = plain_clip(grads[:n_text], cfg.TRAIN.RNN_GRAD_CLIP) + grads[n_text:]
    elif clip == "rnn_only":
        rnn = [i for i, (n, _) in enumerate(text_params) if n.startswith("rnn.")]
        clipped = plain_clip([grads[i] for i in rnn], cfg.TRAIN.RNN_GRAD_CLIP)
        for i, g in zip(rnn, clipped):
            grads[i] = g
    elif clip == "text_and_image":
        grads = plain_clip(grads, cfg.TRAIN.RNN_GRAD_CLIP)
    adam = PlainAdam(lr, modern_eps=modern_eps)
    adam.step([(f"text.{n}", p) for n, p in text_params] + [(f"image.{n}", p) for n, p in image_params], grads)
    return snapshot({"text": text, "image": image}, plain={"text": adam, "image": adam})


def test_damsm_step_equals_the_plain_step(damsm_case):
    case, result = damsm_case
    worst, difference = worst_difference(result, reference_damsm(case))
    assert difference <= RTOL, (worst, difference)


@pytest.mark.parametrize(
    "change",
    [
        {"clip": "rnn_only"},
        {"clip": "text_and_image"},
        {"clip": "none"},
        {"lr_epoch": 0},
        {"sentence_terms": False},
        {"modern_eps": True},
    ],
    ids=lambda change: "-".join(f"{k}={v}" for k, v in change.items()),
)
def test_damsm_comparison_fails_on_another_recipe(damsm_case, change):
    case, result = damsm_case
    assert worst_difference(result, reference_damsm(case, **change))[1] > 1e3 * RTOL


# ---- AttnGAN -------------------------------------------------------------------------------


def gan_cfg(dcgan: bool) -> EasyDict:
    cfg = load_config(ROOT / ("cfg/bird_attnDCGAN2.yml" if dcgan else "cfg/bird_attn2.yml"))
    cfg.GAN.GF_DIM, cfg.GAN.DF_DIM, cfg.GAN.Z_DIM, cfg.GAN.CONDITION_DIM, cfg.GAN.R_NUM = 2, 2, 8, 4, 1
    cfg.TEXT.EMBEDDING_DIM = 16
    cfg.DAMSM.IMAGE_BACKBONE, cfg.DAMSM.COMPACT_IMAGE_SIZE = "compact", 32
    return cfg


@pytest.fixture(scope="module", params=[False, True], ids=["attn2", "dcgan"])
def gan_case(request):
    """Three stages (64, 128, 256 px) or the AttnDCGAN's one image, narrow float64
    networks as built for training, a frozen image encoder and fixed inputs; with the
    project's step from them."""
    cfg = gan_cfg(request.param)
    torch.manual_seed(0)
    net_g = build_generator(cfg).double()
    nets_d = [d.double() for d in build_discriminators(cfg)]
    image_encoder = build_image_encoder(cfg).double().eval()
    for p in image_encoder.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(2)
    sizes = [256] if cfg.GAN.B_DCGAN else [64, 128, 256]
    real = [torch.rand(6, 3, s, s, generator=g, dtype=torch.float64) * 2 - 1 for s in sizes]
    mask = torch.arange(7).unsqueeze(0) >= CAP_LENS.unsqueeze(1)
    words = torch.randn(6, 16, 7, generator=g, dtype=torch.float64).masked_fill(mask.unsqueeze(1), 0.0)
    sent = torch.randn(6, 16, generator=g, dtype=torch.float64)
    noise = torch.randn(6, cfg.GAN.Z_DIM, generator=g, dtype=torch.float64)
    inputs = StepInputs(real, words, sent, mask, CAP_LENS, CLASS_IDS, noise)
    case = cfg, net_g, nets_d, image_encoder, inputs
    return case, project_gan(case)


def project_gan(case):
    cfg, net_g, nets_d, image_encoder, inputs = case
    net_g, nets_d = copy.deepcopy(net_g), copy.deepcopy(nets_d)
    opt_g, opts_d = gan_optimizers(cfg, net_g, nets_d)
    avg_g = [p.detach().clone() for p in net_g.parameters()]
    torch.manual_seed(SEED)
    logs = gan_step(net_g, nets_d, opt_g, opts_d, avg_g, image_encoder, inputs, cfg.TRAIN.SMOOTH, cfg.EMA.DECAY)
    assert all(v.dtype == torch.float64 for v in logs.values()), {k: v.dtype for k, v in logs.items()}
    modules = {"G": net_g, **{f"D{i}": d for i, d in enumerate(nets_d)}}
    optimizers = {"G": opt_g, **{f"D{i}": o for i, o in enumerate(opts_d)}}
    averages = {n: a for (n, _), a in zip(net_g.named_parameters(), avg_g)}
    return snapshot(modules, optimizers, averages=averages)


def reference_gan(
    case,
    lam=None,
    kl=True,
    wrong_pairs=True,
    first_stage_adversarial=True,
    g_first=False,
    decay=0.999,
    modern_eps=False,
):
    """docs/fidelity.md#attngan-training's step, plainly. The keywords change one thing of the recipe."""
    cfg, net_g, nets_d, image_encoder, x = case
    net_g, nets_d = copy.deepcopy(net_g), copy.deepcopy(nets_d)
    smooth = cfg.TRAIN.SMOOTH
    lam = smooth.LAMBDA if lam is None else lam
    g_params = list(net_g.named_parameters())
    d_params = [list(d.named_parameters()) for d in nets_d]
    adam_g = PlainAdam(cfg.TRAIN.GENERATOR_LR, modern_eps=modern_eps)
    adams_d = [PlainAdam(cfg.TRAIN.DISCRIMINATOR_LR, modern_eps=modern_eps) for _ in nets_d]
    average = {n: p.detach().clone() for n, p in g_params}
    batch = x.sent_emb.size(0)
    labels = torch.arange(batch)

    torch.manual_seed(SEED)
    fake, _, mu, logvar = net_g(x.noise, x.sent_emb, x.words_embs, x.mask)

    def update_d():
        for i, net_d in enumerate(nets_d):
            real_f, fake_f = net_d(x.real_imgs[i]), net_d(fake[i].detach())
            cond_real = plain_bce(net_d.COND_DNET(real_f, x.sent_emb), 1)
            cond_fake = plain_bce(net_d.COND_DNET(fake_f, x.sent_emb), 0)
            cond_wrong = plain_bce(net_d.COND_DNET(real_f[: batch - 1], x.sent_emb[1:]), 0) if wrong_pairs else 0
            if net_d.UNCOND_DNET is not None:
                err_d = (plain_bce(net_d.UNCOND_DNET(real_f), 1) + cond_real) / 2 + (
                    plain_bce(net_d.UNCOND_DNET(fake_f), 0) + cond_fake + cond_wrong
                ) / 3
            else:
                err_d = cond_real + (cond_fake + cond_wrong) / 2
            grads = gradients(err_d, d_params[i])
            adams_d[i].step([(f"D{i}.{n}", p) for n, p in d_params[i]], grads)

    def update_g():
        err_g = 0
        for i, net_d in enumerate(nets_d):
            features = net_d(fake[i])
            stage = plain_bce(net_d.COND_DNET(features, x.sent_emb), 1)
            if net_d.UNCOND_DNET is not None:
                stage = stage + plain_bce(net_d.UNCOND_DNET(features), 1)
            if i > 0 or first_stage_adversarial:
                err_g = err_g + stage
        region_features, cnn_code = image_encoder(fake[len(nets_d) - 1])
        w0, w1, _ = plain_words_loss(
            region_features, x.words_embs, labels, x.cap_lens, x.class_ids, smooth.GAMMA1, smooth.GAMMA2, smooth.GAMMA3
        )
        s0, s1 = plain_sent_loss(cnn_code, x.sent_emb, labels, x.class_ids, smooth.GAMMA3)
        err_g = err_g + lam * (w0 + w1) + lam * (s0 + s1)
        if kl:
            err_g = err_g + plain_kl(mu, logvar)
        grads = gradients(err_g, g_params)
        adam_g.step([(f"G.{n}", p) for n, p in g_params], grads)
        with torch.no_grad():
            for n, p in g_params:
                average[n] = decay * average[n] + (1 - decay) * p

    for update in (update_g, update_d) if g_first else (update_d, update_g):
        update()
    modules = {"G": net_g, **{f"D{i}": d for i, d in enumerate(nets_d)}}
    plain = {"G": adam_g, **{f"D{i}": a for i, a in enumerate(adams_d)}}
    return snapshot(modules, plain=plain, averages=average)


def test_gan_step_equals_the_plain_step(gan_case):
    case, result = gan_case
    worst, difference = worst_difference(result, reference_gan(case))
    assert difference <= RTOL, (worst, difference)


@pytest.mark.parametrize(
    "change",
    [
        {"lam": 4.0},
        {"kl": False},
        {"wrong_pairs": False},
        {"first_stage_adversarial": False},
        {"g_first": True},
        {"decay": 0.99},
        {"modern_eps": True},
    ],
    ids=lambda change: "-".join(f"{k}={v}" for k, v in change.items()),
)
def test_gan_comparison_fails_on_another_recipe(gan_case, change):
    case, result = gan_case
    assert worst_difference(result, reference_gan(case, **change))[1] > 1e3 * RTOL


def test_learning_rate_schedule():
    # 0.002 x 0.98 per epoch while above 0.0002: 0.98^113 x 0.002 = 0.000204 > 0.0002, then one more.
    assert learning_rate(0.002, 0) == 0.002 and learning_rate(0.002, 2) == pytest.approx(0.002 * 0.98**2, rel=1e-15)
    assert learning_rate(0.002, 114) == learning_rate(0.002, 500) == pytest.approx(0.002 * 0.98**114, rel=1e-12)
