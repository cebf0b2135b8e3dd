"""The picking state of a selection: candidates still free, the picks so far, the spacing between picks and
labelled blocks, and the two ways of taking rows the strategies share.

**Spacing**: no pick lies within min_distance_km (haversine between block centres) of a labelled block (in the
table or not: its id gives its centre) or of an earlier pick.

**Greedy k-center** (`Picker.k_center`), k picks by a score:

- the *shortlist* is the best free candidates by the score, max(k, min(shortlist_factor × k, shortlist_share ×
  the free candidates)) of them (all of them when fewer): capped by a share of the pool, so that on a small pool
  it is not the whole pool and the score still matters;
- the *seeds* are every labelled block — its row in the table, else its row in `labelled_features` (the pool
  table of the round that picked it: a round's pool run predicts unlabelled blocks only) — and every block
  picked so far. A labelled block with neither row (e.g. the base labels) is not a seed; it keeps its spacing
  role only;
- each pick is the shortlisted block (still free after spacing) with the largest *preference* = the percentile
  rank of its score among those blocks (average ties, in (0, 1]) + its feature distance to the nearest seed
  divided by the largest such distance among them (in [0, 1]; 0 while there is no seed). Distance and score
  weigh alike: a near-twin of a seed gets almost nothing from the distance term, a far block with a mediocre
  score can beat it, and among blocks about equally far the score decides. Ties go to the better score, then
  the (iy, ix) order.

Feature distance is Euclidean in the standardised `diversity_features` space: z-scores with the table's mean and
standard deviation (the seeds from `labelled_features` standardised with the same ones), NaN → 0 (the mean).
The features of a source the table lacks (`b_*` in a one-source table) are left out.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mapper.al.pool import (
    EARTH_RADIUS_KM,
    SOURCES,
    SelectionError,
    centres,
    haversine_km,
    numeric,
    require_columns,
    sources_in,
)
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
    """The picking state of one selection: candidates, taken rows, spacing, the k-center seeds (the labelled rows
    in the table and `labelled_features`: block_id and diversity feature rows of labelled blocks the table lacks;
    rows of other blocks are ignored, the last row of a block counts)."""

    def __init__(self, table: pd.DataFrame, candidates: np.ndarray, labelled: set[str], settings: SelectionSettings,
                 labelled_features: pd.DataFrame | None = None):  # fmt: skip
        self.table, self.settings = table, settings
        self.available = candidates.copy()
        self.lon, self.lat = centres(table["ix"], table["iy"])
        self.spacing = Spacing(self.lon, self.lat, settings.min_distance_km)
        self.labelled_rows = np.flatnonzero(table["block_id"].isin(labelled).to_numpy())
        self.labelled_centres = labelled_centres(table, labelled)
        for lon, lat in zip(*self.labelled_centres, strict=True):
            self.spacing.add(lon, lat)
        self.picks: list[Pick] = []
        self.outside_seeds = _outside_rows(labelled_features, labelled, set(table["block_id"]))
        self._features: np.ndarray | None = None
        self._seeds: np.ndarray | None = None

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
        """Greedy k-center (module docstring) over shortlists of the best free rows, far from the seeds."""
        target = len(self.picks) + k
        while len(self.picks) < target:
            free = self.free() & ~np.isnan(score)
            rows = np.flatnonzero(free if eligible is None else free & eligible)
            if not len(rows):
                return
            size = self.shortlist_size(len(rows), target - len(self.picks))
            self._k_center_shortlist(rows[np.argsort(-score[rows], kind="stable")[:size]], score, target, part)

    def shortlist_size(self, free: int, k: int) -> int:
        """max(k, min(shortlist_factor · k, shortlist_share · free)), at most `free`."""
        capped = min(self.settings.shortlist_factor * k, math.floor(self.settings.shortlist_share * free))
        return min(free, max(k, capped))

    def _k_center_shortlist(self, shortlist: np.ndarray, score: np.ndarray, target: int, part: str) -> None:
        x = self.features()[shortlist]
        picked = self.features()[np.asarray([p.row for p in self.picks], dtype=int)]
        min_d = min_distances(x, np.concatenate([self.seeds(), picked]))
        while len(self.picks) < target:
            ok = self.available[shortlist] & ~self.spacing.blocked[shortlist]
            if not ok.any():
                return
            idx = np.flatnonzero(ok)
            s = score[shortlist[idx]]
            best = idx[np.lexsort((-s, -preference(s, min_d[idx])))[0]]
            row = int(shortlist[best])
            self.take(Pick(row, part, float(score[row]), float(min_d[best])))
            min_d = np.minimum(min_d, np.sqrt(((x - x[best]) ** 2).sum(axis=1)))

    def features(self) -> np.ndarray:
        """The diversity features, z-scored over the table (NaN → 0, the mean); computed once, with the seeds."""
        if self._features is None:
            columns = diversity_columns(self.table, self.settings)
            x = np.column_stack([numeric(self.table, c) for c in columns])
            with warnings.catch_warnings():  # a feature no row has (a chip's terrain) is NaN: the mean, 0
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, std = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
            mean, std = np.nan_to_num(mean), np.where(np.nan_to_num(std) > 0, std, 1.0)
            self._features = np.nan_to_num((x - mean) / std, nan=0.0)
            # the seeds from other rounds' tables take this table's mean and std: one space for all distances
            outside = self.outside_seeds.reindex(columns=columns)
            y = np.column_stack([pd.to_numeric(outside[c], errors="coerce").to_numpy(dtype=float) for c in columns])
            self._seeds = np.concatenate([self._features[self.labelled_rows],
                                          np.nan_to_num((y - mean) / std, nan=0.0)])  # fmt: skip
        return self._features

    def seeds(self) -> np.ndarray:
        """The labelled blocks' standardised features: their table rows, then the rows from labelled_features."""
        self.features()
        return self._seeds


def preference(score: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """k-center's preference among the free shortlisted rows: percentile rank of the score + the distance to the
    nearest seed over the largest such distance (0 while there is no seed: every distance is inf)."""
    rank = pd.Series(score).rank(method="average", pct=True).to_numpy()
    far = distance.max() if len(distance) else 0.0
    return rank + (distance / far if np.isfinite(far) and far > 0 else 0.0)


def diversity_columns(table: pd.DataFrame, settings: SelectionSettings) -> list[str]:
    """settings.diversity_features less those of a source the table lacks (they must be there otherwise)."""
    absent = tuple(f"{s}_" for s in SOURCES if s not in sources_in(table))
    columns = [c for c in settings.diversity_features if not (absent and c.startswith(absent))]
    if not columns:
        raise SelectionError("every diversity feature is of a source the pool table lacks: add features of source "
                             "A or terrain to al.selection.diversity_features")  # fmt: skip
    require_columns(table, columns)
    return columns


def _outside_rows(labelled_features: pd.DataFrame | None, labelled: set[str], in_table: set[str]) -> pd.DataFrame:
    """The rows of labelled_features of labelled blocks the table lacks (a block's last row)."""
    if labelled_features is None or not len(labelled_features):
        return pd.DataFrame({"block_id": []})
    ids = labelled_features["block_id"]
    rows = labelled_features[ids.isin(labelled) & ~ids.isin(in_table)]
    return rows.drop_duplicates("block_id", keep="last").reset_index(drop=True)


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
    chips = len(table) > 0 and table["ix"].isna().all()  # a pool of chips: its ids have no position
    parsed = [Block.parse(b) for b in others if not chips or _is_block_id(b)]
    ix = np.concatenate([in_table["ix"].to_numpy(dtype=float), [b.ix for b in parsed]])
    iy = np.concatenate([in_table["iy"].to_numpy(dtype=float), [b.iy for b in parsed]])
    return centres(ix, iy)


def _is_block_id(name: str) -> bool:
    from mapper.grid.blocks import Block

    try:
        Block.parse(name)
    except ValueError:
        return False
    return True
