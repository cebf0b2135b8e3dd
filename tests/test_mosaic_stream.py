"""write_block_mosaic streams a block's tiles into its GeoTIFF: the file must be the one-shot write's, byte for byte.

The one-shot path (`write_mosaic(mosaic_block(...))`) is the reference: same pixels, mask, georeference, tags,
creation options and tile order. Streaming must also record missing tiles the same way, stay atomic when the
source or the writer fails, and ask network sources for all tiles at once.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import rasterio

from mapper.grid.blocks import Block
from mapper.grid.tilegrid import TILE_SIZE, PixelWindow
from mapper.imagery.mosaic import (
    WrittenMosaic,
    band_planes,
    mosaic_block,
    mosaic_window,
    read_mosaic,
    write_block_mosaic,
    write_mosaic,
)
from mapper.imagery.tiles import TileKey, TileResult
from mapper.world.source import WorldTileSource

GUANGDONG = (113.3, 23.1)


class SyntheticSource:
    """Deterministic tiles from the key (smooth gradients + noise, so the compressed tiles differ), with some
    missing, partly transparent or not returned at all; counts its requests."""

    name = "synthetic"

    def __init__(self, missing=(), transparent=(), unanswered=()):
        self.missing, self.transparent, self.unanswered = set(missing), set(transparent), set(unanswered)
        self.requests: list[list[TileKey]] = []

    def tile(self, key: TileKey) -> TileResult:
        if key in self.missing:
            return TileResult.absent("no imagery here")
        rng = np.random.default_rng(abs(hash(key)) % 2**32)
        yy, xx = np.mgrid[0:TILE_SIZE, 0:TILE_SIZE]
        base = np.stack([(xx + key[1]) % 256, (yy + key[2]) % 256, (xx + yy) // 2 % 256], axis=-1)
        rgb = (base + rng.integers(0, 8, base.shape)).astype(np.uint8)
        valid = None
        if key in self.transparent:
            valid = np.ones((TILE_SIZE, TILE_SIZE), bool)
            valid[:, : TILE_SIZE // 3] = False
        return TileResult.image(rgb, valid)

    def get_tiles(self, keys):
        keys = list(keys)
        self.requests.append(keys)
        return {k: self.tile(k) for k in keys if k not in self.unanswered}

    def close(self):
        pass


class RemoteSource(SyntheticSource):
    """Looks like an HTTP source to write_block_mosaic (it has fetch_bodies)."""

    def fetch_bodies(self, keys):  # pragma: no cover - never called here
        raise NotImplementedError


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_mosaic_before(mosaic, path, *, compress="zstd", level=1, tile_size=256, threads="ALL_CPUS"):
    """write_mosaic as it was before streaming (the whole (H, W, 3) array through np.moveaxis): the reference."""
    import json

    from mapper.imagery.mosaic import geotiff_profile
    from mapper.store.atomic import atomic_path

    profile = geotiff_profile(mosaic.window, 3, "uint8", compress, tile_size, level)
    profile["photometric"] = "RGB"
    tags = {"MAPPER_ZOOM": str(mosaic.window.zoom)}
    if mosaic.block_id:
        tags["MAPPER_BLOCK"] = mosaic.block_id
    if mosaic.missing_tiles:
        tags["MAPPER_MISSING_TILES"] = json.dumps(sorted(f"{z}/{x}/{y}" for z, x, y in mosaic.missing_tiles))
    with (
        rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True, GDAL_NUM_THREADS=str(threads)),
        atomic_path(path) as tmp,
        rasterio.open(tmp, "w", **profile) as dst,
    ):
        dst.write(np.moveaxis(mosaic.rgb, -1, 0))
        if not mosaic.valid.all():
            dst.write_mask(mosaic.valid)
        dst.update_tags(**tags)
    return path


def window_at(col_off: int, row_off: int, width: int, height: int) -> PixelWindow:
    """A window inside a Guangdong block, cut mid-tile."""
    w = Block.containing(*GUANGDONG).window(16)
    return PixelWindow(16, w.col0 + col_off, w.row0 + row_off, w.col0 + col_off + width, w.row0 + row_off + height)


def keys_of(window: PixelWindow) -> list[TileKey]:
    return [(window.zoom, x, y) for x, y in window.tiles()]


def assert_same_file(source, window, tmp_path, **options):
    """write_block_mosaic's file == write_mosaic's file == the file write_mosaic wrote before streaming."""
    mosaic = mosaic_window(source, window)
    before = write_mosaic_before(mosaic, tmp_path / "before.tif", **options)
    one = write_mosaic(mosaic, tmp_path / "oneshot.tif", **options)
    streamed = write_block_mosaic(source, window, tmp_path / "streamed.tif", **options)
    assert isinstance(streamed, WrittenMosaic) and streamed.path == tmp_path / "streamed.tif"
    assert sha256(before) == sha256(one) == sha256(streamed.path)
    return streamed


@pytest.mark.parametrize("threads", ["1", "ALL_CPUS"])
@pytest.mark.parametrize(
    "col_off, row_off, width, height",
    [(37, 101, 700, 600), (0, 0, 512, 512), (200, 250, 300, 20), (5, 7, 260, 1030)],
)
def test_streamed_file_is_the_one_shot_file_byte_for_byte(tmp_path, threads, col_off, row_off, width, height):
    window = window_at(col_off, row_off, width, height)
    streamed = assert_same_file(SyntheticSource(), window, tmp_path, threads=threads)
    assert streamed.valid.all() and not streamed.missing_tiles and streamed.valid_fraction == 1.0
    with rasterio.open(streamed.path) as ds:  # no mask written when every pixel has imagery
        assert ds.mask_flag_enums[0][0].name == "all_valid"


@pytest.mark.parametrize(
    "options",
    [
        {"compress": "deflate", "level": 1, "tile_size": 256},
        {"compress": "zstd", "level": 3, "tile_size": 128},
        {"compress": "zstd", "level": 1, "tile_size": 512},
        {"compress": "none", "tile_size": 256},
    ],
)
def test_other_creation_options_give_the_same_file(tmp_path, options):
    assert_same_file(SyntheticSource(), window_at(300, 77, 900, 700), tmp_path, **options)


@pytest.mark.parametrize("threads", ["1", "ALL_CPUS"])
def test_missing_and_transparent_tiles_are_recorded_as_before(tmp_path, threads):
    window = window_at(37, 101, 1000, 800)
    keys = keys_of(window)
    source = SyntheticSource(missing=[keys[0], keys[5]], transparent=[keys[3]], unanswered=[keys[-1]])
    reference = mosaic_window(source, window)
    streamed = assert_same_file(source, window, tmp_path, threads=threads)
    np.testing.assert_array_equal(streamed.valid, reference.valid)
    assert streamed.missing_tiles == reference.missing_tiles
    assert streamed.missing_tiles[keys[-1]] == "not returned by the source"
    assert streamed.nodata_fraction == pytest.approx(reference.nodata_fraction)
    back = read_mosaic(streamed.path)
    np.testing.assert_array_equal(back.valid, reference.valid)
    np.testing.assert_array_equal(back.rgb, reference.rgb)
    assert set(back.missing_tiles) == {keys[0], keys[5], keys[-1]}
    with rasterio.open(streamed.path) as ds:
        assert ds.tags()["MAPPER_ZOOM"] == "16" and "MAPPER_MISSING_TILES" in ds.tags()
        assert ds.files == [str(streamed.path)]  # the mask is internal: no .msk beside it


def test_a_block_of_the_world_source_is_the_same_file(tmp_path):
    """The product's case: a whole block (100 tiles) of the simulated world, block id tag included."""
    block = Block.containing(*GUANGDONG)
    source = WorldTileSource("b", seed=0, rendering="b")
    one = write_mosaic_before(mosaic_block(source, block), tmp_path / "before.tif")
    streamed = write_block_mosaic(source, block, tmp_path / "streamed.tif")
    assert sha256(one) == sha256(streamed.path)
    assert streamed.block_id == block.id and streamed.window == block.window(16)
    with rasterio.open(streamed.path) as ds:
        assert ds.tags()["MAPPER_BLOCK"] == block.id
        assert ds.profile["compress"] == "zstd" and ds.profile["blockxsize"] == 256


def test_tile_rows_are_requested_one_at_a_time_and_each_tile_once(tmp_path):
    window = window_at(37, 101, 700, 1100)
    source = SyntheticSource()
    write_block_mosaic(source, window, tmp_path / "m.tif")
    rows = sorted({y for _, _, y in keys_of(window)})
    assert [sorted({k[2] for k in r}) for r in source.requests] == [[y] for y in rows]
    requested = [k for r in source.requests for k in r]
    assert sorted(requested) == sorted(keys_of(window))  # every tile exactly once


def test_network_sources_get_one_request_per_block(tmp_path):
    window = window_at(37, 101, 700, 1100)
    source = RemoteSource()
    one = write_mosaic(mosaic_window(source, window), tmp_path / "oneshot.tif")
    source.requests.clear()
    streamed = write_block_mosaic(source, window, tmp_path / "streamed.tif")
    assert len(source.requests) == 1 and sorted(source.requests[0]) == sorted(keys_of(window))
    assert sha256(one) == sha256(streamed.path)
    source.requests.clear()  # asked for explicitly: two tile rows per request
    again = write_block_mosaic(source, window, tmp_path / "again.tif", rows_per_request=2)
    assert len(source.requests) == 3 and sha256(again.path) == sha256(one)


class FailingSource(SyntheticSource):
    def get_tiles(self, keys):
        if len(self.requests) == 2:
            self.requests.append(list(keys))
            raise OSError("connection reset")
        return super().get_tiles(keys)


def test_a_failing_source_leaves_no_file(tmp_path):
    out = tmp_path / "blocks" / "m.tif"
    with pytest.raises(OSError, match="connection reset"):
        write_block_mosaic(FailingSource(), window_at(37, 101, 700, 1100), out)
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_a_failing_writer_raises_and_leaves_no_file(tmp_path):
    out = tmp_path / "m.tif"
    source = SyntheticSource()
    with pytest.raises(rasterio.errors.RasterioError):  # GDAL refuses internal tiles of 100 px: not a multiple of 16
        write_block_mosaic(source, window_at(37, 101, 700, 3000), out, tile_size=100)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_an_existing_file_is_replaced_only_when_done(tmp_path):
    out = tmp_path / "m.tif"
    out.write_bytes(b"old")
    with pytest.raises(OSError):
        write_block_mosaic(FailingSource(), window_at(37, 101, 700, 1100), out)
    assert out.read_bytes() == b"old"
    write_block_mosaic(SyntheticSource(), window_at(37, 101, 700, 1100), out)
    assert read_mosaic(out).valid.all()


def test_band_planes():
    rgb = np.random.default_rng(1).integers(0, 256, (300, 517, 3), dtype=np.uint8)
    for a in (rgb, rgb[5:250, 3:400], rgb[::2]):  # contiguous and not
        planes = band_planes(a)
        assert planes.flags.c_contiguous and planes.shape == (3, *a.shape[:2])
        np.testing.assert_array_equal(planes, np.moveaxis(a, -1, 0))
