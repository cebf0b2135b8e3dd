"""The 0.05° block grid: blocks are WGS84 cells aligned to multiples of the block size.

Block (ix, iy) spans lon [ix·s − 180, (ix+1)·s − 180) and lat [iy·s − 90, (iy+1)·s − 90), s = 0.05°.
Its id is "ix_iy" (e.g. "6045_2252"), stable across runs and readable in file names.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from mapper.grid.tilegrid import PixelWindow, window_for_lonlat_bounds

BLOCK_DEG = 0.05
CELLS_PER_DEGREE = 20  # 1 / BLOCK_DEG, kept integer so block edges are exact rationals
_ID = re.compile(r"^(\d{1,4})_(\d{1,4})$")


@dataclass(frozen=True, order=True)
class Block:
    ix: int
    iy: int

    def __post_init__(self):
        if not (0 <= self.ix < 360 * CELLS_PER_DEGREE and 0 <= self.iy < 180 * CELLS_PER_DEGREE):
            raise ValueError(f"block index ({self.ix}, {self.iy}) is outside the world grid")

    @property
    def id(self) -> str:
        return f"{self.ix}_{self.iy}"

    @classmethod
    def parse(cls, block_id: str) -> Block:
        m = _ID.match(block_id.strip())
        if not m:
            raise ValueError(
                f"not a block id: {block_id!r}; expected 'ix_iy' as printed by `mapper grid`, e.g. '6045_2252'"
            )
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def containing(cls, lon: float, lat: float) -> Block:
        ix, iy = lonlat_to_block_index(lon, lat)
        return cls(int(ix), int(iy))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in degrees."""
        return (
            self.ix / CELLS_PER_DEGREE - 180.0,
            self.iy / CELLS_PER_DEGREE - 90.0,
            (self.ix + 1) / CELLS_PER_DEGREE - 180.0,
            (self.iy + 1) / CELLS_PER_DEGREE - 90.0,
        )

    @property
    def center(self) -> tuple[float, float]:
        w, s, e, n = self.bounds
        return (w + e) / 2, (s + n) / 2

    def window(self, zoom: int = 16) -> PixelWindow:
        """The block's pixels on the native EPSG:3857 grid at `zoom`."""
        return window_for_lonlat_bounds(*self.bounds, zoom)

    @cached_property
    def polygon(self):
        from shapely.geometry import box

        return box(*self.bounds)


def lonlat_to_block_index(lon, lat):
    """Vectorised (ix, iy) of the blocks containing points; exact on block edges for decimal inputs."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    # Round before flooring so that 113.35 (= 6,587 edges exactly) is not taken as 6586.9999999.
    ix = np.floor(np.round((lon + 180.0) * CELLS_PER_DEGREE, 9)).astype(np.int64)
    iy = np.floor(np.round((lat + 90.0) * CELLS_PER_DEGREE, 9)).astype(np.int64)
    return ix, iy


def blocks_in_bounds(west: float, south: float, east: float, north: float) -> list[Block]:
    """Every block that intersects the lon/lat box (touching an edge does not count)."""
    ix0, iy0 = lonlat_to_block_index(west, south)
    ix1 = math.ceil(round((east + 180.0) * CELLS_PER_DEGREE, 9))
    iy1 = math.ceil(round((north + 90.0) * CELLS_PER_DEGREE, 9))
    return [Block(ix, iy) for iy in range(int(iy0), iy1) for ix in range(int(ix0), ix1)]
