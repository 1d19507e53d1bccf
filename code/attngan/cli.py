"""Command-line entry points, with the original's arguments (--cfg, --gpu, --data_dir,
--manualSeed) plus --output_dir and --set KEY=VALUE overrides."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

from . import distributed
from .config import apply_overrides, check_values, load_config, record_config
from .errors import USER_ERRORS, CommandParser, OptionError, lower_on_oom, report
from .run_folder import output_folder
from .runtime import RUN_SUBFOLDERS, run_path, seed_everything, select_device
from .speed import set_tf32


def base_parser(description: str, default_cfg: str) -> argparse.ArgumentParser:
    parser = CommandParser(description=description)  # with --debug
    parser.add_argument("--cfg", dest="cfg_file", default=default_cfg, help="YAML config file")
    parser.add_argument("--gpu", dest="gpu_id", type=int, default=None, help="CUDA device id; -1 for the CPU")
    parser.add_argument("--data_dir", default="", help="overrides DATA_DIR")
    parser.add_argument("--manualSeed", type=int, default=None, help="seed for random, numpy and torch")
    parser.add_argument(
        "--output_dir",
        default=None,
        help="run folder (default: RUN.OUTPUT_DIR/{DATASET_NAME}_{CONFIG_NAME}_{timestamp})",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, e.g. TRAIN.MAX_EPOCH=2",
    )
    return parser


def setup(args: argparse.Namespace, training: str | None = None):
    """Config, device and seed from the parsed arguments, as the original's __main__; the
    merged config's values checked (config.check_values; ``training``: 'DAMSM' or 'AttnGAN').
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
    check_values(cfg, training)
    if distributed.launched_by_torchrun() and cfg.CUDA:
        cfg.GPU_ID = int(os.environ["LOCAL_RANK"])
    device = select_device(cfg.GPU_ID if cfg.CUDA else -1)
    world = distributed.init(cuda=device.type == "cuda")
    logging.basicConfig(
        level=logging.INFO if world.is_main else logging.WARNING,
        format=f"%(asctime)s %(levelname)s{f' rank {world.rank}' if world.parallel else ''} %(name)s: %(message)s",
    )
    set_tf32(cfg.RUN.TF32)
    seed = args.manualSeed
    if seed is None:
        seed = 100 if not cfg.TRAIN.FLAG else random.randint(1, 10000)
    seed = distributed.broadcast(seed, world)
    seed_everything(seed)
    logging.getLogger("attngan").info(
        "seed %d, device %s, config %s%s",
        seed,
        device,
        args.cfg_file,
        f", {world.size} processes" if world.parallel else "",
    )
    return cfg, device, seed


@contextlib.contextmanager
def shared_run_dir(cfg, output_dir: str | None) -> Iterator[Path]:
    """The run folder (runtime.run_path) for the block, its path shared with every process:
    made and probed for writing by rank 0, and left as it was found when the block fails
    before it saved a checkpoint or an image (run_folder.output_folder)."""
    world = distributed.current()
    path = run_path(cfg, output_dir) if world.is_main else None
    path = Path(distributed.broadcast(str(path) if path else None, world))
    with output_folder(path, RUN_SUBFOLDERS, saved_in=("Model", "Image"), active=world.is_main) as out:
        yield out


def record_run(cfg, out: Path, seed: int, script: str, argv: list[str] | None) -> None:
    """The run's resolved config in ``out/config.yml``, headed by its command (as ``python
    code/<script>``, whichever entry point ran it) and seed."""
    command = "python " + shlex.join([f"code/{script}", *(sys.argv[1:] if argv is None else argv)])
    record_config(cfg, out, f"{command}\nseed {seed}; --cfg this file reproduces the run's settings")


def add_resume(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resume", default="", help="a Model/training_state.pth to continue exactly from")


def resumed_output_dir(cfg, args: argparse.Namespace) -> str | None:
    """--resume (or RUN.RESUME) into cfg; the run folder: --output_dir, else the resumed
    run's own (the state's Model/ folder's parent)."""
    if args.resume:
        cfg.RUN.RESUME = args.resume
    if cfg.RUN.RESUME and args.output_dir is None:
        return str(Path(cfg.RUN.RESUME).resolve().parent.parent)
    return args.output_dir


def run_training(args: argparse.Namespace, argv: list[str] | None, stage: str, script: str, train) -> int:
    """A training command: setup, the shared run folder and its config record, then
    ``train(cfg, device, out, seed, world)`` -> the fields of the JSON line rank 0 prints.
    Every user error is one line, exit status 2."""
    try:
        cfg, device, seed = setup(args, training=stage)
        world = distributed.current()
        with (
            shared_run_dir(cfg, resumed_output_dir(cfg, args)) as out,
            lower_on_oom("TRAIN.BATCH_SIZE", cfg.TRAIN.BATCH_SIZE),
        ):
            if world.is_main:
                record_run(cfg, out, seed, script, argv)
            result = train(cfg, device, out, seed, world)
    except USER_ERRORS as err:
        return report(err)
    finally:
        distributed.shutdown()
    if world.is_main:
        print(json.dumps({"output_dir": str(out), **result}))
    return 0


def pretrain_damsm_main(argv: list[str] | None = None) -> int:
    """``attngan-pretrain-damsm`` / ``python code/pretrain_DAMSM.py``."""
    from .training.damsm import train_damsm

    parser = base_parser("Pretrain the DAMSM text and image encoders.", "cfg/DAMSM/bird.yml")
    add_resume(parser)

    def train(cfg, device, out, seed, world):
        return {k: round(float(v), 4) for k, v in train_damsm(cfg, device, out, seed, world).items()}

    return run_training(parser.parse_args(argv), argv, "DAMSM", "pretrain_DAMSM.py", train)


def main(argv: list[str] | None = None) -> int:
    """``attngan-train`` / ``python code/main.py``: train AttnGAN, or, with TRAIN.FLAG
    False in the config (the eval_*.yml files), sample from a trained generator."""
    parser = base_parser("Train AttnGAN (TRAIN.FLAG True) or sample from a generator (False).", "cfg/bird_attn2.yml")
    add_resume(parser)
    args, _ = parser.parse_known_args(argv)
    try:
        cfg = load_config(args.cfg_file)
        apply_overrides(cfg, args.overrides)
    except USER_ERRORS as err:
        return report(err)
    if not cfg.TRAIN.FLAG:
        return sample_main(argv)
    from .evaluation.periodic import during_training
    from .training.gan import train_gan

    def train(cfg, device, out, seed, world):
        evaluate = during_training(cfg, device, world)
        return {"checkpoint": str(train_gan(cfg, device, out, seed, world=world, evaluate=evaluate))}

    return run_training(parser.parse_args(argv), argv, "AttnGAN", "main.py", train)


def sample_main(argv: list[str] | None = None) -> int:
    """``attngan-sample``: ``--caption TEXT`` (repeatable) samples those captions; without
    it, B_VALIDATION picks the example captions (False) or the test split (True), as the
    original's ``main.py`` with TRAIN.FLAG False. Seed 100 unless --manualSeed."""
    from .sampling import gen_example, output_root, sample_captions, sample_validation

    parser = base_parser(
        "Generate images with a trained AttnGAN generator (TRAIN.NET_G, TRAIN.NET_E).", "cfg/eval_bird.yml"
    )
    parser.add_argument(
        "--caption",
        action="append",
        default=[],
        metavar="TEXT",
        help="a caption to draw (repeatable); without it, the config's B_VALIDATION decides",
    )
    parser.add_argument("--n", type=int, default=None, help="images per --caption (default 1)")
    parser.add_argument(
        "--out",
        default=None,
        help="folder for --caption images (default <NET_G without .pth>/captions; --output_dir means the same)",
    )
    args = parser.parse_args(argv)
    out = args.out or args.output_dir
    if not args.caption and (out is not None or args.n is not None):
        parser.error(
            "--n, --out and --output_dir go with --caption; the example and validation images are "
            "written under <NET_G without .pth>/, as the original"
        )
    if args.manualSeed is None:
        args.manualSeed = 100
    try:
        cfg, device, seed = setup(args)
        mode = "captions" if args.caption else "validation" if cfg.B_VALIDATION else "example"
        out_dir = {
            "captions": Path(out) if out else output_root(cfg.TRAIN.NET_G) / "captions",
            "validation": output_root(cfg.TRAIN.NET_G) / "valid" / "single",
            "example": output_root(cfg.TRAIN.NET_G),
        }[mode]
        option = "--out" if mode == "captions" else "TRAIN.NET_G (the images go under its name without .pth)"
        with output_folder(out_dir, option=option), lower_on_oom("TRAIN.BATCH_SIZE", cfg.TRAIN.BATCH_SIZE):
            if mode == "captions":
                n = 1 if args.n is None else args.n
                summary = {"files": len(sample_captions(cfg, device, args.caption, out_dir, n, seed))}
            elif mode == "validation":
                summary = {"images": sample_validation(cfg, device, seed)}
            else:
                summary = {"files": len(gen_example(cfg, device))}
    except USER_ERRORS as err:
        return report(err)
    print(json.dumps({"mode": mode, "output_dir": str(out_dir), **summary}))
    return 0


def eval_main(argv: list[str] | None = None) -> int:
    """``attngan-eval``: score TRAIN.NET_G (or --image_dir) and write metrics.json, report.md
    and figures into --output_dir (default RUN.OUTPUT_DIR/eval/<dataset>_<model>_<time>)."""
    from .data.manifest import IN_FOLDER
    from .evaluation.folder import MANIFEST
    from .evaluation.published import write_real_images
    from .evaluation.report import scalars
    from .evaluation.run import METRICS, default_out_dir, evaluate, parse_metrics

    parser = base_parser(
        "Score a text-to-image generator (TRAIN.NET_G) or a folder of images with R-precision, "
        "Inception score, FID, attention localisation and object match.",
        "cfg/eval_bird.yml",
    )
    parser.add_argument(
        "--metrics", default=None, help=f"comma-separated, of {','.join(METRICS)} (default EVAL.METRICS)"
    )
    parser.add_argument("--num_samples", type=int, default=None, help="images to generate (default EVAL.NUM_SAMPLES)")
    parser.add_argument("--batch_size", type=int, default=None, help="default EVAL.BATCH_SIZE")
    parser.add_argument(
        "--image_dir",
        default=None,
        help=f"score this folder's images instead of generating: its {' or '.join(IN_FOLDER)} lists them with "
        "their captions (docs/captioned_images.md)",
    )
    parser.add_argument(
        "--save_images",
        action="store_true",
        help=f"keep every generated image in <output_dir>/images with a {MANIFEST}",
    )
    parser.add_argument(
        "--real",
        action="store_true",
        help="score the test images themselves (each once, with its first caption; written to "
        "<output_dir>/real_images) with the same metrics: the ceiling beside a model",
    )
    args = parser.parse_args(argv)
    try:
        if args.metrics is not None:
            parse_metrics(args.metrics)  # before anything loads
        cfg, device, _ = setup(args)
        world = distributed.current()
        image_dir = args.image_dir or cfg.EVAL.IMAGE_DIR or None
        if args.real and (image_dir or args.save_images or world.parallel):
            raise OptionError(
                "--real scores the test images on one process: not with --image_dir, --save_images or torchrun"
            )
        out_dir = Path(args.output_dir) if args.output_dir else default_out_dir(cfg, "real" if args.real else image_dir)
        out_dir = Path(distributed.broadcast(str(out_dir), world))  # rank 0's time stamp
        batch_size = args.batch_size or cfg.EVAL.BATCH_SIZE
        with (
            output_folder(out_dir, active=world.is_main),
            lower_on_oom("--batch_size" if args.batch_size else "EVAL.BATCH_SIZE", batch_size),
        ):
            if args.real:
                image_dir = write_real_images(cfg, out_dir / "real_images", batch_size)
            summary = evaluate(
                cfg,
                device,
                args.metrics or cfg.EVAL.METRICS,
                out_dir,
                num_samples=args.num_samples,
                batch_size=args.batch_size,
                seed=args.manualSeed,
                image_dir=image_dir,
                save_images=args.save_images,
                world=world,
            )
    except USER_ERRORS as err:
        return report(err)
    finally:
        distributed.shutdown()
    if not world.is_main:
        return 0
    print(
        json.dumps(
            {
                "output_dir": str(out_dir),
                "report": str(out_dir / "report.md"),
                **{k.split("/", 1)[1]: round(v, 4) for k, v in scalars(summary).items()},
            }
        )
    )
    return 0


def fid_stats_main(argv: list[str] | None = None) -> int:
    """``attngan-fid-stats``: the real test images' statistics for fid_dmgan, saved in
    DM-GAN's .npz format (mu, sigma) for EVAL.FID_DMGAN_STATS."""
    from .evaluation.published import generated_size, save_dmgan_statistics

    parser = base_parser(
        "Compute fid_dmgan's reference statistics (DM-GAN's 'Pytorch FID' steps) from the test split of "
        "DATA_DIR and save them as an .npz with mu and sigma, the format of DM-GAN's bird_val.npz.",
        "cfg/eval_bird.yml",
    )
    parser.add_argument("--out", required=True, help="the .npz to write, e.g. data/birds/fid_dmgan_test256.npz")
    parser.add_argument(
        "--size", type=int, default=None, help="px of the test images (default: G's last stage, 256 for AttnGAN2)"
    )
    parser.add_argument(
        "--pad_to",
        type=int,
        default=None,
        help="pad the test images to this many views with flips and shifts, as DF-GAN did for CUB "
        "(e.g. 30000; default EVAL.FID_DMGAN_REAL_IMAGES, 0 = each image once)",
    )
    parser.add_argument("--batch_size", type=int, default=None, help="default EVAL.BATCH_SIZE")
    args = parser.parse_args(argv)
    try:
        cfg, device, _ = setup(args)
        if args.pad_to is not None:
            cfg.EVAL.FID_DMGAN_REAL_IMAGES = args.pad_to
        size = args.size or generated_size(cfg)
        seed = cfg.EVAL.SEED if args.manualSeed is None else args.manualSeed
        summary = save_dmgan_statistics(cfg, device, args.out, size, args.batch_size or cfg.EVAL.BATCH_SIZE, seed)
    except USER_ERRORS as err:
        return report(err)
    print(json.dumps(summary))
    return 0
