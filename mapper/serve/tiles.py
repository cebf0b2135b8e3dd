"""XYZ tiles and block pictures rendered from a run's own GeoTIFFs.

Block rasters (mosaics, masks, final masks, a campaign's exported images) lie on the native z16 pixel grid of
EPSG:3857 (mapper.grid.tilegrid), so a tile at zoom z ≤ 16 is an integer window of global z16 pixels, 2^(16-z)
of them per tile pixel: each block's part is read with rasterio at the tile's size (a COG's overviews serve
the low zooms) and pasted at the position integer arithmetic gives, so neighbouring blocks meet without a seam
or a resampled gap. Rasters on other grids (crop types on UTM, allocation on degrees) are reprojected onto the
tile with rasterio.warp. Every tile is an RGBA PNG; a tile outside every block is a transparent one.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mapper.grid.tilegrid import ORIGIN_SHIFT, TILE_SIZE, PixelWindow, pixel_size

NATIVE_ZOOM = 16

# RGBA of a mask's values: 1 cropland, 0 not (transparent), 255 no imagery (a light grey veil).
CROPLAND_RGBA = {"final": (255, 196, 0, 230), "mask": (0, 200, 255, 220)}
NO_IMAGERY_RGBA = (160, 160, 160, 110)


@dataclass(frozen=True)
class BlockRaster:
    """One block's GeoTIFF of a layer and its window of global z16 pixels."""

    block_id: str
    path: Path
    window: PixelWindow


def tile_window(z: int, x: int, y: int) -> tuple[int, int, int]:
    """(col0, row0, scale): the tile's top-left global z16 pixel and the z16 pixels per tile pixel."""
    if not 0 <= z <= NATIVE_ZOOM:
        raise ValueError(f"zoom {z} is outside 0..{NATIVE_ZOOM}")
    scale = 2 ** (NATIVE_ZOOM - z)
    return x * TILE_SIZE * scale, y * TILE_SIZE * scale, scale


def tile_transform(z: int, x: int, y: int):
    """The tile's affine transform in EPSG:3857 metres."""
    from affine import Affine

    res = pixel_size(z)
    return Affine(res, 0.0, x * TILE_SIZE * res - ORIGIN_SHIFT, 0.0, -res, ORIGIN_SHIFT - y * TILE_SIZE * res)


def _centre_edge(n: int, scale: int) -> int:
    """The first tile pixel whose centre lies at or past z16 pixel edge `n` of the tile: ceil(n / scale - 1/2),
    in integers. A tile pixel shows a block when its centre is inside the block."""
    return -((scale - 2 * n) // (2 * scale))


def _part(w: PixelWindow, col0: int, row0: int, scale: int):
    """The block's part of a tile: its source window (block pixels) and destination box (tile pixels), or None.
    Edges round by pixel centres in every block, so neighbours share their edge exactly."""
    span = TILE_SIZE * scale
    c0, c1 = max(w.col0, col0), min(w.col1, col0 + span)
    r0, r1 = max(w.row0, row0), min(w.row1, row0 + span)
    if c0 >= c1 or r0 >= r1:
        return None
    d = tuple(_centre_edge(v, scale) for v in (c0 - col0, r0 - row0, c1 - col0, r1 - row0))
    if d[0] >= d[2] or d[1] >= d[3]:
        return None  # thinner than half a tile pixel at this zoom
    return (c0 - w.col0, r0 - w.row0, c1 - c0, r1 - r0), d


def blocks_in_tile(rasters: Iterable[BlockRaster], z: int, x: int, y: int) -> list[BlockRaster]:
    col0, row0, scale = tile_window(z, x, y)
    return [r for r in rasters if _part(r.window, col0, row0, scale) is not None]


def _read_part(path: Path, src_box, out_hw, bands: list[int], masked: bool):
    """(data (bands, h, w), valid (h, w)) of a window read at the destination size (nearest neighbour)."""
    import rasterio
    from rasterio.windows import Window

    col, row, width, height = src_box
    with rasterio.open(path) as src:
        window = Window(col, row, width, height)
        data = src.read(bands, window=window, out_shape=(len(bands), *out_hw))
        valid = src.dataset_mask(window=window, out_shape=out_hw) > 0 if masked else np.ones(out_hw, bool)
    return data, valid


def _paste(rasters: Iterable[BlockRaster], z: int, x: int, y: int, paint) -> np.ndarray:
    """An RGBA tile; `paint(path, src_box, out_hw) -> (h, w, 4) uint8` draws each block's part."""
    col0, row0, scale = tile_window(z, x, y)
    tile = np.zeros((TILE_SIZE, TILE_SIZE, 4), np.uint8)
    for r in rasters:
        part = _part(r.window, col0, row0, scale)
        if part is None:
            continue
        src_box, (dc0, dr0, dc1, dr1) = part
        rgba = paint(r.path, src_box, (dr1 - dr0, dc1 - dc0))
        drawn = rgba[..., 3] > 0
        tile[dr0:dr1, dc0:dc1][drawn] = rgba[drawn]
    return tile


def paint_imagery(path: Path, src_box, out_hw) -> np.ndarray:
    data, valid = _read_part(path, src_box, out_hw, [1, 2, 3], masked=True)
    return np.dstack([*data, np.where(valid, 255, 0).astype(np.uint8)])


def paint_mask(colour: tuple[int, int, int, int]):
    """A painter of band 1 of a mask: 1 in `colour`, 255 (no imagery) as a grey veil, 0 transparent."""

    def paint(path: Path, src_box, out_hw) -> np.ndarray:
        (band,), _ = _read_part(path, src_box, out_hw, [1], masked=False)
        rgba = np.zeros((*out_hw, 4), np.uint8)
        rgba[band == 1] = colour
        rgba[band == 255] = NO_IMAGERY_RGBA
        return rgba

    return paint


def render_block_tile(rasters: Iterable[BlockRaster], z: int, x: int, y: int, paint) -> bytes:
    return encode_png(_paste(rasters, z, x, y, paint))


def render_warped_tile(path: Path, z: int, x: int, y: int, colours: np.ndarray) -> bytes:
    """A paletted raster on any grid (band 1 codes → `colours[code]` RGBA, a (256, 4) table) reprojected onto
    the tile by nearest neighbour; code 0 and nodata stay transparent."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    codes = np.zeros((TILE_SIZE, TILE_SIZE), np.uint8)
    with rasterio.open(path) as src:
        reproject(rasterio.band(src, 1), codes, dst_transform=tile_transform(z, x, y), dst_crs="EPSG:3857",
                  dst_nodata=0, resampling=Resampling.nearest)  # fmt: skip
    return encode_png(colours[codes])


def band_total(path: Path) -> tuple[np.ndarray, object, object]:
    """(sum over bands, transform, crs) of a small raster such as the allocation's per-crop hectares."""
    import rasterio

    with rasterio.open(path) as src:
        data = src.read(masked=True).astype(np.float64)
        return np.ma.filled(data.sum(axis=0), np.nan).astype(np.float32), src.transform, src.crs


@functools.cache
def ramp_colours() -> np.ndarray:
    """viridis as 256 RGBA rows."""
    from matplotlib import colormaps

    return (colormaps["viridis"](np.linspace(0, 1, 256)) * 255).round().astype(np.uint8)


def render_ramp_tile(total_of_bands: tuple, z: int, x: int, y: int, vmax: float) -> bytes:
    """A raster's band sum (`band_total`'s (array, transform, crs), read once per layer) on a viridis scale from
    0 to `vmax`, reprojected onto the tile; cells with nothing (0 or nodata) transparent."""
    from rasterio.warp import Resampling, reproject

    total, transform, crs = total_of_bands
    out = np.full((TILE_SIZE, TILE_SIZE), np.nan, np.float32)
    reproject(total, out, src_transform=transform, src_crs=crs, src_nodata=np.nan, dst_transform=tile_transform(
        z, x, y), dst_crs="EPSG:3857", dst_nodata=np.nan, resampling=Resampling.nearest)  # fmt: skip
    rgba = np.zeros((TILE_SIZE, TILE_SIZE, 4), np.uint8)
    drawn = np.isfinite(out) & (out > 0)
    idx = np.clip(out[drawn] / max(vmax, 1e-9) * 255, 0, 255).astype(int)
    rgba[drawn] = ramp_colours()[idx]
    return encode_png(rgba)


def block_picture(path: Path, kind: str, max_side: int = 512) -> bytes:
    """A whole block as a PNG at most `max_side` pixels wide: its imagery, or a mask over black."""
    import rasterio

    with rasterio.open(path) as src:
        f = max(src.width, src.height) / max_side
        out_hw = (max(1, round(src.height / max(f, 1))), max(1, round(src.width / max(f, 1))))
    box = (0, 0, src.width, src.height)
    if kind == "imagery":
        return encode_png(paint_imagery(path, box, out_hw))
    rgba = paint_mask(CROPLAND_RGBA.get(kind, CROPLAND_RGBA["mask"]))(path, box, out_hw)
    rgba[rgba[..., 3] == 0] = (0, 0, 0, 255)
    rgba[..., 3] = 255
    return encode_png(rgba)


def encode_png(rgba: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgba), cv2.COLOR_RGBA2BGRA))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


EMPTY_TILE = encode_png(np.zeros((TILE_SIZE, TILE_SIZE, 4), np.uint8))
