"""Per imagery source: the tiles a run fetches, what they cost, and how long fetching them takes at the least.

A source is one of three sorts: the simulated world (rendered in this process: free, no requests), files of your
own (warped, no tiles) or a tile server (remote: behind the MBTiles cache, priced, rate-limited)."""

from __future__ import annotations

from mapper.estimate.figure import Figure
from mapper.estimate.text import duration
from mapper.estimate.throughputs import FetchRates
from mapper.estimate.tiles import Extent

LIMITS = (("max_requests_per_second", 1.0), ("tiles_per_minute", 60.0), ("tiles_per_day", 86400.0))


def _figure(what: str, name: str, value, unit: str, basis: str, missing: str = "not estimated") -> Figure:
    """A per-source figure: key "tiles.mapbox", label "tiles mapbox"."""
    return Figure(f"{what}.{name}", f"{what} {name}", value, unit, basis, missing)


def source_figures(config, name: str, ext: Extent, blocks: int, rates: FetchRates) -> list[Figure]:
    """Tiles, price and fetch time of source `name` (of `config`) over the blocks of `ext`."""
    sc = config.sources[name]
    per_block = ext.tile_requests / max(blocks, 1)
    grid = f"z{config.zoom} tiles of the blocks' pixel grids ({per_block:.0f} a block)"
    if sc.simulated:
        rendered = (
            f"rendered at {rates.world_tiles_per_s:g} tiles/s on one core ({rates.world_basis}); part of the time below"
        )
        return [
            _figure("tiles", name, ext.tile_requests, "tiles", f"{grid}, rendered in this process: no requests"),
            _figure("price", name, 0.0, "USD", "simulated world: free"),
            _figure("fetch", name, ext.tile_requests / rates.world_tiles_per_s, "s", rendered),
        ]
    if not sc.remote:
        return [
            _figure("tiles", name, None, "tiles", "your raster files, warped onto the block grids", missing="none"),
            _figure("price", name, 0.0, "USD", "your own files: no tile price"),
        ]
    tiles = ext.tiles if config.cache.enabled else ext.tile_requests
    if config.cache.enabled:
        how = (
            f"{grid}, each once: a tile two blocks share comes from the tile cache the second time "
            f"({ext.tile_requests:,} without it); tiles already in the cache are not subtracted"
        )
    else:
        how = f"{grid}; the tile cache is off, so a tile two blocks share is fetched by each"
    return [_figure("tiles", name, tiles, "tiles", how), _price(name, sc.price_per_1000_tiles, tiles),
            _fetch(name, sc, tiles, rates)]  # fmt: skip


def _price(name: str, per_1000: float | None, tiles: int) -> Figure:
    setting = f"sources.{name}.price_per_1000_tiles"
    if per_1000 is None:
        return _figure("price", name, None, "USD", f"(set {setting}, in USD, in a --config file)", missing="not set")
    basis = f"{tiles:,} tiles × {per_1000:g} USD per 1,000 ({setting})"
    return _figure("price", name, tiles / 1000 * per_1000, "USD", basis)


def _fetch(name: str, sc, tiles: int, rates: FetchRates) -> Figure:
    """The least time to fetch the tiles: this machine's client at its recorded best, and each configured limit."""
    client = tiles / rates.http_tiles_per_s
    bounds, said = [client], []
    for setting, per_seconds in LIMITS:
        limit = getattr(sc, setting, None)
        if limit:
            bounds.append(tiles / limit * per_seconds)
            said.append(f"{setting} {limit:,g} → {duration(bounds[-1])}")
    limits = f"; the configured limits: {', '.join(said)}" if said else "; no limit configured"
    basis = (
        f"at least: {duration(client)} at {rates.http_tiles_per_s:g} tiles/s, this machine's client against a "
        f"loopback server ({rates.http_basis}); real tile servers are slower and rate-limited{limits}"
    )
    return _figure("fetch", name, max(bounds), "s", basis)
