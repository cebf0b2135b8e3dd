"""Acceptance: a block mosaic is what GDAL's WMS/TMS driver makes of the same tiles, and its area is true.

The block's z16 tiles are rendered once by the simulated world (seed 0, rendering 'b'), written as PNGs to
`{z}/{x}/{y}.png` and read back by mapper's mosaic and by GDAL's TMS minidriver over `file://` (a WMS dataset
whose pixel grid is the whole z16 EPSG:3857 square, so a block's global pixel window is a window of that
dataset); a corner of the block is also read by GDAL over HTTP from the live world server. Georeference is
checked once more against mercantile's independent tile maths, and true pixel area against pyproj's
geodesic area.
"""

from __future__ import annotations

from pathlib import Path

import mercantile
import numpy as np
import pytest
import rasterio
from pyproj import Geod
from rasterio.windows import Window
from shapely.geometry import Polygon

from benchmarks.common import wms_xml  # the same GDAL WMS description the benchmark uses
from mapper.grid.area import masked_area_m2, pixel_area_grid
from mapper.grid.blocks import Block
from mapper.grid.tilegrid import TILE_SIZE, PixelWindow, mercator_to_lonlat, pixel_size
from mapper.imagery.decode import body_to_result, encode_png
from mapper.imagery.mosaic import mosaic_block, read_mosaic, write_mosaic
from mapper.imagery.tiles import TileKey, TileResult
from mapper.world.server import WorldServer
from mapper.world.source import WorldTileSource

Z = 16
SEED = 0
RENDERING = "b"
GUANGDONG = (113.3, 23.1)
GEOD = Geod(ellps="WGS84")


# ------------------------------------------------------------------------------------------------ helpers
def gdal_read(xml: str, window: PixelWindow):
    """(RGBA (4, H, W), window transform, CRS, full-dataset transform) of `window` read through GDAL."""
    win = Window(window.col0, window.row0, window.width, window.height)
    with rasterio.open(xml) as ds:
        assert (ds.width, ds.height) == (TILE_SIZE * 2**window.zoom,) * 2
        return ds.read(window=win), ds.window_transform(win), ds.crs, ds.transform


def assert_same_transform(a, b, tol=1e-6):
    assert max(abs(x - y) for x, y in zip(tuple(a)[:6], tuple(b)[:6], strict=True)) <= tol, (a, b)


class CachingSource:
    """Renders each tile once through the real source and answers later requests from memory."""

    def __init__(self, source):
        self.source = source
        self.name = source.name
        self.tiles: dict[TileKey, TileResult] = {}

    def get_tiles(self, keys):
        keys = list(keys)
        todo = [k for k in keys if k not in self.tiles]
        if todo:
            self.tiles.update(self.source.get_tiles(todo))
        return {k: self.tiles[k] for k in keys}

    def close(self):
        self.source.close()


class FileSource:
    """Tiles from `{root}/{z}/{x}/{y}.png`, decoded by mapper's decoder; a missing file is a missing tile."""

    name = "files"

    def __init__(self, root: Path):
        self.root = Path(root)

    def get_tiles(self, keys):
        out = {}
        for z, x, y in keys:
            path = self.root / str(z) / str(x) / f"{y}.png"
            out[z, x, y] = body_to_result(path.read_bytes()) if path.exists() else TileResult.absent("no file")
        return out

    def close(self):
        pass


def write_tiles(tiles: dict[TileKey, TileResult], root: Path) -> Path:
    for (z, x, y), tile in tiles.items():
        if tile.ok:
            path = root / str(z) / str(x) / f"{y}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode_png(tile.rgb, tile.valid))
    return root


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def block() -> Block:
    return Block.containing(*GUANGDONG)


@pytest.fixture(scope="module")
def world_source():
    return CachingSource(WorldTileSource("b", seed=SEED, rendering=RENDERING))


@pytest.fixture(scope="module")
def mosaic(world_source, block):
    """mapper's mosaic of the block (renders the ~100 tiles once for the whole module)."""
    return mosaic_block(world_source, block)


@pytest.fixture(scope="module")
def tile_dir(world_source, mosaic, tmp_path_factory) -> Path:
    keys = [(Z, x, y) for x, y in mosaic.window.tiles()]
    return write_tiles(world_source.get_tiles(keys), tmp_path_factory.mktemp("xyz"))


# ---------------------------------------------------------------------------------------- 1. GDAL WMS/TMS
def test_block_window_is_a_whole_number_of_z16_pixels(block, mosaic):
    w = mosaic.window
    assert w == block.window(Z)
    assert mosaic.rgb.shape == (*w.shape, 3) and mosaic.valid.shape == w.shape
    assert 2300 < w.width < 2360 and 2500 < w.height < 2560  # ~2330 × 2531 px at 23°N (DESIGN.md)
    assert len(w.tiles()) >= 90
    assert not mosaic.missing_tiles


def test_mosaic_equals_gdal_tms_over_file_urls(mosaic, tile_dir):
    xml = wms_xml(f"file://{tile_dir.as_posix()}/${{z}}/${{x}}/${{y}}.png")
    w = mosaic.window
    rgba, transform, crs, full = gdal_read(xml, w)

    assert np.array_equal(np.moveaxis(rgba[:3], 0, -1), mosaic.rgb)
    assert np.array_equal(rgba[3] > 0, mosaic.valid)
    assert crs == rasterio.crs.CRS.from_epsg(3857)
    assert_same_transform(transform, w.transform)
    # The WMS dataset's own transform, offset by the global pixel window, is the block's transform.
    assert_same_transform(full @ rasterio.Affine.translation(w.col0, w.row0), w.transform)
    assert full.a == pytest.approx(pixel_size(Z), abs=1e-12)


def test_mosaic_geotiff_matches_gdal(mosaic, tile_dir, tmp_path):
    path = write_mosaic(mosaic, tmp_path / "block.tif")
    xml = wms_xml(f"file://{tile_dir.as_posix()}/${{z}}/${{x}}/${{y}}.png")
    rgba, transform, crs, _ = gdal_read(xml, mosaic.window)

    with rasterio.open(path) as src:
        assert src.crs == crs
        assert (src.width, src.height, src.count) == (mosaic.window.width, mosaic.window.height, 3)
        assert_same_transform(src.transform, transform)
        assert np.array_equal(src.read(), rgba[:3])
        assert np.array_equal(src.dataset_mask() > 0, rgba[3] > 0)
        assert src.tags()["MAPPER_BLOCK"] == mosaic.block_id

    back = read_mosaic(path)
    assert back.window == mosaic.window
    assert np.array_equal(back.rgb, mosaic.rgb) and np.array_equal(back.valid, mosaic.valid)


def test_missing_and_transparent_tiles_agree_with_gdal(world_source, mosaic, tmp_path):
    """Nodata: a missing tile (GDAL: 404 → empty block) and a half-transparent RGBA tile."""
    keys = [(Z, x, y) for x, y in mosaic.window.tiles()]
    tiles = dict(world_source.get_tiles(keys))
    gone, holey = keys[len(keys) // 2], keys[len(keys) // 3]
    del tiles[gone]
    valid = np.ones((TILE_SIZE, TILE_SIZE), bool)
    valid[:, : TILE_SIZE // 2] = False
    valid[200:, :] = False
    tiles[holey] = TileResult.image(tiles[holey].rgb, valid)
    root = write_tiles(tiles, tmp_path / "xyz")

    ours = mosaic_block(FileSource(root), Block.parse(mosaic.block_id))
    assert set(ours.missing_tiles) == {gone}
    assert 0 < ours.nodata_fraction < 0.03

    rgba, _, _, _ = gdal_read(wms_xml(f"file://{root.as_posix()}/${{z}}/${{x}}/${{y}}.png"), ours.window)
    assert np.array_equal(rgba[3] > 0, ours.valid)
    assert np.array_equal(np.moveaxis(rgba[:3], 0, -1)[ours.valid], ours.rgb[ours.valid])

    path = write_mosaic(ours, tmp_path / "holes.tif")
    with rasterio.open(path) as src:
        assert np.array_equal(src.dataset_mask() > 0, rgba[3] > 0)
        assert np.array_equal(src.read()[:, ours.valid], rgba[:3][:, ours.valid])


@pytest.mark.network
def test_mosaic_equals_gdal_reading_the_live_world_server(mosaic):
    """GDAL fetches the same pixels over HTTP from `mapper demo serve`'s server, which renders them again.

    A 700 × 700 px corner of the block (3 × 3 or 4 × 4 tiles, cut mid-tile) keeps the rendering time down.
    """
    w = mosaic.window
    sub = PixelWindow(Z, w.col0, w.row0, w.col0 + 700, w.row0 + 700)
    with WorldServer(SEED) as server, rasterio.Env(GDAL_HTTP_TIMEOUT=60, GDAL_HTTP_MAX_RETRY=2):
        url = server.url_template(RENDERING).format(z="${z}", x="${x}", y="${y}")
        rgba, transform, crs, _ = gdal_read(wms_xml(url), sub)
    assert np.array_equal(np.moveaxis(rgba[:3], 0, -1), mosaic.rgb[:700, :700])
    assert np.array_equal(rgba[3] > 0, mosaic.valid[:700, :700])
    assert_same_transform(transform, w.transform)
    assert crs == rasterio.crs.CRS.from_epsg(3857)


# ---------------------------------------------------------------------------------- 2. mercantile checks
@pytest.mark.parametrize("lon,lat", [GUANGDONG, (-70.03, -33.47), (0.01, 0.51), (24.98, 60.02), (179.97, 45.0)])
def test_window_georeference_agrees_with_mercantile(lon, lat):
    block = Block.containing(lon, lat)
    w = block.window(Z)
    res = pixel_size(Z)

    # The tiles: mercantile's tiles over the window's first and last pixel centres are PixelWindow.tiles().
    west, north = mercator_to_lonlat(*(w.transform @ (0.5, 0.5)))
    east, south = mercator_to_lonlat(*(w.transform @ (w.width - 0.5, w.height - 0.5)))
    ours = w.tiles()
    theirs = [(t.x, t.y) for t in mercantile.tiles(float(west), float(south), float(east), float(north), Z)]
    assert sorted(ours) == sorted(theirs)

    # Every tile's corners, per mercantile, fall on whole pixels of the window's transform.
    inv = ~w.transform
    for tx, ty in ours:
        b = mercantile.xy_bounds(tx, ty, Z)
        assert w.transform @ (tx * TILE_SIZE - w.col0, ty * TILE_SIZE - w.row0) == pytest.approx(
            (b.left, b.top), abs=1e-6
        )
        assert w.transform @ ((tx + 1) * TILE_SIZE - w.col0, (ty + 1) * TILE_SIZE - w.row0) == pytest.approx(
            (b.right, b.bottom), abs=1e-6
        )
        col, row = inv @ (b.left, b.top)
        assert abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6

    # The union of the tiles covers the window; the window's bounds are its transform's.
    left, bottom, right, top = w.mercator_bounds
    first, last = mercantile.xy_bounds(*ours[0], Z), mercantile.xy_bounds(*ours[-1], Z)
    assert first.left <= left < right <= last.right and last.bottom <= bottom < top <= first.top
    assert (left, top) == pytest.approx(w.transform @ (0, 0), abs=1e-6)
    assert (right, bottom) == pytest.approx(w.transform @ (w.width, w.height), abs=1e-6)
    assert w.transform.a == pytest.approx(res, abs=1e-12) and w.transform.e == pytest.approx(-res, abs=1e-12)

    # Pixels belong to the block by their centres, by mercantile's own forward projection.
    bw, bs, be, bn = block.bounds
    x_w, y_n = mercantile.xy(bw, bn)
    x_e, y_s = mercantile.xy(be, bs)
    c_first, r_first = inv @ (x_w, y_n)
    c_end, r_end = inv @ (x_e, y_s)
    assert -0.5 <= c_first <= 0.5 and -0.5 <= r_first <= 0.5
    assert w.width - 0.5 <= c_end <= w.width + 0.5 and w.height - 0.5 <= r_end <= w.height + 0.5


# ------------------------------------------------------------------------------------------- 3. true area
def geodesic_area(lons, lats) -> float:
    area, _ = GEOD.polygon_area_perimeter(lons, lats)
    return abs(area)


def densified_box(west, south, east, north, n=64):
    """A lon/lat box with its edges densified, so that geodesic edges follow the parallels closely."""
    t = np.linspace(0, 1, n, endpoint=False)
    lons = np.concatenate([west + (east - west) * t, np.full(n, east), east - (east - west) * t, np.full(n, west)])
    lats = np.concatenate(
        [np.full(n, south), south + (north - south) * t, np.full(n, north), north - (north - south) * t]
    )
    return lons, lats


@pytest.mark.parametrize("lat", [0.5, 23.0, 45.0, 60.0])
def test_summed_pixel_area_is_the_geodesic_area(lat):
    block = Block.containing(113.3, lat)
    w = block.window(Z)
    ones = np.ones(w.shape, bool)
    ours = masked_area_m2(ones, w)
    assert float(pixel_area_grid(w).sum()) == pytest.approx(ours, rel=1e-9)

    # The window's own footprint: its mercator bounds, back to lon/lat.
    left, bottom, right, top = w.mercator_bounds
    (west, east), (south, north) = mercator_to_lonlat([left, right], [bottom, top])
    window_area = geodesic_area(*densified_box(float(west), float(south), float(east), float(north)))
    assert ours == pytest.approx(window_area, rel=1e-4)

    # The block's lon/lat box: differs from the window by less than a pixel on each side.
    block_area = geodesic_area(*densified_box(*block.bounds))
    assert ours == pytest.approx(block_area, rel=5e-3)
    # ... and shapely + pyproj on the plain (undensified) polygon, the way a user would check it.
    plain, _ = GEOD.geometry_area_perimeter(Polygon.from_bounds(*block.bounds))
    assert ours == pytest.approx(abs(plain), rel=5e-3)


def test_naive_mercator_area_overstates_guangdong_by_about_18_percent(block):
    w = block.window(Z)
    true_area = masked_area_m2(np.ones(w.shape, bool), w)
    naive = w.width * w.height * pixel_size(Z) ** 2
    assert 0.16 < naive / true_area - 1 < 0.20
    # The block is 0.05° × 0.05° ≈ 5.1 km × 5.5 km on the ground at 23°N: about 28 km².
    assert 27e6 < true_area < 29.5e6
