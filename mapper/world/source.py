"""The simulated world as a tile source: the same interface as Mapbox or Google, rendered in-process.

Its config registers source kind "world"; mapper.imagery finds it through the "mapper.sources" entry point
(pyproject.toml), so imagery never imports the world.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import Field

from mapper.config.models import SourceConfig, register_source
from mapper.imagery.tiles import TileKey, TileResult


@register_source
class WorldSourceConfig(SourceConfig):
    """The simulated world, rendered in-process (same code path as any other tile source)."""

    kind: Literal["world"] = "world"
    rendering: Literal["a", "b"] = Field(description="Which of the world's two imagery renderings.")
    attribution: str = "mapper simulated world"

    @property
    def simulated(self) -> bool:
        return True

    def open(self, name: str, config) -> WorldTileSource:
        return WorldTileSource(name, seed=config.world.seed, rendering=self.rendering)


class WorldTileSource:
    def __init__(self, name: str, seed: int, rendering: str):
        from mapper.world.world import get_world  # only now: a config names the world without building it

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
