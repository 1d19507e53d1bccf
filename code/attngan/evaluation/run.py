"""``evaluate()``, for the command and for the training loop, and the ``attngan-eval``
command: checks the request, picks the image source, streams it through the metrics and
writes metrics.json and report.md."""

from __future__ import annotations

import datetime
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn as nn
from easydict import EasyDict

from ..checkpoint import image_encoder_path
from ..data.datasets import build_dataset
from ..distributed import SINGLE, World, broadcast
from ..errors import OptionError
from ..files import write_atomic
from ..metrics.localisation import load_objects
from ..metrics.object_match import ObjectJudge, ObjectTally
from ..runtime import eval_mode, forked_rng
from . import published  # noqa: F401 (registers is_cub, fid_dmgan, clip_rp and clip_score)
from .captions import generated_batches, load_eval_captions
from .folder import folder_batches, read_folder
from .networks import load_networks
from .registry import REGISTRY, MetricContext
from .report import Showcase, report_markdown
from .scoring import image_quality, real_test_images, scores, stream_batches

log = logging.getLogger(__name__)

METRICS = ("rp", "is", "fid", "loc", "obj", *REGISTRY)


def parse_metrics(text: str | Iterable[str]) -> set[str]:
    """``"rp,is"`` (or an iterable of names) -> {"rp", "is"}; an unknown name is an OptionError."""
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    unknown = sorted(set(names) - set(METRICS))
    if unknown:
        raise OptionError(f"unknown metric(s) {', '.join(map(repr, unknown))}; choose from {', '.join(METRICS)}")
    if not names:
        raise OptionError(f"no metric named; choose from {', '.join(METRICS)}")
    return set(names)


def evaluate(
    cfg: EasyDict,
    device: torch.device,
    metrics: Iterable[str],
    out_dir: str | Path,
    *,
    net_g: nn.Module | None = None,
    text_encoder: nn.Module | None = None,
    image_encoder: nn.Module | None = None,
    num_samples: int | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    image_dir: str | Path | None = None,
    save_images: bool = False,
    feature_extractor: nn.Module | None = None,
    world: World = SINGLE,
) -> dict[str, Any]:
    """Score a generator (or, with ``image_dir`` / EVAL.IMAGE_DIR, a folder of images with
    its manifest, data/manifest.py) on ``metrics`` (names in METRICS); writes ``metrics.json``,
    ``report.md``, ``samples.png`` and attention figures (and, with ``save_images``,
    every image under ``images/``) into ``out_dir`` and returns the content of metrics.json.

    Networks not given are loaded from TRAIN.NET_G and TRAIN.NET_E (and the image encoder
    beside it); given ones are used as they are and left in their own train/eval mode.
    num_samples, batch_size and seed default to EVAL.NUM_SAMPLES, EVAL.BATCH_SIZE and
    EVAL.SEED; a folder is scored whole. The numbers depend on the seed, the batch size
    and the device only; torch's random state is restored afterwards.
    ``feature_extractor`` replaces the Inception network of IS/FID (tests). Under torchrun
    (every process calls it) the generation is split across the processes and rank 0
    scores and writes; every process returns the same summary, equal to one process's.
    """
    began = time.perf_counter()
    metrics = parse_metrics(metrics)
    out_dir = Path(out_dir)
    image_dir = image_dir if image_dir is not None else (cfg.EVAL.IMAGE_DIR or None)
    num_samples = cfg.EVAL.NUM_SAMPLES if num_samples is None else num_samples
    batch_size = cfg.EVAL.BATCH_SIZE if batch_size is None else batch_size
    seed = cfg.EVAL.SEED if seed is None else seed
    for name, value in (("num_samples", num_samples), ("batch_size", batch_size)):
        if value < 1:
            raise OptionError(f"{name} must be >= 1, got {value}")
    if image_dir is not None and metrics & {"loc", "obj"}:
        raise OptionError(
            "'loc' and 'obj' score the generator's attention and images against the test images' "
            "objects: they need TRAIN.NET_G, not an image folder"
        )
    if image_dir is not None and save_images:
        raise OptionError("save_images keeps generated images; the images of an image folder are on disk already")
    folder = read_folder(image_dir) if image_dir is not None else None
    num_samples = len(folder.entries) if folder is not None else num_samples
    if metrics & {"rp", "is", "clip_rp"} and num_samples < cfg.EVAL.SPLITS:
        raise OptionError(
            f"{num_samples} images for {cfg.EVAL.SPLITS} splits (EVAL.SPLITS): R-precision and the "
            "Inception score need at least one image a split"
        )
    with forked_rng(device), torch.no_grad():
        dataset = build_dataset(cfg, "test")
        captions = load_eval_captions(dataset, seed)
        nets = load_networks(cfg, dataset.n_words, device, metrics, folder is None, net_g, text_encoder, image_encoder)
        num_captions = len(captions) if folder is None else num_samples

        def image_batches():
            """The images to score, lazily (draws start at the first batch)."""
            if folder is not None:
                return folder_batches(
                    folder.entries, folder.manifest, nets.text_encoder, dataset.wordtoix, device, batch_size
                )
            figures = Showcase(num_samples, num_captions).figure_at
            return generated_batches(
                nets.net_g,
                nets.text_encoder,
                captions,
                dataset.wordtoix,
                cfg,
                device,
                num_samples,
                batch_size,
                world,
                details=lambda start, stop: not figures.isdisjoint(range(start, stop)),
            )

        if not world.is_main:
            if folder is None:  # this process's share of the generation, sent to rank 0
                with eval_mode(nets.net_g, nets.text_encoder):
                    torch.manual_seed(seed)
                    for _ in image_batches():
                        pass
            return broadcast(None, world)
        quality = image_quality(metrics, cfg, device, feature_extractor) if metrics & {"is", "fid"} else None
        context = MetricContext(
            cfg,
            device,
            seed,
            batch_size,
            dataset,
            captions,
            lambda size, total: real_test_images(dataset, size, batch_size, cfg.WORKERS, total, seed),
        )
        registered = [REGISTRY[name](context) for name in sorted(metrics & REGISTRY.keys())]  # weights load now
        objects = (
            ObjectTally(
                ObjectJudge(load_objects(cfg.DATA_DIR)), captions.keys, captions.texts, captions.captions_per_image
            )
            if "obj" in metrics
            else None
        )
        with eval_mode(nets.net_g, nets.text_encoder, nets.image_encoder):
            torch.manual_seed(seed)  # z and CA_NET's noise
            batches = image_batches()
            stream = stream_batches(
                batches,
                num_samples,
                num_captions,
                metrics,
                nets.image_encoder,
                quality,
                out_dir / "images" if save_images else None,
                captions if folder is None else None,
                objects,
                registered,
            )
            result, timings = scores(
                stream,
                metrics,
                quality,
                nets,
                dataset,
                captions,
                cfg,
                device,
                batch_size,
                seed,
                num_samples,
                registered,
            )
    files = stream.showcase.write(out_dir)
    if stream.saver is not None:
        files["images"] = str(stream.saver.close().relative_to(out_dir))
    timings["total"] = time.perf_counter() - began
    settings = _settings(cfg, metrics, device, seed, batch_size, image_dir, nets.given, num_samples, stream.size)
    settings["protocols"] = {m.name: {**m.protocol(), "comparable_with": m.comparable_with} for m in registered}
    summary = _without_nan(
        {
            "model": _model_name(cfg, image_dir, nets.given),
            "metrics": result,
            "settings": settings,
            "seconds": {k: round(v, 3) for k, v in timings.items()},
            "files": {"metrics": "metrics.json", "report": "report.md", **files},
        }
    )
    write_atomic(out_dir / "metrics.json", (json.dumps(summary, indent=1) + "\n").encode("utf-8"))
    write_atomic(out_dir / "report.md", report_markdown(summary).encode("utf-8"))
    log.info("evaluation written to %s (metrics.json, report.md)", out_dir)
    return broadcast(summary, world)


def _without_nan(value: Any) -> Any:
    """NaN (a localisation with no word to score) as None, so that metrics.json is strict JSON."""
    if isinstance(value, dict):
        return {k: _without_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nan(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def _settings(
    cfg: EasyDict,
    metrics: set[str],
    device: torch.device,
    seed: int,
    batch_size: int,
    image_dir: str | Path | None,
    given: dict[str, bool],
    num_images: int,
    image_size: int,
) -> dict[str, Any]:
    def checkpoint(name: str, path: str | Path) -> str | None:
        return "in memory" if given[name] else str(path)

    return {
        "metrics": sorted(metrics),
        "source": "image_dir" if image_dir is not None else "generator",
        "image_dir": str(image_dir) if image_dir is not None else None,
        "num_samples": num_images,
        "image_size": image_size,
        "batch_size": batch_size,
        "seed": seed,
        "splits": cfg.EVAL.SPLITS,
        "r_mismatched": cfg.EVAL.R_MISMATCHED,
        "mismatched_from": "test captions of other classes",
        "data_dir": str(cfg.DATA_DIR),
        "device": str(device),
        "inception_weights": cfg.EVAL.INCEPTION_WEIGHTS or "library default",
        "checkpoints": {
            "generator": None if image_dir is not None else checkpoint("generator", cfg.TRAIN.NET_G),
            "text_encoder": checkpoint("text_encoder", cfg.TRAIN.NET_E),
            "image_encoder": checkpoint("image_encoder", image_encoder_path(cfg.TRAIN.NET_E))
            if metrics & {"rp", "loc"}
            else None,
        },
    }


def _model_name(cfg: EasyDict, image_dir: str | Path | None, given: dict[str, bool]) -> str:
    if image_dir is not None:
        return Path(image_dir).name
    if given["generator"] or not cfg.TRAIN.NET_G:
        return cfg.CONFIG_NAME or "generator"
    return Path(cfg.TRAIN.NET_G).stem


def default_out_dir(cfg: EasyDict, image_dir: str | Path | None) -> Path:
    """``RUN.OUTPUT_DIR/eval/{DATASET_NAME}_{model}_{timestamp}``, a new folder every run."""
    name = Path(image_dir).name if image_dir else Path(cfg.TRAIN.NET_G or "generator").stem
    stamp = datetime.datetime.now().strftime("%Y_%m_%d_%H_%M_%S")
    base = Path(cfg.RUN.OUTPUT_DIR) / "eval" / f"{cfg.DATASET_NAME}_{name}_{stamp}"
    out, n = base, 1
    while out.exists():
        out, n = base.with_name(f"{base.name}_{n}"), n + 1
    return out
