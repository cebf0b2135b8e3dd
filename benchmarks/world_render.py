"""Rendering speed of the simulated world (WorldTileSource, one thread), tiles/s and ms per tile.

Each repeat renders a different chunk of the block's tiles (rendering is not cached per tile, but block
conditions are, so one warm-up tile is rendered first and not counted).
"""

from __future__ import annotations

import time

from benchmarks.common import median, window_keys
from mapper.grid.tilegrid import PixelWindow
from mapper.world.source import WorldTileSource


def run(
    window: PixelWindow,
    label: str,
    *,
    seed: int = 0,
    renderings: tuple[str, ...] = ("a", "b"),
    repeats: int = 5,
    tiles_per_repeat: int = 20,
    log=print,
) -> list[dict]:
    keys = window_keys(window)
    rows = []
    for rendering in renderings:
        source = WorldTileSource(rendering, seed=seed, rendering=rendering)
        source.get_tiles(keys[:1])  # warm-up: world, landscape and block conditions
        per_tile = []
        for r in range(repeats):
            start = (r * tiles_per_repeat) % max(1, len(keys))
            chunk = (keys * 2)[start : start + min(tiles_per_repeat, len(keys))]
            t0 = time.perf_counter()
            source.get_tiles(chunk)
            per_tile.append((time.perf_counter() - t0) / len(chunk))
        ms = 1000 * median(per_tile)
        rows.append(
            {
                "case": label,
                "rendering": rendering,
                "tiles_per_s": 1000 / ms,
                "ms_per_tile": ms,
                "tiles": min(tiles_per_repeat, len(keys)) * repeats,
            }
        )
        log(f"  rendering {rendering}: {1000 / ms:.1f} tiles/s, {ms:.1f} ms/tile")
    return rows
