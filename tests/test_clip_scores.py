"""clip_rp and clip_score with a randomly initialised CLIP ViT-B/32 (open_clip) saved to a
local file, against a plain computation: CLIP's preprocessing written out with torchvision,
TISE's RP_coco.py loop (softmax of the image's logits over its 1 + m candidates, a hit when
the true caption wins, shuffled bins of N // bins with the remainder in the last) and
100 * max(cos, 0) averaged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from attngan.checkpoint import CheckpointError
from attngan.config import ConfigError
from attngan.errors import SetupError
from attngan.metrics import clip_scores
from attngan.metrics.r_precision import draw_mismatched
from optional import need

CLIP = "pip install -e '.[clip]'"
TEXTS = [f"a {c} bird with a {s} beak" for c in ("red", "blue", "small", "large") for s in ("short", "long", "thin")]


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    """ViT-B/32 with random weights, stored in float16 as OpenAI's file is (the in-memory
    reference holds the same float16-rounded values in float32)."""
    open_clip = need("open_clip", CLIP)
    torch.manual_seed(0)
    model = open_clip.create_model(clip_scores.ARCHITECTURE, pretrained=None).eval()
    model.half().float()
    path = tmp_path_factory.mktemp("clip") / "ViT-B-32.bin"
    torch.save({k: v.half() for k, v in model.state_dict().items()}, path)
    return path, model, open_clip


def _reference_embeddings(model, open_clip, images: torch.Tensor, texts: list[str]):
    prep = transforms.Compose(
        [
            transforms.Resize(224, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
        ]
    )
    x = torch.stack([prep(Image.fromarray(im.permute(1, 2, 0).numpy())) for im in images])
    with torch.no_grad():
        img = model.encode_image(x).double().numpy()
        txt = model.encode_text(open_clip.get_tokenizer(clip_scores.ARCHITECTURE)(texts)).double().numpy()
    return img / np.linalg.norm(img, axis=1, keepdims=True), txt / np.linalg.norm(txt, axis=1, keepdims=True)


def test_clip_metrics_equal_a_plain_computation(clip_file):
    path, model, open_clip = clip_file
    clip = clip_scores.load_clip(path)
    n, mismatched, bins, seed = 10, 5, 3, 4
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (n, 3, 64, 80), dtype=np.uint8))
    captions = TEXTS[:n]
    classes, pool_classes = np.arange(n) % 4, np.arange(len(TEXTS)) % 4
    img, cap = clip.images(images), clip.texts(captions)
    pool = clip.texts(TEXTS)
    ref_img, ref_pool = _reference_embeddings(model, open_clip, images, TEXTS)
    np.testing.assert_allclose(img.numpy(), ref_img, atol=2e-5)
    np.testing.assert_allclose(pool.numpy(), ref_pool, atol=2e-5)

    # CLIP score: 100 * max(cos, 0), averaged
    cos = (ref_img * ref_pool[:n]).sum(1)
    score = clip_scores.clip_score(img, cap)
    assert score["mean"] == pytest.approx(np.mean(100 * np.maximum(cos, 0)), abs=1e-3)

    # R-precision, RP_coco.py's loop over the same draws
    wrong = draw_mismatched(classes, pool_classes, mismatched, np.random.default_rng(seed))
    hits = []
    for i in range(n):
        logits = 100.0 * ref_img[i] @ np.concatenate([ref_pool[i : i + 1], ref_pool[wrong[i]]]).T
        probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        hits.append(np.argmax(probs) == 0)
    ids = list(np.random.default_rng(seed).permutation(n))
    per_bin = n // bins
    rates = [
        np.mean([hits[j] for j in ids[b * per_bin : (b + 1) * per_bin if b < bins - 1 else n]]) for b in range(bins)
    ]
    rp = clip_scores.clip_r_precision(img, cap, classes, pool, pool_classes, mismatched, bins, seed)
    assert rp["mean"] == pytest.approx(np.mean(rates)) and rp["std"] == pytest.approx(np.std(rates))
    assert rp["candidates"] == mismatched + 1 and rp["images"] == n


def test_tise_bins_put_the_remainder_in_the_last_bin():
    hits = np.array([1] * 9 + [0] * 3, dtype=bool)  # 12 images, 5 bins of 2, the last of 4
    order = np.random.default_rng(0).permutation(12)
    rates = [hits[order[0:2]].mean(), hits[order[2:4]].mean(), hits[order[4:6]].mean(), hits[order[6:8]].mean()]
    rates.append(hits[order[8:]].mean())
    assert clip_scores.tise_bins(hits, seed=0, bins=5) == pytest.approx((np.mean(rates), np.std(rates)))


def test_missing_or_wrong_clip_weights(clip_file, tmp_path):
    _, _, open_clip = clip_file
    with pytest.raises(ConfigError, match="EVAL.CLIP_WEIGHTS is empty.*ViT-B-32.pt"):
        clip_scores.load_clip("")
    with pytest.raises(SetupError, match="absent.pt: no such file; download OpenAI's ViT-B-32.pt"):
        clip_scores.load_clip(tmp_path / "absent.pt")
    small = open_clip.CLIP(
        embed_dim=16,
        vision_cfg={"layers": 1, "width": 32, "patch_size": 8, "image_size": 32, "head_width": 16},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    )
    torch.save(small.state_dict(), tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: not CLIP ViT-B/32 weights"):
        clip_scores.load_clip(tmp_path / "other.pt")
