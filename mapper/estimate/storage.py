"""The disk a run fills: bytes measured on a real run (configs/throughputs.yaml, `storage`) scaled to the planned
blocks by their pixels (a block has more rows further north), their number, and once for the report."""

from __future__ import annotations

from mapper.estimate.figure import Figure
from mapper.estimate.text import size
from mapper.estimate.throughputs import Storage
from mapper.estimate.tiles import Extent


def storage_figures(config, sources: list[str], ext: Extent, blocks: int, storage: Storage) -> list[Figure]:
    """The total, then one figure per measured item (mosaics, masks, final masks, polygons, tables, report)."""
    mpx, n = ext.pixels / 1e6, len(sources)
    mpx_a_block = mpx / max(blocks, 1)
    parts: list[Figure] = []
    for key, item in storage.per_megapixel_and_source.items():
        value = item.bytes * mpx * n
        parts.append(
            _part(
                key,
                value,
                f"{item.what}: {size(item.bytes * mpx_a_block)} a block and source "
                f"({size(item.bytes)} a megapixel × {mpx:,.{0 if mpx >= 100 else 1}f} Mpx × {n} sources)",
            )
        )
    for key, item in storage.per_megapixel.items():
        parts.append(_part(key, item.bytes * mpx, f"{item.what}: {size(item.bytes * mpx_a_block)} a block"))
    for key, item in storage.per_block.items():
        parts.append(_part(key, item.bytes * blocks, f"{item.what}: {size(item.bytes)} a block"))
    for key, item in storage.fixed.items():
        parts.append(_part(key, item.bytes, f"{item.what}: once a run"))
    total = sum(p.value for p in parts)
    return [Figure("storage", "storage", total, "bytes", _total_basis(config, sources, storage)), *parts]


def _part(key: str, value: float, basis: str) -> Figure:
    return Figure(f"storage.{key}", f"  {key}", value, "bytes", basis)


def _total_basis(config, sources: list[str], storage: Storage) -> str:
    notes = [f"bytes measured on {storage.basis}"]
    mosaic = config.mosaic
    if (mosaic.compress, mosaic.level) != (storage.mosaic_compress, storage.mosaic_level):
        notes.append(
            f"measured with mosaics in {storage.mosaic_compress} level {storage.mosaic_level}; this config "
            f"writes {mosaic.compress} level {mosaic.level}, so their size differs"
        )
    if not config.simulated(sources):
        notes.append(storage.real_imagery_note)
    remote = [s for s in sources if config.sources[s].remote and config.cache.enabled]
    if remote:
        notes.append(f"the tile cache of {', '.join(remote)} is not counted (no size of a real tile is recorded)")
    return "; ".join(notes)
