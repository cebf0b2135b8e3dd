"""Crop statistics onto grid cells: equations 1-7 of the allocation method (seed 003), vectorised per unit.

The grid is cut into *pieces*: a cell inside one administrative unit (a border cell is one piece per unit
it touches, each with the area of its part), so no hectare of a statistic can land in another unit. Per
piece i of unit k and crop j (the seed's year index y is implicit: one allocation is one year):

    eq. 1  AdjProb_ij = Stat_jk / Σ_{i∈k} Prob_ij · PixelArea_i × Prob_ij
    eq. 2  MaxHarvArea_i = Cropland_i × CropIntensity_i × PixelArea_i
    eq. 3  HarvAreaLeft_i = MaxHarvArea_i − Σ_j AdjProb_ij · PixelArea_i      (over the crops placed so far)
    eq. 4  StatLeft_jk = Σ_{i∈k} AdjProb_ij · PixelArea_i  where the cap is reached and j ∈ LeftCrop_i
    eq. 5  AdjProb_ij += StatLeft_jk / Σ_{i∈k, left>0} AdjProb_ij · PixelArea_i × AdjProb_ij   (left > 0)
    eq. 6  AdjProb_ij += StatLeft_jk / Σ_{i∈k, left>0} HarvAreaLeft_i × HarvAreaLeft_i / PixelArea_i
    eq. 7  CropArea_ij = AdjProb_ij × PixelArea_i

Crops are taken one at a time in each unit's order (`crop_order`: perennial before annual, specific before
general, then by the unit's statistic, descending). A piece whose cap the crop being placed would pass takes
none of it, and none of any later crop in the first pass (the seed's LeftCrop_i: the piece is *closed*);
what closed pieces withheld is StatLeft (eq. 4).

Where the seed is silent, these choices (documented, tested):
- Prob is zeroed where a piece has no cropland (the seed excludes such areas from the sums), except for
  perennial crops, which the seed takes out of the cropland constraint: they are placed by eq. 1 alone,
  never capped and never using the cap of annual crops.
- eq. 5 spreads StatLeft over the pieces still open with room, by probability, but no piece takes more than
  its room (the seed's own condition: no more can be allocated once the cap is reached); what that leaves,
  eq. 6 spreads over every piece with room left (closed ones too: their room is "the rest space"), which
  fills the unit exactly whenever its room suffices.
- A unit whose crop has no probability anywhere (Σ Prob·Area = 0) goes to eq. 6 directly.
- Whatever is still left (the unit's room is exhausted, or a perennial crop has no probability) is
  reported per unit and crop as unplaced — never dropped silently.
Areas are hectares; probabilities are proportions of a piece's area (any non-negative weight works:
eq. 1 rescales them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EQ_STEPS = ("eq1", "eq5", "eq6")  # where a hectare was placed


@dataclass
class AllocationProblem:
    unit: np.ndarray  # (n,) int: the unit index (0..K-1) of each piece
    area_ha: np.ndarray  # (n,) PixelArea_i: the piece's true ground area
    cap_ha: np.ndarray  # (n,) MaxHarvArea_i (eq. 2)
    prob: np.ndarray  # (n, J) Prob_ij >= 0
    stat_ha: np.ndarray  # (K, J) Stat_jk >= 0
    perennial: np.ndarray  # (J,) bool
    specific: np.ndarray  # (J,) bool

    def __post_init__(self):
        n, j = self.prob.shape
        k = self.stat_ha.shape[0]
        for name, arr, shape in (("unit", self.unit, (n,)), ("area_ha", self.area_ha, (n,)),
                                 ("cap_ha", self.cap_ha, (n,)), ("stat_ha", self.stat_ha, (k, j)),
                                 ("perennial", self.perennial, (j,)), ("specific", self.specific, (j,))):  # fmt: skip
            if np.shape(arr) != shape:
                raise ValueError(f"{name} has shape {np.shape(arr)}, expected {shape}")
        if n and (self.unit.min() < 0 or self.unit.max() >= k):
            raise ValueError(f"unit indices must lie in 0..{k - 1}")
        for name, arr in (("area_ha", self.area_ha), ("cap_ha", self.cap_ha), ("prob", self.prob),
                          ("stat_ha", self.stat_ha)):  # fmt: skip
            if not np.all(np.isfinite(arr)) or np.any(arr < 0):
                raise ValueError(f"{name} must be finite and non-negative")


@dataclass
class Allocation:
    area_ha: np.ndarray  # (n, J) CropArea_ij (eq. 7)
    unplaced_ha: np.ndarray  # (K, J) what no piece could take
    by_step_ha: np.ndarray  # (K, J, 3) hectares placed by eq. 1, eq. 5 and eq. 6
    order: np.ndarray  # (K, J) crop indices in each unit's order, -1 past its crops with a statistic

    def allocated_ha(self, unit: np.ndarray, n_units: int) -> np.ndarray:
        """(K, J) hectares allocated per unit and crop."""
        return np.stack([np.bincount(unit, self.area_ha[:, j], n_units) for j in range(self.area_ha.shape[1])], 1)


def max_harvested_area(cropland_fraction, intensity, area_ha) -> np.ndarray:
    """eq. 2: the cap of a piece, hectares."""
    return np.asarray(cropland_fraction, float) * np.asarray(intensity, float) * np.asarray(area_ha, float)


def crop_order(stat_ha: np.ndarray, perennial: np.ndarray, specific: np.ndarray) -> np.ndarray:
    """(K, J): per unit, the crops with a statistic > 0 — perennial first, then specific, then by the
    unit's statistic descending (ties by crop index, so the order is deterministic) — then -1."""
    k, j = stat_ha.shape
    crop = np.broadcast_to(np.arange(j), (k, j))
    keys = (crop, -stat_ha, np.broadcast_to(~specific, (k, j)), np.broadcast_to(~perennial, (k, j)),
            stat_ha <= 0)  # fmt: skip  # lexsort: the last key is the primary one
    order = np.lexsort(keys, axis=1)
    return np.where(np.take_along_axis(stat_ha, order, 1) > 0, order, -1)


def allocate(p: AllocationProblem) -> Allocation:
    n, n_crops = p.prob.shape
    k = p.stat_ha.shape[0]
    unit, area, cap = np.asarray(p.unit, np.int64), np.asarray(p.area_ha, float), np.asarray(p.cap_ha, float)
    order = crop_order(p.stat_ha, np.asarray(p.perennial, bool), np.asarray(p.specific, bool))
    out = np.zeros((n, n_crops))
    unplaced = np.zeros((k, n_crops))
    by_step = np.zeros((k, n_crops, 3))
    used = np.zeros(n)  # annual hectares placed per piece (eq. 3's sum)
    closed = np.zeros(n, bool)  # LeftCrop_i is not empty
    tol = 1e-9 * np.maximum(cap, 1.0)
    rows = np.arange(n)

    def per_unit(values):
        return np.bincount(unit, values, k)

    for rank in range(n_crops):
        unit_crop = order[:, rank]
        if (unit_crop < 0).all():
            break
        crop = unit_crop[unit]  # (n,) the crop each piece's unit places at this rank
        active = crop >= 0
        crop_ix = np.where(active, crop, 0)
        perennial = np.asarray(p.perennial, bool)[crop_ix]
        stat = np.where(unit_crop >= 0, p.stat_ha[np.arange(k), np.maximum(unit_crop, 0)], 0.0)
        prob = np.where(active & (perennial | (cap > 0)), p.prob[rows, crop_ix], 0.0)
        weight = prob * area
        denom = per_unit(weight)
        scale = np.divide(stat, denom, out=np.zeros(k), where=denom > 0)
        want = scale[unit] * weight  # eq. 1 in hectares

        fits = perennial | (~closed & (used + want <= cap + tol))
        first = np.where(fits, want, 0.0)
        closed |= active & ~fits & (want > 0)
        annual = active & ~perennial
        left = per_unit(want - first) + np.where(denom > 0, 0.0, stat)  # eq. 4 (+ units without probability)
        used += np.where(annual, first, 0.0)

        room = np.where(annual, np.maximum(cap - used, 0.0), 0.0)
        open_weight = np.where(~closed & (room > 0), weight, 0.0)
        share = np.divide(left, per_unit(open_weight), out=np.zeros(k), where=per_unit(open_weight) > 0)
        fifth = np.minimum(share[unit] * open_weight, room)  # eq. 5, never past the cap
        left = left - per_unit(fifth)
        room = room - fifth
        total_room = per_unit(room)
        fill = np.divide(left, total_room, out=np.zeros(k), where=total_room > 0)
        sixth = np.minimum(fill, 1.0)[unit] * room  # eq. 6: by the room left
        left = np.maximum(left - per_unit(sixth), 0.0)
        used += fifth + sixth

        placed = first + fifth + sixth
        np.add.at(out, (rows[active], crop[active]), placed[active])
        has = unit_crop >= 0
        units, crops = np.nonzero(has)[0], unit_crop[has]
        unplaced[units, crops] = left[has]
        for s, part in enumerate((first, fifth, sixth)):
            by_step[units, crops, s] = per_unit(part)[has]
    return Allocation(out, unplaced, by_step, order)


def proportional_allocation(unit: np.ndarray, weight: np.ndarray, stat_ha: np.ndarray) -> np.ndarray:
    """(n, J): each unit's statistic spread in proportion to one weight per piece (e.g. its cropland
    hectares) — the peer allocation the method is judged against. A unit without weight gets nothing."""
    k = stat_ha.shape[0]
    total = np.bincount(unit, weight, k)
    share = np.divide(weight, total[unit], out=np.zeros_like(weight, dtype=float), where=total[unit] > 0)
    return share[:, None] * stat_ha[unit]
