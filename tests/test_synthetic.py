"""Tests of the synthetic shapes dataset (attngan.data.synthetic)."""

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attngan.data import synthetic
from attngan.data.synthetic import COLORS, SHAPES, class_id, main, make_shapes_dataset
from attngan.errors import OptionError

NUM_IMAGES, IMAGE_SIZE = 24, 32


def _make(out_dir: Path, seed: int = 0) -> dict:
    return make_shapes_dataset(out_dir, num_images=NUM_IMAGES, image_size=IMAGE_SIZE, seed=seed, test_fraction=0.25)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _tokens(caption: str) -> list[str]:
    return re.findall(r"\w+", caption)


def _nearest_color(rgb: np.ndarray) -> str:
    return min(COLORS, key=lambda name: np.abs(rgb.astype(int) - COLORS[name]).sum())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("shapes") / "shapes"
    return out, _make(out)


@pytest.fixture(scope="module")
def records(dataset: tuple[Path, dict]) -> dict:
    out, _ = dataset
    return json.loads((out / "objects.json").read_text())["images"]


def _load_split(out: Path, split: str) -> tuple[list, list]:
    with (out / split / "filenames.pickle").open("rb") as f:
        keys = pickle.load(f)
    with (out / split / "class_info.pickle").open("rb") as f:
        classes = pickle.load(f)
    return keys, classes


def _captions(out: Path, key: str) -> list[str]:
    return (out / "text" / f"{key}.txt").read_text(encoding="ascii").splitlines()


def test_same_seed_gives_identical_files(dataset, tmp_path):
    out, _ = dataset
    again = tmp_path / "again"
    _make(again)
    assert _files(again) == _files(out)


def test_other_seed_gives_other_data(dataset, tmp_path):
    out, _ = dataset
    other = tmp_path / "other"
    _make(other, seed=1)
    ours, theirs = _files(out), _files(other)
    assert ours.keys() == theirs.keys()
    assert ours["objects.json"] != theirs["objects.json"]
    assert sum(ours[k] != theirs[k] for k in ours if k.startswith("images/")) > NUM_IMAGES // 2


def test_layout_and_split(dataset, records):
    out, summary = dataset
    train_keys, train_classes = _load_split(out, "train")
    test_keys, test_classes = _load_split(out, "test")
    all_keys = [f"shape_{i:05d}" for i in range(NUM_IMAGES)]
    assert sorted(train_keys + test_keys) == all_keys
    assert len(test_keys) == NUM_IMAGES // 4 and not set(train_keys) & set(test_keys)
    assert len(train_classes) == len(train_keys) and len(test_classes) == len(test_keys)
    assert all(type(c) is int for c in train_classes + test_classes)
    for split in ("train", "test"):
        for name in ("filenames.pickle", "class_info.pickle"):
            assert (out / split / name).read_bytes()[:2] == b"\x80\x02"  # protocol 2
    for key in all_keys:
        with Image.open(out / "images" / f"{key}.jpg") as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (32, 32))
    assert sorted(records) == all_keys
    assert (out / "example_filenames.txt").read_text() == "example_captions\n"
    assert "seed=0" in (out / "README.txt").read_text()
    assert summary["num_train"] == len(train_keys) and summary["num_test"] == len(test_keys)
    assert not list(out.parent.glob(".*partial"))


def test_captions_per_image(dataset, records):
    out, _ = dataset
    for key, record in records.items():
        captions = _captions(out, key)
        assert len(captions) == 10
        assert len(set(captions)) >= 8, captions
        main_words = record["objects"][0]["words"]
        for caption in captions:
            assert caption.isascii() and caption == caption.lower()
            assert 4 <= len(_tokens(caption)) <= 18, caption
            assert set(main_words) <= set(_tokens(caption)), (caption, main_words)


def test_every_object_is_named_in_some_caption(dataset, records):
    out, _ = dataset
    for key, record in records.items():
        token_sets = [set(_tokens(c)) for c in _captions(out, key)]
        assert any(record["background"] in tokens for tokens in token_sets)
        all_words = {w for obj in record["objects"] for w in obj["words"]}
        if len(record["objects"]) > 1:
            assert sum(all_words <= tokens for tokens in token_sets) >= 3
        for obj in record["objects"]:
            assert obj["words"] == [obj["color"], obj["shape"]]
            assert any(set(obj["words"]) <= tokens for tokens in token_sets), (key, obj)


def test_class_ids_follow_main_object(dataset, records):
    out, summary = dataset
    assert class_id("circle", "red") == 1 and class_id("circle", "green") == 2
    assert class_id("square", "red") == len(COLORS) + 1
    assert class_id("diamond", "black") == len(SHAPES) * len(COLORS)
    classes = []
    for split in ("train", "test"):
        for key, cls in zip(*_load_split(out, split)):
            main_obj = records[key]["objects"][0]
            assert cls == class_id(main_obj["shape"], main_obj["color"])
            classes.append(cls)
    assert len(set(classes)) < len(classes)  # some images share a class
    assert summary["num_classes"] == len(set(classes))


def test_scenes_are_well_formed(records):
    sizes = {"small": 0, "large": 1}
    counts = set()
    for record in records.values():
        objects = record["objects"]
        counts.add(len(objects))
        assert 1 <= len(objects) <= 3
        assert all(o["color"] != record["background"] for o in objects)
        assert len({(o["shape"], o["color"]) for o in objects}) == len(objects)
        assert all(sizes[o["size"]] <= sizes[objects[0]["size"]] for o in objects)
        occupied = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=int)
        for obj in objects:
            x, y, w, h = obj["box"]
            assert x >= 0 and y >= 0 and x + w <= IMAGE_SIZE and y + h <= IMAGE_SIZE
            occupied[y : y + h, x : x + w] += 1
        assert occupied.max() == 1  # boxes do not overlap
    assert counts == {1, 2, 3}


def test_box_pixels_have_the_object_colour(dataset, records):
    out, _ = dataset
    for key, record in records.items():
        pixels = np.asarray(Image.open(out / "images" / f"{key}.jpg"))
        assert _nearest_color(pixels[0, 0]) == record["background"]
        for obj in record["objects"]:
            x, y, w, h = obj["box"]
            centre = pixels[y + h // 2, x + w // 2]
            assert _nearest_color(centre) == obj["color"], (key, obj)
            assert np.abs(centre.astype(int) - COLORS[obj["color"]]).max() <= 40


def test_vocabulary_is_small():
    phrases = [
        *synthetic.SINGLE_TEMPLATES,
        *synthetic.MULTI_TEMPLATES,
        *synthetic.SHORT_LOCATIONS.values(),
        *COLORS,
        *SHAPES,
        *synthetic.SIZES,
        "a an background",
    ]
    phrases += [p for variants in synthetic.LOCATIONS.values() for p in variants]
    words = {w for p in phrases for w in _tokens(re.sub(r"\{\w+\}", " ", p))}
    assert len(words) < 100


def test_example_captions(dataset):
    out, _ = dataset
    lines = (out / "example_captions.txt").read_text().splitlines()
    assert len(lines) == len(COLORS)
    mentioned = {w for line in lines for w in _tokens(line)}
    assert set(COLORS) <= mentioned and set(SHAPES) <= mentioned


def test_cli_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "shapes"
    argv = ["--out", str(out), "--num-images", "6", "--image-size", "24"]
    assert main(argv) == 0
    assert "wrote 6 images" in capsys.readouterr().out
    before = _files(out)
    assert main([*argv, "--seed", "3"]) == 2
    assert "--force" in capsys.readouterr().err
    assert _files(out) == before
    (out / "captions.pickle").write_bytes(b"stale")  # built later by the loader
    assert main([*argv, "--seed", "3", "--force"]) == 0
    assert _files(out) != before and not (out / "captions.pickle").exists()


def test_force_keeps_foreign_files(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["--out", str(out), "--num-images", "6", "--image-size", "24", "--force"]) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    "kwargs", [{"num_images": 1}, {"image_size": 8}, {"test_fraction": 0.0}, {"max_objects": 10}, {"object_scale": 0.0}]
)
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(OptionError):
        make_shapes_dataset(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_three_captions_name_every_object(tmp_path):
    out = tmp_path / "few"
    make_shapes_dataset(out, num_images=12, image_size=24, captions_per_image=3)
    records = json.loads((out / "objects.json").read_text())["images"]
    assert any(len(r["objects"]) > 1 for r in records.values())
    for key, record in records.items():
        captions = _captions(out, key)
        assert len(captions) == 3
        for obj in record["objects"]:
            assert all(set(obj["words"]) <= set(_tokens(c)) for c in captions), (key, obj)


def test_scaled_objects_are_larger_centred_and_drawn(tmp_path):
    """object_scale 2: sides of 2 x 0.5 and 2 x 0.85 of a 48/3 px cell (16 and 27 px),
    centred within 48/16 = 3 px (+1 of rounding) of a cell centre (8, 24 or 40 px),
    unless pushed against the image border."""
    out = tmp_path / "big"
    make_shapes_dataset(out, num_images=40, image_size=48, max_objects=1, object_scale=2.0)
    data = json.loads((out / "objects.json").read_text())
    assert data["settings"]["object_scale"] == 2.0 and data["settings"]["max_objects"] == 1
    for key, record in data["images"].items():
        (obj,) = record["objects"]
        x, y, w, h = obj["box"]
        assert w == h == {"small": 16, "large": 27}[obj["size"]]
        assert x >= 0 and y >= 0 and x + w <= 48 and y + h <= 48
        for start in (x, y):
            centre = start + w / 2
            assert start in (0, 48 - w) or min(abs(centre - c) for c in (8, 24, 40)) <= 4, (key, obj)
        pixels = np.asarray(Image.open(out / "images" / f"{key}.jpg"))
        assert _nearest_color(pixels[y + h // 2, x + w // 2]) == obj["color"]


def test_palette_restricts_every_colour(tmp_path, capsys):
    """--colors red,blue: objects, backgrounds, pixels and captions use those two only, and
    the example captions are the 8 distinct (shape, colour) pairs of that palette."""
    out = tmp_path / "two"
    assert main(["--out", str(out), "--num-images", "24", "--image-size", "48", "--colors", "red,blue"]) == 0
    capsys.readouterr()
    data = json.loads((out / "objects.json").read_text())
    assert list(data["colors"]) == data["settings"]["colors"] == ["red", "blue"]
    for key, record in data["images"].items():
        pixels = np.asarray(Image.open(out / "images" / f"{key}.jpg"))
        assert _nearest_color(pixels[0, 0]) == record["background"]  # objects keep a 1 px margin
        for obj in record["objects"]:
            assert obj["color"] != record["background"]
        colour_words = {w for c in _captions(out, key) for w in _tokens(c) if w in COLORS}
        assert colour_words <= {"red", "blue"}, key
    lines = (out / "example_captions.txt").read_text().splitlines()
    named = {(colour, shape) for line in lines for colour in COLORS for shape in SHAPES if f"{colour} {shape}" in line}
    assert len(lines) == 8 and named == {(c, s) for c in ("red", "blue") for s in SHAPES}


@pytest.mark.parametrize(
    "colors, message",
    [
        (["red", "mauve"], "unknown colour.*'mauve'"),
        (["red"], "at least two distinct"),
        (["red", "red"], "at least two distinct"),
    ],
)
def test_bad_palette(tmp_path, colors, message):
    with pytest.raises(OptionError, match=message):
        make_shapes_dataset(tmp_path / "x", num_images=6, image_size=24, colors=colors)
    assert not (tmp_path / "x").exists()
