"""DAMSM pretraining (the original ``pretrain_DAMSM.py`` recipe).

Per epoch: a fresh Adam over the text encoder and the image encoder's trainable
parameters (the original re-creates it every epoch), the gradient norm of the whole text
encoder clipped to RNN_GRAD_CLIP at every step (the image encoder's is not), validation on
the test split, lr x 0.98 while lr > ENCODER_LR / 10, and snapshots
``image_encoder{epoch}.pth`` / ``text_encoder{epoch}.pth`` every SNAPSHOT_INTERVAL epochs,
each with the word-swap probe (metrics/word_swap.py) on datasets with ``objects.json``.

Resuming: as the original from TRAIN.NET_E (weights only, next epoch, the lr schedule
restarted), or exactly from ``Model/training_state.pth`` (``--resume``: encoders, the
epoch's Adam, epoch and step, the random generators), written at epoch ends, every
RUN.STATE_EVERY_STEPS steps / RUN.STATE_EVERY_MINUTES minutes, and on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from easydict import EasyDict
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from ..checkpoint import CheckpointError, epoch_of, image_encoder_path, load_weights, save_weights
from ..data.datasets import build_dataset, prepare_data
from ..data.loader import epoch_loader, item_seed
from ..distributed import SINGLE, Gather, World, data_parallel, gather_to_main, local_batch, unwrap
from ..losses import damsm_losses, retrieval_top1
from ..metrics.localisation import load_objects
from ..metrics.word_swap import word_swap_accuracy
from ..models import build_image_encoder, build_text_encoder
from ..speed import adam_options, prepare
from ..visualize import attention_figure
from .loop import EpochTrainer
from .optim import OriginalAdam
from .state import STATE_FILE, load_state, rng_state, save_state, set_rng_state

log = logging.getLogger(__name__)
UPDATE_INTERVAL = 200  # steps between attention figures, as the original


@dataclass
class DamsmEncoders:
    text: torch.nn.Module
    image: torch.nn.Module
    start_epoch: int


@dataclass
class DamsmStep:
    """The encoders as the step runs them (DistributedDataParallel under torchrun) and the
    gathering of the contrastive losses' rows."""

    text: torch.nn.Module
    image: torch.nn.Module
    gather: Gather | None = None


def build_encoders(cfg: EasyDict, n_words: int) -> DamsmEncoders:
    """Both encoders; from TRAIN.NET_E (and its image_encoder twin) when set, resuming
    at the next epoch, else fresh with the backbone's pretrained weights."""
    text = build_text_encoder(cfg, n_words)
    if not cfg.TRAIN.NET_E:
        return DamsmEncoders(text, build_image_encoder(cfg, pretrained=True), 0)
    image = build_image_encoder(cfg, pretrained=False)
    load_weights(text, cfg.TRAIN.NET_E)
    load_weights(image, image_encoder_path(cfg.TRAIN.NET_E))
    log.info("resumed DAMSM encoders from %s", cfg.TRAIN.NET_E)
    return DamsmEncoders(text, image, epoch_of(cfg.TRAIN.NET_E, "text_encoder") + 1)


def learning_rate(base_lr: float, epochs_done: int) -> float:
    """The lr of the epoch after ``epochs_done`` epochs of this run: x 0.98 after each
    epoch while lr > base_lr / 10, multiplied step by step as the original."""
    lr = base_lr
    for _ in range(epochs_done):
        if lr > base_lr / 10.0:
            lr *= 0.98
    return lr


def damsm_optimizer(
    text_encoder: torch.nn.Module, image_encoder: torch.nn.Module, lr: float, options: dict | None = None
) -> OriginalAdam:
    """Adam over every text encoder parameter, then the image encoder's trainable ones
    (``options``: the implementation, speed.adam_options)."""
    params = list(text_encoder.parameters()) + [p for p in image_encoder.parameters() if p.requires_grad]
    return OriginalAdam(params, lr=lr, **(options or {}))


def damsm_forward(
    text_encoder,
    image_encoder,
    imgs,
    captions,
    cap_lens,
    class_ids,
    smooth,
    attention: bool = False,
    gather: Gather | None = None,
):
    """Both encoders on a length-sorted batch (images [B,3,H,W]) and the four DAMSM losses
    (of the global batch with ``gather``): -> (losses dict, each caption's attention on its
    image (None unless ``attention``), [B_img,B_cap] sentence scores)."""
    words_features, sent_code = image_encoder(imgs)
    words_emb, sent_emb = text_encoder(captions, cap_lens, unwrap(text_encoder).init_hidden(captions.size(0)))
    return damsm_losses(
        words_features,
        sent_code,
        words_emb,
        sent_emb,
        cap_lens,
        class_ids,
        smooth.GAMMA1,
        smooth.GAMMA2,
        smooth.GAMMA3,
        gather,
        attention,
    )


def damsm_train_step(
    text_encoder,
    image_encoder,
    optimizer,
    imgs,
    captions,
    cap_lens,
    class_ids,
    smooth,
    grad_clip: float,
    attention: bool = False,
    gather: Gather | None = None,
):
    """One pretraining step as the original: the loss w_loss0 + w_loss1 + s_loss0 + s_loss1,
    backward, the gradient norm of all the text encoder's parameters (one norm over the
    embedding, the RNN and TEXT_FC's layer) clipped to ``grad_clip``, an Adam step.
    -> (losses dict, detached; attention maps with ``attention``, else None)."""
    optimizer.zero_grad(set_to_none=True)
    losses, attn_maps, _ = damsm_forward(
        text_encoder, image_encoder, imgs, captions, cap_lens, class_ids, smooth, attention, gather
    )
    loss = (losses["w_loss0"] + losses["w_loss1"]) + (losses["s_loss0"] + losses["s_loss1"])
    loss.backward()
    torch.nn.utils.clip_grad_norm_(text_encoder.parameters(), grad_clip)
    optimizer.step()
    return {k: v.detach() for k, v in losses.items()}, attn_maps


@torch.no_grad()
def evaluate(cfg, loader, step: DamsmStep, device) -> dict:
    """Mean word/sentence losses and in-batch top-1 retrieval over at most
    DAMSM.VAL_BATCHES (global) batches of the test split."""
    step.text.eval()
    step.image.eval()
    rows = []
    for i, batch in enumerate(loader):
        if i >= cfg.DAMSM.VAL_BATCHES:
            break
        imgs, captions, cap_lens, class_ids, _ = prepare_data(batch, device)
        losses, _, scores = damsm_forward(
            step.text, step.image, imgs[-1], captions, cap_lens, class_ids, cfg.TRAIN.SMOOTH, gather=step.gather
        )
        i2t, t2i = retrieval_top1(scores)
        rows.append(
            [(losses["w_loss0"] + losses["w_loss1"]).item(), (losses["s_loss0"] + losses["s_loss1"]).item(), i2t, t2i]
        )
    w, s, i2t, t2i = np.mean(rows, axis=0)
    return {"w_loss": w, "s_loss": s, "top1_image_to_text": i2t, "top1_text_to_image": t2i}


def word_swap(cfg, encoders: DamsmEncoders, val_set, objects, device, writer, epoch) -> dict:
    """The word-swap probe (metrics/word_swap.py) on every test image: whether the
    sentence vector tells the main object's shape and colour apart. Logged and returned
    as ``word_swap_{kind}`` with its ``_chance``."""
    out = {}
    for kind, result in word_swap_accuracy(
        encoders.image, encoders.text, val_set, objects, device, cfg.TRAIN.BATCH_SIZE
    ).items():
        out[f"word_swap_{kind}"], out[f"word_swap_{kind}_chance"] = result.accuracy, result.chance
        writer.add_scalar(f"val/word_swap_{kind}", result.accuracy, epoch)
        log.info(
            "epoch %d | word swap: the true %s ranks first for %.1f%% of %d test captions (chance %.1f%%)",
            epoch,
            kind,
            100 * result.accuracy,
            result.captions,
            100 * result.chance,
        )
    return out


class DamsmTrainer(EpochTrainer):
    """Holds the encoders, the epoch's optimiser and the position of one DAMSM run; its step
    and epoch end for the shared loop (loop.EpochTrainer). Under torchrun every process runs
    it and rank 0 writes the snapshots, logs and figures."""

    label = "DAMSM"

    def __init__(self, cfg: EasyDict, device: torch.device, out_dir: Path, seed: int, world: World = SINGLE):
        self.cfg, self.device, self.seed, self.world = cfg, device, seed, world
        self.local_batch, self.batch_size = local_batch(cfg.TRAIN.BATCH_SIZE, world, cfg.RUN.BATCH_PER_PROCESS)
        self.train_set, self.val_set = build_dataset(cfg, "train"), build_dataset(cfg, "test")
        self.encoders = build_encoders(cfg, self.train_set.n_words)
        self.encoders.text.to(device)
        prepare(self.encoders.image.to(device), cfg, device)
        sync_bn = cfg.RUN.SYNC_BN and device.type == "cuda"
        self.nets = DamsmStep(
            data_parallel(self.encoders.text, world, device, sync_bn=False),
            data_parallel(self.encoders.image, world, device, sync_bn=sync_bn),
            Gather(world, cfg.TEXT.WORDS_NUM) if world.parallel else None,
        )
        self.model_dir, self.image_dir = out_dir / "Model", out_dir / "Image"
        data_dir = Path(cfg.DATA_DIR)
        self.objects = load_objects(data_dir) if (data_dir / "objects.json").is_file() else None
        # The original restarts the lr schedule when it resumes from NET_E: epochs count from here.
        self.first_epoch = self.encoders.start_epoch
        self.epoch, self.step = self.first_epoch, 0
        self.totals: dict[str, torch.Tensor] = {}  # the epoch's summed losses, on the device
        self.metrics: dict[str, float] = {}
        self.probe: dict[str, float] = {}
        super().__init__()  # the stop signals and the state schedule
        if world.parallel:
            # Processes start from the same generator state; the text encoder's dropout masks
            # must not repeat across them (they are drawn per process, docs/distributed.md).
            torch.manual_seed(item_seed(seed, world.rank, -3))
        self.optimizer = self.new_optimizer()
        if cfg.RUN.RESUME:
            self.load_state(cfg.RUN.RESUME)

    def new_optimizer(self) -> OriginalAdam:
        """The epoch's fresh Adam (the original makes one every epoch) at its lr."""
        lr = learning_rate(self.cfg.TRAIN.ENCODER_LR, self.epoch - self.first_epoch)
        return damsm_optimizer(self.encoders.text, self.encoders.image, lr, adam_options(self.cfg, self.device))

    # ---- the training state ------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything to continue exactly; under torchrun every process's generators (the
        dropout masks differ by process), gathered on rank 0: every process calls it."""
        rngs = gather_to_main(rng_state(self.device), self.world)
        return {
            "kind": "DAMSM",
            "text": self.encoders.text.state_dict(),
            "image": self.encoders.image.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "first_epoch": self.first_epoch,
            "totals": self.totals,
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "probe": {k: float(v) for k, v in self.probe.items()},
            "seed": self.seed,
            "rng": rngs[0] if rngs else None,
            "rng_per_process": rngs,
        }

    def save_state(self) -> Path:
        self.schedule.written()
        state, path = self.state_dict(), self.model_dir / STATE_FILE
        if self.world.is_main:
            save_state(state, path)
        return path

    def load_state(self, path: str | Path) -> None:
        state, path = load_state(path, self.device)
        if state.get("kind") != "DAMSM":
            raise CheckpointError(f"{path}: an AttnGAN training state, not a DAMSM one (resume it with code/main.py)")
        try:
            self.encoders.text.load_state_dict(state["text"])
            self.encoders.image.load_state_dict(state["image"])
            self.epoch, self.first_epoch = state["epoch"], state["first_epoch"]
            self.optimizer = self.new_optimizer()
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise CheckpointError(
                f"{path}: not a DAMSM training state of this config ({str(err).splitlines()[0]})"
            ) from err
        self.step, self.seed = state["step"], state["seed"]
        self.totals = {k: v.to(self.device) for k, v in state["totals"].items()}
        self.metrics, self.probe = state["metrics"], state["probe"]
        rngs = state["rng_per_process"]
        if len(rngs) == self.world.size:
            set_rng_state(rngs[self.world.rank], self.device)
        else:  # another process count: the same recipe, fresh dropout draws per process
            set_rng_state(state["rng"], self.device)
            torch.manual_seed(item_seed(self.seed, self.world.rank, -4 - self.epoch))
            log.warning(
                "%s was written by %d process(es), this run has %d: the dropout masks are drawn afresh",
                path,
                len(rngs),
                self.world.size,
            )
        log.info("resumed the DAMSM training state from %s: epoch %d, step %d", path, self.epoch, self.step)

    # ---- the loop's hooks (loop.EpochTrainer) ------------------------------------------------
    @property
    def progress(self) -> int:
        return self.step

    def begin_training(self) -> None:
        if self.world.is_main:
            self.writer = SummaryWriter(str(self.model_dir.parent / "Log"))
        log.info(
            "DAMSM: %d training / %d test images, %d words, epochs %d..%d on %s, batch %d (%d per process)",
            len(self.train_set),
            len(self.val_set),
            self.train_set.n_words,
            self.epoch,
            self.cfg.TRAIN.MAX_EPOCH - 1,
            self.device,
            self.batch_size,
            self.local_batch,
        )

    def begin_epoch(self) -> None:
        self.nets.text.train()
        self.nets.image.train()

    def train_one(self, batch, bar) -> None:
        self.train_step(batch, self.writer, bar)

    def end_epoch(self) -> None:
        self.validate(self.writer)
        self.epoch, self.step, self.totals = self.epoch + 1, 0, {}
        self.optimizer = self.new_optimizer()
        self.save_state()

    def finish(self) -> None:
        if self.world.is_main:
            self.model_dir.joinpath("metrics.json").write_text(
                json.dumps({k: float(v) for k, v in self.result(False).items()}, indent=1)
            )

    def result(self, stopped: bool) -> dict:
        """The last validation metrics, with the chance level and the word-swap probe."""
        return {**self.metrics, "chance": 1.0 / self.batch_size, **self.probe}

    def train_step(self, batch, writer, bar) -> None:
        """One step on this process's share of a global batch; the attention figure every
        UPDATE_INTERVAL steps of the epoch."""
        cfg, i = self.cfg, self.step
        imgs, captions, cap_lens, class_ids, _ = prepare_data(batch, self.device)
        figure_step = writer is not None and i % UPDATE_INTERVAL == 0
        losses, attn_maps = damsm_train_step(
            self.nets.text,
            self.nets.image,
            self.optimizer,
            imgs[-1],
            captions,
            cap_lens,
            class_ids,
            cfg.TRAIN.SMOOTH,
            cfg.TRAIN.RNN_GRAD_CLIP,
            figure_step,
            self.nets.gather,
        )
        for k, v in losses.items():  # summed on the device: reading a loss is a host-device sync
            self.totals[k] = self.totals.get(k, 0.0) + v
        self.step += 1
        if figure_step:  # this process's rows come first in the gathered batch
            bar.set_postfix(loss=f"{sum(losses.values()).item():.3f}")
            figure = attention_figure(imgs[-1], captions, self.train_set.ixtoword, attn_maps[: captions.size(0)])
            Image.fromarray(figure).save(self.image_dir / f"attention_maps{i}.png")
            writer.add_image("train/attention_maps", figure, self.epoch * self.steps_per_epoch + i, dataformats="HWC")

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_set) // self.batch_size

    def validate(self, writer) -> None:
        """Validation, logs, and every SNAPSHOT_INTERVAL epochs (and the last) the snapshots
        and the word-swap probe."""
        cfg, epoch = self.cfg, self.epoch
        train_losses = {k: v.item() / self.steps_per_epoch for k, v in self.totals.items()}
        val_loader = epoch_loader(
            self.val_set,
            self.batch_size,
            cfg.WORKERS,
            self.seed + 1,
            epoch,
            rank=self.world.rank,
            processes=self.world.size,
        )
        self.metrics = evaluate(cfg, val_loader, self.nets, self.device)
        if writer is None:
            return
        lr = self.optimizer.param_groups[0]["lr"]
        for k, v in train_losses.items():
            writer.add_scalar(f"train/{k}", v, epoch)
        for k, v in self.metrics.items():
            writer.add_scalar(f"val/{k}", v, epoch)
        writer.add_scalar("train/lr", lr, epoch)
        log.info(
            "epoch %d | lr %.6f | train %s | val w_loss %.3f s_loss %.3f | top-1 image->text %.3f text->image %.3f",
            epoch,
            lr,
            " ".join(f"{k} {v:.3f}" for k, v in train_losses.items()),
            self.metrics["w_loss"],
            self.metrics["s_loss"],
            self.metrics["top1_image_to_text"],
            self.metrics["top1_text_to_image"],
        )
        # The original meant to save the last epoch too (its test `epoch == MAX_EPOCH` is
        # never true inside the loop); we do.
        if epoch % cfg.TRAIN.SNAPSHOT_INTERVAL == 0 or epoch == cfg.TRAIN.MAX_EPOCH - 1:
            save_weights(self.encoders.image, self.model_dir / f"image_encoder{epoch}.pth")
            save_weights(self.encoders.text, self.model_dir / f"text_encoder{epoch}.pth")
            if self.objects is not None:
                self.probe = word_swap(cfg, self.encoders, self.val_set, self.objects, self.device, writer, epoch)


def train_damsm(
    cfg: EasyDict,
    device: torch.device,
    out_dir: Path,
    seed: int,
    world: World = SINGLE,
    stop_after_steps: int | None = None,
) -> dict:
    """Pretrain the DAMSM encoders (this process's share under torchrun); returns the
    last epoch's validation metrics."""
    return DamsmTrainer(cfg, device, out_dir, seed, world).train(stop_after_steps)
