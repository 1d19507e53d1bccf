"""The vectorised DAMSM losses against a plain per-caption implementation written from
docs/fidelity.md#losses (the original's loop over captions, tests/plain.py)."""

import numpy as np
import pytest
import torch

from attngan.losses import retrieval_top1, sent_loss, words_loss
from plain import plain_sent_loss, plain_words_loss


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    b, d, h, w, t = 6, 16, 5, 4, 7
    feats = torch.randn(b, d, h, w, generator=g, dtype=torch.float64)
    words = torch.randn(b, d, t, generator=g, dtype=torch.float64)
    lens = torch.tensor([7, 6, 6, 4, 2, 1])  # ragged, sorted descending as in training
    pad = torch.arange(t).unsqueeze(0) >= lens.unsqueeze(1)  # [B,T]
    words = words.masked_fill(pad.unsqueeze(1), 0.0)  # the RNN's outputs are 0 at padding
    class_ids = np.array([3, 1, 3, 2, 1, 5])  # two same-class pairs to mask
    return feats, words, lens, class_ids


@pytest.mark.parametrize("use_classes", [True, False])
def test_words_loss_matches_plain_loop(batch, use_classes):
    feats, words, lens, class_ids = batch
    ids = class_ids if use_classes else np.arange(len(lens))
    labels = torch.arange(len(lens))
    fast0, fast1, fast_maps = words_loss(
        feats, words, labels, lens, ids if use_classes else None, gamma1=4.0, gamma2=5.0, gamma3=10.0
    )
    ref0, ref1, ref_maps = plain_words_loss(feats, words, labels, lens, ids, 4.0, 5.0, 10.0)
    assert torch.allclose(fast0, ref0, atol=1e-5) and torch.allclose(fast1, ref1, atol=1e-5)
    for fast, ref in zip(fast_maps, ref_maps):
        assert fast.shape == ref.shape
        assert torch.allclose(fast, ref, atol=1e-6)


def test_words_loss_gradients_match(batch):
    feats, words, lens, class_ids = batch
    labels = torch.arange(len(lens))
    grads = []
    for fn in (
        lambda f, w: sum(words_loss(f, w, labels, lens, class_ids, gamma1=4.0)[:2]),
        lambda f, w: sum(plain_words_loss(f, w, labels, lens, class_ids, 4.0, 5.0, 10.0)[:2]),
    ):
        f, w = feats.clone().requires_grad_(), words.clone().requires_grad_()
        fn(f, w).backward()
        grads.append((f.grad, w.grad))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-6)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-6)


def test_masking_changes_the_loss(batch):
    feats, words, lens, class_ids = batch
    labels = torch.arange(len(lens))
    masked = words_loss(feats, words, labels, lens, class_ids)[0]
    unmasked = words_loss(feats, words, labels, lens, None)[0]
    assert not torch.allclose(masked, unmasked)


def test_padding_words_are_ignored(batch):
    feats, words, lens, class_ids = batch
    labels = torch.arange(len(lens))
    noisy = words.clone()
    noisy[5, :, 1:] = 100.0  # beyond caption 5's single word
    a = words_loss(feats, words, labels, lens, class_ids)[0]
    b = words_loss(feats, noisy, labels, lens, class_ids)[0]
    assert torch.allclose(a, b)


@pytest.mark.parametrize("use_classes", [True, False])
def test_sent_loss_matches_plain_loop(batch, use_classes):
    g = torch.Generator().manual_seed(1)
    cnn, rnn = (
        torch.randn(6, 16, generator=g, dtype=torch.float64),
        torch.randn(6, 16, generator=g, dtype=torch.float64),
    )
    _, _, _, class_ids = batch
    ids = class_ids if use_classes else np.arange(6)
    labels = torch.arange(6)
    fast = sent_loss(cnn, rnn, labels, ids if use_classes else None, gamma3=10.0)
    ref = plain_sent_loss(cnn, rnn, labels, ids, 10.0)
    assert torch.allclose(fast[0], ref[0], atol=1e-10) and torch.allclose(fast[1], ref[1], atol=1e-10)


def test_sent_loss_hand_computed_two_by_two():
    # Orthonormal codes matched exactly: scores = 10 * I, so each CE = log(1 + e^-10).
    codes = torch.eye(2, dtype=torch.float64)
    loss0, loss1 = sent_loss(codes, codes, torch.arange(2), None, gamma3=10.0)
    expected = np.log(1 + np.exp(-10.0))
    assert loss0.item() == pytest.approx(expected, rel=1e-9) and loss1.item() == pytest.approx(expected, rel=1e-9)


def test_retrieval_top1():
    scores = torch.tensor([[5.0, 1.0, 0.0], [0.0, 0.5, 2.0], [0.0, 0.0, 3.0]])
    i2t, t2i = retrieval_top1(scores)  # rows: images 0 and 2 right; columns: captions 0 and 2 right
    assert i2t == pytest.approx(2 / 3) and t2i == pytest.approx(2 / 3)
