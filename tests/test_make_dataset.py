"""attngan-make-dataset on generated folders of images: the layout and rules, CSV and JSON
Lines alike, every bad input as one line with nothing written, and docs/own_data.md's
commands run as written (tiny networks added as --set overrides): make the dataset,
check it, pretrain DAMSM, train AttnGAN, sample, evaluate."""

import csv
import importlib
import json
import pickle
import re
import shlex
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from attngan.config import load_config
from attngan.data.check import check_dataset
from attngan.data.make_dataset import load_image, main, make_dataset
from attngan.data.manifest import DatasetError, read_manifest
from conftest import ROOT
from optional import need

DOC = ROOT / "docs" / "own_data.md"
MANIFEST_DOC = ROOT / "docs" / "captioned_images.md"
COLOURS = {"red": (220, 20, 20), "green": (20, 160, 40), "blue": (30, 60, 220), "yellow": (250, 220, 20)}
SHAPES = ("circle", "square")
NUM_IMAGES = 30
# Tiny networks and one epoch, for the doc's commands (the epoch numbers of the checkpoints follow).
NETS = [
    "TEXT.EMBEDDING_DIM=16",
    "DAMSM.COMPACT_IMAGE_SIZE=32",
    "GAN.GF_DIM=2",
    "GAN.DF_DIM=2",
    "GAN.Z_DIM=8",
    "GAN.CONDITION_DIM=4",
]
TINY = {
    "attngan-pretrain-damsm": [
        "TRAIN.MAX_EPOCH=1",
        "TREE.BASE_SIZE=32",
        "TEXT.EMBEDDING_DIM=16",
        "DAMSM.COMPACT_IMAGE_SIZE=32",
    ],
    "attngan-train": ["TRAIN.MAX_EPOCH=1", "TRAIN.BATCH_SIZE=8", *NETS],
    "attngan-sample": NETS,
    "attngan-eval": NETS,
}


def draw(path: Path, colour: str, shape: str, background: str, size=(160, 160), mode="RGB") -> None:
    image = Image.new("RGB", size, COLOURS[background])
    box = [size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4]
    (ImageDraw.Draw(image).ellipse if shape == "circle" else ImageDraw.Draw(image).rectangle)(box, fill=COLOURS[colour])
    path.parent.mkdir(parents=True, exist_ok=True)
    image.convert(mode).save(path)


def shapes_folder(folder: Path, count: int = NUM_IMAGES) -> list[dict]:
    """``count`` images of a circle or square, some PNG in a subfolder, one greyscale, one
    larger and oblong; two to four captions each (class: the shape). Returns the rows."""
    rows = []
    names = list(COLOURS)
    for i in range(count):
        colour, background, shape = names[i % 4], names[(i + 1 + i // 4) % 4], SHAPES[(i // 2) % 2]
        name = f"png/{i:02d}.png" if i % 5 == 0 else f"{i:02d}.jpg"
        size, mode = ((200, 160), "RGB") if i == 1 else ((160, 160), "L" if i == 2 else "RGB")
        draw(folder / name, colour, shape, background, size, mode)
        captions = [
            f"a {colour} {shape} on a {background} background",
            f"there is a {colour} {shape}",
            f"{background} background with a {colour} {shape}",
            f"the {shape} is {colour}",
        ]
        rows += [{"image": name, "caption": c, "class": shape} for c in captions[: 2 + i % 3]]
    return rows


def write_manifest(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def unpickle(path: Path):
    with path.open("rb") as f:
        return pickle.load(f)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The shapes folder made into a dataset from a CSV and from a JSON Lines manifest."""
    root = tmp_path_factory.mktemp("own")
    rows = shapes_folder(root / "imgs")
    out = {}
    for kind in ("csv", "jsonl"):
        manifest = write_manifest(root / f"captions.{kind}", rows)
        out[kind] = root / kind / "mine"
        make_dataset(root / "imgs", manifest, out[kind], test_fraction=0.2, captions_per_image=3)
    return root, rows, out


def test_layout_split_classes_and_captions(made):
    root, rows, out = made
    data = out["csv"]
    keys = [f"png/{i:02d}" if i % 5 == 0 else f"{i:02d}" for i in range(NUM_IMAGES)]
    train, test = unpickle(data / "train/filenames.pickle"), unpickle(data / "test/filenames.pickle")
    assert len(test) == 6 and sorted(train + test) == sorted(keys)  # round(30 x 0.2)
    assert train == [k for k in keys if k in train] and test == [k for k in keys if k in test]  # manifest order
    assert (data / "classes.txt").read_text() == "1 circle\n2 square\n"  # by first mention: image 00 is a circle
    for split, split_keys in (("train", train), ("test", test)):
        ids = unpickle(data / split / "class_info.pickle")
        assert ids == [1 if (keys.index(k) // 2) % 2 == 0 else 2 for k in split_keys]
    assert sorted(unpickle(data / "test/class_info.pickle")) == [1, 1, 1, 2, 2, 2]  # 15 of each: 3 of each drawn
    # Image 0 has 2 captions (repeated in order to 3), image 1 has 3, image 2 has 4 (the first 3 kept).
    assert (data / "text/png/00.txt").read_text() == (
        "a red circle on a green background\nthere is a red circle\na red circle on a green background\n"
    )
    assert (data / "text/02.txt").read_text().splitlines() == [
        "a blue square on a yellow background",
        "there is a blue square",
        "yellow background with a blue square",
    ]
    with Image.open(data / "images/01.jpg") as image:  # 200x160: shorter side to 152 = 128 x 76/64
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (190, 152))
    with Image.open(data / "images/02.jpg") as image:  # greyscale in, RGB out; 160x160 -> 152x152
        assert (image.mode, image.size) == ("RGB", (152, 152))
    assert check_dataset(data, 3) == []
    assert not list(data.parent.glob(".*partial"))


def test_csv_and_jsonl_give_the_same_dataset(made):
    _, _, out = made
    a, b = files(out["csv"]), files(out["jsonl"])
    assert a.keys() == b.keys() and a.pop("README.txt") != b.pop("README.txt")  # each names its manifest
    for name in ("damsm.yml", "attngan.yml", "eval.yml"):  # DATA_DIR: .../jsonl/mine and .../csv/mine
        b[name] = b[name].replace(str(out["jsonl"]).encode(), str(out["csv"]).encode())
    assert a == b


def same_dataset(a: Path, b: Path) -> bool:
    """The files of datasets ``a`` and ``b`` equal but for README.txt (it names the manifest)
    and the configs' DATA_DIR (each its own --out)."""
    fa, fb = files(a), files(b)
    fa.pop("README.txt"), fb.pop("README.txt")
    for name in ("damsm.yml", "attngan.yml", "eval.yml"):
        fb[name] = fb[name].replace(str(b).encode(), str(a).encode())
    return fa == fb


def test_imagefolder_layouts_and_todays_names_give_identical_datasets(tmp_path, capsys, caplog):
    """The same captions as attngan-make-dataset's image/caption/class rows (--captions), as
    Hugging Face ImageFolder's metadata.csv (file_name, text, class; an extra column) and
    metadata.jsonl (one line an image, its captions a list, class as label) beside the
    images, and with attngan-eval's names file/caption in a captions.jsonl there: one dataset."""
    rows = shapes_folder(tmp_path / "imgs", 12)
    today = write_manifest(tmp_path / "captions.csv", rows)
    hf_csv, hf_jsonl, eval_names = (
        shutil.copytree(tmp_path / "imgs", tmp_path / n) for n in ("hf_csv", "hf_jsonl", "ev")
    )
    write_manifest(
        hf_csv / "metadata.csv",
        [{"file_name": r["image"], "text": r["caption"], "class": r["class"], "source": "drawn"} for r in rows],
    )
    per_image = {}
    for r in rows:
        per_image.setdefault(r["image"], {"file_name": r["image"], "text": [], "label": r["class"]})["text"].append(
            r["caption"]
        )
    write_manifest(hf_jsonl / "metadata.jsonl", list(per_image.values()))
    write_manifest(
        eval_names / "captions.jsonl",
        [{"file": r["image"], "caption": r["caption"], "class": r["class"]} for r in rows],
    )
    options = ["--test-fraction", "0.25", "--workers", "0"]
    assert (
        main(
            [
                "--images",
                str(tmp_path / "imgs"),
                "--captions",
                str(today),
                "--out",
                str(tmp_path / "a" / "mine"),
                *options,
            ]
        )
        == 0
    )
    for folder in (hf_csv, hf_jsonl, eval_names):
        capsys.readouterr()
        out = tmp_path / "out" / folder.name / "mine"
        assert main(["--images", str(folder), "--out", str(out), *options]) == 0  # no --captions
        manifest = next(p for p in folder.iterdir() if p.suffix in (".csv", ".jsonl"))
        assert f"(captions from {manifest})" in capsys.readouterr().out
        assert same_dataset(tmp_path / "a" / "mine", out), folder.name
    assert f"{hf_csv / 'metadata.csv'}: ignoring its columns source" in caplog.text
    # The layout is the dataset's too: 12 images, 3 test, 2 classes.
    assert len(unpickle(tmp_path / "a" / "mine" / "test/filenames.pickle")) == 3
    assert (tmp_path / "a" / "mine" / "classes.txt").read_text() == "1 circle\n2 square\n"


def test_images_without_a_manifest_or_with_two(small, capsys):
    folder, rows = small
    line = run_bad(folder, None, capsys, manifest=False)
    assert (
        f"--images {folder / 'imgs'} holds no manifest of its captions: expected metadata.csv, metadata.jsonl, "
        "captions.jsonl with the columns file_name and text"
    ) in line
    write_manifest(folder / "imgs" / "metadata.csv", rows)
    write_manifest(folder / "imgs" / "metadata.jsonl", rows)
    line = run_bad(folder, None, capsys, manifest=False)
    assert f"--images {folder / 'imgs'} holds metadata.csv and metadata.jsonl: keep one manifest" in line


def test_a_small_set_gets_configs_that_run_and_says_what_it_sized(tmp_path, monkeypatch, capsys):
    """60 images: a test split of 6, fewer than the recipe's DAMSM batch of 32 (DAMSM
    validates in whole batches): damsm.yml gets batches of 6, the output says so, and DAMSM
    pretraining runs an epoch with it (tiny networks)."""
    monkeypatch.chdir(tmp_path)
    write_manifest(tmp_path / "sixty" / "metadata.csv", shapes_folder(tmp_path / "sixty", 60))
    assert main(["--images", "sixty", "--out", "data/sixty", "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 60 images (54 train, 6 test)" in printed
    assert (
        "sized to the dataset: damsm.yml: TRAIN.BATCH_SIZE 6, not the recipe's 32: DAMSM trains on the training "
        "split and validates on the test split in whole batches of this size, and the test split has 6 images"
    ) in printed
    assert "sized to the dataset: eval.yml: TRAIN.BATCH_SIZE 6, not the recipe's 16" in printed
    assert "sized to the dataset: attngan.yml" not in printed  # 54 training images hold its batch of 16
    damsm = load_config("data/sixty/damsm.yml")
    assert damsm.TRAIN.BATCH_SIZE == 6
    status = entry_point("attngan-pretrain-damsm")(
        ["--cfg", "data/sixty/damsm.yml", "--output_dir", "out", "--set", *TINY["attngan-pretrain-damsm"]]
    )
    assert status == 0, capsys.readouterr().err[-2000:]
    assert (tmp_path / "out" / "Model" / "text_encoder0.pth").is_file()


def test_configs_point_at_the_dataset_and_chain_their_checkpoints(made):
    _, _, out = made
    data = out["csv"]
    damsm, gan, evaluation = (load_config(data / f) for f in ("damsm.yml", "attngan.yml", "eval.yml"))
    shapes_damsm, shapes_gan = load_config(ROOT / "cfg/DAMSM/shapes.yml"), load_config(ROOT / "cfg/shapes_attn2.yml")
    for cfg in (damsm, gan, evaluation):
        assert (cfg.DATA_DIR, cfg.DATASET_NAME, cfg.TEXT.CAPTIONS_PER_IMAGE) == (str(data), "mine", 3)
        assert cfg.AUGMENT.HORIZONTAL_FLIP is True  # no caption says left or right
    assert damsm.TRAIN.BATCH_SIZE == 6 and gan.TRAIN.BATCH_SIZE == 16  # 6 test images; 24 train > shapes' 16
    assert gan.TREE.BRANCH_NUM == evaluation.TREE.BRANCH_NUM == 2  # 128 px
    assert (
        gan.TRAIN.NET_E
        == evaluation.TRAIN.NET_E
        == f"output/mine/DAMSM/Model/text_encoder{shapes_damsm.TRAIN.MAX_EPOCH - 1}.pth"
    )
    assert evaluation.TRAIN.NET_G == f"output/mine/AttnGAN/Model/netG_epoch_{shapes_gan.TRAIN.MAX_EPOCH}.pth"
    assert not evaluation.TRAIN.FLAG and evaluation.EVAL.METRICS == "rp" and evaluation.EVAL.NUM_SAMPLES == 18
    assert (gan.GAN.GF_DIM, damsm.DAMSM.IMAGE_BACKBONE) == (shapes_gan.GAN.GF_DIM, "compact")
    header = (data / "attngan.yml").read_text().splitlines()[:3]
    assert header[0].startswith("# Written by attngan-make-dataset from cfg/shapes_attn2.yml")
    assert "AUGMENT.HORIZONTAL_FLIP: False -> True" in header[1]
    assert (data / "example_captions.txt").read_text().splitlines() == [
        (data / "text" / f"{k}.txt").read_text().splitlines()[0] for k in unpickle(data / "test/filenames.pickle")
    ]


def test_paper_recipe_and_left_right_captions(tmp_path):
    rows = [{"image": f"{i}.png", "caption": f"a red circle on the {'left' if i % 2 else 'right'}"} for i in range(10)]
    for i in range(10):
        draw(tmp_path / "imgs" / f"{i}.png", "red", "circle", "blue", size=(256, 300))
    out = tmp_path / "paper"
    summary = make_dataset(
        tmp_path / "imgs", write_manifest(tmp_path / "c.jsonl", rows), out, recipe="paper", test_fraction=0.2
    )
    damsm, gan = load_config(out / "damsm.yml"), load_config(out / "attngan.yml")
    assert (damsm.DAMSM.IMAGE_BACKBONE, damsm.TREE.BASE_SIZE, gan.TREE.BRANCH_NUM, gan.GAN.GF_DIM) == (
        "inception_v3",
        299,
        3,
        32,
    )  # cfg/DAMSM/bird.yml, cfg/bird_attn2.yml
    assert damsm.TRAIN.BATCH_SIZE == 2 and not gan.AUGMENT.HORIZONTAL_FLIP
    assert gan.TRAIN.NET_E == "output/paper/DAMSM/Model/text_encoder599.pth"
    assert summary["captions_per_image"] == 1 and summary["classes"] == 0
    assert not (out / "train/class_info.pickle").exists() and not (out / "classes.txt").exists()
    with Image.open(out / "images/0.jpg") as image:  # DAMSM reads 299 px: Resize(299 x 76/64 = 355), no upsampling
        assert image.size == (256, 300)


def test_force_replaces_its_own_dataset_only(made, tmp_path, capsys):
    root, _, _ = made
    out = tmp_path / "mine"
    argv = [
        "--images",
        str(root / "imgs"),
        "--captions",
        str(root / "captions.csv"),
        "--out",
        str(out),
        "--test-fraction",
        "0.2",
    ]
    assert main(argv) == 0
    before = files(out)
    assert main(argv) == 2
    assert "exists and is not empty; pass --force" in capsys.readouterr().err and files(out) == before
    assert main([*argv, "--force", "--seed", "1"]) == 0
    assert files(out)["test/filenames.pickle"] != before["test/filenames.pickle"]  # another draw
    (out / "notes.txt").write_text("mine")
    assert main([*argv, "--force"]) == 2
    assert "holds files this tool does not write: notes.txt" in capsys.readouterr().err


def test_images_come_upright_and_opaque(tmp_path):
    """EXIF orientation 6 (the camera turned a quarter clockwise) stores a 200x128 sensor
    image that shows 128x200; a transparent pixel lands on white."""
    tall = Image.new("RGB", (200, 128), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    tall.save(tmp_path / "turned.jpg", exif=exif)
    assert load_image(tmp_path / "turned.jpg", 128, 1000, "here").size == (128, 200)
    clear = Image.new("RGBA", (130, 130), (0, 0, 255, 255))
    clear.putpixel((0, 0), (0, 0, 0, 0))
    clear.save(tmp_path / "clear.png")
    image = load_image(tmp_path / "clear.png", 128, 1000, "here")
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (255, 255, 255) and image.getpixel((1, 1)) == (0, 0, 255)


# ---------------------------------------------------------------- bad inputs


@pytest.fixture
def small(tmp_path):
    """Six good images and their rows, to spoil one way per test."""
    rows = shapes_folder(tmp_path / "imgs", 6)
    return tmp_path, rows


def run_bad(folder: Path, rows, capsys, manifest_name="captions.csv", extra=(), manifest=None):
    """Run the CLI; returns its one error line after checking status 2 and nothing written.
    ``manifest``: a file (default: ``rows`` written to ``manifest_name``), or False for
    none (the one in the images' folder)."""
    if manifest is None:
        manifest = write_manifest(folder / manifest_name, rows)
    out = folder / "data" / "mine"
    capsys.readouterr()
    captions = ["--captions", str(manifest)] if manifest else []
    status = main(["--images", str(folder / "imgs"), *captions, "--out", str(out), "--test-fraction", "0.4", *extra])
    captured = capsys.readouterr()
    assert status == 2, captured.err
    assert captured.out == "" and "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error ("), captured.err
    assert not out.exists() and not list(folder.rglob(".*partial"))
    return lines[0]


def test_good_small_folder_passes(small, capsys):
    folder, rows = small
    manifest = write_manifest(folder / "captions.csv", rows)
    assert (
        main(
            [
                "--images",
                str(folder / "imgs"),
                "--captions",
                str(manifest),
                "--out",
                str(folder / "ok"),
                "--test-fraction",
                "0.4",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert f"{folder / 'ok'}: checked 6 images, 6 caption files: OK" in printed
    # 2, 3, 4, 2, 3, 4 captions: each count twice, the tie goes to the larger
    assert "wrote 6 images (4 train, 2 test), 4 captions each, 2 classes" in printed


def test_missing_image(small, capsys):
    folder, rows = small
    rows[4]["image"] = "nowhere.png"
    line = run_bad(folder, rows, capsys)
    assert f"captions.csv line 6: image not found: {folder / 'imgs' / 'nowhere.png'}" in line


@pytest.mark.parametrize("content", [b"not an image", None], ids=["garbage", "truncated"])
def test_unreadable_image(small, capsys, content):
    folder, rows = small
    path = folder / "imgs" / "03.jpg"
    path.write_bytes(content if content is not None else path.read_bytes()[:300])
    line = run_bad(folder, rows, capsys)
    # Rows: header, image 00's 2 captions, 01's 3, 02's 4, then 03's first on line 11.
    assert f"{path}: cannot read image (" in line and f"listed at {folder / 'captions.csv'} line 11)" in line


def test_empty_caption(small, capsys):
    folder, rows = small
    rows[3]["caption"] = "   "
    assert "captions.csv line 5: empty caption for 01.jpg" in run_bad(folder, rows, capsys)


def test_caption_without_ascii_word(small, capsys):
    folder, rows = small
    rows[0]["caption"] = "赤い丸"
    line = run_bad(folder, rows, capsys, "captions.jsonl")
    assert "captions.jsonl line 1: caption '赤い丸' of png/00.png has no ASCII word" in line


def test_duplicate_name(small, capsys):
    folder, rows = small
    draw(folder / "imgs" / "01.png", "red", "circle", "blue")
    rows.append({"image": "01.png", "caption": "a red circle", "class": "circle"})
    line = run_bad(folder, rows, capsys)
    assert (
        f"line {len(rows) + 1}: duplicate name: 01.png and 01.jpg (line 4) would both be stored as images/01.jpg"
        in line
    )


def test_image_outside_the_folder(small, capsys):
    folder, rows = small
    rows[0]["image"] = "../00.jpg"
    line = run_bad(folder, rows, capsys)
    assert f"captions.csv line 2: image '../00.jpg' is not a path inside {folder / 'imgs'}" in line


def test_inconsistent_class(small, capsys):
    folder, rows = small
    rows[1]["class"] = "square"
    assert "line 3: class 'square' for png/00.png, but line 2 gave 'circle'" in run_bad(folder, rows, capsys)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("c.csv", "image,caption\n00.jpg\n", "c.csv line 2: no caption field (fields: image)"),
        ("c.csv", "image,caption\n00.jpg,a,b\n", "c.csv line 2: 3 fields, but the header names 2"),
        (
            "c.csv",
            "caption\na red circle\n",
            "c.csv: no file column: expected one of file_name, image, file (columns found: caption)",
        ),
        (
            "c.csv",
            "filename,text\n00.jpg,a red circle\n",
            "c.csv: no file column: expected one of file_name, image, file (columns found: filename, text)",
        ),
        (  # no header row: its first row is read as one
            "c.csv",
            "00.jpg,a red circle\n",
            "c.csv: no file column: expected one of file_name, image, file (columns found: 00.jpg, a red circle)",
        ),
        ("c.csv", "image,text,caption\n", "c.csv: two caption columns, 'text' and 'caption': keep one"),
        ("c.csv", "image,caption,image\n", "c.csv: column 'image' appears twice"),
        (
            "c.jsonl",
            '{"image": "00.jpg"}\n',
            "c.jsonl: no caption column: expected one of text, caption (fields found: image)",
        ),
        (
            "c.jsonl",
            '\n{"caption": "a red circle"}\n',
            "c.jsonl: no file column: expected one of file_name, image, file (fields found: caption)",
        ),
        (
            "c.jsonl",
            '{"file_name": "00.jpg", "text": "a circle"}\n{"file_name": "01.jpg", "caption": "a square"}\n',
            "c.jsonl: two caption columns, 'text' and 'caption': keep one (fields found: file_name, text, caption)",
        ),
        (
            "c.jsonl",
            '{"image": "00.jpg", "caption": "a circle", "class": "x"}\n{"image": "01.jpg", "caption": "a circle"}\n',
            "c.jsonl line 2: no class field (fields: image, caption)",
        ),
        (
            "c.jsonl",
            '{"image": "00.jpg", "caption": 3}\n',
            'c.jsonl line 1: "caption" must be a string or a list of strings, got 3',
        ),
        ("c.jsonl", '{"image": "00.jpg", "caption": ["a", 3]}\n', '"caption" must be a string or a list of strings'),
        ("c.jsonl", '{"image": "00.jpg", "caption": "a circle", "class": true}\n', '"class" must be a string or'),
        ("c.jsonl", '{"image": "00.jpg", "caption": "a circle"\n', "c.jsonl line 1: not valid JSON"),
        ("c.jsonl", '["00.jpg", "a circle"]\n', "c.jsonl line 1: expected a JSON object"),
        ("c.csv", "", "c.csv: the manifest is empty; expected a header row"),
        ("c.csv", "image,caption\n\n", "c.csv: the manifest lists no image"),
        ("c.txt", "image,caption\n", "c.txt: unknown manifest format '.txt'"),
    ],
)
def test_bad_manifest_rows(small, capsys, name, content, message):
    folder, _ = small
    manifest = folder / name
    manifest.write_text(content, encoding="utf-8")
    assert message in run_bad(folder, None, capsys, manifest=manifest)


def test_unreadable_manifest(small, capsys):
    folder, _ = small
    assert f"{folder / 'none.csv'}: cannot read manifest: No such file or directory" in run_bad(
        folder, None, capsys, manifest=folder / "none.csv"
    )
    latin = folder / "latin.csv"
    latin.write_bytes("image,caption\n00.jpg,un café\n".encode("latin-1"))
    assert "latin.csv: cannot read manifest: not UTF-8 (byte 0xe9 at offset 27)" in run_bad(
        folder, None, capsys, manifest=latin
    )


def test_too_few_images_for_the_split(small, capsys):
    folder, rows = small
    line = run_bad(folder, [r for r in rows if r["image"] in ("png/00.png", "01.jpg", "02.jpg")], capsys)
    assert (
        "too few images for the split: 3 images with --test-fraction 0.4 give 2 train and 1 test images; "
        "each split needs at least 2"
    ) in line


def test_image_too_small(small, capsys):
    folder, rows = small
    draw(folder / "imgs" / "04.jpg", "red", "circle", "blue", size=(300, 100))
    line = run_bad(folder, rows, capsys)
    assert f"{folder / 'imgs' / '04.jpg'}: image too small: 300x100 px, --image-size 128 needs both sides" in line


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--image-size", "200"], "--image-size 200: AttnGAN's stages double from 64 px; choose from 128, 256"),
        (["--test-fraction", "1.5"], "--test-fraction must be between 0 and 1, got 1.5"),
        (["--captions-per-image", "0"], "--captions-per-image must be >= 1, got 0"),
        (["--recipe", "huge"], "--recipe 'huge': choose from small, paper"),
    ],
)
def test_bad_options(small, capsys, extra, message):
    folder, rows = small
    assert message in run_bad(folder, rows, capsys, extra=extra)


def test_out_named_birds_is_refused(small, capsys):
    folder, rows = small
    manifest = write_manifest(folder / "c.csv", rows)
    assert main(["--images", str(folder / "imgs"), "--captions", str(manifest), "--out", str(folder / "my_birds")]) == 2
    assert "holds 'birds' as CUB-200" in capsys.readouterr().err and not (folder / "my_birds").exists()


def test_read_manifest_raises_dataset_error(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('image,caption\n"a.jpg,x\n', encoding="utf-8")  # an unclosed quote
    with pytest.raises(DatasetError, match="c.csv line"):
        read_manifest(path)


# ---------------------------------------------------------------- docs/own_data.md, run as written


def doc_blocks(kind: str, doc: Path = DOC) -> list[str]:
    return [
        body for info, body in re.findall(r"```(\w*)\n(.*?)```", doc.read_text(encoding="utf-8"), re.S) if info == kind
    ]


def doc_commands() -> list[list[str]]:
    commands = []
    for block in doc_blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(shlex.split(line))
    return commands


def test_doc_manifest_examples_read_the_same(tmp_path):
    """docs/captioned_images.md's three examples: the same captions of the same images."""
    csv_examples, jsonl_examples = doc_blocks("csv", MANIFEST_DOC), doc_blocks("json", MANIFEST_DOC)
    assert len(csv_examples) == 2 and len(jsonl_examples) == 1
    read = [read_manifest(write_text(tmp_path / f"{i}.csv", text)) for i, text in enumerate(csv_examples)]
    read.append(read_manifest(write_text(tmp_path / "2.jsonl", jsonl_examples[0])))
    grouped = []
    for manifest in read:
        images = {}
        for row in manifest.rows:
            images.setdefault((row.file, row.label), []).extend(row.captions)
        grouped.append(images)
    assert grouped[0] == grouped[1] == grouped[2]
    assert grouped[0][("0001.jpg", "circle")] == [
        "a red circle on a blue background",
        "there is a blue background, with a red circle",
    ]
    assert [m.columns.file for m in read] == ["file_name", "image", "file_name"]


def hf_datasets():
    """Hugging Face's ``datasets`` (the test extra)."""
    return need("datasets", "pip install -e '.[test]'")


def test_hugging_face_reads_the_doc_examples_as_we_do(tmp_path, monkeypatch):
    """docs/captioned_images.md's ImageFolder examples loaded by Hugging Face's own
    ImageFolder (``load_dataset("imagefolder")``, offline) give the images, captions and
    classes our reader gives: the layout is really theirs."""
    datasets = hf_datasets()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # its cache: nothing outside tmp_path
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    examples = [
        ("metadata.csv", doc_blocks("csv", MANIFEST_DOC)[0]),
        ("metadata.jsonl", doc_blocks("json", MANIFEST_DOC)[0]),
    ]
    for name, text in examples:
        folder = tmp_path / name.replace(".", "_")
        for i, file in enumerate(("0001.jpg", "pets/0002.png")):
            draw(folder / file, "red", SHAPES[i], "blue", size=(16, 16))
        manifest = read_manifest(write_text(folder / name, text))
        ours = [(row.file, list(row.captions), row.label) for row in manifest.rows]
        loaded = datasets.load_dataset("imagefolder", data_dir=str(folder), split="train")
        loaded = loaded.cast_column("image", datasets.Image(decode=False))
        theirs = [
            (
                Path(r["image"]["path"]).relative_to(folder).as_posix(),
                r["text"] if isinstance(r["text"], list) else [r["text"]],
                r["class"],
            )
            for r in loaded
        ]
        assert sorted(theirs) == sorted(ours) and len(ours) == (3 if name.endswith(".csv") else 2), name


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def entry_point(program: str):
    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert program in scripts, f"{DOC} runs {program}, which pyproject.toml does not install"
    module, function = scripts[program].split(":")
    return getattr(importlib.import_module(module), function)


def test_doc_commands_from_images_to_samples_and_scores(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rows = shapes_folder(tmp_path / "my_images")
    write_manifest(
        tmp_path / "my_images" / "metadata.csv",
        [{"file_name": r["image"], "text": r["caption"], "class": r["class"]} for r in rows],
    )
    commands = doc_commands()
    assert [c[0] for c in commands] == [
        "attngan-make-dataset",
        "attngan-check-data",
        "attngan-pretrain-damsm",
        "attngan-train",
        "attngan-sample",
        "attngan-sample",
        "attngan-eval",
    ]
    for argv in commands:
        program, args = argv[0], argv[1:]
        assert "--set" not in args  # the tiny overrides below are the only ones
        overrides = list(TINY.get(program, []))
        if program in ("attngan-train", "attngan-sample", "attngan-eval"):
            overrides += tiny_checkpoints(load_config(args[args.index("--cfg") + 1]))
        capsys.readouterr()
        status = entry_point(program)([*args, *(["--set", *overrides] if overrides else [])])
        printed = capsys.readouterr()
        assert status == 0, f"{shlex.join(argv)}: {printed.err[-2000:]}"
        if program == "attngan-make-dataset":
            # The next commands it prints are the doc's.
            shown = printed.out.split("next:\n", 1)[1].split("\n")
            assert [shlex.split(c) for c in shown if c.strip()] == commands[2:4]
    model = Path("output/mine/AttnGAN/Model/netG_epoch_1")
    assert len(list((model / "captions").glob("0_a_red_circle_on_a_blue_background_0_g*.png"))) == 2
    assert list((model / "example_captions").glob("*.png"))
    metrics = json.loads(Path("output/mine/eval/metrics.json").read_text())
    assert 0 <= metrics["metrics"]["r_precision"]["mean"] <= 1


def tiny_checkpoints(cfg) -> list[str]:
    """The checkpoints of the one-epoch runs in the folders the config names: its own
    epoch numbers are those of the recipe's MAX_EPOCH."""
    assert re.fullmatch(r"output/mine/DAMSM/Model/text_encoder\d+\.pth", cfg.TRAIN.NET_E), cfg.TRAIN.NET_E
    names = [f"TRAIN.NET_E={Path(cfg.TRAIN.NET_E).with_name('text_encoder0.pth')}"]
    if not cfg.TRAIN.FLAG:
        assert re.fullmatch(r"output/mine/AttnGAN/Model/netG_epoch_\d+\.pth", cfg.TRAIN.NET_G), cfg.TRAIN.NET_G
        names.append(f"TRAIN.NET_G={Path(cfg.TRAIN.NET_G).with_name('netG_epoch_1.pth')}")
    return names
