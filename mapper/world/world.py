"""The simulated world: ground truth plus two renderings of it, tile by tile at zoom 16.

Every pixel's land cover is a function of its global position alone; a tile is rendered from a window
widened by the margin its blur and cloud shadows reach, so pixels near a tile edge see the same neighbours
as in the next tile: the world is seamless across tiles. Pixels of
a tile that belong to different 0.05° blocks take each block's own imaging conditions.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from mapper.grid.blocks import Block, lonlat_to_block_index
from mapper.grid.tilegrid import TILE_SIZE, global_pixel_to_lonlat
from mapper.imagery.tiles import TileResult
from mapper.world import kernels
from mapper.world.conditions import BlockConditions, block_conditions, condition_masks
from mapper.world.landscape import Landscape, LandscapePatch
from mapper.world.render import render_patch

ZOOM = 16
CLOUD_SHADOW_OFFSET = 6  # px, as in kernels.apply_conditions
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
    def tile_patch(self, x: int, y: int, pad: int = 0) -> tuple[LandscapePatch, np.ndarray, np.ndarray]:
        """Ground truth of tile (x, y) with `pad` extra pixels each side. Every pixel's value depends on
        its global position only, so the padding changes nothing inside the tile."""
        cols = np.arange(x * TILE_SIZE - pad, (x + 1) * TILE_SIZE + pad)
        rows = np.arange(y * TILE_SIZE - pad, (y + 1) * TILE_SIZE + pad)
        return self.landscape.patch(cols, rows), cols, rows

    def tile_cover(self, x: int, y: int) -> np.ndarray:
        return self.tile_patch(x, y)[0].cover

    # ---- imagery ----
    def render_tile(self, x: int, y: int, rendering: str, z: int = ZOOM) -> TileResult:
        if z != ZOOM:
            return TileResult.absent(f"the simulated world renders zoom {ZOOM} only (asked for {z})")
        if not (0 <= x < 2**z and 0 <= y < 2**z):
            return TileResult.absent("tile outside the world")
        core_cols = np.arange(x * TILE_SIZE, (x + 1) * TILE_SIZE)
        core_rows = np.arange(y * TILE_SIZE, (y + 1) * TILE_SIZE)
        parts = [(b, rsl, csl, self.conditions(b, rendering)) for b, rsl, csl in _blocks_in_tile(core_cols, core_rows)]
        pad = max(_margin_needed(cond) for *_, cond in parts)
        patch, cols, rows = self.tile_patch(x, y, pad)
        core = (slice(pad, pad + TILE_SIZE), slice(pad, pad + TILE_SIZE))
        out = np.zeros((TILE_SIZE, TILE_SIZE, 3), np.uint8)
        valid = np.ones((TILE_SIZE, TILE_SIZE), bool)
        base_by_season: dict[bool, np.ndarray] = {}
        for block, rsl, csl, cond in parts:
            if cond.planting not in base_by_season:
                base_by_season[cond.planting] = render_patch(patch, cols, rows, self.seed, cond.planting)
            rgb, ok = self._image(base_by_season[cond.planting], cond, block, rendering, cols, rows)
            out[rsl, csl] = rgb[core][rsl, csl]
            valid[rsl, csl] = ok[core][rsl, csl]
        if not valid.any():
            return TileResult.absent("no imagery (simulated nodata)")
        return TileResult.image(out, None if valid.all() else valid)

    def _image(self, base, cond: BlockConditions, block: Block, rendering: str, cols, rows):
        tint, saturation = GRADING[rendering]
        _, cloud_soft, snow, nodata = condition_masks(cond, block, cols, rows)
        rgb = np.empty_like(base)
        kernels.apply_conditions(
            base, snow, cloud_soft, tint, np.float32(saturation), np.float32(cond.haze),
            np.float32(cond.gain), np.float32(cond.offset), rgb,
        )  # fmt: skip
        if cond.blur > 0:
            rgb = cv2.GaussianBlur(rgb, (0, 0), cond.blur, borderType=cv2.BORDER_REFLECT)
        img = np.empty(rgb.shape, np.uint8)
        kernels.to_uint8(rgb, nodata, img)
        return img, ~nodata


def _margin_needed(cond: BlockConditions) -> int:
    """Pixels beyond the tile that blur (3 sigma) and cloud shadows (6 px offset) reach into."""
    return max(math.ceil(3 * cond.blur), CLOUD_SHADOW_OFFSET if cond.cloud else 0)


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
