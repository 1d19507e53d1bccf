"""Run-time plumbing shared by the commands: device, seeds, output folders, and scoped
model modes and random states."""

from __future__ import annotations

import contextlib
import datetime
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from easydict import EasyDict

from .errors import SetupError


def select_device(gpu_id: int) -> torch.device:
    """``-1`` is the CPU; any other id must name a CUDA device that exists."""
    if gpu_id == -1:
        return torch.device("cpu")
    if gpu_id < -1:
        raise SetupError(f"--gpu {gpu_id}: use -1 for the CPU or a CUDA device id >= 0")
    if not torch.cuda.is_available():
        raise SetupError(
            f"--gpu {gpu_id} asks for CUDA device {gpu_id}, but this PyTorch sees no CUDA "
            "device; use --gpu -1 to run on the CPU"
        )
    if gpu_id >= torch.cuda.device_count():
        raise SetupError(f"--gpu {gpu_id}: only {torch.cuda.device_count()} CUDA device(s) visible")
    torch.cuda.set_device(gpu_id)
    torch.backends.cudnn.benchmark = True
    return torch.device("cuda", gpu_id)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators, as the original's --manualSeed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


RUN_SUBFOLDERS = ("Model", "Image", "Log")


def run_path(cfg: EasyDict, output_dir: str | None = None) -> Path:
    """``output/{DATASET_NAME}_{CONFIG_NAME}_{timestamp}`` as the original, or ``output_dir``."""
    if output_dir is None:
        stamp = datetime.datetime.now().strftime("%Y_%m_%d_%H_%M_%S")
        output_dir = Path(cfg.RUN.OUTPUT_DIR) / f"{cfg.DATASET_NAME}_{cfg.CONFIG_NAME}_{stamp}"
    return Path(output_dir)


def run_dir(cfg: EasyDict, output_dir: str | None = None) -> Path:
    """``run_path``, with its Model/, Image/ and Log/ folders made."""
    root = run_path(cfg, output_dir)
    for sub in RUN_SUBFOLDERS:
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def eval_mode(*modules: nn.Module | None):
    """Modules in eval mode for the block, their own modes restored afterwards (the
    training loop evaluates networks it is training)."""
    modes = [(m, m.training) for m in modules if m is not None]
    for m, _ in modes:
        m.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.train(training)


@contextlib.contextmanager
def forked_rng(device: torch.device):
    """torch's generators (CPU and ``device``) restored after the block, so that an
    evaluation during training does not change the run's random draws."""
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    with torch.random.fork_rng(devices=devices):
        yield
