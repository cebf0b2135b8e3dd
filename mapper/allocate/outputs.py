"""What `mapper allocate` writes (each file atomically) into its folder (RUN/allocation by default):

    allocation.tif      a band per crop (band description = crop name), harvested ha per cell, float32,
                        EPSG:4326 on the grid; 0 where nothing was allocated
    allocation.parquet  GeoParquet, a row per piece (cell × unit) and crop with an allocation or a
                        probability: cell (ix_iy), unit, crop, ha, probability, cap_ha, area_ha, cell polygon
    units.csv           per unit and crop: statistic, allocated, unplaced, ha placed by eq. 1 / 5 / 6, rank
    png/<crop>.png      a map per crop (ha per km² of cell), unit boundaries over it
    summary.json        settings, totals, timing, and on the simulated world the fit against the truth
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from mapper.allocate.core import EQ_STEPS, Allocation
from mapper.allocate.grid import Pieces
from mapper.allocate.statistics import CropStatistics
from mapper.store.atomic import atomic_path, atomic_write_text


def write_allocation_outputs(out: Path, pieces: Pieces, stats: CropStatistics, result: Allocation, prob, cap,
                             summary: dict) -> dict:  # fmt: skip
    outputs = {
        "geotiff": str(write_geotiff(out / "allocation.tif", pieces, stats, result.area_ha)),
        "geoparquet": str(write_geoparquet_table(out / "allocation.parquet", pieces, stats, result.area_ha, prob, cap)),
        "units": str(write_unit_table(out / "units.csv", pieces, stats, result)),
        "png": [str(p) for p in crop_pngs(out / "png", pieces, stats, result.area_ha)],
    }
    atomic_write_text(out / "summary.json", json.dumps({**summary, "outputs": outputs}, indent=1, default=float))
    return outputs


def cell_raster(pieces: Pieces, values: np.ndarray):
    """(bands, height, width) sums of per-piece values (n, J) per cell, and the raster's transform."""
    width, height, transform, row, col = pieces.raster_frame()
    grid = np.zeros((values.shape[1], height, width))
    for j in range(values.shape[1]):
        np.add.at(grid[j], (row, col), values[:, j])
    return grid, transform


def write_geotiff(path: Path, pieces: Pieces, stats: CropStatistics, area_ha: np.ndarray) -> Path:
    import rasterio

    data, transform = cell_raster(pieces, area_ha)
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0],
               "dtype": "float32", "crs": "EPSG:4326", "transform": transform, "compress": "deflate",
               "tiled": data.shape[1] >= 256 and data.shape[2] >= 256}  # fmt: skip
    with atomic_path(path, suffix=".tif") as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data.astype(np.float32))
        for b, name in enumerate(stats.names, start=1):
            dst.set_band_description(b, name)
        dst.update_tags(units="harvested ha per cell", grid=pieces.grid.name, level=stats.level)
    return path


def write_geoparquet_table(path: Path, pieces: Pieces, stats: CropStatistics, area_ha, prob, cap) -> Path:
    import geopandas as gpd

    from mapper.grid.region import block_boxes
    from mapper.store.geoparquet import write_geoparquet

    i, j = np.nonzero((area_ha > 0) | (prob > 0))
    codes = pieces.units["code"].to_numpy()
    frame = pd.DataFrame({
        "cell": [f"{x}_{y}" for x, y in zip(pieces.ix[i].tolist(), pieces.iy[i].tolist(), strict=True)],
        "ix": pieces.ix[i], "iy": pieces.iy[i], "unit_code": codes[pieces.unit[i]],
        "crop_code": stats.codes[j], "crop": np.asarray(stats.names)[j], "ha": area_ha[i, j],
        "probability": prob[i, j], "cap_ha": cap[i], "area_ha": pieces.area_ha[i],
    })  # fmt: skip
    geometry = block_boxes(pieces.ix[i], pieces.iy[i], pieces.grid.cells_per_degree)
    return write_geoparquet(gpd.GeoDataFrame(frame, geometry=geometry, crs="EPSG:4326"), path)


def unit_table(pieces: Pieces, stats: CropStatistics, result: Allocation) -> pd.DataFrame:
    allocated = result.allocated_ha(pieces.unit, pieces.n_units)
    rank = np.full(stats.stat_ha.shape, -1)
    for k, order in enumerate(result.order):
        for r, j in enumerate(order[order >= 0]):
            rank[k, j] = r + 1
    k, j = np.nonzero(stats.stat_ha > 0)
    return pd.DataFrame({
        "unit_code": pieces.units["code"].to_numpy()[k], "unit_name": pieces.units["name"].to_numpy()[k],
        "crop": np.asarray(stats.names)[j], "rank": rank[k, j], "statistic_ha": stats.stat_ha[k, j],
        "allocated_ha": allocated[k, j], "unplaced_ha": result.unplaced_ha[k, j],
        **{f"{step}_ha": result.by_step_ha[k, j, s] for s, step in enumerate(EQ_STEPS)},
    })  # fmt: skip


def write_unit_table(path: Path, pieces: Pieces, stats: CropStatistics, result: Allocation) -> Path:
    with atomic_path(path) as tmp:
        unit_table(pieces, stats, result).to_csv(tmp, index=False, float_format="%.4f")
    return path


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def crop_pngs(folder: Path, pieces: Pieces, stats: CropStatistics, area_ha: np.ndarray) -> list[Path]:
    """A map per crop: harvested ha per km² of each cell (cells of the units only), unit boundaries over it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data, transform = cell_raster(pieces, area_ha)
    inside, _ = cell_raster(pieces, pieces.area_ha[:, None])
    km2 = np.where(inside[0] > 0, inside[0] / 100.0, np.nan)
    west, north = transform.c, transform.f
    extent = (west, west + transform.a * data.shape[2], north + transform.e * data.shape[1], north)
    paths = []
    for j, name in enumerate(stats.names):
        density = data[j] / km2
        fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=110)
        finite = density[np.isfinite(density)]
        top = float(np.percentile(finite, 99.5)) if finite.size else 1.0  # a few border slivers would wash it out
        shown = ax.imshow(np.ma.masked_invalid(density), extent=extent, cmap="YlGn", vmin=0, vmax=max(top, 1e-9),
                          interpolation="nearest")  # fmt: skip
        pieces.units.boundary.plot(ax=ax, color="0.3", linewidth=0.6)
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        ax.set_title(f"{name}: {area_ha[:, j].sum():,.0f} ha harvested ({pieces.grid.name} grid)")
        ax.set_xlabel("longitude (°)")
        ax.set_ylabel("latitude (°)")
        fig.colorbar(shown, ax=ax, label="ha per km² of cell", shrink=0.8, extend="max")
        fig.tight_layout()
        path = folder / f"{_slug(name)}.png"
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
        paths.append(path)
    return paths
