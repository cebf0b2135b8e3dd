"""How many validation blocks a decision needs at the spread seen so far (`mapper al init`, a campaign round's
validate step and `mapper al status`).

A value v measured on n blocks with a 95 % interval of half-width h (validation/intervals.py, or the ratio
estimator's for a PCS estimate) is told apart from its threshold t when h ≤ |v − t|. The half-width of a
pooled ratio shrinks as 1/√n, so at the spread seen a sample of

    n_needed = ceil(n · (h / m)²),    m = max(|v − t|, 0.02)

blocks brings it down to the margin m (with h = 1.96 · se this is the textbook n · (1.96 · se / m)²). The
floor of ±0.02 keeps a value sitting on its threshold from asking for an unbounded sample: it is the
precision a decision at the threshold is asked for.

A sample is **too small to decide** when it has fewer than 16 blocks (below that the bootstrap interval is
itself unreliable, and one block moves a rate by more than 6 %), or when an interval straddles its
threshold (low < t < high): the warning names the blocks needed. Before any validation (`mapper al init`)
nothing is known of the spread, so only the count is checked.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

MIN_DECISION_BLOCKS = 16
MARGIN_FLOOR = 0.02
_LABELS = {"iou": "IoU", "semantic_correctness": "semantic correctness", "pcs": "PCS"}


def blocks_needed(n: int, value: float, ci, threshold: float) -> int | None:
    """Blocks that bring the interval's half-width down to the distance from the threshold (see the module
    docstring); None without an interval or blocks."""
    if not ci or n < 1 or value is None or ci[0] is None or ci[1] is None:
        return None
    half = (float(ci[1]) - float(ci[0])) / 2
    margin = max(abs(float(value) - float(threshold)), MARGIN_FLOOR)
    return max(int(n), math.ceil(n * (half / margin) ** 2))


def straddles(ci, threshold: float) -> bool:
    """The interval holds the threshold inside it: the sample cannot say on which side the value lies."""
    return bool(ci) and ci[0] is not None and ci[1] is not None and ci[0] < threshold < ci[1]


def province_warnings(name: str, numbers: Mapping, thresholds: Mapping[str, float], unit: str = "blocks") -> list[str]:
    """The warnings of one province's numbers ({criterion, criterion_ci95, blocks}) against the thresholds;
    `unit` names what was validated ("chips" in a campaign over chips, where a chip counts as a block)."""
    n = int(numbers.get("blocks") or 0)
    out = []
    if n < MIN_DECISION_BLOCKS:
        out.append(f"{name}: {n} validation {unit[:-1]}(s), fewer than {MIN_DECISION_BLOCKS}: too few to decide on")
    for key, label in _LABELS.items():
        value, ci, threshold = numbers.get(key), numbers.get(f"{key}_ci95"), float(thresholds[key])
        if value is None or not straddles(ci, threshold):
            continue
        needed = blocks_needed(n, value, ci, threshold)
        out.append(f"{name}: {label} {value:.3f} (95 % CI {ci[0]:.3f}-{ci[1]:.3f}) straddles {threshold:.2f}: "
                   f"about {needed} validation {unit} would decide it at this spread")  # fmt: skip
    return out


def campaign_warnings(provinces: Mapping[str, Mapping], thresholds: Mapping[str, float],
                      unit: str = "blocks") -> dict[str, list[str]]:  # fmt: skip
    """{province: warnings} of a round's numbers per province (provinces without a warning left out)."""
    out = {name: province_warnings(name, p, thresholds, unit) for name, p in provinces.items()}
    return {name: w for name, w in out.items() if w}


def init_warnings(validation: Iterable[str], province_of: Mapping[str, str], provinces: Iterable[str],
                  unit: str = "blocks") -> list[str]:  # fmt: skip
    """Before any validation: the provinces whose share of the validation sample is under 16 blocks (`unit`:
    what the sample holds, "chips" in a chip campaign)."""
    counts: dict[str, int] = {}
    for block in validation:
        counts[province_of.get(block)] = counts.get(province_of.get(block), 0) + 1
    return [
        f"validation sample: {p} has {counts.get(p, 0)} {unit[:-1]}(s), fewer than {MIN_DECISION_BLOCKS}: its stop "
        f"and acceptance decisions will rest on wide intervals; round 0's validation says how many {unit} a decision "
        "needs (`mapper al status`)"
        for p in provinces
        if counts.get(p, 0) < MIN_DECISION_BLOCKS
    ]
