"""The 95 % intervals of `mapper validate` (a block bootstrap of pooled ratios) and the sample-size warnings
built on them (mapper.validation.intervals, mapper.validation.sample_size)."""

from __future__ import annotations

import numpy as np
import pytest
from mapper.validation.intervals import RESAMPLES, bootstrap_ratio, ci95, format_ci, half_width
from mapper.validation.provinces import province_comparison
from mapper.validation.sample_size import (
    MIN_DECISION_BLOCKS,
    blocks_needed,
    campaign_warnings,
    init_warnings,
    province_warnings,
)
from mapper.validation.semantic import correct_ci95
from mapper.validation.stop import STOP_THRESHOLDS


def _blocks(n: int, seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Per-block TP and TP + FP + FN of n blocks of varied size and quality."""
    rng = np.random.default_rng(seed)
    den = rng.uniform(1e4, 3e5, n)
    return den * rng.beta(8, 2, n), den


def test_the_bootstrap_matches_a_direct_computation():
    num, den = _blocks(30)
    got = bootstrap_ratio(num, den)
    rng = np.random.default_rng(0)  # the module's seed: the same resamples, one by one
    ratios = []
    for _ in range(RESAMPLES):
        idx = rng.integers(0, 30, size=30)
        ratios.append(num[idx].sum() / den[idx].sum())
    low, high = np.percentile(ratios, [2.5, 97.5])
    assert got.low == pytest.approx(low, rel=1e-12) and got.high == pytest.approx(high, rel=1e-12)
    assert got.se == pytest.approx(np.std(ratios, ddof=1), rel=1e-9) and got.n == 30
    assert got.low < num.sum() / den.sum() < got.high
    assert ci95(num, den) == got.as_list() and half_width(got.as_list()) == pytest.approx(got.half_width)


def test_the_bootstrap_is_reproducible_and_chunked_draws_give_the_same_kind_of_interval():
    num, den = _blocks(3000, seed=5)
    first, again = bootstrap_ratio(num, den), bootstrap_ratio(num, den)
    assert first == again, "seeded: the report is reproducible"
    other = bootstrap_ratio(num, den, seed=1)
    assert other != first and abs(other.low - first.low) < 0.005  # another seed: another draw, the same spread
    # with 3000 blocks the resamples come in chunks; the spread agrees with the ratio's delta-method se
    r = num.sum() / den.sum()
    delta_se = np.sqrt(np.sum((num - r * den) ** 2)) / den.sum()
    assert first.se == pytest.approx(delta_se, rel=0.1)


def test_no_interval_from_one_block_and_resamples_without_denominator_are_left_out():
    assert bootstrap_ratio([1.0], [2.0]) is None and ci95([], []) is None
    assert bootstrap_ratio([0.0, 0.0], [0.0, 0.0]) is None
    interval = bootstrap_ratio([0.0, 3.0, 0.0], [0.0, 4.0, 0.0])  # only the second block has cropland
    assert interval.low == interval.high == pytest.approx(0.75)
    with pytest.raises(ValueError, match="1-D"):
        bootstrap_ratio([1.0, 2.0], [1.0])


def test_semantic_correctness_interval_is_that_of_a_share_of_blocks():
    classes = ["TP"] * 18 + ["FP"] * 2 + ["TN"] * 10 + ["Noise"] * 4
    low, high = correct_ci95(classes)
    assert low < 28 / 34 < high and low > 0.65 and high <= 1.0
    assert correct_ci95(["TP"]) is None and correct_ci95(["TP", "TN", "TP"]) == [1.0, 1.0]


def test_format_ci():
    assert format_ci(0.91234, [0.89, 0.93]) == "0.912 (95 % CI 0.890-0.930)"
    assert format_ci(0.5, None) == "0.500" and format_ci(None, [0.1, 0.2]) == "-"


def test_like_for_like_pcs_is_bootstrapped_by_blocks_and_a_census_has_no_interval():
    rng = np.random.default_rng(7)
    x = rng.uniform(2e7, 2.8e7, 12)
    truth = x * rng.uniform(0.05, 0.2, 12)
    y = truth * rng.uniform(0.8, 1.1, 12)
    common = {"mapped_m2": y.sum(), "land_m2": x.sum(), "sample_y": y, "sample_x": x, "province_area_m2": 3e9,
              "blocks_in_province": 120, "statistic": None, "same_area_truth_m2": truth.sum(),
              "truth_label": "world", "sample_truth": truth}  # fmt: skip
    same = province_comparison(**common, complete=False, spread_sample=True)
    assert same["comparison"] == "same area (world truth)" and same["pcs"] == pytest.approx(y.sum() / truth.sum())
    assert same["pcs_ci95"] == ci95(y, truth) and same["pcs_ci95_from"].startswith("block bootstrap")
    census = province_comparison(**common, complete=True, spread_sample=False)
    assert census["comparison"] == "whole province" and census["pcs_ci95"] is None
    assert census["pcs_ci95_from"].startswith("none: the whole province was mapped")


# ---------------------------------------------------------------------------------------------- sample size
def test_blocks_needed_scales_the_sample_by_the_squared_ratio_of_half_width_to_margin():
    # half-width 0.05 at 10 blocks, the value 0.025 from the threshold: (0.05 / 0.025)² × 10 = 40 blocks
    assert blocks_needed(10, 0.875, [0.825, 0.925], 0.85) == 40
    # right on the threshold: the margin is the ±0.02 floor, (0.05 / 0.02)² × 10 = 62.5 -> 63
    assert blocks_needed(10, 0.85, [0.80, 0.90], 0.85) == 63
    assert blocks_needed(10, 0.95, [0.94, 0.96], 0.85) == 10  # already decided: no fewer than it has
    assert blocks_needed(10, 0.9, None, 0.85) is None


def test_warnings_when_the_sample_is_too_small_or_an_interval_straddles_a_threshold():
    small = {"iou": 0.9, "iou_ci95": [0.86, 0.93], "blocks": 8}
    (line,) = province_warnings("Hunan", small, STOP_THRESHOLDS)
    assert f"8 validation block(s), fewer than {MIN_DECISION_BLOCKS}" in line
    straddling = {"iou": 0.87, "iou_ci95": [0.83, 0.91], "semantic_correctness": 0.9, "blocks": 40,
                  "semantic_correctness_ci95": [0.87, 0.95], "pcs": 0.9, "pcs_ci95": [0.78, 1.02]}  # fmt: skip
    lines = province_warnings("Hunan", straddling, STOP_THRESHOLDS)
    assert len(lines) == 2 and "IoU 0.870 (95 % CI 0.830-0.910) straddles 0.85: about 160" in lines[0]
    assert "PCS 0.900" in lines[1]
    clear = {"iou": 0.95, "iou_ci95": [0.93, 0.97], "blocks": 40}
    assert campaign_warnings({"Hunan": clear, "Hubei": small}, STOP_THRESHOLDS) == {
        "Hubei": province_warnings("Hubei", small, STOP_THRESHOLDS)
    }
    chips = campaign_warnings({"gid": {**straddling, "blocks": 8}}, STOP_THRESHOLDS, unit="chips")["gid"]
    assert "8 validation chip(s)" in chips[0] and "validation chips would decide it" in chips[1], "a chip campaign"
    notes = init_warnings(["a", "b", "c"], {"a": "Hunan", "b": "Hunan", "c": "Hubei"}, ["Hunan", "Hubei", "Anhui"])
    assert len(notes) == 3 and "Hunan has 2 block(s)" in notes[0] and "Anhui has 0 block(s)" in notes[2]


def test_paired_gain_interval_matches_a_plain_loop_and_is_narrower_than_unpaired():
    from mapper.validation.intervals import RESAMPLES, bootstrap_ratio, paired_gain_interval

    rng = np.random.default_rng(5)
    den = rng.uniform(1, 100, 30)
    old = den * rng.uniform(0.2, 0.9, 30)
    new = np.minimum(old + 0.04 * den, den)
    got = paired_gain_interval((old, den), (new, den))
    draws = np.random.default_rng(0)  # the same seed, one resample at a time
    gains = []
    for _ in range(RESAMPLES):
        i = draws.integers(0, 30, size=30)
        gains.append(new[i].sum() / den[i].sum() - old[i].sum() / den[i].sum())
    assert got.low == pytest.approx(np.percentile(gains, 2.5)) and got.high == pytest.approx(np.percentile(gains, 97.5))
    assert got.low > 0, "a gain on every block is a gain beyond the noise"
    unpaired = bootstrap_ratio(old, den)
    assert got.half_width < unpaired.half_width / 3


def test_paired_gain_of_pcs_is_closeness_to_one():
    from mapper.validation.intervals import paired_gain_interval

    true = np.array([10.0, 20.0, 30.0, 40.0])
    over = paired_gain_interval((true * 1.2, true), (true * 1.05, true), closeness_to_one=True)
    assert over.low == pytest.approx(0.15) and over.high == pytest.approx(0.15), "0.2 → 0.05 from 1 on every block"
    assert paired_gain_interval((true[:1], true[:1]), (true[:1], true[:1])) is None, "one block: no interval"
    with pytest.raises(ValueError):
        paired_gain_interval((true, true), (true[:3], true[:3]))
