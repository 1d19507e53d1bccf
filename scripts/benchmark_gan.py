"""AttnGAN training throughput: steps per second and peak GPU memory of the real training
step (data loading included) at the shapes of a config, on generated data.

Writes a shapes dataset at the config's final resolution and random DAMSM encoders of the
config's shapes (the cost of a step does not depend on the weights), then times
``GanTrainer.train_step`` after a warm-up. For example, the paper's CUB AttnGAN2
(batch 20, three stages up to 256x256):

    python scripts/benchmark_gan.py --cfg cfg/bird_attn2.yml --gpu 0 --steps 200
    python scripts/benchmark_gan.py --cfg cfg/bird_attn2.yml --gpu 0 --steps 200 --set RUN.PRECISION=bf16
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "code"))

from attngan.checkpoint import save_weights  # noqa: E402
from attngan.config import apply_overrides, load_config  # noqa: E402
from attngan.data.loader import epoch_loader  # noqa: E402
from attngan.data.synthetic import make_shapes_dataset  # noqa: E402
from attngan.data.text import load_text_data  # noqa: E402
from attngan.models import build_image_encoder, build_text_encoder  # noqa: E402
from attngan.runtime import run_dir, seed_everything, select_device  # noqa: E402
from attngan.training.gan import GanTrainer  # noqa: E402


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark(cfg, device: torch.device, work: Path, steps: int, warmup: int, num_images: int) -> dict:
    final_size = cfg.TREE.BASE_SIZE * 2 ** (cfg.TREE.BRANCH_NUM - 1)
    data = work / "data"
    make_shapes_dataset(data, num_images=num_images, image_size=final_size, seed=0)
    cfg.DATASET_NAME, cfg.DATA_DIR = "shapes", str(data)
    n_words = load_text_data(data, cfg.TEXT.CAPTIONS_PER_IMAGE).n_words
    save_weights(build_text_encoder(cfg, n_words), work / "enc" / "text_encoder0.pth")
    save_weights(build_image_encoder(cfg), work / "enc" / "image_encoder0.pth")
    cfg.TRAIN.NET_E = str(work / "enc" / "text_encoder0.pth")
    seed_everything(0)
    trainer = GanTrainer(cfg, device, run_dir(cfg, str(work / "run")), seed=0)
    times, epoch = [], 0
    while len(times) < warmup + steps:
        for batch in epoch_loader(trainer.dataset, cfg.TRAIN.BATCH_SIZE, cfg.WORKERS, 0, epoch):
            synchronize(device)
            start = time.perf_counter()
            if len(times) == warmup and device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            trainer.train_step(batch)
            synchronize(device)
            times.append(time.perf_counter() - start)
            if len(times) == warmup + steps:
                break
        epoch += 1
    timed = sorted(times[warmup:])
    total = sum(timed)
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": cfg.RUN.PRECISION, "batch_size": cfg.TRAIN.BATCH_SIZE, "stages": cfg.TREE.BRANCH_NUM,
        "resolution": final_size, "steps": steps, "steps_per_s": steps / total,
        "images_per_s": steps * cfg.TRAIN.BATCH_SIZE / total, "median_step_ms": 1000 * timed[len(timed) // 2],
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "torch": torch.__version__,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", default=str(ROOT / "cfg/bird_attn2.yml"))
    parser.add_argument("--gpu", type=int, default=0, help="CUDA device id, -1 for the CPU")
    parser.add_argument("--steps", type=int, default=200, help="timed steps")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first (cuDNN autotuning)")
    parser.add_argument("--num_images", type=int, default=600, help="size of the generated dataset")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args()
    cfg = load_config(args.cfg)
    apply_overrides(cfg, args.set)
    device = select_device(args.gpu)
    with tempfile.TemporaryDirectory() as work:
        result = benchmark(cfg, device, Path(work), args.steps, args.warmup, args.num_images)
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
