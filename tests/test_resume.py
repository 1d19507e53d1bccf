"""Nothing lost: both stages write their full training state inside an epoch
(RUN.STATE_EVERY_STEPS); a run killed without warning (SIGKILL) resumes from its last
state to the uninterrupted run's weights, bit for bit; DAMSM resumes exactly with
--resume; a truncated or corrupt state falls back to the previous one."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from attngan.checkpoint import CheckpointError, read_state_dict
from attngan.cli import main, pretrain_damsm_main
from attngan.config import apply_overrides, load_config
from attngan.data.synthetic import make_shapes_dataset
from attngan.runtime import run_dir, seed_everything
from attngan.training.damsm import train_damsm
from attngan.training.state import checksum_of, load_state, previous_of, save_state
from conftest import ROOT

DAMSM_ARGS = [
    "--cfg",
    str(ROOT / "cfg/DAMSM/shapes.yml"),
    "--gpu",
    "-1",
    "--manualSeed",
    "1",
    "--set",
    "TRAIN.BATCH_SIZE=4",
    "TEXT.EMBEDDING_DIM=16",
    "DAMSM.COMPACT_IMAGE_SIZE=32",
    "TREE.BASE_SIZE=32",
    "TRAIN.SNAPSHOT_INTERVAL=10",
    "TRAIN.MAX_EPOCH=2",
    "DAMSM.VAL_BATCHES=1",
]


def same_files(a, b, names) -> None:
    for name in names:
        sa, sb = read_state_dict(a / "Model" / name), read_state_dict(b / "Model" / name)
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), name


@pytest.fixture
def one_thread():
    """Every run of a comparison on one thread (the subprocess too: THREADS_ENV), since the
    thread count changes the last bits of the sums."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


THREADS_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def killed_mid_epoch(command: list[str], state, steps_per_epoch: int) -> dict:
    """Run ``command`` (on one thread) until the state it has written is one inside its
    first two epochs (not at an epoch's end), then SIGKILL it; returns that state. The
    process group is stopped (SIGSTOP) while its state is read, so the state read is the
    one it is killed with."""
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=THREADS_ENV,
    )
    deadline = time.time() + 180
    saved = None
    while process.poll() is None and time.time() < deadline:
        if checksum_of(state).exists():
            os.killpg(process.pid, signal.SIGSTOP)
            saved, _ = load_state(state, torch.device("cpu"))  # the newest complete one
            if 0 < saved["step"] < steps_per_epoch and saved["epoch"] < 2:
                break
            os.killpg(process.pid, signal.SIGCONT)
        time.sleep(0.02)
    assert process.poll() is None, process.communicate()[1][-2000:]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert load_state(state, torch.device("cpu"))[0]["step"] == saved["step"]
    assert 0 < saved["step"] < steps_per_epoch and saved["epoch"] < 2, (saved["epoch"], saved["step"])
    return saved


def test_sigkilled_attngan_run_resumes_to_the_uninterrupted_weights(tiny_gan, tmp_path, one_thread):
    cfg = tiny_gan.cfg()
    cfg.RUN.STATE_EVERY_STEPS, cfg.RUN.IMAGE_INTERVAL = 1, 100000
    cfg_file = tmp_path / "tiny.yml"
    cfg_file.write_text(yaml.safe_dump(json.loads(json.dumps(cfg))))
    args = ["--cfg", str(cfg_file), "--gpu", "-1", "--manualSeed", "7"]
    assert main([*args, "--output_dir", str(tmp_path / "full")]) == 0
    part = tmp_path / "part"
    command = [sys.executable, str(ROOT / "code" / "main.py"), *args, "--output_dir", str(part)]
    killed_mid_epoch(command, part / "Model" / "training_state.pth", steps_per_epoch=3)
    assert main([*args, "--resume", str(part / "Model" / "training_state.pth")]) == 0
    same_files(tmp_path / "full", part, ["netG_epoch_2.pth", "netD0.pth", "netD1.pth"])


@pytest.fixture(scope="module")
def damsm_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("damsm") / "shapes"
    make_shapes_dataset(data, num_images=24, image_size=32, seed=3)  # 20 training images: 5 steps an epoch
    return data


def test_sigkilled_damsm_run_resumes_to_the_uninterrupted_weights(damsm_data, tmp_path, one_thread):
    args = [*DAMSM_ARGS, "RUN.STATE_EVERY_STEPS=1", f"DATA_DIR={damsm_data}"]
    assert pretrain_damsm_main([*args, "--output_dir", str(tmp_path / "full")]) == 0
    part = tmp_path / "part"
    command = [sys.executable, str(ROOT / "code" / "pretrain_DAMSM.py"), "--output_dir", str(part), *args]
    killed_mid_epoch(command, part / "Model" / "training_state.pth", steps_per_epoch=5)
    assert pretrain_damsm_main(["--resume", str(part / "Model" / "training_state.pth"), *args]) == 0
    same_files(tmp_path / "full", part, ["text_encoder1.pth", "image_encoder1.pth"])
    full = json.loads((tmp_path / "full" / "Model" / "metrics.json").read_text())
    assert json.loads((part / "Model" / "metrics.json").read_text()) == full


def test_damsm_stopped_mid_epoch_resumes_exactly_and_refuses_an_attngan_state(damsm_data, tmp_path, capsys):
    args = [*DAMSM_ARGS, f"DATA_DIR={damsm_data}", "RUN.STATE_EVERY_STEPS=0"]
    assert pretrain_damsm_main([*args, "--output_dir", str(tmp_path / "full")]) == 0
    cfg = load_config(ROOT / "cfg/DAMSM/shapes.yml")
    apply_overrides(cfg, args[args.index("--set") + 1 :])
    cfg.CUDA = False
    seed_everything(1)
    out = run_dir(cfg, str(tmp_path / "part"))
    train_damsm(cfg, torch.device("cpu"), out, 1, stop_after_steps=7)  # like a SIGTERM at epoch 1, step 2
    state, _ = load_state(out / "Model" / "training_state.pth", torch.device("cpu"))
    assert (state["kind"], state["epoch"], state["step"]) == ("DAMSM", 1, 2)
    assert pretrain_damsm_main(["--resume", str(out / "Model" / "training_state.pth"), *args]) == 0
    same_files(tmp_path / "full", out, ["text_encoder1.pth", "image_encoder1.pth"])

    gan_state = tmp_path / "gan_state.pth"
    save_state({"kind": "AttnGAN", "epoch": 0}, gan_state)
    capsys.readouterr()
    assert pretrain_damsm_main(["--resume", str(gan_state), *args, "--output_dir", str(tmp_path / "x")]) == 2
    assert "an AttnGAN training state, not a DAMSM one" in capsys.readouterr().err


def test_a_truncated_state_falls_back_to_the_previous_one(tmp_path, caplog):
    path = tmp_path / "training_state.pth"
    save_state({"kind": "AttnGAN", "epoch": 1, "w": torch.arange(1000.0)}, path)
    save_state({"kind": "AttnGAN", "epoch": 2, "w": torch.arange(1000.0)}, path)
    assert previous_of(path).is_file() and load_state(path, torch.device("cpu"))[0]["epoch"] == 2
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a kill in the middle of a copy, a full disk
    state, used = load_state(path, torch.device("cpu"))
    assert (state["epoch"], used) == (1, previous_of(path))
    assert "truncated or corrupt" in caplog.text and "previous state" in caplog.text
    path.write_bytes(data[:-8] + b"\x00" * 8)  # same size, other bytes: the checksum tells
    assert load_state(path, torch.device("cpu"))[0]["epoch"] == 1
    previous_of(path).write_bytes(b"not a state")
    with pytest.raises(CheckpointError, match="training_state.pth: truncated or corrupt.*previous state"):
        load_state(path, torch.device("cpu"))
