"""The per-process bodies of tests/test_distributed.py, run by torch.multiprocessing.spawn
with gloo on the CPU (each process joins as torchrun would make it: MASTER_ADDR/PORT,
RANK, WORLD_SIZE, LOCAL_RANK)."""

import os
import socket
from pathlib import Path

import torch
import torch.nn.functional as F
from easydict import EasyDict
from torch.nn.modules.batchnorm import _BatchNorm

from attngan import distributed
from attngan.losses import damsm_losses
from attngan.runtime import seed_everything


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join(rank: int, size: int, port: int) -> distributed.World:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(size), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    return distributed.init(cuda=False)


def without_batch_statistics() -> None:
    """Every BatchNorm normalises with its running statistics (never updated): the step
    then does not depend on how the batch is split (the one thing that does on the CPU)."""

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)

    _BatchNorm.forward = forward


def damsm_batch(global_batch: int = 8, dim: int = 6, words: int = 7):
    """A length-sorted global batch of DAMSM features (fixed seed) and its class ids."""
    g = torch.Generator().manual_seed(0)
    regions = torch.randn(global_batch, dim, 3, 3, generator=g)
    cnn = torch.randn(global_batch, dim, generator=g)
    words_emb = torch.randn(global_batch, dim, words, generator=g)
    sent = torch.randn(global_batch, dim, generator=g)
    cap_lens = torch.tensor([7, 6, 6, 4, 5, 5, 3, 2])  # each process's half sorted, as prepare_data sorts it
    class_ids = [1, 2, 3, 1, 4, 2, 5, 6]
    return regions, cnn, words_emb, sent, cap_lens, class_ids


def damsm_loss_worker(rank: int, size: int, port: int, out: str) -> None:
    """This process's half of damsm_batch through the gathered losses; saves the losses and
    the gradients of its rows."""
    world = join(rank, size, port)
    regions, cnn, words_emb, sent, cap_lens, class_ids = damsm_batch()
    n = regions.size(0) // size
    rows = slice(rank * n, (rank + 1) * n)
    local_lens = cap_lens[rows]
    leaves = [t[rows].clone().requires_grad_() for t in (regions, cnn)]
    longest = int(local_lens.max())
    leaves += [words_emb[rows, :, :longest].clone().requires_grad_(), sent[rows].clone().requires_grad_()]
    losses, _, scores = damsm_losses(
        *leaves, local_lens, class_ids[rows], 4.0, 5.0, 10.0, gather=distributed.Gather(world, words_emb.size(2))
    )
    sum(losses.values()).backward()
    torch.save(
        {"losses": {k: v.detach() for k, v in losses.items()}, "scores": scores, "grads": [t.grad for t in leaves]},
        Path(out) / f"rank{rank}.pt",
    )
    distributed.shutdown()


def gan_worker(rank: int, size: int, port: int, cfg: dict, out: str, steps: int) -> None:
    """One AttnGAN step of this process's share, then ``steps`` - 1 more; saves the weights
    and gradients after the first and the weights after the last."""
    from attngan.training.gan import GanTrainer

    world = join(rank, size, port)
    without_batch_statistics()
    seed_everything(7)
    trainer = GanTrainer(EasyDict(cfg), torch.device("cpu"), Path(out), 7, world)
    trainer.train(stop_after_steps=1)
    first = trained_weights(trainer)
    trainer.stop.requested = False
    trainer.train(stop_after_steps=steps - 1)
    torch.save({"first": first, "last": trained_weights(trainer)}, Path(out) / f"rank{rank}.pt")
    distributed.shutdown()


def trained_weights(trainer) -> dict:
    """G's, the averaged G's and the Ds' parameters, and the last step's gradients."""
    ds = [p for d in trainer.nets_d for p in d.parameters()]
    return {
        "G": [p.detach().clone() for p in trainer.net_g.parameters()],
        "avg_G": [a.clone() for a in trainer.avg_g],
        "Ds": [p.detach().clone() for p in ds],
        "G grad": [p.grad.clone() for p in trainer.net_g.parameters()],
        "Ds grad": [p.grad.clone() for p in ds],
    }


def eval_worker(rank: int, size: int, port: int, cfg: dict, out: str) -> None:
    """The evaluation of a random generator with ``rp`` and ``obj``; saves its summary."""
    world = join(rank, size, port)
    summary = evaluate_random_generator(EasyDict(cfg), Path(out), world)
    torch.save(summary, Path(out) / f"summary{rank}.pt")
    distributed.shutdown()


def evaluate_random_generator(cfg: EasyDict, out: Path, world=distributed.SINGLE) -> dict:
    from attngan.data.text import load_text_data
    from attngan.evaluation import evaluate
    from attngan.models import build_generator, build_image_encoder, build_text_encoder

    seed_everything(3)
    n_words = load_text_data(cfg.DATA_DIR, cfg.TEXT.CAPTIONS_PER_IMAGE).n_words
    nets = dict(
        net_g=build_generator(cfg),
        text_encoder=build_text_encoder(cfg, n_words),
        image_encoder=build_image_encoder(cfg),
    )
    return evaluate(cfg, torch.device("cpu"), {"rp", "obj"}, out, num_samples=22, batch_size=5, world=world, **nets)
