"""Cropland area per administrative unit in true ground m², each pixel counted once.

A block's pixels are given to units by the pixel-centre rule on the native EPSG:3857 grid: a pixel belongs
to the unit whose polygon contains its centre. Adjacent blocks share no pixel and adjacent units share no
pixel centre, so summing units over blocks counts no cropland twice and loses none inside the units. Each
pixel is weighted by its exact ellipsoidal ground area (constant along a row), not its mercator area.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely
from rasterio.features import rasterize

from mapper.grid.area import row_pixel_areas
from mapper.grid.tilegrid import PixelWindow, lonlat_to_mercator

MAX_UNITS = int(np.iinfo(np.uint16).max)  # labels are uint16 and 0 means "no unit"
_MARGIN_PX = 2  # clip geometries to the window plus this margin before rasterizing (speed only)


def unit_labels(window: PixelWindow, geometries: Sequence) -> np.ndarray:
    """uint16 raster of `window.shape`: i + 1 where the pixel centre lies in geometries[i], 0 outside all.

    Geometries are EPSG:4326 (Multi)Polygons, projected with the grid's own spherical mercator. Units may
    touch; where they overlap (slivers in the boundary data) the later geometry wins, so a pixel still
    belongs to one unit only. Geometries that miss the window (or are None/empty) are simply absent.
    """
    geometries = list(geometries)
    if len(geometries) > MAX_UNITS:
        raise ValueError(f"{len(geometries)} geometries do not fit uint16 labels; split them (at most {MAX_UNITS})")
    labels = np.zeros(window.shape, dtype=np.uint16)
    if not geometries or window.height <= 0 or window.width <= 0:
        return labels
    merc = [_to_mercator(g, i) for i, g in enumerate(geometries)]
    window_box = shapely.box(*window.mercator_bounds)
    hits = [(i, g) for i, g in enumerate(merc) if g is not None and shapely.intersects(g, window_box)]
    if len(hits) == 1 and shapely.contains(hits[0][1], window_box):
        labels.fill(hits[0][0] + 1)  # wholly inside one unit: no rasterizing needed
        return labels
    clip = _clip_box(window)
    shapes = [(shapely.clip_by_rect(g, *clip), i + 1) for i, g in hits]
    shapes = [(g, v) for g, v in shapes if not g.is_empty]
    if not shapes:
        return labels
    # rasterize burns shapes in order (merge_alg REPLACE), hence "the later one wins"; all_touched=False
    # is GDAL's pixel-centre rule.
    return rasterize(shapes, out=labels, transform=window.transform, fill=0, all_touched=False)


def cropland_by_unit(mask: np.ndarray, window: PixelWindow, labels: np.ndarray, n_units: int) -> np.ndarray:
    """Ground m² (float64, shape (n_units,)) of the cropland pixels (mask == 1) of each unit.

    Mask values other than 1 (0 = not cropland, 255 = no imagery) count as no cropland.
    """
    _check_labels(window, labels, n_units)
    _check_mask(window, mask)
    selected = mask == 1
    return _sum_by_label(window, labels, n_units, selected)


def unit_areas_m2(window: PixelWindow, labels: np.ndarray, n_units: int) -> np.ndarray:
    """Ground m² (float64, shape (n_units,)) of all the window's pixels of each unit: the denominators of
    area fractions, and a check of how much of a unit the window covers."""
    _check_labels(window, labels, n_units)
    return _sum_by_label(window, labels, n_units, None)


def window_area_m2(window: PixelWindow) -> float:
    """Ground m² of the whole window."""
    return float(row_pixel_areas(window).sum() * window.width)


def _sum_by_label(window: PixelWindow, labels: np.ndarray, n_units: int, selected: np.ndarray | None) -> np.ndarray:
    """Per-label sums of pixel ground areas, vectorised with one weighted bincount."""
    weights = np.broadcast_to(row_pixel_areas(window)[:, None], window.shape)
    if selected is None:
        lab, w = labels.ravel(), weights.ravel()
    else:
        lab, w = labels[selected], weights[selected]
    sums = np.bincount(lab.astype(np.intp, copy=False), weights=w, minlength=n_units + 1)
    return sums[1 : n_units + 1].astype(np.float64, copy=False)


def _to_mercator(geometry, index: int):
    """EPSG:4326 geometry -> EPSG:3857 (None for None/empty), refusing coordinates that are not degrees."""
    if geometry is None or shapely.is_empty(geometry):
        return None
    west, south, east, north = shapely.bounds(geometry)
    if west < -180 or east > 180 or south < -90 or north > 90:
        raise ValueError(
            f"geometry {index} has bounds {(west, south, east, north)}, not lon/lat degrees: "
            "give EPSG:4326 geometries (e.g. GeoDataFrame.to_crs('EPSG:4326'))"
        )
    return shapely.transform(geometry, _lonlat_to_mercator_xy)


def _lonlat_to_mercator_xy(coords: np.ndarray) -> np.ndarray:
    x, y = lonlat_to_mercator(coords[:, 0], coords[:, 1])
    return np.column_stack([x, y])


def _clip_box(window: PixelWindow) -> tuple[float, float, float, float]:
    """The window's mercator box grown by a small margin, so clipping never moves an edge the window sees."""
    west, south, east, north = window.mercator_bounds
    m = _MARGIN_PX * (east - west) / window.width
    return west - m, south - m, east + m, north + m


def _check_labels(window: PixelWindow, labels: np.ndarray, n_units: int) -> None:
    labels = np.asarray(labels)
    if labels.shape != window.shape:
        raise ValueError(
            f"labels shape {labels.shape} does not match the window {window.shape}; use unit_labels(window)"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an integer raster (uint16 from unit_labels), got {labels.dtype}")
    if n_units < 0:
        raise ValueError(f"n_units must be >= 0, got {n_units}")
    if labels.size and (labels.min() < 0 or labels.max() > n_units):
        raise ValueError(
            f"labels range {labels.min()}..{labels.max()} exceeds 0..{n_units}: "
            "pass n_units = the number of geometries given to unit_labels"
        )


def _check_mask(window: PixelWindow, mask: np.ndarray) -> None:
    if mask.shape != window.shape:
        raise ValueError(f"mask shape {mask.shape} does not match the window {window.shape}")
    if mask.dtype not in (np.uint8, np.bool_):
        raise ValueError(
            f"mask must be uint8 (0 = not cropland, 1 = cropland, 255 = no imagery), got {mask.dtype}; "
            "convert with mask.astype(np.uint8)"
        )
