"""Write Sentinel-2 acquisitions the way users download them: one GeoTIFF per date (layout (a) of s2read):
the bands then SCL as uint16 layers with their names as band descriptions, the date in the dataset tag
ACQUISITION_DATE, nodata 0, DEFLATE with the horizontal predictor, tiled. Each file is written under a
temporary name and renamed, so a kill never leaves a half file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import rasterio

from mapper.store.atomic import atomic_path


def write_date(path: Path, data: np.ndarray, scl: np.ndarray | None, bands, date: dt.date, crs, transform) -> Path:
    """data (B, H, W) uint16 digital numbers; scl (H, W) or None."""
    layers = [*data] + ([scl.astype(np.uint16)] if scl is not None else [])
    names = [*bands] + (["SCL"] if scl is not None else [])
    h, w = data.shape[1:]
    profile = {
        "driver": "GTiff", "width": w, "height": h, "count": len(layers), "dtype": "uint16", "crs": crs,
        "transform": transform, "nodata": 0, "compress": "deflate", "predictor": 2, "tiled": True,
        "blockxsize": 256, "blockysize": 256,
    }  # fmt: skip
    if w < 256 or h < 256:
        profile.update(tiled=False, blockxsize=None, blockysize=None)
        profile = {k: v for k, v in profile.items() if v is not None}
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        for i, (layer, name) in enumerate(zip(layers, names, strict=True), start=1):
            dst.write(layer, i)
            dst.set_band_description(i, name)
        dst.update_tags(ACQUISITION_DATE=date.isoformat())
    return path


def write_dates(directory: Path, data: np.ndarray, scl: np.ndarray | None, bands, dates, crs, transform,
                prefix: str = "S2") -> list[Path]:  # fmt: skip
    """data (D, B, H, W): one file `{prefix}_{YYYYMMDD}.tif` per date."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for i, d in enumerate(dates):
        layer_scl = None if scl is None else scl[i]
        out.append(write_date(directory / f"{prefix}_{d:%Y%m%d}.tif", data[i], layer_scl, bands, d, crs, transform))
    return out
