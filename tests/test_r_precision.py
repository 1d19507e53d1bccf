"""R-precision on constructed encoders: matched pairs give 100 %, shuffled pairs chance."""

import numpy as np
import pytest
import torch

from attngan.errors import DataError
from attngan.metrics.r_precision import draw_mismatched, r_precision


def toy(n=3000, classes=50, dim=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    sentences = torch.randn(n, dim, generator=g)
    labels = np.arange(n) % classes
    return sentences, labels


def test_matched_by_construction_is_100_percent():
    sentences, labels = toy()
    result = r_precision(sentences.clone(), sentences, labels, sentences, labels)  # identical "encoders"
    assert result.mean == 1.0 and result.std == 0.0 and result.hits.all()


def test_shuffled_pairs_are_near_chance():
    sentences, labels = toy(n=6000)
    images = sentences[torch.randperm(len(sentences), generator=torch.Generator().manual_seed(1))]
    result = r_precision(images, sentences, labels, sentences, labels)
    assert result.chance == pytest.approx(0.01)
    assert 0.005 < result.mean < 0.016  # 1 % +- ~4 standard errors for 6000 draws


def test_deterministic_and_split_statistics():
    sentences, labels = toy(n=1000)
    noisy = sentences + 3.0 * torch.randn(sentences.shape, generator=torch.Generator().manual_seed(2))
    a = r_precision(noisy, sentences, labels, sentences, labels, seed=5)
    b = r_precision(noisy, sentences, labels, sentences, labels, seed=5)
    assert a.mean == b.mean and np.array_equal(a.hits, b.hits)
    assert 0.02 < a.mean < 0.98
    assert a.mean == pytest.approx(a.hits.mean())  # equal group sizes: mean of means = overall mean
    assert a.std > 0


def test_mismatched_captions_come_from_other_classes():
    rng = np.random.default_rng(0)
    image_classes, pool_classes = np.array([0, 1, 2, 0]), np.array([0, 0, 1, 2, 2, 1])
    drawn = draw_mismatched(image_classes, pool_classes, 99, rng)
    assert drawn.shape == (4, 99)
    assert all((pool_classes[drawn[i]] != image_classes[i]).all() for i in range(4))
    with pytest.raises(DataError, match="no caption of another class"):
        draw_mismatched(np.array([0]), np.array([0, 0]), 5, rng)


def test_chunks_give_the_same_result_as_one_pass():
    sentences, labels = toy(n=1000)
    noisy = sentences + 3.0 * torch.randn(sentences.shape, generator=torch.Generator().manual_seed(2))
    whole = r_precision(noisy, sentences, labels, sentences, labels, seed=5, chunk=len(noisy))
    for chunk in (1, 7, 100, 999):
        part = r_precision(noisy, sentences, labels, sentences, labels, seed=5, chunk=chunk)
        assert (part.mean, part.std) == (whole.mean, whole.std) and np.array_equal(part.hits, whole.hits)
