"""DAMSM pretraining (the original ``pretrain_DAMSM.py`` recipe).

Per epoch: a fresh Adam over the text encoder and the image encoder's trainable
parameters (the original re-creates it every epoch), the gradient norm of the whole text
encoder clipped to RNN_GRAD_CLIP at every step (the image encoder's is not), validation on
the test split, lr x 0.98 while lr > ENCODER_LR / 10, and snapshots
``image_encoder{epoch}.pth`` / ``text_encoder{epoch}.pth`` every SNAPSHOT_INTERVAL epochs,
each with the word-swap probe (metrics/word_swap.py) on datasets with ``objects.json``.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from easydict import EasyDict
from PIL import Image
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ..checkpoint import load_weights, save_weights
from ..data.datasets import build_dataset, prepare_data
from ..data.loader import epoch_loader, item_seed
from ..distributed import SINGLE, Gather, World, data_parallel, local_batch, unwrap
from ..losses import damsm_losses, retrieval_top1
from ..metrics.localisation import load_objects
from ..metrics.word_swap import word_swap_accuracy
from ..models import build_image_encoder, build_text_encoder
from ..speed import adam_options, prepare
from ..visualize import attention_figure
from .optim import OriginalAdam

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


def image_encoder_path(net_e: str | Path) -> Path:
    """The image encoder that goes with a text encoder file, by the original's naming."""
    net_e = Path(net_e)
    return net_e.with_name(net_e.name.replace("text_encoder", "image_encoder"))


def epoch_of(path: str | Path, prefix: str) -> int:
    """N of ``<prefix>N.pth`` (the original parses resume epochs from file names)."""
    match = re.fullmatch(rf"{prefix}(\d+)\.pth", Path(path).name)
    if not match:
        raise ValueError(f"{path}: expected a file named {prefix}<epoch>.pth to resume from")
    return int(match.group(1))


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


def damsm_optimizer(text_encoder: torch.nn.Module, image_encoder: torch.nn.Module, lr: float,
                    options: dict | None = None) -> OriginalAdam:
    """Adam over every text encoder parameter, then the image encoder's trainable ones
    (``options``: the implementation, speed.adam_options)."""
    params = list(text_encoder.parameters()) + [p for p in image_encoder.parameters() if p.requires_grad]
    return OriginalAdam(params, lr=lr, **(options or {}))


def damsm_forward(text_encoder, image_encoder, imgs, captions, cap_lens, class_ids, smooth,
                  attention: bool = False, gather: Gather | None = None):
    """Both encoders on a length-sorted batch (images [B,3,H,W]) and the four DAMSM losses
    (of the global batch with ``gather``): -> (losses dict, each caption's attention on its
    image (None unless ``attention``), [B_img,B_cap] sentence scores)."""
    words_features, sent_code = image_encoder(imgs)
    words_emb, sent_emb = text_encoder(captions, cap_lens, unwrap(text_encoder).init_hidden(captions.size(0)))
    return damsm_losses(words_features, sent_code, words_emb, sent_emb, cap_lens, class_ids, smooth.GAMMA1,
                        smooth.GAMMA2, smooth.GAMMA3, gather, attention)


def damsm_train_step(text_encoder, image_encoder, optimizer, imgs, captions, cap_lens, class_ids, smooth,
                     grad_clip: float, attention: bool = False, gather: Gather | None = None):
    """One pretraining step as the original: the loss w_loss0 + w_loss1 + s_loss0 + s_loss1,
    backward, the gradient norm of all the text encoder's parameters (one norm over the
    embedding, the RNN and TEXT_FC's layer) clipped to ``grad_clip``, an Adam step.
    -> (losses dict, detached; attention maps with ``attention``, else None)."""
    optimizer.zero_grad(set_to_none=True)
    losses, attn_maps, _ = damsm_forward(text_encoder, image_encoder, imgs, captions, cap_lens, class_ids,
                                         smooth, attention, gather)
    loss = (losses["w_loss0"] + losses["w_loss1"]) + (losses["s_loss0"] + losses["s_loss1"])
    loss.backward()
    torch.nn.utils.clip_grad_norm_(text_encoder.parameters(), grad_clip)
    optimizer.step()
    return {k: v.detach() for k, v in losses.items()}, attn_maps


def train_epoch(cfg, loader, step: DamsmStep, optimizer, epoch, device, writer, image_dir, ixtoword) -> dict:
    """One epoch of steps; the mean of each loss (over the global batch) -> dict."""
    step.text.train()
    step.image.train()
    totals: dict[str, torch.Tensor] = {}
    bar = tqdm(loader, desc=f"DAMSM epoch {epoch}", leave=False, dynamic_ncols=True, disable=None if writer else True)
    for i, batch in enumerate(bar):
        imgs, captions, cap_lens, class_ids, _ = prepare_data(batch, device)
        figure_step = writer is not None and i % UPDATE_INTERVAL == 0
        losses, attn_maps = damsm_train_step(step.text, step.image, optimizer, imgs[-1], captions, cap_lens,
                                             class_ids, cfg.TRAIN.SMOOTH, cfg.TRAIN.RNN_GRAD_CLIP, figure_step,
                                             step.gather)
        for k, v in losses.items():  # summed on the device: reading a loss is a host-device sync
            totals[k] = totals.get(k, 0.0) + v
        if figure_step:  # this process's rows come first in the gathered batch
            bar.set_postfix(loss=f"{sum(losses.values()).item():.3f}")
            figure = attention_figure(imgs[-1], captions, ixtoword, attn_maps[: captions.size(0)])
            Image.fromarray(figure).save(Path(image_dir) / f"attention_maps{i}.png")
            writer.add_image("train/attention_maps", figure, epoch * len(loader) + i, dataformats="HWC")
    return {k: v.item() / len(loader) for k, v in totals.items()}


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
        losses, _, scores = damsm_forward(step.text, step.image, imgs[-1], captions, cap_lens, class_ids,
                                          cfg.TRAIN.SMOOTH, gather=step.gather)
        i2t, t2i = retrieval_top1(scores)
        rows.append([(losses["w_loss0"] + losses["w_loss1"]).item(), (losses["s_loss0"] + losses["s_loss1"]).item(), i2t, t2i])
    w, s, i2t, t2i = np.mean(rows, axis=0)
    return {"w_loss": w, "s_loss": s, "top1_image_to_text": i2t, "top1_text_to_image": t2i}


def word_swap(cfg, encoders: DamsmEncoders, val_set, objects, device, writer, epoch) -> dict:
    """The word-swap probe (metrics/word_swap.py) on every test image: whether the
    sentence vector tells the main object's shape and colour apart. Logged and returned
    as ``word_swap_{kind}`` with its ``_chance``."""
    out = {}
    for kind, result in word_swap_accuracy(encoders.image, encoders.text, val_set, objects, device,
                                           cfg.TRAIN.BATCH_SIZE).items():
        out[f"word_swap_{kind}"], out[f"word_swap_{kind}_chance"] = result.accuracy, result.chance
        writer.add_scalar(f"val/word_swap_{kind}", result.accuracy, epoch)
        log.info("epoch %d | word swap: the true %s ranks first for %.1f%% of %d test captions (chance %.1f%%)",
                 epoch, kind, 100 * result.accuracy, result.captions, 100 * result.chance)
    return out


def train_damsm(cfg: EasyDict, device: torch.device, out_dir: Path, seed: int, world: World = SINGLE) -> dict:
    """Pretrain the DAMSM encoders (this process's share under torchrun: rank 0 writes the
    snapshots, logs and figures); returns the last epoch's validation metrics."""
    batch, global_batch = local_batch(cfg.TRAIN.BATCH_SIZE, world, cfg.RUN.BATCH_PER_PROCESS)
    train_set, val_set = build_dataset(cfg, "train"), build_dataset(cfg, "test")
    encoders = build_encoders(cfg, train_set.n_words)
    encoders.text.to(device)
    prepare(encoders.image.to(device), cfg, device)
    step = DamsmStep(data_parallel(encoders.text, world, device, sync_bn=False),
                     data_parallel(encoders.image, world, device, sync_bn=cfg.RUN.SYNC_BN and device.type == "cuda"),
                     Gather(world, cfg.TEXT.WORDS_NUM) if world.parallel else None)
    if world.parallel:
        # Processes start from the same generator state; the text encoder's dropout masks
        # must not repeat across them (they are drawn per process, README "Many GPUs").
        torch.manual_seed(item_seed(seed, world.rank, -3))
    model_dir, image_dir = out_dir / "Model", out_dir / "Image"
    writer = SummaryWriter(str(out_dir / "Log")) if world.is_main else None
    metrics, probe = {}, {}
    objects = load_objects(cfg.DATA_DIR) if (Path(cfg.DATA_DIR) / "objects.json").is_file() else None
    last_epoch = cfg.TRAIN.MAX_EPOCH - 1
    log.info("DAMSM: %d training / %d test images, %d words, epochs %d..%d on %s, batch %d (%d per process)",
             len(train_set), len(val_set), train_set.n_words, encoders.start_epoch, last_epoch, device,
             global_batch, batch)
    loader_args = dict(rank=world.rank, processes=world.size)
    try:
        for epoch in range(encoders.start_epoch, cfg.TRAIN.MAX_EPOCH):
            # The original restarts the schedule (and a fresh Adam) when it resumes from NET_E.
            lr = learning_rate(cfg.TRAIN.ENCODER_LR, epoch - encoders.start_epoch)
            optimizer = damsm_optimizer(encoders.text, encoders.image, lr, adam_options(cfg, device))
            loader = epoch_loader(train_set, global_batch, cfg.WORKERS, seed, epoch,
                                  pin_memory=device.type == "cuda", **loader_args)
            train_losses = train_epoch(cfg, loader, step, optimizer, epoch, device, writer, image_dir,
                                       train_set.ixtoword)
            val_loader = epoch_loader(val_set, global_batch, cfg.WORKERS, seed + 1, epoch, **loader_args)
            metrics = evaluate(cfg, val_loader, step, device)
            if writer is None:
                continue
            for k, v in train_losses.items():
                writer.add_scalar(f"train/{k}", v, epoch)
            for k, v in metrics.items():
                writer.add_scalar(f"val/{k}", v, epoch)
            writer.add_scalar("train/lr", lr, epoch)
            log.info("epoch %d | lr %.6f | train %s | val w_loss %.3f s_loss %.3f | top-1 image->text %.3f "
                     "text->image %.3f", epoch, lr, " ".join(f"{k} {v:.3f}" for k, v in train_losses.items()),
                     metrics["w_loss"], metrics["s_loss"], metrics["top1_image_to_text"], metrics["top1_text_to_image"])
            # The original meant to save the last epoch too (its test `epoch == MAX_EPOCH`
            # is never true inside the loop); we do.
            if epoch % cfg.TRAIN.SNAPSHOT_INTERVAL == 0 or epoch == last_epoch:
                save_weights(encoders.image, model_dir / f"image_encoder{epoch}.pth")
                save_weights(encoders.text, model_dir / f"text_encoder{epoch}.pth")
                if objects is not None:
                    probe = word_swap(cfg, encoders, val_set, objects, device, writer, epoch)
    except KeyboardInterrupt:
        log.warning("interrupted: exiting from training early (snapshots so far are in %s)", model_dir)
    finally:
        if writer is not None:
            writer.close()
    metrics["chance"] = 1.0 / global_batch
    metrics.update(probe)
    if world.is_main:
        (model_dir / "metrics.json").write_text(json.dumps({k: float(v) for k, v in metrics.items()}, indent=1))
    return metrics
