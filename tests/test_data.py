"""Data pipeline: tokenisation, captions.pickle, safe pickles, crops, scales, sampling, batches."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from easydict import EasyDict

from attngan.data.cache import crop_box
from attngan.data.datasets import TextDataset, build_dataset, get_imgs, image_transform, load_bboxes, prepare_data
from attngan.data.pickles import load_pickle, save_pickle
from attngan.data.text import build_vocabulary, load_text_data, pad_or_sample, tokenize
from attngan.errors import DataError
from conftest import RED, TINY_BIRDS, TINY_CPI, tiny_captions_of, write_captions

# --- tokenisation and vocabulary ---------------------------------------------------------


@pytest.mark.parametrize(
    "caption, tokens",
    [
        ("A bird, with RED wings!", ["a", "bird", "with", "red", "wings"]),
        ("café au lait", ["caf", "au", "lait"]),
        ("small\ufffd\ufffdbird", ["small", "bird"]),
        ("x_y has 3d-parts", ["x_y", "has", "3d", "parts"]),
        ("日本 naïve", ["nave"]),
        ("?!", []),
    ],
)
def test_tokenize(caption: str, tokens: list[str]) -> None:
    assert tokenize(caption) == tokens


def test_vocabulary_first_occurrence_order() -> None:
    train_ids, test_ids, ixtoword, wordtoix = build_vocabulary([["a", "b"], ["b", "c"]], [["d", "a"]])
    assert ixtoword == {0: "<end>", 1: "a", 2: "b", 3: "c", 4: "d"}
    assert wordtoix == {"<end>": 0, "a": 1, "b": 2, "c": 3, "d": 4}
    assert train_ids == [[1, 2], [2, 3]] and test_ids == [[4, 1]]


# --- captions.pickle and safe pickles ----------------------------------------------------


def test_captions_pickle_built_then_reloaded(tiny_birds: Path) -> None:
    built = load_text_data(tiny_birds, TINY_CPI)
    with open(tiny_birds / "captions.pickle", "rb") as f:
        raw = pickle.load(f)
    assert isinstance(raw, list) and len(raw) == 4
    assert raw == [built.train_captions, built.test_captions, built.ixtoword, built.wordtoix]
    assert len(built.train_captions) == 3 * TINY_CPI and len(built.test_captions) == TINY_CPI
    # Leading empty and punctuation-only lines skipped; the 4th caption of image 1 cut.
    first = [built.ixtoword[i] for i in built.train_captions[0]]
    assert first == ["img0", "bird", "number", "0"]
    assert "extra" not in built.wordtoix
    assert 0 not in {i for c in built.train_captions + built.test_captions for i in c}
    reloaded = load_text_data(tiny_birds, TINY_CPI)
    assert reloaded == built and reloaded.n_words == len(built.ixtoword)


def test_stale_captions_pickle_is_refused(tiny_birds: Path) -> None:
    load_text_data(tiny_birds, TINY_CPI)
    with pytest.raises(DataError, match="CAPTIONS_PER_IMAGE"):
        load_text_data(tiny_birds, TINY_CPI - 1)


def test_too_few_captions_names_the_file(tiny_birds: Path) -> None:
    key = TINY_BIRDS[2][0]
    write_captions(tiny_birds, key, tiny_captions_of(2)[:2])
    with pytest.raises(DataError, match=key):
        load_text_data(tiny_birds, TINY_CPI)


def test_missing_caption_file_names_it(tiny_birds: Path) -> None:
    key = TINY_BIRDS[3][0]
    (tiny_birds / "text" / f"{key}.txt").unlink()
    with pytest.raises(DataError, match=key):
        load_text_data(tiny_birds, TINY_CPI)


class _Evil:
    def __reduce__(self):
        return os.system, ("true",)


def test_restricted_unpickler_refuses_globals(tmp_path: Path) -> None:
    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps([_Evil()], protocol=2))
    with pytest.raises(DataError, match=r"evil\.pickle.*system"):
        load_pickle(path)


def test_python2_pickle_and_round_trip(tmp_path: Path) -> None:
    # cPickle.dumps(['abc', set([1])], 2) under Python 2.7: a py2 str and __builtin__.set.
    py2 = tmp_path / "py2.pickle"
    py2.write_bytes(b"\x80\x02]q\x00(U\x03abcq\x01c__builtin__\nset\nq\x02]q\x03K\x01a\x85q\x04Rq\x05e.")
    assert load_pickle(py2) == ["abc", {1}]
    obj = [[[1, 2]], [], {0: "<end>"}, {"<end>": 0}, (1.5, True, frozenset({"x"}))]
    save_pickle(obj, tmp_path / "obj.pickle")
    assert load_pickle(tmp_path / "obj.pickle") == obj
    assert sorted(p.name for p in tmp_path.iterdir()) == ["obj.pickle", "py2.pickle"]  # no temp file left
    with pytest.raises(DataError, match="nothere"):
        load_pickle(tmp_path / "nothere.pickle")


# --- boxes, crops and image scales -------------------------------------------------------


def test_load_bboxes_truncates(tiny_birds: Path) -> None:
    boxes = load_bboxes(tiny_birds)
    assert boxes[TINY_BIRDS[0][0]] == [30, 20, 20, 20]
    assert boxes[TINY_BIRDS[2][0]] == [10, 5, 30, 40]


@pytest.mark.parametrize(
    "bbox, size, box",
    [
        ((30, 20, 20, 20), (100, 80), (25, 15, 55, 45)),
        ((0, 0, 40, 20), (100, 80), (0, 0, 50, 40)),  # clipped at left and top
        ((80, 60, 20, 20), (100, 80), (75, 55, 100, 80)),  # clipped at right and bottom
        ((11, 7, 25, 13), (100, 80), (5, 0, 41, 31)),  # r = int(18.75), centre int(23.5), int(13.5)
    ],
)
def test_crop_box(bbox, size, box) -> None:
    assert crop_box(bbox, *size) == box


def test_dataset_applies_crop(tiny_birds: Path) -> None:
    ds = TextDataset(tiny_birds, "train", base_size=8, branch_num=2, captions_per_image=TINY_CPI, words_num=6)
    imgs, *_ = ds[0]
    last = imgs[-1]
    assert last.shape == (3, 30, 30)  # the crop itself: no transform given
    expected = torch.tensor(RED, dtype=torch.float32).view(3, 1, 1) / 127.5 - 1
    assert (last - expected).abs().max() < 0.25


def test_multi_scale_shapes_in_range(tiny_birds: Path) -> None:
    ds = TextDataset(
        tiny_birds, "train", base_size=16, branch_num=3, captions_per_image=TINY_CPI, transform=image_transform(64)
    )
    for i in range(len(ds)):
        imgs, caption, cap_len, class_id, key = ds[i]
        assert [tuple(t.shape) for t in imgs] == [(3, 16, 16), (3, 32, 32), (3, 64, 64)]
        assert all(t.min() >= -1 and t.max() <= 1 for t in imgs)
        assert caption.dtype == torch.int64 and caption.shape == (18,)
        assert key == TINY_BIRDS[i][0] and class_id == [1, 1, 2][i]
    single = TextDataset(
        tiny_birds,
        "test",
        base_size=16,
        branch_num=3,
        captions_per_image=TINY_CPI,
        transform=image_transform(64),
        single_image=True,
    )
    assert [tuple(t.shape) for t in single[0][0]] == [(3, 64, 64)]


def test_build_dataset_from_config(tiny_coco: Path) -> None:
    cfg = EasyDict(
        DATA_DIR=str(tiny_coco),
        TREE={"BASE_SIZE": 8, "BRANCH_NUM": 2},
        TEXT={"CAPTIONS_PER_IMAGE": TINY_CPI, "WORDS_NUM": 5},
        GAN={"B_DCGAN": False},
        AUGMENT={"HORIZONTAL_FLIP": True},
        RUN={"IMAGE_CACHE": True, "CACHE_DIR": ""},
        WORKERS=0,
    )
    ds = build_dataset(cfg, "train")
    assert ds.bboxes is None and list(ds.class_id) == [0, 1]
    assert ds.cache is not None and (tiny_coco / "cache" / "train_19.u8").is_file()  # Resize(16 * 76 // 64)
    imgs, caption, cap_len, _, key = ds[1]
    assert [tuple(t.shape) for t in imgs] == [(3, 8, 8), (3, 16, 16)] and caption.shape == (5,)
    assert ds.image_path(key) == tiny_coco / "images" / f"{key}.jpg"
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    imgs, captions, cap_lens, class_ids, keys = prepare_data(batch, "cpu")
    assert [tuple(t.shape) for t in imgs] == [(2, 3, 8, 8), (2, 3, 16, 16)]
    assert captions.shape == (2, 5) and cap_lens.tolist() in ([5, 4], [4, 4])
    assert class_ids.tolist() == [ds.filenames.index(k) for k in keys]


# --- words and caption sampling ----------------------------------------------------------


def test_pad_short_caption() -> None:
    out, length = pad_or_sample([5, 6, 7], 6)
    assert out.dtype == np.int64 and list(out) == [5, 6, 7, 0, 0, 0] and length == 3


def test_sample_long_caption_keeps_order_and_is_reproducible() -> None:
    ids = np.arange(1, 31)
    out, length = pad_or_sample(ids, 18, np.random.default_rng(7))
    assert length == 18 and out.shape == (18,)
    assert np.all(np.diff(out) > 0) and set(out) <= set(ids)  # an ordered subsequence
    again, _ = pad_or_sample(ids, 18, np.random.default_rng(7))
    assert np.array_equal(out, again)
    # rng None = the global np.random, drawn exactly as the original get_caption.
    np.random.seed(3)
    out, _ = pad_or_sample(ids, 18)
    np.random.seed(3)
    ix = list(np.arange(30))
    np.random.shuffle(ix)
    assert np.array_equal(out, ids[np.sort(ix[:18])])


def test_caption_choice_matches_original_and_stays_in_image(tiny_coco: Path) -> None:
    ds = TextDataset(tiny_coco, "train", base_size=8, branch_num=1, captions_per_image=TINY_CPI, words_num=18)
    np.random.seed(11)
    got = ds[0][1]
    np.random.seed(11)
    sent_ix = np.random.randint(0, TINY_CPI)  # the original: numpy's randint, high exclusive
    expected, _ = pad_or_sample(ds.captions[sent_ix], 18)
    assert torch.equal(got, torch.from_numpy(expected))

    def owner(caption: torch.Tensor) -> set[int]:
        words = set(caption.tolist()) - {0}
        return {j // TINY_CPI for j, c in enumerate(ds.captions) if words <= set(c)}

    np.random.seed(0)
    for index in range(len(ds)):
        seen = [ds[index][1] for _ in range(30)]
        assert all(owner(c) == {index} for c in seen)
        assert len({tuple(c.tolist()) for c in seen}) >= TINY_CPI


# --- batches -----------------------------------------------------------------------------


def test_prepare_data_sorts_descending_and_stably() -> None:
    lens = torch.tensor([3, 5, 3, 5, 1])
    imgs = [torch.arange(5.0).view(5, 1, 1, 1).expand(5, 3, 4, 4)]
    captions = torch.arange(5).view(5, 1).repeat(1, 6)
    keys = ["a", "b", "c", "d", "e"]
    out_imgs, out_caps, out_lens, class_ids, out_keys = prepare_data(
        (imgs, captions, lens, torch.tensor([10, 11, 12, 13, 14]), keys), "cpu"
    )
    assert out_lens.tolist() == [5, 5, 3, 3, 1]
    assert out_keys == ["b", "d", "a", "c", "e"]
    assert out_caps[:, 0].tolist() == [1, 3, 0, 2, 4]
    assert out_imgs[0][:, 0, 0, 0].tolist() == [1, 3, 0, 2, 4]
    assert isinstance(class_ids, np.ndarray) and class_ids.tolist() == [11, 13, 10, 12, 14]
    # A batch of 20 with many ties (torch's default CPU sort reorders ties from 17 up).
    lens = torch.tensor([3, 1, 2] * 6 + [2, 3])
    keys = [str(i) for i in range(20)]
    *_, out_keys = prepare_data(
        ([torch.zeros(20, 3, 2, 2)], torch.zeros(20, 4, dtype=torch.long), lens, np.arange(20), keys), "cpu"
    )
    assert out_keys == sorted(keys, key=lambda k: -int(lens[int(k)]))


# --- bad input ---------------------------------------------------------------------------


def test_missing_files_are_all_listed(tiny_coco: Path, tiny_birds: Path) -> None:
    for p in (tiny_coco / "images").iterdir():
        p.unlink()
    (tiny_coco / "images").rmdir()
    for p in (tiny_coco / "text").iterdir():
        p.unlink()
    (tiny_coco / "text").rmdir()
    with pytest.raises(DataError) as err:
        TextDataset(tiny_coco, "train", captions_per_image=TINY_CPI)
    message = str(err.value)
    assert str(tiny_coco / "images") in message and str(tiny_coco / "text") in message
    assert "DATA_DIR/images/<key>.jpg" in message
    (tiny_birds / "CUB_200_2011" / "bounding_boxes.txt").unlink()
    (tiny_birds / "test" / "filenames.pickle").unlink()
    with pytest.raises(DataError) as err:
        TextDataset(tiny_birds, "test", captions_per_image=TINY_CPI)
    message = str(err.value)
    assert "bounding_boxes.txt" in message and str(tiny_birds / "test" / "filenames.pickle") in message
    assert "CUB_200_2011/images.txt" in message


def test_corrupt_and_missing_images_are_named(tiny_coco: Path) -> None:
    ds = TextDataset(tiny_coco, "train", base_size=8, branch_num=1, captions_per_image=TINY_CPI)
    bad = ds.image_path(ds.filenames[0])
    bad.write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(DataError, match=ds.filenames[0]):
        ds[0]
    ds.image_path(ds.filenames[1]).unlink()
    with pytest.raises(DataError, match=ds.filenames[1]):
        get_imgs(ds.image_path(ds.filenames[1]), [8])


def test_flip_switch() -> None:
    names = lambda t: [type(s).__name__ for s in t.transforms]  # noqa: E731
    assert names(image_transform(64)) == ["Resize", "RandomCrop", "RandomHorizontalFlip"]
    assert names(image_transform(64, flip=False)) == ["Resize", "RandomCrop"]
    assert image_transform(64).transforms[0].size == 76 and image_transform(299).transforms[0].size == 355
