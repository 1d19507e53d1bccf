"""The word-swap probe: which word is swapped, and the end-to-end accuracy with oracle
encoders that see colours and not shapes."""

import pytest
import torch
import torch.nn as nn

from attngan.config import load_config
from attngan.data.datasets import build_dataset
from attngan.data.synthetic import make_shapes_dataset
from attngan.metrics.localisation import load_objects
from attngan.metrics.word_swap import swap_variants, word_swap_accuracy
from attngan.models import build_image_encoder, build_text_encoder
from conftest import ColourText

RED_CIRCLE = {"shape": "circle", "color": "red", "box": [0, 0, 4, 4], "words": ["red", "circle"]}
RED_SQUARE = {"shape": "square", "color": "red", "box": [8, 8, 4, 4], "words": ["red", "square"]}


def test_the_last_word_naming_the_main_object_is_swapped():
    tokens = "a red circle on blue the circle".split()
    variants, true = swap_variants(tokens, [RED_CIRCLE], "shape", ["square", "circle", "triangle"])
    assert true == 1
    assert [" ".join(v) for v in variants] == [
        "a red circle on blue the square",
        "a red circle on blue the circle",
        "a red circle on blue the triangle",
    ]
    variants, true = swap_variants(tokens, [RED_CIRCLE], "color", ["blue", "red"])
    assert true == 1 and variants[0] == "a blue circle on blue the circle".split()


def test_words_shared_with_another_object_or_missing_are_not_probed():
    tokens = "a red circle and a red square".split()
    assert swap_variants(tokens, [RED_CIRCLE, RED_SQUARE], "color", ["red", "blue"]) is None  # 'red' names both
    assert swap_variants(tokens, [RED_CIRCLE, RED_SQUARE], "shape", ["circle", "square"])[1] == 0
    assert swap_variants("a red shape".split(), [RED_CIRCLE], "shape", ["circle", "square"]) is None
    assert swap_variants(tokens, [RED_CIRCLE], "shape", ["square", "triangle"]) is None  # not a candidate


class ColourPresence(nn.Module):
    """Image encoder stub: the global code says which colours appear in the image, a small
    object's colour more than the background's (so that a caption naming only the object
    prefers its colour to the background's)."""

    def __init__(self, colours):
        super().__init__()
        self.register_buffer("rgb", torch.tensor(colours, dtype=torch.float32) / 127.5 - 1)  # [C,3]

    def forward(self, x):
        d2 = ((x[:, None] - self.rgb[None, :, :, None, None]) ** 2).sum(2)  # [B,C,H,W]
        presence = torch.exp(-10 * d2)
        return None, presence.amax((2, 3)) - 0.5 * presence.mean((2, 3))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    data = tmp_path_factory.mktemp("swap") / "shapes"
    make_shapes_dataset(data, num_images=60, image_size=32, seed=2, max_objects=1)  # 10 test images
    cfg = load_config()
    cfg.DATA_DIR, cfg.WORKERS, cfg.CUDA = str(data), 0, False
    cfg.TREE.BRANCH_NUM, cfg.TREE.BASE_SIZE = 1, 32
    cfg.TEXT.EMBEDDING_DIM, cfg.DAMSM.IMAGE_BACKBONE, cfg.DAMSM.COMPACT_IMAGE_SIZE = 16, "compact", 32
    return cfg, build_dataset(cfg, "test"), load_objects(data)


def test_an_encoder_that_sees_colours_not_shapes(tiny):
    """Sentence = sum of its colour words' one-hots, image code = the colours present: the
    true object colour always scores highest; shape words embed to nothing, so all
    shape variants tie and the first candidate wins: a hit exactly when it is the true shape."""
    _, dataset, objects = tiny
    colours = list(objects["colors"])
    result = word_swap_accuracy(
        ColourPresence(list(objects["colors"].values())),
        ColourText(dataset.wordtoix, colours),
        dataset,
        objects,
        "cpu",
        batch_size=4,
    )
    assert result["colour"].captions == len(dataset.filenames) and result["colour"].accuracy == 1.0
    assert result["colour"].chance == 1 / len([c for c in colours if c in dataset.wordtoix])
    shapes = [s for s in objects["shapes"] if s in dataset.wordtoix]
    first = [objects["images"][k]["objects"][0]["shape"] == shapes[0] for k in dataset.filenames]
    assert result["shape"].accuracy == pytest.approx(sum(first) / len(first)) and result["shape"].captions == len(first)
    assert result["shape"].chance == 1 / len(shapes)


def test_random_encoders_run_and_modes_are_restored(tiny):
    cfg, dataset, objects = tiny
    torch.manual_seed(0)
    text, image = build_text_encoder(cfg, dataset.n_words).train(), build_image_encoder(cfg).train()
    result = word_swap_accuracy(image, text, dataset, objects, "cpu", batch_size=3, max_images=5)
    assert text.training and image.training
    assert result["shape"].captions == result["colour"].captions == 5
    assert 0 <= result["shape"].accuracy <= 1
