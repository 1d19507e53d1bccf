"""Object match: the colour and shape checks on hand-drawn images, which objects a caption
names, the chance level's pairing, and the real test images of generated datasets scoring
100 % (the metric's ceiling: it reads the data the way it was drawn)."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from attngan.dataset_tools.synthetic import COLORS, SHAPES, draw_object, make_shapes_dataset
from attngan.metrics.localisation import load_objects
from attngan.metrics.object_match import ObjectJudge, ObjectTally

SIZE = 32


def drawing(shape, colour, box=(8, 6, 16, 16), background="white", size=SIZE):
    image = Image.new("RGB", (size, size), COLORS[background])
    draw_object(ImageDraw.Draw(image), shape, box, COLORS[colour])
    return np.array(image)


def objects_json(*scenes):
    """objects.json content with image ``k<i>`` holding ``scenes[i]``: (background, [(shape, colour)])."""
    images = {
        f"k{i}": {
            "background": bg,
            "objects": [
                {"shape": s, "color": c, "size": "large", "box": [0, 0, 1, 1], "words": [c, s]} for s, c in objs
            ],
        }
        for i, (bg, objs) in enumerate(scenes)
    }
    return {"image_size": SIZE, "colors": COLORS, "shapes": list(SHAPES), "images": images}


def as_batch(*images):
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


@pytest.mark.parametrize("shape", SHAPES)
def test_the_named_shape_in_the_named_colour_is_right(shape):
    judge = ObjectJudge(objects_json(("white", [(shape, "red")])))
    assert judge.check(drawing(shape, "red"), {"shape": shape, "color": "red"}) == (True, True)
    for other in set(SHAPES) - {shape}:
        assert judge.check(drawing(other, "red"), {"shape": shape, "color": "red"}) == (True, False)


def test_a_missing_or_everywhere_colour_is_wrong():
    judge = ObjectJudge(objects_json(("white", [("square", "red")])))
    obj = {"shape": "square", "color": "red"}
    assert judge.check(drawing("square", "blue"), obj) == (False, False)
    assert judge.check(drawing("square", "blue", background="red"), obj) == (False, False)  # 75 % of the image
    # A shade within the tolerance of red still counts; a far one does not.
    near = np.where(drawing("square", "red") == COLORS["red"], np.array(COLORS["red"]) + [30, 30, 0], 245)
    far = np.where(drawing("square", "red") == COLORS["red"], np.array(COLORS["red"]) + [0, 70, 70], 245)
    assert judge.check(near.astype(np.uint8), obj) == (True, True)
    assert judge.check(far.astype(np.uint8), obj) == (False, False)


def test_the_largest_region_of_the_colour_is_the_object():
    judge = ObjectJudge(objects_json(("white", [("circle", "green")])))
    image = drawing("circle", "green", box=(10, 10, 18, 18))
    image[1:4, 1:4] = COLORS["green"]  # a speck of the same colour elsewhere
    assert judge.check(image, {"shape": "circle", "color": "green"}) == (True, True)


def test_which_objects_a_caption_names():
    judge = ObjectJudge(objects_json(("white", [("circle", "red"), ("square", "blue"), ("triangle", "blue")])))
    named = judge.scored_objects("k0", "a red circle and a blue square".split())
    assert [(o["shape"], o["color"]) for o in named] == [("circle", "red")]  # blue is shared: skipped
    assert judge.scored_objects("k0", "a red square".split()) == []


def test_tally_scores_every_named_object_and_its_chance_pairing():
    objects = objects_json(
        ("white", [("circle", "red")]), ("white", [("square", "red")]), ("black", [("diamond", "blue")])
    )
    judge = ObjectJudge(objects)
    keys = ["k0", "k0", "k1", "k1", "k2", "k2"]  # two captions an image
    texts = ["a red circle", "a circle", "a red square", "a red square", "a blue diamond", "a blue diamond"]
    tally = ObjectTally(judge, keys, texts, captions_per_image=2)
    big = [
        np.kron(drawing(s, c, background=bg), np.ones((4, 4, 1), np.uint8))
        for s, c, bg in [
            ("circle", "red", "white"),
            ("circle", "red", "white"),
            ("square", "red", "white"),
            ("square", "blue", "black"),
        ]
    ]
    rows = [0, 1, 2, 4]
    tally.add(as_batch(*big), rows, [texts[r].split() for r in rows])
    result = tally.result()
    # Row 1 ("a circle") names no colour: not scored. Rows 0 and 2 are right; row 4 draws a blue square.
    assert result.objects == 3
    assert (result.colour, result.shape) == (1.0, pytest.approx(2 / 3))
    # Chance, against the next image's first caption (cycled): rows 0 and 1 (image k0's red circles)
    # against "a red square": colour only; row 2 (a red square) against "a blue diamond" and row 4
    # (a blue square on black) against "a red circle": nothing.
    assert result.chance_colour == 0.5 and result.chance_shape == 0.0
    assert ObjectTally(judge, keys, texts, 2).result().as_dict()["objects"] == 0


@pytest.mark.parametrize("settings", [dict(max_objects=1, object_scale=2.0), dict(max_objects=3)])
def test_real_test_images_score_every_object_right(tmp_path, settings):
    root = tmp_path / "shapes"
    make_shapes_dataset(root, num_images=60, image_size=SIZE, seed=2, **settings)
    objects = load_objects(root)
    keys = pickle.loads((root / "test" / "filenames.pickle").read_bytes())
    texts = [line for key in keys for line in (root / "text" / f"{key}.txt").read_text().splitlines()]
    cpi = len(texts) // len(keys)
    tally = ObjectTally(ObjectJudge(objects), [k for k in keys for _ in range(cpi)], texts, cpi)
    images = [np.asarray(Image.open(root / "images" / f"{key}.jpg").convert("RGB")) for key in keys]
    rows = np.arange(len(texts))
    tally.add(as_batch(*[images[r // cpi] for r in rows]), rows, [texts[r].split() for r in rows])
    result = tally.result()
    assert result.objects >= len(keys) * 3 and (result.colour, result.shape) == (1.0, 1.0)
