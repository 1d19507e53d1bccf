"""AttnGAN training: losses against plain formulas, the moving average, one step, snapshots,
and an interrupted run that resumes to the same weights as an uninterrupted one."""

import json
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml

from attngan.checkpoint import load_weights, read_state_dict
from attngan.cli import main
from attngan.config import ConfigError, load_config
from attngan.evaluation.periodic import during_training
from attngan.losses import KL_loss, discriminator_loss, generator_loss, sent_loss, words_loss
from attngan.models import build_generator
from attngan.runtime import run_dir, seed_everything
from attngan.training.gan import GanTrainer, as_floats
from conftest import ROOT, terminated_after_first_state


def make_trainer(cfg, out, seed=7):
    seed_everything(seed)
    cpu = torch.device("cpu")
    return GanTrainer(cfg, cpu, run_dir(cfg, str(out)), seed, evaluate=during_training(cfg, cpu))


# ---- losses against plain formulas -------------------------------------------------------


class FixedD(nn.Module):
    """A 'discriminator' whose heads return fixed probabilities, to check the loss algebra."""

    def __init__(self, p_real_cond, p_fake_cond, p_wrong, p_real_uncond=None, p_fake_uncond=None):
        super().__init__()
        self.COND_DNET = lambda f, c: torch.where(
            f[:, 0] > 0,
            torch.full_like(f[:, 0], p_real_cond if len(f) == 3 else p_wrong),
            torch.full_like(f[:, 0], p_fake_cond),
        )
        self.UNCOND_DNET = (
            None
            if p_real_uncond is None
            else (
                lambda f: torch.where(
                    f[:, 0] > 0, torch.full_like(f[:, 0], p_real_uncond), torch.full_like(f[:, 0], p_fake_uncond)
                )
            )
        )

    def forward(self, x):
        return x  # real images are +1, fakes -1


def bce(p, target):
    return -(target * np.log(p) + (1 - target) * np.log(1 - p))


@pytest.mark.parametrize("uncond", [True, False])
def test_discriminator_loss_formula(uncond):
    real, fake, sent = torch.ones(3, 1), -torch.ones(3, 1), torch.zeros(3, 2)
    d = FixedD(0.8, 0.3, 0.6, 0.7, 0.4) if uncond else FixedD(0.8, 0.3, 0.6)
    terms = discriminator_loss(d, real, fake, sent)
    cond_real, cond_fake, cond_wrong = bce(0.8, 1), bce(0.3, 0), bce(0.6, 0)
    if uncond:
        expected = (bce(0.7, 1) + cond_real) / 2 + (bce(0.4, 0) + cond_fake + cond_wrong) / 3
    else:
        expected = cond_real + (cond_fake + cond_wrong) / 2
    assert terms["errD"].item() == pytest.approx(expected, rel=1e-6)


def test_generator_loss_formula():
    torch.manual_seed(0)
    fake = [-torch.ones(3, 1), -torch.ones(3, 1)]
    ds = [FixedD(0.8, 0.3, 0.6, 0.7, 0.4), FixedD(0.8, 0.2, 0.6)]
    feats, code = torch.randn(3, 5, 2, 2), torch.randn(3, 5)

    def image_encoder(x):
        return feats, code

    words, sent = torch.randn(3, 5, 4), torch.randn(3, 5)
    lens, ids = torch.tensor([4, 3, 2]), np.array([1, 2, 1])
    terms = generator_loss(ds, image_encoder, fake, words, sent, lens, ids, 4.0, 5.0, 10.0, lam=5.0)
    labels = torch.arange(3)
    w = sum(words_loss(feats, words, labels, lens, ids, gamma1=4.0, gamma2=5.0, gamma3=10.0)[:2]).item()
    s = sum(sent_loss(code, sent, labels, ids, gamma3=10.0)).item()
    expected = bce(0.4, 1) + bce(0.3, 1) + bce(0.2, 1) + 5.0 * (w + s)
    assert terms["errG"].item() == pytest.approx(expected, rel=1e-5)


def test_kl_loss_hand_computed():
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, np.log(2.0)]])
    # elements: -0.5*(1 + 0 - 1 - 1) = 0.5 and -0.5*(1 + ln2 - 0 - 2) = 0.5 - 0.5 ln2
    assert KL_loss(mu, logvar).item() == pytest.approx((0.5 + 0.5 - 0.5 * np.log(2)) / 2, rel=1e-6)


# ---- training -------------------------------------------------------------------------------


def test_one_step_changes_g_and_every_d_and_averages(tiny_gan, tmp_path):
    trainer = make_trainer(tiny_gan.cfg(), tmp_path / "run")
    before_g = [p.detach().clone() for p in trainer.net_g.parameters()]
    before_d = [[p.detach().clone() for p in d.parameters()] for d in trainer.nets_d]
    avg_before = [a.clone() for a in trainer.avg_g]
    from attngan.data.loader import epoch_loader

    logs = as_floats(trainer.train_step(next(iter(epoch_loader(trainer.dataset, 4, 0, 7, 0)))))
    assert all(np.isfinite(v) for v in logs.values())
    assert {"D0/errD", "D1/errD", "G/errG", "G/kl_loss", "G/w_loss", "G/s_loss", "G/uncond0", "G/cond1"} <= set(logs)
    assert any(not torch.equal(a, p) for a, p in zip(before_g, trainer.net_g.parameters()))
    for before, net in zip(before_d, trainer.nets_d):
        assert any(not torch.equal(a, p) for a, p in zip(before, net.parameters()))
    for avg0, p, avg in zip(avg_before, trainer.net_g.parameters(), trainer.avg_g):
        assert torch.allclose(avg, 0.999 * avg0 + 0.001 * p.detach(), atol=1e-7)
    assert all(p.grad is None for p in trainer.text_encoder.parameters())


def test_bf16_step_is_finite_and_close_to_fp32(tiny_gan, tmp_path):
    """Autocast to bf16 (8 mantissa bits): the first step's losses, from the same weights
    and batch, agree with float32's to within a few percent."""
    from attngan.data.loader import epoch_loader

    logs = {}
    for precision in ("fp32", "bf16"):
        cfg = tiny_gan.cfg()
        cfg.RUN.PRECISION = precision
        trainer = make_trainer(cfg, tmp_path / precision)
        torch.manual_seed(3)
        logs[precision] = as_floats(trainer.train_step(next(iter(epoch_loader(trainer.dataset, 4, 0, 7, 0)))))
        assert all(p.dtype == torch.float32 for p in trainer.net_g.parameters())
    assert all(np.isfinite(v) for v in logs["bf16"].values())
    for key in ("D0/errD", "D1/errD", "G/errG", "G/w_loss", "G/s_loss"):
        assert logs["bf16"][key] == pytest.approx(logs["fp32"][key], rel=0.05), key


def test_unknown_precision_is_an_error(tiny_gan, tmp_path):
    cfg = tiny_gan.cfg()
    cfg.RUN.PRECISION = "fp16"
    with pytest.raises(ConfigError, match="RUN.PRECISION"):
        make_trainer(cfg, tmp_path / "run")


def test_evaluation_every_epoch_goes_to_eval_and_tensorboard(tiny_gan, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_gan.cfg()
    cfg.TRAIN.MAX_EPOCH = 1
    cfg.EVAL.EVERY_EPOCHS, cfg.EVAL.METRICS, cfg.EVAL.TRAIN_NUM_SAMPLES, cfg.EVAL.BATCH_SIZE = 1, "rp", 20, 10
    make_trainer(cfg, tmp_path / "run").train()
    summary = json.loads((tmp_path / "run" / "Eval" / "epoch_1" / "metrics.json").read_text())
    assert summary["metrics"]["r_precision"]["images"] == 20
    events = EventAccumulator(str(tmp_path / "run" / "Log"))
    events.Reload()
    (point,) = events.Scalars("eval/r_precision")
    assert point.step == 3 and point.value == pytest.approx(summary["metrics"]["r_precision"]["mean"])


def state_of(model_dir):
    return torch.load(model_dir / "training_state.pth", weights_only=True)


def test_interrupted_run_resumes_to_the_same_weights(tiny_gan, tmp_path):
    cfg = tiny_gan.cfg()
    make_trainer(cfg, tmp_path / "full").train()
    stopped = make_trainer(cfg, tmp_path / "part").train(stop_after_steps=4)  # mid-epoch 1 (3 steps an epoch)
    assert stopped.name == "training_state.pth" and state_of(stopped.parent)["step"] == 1
    cfg.RUN.RESUME = str(stopped)
    make_trainer(cfg, tmp_path / "part", seed=999).train()  # the seed comes from the state
    full, part = state_of(tmp_path / "full" / "Model"), state_of(tmp_path / "part" / "Model")
    for key in ("netG",):
        assert all(torch.equal(full[key][k], part[key][k]) for k in full[key])
    assert all(torch.equal(a, b) for a, b in zip(full["avg_g"], part["avg_g"]))
    for d_full, d_part in zip(full["netsD"], part["netsD"]):
        assert all(torch.equal(d_full[k], d_part[k]) for k in d_full)
    g_full = read_state_dict(tmp_path / "full" / "Model" / "netG_epoch_2.pth")
    g_part = read_state_dict(tmp_path / "part" / "Model" / "netG_epoch_2.pth")
    assert all(torch.equal(g_full[k], g_part[k]) for k in g_full)


def test_snapshots_in_the_original_names_load_into_fresh_models(tiny_gan, tmp_path):
    cfg = tiny_gan.cfg()
    make_trainer(cfg, tmp_path / "run").train()
    model = tmp_path / "run" / "Model"
    assert {p.name for p in model.glob("*.pth")} == {
        "netG_epoch_0.pth",
        "netG_epoch_1.pth",
        "netG_epoch_2.pth",
        "netD0.pth",
        "netD1.pth",
        "training_state.pth",
        "training_state.previous.pth",
    }
    state = state_of(model)
    g = load_weights(build_generator(cfg, initialise=False), model / "netG_epoch_2.pth")
    assert all(torch.equal(p, a) for p, a in zip(g.parameters(), state["avg_g"]))  # the averaged G
    assert list((tmp_path / "run" / "Image").glob("G_average_*_a0.png"))
    # The original's resume: NET_G (+ netD{i}.pth beside it) continues at the next epoch.
    cfg.TRAIN.NET_G, cfg.TRAIN.MAX_EPOCH = str(model / "netG_epoch_1.pth"), 3
    trainer = make_trainer(cfg, tmp_path / "again")
    assert trainer.epoch == 2


def test_dcgan_and_cli(tiny_gan, tmp_path, capsys):
    cfg = tiny_gan.cfg(dcgan=True)
    trainer = make_trainer(cfg, tmp_path / "dc")
    assert len(trainer.nets_d) == 1 and trainer.nets_d[0].UNCOND_DNET is None
    trainer.train(stop_after_steps=1)
    argv = [
        "--cfg",
        str(ROOT / "cfg/bird_attn2.yml"),
        "--gpu",
        "-1",
        "--data_dir",
        str(tiny_gan.data),
        "--output_dir",
        str(tmp_path / "cli"),
        "--set",
        "TRAIN.NET_E=",
        "TRAIN.BATCH_SIZE=4",
    ]
    assert main(argv) == 2
    assert "needs pretrained DAMSM encoders: set TRAIN.NET_E" in capsys.readouterr().err


def test_sigterm_to_the_process_group_saves_the_training_state(tiny_gan, tmp_path):
    """kill -TERM -<pgid> (what a terminal's Ctrl-C, a job scheduler or a container stop
    does: every process of the group, DataLoader workers included) ends the run with the
    training state saved at the step it reached."""
    out = tmp_path / "run"
    cfg = tiny_gan.cfg()
    cfg.WORKERS, cfg.TRAIN.MAX_EPOCH, cfg.RUN.IMAGE_INTERVAL = 1, 100000, 100000
    (tmp_path / "tiny.yml").write_text(yaml.safe_dump(json.loads(json.dumps(cfg))))
    command = [
        sys.executable,
        str(ROOT / "code" / "main.py"),
        "--cfg",
        str(tmp_path / "tiny.yml"),
        "--gpu",
        "-1",
        "--output_dir",
        str(out),
    ]
    state = out / "Model" / "training_state.pth"
    returncode, err = terminated_after_first_state(command, state, timeout=60)
    assert returncode == 0, err
    assert "stopped at epoch" in err and "DataLoader worker" not in err
    saved = torch.load(state, map_location="cpu", weights_only=False)
    assert saved["epoch"] * 3 + saved["step"] == saved["gen_iterations"] > 3  # 3 batches an epoch
    recorded = load_config(out / "config.yml")
    assert (recorded.TRAIN.MAX_EPOCH, recorded.CUDA, recorded.DATA_DIR) == (100000, False, cfg.DATA_DIR)
