"""Label polygons from a vector file, checked and classed: what `mapper labels import raster` burns.

Any format GeoPandas reads (GeoPackage, GeoJSON, Shapefile; GeoParquet by its suffix). Every problem is a
LabelError naming the file, the features (GeoPackage fid, else the row from 0) and the fix: no CRS, no
geometry, geometries that are not polygons, invalid geometries (repaired only when asked, by the same
`polygonal` as `mapper labels ingest`), a class field that is missing or whose values do not fit.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np

from mapper.labels.store import CROPLAND, IGNORE, NOT_CROPLAND, LabelError, polygonal

_POLYGONAL = {"Polygon", "MultiPolygon"}


def _feature(path: Path, index) -> str:
    return f"fid {index}" if path.suffix.lower() == ".gpkg" else f"row {index} (from 0)"


def read_polygons(path: Path | str, what: str, make_valid: bool = False):
    """(GeoDataFrame of valid polygons, number repaired, warnings); LabelError naming the file and the fix."""
    import geopandas as gpd
    import shapely

    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{what} {path}: file not found")
    try:
        if path.suffix.lower() in {".parquet", ".geoparquet"}:
            gdf = gpd.read_parquet(path)
        else:
            gdf = gpd.read_file(path, fid_as_index=True)
    except Exception as e:  # pyogrio, pyarrow and GeoPandas raise their own errors
        raise LabelError(f"cannot read {what} {path} (GeoPackage, GeoParquet, GeoJSON, Shapefile): {e}") from e
    notes = []
    empty = gdf.geometry.isna() | gdf.geometry.is_empty
    if empty.any():
        notes.append(f"{what} {path}: {int(empty.sum())} feature(s) without geometry are left out")
        gdf = gdf[~empty]
    if gdf.empty:
        raise LabelError(f"{what} {path} has no geometries; draw the labels as polygons")
    if gdf.crs is None:
        raise LabelError(
            f"{what} {path} has no coordinate reference system; save it with one (QGIS: Export ▸ Save Features "
            "As, choose the CRS; a Shapefile needs its .prj)"
        )
    other = ~gdf.geometry.geom_type.isin(_POLYGONAL)
    if other.any():
        kinds = ", ".join(sorted(set(gdf.geometry.geom_type[other])))
        first = ", ".join(_feature(path, i) for i in gdf.index[other][:5])
        raise LabelError(
            f"{what} {path} holds {int(other.sum())} {kinds} geometries (first: {first}); labels must be polygons "
            "(Polygon / MultiPolygon): delete or convert them (QGIS: Vector ▸ Geometry Tools)"
        )
    invalid = ~gdf.geometry.is_valid
    if invalid.any() and not make_valid:
        listed = "; ".join(
            f"{_feature(path, i)}: {shapely.is_valid_reason(g)}" for i, g in gdf.geometry[invalid][:5].items()
        )
        raise LabelError(
            f"{what} {path} has {int(invalid.sum())} invalid geometry(ies) ({listed}). Repair them (QGIS: Vector ▸ "
            "Geometry Tools ▸ Fix Geometries, or shapely.make_valid), or pass --make-valid to repair them here"
        )
    repaired = int(invalid.sum())
    if repaired:
        gdf = gdf.set_geometry([polygonal(g) for g in gdf.geometry.values], crs=gdf.crs)
        gdf = gdf[~gdf.geometry.is_empty]
    return gdf, repaired, notes


def _class_key(value) -> str | None:
    """Class values as comparable text: None for missing, '1' for 1 / 1.0 / '1', case-folded."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip().casefold()
    with contextlib.suppress(ValueError):
        number = float(text)
        text = str(int(number)) if math.isfinite(number) and number.is_integer() else text
    return text or None


def polygon_classes(gdf, path: Path, class_field, cropland_values, ignore_values) -> tuple[np.ndarray, dict, list]:
    """(mask value per polygon, the class map recorded in label.json, warnings)."""
    cropland_values, ignore_values = list(cropland_values or ()), list(ignore_values or ())
    if not class_field:
        if cropland_values or ignore_values:
            raise LabelError("--cropland-values and --ignore-values need --class-field (the column they are in)")
        notes = [
            f"{path} has a column {c!r}, but without --class-field every polygon is cropland; to use it pass "
            f"--class-field {c} --cropland-values …" for c in gdf.columns if c.lower() in ("class", "label")
        ]  # fmt: skip
        return np.full(len(gdf), CROPLAND, np.uint8), {"field": None, "cropland": "every polygon"}, notes
    if class_field not in gdf.columns:
        columns = ", ".join(repr(c) for c in gdf.columns if c != gdf.geometry.name) or "none"
        raise LabelError(f"--class-field {class_field!r} is not a column of {path}; its columns: {columns}")
    keys = [_class_key(v) for v in gdf[class_field]]
    present = sorted({k for k in keys if k is not None})
    shown = ", ".join(repr(k) for k in present[:20]) + (" …" if len(present) > 20 else "")
    missing = [i for i, k in zip(gdf.index, keys, strict=True) if k is None]
    if missing:
        raise LabelError(
            f"{len(missing)} polygon(s) of {path} have no {class_field!r} value (first: "
            f"{', '.join(_feature(path, i) for i in missing[:5])}); give them a class or delete them"
        )
    crop, ignore = {_class_key(v) for v in cropland_values} - {None}, {_class_key(v) for v in ignore_values} - {None}
    if not crop:
        raise LabelError(f"--class-field {class_field!r} needs --cropland-values; the values in {path}: {shown}")
    if crop & ignore:
        raise LabelError(f"values {sorted(crop & ignore)} are in both --cropland-values and --ignore-values")
    if not crop & set(present):
        raise LabelError(
            f"none of --cropland-values {sorted(crop)} occurs in column {class_field!r} of {path}; its values: {shown}"
        )
    notes = []
    if (crop | ignore) - set(present):
        notes.append(f"values {sorted((crop | ignore) - set(present))} do not occur in {class_field!r} of {path}")
    values = np.array([CROPLAND if k in crop else IGNORE if k in ignore else NOT_CROPLAND for k in keys], np.uint8)
    class_map = {"field": class_field, "cropland": sorted(crop), "ignore": sorted(ignore),
                 "not_cropland": [k for k in present if k not in crop | ignore]}  # fmt: skip
    return values, class_map, notes
