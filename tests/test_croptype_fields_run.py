"""`mapper croptype map --unit field` on a run after `mapper fields`: each field one crop, crop areas that add up to
the run's cropland, the stitched fields (fiboa) with their crops; refused before any work on a run without
fields. On the shared one-block world run (conftest.world_run)."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow


def _cli(*args, timeout=600):
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mapper.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)  # fmt: skip


def test_unit_field_is_refused_without_fields(world_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world_run, run)
    res = _cli("croptype", "map", str(run), "--unit", "field", "--in-process", "-q")
    assert res.returncode == 2 and f"run `mapper fields {run}` first" in res.stderr, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and not (run / "croptype").exists()


def test_crop_types_per_field_after_the_fields_stage(world_run, tmp_path):
    import geopandas as gpd
    import rasterio
    from conftest import WORLD_RUN_BLOCK

    from mapper.fields.paths import block_labels_path, field_crops_path

    run = tmp_path / "run"
    shutil.copytree(world_run, run)
    res = _cli("fields", str(run), "--model", "baseline", "--in-process", "-q")
    assert res.returncode == 0, res.stderr[-2000:]
    res = _cli("croptype", "map", str(run), "--unit", "field", "--in-process", "-q")
    assert res.returncode == 0, res.stderr[-2000:]
    table = pd.read_parquet(field_crops_path(run, WORLD_RUN_BLOCK))
    with rasterio.open(block_labels_path(run, WORLD_RUN_BLOCK)) as src:
        assert len(table) == src.read(1).max() > 50
    assert (table["crop_code"] > 0).mean() > 0.9 and table["label"].is_unique
    # Each field one crop: a polygon per field with its crop, in the prefecture GeoPackages.
    polys = pd.concat([gpd.read_file(p, layer="croptype") for p in (run / "croptype" / "polygons").glob("*.gpkg")])
    assert len(polys) == len(table) and set(polys["crop"]) <= set(table["crop"])
    # The crop areas add up to the run's cropland, at every level.
    areas = pd.read_csv(run / "croptype" / "areas_provinces.csv")
    run_area = pd.read_csv(run / "area.csv")["cropland_ha_in_mapped_blocks"].sum()
    for level in (1, 2, 3, 4):
        assert areas[areas["level"] == level]["mapped_ha"].sum() == pytest.approx(run_area, rel=1e-6)
    summary = json.loads((run / "croptype" / "summary.json").read_text())
    assert summary["unit"] == "field" and summary["parcels"] == len(table) and summary["accuracy_by_area"]["level1"] > 0
    # The stitched fields take their pieces' crops (fiboa crop extension).
    fields = gpd.read_parquet(run / "fields" / "fields.parquet")
    assert {"crop:code", "crop:name_en"} <= set(fields.columns)
    assert (fields["crop:code"] != "0").mean() > 0.9
    assert set(fields["crop:name_en"]) <= set(table["crop"]) | {"unclassified"}
    assert json.loads((run / "fields" / "summary.json").read_text())["with_crops"] == int(np.sum(fields["crop:code"]
                                                                                                 != "0"))  # fmt: skip
