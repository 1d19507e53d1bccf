"""Dataset check: every missing or unreadable file is reported, with its path."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from PIL import Image

from attngan.data.pickles import load_pickle
from attngan.dataset_tools.check import Problem, check_dataset, main
from attngan.dataset_tools.synthetic import make_shapes_dataset

CPI = 10


@pytest.fixture()
def shapes(tmp_path: Path) -> Path:
    root = tmp_path / "shapes"
    make_shapes_dataset(root, num_images=10, image_size=64)
    return root


def _keys(root: Path) -> list[str]:
    return load_pickle(root / "train" / "filenames.pickle") + load_pickle(root / "test" / "filenames.pickle")


def _by_path(problems: list[Problem]) -> dict[Path, list[str]]:
    found: dict[Path, list[str]] = {}
    for p in problems:
        found.setdefault(p.path, []).append(p.what)
    return found


def test_clean_shapes_dataset(shapes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_dataset(shapes, CPI) == []
    assert check_dataset(shapes, CPI, workers=3) == []
    assert main(["--data_dir", str(shapes)]) == 0
    assert capsys.readouterr().out.strip() == f"{shapes}: checked 10 images, 10 caption files: OK"


def test_every_broken_file_is_reported(shapes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = _keys(shapes)
    images, text = shapes / "images", shapes / "text"
    (images / f"{keys[0]}.jpg").unlink()
    truncated = images / f"{keys[1]}.jpg"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    with Image.open(truncated) as img:  # the header is intact: only a full decode finds it
        assert img.size == (64, 64)
    (images / f"{keys[2]}.jpg").write_bytes(b"not a jpeg at all" * 20)
    (text / f"{keys[3]}.txt").unlink()
    (text / f"{keys[4]}.txt").write_text("a red circle\n\n...\na blue square\n", encoding="utf-8")
    (text / f"{keys[5]}.txt").write_bytes(b"\xff\xfe bad bytes\n" + (text / f"{keys[5]}.txt").read_bytes())
    non_ascii = "a red circle\n鳥 の 絵\n" + "a blue square\n" * 9
    (text / f"{keys[6]}.txt").write_text(non_ascii, encoding="utf-8")
    (shapes / "test" / "class_info.pickle").write_bytes(b"\x80\x02]q\x00(K\x01K")  # cut short

    problems = check_dataset(shapes, CPI, workers=2)
    found = _by_path(problems)
    assert found == {
        images / f"{keys[0]}.jpg": ["missing image"],
        truncated: [found[truncated][0]],
        images / f"{keys[2]}.jpg": [found[images / f"{keys[2]}.jpg"][0]],
        text / f"{keys[3]}.txt": ["missing caption file"],
        text / f"{keys[4]}.txt": ["2 non-empty captions, CAPTIONS_PER_IMAGE needs 10"],
        text / f"{keys[5]}.txt": [found[text / f"{keys[5]}.txt"][0]],
        text / f"{keys[6]}.txt": ["captions [2] have no ASCII word: they would load empty"],
        shapes / "test" / "class_info.pickle": [found[shapes / "test" / "class_info.pickle"][0]],
    }
    assert "truncated" in found[truncated][0].lower()
    assert "cannot decode image" in found[images / f"{keys[2]}.jpg"][0]
    assert "not UTF-8 (byte 0xff at offset 0)" in found[text / f"{keys[5]}.txt"][0]
    assert found[shapes / "test" / "class_info.pickle"][0].startswith("unreadable: truncated")

    assert main(["--data_dir", str(shapes), "--workers", "0"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[:-1] == [str(p) for p in problems]
    assert out[-1].startswith(f"8 problems in {shapes}")


def test_class_info_of_wrong_length(shapes: Path) -> None:
    path = shapes / "train" / "class_info.pickle"
    path.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    n_train = len(load_pickle(shapes / "train" / "filenames.pickle"))
    assert check_dataset(shapes, CPI) == [Problem(path, f"3 class ids, but filenames.pickle has {n_train} keys")]


def test_missing_folders_and_split(tmp_path: Path) -> None:
    assert check_dataset(tmp_path / "nowhere") == [
        Problem(tmp_path / "nowhere", "data directory not found (see data/README.md for the layouts)")
    ]
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "filenames.pickle").write_bytes(pickle.dumps(["a", "b"], protocol=2))
    found = _by_path(check_dataset(tmp_path, CPI))
    assert found == {
        tmp_path / "test" / "filenames.pickle": ["missing"],
        tmp_path / "images": ["folder missing (2 images expected; see data/README.md)"],
        tmp_path / "text": ["folder missing (2 caption files expected; see data/README.md)"],
    }


def _write_birds(root: Path) -> list[str]:
    """Three 40x30 CUB images; bounding_boxes.txt lacks the third; the second's box sticks out."""
    keys = [f"001.Red_Bird/Red_Bird_{i:04d}" for i in range(3)]
    cub = root / "CUB_200_2011"
    for key in keys:
        (cub / "images" / key).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (200, 20, 20)).save(cub / "images" / f"{key}.jpg")
        (root / "text" / key).parent.mkdir(parents=True, exist_ok=True)
        (root / "text" / f"{key}.txt").write_text("a red bird\n" * CPI, encoding="utf-8")
    (cub / "images.txt").write_text("".join(f"{i + 1} {k}.jpg\n" for i, k in enumerate(keys)))
    (cub / "bounding_boxes.txt").write_text("1 5.0 5.0 20.0 10.0\n2 30.5 10.0 20.0 10.0\n")
    for split, part in (("train", keys[:2]), ("test", keys[2:])):
        (root / split).mkdir()
        (root / split / "filenames.pickle").write_bytes(pickle.dumps(part, protocol=2))
    return keys


def test_cub_layout_boxes(tmp_path: Path) -> None:
    # (no 'birds' in the test name: pytest puts it in tmp_path, which would make 'coco' below birds)
    root = tmp_path / "birds"
    keys = _write_birds(root)
    boxes = root / "CUB_200_2011" / "bounding_boxes.txt"
    assert check_dataset(root, CPI) == [
        Problem(boxes, "2 rows, but images.txt has 3; the loader pairs them row by row"),
        Problem(boxes, f"row 2: box [30, 10, 20, 10] of {keys[1]!r} is outside the 40x30 image"),
        Problem(boxes, f"no box for {keys[2]!r} (image id 3)"),
    ]
    # Without 'birds' in the path it is the COCO layout: images/<key>.jpg.
    coco = tmp_path / "coco"
    root.rename(coco)
    assert check_dataset(coco, CPI) == [
        Problem(coco / "images", "folder missing (3 images expected; see data/README.md)")
    ]


def test_captions_pickle_checked_instead_of_text(shapes: Path) -> None:
    n_train = len(load_pickle(shapes / "train" / "filenames.pickle"))
    train = [[1, 2, 3]] * (n_train * CPI - 1) + [[1, 0, 2]]
    test = [[4, 99]] + [[]] + [[5]] * 17
    path = shapes / "captions.pickle"
    path.write_bytes(pickle.dumps([train, test, {i: f"w{i}" for i in range(10)}, {}], protocol=2))
    for txt in (shapes / "text").iterdir():
        txt.unlink()  # not read when captions.pickle exists
    problems = check_dataset(shapes, CPI)
    assert [p.path for p in problems] == [path] * 4
    whats = [p.what for p in problems]
    assert "1 train captions contain id 0" in whats[0] and f"#{n_train * CPI - 1}" in whats[0]
    test_keys = load_pickle(shapes / "test" / "filenames.pickle")
    assert whats[1].startswith(f"19 test captions, but {len(test_keys)} test images x CAPTIONS_PER_IMAGE 10")
    assert whats[2] == (f"1 test captions contain ids outside the vocabulary (10 words): #0 ({test_keys[0]} caption 1)")
    assert whats[3].startswith("1 test captions are empty")


def test_forbidden_global_is_refused_not_run(shapes: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple:
            return os.mkdir, (str(marker),)

    path = shapes / "train" / "filenames.pickle"
    path.write_bytes(pickle.dumps(Evil(), protocol=2))
    problems = check_dataset(shapes, CPI)
    assert [p.path for p in problems] == [path]
    assert problems[0].what.startswith("refused, not loaded: refused global")
    assert not marker.exists()


def test_cli_arguments(shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--cfg", str(tmp_path / "missing.yml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert main([]) == 2
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"DATA_DIR: '{shapes}'\nTEXT:\n  CAPTIONS_PER_IMAGE: 11\n")
    assert main(["--cfg", str(cfg)]) == 1  # the shapes text files hold 10 captions
    assert "CAPTIONS_PER_IMAGE needs 11" in capsys.readouterr().out
    assert main(["--cfg", str(cfg), "--captions_per_image", "10"]) == 0
    assert main(["--data_dir", str(shapes), "--captions_per_image", "0"]) == 2
