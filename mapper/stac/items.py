"""One STAC item per done block: its footprint on the z16 grid, its time, what the run found, and its files.

Assets: `cropland` (the final mask, a COG; role data), `mask_<source>` (each source's own mask and
probability), `mosaic_<source>` (the imagery, role visual), `polygons` (the block's cropland polygons) and,
after `mapper croptype map`, `croptype` (10 m crop types, UTM) and `croptype_parcels` (fields with crops).
Files the run did not keep are left out. The item's projection fields are the final mask's header; an asset
on another grid carries its own.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path

import pystac

from mapper.grid.blocks import Block
from mapper.grid.tilegrid import mercator_to_lonlat, pixel_size
from mapper.stac.rasters import RasterFacts, add_bands, add_projection, media_type_of, read_facts
from mapper.stac.runinfo import RunInfo, StacExportError

RUN_TIME_NOTE = ("The web-map imagery gives no acquisition date: datetime is when mapper fetched the block's "
                 "imagery, start_datetime when the run began and end_datetime when the block's final mask was "
                 "written (mapper:datetime_basis = run).")  # fmt: skip
IMAGERY_TIME_NOTE = "datetime, start_datetime and end_datetime are the imagery's acquisition dates."


@dataclass(frozen=True)
class BlockFile:
    """A file of a block and how it is described as an asset."""

    key: str
    path: Path
    roles: tuple[str, ...]
    title: str
    media_type: str | None = None  # None: a raster, typed from its header


def block_files(run: RunInfo, block_id: str) -> list[BlockFile]:
    """The block's files that exist, the final mask first."""
    from mapper.croptype.stage import block_parcels_path, block_raster_path

    layout = run.layout
    final = "Cropland: the final mask (the sources integrated by the block's decision)"
    files = [BlockFile("cropland", layout.final(block_id), ("data",), final)]
    files += [BlockFile(f"mask_{s}", layout.mask(s, block_id), ("data",),
                        f"Cropland of source {s} alone, before integration, and its probability")
              for s in run.sources]  # fmt: skip
    files += [BlockFile(f"mosaic_{s}", layout.mosaic(s, block_id), ("visual",),
                        f"Imagery of source {s} on the block's z16 grid (RGB)")
              for s in run.sources]  # fmt: skip
    parquet = pystac.MediaType.VND_APACHE_PARQUET
    files += [
        BlockFile("polygons", layout.block_polygons(block_id), ("data",),
                  "Cropland polygons of the block (GeoParquet, EPSG:4326)", parquet),
        BlockFile("croptype", block_raster_path(run.root, block_id), ("data",),
                  "Crop types at 10 m (band 1 leaf code, bands 2-5 levels 1-4, band 6 probability %)"),
        BlockFile("croptype_parcels", block_parcels_path(run.root, block_id), ("data",),
                  "Fields with their crop types (GeoParquet, EPSG:4326)", parquet),
    ]  # fmt: skip
    return [f for f in files if f.path.is_file()]


def footprint(block_id: str, zoom: int) -> tuple[float, float, float, float]:
    """(west, south, east, north) in degrees of the block's pixels on the z16 grid (the pixels whose centres
    lie in the 0.05° cell, so up to half a pixel beyond it)."""
    x0, y0, x1, y1 = Block.parse(block_id).window(zoom).mercator_bounds
    (west, east), (south, north) = mercator_to_lonlat([x0, x1], [y0, y1])
    return float(west), float(south), float(east), float(north)


def block_item(run: RunInfo, block_id: str, province: str | None, href_of) -> pystac.Item:
    """The item of a done block; `href_of(path)` gives each file's href (absolute path or URL)."""
    files = block_files(run, block_id)
    if not files or files[0].key != "cropland":
        raise StacExportError(f"{run.layout.final(block_id)} vanished while exporting; export again")
    facts = {f.key: read_facts(f.path) for f in files if f.media_type is None}
    west, south, east, north = footprint(block_id, run.zoom)
    when, start, end, basis = item_times(run, block_id, facts)
    gsd = pixel_size(run.zoom) * math.cos(math.radians((south + north) / 2))
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    note = RUN_TIME_NOTE if basis == "run" else IMAGERY_TIME_NOTE
    item = pystac.Item(
        id=block_id,
        geometry={"type": "Polygon", "coordinates": [ring]},
        bbox=[west, south, east, north],
        datetime=when,
        start_datetime=start,
        end_datetime=end,
        properties={"title": f"Block {block_id}", "description": note, "gsd": round(gsd, 3),
                    **_block_properties(run, block_id, province, basis)},
    )
    grid = facts["cropland"]
    add_projection(item, grid)
    for f in files:
        asset = pystac.Asset(href=href_of(f.path), title=f.title, roles=list(f.roles),
                             media_type=f.media_type or media_type_of(facts[f.key], f.path))  # fmt: skip
        item.add_asset(f.key, asset)
        if f.key in facts:
            if facts[f.key].grid != grid.grid:
                add_projection(asset, facts[f.key])
            add_bands(asset, facts[f.key], gsd if facts[f.key].grid == grid.grid else None)
    return item


def item_times(run: RunInfo, block_id: str, facts: dict[str, RasterFacts]):
    """(datetime, start, end, basis): the imagery's dates when its files carry them, else the run's times."""
    dates = sorted({f.acquired for key, f in facts.items() if key.startswith("mosaic_") and f.acquired})
    if dates:
        start = dt.datetime.combine(dates[0], dt.time(0, 0), tzinfo=dt.UTC)
        end = dt.datetime.combine(dates[-1], dt.time(23, 59, 59), tzinfo=dt.UTC)
        return (start if len(dates) == 1 else None), start, end, "imagery"
    times = run.times.get(block_id)
    finished = times.finished if times else None
    fetched = (times.fetched if times else None) or finished or run.created
    if fetched is None:
        raise StacExportError(f"{run.root}: the state database has no time for block {block_id}; "
                              f"resume the run with `mapper run --resume {run.root}`")  # fmt: skip
    start = min(t for t in (run.created, fetched) if t is not None)
    return fetched, start, max(t for t in (finished, fetched) if t is not None), "run"


def _block_properties(run: RunInfo, block_id: str, province: str | None, basis: str) -> dict:
    """What the run found in the block, as mapper: fields."""
    result = run.final.get(block_id, {})
    props = {"mapper:datetime_basis": basis, "mapper:province": province,
             "mapper:decision": result.get("decision"),
             "mapper:cropland_fraction": result.get("cropland_fraction"),
             "mapper:valid_fraction": result.get("valid_fraction"),
             "mapper:coverage": run.coverage.get(block_id) or None}  # fmt: skip
    return {k: v for k, v in props.items() if v is not None and not _nan(v)}


def _nan(value: object) -> bool:
    """NaN is not JSON: a value the run could not compute is left out."""
    return isinstance(value, float) and not math.isfinite(value)
