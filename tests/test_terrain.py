"""Terrain features: equal to the `gdaldem` program, correct on geographic DEMs, and never a crash for a block
the DEM does not cover.

The reference is the real `gdaldem` (Debian/Ubuntu package gdal-bin). Without it the equality tests fail
rather than skip: CI installs it (.ci/run).
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.warp
from affine import Affine
from pyproj import Geod

from mapper.features.terrain import (
    TERRAIN_FEATURES,
    DemArray,
    DemError,
    block_terrain,
    geographic_spacing,
    metres_per_degree,
    roughness,
    slope_horn,
    terrain,
    tri_riley,
    world_block_terrain,
)
from mapper.grid.blocks import Block

N43 = Path(__file__).resolve().parents[2] / "shared" / "data" / "dem" / "n43.dt0"  # DTED0, 43-44°N 80-79°W
PRODUCT = {"slope": "slope", "TRI": "tri", "roughness": "roughness"}  # gdaldem mode -> our product


@pytest.fixture(scope="module")
def gdaldem() -> str:
    path = shutil.which("gdaldem")
    if path is None:
        pytest.fail("the `gdaldem` program is not on PATH; install GDAL's tools: `apt-get install gdal-bin`")
    return path


@pytest.fixture(scope="module")
def n43() -> Path:
    if not N43.exists():
        pytest.fail(f"reference DEM {N43} is missing (the shared data folder beside the repository)")
    return N43


def from_origin(west: float, north: float, xsize: float, ysize: float) -> Affine:
    return Affine(xsize, 0.0, west, 0.0, -ysize, north)  # rasterio's, without its deprecated Affine product


def run_gdaldem(gdaldem: str, mode: str, src: Path, dst: Path, *options: str) -> tuple[np.ndarray, np.ndarray]:
    """gdaldem's output as (values, nodata mask)."""
    subprocess.run([gdaldem, mode, "-q", *options, str(src), str(dst)], check=True, capture_output=True)
    with rasterio.open(dst) as out:
        values = out.read(1)
        return values, values == out.nodata


def ours(src: Path, mode: str, *options: str) -> np.ndarray:
    """Our array computation with the same options, from the same file."""
    with rasterio.open(src) as ds:
        z, gt, nodata = ds.read(1), ds.transform, ds.nodata
    edges = "-compute_edges" in options
    if mode == "slope":
        scale = float(options[options.index("-s") + 1]) if "-s" in options else 1.0
        return slope_horn(z, gt.a, gt.e, scale=scale, nodata=nodata, compute_edges=edges)
    if mode == "TRI":
        return tri_riley(z, nodata=nodata, compute_edges=edges)
    return roughness(z, nodata=nodata, compute_edges=edges)


def assert_same_as_gdaldem(gdaldem, src: Path, tmp_path: Path, mode: str, *options: str) -> None:
    ref, ref_nodata = run_gdaldem(gdaldem, mode, src, tmp_path / f"{mode}.tif", *options)
    got = ours(src, mode, *options)
    np.testing.assert_array_equal(np.isnan(got), ref_nodata, err_msg=f"nodata masks differ: {mode} {options}")
    assert ref_nodata.sum() < ref.size  # something was compared
    diff = np.abs(got[~ref_nodata] - ref[~ref_nodata])
    assert diff.max() <= 1e-4, f"{mode} {options}: max |ours − gdaldem| = {diff.max()}"


EDGES = [pytest.param((), id="default"), pytest.param(("-compute_edges",), id="compute_edges")]


# ------------------------------------------------------------------------------------------ vs gdaldem
@pytest.mark.parametrize("edges", EDGES)
@pytest.mark.parametrize(
    "mode, options",
    [
        ("slope", ("-s", "111120", "-alg", "Horn")),  # the usual trick for lat/lon DEMs
        ("slope", ("-s", "1")),  # raw degrees: what gdaldem ≤ 3.10 does without -s
        ("TRI", ()),  # Riley, gdaldem's default since GDAL 3.3
        ("roughness", ()),
    ],
)
def test_equal_to_gdaldem_on_n43(gdaldem, n43, tmp_path, mode, options, edges):
    assert_same_as_gdaldem(gdaldem, n43, tmp_path, mode, *options, *edges)


def write_dem(path: Path, z: np.ndarray, nodata, crs="EPSG:4326", transform=None) -> Path:
    transform = transform or from_origin(113.0, 23.2, 1 / 3600, 1 / 3600)
    profile = dict(driver="GTiff", width=z.shape[1], height=z.shape[0], count=1, dtype=z.dtype, nodata=nodata)
    with rasterio.open(path, "w", crs=crs, transform=transform, **profile) as dst:
        dst.write(z, 1)
    return path


@pytest.mark.parametrize("edges", EDGES)
@pytest.mark.parametrize("dtype, nodata", [("float32", -9999.0), ("int16", -32768)])
def test_equal_to_gdaldem_with_nodata_holes(gdaldem, tmp_path, dtype, nodata, edges):
    """A hole inside, nodata on the raster's edges and corner: gdaldem's window rules for each."""
    rng = np.random.default_rng(7)
    z = (300 + 40 * rng.standard_normal((37, 45)).cumsum(axis=1) / 6).astype(dtype)
    z[10:14, 20:26] = nodata
    z[0, 5] = z[36, 44] = z[20, 0] = z[5, 44] = nodata
    src = write_dem(tmp_path / f"hole_{dtype}.tif", z, nodata)
    for mode, options in (("slope", ("-s", "111120")), ("TRI", ()), ("roughness", ())):
        assert_same_as_gdaldem(gdaldem, src, tmp_path, mode, *options, *edges)


def gdal_version(gdaldem: str) -> tuple[int, int]:
    out = subprocess.run([gdaldem, "--version"], capture_output=True, text=True).stdout  # exits 1 after printing it
    return tuple(int(x) for x in re.search(r"GDAL (\d+)\.(\d+)", out).groups())


def test_gdaldem_does_not_scale_geographic_dems_before_3_11(gdaldem, n43, tmp_path):
    """Without -s, gdaldem ≤ 3.10 divides metres by degrees: near-vertical slopes on a lat/lon DEM, no warning.
    (GDAL 3.11 scales geographic DEMs by itself, with one factor for the whole raster.)"""
    if gdal_version(gdaldem) >= (3, 11):
        pytest.skip("GDAL ≥ 3.11 scales geographic DEMs without -s")
    ref, nodata = run_gdaldem(gdaldem, "slope", n43, tmp_path / "raw.tif")
    assert np.median(ref[~nodata]) > 89
    np.testing.assert_allclose(ref[~nodata], ours(n43, "slope")[~nodata], atol=1e-4)


# ---------------------------------------------------------------------------------- latitude scaling
def test_metres_per_degree_match_geodesics():
    geod = Geod(ellps="WGS84")
    for lat in (0.0, 23.0, 60.0):
        m_lon, m_lat = metres_per_degree(lat)
        d = 1e-4
        assert geod.inv(10.0, lat, 10.0 + d, lat)[2] / d == pytest.approx(m_lon, rel=1e-6)
        assert geod.inv(10.0, lat - d / 2, 10.0, lat + d / 2)[2] / d == pytest.approx(m_lat, rel=1e-6)


def tilted_plane(lat0: float, slope_deg: float, facing_deg: float, n: int = 41):
    """A lat/lon DEM (1″ cells) of a plane rising `slope_deg` towards azimuth `facing_deg`, in true metres."""
    transform = from_origin(100.0, lat0 + n / 7200, 1 / 3600, 1 / 3600)
    lat = transform.f + (np.arange(n) + 0.5) * transform.e
    lon = transform.c + (np.arange(n) + 0.5) * transform.a
    m_lon, m_lat = metres_per_degree(lat)
    east = (lon[None, :] - lon.mean()) * m_lon[:, None]
    north = ((lat - lat0) * m_lat)[:, None]
    a = math.radians(facing_deg)
    z = math.tan(math.radians(slope_deg)) * (math.sin(a) * east + math.cos(a) * north)
    return (1000 + z).astype(np.float32), transform


@pytest.mark.parametrize("lat0", [0.0, 60.0])
@pytest.mark.parametrize("facing", [90.0, 0.0, 45.0])
def test_slope_of_a_geographic_plane_is_right_at_any_latitude(lat0, facing):
    z, transform = tilted_plane(lat0, 10.0, facing)
    got = slope_horn(z, *geographic_spacing(transform, z.shape[0]))
    assert np.nanmax(np.abs(got[1:-1, 1:-1] - 10.0)) < 0.02


def test_one_scale_factor_gets_east_west_slopes_wrong_at_60_degrees(gdaldem, tmp_path):
    """What `gdaldem -s 111120` gives for a 10° east-facing slope at 60° N: about 5°, since a degree of
    longitude there is half as long as the scale assumes. Our per-row scaling gives 10°."""
    z, transform = tilted_plane(60.0, 10.0, 90.0)
    ref, nodata = run_gdaldem(gdaldem, "slope", write_dem(tmp_path / "p.tif", z, None, transform=transform),
                              tmp_path / "s.tif", "-s", "111120")  # fmt: skip
    expected = math.degrees(math.atan(math.tan(math.radians(10.0)) * metres_per_degree(60.0)[0] / 111120))
    assert np.median(ref[~nodata]) == pytest.approx(expected, abs=0.02) and expected < 5.1
    ours_deg = slope_horn(z, *geographic_spacing(transform, z.shape[0]))[1:-1, 1:-1]
    assert np.median(ours_deg) == pytest.approx(10.0, abs=0.02)


def test_terrain_computes_all_products_at_once_like_the_single_ones():
    z, transform = tilted_plane(30.0, 5.0, 200.0)
    z += np.random.default_rng(1).normal(0, 1, z.shape).astype(np.float32)
    xres, yres = geographic_spacing(transform, z.shape[0])
    both = terrain(z, xres, yres, compute_edges=True)
    np.testing.assert_array_equal(both["slope"], slope_horn(z, xres, yres, compute_edges=True))
    np.testing.assert_array_equal(both["tri"], tri_riley(z, compute_edges=True))
    np.testing.assert_array_equal(both["roughness"], roughness(z, compute_edges=True))
    with pytest.raises(ValueError, match="one value per DEM row"):
        terrain(z, xres[:-1], yres)


# ----------------------------------------------------------------------------------------- blocks
def test_block_inside_the_dem(n43):
    block = Block.containing(-79.4, 43.8)  # north of Toronto: cells 72-77 (lon), rows 19-24 (lat) of n43
    got = block_terrain(n43, block.bounds)
    with rasterio.open(n43) as ds:
        z, gt = ds.read(1), ds.transform
    cells = np.s_[19:25, 72:78]
    slope = slope_horn(z, *geographic_spacing(gt, z.shape[0]))
    assert got["terrain_missing"] is False and got["terrain_coverage"] == 1.0
    assert got["elevation_median"] == np.median(z[cells])
    assert got["slope_median_deg"] == pytest.approx(float(np.median(slope[cells])), rel=1e-6)
    assert got["tri_median"] == pytest.approx(float(np.median(tri_riley(z)[cells])))
    assert got["roughness_median"] == float(np.median(roughness(z)[cells]))
    with rasterio.open(n43) as ds:  # an open dataset works as well as a path
        assert block_terrain(ds, block.bounds) == got


def test_block_outside_the_dem_is_flagged_not_an_error(n43):
    got = block_terrain(n43, Block.containing(-75.5, 43.5).bounds)
    assert got["terrain_missing"] is True and got["terrain_coverage"] == 0.0
    assert all(math.isnan(got[k]) for k in TERRAIN_FEATURES) and got["terrain_note"]


def test_block_on_the_dem_edge_has_partial_coverage(n43):
    got = block_terrain(n43, Block.containing(-78.98, 43.52).bounds)  # only the DEM's last column is inside
    assert got["terrain_coverage"] == pytest.approx(1 / 6)
    assert got["elevation_median"] == 75.0  # Lake Ontario
    assert got["terrain_missing"] is True and math.isnan(got["slope_median_deg"])  # no complete 3×3 window


def test_projected_dem_uses_metres(tmp_path):
    """A plane in UTM rising 8° to the east: the block medians see 8° (no latitude scaling)."""
    x0, y0, res = 400_000.0, 2_580_000.0, 30.0
    n = 260
    x = x0 + (np.arange(n) + 0.5) * res
    z = np.tile(((x - x0) * math.tan(math.radians(8.0))).astype(np.float32), (n, 1))
    path = write_dem(tmp_path / "utm.tif", z, None, crs="EPSG:32649", transform=from_origin(x0, y0, res, res))
    with rasterio.open(path) as ds:
        lon, lat = rasterio.warp.transform(ds.crs, "EPSG:4326", [x0 + n * res / 2], [y0 - n * res / 2])
    block = Block.containing(lon[0], lat[0])
    got = block_terrain(path, block.bounds)
    assert got["slope_median_deg"] == pytest.approx(8.0, abs=1e-3) and got["terrain_coverage"] > 0.5


def test_in_memory_dem_and_the_simulated_world():
    from mapper.world.world import get_world

    block = Block.containing(112.45, 24.15)  # northern Guangdong hills
    got = world_block_terrain(get_world(0), block)
    assert got["terrain_missing"] is False and got["terrain_coverage"] == 1.0
    assert all(np.isfinite(got[k]) for k in TERRAIN_FEATURES) and got["slope_median_deg"] > 0
    z, transform = tilted_plane(24.075, 3.0, 90.0, n=260)  # 100-100.072°E, 24.039-24.111°N
    plane = block_terrain(DemArray(z, transform), (100.01, 24.05, 100.06, 24.1))
    assert plane["terrain_coverage"] == 1.0
    assert plane["slope_median_deg"] == pytest.approx(3.0, abs=0.01)


def test_bad_dems_get_clear_errors(tmp_path):
    missing = tmp_path / "srtm.vrt"
    with pytest.raises(FileNotFoundError, match=r"DEM not found: .*srtm\.vrt.*gdalbuildvrt"):
        block_terrain(missing, Block.containing(113.3, 23.1).bounds)
    no_crs = write_dem(tmp_path / "nocrs.tif", np.zeros((8, 8), np.float32), None, crs=None)
    with pytest.raises(DemError, match=r"has no CRS.*-a_srs EPSG:4326"):
        block_terrain(no_crs, Block.containing(113.0, 23.1).bounds)
    not_a_raster = tmp_path / "dem.tif"
    not_a_raster.write_text("elevation?")
    with pytest.raises(DemError, match=r"cannot read DEM .*dem\.tif"):
        block_terrain(not_a_raster, Block.containing(113.0, 23.1).bounds)
    with pytest.raises(DemError, match="no CRS"):
        block_terrain(DemArray(np.zeros((4, 4)), from_origin(0, 1, 0.1, 0.1), crs=None), (0, 0.5, 0.05, 0.55))
