"""Opening an imagery source by its name in the config.

A source kind is its config class (mapper.config.models.SourceConfig): each source module defines one beside its
source and registers it, and the config's `sources` accept every registered kind. So this module knows no kind:
it asks the config to build its source and puts the remote ones behind the tile cache.
"""

from __future__ import annotations

from mapper.imagery.tiles import TileSource


def open_source(name: str, config, *, use_cache: bool | None = None) -> TileSource:
    """Build the source called `name` in `config` (a MapperConfig), wrapped in the tile cache if it is remote.

    Fails before any work when a token it needs is missing.
    """
    if name not in config.sources:
        config.resolve_sources(name)  # raises with the list of known sources
    sc = config.sources[name]
    source = sc.open(name, config)
    if sc.remote and (use_cache if use_cache is not None else config.cache.enabled):
        from mapper.imagery.cached_source import CachedSource
        from mapper.imagery.mbtiles import MBTilesCache

        cache = MBTilesCache.open(config.cache.dir / f"{name}.mbtiles", name=name, attribution=sc.attribution)
        return CachedSource(source, cache)
    return source
