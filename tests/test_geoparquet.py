"""GeoParquet outputs against the GeoParquet 1.1.0 specification: the "geo" metadata validates against the
specification's JSON schema, the bbox covering column is what the spec requires (a root-level struct of
double xmin/ymin/xmax/ymax equal to each geometry's bounds, with Parquet statistics in every row group),
columns are ZSTD-compressed, and row groups follow a spatial order, so that a reader of a country-sized
table skips the row groups outside its region."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

SCHEMA = json.loads((Path(__file__).parent / "data" / "geoparquet-1.1.0.schema.json").read_text())


def check_geoparquet(path: Path) -> dict:
    """Assert what the spec requires of a GeoParquet 1.1 file with a bbox covering; returns its "geo"."""
    import geopandas as gpd
    import jsonschema

    f = pq.ParquetFile(path)
    geo = json.loads(f.schema_arrow.metadata[b"geo"])
    jsonschema.validate(geo, SCHEMA)
    column = geo["columns"][geo["primary_column"]]
    covering = column.get("covering", {}).get("bbox")
    assert covering, f"{path}: no bbox covering"
    struct = covering["xmin"][0]
    assert all(covering[k] == [struct, k] for k in ("xmin", "ymin", "xmax", "ymax"))
    field = f.schema_arrow.field(struct)  # a root-level column, per the spec
    assert pa.types.is_struct(field.type)
    assert {field.type.field(k).name: field.type.field(k).type for k in range(field.type.num_fields)} == {
        k: pa.float64() for k in ("xmin", "ymin", "xmax", "ymax")
    }
    table = f.read()
    bounds = shapely.bounds(shapely.from_wkb(table[geo["primary_column"]].to_numpy(zero_copy_only=False)))
    boxes = table[struct].combine_chunks()
    got = np.column_stack([boxes.field(k).to_numpy() for k in ("xmin", "ymin", "xmax", "ymax")])
    np.testing.assert_allclose(got, bounds, rtol=0, atol=1e-6)  # a covering may round outward, never inward
    assert (got[:, :2] <= bounds[:, :2] + 1e-12).all() and (got[:, 2:] >= bounds[:, 2:] - 1e-12).all()
    for i in range(f.metadata.num_row_groups):
        rg = f.metadata.row_group(i)
        for j in range(rg.num_columns):
            col = rg.column(j)
            assert col.compression == "ZSTD", f"{path}: {col.path_in_schema} is {col.compression}"
            if col.path_in_schema.startswith(f"{struct}."):
                assert col.statistics is not None and col.statistics.has_min_max
    assert len(gpd.read_parquet(path)) == f.metadata.num_rows
    return geo


def _row_group_boxes(path: Path, struct: str = "bbox") -> np.ndarray:
    md = pq.ParquetFile(path).metadata
    out = []
    for i in range(md.num_row_groups):
        rg = md.row_group(i)
        stats = {rg.column(j).path_in_schema: rg.column(j).statistics for j in range(rg.num_columns)}
        out.append([stats[f"{struct}.xmin"].min, stats[f"{struct}.ymin"].min, stats[f"{struct}.xmax"].max,
                    stats[f"{struct}.ymax"].max])  # fmt: skip
    return np.array(out)


def test_the_run_block_table_is_geoparquet_1_1_with_a_bbox_covering(world_run):
    geo = check_geoparquet(world_run / "blocks.parquet")
    assert geo["version"] == "1.1.0" and geo["columns"]["geometry"]["geometry_types"] == ["Polygon"]
    for block_file in (world_run / "polygons" / "blocks").glob("*.parquet"):
        check_geoparquet(block_file)


def test_a_country_sized_table_is_cut_into_compact_row_groups(tmp_path):
    import geopandas as gpd

    from mapper.grid.region import block_boxes
    from mapper.store.geoparquet import ROW_GROUP_ROWS, write_geoparquet

    rng = np.random.default_rng(0)
    ix = rng.integers(int((73 + 180) / 0.05), int((135 + 180) / 0.05), 60_000)
    iy = rng.integers(int((18 + 90) / 0.05), int((53 + 90) / 0.05), 60_000)
    gdf = gpd.GeoDataFrame({"ix": ix, "iy": iy, "value": rng.random(60_000)}, geometry=block_boxes(ix, iy),
                           crs="EPSG:4326")  # fmt: skip
    path = write_geoparquet(gdf, tmp_path / "china.parquet")
    check_geoparquet(path)
    boxes = _row_group_boxes(path)
    assert len(boxes) == -(-len(gdf) // ROW_GROUP_ROWS)
    total = (gdf.total_bounds[2] - gdf.total_bounds[0]) * (gdf.total_bounds[3] - gdf.total_bounds[1])
    covered = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sum()
    assert covered < 2.0 * total, f"row groups overlap: {covered / total:.1f}× the table's extent (random: ~6×)"
    # a reader asking for a 1° square around Guangzhou needs only the row groups whose statistics reach it
    x0, y0, x1, y1 = 113.0, 23.0, 114.0, 24.0
    hit = (boxes[:, 0] <= x1) & (boxes[:, 2] >= x0) & (boxes[:, 1] <= y1) & (boxes[:, 3] >= y0)
    assert hit.sum() <= 2, f"{hit.sum()} of {len(boxes)} row groups read for one square degree"
    back = gpd.read_parquet(path)
    assert sorted(back["value"]) == sorted(gdf["value"]), "every row written once"


def test_writing_the_same_table_twice_gives_the_same_bytes(tmp_path):
    import geopandas as gpd

    from mapper.store.geoparquet import write_geoparquet

    gdf = gpd.GeoDataFrame({"v": [3, 1, 2]}, geometry=[shapely.box(2, 2, 3, 3), shapely.box(0, 0, 1, 1),
                                                      shapely.box(1, 1, 2, 2)], crs="EPSG:4326")  # fmt: skip
    a = write_geoparquet(gdf, tmp_path / "a.parquet").read_bytes()
    b = write_geoparquet(gdf.iloc[::-1], tmp_path / "b.parquet").read_bytes()
    assert a == write_geoparquet(gdf, tmp_path / "c.parquet").read_bytes()
    order = [gpd.read_parquet(tmp_path / name)["v"].tolist() for name in ("a.parquet", "b.parquet")]
    assert order[0] == order[1] == [1, 2, 3], "the spatial order, whatever the order given"
    assert len(a) and len(b)


@pytest.mark.parametrize("kind", ["correctness", "integration"])
def test_decision_tables_keep_their_order_and_are_geoparquet_1_1(tmp_path, kind):
    import geopandas as gpd

    from mapper.decide.table import KINDS, read_table, write_table

    n = 6
    data = {f: np.arange(n, dtype=float) for f in KINDS[kind]["features"]}
    data.update(block_id=[f"{5000 + i}_2200" for i in range(n)][::-1], label=[KINDS[kind]["classes"][0]] * n)
    if kind == "correctness":
        data["source"] = ["a"] * n
    from mapper.grid.region import block_boxes

    gdf = gpd.GeoDataFrame(data, geometry=block_boxes(np.arange(5000, 5000 + n)[::-1], np.full(n, 2200)),
                           crs="EPSG:4326")  # fmt: skip
    path = write_table(gdf, tmp_path / f"{kind}.parquet")
    check_geoparquet(path)
    assert read_table(path, kind)["block_id"].tolist() == data["block_id"], "build order kept"
