"""What a run shows: samples.png and the attention figures (picked while the images
stream), report.md from metrics.json's content, and the headline scalars for TensorBoard."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..files import write_atomic
from ..visualize import png_bytes, stage_attention_figure
from .captions import Batch

GRID_SIZE = 16  # images in samples.png
ATTENTION_FIGURES = 4  # captions with an attention figure
TILE = 128  # pixels of an image in samples.png


class Showcase:
    """The images of samples.png and the attention figures, picked while streaming:
    ``GRID_SIZE`` samples evenly spaced over the first pass through the captions."""

    def __init__(self, num_samples: int, num_captions: int):
        first_pass = max(min(num_samples, num_captions), 1)
        picks = np.unique(np.linspace(0, first_pass - 1, GRID_SIZE).round().astype(int))
        self.grid_at = set(picks.tolist())
        self.figure_at = set(picks[:ATTENTION_FIGURES].tolist())
        self.grid: dict[int, tuple[np.ndarray, str]] = {}
        self.figures: dict[int, np.ndarray] = {}

    def add(self, batch: Batch) -> None:
        for j in range(len(batch.texts)):
            index = batch.start + j
            if index in self.grid_at:
                self.grid[index] = (batch.images[j].permute(1, 2, 0).cpu().numpy(), batch.texts[j])
            if index in self.figure_at and batch.attention:
                self.figures[index] = self._figure(batch, j)

    @staticmethod
    def _figure(batch: Batch, j: int) -> np.ndarray:
        """Every attention stage of sample j over the image it belongs to (the next
        stage's image, or G_DCGAN's only one), as sampling does."""
        n = len(batch.words[j])
        images = [
            (batch.stages[k + 1] if len(batch.stages) > 1 else batch.stages[0])[j] for k in range(len(batch.attention))
        ]
        return stage_attention_figure(
            images, batch.words[j], [maps[j, :n] for maps in batch.attention], title=batch.texts[j]
        )

    def write(self, out_dir: Path) -> dict[str, Any]:
        files: dict[str, Any] = {}
        if self.grid:
            items = [self.grid[i] for i in sorted(self.grid)]
            write_atomic(out_dir / "samples.png", png_bytes(caption_grid(*zip(*items))))
            files["samples"] = "samples.png"
        names = []
        for n, index in enumerate(sorted(self.figures)):
            names.append(f"attention_{n}.png")
            write_atomic(out_dir / names[-1], png_bytes(self.figures[index]))
        if names:
            files["attention"] = names
        return files


def caption_grid(
    images: Iterable[np.ndarray], captions: Iterable[str], columns: int = 4, tile: int = TILE, lines: int = 4
) -> np.ndarray:
    """Images [H,W,3] uint8 shown at ``tile`` px with their caption wrapped below:
    -> [rows * (tile + caption strip), columns * tile, 3] uint8."""
    images, captions = list(images), list(captions)
    strip = 12 * lines + 4
    rows = -(-len(images) // columns)
    canvas = Image.new("RGB", (min(columns, len(images)) * tile, rows * (tile + strip)), (255, 255, 255))
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
    for n, (pixels, caption) in enumerate(zip(images, captions, strict=True)):
        x, y = (n % columns) * tile, (n // columns) * (tile + strip)
        canvas.paste(Image.fromarray(pixels).resize((tile, tile), Image.BILINEAR), (x, y))
        ascii_caption = caption.encode("ascii", "replace").decode("ascii")
        for k, text in enumerate(textwrap.wrap(ascii_caption, max(tile // 6, 1))[:lines]):
            draw.text((x + 2, y + tile + 2 + 12 * k), text, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


# What each column of the paper-style table can be set beside (docs/evaluation.md).
PAPER_TABLE_SOURCES = {
    "inception_score": "IS: AttnGAN paper Table 1 for COCO (ImageNet Inception; for CUB, is_cub), "
    "IS* (metrics.json star_mean): TISE's COCO temperature",
    "r_precision": "R-precision: AttnGAN paper and DM-GAN README (with the authors' DAMSM encoders)",
    "fid": "FID: DM-GAN README 'TF FID' column",
}


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _mean_std(values: dict[str, float] | None, scale: float = 1.0) -> str:
    return "–" if values is None else f"{values['mean'] * scale:.2f} ± {values['std'] * scale:.2f}"


def report_markdown(summary: dict[str, Any]) -> str:
    """A short report: the paper's table, the localisation and object-match tables with
    chance beside them, the settings and links to the figures."""
    m, s, files = summary["metrics"], summary["settings"], summary["files"]
    fid = f"{m['fid']:.2f}" if "fid" in m else "–"
    source = (
        f"{s['num_samples']} images of {s['image_dir']}"
        if s["source"] == "image_dir"
        else f"{s['num_samples']} images generated from the test captions of {s['data_dir']} "
        f"(every caption in turn, cycled; seed {s['seed']})"
    )
    lines = [
        f"# Evaluation: {summary['model']}",
        "",
        f"{source}, {s['image_size']}x{s['image_size']} px, on {s['device']}, in {summary['seconds']['total']:.0f} s.",
        "",
        "| Model | IS | R-precision (%) | FID |",
        "|---|---|---|---|",
        f"| {summary['model']} | {_mean_std(m.get('inception_score'))} | "
        f"{_mean_std(m.get('r_precision'), 100)} | {fid} |",
        "",
    ]
    if "r_precision" in m:
        rp = m["r_precision"]
        lines += [
            f"R-precision: the true caption ranked first among {rp['candidates']} (itself and "
            f"{s['r_mismatched']} {s['mismatched_from']}) by the cosine of the DAMSM image and sentence "
            f"vectors; chance {100 * rp['chance']:.0f} %; mean ± std over {s['splits']} splits.",
            "",
        ]
    if "inception_score" in m or "fid" in m:
        lines += [
            f"IS over {s['splits']} splits; FID against the real test images at the same resolution "
            f"(Inception weights: {s['inception_weights']}).",
            "",
        ]
    comparable = [text for key, text in PAPER_TABLE_SOURCES.items() if key in m]
    if comparable:
        lines += ["Comparable with: " + "; ".join(comparable) + ".", ""]
    if s.get("protocols"):
        lines += _published_table(m, s["protocols"])
    if "localisation" in m:
        lines += _localisation_table(m["localisation"])
    if "object_match" in m:
        lines += _object_match_table(m["object_match"])
    lines += _figure_links(files)
    lines += [f"Every number and setting: [metrics.json]({files['metrics']}).", ""]
    return "\n".join(lines)


def _published_number(name: str, values: dict[str, Any]) -> str:
    """One cell: the score as its source printed it (R-precision in %)."""
    if name == "is_cub":
        return f"IS {_mean_std(values)}; IS* {values['star_mean']:.2f} ± {values['star_std']:.2f}"
    if name == "fid_dmgan":
        return f"{values['fid']:.2f}"
    if name == "clip_rp":
        return f"{_mean_std(values, 100)} %"
    return f"{values['mean']:.2f}"


def _published_table(m: dict[str, Any], protocols: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "## Scores under published protocols",
        "",
        "Each computed as the named source computed it (docs/evaluation.md); the protocol of each is in metrics.json.",
        "",
        "| Metric | Score | Images | Comparable with | Weights (sha256) |",
        "|---|---|---|---|---|",
    ]
    for name, protocol in protocols.items():
        values = m[name]
        lines.append(
            f"| {name} | {_published_number(name, values)} | {values['images']} | {protocol['comparable_with']} | "
            f"{Path(protocol['weights']).name} ({protocol['sha256'][:12]}) |"
        )
    return lines + [""]


def _localisation_table(loc: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "## Attention localisation",
        "",
        "Share of the caption words naming an object whose attention peaks inside the object's box.",
        "",
        "| Attention | Hit rate (%) | Chance (%) | Words |",
        "|---|---|---|---|",
    ]
    for key, values in loc.items():
        name = "DAMSM word–region attention" if key == "damsm" else f"Generator, stage {key[-1]} word attention"
        lines.append(f"| {name} | {_percent(values['hit_rate'])} | {_percent(values['chance'])} | {values['words']} |")
    return lines + [""]


def _object_match_table(match: dict[str, Any]) -> list[str]:
    return [
        "## Object match",
        "",
        f"Share of the {match['objects']} objects named by the captions that the images draw in the named colour, "
        "and in the named colour and shape (metrics/object_match.py); chance: the same images checked against "
        "another test image's caption.",
        "",
        "| Drawn right | Share (%) | Chance (%) |",
        "|---|---|---|",
        f"| Colour | {_percent(match['colour'])} | {_percent(match['chance_colour'])} |",
        f"| Colour and shape | {_percent(match['shape'])} | {_percent(match['chance_shape'])} |",
        "",
    ]


def _figure_links(files: dict[str, Any]) -> list[str]:
    lines = []
    if "samples" in files:
        lines += ["## Samples", "", f"![samples]({files['samples']})", ""]
    if files.get("attention"):
        lines += ["## Attention", ""] + [f"![attention {n}]({name})" for n, name in enumerate(files["attention"])]
        lines.append("")
    if "images" in files:
        lines += [
            f"Every scored image, with its caption: [{files['images']}]({files['images']}) "
            "(score it again with `--image_dir`).",
            "",
        ]
    return lines


def scalars(summary: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of ``evaluate``'s result, flat, for TensorBoard."""
    m = summary["metrics"]
    out: dict[str, float] = {}
    if "r_precision" in m:
        out.update({"eval/r_precision": m["r_precision"]["mean"], "eval/r_precision_std": m["r_precision"]["std"]})
    if "inception_score" in m:
        out.update(
            {
                "eval/inception_score": m["inception_score"]["mean"],
                "eval/inception_score_std": m["inception_score"]["std"],
            }
        )
    if "fid" in m:
        out["eval/fid"] = m["fid"]
    if "is_cub" in m:
        out.update({"eval/is_cub": m["is_cub"]["mean"], "eval/is_cub_star": m["is_cub"]["star_mean"]})
    if "fid_dmgan" in m:
        out["eval/fid_dmgan"] = m["fid_dmgan"]["fid"]
    for name in ("clip_rp", "clip_score"):
        if name in m:
            out[f"eval/{name}"] = m[name]["mean"]
    for key, values in m.get("localisation", {}).items():
        if values["hit_rate"] is not None:
            out[f"eval/localisation_{key}"] = values["hit_rate"]
    if m.get("object_match", {}).get("objects"):
        out.update({"eval/object_colour": m["object_match"]["colour"], "eval/object_shape": m["object_match"]["shape"]})
    return out
