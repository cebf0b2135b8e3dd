"""A segmentation checkpoint's decision threshold, chosen on held-out labelled images.

Mask2Former's cropland probability (mapper.seg.model.cropland_probability) is the share of the cropland masks'
weight: calibrated on the data it learnt from, biased on a domain it saw little of. On the gid15 chips a
real-chip fine-tune gave no true cropland pixel of the validation chips a probability above 0.8, and the
validation chips' best threshold was 0.4, not 0.5 (benchmarks/RESULTS.md).

`calibrate_checkpoint` predicts every held-out image whole, as in production, counts TP/FP/FN at each
threshold of THRESHOLDS (pooled over the images, like `mapper evaluate seg`), takes the one with the highest
pooled IoU (ties: the one nearest 0.5) and records it in the checkpoint's checkpoint.json as `decision`
(threshold, the IoU there and at 0.5, the labels, the images, the grid); from then on the checkpoint's masks —
in `mapper run`, `segment` and `evaluate` — are probability > threshold. The probability band of a prediction
is unchanged.

The labels must be held out from training (the validation split, never the test one): a threshold tuned on
the test set would flatter every number measured there.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mapper.seg.evaluate import prediction_inputs
from mapper.seg.predict import DEFAULT_THRESHOLD
from mapper.seg.samples import SegSample
from mapper.seg.train import iou_counts

THRESHOLDS = tuple(round(0.2 + 0.025 * i, 3) for i in range(25))  # 0.2 … 0.8: outside, a model is broken


def threshold_counts(segmenter, samples: Sequence[SegSample], thresholds: Sequence[float] = THRESHOLDS) -> np.ndarray:
    """(len(thresholds), 4) pooled [tp, fp, fn, tn] of cropland at each threshold over the whole images."""
    held: dict[int, tuple] = {}
    counts = np.zeros((len(thresholds), 4), np.int64)
    for i, result in segmenter.predict(prediction_inputs(samples, held)):
        prob, target = np.nan_to_num(result.probability, nan=0.0), held.pop(i)[1]
        for j, t in enumerate(thresholds):
            counts[j] += iou_counts(prob, target, t)
    return counts


def pooled_iou(counts: np.ndarray) -> np.ndarray:
    """IoU of each row of [tp, fp, fn, tn] counts (NaN where nothing is cropland in truth or prediction)."""
    tp, fp, fn = (counts[:, k].astype(float) for k in range(3))
    union = tp + fp + fn
    return np.divide(tp, union, out=np.full(len(counts), np.nan), where=union > 0)


def choose_threshold(counts: np.ndarray, thresholds: Sequence[float] = THRESHOLDS) -> tuple[float, float]:
    """(threshold, its pooled IoU): the highest IoU, ties to the threshold nearest 0.5."""
    iou = pooled_iou(counts)
    if np.isnan(iou).all():
        raise ValueError("the calibration images hold no cropland, in truth or predicted: label some cropland")
    t = np.asarray(thresholds, float)
    best = np.lexsort((np.abs(t - DEFAULT_THRESHOLD), -np.nan_to_num(iou, nan=-1.0)))[0]
    return float(t[best]), float(iou[best])


def calibrate_checkpoint(directory: Path | str, samples: Sequence[SegSample], labels: Sequence[str],
                         segmenter) -> dict:  # fmt: skip
    """Choose the decision threshold of the checkpoint at `directory` on `samples` (predicted by `segmenter`,
    that checkpoint loaded) and record it in its checkpoint.json; returns the `decision` entry."""
    from mapper.models.checkpoint import update_checkpoint_meta

    if not samples:
        raise ValueError("no labelled image to calibrate on: give the validation labels (--labels)")
    counts = threshold_counts(segmenter, samples)
    threshold, iou = choose_threshold(counts)
    ious = pooled_iou(counts)
    at_default = ious[THRESHOLDS.index(DEFAULT_THRESHOLD)]
    by_threshold = {str(t): None if np.isnan(v) else round(float(v), 4) for t, v in zip(THRESHOLDS, ious, strict=True)}
    decision = {
        "threshold": threshold,
        "iou": iou,
        "iou_at_0.5": None if np.isnan(at_default) else float(at_default),
        "chosen": "the highest pooled pixel IoU on held-out labelled images (mapper.seg.calibrate)",
        "labels": [str(p) for p in labels],
        "images": len(samples),
        "grid": [THRESHOLDS[0], THRESHOLDS[-1], 0.025],
        "iou_by_threshold": by_threshold,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    update_checkpoint_meta(directory, {"decision": decision})
    return decision
