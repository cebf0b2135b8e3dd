"""The pool table a selection reads: the blocks.parquet of `mapper run`, one row per block; no I/O.

A pool table holds one or two sources: source A always (its `a_*` columns), source B when the table has a
`b_coverage` column (a pool of real chips or of one imagery source has none: that is a one-source table, not a
missing column). A source is *usable* unless its IQA coverage is Cloudy, Snow/Ice or Nodata; a block is a
candidate when its status is "done", at least one source is usable, and it is neither labelled nor excluded.
Columns named `label` or `truth_*` are dropped before anything else: selection never reads truth. A missing
column is a SelectionError that names the stage of `mapper run` that writes it; so is a score that needs two
sources asked of a one-source table (`require_two_sources`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

SOURCES = ("a", "b")  # the column prefixes of source A and source B
UNUSABLE_COVERAGES = frozenset({"Cloudy", "Snow/Ice", "Nodata"})
EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)
CELLS_PER_DEGREE = 20  # blocks per degree, as mapper.grid.blocks
BASE_COLUMNS = ("block_id", "ix", "iy", "province", "status", "a_coverage")


class SelectionError(ValueError):
    """The pool table cannot be selected from (a column is missing); the message names what writes it."""


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


def numeric(table: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)


def sources_in(table: pd.DataFrame) -> tuple[str, ...]:
    """The sources of the table, by prefix: ("a",) for a one-source table (no b_coverage column), else ("a", "b")."""
    return tuple(s for s in SOURCES if s == "a" or f"{s}_coverage" in table.columns)


def require_two_sources(table: pd.DataFrame, what: str) -> None:
    """SelectionError unless the table has both sources: `what` (a score) compares or integrates the two."""
    if len(sources_in(table)) < 2:
        raise SelectionError(f"{what} needs two sources, and this pool table has source A only (no b_coverage "
                             "column): select with the uncertainty, random or combined strategy, or select from "
                             "the blocks.parquet of a `mapper run` with two imagery sources")  # fmt: skip


def usable_sources(table: pd.DataFrame) -> np.ndarray:
    """(rows, sources) bool, one column per source of the table (sources_in): the source's coverage is not
    Cloudy/Snow/Ice/Nodata (no coverage counts as usable)."""
    return np.column_stack([~table[f"{s}_coverage"].isin(UNUSABLE_COVERAGES).to_numpy() for s in sources_in(table)])


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
