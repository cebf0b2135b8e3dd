"""How much imagery a set of blocks is: pixels, tiles (each block's own, and each tile once) and ground area.

Every block's pixel window comes from the block grid's own tile math (mapper.grid: the pixels whose centres lie in
the 0.05° cell). A block's columns depend on its ix only and its rows on its iy only, so a country's 383,000
blocks need one window per distinct column and row of blocks, not one per block."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mapper.grid.area import band_area_m2
from mapper.grid.blocks import BLOCK_DEG, CELLS_PER_DEGREE, Block
from mapper.grid.tilegrid import TILE_SIZE

_ANY_IX, _ANY_IY = 0, 1800  # a valid block index for the axis a window is not asked about


@dataclass(frozen=True)
class Extent:
    """The imagery of a set of blocks at one zoom."""

    pixels: int  # z-level pixels of all blocks (each pixel belongs to one block)
    tile_requests: int  # tiles summed over blocks: a tile on a block edge counts once per block touching it
    tiles: int  # distinct tiles: each fetched once when a tile cache serves the second block
    area_m2: float  # true ground area of the blocks (WGS84 ellipsoid)


def _spans(values: np.ndarray, axis: str, zoom: int) -> dict[int, tuple[int, int]]:
    """Pixel span [lo, hi) along one axis for each distinct block column (axis "x") or row ("y")."""
    out = {}
    for v in np.unique(values).tolist():
        window = (Block(v, _ANY_IY) if axis == "x" else Block(_ANY_IX, v)).window(zoom)
        out[v] = (window.col0, window.col1) if axis == "x" else (window.row0, window.row1)
    return out


def _tile_span(span: tuple[int, int]) -> tuple[int, int]:
    """First and last tile index (inclusive) a pixel span touches."""
    return span[0] // TILE_SIZE, (span[1] - 1) // TILE_SIZE


def _count(span: tuple[int, int]) -> int:
    return span[1] - span[0] + 1


def block_areas_m2(iy: np.ndarray) -> np.ndarray:
    """True ground area of blocks of these rows (a block's area depends on its latitude only)."""
    south = np.asarray(iy, dtype=np.float64) / CELLS_PER_DEGREE - 90.0
    return band_area_m2(south, south + BLOCK_DEG, BLOCK_DEG)


def extent(ix: np.ndarray, iy: np.ndarray, zoom: int) -> Extent:
    """Pixels, tiles and area of the blocks (ix[i], iy[i]) at `zoom`."""
    ix, iy = np.asarray(ix, dtype=np.int64), np.asarray(iy, dtype=np.int64)
    if len(ix) == 0:
        return Extent(0, 0, 0, 0.0)
    cols, rows = _spans(ix, "x", zoom), _spans(iy, "y", zoom)
    width = np.array([cols[v][1] - cols[v][0] for v in ix.tolist()], dtype=np.int64)
    height = np.array([rows[v][1] - rows[v][0] for v in iy.tolist()], dtype=np.int64)
    tiles_x = np.array([_count(_tile_span(cols[v])) for v in ix.tolist()], dtype=np.int64)
    tiles_y = np.array([_count(_tile_span(rows[v])) for v in iy.tolist()], dtype=np.int64)
    return Extent(
        pixels=int((width * height).sum()),
        tile_requests=int((tiles_x * tiles_y).sum()),
        tiles=distinct_tiles(ix, iy, cols, rows),
        area_m2=float(block_areas_m2(iy).sum()),
    )


def distinct_tiles(ix: np.ndarray, iy: np.ndarray, cols: dict, rows: dict) -> int:
    """Tiles the blocks touch, each counted once: per row of tiles, the union of the tile columns of the rows of
    blocks that cover it. Rows of blocks are taken north to south (tile rows ascending), so a tile row is complete
    once the next row of blocks starts below it, and only the open tile rows are held."""
    tx_lo = min(_tile_span(s)[0] for s in cols.values())
    tx_hi = max(_tile_span(s)[1] for s in cols.values())
    order = np.argsort(-iy, kind="stable")
    ix, iy = ix[order], iy[order]
    starts = np.flatnonzero(np.r_[True, iy[1:] != iy[:-1]])
    total, open_rows = 0, {}
    for start, end in zip(starts, [*starts[1:], len(iy)], strict=True):
        ty0, ty1 = _tile_span(rows[int(iy[start])])
        for ty in [t for t in open_rows if t < ty0]:  # rows no later block row reaches
            total += int(open_rows.pop(ty).sum())
        covered = np.zeros(tx_hi - tx_lo + 2, dtype=np.int32)
        for v in ix[start:end].tolist():
            t0, t1 = _tile_span(cols[v])
            covered[t0 - tx_lo] += 1
            covered[t1 - tx_lo + 1] -= 1
        row_mask = np.cumsum(covered)[:-1] > 0
        for ty in range(ty0, ty1 + 1):
            open_rows[ty] = open_rows[ty] | row_mask if ty in open_rows else row_mask
    return total + sum(int(m.sum()) for m in open_rows.values())
