"""The allocation grid and its pieces: a regular lon/lat grid (the 0.05° block grid by default, 5 arcmin —
the seed's ~10 km — as an option) cut by the administrative units of the statistics.

A piece is a cell's part inside one unit; its area is the cell's exact ellipsoidal area times the share of
the cell inside the unit (mapper.grid.region.cells_of_polygon), so the pieces of a unit add up to its area.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
from rasterio.transform import Affine

from mapper.grid.area import band_area_m2
from mapper.grid.blocks import CELLS_PER_DEGREE
from mapper.grid.region import cells_of_polygon

GRIDS = {"block": CELLS_PER_DEGREE, "5arcmin": 12}  # cells per degree: 0.05° and 5′


class GridError(ValueError):
    """A grid name or a raster that does not fit the allocation grid; the message names the fix."""


@dataclass(frozen=True)
class AllocationGrid:
    name: str
    cells_per_degree: int

    @classmethod
    def named(cls, name: str) -> AllocationGrid:
        if name not in GRIDS:
            raise GridError(f"unknown grid {name!r}; use one of {', '.join(GRIDS)}")
        return cls(name, GRIDS[name])

    @property
    def res_deg(self) -> float:
        return 1.0 / self.cells_per_degree

    def cell_area_ha(self, iy: np.ndarray) -> np.ndarray:
        """Exact WGS84 ellipsoidal area of the cells of rows iy (area only depends on the row)."""
        d = self.cells_per_degree
        south = np.asarray(iy, float) / d - 90.0
        return band_area_m2(south, south + 1.0 / d, 1.0 / d) / 1e4

    def west_north(self, ix: int, iy: int) -> tuple[float, float]:
        return ix / self.cells_per_degree - 180.0, (iy + 1) / self.cells_per_degree - 90.0


@dataclass
class Pieces:
    grid: AllocationGrid
    units: gpd.GeoDataFrame  # code, name, geometry (EPSG:4326), one row per unit, in unit-index order
    ix: np.ndarray  # (n,) cell column
    iy: np.ndarray  # (n,) cell row (south to north)
    unit: np.ndarray  # (n,) unit index
    frac: np.ndarray  # (n,) share of the cell inside the unit
    area_ha: np.ndarray  # (n,) true ground area of the piece

    def __len__(self) -> int:
        return len(self.ix)

    @property
    def n_units(self) -> int:
        return len(self.units)

    def raster_frame(self) -> tuple[int, int, Affine, np.ndarray, np.ndarray]:
        """(width, height, transform, row, col) of the smallest raster on the grid holding every piece; row and
        col place each piece (north-up)."""
        x0, x1, y0, y1 = int(self.ix.min()), int(self.ix.max()), int(self.iy.min()), int(self.iy.max())
        west, north = self.grid.west_north(x0, y1)
        res = self.grid.res_deg
        transform = Affine(res, 0.0, west, 0.0, -res, north)
        return x1 - x0 + 1, y1 - y0 + 1, transform, y1 - self.iy, self.ix - x0

    def cell_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ix, iy, inverse) of the distinct cells: inverse maps each piece to its cell."""
        key = self.iy.astype(np.int64) * (360 * self.grid.cells_per_degree) + self.ix
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        return self.ix[first], self.iy[first], inverse


def unit_pieces(grid: AllocationGrid, units: gpd.GeoDataFrame) -> Pieces:
    """The pieces of every unit (rows of `units`, with code, name, geometry in EPSG:4326)."""
    parts = [cells_of_polygon(geom, grid.cells_per_degree) for geom in units.geometry]
    ix = np.concatenate([p[0] for p in parts]).astype(np.int64)
    iy = np.concatenate([p[1] for p in parts]).astype(np.int64)
    frac = np.concatenate([p[2] for p in parts])
    unit = np.repeat(np.arange(len(parts)), [len(p[0]) for p in parts])
    return Pieces(grid, units.reset_index(drop=True), ix, iy, unit, frac, frac * grid.cell_area_ha(iy))
