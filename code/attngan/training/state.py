"""What both training loops need to be stopped and continued exactly: the random
generators' states, a stop on Ctrl-C or SIGTERM, when to write the state mid-epoch, and
the state file itself, written with a checksum beside it, the previous one kept until the
next is complete, and read back with a fall-back to the previous one when it is truncated
or corrupt."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import CheckpointError
from ..distributed import World, any_process
from ..files import sha256_file, write_atomic

log = logging.getLogger(__name__)
STATE_FILE = "training_state.pth"


def previous_of(path: Path) -> Path:
    """The state written before ``path``'s: kept until a newer one is complete."""
    return path.with_name(path.stem + ".previous" + path.suffix)


def checksum_of(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def save_state(state: dict, path: str | Path) -> Path:
    """Write ``state`` to ``path``: to a temporary file first, then the current file (and
    its checksum) becomes the previous one, then the new one takes its name. A kill at any
    moment leaves a complete current or previous state."""
    path = Path(path)
    digest = {}

    def keep_previous(new: Path) -> None:
        digest["sha256"] = sha256_file(new)
        if path.exists():
            # In this order, a kill between any two steps leaves each file with its own
            # checksum or none (a file without one is read unchecked: it was renamed whole).
            checksum_of(previous_of(path)).unlink(missing_ok=True)
            os.replace(path, previous_of(path))
            if checksum_of(path).exists():
                os.replace(checksum_of(path), checksum_of(previous_of(path)))

    write_atomic(path, lambda f: torch.save(state, f), durable=True, before_replace=keep_previous)
    record = {"sha256": digest["sha256"], "bytes": path.stat().st_size}
    write_atomic(checksum_of(path), (json.dumps(record) + "\n").encode())
    return path


def _read(path: Path, device: torch.device) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such training state")
    if checksum_of(path).is_file():
        expected = json.loads(checksum_of(path).read_text())
        if path.stat().st_size != expected["bytes"] or sha256_file(path) != expected["sha256"]:
            raise CheckpointError(
                f"{path}: truncated or corrupt (its size or sha256 differs from {checksum_of(path).name}'s)"
            )
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path}: not a readable training state ({err})") from err
    if not isinstance(state, dict) or "epoch" not in state:
        raise CheckpointError(f"{path}: not a training state (a Model/{STATE_FILE} of this project)")
    return state


def load_state(path: str | Path, device: torch.device) -> tuple[dict, Path]:
    """-> (the state at ``path``, or at its previous one when it is missing, truncated or
    corrupt, with a warning; the file used). Neither readable: a CheckpointError naming both."""
    path = Path(path)
    try:
        return _read(path, device), path
    except CheckpointError as err:
        previous = previous_of(path)
        if not previous.is_file():
            raise
        log.warning("%s; continuing from the previous state, %s", err, previous)
        try:
            return _read(previous, device), previous
        except CheckpointError as err2:
            raise CheckpointError(f"{err}; and the previous state: {err2}") from err2


def rng_state(device: torch.device) -> dict:
    """The generators' states; on CUDA the run's device's (every process draws from its
    own device's generator)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device.type == "cuda":
        cuda = state["cuda"]  # a list of every device's state in files written before torchrun support
        torch.cuda.set_rng_state(cuda[0] if isinstance(cuda, list) else cuda, device)


class StateSchedule:
    """When to write the state inside an epoch: every RUN.STATE_EVERY_STEPS steps and/or
    RUN.STATE_EVERY_MINUTES minutes (0: never) since the last write."""

    def __init__(self, every_steps: int, every_minutes: float):
        """Both >= 0 (config.check_values checks them)."""
        self.every_steps, self.every_seconds = every_steps, every_minutes * 60
        self.last = time.monotonic()

    def due(self, steps: int) -> bool:
        by_steps = self.every_steps > 0 and steps % self.every_steps == 0
        return by_steps or (self.every_seconds > 0 and time.monotonic() - self.last >= self.every_seconds)

    def written(self) -> None:
        self.last = time.monotonic()


class StopSignals:
    """Ctrl-C or SIGTERM sets ``requested`` (the loop saves and stops after its step); a
    second Ctrl-C aborts at once."""

    def __init__(self):
        self.requested = False

    def _request(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.warning("signal %d: saving the training state after this step (Ctrl-C again to abort)", signum)
        self.requested = True

    @contextlib.contextmanager
    def installed(self):
        handlers = {}
        with contextlib.suppress(ValueError):  # not the main thread: no handlers
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, self._request)
        try:
            yield self
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)


def after_step(
    stop: StopSignals, schedule: StateSchedule, steps: int, world: World, limit_reached: bool
) -> tuple[bool, bool]:
    """-> (stop now, write the state now) after a step, the same on every process whichever
    got the signal (``limit_reached``: the caller's step limit, as a SIGTERM)."""
    halt, due = any_process([stop.requested or limit_reached, schedule.due(steps)], world)
    stop.requested = stop.requested or halt
    return halt, due
