"""The decoded-image cache (RUN.IMAGE_CACHE) against decoding every image on every step:
the same items (random crop, flip, caption choice, every scale's pixels); reused while the
images stay the same, rebuilt when they change."""

import random

import numpy as np
import pytest
import torch
from PIL import Image

from attngan.data.datasets import TextDataset, image_transform
from attngan.errors import SetupError
from conftest import TINY_BIRDS, TINY_CPI


def item(ds, index: int, seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return ds[index]


@pytest.mark.parametrize("layout", ["tiny_birds", "tiny_coco"])
def test_cached_items_equal_the_decoded_ones(layout, request, tmp_path):
    root = request.getfixturevalue(layout)
    options = dict(base_size=16, branch_num=3, captions_per_image=TINY_CPI, words_num=4, transform=image_transform(64))
    plain = TextDataset(root, "train", **options)
    cached = TextDataset(root, "train", **options, cache_dir=tmp_path / "cache")
    assert cached.cache is not None and len(cached.cache) == len(plain)
    for index in range(len(plain)):
        for seed in range(6):
            (a_imgs, a_cap, a_len, a_cls, a_key), (b_imgs, b_cap, b_len, b_cls, b_key) = (
                item(plain, index, seed),
                item(cached, index, seed),
            )
            assert (a_key, a_len, a_cls) == (b_key, b_len, b_cls) and torch.equal(a_cap, b_cap)
            assert len(a_imgs) == len(b_imgs) == 3
            assert all(torch.equal(a, b) for a, b in zip(a_imgs, b_imgs))  # the same draws, the same pixels


def test_single_image_and_no_resize(tiny_birds, tmp_path):
    options = dict(
        base_size=16, branch_num=3, captions_per_image=TINY_CPI, transform=image_transform(64), single_image=True
    )
    plain, cached = (
        TextDataset(tiny_birds, "test", **options),
        TextDataset(tiny_birds, "test", **options, cache_dir=tmp_path),
    )
    assert torch.equal(item(plain, 0, 3)[0][0], item(cached, 0, 3)[0][0])
    no_resize = TextDataset(
        tiny_birds, "test", base_size=16, branch_num=1, captions_per_image=TINY_CPI, cache_dir=tmp_path / "x"
    )
    assert no_resize.cache is None and not (tmp_path / "x").exists()


def test_cache_is_reused_then_rebuilt_when_an_image_changes(tiny_birds, tmp_path):
    options = dict(base_size=16, branch_num=2, captions_per_image=TINY_CPI, transform=image_transform(32, flip=False))
    TextDataset(tiny_birds, "train", **options, cache_dir=tmp_path)
    data = tmp_path / "train_38.u8"
    written = data.stat().st_mtime_ns
    again = TextDataset(tiny_birds, "train", **options, cache_dir=tmp_path)
    assert data.stat().st_mtime_ns == written  # the same images: not rebuilt
    path = again.image_path(TINY_BIRDS[1][0])
    Image.new("RGB", (120, 90), (0, 255, 0)).save(path, quality=100)
    changed = TextDataset(tiny_birds, "train", **options, cache_dir=tmp_path)
    assert data.stat().st_mtime_ns != written
    green = np.asarray(changed.cache[1]).mean(axis=(0, 1))
    assert green[1] > 200 and green[0] < 50
    assert np.array_equal(np.asarray(changed.cache[0]), np.asarray(again.cache[0]))
    (tmp_path / "train_38.json").write_text("{not json")
    rebuilt = TextDataset(tiny_birds, "train", **options, cache_dir=tmp_path)
    assert np.array_equal(np.asarray(rebuilt.cache[1]), np.asarray(changed.cache[1]))


def test_building_the_cache_leaves_the_global_generators_alone(tiny_birds, tmp_path):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    TextDataset(
        tiny_birds,
        "train",
        base_size=16,
        branch_num=2,
        captions_per_image=TINY_CPI,
        transform=image_transform(32),
        cache_dir=tmp_path,
        workers=1,
    )
    assert torch.equal(torch.rand(3), expected)


def test_an_unwritable_cache_folder_is_one_clear_error(tiny_birds, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SetupError, match="cannot create the image cache folder .* set RUN.CACHE_DIR"):
        TextDataset(
            tiny_birds,
            "train",
            base_size=16,
            branch_num=1,
            captions_per_image=TINY_CPI,
            transform=image_transform(16),
            cache_dir=blocker / "cache",
        )
