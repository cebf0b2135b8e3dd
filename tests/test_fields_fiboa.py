"""mapper.fields.fiboa: fields.parquet is fiboa 0.3.0 GeoParquet 1.1 (checked by fiboa's own validator, offline),
areas and perimeters are true geodesic ones, and each prefecture gets a GeoPackage."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import shapely

from mapper.fields.fiboa import (
    FIBOA_SCHEMA,
    VECOREL_SCHEMA,
    fiboa_frame,
    fiboa_table,
    write_fiboa,
    write_prefecture_geopackages,
)
from mapper.fields.polygons import block_fields, field_polygons
from mapper.fields.regions import label_regions
from mapper.fields.truth import field_keys
from mapper.grid.blocks import Block
from mapper.grid.tilegrid import PixelWindow
from mapper.world.world import get_world

DATA = Path(__file__).parent / "data"
W = Block.parse("5886_2256").window()
AREA = PixelWindow(16, W.col0, W.row0 + 300, W.col0 + 300, W.row0 + 600)
WHEN = datetime(2020, 8, 31, 12, 0)


@pytest.fixture(scope="module")
def fields():
    keys, _ = field_keys(get_world(0), AREA)
    labels, _ = label_regions(keys, keys >= 0)
    return field_polygons([block_fields(labels, AREA, "area")])


@pytest.fixture(scope="module")
def parquet(fields, tmp_path_factory):
    return write_fiboa(fields, tmp_path_factory.mktemp("fiboa") / "fields.parquet", determination_datetime=WHEN,
                       details="world truth")  # fmt: skip


def test_area_and_perimeter_are_geodesic_ground_measures(fields):
    from pyproj import Geod

    frame = fiboa_frame(fields, determination_datetime=WHEN)
    geod = Geod(ellps="WGS84")
    for i in (0, len(frame) // 2, len(frame) - 1):
        area, perimeter = geod.geometry_area_perimeter(frame.geometry.iloc[i])
        assert frame["metrics:area"].iloc[i] == pytest.approx(abs(area), rel=1e-6)
        assert frame["metrics:perimeter"].iloc[i] == pytest.approx(perimeter, rel=1e-6)
    # the simplified polygons keep the fields' exact pixel areas (mapper.grid.area's ellipsoid bands) to 1 %
    assert frame["metrics:area"].sum() == pytest.approx(fields["area_m2"].sum(), rel=0.01)
    # ...and are no Web Mercator areas, which are 1 / cos² φ ≈ 1.18 × larger at 22.8° N
    mercator = fields.to_crs("EPSG:3857").area.sum()
    assert mercator / frame["metrics:area"].sum() == pytest.approx(1 / np.cos(np.radians(22.85)) ** 2, rel=0.01)


def test_file_is_geoparquet_1_1_with_fiboa_columns(parquet, fields):
    import jsonschema

    f = pq.ParquetFile(parquet)
    meta = f.schema_arrow.metadata
    geo = json.loads(meta[b"geo"])
    jsonschema.validate(geo, json.loads((DATA / "geoparquet-1.1.0.schema.json").read_text()))
    assert geo["version"] == "1.1.0" and geo["columns"]["geometry"]["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    collection = json.loads(meta[b"collection"])
    assert collection["schemas"] == {"mapper-fields": [VECOREL_SCHEMA, FIBOA_SCHEMA]}
    schema = f.schema_arrow
    assert str(schema.field("id").type) == "string" and not schema.field("id").nullable
    assert not schema.field("geometry").nullable
    assert str(schema.field("metrics:area").type) == "float" and schema.field("metrics:area").nullable
    assert str(schema.field("determination:datetime").type) == "timestamp[ms, tz=UTC]"
    back = gpd.read_parquet(parquet)
    assert sorted(back["id"]) == sorted(fields["id"]) and back.crs.to_epsg() == 4326
    assert (back["determination:method"] == "auto-imagery").all()
    assert back["determination:datetime"].iloc[0] == pd.Timestamp("2020-08-31T12:00Z")


# ------------------------------------------------------------------------------------------------ fiboa validate
RUNNER = r"""
import json, sys
from pathlib import Path
from vecorel_cli.vecorel import util
import vecorel_cli.encoding.geoparquet as encoding

data = Path(sys.argv[1])
util.file_cache["https://geoparquet.org/releases/v1.1.0/schema.json"] = json.loads(
    (data / "geoparquet-1.1.0.schema.json").read_text())
local_fs = util.get_fs

def offline_fs(uri, **kwargs):
    if str(uri).startswith(("http:", "https:")):
        raise RuntimeError(f"offline test: {uri} is neither mapped with --schema nor cached")
    return local_fs(uri, **kwargs)

util.get_fs = encoding.get_fs = offline_fs
sys.argv = ["fiboa", "validate", *sys.argv[2:]]
import fiboa_cli.cli.setup  # runs the CLI on import; click exits with its status
"""
SCHEMAS = {
    VECOREL_SCHEMA: "vecorel-specification-v0.1.0.schema.yaml",
    FIBOA_SCHEMA: "fiboa-specification-v0.3.0.schema.yaml",
    "https://fiboa.org/crop-extension/v0.2.0/schema.yaml": "fiboa-crop-extension-v0.2.0.schema.yaml",
}


def fiboa_python() -> str | None:
    """An interpreter with fiboa-cli: $FIBOA_PYTHON, this one, or the one behind a `fiboa` on PATH (fiboa-cli
    pins pyarrow < 24, so it usually lives in a venv of its own; see tests/data/fiboa/README.md)."""
    if os.environ.get("FIBOA_PYTHON"):
        return os.environ["FIBOA_PYTHON"]
    local = Path(__file__).resolve().parents[1] / ".venv-fiboa" / "bin" / "python"  # what .ci/run makes
    if local.exists():
        return str(local)
    if importlib.util.find_spec("fiboa_cli") is not None:
        return sys.executable
    exe = shutil.which("fiboa")
    if exe:
        first = Path(exe).read_text(errors="replace").splitlines()[0]
        if first.startswith("#!"):
            return first[2:].strip()
    return None


def fiboa_validate(path: Path) -> subprocess.CompletedProcess:
    python = fiboa_python()
    if python is None:
        if os.environ.get("CI"):  # CI makes the venv (.ci/run): a validator missing there is a failure
            pytest.fail("fiboa-cli not found: .ci/run should have made .venv-fiboa")
        pytest.skip("fiboa-cli not installed: python -m venv --system-site-packages V && V/bin/pip install "
                    "fiboa-cli, then FIBOA_PYTHON=V/bin/python")  # fmt: skip
    args = [a for url, name in SCHEMAS.items() for a in ("-s", f"{url},{DATA / 'fiboa' / name}")]
    env = {**os.environ, "NO_COLOR": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([python, "-c", RUNNER, str(DATA), str(path), "-n", "-1", *args], capture_output=True,
                          text=True, timeout=300, env=env)  # fmt: skip


def test_fiboa_validator_accepts_fields_parquet(parquet):
    res = fiboa_validate(parquet)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "VALID" in res.stdout and "Redirecting https://fiboa.org/specification/v0.3.0" in res.stdout


def test_fiboa_validator_accepts_crop_attributes(fields, tmp_path):
    crops = pd.DataFrame({"crop:code": ["1"] * len(fields), "crop:name_en": ["single rice"] * len(fields)})
    path = write_fiboa(fields, tmp_path / "crops.parquet", determination_datetime=WHEN, crops=crops)
    res = fiboa_validate(path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(pq.ParquetFile(path).schema_arrow.metadata[b"collection"])["crop:code_list"]


def replace_column(table, name: str, values):
    import pyarrow as pa

    return table.set_column(table.schema.get_field_index(name), name, pa.array(values))


BROKEN = {
    "no_id": (lambda t: t.drop_columns(["id"]), "id: Required field is missing"),
    "double_area": (lambda t: replace_column(t, "metrics:area", t["metrics:area"].to_numpy().astype(np.float64)),
                    "metrics:area: Data type invalid"),
    "unknown_method": (lambda t: replace_column(t, "determination:method", ["guessed"] * len(t)), "guessed"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_fiboa_validator_rejects_a_broken_file(fields, tmp_path, name):
    change, message = BROKEN[name]
    path = tmp_path / f"{name}.parquet"
    pq.write_table(change(fiboa_table(fiboa_frame(fields, determination_datetime=WHEN), "mapper-fields")), path)
    res = fiboa_validate(path)
    assert res.returncode != 0, res.stdout
    assert "INVALID" in res.stdout and message in res.stdout, res.stdout


# ------------------------------------------------------------------------------------------------ GeoPackages
def test_one_geopackage_per_prefecture(fields, tmp_path):
    import pyogrio

    frame = fiboa_frame(fields, determination_datetime=WHEN)
    west, south, east, north = frame.total_bounds
    mid = (west + east) / 2
    units = gpd.GeoDataFrame({"code": ["CN1", "CN2"], "name": ["West Shi", "East Shi"]},
                             geometry=[shapely.box(west - 1, south - 1, mid, north + 1),
                                       shapely.box(mid, south - 1, east + 1, north + 1)], crs="EPSG:4326")  # fmt: skip
    paths = write_prefecture_geopackages(frame, tmp_path / "fields", units)
    assert [p.name for p in paths] == ["CN1_West_Shi.gpkg", "CN2_East_Shi.gpkg"]
    parts = [gpd.read_file(p, layer="fields") for p in paths]
    assert pyogrio.list_layers(paths[0])[0][0] == "fields"
    both = pd.concat(parts)
    assert sorted(both["id"]) == sorted(frame["id"])  # every field whole, in exactly one prefecture
    assert both["area_ha"].sum() == pytest.approx(frame["metrics:area"].sum() / 1e4, rel=1e-6)
    west_part = parts[0]
    assert (west_part.geometry.representative_point().x < mid + 1e-9).mean() > 0.9


def test_no_fields_is_a_valid_empty_collection(fields, tmp_path):
    path = write_fiboa(fields.iloc[:0], tmp_path / "empty.parquet", determination_datetime=WHEN)
    f = pq.ParquetFile(path)
    assert f.metadata.num_rows == 0
    assert str(f.schema_arrow.field("determination:datetime").type) == "timestamp[ms, tz=UTC]"
    res = fiboa_validate(path)
    assert res.returncode == 0, res.stdout + res.stderr
