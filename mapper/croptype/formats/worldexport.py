"""The simulated world's windows composited twice from the same acquisitions — on the native 43 five-day steps
and on calendar months — for the format writers (ccd, h2crop) and for the native datasets of exactly the
samples they write (the benchmark's comparison: native steps, native at the format's months, the format).

Windows are drawn as `mapper croptype simulate` draws them (dataset.sample_windows); compositing is the one
compositor (croptype.composite) with month windows (formats.months). A pixel is a sample candidate when it
lies wholly in one field (purity 1) and has a clear observation on both step grids.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mapper.croptype import series
from mapper.croptype.composite import composite
from mapper.croptype.dataset import ParcelDataset, _rows_table, sample_windows
from mapper.croptype.formats.months import month_steps, month_windows
from mapper.croptype.worldsource import simulate_stack

SPLITS = ("train", "val", "test")


@dataclass
class WorldWindow:
    name: str  # "Henan:3", the native datasets' window name
    province: str
    sim: object  # mapper.world.sentinel2.SimulatedS2: truth fields, grid, year
    native: np.ndarray  # (B, 43, H, W) reflectance
    monthly: np.ndarray  # (B, M, H, W) reflectance
    pure: np.ndarray  # (H, W) bool: sample candidates

    @property
    def year(self) -> int:
        return self.sim.dates[0].year


def world_windows(world, province: str, n_windows: int, window_km: float, seed: int, months,
                  log=lambda msg: None) -> Iterator[WorldWindow]:  # fmt: skip
    from mapper.grid.admin import resolve_province

    region = resolve_province(province)
    for k, bounds in enumerate(sample_windows(region.geometry, n_windows, window_km, seed)):
        stack, sim = simulate_stack(world, bounds)
        centres, halves = month_windows(sim.dates[0].year, months)
        native = composite(stack).values
        monthly = composite(stack, steps=centres, half_window=halves).values
        pure = (sim.purity >= 1.0) & (sim.field >= 0) & np.isfinite(native[0, 0]) & np.isfinite(monthly[0, 0])
        log(f"window {k + 1}/{n_windows}: {int(pure.sum())} pure field pixels")
        yield WorldWindow(f"{region.name}:{k}", region.name, sim, native, monthly, pure)


def split_of(key: str, shares=(0.70, 0.15)) -> str:
    """train / val / test by a stable hash of a location's key (CCD's 70/15/15): one location, one split."""
    u = zlib.crc32(key.encode()) / 2**32
    return SPLITS[0] if u < shares[0] else SPLITS[1] if u < shares[0] + shares[1] else SPLITS[2]


class NativeSamples:
    """Collects the native series (43 steps and the months) of the pixels a writer exports."""

    def __init__(self, months):
        self.months = tuple(months)
        self.native, self.monthly, self.tables = [], [], []

    def add(self, win: WorldWindow, rows: np.ndarray, cols: np.ndarray, split: list[str]) -> None:
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        ids = win.sim.field[rows, cols]
        table = _rows_table(win.sim, ids, rows, cols, np.ones(len(rows), np.int64), win.name)
        table["row"], table["col"], table["province"], table["split"] = rows, cols, win.province, split
        self.native.append(win.native[:, :, rows, cols].transpose(2, 0, 1))
        self.monthly.append(win.monthly[:, :, rows, cols].transpose(2, 0, 1))
        self.tables.append(table)

    def datasets(self, source: dict) -> tuple[ParcelDataset, ParcelDataset]:
        """(native 43 steps, native at the months) of the same samples, in export order."""
        table = pd.concat(self.tables, ignore_index=True)
        meta = {"source": {**source, "unit": "pixel"}}
        return (
            ParcelDataset(np.concatenate(self.native).astype(np.float32), table, series.BANDS,
                          series.STEP_DAYS_OF_YEAR.copy(), meta),
            ParcelDataset(np.concatenate(self.monthly).astype(np.float32), table.copy(), series.BANDS,
                          month_steps(self.months), meta),
        )  # fmt: skip
