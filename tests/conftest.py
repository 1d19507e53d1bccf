"""What several test modules share: the repository root, the tiny AttnGAN setup, the tiny
CUB- and COCO-layout data folders and a crafted text encoder. pytest finds the fixtures
here without an import; the plain helpers and constants are imported from ``conftest``.
A test module never imports another one (tests/test_layout.py)."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "code"))

import torch  # noqa: E402  (after the path to the worktree's code)
import torch.nn as nn  # noqa: E402
from PIL import Image  # noqa: E402

from attngan.checkpoint import save_weights  # noqa: E402
from attngan.config import load_config  # noqa: E402
from attngan.data.synthetic import make_shapes_dataset  # noqa: E402
from attngan.data.text import load_text_data  # noqa: E402
from attngan.models import build_generator, build_image_encoder, build_text_encoder  # noqa: E402

# ---- the tiny AttnGAN: test_gan_training, test_resume, test_distributed ----------------------


def tiny_gan_cfg(data_dir: Path, encoders_dir: Path, dcgan: bool = False):
    """The AttnGAN recipe (cfg/bird_attn2.yml, or bird_attnDCGAN2.yml) shrunk to seconds on a
    CPU: two branches of 2 channels, 2 epochs of batches of 4, the DAMSM encoders
    ``encoders_dir/{text,image}_encoder0.pth``."""
    cfg = load_config(ROOT / "cfg/bird_attnDCGAN2.yml" if dcgan else ROOT / "cfg/bird_attn2.yml")
    cfg.DATA_DIR, cfg.WORKERS, cfg.CUDA = str(data_dir), 0, False
    cfg.TREE.BRANCH_NUM = 2
    cfg.GAN.GF_DIM, cfg.GAN.DF_DIM, cfg.GAN.Z_DIM, cfg.GAN.CONDITION_DIM = 2, 2, 8, 4
    cfg.GAN.R_NUM = 0 if dcgan else 1
    cfg.TEXT.EMBEDDING_DIM, cfg.TEXT.WORDS_NUM = 16, 12
    cfg.TRAIN.BATCH_SIZE, cfg.TRAIN.MAX_EPOCH, cfg.TRAIN.SNAPSHOT_INTERVAL = 4, 2, 1
    cfg.TRAIN.NET_E = str(encoders_dir / "text_encoder0.pth")
    cfg.DAMSM.IMAGE_BACKBONE, cfg.DAMSM.COMPACT_IMAGE_SIZE = "compact", 32
    cfg.AUGMENT.HORIZONTAL_FLIP = False
    cfg.RUN.LOG_INTERVAL, cfg.RUN.IMAGE_INTERVAL = 1, 3
    return cfg


class TinyGan(NamedTuple):
    data: Path  # a shapes dataset of 18 images at 32 px: 15 train images, 3 batches of 4
    encoders: Path  # random DAMSM encoders for it

    def cfg(self, dcgan: bool = False):
        """A fresh tiny_gan_cfg over this data and these encoders."""
        return tiny_gan_cfg(self.data, self.encoders, dcgan)


@pytest.fixture(scope="module")
def tiny_gan(tmp_path_factory) -> TinyGan:
    """Generated shapes data and random DAMSM encoders for the tiny AttnGAN, once a module."""
    root = tmp_path_factory.mktemp("gan")
    gan = TinyGan(root / "shapes", root / "enc")
    make_shapes_dataset(gan.data, num_images=18, image_size=32, seed=5)
    cfg = gan.cfg()
    torch.manual_seed(0)
    n_words = load_text_data(gan.data, 10).n_words
    save_weights(build_text_encoder(cfg, n_words), gan.encoders / "text_encoder0.pth")
    save_weights(build_image_encoder(cfg), gan.encoders / "image_encoder0.pth")
    return gan


def terminated_after_first_state(command: list[str], state: Path, timeout: float) -> tuple[int, str]:
    """Start ``command`` in a process group of its own, wait for its first training state
    (the end of epoch 0), let it train a little further, SIGTERM the whole group (what a
    terminal's Ctrl-C, a scheduler or a container stop does) -> (exit status, stderr)."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.time() + 120
    while not state.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert process.poll() is None, process.communicate()[1]
    time.sleep(1.0)
    os.killpg(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


# ---- tiny data folders in the original layouts: test_data, test_image_cache -----------------

TINY_CPI = 3  # captions per image in tiny_birds and tiny_coco
RED, BLUE = (220, 20, 20), (20, 20, 220)

# tiny_birds' images: key, image size (w, h), bounding box as written in bounding_boxes.txt
TINY_BIRDS = [
    ("001.Red_Bird/Red_Bird_0001", (100, 80), "30.0 20.0 20.0 20.0"),
    ("001.Red_Bird/Red_Bird_0002", (120, 90), "0.0 0.0 40.0 20.0"),
    ("002.Blue_Bird/Blue_Bird_0001", (64, 64), "10.9 5.0 30.0 40.0"),
    ("002.Blue_Bird/Blue_Bird_0002", (90, 120), "50.0 80.0 40.0 40.0"),
]
_LONG_CAPTION = " ".join(f"w{i}" for i in range(30))


def tiny_captions_of(i: int) -> list[str]:
    """The TINY_CPI captions of image ``i``."""
    return [f"Img{i} bird, number {j}!" for j in range(TINY_CPI)]


def write_captions(root: Path, key: str, lines: list[str]) -> None:
    """``root/text/<key>.txt``, one caption a line."""
    path = root / "text" / f"{key}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_jpeg(path: Path, size: tuple[int, int], red_box: tuple[int, int, int, int] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, BLUE)
    if red_box is not None:
        img.paste(RED, red_box)
    img.save(path, quality=100, subsampling=0)


def _write_splits(root: Path, keys: list[str], n_train: int, class_ids: list[int] | None) -> None:
    for split, part in (("train", slice(0, n_train)), ("test", slice(n_train, None))):
        (root / split).mkdir(parents=True, exist_ok=True)
        with open(root / split / "filenames.pickle", "wb") as f:
            pickle.dump(keys[part], f, protocol=2)
        if class_ids is not None:
            with open(root / split / "class_info.pickle", "wb") as f:
                pickle.dump(class_ids[part], f, protocol=2)


@pytest.fixture
def tiny_birds(tmp_path: Path) -> Path:
    """A data folder in the CUB layout with the four TINY_BIRDS (3 train, 1 test, classes
    1, 1, 2, 2), TINY_CPI captions each (image 1 one more) -> its path."""
    root = tmp_path / "my_birds"
    cub = root / "CUB_200_2011"
    for i, (key, size, _) in enumerate(TINY_BIRDS):
        # Image 0: red exactly on its crop box (25, 15, 55, 45), blue outside.
        _write_jpeg(cub / "images" / f"{key}.jpg", size, (25, 15, 55, 45) if i == 0 else None)
        lines = ["", "...", *tiny_captions_of(i)] + (["An extra caption beyond CPI"] if i == 1 else [])
        write_captions(root, key, lines)
    (cub / "images.txt").write_text("".join(f"{i + 1} {k}.jpg\n" for i, (k, _, _) in enumerate(TINY_BIRDS)))
    (cub / "bounding_boxes.txt").write_text("".join(f"{i + 1} {b}\n" for i, (_, _, b) in enumerate(TINY_BIRDS)))
    _write_splits(root, [k for k, _, _ in TINY_BIRDS], 3, [1, 1, 2, 2])
    return root


@pytest.fixture
def tiny_coco(tmp_path: Path) -> Path:
    """A data folder in the COCO layout: three images (2 train, 1 test), no classes, the
    first with a caption of 30 words -> its path."""
    root = tmp_path / "coco"
    keys = [f"COCO_train2014_{i:012d}" for i in range(3)]
    for i, key in enumerate(keys):
        _write_jpeg(root / "images" / f"{key}.jpg", (48 + 8 * i, 40))
        write_captions(root, key, [_LONG_CAPTION if i == 0 else f"a cat number {i}", *tiny_captions_of(i)[1:]])
    _write_splits(root, keys, 2, None)
    return root


# ---- crafted encoders: test_localisation, test_word_swap --------------------------------------


class ColourText(nn.Module):
    """Text encoder stub: a colour word's embedding is its colour's one-hot, other words 0."""

    def __init__(self, wordtoix, colours):
        super().__init__()
        table = torch.zeros(len(wordtoix), len(colours))
        for c, name in enumerate(colours):
            if name in wordtoix:
                table[wordtoix[name], c] = 1.0
        self.register_buffer("table", table)

    def init_hidden(self, bsz):
        return None

    def forward(self, captions, cap_lens, hidden=None):
        emb = self.table[captions[:, : int(cap_lens.max())]].transpose(1, 2)  # [B,C,T]
        return emb, emb.sum(2)


# ---------------------------------------------------------------- a tiny generator to sample and serve

CPU = torch.device("cpu")
TINY_EVAL = {  # a tiny eval config: stages 64 and 128, batch 2
    "GAN": {"GF_DIM": 4, "Z_DIM": 8, "CONDITION_DIM": 4, "R_NUM": 1, "DF_DIM": 4},
    "TEXT": {"EMBEDDING_DIM": 16, "CAPTIONS_PER_IMAGE": 10, "WORDS_NUM": 12},
    "TREE": {"BRANCH_NUM": 2, "BASE_SIZE": 64},
    "TRAIN": {"FLAG": False, "BATCH_SIZE": 2},
    "WORKERS": 0,
    "GPU_ID": -1,
    "CUDA": False,
}


def tiny_eval_cfg(data, models, name="netG_epoch_3", **changes):
    """A tiny eval config with random-weight G and text encoder saved under ``models``."""
    cfg = load_config()
    for section, values in TINY_EVAL.items():
        if isinstance(values, dict):
            cfg[section].update(values)
        else:
            cfg[section] = values
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        cfg[section][key] = value
    cfg.DATA_DIR = str(data)
    n_words = load_text_data(data, 10).n_words
    torch.manual_seed(0)
    cfg.TRAIN.NET_G, cfg.TRAIN.NET_E = str(models / f"{name}.pth"), str(models / "text_encoder3.pth")
    save_weights(build_generator(cfg), cfg.TRAIN.NET_G)
    save_weights(build_text_encoder(cfg, n_words), cfg.TRAIN.NET_E)
    return cfg


@pytest.fixture(scope="module")
def serve_cfg(tmp_path_factory):
    """A tiny eval config (stages 64 and 128, TRAIN.BATCH_SIZE 2) with random weights, and
    its YAML file (cfg.FILE) for the command lines: what the serving tests serve."""
    root = tmp_path_factory.mktemp("serve")
    make_shapes_dataset(root / "shapes", num_images=18, image_size=32, seed=5)
    cfg = tiny_eval_cfg(root / "shapes", root / "models")
    cfg.CONFIG_NAME, cfg.DATASET_NAME = "tiny", "shapes"
    path = root / "tiny.yml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(cfg))))
    cfg.FILE = str(path)
    return cfg
