"""Config defaults, YAML merging and its errors."""

import pytest

from attngan.config import ConfigError, apply_overrides, default_config, load_config, record_config
from conftest import ROOT

ORIGINAL_CONFIGS = [
    "DAMSM/bird.yml",
    "DAMSM/coco.yml",
    "bird_attn2.yml",
    "bird_attnDCGAN2.yml",
    "coco_attn2.yml",
    "eval_bird.yml",
    "eval_bird_attnDCGAN2.yml",
    "eval_coco.yml",
]


def test_defaults_are_the_originals():
    cfg = default_config()
    assert cfg.TRAIN.SMOOTH.GAMMA1 == 5.0 and cfg.TRAIN.SMOOTH.GAMMA3 == 10.0 and cfg.TRAIN.SMOOTH.LAMBDA == 1.0
    assert cfg.TEXT.WORDS_NUM == 18 and cfg.GAN.GF_DIM == 128 and cfg.TREE.BRANCH_NUM == 3
    assert cfg.FIXES.ATTENTION_MASK is False
    default_config().TRAIN.BATCH_SIZE = 1
    assert default_config().TRAIN.BATCH_SIZE == 64  # fresh copies


@pytest.mark.parametrize("name", ORIGINAL_CONFIGS)
def test_original_configs_load(name):
    cfg = load_config(ROOT / "cfg" / name)
    assert cfg.DATA_DIR.startswith("data/")
    assert cfg.TRAIN.NET_E == "" or cfg.TRAIN.NET_E.startswith("DAMSMencoders/")


def test_values_merge_and_ints_become_floats():
    cfg = load_config(ROOT / "cfg" / "coco_attn2.yml")
    assert cfg.TRAIN.SMOOTH.LAMBDA == 50.0 and cfg.GAN.R_NUM == 3 and cfg.TEXT.WORDS_NUM == 12
    assert cfg.TRAIN.SMOOTH.GAMMA2 == 5.0 and cfg.GAN.Z_DIM == 100


def write(tmp_path, text):
    path = tmp_path / "c.yml"
    path.write_text(text)
    return path


def test_int_for_float_accepted(tmp_path):
    assert isinstance(load_config(write(tmp_path, "TRAIN:\n  SMOOTH:\n    LAMBDA: 5\n")).TRAIN.SMOOTH.LAMBDA, float)


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "TRAIN:\n  SMOOTH:\n    GAMA1: 4.0\n")
    with pytest.raises(ConfigError, match=r"c\.yml.*'TRAIN\.SMOOTH\.GAMA1'"):
        load_config(path)


def test_wrong_type_names_key_and_types(tmp_path):
    with pytest.raises(ConfigError, match=r"c\.yml.*'TRAIN\.BATCH_SIZE' expects int.*got str"):
        load_config(write(tmp_path, "TRAIN:\n  BATCH_SIZE: 'twenty'\n"))
    with pytest.raises(ConfigError, match="'TRAIN.FLAG' expects bool"):
        load_config(write(tmp_path, "TRAIN:\n  FLAG: 1\n"))
    with pytest.raises(ConfigError, match="section TRAIN. must be a mapping"):
        load_config(write(tmp_path, "TRAIN: 3\n"))


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "TRAIN: [\n"))
    with pytest.raises(ConfigError, match="nope.yml"):
        load_config(tmp_path / "nope.yml")


def test_command_line_overrides():
    cfg = default_config()
    apply_overrides(cfg, ["TRAIN.MAX_EPOCH=2", "DAMSM.IMAGE_BACKBONE=compact"])
    assert cfg.TRAIN.MAX_EPOCH == 2 and cfg.DAMSM.IMAGE_BACKBONE == "compact"
    with pytest.raises(ConfigError, match="'TRAIN.MAX_EPOCHS'"):
        apply_overrides(cfg, ["TRAIN.MAX_EPOCHS=2"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides(cfg, ["TRAIN.MAX_EPOCH"])


@pytest.mark.parametrize("name", ["DAMSM/shapes.yml", "shapes_attn2.yml", "eval_shapes.yml"])
def test_our_configs_load(name):
    cfg = load_config(ROOT / "cfg" / name)
    assert cfg.DAMSM.IMAGE_BACKBONE == "compact" and cfg.DATA_DIR == "data/shapes"


def test_recorded_config_loads_back_and_a_changed_run_keeps_the_first(tmp_path, caplog):
    cfg = load_config(ROOT / "cfg" / "bird_attn2.yml")
    first = record_config(cfg, tmp_path, "python code/main.py --cfg cfg/bird_attn2.yml\nseed 7")
    assert first.name == "config.yml" and first.read_text().startswith(
        "# python code/main.py --cfg cfg/bird_attn2.yml\n# seed 7\n"
    )
    assert load_config(first) == cfg
    cfg.RUN.RESUME = "run/Model/training_state.pth"  # where to continue from: the same run
    assert record_config(cfg, tmp_path, "resumed") == first
    cfg.TRAIN.MAX_EPOCH, cfg.TRAIN.NET_E = 700, "other/text_encoder9.pth"
    with caplog.at_level("WARNING"):
        assert record_config(cfg, tmp_path, "extended").name == "config.1.yml"
    assert (
        "TRAIN.MAX_EPOCH: 600 -> 700" in caplog.text
        and "TRAIN.NET_E: 'DAMSMencoders/bird/text_encoder200.pth'" in caplog.text
    )
    assert "RUN.RESUME" not in caplog.text
    assert load_config(first).TRAIN.MAX_EPOCH == 600 and load_config(tmp_path / "config.1.yml").TRAIN.MAX_EPOCH == 700
    assert record_config(cfg, tmp_path, "again").name == "config.1.yml"  # unchanged since the last record
    cfg.TRAIN.MAX_EPOCH = 800
    with caplog.at_level("WARNING"):
        assert record_config(cfg, tmp_path, "extended again").name == "config.2.yml"
    assert "since config.1.yml: TRAIN.MAX_EPOCH: 700 -> 800" in caplog.text


def test_an_unreadable_recorded_config_is_kept(tmp_path, caplog):
    (tmp_path / "config.yml").write_text("not: [valid")
    with caplog.at_level("WARNING"):
        assert record_config(default_config(), tmp_path, "run").name == "config.1.yml"
    assert (tmp_path / "config.yml").read_text() == "not: [valid" and "not a config" in caplog.text
