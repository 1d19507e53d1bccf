"""The offline end-to-end demo (``make demo``): generate the shapes dataset, pretrain DAMSM
on it, train AttnGAN against the frozen DAMSM encoders, draw the example captions with their
attention maps and score the generator. Prints where everything is.

On a machine with CUDA it runs on GPU 0 with the longer recipe that draws the shapes
(``--long``); on the CPU, the short one. ``--cpu`` keeps it on the CPU."""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "code"))

import torch  # noqa: E402

from attngan.cli import (  # noqa: E402
    eval_main,
    pretrain_damsm_main,
    sample_main,
)
from attngan.cli import main as attngan_main  # noqa: E402
from attngan.data.synthetic import COLORS, make_shapes_dataset  # noqa: E402

DEMO_DATA = {"num_images": 3600, "max_objects": 1, "object_scale": 2.0, "colors": ["red", "green", "blue", "yellow"]}
# --long: the recipe measured to draw the named shape for 43 % of test captions after 7,480 steps
# (docs/demo_long_samples.png): all eight colours, DAMSM for 10 epochs (with eight colours it
# needs them to tell shapes apart), AttnGAN for 40 with the original's LAMBDA 5. The demo's own
# recipe trained for 20 epochs did worse (docs/demo.md).
LONG_DATA = {**DEMO_DATA, "colors": list(COLORS)}
LONG = {
    "damsm": ["TRAIN.MAX_EPOCH=10"],
    "gan": ["TRAIN.MAX_EPOCH=40", "TRAIN.SNAPSHOT_INTERVAL=10", "TRAIN.SMOOTH.LAMBDA=5"],
}


def prepare_data(data: Path, settings: dict) -> None:
    """The demo's shapes: one large object per image (object_scale 2), which DAMSM and the
    small generator learn in minutes; with four colours rather than eight, DAMSM learns
    shapes within the demo (with eight, colour alone tells a batch's images apart).
    Regenerated when ``data`` holds other settings."""
    objects = data / "objects.json"
    if objects.exists() and json.loads(objects.read_text()).get("settings", {}).items() >= settings.items():
        print(f"[demo] using the existing dataset in {data} (make clean-demo to regenerate)")
        return
    summary = make_shapes_dataset(data, **settings, overwrite=objects.exists())
    print(f"[demo] generated {summary['num_images']} images in {data}")


def print_scores(metrics: dict) -> None:
    rp = metrics["r_precision"]
    print(
        f"[demo] R-precision over {rp['images']} generated images: {rp['mean']:.1%} +- {rp['std']:.1%} "
        f"(chance {rp['chance']:.1%})"
    )
    for name, loc in metrics["localisation"].items():
        print(
            f"[demo] attention localisation, {name.replace('_', ' ')}: {loc['hit_rate']:.1%} of {loc['words']} "
            f"object words peak inside their object (chance {loc['chance']:.1%})"
        )
    match = metrics["object_match"]
    print(
        f"[demo] object match over {match['objects']} named objects: drawn in the named colour {match['colour']:.1%} "
        f"(chance {match['chance_colour']:.1%}), in the named colour and shape {match['shape']:.1%} "
        f"(chance {match['chance_shape']:.1%})"
    )


BLOCK_BEGIN, BLOCK_END = "<!-- demo results: begin (written by make demo) -->", "<!-- demo results: end -->"


def results_table(damsm: dict, scores: dict) -> str:
    """The demo's numbers as the Markdown table of docs/demo.md, from DAMSM's metrics.json and
    attngan-eval's metrics."""
    rp, match, loc = scores["r_precision"], scores["object_match"], scores["localisation"]
    rows = [
        (
            "DAMSM top-1 retrieval, image→text / text→image",
            f"{damsm['top1_image_to_text']:.1%} / {damsm['top1_text_to_image']:.1%}",
            f"{damsm['chance']:.1%}",
        ),
        (
            "DAMSM word swap: true shape / colour word first",
            f"{damsm['word_swap_shape']:.1%} / {damsm['word_swap_colour']:.1%}",
            f"{damsm['word_swap_shape_chance']:.0%} / {damsm['word_swap_colour_chance']:.0%}",
        ),
        (
            "R-precision (DAMSM's vectors, 1 of 100 captions)",
            f"{rp['mean']:.1%} ± {rp['std']:.1%}",
            f"{rp['chance']:.1%}",
        ),
        *(
            (
                f"{name.replace('_', ' ')} word attention peaking inside the named object",
                f"{value['hit_rate']:.1%}",
                f"{value['chance']:.1%}",
            )
            for name, value in loc.items()
        ),
        (
            "object match: the named object in the named colour",
            f"{match['colour']:.1%}",
            f"{match['chance_colour']:.1%}",
        ),
        ("object match: in the named colour and shape", f"{match['shape']:.1%}", f"{match['chance_shape']:.1%}"),
    ]
    lines = ["| | result | chance |", "|---|---|---|", *(f"| {a} | {b} | {c} |" for a, b, c in rows)]
    return "\n".join(lines).replace("%", " %")


def rewrite_block(doc: Path, text: str) -> None:
    """Replace what stands between the demo's markers in ``doc`` with ``text``."""
    page = doc.read_text(encoding="utf-8")
    head, rest = page.split(BLOCK_BEGIN, 1)
    _, tail = rest.split(BLOCK_END, 1)
    doc.write_text(f"{head}{BLOCK_BEGIN}\n{text}\n{BLOCK_END}{tail}", encoding="utf-8")


def record_results(doc: Path, damsm_dir: Path, evaluation: Path, seconds: float) -> None:
    """docs/demo.md's results block, from this run (so the page shows what its commit gives)."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    where = f"commit {commit.stdout.strip()}" if commit.returncode == 0 else "a checkout without git"
    machine = (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    damsm = json.loads((damsm_dir / "Model" / "metrics.json").read_text())
    scores = json.loads((evaluation / "metrics.json").read_text())["metrics"]
    when = time.strftime("%Y-%m-%d")
    text = f"`make demo` at {where}, {when}, on the CPU ({machine}): {seconds:.0f} s.\n\n"
    rewrite_block(doc, text + results_table(damsm, scores))


def step(title: str, command: str, argv: list[str], run) -> None:
    print(f"[demo] {title}: {command} {' '.join(argv)}", flush=True)
    if run(argv):
        sys.exit(f"[demo] failed: {title}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--damsm-only", action="store_true", help="stop after DAMSM pretraining")
    parser.add_argument(
        "--long",
        action="store_true",
        help="eight colours (data/shapes-long), DAMSM 10 epochs and AttnGAN 40 (7,480 steps, LAMBDA 5) "
        "into output/demo-long: about 85 minutes on two CPU cores (the default with CUDA)",
    )
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even where CUDA is available")
    args = parser.parse_args()
    gpu = -1 if args.cpu or not torch.cuda.is_available() else 0
    if gpu >= 0 and not args.long:
        args.long = True
        print(f"[demo] CUDA found ({torch.cuda.get_device_name(0)}): the long recipe on GPU 0 (--cpu for the CPU demo)")
    out = ROOT / "output" / ("demo-long" if args.long else "demo")
    longer = LONG if args.long else {"damsm": [], "gan": []}
    if gpu >= 0:  # the GPU waits on the data otherwise
        longer = {stage: [*sets, "WORKERS=4"] for stage, sets in longer.items()}
    start = time.time()
    data = ROOT / "data" / ("shapes-long" if args.long else "shapes")
    prepare_data(data, LONG_DATA if args.long else DEMO_DATA)
    common = ["--gpu", str(gpu), "--manualSeed", "0", "--data_dir", str(data)]

    damsm = out / "DAMSM"
    step(
        "pretraining DAMSM",
        "python code/pretrain_DAMSM.py",
        ["--cfg", str(ROOT / "cfg/DAMSM/shapes.yml"), *common, "--output_dir", str(damsm), "--set", *longer["damsm"]],
        pretrain_damsm_main,
    )
    metrics = json.loads((damsm / "Model" / "metrics.json").read_text())
    chance = metrics["chance"]
    print(
        f"[demo] DAMSM validation top-1 retrieval among {round(1 / chance)} pairs: "
        f"image->text {metrics['top1_image_to_text']:.1%}, text->image {metrics['top1_text_to_image']:.1%} "
        f"(chance {chance:.1%}); {time.time() - start:.0f} s so far"
    )
    print(
        f"[demo] DAMSM word swap, the true word ranked first: shape {metrics['word_swap_shape']:.1%} "
        f"(chance {metrics['word_swap_shape_chance']:.1%}), colour {metrics['word_swap_colour']:.1%} "
        f"(chance {metrics['word_swap_colour_chance']:.1%})",
        flush=True,
    )
    text_encoder = max((damsm / "Model").glob("text_encoder*.pth"), key=lambda p: int(p.stem[len("text_encoder") :]))
    if args.damsm_only:
        return 0

    gan = out / "AttnGAN"
    step(
        "training AttnGAN",
        "python code/main.py",
        [
            "--cfg",
            str(ROOT / "cfg/shapes_attn2.yml"),
            *common,
            "--output_dir",
            str(gan),
            "--set",
            f"TRAIN.NET_E={text_encoder}",
            *longer["gan"],
        ],
        attngan_main,
    )
    net_g = max((gan / "Model").glob("netG_epoch_*.pth"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    step(
        "drawing the example captions",
        "python code/main.py",
        [
            "--cfg",
            str(ROOT / "cfg/eval_shapes.yml"),
            "--gpu",
            str(gpu),
            "--data_dir",
            str(data),
            "--set",
            f"TRAIN.NET_G={net_g}",
            f"TRAIN.NET_E={text_encoder}",
        ],
        sample_main,
    )
    evaluation = out / "eval"
    step(
        "scoring it: R-precision, attention localisation and object match",
        "attngan-eval",
        [
            "--cfg",
            str(ROOT / "cfg/eval_shapes.yml"),
            "--gpu",
            str(gpu),
            "--data_dir",
            str(data),
            "--output_dir",
            str(evaluation),
            "--set",
            f"TRAIN.NET_G={net_g}",
            f"TRAIN.NET_E={text_encoder}",
        ],
        eval_main,
    )
    print_scores(json.loads((evaluation / "metrics.json").read_text())["metrics"])
    samples = net_g.with_suffix("")
    print(f"[demo] done in {time.time() - start:.0f} s")
    if not args.long and gpu < 0:
        record_results(ROOT / "docs" / "demo.md", damsm, evaluation, time.time() - start)
        print("[demo] its numbers: docs/demo.md (the block between the demo's markers)")
    print(
        f"[demo] samples and attention maps: {samples}/example_captions/ (0_s_<i>_g<k>.png, 0_s_<i>_a<k>.png; "
        f"captions in {data / 'example_captions.txt'})"
    )
    print(f"[demo] checkpoints: {damsm / 'Model'} (DAMSM), {gan / 'Model'} (AttnGAN)")
    print(f"[demo] monitoring images: {damsm / 'Image'}, {gan / 'Image'}")
    print(f"[demo] evaluation report: {evaluation / 'report.md'}")
    print(f"[demo] TensorBoard: tensorboard --logdir {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
