"""The error contract of every entry point (docs/errors.md), over bad inputs of every kind:
config, arguments, data, checkpoints, device, captions and output.

Each case must end with exit status 2 and exactly one line on stderr, naming the culprit
(the file, key or value), without a traceback, and leave the earlier runs' outputs (a
DAMSM run, an AttnGAN run and their dataset, made once for the module) byte for byte as
they were, and the case's own folder without anything new: no run folder, no half-written
file. The commands run in-process through their ``main(argv)``; a few run as the user runs
them (code/main.py, code/pretrain_DAMSM.py, a console script and a scripts/ wrapper).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from attngan import cli, run_folder
from attngan.checkpoint import save_weights
from attngan.config import load_config
from attngan.data import check, make_dataset, synthetic
from attngan.data.synthetic import make_shapes_dataset
from attngan.errors import one_line
from attngan.models import build_generator, build_text_encoder
from attngan.models.encoders import CompactImageEncoder
from attngan.models.generator import G_NET
from conftest import ROOT

# The tiny recipe of tests/conftest.py's tiny_gan_cfg, as YAML overrides.
TINY_GAN = {
    "WORKERS": 0,
    "GPU_ID": -1,
    "CUDA": False,
    "TREE": {"BRANCH_NUM": 2},
    "GAN": {"GF_DIM": 2, "DF_DIM": 2, "Z_DIM": 8, "CONDITION_DIM": 4, "R_NUM": 1},
    "TEXT": {"EMBEDDING_DIM": 16, "WORDS_NUM": 12},
    "TRAIN": {"BATCH_SIZE": 4, "MAX_EPOCH": 1, "SNAPSHOT_INTERVAL": 1},
    "DAMSM": {"COMPACT_IMAGE_SIZE": 32},
    "RUN": {"LOG_INTERVAL": 1, "IMAGE_INTERVAL": 1000, "IMAGE_CACHE": False},
}
TINY_DAMSM = {
    "WORKERS": 0,
    "TREE": {"BASE_SIZE": 32},
    "TEXT": {"EMBEDDING_DIM": 16},
    "TRAIN": {"BATCH_SIZE": 4, "MAX_EPOCH": 1, "SNAPSHOT_INTERVAL": 1},
    "DAMSM": {"COMPACT_IMAGE_SIZE": 32, "VAL_BATCHES": 1},
    "RUN": {"IMAGE_CACHE": False},
}
# (no image cache: the dataset folder holds only what make_shapes_dataset and the loader write)
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING) ")


def merged(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def write_cfg(path: Path, base: str, **overrides) -> Path:
    path.write_text(yaml.safe_dump(merged(yaml.safe_load((ROOT / base).read_text()), overrides)))
    return path


def digest(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots``, by path."""
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for root in roots
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@dataclass
class Env:
    root: Path
    data: Path
    damsm: Path  # an earlier DAMSM run
    gan: Path  # an earlier AttnGAN run on its encoders
    damsm_cfg: Path
    gan_cfg: Path
    eval_cfg: Path  # TRAIN.FLAG False: attngan-sample and attngan-eval of the AttnGAN run

    @property
    def net_e(self) -> Path:
        return self.damsm / "Model" / "text_encoder0.pth"

    @property
    def net_g(self) -> Path:
        return self.gan / "Model" / "netG_epoch_1.pth"

    @property
    def state(self) -> Path:
        return self.gan / "Model" / "training_state.pth"

    def outputs(self) -> dict[str, str]:
        return digest(self.data, self.damsm, self.gan)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    root = tmp_path_factory.mktemp("bad_inputs")
    data = root / "shapes"
    make_shapes_dataset(data, num_images=16, image_size=32, seed=4, test_fraction=0.25)  # 12 train, 4 test
    env = Env(root, data, root / "damsm", root / "gan", root / "damsm.yml", root / "gan.yml", root / "eval.yml")
    write_cfg(env.damsm_cfg, "cfg/DAMSM/shapes.yml", DATA_DIR=str(data), **TINY_DAMSM)
    write_cfg(
        env.gan_cfg,
        "cfg/shapes_attn2.yml",
        **merged(TINY_GAN, {"DATA_DIR": str(data), "TRAIN": {"NET_E": str(env.net_e)}}),
    )
    write_cfg(
        env.eval_cfg,
        "cfg/eval_shapes.yml",
        **merged(
            TINY_GAN,
            {
                "DATA_DIR": str(data),
                "TRAIN": {"NET_E": str(env.net_e), "NET_G": str(env.net_g)},
                "EVAL": {"METRICS": "rp", "NUM_SAMPLES": 4, "BATCH_SIZE": 4, "SPLITS": 2, "R_MISMATCHED": 3},
            },
        ),
    )
    assert (
        cli.pretrain_damsm_main(
            ["--cfg", str(env.damsm_cfg), "--gpu", "-1", "--manualSeed", "1", "--output_dir", str(env.damsm)]
        )
        == 0
    )
    assert cli.main(["--cfg", str(env.gan_cfg), "--gpu", "-1", "--manualSeed", "1", "--output_dir", str(env.gan)]) == 0
    assert env.net_g.is_file() and env.state.is_file()
    return env


# ---------------------------------------------------------------- the cases

COMMANDS = {
    "train": cli.main,
    "damsm": cli.pretrain_damsm_main,
    "sample": cli.sample_main,
    "eval": cli.eval_main,
    "shapes": synthetic.main,
    "check": check.main,
    "dataset": make_dataset.main,
}
CASES: dict[str, tuple[str, callable]] = {}


def case(command: str):
    """Register ``fn(env, tmp, monkeypatch) -> (argv, culprit)`` as a bad input of ``command``."""

    def register(fn):
        CASES[fn.__name__] = (command, fn)
        return fn

    return register


def train(env: Env, tmp: Path, *sets: str, cfg: Path | None = None, extra: tuple = ()) -> list[str]:
    return [
        "--cfg",
        str(cfg or env.gan_cfg),
        "--gpu",
        "-1",
        "--manualSeed",
        "1",
        "--output_dir",
        str(tmp / "run"),
        *extra,
        "--set",
        *sets,
    ]


def damsm(env: Env, tmp: Path, *sets: str, extra: tuple = ()) -> list[str]:
    return train(env, tmp, *sets, cfg=env.damsm_cfg, extra=extra)


def sample(env: Env, *captions: str, out: Path | None = None, sets: tuple = (), extra: tuple = ()) -> list[str]:
    return [
        "--cfg",
        str(env.eval_cfg),
        "--gpu",
        "-1",
        *[a for c in captions for a in ("--caption", c)],
        *(("--out", str(out)) if out else ()),
        *extra,
        "--set",
        *sets,
    ]


def evaluate(env: Env, tmp: Path, *sets: str, extra: tuple = ()) -> list[str]:
    return ["--cfg", str(env.eval_cfg), "--gpu", "-1", "--output_dir", str(tmp / "eval"), *extra, "--set", *sets]


def data_copy(env: Env, tmp: Path) -> Path:
    """The dataset copied into the case's folder, for a case that breaks a file of it."""
    return Path(shutil.copytree(env.data, tmp / "shapes", ignore=shutil.ignore_patterns("cache")))


def broken_images(env: Env, tmp: Path, breaks) -> Path:
    """A dataset copy whose every training image ``breaks(path)`` broke: the first batch
    meets one, before the first step (after it, the run folder keeps what it saved)."""
    data = data_copy(env, tmp)
    for key in pickle.loads((data / "train" / "filenames.pickle").read_bytes()):
        breaks(data / "images" / f"{key}.jpg")
    return data


def without_pickle(env: Env, tmp: Path) -> tuple[Path, str]:
    """A dataset copy without captions.pickle (built from text/), and its first caption file."""
    data = data_copy(env, tmp)
    (data / "captions.pickle").unlink()
    key = pickle.loads((data / "train" / "filenames.pickle").read_bytes())[0]
    return data, str(data / "text" / f"{key}.txt")


def truncated_copy(source: Path, target: Path, keep: float = 0.5) -> Path:
    target.write_bytes(source.read_bytes()[: int(source.stat().st_size * keep)])
    return target


def oom(*args, **kwargs):
    """What PyTorch raises when a CUDA allocation fails (its message, shortened)."""
    raise torch.cuda.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
        "79.10 GiB of which 1.25 GiB is free. Including non-PyTorch memory, this process "
        "has 77.85 GiB memory in use."
    )


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


# Bad inputs that are their command line alone: (name, command, --set pairs, other arguments,
# what the error line must name). The sample rows write into the case's folder (--out).
COMMAND_LINES = [
    # config: file, key, type, --set syntax, values out of range
    ("config_file_missing", "train", (), ("--cfg", "nowhere/x.yml"), "nowhere/x.yml"),
    ("set_unknown_key", "train", ("TRAIN.MAX_EPOCHS=2",), (), "TRAIN.MAX_EPOCHS"),
    ("set_wrong_type", "train", ("TRAIN.BATCH_SIZE=four",), (), "TRAIN.BATCH_SIZE"),
    ("set_without_value", "damsm", ("TRAIN.BATCH_SIZE",), (), "TRAIN.BATCH_SIZE"),
    ("set_not_yaml", "train", ("TRAIN.BATCH_SIZE=[4",), (), "TRAIN.BATCH_SIZE"),
    ("batch_size_zero", "train", ("TRAIN.BATCH_SIZE=0",), (), "TRAIN.BATCH_SIZE"),
    ("batch_size_negative", "damsm", ("TRAIN.BATCH_SIZE=-4",), (), "TRAIN.BATCH_SIZE"),
    ("batch_size_one_for_training", "damsm", ("TRAIN.BATCH_SIZE=1",), (), "TRAIN.BATCH_SIZE"),
    ("epochs_zero", "train", ("TRAIN.MAX_EPOCH=0",), (), "TRAIN.MAX_EPOCH"),
    ("snapshot_interval_zero", "train", ("TRAIN.SNAPSHOT_INTERVAL=0",), (), "TRAIN.SNAPSHOT_INTERVAL"),
    ("log_interval_zero", "train", ("RUN.LOG_INTERVAL=0",), (), "RUN.LOG_INTERVAL"),
    ("image_interval_negative", "damsm", ("RUN.IMAGE_INTERVAL=-1",), (), "RUN.IMAGE_INTERVAL"),
    ("captions_per_image_zero", "train", ("TEXT.CAPTIONS_PER_IMAGE=0",), (), "TEXT.CAPTIONS_PER_IMAGE"),
    ("four_stages", "train", ("TREE.BRANCH_NUM=4",), (), "TREE.BRANCH_NUM"),
    ("odd_embedding", "train", ("TEXT.EMBEDDING_DIM=15",), (), "TEXT.EMBEDDING_DIM"),
    ("unknown_precision", "train", ("RUN.PRECISION=fp16",), (), "RUN.PRECISION"),
    ("eval_samples_zero", "eval", ("EVAL.NUM_SAMPLES=0",), (), "EVAL.NUM_SAMPLES"),
    ("eval_batch_option_zero", "eval", (), ("--batch_size", "0"), "batch_size"),
    ("eval_unknown_metric", "eval", (), ("--metrics", "rp,bleu"), "bleu"),
    ("samples_per_caption_zero", "sample", (), ("--caption", "a red circle", "--n", "0"), "--n"),
    # arguments
    ("gpu_not_a_number", "train", (), ("--gpu", "first"), "--gpu"),
    ("unknown_option", "damsm", (), ("--epochs", "3"), "--epochs"),
    ("shapes_too_few_images", "shapes", (), ("--num-images", "1"), "num_images"),
    ("check_captions_per_image_zero", "check", (), ("--captions_per_image", "0"), "captions per image"),
    # device
    ("gpu_id_negative", "damsm", (), ("--gpu", "-3"), "--gpu -3"),
    # captions: empty, punctuation only, non-ASCII only, every word unknown, very long
    ("caption_empty", "sample", (), ("--caption", ""), "caption ''"),
    ("caption_punctuation_only", "sample", (), ("--caption", "?!... --"), "'?!... --'"),
    ("caption_non_ascii_only", "sample", (), ("--caption", "赤い丸"), "赤い丸"),
    (
        "caption_all_words_unknown",
        "sample",
        (),
        ("--caption", "a red circle", "--caption", "zebra quantum"),
        "--caption #2",
    ),
    ("caption_very_long", "sample", (), ("--caption", "a red circle " * 400), "--caption #1"),
]
ARGV = {
    "train": lambda env, tmp, sets, extra: train(env, tmp, *sets, extra=extra),
    "damsm": lambda env, tmp, sets, extra: damsm(env, tmp, *sets, extra=extra),
    "eval": lambda env, tmp, sets, extra: evaluate(env, tmp, *sets, extra=extra),
    "sample": lambda env, tmp, sets, extra: sample(env, out=tmp / "out", sets=sets, extra=extra),
    "shapes": lambda env, tmp, sets, extra: ["--out", str(tmp / "shapes"), *extra],
    "check": lambda env, tmp, sets, extra: ["--data_dir", str(env.data), *extra],
}
for name, command, sets, extra, culprit in COMMAND_LINES:
    CASES[name] = (
        command,
        lambda env, tmp, mp, command=command, sets=sets, extra=extra, culprit=culprit: (
            ARGV[command](env, tmp, sets, extra),
            culprit,
        ),
    )


# config files
@case("train")
def config_file_not_yaml(env, tmp, mp):
    (tmp / "bad.yml").write_text("TRAIN: [1, 2\n")
    return train(env, tmp, cfg=tmp / "bad.yml"), "bad.yml"


@case("damsm")
def config_file_unknown_key(env, tmp, mp):
    (tmp / "typo.yml").write_text("TRAIN:\n  BATCHSIZE: 4\n")
    return damsm(env, tmp, extra=("--cfg", str(tmp / "typo.yml"))), "TRAIN.BATCHSIZE"


# data: missing, truncated or corrupt images; caption files; pickles; objects.json
@case("damsm")
def data_dir_missing(env, tmp, mp):
    return damsm(env, tmp, f"DATA_DIR={tmp / 'nowhere'}"), str(tmp / "nowhere")


@case("train")
def image_missing(env, tmp, mp):
    data = broken_images(env, tmp, lambda image: image.unlink())
    return train(env, tmp, f"DATA_DIR={data}"), f"image not found: {data / 'images' / 'shape_'}"


@case("train")
def image_truncated_during_training(env, tmp, mp):
    data = broken_images(env, tmp, lambda image: truncated_copy(image, image))
    return train(env, tmp, f"DATA_DIR={data}"), f"cannot read image {data / 'images' / 'shape_'}"


@case("train")
def image_truncated_in_a_loader_worker(env, tmp, mp):
    data = broken_images(env, tmp, lambda image: truncated_copy(image, image))
    return train(env, tmp, f"DATA_DIR={data}", "WORKERS=1"), f"cannot read image {data / 'images' / 'shape_'}"


@case("damsm")
def image_truncated_while_caching(env, tmp, mp):
    data = broken_images(env, tmp, lambda image: truncated_copy(image, image))
    return damsm(
        env, tmp, f"DATA_DIR={data}", "RUN.IMAGE_CACHE=True"
    ), f"cannot read image {data / 'images' / 'shape_'}"


@case("damsm")
def image_not_an_image(env, tmp, mp):
    data = broken_images(env, tmp, lambda image: image.write_bytes(os.urandom(2000)))
    return damsm(env, tmp, f"DATA_DIR={data}"), f"cannot read image {data / 'images' / 'shape_'}"


@case("damsm")
def caption_file_missing(env, tmp, mp):
    data, text = without_pickle(env, tmp)
    Path(text).unlink()
    return damsm(env, tmp, f"DATA_DIR={data}"), text


@case("damsm")
def caption_file_empty(env, tmp, mp):
    data, text = without_pickle(env, tmp)
    Path(text).write_text("")
    return damsm(env, tmp, f"DATA_DIR={data}"), text


@case("train")
def caption_file_short(env, tmp, mp):
    data, text = without_pickle(env, tmp)
    Path(text).write_text("a red circle\n\n...\na blue square\n")
    return train(env, tmp, f"DATA_DIR={data}"), text


@case("train")
def captions_pickle_malicious(env, tmp, mp):
    data = data_copy(env, tmp)
    (data / "captions.pickle").write_bytes(pickle.dumps(Evil(), protocol=2))
    return train(env, tmp, f"DATA_DIR={data}"), str(data / "captions.pickle")


@case("damsm")
def captions_pickle_truncated(env, tmp, mp):
    data = data_copy(env, tmp)
    truncated_copy(env.data / "captions.pickle", data / "captions.pickle")
    return damsm(env, tmp, f"DATA_DIR={data}"), str(data / "captions.pickle")


@case("damsm")
def captions_pickle_of_other_types(env, tmp, mp):
    data = data_copy(env, tmp)
    (data / "captions.pickle").write_bytes(pickle.dumps([[1, 2], [3], "words", {}], protocol=2))
    return damsm(env, tmp, f"DATA_DIR={data}"), str(data / "captions.pickle")


@case("train")
def captions_pickle_of_other_captions_per_image(env, tmp, mp):
    return train(env, tmp, "TEXT.CAPTIONS_PER_IMAGE=5"), str(env.data / "captions.pickle")


@case("train")
def filenames_pickle_not_a_list(env, tmp, mp):
    data = data_copy(env, tmp)
    (data / "train" / "filenames.pickle").write_bytes(pickle.dumps(42, protocol=2))
    return train(env, tmp, f"DATA_DIR={data}"), str(data / "train" / "filenames.pickle")


@case("damsm")
def class_info_of_words(env, tmp, mp):
    data = data_copy(env, tmp)
    (data / "train" / "class_info.pickle").write_bytes(pickle.dumps(["red circle"] * 12, protocol=2))
    return damsm(env, tmp, f"DATA_DIR={data}"), str(data / "train" / "class_info.pickle")


@case("damsm")
def objects_json_not_json(env, tmp, mp):
    data = data_copy(env, tmp)
    (data / "objects.json").write_text('{"images": {')
    return damsm(env, tmp, f"DATA_DIR={data}"), str(data / "objects.json")


@case("damsm")
def objects_json_of_another_layout(env, tmp, mp):
    data = data_copy(env, tmp)
    (data / "objects.json").write_text("[1, 2, 3]")
    return damsm(env, tmp, f"DATA_DIR={data}"), str(data / "objects.json")


@case("dataset")
def dataset_images_missing(env, tmp, mp):
    (tmp / "captions.csv").write_text("image,caption\na.jpg,a red circle\n")
    return ["--images", str(tmp / "nowhere"), "--captions", str(tmp / "captions.csv"), "--out", str(tmp / "mine")], str(
        tmp / "nowhere"
    )


# checkpoints: missing, truncated, not a checkpoint, wrong shape, wrong kind, another vocabulary
@case("train")
def text_encoder_missing(env, tmp, mp):
    return train(env, tmp, f"TRAIN.NET_E={tmp / 'text_encoder9.pth'}"), str(tmp / "text_encoder9.pth")


@case("train")
def text_encoder_truncated(env, tmp, mp):
    path = truncated_copy(env.net_e, tmp / "text_encoder0.pth")
    shutil.copy(env.damsm / "Model" / "image_encoder0.pth", tmp)
    return train(env, tmp, f"TRAIN.NET_E={path}"), str(path)


@case("train")
def text_encoder_not_a_checkpoint(env, tmp, mp):
    path = tmp / "text_encoder0.pth"
    path.write_text("not weights")
    return train(env, tmp, f"TRAIN.NET_E={path}"), str(path)


@case("train")
def image_encoder_missing(env, tmp, mp):
    path = Path(shutil.copy(env.net_e, tmp))
    return train(env, tmp, f"TRAIN.NET_E={path}"), str(tmp / "image_encoder0.pth")


@case("train")
def text_encoder_of_another_vocabulary(env, tmp, mp):
    cfg = load_config(env.gan_cfg)
    save_weights(build_text_encoder(cfg, 7), tmp / "text_encoder0.pth")
    shutil.copy(env.damsm / "Model" / "image_encoder0.pth", tmp)
    return train(env, tmp, f"TRAIN.NET_E={tmp / 'text_encoder0.pth'}"), "vocabulary"


@case("damsm")
def damsm_resumed_from_a_generator(env, tmp, mp):
    shutil.copy(env.net_g, tmp / "text_encoder0.pth")
    shutil.copy(env.net_g, tmp / "image_encoder0.pth")
    return damsm(env, tmp, f"TRAIN.NET_E={tmp / 'text_encoder0.pth'}"), "generator"


@case("sample")
def generator_of_another_config(env, tmp, mp):
    cfg = load_config(env.eval_cfg)
    cfg.GAN.GF_DIM = 4
    save_weights(build_generator(cfg), tmp / "netG_epoch_1.pth")
    return sample(env, "a red circle", out=tmp / "out", sets=(f"TRAIN.NET_G={tmp / 'netG_epoch_1.pth'}",)), str(
        tmp / "netG_epoch_1.pth"
    )


@case("sample")
def discriminator_for_a_generator(env, tmp, mp):
    path = env.gan / "Model" / "netD0.pth"
    return sample(env, "a red circle", out=tmp / "out", sets=(f"TRAIN.NET_G={path}",)), "discriminator"


@case("sample")
def training_state_for_a_generator(env, tmp, mp):
    return sample(env, "a red circle", out=tmp / "out", sets=(f"TRAIN.NET_G={env.state}",)), "--resume"


@case("train")
def resume_missing(env, tmp, mp):
    return train(env, tmp, extra=("--resume", str(tmp / "training_state.pth"))), str(tmp / "training_state.pth")


@case("train")
def resume_truncated(env, tmp, mp):
    path = truncated_copy(env.state, tmp / "training_state.pth")
    return train(env, tmp, extra=("--resume", str(path))), str(path)


@case("train")
def resume_a_state_of_another_config(env, tmp, mp):
    # continues in the earlier run's folder: it must stay as it was (no config.1.yml)
    return [
        "--cfg",
        str(env.gan_cfg),
        "--gpu",
        "-1",
        "--resume",
        str(env.state),
        "--set",
        "GAN.GF_DIM=4",
        "TRAIN.MAX_EPOCH=2",
    ], str(env.state)


@case("eval")
def eval_text_encoder_missing(env, tmp, mp):
    return evaluate(env, tmp, f"TRAIN.NET_E={tmp / 'text_encoder0.pth'}"), str(tmp / "text_encoder0.pth")


# device: a CUDA id without CUDA, a negative id, out of GPU memory
@case("train")
def cuda_without_cuda(env, tmp, mp):
    mp.setattr(torch.cuda, "is_available", lambda: False)
    return train(env, tmp, extra=("--gpu", "0")), "--gpu 0"


@case("train")
def out_of_memory_training(env, tmp, mp):
    mp.setattr(G_NET, "forward", oom)
    return train(env, tmp), "TRAIN.BATCH_SIZE=2"


@case("damsm")
def out_of_memory_pretraining(env, tmp, mp):
    mp.setattr(CompactImageEncoder, "forward", oom)
    return damsm(env, tmp), "TRAIN.BATCH_SIZE=2"


@case("sample")
def out_of_memory_sampling(env, tmp, mp):
    mp.setattr(G_NET, "forward", oom)
    return sample(env, "a red circle", out=tmp / "out"), "TRAIN.BATCH_SIZE"


@case("eval")
def out_of_memory_evaluating(env, tmp, mp):
    mp.setattr(G_NET, "forward", oom)
    return evaluate(env, tmp, extra=("--batch_size", "4")), "--batch_size 2"


@case("sample")
def example_caption_file_without_captions(env, tmp, mp):
    data = data_copy(env, tmp)
    name = (data / "example_filenames.txt").read_text().split()[0]
    (data / f"{name}.txt").write_text("\n...\n")
    return sample(env, sets=(f"DATA_DIR={data}",)), str(data / f"{name}.txt")


# output: not a folder, unwritable, full
@case("train")
def output_dir_under_a_file(env, tmp, mp):
    (tmp / "file").write_text("")
    return train(env, tmp, extra=("--output_dir", str(tmp / "file" / "run"))), str(tmp / "file" / "run")


def probe_fails(mp, error: OSError) -> None:
    """Writing the output folder's probe file fails with ``error``. Simulated: the tests
    may run as root, whom permissions do not stop, and on a disk with room."""

    def probe_open(path, *args, **kwargs):
        if Path(path).name == run_folder.PROBE:
            raise error
        return open(path, *args, **kwargs)

    mp.setattr(run_folder, "open", probe_open, raising=False)


@case("damsm")
def output_dir_unwritable(env, tmp, mp):
    probe_fails(mp, PermissionError(13, "Permission denied"))
    return damsm(env, tmp), f"cannot write in the output folder {tmp / 'run'} (Permission denied)"


@case("train")
def output_dir_full(env, tmp, mp):
    probe_fails(mp, OSError(28, "No space left on device"))
    return train(env, tmp), f"cannot write in the output folder {tmp / 'run'} (No space left on device)"


@case("train")
def output_dir_is_the_earlier_run_with_bad_data(env, tmp, mp):
    data = broken_images(env, tmp, lambda image: truncated_copy(image, image))
    # other settings than the earlier run's: without the contract a config.1.yml would stay behind
    return [
        "--cfg",
        str(env.gan_cfg),
        "--gpu",
        "-1",
        "--output_dir",
        str(env.gan),
        "--set",
        f"DATA_DIR={data}",
    ], f"cannot read image {data / 'images' / 'shape_'}"


@case("sample")
def sample_out_under_a_file(env, tmp, mp):
    (tmp / "file").write_text("")
    return sample(env, "a red circle", out=tmp / "file" / "out"), "--out"


@case("eval")
def eval_output_dir_under_a_file(env, tmp, mp):
    (tmp / "file").write_text("")
    return evaluate(env, tmp, extra=("--output_dir", str(tmp / "file" / "eval"))), str(tmp / "file" / "eval")


@case("shapes")
def shapes_out_under_a_file(env, tmp, mp):
    (tmp / "file").write_text("")
    return ["--out", str(tmp / "file" / "shapes"), "--num-images", "4"], str(tmp / "file")


def call(command: str, argv: list[str], capsys) -> tuple[int, str]:
    """(exit status, stderr) of ``command``'s main(argv), in this process."""
    capsys.readouterr()
    try:
        status = COMMANDS[command](argv)
    except SystemExit as exit_:  # argparse's usage errors
        status = exit_.code
    return status, capsys.readouterr().err


def test_there_are_enough_cases():
    assert len(CASES) >= 40 and {command for command, _ in CASES.values()} == set(COMMANDS)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, env, tmp_path, monkeypatch, capsys):
    command, make = CASES[name]
    earlier = env.outputs()
    argv, culprit = make(env, tmp_path, monkeypatch)
    prepared = set(tmp_path.rglob("*"))
    status, err = call(command, argv, capsys)
    lines = err.splitlines()
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("error ("), err
    assert culprit in lines[0] and "Traceback" not in err
    assert env.outputs() == earlier
    # nothing new but what a dataset copy's loader may write whole (its captions.pickle, its image cache)
    copy = tmp_path / "shapes"
    assert all(
        p.is_relative_to(copy)
        and not p.name.endswith(".tmp")
        and (p.name == "captions.pickle" or p.relative_to(copy).parts[0] == "cache")
        for p in set(tmp_path.rglob("*")) - prepared
    ), sorted(set(tmp_path.rglob("*")) - prepared)


# ---------------------------------------------------------------- the rest of the contract


def test_debug_shows_the_traceback_of_a_user_error(env, tmp_path, capsys, monkeypatch):
    argv = train(env, tmp_path, "TRAIN.BATCH_SIZE=0")
    status, err = call("train", [*argv[:2], "--debug", *argv[2:]], capsys)
    assert status == 2 and err.startswith("Traceback") and err.splitlines()[-1].startswith("error (ConfigError): ")
    monkeypatch.setenv("ATTNGAN_DEBUG", "1")
    status, err = call("sample", sample(env, "", out=tmp_path / "out"), capsys)
    assert status == 2 and err.startswith("Traceback") and "caption ''" in err.splitlines()[-1]


def test_a_programming_error_keeps_its_traceback_and_leaves_no_run_folder(env, tmp_path, monkeypatch):
    def bug(*args, **kwargs):
        raise TypeError("a bug, not the user's mistake")

    monkeypatch.setattr(G_NET, "forward", bug)
    with pytest.raises(TypeError, match="a bug"):
        cli.main(train(env, tmp_path))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("error", [ValueError("size mismatch: [4, 48] and [4, 32]"), OSError(5, "a bug's I/O error")])
def test_a_value_or_os_error_inside_a_model_keeps_its_traceback(env, tmp_path, monkeypatch, error):
    """A ValueError (what torch and numpy raise for shapes) or an OSError raised by code, not
    by a user's file, is a programming error in training and in sampling: not one line."""

    def bug(*args, **kwargs):
        raise error

    monkeypatch.setattr(G_NET, "forward", bug)
    with pytest.raises(type(error), match=re.escape(str(error.args[-1]))):
        cli.main(train(env, tmp_path))
    with pytest.raises(type(error), match=re.escape(str(error.args[-1]))):
        cli.sample_main(sample(env, "a red circle", out=tmp_path / "out"))


def test_a_failure_in_a_loader_worker_ends_the_process(env, tmp_path):
    """A truncated image met by a DataLoader worker (which ignores SIGTERM, so that a
    group's stop signal reaches only the main process): the command prints its line and
    exits with 2, workers and all, within seconds of the error."""
    data = broken_images(env, tmp_path, lambda image: truncated_copy(image, image))
    argv = [sys.executable, "code/main.py", *train(env, tmp_path, f"DATA_DIR={data}", "WORKERS=2")]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=120)  # it hung for ever before the fix
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the command did not exit: " + proc.communicate()[1][-2000:])
    assert proc.returncode == 2, err
    assert err.splitlines()[-1].startswith("error (DataError): cannot read image"), err


def test_a_run_that_saved_something_keeps_its_folder(env, tmp_path, monkeypatch, capsys):
    """Running out of memory at the second step, after the first step's images (IMAGE_INTERVAL 1)."""
    calls = []
    forward = G_NET.forward

    def second_step_oom(self, *args, **kwargs):
        calls.append(self.training)
        if calls.count(True) == 2:
            oom()
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(G_NET, "forward", second_step_oom)
    status, err = call("train", train(env, tmp_path, "RUN.IMAGE_INTERVAL=1"), capsys)
    assert status == 2 and len(err.splitlines()) == 1
    assert f"{tmp_path / 'run'} keeps what this run saved" in err and "TRAIN.BATCH_SIZE" in err
    assert list((tmp_path / "run" / "Image").glob("G_average_1_g*.png"))


def test_worker_traceback_is_cut_to_the_error():
    """What PyTorch re-raises in the main process for an error in a DataLoader worker."""
    wrapped = OSError(
        "Caught OSError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "/x/cache.py", line 36, in open_rgb\n    return img.convert("RGB")\n'
        "           ^^^^^^^^^^^^^^^^^^\nOSError: image file is truncated\n\nThe above exception was "
        "the direct cause of the following exception:\n\nTraceback (most recent call last):\n"
        '  File "/x/worker.py", line 349, in _worker_loop\n    data = fetcher.fetch(index)\n'
        "OSError: cannot read image /d/images/a.jpg (truncated or corrupt?): image file is truncated\n"
    )
    assert one_line(wrapped) == "cannot read image /d/images/a.jpg (truncated or corrupt?): image file is truncated"


def test_as_the_user_runs_them(env, tmp_path):
    """The paper's two commands, a console script and a scripts/ wrapper, as subprocesses
    (started together): the error is stderr's last line, after log records only."""
    data = data_copy(env, tmp_path)
    (data / "captions.pickle").write_bytes(pickle.dumps(Evil(), protocol=2))
    python, earlier = sys.executable, env.outputs()
    runs = {
        "TRAIN.BATCH_SIZE": [python, "code/main.py", *train(env, tmp_path, "TRAIN.BATCH_SIZE=0")],
        str(data / "captions.pickle"): [python, "code/pretrain_DAMSM.py", *damsm(env, tmp_path, f"DATA_DIR={data}")],
        "'!!!'": [str(Path(python).parent / "attngan-sample"), *sample(env, "!!!", out=tmp_path / "o")],
        "num_images": [python, "scripts/make_shapes.py", "--out", str(tmp_path / "shapes2"), "--num-images", "1"],
    }
    procs = {
        culprit: subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for culprit, argv in runs.items()
    }
    for culprit, proc in procs.items():
        _, err = proc.communicate(timeout=240)
        lines = err.splitlines()
        assert proc.returncode == 2, err
        assert lines[-1].startswith("error (") and culprit in lines[-1] and "Traceback" not in err
        assert all(LOG_RECORD.match(line) for line in lines[:-1]), err
    assert env.outputs() == earlier
    assert not (tmp_path / "run").exists() and not (tmp_path / "o").exists() and not (tmp_path / "shapes2").exists()
