"""Speed of the hot paths, side by side in one process: the faithful eager fp32 step as it
was before the speed work (the *reference*: every loss read back every step, Adam's
for-loop, no channels-last, no compilation), each speed setting alone, and the shipped
defaults, on the same generated data, initial weights, batch and noise.

Workloads: ``gan`` (the AttnGAN training step, data loading included), ``damsm`` (the DAMSM
pretraining step), ``sample`` (batched generation to uint8 images, captions/s) and
``eval`` (the evaluation's generation + R-precision path). For each setting it prints
steps/s, images/s, peak GPU memory, the one-time cost (the first steps' time beyond
the steady one: compilation, autotuning) and the first step's maximum relative difference
from the reference (losses and gradients; images for sampling; R-precision for eval).
Later steps drift apart by rounding alone, so only the first step is compared.

    python scripts/benchmark.py --workload gan --cfg cfg/shapes_attn2.yml --gpu -1
    python scripts/benchmark.py --workload damsm --cfg cfg/DAMSM/shapes.yml --gpu -1
    python scripts/benchmark.py --workload gan --cfg cfg/bird_attn2.yml --gpu 0
    python scripts/benchmark.py --workload damsm --cfg cfg/DAMSM/bird.yml --gpu 0
    python scripts/benchmark.py --workload sample --cfg cfg/bird_attn2.yml --gpu 0
    python scripts/benchmark.py --workload eval --cfg cfg/bird_attn2.yml --gpu 0
"""

from __future__ import annotations

import argparse
import copy
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
from attngan.data.datasets import build_dataset, prepare_data  # noqa: E402
from attngan.data.loader import epoch_loader  # noqa: E402
from attngan.data.synthetic import make_shapes_dataset  # noqa: E402
from attngan.data.text import load_text_data  # noqa: E402
from attngan.models import build_generator, build_image_encoder, build_text_encoder  # noqa: E402
from attngan.runtime import run_dir, seed_everything, select_device  # noqa: E402
from attngan.speed import adam_options, prepare, set_tf32  # noqa: E402
from attngan.training.damsm import damsm_optimizer, damsm_train_step  # noqa: E402
from attngan.training.gan import GanTrainer, as_floats  # noqa: E402

# RUN settings of each benchmarked setting. "sync" reads every loss back every step, as the
# step did before; the reference turns every speed setting off.
REFERENCE = {
    "FUSED_ADAM": False,
    "CHANNELS_LAST": "never",
    "COMPILE": "never",
    "TF32": False,
    "PRECISION": "fp32",
    "ENCODER_PRECISION": "fp32",
    "IMAGE_CACHE": False,
}
SETTINGS = {
    "reference": {**REFERENCE, "sync": True},
    "no_sync": REFERENCE,
    "image_cache": {**REFERENCE, "IMAGE_CACHE": True},
    "fused_adam": {**REFERENCE, "FUSED_ADAM": True},
    "channels_last": {**REFERENCE, "CHANNELS_LAST": "always"},
    "compile": {**REFERENCE, "COMPILE": "always"},
    "defaults": {},
    "bf16": {"PRECISION": "bf16"},
    "encoder_bf16": {"ENCODER_PRECISION": "bf16"},
    "tf32": {"TF32": True},
}
FIRST_STEP_SEED = 1234


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def with_setting(cfg, name: str):
    cfg = copy.deepcopy(cfg)
    for key, value in SETTINGS[name].items():
        if key != "sync":
            cfg.RUN[key] = value
    return cfg


def max_relative(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """max over the named tensors of max |a - b| / max |b|."""
    worst = 0.0
    for name, ref in b.items():
        scale = ref.abs().max().item()
        if scale:
            worst = max(worst, (a[name].float() - ref.float()).abs().max().item() / scale)
    return worst


def make_data(cfg, work: Path, num_images: int) -> None:
    """A shapes dataset at the config's final resolution and random DAMSM encoders of its
    shapes (the cost of a step does not depend on the weights); cfg points at them."""
    final_size = cfg.TREE.BASE_SIZE * 2 ** (cfg.TREE.BRANCH_NUM - 1)
    data = work / "data"
    make_shapes_dataset(data, num_images=num_images, image_size=max(final_size, 64), seed=0)
    cfg.DATASET_NAME, cfg.DATA_DIR = "shapes", str(data)
    n_words = load_text_data(data, cfg.TEXT.CAPTIONS_PER_IMAGE).n_words
    seed_everything(0)
    save_weights(build_text_encoder(cfg, n_words), work / "enc" / "text_encoder0.pth")
    save_weights(build_image_encoder(cfg), work / "enc" / "image_encoder0.pth")
    cfg.TRAIN.NET_E = str(work / "enc" / "text_encoder0.pth")


def make_random_model(cfg, work: Path, num_images: int) -> None:
    """``make_data``, and a random generator of the config's shape (TRAIN.NET_G points at
    it): everything a sampling command or attngan-serve loads, with no training."""
    make_data(cfg, work, num_images)
    cfg.TRAIN.NET_G = str(work / "netG_random.pth")
    torch.manual_seed(0)
    save_weights(build_generator(cfg), cfg.TRAIN.NET_G)


def first_step(step, batch, device: torch.device):
    """``step(batch)`` from torch seed FIRST_STEP_SEED: -> (its output, seconds)."""
    synchronize(device)
    start = time.perf_counter()
    torch.manual_seed(FIRST_STEP_SEED)
    out = step(batch)
    synchronize(device)
    return out, time.perf_counter() - start


def timed_loop(step, batches, device: torch.device, warmup: int, steps: int, sync_each: bool, first_s: float) -> dict:
    """Run ``step`` on ``warmup + steps`` batches after the first step (``first_s``
    seconds); the time of the first 1 + ``warmup`` steps beyond the steady one is the
    one-time cost. Synchronises only at the boundaries, unless ``sync_each``."""
    synchronize(device)
    start = time.perf_counter()
    for i, batch in enumerate(batches):
        if i == warmup:
            synchronize(device)
            middle = time.perf_counter()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
        out = step(batch)
        if sync_each:
            as_floats(out)
        if i + 1 == warmup + steps:
            break
    synchronize(device)
    end = time.perf_counter()
    steady = (end - middle) / steps
    return {
        "steps_per_s": 1 / steady,
        "one_time_s": max(0.0, first_s + (middle - start) - (warmup + 1) * steady),
        "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }


def batches_of(dataset, cfg, device, epochs: int = 1000):
    for epoch in range(epochs):
        yield from epoch_loader(dataset, cfg.TRAIN.BATCH_SIZE, cfg.WORKERS, 0, epoch, pin_memory=device.type == "cuda")


def gan_workload(cfg, device, work: Path, name: str, warmup: int, steps: int):
    seed_everything(0)
    trainer = GanTrainer(cfg, device, run_dir(cfg, str(work / f"run_{name}")), seed=0)
    losses, first_s = first_step(
        trainer.train_step, next(iter(epoch_loader(trainer.dataset, cfg.TRAIN.BATCH_SIZE, 0, 0, 0))), device
    )
    nets = {"G": trainer.net_g, **{f"D{i}": d for i, d in enumerate(trainer.nets_d)}}
    values = {
        f"grad/{n}/{k}": p.grad.detach().clone()
        for n, net in nets.items()
        for k, p in net.named_parameters()
        if p.grad is not None
    }
    values.update({f"loss/{k}": v.detach().clone() for k, v in losses.items()})
    timing = timed_loop(
        trainer.train_step,
        batches_of(trainer.dataset, cfg, device),
        device,
        warmup,
        steps,
        SETTINGS[name].get("sync", False),
        first_s,
    )
    return values, timing, cfg.TRAIN.BATCH_SIZE


def damsm_workload(cfg, device, work: Path, name: str, warmup: int, steps: int):
    dataset = build_dataset(cfg, "train")
    seed_everything(0)
    text = build_text_encoder(cfg, dataset.n_words).to(device).train()
    image = prepare(build_image_encoder(cfg).to(device).train(), cfg, device)
    optimizer = damsm_optimizer(text, image, cfg.TRAIN.ENCODER_LR, adam_options(cfg, device))

    def step(batch):
        imgs, captions, cap_lens, class_ids, _ = prepare_data(batch, device)
        return damsm_train_step(
            text, image, optimizer, imgs[-1], captions, cap_lens, class_ids, cfg.TRAIN.SMOOTH, cfg.TRAIN.RNN_GRAD_CLIP
        )[0]

    losses, first_s = first_step(step, next(iter(epoch_loader(dataset, cfg.TRAIN.BATCH_SIZE, 0, 0, 0))), device)
    values = {
        f"grad/{m}/{k}": p.grad.detach().clone()
        for m, net in (("text", text), ("image", image))
        for k, p in net.named_parameters()
        if p.grad is not None
    }
    values.update({f"loss/{k}": v.clone() for k, v in losses.items()})
    timing = timed_loop(
        step, batches_of(dataset, cfg, device), device, warmup, steps, SETTINGS[name].get("sync", False), first_s
    )
    return values, timing, cfg.TRAIN.BATCH_SIZE


def sample_workload(cfg, device, work: Path, name: str, warmup: int, steps: int, batch_size: int):
    from attngan.generation import encode_captions, generate
    from attngan.visualize import quantise

    text = load_text_data(cfg.DATA_DIR, cfg.TEXT.CAPTIONS_PER_IMAGE)
    sentences = [" ".join(text.ixtoword[i] for i in caption) for caption in text.test_captions[:batch_size]]
    batch = encode_captions(sentences, text.wordtoix)
    seed_everything(0)
    net_g = prepare(build_generator(cfg).to(device).eval(), cfg, device)
    text_encoder = build_text_encoder(cfg, text.n_words).to(device).eval()
    z = torch.randn(len(batch), cfg.GAN.Z_DIM, generator=torch.Generator().manual_seed(0)).to(device)

    def step(_):
        with torch.no_grad():
            fake_imgs, _ = generate(net_g, text_encoder, batch, z)
            return {"pixels": quantise(fake_imgs[-1]).cpu()}

    out, first_s = first_step(step, None, device)
    timing = timed_loop(step, iter(int, 1), device, warmup, steps, False, first_s)
    values = {"image": out["pixels"].float()}
    return values, timing, len(batch)


def eval_workload(cfg, device, work: Path, name: str, warmup: int, steps: int, batch_size: int):
    from attngan.evaluation import evaluate

    text = load_text_data(cfg.DATA_DIR, cfg.TEXT.CAPTIONS_PER_IMAGE)
    seed_everything(0)
    nets = {
        "net_g": prepare(build_generator(cfg).to(device), cfg, device),
        "text_encoder": build_text_encoder(cfg, text.n_words).to(device),
        "image_encoder": build_image_encoder(cfg).to(device),
    }
    num_samples = batch_size * steps

    def run(_):
        result = evaluate(
            cfg, device, {"rp"}, work / f"eval_{name}", num_samples=num_samples, batch_size=batch_size, **nets
        )
        return {"rp": torch.tensor(result["metrics"]["r_precision"]["mean"])}

    out, first_s = first_step(run, None, device)
    timing = timed_loop(run, iter(int, 1), device, 0, 1, False, first_s)
    values = {"r_precision": out["rp"]}
    timing["steps_per_s"] *= steps  # batches per second
    return values, timing, batch_size


WORKLOADS = {"gan": gan_workload, "damsm": damsm_workload, "sample": sample_workload, "eval": eval_workload}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="gan")
    parser.add_argument("--cfg", default=str(ROOT / "cfg/bird_attn2.yml"))
    parser.add_argument("--gpu", type=int, default=0, help="CUDA device id, -1 for the CPU")
    parser.add_argument(
        "--settings",
        default="reference,no_sync,image_cache,fused_adam,channels_last,compile,defaults",
        help=f"comma-separated, from: {', '.join(SETTINGS)}",
    )
    parser.add_argument("--steps", type=int, default=50, help="timed steps (batches for sample and eval)")
    parser.add_argument("--warmup", type=int, default=5, help="steps first, counted as the one-time cost")
    parser.add_argument("--batch_size", type=int, default=100, help="captions per batch (sample, eval)")
    parser.add_argument("--num_images", type=int, default=400, help="size of the generated dataset")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    names = args.settings.split(",")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting(s) {unknown}; choose from {', '.join(SETTINGS)}")
    cfg = load_config(args.cfg)
    apply_overrides(cfg, args.set)
    cfg.CUDA = args.gpu >= 0
    device = select_device(args.gpu)
    workload = WORKLOADS[args.workload]
    extra = {"batch_size": args.batch_size} if args.workload in ("sample", "eval") else {}
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_data(cfg, work, args.num_images)
        for name in names:
            setting = with_setting(cfg, name)
            set_tf32(setting.RUN.TF32)
            values, timing, per_step = workload(setting, device, work, name, args.warmup, args.steps, **extra)
            reference = reference or values
            rows.append(
                {
                    "setting": name,
                    **timing,
                    "images_per_s": timing["steps_per_s"] * per_step,
                    "first_step_max_rel_diff": max_relative(values, reference),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    print_table(args, device, rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "torch": torch.__version__, "rows": rows}, indent=1))
    return 0


def print_table(args, device: torch.device, rows: list[dict]) -> None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\n{args.workload} at {Path(args.cfg).name} on {name} (torch {torch.__version__}), {args.steps} steps\n")
    base = rows[0]["steps_per_s"]
    print("| setting | steps/s | x reference | images/s | one-time s | peak GiB | first step: max rel. diff |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "-"
        print(
            f"| {r['setting']} | {r['steps_per_s']:.2f} | {r['steps_per_s'] / base:.2f} | {r['images_per_s']:.1f} | "
            f"{r['one_time_s']:.1f} | {peak} | {r['first_step_max_rel_diff']:.1e} |"
        )


if __name__ == "__main__":
    sys.exit(main())
