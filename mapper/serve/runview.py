"""What `mapper serve` shows of a run directory, read-only and live: the state database says which blocks are
done (so a run still being written is shown as it stands), the block GeoTIFFs are the layers, blocks.parquet
and validation.json add the inspector's numbers when they exist.

Nothing here takes a path from a request: layers and blocks are looked up by name in what the run holds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from mapper.grid.blocks import Block
from mapper.serve.tiles import CROPLAND_RGBA, BlockRaster, band_total, ramp_colours
from mapper.store.run_store import RunStore, RunStoreError

FIELD_SIMPLIFY_DEG = 5e-6  # ≈ 0.5 m: field outlines keep their 2 m shape at a fraction of the vertices
MAX_GRID_BLOCKS = 20_000  # beyond this (a country) the grid shows the blocks worked on, not every planned one


class ServeError(ValueError):
    """A directory that cannot be served; the message names the fix."""


@dataclass
class Layer:
    """A tile layer of the page: block rasters on the z16 grid (`rasters`) or one raster on any grid (`path`)."""

    id: str
    name: str
    kind: str  # imagery | final | mask | paletted | ramp
    group: str
    min_zoom: int
    rasters: dict[str, BlockRaster] = field(default_factory=dict)
    path: Path | None = None
    legend: list[dict] = field(default_factory=list)
    visible: bool = False
    palette: list[tuple[int, str, str]] = field(default_factory=list)  # paletted: (code, colour, label)

    @cached_property
    def total_of_bands(self) -> tuple:
        """A ramp layer's band sum, transform and CRS (read once: the allocation raster is small)."""
        return band_total(self.path)

    @cached_property
    def ramp_max(self) -> float:
        """A ramp layer's value drawn in the scale's last colour: its largest band sum."""
        return float(np.nanmax(self.total_of_bands[0], initial=0.0))

    @cached_property
    def colours(self) -> np.ndarray:
        """RGBA per code (256 × 4) of a paletted layer, from its palette; code 0 and unknown codes transparent."""
        table = np.zeros((256, 4), np.uint8)
        for code, colour, _ in self.palette:
            if 0 < code < 256:
                table[code] = (*(int(colour[i : i + 2], 16) for i in (1, 3, 5)), 255)
        return table

    def describe(self) -> dict:
        return {"id": self.id, "name": self.name, "kind": self.kind, "group": self.group, "min_zoom": self.min_zoom,
                "legend": self.legend, "visible": self.visible, "blocks": len(self.rasters)}  # fmt: skip


def file_signature(paths) -> tuple:
    """(path, mtime_ns, size) of each path, None for a missing one: equal tuples, unchanged files."""
    out = []
    for p in paths:
        try:
            st = p.stat()
            out.append((str(p), st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((str(p), None, None))
    return tuple(out)


def _rgb(rgba) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgba[:3])


def _block_raster(block_id: str, path: Path, zoom: int) -> BlockRaster:
    return BlockRaster(block_id, path, Block.parse(block_id).window(zoom))


def _rasters(block_ids, path_of, zoom: int) -> dict[str, BlockRaster]:
    out = {}
    for b in block_ids:
        p = path_of(b)
        if p.is_file():
            out[b] = _block_raster(b, p, zoom)
    return out


def _finite(value):
    """JSON-safe: NaN and infinities become None, numpy scalars plain Python."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunView:
    """A run directory as the web app sees it. `refresh()` rereads the state (the run may still be written)."""

    kind = "run"

    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ServeError(f"{root} is not a directory; give a run directory (`mapper run --out DIR`) or a "
                             "label campaign (`mapper al init DIR`)")  # fmt: skip
        try:
            self.store = RunStore.read_only(self.root)
        except RunStoreError as e:
            raise ServeError(str(e)) from None
        self.identity = self.store.identity
        self.sources: list[str] = list(self.identity.get("sources", []))
        self.zoom = int(self.identity.get("config", {}).get("zoom", 16))
        self.refresh()

    # ------------------------------------------------------------------------------------------ state
    def refresh(self) -> None:
        """Reread the state database, the block table and the validation (cheap: a run's few files)."""
        self.blocks = self._block_states()
        self.table = self._block_table()
        self.validation = self._validation()
        self.layers = {layer.id: layer for layer in self._layers()}

    def signature(self) -> tuple:
        """What changes when the run does: the state database (and its WAL) and the files written at the end."""
        names = ("state.sqlite", "state.sqlite-wal", "blocks.parquet", "validation.json", "croptype",
                 "allocation/allocation.tif")  # fmt: skip
        return file_signature(self.root / n for n in names)

    def _block_states(self) -> dict[str, dict]:
        conn = self.store.conn
        planned = self.store.planned()
        worked = planned > MAX_GRID_BLOCKS
        rows = conn.execute("SELECT block_id, province FROM blocks ORDER BY seq"
                            + (" LIMIT 0" if worked else "")).fetchall()  # fmt: skip
        blocks = {b: {"block_id": b, "province": p, "status": "pending"} for b, p in rows}
        for b, stage, source, status, result in conn.execute(
            "SELECT t.block_id, t.stage, t.source, t.status, t.result FROM tasks t JOIN blocks k "
            "ON k.block_id = t.block_id ORDER BY k.seq"
        ):
            row = blocks.setdefault(b, {"block_id": b, "province": None, "status": "pending"})
            if status != "done":
                if status == "failed":
                    row["status"] = "failed"
                    row.setdefault("errors", []).append(f"{stage} {source}".strip())
                continue
            _merge_result(row, stage, source, json.loads(result) if result else {})
        return blocks

    def _block_table(self) -> dict[str, dict]:
        path = self.root / "blocks.parquet"
        if not path.is_file():
            return {}
        import pyarrow.parquet as pq

        table = pq.read_table(path).drop_columns(["geometry"]).to_pylist()
        return {r["block_id"]: {k: _finite(v) for k, v in r.items()} for r in table}

    def _validation(self) -> dict:
        path = self.root / "validation.json"
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}  # being rewritten: the next refresh reads it

    def status(self) -> dict:
        counts = {"planned": self.store.planned(), "done": 0, "failed": 0, "pending": 0}
        for row in self.blocks.values():
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        counts["pending"] = counts["planned"] - counts["done"] - counts["failed"]
        notes = []
        if counts["pending"]:
            notes.append(f"{counts['pending']} of {counts['planned']} blocks not done yet: shown as the run stands "
                         f"(finish it with `mapper run --resume {self.root.name}`)")  # fmt: skip
        if counts["failed"]:
            notes.append(f"{counts['failed']} blocks failed (`mapper run --resume {self.root.name} --retry-failed`)")
        if not (self.root / "blocks.parquet").is_file():
            notes.append("no blocks.parquet yet (written when the run finishes): the inspector shows the state "
                         "database's results only")  # fmt: skip
        if not self.validation:
            notes.append(f"not validated: `mapper validate {self.root.name}` adds each block's numbers")
        if not any((self.root / "mosaics").glob("*/*.tif")):
            notes.append("no block mosaics kept: no imagery layers (mosaics are kept unless the run turned them off)")
        return {**counts, "complete": counts["done"] == counts["planned"], "notes": notes}

    # ------------------------------------------------------------------------------------------ layers
    def _layers(self) -> list[Layer]:
        ids = list(self.blocks)
        layout = self.store.layout
        layers = []
        for i, s in enumerate(self.sources):
            layers.append(Layer(f"imagery-{s}", f"imagery: {s}", "imagery", "imagery", 12,
                                _rasters(ids, lambda b, s=s: layout.mosaic(s, b), self.zoom), visible=i == 0))
        layers.append(Layer("final", "final cropland", "final", "cropland", 9,
                            _rasters(ids, layout.final, self.zoom), visible=True,
                            legend=[{"label": "cropland", "colour": _rgb(CROPLAND_RGBA["final"])},
                                    {"label": "no imagery", "colour": "#a0a0a0"}]))  # fmt: skip
        for s in self.sources:
            layers.append(Layer(f"mask-{s}", f"mask: {s}", "mask", "cropland", 12,
                                _rasters(ids, lambda b, s=s: layout.mask(s, b), self.zoom),
                                legend=[{"label": f"cropland ({s})", "colour": _rgb(CROPLAND_RGBA["mask"])}]))
        layers += _extra_layers(self.root)
        return [layer for layer in layers if layer.rasters or layer.path is not None]

    def block_files(self, block_id: str) -> dict[str, tuple[Path, str]]:
        """The block's pictures for the inspector: name -> (GeoTIFF, how to draw it)."""
        out = {}
        for layer in self.layers.values():
            r = layer.rasters.get(block_id)
            if r is not None:
                out[layer.id] = (r.path, layer.kind)
        return out

    # ------------------------------------------------------------------------------------------ blocks
    def grid_features(self) -> dict:
        """The block grid as GeoJSON (EPSG:4326) with what the page colours it by."""
        features = []
        for b, row in self.blocks.items():
            props = {**row, **_semantic(self.validation, b)}
            props.pop("errors", None)
            features.append({"type": "Feature", "id": b, "properties": props,
                             "geometry": _box(Block.parse(b).bounds)})  # fmt: skip
        return {"type": "FeatureCollection", "features": features}

    def block_detail(self, block_id: str) -> dict | None:
        if block_id not in self.blocks:
            return None
        checked = next((v for v in self.validation.get("blocks", []) if v.get("block_id") == block_id), None)
        return {"block_id": block_id, "state": self.blocks[block_id], "table": self.table.get(block_id),
                "validation": checked, "pictures": sorted(self.block_files(block_id)),
                "fields": (self.root / "croptype" / "parcels" / f"{block_id}.parquet").is_file(),
                "bounds": Block.parse(block_id).bounds}  # fmt: skip

    def field_features(self, block_id: str) -> dict | None:
        """The block's crop-type field polygons (EPSG:4326) with their crop, coloured as the crop-type layer."""
        path = self.root / "croptype" / "parcels" / f"{block_id}.parquet"
        if block_id not in self.blocks or not path.is_file():
            return None
        import geopandas as gpd

        frame = gpd.read_parquet(path)
        colours = {code: colour for layer in self.layers.values() for code, colour, _ in layer.palette}
        frame["colour"] = frame["crop_code"].map(lambda c: colours.get(int(c), "#ffffff"))
        keep = [c for c in ("crop", "crop_code", "crop_prob", "area_m2", "unit_name", "colour") if c in frame]
        frame = frame[[*keep, "geometry"]].to_crs("EPSG:4326")
        frame["geometry"] = frame.geometry.simplify(FIELD_SIMPLIFY_DEG)
        return json.loads(frame.to_json(to_wgs84=False, drop_id=True))

    def bounds(self) -> list[float] | None:
        ids = [b for b, r in self.blocks.items() if r["status"] == "done"] or list(self.blocks)
        if not ids:
            return None
        bs = [Block.parse(b).bounds for b in ids]
        return [min(b[0] for b in bs), min(b[1] for b in bs), max(b[2] for b in bs), max(b[3] for b in bs)]

    def describe(self) -> dict:
        region = self.identity.get("region", {})
        return {"kind": self.kind, "name": self.root.name, "region": region.get("name") or region.get("kind"),
                "sources": self.sources, "world_seed": self.identity.get("world_seed"),
                "mapper_version": self.identity.get("mapper_version"), "status": self.status(),
                "layers": [layer.describe() for layer in self.layers.values()], "bounds": self.bounds(),
                "colour_by": COLOUR_BY, "validated": bool(self.validation)}  # fmt: skip


# The block grid's colourings (the page draws them; the values are properties of grid_features).
COLOUR_BY = {
    "status": {"done": "#2e7d32", "failed": "#c62828", "pending": "#9e9e9e"},
    "decision": {"Merge": "#1565c0", "Only A": "#f9a825", "Only B": "#6a1b9a", "Neither": "#757575"},
    "semantic": {"correct": "#2e7d32", "wrong": "#c62828", "not validated": "#9e9e9e"},
    "iqa": {"Planting": "#2e7d32", "Non-planting": "#a1887f", "Cloudy": "#90caf9", "Snow/Ice": "#e0f7fa",
            "Nodata": "#424242"},
}


def _merge_result(row: dict, stage: str, source: str, result: dict) -> None:
    """The state database's results the page needs, per block (and per source: iqa_<source>)."""
    if stage == "final":
        row["status"] = "done"
        row["decision"] = result.get("decision")
        row["cropland_fraction"] = _finite(result.get("cropland_fraction"))
    elif stage == "iqa" and source:
        row[f"iqa_{source}"] = result.get("coverage")
    elif stage == "segment" and source:
        row[f"cropland_fraction_{source}"] = _finite(result.get("cropland_fraction"))


def _semantic(validation: dict, block_id: str) -> dict:
    """Semantic correctness of the block's final map when the run is validated: correct | wrong."""
    for v in validation.get("blocks", []):
        if v.get("block_id") == block_id:
            final = v.get("maps", {}).get("final", {})
            if final.get("truth_class") is None:
                break
            return {"semantic": "correct" if final.get("model_class") == final.get("truth_class") else "wrong",
                    "iou": _finite(final.get("iou"))}  # fmt: skip
    return {"semantic": "not validated"}


def _box(bounds) -> dict:
    w, s, e, n = bounds
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def _extra_layers(root: Path) -> list[Layer]:
    """Crop types (a paletted layer per UTM zone VRT, coloured by its QGIS style) and the allocation's total
    harvested area per cell, when the run has them."""
    layers = []
    for vrt in sorted((root / "croptype").glob("map_*.vrt")):
        palette = qml_palette(vrt.with_suffix(".qml"))
        layers.append(Layer(f"croptype-{vrt.stem.removeprefix('map_')}", f"crop types ({vrt.stem})", "paletted",
                            "crop types", 11, path=vrt, palette=palette, visible=True,
                            legend=[{"label": label, "colour": colour} for _, colour, label in palette]))  # fmt: skip
    allocation = root / "allocation" / "allocation.tif"
    if allocation.is_file():
        layer = Layer("allocation", "allocated crop area (ha per cell, all crops)", "ramp", "allocation", 0,
                      path=allocation)  # fmt: skip
        ramp = [_rgb(ramp_colours()[i]) for i in (0, 255)]
        layer.legend = [{"label": "> 0 ha", "colour": ramp[0]},
                        {"label": f"{layer.ramp_max:,.0f} ha per cell", "colour": ramp[1]}]  # fmt: skip
        layers.append(layer)
    return layers


def qml_palette(path: Path) -> list[tuple[int, str, str]]:
    """(code, '#rrggbb', label) of a paletted QGIS style, as mapper.croptype.style writes it."""
    import xml.etree.ElementTree as ET

    if not path.is_file():
        return []
    entries = ET.parse(path).getroot().iter("paletteEntry")
    return [(int(e.get("value")), e.get("color"), e.get("label", "")) for e in entries]
