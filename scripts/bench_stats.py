"""How scripts/benchmark.py compares settings: the first step's tensors (``gradients``,
``max_relative``), and the statistics of its interleaved rounds: each setting's steps/s of
every round -> its median and spread, its ratio to the reference round by round, and a
verdict that claims a gain or a loss only outside the A/A band.

Ratios are paired by round: in round r a setting's rate over the reference's, setting[r] /
reference[r], measured minutes apart at most, so that the load of the machine in that round
cancels. (A ratio of the two medians does not: they may come from rounds of other loads, and
on a crowded machine it read 1.34 for the defaults beside 0.95 for the very same
configuration under another name.) A setting's ratio is the median of its paired ratios.

The A/A band: the reference is built twice, as two separate instances (``reference`` and
``reference (A/A)``) that run the same code on the same data in the same rounds; the range
of the twin's paired ratios (widened to hold 1, no change) is what noise alone gives between
two identical settings. A gain is claimed only where three quarters of a setting's paired
ratios (its lower quartile) lie above the band, a loss only where three quarters (its upper
quartile) lie below it; "within noise" otherwise. With no difference at all, 7 rounds and
independent noise of each step, the quartile rule claims something of 0.1 % of settings, a
median beyond the band 2.7 % (a simulation of log-normal round loads and step noise).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

REFERENCE = "reference"
TWIN = "reference (A/A)"


def gradients(nets: dict) -> dict:
    """``grad/<net>/<parameter>`` -> a copy of its gradient, for each named network's
    parameters that have one."""
    return {
        f"grad/{n}/{k}": p.grad.detach().clone()
        for n, net in nets.items()
        for k, p in net.named_parameters()
        if p.grad is not None
    }


def max_relative(a: dict, b: dict) -> float:
    """max over the tensors named in both of max |a - b| / max |b| (nan if none is)."""
    common = a.keys() & b.keys()
    if not common:
        return math.nan
    worst = 0.0
    for name in common:
        scale = b[name].abs().max().item()
        if scale:
            worst = max(worst, (a[name].float() - b[name].float()).abs().max().item() / scale)
    return worst


def spread(rates: Sequence[float]) -> dict[str, float]:
    """median, min, max and quartiles (the 'inclusive' method: of the data's own range) of
    one setting's per-round rates."""
    if not rates:
        raise ValueError("no rounds")
    q1, _, q3 = statistics.quantiles(rates, n=4, method="inclusive") if len(rates) > 1 else (rates[0],) * 3
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates), "q1": q1, "q3": q3}


def paired(rates: Sequence[float], reference: Sequence[float]) -> list[float]:
    """rates[r] / reference[r] for every round r."""
    if len(rates) != len(reference) or not reference:
        raise ValueError("a setting and the reference need the same rounds")
    return [x / r for x, r in zip(rates, reference, strict=True)]


def aa_band(reference: Sequence[float], twin: Sequence[float]) -> tuple[float, float]:
    """(low, high): the range of the twin's paired ratios, widened to hold 1."""
    ratios = paired(twin, reference)
    return min(*ratios, 1.0), max(*ratios, 1.0)


def verdict(q1: float, q3: float, band: tuple[float, float]) -> str:
    """From the quartiles of a setting's paired ratios: 'gain' where the lower one lies
    above the band, 'loss' where the upper one lies below it, else 'within noise' (edges
    included)."""
    low, high = band
    if q1 > high:
        return "gain"
    if q3 < low:
        return "loss"
    return "within noise"


def summarise(rounds: dict[str, Sequence[float]]) -> dict[str, dict]:
    """Per setting (in ``rounds``' order): the spread of its steps/s, ``ratio`` (the median
    of its paired ratios), ``ratio_q1`` and ``ratio_q3`` (their quartiles) and ``verdict``.
    ``rounds`` maps each setting to its steps/s of every round and holds REFERENCE and TWIN;
    the reference's verdict is '-', the twin's names the band."""
    band = aa_band(rounds[REFERENCE], rounds[TWIN])
    out = {}
    for name, rates in rounds.items():
        stats = spread(rates)
        ratios = spread(paired(rates, rounds[REFERENCE]))
        stats.update(ratio=ratios["median"], ratio_q1=ratios["q1"], ratio_q3=ratios["q3"])
        if name == REFERENCE:
            stats["verdict"] = "-"
        elif name == TWIN:
            stats["verdict"] = f"noise band {band[0]:.2f}-{band[1]:.2f}"
        else:
            stats["verdict"] = verdict(ratios["q1"], ratios["q3"], band)
        out[name] = stats
    return out
