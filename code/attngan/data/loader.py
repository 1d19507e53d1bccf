"""Batches whose content depends only on (seed, epoch, position), so that a run resumed
in the middle of an epoch sees exactly the batches an uninterrupted run would.

The epoch's order is a permutation drawn from (seed, epoch); every item's random draws
(crop, flip, caption choice, word sampling: the dataset uses Python's, NumPy's and
torch's global generators, as the original) are seeded from (seed, epoch, index). This
holds with any number of workers, and the main process's generators are left untouched.
"""

from __future__ import annotations

import atexit
import random
import signal
import weakref
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..config import ConfigError


def item_seed(seed: int, epoch: int, index: int) -> int:
    return ((seed * 1_000_003 + epoch) * 10_000_019 + index) % 2**63


class SeededItems(Dataset):
    """Wraps a dataset; item ``(seed, index)`` is ``dataset[index]`` drawn under ``seed``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        return self._seeded(key, self.dataset.__getitem__)

    def caption_length(self, key: tuple[int, int]) -> int:
        """The length of item ``key``'s caption, without loading its images."""
        return self._seeded(key, self.dataset.caption)[1]

    @staticmethod
    def _seeded(key: tuple[int, int], get):
        seed, index = key
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)
            try:
                return get(index)
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


class EpochBatches(Sampler):
    """Shuffled batches of one epoch, the last incomplete one dropped (as the original),
    starting at batch ``start``; each element is an ``(item seed, index)`` key. With
    ``processes`` > 1 each batch is the global one, sorted by caption length (``lengths``
    of a key; stable, descending, as prepare_data sorts a batch), and this process
    (``rank``) gets its contiguous share: together the processes hold the rows one process
    would, in the same order."""

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int,
        epoch: int = 0,
        start: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        processes: int = 1,
        lengths: Callable[[tuple[int, int]], int] | None = None,
    ):
        self.size, self.batch_size, self.seed, self.epoch, self.start, self.shuffle = (
            size,
            batch_size,
            seed,
            epoch,
            start,
            shuffle,
        )
        self.rank, self.processes, self.lengths = rank, processes, lengths

    def __len__(self) -> int:
        return self.size // self.batch_size - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        if self.shuffle:
            order = torch.randperm(
                self.size, generator=torch.Generator().manual_seed(item_seed(self.seed, self.epoch, -1))
            )
        else:
            order = torch.arange(self.size)
        for b in range(self.start, self.size // self.batch_size):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size].tolist()
            keys = [(item_seed(self.seed, self.epoch, i), i) for i in idx]
            if self.processes > 1:
                share = self.batch_size // self.processes
                keys = sorted(keys, key=lambda k: -self.lengths(k))[self.rank * share : (self.rank + 1) * share]
            yield keys


class _WorkerLoader(DataLoader):
    """A DataLoader whose worker processes (which ignore SIGINT and SIGTERM) are shut down
    by ``shutdown_workers`` however the run ends."""

    def __iter__(self):
        iterator = super().__iter__()
        if self.num_workers > 0:
            _LIVE_ITERATORS.add(iterator)
        return iterator


_LIVE_ITERATORS: weakref.WeakSet = weakref.WeakSet()


def shutdown_workers() -> None:
    """Stop the worker processes of every epoch loader still iterating. Workers ignore
    SIGTERM (``ignore_stop_signals``), so they go only when their iterator tells them to;
    an iterator left behind by an error (its frames held by the traceback) would otherwise
    keep them, and Python's exit, which terminates and then joins child processes, would
    wait for them for ever. Called when a training run ends, and at exit."""
    for iterator in list(_LIVE_ITERATORS):
        # PyTorch's own clean-up (what the iterator's __del__ runs): the workers are told to
        # stop, joined, and their pids removed from the SIGCHLD watch. It is idempotent.
        iterator._shutdown_workers()
    _LIVE_ITERATORS.clear()


# Registered after multiprocessing's exit handler (torch imports it first), so it runs before it.
atexit.register(shutdown_workers)


def ignore_stop_signals(_worker_id: int) -> None:
    """In a DataLoader worker: leave Ctrl-C and SIGTERM to the main process. A terminal (or a
    scheduler stopping a job) signals the whole process group; a worker killed by it would
    fail the main process's next batch before it could save its state."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def epoch_loader(
    dataset: Dataset,
    batch_size: int,
    workers: int,
    seed: int,
    epoch: int,
    start: int = 0,
    shuffle: bool = True,
    pin_memory: bool = False,
    rank: int = 0,
    processes: int = 1,
) -> DataLoader:
    """The DataLoader of one epoch (from batch ``start``) of global batches of ``batch_size``,
    of which this process (``rank`` of ``processes``) reads its share. ``pin_memory`` (for
    a CUDA run): batches in page-locked memory, whose copies to the GPU overlap with its work."""
    if len(dataset) < batch_size:
        raise ConfigError(
            f"the dataset has {len(dataset)} items, fewer than TRAIN.BATCH_SIZE {batch_size} "
            "(batches drop the last incomplete one, so nothing would be trained)"
        )
    items = SeededItems(dataset)
    sampler = EpochBatches(len(dataset), batch_size, seed, epoch, start, shuffle, rank, processes, items.caption_length)
    # Its own generator: creating the iterator draws a base seed, which must not move the
    # global generator that the training step draws noise from.
    generator = torch.Generator().manual_seed(item_seed(seed, epoch, -2))
    return _WorkerLoader(
        items,
        batch_sampler=sampler,
        num_workers=workers,
        generator=generator,
        worker_init_fn=ignore_stop_signals,
        pin_memory=pin_memory,
    )
