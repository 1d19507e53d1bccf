"""The step of an older checkout, timed on command: scripts/benchmark.py's "before" setting.

    python scripts/bench_before.py CHECKOUT

imports ``attngan`` from CHECKOUT/code (never this tree's), then answers one JSON command per
line of stdin with one JSON line on stdout, so that its rounds interleave with the settings
timed in the benchmark's own process (between commands it waits on the pipe, idle):

- ``{"cmd": "build", "workload": "gan"|"damsm", "cfg": FILE, "set": [KEY=VALUE...],
  "out": DIR, "values": FILE, "warmup": N, "threads": N, "first_seed": N}``: the
  checkout's step on its own config with those overrides (those of keys it does not have
  are left out and listed in the reply); its first step from torch seed ``first_seed`` on
  epoch 0's first batch, whose losses and gradients go to ``values`` (torch.save), then
  ``warmup`` steps -> ``{"first_s", "warm_s", "skipped"}``.
- ``{"cmd": "run", "lead": L, "steps": N}``: L untimed steps, then N timed ones ->
  ``{"seconds"}``.
- ``{"cmd": "quit"}``.

Written for the API of c8b7ec1 (the commit before the speed work): ``GanTrainer(cfg, device,
out_dir, seed).train_step(batch)`` (which reads every loss back), ``epoch_loader(dataset,
batch_size, workers, seed, epoch)`` and ``damsm_train_step(text, image, optimizer, imgs,
captions, cap_lens, class_ids, labels, smooth, grad_clip)``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

CHECKOUT = Path(sys.argv[1]).resolve()
sys.path.insert(0, str(CHECKOUT / "code"))

import torch  # noqa: E402
from bench_stats import gradients  # noqa: E402

import attngan  # noqa: E402
from attngan.config import apply_overrides, load_config  # noqa: E402
from attngan.data.datasets import build_dataset, prepare_data  # noqa: E402
from attngan.data.loader import epoch_loader  # noqa: E402
from attngan.runtime import run_dir, seed_everything  # noqa: E402

if not Path(attngan.__file__).resolve().is_relative_to(CHECKOUT):
    raise SystemExit(f"imported attngan from {attngan.__file__}, not from {CHECKOUT}")
DEVICE = torch.device("cpu")


def batches(dataset, batch_size: int, workers: int):
    """Every epoch's batches, one epoch after another (as the benchmark's own settings)."""
    epoch = 0
    while True:
        yield from epoch_loader(dataset, batch_size, workers, 0, epoch)
        epoch += 1


def gan(cfg, out: Path):
    """-> (step, dataset, values of the networks after a step): the checkout's trainer."""
    from attngan.training.gan import GanTrainer

    seed_everything(0)
    trainer = GanTrainer(cfg, DEVICE, run_dir(cfg, str(out)), seed=0)

    def values(losses):
        # G's gradients and the losses: its D gradients also hold G's backward, which the
        # step no longer computes, so they are not the same quantity.
        return {**gradients({"G": trainer.net_g}), **{f"loss/{k}": torch.tensor(v) for k, v in losses.items()}}

    return trainer.train_step, trainer.dataset, values


def damsm(cfg, out: Path):
    from attngan.models import build_image_encoder, build_text_encoder
    from attngan.training.damsm import damsm_optimizer, damsm_train_step

    dataset = build_dataset(cfg, "train")
    seed_everything(0)
    text = build_text_encoder(cfg, dataset.n_words).to(DEVICE).train()
    image = build_image_encoder(cfg).to(DEVICE).train()
    optimizer = damsm_optimizer(text, image, cfg.TRAIN.ENCODER_LR)
    labels = torch.arange(cfg.TRAIN.BATCH_SIZE, device=DEVICE)

    def step(batch):
        imgs, captions, cap_lens, class_ids, _ = prepare_data(batch, DEVICE)
        losses, _ = damsm_train_step(
            text, image, optimizer, imgs[-1], captions, cap_lens, class_ids, labels, cfg.TRAIN.SMOOTH,
            cfg.TRAIN.RNN_GRAD_CLIP,
        )  # fmt: skip
        return {k: v.item() for k, v in losses.items()}  # as its training loop read them, every step

    def values(losses):
        grads = gradients({"text": text, "image": image})
        return {**grads, **{f"loss/{k}": torch.tensor(v) for k, v in losses.items()}}

    return step, dataset, values


def known(cfg, pair: str) -> bool:
    """Whether the checkout's config has the key of ``KEY.SUB=value`` (later keys are left out)."""
    node = cfg
    for part in pair.split("=", 1)[0].strip().split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def build(command: dict):
    torch.set_num_threads(command["threads"])
    cfg = load_config(command["cfg"])
    skipped = [pair for pair in command["set"] if not known(cfg, pair)]
    apply_overrides(cfg, [pair for pair in command["set"] if pair not in skipped])
    cfg.CUDA = False
    step, dataset, values = {"gan": gan, "damsm": damsm}[command["workload"]](cfg, Path(command["out"]))
    first = next(iter(epoch_loader(dataset, cfg.TRAIN.BATCH_SIZE, 0, 0, 0)))
    start = time.perf_counter()
    torch.manual_seed(command["first_seed"])
    out = step(first)
    first_s = time.perf_counter() - start
    torch.save(values(out), command["values"])
    stream = batches(dataset, cfg.TRAIN.BATCH_SIZE, cfg.WORKERS)
    start = time.perf_counter()
    for _ in range(command["warmup"]):
        step(next(stream))
    return step, stream, {"first_s": first_s, "warm_s": time.perf_counter() - start, "skipped": skipped}


def main() -> None:
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the checkout's own prints and logs go to stderr, the replies alone to stdout
    step = stream = None
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "quit":
            break
        if command["cmd"] == "build":
            step, stream, reply = build(command)
        else:
            for _ in range(command["lead"]):
                step(next(stream))
            start = time.perf_counter()
            for _ in range(command["steps"]):
                step(next(stream))
            reply = {"seconds": time.perf_counter() - start}
        replies.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
