"""The tile-source interface: every imagery source answers `get_tiles` for a batch of XYZ tiles.

A source returns, per tile, either RGB pixels with a validity mask or the reason the tile is missing.
Missing is a normal outcome (no imagery there, a server that kept failing); the mosaic records it as
nodata and the run goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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


# ---------------------------------------------------------------------------------------------- registry
# A source kind (the `kind` of its config) -> factory(name, source_config, mapper_config) -> TileSource.
# imagery/ registers its own kinds here; other packages register theirs through the entry-point group
# "mapper.sources" (the simulated world does, in pyproject.toml), so this module never imports them and the
# dependency runs one way. A plugin package can add a kind the same way.
SourceFactory = Callable[[str, object, object], TileSource]
ENTRY_POINT_GROUP = "mapper.sources"
_FACTORIES: dict[str, SourceFactory] = {}
REMOTE_KINDS = ("xyz", "google_tiles")  # fetched over HTTP: wrapped in the MBTiles tile cache


def register_source_kind(kind: str, factory: SourceFactory) -> None:
    """Make sources whose config has `kind` open with `factory(name, source_config, mapper_config)`."""
    _FACTORIES[kind] = factory


def source_factory(kind: str) -> SourceFactory:
    """The factory of a source kind: registered here, or found in the "mapper.sources" entry points."""
    if kind not in _FACTORIES:
        for ep in _entry_points():
            if ep.name == kind:
                register_source_kind(kind, ep.load())
                break
    if kind not in _FACTORIES:
        known = sorted({*_FACTORIES, *(ep.name for ep in _entry_points())})
        raise TypeError(
            f"no imagery source of kind {kind!r} is installed (known: {', '.join(known)}); reinstall mapper "
            "(`pip install -e .`) if 'world' is missing: its sources are registered by the package metadata"
        )
    return _FACTORIES[kind]


def _entry_points():
    from importlib.metadata import entry_points

    return entry_points(group=ENTRY_POINT_GROUP)


def open_source(name: str, config, *, use_cache: bool | None = None) -> TileSource:
    """Build the source called `name` in `config` (a MapperConfig), wrapped in the tile cache if it is remote.

    Fails before any work when a token it needs is missing.
    """
    if name not in config.sources:
        config.resolve_sources(name)  # raises with the list of known sources
    sc = config.sources[name]
    source = source_factory(sc.kind)(name, sc, config)
    if sc.kind in REMOTE_KINDS and (use_cache if use_cache is not None else config.cache.enabled):
        from mapper.imagery.cached_source import CachedSource
        from mapper.imagery.mbtiles import MBTilesCache

        cache = MBTilesCache.open(config.cache.dir / f"{name}.mbtiles", name=name, attribution=sc.attribution)
        return CachedSource(source, cache)
    return source


def _open_http(name: str, sc, config) -> TileSource:
    from mapper.imagery.http import open_http_source

    return open_http_source(name, sc)


def _open_raster(name: str, sc, config) -> TileSource:
    from mapper.imagery.rasterfile import RasterFileSource

    return RasterFileSource(name, sc)


register_source_kind("xyz", _open_http)
register_source_kind("google_tiles", _open_http)
register_source_kind("raster", _open_raster)
