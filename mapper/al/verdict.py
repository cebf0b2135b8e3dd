"""A round's numbers, the acceptance rule and the stop verdict per province.

- **Numbers** come from the three-level validation of the validation sample (mapper.validation): the final
  map's pixel IoU and semantic correctness, pooled and per province, and PCS per province (on a sample: the
  mapped cropland against the truth of the same blocks — the like-for-like comparison `mapper validate`
  makes; with labels and statistics for real imagery, as it does there), each with its 95 % interval
  (`<name>_ci95`: the block bootstrap, or the ratio estimator's for a PCS estimated against a statistic).
  Pooled, PCS is the final map's cropland over the true cropland of the sample's labelled pixels,
  (TP + FP) / (TP + FN) (`area_ratio` of `mapper validate`): like for like on every block with truth, so
  world and labelled campaigns alike have it. Each province also carries its share of blocks with poor
  imagery (`poor_imagery_share`, from the IQA of the validation run's blocks: the fixed validation sample is
  a random sample of the province), the condition of the waiver for cloudy provinces.
- **Acceptance** (`accept`): the candidate replaces the models in force when it is worse on none of three
  levels — pooled IoU, pooled semantic correctness, and the closeness of pooled PCS to 1 (|PCS − 1|: over-
  and under-mapping both count) — and better on at least one; both models are judged on the same fixed
  validation sample. A level is *worse* when the candidate's value falls below the current's by more than
  max(tolerance, h). h is the half-width of the 95 % interval of the *paired* gain (candidate − current,
  the same blocks resampled for both: mapper.validation.intervals.paired_gain_interval) when both numbers
  carry their blocks' parts (`per_block`), else of the current's own interval: a drop within the sample's
  spread is no evidence against the candidate, and with three levels a strict rule would refuse nearly
  every candidate by noise alone. The paired interval is the right spread: part of a sample's spread is its
  easy and hard blocks, which move both models alike, and what is left is how differently the two models
  fare block by block — the question asked: "worse" is a drop the sample shows beyond its noise. A level is
  *better* when the candidate's value is above the current's: asking for a gain beyond the interval would
  refuse every round's modest gain on a small sample, and the guard against noise is on the worse side. A
  level the models in force have no value for is not compared; one the candidate cannot measure counts as
  worse (an unmeasured IoU refuses it outright). The first validation, of the starting models, is always in
  force.
- **Stop** per province: the paper's criteria (IoU ≥ 0.85, semantic correctness ≥ 0.85, PCS ≥ 0.80) by the
  campaign's al.stop_rule (lower_bound by default: the lower end of each 95 % interval must clear its
  threshold; a number without an interval is taken at its value, said in its reason), with the exception for
  persistently cloudy provinces — PCS waived after three extra rounds, counted from the ledger, in a province
  whose share of poor imagery reaches al.stop.waiver_min_poor_imagery_share (mapper.validation.stop).
"""

from __future__ import annotations

import numpy as np

from mapper.config.models import AlConfig
from mapper.validation.intervals import half_width, paired_gain_interval
from mapper.validation.stop import CRITERIA, STOP_THRESHOLDS, stop_verdict

DEFAULT_STOP_RULE = AlConfig.model_fields["stop_rule"].default
LEVELS = (("iou", "IoU"), ("semantic_correctness", "semantic correctness"), ("pcs", "PCS"))
_PROVINCE_KEYS = ("iou", "iou_ci95", "semantic_correctness", "semantic_correctness_ci95", "pcs", "pcs_ci95",
                  "pcs_ci95_from")  # fmt: skip


def province_numbers(report: dict) -> dict:
    """{"overall": {...}, "provinces": {name: {...}}} of a validation report, with the intervals."""
    final = report["pixel_iou"].get("final", {})
    sc = report["semantic_correctness"].get("final", {})
    provinces = {}
    for p in report["provinces"]:
        provinces[p["province"]] = {
            **{k: p.get(k) for k in _PROVINCE_KEYS}, "blocks": p.get("blocks_done"),
            "pcs_comparison": p.get("comparison"), "poor_imagery_share": (p.get("poor_imagery") or {}).get("share"),
        }  # fmt: skip
    return {
        "overall": {"iou": final.get("iou"), "iou_ci95": final.get("ci95"), "precision": final.get("precision"),
                    "recall": final.get("recall"), "semantic_correctness": sc.get("rate"),
                    "semantic_correctness_ci95": sc.get("ci95"), "pcs": final.get("area_ratio"),
                    "pcs_ci95": final.get("area_ratio_ci95"), "blocks": report["pixel_iou"].get("blocks"),
                    "per_block": block_parts(report)},
        "provinces": provinces,
    }  # fmt: skip


def block_parts(report: dict) -> dict | None:
    """The final map's parts of each block with truth — ids, TP, FP, FN (ha) and 1/0 for a semantically correct
    block — for a paired comparison (accept); None when the report predates the per-block areas."""
    from mapper.validation.semantic import CORRECT_CLASSES

    entries = [(r["block_id"], r["maps"].get("final", {})) for r in report.get("blocks", []) if r.get("truth")]
    entries = [(b, e) for b, e in entries if e.get("tp_ha") is not None and e.get("truth_class")]
    if not entries:
        return None
    areas = {k: [float(e[f"{k}_ha"]) for _, e in entries] for k in ("tp", "fp", "fn")}
    return {"ids": [b for b, _ in entries], **areas,
            "correct": [1.0 if e["truth_class"] in CORRECT_CLASSES else 0.0 for _, e in entries]}  # fmt: skip


def paired_half_widths(candidate: dict, current: dict) -> dict[str, float]:
    """{level: half-width of the paired gain's 95 % interval} over the blocks both numbers have parts for (none
    when either lacks them or fewer than 2 blocks are shared)."""
    new, old = candidate.get("per_block"), current.get("per_block")
    if not new or not old:
        return {}
    shared = sorted(set(new["ids"]) & set(old["ids"]))
    if len(shared) < 2:
        return {}
    before, after = _level_parts(old, shared), _level_parts(new, shared)
    out = {}
    for key in before:
        interval = paired_gain_interval(before[key], after[key], closeness_to_one=key == "pcs")
        if interval is not None:
            out[key] = interval.half_width
    return out


def _level_parts(parts: dict, blocks: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{level: (num, den) per block} of `blocks`, in that order, from a `per_block` dict."""
    at = [{b: i for i, b in enumerate(parts["ids"])}[b] for b in blocks]
    tp, fp, fn, correct = (np.asarray(parts[k], np.float64)[at] for k in ("tp", "fp", "fn", "correct"))
    return {"iou": (tp, tp + fp + fn), "semantic_correctness": (correct, np.ones_like(correct)),
            "pcs": (tp + fp, tp + fn)}  # fmt: skip


def accept(candidate: dict, current: dict | None, tolerance: float) -> tuple[bool, str]:
    """(adopt?, why) by the three levels on the validation sample (see the module docstring); `why` names each
    level's values and judgement."""
    if current is None:
        return True, "the starting models: the first validation"
    if candidate.get("iou") is None:
        return False, "the candidate's IoU could not be measured: the models in force are kept"
    paired = paired_half_widths(candidate, current)
    judged = [(label, *_judge_level(key, label, candidate, current, tolerance, paired.get(key)))
              for key, label in LEVELS]  # fmt: skip
    words = "; ".join(w for _, _, w in judged)
    worse = [label for label, verdict, _ in judged if verdict == "worse"]
    if worse:
        return False, f"{words} — worse on {', '.join(worse)}: the models in force are kept"
    if any(verdict == "better" for _, verdict, _ in judged) or all(v == "not compared" for _, v, _ in judged):
        return True, f"{words} — adopted"
    return False, f"{words} — better on none: the models in force are kept"


def _judge_level(key: str, label: str, candidate: dict, current: dict, tolerance: float,
                 paired: float | None = None) -> tuple[str, str]:  # fmt: skip
    """(worse | better | level | not compared, the words) of one level: the candidate's value against the
    current's, a drop allowed up to max(tolerance, h): h the paired gain's interval half-width where given,
    else the current's interval half-width."""
    new, old = candidate.get(key), current.get(key)
    if old is None:
        return "not compared", f"{label}: the models in force have no value"
    if new is None:
        return "worse", f"{label} not measured (the models in force: {old:.4f}): worse"
    spread = paired if paired is not None else half_width(current.get(f"{key}_ci95"))
    allowed = max(tolerance, spread or 0.0)
    gain = (abs(old - 1) - abs(new - 1)) if key == "pcs" else (new - old)
    verdict = "worse" if gain < -allowed - 1e-12 else ("better" if gain > 1e-12 else "level")
    shown = f"{label} {new:.4f} vs {old:.4f}"
    if key == "pcs":
        shown += f" (|PCS − 1| {abs(new - 1):.4f} vs {abs(old - 1):.4f})"
    words = {"worse": "worse", "better": "better", "level": "no clear change"}[verdict]
    basis = "paired" if paired is not None else "the current's interval"
    return verdict, f"{shown}, a drop up to {allowed:.4f} allowed ({basis}): {words}"


def verdicts(provinces: dict, ledger, names, thresholds: dict | None = None, rule: str = DEFAULT_STOP_RULE) -> dict:
    """The stop verdict of every campaign province by `rule` (unmeasured criteria fail, named), with each
    number's interval and the province's share of poor imagery; `thresholds` default to the paper's."""
    out = {}
    for name in names:
        p = provinces.get(name, {})
        unmeasured = {"iou": "no validation block of the province", "semantic_correctness": "no validation block",
                      "pcs": "no validation block"}  # fmt: skip
        out[name] = stop_verdict(p.get("iou"), p.get("semantic_correctness"), p.get("pcs"), ledger.extra_rounds(name),
                                 thresholds or STOP_THRESHOLDS, unmeasured=unmeasured,
                                 intervals={k: p.get(f"{k}_ci95") for k in CRITERIA}, rule=rule,
                                 poor_imagery_share=p.get("poor_imagery_share"))  # fmt: skip
    return out
