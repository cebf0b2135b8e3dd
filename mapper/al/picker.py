"""The picking state of a selection: candidates still free, the picks so far, the spacing between picks and
labelled blocks, and the two ways of taking rows the strategies share.

**Spacing**: no pick lies within min_distance_km (haversine between block centres) of a labelled block (in the
table or not: its id gives its centre) or of an earlier pick.

**Greedy k-center** (`Picker.k_center`): among the shortlist (the shortlist_factor × k best free candidates by
a score) each pick is the block farthest, in the standardised `diversity_features` space (z-scores over the
table, NaN → 0), from every labelled block in the table and every block picked so far (no such block yet: the
best score).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mapper.al.pool import EARTH_RADIUS_KM, centres, haversine_km, numeric, require_columns
from mapper.config.models import SelectionSettings


@dataclass
class Pick:
    row: int
    part: str
    score: float
    feature_distance: float = math.nan


class Spacing:
    """Which rows lie within min_km of a labelled block or an earlier pick. Rows are in (iy, ix) order, so the
    rows near a point are a latitude band found by binary search; haversine runs on that band only."""

    def __init__(self, lon: np.ndarray, lat: np.ndarray, min_km: float):
        self.lon, self.lat, self.min_km = lon, lat, min_km
        self.blocked = np.zeros(len(lon), dtype=bool)
        self.band_deg = min_km / (math.pi * EARTH_RADIUS_KM / 180.0)  # a degree of latitude is ~111.2 km

    def add(self, lon0: float, lat0: float) -> None:
        if self.min_km <= 0:
            return
        lo, hi = np.searchsorted(self.lat, [lat0 - self.band_deg, lat0 + self.band_deg], side="left")
        near = haversine_km(lon0, lat0, self.lon[lo:hi], self.lat[lo:hi]) < self.min_km
        self.blocked[lo:hi] |= near


class Picker:
    """The picking state of one selection: candidates, taken rows, spacing, the labelled rows in the table."""

    def __init__(self, table: pd.DataFrame, candidates: np.ndarray, labelled: set[str], settings: SelectionSettings):
        self.table, self.settings = table, settings
        self.available = candidates.copy()
        self.lon, self.lat = centres(table["ix"], table["iy"])
        self.spacing = Spacing(self.lon, self.lat, settings.min_distance_km)
        self.labelled_rows = np.flatnonzero(table["block_id"].isin(labelled).to_numpy())
        self.labelled_centres = labelled_centres(table, labelled)
        for lon, lat in zip(*self.labelled_centres, strict=True):
            self.spacing.add(lon, lat)
        self.picks: list[Pick] = []
        self._features: np.ndarray | None = None

    def free(self) -> np.ndarray:
        return self.available & ~self.spacing.blocked

    def take(self, pick: Pick) -> None:
        self.picks.append(pick)
        self.available[pick.row] = False
        self.spacing.add(self.lon[pick.row], self.lat[pick.row])

    def by_order(self, order: np.ndarray, k: int, part: str, score: np.ndarray) -> None:
        """Take the first k free rows of `order`, re-checking spacing after each pick."""
        target = len(self.picks) + k
        for row in order:
            if len(self.picks) >= target:
                break
            if self.available[row] and not self.spacing.blocked[row]:
                self.take(Pick(int(row), part, float(score[row])))

    def top_score(self, score: np.ndarray, k: int, part: str) -> None:
        rows = np.flatnonzero(self.free() & ~np.isnan(score))
        self.by_order(rows[np.argsort(-score[rows], kind="stable")], k, part, score)

    def random(self, rng: np.random.Generator, k: int, part: str, eligible: np.ndarray | None = None) -> None:
        rows = np.flatnonzero(self.free() if eligible is None else self.free() & eligible)
        self.by_order(rng.permutation(rows), k, part, np.full(len(self.table), np.nan))

    def k_center(self, score: np.ndarray, k: int, part: str, eligible: np.ndarray | None = None) -> None:
        """Greedy k-center over shortlists of the best free rows, far from labelled rows and earlier picks."""
        target = len(self.picks) + k
        while len(self.picks) < target:
            free = self.free() & ~np.isnan(score)
            rows = np.flatnonzero(free if eligible is None else free & eligible)
            if not len(rows):
                return
            size = min(len(rows), self.settings.shortlist_factor * (target - len(self.picks)))
            shortlist = rows[np.argsort(-score[rows], kind="stable")[:size]]
            self._k_center_shortlist(shortlist, score, target, part)

    def _k_center_shortlist(self, shortlist: np.ndarray, score: np.ndarray, target: int, part: str) -> None:
        x = self.features()[shortlist]
        seeds = np.concatenate([self.labelled_rows, [p.row for p in self.picks]]).astype(int)
        min_d = min_distances(x, self.features()[seeds])
        while len(self.picks) < target:
            ok = self.available[shortlist] & ~self.spacing.blocked[shortlist]
            if not ok.any():
                return
            idx = np.flatnonzero(ok)
            # farthest first; the score breaks ties (and chooses alone while nothing is labelled or picked)
            best = idx[np.lexsort((-score[shortlist[idx]], -min_d[idx]))[0]]
            row = int(shortlist[best])
            self.take(Pick(row, part, float(score[row]), float(min_d[best])))
            min_d = np.minimum(min_d, np.sqrt(((x - x[best]) ** 2).sum(axis=1)))

    def features(self) -> np.ndarray:
        """The diversity features, z-scored over the table (NaN → 0, the mean); computed once."""
        if self._features is None:
            columns = list(self.settings.diversity_features)
            require_columns(self.table, columns)
            x = np.column_stack([numeric(self.table, c) for c in columns])
            mean, std = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
            mean, std = np.nan_to_num(mean), np.where(np.nan_to_num(std) > 0, std, 1.0)
            self._features = np.nan_to_num((x - mean) / std, nan=0.0)
        return self._features


def min_distances(x: np.ndarray, seeds: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Each row of x's Euclidean distance to its nearest seed (inf without seeds); chunked to bound memory."""
    out = np.full(len(x), np.inf)
    for start in range(0, len(seeds), chunk):
        s = seeds[start : start + chunk]
        d = np.sqrt(((x[:, None, :] - s[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
        out = np.minimum(out, d)
    return out


def labelled_centres(table: pd.DataFrame, labelled: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the labelled blocks: from the table's ix/iy, else parsed from the id ('ix_iy')."""
    from mapper.grid.blocks import Block

    in_table = table[table["block_id"].isin(labelled)]
    others = sorted(labelled - set(in_table["block_id"]))
    parsed = [Block.parse(b) for b in others]
    ix = np.concatenate([in_table["ix"].to_numpy(dtype=float), [b.ix for b in parsed]])
    iy = np.concatenate([in_table["iy"].to_numpy(dtype=float), [b.iy for b in parsed]])
    return centres(ix, iy)
