"""Field delineation scores on instance label images: objects, extent, boundaries, areas.

    s = score_instances(true_labels, pred_labels)             one block (0 = background, any ids)
    total = sum_scores([s1, s2, ...]); total.as_dict()        pooled over blocks

- **Objects** as Fields of The World counts them (ftw-baselines `get_object_level_metrics`): a predicted field
  matches a true one when their IoU is above 0.5; above 0.5 a true field can match at most one prediction and
  vice versa, so the matching is one-to-one without any assignment step. TP = matches, FP = predictions
  without a match, FN = true fields without one; P = TP / (TP + FP), R = TP / (TP + FN), F1 their harmonic
  mean. Counts are pooled over blocks before the ratios (as FTW pools over chips).
- **Extent**: pixel IoU of field pixels (label > 0) in the two images.
- **Boundaries**: each image's field outline (pixels of a field with a 4-neighbour in another field or in
  background, `regions.outline`); precision = share of predicted boundary pixels within `tolerance_px`
  (Chebyshev) of a true boundary pixel, recall the converse, F their harmonic mean.
- **Area error** of matched fields: |A_pred − A_true| / A_true per match; the median over all matches.

Instead of FTW's polygon-by-polygon loop, the IoUs of every overlapping pair come from one contingency table:
the pairs of (true id, predicted id) over the pixels where both are fields, counted with `np.unique`, so a
block with thousands of fields is scored in a fraction of a second.

`min_pixels` drops instances smaller than that from both images first (e.g. the pixels of the sliver area the
polygons drop: true field fragments of a few pixels at zone corners are not fields anyone can delineate), and
`valid` (bool) restricts the scoring to some pixels (e.g. where there is imagery).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields

import cv2
import numpy as np

from mapper.fields.regions import outline

IOU_THRESHOLD = 0.5


@dataclass
class FieldScores:
    """Counts behind the scores, additive over blocks (`+`, `sum_scores`)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    extent_intersection: int = 0
    extent_union: int = 0
    boundary_pred: int = 0
    boundary_pred_near: int = 0
    boundary_true: int = 0
    boundary_true_near: int = 0
    area_errors: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __add__(self, other: FieldScores) -> FieldScores:
        names = [f.name for f in fields(self) if f.name != "area_errors"]
        counts = {n: getattr(self, n) + getattr(other, n) for n in names}
        return FieldScores(**counts, area_errors=np.concatenate([self.area_errors, other.area_errors]))

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        return _harmonic(self.precision, self.recall)

    @property
    def extent_iou(self) -> float:
        return _ratio(self.extent_intersection, self.extent_union)

    @property
    def boundary_precision(self) -> float:
        return _ratio(self.boundary_pred_near, self.boundary_pred)

    @property
    def boundary_recall(self) -> float:
        return _ratio(self.boundary_true_near, self.boundary_true)

    @property
    def boundary_f(self) -> float:
        return _harmonic(self.boundary_precision, self.boundary_recall)

    @property
    def median_area_error(self) -> float:
        return float(np.median(self.area_errors)) if len(self.area_errors) else float("nan")

    def as_dict(self) -> dict:
        """The scores and their counts (JSON-ready)."""
        counts = {k: int(v) for k, v in asdict(self).items() if k != "area_errors"}
        names = ("precision", "recall", "f1", "extent_iou", "boundary_precision", "boundary_recall", "boundary_f",
                 "median_area_error")  # fmt: skip
        return {**{n: getattr(self, n) for n in names}, **counts, "matched": len(self.area_errors)}


def _ratio(a: float, b: float) -> float:
    return float(a) / b if b else float("nan")


def _harmonic(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else (float("nan") if np.isnan(p + r) else 0.0)


def sum_scores(scores: Iterable[FieldScores]) -> FieldScores:
    total = FieldScores()
    for s in scores:
        total = total + s
    return total


def _dense(labels: np.ndarray, min_pixels: int) -> np.ndarray:
    """Labels renumbered 1..n (0 stays background), instances under `min_pixels` set to 0."""
    uniq, inverse, counts = np.unique(labels.ravel(), return_inverse=True, return_counts=True)
    keep = (uniq != 0) & (counts >= max(min_pixels, 1))
    new = np.where(keep, np.cumsum(keep), 0)
    return new[inverse].reshape(labels.shape).astype(np.int64)


def match_instances(true: np.ndarray, pred: np.ndarray, iou_threshold: float = IOU_THRESHOLD):
    """(true ids, predicted ids, IoUs) of the pairs with IoU > iou_threshold (≥ 0.5: one-to-one), from the
    contingency table of dense label images (1..n, 0 background)."""
    if iou_threshold < 0.5:
        raise ValueError("iou_threshold below 0.5 lets one field match several; the matching would need an assignment")
    area_t = np.bincount(true.ravel())
    area_p = np.bincount(pred.ravel())
    both = (true > 0) & (pred > 0)
    pairs, inter = np.unique(true[both] * (len(area_p) + 1) + pred[both], return_counts=True)
    t, p = np.divmod(pairs, len(area_p) + 1)
    iou = inter / (area_t[t] + area_p[p] - inter)
    hit = iou > iou_threshold
    return t[hit], p[hit], iou[hit]


def _near(a: np.ndarray, b: np.ndarray, tolerance_px: int) -> int:
    """Pixels of a within tolerance_px (Chebyshev) of a pixel of b."""
    k = 2 * tolerance_px + 1
    grown = cv2.dilate(b.view(np.uint8), np.ones((k, k), np.uint8)) if tolerance_px > 0 else b.view(np.uint8)
    return int(np.count_nonzero(a & (grown > 0)))


def score_instances(
    true: np.ndarray, pred: np.ndarray, *, iou_threshold: float = IOU_THRESHOLD, tolerance_px: int = 1,
    min_pixels: int = 0, valid: np.ndarray | None = None,
) -> FieldScores:  # fmt: skip
    """Scores of predicted against true instance labels of one block (see the module docstring)."""
    true, pred = np.asarray(true), np.asarray(pred)
    if true.shape != pred.shape or true.ndim != 2:
        raise ValueError(f"true {true.shape} and predicted {pred.shape} labels must be 2-D images of one shape")
    if valid is not None:
        true, pred = np.where(valid, true, 0), np.where(valid, pred, 0)
    true, pred = _dense(true, min_pixels), _dense(pred, min_pixels)
    t, p, _ = match_instances(true, pred, iou_threshold)
    n_true, n_pred = int(true.max(initial=0)), int(pred.max(initial=0))
    area_t, area_p = np.bincount(true.ravel()), np.bincount(pred.ravel())
    bt, bp = outline(true), outline(pred)
    return FieldScores(
        tp=len(t), fp=n_pred - len(t), fn=n_true - len(t),
        extent_intersection=int(np.count_nonzero((true > 0) & (pred > 0))),
        extent_union=int(np.count_nonzero((true > 0) | (pred > 0))),
        boundary_pred=int(np.count_nonzero(bp)), boundary_pred_near=_near(bp, bt, tolerance_px),
        boundary_true=int(np.count_nonzero(bt)), boundary_true_near=_near(bt, bp, tolerance_px),
        area_errors=np.abs(area_p[p] - area_t[t]) / area_t[t],
    )  # fmt: skip
