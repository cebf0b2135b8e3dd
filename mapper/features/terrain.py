"""Terrain features of a block from a DEM: elevation, slope, TRI and roughness medians, as `gdaldem` computes them.

Each output cell looks at the 3 × 3 window of elevations around it, numbered as gdaldem numbers them:

    z0 z1 z2
    z3 z4 z5      (north up; x = east-west cell size, y = north-south cell size)
    z6 z7 z8

- Slope, Horn (1981): dz/dx = ((z0 + 2·z3 + z6) − (z2 + 2·z5 + z8)) / (8·x),
  dz/dy = ((z6 + 2·z7 + z8) − (z0 + 2·z1 + z2)) / (8·y), slope = atan(√(dz/dx² + dz/dy²)) in degrees.
- TRI, Riley et al. (1999), gdaldem's default since GDAL 3.3: √Σₖ (zₖ − z4)².
- Roughness (Wilson et al. 2007, after Dartnell 2000): max − min of the window.

Edges and nodata follow gdaldem exactly: by default a window that reaches past the raster or holds a nodata
cell gives nodata (so the outer 1-cell border is always nodata); with `compute_edges` the missing row or
column is extrapolated linearly (2·a − b, from the two cells next to it) and nodata neighbours take the
centre's value. Arithmetic follows gdaldem's types and order of operations, so the results agree with it
bit for bit (checked against the `gdaldem` program in tests/test_terrain.py).

Geographic DEMs. gdaldem divides by the geotransform's cell size, in degrees for a lat/lon DEM, and by one
`-s` scale factor for the whole raster (`-s 111120`, metres per degree, is the usual trick). That is about
right north-south but overstates east-west distances by 1/cos φ: at 60° N a 10° east-facing slope comes out
as 5°. gdaldem up to GDAL 3.10 (Debian 12 ships 3.6.2) neither warns nor scales without `-s`, and gives
near-vertical slopes (median 89.9° on the test tile at 43° N); GDAL 3.11 (PR 12057) sets the scales itself,
x from the cosine of the raster's mean latitude, still one factor per raster. mapper scales every row by its
own latitude φ on the CRS's ellipsoid (a, e²): x = Δλ · (π/180) · a·cos φ / √(1 − e² sin² φ) and
y = Δφ · (π/180) · a(1 − e²) / (1 − e² sin² φ)^{3/2}, in metres (`geographic_spacing`);
`slope_horn(z, gt.a, gt.e, scale=s)` reproduces `gdaldem slope -s s` instead. Projected DEMs use their cell
size in metres, unscaled (right for UTM; a Web Mercator DEM would need its 1/cos φ scale factor removed).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from numba import njit

PRODUCTS = ("slope", "tri", "roughness")
TERRAIN_FEATURES = ("elevation_median", "slope_median_deg", "tri_median", "roughness_median")  # block features
_RAD_TO_DEG = 180.0 / math.pi
_INTEGER_DTYPES = (np.uint8, np.uint16, np.int16)  # the types gdaldem computes in integers
_EDGE_TOL_DEG = 1e-9  # cell centres exactly on a block edge belong to the block east / north of it


class DemError(ValueError):
    """A DEM that cannot be used: no CRS, a rotated grid."""


# ------------------------------------------------------------------------------------------ kernels
# One working type, float32 with NaN for nodata: gdaldem's integer path (Byte, UInt16, Int16) gives the same
# numbers in float32, because every sum it forms stays below 2**24 and is exact there. Every formula keeps
# gdaldem's order of operations (sums in float32, the rest in double), so results agree bit for bit.
@njit(cache=True, inline="always")
def _horn(z0, z1, z2, z3, z5, z6, z7, z8, ewres, nsres, k):
    dx = ((z0 + z3 + z3 + z6) - (z2 + z5 + z5 + z8)) / ewres
    dy = ((z6 + z7 + z7 + z8) - (z0 + z1 + z1 + z2)) / nsres
    return math.atan(math.sqrt(dx * dx + dy * dy) / k) * _RAD_TO_DEG


@njit(cache=True, inline="always")
def _riley(z0, z1, z2, z3, z4, z5, z6, z7, z8):
    # differences in float32, squares in double; np.float64, since numba's float() keeps a float32 a float32
    d0 = np.float64(z0 - z4)
    d1 = np.float64(z1 - z4)
    d2 = np.float64(z2 - z4)
    d3 = np.float64(z3 - z4)
    d5 = np.float64(z5 - z4)
    d6 = np.float64(z6 - z4)
    d7 = np.float64(z7 - z4)
    d8 = np.float64(z8 - z4)
    return math.sqrt(d0 * d0 + d1 * d1 + d2 * d2 + d3 * d3 + d5 * d5 + d6 * d6 + d7 * d7 + d8 * d8)


@njit(cache=True, inline="always")
def _range(z0, z1, z2, z3, z4, z5, z6, z7, z8):
    hi = lo = z0
    for v in (z1, z2, z3, z4, z5, z6, z7, z8):  # gdaldem's comparisons in its order (NaN never wins one)
        hi = v if v > hi else hi
        lo = v if v < lo else lo
    return hi - lo


# Rows whose 3 × 3 windows hold no nodata (nearly all of them): straight loops that LLVM can vectorise.
@njit(cache=True)
def _slope_row(a, b, c, ewres, nsres, k, out):
    for j in range(1, b.shape[0] - 1):
        out[j] = _horn(a[j - 1], a[j], a[j + 1], b[j - 1], b[j + 1], c[j - 1], c[j], c[j + 1], ewres, nsres, k)


@njit(cache=True)
def _tri_row(a, b, c, out):
    for j in range(1, b.shape[0] - 1):
        out[j] = _riley(a[j - 1], a[j], a[j + 1], b[j - 1], b[j], b[j + 1], c[j - 1], c[j], c[j + 1])


@njit(cache=True)
def _roughness_row(a, b, c, out):
    for j in range(1, b.shape[0] - 1):
        out[j] = _range(a[j - 1], a[j], a[j + 1], b[j - 1], b[j], b[j + 1], c[j - 1], c[j], c[j + 1])


# Everything else, one cell at a time: the raster's edges and the neighbourhood of nodata.
@njit(cache=True, inline="always")
def _interp(a, b, nd_value, int_dem):
    """gdaldem's INTERPOL: the cell beyond `a`, extrapolated from `a` and its neighbour `b` on the other side."""
    v = a + a - b  # NaN (nodata) if either is
    if v == nd_value:  # landed on the nodata value: an integer DEM steps off it, a float DEM's cell is nodata
        v = v + np.float32(1.0) if int_dem else np.float32(np.nan)
    return v


@njit(cache=True)
def _edge_at(z, i, j, dr, dc, nd_value, int_dem):
    """Window value (i + dr, j + dc) of an edge cell. gdaldem clamps the columns on the first and last rows
    and extrapolates the missing row; on the other rows it extrapolates the missing column."""
    ny, nx = z.shape
    r = i + dr
    if i == 0 or i == ny - 1:
        c = min(max(j + dc, 0), nx - 1)
        if r < 0 or r >= ny:
            return _interp(z[i, c], z[i - dr, c], nd_value, int_dem)
        return z[r, c]
    c = j + dc
    if c < 0 or c >= nx:
        return _interp(z[r, j], z[r, j - dc], nd_value, int_dem)
    return z[r, c]


@njit(cache=True)
def _window(z, i, j, nd_value, int_dem, w):
    """The 3 × 3 window of cell (i, j) into `w`, completed by gdaldem's edge rules where it leaves the raster."""
    ny, nx = z.shape
    inner = 0 < i < ny - 1 and 0 < j < nx - 1
    n = 0
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            w[n] = z[i + dr, j + dc] if inner else _edge_at(z, i, j, dr, dc, nd_value, int_dem)
            n += 1


@njit(cache=True)
def _any_cell(z, i, j, p, ewres, nsres, k, want, out_nd, slope, tri, rough, w):
    """gdaldem's ComputeVal for one cell. p = (has nodata, compute edges, nodata value, integer DEM)."""
    has_nd, edges, nd_value, int_dem = p
    ny, nx = z.shape
    s = t = g = out_nd
    if (0 < i < ny - 1 and 0 < j < nx - 1) or (edges and nx >= 2 and ny >= 2):  # thinner than 2: all nodata
        _window(z, i, j, nd_value, int_dem, w)
        ok = not (has_nd and w[4] != w[4])
        for n in range(9):
            if has_nd and w[n] != w[n]:
                if edges:
                    w[n] = w[4]  # nodata neighbours take the centre's value
                else:
                    ok = False
        if ok:
            if want[0]:
                s = _horn(w[0], w[1], w[2], w[3], w[5], w[6], w[7], w[8], ewres[i], nsres[i], k)
            if want[1]:
                t = _riley(w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8])
            if want[2]:
                g = _range(w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8])
    if want[0]:
        slope[i, j] = s
    if want[1]:
        tri[i, j] = t
    if want[2]:
        rough[i, j] = g


@njit(cache=True)
def _touches_nodata(z, i, j):
    for r in range(i - 1, i + 2):
        for c in range(j - 1, j + 2):
            if z[r, c] != z[r, c]:
                return True
    return False


@njit(cache=True)
def _terrain_kernel(z, p, ewres, nsres, k, want, out_nd, slope, tri, rough):
    """All wanted products, row by row: the straight loops over every interior row, then gdaldem's
    cell-by-cell rules where they give something else, on the raster's edges and next to nodata."""
    ny, nx = z.shape
    has_nd = p[0]
    w = np.empty(9, np.float32)
    nodata_rows = np.zeros(ny, np.bool_)
    if has_nd:
        for i in range(ny):
            nodata_rows[i] = np.isnan(z[i]).any()
    for i in range(ny):
        if not 0 < i < ny - 1:
            for j in range(nx):
                _any_cell(z, i, j, p, ewres, nsres, k, want, out_nd, slope, tri, rough, w)
            continue
        if want[0]:
            _slope_row(z[i - 1], z[i], z[i + 1], ewres[i], nsres[i], k, slope[i])
        if want[1]:
            _tri_row(z[i - 1], z[i], z[i + 1], tri[i])
        if want[2]:
            _roughness_row(z[i - 1], z[i], z[i + 1], rough[i])
        for j in range(0, nx, max(nx - 1, 1)):  # the first and last cells
            _any_cell(z, i, j, p, ewres, nsres, k, want, out_nd, slope, tri, rough, w)
        if nodata_rows[i - 1] or nodata_rows[i] or nodata_rows[i + 1]:
            for j in range(1, nx - 1):
                if _touches_nodata(z, i, j):
                    _any_cell(z, i, j, p, ewres, nsres, k, want, out_nd, slope, tri, rough, w)


# -------------------------------------------------------------------------------------- array API
def _prepare(dem: np.ndarray, nodata: float | None):
    """The DEM as float32 with NaN for nodata, as gdaldem sees it. Returns (z, has_nodata, nodata_value,
    integer): an integer DEM keeps its nodata only when it is an integer in its type's range (as in
    gdaldem); nodata_value (NaN if none) is what an extrapolated edge cell must not land on."""
    dem = np.asarray(dem)
    if dem.ndim != 2:
        raise ValueError(f"a DEM is a 2-D array; got shape {dem.shape}")
    integer = dem.dtype.type in _INTEGER_DTYPES
    if integer:
        info = np.iinfo(dem.dtype)
        usable = nodata is not None and np.isfinite(nodata) and abs(nodata - round(nodata)) < 1e-2
        nodata = round(nodata) if usable and info.min <= round(nodata) <= info.max else None
    z = dem.astype(np.float32)  # always a copy: nodata cells become NaN
    if nodata is None:
        return z, False, np.float32(np.nan), integer
    if not np.isnan(nodata):
        z[z == np.float32(nodata)] = np.nan
    return z, True, np.float32(nodata), integer


def _per_row(value, ny: int, name: str) -> np.ndarray:
    value = np.asarray(value, np.float64)
    if value.shape not in ((), (ny,)):
        raise ValueError(f"{name} must be a number or one value per DEM row ({ny}); got shape {value.shape}")
    return np.ascontiguousarray(np.broadcast_to(value, (ny,)))


def terrain(dem: np.ndarray, xres=1.0, yres=1.0, *, scale: float = 1.0, nodata: float | None = None,
            compute_edges: bool = False, out_nodata: float = np.nan,
            products: tuple[str, ...] = PRODUCTS) -> dict[str, np.ndarray]:  # fmt: skip
    """Slope (Horn, degrees), TRI (Riley) and roughness of a DEM in one pass, as float32 arrays.

    `xres`, `yres`: east-west and north-south cell sizes in the elevation's units (a number, or one per row
    for a geographic DEM, see `geographic_spacing`); the sign does not matter. `scale` divides them as
    gdaldem's `-s` does. Cells gdaldem writes as nodata are `out_nodata` (NaN unless given)."""
    unknown = set(products) - set(PRODUCTS)
    if unknown:
        raise ValueError(f"unknown terrain products {sorted(unknown)}; choose from {PRODUCTS}")
    z, has_nd, nd_value, integer = _prepare(dem, nodata)
    ny, nx = z.shape
    want = np.array([p in products for p in PRODUCTS])
    outs = [np.empty((ny, nx) if w else (1, 1), np.float32) for w in want]
    xres, yres = _per_row(xres, ny, "xres"), _per_row(yres, ny, "yres")
    params = (has_nd, bool(compute_edges), nd_value, integer)
    _terrain_kernel(z, params, xres, yres, 8.0 * scale, want, np.float32(out_nodata), *outs)
    return {p: out for p, out, w in zip(PRODUCTS, outs, want, strict=True) if w}


def slope_horn(dem: np.ndarray, xres_m, yres_m, *, scale: float = 1.0, nodata: float | None = None,
               compute_edges: bool = False, out_nodata: float = np.nan) -> np.ndarray:  # fmt: skip
    """Slope in degrees by Horn's method; `gdaldem slope -s scale` when xres_m, yres_m are the geotransform's
    cell sizes. For a lat/lon DEM pass `geographic_spacing(transform, rows)` for true per-row metres."""
    return terrain(dem, xres_m, yres_m, scale=scale, nodata=nodata, compute_edges=compute_edges,
                   out_nodata=out_nodata, products=("slope",))["slope"]  # fmt: skip


def tri_riley(dem: np.ndarray, *, nodata: float | None = None, compute_edges: bool = False,
              out_nodata: float = np.nan) -> np.ndarray:  # fmt: skip
    """Terrain Ruggedness Index (Riley): `gdaldem TRI` (its default algorithm since GDAL 3.3)."""
    return terrain(dem, nodata=nodata, compute_edges=compute_edges, out_nodata=out_nodata, products=("tri",))["tri"]


def roughness(dem: np.ndarray, *, nodata: float | None = None, compute_edges: bool = False,
              out_nodata: float = np.nan) -> np.ndarray:  # fmt: skip
    """Roughness, the largest difference within the 3 × 3 window: `gdaldem roughness`."""
    return terrain(dem, nodata=nodata, compute_edges=compute_edges, out_nodata=out_nodata,
                   products=("roughness",))["roughness"]  # fmt: skip


def metres_per_degree(lat_deg, a: float = 6378137.0, e2: float = 0.00669437999014) -> tuple:
    """(east-west, north-south) metres per degree at latitudes `lat_deg` on an ellipsoid (default WGS84)."""
    phi = np.radians(np.asarray(lat_deg, np.float64))
    w = 1.0 - e2 * np.sin(phi) ** 2
    k = math.pi / 180.0
    return k * a * np.cos(phi) / np.sqrt(w), k * a * (1.0 - e2) / w**1.5


def geographic_spacing(transform: Affine, height: int, crs=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-row (x, y) cell sizes in metres of a lat/lon DEM, at each row's centre latitude."""
    lat = transform.f + (np.arange(height) + 0.5) * transform.e
    a, e2 = _ellipsoid(crs)
    m_lon, m_lat = metres_per_degree(lat, a, e2)
    return abs(transform.a) * m_lon, abs(transform.e) * m_lat


def _ellipsoid(crs) -> tuple[float, float]:
    if crs is None:
        return 6378137.0, 0.00669437999014
    ell = _pyproj_crs(crs).ellipsoid
    f = 1.0 / ell.inverse_flattening if ell.inverse_flattening else 0.0
    return ell.semi_major_metre, f * (2.0 - f)


# ------------------------------------------------------------------------------------- block medians
@dataclass(frozen=True)
class DemArray:
    """A DEM in memory (elevation in metres, north-up grid): the same block code as a DEM file."""

    array: np.ndarray
    transform: Affine
    crs: object = "EPSG:4326"
    nodata: float | None = None


def open_dem(path):
    """Open a DEM file (GeoTIFF, VRT, DTED, anything GDAL reads) with rasterio; clear errors for bad paths."""
    import rasterio

    path = Path(os.fspath(path))
    if not path.exists():
        raise FileNotFoundError(
            f"DEM not found: {path}. Give the path of an elevation raster covering the region (SRTM GeoTIFF, "
            "or a VRT over many tiles: `gdalbuildvrt srtm.vrt tiles/*.tif`)."
        )
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as e:
        raise DemError(f"cannot read DEM {path} ({e}); it must be a raster GDAL can open (GeoTIFF, VRT, DTED)") from e


def _check_grid(transform: Affine, crs, name: str) -> None:
    if crs is None or (hasattr(crs, "to_wkt") and not crs.to_wkt()):
        raise DemError(
            f"DEM {name} has no CRS, so its cells cannot be placed on blocks. Assign the right one, e.g. "
            f"`gdal_translate -a_srs EPSG:4326 {name} with_crs.tif` for SRTM (lat/lon, WGS84)."
        )
    if transform.b or transform.d:
        raise DemError(f"DEM {name} has a rotated grid; warp it north-up first (`gdalwarp {name} north_up.tif`).")


def _pyproj_crs(crs):
    from pyproj import CRS

    return CRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)  # rasterio's CRS via WKT


def _index_bounds(transform: Affine, xmin, ymin, xmax, ymax, margin: int) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1) of the grid cells covering a box, plus `margin` cells all round."""
    inv = ~transform
    cols, rows = zip(*(inv @ (x, y) for x in (xmin, xmax) for y in (ymin, ymax)), strict=True)
    return (math.floor(min(rows)) - margin, math.ceil(max(rows)) + margin,
            math.floor(min(cols)) - margin, math.ceil(max(cols)) + margin)  # fmt: skip


def _read_padded(dem, row0, row1, col0, col1) -> np.ndarray:
    """Window [row0, row1) × [col0, col1) as float32 with NaN for nodata and for cells beyond the DEM."""
    height, width = dem.array.shape if isinstance(dem, DemArray) else (dem.height, dem.width)
    out = np.full((row1 - row0, col1 - col0), np.nan, np.float32)
    r0, r1, c0, c1 = max(row0, 0), min(row1, height), max(col0, 0), min(col1, width)
    if r0 >= r1 or c0 >= c1:
        return out
    if isinstance(dem, DemArray):
        part, nodata = dem.array[r0:r1, c0:c1], dem.nodata
    else:
        from rasterio.windows import Window

        part, nodata = dem.read(1, window=Window(c0, r0, c1 - c0, r1 - r0)), dem.nodata
    part = part.astype(np.float32)
    if nodata is not None:
        part[(part == np.float32(nodata)) | np.isnan(part)] = np.nan
    out[r0 - row0 : r1 - row0, c0 - col0 : c1 - col0] = part
    return out


def _result(values: tuple[float, float, float, float], coverage: float, note: str = "") -> dict:
    """The block's terrain record. Missing (flagged) when any feature could not be computed."""
    out = dict(zip(TERRAIN_FEATURES, values, strict=True))
    missing = [k for k, v in out.items() if math.isnan(v)]
    if missing and not note:
        note = f"no {', '.join(missing)}: the DEM covers {coverage:.0%} of the block"
    elif coverage < 1.0 and not note:
        note = f"the DEM covers {coverage:.0%} of the block"
    return {**out, "terrain_coverage": coverage, "terrain_missing": bool(missing), "terrain_note": note}


def block_terrain(dem, bounds: tuple[float, float, float, float]) -> dict:
    """Terrain medians of one block (west, south, east, north in degrees) from a DEM path, an open rasterio
    dataset or a `DemArray`: TERRAIN_FEATURES, `terrain_coverage` (fraction of the block's DEM cells with
    data), `terrain_missing` and a `terrain_note` saying why. A block the DEM does not cover is never an
    error: its features are NaN and it is flagged missing, for the models downstream to handle.

    Medians are over the DEM cells whose centres lie in the block; the window read has a margin so slopes at
    the block's edge use real neighbours. Cells whose 3 × 3 window is incomplete (the DEM's edge, nodata)
    have no slope, TRI or roughness (gdaldem's default); geographic DEMs are scaled row by row."""
    if isinstance(dem, str | os.PathLike):
        with open_dem(dem) as src:
            return block_terrain(src, bounds)
    name = getattr(dem, "name", "(in memory)")
    transform, crs = dem.transform, dem.crs
    _check_grid(transform, crs, name)
    geographic = _pyproj_crs(crs).is_geographic
    west, south, east, north = bounds
    if geographic:
        box = bounds
    else:
        from rasterio.warp import transform_bounds

        box = transform_bounds("EPSG:4326", crs, west, south, east, north, densify_pts=21)
    row0, row1, col0, col1 = _index_bounds(transform, *box, margin=2)
    z = _read_padded(dem, row0, row1, col0, col1)
    window_transform = transform @ Affine.translation(col0, row0)
    lon, lat = _cell_centres_lonlat(window_transform, z.shape, crs, geographic)
    inside = (lon >= west - _EDGE_TOL_DEG) & (lon < east - _EDGE_TOL_DEG)
    inside &= (lat >= south - _EDGE_TOL_DEG) & (lat < north - _EDGE_TOL_DEG)
    nan4 = (math.nan,) * 4
    if not inside.any():
        return _result(nan4, 0.0, "no DEM cell centre lies in the block (is the DEM coarser than a block?)")
    valid = inside & ~np.isnan(z)
    coverage = float(valid.sum() / inside.sum())
    if not valid.any():
        return _result(nan4, coverage, "the DEM has no data over the block")
    if geographic:
        xres, yres = geographic_spacing(window_transform, z.shape[0], crs)
    else:
        unit_m = _linear_units_m(crs)
        xres, yres = abs(transform.a) * unit_m, abs(transform.e) * unit_m
    maps = terrain(z, xres, yres, nodata=np.nan)
    elevation = float(np.median(z[valid]))
    return _result((elevation, *(_median(maps[p], inside) for p in PRODUCTS)), coverage)


def _median(values: np.ndarray, inside: np.ndarray) -> float:
    v = values[inside]
    v = v[~np.isnan(v)]
    return float(np.median(v)) if v.size else math.nan


def _cell_centres_lonlat(transform: Affine, shape, crs, geographic: bool):
    rows, cols = np.indices(shape)
    x, y = transform @ (cols + 0.5, rows + 0.5)
    if geographic:
        return x, y
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(_pyproj_crs(crs), "EPSG:4326", always_xy=True)
    return to_lonlat.transform(x, y)


def _linear_units_m(crs) -> float:
    axis = _pyproj_crs(crs).axis_info[0]
    return axis.unit_conversion_factor or 1.0


def world_block_terrain(world, block) -> dict:
    """Terrain medians of a block of the simulated world, from its 1″ DEM, through the same code as SRTM."""
    from mapper.world.truth import dem

    res = 1 / 3600
    west, south, east, north = block.bounds
    z, transform = dem(world, west - 2 * res, south - 2 * res, east + 2 * res, north + 2 * res, res)
    return block_terrain(DemArray(z, transform), block.bounds)
