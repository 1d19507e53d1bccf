"""scripts/benchmark.py's statistics on made-up per-round rates (nothing is timed): median
and spread, the A/A band, the verdicts, and the rotated order of the rounds. The expected
values are worked out by hand in the comments."""

import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))

import bench_stats
import benchmark
from bench_stats import REFERENCE, TWIN, aa_band, spread, summarise, verdict


def test_spread_is_median_range_and_quartiles():
    # sorted 1..5: median 3; quartiles by linear interpolation over the data's range
    # (positions 1 and 3 of 0..4): 2 and 4.
    assert spread([3.0, 1.0, 5.0, 2.0, 4.0]) == {"median": 3.0, "min": 1.0, "max": 5.0, "q1": 2.0, "q3": 4.0}
    # even count: the median is the mean of the middle two; one round: everything is it.
    assert spread([1.0, 2.0, 4.0, 10.0])["median"] == 3.0
    assert spread([7.0]) == {"median": 7.0, "min": 7.0, "max": 7.0, "q1": 7.0, "q3": 7.0}


def test_aa_band_is_the_range_of_paired_ratios_holding_one():
    # ratios 1.1/1.0, 1.8/2.0, 0.95/1.0 = 1.1, 0.9, 0.95
    low, high = aa_band([1.0, 2.0, 1.0], [1.1, 1.8, 0.95])
    assert (low, high) == pytest.approx((0.9, 1.1))
    # twin faster in every round (1.05, 1.1): the band still reaches down to 1, no change
    assert aa_band([1.0, 1.0], [1.05, 1.1]) == pytest.approx((1.0, 1.1))
    with pytest.raises(ValueError):
        aa_band([1.0, 1.0], [1.0])


def test_verdict_claims_only_outside_the_band():
    band = (0.9, 1.1)
    assert verdict(1.2, band) == "gain"
    assert verdict(0.85, band) == "loss"
    assert verdict(1.05, band) == "within noise"
    assert verdict(0.95, band) == "within noise"
    assert verdict(1.1, band) == "within noise"  # the edge is noise


def test_summarise_tells_a_gain_from_a_setting_equal_to_the_reference():
    rounds = {
        REFERENCE: [1.00, 1.10, 0.95, 1.05, 1.02],  # median 1.02
        # ratios 1.04, 0.9273, 1.0526, 0.9333, 1.0392: band 0.9273-1.0526
        TWIN: [1.04, 1.02, 1.00, 0.98, 1.06],
        # the same code as the reference, 2 % faster by chance: median 1.04, ratio 1.0196
        "image_cache": [1.06, 1.00, 1.08, 1.04, 0.99],
        "compile": [1.30, 1.25, 1.35, 1.28, 1.32],  # median 1.30, ratio 1.2745
        "channels_last": [0.80, 0.85, 0.78, 0.82, 0.90],  # median 0.82, ratio 0.8039
    }
    out = summarise(rounds)
    assert list(out) == list(rounds)
    assert out[REFERENCE]["ratio"] == 1.0 and out[REFERENCE]["verdict"] == "-"
    assert out[TWIN]["verdict"] == "noise band 0.93-1.05"
    assert out[TWIN]["ratio"] == pytest.approx(1.02 / 1.02)  # twin median 1.02
    assert out["image_cache"]["ratio"] == pytest.approx(1.04 / 1.02)
    assert out["image_cache"]["verdict"] == "within noise"
    assert out["compile"]["ratio"] == pytest.approx(1.30 / 1.02) and out["compile"]["verdict"] == "gain"
    assert out["channels_last"]["ratio"] == pytest.approx(0.82 / 1.02) and out["channels_last"]["verdict"] == "loss"
    assert (out["compile"]["min"], out["compile"]["max"]) == (1.25, 1.35)


class FakeRunner:
    """A setting whose rounds return made-up rates and note when they ran."""

    def __init__(self, name, log):
        self.name, self.log, self.rates = name, log, iter([1.0, 2.0, 3.0])

    def round(self, lead, steps):
        self.log.append((self.name, lead, steps))
        return next(self.rates)


def test_rounds_rotate_so_that_no_setting_is_always_first():
    log = []
    runners = [FakeRunner(n, log) for n in "ABC"]
    rates = benchmark.measure(runners, rounds=3, lead=4, steps=10)
    assert [name for name, _, _ in log] == list("ABCBCACAB")
    assert all(lead == 4 and steps == 10 for _, lead, steps in log)
    assert rates == {"A": [1.0, 2.0, 3.0], "B": [1.0, 2.0, 3.0], "C": [1.0, 2.0, 3.0]}


def test_the_reference_and_its_twin_always_run_first():
    class Args:
        settings = "defaults,no_sync,reference"

    assert benchmark.settings_of(None, Args) == [REFERENCE, TWIN, "defaults", "no_sync"]
    assert bench_stats.TWIN in benchmark.SETTINGS and benchmark.SETTINGS[TWIN] == benchmark.SETTINGS[REFERENCE]
