"""docs/demo.md's results block is the demo's own output: scripts/demo.py writes it from the
run's metrics files, between its markers, and touches nothing else of the page."""

import importlib.util
import re

from conftest import ROOT

spec = importlib.util.spec_from_file_location("demo", ROOT / "scripts" / "demo.py")
demo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(demo)

DAMSM = {
    "top1_image_to_text": 0.793,
    "top1_text_to_image": 0.811,
    "chance": 1 / 32,
    "word_swap_shape": 0.868,
    "word_swap_colour": 1.0,
    "word_swap_shape_chance": 0.25,
    "word_swap_colour_chance": 0.25,
}
SCORES = {
    "r_precision": {"mean": 0.502, "std": 0.039, "chance": 0.01},
    "localisation": {"generator_stage_2": {"hit_rate": 0.234, "chance": 0.254}},
    "object_match": {"colour": 0.825, "chance_colour": 0.478, "shape": 0.146, "chance_shape": 0.072},
}


def test_the_table_carries_every_number_of_the_run():
    table = demo.results_table(DAMSM, SCORES)
    for text in ("79.3 % / 81.1 %", "86.8 % / 100.0 %", "50.2 % ± 3.9 %", "23.4 %", "82.5 %", "14.6 %", "7.2 %"):
        assert text in table, text
    assert "generator stage 2 word attention" in table


def test_the_block_is_rewritten_and_nothing_else(tmp_path):
    page = tmp_path / "demo.md"
    before, after = "# The demo\n\nprose before\n\n", "\n\nprose after\n"
    page.write_text(f"{before}{demo.BLOCK_BEGIN}\nold numbers\n{demo.BLOCK_END}{after}")
    demo.rewrite_block(page, "new numbers")
    assert page.read_text() == f"{before}{demo.BLOCK_BEGIN}\nnew numbers\n{demo.BLOCK_END}{after}"


def test_the_page_has_one_block_and_the_readme_no_numbers_of_its_own():
    text = (ROOT / "docs" / "demo.md").read_text()
    assert text.count(demo.BLOCK_BEGIN) == 1 and text.count(demo.BLOCK_END) == 1
    # README links the block instead of quoting numbers that would go stale
    assert not re.search(r"\d %", (ROOT / "README.md").read_text())
