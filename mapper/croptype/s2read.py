"""Read Sentinel-2 L2A files as users download them into one stack of dates × bands on a 10 m UTM grid.

Three layouts (see mapper.croptype.s2layout for how each file's kind is told): one multiband GeoTIFF per
date, one GeoTIFF per band with dates as layers, or one stack of dates × bands (date-major) with the bands
and dates given by the user. Headers are opened and checked first; pixels are read only when every check
passes. Values stay L2A digital numbers (reflectance × 10 000, 0 = nodata): files must hold them without
the +1000 offset of processing baseline 04.00 (harmonised products, e.g. Earth Engine's S2_SR_HARMONIZED,
already removed it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from mapper.croptype import s2names
from mapper.croptype.s2layout import Header, Plan, normalise_bands, plan_read
from mapper.croptype.s2names import SCL, S2ReadError

__all__ = ["MissingBandsError", "S2ReadError", "S2Stack", "check_s2", "read_s2", "require_bands"]

# SCL classes that are not a clear view of the ground: nodata, saturated/defective, cloud shadow, cloud
# medium / high probability, thin cirrus, snow. Dark, vegetation, bare, water and unclassified are kept.
SCL_INVALID = (0, 1, 3, 8, 9, 10, 11)


class MissingBandsError(S2ReadError):
    """The data lack bands a model needs."""


@dataclass(frozen=True)
class S2Stack:
    data: np.ndarray  # (D, B, H, W) uint16 L2A digital numbers, 0 = nodata
    valid: np.ndarray  # (D, H, W) bool: data there and a clear view (SCL) where SCL was given
    dates: list[dt.date]  # ascending
    bands: tuple[str, ...]
    crs: CRS
    transform: Affine
    sources: tuple[Path, ...]
    cloud_masked: bool = False  # whether an SCL layer set `valid`
    layout: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape[2], self.data.shape[3]

    @property
    def days_of_year(self) -> np.ndarray:
        return np.array([d.timetuple().tm_yday for d in self.dates], np.int64)

    def select(self, bands) -> S2Stack:
        """The stack with only `bands`, in that order (an error names any missing)."""
        idx = require_bands(self, bands)
        return replace(self, data=self.data[:, list(idx)], bands=tuple(self.bands[i] for i in idx))


def require_bands(stack_or_bands, needed) -> tuple[int, ...]:
    """Indices of `needed` in the stack's (or a band list's) bands; MissingBandsError lists any missing."""
    have = tuple(stack_or_bands.bands if hasattr(stack_or_bands, "bands") else normalise_bands(stack_or_bands))
    needed = normalise_bands(needed)
    missing = [b for b in needed if b not in have]
    if missing:
        raise MissingBandsError(
            f"missing {', '.join(missing)}: {', '.join(needed)} are needed and the data hold {', '.join(have)}; "
            "download the missing L2A bands (20 m ones are resampled to 10 m on read) or use a model trained on "
            "the bands present"
        )
    return tuple(have.index(b) for b in needed)


def _user_dates(dates, dates_file) -> list[dt.date] | None:
    if dates is not None and dates_file is not None:
        raise S2ReadError("both dates and a dates file are given; pass one of them")
    if dates_file is not None:
        return s2names.read_dates_file(dates_file)
    if dates is None:
        return None
    if isinstance(dates, Path) or (isinstance(dates, str) and Path(dates).is_file()):
        return s2names.read_dates_file(dates)
    if isinstance(dates, str):
        dates = [d for d in dates.replace(",", " ").split() if d]
    return s2names.as_dates(dates)


def _window(window, grid: Header) -> Window:
    """A whole-pixel window of the grid: a rasterio Window, or bounds (left, bottom, right, top) in the grid's
    CRS rounded outwards; clipped to the grid."""
    from rasterio.windows import from_bounds

    full = Window(0, 0, grid.width, grid.height)
    if window is None:
        return full
    if not isinstance(window, Window):
        if len(window) != 4:
            raise S2ReadError(f"window {window!r} is neither a rasterio Window nor bounds (left, bottom, right, top)")
        window = from_bounds(*window, transform=grid.transform)
    col0, row0 = int(np.floor(window.col_off + 1e-9)), int(np.floor(window.row_off + 1e-9))
    col1 = int(np.ceil(window.col_off + window.width - 1e-9))
    row1 = int(np.ceil(window.row_off + window.height - 1e-9))
    col0, row0, col1, row1 = max(col0, 0), max(row0, 0), min(col1, grid.width), min(row1, grid.height)
    if col1 <= col0 or row1 <= row0:
        raise S2ReadError(
            "the window lies outside the files' extent ({:.0f}, {:.0f}, {:.0f}, {:.0f} in {}); pass a window "
            "inside it".format(*grid.bounds, grid.crs.to_string())
        )
    return Window(col0, row0, col1 - col0, row1 - row0)


def _read_file(h: Header, indexes: list[int], window: Window, grid: Header) -> np.ndarray:
    """(len(indexes), h, w) of one file on the grid's window; coarser files resampled by nearest."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.windows import bounds, from_bounds

    with rasterio.open(h.path) as ds:
        if h.same_grid(grid):
            out = ds.read(indexes, window=window)
        else:  # a 20 m / 60 m file on the same extent: its fractional window, upsampled
            src = from_bounds(*bounds(window, grid.transform), transform=ds.transform)
            out = ds.read(indexes, window=src, out_shape=(len(indexes), int(window.height), int(window.width)),
                          resampling=Resampling.nearest)  # fmt: skip
    if h.nodata is not None and h.nodata != 0:
        out = np.where(out == h.nodata, 0, out)  # one nodata value for every file
    if out.dtype != np.uint16:
        out = np.clip(out, 0, np.iinfo(np.uint16).max)
    return out.astype(np.uint16, copy=False)


def _read_plan(plan: Plan, window: Window) -> tuple[np.ndarray, np.ndarray | None]:
    d_of = {d: i for i, d in enumerate(plan.dates)}
    b_of = {b: i for i, b in enumerate(plan.bands)}
    shape = (int(window.height), int(window.width))
    data = np.zeros((len(plan.dates), len(plan.bands), *shape), np.uint16)
    scl = np.zeros((len(plan.dates), *shape), np.uint16) if plan.has_scl else None
    by_file: dict[Path, list] = {}
    for layer in plan.layers:
        by_file.setdefault(layer.header.path, []).append(layer)
    for layers in by_file.values():
        pixels = _read_file(layers[0].header, [lay.index for lay in layers], window, plan.grid)
        for layer, layer_pixels in zip(layers, pixels, strict=True):
            if layer.band == SCL:
                scl[d_of[layer.date]] = layer_pixels
            else:
                data[d_of[layer.date], b_of[layer.band]] = layer_pixels
    return data, scl


def check_s2(paths, bands=None, dates=None, dates_file=None):
    """Every header check of read_s2, no pixels read: the read plan (its grid, dates and bands)."""
    return plan_read(paths, bands=bands, dates=_user_dates(dates, dates_file))


def read_s2(paths, bands=None, dates=None, dates_file=None, window=None) -> S2Stack:
    """Sentinel-2 L2A files (paths, or a folder of .tif files) as an S2Stack.

    `bands`: for files that do not name their layers, the layer names in order (may include SCL); where the
    files name them, the bands to keep, in that order. `dates` (dates, YYYY-MM-DD strings or a dates file's
    path) or `dates_file`: for files that carry no dates — one per file for per-date files, one per layer for
    per-band files, one per date for a stack. `window`: a rasterio Window or (left, bottom, right, top) in the
    files' CRS, to read a part of big files.
    """
    plan = plan_read(paths, bands=bands, dates=_user_dates(dates, dates_file))
    win = _window(window, plan.grid)
    data, scl = _read_plan(plan, win)
    valid = (data > 0).all(axis=1)  # L2A nodata is 0 in every band
    if scl is not None:
        valid &= ~np.isin(scl, SCL_INVALID)
    from rasterio.windows import transform as window_transform

    return S2Stack(
        data=data,
        valid=valid,
        dates=list(plan.dates),
        bands=plan.bands,
        crs=plan.grid.crs,
        transform=window_transform(win, plan.grid.transform),
        sources=tuple(dict.fromkeys(lay.header.path for lay in plan.layers)),
        cloud_masked=scl is not None,
        layout=plan.layout,
    )
