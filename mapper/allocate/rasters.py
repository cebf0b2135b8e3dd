"""A user's rasters on the allocation grid (cropland extent, cropping intensity, spatial indicators): read at
the pieces' cells, refused when they are not on the grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mapper.allocate.grid import AllocationGrid, GridError, Pieces


def _check_header(src, path: Path, grid: AllocationGrid, what: str) -> tuple[int, int]:
    """(row, col) of the grid's cell (ix=0, top row) offset of the raster; GridError when it is not on the grid."""
    res = grid.res_deg
    t = src.transform
    if src.crs is None or src.crs.to_epsg() != 4326:
        raise GridError(f"{what} raster {path}: CRS {src.crs} is not EPSG:4326; warp it to the {grid.name} grid "
                        f"(gdalwarp -t_srs EPSG:4326 -tr {res} {res} -tap)")  # fmt: skip
    if not (np.isclose(t.a, res, rtol=1e-9) and np.isclose(-t.e, res, rtol=1e-9) and t.b == 0 and t.d == 0):
        raise GridError(f"{what} raster {path}: pixel size {t.a} × {-t.e}° is not the {grid.name} grid's {res}°; "
                        f"resample it (gdalwarp -tr {res} {res} -tap)")  # fmt: skip
    col0 = (t.c + 180.0) / res
    row0 = (90.0 - t.f) / res
    if abs(col0 - round(col0)) > 1e-6 or abs(row0 - round(row0)) > 1e-6:
        raise GridError(f"{what} raster {path}: its origin ({t.c}, {t.f}) is not on a cell edge of the "
                        f"{grid.name} grid; align it (gdalwarp -tap -tr {res} {res})")  # fmt: skip
    return round(row0), round(col0)


def check_on_grid(path: Path | str, grid: AllocationGrid, what: str) -> None:
    """The header checks of read_on_grid, before any work (coverage is checked when the cells are known)."""
    import rasterio

    path = Path(path)
    if not path.is_file():
        raise GridError(f"{what} raster {path}: no such file")
    with rasterio.open(path) as src:
        _check_header(src, path, grid, what)


def read_on_grid(path: Path | str, pieces: Pieces, what: str) -> np.ndarray:
    """(bands, n) values at the pieces' cells. The raster must be EPSG:4326 at the grid's resolution with its
    origin on a cell edge and cover every cell; nodata becomes NaN."""
    import rasterio

    path = Path(path)
    if not path.is_file():
        raise GridError(f"{what} raster {path}: no such file")
    grid = pieces.grid
    with rasterio.open(path) as src:
        row0, col0 = _check_header(src, path, grid, what)
        rows = (grid.cells_per_degree * 180 - 1 - pieces.iy) - row0
        cols = pieces.ix - col0
        outside = (rows < 0) | (rows >= src.height) | (cols < 0) | (cols >= src.width)
        if outside.any():
            raise GridError(f"{what} raster {path}: does not cover {int(outside.sum())} cell(s) of the units (the "
                            f"first at {grid.west_north(int(pieces.ix[outside][0]), int(pieces.iy[outside][0]))}); "
                            "extend it over every unit of the statistics")  # fmt: skip
        data = src.read(masked=True).astype(float).filled(np.nan)
    return data[:, rows, cols]
