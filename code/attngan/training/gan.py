"""AttnGAN training (the original ``trainer.py`` recipe).

Per step: text features from the frozen DAMSM text encoder, z ~ N(0,1), G forward, each
D_i updated on its own loss, then G on its loss (adversarial terms of every stage +
LAMBDA x DAMSM word and sentence losses of the last stage + KL), then an exponential
moving average of G's parameters (decay EMA.DECAY, 0.999 as the original; buffers are
not averaged).

Outputs in the original's names: ``netG_epoch_{N}.pth`` (the averaged G) and
``netD{i}.pth`` every SNAPSHOT_INTERVAL epochs and at the end. Besides them,
``training_state.pth`` holds everything needed to continue exactly (models, averaged G,
optimisers, epoch and step, generator states), written at epoch ends, every
RUN.STATE_EVERY_STEPS steps / RUN.STATE_EVERY_MINUTES minutes (training/state.py), and on
Ctrl-C or SIGTERM before exiting.
With EVAL.EVERY_EPOCHS, the averaged G is scored every that many epochs (``Eval/``, and
TensorBoard's ``eval/`` scalars).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from easydict import EasyDict
from PIL import Image
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid

from ..checkpoint import (
    CheckpointError,
    atomic_save,
    generator_epoch,
    image_encoder_path,
    load_weights,
    original_format,
)
from ..config import ConfigError
from ..data.datasets import build_dataset, prepare_data
from ..distributed import SINGLE, Gather, World, data_parallel, local_batch, mean_across, own_rows
from ..losses import DiscriminatorLoss, KL_loss, at_least_float32, generator_loss
from ..models import build_discriminators, build_generator, build_image_encoder, build_text_encoder, text_features
from ..runtime import forked_rng
from ..speed import Autocast, adam_options, enabled, mixed_precision, pad_words, precision, prepare
from ..visualize import attention_figure, to_uint8
from .loop import EpochTrainer
from .optim import OriginalAdam
from .state import STATE_FILE, load_state, rng_state, save_state, set_rng_state

log = logging.getLogger(__name__)


def frozen(module: torch.nn.Module) -> torch.nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


def load_damsm(cfg: EasyDict, n_words: int, device: torch.device):
    """The frozen DAMSM encoders named by TRAIN.NET_E (eval mode, no gradients)."""
    if not cfg.TRAIN.NET_E:
        raise ConfigError(
            "AttnGAN training needs pretrained DAMSM encoders: set TRAIN.NET_E to a text_encoder<N>.pth "
            "(the image encoder is read from the same folder)"
        )
    text = load_weights(build_text_encoder(cfg, n_words), cfg.TRAIN.NET_E)
    image = load_weights(build_image_encoder(cfg), image_encoder_path(cfg.TRAIN.NET_E))
    return frozen(text).to(device), frozen(image).to(device)


@dataclass
class StepInputs:
    """What one AttnGAN step consumes: the real images of every stage, the frozen text
    encoder's (detached) features of the length-sorted captions, and the noise z."""

    real_imgs: list[torch.Tensor]
    words_embs: torch.Tensor  # [B,nef,T]
    sent_emb: torch.Tensor  # [B,nef]
    mask: torch.Tensor  # [B,T], True at padding
    cap_lens: torch.Tensor  # [B]
    class_ids: np.ndarray  # [B]
    noise: torch.Tensor  # [B,Z_DIM]
    ca_noise: torch.Tensor | None = None  # [B,CONDITION_DIM], CA_NET's eps (None: G draws it)


def gan_optimizers(cfg: EasyDict, net_g: torch.nn.Module, nets_d: list[torch.nn.Module]):
    """Adam for G and one for each D, as the original: -> (opt_g, opts_d)."""
    implementation = adam_options(cfg, next(net_g.parameters()).device)
    opt_g = OriginalAdam(net_g.parameters(), lr=cfg.TRAIN.GENERATOR_LR, **implementation)
    opts_d = [
        OriginalAdam([p for p in d.parameters() if p.requires_grad], lr=cfg.TRAIN.DISCRIMINATOR_LR, **implementation)
        for d in nets_d
    ]
    return opt_g, opts_d


@torch.no_grad()
def update_average(avg_params: list[torch.Tensor], net: torch.nn.Module, decay: float) -> None:
    """avg <- decay * avg + (1 - decay) * p for every parameter (buffers are not averaged)."""
    for p, avg in zip(net.parameters(), avg_params, strict=True):
        avg.mul_(decay).add_(p.detach(), alpha=1 - decay)


def gan_step(
    net_g,
    nets_d,
    opt_g,
    opts_d,
    avg_g: list[torch.Tensor],
    image_encoder,
    inputs: StepInputs,
    smooth: EasyDict,
    ema_decay: float,
    autocast=contextlib.nullcontext,
    d_losses=None,
    gather: Gather | None = None,
) -> dict[str, torch.Tensor]:
    """One step of the original's recipe: G forward; each D_i updated on its loss with its
    own Adam; G updated on the adversarial terms of every stage + LAMBDA x the DAMSM word
    and sentence losses of the last stage + KL; then the moving average of G.
    Under torchrun ``net_g`` and ``d_losses`` (DiscriminatorLoss of each D; default: of
    ``nets_d``) are DistributedDataParallel and ``gather`` gathers the DAMSM losses' rows.
    -> every loss term, detached (``D{i}/...``, ``G/...``)."""
    d_losses = d_losses or [DiscriminatorLoss(net_d) for net_d in nets_d]
    with autocast():
        fake_imgs, _, mu, logvar = net_g(
            inputs.noise, inputs.sent_emb, inputs.words_embs, inputs.mask, ca_noise=inputs.ca_noise
        )
    logs: dict[str, torch.Tensor] = {}
    for i, (d_loss, opt_d) in enumerate(zip(d_losses, opts_d)):
        d_loss.zero_grad(set_to_none=True)
        with autocast():
            terms = d_loss(inputs.real_imgs[i], fake_imgs[i], inputs.sent_emb)
        terms["errD"].backward()
        opt_d.step()
        logs.update({f"D{i}/{k}": v.detach() for k, v in terms.items()})
    net_g.zero_grad(set_to_none=True)
    with autocast():
        terms = generator_loss(
            nets_d,
            image_encoder,
            fake_imgs,
            inputs.words_embs,
            inputs.sent_emb,
            inputs.cap_lens,
            inputs.class_ids,
            smooth.GAMMA1,
            smooth.GAMMA2,
            smooth.GAMMA3,
            smooth.LAMBDA,
            gather,
        )
    terms["kl_loss"] = KL_loss(at_least_float32(mu), at_least_float32(logvar))
    terms["errG"] = terms["errG"] + terms["kl_loss"]
    # Gradients for G's parameters only: the Ds' (which the original computed here and then
    # zeroed unused before their next update) are not even computed.
    torch.autograd.backward(terms["errG"], inputs=list(net_g.parameters()))
    opt_g.step()
    update_average(avg_g, net_g, ema_decay)
    logs.update({f"G/{k}": v.detach() for k, v in terms.items()})
    return logs


def as_floats(logs: dict[str, torch.Tensor]) -> dict[str, float]:
    """The loss terms as Python floats, read from the device at once (one sync)."""
    return dict(zip(logs, torch.stack([v.float() for v in logs.values()]).tolist()))


class GanTrainer(EpochTrainer):
    """Holds the networks, optimisers and position of one AttnGAN run; its step and epoch
    end for the shared loop (loop.EpochTrainer)."""

    label = "AttnGAN"

    def __init__(
        self, cfg: EasyDict, device: torch.device, out_dir: Path, seed: int, world: World = SINGLE, evaluate=None
    ):
        """``evaluate``: the evaluation every EVAL.EVERY_EPOCHS epochs (evaluation.periodic:
        (averaged G, text encoder, image encoder, folder) -> scalars), or None."""
        self.cfg, self.device, self.seed, self.world = cfg, device, seed, world
        self.periodic_evaluation = evaluate
        self.model_dir, self.image_dir = out_dir / "Model", out_dir / "Image"
        self.dataset = self.train_set = build_dataset(cfg, "train")
        # batch_size: the global batch, of which this process computes local_batch rows.
        self.local_batch, self.batch_size = local_batch(cfg.TRAIN.BATCH_SIZE, world, cfg.RUN.BATCH_PER_PROCESS)
        self.num_batches = len(self.dataset) // self.batch_size
        self.text_encoder, self.image_encoder = load_damsm(cfg, self.dataset.n_words, device)
        prepare(self.image_encoder, cfg, device)
        # The step's image encoder: the same, under bf16 autocast with RUN.ENCODER_PRECISION.
        self.encode_images = (
            Autocast(self.image_encoder, device)
            if precision(cfg, "ENCODER_PRECISION") == "bf16"
            else self.image_encoder
        )
        # A compiled G gets its words padded to one length (speed.prepare).
        self.words_length = cfg.TEXT.WORDS_NUM if enabled(cfg, "COMPILE", device) else None
        self.net_g = prepare(build_generator(cfg).to(device), cfg, device)
        self.nets_d = [prepare(net.to(device), cfg, device) for net in build_discriminators(cfg)]
        self.epoch, self.step, self.gen_iterations = 0, 0, 0
        if cfg.TRAIN.NET_G and not cfg.RUN.RESUME:
            self._load_snapshot(cfg.TRAIN.NET_G)
        self.avg_g = [p.detach().clone() for p in self.net_g.parameters()]
        self.opt_g, self.opts_d = gan_optimizers(cfg, self.net_g, self.nets_d)
        # The networks as the step runs them: DistributedDataParallel under torchrun, with
        # BatchNorm over the global batch on CUDA (RUN.SYNC_BN).
        sync_bn = cfg.RUN.SYNC_BN and device.type == "cuda"
        if world.parallel and not sync_bn:
            log.warning(
                "BatchNorm statistics are each process's (%s): the step differs from one process's "
                "on the same global batch (docs/distributed.md)",
                "RUN.SYNC_BN False" if device.type == "cuda" else "SyncBatchNorm needs CUDA",
            )
        self.gather = Gather(world, cfg.TEXT.WORDS_NUM) if world.parallel else None
        self.g_step = data_parallel(self.net_g, world, device, sync_bn)
        self.d_steps = [data_parallel(DiscriminatorLoss(d, self.gather), world, device, sync_bn) for d in self.nets_d]
        self.fixed_noise = torch.randn(self.batch_size, cfg.GAN.Z_DIM, device=device)
        self.autocast = mixed_precision(cfg, "PRECISION", device)
        self.monitor_batch: tuple[torch.Tensor, torch.Tensor] | None = None
        super().__init__()  # the stop signals and the state schedule
        if cfg.RUN.RESUME:
            self.load_state(cfg.RUN.RESUME)

    def _load_snapshot(self, net_g: str) -> None:
        """Resume as the original: NET_G (the averaged G) and, with B_NET_D, netD{i}.pth
        of the same folder; training goes on at the next epoch."""
        load_weights(self.net_g, net_g)
        if self.cfg.TRAIN.B_NET_D:
            for i, net in enumerate(self.nets_d):
                load_weights(net, Path(net_g).parent / f"netD{i}.pth")
        self.epoch = generator_epoch(net_g) + 1
        log.info("resumed G from %s at epoch %d", net_g, self.epoch)

    # ---- one step ------------------------------------------------------------------
    def batch_noise(self) -> tuple[torch.Tensor, torch.Tensor]:
        """z and CA_NET's eps of this process's rows: drawn for the global batch (every
        process's generator is in the same state), so that a row's noise does not depend
        on the number of processes."""
        z = torch.randn(self.batch_size, self.cfg.GAN.Z_DIM, device=self.device)
        eps = torch.randn(self.batch_size, self.cfg.GAN.CONDITION_DIM, device=self.device)
        return own_rows(z, self.world), own_rows(eps, self.world)

    def train_step(self, batch) -> dict[str, torch.Tensor]:
        """One step on a collated batch (this process's share of the global one); the loss
        terms stay on the device (reading them is a host-device sync: the loop does it
        every RUN.LOG_INTERVAL steps)."""
        imgs, captions, cap_lens, class_ids, _ = prepare_data(batch, self.device)
        noise, ca_noise = self.batch_noise()
        if self.monitor_batch is None:
            self.monitor_batch = (captions.detach().clone(), cap_lens.detach().clone())
        words_embs, sent_emb, mask = text_features(self.text_encoder, captions, cap_lens)
        if self.words_length is not None:
            words_embs, mask = pad_words(words_embs, mask, self.words_length)
        inputs = StepInputs(imgs, words_embs, sent_emb, mask, cap_lens, class_ids, noise, ca_noise)
        return gan_step(
            self.g_step,
            self.nets_d,
            self.opt_g,
            self.opts_d,
            self.avg_g,
            self.encode_images,
            inputs,
            self.cfg.TRAIN.SMOOTH,
            self.cfg.EMA.DECAY,
            self.autocast,
            self.d_steps,
            self.gather,
        )

    @contextlib.contextmanager
    def averaged_generator(self):
        """G with the averaged parameters in place (buffers are the current ones)."""
        backup = [p.detach().clone() for p in self.net_g.parameters()]
        with torch.no_grad():
            for p, avg in zip(self.net_g.parameters(), self.avg_g):
                p.copy_(avg)
        try:
            yield self.net_g
        finally:
            with torch.no_grad():
                for p, b in zip(self.net_g.parameters(), backup):
                    p.copy_(b)

    # ---- outputs -------------------------------------------------------------------
    def save_snapshot(self, epoch: int) -> None:
        with self.averaged_generator() as net_g:
            atomic_save(original_format(net_g), self.model_dir / f"netG_epoch_{epoch}.pth")
        for i, net in enumerate(self.nets_d):
            atomic_save(original_format(net), self.model_dir / f"netD{i}.pth")
        log.info("saved netG_epoch_%d.pth and the Ds in %s", epoch, self.model_dir)

    def state_dict(self) -> dict:
        return {
            "kind": "AttnGAN",
            "netG": self.net_g.state_dict(),
            "avg_g": self.avg_g,
            "netsD": [d.state_dict() for d in self.nets_d],
            "optG": self.opt_g.state_dict(),
            "optsD": [o.state_dict() for o in self.opts_d],
            "epoch": self.epoch,
            "step": self.step,
            "gen_iterations": self.gen_iterations,
            "seed": self.seed,
            "fixed_noise": self.fixed_noise,
            "monitor_batch": self.monitor_batch,
            "rng": rng_state(self.device),
        }

    def save_state(self) -> Path:
        self.schedule.written()
        path = self.model_dir / STATE_FILE
        return save_state(self.state_dict(), path) if self.world.is_main else path

    def load_state(self, path: str | Path) -> None:
        state, path = load_state(path, self.device)
        if state.get("kind", "AttnGAN") != "AttnGAN":
            raise CheckpointError(
                f"{path}: a {state['kind']} training state, not an AttnGAN one (resume it with code/pretrain_DAMSM.py)"
            )
        try:
            self.net_g.load_state_dict(state["netG"])
            for net, sd in zip(self.nets_d, state["netsD"], strict=True):
                net.load_state_dict(sd)
            self.opt_g.load_state_dict(state["optG"])
            for opt, sd in zip(self.opts_d, state["optsD"], strict=True):
                opt.load_state_dict(sd)
        except (KeyError, RuntimeError, ValueError) as err:
            raise CheckpointError(
                f"{path}: not an AttnGAN training state of this config ({str(err).splitlines()[0]})"
            ) from err
        self.avg_g = [t.to(self.device) for t in state["avg_g"]]
        self.epoch, self.step, self.gen_iterations = state["epoch"], state["step"], state["gen_iterations"]
        self.seed, self.fixed_noise, self.monitor_batch = state["seed"], state["fixed_noise"], state["monitor_batch"]
        set_rng_state(state["rng"], self.device)
        log.info("resumed the full training state from %s: epoch %d, step %d", path, self.epoch, self.step)

    @torch.no_grad()
    def save_images(self, writer: SummaryWriter) -> None:
        """Images of every stage and attention figures from the averaged G on the fixed
        noise and the run's first captions (eval mode and the generators' states restored,
        so the training is untouched)."""
        captions, cap_lens = self.monitor_batch
        words_embs, sent_emb, mask = text_features(self.text_encoder, captions, cap_lens)
        with self.averaged_generator() as net_g, forked_rng(self.device):
            net_g.eval()
            fake_imgs, att_maps, _, _ = net_g(self.fixed_noise[: captions.size(0)], sent_emb, words_embs, mask)
            net_g.train()
        step = self.gen_iterations
        for k, img in enumerate(fake_imgs):
            grid = make_grid(img[:16].float().cpu(), nrow=8, normalize=True, value_range=(-1, 1))
            writer.add_image(f"images/stage{k}", grid, step)
            Image.fromarray(to_uint8(grid.unsqueeze(0) * 2 - 1)[0]).save(self.image_dir / f"G_average_{step}_g{k}.png")
        for k, maps in enumerate(att_maps):
            image = fake_imgs[k + 1] if len(fake_imgs) > 1 else fake_imgs[0]
            per_caption = [maps[j, : int(cap_lens[j])] for j in range(maps.size(0))]
            figure = attention_figure(image, captions, self.dataset.ixtoword, per_caption)
            writer.add_image(f"attention/stage{k + 1}", figure, step, dataformats="HWC")
            Image.fromarray(figure).save(self.image_dir / f"G_average_{step}_a{k}.png")

    def evaluate(self, writer: SummaryWriter | None) -> dict[str, float]:
        """The periodic evaluation of the averaged G, written to Eval/epoch_{N}/
        (metrics.json, report.md, figures) and to TensorBoard."""
        with self.averaged_generator() as net_g:
            out_dir = self.model_dir.parent / "Eval" / f"epoch_{self.epoch}"
            values = self.periodic_evaluation(net_g, self.text_encoder, self.image_encoder, out_dir)
        if writer is not None:
            for key, value in values.items():
                writer.add_scalar(key, value, self.gen_iterations)
        return values

    # ---- the loop ------------------------------------------------------------------
    def _log(self, writer: SummaryWriter, logs: dict[str, float]) -> None:
        for k, v in logs.items():
            writer.add_scalar(k, v, self.gen_iterations)

    # ---- the loop's hooks (loop.EpochTrainer) ------------------------------------------------
    @property
    def progress(self) -> int:
        return self.gen_iterations

    def begin_training(self) -> None:
        if self.world.is_main:
            self.writer = SummaryWriter(str(self.model_dir.parent / "Log"), purge_step=self.gen_iterations or None)
        self.net_g.train()
        for net in self.nets_d:
            net.train()

    def begin_epoch(self) -> None:
        self.last_logs: dict[str, torch.Tensor] = {}  # none when resumed after the epoch's last step

    def train_one(self, batch, bar) -> None:
        cfg, main = self.cfg, self.world.is_main
        self.last_logs = self.train_step(batch)
        self.step += 1
        self.gen_iterations += 1
        if self.gen_iterations % cfg.RUN.LOG_INTERVAL == 0:
            values = mean_across(as_floats(self.last_logs), self.world)
            if main:
                bar.set_postfix(errG=f"{values['G/errG']:.2f}", errD=f"{values['D0/errD']:.2f}")
                self._log(self.writer, values)
        if main and self.gen_iterations % cfg.RUN.IMAGE_INTERVAL == 0:
            self.save_images(self.writer)

    def end_epoch(self) -> None:
        cfg = self.cfg
        values = mean_across(as_floats(self.last_logs), self.world) if self.last_logs else {}
        if self.world.is_main:
            log.info(
                "epoch %d done (%d steps in all): %s",
                self.epoch,
                self.gen_iterations,
                " ".join(f"{k} {v:.3f}" for k, v in values.items() if k.startswith("G/") or k.endswith("errD")),
            )
            if self.epoch % cfg.TRAIN.SNAPSHOT_INTERVAL == 0:
                self.save_snapshot(self.epoch)
        self.epoch, self.step = self.epoch + 1, 0
        self.save_state()
        if self.periodic_evaluation and self.epoch % cfg.EVAL.EVERY_EPOCHS == 0:
            self.evaluate(self.writer)

    def finish(self) -> None:
        if self.world.is_main:
            self.save_snapshot(self.cfg.TRAIN.MAX_EPOCH)
            if self.monitor_batch is not None:
                self.save_images(self.writer)

    def result(self, stopped: bool) -> Path:
        """The training state after a stop, else the last checkpoint."""
        return self.model_dir / (STATE_FILE if stopped else f"netG_epoch_{self.cfg.TRAIN.MAX_EPOCH}.pth")


def train_gan(
    cfg: EasyDict,
    device: torch.device,
    out_dir: Path,
    seed: int,
    world: World = SINGLE,
    stop_after_steps: int | None = None,
    evaluate=None,
) -> Path:
    """Train AttnGAN as the config says (this process's share under torchrun), with the
    periodic ``evaluate`` (GanTrainer); returns the last checkpoint written."""
    return GanTrainer(cfg, device, out_dir, seed, world, evaluate).train(stop_after_steps)
