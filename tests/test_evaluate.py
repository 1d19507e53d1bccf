"""attngan-eval end to end on a tiny shapes dataset with random-weight G and DAMSM encoders:
the caption order of the protocol, determinism, the outputs, scoring a folder of images
and the errors a user can make. IS/FID run on a tiny random feature extractor (offline)."""

import copy
import csv
import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml
from PIL import Image

from attngan.checkpoint import save_weights
from attngan.cli import eval_main as main
from attngan.config import load_config
from attngan.data.synthetic import make_shapes_dataset
from attngan.data.text import load_text_data
from attngan.errors import CaptionError, DataError, OptionError
from attngan.evaluation import evaluate, parse_metrics
from attngan.evaluation.captions import sample_rows
from attngan.evaluation.folder import MANIFEST, read_folder
from attngan.models import build_generator, build_image_encoder, build_text_encoder
from optional import need

CPU = torch.device("cpu")
TEST_IMAGES, CAPTIONS = 3, 10


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    """A tiny eval config (2 stages, 64 and 128 px) whose random-weight G, text encoder and
    compact image encoder are saved under a temporary folder."""
    root = tmp_path_factory.mktemp("evaluate")
    make_shapes_dataset(root / "shapes", num_images=18, image_size=32, seed=5)  # 3 test images, 3 classes
    cfg = load_config()
    cfg.DATA_DIR, cfg.WORKERS, cfg.GPU_ID, cfg.CUDA = str(root / "shapes"), 0, -1, False
    cfg.TREE.update(BRANCH_NUM=2, BASE_SIZE=64)
    cfg.TRAIN.update(FLAG=False, BATCH_SIZE=4)
    cfg.GAN.update(GF_DIM=4, Z_DIM=8, CONDITION_DIM=4, R_NUM=1, DF_DIM=4)
    cfg.TEXT.update(EMBEDDING_DIM=16, CAPTIONS_PER_IMAGE=CAPTIONS, WORDS_NUM=12)
    cfg.DAMSM.update(IMAGE_BACKBONE="compact", COMPACT_IMAGE_SIZE=32)
    cfg.EVAL.update(NUM_SAMPLES=12, BATCH_SIZE=5, METRICS="rp")
    cfg.RUN.OUTPUT_DIR = str(root / "output")
    n_words = load_text_data(cfg.DATA_DIR, CAPTIONS).n_words
    torch.manual_seed(0)
    cfg.TRAIN.NET_G, cfg.TRAIN.NET_E = str(root / "netG_epoch_1.pth"), str(root / "text_encoder1.pth")
    save_weights(build_generator(cfg), cfg.TRAIN.NET_G)
    save_weights(build_text_encoder(cfg, n_words), cfg.TRAIN.NET_E)
    cfg.TRAIN.FLAG = True  # an image encoder as wide as the text encoder
    save_weights(build_image_encoder(cfg), root / "image_encoder1.pth")
    cfg.TRAIN.FLAG = False
    return cfg


class TinyFeatures(nn.Module):
    """Stands in for Inception: uint8 images -> (features [N,6], logits [N,5])."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(3)
        self.conv = nn.Conv2d(3, 6, 8, 8)
        self.head = nn.Linear(6, 5)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=generator)

    def forward(self, images):
        features = self.conv(images.float() / 255).mean(dim=(2, 3))
        return features, self.head(features)


def read_json(path):
    return json.loads(path.read_text())


def manifest_lines(folder):
    return [json.loads(line) for line in (folder / MANIFEST).read_text().splitlines()]


def test_samples_cycle_through_every_caption_of_every_test_image(cfg, tmp_path):
    assert sample_rows(0, 35, 30).tolist() == list(range(30)) + [0, 1, 2, 3, 4]
    evaluate(cfg, CPU, {"rp"}, tmp_path, num_samples=35, save_images=True)
    text = load_text_data(cfg.DATA_DIR, CAPTIONS)
    lines = manifest_lines(tmp_path / "images")
    assert len(lines) == 35 and len(text.test_names) == TEST_IMAGES
    expected = [(text.test_names[(i // CAPTIONS) % TEST_IMAGES], i % CAPTIONS) for i in range(35)]
    assert [(line["key"], line["caption_index"]) for line in lines] == expected
    for i, line in enumerate(lines):
        words = [text.ixtoword[w] for w in text.test_captions[i % 30]][: cfg.TEXT.WORDS_NUM]
        assert line["file_name"] == f"{i:06d}.png" and (tmp_path / "images" / line["file_name"]).is_file()
        if len(text.test_captions[i % 30]) <= cfg.TEXT.WORDS_NUM:
            assert line["text"] == " ".join(words)
    # The cycle repeats the same caption text (longer captions keep the same sampled words).
    assert [line["text"] for line in lines[30:]] == [line["text"] for line in lines[:5]]


def test_same_seed_same_numbers_and_no_side_effects(cfg, tmp_path):
    extractors = [TinyFeatures(), TinyFeatures()]
    state = torch.get_rng_state()
    runs = [
        evaluate(cfg, CPU, {"rp", "is", "fid"}, tmp_path / name, feature_extractor=extractor)
        for name, extractor in zip("ab", extractors)
    ]
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random stream is untouched
    a, b = (read_json(tmp_path / name / "metrics.json") for name in ("a", "b"))
    assert a["metrics"] == b["metrics"] == runs[0]["metrics"]
    assert (tmp_path / "a" / "samples.png").read_bytes() == (tmp_path / "b" / "samples.png").read_bytes()
    other = evaluate(cfg, CPU, {"fid"}, tmp_path / "c", seed=1, feature_extractor=TinyFeatures())
    assert other["metrics"]["fid"] != a["metrics"]["fid"]  # another seed, other images


def test_metrics_json_and_report_hold_the_requested_metrics(cfg, tmp_path):
    summary = evaluate(
        cfg, CPU, {"rp", "fid"}, tmp_path, num_samples=10, batch_size=4, feature_extractor=TinyFeatures()
    )
    saved = read_json(tmp_path / "metrics.json")
    assert saved == json.loads(json.dumps(summary))
    assert set(saved["metrics"]) == {"r_precision", "fid"}
    rp = saved["metrics"]["r_precision"]
    assert rp["images"] == 10 and rp["candidates"] == 100 and rp["chance"] == pytest.approx(0.01)
    assert 0 <= rp["mean"] <= 1 and rp["std"] >= 0 and saved["metrics"]["fid"] >= 0
    settings = saved["settings"]
    assert (settings["num_samples"], settings["batch_size"], settings["seed"], settings["splits"]) == (10, 4, 0, 10)
    assert settings["image_size"] == 128 and settings["checkpoints"]["generator"] == cfg.TRAIN.NET_G
    assert settings["checkpoints"]["image_encoder"].endswith("image_encoder1.pth")
    assert saved["seconds"]["total"] > 0
    report = (tmp_path / "report.md").read_text()
    assert "| Model | IS | R-precision (%) | FID |" in report
    assert (
        f"| netG_epoch_1 | – | {100 * rp['mean']:.2f} ± {100 * rp['std']:.2f} | {saved['metrics']['fid']:.2f} |"
        in report
    )
    assert "![samples](samples.png)" in report and "attention_0.png" in report
    assert (tmp_path / "samples.png").is_file() and (tmp_path / "attention_0.png").is_file()
    assert not (tmp_path / "images").exists()  # images are kept only when asked


def test_scoring_the_saved_folder_gives_the_same_numbers(cfg, tmp_path):
    direct = evaluate(
        cfg,
        CPU,
        {"rp", "is", "fid"},
        tmp_path / "direct",
        num_samples=13,
        save_images=True,
        feature_extractor=TinyFeatures(),
    )
    folder = evaluate(
        cfg,
        CPU,
        {"rp", "is", "fid"},
        tmp_path / "folder",
        image_dir=tmp_path / "direct" / "images",
        feature_extractor=TinyFeatures(),
    )
    assert folder["metrics"] == direct["metrics"]
    assert folder["settings"]["source"] == "image_dir" and folder["settings"]["num_samples"] == 13
    assert folder["settings"]["checkpoints"]["generator"] is None


def test_localisation_object_match_and_the_command_line(cfg, tmp_path, capsys):
    plain = json.loads(json.dumps(cfg))
    plain["RUN"]["OUTPUT_DIR"] = str(tmp_path / "output")
    yml = tmp_path / "tiny.yml"
    yml.write_text(yaml.safe_dump(plain))
    out = tmp_path / "out"
    assert (
        main(
            [
                "--cfg",
                str(yml),
                "--gpu",
                "-1",
                "--metrics",
                "rp,loc,obj",
                "--num_samples",
                "7",
                "--batch_size",
                "3",
                "--output_dir",
                str(out),
                "--set",
                "EVAL.SPLITS=7",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["output_dir"] == str(out) and "r_precision" in printed
    saved = read_json(out / "metrics.json")
    assert (saved["settings"]["num_samples"], saved["settings"]["batch_size"], saved["settings"]["splits"]) == (7, 3, 7)
    loc = saved["metrics"]["localisation"]
    assert set(loc) == {"generator_stage2", "damsm"}
    for values in loc.values():
        assert values["words"] > 0 and 0 < values["chance"] < 1 and 0 <= values["hit_rate"] <= 1
    match = saved["metrics"]["object_match"]
    assert match["objects"] > 0 and all(
        0 <= match[k] <= 1 for k in ("colour", "shape", "chance_colour", "chance_shape")
    )
    report = (out / "report.md").read_text()
    assert "Chance (%)" in report and "## Object match" in report
    # Without --output_dir: a new folder under RUN.OUTPUT_DIR/eval every run.
    for _ in range(2):
        assert main(["--cfg", str(yml), "--gpu", "-1", "--num_samples", "10"]) == 0
    made = sorted((tmp_path / "output" / "eval").iterdir())
    assert len(made) == 2 and all((d / "metrics.json").is_file() for d in made)


def test_unknown_metric_and_bad_sizes_are_clear_errors(cfg, tmp_path, capsys):
    with pytest.raises(OptionError, match=r"unknown metric\(s\) 'bleu'; choose from rp, is, fid, loc"):
        parse_metrics("rp,bleu")
    assert parse_metrics(" RP, fid ") == {"rp", "fid"}
    assert main(["--cfg", "no-such.yml", "--metrics", "rp,bleu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'bleu'" in err[0]
    with pytest.raises(OptionError, match=r"9 images for 10 splits"):
        evaluate(cfg, CPU, {"rp"}, tmp_path, num_samples=9)
    with pytest.raises(OptionError, match=r"batch_size must be >= 1"):
        evaluate(cfg, CPU, {"rp"}, tmp_path, batch_size=0)
    assert not any(tmp_path.iterdir())


def write_folder(folder, lines, images=()):
    """``lines`` as a captions.jsonl (the name --save_images wrote before metadata.jsonl)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n")
    for name in images:
        shutil.copy(next((folder.parent / "good").glob("*.png")), folder / name)


@pytest.fixture
def good_folder(cfg, tmp_path):
    evaluate(cfg, CPU, {"rp"}, tmp_path / "run", num_samples=10, save_images=True)
    shutil.copytree(tmp_path / "run" / "images", tmp_path / "good")
    return tmp_path / "good"


def test_bad_folders_name_the_file_and_line(cfg, tmp_path, good_folder):
    with pytest.raises(DataError, match="--image_dir .*nowhere: not a folder"):
        read_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        DataError, match=r"empty holds no manifest of its captions: expected metadata.csv, metadata.jsonl"
    ):
        read_folder(tmp_path / "empty")
    cases = {
        "json": (['{"file": "a.png", "caption": "a red circle"}', "{oops"], r"captions.jsonl line 2: not valid JSON"),
        "keys": (
            ['{"file": "a.png"}'],
            r"captions.jsonl: no caption column: expected one of text, caption \(fields found: file\)",
        ),
        "class": (['{"file": "a.png", "caption": "x", "class_id": "red"}'], r"line 1: \"class_id\" must be an integer"),
        "missing": (
            ['{"file": "a.png", "caption": "a red circle"}', '{"file": "b.png", "caption": "x"}'],
            r"line 2: image not found: .*missing/b.png",
        ),
        "none": ([""], r"captions.jsonl: the manifest lists no image"),
        "two": (
            ['{"file": "a.png", "caption": ["a red circle", "a circle"]}'],
            r"line 1: \"caption\" holds 2 captions",
        ),
        "blank": (['{"file": "a.png", "caption": "  "}'], r"captions.jsonl line 1: empty caption for a.png"),
    }
    for name, (lines, message) in cases.items():
        write_folder(tmp_path / name, lines, images=["a.png"])
        with pytest.raises(DataError, match=message):
            read_folder(tmp_path / name)
    # Found only when read or encoded: a corrupt image, one of another size, a caption of unknown words.
    shutil.copytree(good_folder, tmp_path / "corrupt")
    (tmp_path / "corrupt" / "000007.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"metadata.jsonl line 8: cannot read image .*corrupt/000007.png"):
        evaluate(cfg, CPU, {"rp"}, tmp_path / "out", image_dir=tmp_path / "corrupt")
    shutil.copytree(good_folder, tmp_path / "sizes")
    Image.new("RGB", (64, 64)).save(tmp_path / "sizes" / "000003.png")
    with pytest.raises(DataError, match=r"line 4: .*000003.png is 64x64 but the first image is 128x128"):
        evaluate(cfg, CPU, {"rp"}, tmp_path / "out", image_dir=tmp_path / "sizes")
    shutil.copytree(good_folder, tmp_path / "unknown")
    lines = manifest_lines(good_folder)
    lines[5]["text"] = "zebra"
    (tmp_path / "unknown" / MANIFEST).write_text("\n".join(map(json.dumps, lines)) + "\n")
    with pytest.raises(
        CaptionError, match=r"unknown/metadata.jsonl line 6: caption 'zebra' has no word in the vocabulary"
    ):
        evaluate(cfg, CPU, {"rp"}, tmp_path / "out", image_dir=tmp_path / "unknown")
    assert not (tmp_path / "out").exists()  # nothing written on an error


def test_imagefolder_metadata_and_todays_names_score_the_same(cfg, tmp_path, good_folder):
    """--save_images writes Hugging Face ImageFolder's metadata.jsonl (file_name, text,
    class_id); the same rows as a metadata.csv, and as the captions.jsonl with file and
    caption that it wrote before, read as the same images, captions and classes, and score
    the same numbers."""
    lines = manifest_lines(good_folder)
    assert list(lines[0]) == ["file_name", "text", "class_id", "key", "caption_index"]
    rows = [{"file_name": line["file_name"], "text": line["text"], "class_id": line["class_id"]} for line in lines]
    today = [{"file": row["file_name"], "caption": row["text"], "class_id": row["class_id"]} for row in rows]
    expected = read_folder(good_folder).entries
    assert -1 not in {e.class_id for e in expected}  # classes given, and compared
    for name, content in (("metadata.csv", rows), ("captions.jsonl", today)):
        folder = shutil.copytree(good_folder, tmp_path / name.replace(".", "_"))
        (folder / MANIFEST).unlink()
        if name.endswith(".jsonl"):
            (folder / name).write_text("".join(json.dumps(row) + "\n" for row in content))
        else:
            with (folder / name).open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(content[0]))
                writer.writeheader()
                writer.writerows(content)
        read = read_folder(folder)
        assert read.manifest == folder / name
        assert [(e.path.name, e.caption, e.class_id) for e in read.entries] == [
            (e.path.name, e.caption, e.class_id) for e in expected
        ]
    metrics = evaluate(cfg, CPU, {"rp"}, tmp_path / "a", image_dir=good_folder)["metrics"]
    assert evaluate(cfg, CPU, {"rp"}, tmp_path / "b", image_dir=tmp_path / "captions_jsonl")["metrics"] == metrics
    # A manifest without a file column: one error naming the file and the columns it has.
    (tmp_path / "metadata_csv" / "metadata.csv").write_text("path,text\n000000.png,a red circle\n")
    with pytest.raises(
        DataError,
        match=r"metadata_csv/metadata.csv: no file column: expected one of file_name, image, file "
        r"\(columns found: path, text\)",
    ):
        evaluate(cfg, CPU, {"rp"}, tmp_path / "c", image_dir=tmp_path / "metadata_csv")


def test_hugging_face_loads_a_saved_folder(tmp_path, good_folder, monkeypatch):
    """Hugging Face's own ImageFolder reads --save_images's folder: its images in order, with
    their captions and classes."""
    datasets = need("datasets", "pip install -e '.[test]'")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # its cache: nothing outside tmp_path
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    loaded = datasets.load_dataset("imagefolder", data_dir=str(good_folder), split="train")
    lines = manifest_lines(good_folder)
    assert loaded["text"] == [line["text"] for line in lines] and len(lines) == 10
    assert loaded["class_id"] == [line["class_id"] for line in lines]
    assert [image.size for image in loaded["image"]] == [(128, 128)] * 10


def test_folder_without_class_ids_draws_from_every_test_caption(cfg, tmp_path, good_folder):
    lines = [json.dumps({k: v for k, v in line.items() if k != "class_id"}) for line in manifest_lines(good_folder)]
    (good_folder / MANIFEST).write_text("\n".join(lines) + "\n")
    result = evaluate(cfg, CPU, {"rp"}, tmp_path / "out", image_dir=good_folder)
    assert result["metrics"]["r_precision"]["images"] == 10
    for metric in ("loc", "obj"):
        with pytest.raises(OptionError, match="'loc' and 'obj' score the generator's attention"):
            evaluate(cfg, CPU, {metric}, tmp_path / "out", image_dir=good_folder)


def test_networks_given_by_a_training_loop_keep_their_mode(cfg, tmp_path):
    n_words = load_text_data(cfg.DATA_DIR, CAPTIONS).n_words
    training_cfg = copy.deepcopy(cfg)
    training_cfg.TRAIN.FLAG = True
    nets = {
        "net_g": build_generator(cfg),
        "text_encoder": build_text_encoder(cfg, n_words),
        "image_encoder": build_image_encoder(training_cfg),
    }
    result = evaluate(cfg, CPU, {"rp"}, tmp_path, num_samples=10, **{k: v.train() for k, v in nets.items()})
    assert all(net.training for net in nets.values())
    assert result["settings"]["checkpoints"] == {
        "generator": "in memory",
        "text_encoder": "in memory",
        "image_encoder": "in memory",
    }
    assert np.isfinite(result["metrics"]["r_precision"]["mean"])
