"""Parcel datasets: the Sentinel-2 series of fields with their crops, from the simulated world or any source.

A dataset is a directory:
    series.npy      float32 (N, bands, T) parcel series (np.save; loaded without pickle)
    parcels.parquet one row per parcel: parcel, code (leaf code), last_code (last year's; 0 unknown),
                    lon, lat, temperature (the world's index, NaN for real data), n_pure, window, province
    dataset.json    bands, steps, taxonomy sha256, source (world seed, province, windows, window size), created
It is written under a temporary name and renamed, so a kill leaves no half dataset.

On the world, parcels are the truth fields of sampled windows: a field's series is the mean of its pure 10 m
pixels (all 25 of a pixel's 2 m samples in the field) after compositing the world's acquisitions with the
same code as a user's files; fields without a pure pixel are left out, as the cropland map would.

With unit="pixel" the samples are single pure, not all-cloud 10 m pixels instead, each with its own composited
series (no averaging): at most max_pixels_per_window drawn uniformly at random per window (seeded by the
window sample's seed and the window's index). Rows are as for parcels — code and last_code of the pixel's
field, parcel = its field id, lon/lat of the pixel's centre, n_pure = 1 — plus row and col (the pixel in its
window's grid). dataset.json's source names the unit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from mapper.croptype import series
from mapper.croptype.composite import composite
from mapper.croptype.taxonomy import Taxonomy, packaged_taxonomy
from mapper.croptype.worldsource import simulate_stack
from mapper.store.json_file import read_json

FORMAT = "mapper-parcels/1"
DEG_PER_KM = 1 / 111.32


class DatasetError(ValueError):
    """A dataset directory is missing, incomplete or does not match the model; the message names the fix."""


@dataclass
class ParcelDataset:
    series: np.ndarray  # (N, B, T) float32
    parcels: pd.DataFrame
    bands: tuple[str, ...]
    steps: np.ndarray
    meta: dict

    def __len__(self) -> int:
        return len(self.parcels)

    def leaves(self, taxonomy: Taxonomy) -> np.ndarray:
        return _leaf_index(self.parcels["code"].to_numpy(), taxonomy, "code")

    def priors(self, taxonomy: Taxonomy) -> np.ndarray:
        """Last year's leaf index per parcel, -1 where unknown."""
        last = self.parcels["last_code"].to_numpy()
        out = np.full(len(last), -1, np.int64)
        known = last > 0
        out[known] = _leaf_index(last[known], taxonomy, "last_code")
        return out

    def subset(self, mask: np.ndarray) -> ParcelDataset:
        return ParcelDataset(self.series[mask], self.parcels[mask].reset_index(drop=True), self.bands, self.steps,
                             self.meta)  # fmt: skip


def _leaf_index(codes: np.ndarray, taxonomy: Taxonomy, column: str) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(taxonomy.codes)}
    unknown = sorted({int(c) for c in np.unique(codes)} - set(lookup))
    if unknown:
        raise DatasetError(
            f"{column} value(s) {unknown} are not leaf codes of the taxonomy ({taxonomy.n_leaves} leaves, codes "
            f"{min(taxonomy.codes)}-{max(taxonomy.codes)}); use the taxonomy the data were labelled with"
        )
    return np.array([lookup[int(c)] for c in codes], np.int64)


def parcel_means(values: np.ndarray, field: np.ndarray, pure: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean series (N, B, T) of each field over its pure, not all-cloud pixels; (field ids, series, counts)."""
    from mapper.croptype.parcels import means_by_label

    ok = pure & np.isfinite(values[0, 0])
    ids, inv = np.unique(field[ok], return_inverse=True)
    return ids, means_by_label(values[:, :, ok], inv, len(ids)), np.bincount(inv, minlength=len(ids))


def _window_composite(world, bounds):
    """The composited series (B, T, H, W) (NaN where all cloud), the world's truth and the pure field pixels."""
    stack, sim = simulate_stack(world, bounds)
    comp = composite(stack)
    return comp.values, sim, (sim.purity >= 1.0) & (sim.field >= 0)


def _pixel_lonlat(sim, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(sim.crs, 4326, always_xy=True)
    x, y = sim.transform @ (np.asarray(cols) + 0.5, np.asarray(rows) + 0.5)  # `*` is deprecated in affine 3
    return to_lonlat.transform(x, y)


def _rows_table(sim, ids: np.ndarray, rows: np.ndarray, cols: np.ndarray, n: np.ndarray, window_name: str):
    """One row per sample: its field's crops and temperature, the lon/lat of pixel (rows, cols)."""
    lon, lat = _pixel_lonlat(sim, rows, cols)
    info = np.array([sim.fields[int(f)] for f in ids]).reshape(-1, 3)
    return pd.DataFrame({
        "parcel": ids.astype(np.int64),
        "code": info[:, 0].astype(np.int64),
        "last_code": info[:, 1].astype(np.int64),
        "lon": lon, "lat": lat, "temperature": info[:, 2],
        "n_pure": n.astype(np.int64),
        "window": window_name,
    })  # fmt: skip


def window_parcels(world, bounds, window_name: str = "") -> tuple[np.ndarray, pd.DataFrame]:
    """Series and rows of the truth fields with a pure pixel in one lon/lat window of the world."""
    values, sim, pure = _window_composite(world, bounds)
    ids, means, n = parcel_means(values, sim.field, pure)
    rows, cols = np.nonzero(pure)
    first = {}
    for f, r, c in zip(sim.field[rows, cols], rows, cols, strict=True):
        first.setdefault(int(f), (r, c))
    rc = np.array([first[int(f)] for f in ids]).reshape(-1, 2)
    return means, _rows_table(sim, ids, rc[:, 0], rc[:, 1], n, window_name)


def window_pixels(world, bounds, max_pixels: int, rng: np.random.Generator,
                  window_name: str = "") -> tuple[np.ndarray, pd.DataFrame]:  # fmt: skip
    """Series (N, B, T) and rows of at most `max_pixels` pure, not all-cloud field pixels of one window, drawn
    uniformly at random without replacement (kept in row-major order)."""
    values, sim, pure = _window_composite(world, bounds)
    rows, cols = np.nonzero(pure & np.isfinite(values[0, 0]))
    if len(rows) > max_pixels:
        keep = np.sort(rng.choice(len(rows), size=max_pixels, replace=False))
        rows, cols = rows[keep], cols[keep]
    ids = sim.field[rows, cols]
    table = _rows_table(sim, ids, rows, cols, np.ones(len(rows), np.int64), window_name)
    table["row"], table["col"] = rows.astype(np.int64), cols.astype(np.int64)
    return np.ascontiguousarray(values[:, :, rows, cols].transpose(2, 0, 1)), table


def sample_windows(geometry, n_windows: int, window_km: float, seed: int) -> list[tuple[float, float, float, float]]:
    """n lon/lat windows of window_km side at random places of blocks lying wholly inside the polygon."""
    from mapper.grid.region import blocks_of_polygon

    blocks = blocks_of_polygon(geometry)
    inside = blocks[blocks["frac_inside"] >= 1.0]
    if inside.empty:
        raise DatasetError("the region has no block wholly inside it; choose a larger region")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(inside), size=min(n_windows, len(inside)), replace=False)
    out = []
    for i in pick:
        row = inside.iloc[int(i)]
        west, south = row["ix"] * 0.05 - 180.0, row["iy"] * 0.05 - 90.0
        dlat = window_km * DEG_PER_KM
        dlon = dlat / math.cos(math.radians(south + 0.025))
        ox, oy = rng.uniform(0, max(0.05 - dlon, 0)), rng.uniform(0, max(0.05 - dlat, 0))
        out.append((west + ox, south + oy, west + ox + min(dlon, 0.05), south + oy + min(dlat, 0.05)))
    return out


UNITS = ("parcel", "pixel")


def _window_samples(world, bounds, k: int, window_name: str, unit: str, max_pixels: int, seed: int):
    if unit == "parcel":
        return window_parcels(world, bounds, window_name=window_name)
    return window_pixels(world, bounds, max_pixels, np.random.default_rng([seed, k]), window_name=window_name)


def simulate_dataset(world, province: str, n_windows: int, window_km: float = 2.0, seed: int = 0,
                     log=lambda msg: None, unit: str = "parcel",
                     max_pixels_per_window: int = 1000) -> ParcelDataset:  # fmt: skip
    """Samples of n windows sampled in a province of the world (the world's truth crops as labels): the truth
    fields' mean series (unit "parcel"), or at most max_pixels_per_window single pure pixels per window
    ("pixel"); see the module doc."""
    from mapper.grid.admin import resolve_province

    if unit not in UNITS:
        raise DatasetError(f"unit {unit!r}: choose one of {', '.join(UNITS)}")
    if unit == "pixel" and max_pixels_per_window < 1:
        raise DatasetError(f"max_pixels_per_window must be at least 1, got {max_pixels_per_window}")
    region = resolve_province(province)
    parts, tables = [], []
    for k, bounds in enumerate(sample_windows(region.geometry, n_windows, window_km, seed)):
        values, table = _window_samples(world, bounds, k, f"{region.name}:{k}", unit, max_pixels_per_window, seed)
        parts.append(values)
        tables.append(table)
        log(f"window {k + 1}/{n_windows}: {len(table)} {unit}s")
    parcels = pd.concat(tables, ignore_index=True)
    parcels["province"] = region.name
    source = {"kind": "world", "world_seed": world.seed, "province": region.name, "windows": n_windows,
              "window_km": window_km, "seed": seed, "unit": unit}  # fmt: skip
    if unit == "pixel":
        source["max_pixels_per_window"] = int(max_pixels_per_window)
    return ParcelDataset(np.concatenate(parts), parcels, series.BANDS, series.STEP_DAYS_OF_YEAR.copy(),
                         {"source": source})  # fmt: skip


def save_dataset(ds: ParcelDataset, directory: Path | str, taxonomy: Taxonomy | None = None) -> Path:
    from mapper.store.atomic import atomic_directory

    taxonomy = taxonomy or packaged_taxonomy()
    ds.leaves(taxonomy)  # every code must be a leaf before anything is written
    meta = {
        **ds.meta,
        "format": FORMAT,
        "n_parcels": len(ds),
        "bands": list(ds.bands),
        "steps": [int(s) for s in ds.steps],
        "taxonomy_sha256": taxonomy.sha256,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        np.save(tmp / "series.npy", ds.series.astype(np.float32), allow_pickle=False)
        ds.parcels.to_parquet(tmp / "parcels.parquet", index=False)
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return directory


def load_dataset(directory: Path | str) -> ParcelDataset:
    directory = Path(directory)
    missing = [n for n in ("series.npy", "parcels.parquet", "dataset.json") if not (directory / n).is_file()]
    if missing:
        raise DatasetError(
            f"{directory} is not a parcel dataset (missing {', '.join(missing)}); write one with "
            "`mapper croptype simulate` or pass the directory it wrote"
        )
    meta = read_json(directory / "dataset.json", FORMAT, "a parcel dataset",
                     "write one with `mapper croptype simulate`", DatasetError)  # fmt: skip
    values = np.load(directory / "series.npy", allow_pickle=False)
    parcels = pd.read_parquet(directory / "parcels.parquet")
    if values.shape[0] != len(parcels) or values.shape[1:] != (len(meta["bands"]), len(meta["steps"])):
        raise DatasetError(
            f"{directory}: series.npy has shape {values.shape} but the dataset lists {len(parcels)} parcels × "
            f"{len(meta['bands'])} bands × {len(meta['steps'])} steps; the directory is damaged — write it again"
        )
    return ParcelDataset(values, parcels, tuple(meta["bands"]), np.asarray(meta["steps"]), meta)


def concat(datasets: list[ParcelDataset]) -> ParcelDataset:
    first = datasets[0]
    for d in datasets[1:]:
        if d.bands != first.bands or not np.array_equal(d.steps, first.steps):
            raise DatasetError("datasets differ in bands or time steps; composite them onto the same steps")
    return ParcelDataset(
        np.concatenate([d.series for d in datasets]),
        pd.concat([d.parcels for d in datasets], ignore_index=True),
        first.bands,
        first.steps,
        {"sources": [d.meta.get("source") for d in datasets]},
    )
