"""The run-level files as collection assets: the map, vectors, tables, figures and records of the run, and
the crop-type, allocation and comparison outputs when the run has them.

Only files in the folders below are taken, each by its suffix, so a file another tool left in the run
directory (or the state database, the log, the lock) never reaches a published catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pystac

from mapper.stac.rasters import add_bands, add_projection, media_type_of, read_facts

# Folders of a run (relative; "compare/*" = each comparison's folder) whose files become collection assets.
FOLDERS = ("", "map", "polygons", "report", "croptype", "croptype/polygons", "allocation", "allocation/png",
           "compare/*")  # fmt: skip
MEDIA_TYPES = {
    ".parquet": pystac.MediaType.VND_APACHE_PARQUET,
    ".gpkg": pystac.MediaType.GEOPACKAGE,
    ".csv": "text/csv",
    ".json": pystac.MediaType.JSON,
    ".yaml": "application/yaml",
    ".png": pystac.MediaType.PNG,
    ".html": pystac.MediaType.HTML,
    ".qml": pystac.MediaType.XML,
    ".tif": None,  # a raster: typed from its header
    ".vrt": None,
}
ROLES = {".png": ("overview",), ".json": ("metadata",), ".yaml": ("metadata",), ".html": ("metadata",),
         ".qml": ("style",)}  # fmt: skip
TITLES = {
    "blocks.parquet": "Blocks: one row per block with its geometry, features, decisions and areas (GeoParquet)",
    "map/cropland.vrt": "The final cropland map over the block COGs (GDAL VRT, EPSG:3857)",
    "area.csv": "Mapped cropland per province against the statistic (PCS)",
    "area_prefectures.csv": "Mapped cropland per prefecture",
    "summary.json": "The run's summary: blocks, failures, areas, outputs",
    "validation.json": "Three-level validation: pixel IoU, block semantic correctness, PCS, stop verdicts",
    "run.json": "What the run is: region, sources, world seed, models and their sha256, mapper version",
    "config.yaml": "The run's resolved configuration (tokens are never in it)",
    "report/index.html": "The run's report (one self-contained HTML page)",
    "report/map_preview.png": "Preview of the final map",
    "croptype/summary.json": "Crop types: totals and accuracy per taxonomy level",
    "allocation/allocation.tif": "Crop statistics allocated to the grid: a band per crop, ha per cell",
    "allocation/allocation.parquet": "Allocation per cell, unit and crop (GeoParquet)",
    "allocation/summary.json": "Allocation: settings, totals and fit",
}
# Read by the export but never assets: the state database, the lock, the log and where the catalog goes.
SKIPPED = {"state.sqlite", "driver.lock", "run.log"}


@dataclass(frozen=True)
class RunFile:
    key: str
    path: Path
    rel: str  # posix path relative to the run directory


def run_files(root: Path, exclude: Path | None = None) -> list[RunFile]:
    """The run-level files of the folders above, sorted; `exclude` (the catalog's own folder) is skipped."""
    found = []
    for pattern in FOLDERS:
        folders = sorted(root.glob(pattern)) if pattern else [root]
        for folder in folders:
            if not folder.is_dir() or (exclude is not None and folder.resolve() == exclude.resolve()):
                continue
            for path in sorted(folder.iterdir()):
                if path.is_file() and path.suffix.lower() in MEDIA_TYPES and path.name not in SKIPPED \
                        and not path.name.startswith("."):  # fmt: skip
                    found.append(path.relative_to(root).as_posix())
    return [RunFile(_key(rel, found), root / rel, rel) for rel in found]


def _key(rel: str, all_rels: list[str]) -> str:
    """'polygons/CN044060_Huizhou.gpkg' -> 'polygons_CN044060_Huizhou'; the suffix is kept where two files
    differ only by it (croptype/map_32650.vrt and .qml)."""
    stem = rel.rsplit(".", 1)[0]
    clash = sum(r.rsplit(".", 1)[0] == stem for r in all_rels) > 1
    return (rel if clash else stem).replace("/", "_").replace(".", "_")


def add_run_assets(collection: pystac.Collection, files: list[RunFile], href_of) -> None:
    """Each file as a collection asset; rasters with their projection and bands."""
    for f in files:
        suffix = f.path.suffix.lower()
        facts = read_facts(f.path) if MEDIA_TYPES[suffix] is None else None
        asset = pystac.Asset(
            href=href_of(f.path),
            title=TITLES.get(f.rel, f.rel),
            media_type=media_type_of(facts, f.path) if facts else MEDIA_TYPES[suffix],
            roles=list(ROLES.get(suffix, ("data",))),
        )
        collection.add_asset(f.key, asset)
        if facts is not None:
            add_projection(asset, facts)
            add_bands(asset, facts)
