"""Per-parcel series: the mean composite over each field polygon's pure pixels.

A pixel is pure for a parcel when its whole square lies inside the polygon (shapely's `within`: touching
the boundary from inside counts, so fields drawn along pixel edges keep their edge pixels). A parcel
without a pure pixel falls back to the pixels whose centre lies inside it (flagged `used_fallback`); one
without either is NaN (flagged `no_pixels`). All-cloud pixels (NaN) are left out of the means.

Each pixel belongs to at most one parcel: where polygons overlap, the later parcel in the table takes the
pixels whose centres lie in both (field polygons do not overlap, so this only settles digitising slivers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine


class ParcelError(ValueError):
    """Parcels cannot be matched to the raster; the message names the fix."""


@dataclass(frozen=True)
class ParcelSeries:
    series: np.ndarray  # (N, B, T) float32 reflectance; NaN where no pixel or all cloud
    n_pure: np.ndarray  # (N,) int: pixels wholly inside
    n_used: np.ndarray  # (N,) int: pixels averaged (the pure ones, or the centre-inside fallback)
    used_fallback: np.ndarray  # (N,) bool
    no_pixels: np.ndarray  # (N,) bool: neither a pure pixel nor a pixel centre inside
    ids: np.ndarray  # (N,) the parcels' ids (id column, or the GeoDataFrame's index)
    centre: np.ndarray | None = None  # (H, W) int32: the parcel (row number) holding each pixel's centre, -1 none


_POLYGONAL = (3, 6)  # shapely type ids of Polygon and MultiPolygon


def _polygon_parts(g):
    """The polygons of a repaired geometry (make_valid may return a collection with lines and points)."""
    parts = [p for p in shapely.get_parts(g) if shapely.get_type_id(p) in _POLYGONAL]
    return shapely.union_all(parts) if parts else None


def polygonal_geoms(geoms: np.ndarray) -> np.ndarray:
    """Valid polygon geometries, None where there is none: broken rings repaired, lines and points dropped."""
    geoms = np.asarray(geoms, dtype=object).copy()
    present = ~shapely.is_missing(geoms)
    present[present] = ~shapely.is_empty(geoms[present])
    geoms[~present] = None
    fix = present.copy()
    fix[present] = ~shapely.is_valid(geoms[present]) | ~np.isin(shapely.get_type_id(geoms[present]), _POLYGONAL)
    for i in np.flatnonzero(fix):  # only the rare broken or non-polygon geometry
        geoms[i] = _polygon_parts(shapely.make_valid(geoms[i]))
    return geoms


def _grow(mask: np.ndarray) -> np.ndarray:
    """The mask and its 8 neighbours."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    grown = out.copy()
    grown[:, 1:] |= out[:, :-1]
    grown[:, :-1] |= out[:, 1:]
    return grown


def pixel_boxes(rows: np.ndarray, cols: np.ndarray, transform: Affine) -> np.ndarray:
    """The squares of pixels (rows, cols) as shapely polygons."""
    dr = np.array([0, 0, 1, 1, 0])
    dc = np.array([0, 1, 1, 0, 0])
    x, y = transform @ (cols[:, None] + dc, rows[:, None] + dr)
    return shapely.polygons(np.stack([x, y], axis=-1))


def pixel_membership(geoms: np.ndarray, transform: Affine, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(centre, pure): per pixel the index of the parcel holding its centre (-1: none) and whether the pixel
    lies wholly inside that parcel."""
    from rasterio.features import rasterize

    shapes = [(g, i) for i, g in enumerate(geoms) if g is not None]
    if not shapes:
        return np.full(shape, -1, np.int32), np.zeros(shape, bool)
    centre = rasterize(shapes, out_shape=shape, transform=transform, fill=-1, dtype="int32", all_touched=False)
    boundaries = [(b, 1) for b in shapely.boundary([g for g, _ in shapes])]
    edges = rasterize(boundaries, out_shape=shape, transform=transform, fill=0, dtype="uint8", all_touched=True)
    edges = edges.astype(bool)
    # Pixels away from every boundary are inside whole; those near one are tested exactly. One pixel of
    # margin guards against a boundary that GDAL's line rasterisation misses by rounding.
    near = _grow(edges) & (centre >= 0)
    pure = (centre >= 0) & ~near
    rows, cols = np.nonzero(near)
    if rows.size:
        shapely.prepare(geoms[np.unique(centre[rows, cols])])
        pure[rows, cols] = shapely.within(pixel_boxes(rows, cols, transform), geoms[centre[rows, cols]])
    return centre, pure


def means_by_label(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """(N, B, T) NaN-ignoring means of values (B, T, M) grouped by labels (M,)."""
    b, t = values.shape[:2]
    out = np.full((n, b * t), np.nan, np.float32)
    flat = values.reshape(b * t, -1)
    for k in range(b * t):  # one bincount per band and step, vectorised over pixels
        v = flat[k]
        ok = np.isfinite(v)
        sums = np.bincount(labels, weights=np.where(ok, v, 0), minlength=n)
        counts = np.bincount(labels, weights=ok, minlength=n)
        np.divide(sums, counts, out=out[:, k], where=counts > 0, casting="unsafe")
    return out.reshape(n, b, t)


def parcel_series(values: np.ndarray, transform: Affine, crs, parcels, id_column: str | None = None) -> ParcelSeries:
    """Each parcel's (B, T) series from a composite's values (B, T, H, W) on grid (transform, crs)."""
    if values.ndim != 4:
        raise ParcelError(f"values must be (bands, steps, height, width), got shape {values.shape}")
    if parcels.crs is None:
        raise ParcelError("the parcels have no CRS; set it (GeoDataFrame.set_crs, or a .prj beside the shapefile)")
    if id_column is not None and id_column not in parcels.columns:
        raise ParcelError(f"parcels have no column {id_column!r}; columns: {', '.join(map(str, parcels.columns))}")
    ids = parcels.index.to_numpy() if id_column is None else parcels[id_column].to_numpy()
    geoms = polygonal_geoms(parcels.to_crs(crs.to_wkt() if hasattr(crs, "to_wkt") else crs).geometry.to_numpy())
    n = len(geoms)
    centre, pure = pixel_membership(geoms, transform, values.shape[2:])
    inside = centre >= 0
    n_pure = np.bincount(centre[pure], minlength=n)
    n_centre = np.bincount(centre[inside], minlength=n)
    fallback = (n_pure == 0) & (n_centre > 0)
    use = pure.copy()
    use[inside] |= fallback[centre[inside]]
    labels = centre[use]
    series = means_by_label(values[:, :, use], labels, n)
    return ParcelSeries(series, n_pure, np.bincount(labels, minlength=n), fallback, n_centre == 0, ids, centre)
