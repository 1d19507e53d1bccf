"""Speed of the hot paths, side by side in interleaved rounds: the faithful eager fp32 step
as it was before the speed work (the *reference*: every loss read back every step, Adam's
for-loop, no channels-last, no compilation), the reference again as a second instance (the
A/A row, which shows the measurement's own noise), each speed setting alone and the
shipped defaults, all on the same generated data, initial weights, batch and noise; with
``--before-checkout DIR``, also the step of an older checkout of this project (``before``:
the GAN and DAMSM workloads), in a subprocess of its own.

Every setting's state (networks, optimisers, data iterator; the old checkout's process) is
built once, its first step compared with the reference's and its one-time cost run
(``--warmup`` steps). Then come ``--rounds`` rounds; a round times ``--steps`` steps of each
setting in turn, round r starting at the r-th setting (a rotation, so that no setting is
always first; with rounds a multiple of the settings, each takes every place equally
often). Slow drifts of the machine (other processes, heat) thus reach every setting alike.
Each setting's steps/s of every round give its median and spread, and its ratio to the
reference round by round (paired: the load of that round cancels) the median and quartiles
of those ratios; a gain or a loss is claimed only where three quarters of its rounds lie
outside the A/A band, the range of the reference's twin's ratios (scripts/bench_stats.py).

Workloads: ``gan`` (the AttnGAN training step, data loading included), ``damsm`` (the DAMSM
pretraining step), ``sample`` (batched generation to uint8 images, captions/s) and
``eval`` (the evaluation's generation + R-precision path; one call of ``--steps`` batches a
round). It prints, per setting, the median steps/s and its min-max over the rounds, the
ratio to the reference (median of the rounds' ratios, and their quartiles), the verdict, images/s, peak GPU memory, the one-time cost (the first and warm-up
steps' time beyond the steady one: compilation, autotuning, cache building) and the first
step's maximum relative difference from the reference (losses and gradients; images for
sampling; R-precision for eval; ``before``: the losses and G's gradients, the Ds' being
another quantity there). Later steps drift apart by rounding alone, so only the first step
is compared.

    python scripts/benchmark.py --workload gan --cfg cfg/shapes_attn2.yml --gpu -1
    python scripts/benchmark.py --workload damsm --cfg cfg/DAMSM/shapes.yml --gpu -1
    git worktree add /tmp/before c8b7ec1   # the commit before the speed work
    python scripts/benchmark.py --workload gan --cfg cfg/shapes_attn2.yml --gpu -1 --before-checkout /tmp/before
    python scripts/benchmark.py --workload gan --cfg cfg/bird_attn2.yml --gpu 0
    python scripts/benchmark.py --workload sample --cfg cfg/bird_attn2.yml --gpu 0
    python scripts/benchmark.py --workload eval --cfg cfg/bird_attn2.yml --gpu 0
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "code"))

from bench_stats import REFERENCE, TWIN, gradients, max_relative, summarise  # noqa: E402

from attngan.checkpoint import save_weights  # noqa: E402
from attngan.config import apply_overrides, load_config  # noqa: E402
from attngan.data.datasets import build_dataset, prepare_data  # noqa: E402
from attngan.data.loader import epoch_loader  # noqa: E402
from attngan.data.text import load_text_data  # noqa: E402
from attngan.dataset_tools.synthetic import make_shapes_dataset  # noqa: E402
from attngan.models import build_generator, build_image_encoder, build_text_encoder  # noqa: E402
from attngan.runtime import run_dir, seed_everything, select_device  # noqa: E402
from attngan.speed import adam_options, prepare, set_tf32  # noqa: E402
from attngan.training.damsm import damsm_optimizer, damsm_train_step  # noqa: E402
from attngan.training.gan import GanTrainer, as_floats  # noqa: E402

log = logging.getLogger("benchmark")

# RUN settings of each benchmarked setting. "sync" reads every loss back every step, as the
# step did before; the reference turns every speed setting off.
OFF = {
    "FUSED_ADAM": False,
    "CHANNELS_LAST": "never",
    "COMPILE": "never",
    "TF32": False,
    "PRECISION": "fp32",
    "ENCODER_PRECISION": "fp32",
    "IMAGE_CACHE": False,
}
SETTINGS = {
    REFERENCE: {**OFF, "sync": True},
    "no_sync": OFF,
    "image_cache": {**OFF, "IMAGE_CACHE": True},
    "fused_adam": {**OFF, "FUSED_ADAM": True},
    "channels_last": {**OFF, "CHANNELS_LAST": "always"},
    "compile": {**OFF, "COMPILE": "always"},
    "defaults": {},
    "bf16": {"PRECISION": "bf16"},
    "encoder_bf16": {"ENCODER_PRECISION": "bf16"},
    "tf32": {"TF32": True},
}
SETTINGS[TWIN] = SETTINGS[REFERENCE]
BEFORE = "before"
FIRST_STEP_SEED = 1234
PREFETCH = 2  # batches a DataLoader worker loads ahead (PyTorch's default prefetch_factor)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def with_setting(cfg, name: str):
    cfg = copy.deepcopy(cfg)
    for key, value in SETTINGS[name].items():
        if key != "sync":
            cfg.RUN[key] = value
    return cfg


def make_data(cfg, work: Path, num_images: int) -> list[str]:
    """A shapes dataset at the config's final resolution and random DAMSM encoders of its
    shapes (the cost of a step does not depend on the weights); cfg points at them.
    -> those overrides as KEY=VALUE, for another checkout's config."""
    final_size = cfg.TREE.BASE_SIZE * 2 ** (cfg.TREE.BRANCH_NUM - 1)
    data = work / "data"
    make_shapes_dataset(data, num_images=num_images, image_size=max(final_size, 64), seed=0)
    cfg.DATASET_NAME, cfg.DATA_DIR = "shapes", str(data)
    n_words = load_text_data(data, cfg.TEXT.CAPTIONS_PER_IMAGE).n_words
    seed_everything(0)
    save_weights(build_text_encoder(cfg, n_words), work / "enc" / "text_encoder0.pth")
    save_weights(build_image_encoder(cfg), work / "enc" / "image_encoder0.pth")
    cfg.TRAIN.NET_E = str(work / "enc" / "text_encoder0.pth")
    return [f"DATASET_NAME={cfg.DATASET_NAME}", f"DATA_DIR={cfg.DATA_DIR}", f"TRAIN.NET_E={cfg.TRAIN.NET_E}"]


def make_random_model(cfg, work: Path, num_images: int) -> None:
    """``make_data``, and a random generator of the config's shape (TRAIN.NET_G points at
    it): everything a sampling command or attngan-serve loads, with no training."""
    make_data(cfg, work, num_images)
    cfg.TRAIN.NET_G = str(work / "netG_random.pth")
    torch.manual_seed(0)
    save_weights(build_generator(cfg), cfg.TRAIN.NET_G)


@dataclass
class Prepared:
    """A workload built for one setting: ``step(batch)`` on the batches of ``batches``
    (endless), ``first_batch`` for the compared first step, ``values(output of the first
    step)`` -> the tensors compared, ``per_step`` images a step, ``steps_per_call`` batches
    a call of ``step`` (eval: one call generates a round's batches), ``losses``: whether a
    step returns its losses (which the reference reads back)."""

    step: Callable[[Any], Any]
    batches: Iterator[Any]
    first_batch: Any
    values: Callable[[Any], dict[str, torch.Tensor]]
    per_step: int
    steps_per_call: int = 1
    losses: bool = False


def batches_of(dataset, cfg, device) -> Iterator:
    for epoch in itertools.count():
        yield from epoch_loader(dataset, cfg.TRAIN.BATCH_SIZE, cfg.WORKERS, 0, epoch, pin_memory=device.type == "cuda")


def first_batch(dataset, cfg):
    return next(iter(epoch_loader(dataset, cfg.TRAIN.BATCH_SIZE, 0, 0, 0)))


def gan_workload(cfg, device, work: Path, steps: int, batch_size: int) -> Prepared:
    seed_everything(0)
    trainer = GanTrainer(cfg, device, run_dir(cfg, str(work)), seed=0)
    nets = {"G": trainer.net_g, **{f"D{i}": d for i, d in enumerate(trainer.nets_d)}}

    def values(losses):
        return {**gradients(nets), **{f"loss/{k}": v.detach().clone() for k, v in losses.items()}}

    return Prepared(
        trainer.train_step,
        batches_of(trainer.dataset, cfg, device),
        first_batch(trainer.dataset, cfg),
        values,
        cfg.TRAIN.BATCH_SIZE,
        losses=True,
    )


def damsm_workload(cfg, device, work: Path, steps: int, batch_size: int) -> Prepared:
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

    def values(losses):
        return {**gradients({"text": text, "image": image}), **{f"loss/{k}": v.clone() for k, v in losses.items()}}

    return Prepared(
        step, batches_of(dataset, cfg, device), first_batch(dataset, cfg), values, cfg.TRAIN.BATCH_SIZE, losses=True
    )


def sample_workload(cfg, device, work: Path, steps: int, batch_size: int) -> Prepared:
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
            return quantise(fake_imgs[-1]).cpu()

    return Prepared(step, itertools.repeat(None), None, lambda pixels: {"image": pixels.float()}, len(batch))


def eval_workload(cfg, device, work: Path, steps: int, batch_size: int) -> Prepared:
    from attngan.evaluation import evaluate

    text = load_text_data(cfg.DATA_DIR, cfg.TEXT.CAPTIONS_PER_IMAGE)
    seed_everything(0)
    nets = {
        "net_g": prepare(build_generator(cfg).to(device), cfg, device),
        "text_encoder": build_text_encoder(cfg, text.n_words).to(device),
        "image_encoder": build_image_encoder(cfg).to(device),
    }

    def step(_):
        result = evaluate(cfg, device, {"rp"}, work, num_samples=batch_size * steps, batch_size=batch_size, **nets)
        return torch.tensor(result["metrics"]["r_precision"]["mean"])

    return Prepared(step, itertools.repeat(None), None, lambda rp: {"r_precision": rp}, batch_size, steps)


WORKLOADS = {"gan": gan_workload, "damsm": damsm_workload, "sample": sample_workload, "eval": eval_workload}


class InProcess:
    """One setting in this process: built, its first step taken (from torch seed
    FIRST_STEP_SEED) and ``warmup`` steps run; then timed round by round."""

    def __init__(self, name: str, cfg, device, work: Path, workload, warmup: int, extra: dict):
        self.name, self.device, self.tf32, self.peak_gib = name, device, cfg.RUN.TF32, None
        set_tf32(self.tf32)
        self.work = workload(cfg, device, work, **extra)
        self.sync_each = SETTINGS[name].get("sync", False) and self.work.losses
        synchronize(device)
        start = time.perf_counter()
        torch.manual_seed(FIRST_STEP_SEED)
        out = self.work.step(self.work.first_batch)
        synchronize(device)
        self.first_s = time.perf_counter() - start
        self.values = self.work.values(out)
        self.per_step, self.steps_per_call = self.work.per_step, self.work.steps_per_call
        self.warm_calls = warmup if self.steps_per_call == 1 else 0
        self.warm_s = self._run(self.warm_calls)

    def _run(self, calls: int) -> float:
        """Seconds of ``calls`` steps, synchronised at the ends only (the reference also
        reads its losses back every step)."""
        synchronize(self.device)
        start = time.perf_counter()
        for _ in range(calls):
            out = self.work.step(next(self.work.batches))
            if self.sync_each:
                as_floats(out)
        synchronize(self.device)
        return time.perf_counter() - start

    def round(self, lead: int, steps: int) -> float:
        """``lead`` untimed steps, then steps/s of ``steps`` timed ones."""
        set_tf32(self.tf32)  # a process-wide flag: each setting's own, before its steps
        self._run(lead if self.steps_per_call == 1 else 0)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        calls = max(1, steps // self.steps_per_call)
        rate = calls * self.steps_per_call / self._run(calls)
        if self.device.type == "cuda":
            self.peak_gib = max(self.peak_gib or 0.0, torch.cuda.max_memory_allocated(self.device) / 2**30)
        return rate

    def close(self) -> None:
        pass


class OldCheckout:
    """``before``: the step of another checkout (scripts/bench_before.py in a process of its
    own, importing that checkout's code), on the same data and encoders, timed on command."""

    def __init__(self, checkout: Path, workload: str, cfg_file: Path, overrides: list[str], work: Path, warmup: int):
        self.name, self.peak_gib, self.steps_per_call, self.warm_calls = BEFORE, None, 1, warmup
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        work.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "bench_before.py"), str(checkout)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        build = {
            "cmd": "build",
            "workload": workload,
            "cfg": str(cfg_file),
            "set": overrides,
            "out": str(work),
            "values": str(work / "first_step.pt"),
            "warmup": warmup,
            "threads": torch.get_num_threads(),
            "first_seed": FIRST_STEP_SEED,
        }
        reply = self.ask(build)
        self.first_s, self.warm_s = reply["first_s"], reply["warm_s"]
        if reply["skipped"]:
            log.warning("before: overrides of keys its config lacks, left out: %s", reply["skipped"])
        self.values = torch.load(build["values"], weights_only=True)
        self.per_step = load_config(cfg_file).TRAIN.BATCH_SIZE

    def ask(self, command: dict) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the before worker exited with status {self.process.wait()} (its stderr is above)")
        return json.loads(line)

    def round(self, lead: int, steps: int) -> float:
        return steps / self.ask({"cmd": "run", "lead": lead, "steps": steps})["seconds"]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.process.stdin.close()
            self.process.wait(timeout=60)


def measure(runners: list, rounds: int, lead: int, steps: int) -> dict[str, list[float]]:
    """steps/s of every runner in every round, round r starting at runner r (rotated)."""
    rates: dict[str, list[float]] = {r.name: [] for r in runners}
    for r in range(rounds):
        k = r % len(runners)
        for runner in runners[k:] + runners[:k]:
            rates[runner.name].append(runner.round(lead, steps))
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {v[-1]:.3f}" for n, v in rates.items()), flush=True)
    return rates


def settings_of(parser, args) -> list[str]:
    """The settings to time: the reference first, its A/A twin second, then the others."""
    names = [n for n in args.settings.split(",") if n]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting(s) {unknown}; choose from {', '.join(n for n in SETTINGS if n != TWIN)}")
    return [REFERENCE, TWIN, *(n for n in names if n not in (REFERENCE, TWIN))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="gan")
    parser.add_argument("--cfg", default=str(ROOT / "cfg/bird_attn2.yml"))
    parser.add_argument("--gpu", type=int, default=0, help="CUDA device id, -1 for the CPU")
    parser.add_argument(
        "--settings",
        default="reference,no_sync,image_cache,fused_adam,channels_last,compile,defaults",
        help="comma-separated, from: "
        f"{', '.join(n for n in SETTINGS if n != TWIN)} (the reference and its A/A twin always run)",
    )
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each setting a round (batches: eval)")
    parser.add_argument("--warmup", type=int, default=5, help="steps after the first, before the rounds")
    parser.add_argument("--batch_size", type=int, default=100, help="captions per batch (sample, eval)")
    parser.add_argument("--num_images", type=int, default=400, help="size of the generated dataset")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument(
        "--before-checkout",
        type=Path,
        metavar="DIR",
        help="also time the step of this checkout of the project (gan, damsm; CPU), e.g. `git worktree add DIR "
        "c8b7ec1`, on its own copy of the --cfg file with the same data, encoders and overrides",
    )
    parser.add_argument("--threads", type=int, help="PyTorch's CPU threads (default: PyTorch's own choice)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    names = settings_of(parser, args)
    if args.rounds < 1 or args.steps < 1:
        parser.error("--rounds and --steps must be at least 1")
    cfg = load_config(args.cfg)
    apply_overrides(cfg, args.set)
    cfg.CUDA = args.gpu >= 0
    device = select_device(args.gpu)
    if args.before_checkout:
        if args.workload not in ("gan", "damsm") or device.type != "cpu":
            parser.error("--before-checkout times the gan and damsm workloads on the CPU (--gpu -1)")
        before_cfg = args.before_checkout / Path(args.cfg).resolve().relative_to(ROOT)
        if not before_cfg.is_file():
            parser.error(f"--before-checkout: {before_cfg} does not exist")
    workload = WORKLOADS[args.workload]
    extra = {"steps": args.steps, "batch_size": args.batch_size}
    lead = PREFETCH * cfg.WORKERS if args.workload in ("gan", "damsm") else 0
    runners: list = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data_overrides = make_data(cfg, work, args.num_images)
        try:
            for i, name in enumerate(names):
                runners.append(
                    InProcess(name, with_setting(cfg, name), device, work / f"run{i}", workload, args.warmup, extra)
                )
                log.info("built %s (first step %.1f s)", name, runners[-1].first_s)
            if args.before_checkout:
                overrides = [*args.set, *data_overrides, f"WORKERS={cfg.WORKERS}"]
                runners.append(
                    OldCheckout(args.before_checkout, args.workload, before_cfg, overrides, work / BEFORE, args.warmup)
                )
                log.info("built %s from %s (first step %.1f s)", BEFORE, args.before_checkout, runners[-1].first_s)
            rates = measure(runners, args.rounds, lead, args.steps)
        finally:
            for runner in runners:
                runner.close()
    stats = summarise(rates)
    rows = []
    for runner in runners:
        row = stats[runner.name]
        per_call = runner.steps_per_call / row["median"]
        rows.append(
            {
                "setting": runner.name,
                **row,
                "rounds": rates[runner.name],
                "images_per_s": row["median"] * runner.per_step,
                "one_time_s": max(0.0, runner.first_s + runner.warm_s - (1 + runner.warm_calls) * per_call),
                "peak_gib": runner.peak_gib,
                "first_step_max_rel_diff": max_relative(runner.values, runners[0].values),
            }
        )
    print_table(args, device, rows, lead)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"args": vars(args), "torch": torch.__version__, "rows": rows}, indent=1, default=str)
        )
    return 0


def print_table(args, device: torch.device, rows: list[dict], lead: int) -> None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"\n{args.workload} at {Path(args.cfg).name} on {name} (torch {torch.__version__}): {args.rounds} interleaved "
        f"rounds of {args.steps} steps a setting ({lead} untimed before each), after {args.warmup} warm-up steps\n"
    )
    print(
        "| setting | steps/s (median) | min-max | x reference (rounds' median) | quartiles | verdict | images/s "
        "| one-time s | peak GiB | first step: max rel. diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "-"
        print(
            f"| {r['setting']} | {r['median']:.3f} | {r['min']:.3f}-{r['max']:.3f} | {r['ratio']:.3f} | "
            f"{r['ratio_q1']:.3f}-{r['ratio_q3']:.3f} | {r['verdict']} | {r['images_per_s']:.1f} | "
            f"{r['one_time_s']:.1f} | {peak} | {r['first_step_max_rel_diff']:.1e} |"
        )


if __name__ == "__main__":
    sys.exit(main())
