"""The simulated world as a tile source: the same interface as Mapbox or Google, rendered in-process."""

from __future__ import annotations

from collections.abc import Iterable

from mapper.imagery.sources import TileKey, TileResult
from mapper.world.world import get_world


class WorldTileSource:
    def __init__(self, name: str, seed: int, rendering: str):
        self.name = name
        self.seed = seed
        self.rendering = rendering
        self.world = get_world(seed)

    def get_tiles(self, keys: Iterable[TileKey]) -> dict[TileKey, TileResult]:
        return {(z, x, y): self.world.render_tile(x, y, self.rendering, z) for z, x, y in keys}

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"WorldTileSource({self.name!r}, seed={self.seed}, rendering={self.rendering!r})"


def open_world_source(name: str, source_config, config) -> WorldTileSource:
    """The factory of source kind "world" (registered through the "mapper.sources" entry point)."""
    return WorldTileSource(name, seed=config.world.seed, rendering=source_config.rendering)
