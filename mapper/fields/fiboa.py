"""Field polygons as fiboa: `fields.parquet` (GeoParquet 1.1 with a bbox covering) and a GeoPackage per prefecture.

    write_fiboa(fields, path, collection="mapper-fields", determination_datetime=...)   fiboa 0.3.0 GeoParquet
    write_prefecture_geopackages(fields, out_dir, units)                                `<code>_<name>.gpkg`

**fiboa 0.3.0** (github.com/fiboa/specification, tag v0.3.0; what `fiboa validate` of fiboa-cli 0.21 checks)
is a Vecorel 0.1.0 extension. The Parquet schema metadata holds the collection under the key `collection`
(JSON): `schemas` maps the collection id to the schema URIs it implements (Vecorel core, fiboa core and, with
crops, fiboa's crop extension 0.2.0), `collection` is the collection id for every row, and collection-wide
values live there too (`crop:code_list`). Columns:

| column                   | type                | meaning                                                           |
|--------------------------|---------------------|-------------------------------------------------------------------|
| id                       | string, not null    | the field's id: `f<col>_<row>` of its first z16 pixel (polygons)  |
| geometry                 | WKB, not null       | Polygon / MultiPolygon, EPSG:4326                                 |
| bbox                     | struct of 4 doubles | GeoParquet 1.1 covering                                           |
| metrics:area             | float32             | true ground area in m², geodesic on WGS84 (pyproj `Geod`)         |
| metrics:perimeter        | float32             | geodesic perimeter in m (holes included)                          |
| determination:method     | string              | `auto-imagery` (fields delineated from imagery)                   |
| determination:datetime   | timestamp[ms, UTC]  | when the imagery was taken (the end of its period)                |
| determination:details    | string              | the method in words (model or baseline), when given               |
| crop:code / crop:name_en | string              | with crops only: the taxonomy leaf code and its English name      |

fiboa 0.2 had `area` in hectares and `determination_method`; 0.3 renamed them into the Vecorel geometry metrics
(`metrics:area` in m²) and the `determination:` prefix: the file follows 0.3, the GeoPackages give `area_ha`.
Required columns (id, geometry, and crop:code with crops) are declared non-null, every optional one nullable,
as the validator checks.
Area and perimeter are measured on the final (simplified) geometry, the canonical one for fiboa, along
geodesics of the WGS84 ellipsoid — never in Web Mercator, which overstates areas by 1/cos²φ (~17 % at 23° N).

Rows are written in Hilbert order of their bounding boxes (`mapper.store.geoparquet.spatially_ordered`), ZSTD,
atomically.
"""

from __future__ import annotations

import io
import json
import tempfile
from datetime import datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from mapper.store.atomic import atomic_path
from mapper.store.geoparquet import COMPRESSION, GEOPARQUET_VERSION, ROW_GROUP_ROWS, spatially_ordered

FIBOA_VERSION = "0.3.0"
VECOREL_SCHEMA = "https://vecorel.org/specification/v0.1.0/schema.yaml"
FIBOA_SCHEMA = f"https://fiboa.org/specification/v{FIBOA_VERSION}/schema.yaml"
CROP_SCHEMA = "https://fiboa.org/crop-extension/v0.2.0/schema.yaml"
CROP_CODE_LIST = "mapper/data/croptype/taxonomy.csv"  # the packaged taxonomy: leaf codes and names
METHOD = "auto-imagery"
REQUIRED = ("id", "geometry", "crop:code")  # non-null columns; crop:code is required by the crop extension
LAYER = "fields"
GPKG_COLUMNS = ["id", "unit_code", "unit_name", "area_ha", "perimeter_m", "determination_method",
                "determination_datetime"]  # fmt: skip


def geodesic_metrics(geoms) -> tuple[np.ndarray, np.ndarray]:
    """(area m², perimeter m) of EPSG:4326 (Multi)Polygons along WGS84 geodesics (pyproj Geod)."""
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    out = np.array([geod.geometry_area_perimeter(g) for g in geoms], np.float64).reshape(-1, 2)
    return np.abs(out[:, 0]), out[:, 1]


def fiboa_frame(fields: gpd.GeoDataFrame, *, determination_datetime: datetime, details: str | None = None,
                crops: pd.DataFrame | None = None) -> gpd.GeoDataFrame:  # fmt: skip
    """The fiboa columns of `fields` (`id` and geometry, any CRS; see the module docstring). `crops`, if given,
    has `crop:code` (and optionally `crop:name_en`) aligned with the fields' rows."""
    if "id" not in fields.columns or fields.crs is None:
        raise ValueError("fields need an `id` column and a CRS (mapper.fields.polygons.field_polygons gives both)")
    if fields["id"].isna().any() or not fields["id"].is_unique:
        raise ValueError("field ids must be present and unique within the collection")
    when = pd.Timestamp(determination_datetime)
    when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
    geoms = fields.to_crs("EPSG:4326").geometry.values
    area, perimeter = geodesic_metrics(geoms)
    n = len(fields)
    data = {
        "id": fields["id"].astype(str).to_numpy(),
        "metrics:area": area.astype(np.float32),
        "metrics:perimeter": perimeter.astype(np.float32),
        "determination:method": np.full(n, METHOD, dtype=object),
        "determination:datetime": pd.DatetimeIndex([when] * n, dtype="datetime64[ms, UTC]"),
    }
    if details:
        data["determination:details"] = np.full(n, details, dtype=object)
    if crops is not None:
        if len(crops) != n or "crop:code" not in crops.columns or crops["crop:code"].isna().any():
            raise ValueError("crops need a `crop:code` for every field (fiboa's crop extension requires it)")
        for col in ("crop:code", "crop:name_en"):
            if col in crops.columns:
                data[col] = crops[col].astype(str).to_numpy()
    return gpd.GeoDataFrame(data, geometry=geoms, crs="EPSG:4326")


def collection_metadata(collection: str, with_crops: bool, code_list: str = CROP_CODE_LIST) -> dict:
    """The `collection` entry of the Parquet schema metadata (fiboa 0.3 / Vecorel 0.1)."""
    schemas = [VECOREL_SCHEMA, FIBOA_SCHEMA, *([CROP_SCHEMA] if with_crops else [])]
    meta = {"schemas": {collection: schemas}, "collection": collection}
    if with_crops:
        meta["crop:code_list"] = code_list
    return meta


def fiboa_table(frame: gpd.GeoDataFrame, collection: str, code_list: str = CROP_CODE_LIST):
    """The Arrow table of a fiboa frame: GeoPandas' GeoParquet 1.1 encoding (WKB, "geo" metadata, bbox
    covering), then the fiboa types (non-null required columns, timestamp[ms, UTC]) and the collection."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    frame.to_parquet(buf, index=False, schema_version=GEOPARQUET_VERSION, write_covering_bbox=True)
    table = pq.read_table(io.BytesIO(buf.getvalue()))
    text = pa.string()  # not large_string: fiboa's type check accepts `string` only
    types = {"id": text, "metrics:area": pa.float32(), "metrics:perimeter": pa.float32(),
             "determination:method": text, "determination:datetime": pa.timestamp("ms", tz="UTC"),
             "determination:details": text, "crop:code": text, "crop:name_en": text}  # fmt: skip
    fields = [f.with_type(types.get(f.name, f.type)).with_nullable(f.name not in REQUIRED) for f in table.schema]
    meta = {k: v for k, v in (table.schema.metadata or {}).items() if k != b"pandas"}
    meta[b"collection"] = json.dumps(collection_metadata(collection, "crop:code" in table.column_names, code_list))
    return table.cast(pa.schema(fields, metadata=meta))


def write_fiboa(fields: gpd.GeoDataFrame, path: Path | str, *, determination_datetime: datetime,
                collection: str = "mapper-fields", details: str | None = None, crops: pd.DataFrame | None = None,
                code_list: str = CROP_CODE_LIST) -> Path:  # fmt: skip
    """`fields` (id + geometry) as a fiboa 0.3.0 GeoParquet file, written atomically (module docstring)."""
    import pyarrow.parquet as pq

    frame = fiboa_frame(fields, determination_datetime=determination_datetime, details=details, crops=crops)
    table = fiboa_table(spatially_ordered(frame), collection, code_list)
    path = Path(path)
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp, compression=COMPRESSION, row_group_size=ROW_GROUP_ROWS, write_statistics=True)
    return path


def assign_units(fields: gpd.GeoDataFrame, units: gpd.GeoDataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(row index into fields, row index into units) of the unit holding each field's representative point.

    A field is never cut: it belongs whole to one prefecture, the one around a point inside it (fields on a
    border go to one side); fields outside every unit are left out."""
    import shapely

    points = shapely.point_on_surface(fields.to_crs(units.crs).geometry.values)
    ugeoms = np.asarray(units.geometry.values, dtype=object)
    ui, fi = shapely.STRtree(points).query(ugeoms, predicate="contains")
    _, first = np.unique(fi, return_index=True)  # a point on a shared border: the first unit holds it
    return fi[first], ui[first]


def write_prefecture_geopackages(fields: gpd.GeoDataFrame, out_dir: Path | str, units: gpd.GeoDataFrame,
                                 crop_columns: tuple[str, ...] = ()) -> list[Path]:  # fmt: skip
    """One GeoPackage per prefecture with fields (`<code>_<name>.gpkg`, layer "fields", EPSG:4326) for QGIS:
    columns id, unit_code, unit_name, area_ha, perimeter_m, determination_method, determination_datetime
    (ISO 8601) and `crop_columns` of a fiboa frame (`crop:code` → `crop_code`). `fields` is a fiboa frame
    (`fiboa_frame`); `units` has `code`, `name` (`mapper.maps.polygons.units_from_prefectures`). Written by
    `mapper.maps.polygons.write_unit_geopackages`, so files appear atomically and stale ones are removed."""
    from mapper.maps.polygons import write_unit_geopackages
    from mapper.store.geoparquet import write_geoparquet

    fi, ui = assign_units(fields, units)
    rows = fields.iloc[fi].to_crs("EPSG:4326")
    extra = {c.replace(":", "_"): rows[c].to_numpy() for c in crop_columns}
    table = gpd.GeoDataFrame(
        {
            "id": rows["id"].to_numpy(),
            "unit_code": units["code"].astype(str).to_numpy()[ui],
            "unit_name": units["name"].to_numpy()[ui],
            "area_ha": rows["metrics:area"].to_numpy(np.float64) / 1e4,
            "perimeter_m": rows["metrics:perimeter"].to_numpy(np.float64),
            "determination_method": rows["determination:method"].to_numpy(),
            "determination_datetime": pd.DatetimeIndex(rows["determination:datetime"]).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **extra,
        },
        geometry=rows.geometry.values,
        crs="EPSG:4326",
    )
    with tempfile.TemporaryDirectory(dir=out_dir if Path(out_dir).exists() else None) as tmp:
        part = write_geoparquet(table, Path(tmp) / "fields.parquet", spatial_order=False)
        return write_unit_geopackages([part], out_dir, units, columns=[*GPKG_COLUMNS, *extra], layer=LAYER)
