"""Which pool blocks to label next: a selection strategy run over the pool table that `mapper run` writes
(`blocks.parquet`, one row per block); no I/O.

`select_blocks(pool, n, strategy)` returns the chosen blocks in pick order with a score, the part of the
strategy that picked each and a short reason for the labeller. In a campaign (mapper.al.rounds) it also gets
what earlier rounds leave behind: `labelled_features`, the diversity features of labelled blocks from the pool
tables of the rounds that picked them (a round's pool run predicts unlabelled blocks only, and k-center must
still keep away from them), and `quota_history`, the picks per part of earlier rounds (the combined strategy's
shares hold over the campaign). The table may hold one source or two (mapper.al.pool). The pieces:

- the table and its candidates (every strategy): mapper.al.pool — truth columns dropped, rows put in (iy, ix)
  order first, so ties and seeded draws do not depend on the table's row order; fewer candidates than asked
  returns what there is;
- the component scores (error, uncertainty, disagreement, negative, combined): mapper.al.scores;
- the picking state, spacing (no pick within min_distance_km of a labelled block or an earlier pick) and
  greedy k-center seeded with every labelled block that has a feature row: mapper.al.picker;
- the strategies, one module each, registered by name: mapper.al.strategies (random, error, uncertainty,
  disagreement, combined).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from mapper.al.picker import Picker
from mapper.al.pool import BASE_COLUMNS, candidate_mask, haversine_km, require_columns, sources_in, without_truth
from mapper.al.scores import combined_components, combined_score, compute_scores, negative_candidates
from mapper.al.strategies import Context, get_strategy
from mapper.config.models import SelectionSettings

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = ("block_id", "province", "ix", "iy", "rank", "score", "strategy", "reason", "error_score",
                  "uncertainty_m2", "disagreement", "combined_score", "negative_score", "feature_distance",
                  "nearest_km")  # fmt: skip


def select_blocks(pool: pd.DataFrame, n: int, strategy: str, *, labelled: Iterable[str] = (),
                  excluded: Iterable[str] = (), settings: SelectionSettings | None = None, seed: int = 0,
                  province_pcs: Mapping[str, float] | None = None, labelled_features: pd.DataFrame | None = None,
                  quota_history: Mapping[str, int] | None = None) -> pd.DataFrame:  # fmt: skip
    """The n pool blocks to label next under `strategy` (a name of mapper.al.strategies), in pick order (module
    docstring). `province_pcs` is {province: PCS} of the current map, as `mapper validate` reports it;
    `labelled` and `excluded` are block ids never picked. `labelled_features` (block_id and the diversity
    feature columns) gives the k-center seeds of labelled blocks the table lacks: its rows of blocks in the table
    or not in `labelled` are ignored; a labelled block with no feature row anywhere (e.g. base labels) only
    keeps picks away by min_distance_km. `quota_history` is {part: picks} of the campaign's earlier rounds, as
    the `strategy` column of their selections names the parts."""
    chosen = get_strategy(strategy)
    if n < 0:
        raise ValueError(f"n must be 0 or more, not {n}")
    settings = settings or SelectionSettings()
    table = without_truth(pool)
    require_columns(table, BASE_COLUMNS)
    table = table.iloc[np.lexsort((table["ix"].to_numpy(), table["iy"].to_numpy()))].reset_index(drop=True)
    labelled, excluded = set(labelled), set(excluded)
    candidates = candidate_mask(table, labelled | excluded)
    sources = sources_in(table)
    scores = compute_scores(table, chosen.needs(settings, sources), settings, province_pcs)
    components = combined_components(settings.weights, sources)
    combined = combined_score(scores, candidates, settings.weights, components)
    picker = Picker(table, candidates, labelled, settings, labelled_features)
    ctx = Context(table, settings, scores, candidates, combined, picker, seed, dict(quota_history or {}), components)
    chosen.pick(ctx, n)
    if len(picker.picks) < n:
        log.info("%s selection: %d of %d blocks chosen (%d candidates; the rest are unusable, labelled, excluded, "
                 "unscored or too close to a pick)", strategy, len(picker.picks), n, int(candidates.sum()))  # fmt: skip
    return _result(ctx, chosen.reason, combined if chosen.reports_combined else None)


def _result(ctx: Context, reason, combined: np.ndarray | None) -> pd.DataFrame:
    table, picks, scores, picker = ctx.table, ctx.picker.picks, ctx.scores, ctx.picker
    rows = np.array([p.row for p in picks], dtype=int)
    negative_score = np.full(len(rows), np.nan)
    if any(p.part == "negative quota" for p in picks):
        negative_score = negative_candidates(table, ctx.settings)[1][rows]
    out = pd.DataFrame({
        "block_id": table["block_id"].to_numpy()[rows], "province": table["province"].to_numpy()[rows],
        "ix": table["ix"].to_numpy()[rows], "iy": table["iy"].to_numpy()[rows],
        "rank": np.arange(1, len(rows) + 1), "score": [p.score for p in picks],
        "strategy": [p.part for p in picks],
        "reason": [reason(ctx, p) for p in picks],
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
