"""Checking a returned round's GeoPackage before anything is ingested: every problem at once, each naming
the layer, the feature id (as QGIS shows it in the attribute table), the block and the fix.

    read_returned(path, blocks) -> {block_id: ReturnedBlock}     raises IngestError listing every problem

`blocks`: block id -> its PixelWindow, the round's blocks from the manifest. Invalid geometry is reported,
never repaired (a repair can silently change what the labeller meant). A polygon may reach one pixel beyond
its block's edge (snapping slop) and is clipped to the block; farther out it is an error. A polygon without a
block_id (drawn without the project's default) is given the block it lies in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely

from mapper.al.labels_gpkg import (
    BLOCKS_LAYER,
    CLASSES,
    CROPLAND_LAYER,
    LAYERS,
    REQUIRED_FIELDS,
    STATUSES,
    read_layer,
)
from mapper.grid.tilegrid import PixelWindow, pixel_size
from mapper.imagery.mosaic import CRS
from mapper.labels.store import LabelError

FIX_GEOMETRY = "fix it in QGIS: Vector ▸ Geometry Tools ▸ Check Validity / Fix Geometries"


class IngestError(LabelError):
    """A returned round cannot be ingested; `problems` lists each problem with its fix. Nothing was written."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.problems = list(problems)
        listed = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"{path}: {len(self.problems)} problem(s), so nothing was ingested (blocks ingested before are "
            f"untouched). Fix them and ingest again:\n{listed}"
        )


@dataclass
class ReturnedBlock:
    block_id: str
    status: str
    geoms: list = field(default_factory=list)  # EPSG:3857, clipped to the block
    classes: list[int] = field(default_factory=list)
    fids: list[int] = field(default_factory=list)
    note: str = ""


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _as_int(value) -> int | None:
    text = _text(value)
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def _check_layers(path: Path, problems: list[str]) -> dict:
    """The layers' info; problems for missing layers, fields and foreign CRSs."""
    from pyogrio import list_layers, read_info

    try:
        present = {str(name) for name, _ in list_layers(path)}
    except Exception as e:  # pyogrio raises its own DataSourceError
        problems.append(f"cannot read {path} as a GeoPackage ({e}); hand back the round's labels.gpkg")
        return {}
    infos = {}
    for layer in LAYERS:
        if layer not in present:
            problems.append(
                f"the layer {layer!r} is missing (the file holds {', '.join(sorted(present)) or 'no layers'}); "
                "hand back the round's labels.gpkg with both layers, or export the round again into another "
                f"folder and copy its layer {layer!r} into this file (QGIS: Export ▸ Save Features As…, "
                f"GeoPackage, this file, layer name {layer!r})"
            )
            continue
        info = read_info(path, layer=layer)
        fields = {str(f) for f in info["fields"]}
        for name in REQUIRED_FIELDS[layer]:
            if name not in fields:
                problems.append(f"layer {layer!r} has no field {name!r}; add it back (QGIS: Layer Properties ▸ "
                                "Fields) and fill it in")  # fmt: skip
        crs = info.get("crs")
        if crs != CRS:
            problems.append(
                f"layer {layer!r} is in {crs or 'no CRS'}, not {CRS} (the images' CRS, which keeps the edits "
                f"pixel-aligned); save it back in {CRS}: QGIS Export ▸ Save Features As…, CRS {CRS}, this "
                f"GeoPackage, layer name {layer!r}"
            )
        infos[layer] = info
    return infos


def _read_statuses(path: Path, blocks: dict[str, PixelWindow], problems: list[str]) -> dict[str, ReturnedBlock]:
    frame = read_layer(path, BLOCKS_LAYER)
    out: dict[str, ReturnedBlock] = {}
    for fid, row in frame.iterrows():
        bid, raw = _text(row["block_id"]), _text(row["status"])
        where = f"layer 'blocks', fid {fid} (block {bid or '?'})"
        if bid not in blocks:
            problems.append(f"{where}: block_id {bid!r} is not a block of this round; restore it to one of "
                            f"{', '.join(blocks)} or delete the feature")  # fmt: skip
            continue
        if bid in out:
            problems.append(f"{where}: block {bid} is listed twice in 'blocks'; delete one of the two features")
            continue
        status = raw.lower()
        if status not in STATUSES:
            problems.append(f"{where}: status {raw!r} is not one of {', '.join(STATUSES)}; set it in the attribute "
                            "table")  # fmt: skip
            status = "todo"
        note = _text(row["note"]) if "note" in frame.columns else ""
        out[bid] = ReturnedBlock(bid, status, note=note)
    for bid in blocks:
        if bid not in out:
            problems.append(f"layer 'blocks' has no feature for block {bid}; add it back with its status "
                            "(or hand back the exported labels.gpkg)")  # fmt: skip
    return out


def _block_of(geom, boxes: dict[str, object]) -> str | None:
    """The single block whose extent holds a point of the polygon's interior."""
    point = shapely.point_on_surface(geom)
    hits = [bid for bid, box in boxes.items() if box.covers(point)]
    return hits[0] if len(hits) == 1 else None


def _geometry_problem(geom, box, res: float) -> str | None:
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        return f"is a {geom.geom_type}, not a polygon; delete it and draw a polygon"
    if not shapely.is_valid(geom):
        return f"is not a valid polygon ({shapely.is_valid_reason(geom)}); {FIX_GEOMETRY}"
    west, south, east, north = box.bounds
    if not shapely.box(west - res, south - res, east + res, north + res).covers(geom):
        beyond = float(np.max(shapely.distance(shapely.points(shapely.get_coordinates(geom)), box)))
        return (f"lies outside its block (up to {beyond:,.0f} m beyond its edge; one pixel, {res:.2f} m, is "
                "allowed); move it into the block, or set block_id to the block it lies in")  # fmt: skip
    return None


def clip_to_block(geom, box):
    """The polygon's part inside the block; the lines or points left where it only touches the edge are dropped
    (rasterio burns a line's pixels whatever the pixel-centre rule says)."""
    parts = shapely.get_parts(shapely.intersection(geom, box))
    parts = parts[np.isin(shapely.get_type_id(parts), (3, 6))]  # Polygon, MultiPolygon
    return shapely.union_all(parts) if len(parts) else shapely.Polygon()


def _read_polygons(path: Path, blocks: dict[str, PixelWindow], out: dict[str, ReturnedBlock],
                   problems: list[str]) -> None:  # fmt: skip
    frame = read_layer(path, CROPLAND_LAYER)
    boxes = {bid: shapely.box(*w.mercator_bounds) for bid, w in blocks.items()}
    allowed = ", ".join(f"{v} ({name})" for v, name in CLASSES.items())
    for fid, row in frame.iterrows():
        geom = row.geometry
        if geom is None or geom.is_empty:
            continue  # an attribute row without a shape burns nothing
        bid = _text(row["block_id"]) or _block_of(geom, boxes) or ""
        where = f"layer 'cropland', fid {fid} (block {bid or '?'})"
        if bid not in blocks:
            fix = (f"set block_id to one of {', '.join(blocks)}" if bid else
                   "it lies in no single block of the round: set its block_id, or delete it")  # fmt: skip
            problems.append(f"{where}: block_id {bid!r} is not a block of this round; {fix}")
            continue
        cls = _as_int(row["class"])
        if cls not in CLASSES:
            problems.append(f"{where}: class {_text(row['class']) or 'empty'!r} is not one of {allowed}; set it in "
                            "the attribute table")  # fmt: skip
            continue
        issue = _geometry_problem(geom, boxes[bid], pixel_size(blocks[bid].zoom))
        if issue:
            problems.append(f"{where}: the polygon {issue}")
            continue
        if bid in out:
            out[bid].geoms.append(clip_to_block(geom, boxes[bid]))
            out[bid].classes.append(cls)
            out[bid].fids.append(int(fid))


def read_returned(path: Path | str, blocks: dict[str, PixelWindow]) -> dict[str, ReturnedBlock]:
    """Every block of the round with its status and polygons, or IngestError listing every problem."""
    path = Path(path)
    if not path.exists():
        raise IngestError(path, [f"{path} does not exist; hand back the round's labels.gpkg (edited in place)"])
    problems: list[str] = []
    infos = _check_layers(path, problems)
    if problems or len(infos) < len(LAYERS):
        raise IngestError(path, problems)
    out = _read_statuses(path, blocks, problems)
    _read_polygons(path, blocks, out, problems)
    if problems:
        raise IngestError(path, problems)
    return out
