"""Sampling: the original's file names and order, validation outputs, caption errors,
checkpoint mismatches, the attngan-sample command and the attention figures."""

import json
import logging
import re
import shutil

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from attngan.checkpoint import CheckpointError
from attngan.cli import sample_main
from attngan.config import load_config
from attngan.data.pickles import load_pickle, save_pickle
from attngan.data.synthetic import make_shapes_dataset
from attngan.data.text import load_text_data
from attngan.errors import CaptionError
from attngan.generation import encode_captions, generate, load_models
from attngan.runtime import seed_everything
from attngan.sampling import gen_example, sample_validation, slug
from attngan.visualize import LABEL_HEIGHT, attention_figure, stage_attention_figure
from conftest import CPU, tiny_eval_cfg


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sampling") / "shapes"
    make_shapes_dataset(root, num_images=18, image_size=32, seed=5)  # 3 test images
    return root


def example_sentences(data):
    return [s for s in (data / "example_captions.txt").read_text().split("\n") if s]


def size_of(path):
    with Image.open(path) as im:
        return im.size


def test_gen_example_writes_the_original_file_names(data, tmp_path):
    cfg = tiny_eval_cfg(data, tmp_path)
    n = len(example_sentences(data))
    seed_everything(100)
    written = gen_example(cfg, CPU)
    out = tmp_path / "netG_epoch_3" / "example_captions"
    expected = {out / f"0_s_{i}_{suffix}.png" for i in range(n) for suffix in ("g0", "g1", "a0")}
    assert set(written) == expected and len(written) == len(expected)
    assert set(out.iterdir()) == expected
    for i in range(n):
        assert size_of(out / f"0_s_{i}_g0.png") == (64, 64)
        assert size_of(out / f"0_s_{i}_g1.png") == (128, 128)
        width, height = size_of(out / f"0_s_{i}_a0.png")
        assert width % 128 == 0 and width >= 2 * 128 and height == 2 * LABEL_HEIGHT + 128
    # Seed 100 again: the same images.
    before = {p: p.read_bytes() for p in expected}
    seed_everything(100)
    gen_example(cfg, CPU)
    assert all(p.read_bytes() == b for p, b in before.items())


def test_sorted_indices_are_the_original_argsort(data):
    wordtoix = load_text_data(data, 10).wordtoix
    sentences = [
        "a red circle",
        "a small blue square at the top",
        "red circle",
        "a large green triangle",
        "circle",
        "a red circle at the top left",
    ]
    batch = encode_captions(sentences, wordtoix)
    lens = [len(s.split()) for s in sentences]
    order = np.argsort(lens)[::-1]
    assert batch.sorted_indices.tolist() == order.tolist()
    assert batch.cap_lens.tolist() == [lens[i] for i in order]
    assert batch.captions.shape == (6, max(lens)) and batch.captions.dtype == torch.int64
    for row, i in enumerate(order):
        assert batch.words[row] == sentences[i].split()
        assert batch.captions[row, : lens[i]].tolist() == [wordtoix[w] for w in sentences[i].split()]
        assert (batch.captions[row, lens[i] :] == 0).all()


def test_out_of_vocabulary_words_are_reported_and_empty_captions_rejected(data, tmp_path, caplog):
    wordtoix = load_text_data(data, 10).wordtoix
    with caplog.at_level(logging.WARNING, logger="attngan.generation"):
        batch = encode_captions(["a red zebra circle"], wordtoix, source="mine.txt", line_numbers=[7])
    assert batch.words == [["a", "red", "circle"]]
    assert "zebra" in caplog.text and "mine.txt line 7" in caplog.text
    with pytest.raises(CaptionError, match=r"mine.txt line 2: caption 'zebra giraffe' has no word in the vocabulary"):
        encode_captions(["a red circle", "zebra giraffe"], wordtoix, source="mine.txt", line_numbers=[1, 2])
    with pytest.raises(CaptionError, match=r"<captions> #2: caption '' has no words"):
        encode_captions(["a red circle", ""], wordtoix)
    with pytest.raises(CaptionError, match=r"#1: caption '日本語' has no ASCII word"):
        encode_captions(["日本語"], wordtoix)
    # From an example file: the file and the line are named, before any model loads.
    bad = tmp_path / "bad"
    shutil.copytree(data, bad)
    (bad / "example_captions.txt").write_text("a red circle\n\nzebra giraffe okapi\n")
    cfg = load_config()
    cfg.DATA_DIR, cfg.TRAIN.NET_G, cfg.TRAIN.NET_E = str(bad), str(tmp_path / "missing.pth"), "x.pth"
    with pytest.raises(CaptionError, match=r"example_captions.txt line 3: caption 'zebra giraffe okapi'"):
        gen_example(cfg, CPU)


def test_validation_writes_the_last_stage_of_every_full_batch(data, tmp_path):
    # CUB-like keys with a folder part, to check that subfolders are created.
    root = tmp_path / "data"
    shutil.copytree(data, root)
    keys = load_pickle(root / "test" / "filenames.pickle")
    for key in keys:
        for sub, ext in (("images", "jpg"), ("text", "txt")):
            (root / sub / "001.group").mkdir(exist_ok=True)
            (root / sub / f"{key}.{ext}").rename(root / sub / "001.group" / f"{key}.{ext}")
    save_pickle([f"001.group/{k}" for k in keys], root / "test" / "filenames.pickle")
    cfg = tiny_eval_cfg(root, tmp_path / "models")
    cfg.B_VALIDATION = True
    count = sample_validation(cfg, CPU)
    batch = cfg.TRAIN.BATCH_SIZE
    assert count == batch * (len(keys) // batch) == 2
    files = sorted((tmp_path / "models" / "netG_epoch_3" / "valid" / "single" / "001.group").iterdir())
    assert len(files) == count
    assert {f.name for f in files} <= {f"{k}_s-1.png" for k in keys}
    assert all(size_of(f) == (128, 128) for f in files)


def test_generator_of_another_config_is_a_checkpoint_error(data, tmp_path):
    cfg = tiny_eval_cfg(data, tmp_path)
    other = tiny_eval_cfg(data, tmp_path / "other", GAN__GF_DIM=8)
    cfg.TRAIN.NET_G = other.TRAIN.NET_G
    with pytest.raises(
        CheckpointError,
        match=r"key '[\w.]+' has shape \(\d+(, \d+)*\) in the file but "
        r"\(\d+(, \d+)*\) in G_NET",
    ):
        gen_example(cfg, CPU)


def test_dcgan_generator(data, tmp_path):
    cfg = tiny_eval_cfg(data, tmp_path, "netG_dcgan", GAN__B_DCGAN=True, GAN__R_NUM=0)
    written = gen_example(cfg, CPU)
    out = tmp_path / "netG_dcgan" / "example_captions"
    n = len(example_sentences(data))
    assert set(written) == {out / f"0_s_{i}_{s}.png" for i in range(n) for s in ("g0", "a0")}
    assert size_of(out / "0_s_0_g0.png") == (128, 128)


def write_cfg(cfg, path):
    """The tiny config as a YAML file for the command line."""
    keys = ("DATA_DIR", "GPU_ID", "CUDA", "WORKERS", "B_VALIDATION", "TREE", "TRAIN", "GAN", "TEXT")
    plain = json.loads(json.dumps({k: cfg[k] for k in keys}))
    path.write_text(yaml.safe_dump(plain))
    return str(path)


def test_sample_main_with_captions(data, tmp_path, capsys):
    cfg = tiny_eval_cfg(data, tmp_path)
    yml = write_cfg(cfg, tmp_path / "tiny.yml")
    out = tmp_path / "mine"
    captions = ["a red circle at the top left", "a blue square"]
    argv = [
        "--cfg",
        yml,
        "--gpu",
        "-1",
        "--caption",
        captions[0],
        "--caption",
        captions[1],
        "--n",
        "2",
        "--out",
        str(out),
    ]
    assert sample_main(argv) == 0
    names = {
        f"{i}_{slug(c)}_{s}_{part}.png"
        for i, c in enumerate(captions)
        for s in (0, 1)
        for part in ("g0", "g1", "attention")
    }
    assert {p.name for p in out.iterdir()} == names
    assert "0_a_red_circle_at_the_top_left_1_g1.png" in names
    # Two samples of one caption differ (different z); the figure has both words' columns.
    assert (out / "1_a_blue_square_0_g1.png").read_bytes() != (out / "1_a_blue_square_1_g1.png").read_bytes()
    assert size_of(out / "1_a_blue_square_0_attention.png") == (4 * 128, 2 * LABEL_HEIGHT + 128)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {"mode": "captions", "output_dir": str(out), "files": len(names)}


def test_sample_main_errors_are_one_line(data, tmp_path, capsys):
    cfg = tiny_eval_cfg(data, tmp_path)
    yml = write_cfg(cfg, tmp_path / "tiny.yml")
    missing = tmp_path / "nowhere" / "netG_epoch_9.pth"
    assert sample_main(["--cfg", yml, "--gpu", "-1", "--set", f"TRAIN.NET_G={missing}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint not found" in err[0] and str(missing) in err[0]
    assert sample_main(["--cfg", yml, "--gpu", "-1", "--caption", "zebra okapi"]) == 2
    assert "has no word in the vocabulary" in capsys.readouterr().err
    assert not (tmp_path / "netG_epoch_3").exists()  # nothing written on an error


def test_stage_attention_figure_size_and_labels():
    images = [torch.rand(3, 64, 64) * 2 - 1, torch.rand(3, 128, 128) * 2 - 1]
    maps = [torch.rand(5, 32, 32).softmax(0), torch.rand(5, 64, 64).softmax(0)]
    words = ["a", "red", "circle"]
    fig = stage_attention_figure(images, words, maps, tile=96, title="a red circle")
    assert fig.dtype == np.uint8 and fig.shape == (3 * LABEL_HEIGHT + 2 * 96, 4 * 96, 3)
    for row in range(2):  # each word column has a label (dark pixels) in its label strip
        top = LABEL_HEIGHT + row * (LABEL_HEIGHT + 96)
        for w in range(1, 4):
            assert fig[top : top + LABEL_HEIGHT, w * 96 : (w + 1) * 96].min() < 100
    assert stage_attention_figure(images[:1], words, maps[:1]).shape == (LABEL_HEIGHT + 128, 4 * 128, 3)
    with pytest.raises(ValueError, match="2 stage images but 1"):
        stage_attention_figure(images, words, maps[:1])
    with pytest.raises(ValueError, match=r"\[T>=3,h,w\]"):
        stage_attention_figure(images[:1], words, [torch.rand(2, 32, 32)])


def test_row_attention_figure_still_works():
    fig = attention_figure(
        torch.rand(2, 3, 64, 64) * 2 - 1,
        torch.tensor([[1, 2, 0], [3, 0, 0]]),
        {0: "<end>", 1: "a", 2: "b", 3: "c"},
        [torch.rand(1, 2, 17, 17), torch.rand(1, 1, 17, 17)],
    )
    assert fig.shape == (2 * (96 + LABEL_HEIGHT), 3 * 96, 3)


def test_slug():
    assert slug("A small, red circle!") == "a_small_red_circle"
    assert re.fullmatch(r"[a-z_]{1,60}", slug("word " * 40))


def test_sampling_takes_the_speed_settings(data, tmp_path):
    """attngan-sample, attngan-eval and attngan-serve load G through load_models, which
    applies RUN.CHANNELS_LAST and RUN.COMPILE as training does; a compiled G's words are
    padded to its static length, with the same images and attention maps."""
    cfg = tiny_eval_cfg(data, tmp_path, RUN__CHANNELS_LAST="always")
    text = load_text_data(data, 10)
    net_g, text_encoder = load_models(cfg, text.n_words, CPU)
    convs = [m for m in net_g.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    cfg.RUN.CHANNELS_LAST = "never"
    plain, _ = load_models(cfg, text.n_words, CPU)
    assert all(m.weight.is_contiguous() for m in plain.modules() if isinstance(m, torch.nn.Conv2d))
    batch = encode_captions(["a red circle", "a small blue square at the top"], text.wordtoix)
    z = torch.randn(2, cfg.GAN.Z_DIM, generator=torch.Generator().manual_seed(3))
    outputs = []
    for static_words in (0, cfg.TEXT.WORDS_NUM):  # what speed.prepare sets on a compiled G
        plain.static_words = static_words
        torch.manual_seed(4)  # CA_NET's noise
        outputs.append(generate(plain, text_encoder, batch, z))
    (images, maps), (padded_images, padded_maps) = outputs
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(images, padded_images))
    assert maps[0].shape == padded_maps[0].shape and torch.allclose(maps[0], padded_maps[0], atol=1e-6)
