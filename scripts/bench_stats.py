"""How scripts/benchmark.py compares settings: the first step's tensors (``gradients``,
``max_relative``), and the statistics of its interleaved rounds: each setting's steps/s of
every round -> its median and spread, its ratio to the reference's median, and a verdict
that claims a gain or a loss only outside the A/A band.

The A/A band: the reference is built twice, as two separate instances (``reference`` and
``reference (A/A)``) that run the same code on the same data in the same rounds. In each
round r the twin's rate over the reference's, twin[r] / reference[r], is what noise alone
gives between two identical settings measured side by side; the band is the range of those
per-round ratios (and 1, no change, which it must hold). A setting's ratio (its median over
the reference's median) is a claim only outside the band. The band is of single-round
ratios while the claim is of a ratio of medians, which varies less: the test is the
cautious one.
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


def aa_band(reference: Sequence[float], twin: Sequence[float]) -> tuple[float, float]:
    """(low, high): the range of the per-round ratios twin[r] / reference[r], widened to hold 1."""
    if len(reference) != len(twin) or not reference:
        raise ValueError("the reference and its A/A twin need the same rounds")
    ratios = [t / r for t, r in zip(twin, reference, strict=True)]
    return min(*ratios, 1.0), max(*ratios, 1.0)


def verdict(ratio: float, band: tuple[float, float]) -> str:
    """'gain' above the band, 'loss' below it, 'within noise' inside it (edges included)."""
    low, high = band
    if ratio > high:
        return "gain"
    if ratio < low:
        return "loss"
    return "within noise"


def summarise(rounds: dict[str, Sequence[float]]) -> dict[str, dict]:
    """Per setting (in ``rounds``' order): its spread, ``ratio`` (its median over the
    reference's) and ``verdict``. ``rounds`` maps each setting to its steps/s of every
    round and holds REFERENCE and TWIN; the reference's verdict is '-', the twin's names
    the band."""
    band = aa_band(rounds[REFERENCE], rounds[TWIN])
    base = statistics.median(rounds[REFERENCE])
    out = {}
    for name, rates in rounds.items():
        stats = spread(rates)
        stats["ratio"] = stats["median"] / base
        if name == REFERENCE:
            stats["verdict"] = "-"
        elif name == TWIN:
            stats["verdict"] = f"noise band {band[0]:.2f}-{band[1]:.2f}"
        else:
            stats["verdict"] = verdict(stats["ratio"], band)
        out[name] = stats
    return out
