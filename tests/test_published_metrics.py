"""is_cub, fid_dmgan, clip_rp and clip_score through attngan-eval (the registry, metrics.json's
protocols, report.md, attngan-fid-stats, DF-GAN's padding, the error contract) on the tiny
random generator of test_evaluate. The networks are small stand-ins (their ports are tested
against their references in test_inception_cub, test_fid_dmgan and test_clip_scores), so this
checks the wiring: the numbers equal the metric functions applied to the saved images."""

from __future__ import annotations

import copy
import functools
import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from attngan.checkpoint import image_encoder_path, save_weights
from attngan.cli import eval_main, fid_stats_main
from attngan.data.datasets import build_dataset
from attngan.dataset_tools.synthetic import make_shapes_dataset
from attngan.evaluation import evaluate
from attngan.evaluation.captions import load_eval_captions
from attngan.evaluation.folder import read_folder
from attngan.evaluation.scoring import real_test_images
from attngan.metrics import clip_scores, fid_dmgan, inception_cub
from attngan.models import build_image_encoder
from conftest import CPU, tiny_eval_cfg
from optional import need

SHA = "ab" * 32


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    """conftest's tiny eval config (stages 64 and 128) on 3 test images of 3 classes, with a
    compact DAMSM image encoder beside its text encoder."""
    root = tmp_path_factory.mktemp("published")
    make_shapes_dataset(root / "shapes", num_images=18, image_size=32, seed=5)
    cfg = tiny_eval_cfg(root / "shapes", root / "models")
    cfg.DAMSM.update(IMAGE_BACKBONE="compact", COMPACT_IMAGE_SIZE=32)
    cfg.RUN.OUTPUT_DIR = str(root / "output")
    cfg.TRAIN.FLAG = True  # an image encoder as wide as the text encoder
    save_weights(build_image_encoder(cfg), image_encoder_path(cfg.TRAIN.NET_E))
    cfg.TRAIN.FLAG = False
    return cfg


class TinyLogits(torch.nn.Module):
    """[N,3,299,299] in [-1,1] -> [N,51] logits."""

    def __init__(self):
        super().__init__()
        self.proj = torch.randn(3 * 16, 51, generator=torch.Generator().manual_seed(1))

    def forward(self, x):
        return 3 * torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1) @ self.proj


class TinyPool(torch.nn.Module):
    """[N,3,299,299] in [0,1] -> [N,6] features."""

    def __init__(self):
        super().__init__()
        self.proj = torch.randn(3 * 4, 6, generator=torch.Generator().manual_seed(2))

    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1) @ self.proj


@pytest.fixture()
def stand_ins(cfg, tmp_path, monkeypatch):
    open_clip = need("open_clip", "pip install -e '.[clip]'")
    torch.manual_seed(0)
    small = open_clip.CLIP(
        embed_dim=16,
        vision_cfg={"layers": 1, "width": 32, "patch_size": 8, "image_size": 32, "head_width": 16},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    ).eval()
    clip = clip_scores.Clip(
        small,
        open_clip.image_transform(32, is_train=False),
        open_clip.get_tokenizer(clip_scores.ARCHITECTURE),
        CPU,
    )
    monkeypatch.setattr(inception_cub, "load_cub_inception", lambda path, device: (TinyLogits(), SHA))
    monkeypatch.setattr(fid_dmgan, "load_dmgan_inception", lambda path, device: TinyPool())
    monkeypatch.setattr(clip_scores, "load_clip", lambda path, device: clip)
    cfg = copy.deepcopy(cfg)
    for key in ("CUB_INCEPTION", "DMGAN_INCEPTION", "CLIP_WEIGHTS"):
        (tmp_path / key).write_bytes(b"weights")
        cfg.EVAL[key] = str(tmp_path / key)
    cfg.EVAL.update(NUM_SAMPLES=130, BATCH_SIZE=26, SPLITS=5, R_MISMATCHED=4, FID_DMGAN_REAL_IMAGES=100)
    return cfg, clip


def test_published_metrics_through_the_evaluation(stand_ins, tmp_path, monkeypatch):
    cfg, clip = stand_ins
    names = {"is_cub", "fid_dmgan", "clip_rp", "clip_score"}
    out = tmp_path / "eval"
    summary = evaluate(cfg, CPU, names, out, save_images=True)
    m, protocols = summary["metrics"], summary["settings"]["protocols"]
    assert set(protocols) == names and all(p["comparable_with"] for p in protocols.values())
    assert protocols["is_cub"]["sha256"] == SHA and protocols["is_cub"]["shuffle_seed"] == cfg.EVAL.SEED
    assert "100 views" in protocols["fid_dmgan"]["real"]

    entries = read_folder(out / "images").entries
    images = torch.stack([torch.from_numpy(np.array(Image.open(e.path))).permute(2, 0, 1) for e in entries])
    with torch.no_grad():
        logits = TinyLogits()(inception_cub.preprocess(images))
    mean, std, used = inception_cub.cub_inception_score(logits, cfg.EVAL.SEED, cfg.EVAL.SPLITS)
    assert used == 128 and m["is_cub"]["images"] == 128
    assert m["is_cub"]["mean"] == pytest.approx(mean) and m["is_cub"]["std"] == pytest.approx(std)
    assert m["fid_dmgan"]["images"] == 100 and m["fid_dmgan"]["fid"] > 0
    embedded, captions = clip.images(images), clip.texts([e.caption for e in entries])
    assert m["clip_score"]["mean"] == pytest.approx(clip_scores.clip_score(embedded, captions)["mean"], abs=1e-4)
    assert m["clip_rp"]["candidates"] == 5 and m["clip_rp"]["images"] == 130
    report = (out / "report.md").read_text()
    assert "## Scores under published protocols" in report
    assert "| is_cub | IS " in report and "AttnGAN paper Table 1 (CUB IS)" in report and "Pytorch FID" in report

    # attngan-fid-stats writes the same real statistics as an .npz; read back, the same FID
    plain = json.loads(json.dumps(cfg))
    (tmp_path / "tiny.yml").write_text(yaml.safe_dump(plain))
    stats = tmp_path / "bird_val.npz"
    assert (
        fid_stats_main(["--cfg", str(tmp_path / "tiny.yml"), "--gpu", "-1", "--out", str(stats), "--size", "128"]) == 0
    )
    with np.load(stats) as saved:
        assert saved["mu"].shape == (6,) and int(saved["num_images"]) == 100
    monkeypatch.setattr(fid_dmgan, "load_statistics", functools.partial(fid_dmgan.load_statistics, dims=6))
    cfg.EVAL.FID_DMGAN_STATS = str(stats)
    again = evaluate(cfg, CPU, {"fid_dmgan"}, tmp_path / "again")
    assert again["metrics"]["fid_dmgan"]["fid"] == pytest.approx(m["fid_dmgan"]["fid"], rel=1e-9)
    assert str(stats) in again["settings"]["protocols"]["fid_dmgan"]["real"]


def test_missing_weights_stop_before_generating(cfg, tmp_path, capsys):
    plain = json.loads(json.dumps(cfg))
    yml = tmp_path / "tiny.yml"
    yml.write_text(yaml.safe_dump(plain))
    for metric, key in (("is_cub", "EVAL.CUB_INCEPTION"), ("fid_dmgan", "EVAL.DMGAN_INCEPTION")):
        out = tmp_path / metric
        assert eval_main(["--cfg", str(yml), "--gpu", "-1", "--metrics", metric, "--output_dir", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{key} is empty" in err[0]
        assert not (out / "metrics.json").exists()


def test_real_scores_the_test_images_themselves(cfg, tmp_path, capsys):
    """--real: every test image once (the centre view at G's size) with its first caption,
    written as an image folder and scored like a model's."""
    plain = json.loads(json.dumps(cfg))
    yml = tmp_path / "tiny.yml"
    yml.write_text(yaml.safe_dump(plain))
    out = tmp_path / "real"
    argv = ["--cfg", str(yml), "--gpu", "-1", "--real", "--metrics", "rp", "--output_dir", str(out)]
    assert eval_main([*argv, "--set", "EVAL.SPLITS=3"]) == 0
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["settings"]["source"] == "image_dir" and saved["settings"]["num_samples"] == 3
    assert saved["settings"]["image_size"] == 128
    entries = read_folder(out / "real_images").entries
    dataset = build_dataset(cfg, "test")
    captions = load_eval_captions(dataset, cfg.EVAL.SEED)
    assert [e.caption for e in entries] == [captions.texts[i * captions.captions_per_image] for i in range(3)]
    real = next(real_test_images(dataset, 128, 3, 0))
    written = torch.stack([torch.from_numpy(np.array(Image.open(e.path))).permute(2, 0, 1) for e in entries])
    assert torch.equal(written, real)
    capsys.readouterr()
    assert eval_main([*argv, "--image_dir", str(out / "real_images")]) == 2
    assert "--real" in capsys.readouterr().err
