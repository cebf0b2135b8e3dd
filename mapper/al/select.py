"""Which pool blocks to label next: the selection strategies of an active-learning round.

Pure functions over the pool table that `mapper run` writes (`blocks.parquet`, one row per block); no I/O.
`select_blocks(pool, n, strategy)` returns the chosen blocks in pick order with a score, the part of the
strategy that picked each and a short reason for the labeller.

**Candidates** (every strategy). A source is *usable* unless its IQA coverage is Cloudy, Snow/Ice or
Nodata; a block is a candidate when its status is "done", at least one source is usable, and it is neither
`labelled` nor `excluded` (e.g. the fixed validation sample). Columns named `label` or `truth_*` are dropped
before anything else: selection never reads truth. Rows are put in (iy, ix) order first, so ties and seeded
draws do not depend on the table's row order. Fewer candidates than asked returns what there is.

**Scores** (NaN: the block is no candidate for that score).

- error — the paper's (Sect. 2.2.4, 3.2.1: label where the errors are). Per source s, p_err(s) = p_FP + p_Noise
  + p_Artifact of the correctness model. The sources the decision uses: Only A → A, Only B → B; Merge, Neither
  or no decision → both (Neither means both looked wrong to the integration: the segmentation errors worth
  fixing). Unusable sources are left out (their error is the imagery's; if that leaves none, the usable ones
  count). e = the largest p_err over those sources. Province weight w = 1 + pcs_weight · max(0, T − PCS) / T
  with T = pcs_threshold (the stop criterion, 0.80): 1 at or above the threshold or without a PCS, rising
  linearly to 1 + pcs_weight at PCS 0 (one-sided, like the stop criterion). error_score = e · w.
- uncertainty — uncertain area in true m²: per usable source uncertain_fraction × valid_fraction × land_m2
  (share of imaged pixels with cropland probability in 0.25..0.75 × the imaged share × the block's ground area
  inside the region); the larger of the two sources.
- disagreement — 1 − a_consistency_iou (the IoU of the two sources' masks over the pixels both imaged).
- negative — for the negative quota only: a block is a negative candidate when the final map's
  cropland_fraction ≤ negative_max_cropland_fraction or a usable source is judged FP; its score is the largest
  p_FP over the usable sources (hard negatives: what the segmentation takes for cropland), 0 when unknown.

**Strategies.**

- random: uniform draws (seeded) among the candidates.
- error / uncertainty / disagreement: the highest scores first.
- combined: combined_score = Σ_c w_c · r_c / Σ_c w_c over c in (error, uncertainty, disagreement), where r_c is
  the block's percentile rank of score c among the candidates (average ties, in (0, 1]; 0 where c is NaN) and
  w_c the `weights`. Then n is split into round(random_share · n) random picks, round(negative_share · n)
  negative-quota picks and the rest "combined score" picks (picked first). The combined and negative parts
  pick by greedy k-center: among the shortlist (the shortlist_factor × k best candidates by the part's score)
  each pick is the block farthest, in the standardised `diversity_features` space (z-scores over the table,
  NaN → 0), from every labelled block in the table and every block picked so far (no such block yet: the best
  score). A part that runs short (too few negatives, random draws blocked) leaves its places to the combined
  score.

**Spacing** (every strategy): no pick lies within min_distance_km (haversine between block centres) of a
labelled block (in the table or not: its id gives its centre) or of an earlier pick.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from mapper.config.models import StrictModel
from mapper.validation.stop import STOP_THRESHOLDS

log = logging.getLogger(__name__)

STRATEGIES = ("random", "error", "uncertainty", "disagreement", "combined")
COMPONENTS = ("error", "uncertainty", "disagreement")
SOURCES = ("a", "b")
UNUSABLE_COVERAGES = frozenset({"Cloudy", "Snow/Ice", "Nodata"})
ERROR_CLASSES = ("FP", "Noise", "Artifact")
EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)
CELLS_PER_DEGREE = 20  # blocks per degree, as mapper.grid.blocks

DEFAULT_DIVERSITY_FEATURES = (
    *(f"{s}_{f}" for s in SOURCES for f in ("area_fraction", "solidity_mean", "edge_density_m_per_ha",
                                              "sharpness", "hue_median", "saturation_median", "lightness_median")),
    "elevation_median", "slope_median_deg",
)  # fmt: skip

BASE_COLUMNS = ("block_id", "ix", "iy", "province", "status", "a_coverage", "b_coverage")
OUTPUT_COLUMNS = ("block_id", "province", "ix", "iy", "rank", "score", "strategy", "reason", "error_score",
                  "uncertainty_m2", "disagreement", "combined_score", "negative_score", "feature_distance",
                  "nearest_km")  # fmt: skip


class SelectionError(ValueError):
    """The pool table cannot be selected from (a column is missing); the message names what writes it."""


class ComponentWeights(StrictModel):
    """Weights of the rank-normalised scores in the combined score (0 leaves a score out)."""

    error: float = Field(1.0, ge=0)
    uncertainty: float = Field(1.0, ge=0)
    disagreement: float = Field(1.0, ge=0)

    @model_validator(mode="after")
    def _some_weight(self):
        if not any(getattr(self, c) > 0 for c in COMPONENTS):
            raise ValueError(f"at least one of the weights {', '.join(COMPONENTS)} must be above 0")
        return self


class SelectionSettings(StrictModel):
    """How a round's blocks are chosen; the defaults are the project's, documented field by field."""

    random_share: float = Field(0.2, ge=0, le=1, description="share of combined picks drawn at random")
    negative_share: float = Field(
        0.3, ge=0, le=1,
        description="share of combined picks from the negative candidates; the paper's labels were two thirds "
                    "negative, and error picks (FP blocks) bring more negatives on top of this quota",
    )  # fmt: skip
    negative_max_cropland_fraction: float = Field(
        0.02, ge=0, le=1, description="final-map cropland fraction at or below which a block is a negative candidate"
    )
    weights: ComponentWeights = Field(default_factory=ComponentWeights)
    pcs_threshold: float = Field(STOP_THRESHOLDS["pcs"], gt=0, description="PCS below which a province weighs more")
    pcs_weight: float = Field(2.0, ge=0, description="extra error weight of a province at PCS 0 (linear to 0 at T)")
    min_distance_km: float = Field(10.0, ge=0, description="least ground distance between picks and labelled blocks")
    shortlist_factor: int = Field(10, ge=1, description="k-center chooses among this many times k best-scored blocks")
    diversity_features: tuple[str, ...] = Field(DEFAULT_DIVERSITY_FEATURES, min_length=1)

    @model_validator(mode="after")
    def _shares_fit(self):
        if self.random_share + self.negative_share > 1:
            raise ValueError(f"random_share + negative_share is {self.random_share + self.negative_share:g}; "
                             "it must be at most 1")  # fmt: skip
        return self


# ---------------------------------------------------------------------------------------------- the table
def without_truth(pool: pd.DataFrame) -> pd.DataFrame:
    """The pool without `label` and `truth_*` columns: nothing downstream may see them."""
    truth = [c for c in pool.columns if c == "label" or str(c).startswith("truth_")]
    return pool.drop(columns=truth)


def _writer(column: str) -> str:
    """Which stage of `mapper run` writes a pool column (for the missing-column message)."""
    bare = column[2:] if column[:2] in ("a_", "b_") else column
    if column in ("block_id", "ix", "iy", "province"):
        return "the run's plan"
    if column in ("status", "cropland_m2", "land_m2", "cropland_fraction"):
        return "the final stage"
    if bare == "coverage":
        return "the IQA stage"
    if bare == "uncertain_fraction":
        return "the segment stage"
    if bare == "pred_semantic" or (bare.startswith("p_") and bare[2:] in ("TP", "TN", "FP", "Noise", "Artifact")):
        return "the decide stage (correctness model)"
    if column == "decision" or column.startswith("p_"):
        return "the decide stage (integration model)"
    return "the features stage"


def require_columns(table: pd.DataFrame, columns: Iterable[str]) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        named = "; ".join(f"{c!r} ({_writer(c)} writes it)" for c in missing)
        raise SelectionError(f"the pool table lacks column(s) {named}: select from the blocks.parquet of a "
                             "`mapper run` over the pool that got that far")  # fmt: skip


def _numeric(table: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)


def usable_sources(table: pd.DataFrame) -> np.ndarray:
    """(rows, 2) bool: the source's coverage is not Cloudy/Snow/Ice/Nodata (no coverage counts as usable)."""
    return np.column_stack([~table[f"{s}_coverage"].isin(UNUSABLE_COVERAGES).to_numpy() for s in SOURCES])


def candidate_mask(table: pd.DataFrame, never: set[str]) -> np.ndarray:
    done = (table["status"] == "done").to_numpy()
    return done & usable_sources(table).any(axis=1) & ~table["block_id"].isin(never).to_numpy()


def centres(ix, iy) -> tuple[np.ndarray, np.ndarray]:
    """(lon, lat) of block centres in degrees."""
    ix, iy = np.asarray(ix, dtype=float), np.asarray(iy, dtype=float)
    return (ix + 0.5) / CELLS_PER_DEGREE - 180.0, (iy + 0.5) / CELLS_PER_DEGREE - 90.0


def haversine_km(lon1, lat1, lon2, lat2) -> np.ndarray:
    """Great-circle distance (km) on the mean-radius sphere; broadcasts."""
    lon1, lat1, lon2, lat2 = (np.radians(np.asarray(v, dtype=float)) for v in (lon1, lat1, lon2, lat2))
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0, 1)))


# ---------------------------------------------------------------------------------------------- scores
@dataclass
class Scores:
    """Per-row score arrays (NaN: not a candidate for it) and what the reasons quote."""

    error: np.ndarray
    error_p: np.ndarray
    error_source: np.ndarray  # 0 = A, 1 = B
    province_pcs: np.ndarray
    uncertainty: np.ndarray
    uncertainty_source: np.ndarray
    disagreement: np.ndarray


def _nan_scores(n: int) -> np.ndarray:
    return np.full(n, np.nan)


def _max_over_sources(values: np.ndarray, use: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row max, which source) of a (rows, 2) array over the sources `use` marks; NaN where none has a value."""
    masked = np.where(use, values, np.nan)
    has = ~np.isnan(masked).all(axis=1)
    which = np.where(has, np.argmax(np.nan_to_num(masked, nan=-np.inf), axis=1), 0)
    best = np.where(has, masked[np.arange(len(masked)), which], np.nan)
    return best, which


def error_probability(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(e, source): the largest p_FP + p_Noise + p_Artifact over the usable sources the decision uses."""
    require_columns(table, ["decision", *(f"{s}_p_{c}" for s in SOURCES for c in ERROR_CLASSES)])
    p_err = np.column_stack([sum(_numeric(table, f"{s}_p_{c}") for c in ERROR_CLASSES) for s in SOURCES])
    decision = table["decision"].to_numpy(dtype=object)
    used = np.column_stack([decision != "Only B", decision != "Only A"])
    usable = usable_sources(table)
    use = used & usable
    use[~use.any(axis=1)] = usable[~use.any(axis=1)]  # the decision's source is unusable: judge the other
    return _max_over_sources(p_err, use)


def province_weight(pcs: np.ndarray, settings: SelectionSettings) -> np.ndarray:
    t = settings.pcs_threshold
    shortfall = np.nan_to_num(np.maximum(0.0, t - pcs), nan=0.0) / t
    return 1.0 + settings.pcs_weight * shortfall


def uncertainty_m2(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(m², source): the larger uncertain area of the usable sources."""
    per_source = (f"{s}_{f}" for s in SOURCES for f in ("uncertain_fraction", "valid_fraction"))
    require_columns(table, ["land_m2", *per_source])
    land = _numeric(table, "land_m2")
    area = np.column_stack([_numeric(table, f"{s}_uncertain_fraction") * _numeric(table, f"{s}_valid_fraction") * land
                            for s in SOURCES])  # fmt: skip
    return _max_over_sources(area, usable_sources(table))


def disagreement(table: pd.DataFrame) -> np.ndarray:
    require_columns(table, ["a_consistency_iou"])
    return 1.0 - _numeric(table, "a_consistency_iou")


def compute_scores(table: pd.DataFrame, needed: Iterable[str], settings: SelectionSettings,
                   province_pcs: Mapping[str, float] | None) -> Scores:  # fmt: skip
    """The component scores: those `needed` must be computable (else SelectionError), the rest are filled
    when their columns are there (for the output), NaN otherwise."""
    needed, n = set(needed), len(table)
    pcs = pd.to_numeric(table["province"].map(dict(province_pcs or {})), errors="coerce").to_numpy(dtype=float)

    def attempt(name, fn, default):
        try:
            return fn()
        except SelectionError:
            if name in needed:
                raise
            return default

    zeros = np.zeros(n, dtype=int)
    e, e_src = attempt("error", lambda: error_probability(table), (_nan_scores(n), zeros))
    u, u_src = attempt("uncertainty", lambda: uncertainty_m2(table), (_nan_scores(n), zeros))
    d = attempt("disagreement", lambda: disagreement(table), _nan_scores(n))
    return Scores(e * province_weight(pcs, settings), e, e_src, pcs, u, u_src, d)


def percentile_rank(values: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Rank / count among the candidates with a value (average ties, in (0, 1]); 0 elsewhere."""
    ranked = pd.Series(np.where(candidates, values, np.nan)).rank(method="average", pct=True).to_numpy()
    return np.nan_to_num(ranked, nan=0.0)


def combined_score(scores: Scores, candidates: np.ndarray, weights: ComponentWeights) -> np.ndarray:
    parts = {"error": scores.error, "uncertainty": scores.uncertainty, "disagreement": scores.disagreement}
    total = sum(getattr(weights, c) for c in COMPONENTS)
    return sum(getattr(weights, c) * percentile_rank(parts[c], candidates) for c in COMPONENTS) / total


def negative_candidates(table: pd.DataFrame, settings: SelectionSettings) -> tuple[np.ndarray, np.ndarray]:
    """(is negative candidate, negative score) without truth: little cropland in the final map, or a usable
    source judged FP; scored by the largest p_FP of the usable sources."""
    require_columns(table, ["cropland_fraction", *(f"{s}_{c}" for s in SOURCES for c in ("pred_semantic", "p_FP"))])
    usable = usable_sources(table)
    judged_fp = np.column_stack([(table[f"{s}_pred_semantic"] == "FP").to_numpy() for s in SOURCES]) & usable
    little = _numeric(table, "cropland_fraction") <= settings.negative_max_cropland_fraction
    p_fp, _ = _max_over_sources(np.column_stack([_numeric(table, f"{s}_p_FP") for s in SOURCES]), usable)
    return little | judged_fp.any(axis=1), np.nan_to_num(p_fp, nan=0.0)


# ---------------------------------------------------------------------------------------------- picking
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
            x = np.column_stack([_numeric(self.table, c) for c in columns])
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


# ---------------------------------------------------------------------------------------------- strategies
def _single(picker: Picker, n: int, strategy: str, scores: Scores, seed: int) -> None:
    if strategy == "random":
        picker.random(np.random.default_rng(seed), n, "random")
    else:
        picker.top_score(getattr(scores, strategy), n, strategy)


def _combined(picker: Picker, n: int, combined: np.ndarray, seed: int) -> None:
    settings = picker.settings
    n_random, n_negative = round(settings.random_share * n), round(settings.negative_share * n)
    picker.k_center(combined, n - n_random - n_negative, "combined score")
    negative, negative_score = negative_candidates(picker.table, settings)
    before = len(picker.picks)
    picker.k_center(negative_score, n_negative, "negative quota", eligible=negative)
    if len(picker.picks) - before < n_negative:
        log.info("only %d of the %d negative-quota blocks found; the combined score fills the rest",
                 len(picker.picks) - before, n_negative)  # fmt: skip
    picker.random(np.random.default_rng(seed), n_random, "random share")
    picker.k_center(combined, n - len(picker.picks), "combined score")  # places the other parts left


def select_blocks(pool: pd.DataFrame, n: int, strategy: str, *, labelled: Iterable[str] = (),
                  excluded: Iterable[str] = (), settings: SelectionSettings | None = None, seed: int = 0,
                  province_pcs: Mapping[str, float] | None = None) -> pd.DataFrame:  # fmt: skip
    """The n pool blocks to label next under `strategy` (one of STRATEGIES), in pick order (module docstring:
    candidates, scores, spacing). `province_pcs` is {province: PCS} of the current map, as `mapper validate`
    reports it; `labelled` and `excluded` are block ids never picked."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown selection strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    if n < 0:
        raise ValueError(f"n must be 0 or more, not {n}")
    settings = settings or SelectionSettings()
    table = without_truth(pool)
    require_columns(table, BASE_COLUMNS)
    table = table.iloc[np.lexsort((table["ix"].to_numpy(), table["iy"].to_numpy()))].reset_index(drop=True)
    labelled, excluded = set(labelled), set(excluded)
    candidates = candidate_mask(table, labelled | excluded)
    scores = compute_scores(table, _needed(strategy, settings), settings, province_pcs)
    combined = combined_score(scores, candidates, settings.weights)
    picker = Picker(table, candidates, labelled, settings)
    if strategy == "combined":
        _combined(picker, n, combined, seed)
    else:
        _single(picker, n, strategy, scores, seed)
    if len(picker.picks) < n:
        log.info("%s selection: %d of %d blocks chosen (%d candidates; the rest are unusable, labelled, excluded, "
                 "unscored or too close to a pick)", strategy, len(picker.picks), n, int(candidates.sum()))  # fmt: skip
    return _result(picker, scores, combined if strategy == "combined" else None, settings)


def _needed(strategy: str, settings: SelectionSettings) -> tuple[str, ...]:
    if strategy == "combined":
        return tuple(c for c in COMPONENTS if getattr(settings.weights, c) > 0)
    return (strategy,) if strategy in COMPONENTS else ()


# ---------------------------------------------------------------------------------------------- output
def _result(picker: Picker, scores: Scores, combined: np.ndarray | None, settings: SelectionSettings) -> pd.DataFrame:
    table, picks = picker.table, picker.picks
    rows = np.array([p.row for p in picks], dtype=int)
    negative_score = np.full(len(rows), np.nan)
    if any(p.part == "negative quota" for p in picks):
        negative_score = negative_candidates(table, settings)[1][rows]
    out = pd.DataFrame({
        "block_id": table["block_id"].to_numpy()[rows], "province": table["province"].to_numpy()[rows],
        "ix": table["ix"].to_numpy()[rows], "iy": table["iy"].to_numpy()[rows],
        "rank": np.arange(1, len(rows) + 1), "score": [p.score for p in picks],
        "strategy": [p.part for p in picks],
        "reason": [reason(table, scores, p, settings) for p in picks],
        "error_score": scores.error[rows], "uncertainty_m2": scores.uncertainty[rows],
        "disagreement": scores.disagreement[rows],
        "combined_score": np.nan if combined is None else combined[rows],
        "negative_score": negative_score, "feature_distance": [p.feature_distance for p in picks],
        "nearest_km": nearest_km(picker.lon[rows], picker.lat[rows], *picker.labelled_centres),
    })  # fmt: skip
    return out[list(OUTPUT_COLUMNS)]


def nearest_km(lon: np.ndarray, lat: np.ndarray, labelled_lon: np.ndarray, labelled_lat: np.ndarray) -> np.ndarray:
    """Each pick's ground distance to the nearest other pick or labelled block (NaN when there is none)."""
    all_lon, all_lat = np.concatenate([lon, labelled_lon]), np.concatenate([lat, labelled_lat])
    d = haversine_km(lon[:, None], lat[:, None], all_lon[None, :], all_lat[None, :])
    d[np.arange(len(lon)), np.arange(len(lon))] = np.inf
    best = d.min(axis=1) if d.shape[1] else np.full(len(lon), np.inf)
    return np.where(np.isfinite(best), best, np.nan)


def reason(table: pd.DataFrame, scores: Scores, pick: Pick, settings: SelectionSettings) -> str:
    """A short line for the labeller: why this block."""
    r = pick.row
    texts = {
        "random": lambda: "random pick (baseline)",
        "random share": lambda: "random share (keeps the sample unbiased)",
        "error": lambda: _error_text(table, scores, r, settings),
        "uncertainty": lambda: _uncertainty_text(scores, r),
        "disagreement": lambda: _disagreement_text(scores, r),
        "negative quota": lambda: _negative_text(table, r, settings),
        "combined score": lambda: _combined_text(table, scores, pick, settings),
    }
    return texts[pick.part]()


def _error_text(table: pd.DataFrame, scores: Scores, r: int, settings: SelectionSettings) -> str:
    if np.isnan(scores.error_p[r]):
        return "no correctness judgement"
    s = SOURCES[scores.error_source[r]]
    judged = table[f"{s}_pred_semantic"].iat[r] if f"{s}_pred_semantic" in table else "?"
    text = f"source {s.upper()} judged {judged} (error p {scores.error_p[r]:.2f})"
    if scores.province_pcs[r] < settings.pcs_threshold:
        text += f"; {table['province'].iat[r]} PCS {scores.province_pcs[r]:.2f}"
    return text


def _uncertainty_text(scores: Scores, r: int) -> str:
    s = SOURCES[scores.uncertainty_source[r]].upper()
    return f"{scores.uncertainty[r] / 1e4:.1f} ha of uncertain cropland probability (source {s})"


def _disagreement_text(scores: Scores, r: int) -> str:
    return f"the two sources disagree (consistency IoU {1 - scores.disagreement[r]:.2f})"


def _negative_text(table: pd.DataFrame, r: int, settings: SelectionSettings) -> str:
    judged = [s.upper() for s in SOURCES if table[f"{s}_pred_semantic"].iat[r] == "FP"]
    fraction = pd.to_numeric(pd.Series([table["cropland_fraction"].iat[r]]), errors="coerce").iat[0]
    parts = [f"source {' and '.join(judged)} judged FP"] if judged else []
    if fraction == fraction and fraction <= settings.negative_max_cropland_fraction:
        parts.append(f"final map {fraction:.1%} cropland")
    return "negative: " + ", ".join(parts)


def _combined_text(table: pd.DataFrame, scores: Scores, pick: Pick, settings: SelectionSettings) -> str:
    r, parts = pick.row, []
    if scores.error_p[r] >= 0.5:
        parts.append(_error_text(table, scores, r, settings))
    if scores.disagreement[r] >= 0.5:
        parts.append(_disagreement_text(scores, r))
    if scores.uncertainty[r] > 0:
        parts.append(_uncertainty_text(scores, r))
    if math.isfinite(pick.feature_distance):
        parts.append(f"unlike the labelled blocks (feature distance {pick.feature_distance:.1f})")
    return "; ".join(parts[:3]) or "high combined score"
