"""Command-line entry points, with the original's arguments (--cfg, --gpu, --data_dir,
--manualSeed) plus --output_dir and --set KEY=VALUE overrides."""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shlex
import sys
from pathlib import Path

from . import distributed
from .config import apply_overrides, load_config, record_config
from .errors import USER_ERRORS, report  # noqa: F401 (cli.USER_ERRORS and cli.report stay importable)
from .runtime import run_dir, seed_everything, select_device
from .speed import set_tf32


def base_parser(description: str, default_cfg: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cfg", dest="cfg_file", default=default_cfg, help="YAML config file")
    parser.add_argument("--gpu", dest="gpu_id", type=int, default=None, help="CUDA device id; -1 for the CPU")
    parser.add_argument("--data_dir", default="", help="overrides DATA_DIR")
    parser.add_argument("--manualSeed", type=int, default=None, help="seed for random, numpy and torch")
    parser.add_argument("--output_dir", default=None,
                        help="run folder (default: RUN.OUTPUT_DIR/{DATASET_NAME}_{CONFIG_NAME}_{timestamp})")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. TRAIN.MAX_EPOCH=2")
    return parser


def setup(args: argparse.Namespace):
    """Config, device and seed from the parsed arguments, as the original's __main__.
    Under torchrun this process joins the group (distributed.current() says its place):
    LOCAL_RANK picks its CUDA device (with CUDA; --gpu -1 runs every process on the
    CPU, with gloo), every process takes rank 0's seed, and only rank 0 logs at INFO."""
    cfg = load_config(args.cfg_file)
    apply_overrides(cfg, args.overrides)
    if args.gpu_id is not None:
        cfg.GPU_ID = args.gpu_id
        cfg.CUDA = args.gpu_id != -1
    if args.data_dir:
        cfg.DATA_DIR = args.data_dir
    if distributed.launched_by_torchrun() and cfg.CUDA:
        cfg.GPU_ID = int(os.environ["LOCAL_RANK"])
    device = select_device(cfg.GPU_ID if cfg.CUDA else -1)
    world = distributed.init(cuda=device.type == "cuda")
    logging.basicConfig(level=logging.INFO if world.is_main else logging.WARNING,
                        format=f"%(asctime)s %(levelname)s{f' rank {world.rank}' if world.parallel else ''} "
                               "%(name)s: %(message)s")
    set_tf32(cfg.RUN.TF32)
    seed = args.manualSeed
    if seed is None:
        seed = 100 if not cfg.TRAIN.FLAG else random.randint(1, 10000)
    seed = distributed.broadcast(seed, world)
    seed_everything(seed)
    logging.getLogger("attngan").info("seed %d, device %s, config %s%s", seed, device, args.cfg_file,
                                      f", {world.size} processes" if world.parallel else "")
    return cfg, device, seed


def shared_run_dir(cfg, output_dir: str | None) -> Path:
    """The run folder (runtime.run_dir): made by rank 0, its path shared with every process."""
    world = distributed.current()
    path = run_dir(cfg, output_dir) if world.is_main else None
    return Path(distributed.broadcast(str(path) if path else None, world))


def record_run(cfg, out: Path, seed: int, script: str, argv: list[str] | None) -> None:
    """The run's resolved config in ``out/config.yml``, headed by its command (as ``python
    code/<script>``, whichever entry point ran it) and seed."""
    command = "python " + shlex.join([f"code/{script}", *(sys.argv[1:] if argv is None else argv)])
    record_config(cfg, out, f"{command}\nseed {seed}; --cfg this file reproduces the run's settings")


def pretrain_damsm_main(argv: list[str] | None = None) -> int:
    """``attngan-pretrain-damsm`` / ``python code/pretrain_DAMSM.py``."""
    from .training.damsm import train_damsm

    args = base_parser("Pretrain the DAMSM text and image encoders.", "cfg/DAMSM/bird.yml").parse_args(argv)
    try:
        cfg, device, seed = setup(args)
        world = distributed.current()
        out = shared_run_dir(cfg, args.output_dir)
        if world.is_main:
            record_run(cfg, out, seed, "pretrain_DAMSM.py", argv)
        metrics = train_damsm(cfg, device, out, seed, world)
    except USER_ERRORS as err:
        return report(err)
    finally:
        distributed.shutdown()
    if world.is_main:
        print(json.dumps({"output_dir": str(out), **{k: round(float(v), 4) for k, v in metrics.items()}}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``attngan-train`` / ``python code/main.py``: train AttnGAN, or, with TRAIN.FLAG
    False in the config (the eval_*.yml files), sample from a trained generator."""
    parser = base_parser("Train AttnGAN (TRAIN.FLAG True) or sample from a generator (False).", "cfg/bird_attn2.yml")
    parser.add_argument("--resume", default="", help="a Model/training_state.pth to continue exactly from")
    args, _ = parser.parse_known_args(argv)
    try:
        cfg = load_config(args.cfg_file)
        apply_overrides(cfg, args.overrides)
    except USER_ERRORS as err:
        return report(err)
    if not cfg.TRAIN.FLAG:
        from .sampling import sample_main

        return sample_main(argv)
    args = parser.parse_args(argv)
    from .training.gan import train_gan

    try:
        cfg, device, seed = setup(args)
        if args.resume:
            cfg.RUN.RESUME = args.resume
        output_dir = args.output_dir
        if cfg.RUN.RESUME and output_dir is None:
            output_dir = str(Path(cfg.RUN.RESUME).resolve().parent.parent)
        world = distributed.current()
        out = shared_run_dir(cfg, output_dir)
        if world.is_main:
            record_run(cfg, out, seed, "main.py", argv)
        last = train_gan(cfg, device, out, seed, world=world)
    except USER_ERRORS as err:
        return report(err)
    finally:
        distributed.shutdown()
    if world.is_main:
        print(json.dumps({"output_dir": str(out), "checkpoint": str(last)}))
    return 0
