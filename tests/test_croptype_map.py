"""`mapper croptype map` on a finished run: crop-type rasters clipped to the cropland, field polygons with
crops per prefecture, crop areas that add up to the run's cropland, resume without redoing a block, and bad
Sentinel-2 input refused before any block."""

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio

from mapper.croptype.taxonomy import packaged_taxonomy

pytestmark = pytest.mark.slow
FTW = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "imagery" / "ftw_austria" / "inference-img.tif")


def _map(run, *extra, timeout=600):
    from conftest import run_croptype_map

    return run_croptype_map(run, *extra, timeout=timeout)


@pytest.fixture(scope="module")
def mapped(croptype_run):
    return croptype_run


def test_block_raster_is_utm_10m_with_levels_and_only_on_cropland(mapped):
    from conftest import WORLD_RUN_BLOCK

    tax = packaged_taxonomy()
    with rasterio.open(mapped / "croptype" / "blocks" / f"{WORLD_RUN_BLOCK}.tif") as src:
        assert src.count == 6 and src.res == (10.0, 10.0) and 32601 <= src.crs.to_epsg() <= 32660
        assert src.descriptions[0] == "leaf code" and src.tags()["MAPPER_BLOCK"] == WORLD_RUN_BLOCK
        leaf, lv1, lv4, prob = src.read(1), src.read(2), src.read(5), src.read(6)
    on = leaf > 0
    assert on.any() and set(np.unique(leaf[on]).tolist()) <= set(tax.codes)
    # Every mapped pixel is a valid path: its level classes are its leaf's.
    idx = np.array([tax.leaf_index(c) for c in leaf[on]])
    assert np.array_equal(lv1[on] - 1, tax.paths[idx, 0]) and np.array_equal(lv4[on] - 1, tax.paths[idx, 3])
    assert (prob[on] > 0).all() and (prob[~on] == 0).all()
    # Cropland area of the block: the 10 m map (pixels ≥ 50 % cropland, 100 m² each) and the 2 m final mask.
    from mapper.grid.area import masked_area_m2
    from mapper.grid.blocks import Block

    with rasterio.open(mapped / "final" / f"{WORLD_RUN_BLOCK}.tif") as src:
        final = src.read(1)
    cropland_m2 = masked_area_m2(final == 1, Block.parse(WORLD_RUN_BLOCK).window())
    assert on.sum() * 100.0 == pytest.approx(cropland_m2, rel=0.1)


def test_crop_areas_add_up_to_the_runs_cropland_and_are_judged_against_the_truth(mapped):
    areas = pd.read_csv(mapped / "croptype" / "areas_provinces.csv")
    run_area = pd.read_csv(mapped / "area.csv")
    for level in (1, 2, 3, 4):
        total = areas[areas["level"] == level]["mapped_ha"].sum()
        assert total == pytest.approx(run_area["cropland_ha_in_mapped_blocks"].sum(), rel=1e-6)
    summary = json.loads((mapped / "croptype" / "summary.json").read_text())
    assert summary["parcels"] > 10 and summary["classified"] > 0
    acc = summary["accuracy_by_area"]
    assert acc["level1"] >= acc["level2"] >= acc["level4"] - 1e-12  # coarser levels are never less accurate
    # Better than a map of the block's commonest crop (small southern fields: many 10 m pixels are mixed).
    cm = np.asarray(summary["confusion_m2"])
    assert acc["level4"] > 1.5 * cm.sum(axis=1).max() / cm.sum()
    assert areas["truth_ha"].notna().all()


def test_field_polygons_per_prefecture_carry_crops(mapped):
    import geopandas as gpd

    gpkgs = sorted((mapped / "croptype" / "polygons").glob("*.gpkg"))
    assert gpkgs
    fields = pd.concat([gpd.read_file(p, layer="croptype") for p in gpkgs])
    assert {"crop", "crop_code", "level1", "level4", "crop_prob", "area_m2"} <= set(fields.columns)
    assert (fields["crop_prob"] <= 1).all() and fields.geometry.is_valid.all()
    names = set(packaged_taxonomy().leaf_names()) | {"unclassified"}
    assert set(fields["crop"]) <= names
    vrts = sorted((mapped / "croptype").glob("map_*.vrt"))
    assert vrts and all(v.with_suffix(".qml").is_file() for v in vrts)
    with rasterio.open(vrts[0]) as src:
        assert src.count == 6 and src.read(1).max() > 0


def test_a_second_map_redoes_no_block(mapped):
    from conftest import WORLD_RUN_BLOCK

    tif = mapped / "croptype" / "blocks" / f"{WORLD_RUN_BLOCK}.tif"
    before = tif.stat().st_mtime_ns
    res = _map(mapped)
    assert res.returncode == 0, res.stderr[-2000:]
    assert tif.stat().st_mtime_ns == before
    with sqlite3.connect(mapped / "state.sqlite") as db:
        rows = db.execute("select status, attempts from tasks where stage = 'croptype'").fetchall()
    assert rows == [("done", 1)]


def test_bad_sentinel2_input_is_refused_before_any_block(world_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world_run, run)
    dates = tmp_path / "dates.txt"
    dates.write_text("2021-05-01\n2021-08-01\n")
    res = _map(run, "--s2", FTW, "--bands", "B2,B3,B4,B8", "--dates-file", str(dates))
    assert res.returncode == 2
    assert "missing B5, B6, B7, B8A, B11, B12" in res.stderr
    assert not (run / "croptype").exists()
    res = _map(run, "--s2", FTW, "--bands", "B2,B3,B4,B8")  # no dates anywhere
    assert res.returncode == 2 and "dates" in res.stderr and "Traceback" not in res.stderr


QGIS_SCRIPT = r"""
import json, sys
from qgis.core import (QgsApplication, QgsMapRendererParallelJob, QgsMapSettings, QgsRasterLayer, QgsVectorLayer)
from qgis.PyQt.QtCore import QSize
app = QgsApplication([], False); app.initQgis()
vrt, gpkg, csv, png = sys.argv[1:5]
r = QgsRasterLayer(vrt, "crop types")  # loads map_<EPSG>.qml beside it: paletted leaf codes with names
v = QgsVectorLayer(f"{gpkg}|layername=croptype", "fields", "ogr")
t = QgsVectorLayer(f"file://{csv}?delimiter=,", "areas", "delimitedtext")
out = {"raster": {"valid": r.isValid(), "renderer": r.renderer().type(), "crs": r.crs().authid(),
                  "classes": [c.label for c in r.renderer().classes()] if r.renderer().type() == "paletted" else []},
       "fields": {"valid": v.isValid(), "features": v.featureCount(), "columns": [f.name() for f in v.fields()]},
       "areas": {"valid": t.isValid(), "rows": t.featureCount(), "columns": [f.name() for f in t.fields()]}}
ms = QgsMapSettings(); ms.setLayers([r]); ms.setDestinationCrs(r.crs()); ms.setExtent(r.extent())
ms.setOutputSize(QSize(400, 400))
job = QgsMapRendererParallelJob(ms); job.start(); job.waitForFinished(); job.renderedImage().save(png)
print("JSON" + json.dumps(out))
del job, ms, r, v, t  # layers go before QGIS does
app.exitQgis()
"""


def test_crop_map_fields_and_areas_open_in_qgis(mapped, tmp_path):
    from test_al_handoff import run_qgis

    vrt = sorted((mapped / "croptype").glob("map_*.vrt"))[0]
    gpkg = sorted((mapped / "croptype" / "polygons").glob("*.gpkg"))[0]
    png = tmp_path / "qgis.png"
    out = run_qgis(QGIS_SCRIPT, str(vrt), str(gpkg), str(mapped / "croptype" / "areas_provinces.csv"), str(png),
                   tmp=tmp_path)  # fmt: skip
    assert out["raster"]["valid"] and out["raster"]["renderer"] == "paletted"
    assert "grain maize" in out["raster"]["classes"] and out["raster"]["crs"].startswith("EPSG:326")
    assert out["fields"]["valid"] and out["fields"]["features"] > 0 and "crop" in out["fields"]["columns"]
    assert out["areas"]["valid"] and out["areas"]["rows"] > 0 and "mapped_ha" in out["areas"]["columns"]
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB"))
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 3  # drawn in the crop colours, not blank


def test_per_field_classification_is_the_other_unit(world_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world_run, run)
    res = _map(run, "--unit", "parcel")
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((run / "croptype" / "summary.json").read_text())
    assert summary["classified"] > 0 and summary["accuracy_by_area"]["level1"] > 0
