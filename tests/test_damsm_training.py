"""A two-epoch DAMSM run on a tiny generated dataset: snapshots, logs, resume, CLI errors."""

import json

import pytest
import torch

from attngan.checkpoint import CheckpointError, epoch_of, image_encoder_path, read_state_dict
from attngan.cli import pretrain_damsm_main
from attngan.config import load_config
from attngan.data.synthetic import make_shapes_dataset
from conftest import ROOT


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "shapes"
    make_shapes_dataset(root, num_images=36, image_size=32, seed=3)
    return root


def run(shapes, out, *overrides, workers=0):
    argv = [
        "--cfg",
        str(ROOT / "cfg/DAMSM/shapes.yml"),
        "--gpu",
        "-1",
        "--manualSeed",
        "1",
        "--data_dir",
        str(shapes),
        "--output_dir",
        str(out),
        "--set",
        "TRAIN.BATCH_SIZE=6",
        "TEXT.EMBEDDING_DIM=32",
        "DAMSM.COMPACT_IMAGE_SIZE=32",
        "TREE.BASE_SIZE=32",
        "TRAIN.SNAPSHOT_INTERVAL=1",
        f"WORKERS={workers}",
        "TRAIN.MAX_EPOCH=2",
        *overrides,
    ]
    return pretrain_damsm_main(argv)


def test_two_epochs_write_snapshots_logs_and_resume(shapes, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(shapes, out, workers=1) == 0
    model = out / "Model"
    for epoch in (0, 1):
        assert (model / f"text_encoder{epoch}.pth").is_file() and (model / f"image_encoder{epoch}.pth").is_file()
    metrics = json.loads((model / "metrics.json").read_text())
    assert set(metrics) >= {"w_loss", "s_loss", "top1_image_to_text", "top1_text_to_image", "chance"}
    assert metrics["chance"] == pytest.approx(1 / 6)
    assert 0 <= metrics["word_swap_shape"] <= 1 and metrics["word_swap_colour_chance"] == pytest.approx(1 / 8)
    assert list((out / "Log").glob("events.out.tfevents.*"))
    assert (out / "Image" / "attention_maps0.png").is_file()
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["output_dir"] == str(out)
    recorded = (out / "config.yml").read_text()
    assert (
        recorded.startswith("# python code/pretrain_DAMSM.py --cfg ")
        and "--manualSeed 1" in recorded.splitlines()[0]
        and recorded.splitlines()[1].startswith("# seed 1;")
    )
    assert load_config(out / "config.yml").TRAIN.BATCH_SIZE == 6  # the resolved config, overrides included

    resumed = tmp_path / "resumed"
    assert run(shapes, resumed, f"TRAIN.NET_E={model / 'text_encoder1.pth'}", "TRAIN.MAX_EPOCH=3") == 0
    assert sorted(p.name for p in (resumed / "Model").glob("*.pth")) == [
        "image_encoder2.pth",
        "text_encoder2.pth",
        "training_state.pth",
    ]
    before, after = (
        read_state_dict(model / "text_encoder1.pth"),
        read_state_dict(resumed / "Model" / "text_encoder2.pth"),
    )
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)


def test_same_seed_same_weights(shapes, tmp_path):
    for name in ("a", "b"):
        assert run(shapes, tmp_path / name, "TRAIN.MAX_EPOCH=1") == 0
    a = read_state_dict(tmp_path / "a" / "Model" / "text_encoder0.pth")
    b = read_state_dict(tmp_path / "b" / "Model" / "text_encoder0.pth")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_names():
    assert epoch_of("DAMSMencoders/bird/text_encoder200.pth", "text_encoder") == 200
    assert image_encoder_path("x/text_encoder7.pth").name == "image_encoder7.pth"
    with pytest.raises(CheckpointError, match="text_encoder<epoch>.pth"):
        epoch_of("x/encoder.pth", "text_encoder")


def test_cli_errors_are_one_clear_line(shapes, tmp_path, capsys):
    assert run(shapes, tmp_path / "r", "TRAIN.NET_E=nowhere/text_encoder3.pth") == 2
    assert "checkpoint not found: nowhere/text_encoder3.pth" in capsys.readouterr().err
    assert run(tmp_path / "no_data", tmp_path / "r2") == 2
    assert "data directory not found" in capsys.readouterr().err
    assert run(shapes, tmp_path / "r3", "TRAIN.BATCH_SIZE=500") == 2
    assert "fewer than TRAIN.BATCH_SIZE 500" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without CUDA")
def test_cuda_id_without_cuda(shapes, tmp_path, capsys):
    argv = ["--cfg", str(ROOT / "cfg/DAMSM/shapes.yml"), "--gpu", "0", "--data_dir", str(shapes)]
    assert pretrain_damsm_main(argv) == 2
    assert "--gpu 0 asks for CUDA device 0, but this PyTorch sees no CUDA device" in capsys.readouterr().err
