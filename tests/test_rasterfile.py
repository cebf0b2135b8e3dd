"""Real imagery (USDA NAIP, North Dakota, EPSG:26914) through the raster-file source onto the z16 grid."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform_bounds

from mapper.config.models import ConfigError
from mapper.grid.blocks import blocks_in_bounds
from mapper.grid.tilegrid import TILE_SIZE, PixelWindow, lonlat_to_global_pixel
from mapper.imagery.mosaic import mosaic_block, mosaic_window, write_mosaic
from mapper.imagery.rasterfile import RasterFileSource, RasterFileSourceConfig

SHARED = Path(__file__).resolve().parents[2] / "shared"
NAIP = SHARED / "data" / "imagery" / "naip_nd" / "m_4709963_se_14_1_20200831.tif"
pytestmark = pytest.mark.skipif(not NAIP.exists(), reason="shared reference data not present")


def naip_source(**kw):
    return RasterFileSource("naip", RasterFileSourceConfig(paths=[NAIP], **kw))


def test_naip_block_mosaic_is_georeferenced(tmp_path):
    with rasterio.open(NAIP) as src:
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    block = blocks_in_bounds(west, south, east, north)[0]
    source = naip_source()
    mosaic = mosaic_block(source, block)
    assert 0.0 < mosaic.valid.mean() < 1.0  # the 4.7 km scene covers part of the 0.05° block
    assert mosaic.rgb[mosaic.valid].std() > 10  # real texture, not a fill value
    out = write_mosaic(mosaic, tmp_path / f"{block.id}.tif")
    with rasterio.open(out) as dst:
        assert dst.crs.to_epsg() == 3857
        assert dst.transform == block.window().transform
    # A pixel near the scene centre carries the NAIP colour at the same place (bilinear vs nearest aside).
    with rasterio.open(NAIP) as src:
        cx, cy = (src.bounds.left + src.bounds.right) / 2, (src.bounds.bottom + src.bounds.top) / 2
        lon, lat = rasterio.warp.transform(src.crs, "EPSG:4326", [cx], [cy])
        r, c = src.index(cx, cy)
        naip_rgb = src.read([1, 2, 3], window=((r - 2, r + 3), (c - 2, c + 3))).reshape(3, -1).mean(axis=1)
    col, row = lonlat_to_global_pixel(lon[0], lat[0], 16)
    w = block.window()
    ours = mosaic.rgb[int(row) - w.row0 - 4 : int(row) - w.row0 + 5, int(col) - w.col0 - 4 : int(col) - w.col0 + 5]
    assert np.abs(ours.reshape(-1, 3).mean(axis=0) - naip_rgb).max() < 25
    source.close()


def test_tiles_outside_are_missing():
    source = naip_source()
    res = source.get_tiles([(16, 0, 0)])[(16, 0, 0)]
    assert not res.ok and "outside" in res.missing
    window = PixelWindow(16, 0, 0, TILE_SIZE, TILE_SIZE)
    assert not mosaic_window(source, window).valid.any()


def test_bad_inputs_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        RasterFileSource("x", RasterFileSourceConfig(paths=[tmp_path / "nope.tif"]))
    with pytest.raises(ConfigError, match="bands"):
        naip_source(bands=[1, 2, 9])
    nocrs = tmp_path / "nocrs.tif"
    with rasterio.open(nocrs, "w", driver="GTiff", width=8, height=8, count=3, dtype="uint8",
                       transform=rasterio.Affine(1, 0, 0, 0, -1, 8)) as dst:
        dst.write(np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(ConfigError, match="no CRS"):
        RasterFileSource("x", RasterFileSourceConfig(paths=[nocrs]))
    wide = tmp_path / "u16.tif"
    with rasterio.open(wide, "w", driver="GTiff", width=8, height=8, count=3, dtype="uint16", crs="EPSG:4326",
                       transform=rasterio.Affine(0.001, 0, 100, 0, -0.001, 40)) as dst:
        dst.write(np.full((3, 8, 8), 3000, np.uint16))
    with pytest.raises(ConfigError, match="rescale"):
        RasterFileSource("x", RasterFileSourceConfig(paths=[wide]))
    ok = RasterFileSource("x", RasterFileSourceConfig(paths=[wide], rescale=(0, 6000)))
    ok.close()
