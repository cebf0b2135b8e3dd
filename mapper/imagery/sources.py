"""The tile-source interface: every imagery source answers `get_tiles` for a batch of XYZ tiles.

A source returns, per tile, either RGB pixels with a validity mask or the reason the tile is missing.
Missing is a normal outcome (no imagery there, a server that kept failing); the mosaic records it as
nodata and the run goes on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mapper.imagery.tilegrid import TILE_SIZE

TileKey = tuple[int, int, int]  # (z, x, y)


@dataclass
class TileResult:
    """One tile: `rgb` (256, 256, 3) uint8 and `valid` (256, 256) bool, or `missing` with the reason."""

    rgb: np.ndarray | None = None
    valid: np.ndarray | None = None
    missing: str | None = None

    @classmethod
    def absent(cls, reason: str) -> TileResult:
        return cls(missing=reason)

    @classmethod
    def image(cls, rgb: np.ndarray, valid: np.ndarray | None = None) -> TileResult:
        if rgb.shape != (TILE_SIZE, TILE_SIZE, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"tile pixels must be ({TILE_SIZE}, {TILE_SIZE}, 3) uint8, got {rgb.shape} {rgb.dtype}")
        return cls(rgb=rgb, valid=valid)

    @property
    def ok(self) -> bool:
        return self.missing is None


class TileSource(Protocol):
    """What the mosaic and the pipeline need from an imagery source."""

    name: str

    def get_tiles(self, keys: Iterable[TileKey]) -> dict[TileKey, TileResult]:
        """Fetch a batch of tiles (concurrently where the source can)."""
        ...

    def close(self) -> None: ...


def open_source(name: str, config, *, use_cache: bool | None = None) -> TileSource:
    """Build the source called `name` in `config` (a MapperConfig), wrapped in the tile cache if it is remote.

    Fails before any work when a token it needs is missing.
    """
    from mapper.config.models import GoogleTilesConfig, RasterFileSourceConfig, WorldSourceConfig, XYZSourceConfig

    if name not in config.sources:
        config.resolve_sources(name)  # raises with the list of known sources
    sc = config.sources[name]
    if isinstance(sc, WorldSourceConfig):
        from mapper.world.source import WorldTileSource

        return WorldTileSource(name, seed=config.world.seed, rendering=sc.rendering)
    if isinstance(sc, RasterFileSourceConfig):
        from mapper.imagery.rasterfile import RasterFileSource

        return RasterFileSource(name, sc)
    if isinstance(sc, XYZSourceConfig | GoogleTilesConfig):
        from mapper.imagery.http import open_http_source

        source = open_http_source(name, sc)
        if use_cache if use_cache is not None else config.cache.enabled:
            from mapper.imagery.cached_source import CachedSource
            from mapper.imagery.mbtiles import MBTilesCache

            cache = MBTilesCache.open(config.cache.dir / f"{name}.mbtiles", name=name, attribution=sc.attribution)
            return CachedSource(source, cache)
        return source
    raise TypeError(f"unsupported source config {type(sc).__name__}")
