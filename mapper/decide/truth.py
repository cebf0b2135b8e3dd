"""Labels derived from ground truth for the two block-level decisions (paper Sect. 2.2.5; DESIGN.md §6-7).

    block_score(pred, truth, row_areas) -> BlockScore               t, p, e, IoU of one block × source
    correctness_class(pred, truth, coverage, row_areas) -> str      one of CORRECTNESS_CLASSES
    integration_errors(pred_a, pred_b, truth, row_areas) -> dict    error m² of each integration candidate
    integration_choice(pred_a, pred_b, truth, row_areas) -> str     one of INTEGRATION_CLASSES
    final_mask(choice, pred_a, pred_b) -> uint8 0/1/255             the block's map under a choice

Inputs are (H, W) uint8 arrays on one block grid. `pred`: 1 cropland, 0 not, 255 no imagery (the
segmentation output). `truth`: 1 cropland, 0 not, 255 ignored (the label mask). `row_areas`: (H,) ground
area in m² of one pixel in each row (`mapper.grid.area.row_pixel_areas(window)`, as the region
properties use), so every share below is a share of true ground area.

**Semantic correctness of one block × source.** Over the pixels that are both imaged (pred ≠ 255) and
labelled (truth ≠ 255):

- t = truth cropland area / area,  p = predicted cropland area / area,
- e = (FP + FN) area / area  (commission + omission),  IoU = TP / (TP + FP + FN) areas.

The first rule that holds gives the class:

1. **TN** — t < EMPTY_SHARE and p < EMPTY_SHARE (0.5 %): no cropland, and none mapped.
2. **TP** — IoU ≥ TP_IOU (0.6): the cropland is found.
3. **Artifact** — the image's true coverage type is Cloudy, Snow/Ice or Nodata (ARTIFACT_COVERAGE): the
   error comes from imagery inconsistencies, not from the segmentation of a usable image.
4. **Noise** — e < NOISE_ERROR_SHARE (5 %): very small extraction errors (stray patches, a thin field missed).
5. **FP** — the rest: substantial misidentification on usable imagery, commission or omission alike (the
   paper's "false positive" class is every substantive error of the map, so a block whose fields are
   missed is FP too).

A block × source with no pixel both imaged and labelled is **Artifact** whatever its coverage type: the
source maps nothing there that could be right, and the cause is the imagery. A coverage type that was not
recorded (None, some human labels) is taken as usable imagery (rule 3 does not apply).

**Integration of a block.** Four candidate maps, over the labelled pixels (truth ≠ 255):

- **Neither** — no cropland; **Only A** — A's cropland; **Only B** — B's cropland;
- **Merge** — the union: cropland where either source maps it, so where one source has no imagery the
  other's mask is what counts.

Where a candidate's source has no imagery, the candidate says "not cropland". The label is the candidate
with the least error area (FP + FN, m²) against the truth; exact ties go to the first of Neither, Only A,
Only B, Merge (the simpler map: e.g. two sources mapping nothing both → Neither). `final_mask` draws a
choice as a map: 1 / 0 as the candidate says, 255 where neither source has imagery.

The error areas are row counts dotted with the row areas, so equal masks give bit-equal areas and ties
are exact.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

CORRECTNESS_CLASSES = ("TP", "TN", "FP", "Noise", "Artifact")
INTEGRATION_CLASSES = ("Neither", "Only A", "Only B", "Merge")

EMPTY_SHARE = 0.005  # t and p below this: a block without cropland (TN)
TP_IOU = 0.6  # IoU at least this: TP
NOISE_ERROR_SHARE = 0.05  # error share below this: Noise
ARTIFACT_COVERAGE = frozenset({"Cloudy", "Snow/Ice", "Nodata"})

NODATA = 255  # pred: no imagery
IGNORE = 255  # truth: not labelled


@dataclass(frozen=True)
class BlockScore:
    """Area-weighted agreement of one prediction with the truth (see the module docstring)."""

    t: float  # truth cropland share
    p: float  # predicted cropland share
    e: float  # (FP + FN) share
    iou: float  # TP / (TP + FP + FN); 1.0 when neither has cropland, NaN when nothing is compared
    area_m2: float  # imaged and labelled area compared

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------- checks
def _check(name: str, a, shape=None) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2 or a.dtype != np.uint8:
        raise ValueError(f"{name} must be an (H, W) uint8 mask with 0, 1 and 255; got shape {a.shape} of {a.dtype}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape} but the other masks have {shape}; pass masks of one block")
    return a


def _check_areas(row_areas, n_rows: int) -> np.ndarray:
    areas = np.asarray(row_areas, np.float64)
    if areas.shape != (n_rows,):
        raise ValueError(
            f"row_areas has shape {areas.shape} but the masks have {n_rows} rows; pass one m² per row, "
            "mapper.grid.area.row_pixel_areas(block.window())"
        )
    return areas


def _area(mask: np.ndarray, areas: np.ndarray) -> float:
    """Ground area of the True pixels: per-row counts dotted with per-row areas (exact for equal masks)."""
    return float(np.count_nonzero(mask, axis=1).astype(np.float64) @ areas)


# ---------------------------------------------------------------------------------------------- correctness
def block_score(pred, truth, row_areas) -> BlockScore:
    """t, p, e and IoU of a prediction against the truth over pixels imaged and labelled."""
    pred = _check("pred", pred)
    truth = _check("truth", truth, pred.shape)
    areas = _check_areas(row_areas, pred.shape[0])
    both = (pred != NODATA) & (truth != IGNORE)
    total = _area(both, areas)
    if total == 0:
        return BlockScore(math.nan, math.nan, math.nan, math.nan, 0.0)
    t_mask = both & (truth == 1)
    p_mask = both & (pred == 1)
    tp = _area(t_mask & p_mask, areas)
    wrong = _area(t_mask ^ p_mask, areas)  # FP + FN
    t, p = _area(t_mask, areas), _area(p_mask, areas)
    iou = tp / (tp + wrong) if tp + wrong > 0 else 1.0
    return BlockScore(t / total, p / total, wrong / total, iou, total)


def classify_score(score: BlockScore, coverage: str | None) -> str:
    """The correctness class of a scored block × source (rules 1-5 of the module docstring)."""
    if score.area_m2 == 0:
        return "Artifact"  # nothing imaged and labelled: the imagery is the cause
    if score.t < EMPTY_SHARE and score.p < EMPTY_SHARE:
        return "TN"
    if score.iou >= TP_IOU:
        return "TP"
    if coverage in ARTIFACT_COVERAGE:
        return "Artifact"
    if score.e < NOISE_ERROR_SHARE:
        return "Noise"
    return "FP"


def correctness_class(pred, truth, coverage: str | None, row_areas) -> str:
    """TP, TN, FP, Noise or Artifact for one block × source (see the module docstring)."""
    return classify_score(block_score(pred, truth, row_areas), coverage)


# ---------------------------------------------------------------------------------------------- integration
def candidate_masks(pred_a, pred_b) -> dict[str, np.ndarray]:
    """The bool cropland map of each integration candidate (no imagery counts as not cropland)."""
    a = pred_a == 1
    b = pred_b == 1
    return {"Neither": np.zeros_like(a), "Only A": a, "Only B": b, "Merge": a | b}


def integration_errors(pred_a, pred_b, truth, row_areas) -> dict[str, float]:
    """FP + FN area (m²) of each candidate against the truth over the labelled pixels, in INTEGRATION_CLASSES
    order."""
    pred_a = _check("pred_a", pred_a)
    pred_b = _check("pred_b", pred_b, pred_a.shape)
    truth = _check("truth", truth, pred_a.shape)
    areas = _check_areas(row_areas, pred_a.shape[0])
    labelled = truth != IGNORE
    t_mask = labelled & (truth == 1)
    return {name: _area((cand & labelled) ^ t_mask, areas) for name, cand in candidate_masks(pred_a, pred_b).items()}


def choose(errors: dict[str, float]) -> str:
    """The candidate with the least error; exact ties to the earliest in INTEGRATION_CLASSES."""
    return min(INTEGRATION_CLASSES, key=lambda name: (errors[name], INTEGRATION_CLASSES.index(name)))


def integration_choice(pred_a, pred_b, truth, row_areas) -> str:
    """Neither, Only A, Only B or Merge: the candidate map closest to the truth (see the module docstring)."""
    return choose(integration_errors(pred_a, pred_b, truth, row_areas))


def final_mask(choice: str, pred_a, pred_b) -> np.ndarray:
    """The block's map under an integration choice: uint8 1 / 0, 255 where neither source has imagery."""
    if choice not in INTEGRATION_CLASSES:
        raise ValueError(f"unknown integration choice {choice!r}; one of: {', '.join(INTEGRATION_CLASSES)}")
    pred_a = _check("pred_a", pred_a)
    pred_b = _check("pred_b", pred_b, pred_a.shape)
    out = candidate_masks(pred_a, pred_b)[choice].astype(np.uint8)
    out[(pred_a == NODATA) & (pred_b == NODATA)] = NODATA
    return out
