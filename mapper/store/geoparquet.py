"""GeoParquet 1.1 as readers of big tables need it: a bounding-box covering column, row groups in a spatial
order, ZSTD.

    write_geoparquet(gdf, path, metadata={b"key": b"json"})    atomically

A reader of a country's block table (383,000 rows) asks for a region; with the covering column `bbox`
(xmin, ymin, xmax, ymax per row, declared in the "geo" metadata as the geometry's covering) and rows sorted
along a Hilbert curve before they are cut into row groups, each row group's Parquet statistics on
bbox.xmin … bbox.ymax describe a compact area, so the reader skips every row group outside its region
without decoding a geometry. Rows are ordered by the Hilbert distance of their bounding-box centres
(ties keep their original order), so two writes of the same table give the same file.
"""

from __future__ import annotations

import io
from pathlib import Path

from mapper.store.atomic import atomic_path

GEOPARQUET_VERSION = "1.1.0"
ROW_GROUP_ROWS = 10_000  # a province's blocks in one group; a country in ~40 compact ones
COMPRESSION = "zstd"


def spatially_ordered(gdf):
    """The rows in Hilbert order of their bounding-box centres (empty geometries last, in their order)."""
    import numpy as np

    if len(gdf) < 2:
        return gdf.reset_index(drop=True)
    geoms = gdf.geometry
    empty = (geoms.isna() | geoms.is_empty).to_numpy()
    keys = np.full(len(gdf), np.iinfo(np.int64).max, dtype=np.int64)
    if (~empty).any():
        present = geoms[~empty]
        keys[~empty] = present.hilbert_distance(total_bounds=present.total_bounds).to_numpy()
    order = np.argsort(keys, kind="stable")
    return gdf.iloc[order].reset_index(drop=True)


def write_geoparquet(gdf, path: Path | str, *, metadata: dict[bytes, bytes] | None = None,
                     row_group_rows: int = ROW_GROUP_ROWS, spatial_order: bool = True) -> Path:  # fmt: skip
    """`gdf` as GeoParquet 1.1 with a bbox covering, spatially ordered row groups and ZSTD, written
    atomically; `metadata` is added to the file's schema metadata beside GeoPandas' "geo". `spatial_order`
    False keeps the rows' order (tables whose order means something, e.g. a training table's build order)."""
    import pyarrow.parquet as pq

    table = _arrow_table(spatially_ordered(gdf) if spatial_order else gdf.reset_index(drop=True))
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    path = Path(path)
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp, compression=COMPRESSION, row_group_size=max(1, row_group_rows),
                       write_statistics=True)  # fmt: skip
    return path


def _arrow_table(gdf):
    """The Arrow table GeoPandas writes (WKB geometry, the "geo" metadata with the covering), kept in memory."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    gdf.to_parquet(buf, index=False, schema_version=GEOPARQUET_VERSION, write_covering_bbox=True)
    return pq.read_table(io.BytesIO(buf.getvalue()))
