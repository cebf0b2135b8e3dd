"""A campaign round's numbers, acceptance on three levels judged against the intervals, the stop verdict by the
campaign's rule, and what `mapper al status` shows of them (mapper.al.verdict, mapper.al.status)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
from mapper.validation.intervals import ci95

from mapper.al.campaign import CampaignLayout, Ledger
from mapper.al.status import status_text
from mapper.al.verdict import accept, block_parts, province_numbers, verdicts
from mapper.config.models import AlConfig

CURRENT = {"iou": 0.80, "iou_ci95": [0.76, 0.84], "semantic_correctness": 0.85,
           "semantic_correctness_ci95": [0.80, 0.90], "pcs": 0.92, "pcs_ci95": [0.88, 0.96]}  # fmt: skip


def test_adopted_when_worse_on_no_level_and_better_on_one():
    adopted, why = accept({**CURRENT, "iou": 0.82}, CURRENT, 0.0)
    assert adopted and "IoU 0.8200 vs 0.8000" in why and "better" in why
    assert "semantic correctness 0.8500 vs 0.8500" in why and "PCS 0.9200 vs 0.9200" in why, "each level named"


def test_a_drop_beyond_the_interval_on_any_level_refuses_the_candidate():
    # IoU better, but semantic correctness 0.06 lower: beyond the current's half-width 0.05
    adopted, why = accept({**CURRENT, "iou": 0.86, "semantic_correctness": 0.79}, CURRENT, 0.0)
    assert not adopted and "worse on semantic correctness" in why and "kept" in why
    # a drop within the half-width is the sample's noise: not held against it
    assert accept({**CURRENT, "iou": 0.86, "semantic_correctness": 0.81}, CURRENT, 0.0)[0]
    # the tolerance widens the allowance where it is larger than the interval
    assert accept({**CURRENT, "iou": 0.86, "semantic_correctness": 0.79}, CURRENT, 0.07)[0]


def test_pcs_is_judged_by_its_closeness_to_one():
    over = accept({**CURRENT, "pcs": 1.13}, CURRENT, 0.0)  # |PCS − 1| 0.13 against 0.08: worse beyond 0.04
    assert not over[0] and "worse on PCS" in over[1] and "|PCS − 1| 0.1300 vs 0.0800" in over[1]
    assert accept({**CURRENT, "pcs": 1.03}, CURRENT, 0.0)[0], "closer to 1 from above is better"


def test_not_better_anywhere_keeps_the_models_and_unmeasured_levels():
    adopted, why = accept(dict(CURRENT), CURRENT, 0.0)
    assert not adopted and "better on none" in why
    assert not accept({**CURRENT, "iou": 0.9, "pcs": None}, CURRENT, 0.0)[0], "a level it cannot measure is worse"
    assert accept({"iou": 0.81}, {"iou": 0.80}, 0.0)[0], "levels the models in force lack are not compared"
    assert accept({"iou": 0.7}, {"iou": None}, 0.0)[0], "nothing to compare with: as the first validation"
    assert accept({"iou": 0.7}, None, 0.0) == (True, "the starting models: the first validation")


def _report() -> dict:
    final = {"iou": 0.81, "ci95": [0.78, 0.84], "precision": 0.9, "recall": 0.88, "area_ratio": 0.97,
             "area_ratio_ci95": [0.9, 1.05]}  # fmt: skip
    province = {"province": "Guizhou", "iou": 0.8, "iou_ci95": [0.75, 0.85], "semantic_correctness": 0.9,
                "semantic_correctness_ci95": [0.85, 0.95], "pcs": 0.7, "pcs_ci95": [0.6, 0.8],
                "pcs_ci95_from": "block bootstrap", "blocks_done": 6, "comparison": "same area (world truth)",
                "poor_imagery": {"share": 0.5, "poor": 3, "blocks": 6}}  # fmt: skip
    semantic = {"final": {"rate": 0.9, "ci95": [0.85, 0.95]}}
    return {"pixel_iou": {"final": final, "blocks": 6}, "semantic_correctness": semantic, "provinces": [province]}


def test_the_round_numbers_carry_the_intervals_and_the_share_of_poor_imagery():
    numbers = province_numbers(_report())
    o = numbers["overall"]
    assert o["iou_ci95"] == [0.78, 0.84] and o["semantic_correctness_ci95"] == [0.85, 0.95]
    assert o["pcs"] == 0.97 and o["pcs_ci95"] == [0.9, 1.05], "pooled PCS: mapped / true cropland of the sample"
    p = numbers["provinces"]["Guizhou"]
    assert p["iou_ci95"] == [0.75, 0.85] and p["pcs_ci95"] == [0.6, 0.8] and p["poor_imagery_share"] == 0.5
    assert p["blocks"] == 6 and p["pcs_comparison"] == "same area (world truth)"


def _ledger(tmp_path: Path, extra: int) -> Ledger:
    ledger = Ledger.new(CampaignLayout(tmp_path), {"iqa": "i", "segmentation": "s", "decisions": "d"})
    for k in range(1, extra + 2):
        ledger.rounds.append({"round": k, "done": True, "steps": {"ingest": {"ingested": [f"b{k}"],
                                                                            "provinces": {"Guizhou": 1}}}})  # fmt: skip
    return ledger


def test_verdicts_use_the_campaigns_rule_and_the_intervals(tmp_path):
    assert AlConfig.model_fields["stop_rule"].default == "lower_bound"
    p = {"iou": 0.9, "iou_ci95": [0.84, 0.95], "semantic_correctness": 0.9, "pcs": 0.95}
    ledger = _ledger(tmp_path, 0)
    v = verdicts({"Guizhou": p}, ledger, ["Guizhou"])["Guizhou"]
    assert v["rule"] == "lower_bound" and v["failing"] == ["iou"], "the lower end 0.84 is below 0.85"
    assert "no interval: decided on the point value" in v["criteria"]["pcs"]["reason"]
    assert verdicts({"Guizhou": p}, ledger, ["Guizhou"], rule="point")["Guizhou"]["stop"]


def test_the_waiver_needs_three_extra_rounds_and_poor_imagery(tmp_path):
    short = {"iou": 0.9, "semantic_correctness": 0.9, "pcs": 0.7}
    ledger = _ledger(tmp_path, 3)
    clear = verdicts({"Guizhou": {**short, "poor_imagery_share": 0.1}}, ledger, ["Guizhou"])["Guizhou"]
    assert not clear["stop"] and clear["failing"] == ["pcs"]
    cloudy = verdicts({"Guizhou": {**short, "poor_imagery_share": 0.6}}, ledger, ["Guizhou"])["Guizhou"]
    assert cloudy["stop"] and cloudy["waived"] == ["pcs"]
    unknown = verdicts({"Guizhou": short}, ledger, ["Guizhou"])["Guizhou"]
    assert not unknown["stop"] and "unknown" in unknown["criteria"]["pcs"]["reason"]


def test_status_shows_the_intervals_the_rule_and_the_sample_warnings(tmp_path):
    ledger = _ledger(tmp_path, 0)
    numbers = province_numbers(_report())
    warnings = {"Guizhou": ["Guizhou: 6 validation block(s), fewer than 16: too few to decide on"]}
    ledger.rounds.append({"round": 2, "done": True, "steps": {"validate": {
        "adopted": True, **numbers, "verdicts": verdicts(numbers["provinces"], ledger, ["Guizhou"]),
        "sample_warnings": warnings}}})  # fmt: skip
    c = SimpleNamespace(ledger=ledger, layout=CampaignLayout(tmp_path), al=AlConfig(),
                        identity={"name": "t", "provinces": ["Guizhou"], "strategy": "combined", "round_blocks": 2})
    text = status_text(c)
    assert "rule lower_bound" in text and "validation IoU 0.810 (95 % CI 0.780-0.840)" in text
    assert "Guizhou: IoU 0.800 (95 % CI 0.750-0.850)" in text and "PCS 0.700 (95 % CI 0.600-0.800)" in text
    assert "    warning: Guizhou: 6 validation block(s)" in text
    fresh = SimpleNamespace(**{**vars(c), "ledger": Ledger.new(CampaignLayout(tmp_path), {}),
                               "identity": {**c.identity, "sample_warnings": ["validation sample: Guizhou has 6"]}})
    assert "warning: validation sample: Guizhou has 6" in status_text(fresh)


# ---------------------------------------------------------------------------------------------- paired acceptance
def _parts(iou_per_block, rng_seed: int = 0) -> dict:
    """Per-block parts of 16 blocks of very different size and difficulty, each block's IoU as given."""
    rng = np.random.default_rng(rng_seed)
    union = rng.uniform(5, 200, len(iou_per_block))  # ha: small and large blocks
    tp = np.asarray(iou_per_block) * union
    fp = fn = (union - tp) / 2
    return {"ids": [f"b{i}" for i in range(len(union))], "tp": tp.tolist(), "fp": fp.tolist(), "fn": fn.tolist(),
            "correct": [1.0] * len(union)}  # fmt: skip


def _numbers(parts: dict) -> dict:
    tp, fp, fn = (np.asarray(parts[k]) for k in ("tp", "fp", "fn"))
    return {"iou": float(tp.sum() / (tp + fp + fn).sum()), "iou_ci95": ci95(tp, tp + fp + fn),
            "semantic_correctness": 1.0, "semantic_correctness_ci95": [1.0, 1.0],
            "pcs": float((tp + fp).sum() / (tp + fn).sum()), "pcs_ci95": ci95(tp + fp, tp + fn), "per_block": parts}


def test_a_consistent_drop_within_the_unpaired_interval_is_refused_when_paired():
    easy_and_hard = np.random.default_rng(1).uniform(0.3, 0.95, 16)  # the blocks' spread dwarfs the models' gap
    current = _numbers(_parts(easy_and_hard))
    candidate = _numbers(_parts(easy_and_hard - 0.05))  # 0.05 worse on every block
    drop = current["iou"] - candidate["iou"]
    unpaired = (current["iou_ci95"][1] - current["iou_ci95"][0]) / 2
    assert drop < unpaired, "the test's premise: the unpaired rule would let this drop through"
    without_parts = {k: v for k, v in candidate.items() if k != "per_block"}
    adopted, why = accept({**candidate, "pcs": current["pcs"]}, current, 0.0)
    assert not adopted and "worse on IoU" in why and "(paired)" in why
    # the same drop judged without the blocks' parts falls back to the current's interval: within it
    old_rule = accept(without_parts, {k: v for k, v in current.items() if k != "per_block"}, 0.0)
    assert "worse on IoU" not in old_rule[1] and "the current's interval" in old_rule[1]


def test_a_consistent_gain_is_adopted_and_blocks_are_matched_by_id():
    base = np.random.default_rng(2).uniform(0.3, 0.9, 16)
    current = _numbers(_parts(base))
    better = _parts(base + 0.03)
    order = np.random.default_rng(3).permutation(16)  # the candidate's run lists its blocks in another order
    shuffled = {k: [v[i] for i in order] for k, v in better.items()}
    adopted, why = accept({**_numbers(shuffled), "pcs": current["pcs"]}, current, 0.0)
    assert adopted and "IoU" in why and "better" in why


def test_block_parts_of_a_validation_report():
    blocks = [{"block_id": "a", "truth": True, "maps": {"final": {"tp_ha": 2.0, "fp_ha": 1.0, "fn_ha": 0.5,
                                                                   "truth_class": "TP"}}},
              {"block_id": "b", "truth": True, "maps": {"final": {"tp_ha": 0.0, "fp_ha": 3.0, "fn_ha": 0.0,
                                                                   "truth_class": "FP"}}},
              {"block_id": "c", "truth": False, "maps": {"final": {}}}]  # fmt: skip
    parts = block_parts({"blocks": blocks})
    assert parts == {"ids": ["a", "b"], "tp": [2.0, 0.0], "fp": [1.0, 3.0], "fn": [0.5, 0.0], "correct": [1.0, 0.0]}
    assert block_parts({"blocks": [{"block_id": "a", "truth": True, "maps": {"final": {"iou": 0.5}}}]}) is None
