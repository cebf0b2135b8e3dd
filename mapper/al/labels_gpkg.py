"""The round's GeoPackage (`labels.gpkg`): its two layers, read and written with pyogrio, and their pixels.

    write_layers(path, cropland, blocks)          both layers (EPSG:3857) into a new or existing file
    read_layer(path, layer) -> GeoDataFrame       one layer, indexed by its feature id (fid) as QGIS shows it
    content_digest(path) -> str                   sha256 of both layers' features (what a labeller can edit)
    burn(geoms, classes, window) -> uint8 mask    polygons onto a block grid by the ingest rule

Layer `cropland`: block_id (text), class (integer: 1 cropland, 0 explicitly not cropland, 255 ignore = cannot
tell), MultiPolygon. Layer `blocks`: block_id, status (todo / done / negative / skip), reason, note; one
polygon per block, its exact pixel-grid extent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import shapely

from mapper.grid.tilegrid import PixelWindow
from mapper.imagery.mosaic import CRS
from mapper.labels.store import CROPLAND, IGNORE, NOT_CROPLAND

CROPLAND_LAYER = "cropland"
BLOCKS_LAYER = "blocks"
LAYERS = (CROPLAND_LAYER, BLOCKS_LAYER)
CLASSES = {CROPLAND: "cropland", NOT_CROPLAND: "not cropland", IGNORE: "ignore: cannot tell"}
STATUSES = ("todo", "done", "negative", "skip")
REQUIRED_FIELDS = {CROPLAND_LAYER: ("block_id", "class"), BLOCKS_LAYER: ("block_id", "status")}
# GeoPackage 1.2: the version QGIS 3.22's GDAL reads without warnings (newer GDAL writes 1.4 by default).
_DATASET_OPTIONS = {"VERSION": "1.2"}


def cropland_frame(block_ids: Sequence[str], geoms: Sequence, classes: Sequence[int]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"block_id": np.asarray(block_ids, dtype=object), "class": np.asarray(classes, dtype=np.int32)},
        geometry=gpd.GeoSeries(list(geoms), crs=CRS),
        crs=CRS,
    )


def blocks_frame(block_ids, geoms, statuses, reasons, notes) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "block_id": np.asarray(block_ids, dtype=object),
            "status": np.asarray(statuses, dtype=object),
            "reason": np.asarray(reasons, dtype=object),
            "note": np.asarray(notes, dtype=object),
        },
        geometry=gpd.GeoSeries(list(geoms), crs=CRS),
        crs=CRS,
    )


def write_layers(path, cropland: gpd.GeoDataFrame, blocks: gpd.GeoDataFrame) -> None:
    """Write (or replace) both layers; the file is created when missing. Feature ids are renumbered from 1."""
    from pyogrio import write_dataframe

    for layer, frame in ((CROPLAND_LAYER, cropland), (BLOCKS_LAYER, blocks)):
        frame = frame.reset_index(drop=True)
        write_dataframe(frame, path, layer=layer, driver="GPKG", promote_to_multi=True,
                        geometry_type="MultiPolygon", dataset_options=_DATASET_OPTIONS)  # fmt: skip


def read_layer(path, layer: str) -> gpd.GeoDataFrame:
    from pyogrio import read_dataframe

    return read_dataframe(path, layer=layer, fid_as_index=True)


def _layer_rows(path, layer: str) -> list:
    frame = read_layer(path, layer).sort_index()
    attrs = frame.drop(columns=frame.geometry.name)
    wkb = shapely.to_wkb(frame.geometry.values, hex=True)
    rows = attrs.astype(object).where(attrs.notna(), None).to_numpy().tolist()
    return [[int(fid), *row, w] for fid, row, w in zip(frame.index, rows, wkb, strict=True)]


def content_digest(path) -> str:
    """sha256 of every feature (id, attributes, geometry) of both layers: unchanged by merely opening the file
    in QGIS, which may touch the file's bytes (WAL journal, statistics) without editing anything."""
    h = hashlib.sha256()
    for layer in LAYERS:
        h.update(json.dumps([layer, _layer_rows(path, layer)], default=str).encode())
    return h.hexdigest()


def burn(geoms: Sequence, classes: Sequence[int], window: PixelWindow) -> np.ndarray:
    """uint8 mask on the window: pixel centres inside class-1 polygons are 1, inside class-0 polygons 0 (over
    1: a pond drawn in a field), inside 255 polygons 255 (over both: "cannot tell" is the labeller's last word);
    pixels outside every polygon are 0 (the labeller labels the whole block)."""
    from rasterio.features import rasterize

    classes = np.asarray(classes, dtype=np.int64)
    rank = {CROPLAND: 0, NOT_CROPLAND: 1, IGNORE: 2}
    order = sorted(range(len(classes)), key=lambda i: rank[int(classes[i])])
    shapes = [(geoms[i], int(classes[i])) for i in order if geoms[i] is not None and not geoms[i].is_empty]
    if not shapes:
        return np.zeros(window.shape, np.uint8)
    return rasterize(shapes, out_shape=window.shape, transform=window.transform, fill=NOT_CROPLAND,
                     all_touched=False, dtype="uint8")  # fmt: skip
