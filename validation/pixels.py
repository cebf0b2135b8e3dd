"""Level 1 of `mapper validate`: pixel IoU, precision and recall in true ground area.

**1. Pixel level.** For the final map and each source's mask: TP, FP, FN in true ground m² (each pixel weighted
by `mapper.grid.area.row_pixel_areas`), over the labelled pixels, pooled over blocks (sums of areas, then
IoU = TP / (TP + FP + FN), precision = TP / (TP + FP), recall = TP / (TP + FN)), and per block. **Pixels
without imagery** (255 in a prediction or the final map) **count as not cropland**: they stay in the
comparison, so a map that lost imagery over cropland is charged the omission. This is the convention of
`mapper.decide.pipeline.integrated_iou` (candidate masks are `pred == 1` over all labelled pixels), so the
numbers are comparable; the labelled area without imagery is reported beside each map (`no_imagery_ha`).
A ratio with a zero denominator (no cropland in the truth nor in the map) is None, never 1 or 0.

Each map's pooled IoU carries `ci95`, its 95 % interval by the block bootstrap (validation/intervals.py:
blocks resampled, TP and TP + FP + FN summed again). Beside it, `area_ratio` = (TP + FP) / (TP + FN): the
map's cropland against the true cropland of the same labelled pixels — the like-for-like PCS of the sample
of blocks with truth (what a campaign's acceptance rule compares; mapper.al.verdict) — with its own
bootstrap interval `area_ratio_ci95`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mapper.validation.blocks import Totals

HA = 1e4  # m² per hectare
NO_IMAGERY_RULE = (
    "pixels without imagery (255) count as not cropland, over all labelled pixels "
    "(as mapper.decide.pipeline.integrated_iou)"
)


def ground_area(mask: np.ndarray, row_areas: np.ndarray) -> float:
    """Ground m² of the True pixels: per-row counts dotted with per-row areas (as mapper.decide.truth)."""
    return float(np.count_nonzero(mask, axis=1).astype(np.float64) @ row_areas)


def pixel_counts(pred: np.ndarray, truth: np.ndarray, row_areas: np.ndarray) -> np.ndarray:
    """[TP, FP, FN, labelled, labelled without imagery] in m² of a 0/1/255 map against a 0/1/255 truth, over
    the labelled pixels (truth ≠ 255); the map's 255 (no imagery) counts as not cropland."""
    if pred.shape != truth.shape or len(row_areas) != pred.shape[0]:
        raise ValueError(f"map {pred.shape}, truth {truth.shape} and {len(row_areas)} row areas must be of one grid")
    labelled = truth != 255
    t = labelled & (truth == 1)
    p = labelled & (pred == 1)
    return np.array(
        [
            ground_area(p & t, row_areas),
            ground_area(p & ~t, row_areas),
            ground_area(t & ~p, row_areas),
            ground_area(labelled, row_areas),
            ground_area(labelled & (pred == 255), row_areas),
        ]
    )


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


def pixel_metrics(counts: np.ndarray) -> dict:
    """IoU, precision and recall (None where undefined) and the areas (ha) of summed pixel_counts."""
    tp, fp, fn, labelled, nodata = (float(v) for v in counts)
    return {
        "iou": _ratio(tp, tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "tp_ha": tp / HA,
        "fp_ha": fp / HA,
        "fn_ha": fn / HA,
        "labelled_ha": labelled / HA,
        "no_imagery_ha": nodata / HA,
    }


def pixel_section(overall: Totals, maps: list[str], truth_label: str | None) -> dict:
    """The report's pixel_iou: each map's pooled metrics over the blocks with truth."""
    from mapper.validation.intervals import ci95

    out: dict = {"truth": truth_label, "blocks": overall.truth_blocks, "no_imagery": NO_IMAGERY_RULE, "maps": maps}
    for name in maps:
        tp, fp, fn = (float(v) for v in overall.counts[name][:3])
        out[name] = {
            **pixel_metrics(overall.counts[name]),
            "ci95": ci95(*overall.iou_parts(name)),
            "area_ratio": _ratio(tp + fp, tp + fn),
            "area_ratio_ci95": ci95(*overall.area_ratio_parts(name)),
            "blocks": overall.blocks[name],
        }
    if truth_label is None:
        out["note"] = "no truth: give --labels DIR (labelled blocks), or run on simulated-world sources"
    return out
