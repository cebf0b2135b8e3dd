"""Exact pixel grids of the EPSG:3857 XYZ tile pyramid.

Every z-level pixel has integer global coordinates (col, row) counted from the top-left corner of the
Web Mercator square. A block's grid is a window of those pixels, so its affine transform follows from
integer arithmetic alone and two blocks never share or resample a pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from affine import Affine

EARTH_RADIUS = 6378137.0  # WGS84 semi-major axis, the sphere of EPSG:3857
ORIGIN_SHIFT = math.pi * EARTH_RADIUS  # 20037508.342789244
TILE_SIZE = 256


def pixel_size(zoom: int) -> float:
    """Width of one pixel in EPSG:3857 metres at `zoom` (2.3887 m at z16)."""
    return 2 * ORIGIN_SHIFT / (TILE_SIZE * 2**zoom)


def lonlat_to_mercator(lon, lat):
    """WGS84 degrees to EPSG:3857 metres (spherical Web Mercator formulas on geodetic latitude)."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    x = np.radians(lon) * EARTH_RADIUS
    y = np.log(np.tan(np.pi / 4 + np.radians(lat) / 2)) * EARTH_RADIUS
    return x, y


def mercator_to_lonlat(x, y):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    lon = np.degrees(x / EARTH_RADIUS)
    lat = np.degrees(2 * np.arctan(np.exp(y / EARTH_RADIUS)) - np.pi / 2)
    return lon, lat


def lonlat_to_global_pixel(lon, lat, zoom: int):
    """Continuous global pixel coordinates (col, row) of a point; integers fall on pixel corners."""
    x, y = lonlat_to_mercator(lon, lat)
    res = pixel_size(zoom)
    return (x + ORIGIN_SHIFT) / res, (ORIGIN_SHIFT - y) / res


def global_pixel_to_lonlat(col, row, zoom: int):
    res = pixel_size(zoom)
    col = np.asarray(col, dtype=np.float64)
    row = np.asarray(row, dtype=np.float64)
    return mercator_to_lonlat(col * res - ORIGIN_SHIFT, ORIGIN_SHIFT - row * res)


@dataclass(frozen=True)
class PixelWindow:
    """A rectangle of global pixels at one zoom: columns [col0, col1), rows [row0, row1)."""

    zoom: int
    col0: int
    row0: int
    col1: int
    row1: int

    @property
    def width(self) -> int:
        return self.col1 - self.col0

    @property
    def height(self) -> int:
        return self.row1 - self.row0

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def size(self) -> int:
        return self.height * self.width

    @property
    def transform(self) -> Affine:
        res = pixel_size(self.zoom)
        return Affine(res, 0.0, self.col0 * res - ORIGIN_SHIFT, 0.0, -res, ORIGIN_SHIFT - self.row0 * res)

    @property
    def mercator_bounds(self) -> tuple[float, float, float, float]:
        res = pixel_size(self.zoom)
        return (
            self.col0 * res - ORIGIN_SHIFT,
            ORIGIN_SHIFT - self.row1 * res,
            self.col1 * res - ORIGIN_SHIFT,
            ORIGIN_SHIFT - self.row0 * res,
        )

    def tiles(self) -> list[tuple[int, int]]:
        """(x, y) of the tiles at this zoom that the window touches, row-major."""
        tx0, tx1 = self.col0 // TILE_SIZE, (self.col1 - 1) // TILE_SIZE
        ty0, ty1 = self.row0 // TILE_SIZE, (self.row1 - 1) // TILE_SIZE
        return [(tx, ty) for ty in range(ty0, ty1 + 1) for tx in range(tx0, tx1 + 1)]

    def row_center_latitudes(self) -> np.ndarray:
        """Geodetic latitude (degrees) at the centre of each pixel row."""
        rows = np.arange(self.row0, self.row1, dtype=np.float64) + 0.5
        return global_pixel_to_lonlat(np.zeros_like(rows), rows, self.zoom)[1]


def window_for_lonlat_bounds(west: float, south: float, east: float, north: float, zoom: int) -> PixelWindow:
    """The pixels whose centres lie inside the lon/lat box (half-open on the east and south edges).

    Taking pixels by their centres makes adjacent boxes partition the pixel grid exactly: each pixel
    belongs to one block, so areas summed over blocks count no pixel twice.
    """
    c_w, r_n = lonlat_to_global_pixel(west, north, zoom)
    c_e, r_s = lonlat_to_global_pixel(east, south, zoom)
    col0 = math.ceil(float(c_w) - 0.5)
    col1 = math.ceil(float(c_e) - 0.5)
    row0 = math.ceil(float(r_n) - 0.5)
    row1 = math.ceil(float(r_s) - 0.5)
    return PixelWindow(zoom, col0, row0, col1, row1)
