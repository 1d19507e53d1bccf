"""Attention localisation: the hit and chance rules on constructed maps, which words are
scored, the box in the models' frame, and both end-to-end scorers on a tiny dataset
(random models, and an oracle DAMSM that attends to each colour word's own colour)."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from attngan.config import load_config
from attngan.data.datasets import build_dataset
from attngan.data.synthetic import make_shapes_dataset
from attngan.errors import DataError
from attngan.metrics.localisation import (
    Localisation,
    damsm_localisation,
    generator_localisation,
    load_objects,
    peak_cells,
    peak_hits,
    view_box,
    words_naming_objects,
)
from attngan.models import build_generator, build_image_encoder, build_text_encoder
from conftest import ColourText

CPU = torch.device("cpu")


def peaked(h, w, cells):
    """[len(cells),h,w] maps, map k peaked at cells[k] = (row, col)."""
    maps = torch.rand(len(cells), h, w) * 0.1
    for k, (i, j) in enumerate(cells):
        maps[k, i, j] = 1.0
    return maps


def map_hits(maps, boxes, image_size):
    return peak_hits(peak_cells(maps), maps.shape[1:], boxes, image_size)


def test_peaks_at_box_centres_all_hit():
    # 32 px frame, 8x8 grid: cell (i, j) covers [4j, 4j+4) x [4i, 4i+4).
    boxes = [[1, 1, 6, 6], [20, 8, 10, 4], [28, 28, 4, 4]]
    centres = [(int((y + h / 2) // 4), int((x + w / 2) // 4)) for x, y, w, h in boxes]
    hits, chance = map_hits(peaked(8, 8, centres), boxes, 32)
    assert hits.tolist() == [True, True, True]
    # Cells overlapped: box 0 rows/cols 0..1 (2x2); box 1 cols 5..7, rows 2 (3x1); box 2 (1x1).
    assert chance.tolist() == [4 / 64, 3 / 64, 1 / 64]


def test_peaks_outside_every_box_all_miss():
    boxes = [[1, 1, 6, 6], [20, 8, 10, 4]]
    hits, _ = map_hits(peaked(8, 8, [(7, 0), (0, 7)]), boxes, 32)
    assert hits.tolist() == [False, False]


def test_chance_is_the_fraction_of_overlapping_cells_and_edges_do_not_count():
    # 8 px frame, 4x4 grid of 2 px cells. Box [1, 2, 3, 1] covers x in [1, 4), y in [2, 3):
    # columns 0 ([0,2)) and 1 ([2,4)) overlap, column 2 ([4,6)) only touches x = 4; row 1
    # ([2,4)) overlaps, row 0 ([0,2)) only touches y = 2. So 2 cells of 16: chance 1/8.
    box = [1, 2, 3, 1]
    hits, chance = map_hits(peaked(4, 4, [(1, 0), (1, 1), (1, 2), (0, 1)]), [box] * 4, 8)
    assert hits.tolist() == [True, True, False, False]
    assert chance.tolist() == [0.125] * 4


def test_words_without_a_box_are_not_scored():
    hits, chance = map_hits(peaked(4, 4, [(0, 0), (3, 3), (0, 0)]), [None, [6, 6, 2, 2], None], 8)
    assert hits.tolist() == [True] and chance.tolist() == [1 / 16]
    with pytest.raises(ValueError, match="3 peaks for 2 boxes"):
        map_hits(torch.zeros(3, 4, 4), [None, None], 8)


def test_peaks_of_a_batch_are_each_maps_first_maximum():
    maps = torch.zeros(2, 3, 4, 5)
    maps[0, 1, 2, 3] = maps[0, 1, 3, 0] = 1.0  # a tie: the first cell in row-major order
    maps[1, 2, 0, 4] = 2.0
    cells = peak_cells(maps)
    assert cells.shape == (2, 3) and cells[0, 1] == 2 * 5 + 3 and cells[1, 2] == 4
    assert cells[0, 0] == 0  # a flat map peaks at its first cell


def test_only_words_naming_one_object_get_its_box():
    objects = [
        {"words": ["red", "circle"], "box": [0, 0, 4, 4]},
        {"words": ["red", "square"], "box": [8, 8, 4, 4]},
        {"words": ["blue", "circle"], "box": [16, 0, 4, 4]},
        {"words": ["green", "diamond"], "box": [0, 16, 4, 4]},
    ]
    tokens = ["a", "red", "square", "and", "a", "blue", "circle", "on", "a", "white", "background", "diamond"]
    # red and circle are each shared by two objects; white (the background) names none.
    assert words_naming_objects(tokens, objects) == [
        None,
        None,
        [8, 8, 4, 4],
        None,
        None,
        [16, 0, 4, 4],
        None,
        None,
        None,
        None,
        None,
        [0, 16, 4, 4],
    ]


def test_view_box_follows_the_centre_crop_of_the_original_transform():
    # 64 px source, 64 px frame: Resize(76) scales by 76/64 = 1.1875, CenterCrop(64) cuts
    # round((76 - 64) / 2) = 6 px. [16, 32, 16, 8] -> x 19-6 = 13 .. 38-6 = 32, y 38-6 = 32 .. 47.5-6 = 41.5.
    assert view_box([16, 32, 16, 8], 64, 64) == (13.0, 32.0, 19.0, 9.5)
    # 32 px source, 128 px frame: Resize(152) scales by 4.75, the crop cuts 12 px; clipped at 0.
    assert view_box([1, 2, 5, 5], 32, 128) == (0.0, 0.0, 16.5, 21.25)
    assert view_box([0, 0, 1, 1], 64, 64) is None  # wholly in the cropped-off margin


def test_missing_objects_json_is_a_clear_error(tmp_path):
    with pytest.raises(
        DataError,
        match="objects.json.*attention localisation and object match need a "
        "dataset with "
        "objects.json, such as the generated shapes dataset",
    ):
        load_objects(tmp_path)


def test_as_dict():
    result = Localisation(0.5, 0.25, 4, {"colour": Localisation(1.0, 0.5, 2)})
    assert result.as_dict() == {
        "hit_rate": 0.5,
        "chance": 0.25,
        "words": 4,
        "by_kind": {"colour": {"hit_rate": 1.0, "chance": 0.5, "words": 2}},
    }


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    data = tmp_path_factory.mktemp("localisation") / "shapes"
    make_shapes_dataset(data, num_images=18, image_size=32, seed=5)  # 3 test images, 30 captions
    cfg = load_config()
    cfg.DATA_DIR, cfg.WORKERS, cfg.CUDA, cfg.TRAIN.FLAG = str(data), 0, False, True
    cfg.TREE.BRANCH_NUM, cfg.TREE.BASE_SIZE = 2, 64
    cfg.GAN.GF_DIM, cfg.GAN.Z_DIM, cfg.GAN.CONDITION_DIM, cfg.GAN.R_NUM = 2, 8, 4, 1
    cfg.TEXT.EMBEDDING_DIM, cfg.TEXT.WORDS_NUM = 16, 12  # captions up to 18 words: some get sampled
    cfg.DAMSM.IMAGE_BACKBONE, cfg.DAMSM.COMPACT_IMAGE_SIZE = "compact", 32
    dataset = build_dataset(cfg, "test")
    torch.manual_seed(0)
    return cfg, dataset, load_objects(data), build_text_encoder(cfg, dataset.n_words)


def check(result, grid_cells):
    assert result.words > 0
    assert 0 <= result.hit_rate <= 1 and 0 < result.chance < 1
    assert result.chance >= 1 / grid_cells
    assert sum(r.words for r in result.by_kind.values()) == result.words
    for r in result.by_kind.values():
        assert r.words > 0 and math.isfinite(r.hit_rate) and math.isfinite(r.chance)


def test_generator_localisation_runs_per_stage_and_is_deterministic(tiny):
    cfg, dataset, objects, text_encoder = tiny
    net_g = build_generator(cfg).train()
    state = torch.random.get_rng_state()
    results = generator_localisation(net_g, text_encoder, dataset, objects, CPU, batch_size=8, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's generator is untouched
    assert net_g.training and text_encoder.training  # modes restored
    assert len(results) == cfg.TREE.BRANCH_NUM - 1
    check(results[0], 64 * 64)  # stage 2 attends over its 64x64 input
    few = [
        generator_localisation(net_g, text_encoder, dataset, objects, CPU, batch_size=4, seed=3, max_captions=6)
        for _ in range(2)
    ]
    assert few[0][0].as_dict() == few[1][0].as_dict()
    assert 0 < few[0][0].words < results[0].words


# Recorded from the per-caption implementation (each caption decoding its own image, commit
# fb9049d) on seeded random networks: {kind: (hits, chance summed in grid cells, words)}.
RECORDED_DAMSM = {  # (seed, batch_size); the 4x4 region grid
    (0, 8): {"all": (12, 216, 83), "colour": (3, 92, 36), "shape": (9, 124, 47)},
    (4, 25): {"all": (11, 214, 80), "colour": (3, 88, 34), "shape": (8, 126, 46)},
}
RECORDED_GENERATOR = {"all": (10, 23820, 78), "colour": (4, 10492, 34), "shape": (6, 13328, 44)}  # seed 3, batch 8


def same_as_recorded(result, recorded, cells):
    for kind, (hits, chance, words) in recorded.items():
        r = result if kind == "all" else result.by_kind[kind]
        assert (r.hit_rate, r.chance, r.words) == (hits / words, chance / cells / words, words), kind


def test_localisation_matches_the_recorded_numbers(tiny):
    cfg, dataset, objects, _ = tiny
    torch.manual_seed(0)
    text_encoder, image_encoder, net_g = (
        build_text_encoder(cfg, dataset.n_words),
        build_image_encoder(cfg),
        build_generator(cfg),
    )
    for (seed, batch_size), recorded in RECORDED_DAMSM.items():
        result = damsm_localisation(
            image_encoder, text_encoder, dataset, objects, CPU, batch_size, gamma1=cfg.TRAIN.SMOOTH.GAMMA1, seed=seed
        )
        same_as_recorded(result, recorded, 4 * 4)
    (stage2,) = generator_localisation(net_g, text_encoder, dataset, objects, CPU, batch_size=8, seed=3)
    same_as_recorded(stage2, RECORDED_GENERATOR, 64 * 64)


def test_damsm_localisation_runs_on_random_encoders(tiny):
    cfg, dataset, objects, text_encoder = tiny
    result = damsm_localisation(
        build_image_encoder(cfg), text_encoder, dataset, objects, CPU, batch_size=8, gamma1=cfg.TRAIN.SMOOTH.GAMMA1
    )
    check(result, 4 * 4)  # the compact encoder's regions: 32 px / 8


class ColourRegions(nn.Module):
    """Image encoder stub: region features = how much of each region has each colour."""

    def __init__(self, colours):
        super().__init__()
        self.register_buffer("rgb", torch.tensor(colours, dtype=torch.float32) / 127.5 - 1)  # [C,3]

    def forward(self, x):
        d2 = ((x[:, None] - self.rgb[None, :, :, None, None]) ** 2).sum(2)  # [B,C,H,W]
        regions = F.adaptive_avg_pool2d(torch.exp(-10 * d2), 8)
        return regions, regions.mean((2, 3))


def test_damsm_localisation_finds_colours_with_an_oracle_encoder(tiny):
    """Regions that hold a word's colour get its attention: every colour word hits, which
    checks the boxes' frame and the word-map alignment through sorting and sampling."""
    _, dataset, objects, _ = tiny
    result = damsm_localisation(
        ColourRegions(list(objects["colors"].values())),
        ColourText(dataset.wordtoix, list(objects["colors"])),
        dataset,
        objects,
        CPU,
        batch_size=8,
        gamma1=5.0,
    )
    colour = result.by_kind["colour"]
    assert colour.words > 10 and colour.hit_rate == 1.0 and colour.chance < 0.3
