"""A round's numbers, the acceptance rule and the stop verdict per province.

- **Numbers** come from the three-level validation of the validation sample (mapper.validation): the final
  map's pixel IoU and semantic correctness, pooled and per province, and PCS per province (on a sample: the
  mapped cropland against the truth of the same blocks — the like-for-like comparison `mapper validate`
  makes; with labels and statistics for real imagery, as it does there).
- **Acceptance**: a candidate replaces the models in force only when its pooled final-map IoU on the
  validation sample is at least the current one's minus the tolerance (a worse model is never adopted; the
  first validation, of the starting models, is always in force).
- **Stop** per province: the paper's criteria (IoU ≥ 0.85, semantic correctness ≥ 0.85, PCS ≥ 0.80), with the
  exception for persistently cloudy provinces — PCS waived after three extra rounds — counted from the ledger.
"""

from __future__ import annotations

from mapper.validation.stop import STOP_THRESHOLDS, stop_verdict


def province_numbers(report: dict) -> dict:
    """{"overall": {...}, "provinces": {name: {...}}} of a validation report."""
    final = report["pixel_iou"].get("final", {})
    sc = report["semantic_correctness"].get("final", {})
    provinces = {}
    for p in report["provinces"]:
        provinces[p["province"]] = {
            "iou": p.get("iou"), "semantic_correctness": p.get("semantic_correctness"), "pcs": p.get("pcs"),
            "blocks": p.get("blocks_done"), "pcs_comparison": p.get("comparison"),
        }  # fmt: skip
    return {
        "overall": {"iou": final.get("iou"), "precision": final.get("precision"), "recall": final.get("recall"),
                    "semantic_correctness": sc.get("rate"), "blocks": report["pixel_iou"].get("blocks")},
        "provinces": provinces,
    }  # fmt: skip


def accept(candidate: dict, current: dict | None, tolerance: float) -> tuple[bool, str]:
    """(adopt?, why) by the pooled final-map IoU on the validation sample."""
    new = candidate.get("iou")
    if current is None:
        return True, "the starting models: the first validation"
    old = current.get("iou")
    if new is None:
        return False, "the candidate's IoU could not be measured"
    if old is None or new >= old - tolerance - 1e-12:
        return True, f"validation IoU {new:.4f} ≥ {old if old is not None else float('nan'):.4f} − {tolerance:g}"
    return False, f"validation IoU {new:.4f} < {old:.4f} − {tolerance:g}: the models in force are kept"


def verdicts(provinces: dict, ledger, names, thresholds: dict | None = None) -> dict:
    """The stop verdict of every campaign province (unmeasured criteria fail, named); `thresholds` default to
    the paper's."""
    out = {}
    for name in names:
        p = provinces.get(name, {})
        unmeasured = {"iou": "no validation block of the province", "semantic_correctness": "no validation block",
                      "pcs": "no validation block"}  # fmt: skip
        out[name] = stop_verdict(p.get("iou"), p.get("semantic_correctness"), p.get("pcs"), ledger.extra_rounds(name),
                                 thresholds or STOP_THRESHOLDS, unmeasured=unmeasured)  # fmt: skip
    return out
