"""The simulated world: ground truth plus two renderings of it, tile by tile at zoom 16.

A tile is rendered from a slightly larger window (PAD px each side) so that blur and road edges near the
tile border see the same neighbours as in the next tile: the world is seamless across tiles. Pixels of
a tile that belong to different 0.05° blocks take each block's own imaging conditions.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from mapper.grid.blocks import Block, lonlat_to_block_index
from mapper.imagery.sources import TileResult
from mapper.imagery.tilegrid import TILE_SIZE, global_pixel_to_lonlat
from mapper.world.conditions import BlockConditions, block_conditions, condition_masks
from mapper.world.landscape import Landscape, LandscapePatch
from mapper.world.render import render_patch

ZOOM = 16
PAD = 8
GRADING = {  # rendering B is warmer and more saturated, rendering A slightly softer
    "a": (np.array([1.0, 1.0, 1.0], np.float32), 1.0),
    "b": (np.array([1.04, 1.0, 0.93], np.float32), 1.18),
}


class World:
    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self.landscape = Landscape(seed)

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - bounded, one World per seed
    def conditions(self, block: Block, rendering: str) -> BlockConditions:
        cx, cy = block.window().col0, block.window().row0
        elev = float(self.landscape.elevation(np.float64(cx), np.float64(cy)))
        return block_conditions(self.seed, block, rendering, elev)

    # ---- truth ----
    def tile_patch(self, x: int, y: int) -> tuple[LandscapePatch, np.ndarray, np.ndarray]:
        cols = np.arange(x * TILE_SIZE - PAD, (x + 1) * TILE_SIZE + PAD)
        rows = np.arange(y * TILE_SIZE - PAD, (y + 1) * TILE_SIZE + PAD)
        return self.landscape.patch(cols, rows), cols, rows

    def tile_cover(self, x: int, y: int) -> np.ndarray:
        patch, _, _ = self.tile_patch(x, y)
        return patch.cover[PAD:-PAD, PAD:-PAD]

    # ---- imagery ----
    def render_tile(self, x: int, y: int, rendering: str, z: int = ZOOM) -> TileResult:
        if z != ZOOM:
            return TileResult.absent(f"the simulated world renders zoom {ZOOM} only (asked for {z})")
        if not (0 <= x < 2**z and 0 <= y < 2**z):
            return TileResult.absent("tile outside the world")
        patch, cols, rows = self.tile_patch(x, y)
        out = np.zeros((TILE_SIZE, TILE_SIZE, 3), np.uint8)
        valid = np.ones((TILE_SIZE, TILE_SIZE), bool)
        base_by_season: dict[bool, np.ndarray] = {}
        for block, rsl, csl in _blocks_in_tile(cols[PAD:-PAD], rows[PAD:-PAD]):
            cond = self.conditions(block, rendering)
            if cond.planting not in base_by_season:
                base_by_season[cond.planting] = render_patch(patch, cols, rows, self.seed, cond.planting)
            rgb, ok = self._image(base_by_season[cond.planting], cond, block, rendering, cols, rows)
            out[rsl, csl] = rgb[PAD:-PAD, PAD:-PAD][rsl, csl]
            valid[rsl, csl] = ok[PAD:-PAD, PAD:-PAD][rsl, csl]
        if not valid.any():
            return TileResult.absent("no imagery (simulated nodata)")
        return TileResult.image(out, None if valid.all() else valid)

    def _image(self, base, cond: BlockConditions, block: Block, rendering: str, cols, rows):
        tint, saturation = GRADING[rendering]
        rgb = base * tint
        if saturation != 1.0:
            lum = rgb.mean(axis=-1, keepdims=True)
            rgb = lum + (rgb - lum) * saturation
        _, cloud_soft, snow, nodata = condition_masks(cond, block, cols, rows)
        if snow.any():
            rgb = np.where(snow[..., None], rgb * 0.25 + np.float32([0.70, 0.72, 0.76]), rgb)
        if cond.haze:
            rgb = rgb * (1 - cond.haze) + np.float32([0.78, 0.79, 0.81]) * cond.haze
        if cloud_soft.any():
            shadow = np.zeros_like(cloud_soft)
            shadow[6:, 6:] = cloud_soft[:-6, :-6]
            rgb = rgb * (1 - 0.45 * shadow[..., None])
            rgb = rgb * (1 - cloud_soft[..., None]) + np.float32([0.95, 0.95, 0.96]) * cloud_soft[..., None]
        if cond.blur > 0:
            rgb = cv2.GaussianBlur(rgb, (0, 0), cond.blur, borderType=cv2.BORDER_REFLECT)
        rgb = rgb * np.float32(cond.gain) + np.float32(cond.offset)
        img = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
        img[nodata] = 0
        return img, ~nodata


def _blocks_in_tile(cols: np.ndarray, rows: np.ndarray):
    """(block, row slice, col slice) for each block whose pixels (by centre) fall in the tile."""
    lon, _ = global_pixel_to_lonlat(cols + 0.5, np.zeros(len(cols)), ZOOM)
    _, lat = global_pixel_to_lonlat(np.zeros(len(rows)), rows + 0.5, ZOOM)
    ix, _ = lonlat_to_block_index(lon, 0.0)
    _, iy = lonlat_to_block_index(0.0, lat)
    for yv in np.unique(iy):
        r = np.flatnonzero(iy == yv)
        for xv in np.unique(ix):
            c = np.flatnonzero(ix == xv)
            yield Block(int(xv), int(yv)), slice(r[0], r[-1] + 1), slice(c[0], c[-1] + 1)


@functools.lru_cache(maxsize=8)
def get_world(seed: int) -> World:
    return World(seed)
