"""Level 2 of `mapper validate`: the semantic correctness rate of each map, block by block.

**2. Block level.** The semantic correctness rate of a map is the share of blocks judged TP or TN, per
source and for the final map (the integration's result judged as one more "source"). From the truth where
the run has truth (`mapper.decide.truth.correctness_class` with the true coverage type of the source; for the
final map the coverage of the source the decision kept, and for Neither / Merge an unusable coverage only when
both images are unusable); otherwise from the run's correctness model (`a_pred_semantic`, `b_pred_semantic`;
for the final map: Only A / Only B take that source's predicted class, Merge is correct when both sources are
predicted correct and otherwise takes the first incorrect class, Neither is TN unless a source was predicted
TP — an empty map then misses the cropland that source found). Each rate says which (`from`). With truth,
the model's rate on the same blocks and its agreement with the truth are given too (the paper's 94.3 %).
Each map's rate carries `ci95`, its 95 % interval by the block bootstrap (validation/intervals.py: blocks
resampled, correct blocks over blocks recomputed) — from the truth, or from the model's classes when that is
what the rate is (then the interval is the sampling spread of the model's judgement, not of the truth).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mapper.validation.run_data import FINAL

if TYPE_CHECKING:
    from mapper.validation.blocks import Totals

CORRECT_CLASSES = ("TP", "TN")


def final_coverage(decision: str | None, coverage: list[str | None]) -> str | None:
    """The coverage type to judge the final map's class with: that of the source the decision kept; for
    Neither and Merge an unusable one only when every source's image is unusable (else None = usable)."""
    from mapper.decide.truth import ARTIFACT_COVERAGE

    if decision == "Only A" and coverage:
        return coverage[0]
    if decision == "Only B" and len(coverage) > 1:
        return coverage[1]
    if coverage and all(c in ARTIFACT_COVERAGE for c in coverage):
        return coverage[0]
    return None


def final_model_class(decision: str | None, predicted: list[str | None]) -> str | None:
    """The final map's class as the run's correctness model sees it (see the module docstring)."""
    if decision is None or not predicted or any(p is None for p in predicted):
        return None
    if decision == "Only A":
        return predicted[0]
    if decision == "Only B":
        return predicted[1] if len(predicted) > 1 else None
    if decision == "Merge":
        wrong = [p for p in predicted if p not in CORRECT_CLASSES]
        if wrong:
            return wrong[0]
        return "TP" if "TP" in predicted else "TN"
    return "FP" if "TP" in predicted else "TN"  # Neither: an empty map


def correct_rate(classes: list[str]) -> float | None:
    """The share of blocks judged TP or TN; None without blocks."""
    return sum(c in CORRECT_CLASSES for c in classes) / len(classes) if classes else None


def correct_ci95(classes: list[str]) -> list[float] | None:
    """The block-bootstrap 95 % interval of correct_rate (None with fewer than 2 blocks)."""
    from mapper.validation.intervals import ci95

    correct = [1.0 if c in CORRECT_CLASSES else 0.0 for c in classes]
    return ci95(correct, [1.0] * len(classes))


def class_counts(classes: list[str]) -> dict[str, int]:
    from mapper.decide.truth import CORRECTNESS_CLASSES

    return {c: classes.count(c) for c in CORRECTNESS_CLASSES}


def semantic_section(overall: Totals, maps: list[str], truth_label: str | None) -> dict:
    """The report's semantic_correctness: each map's rate from the truth when any block has truth, else from
    the run's correctness model; then the sources' blocks pooled."""
    from_truth = overall.truth_blocks > 0
    out: dict = {"from": "truth" if from_truth else "model", "maps": maps}
    if from_truth:
        out["truth"] = truth_label
    pooled: list[str] = []
    for name in maps:
        if from_truth:
            classes = overall.truth_classes[name]
            entry = _rate_from_truth(classes, overall.model_on_truth[name])
        else:
            classes = overall.model_classes[name]
            entry = {
                "rate": correct_rate(classes),
                "ci95": correct_ci95(classes),
                "n": len(classes),
                "from": "model",
                "classes": class_counts(classes),
            }
        out[name] = entry
        if name != FINAL:
            pooled += classes
    out["sources_pooled"] = {"rate": correct_rate(pooled), "n": len(pooled), "from": out["from"]}
    return out


def _rate_from_truth(classes: list[str], model: list[str]) -> dict:
    """A map's rate from its true classes, with the model's rate and agreement when it judged every block."""
    return {
        "rate": correct_rate(classes),
        "ci95": correct_ci95(classes),
        "n": len(classes),
        "from": "truth",
        "classes": class_counts(classes),
        "model_rate": correct_rate(model) if len(model) == len(classes) else None,
        "model_agreement": (
            sum(a == b for a, b in zip(model, classes, strict=True)) / len(classes)
            if classes and len(model) == len(classes)
            else None
        ),
    }
