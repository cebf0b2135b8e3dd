"""Block mosaics: the z-level tiles covering a block, placed on the native EPSG:3857 pixel grid.

No resampling anywhere: a block's grid is a window of the global pixel grid (see tilegrid), so each tile
pixel lands on exactly one block pixel and the GeoTIFF transform is exact from tile math.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mapper.grid.blocks import Block
from mapper.imagery.sources import TileKey, TileSource
from mapper.imagery.tilegrid import TILE_SIZE, PixelWindow
from mapper.store.atomic import atomic_path

CRS = "EPSG:3857"


@dataclass
class BlockMosaic:
    window: PixelWindow
    rgb: np.ndarray  # (H, W, 3) uint8
    valid: np.ndarray  # (H, W) bool: False where no imagery
    missing_tiles: dict[TileKey, str] = field(default_factory=dict)
    block_id: str | None = None

    @property
    def nodata_fraction(self) -> float:
        return 1.0 - float(np.count_nonzero(self.valid)) / self.valid.size


def check_mosaic(rgb: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """ValueError unless rgb is (H, W, 3) uint8 and valid (H, W) bool (or None: all valid); returns valid."""
    rgb_d = getattr(rgb, "dtype", type(rgb).__name__)
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        shape = getattr(rgb, "shape", None)
        raise ValueError(
            f"a block mosaic is (H, W, 3) uint8 RGB; got shape {shape} of {rgb_d}. "
            "Give the mosaic as read (mapper.imagery.mosaic.read_mosaic), without extra bands or scaling"
        )
    if min(rgb.shape[:2]) < 1:
        raise ValueError(f"empty mosaic of shape {rgb.shape}")
    if valid is None:
        return np.ones(rgb.shape[:2], bool)
    if not isinstance(valid, np.ndarray) or valid.shape != rgb.shape[:2] or valid.dtype != bool:
        raise ValueError(
            f"the valid mask must be a bool array of shape {rgb.shape[:2]} (True = imagery); got "
            f"{getattr(valid, 'shape', None)} of {getattr(valid, 'dtype', type(valid).__name__)}"
        )
    return valid


def mosaic_arrays(m) -> tuple[np.ndarray, np.ndarray | None]:
    """(rgb, valid) of a BlockMosaic, an (rgb, valid) pair or a bare RGB array (valid None: all valid)."""
    if hasattr(m, "rgb") and hasattr(m, "valid"):
        return m.rgb, m.valid
    if isinstance(m, tuple) and len(m) == 2:
        return m
    if isinstance(m, np.ndarray):
        return m, None
    raise ValueError(f"expected a BlockMosaic, an (rgb, valid) pair or an RGB array; got {type(m).__name__}")


def tile_overlap(window: PixelWindow, tx: int, ty: int):
    """Slices (in the window, in the tile) of where tile (tx, ty) overlaps the window."""
    c0, r0 = tx * TILE_SIZE, ty * TILE_SIZE
    wc0, wc1 = max(window.col0, c0), min(window.col1, c0 + TILE_SIZE)
    wr0, wr1 = max(window.row0, r0), min(window.row1, r0 + TILE_SIZE)
    dst = (slice(wr0 - window.row0, wr1 - window.row0), slice(wc0 - window.col0, wc1 - window.col0))
    src = (slice(wr0 - r0, wr1 - r0), slice(wc0 - c0, wc1 - c0))
    return dst, src


def mosaic_window(source: TileSource, window: PixelWindow) -> BlockMosaic:
    keys = [(window.zoom, tx, ty) for tx, ty in window.tiles()]
    results = source.get_tiles(keys)
    rgb = np.zeros((*window.shape, 3), np.uint8)
    valid = np.zeros(window.shape, bool)
    missing: dict[TileKey, str] = {}
    for key in keys:
        res = results.get(key)
        if res is None or not res.ok:
            missing[key] = res.missing if res is not None else "not returned by the source"
            continue
        dst, src = tile_overlap(window, key[1], key[2])
        rgb[dst] = res.rgb[src]
        valid[dst] = True if res.valid is None else res.valid[src]
    return BlockMosaic(window, rgb, valid, missing)


def mosaic_block(source: TileSource, block: Block, zoom: int = 16) -> BlockMosaic:
    mosaic = mosaic_window(source, block.window(zoom))
    mosaic.block_id = block.id
    return mosaic


def geotiff_profile(window: PixelWindow, count: int, dtype: str, compress: str, tile_size: int, level: int):
    profile = {
        "driver": "GTiff",
        "width": window.width,
        "height": window.height,
        "count": count,
        "dtype": dtype,
        "crs": CRS,
        "transform": window.transform,
        "tiled": True,
        "blockxsize": tile_size,
        "blockysize": tile_size,
        "interleave": "pixel",
    }
    if compress != "none":
        profile.update(compress=compress, predictor=2)
        if compress == "deflate":
            profile["zlevel"] = level
        elif compress == "zstd":
            profile["zstd_level"] = level
    return profile


def write_mosaic(
    mosaic: BlockMosaic, path: Path | str, *, compress="zstd", level=1, tile_size=256, threads="ALL_CPUS"
) -> Path:
    """Tiled, compressed RGB GeoTIFF with an internal nodata mask; written atomically.

    GDAL compresses the GeoTIFF tiles on `threads` threads (the bytes are the same as single-threaded)."""
    import rasterio

    path = Path(path)
    profile = geotiff_profile(mosaic.window, 3, "uint8", compress, tile_size, level)
    profile["photometric"] = "RGB"
    tags = {"MAPPER_ZOOM": str(mosaic.window.zoom)}
    if mosaic.block_id:
        tags["MAPPER_BLOCK"] = mosaic.block_id
    if mosaic.missing_tiles:
        # Keys only: the reason wording differs by source (HTTP 404, in-process), the imagery does not.
        tags["MAPPER_MISSING_TILES"] = json.dumps(sorted(f"{z}/{x}/{y}" for z, x, y in mosaic.missing_tiles))
    with (
        rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True, GDAL_NUM_THREADS=str(threads)),
        atomic_path(path) as tmp,
        rasterio.open(tmp, "w", **profile) as dst,
    ):
        dst.write(np.moveaxis(mosaic.rgb, -1, 0))
        if not mosaic.valid.all():  # without a mask GDAL reports every pixel valid: the same, and cheaper
            dst.write_mask(mosaic.valid)
        dst.update_tags(**tags)
    return path


def read_mosaic(path: Path | str) -> BlockMosaic:
    """Read a mosaic written by write_mosaic back, with its grid recovered from the transform."""
    import rasterio

    from mapper.imagery.tilegrid import ORIGIN_SHIFT, pixel_size

    with rasterio.open(path) as src:
        zoom = int(src.tags().get("MAPPER_ZOOM", 16))
        res = pixel_size(zoom)
        col0 = round((src.transform.c + ORIGIN_SHIFT) / res)
        row0 = round((ORIGIN_SHIFT - src.transform.f) / res)
        window = PixelWindow(zoom, col0, row0, col0 + src.width, row0 + src.height)
        rgb = np.moveaxis(src.read(), 0, -1)
        valid = src.dataset_mask() > 0
        tags = src.tags()
    missing = {
        tuple(int(v) for v in k.split("/")): "missing when the mosaic was made"
        for k in json.loads(tags.get("MAPPER_MISSING_TILES", "[]"))
    }
    return BlockMosaic(window, rgb, valid, missing, tags.get("MAPPER_BLOCK"))
