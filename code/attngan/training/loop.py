"""The epoch loop both training stages share: the epoch's loader, its progress bar, the
step, the agreed stop and state decisions after each step, the epoch's end, a stop on
Ctrl-C or SIGTERM, and the clean-up however the run ends. A trainer (DAMSM's, AttnGAN's)
keeps only what is its own: its step, its epoch's end, its state and its result.

Conventions: every method is called on every torchrun process; a method that writes files
checks ``self.world.is_main`` itself (and gathers from the other processes first where it
must). ``evaluate``, where a trainer has it, is the periodic evaluation of its networks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ..data.loader import epoch_loader, shutdown_workers
from ..distributed import World, barrier
from .state import StateSchedule, StopSignals, after_step

log = logging.getLogger(__name__)


class EpochTrainer:
    """Train to TRAIN.MAX_EPOCH with ``train``. A subclass sets ``label``, ``cfg``,
    ``device``, ``world``, ``seed``, ``model_dir``, ``train_set``, ``batch_size`` (the
    global batch), ``epoch`` and ``step`` (batches done in it), and gives the hooks below."""

    label: str
    cfg: Any
    world: World
    model_dir: Path
    epoch: int
    step: int

    def __init__(self) -> None:
        self.stop = StopSignals()
        self.schedule = StateSchedule(self.cfg.RUN.STATE_EVERY_STEPS, self.cfg.RUN.STATE_EVERY_MINUTES)
        self.writer: SummaryWriter | None = None

    # ---- the hooks ---------------------------------------------------------------------
    @property
    def progress(self) -> int:
        """The step count RUN.STATE_EVERY_STEPS counts."""
        raise NotImplementedError

    def begin_training(self) -> None:
        """Before the first epoch (the TensorBoard writer: ``self.writer`` on rank 0)."""

    def begin_epoch(self) -> None:
        """Before an epoch's first step."""

    def train_one(self, batch, bar: tqdm) -> None:
        """One step on this process's share of ``batch``, with its counting and logging."""
        raise NotImplementedError

    def end_epoch(self) -> None:
        """After an epoch's last step: its validation, snapshots, the next epoch's start
        (``epoch`` + 1, ``step`` 0) and the state."""
        raise NotImplementedError

    def finish(self) -> None:
        """After the last epoch (not after a stop): the final files."""

    def save_state(self) -> Path:
        """Write the training state (rank 0), and return its path."""
        raise NotImplementedError

    def result(self, stopped: bool) -> Any:
        """What ``train`` returns."""
        raise NotImplementedError

    # ---- the loop ------------------------------------------------------------------------
    def train(self, stop_after_steps: int | None = None) -> Any:
        """Run to TRAIN.MAX_EPOCH (or until a stop: Ctrl-C, SIGTERM, or ``stop_after_steps``
        steps of this call, for tests and time-boxed runs); the state is saved at a stop."""
        try:
            self.begin_training()
            with self.stop.installed():
                self.run_epochs(stop_after_steps)
                if self.stop.requested:
                    path = self.save_state()
                    if self.world.is_main:
                        log.warning(
                            "stopped at epoch %d step %d; continue with --resume %s", self.epoch, self.step, path
                        )
                else:
                    self.finish()
        finally:
            shutdown_workers()  # however the run ends: an error, a stop, the last step
            if self.writer is not None:
                self.writer.close()
        barrier(self.world)
        return self.result(self.stop.requested)

    def run_epochs(self, stop_after_steps: int | None) -> None:
        steps_here = 0
        while self.epoch < self.cfg.TRAIN.MAX_EPOCH:
            loader = epoch_loader(
                self.train_set,
                self.batch_size,
                self.cfg.WORKERS,
                self.seed,
                self.epoch,
                self.step,
                pin_memory=self.device.type == "cuda",
                rank=self.world.rank,
                processes=self.world.size,
            )
            self.begin_epoch()
            bar = tqdm(
                loader,
                desc=f"{self.label} epoch {self.epoch}",
                leave=False,
                dynamic_ncols=True,
                disable=None if self.world.is_main else True,
            )
            for batch in bar:
                self.train_one(batch, bar)
                steps_here += 1
                limit = stop_after_steps is not None and steps_here >= stop_after_steps
                stop, due = after_step(self.stop, self.schedule, self.progress, self.world, limit)
                if stop:
                    return
                if due:
                    self.save_state()
            if self.stop.requested:  # a stop agreed at the epoch's last step
                return
            self.end_epoch()
