"""Data parallelism on torch.distributed, launched by ``torchrun`` (one process per GPU,
NCCL; gloo on the CPU), such that a run follows the same recipe whatever the number of
processes.

- ``TRAIN.BATCH_SIZE`` is the global batch, split evenly (``local_batch``); every process
  reads its contiguous share of the same seeded global batch (data/loader.py).
- Random draws tied to a batch row (z, CA_NET's noise) are drawn for the global batch on
  every process, from generators in the same state, and each takes its rows.
- The DAMSM losses are contrastive over the batch: ``Gather`` concatenates every process's
  rows, so that each computes the global batch's loss, and hands the gradient of its own
  rows back (times the world size, since DistributedDataParallel averages gradients).
- Control (stop requests, log averages, objects) goes through a gloo group on the CPU, so
  that it never waits for a GPU stream.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from .config import ConfigError


@dataclass(frozen=True)
class World:
    """This process's place among the run's processes (size 1: no torch.distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1


SINGLE = World()
_control: Any = None  # the gloo group for control messages (the default group when it is gloo)


def launched_by_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def init(cuda: bool, timeout_minutes: float = 30.0) -> World:
    """Join the process group torchrun describes (NCCL with CUDA, gloo on the CPU); the
    single-process World without torchrun."""
    global _control
    if not launched_by_torchrun():
        return SINGLE
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=timeout_minutes))
    _control = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else dist.group.WORLD
    return current()


def current() -> World:
    if not dist.is_initialized():
        return SINGLE
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def shutdown() -> None:
    global _control
    if dist.is_initialized():
        dist.destroy_process_group()
    _control = None


def local_batch(global_batch: int, world: World, per_process: bool = False) -> tuple[int, int]:
    """(this process's batch, the global batch) for TRAIN.BATCH_SIZE ``global_batch`` (or,
    with RUN.BATCH_PER_PROCESS, the batch of each process)."""
    if per_process:
        return global_batch, global_batch * world.size
    if global_batch % world.size:
        raise ConfigError(
            f"TRAIN.BATCH_SIZE {global_batch} (the global batch) does not split evenly across "
            f"{world.size} processes; choose a multiple of {world.size}, or set "
            "RUN.BATCH_PER_PROCESS True to make TRAIN.BATCH_SIZE the batch of each process"
        )
    if world.parallel and global_batch // world.size < 2:
        raise ConfigError(
            f"TRAIN.BATCH_SIZE {global_batch} leaves {global_batch // world.size} row for each of "
            f"{world.size} processes; a process needs at least 2 (the D's mismatched pairs)"
        )
    return global_batch // world.size, global_batch


def broadcast(obj: Any, world: World) -> Any:
    """Rank 0's ``obj`` on every process (a picklable object)."""
    if not world.parallel:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=_control)
    return box[0]


def gather_objects(obj: Any, world: World) -> list[Any]:
    """Every process's ``obj``, in rank order, on every process."""
    if not world.parallel:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj, group=_control)
    return out


def gather_to_main(obj: Any, world: World) -> list[Any]:
    """Every process's ``obj``, in rank order, on rank 0; an empty list on the others."""
    if not world.parallel:
        return [obj]
    out: list[Any] | None = [None] * world.size if world.is_main else None
    dist.gather_object(obj, out, dst=0, group=_control)
    return out or []


def any_process(flags: Sequence[bool], world: World) -> list[bool]:
    """Each flag True on every process when it is True on one (a stop request, a state
    that is due): the processes act on it at the same step."""
    if not world.parallel:
        return list(flags)
    t = torch.tensor([int(f) for f in flags])
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_control)
    return [bool(v) for v in t.tolist()]


def barrier(world: World) -> None:
    if world.parallel:
        dist.barrier(group=_control)


def mean_across(values: dict[str, float], world: World) -> dict[str, float]:
    """Each value averaged over the processes (their local losses), for the logs."""
    if not world.parallel or not values:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64)
    dist.all_reduce(t, group=_control)
    return dict(zip(values, (t / world.size).tolist()))


def own_rows(global_draw: torch.Tensor, world: World) -> torch.Tensor:
    """This process's contiguous share of a tensor drawn for the global batch."""
    if not world.parallel:
        return global_draw
    n = global_draw.size(0) // world.size
    return global_draw[world.rank * n : (world.rank + 1) * n]


class _GatherRows(torch.autograd.Function):
    """All processes' rows, concatenated in rank order; the backward hands each its own
    rows' gradient times the world size. Every process computes the same loss from the
    gathered rows, so the sum of the W identical gradients is W x this one; after DDP's
    average, the parameters get the global batch's gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.size, ctx.rows = dist.get_rank(), dist.get_world_size(), x.size(0)
        parts = [torch.empty_like(x) for _ in range(ctx.size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows] * ctx.size


class Gather:
    """What the contrastive losses need of the global batch. The single-process instance
    returns its inputs as they are. ``words_length``: the word features' common length
    (TEXT.WORDS_NUM; each process's are as long as its longest caption)."""

    def __init__(self, world: World = SINGLE, words_length: int = 0):
        self.world, self.words_length = world, words_length

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """[b,...] on every process -> [W*b,...]; gradients flow to the local rows."""
        if not self.world.parallel:
            return x
        if x.requires_grad:
            return _GatherRows.apply(x)
        parts = [torch.empty_like(x) for _ in range(self.world.size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    def words(self, words_embs: torch.Tensor) -> torch.Tensor:
        """Word features [b,D,T] padded to ``words_length`` words (zeros; the losses mask them
        by the caption lengths), then gathered."""
        if not self.world.parallel:
            return words_embs
        return self.rows(F.pad(words_embs, (0, self.words_length - words_embs.size(2))))

    def host(self, values: Sequence | np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Per-row values kept on the host (caption lengths, class ids), concatenated."""
        if not self.world.parallel:
            return values
        parts = gather_objects(values, self.world)
        if isinstance(values, torch.Tensor):
            return torch.cat(parts)
        return np.concatenate([np.asarray(p) for p in parts])


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The network inside a DistributedDataParallel wrapper (itself otherwise)."""
    return module.module if isinstance(module, torch.nn.parallel.DistributedDataParallel) else module


def data_parallel(module: torch.nn.Module, world: World, device: torch.device, sync_bn: bool) -> torch.nn.Module:
    """``module`` for the training step: as it is in a single process; under torchrun
    wrapped in DistributedDataParallel (gradients averaged over the processes during the
    backward), its BatchNorm layers first made SyncBatchNorm with ``sync_bn`` (in place:
    the state_dict keys stay the same)."""
    if not world.parallel:
        return module
    if sync_bn:  # replaces the layers inside ``module``, which callers keep using
        torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
