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


def test_verdict_claims_only_where_a_quartile_is_outside_the_band():
    band = (0.9, 1.1)
    assert verdict(1.15, 1.3, band) == "gain"
    assert verdict(0.7, 0.85, band) == "loss"
    assert verdict(1.05, 1.3, band) == "within noise"  # a quarter of the rounds inside
    assert verdict(0.7, 0.95, band) == "within noise"
    assert verdict(1.1, 1.2, band) == "within noise"  # the edge is noise


def test_summarise_pairs_rounds_and_claims_only_beyond_the_twins_band():
    # The reference's rounds see two loads (1 and 2 steps/s). Five rounds: the inclusive
    # quartiles of 5 sorted ratios are the 2nd and the 4th.
    rounds = {
        REFERENCE: [1.0, 1.0, 1.0, 2.0, 2.0],  # median 1.0
        TWIN: [1.0, 1.1, 0.9, 2.0, 2.0],  # ratios 1, 1.1, 0.9, 1, 1: band 0.9-1.1
        # the same as the reference, but its third round ran at the other load: ratios
        # 1, 1, 2, 1, 1 (median 1, quartiles 1-1), while its median over the reference's is 2
        "same_code": [1.0, 1.0, 2.0, 2.0, 2.0],
        "faster": [1.3, 1.3, 1.2, 2.6, 2.8],  # ratios 1.3, 1.3, 1.2, 1.3, 1.4: q1 1.3
        "slower": [0.8, 0.7, 0.8, 1.6, 1.8],  # ratios .8, .7, .8, .8, .9: q3 0.8
        "one_bad_round": [0.5, 1.3, 1.3, 2.6, 2.6],  # ratios .5, 1.3, 1.3, 1.3, 1.3: q1 1.3
        "median_only": [1.0, 1.2, 1.2, 2.4, 2.0],  # ratios 1, 1.2, 1.2, 1.2, 1: median 1.2, q1 1.0
    }
    out = summarise(rounds)
    assert list(out) == list(rounds)
    assert out[REFERENCE]["ratio"] == 1.0 and out[REFERENCE]["verdict"] == "-"
    assert out[TWIN]["verdict"] == "noise band 0.90-1.10"
    assert out["same_code"]["median"] == 2.0 and out["same_code"]["ratio"] == 1.0
    assert out["same_code"]["verdict"] == "within noise"
    assert out["faster"]["ratio"] == pytest.approx(1.3) and out["faster"]["ratio_q1"] == pytest.approx(1.3)
    assert out["faster"]["verdict"] == "gain"
    assert out["slower"]["ratio_q3"] == pytest.approx(0.8) and out["slower"]["verdict"] == "loss"
    assert out["one_bad_round"]["verdict"] == "gain"
    assert out["median_only"]["ratio"] == pytest.approx(1.2) and out["median_only"]["verdict"] == "within noise"
    assert (out["faster"]["min"], out["faster"]["max"]) == (1.2, 2.8)


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
