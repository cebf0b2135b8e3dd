"""`mapper allocate RUN` on a run with crop types: its outputs agree with each other and with the statistics,
no cell passes its cap, the world's truth judges it, and bad statistics or rasters are refused by name."""

import json
import os
import subprocess
import sys

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
import rasterio

from mapper.allocate.grid import AllocationGrid, GridError, unit_pieces
from mapper.allocate.rasters import read_on_grid
from mapper.allocate.statistics import StatisticsError, read_statistics, unit_frame
from mapper.croptype.taxonomy import packaged_taxonomy

pytestmark = pytest.mark.slow


def _allocate(run, out, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mapper.cli", "allocate", str(run), "--out", str(out), *extra],
                          capture_output=True, text=True, env=env, timeout=600)  # fmt: skip


@pytest.fixture(scope="module")
def allocated(croptype_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("allocation")
    res = _allocate(croptype_run, out, "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    return out, json.loads(res.stdout)


def test_outputs_agree_with_the_statistics_and_each_other(allocated):
    out, summary = allocated
    units = pd.read_csv(out / "units.csv")
    stats = pd.read_csv(out / "statistics.csv")
    assert units["statistic_ha"].sum() == pytest.approx(stats["area_ha"].sum(), abs=0.01)
    # every hectare is placed or reported
    np.testing.assert_allclose(units["allocated_ha"] + units["unplaced_ha"], units["statistic_ha"], atol=1e-6)
    np.testing.assert_allclose(units[["eq1_ha", "eq5_ha", "eq6_ha"]].sum(axis=1), units["allocated_ha"], atol=1e-6)
    with rasterio.open(out / "allocation.tif") as src:
        assert src.crs.to_epsg() == 4326 and src.count == len(summary["crops"])
        assert src.transform.a == pytest.approx(0.05) and (src.transform.c / 0.05) == pytest.approx(
            round(src.transform.c / 0.05))
        assert list(src.descriptions) == summary["crops"]
        bands = src.read()
    assert bands.sum() == pytest.approx(summary["allocated_ha"], rel=1e-5)
    table = gpd.read_parquet(out / "allocation.parquet")
    assert table["ha"].sum() == pytest.approx(summary["allocated_ha"], rel=1e-9)
    assert {"cell", "unit_code", "crop", "ha", "probability", "cap_ha"} <= set(table.columns)
    perennial = dict(zip(packaged_taxonomy().leaf_names(), packaged_taxonomy().perennial, strict=True))
    annual = table[~table["crop"].map(perennial)]
    per_piece = annual.groupby(["cell", "unit_code"]).agg(ha=("ha", "sum"), cap=("cap_ha", "first"))
    assert (per_piece["ha"] <= per_piece["cap"] * (1 + 1e-9) + 1e-9).all()  # no cell over its cap
    assert len(list((out / "png").glob("*.png"))) == len(summary["crops"])
    ev = summary["evaluation"]
    assert ev["truth_ha"] == pytest.approx(summary["statistic_ha"], rel=1e-9)
    assert ev["method"]["r2"] is not None and ev["cropland_proportional"]["mae_ha"] >= 0


def test_a_users_csv_gives_the_same_allocation_and_regression_runs(allocated, croptype_run, tmp_path):
    out, summary = allocated
    res = _allocate(croptype_run, tmp_path / "csv", "--statistics", str(out / "statistics.csv"), "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    again = json.loads(res.stdout)
    # the user's table holds the whole prefectures, not only the run's block: same hectares, more cells
    assert again["statistic_ha"] == pytest.approx(summary["statistic_ha"], abs=0.01)
    assert again["allocated_ha"] + again["unplaced_ha"] == pytest.approx(again["statistic_ha"], rel=1e-9)
    res = _allocate(croptype_run, tmp_path / "rf", "--probability", "regression", "--grid", "5arcmin", "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    rf = json.loads(res.stdout)
    assert rf["allocated_ha"] + rf["unplaced_ha"] == pytest.approx(rf["statistic_ha"], rel=1e-9)
    with rasterio.open(tmp_path / "rf" / "allocation.tif") as src:
        assert src.transform.a == pytest.approx(1 / 12)


def test_a_statistic_over_the_capacity_is_placed_up_to_the_cap_and_reported(croptype_run, allocated, tmp_path):
    out, _ = allocated
    stats = pd.read_csv(out / "statistics.csv")
    stats["area_ha"] *= 10  # far more than the run's cropland can hold
    path = tmp_path / "big.csv"
    stats.to_csv(path, index=False)
    res = _allocate(croptype_run, tmp_path / "big", "--statistics", str(path))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "could not be placed" in res.stdout
    units = pd.read_csv(tmp_path / "big" / "units.csv")
    assert units["unplaced_ha"].sum() > 0


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("unit,crop,area_ha\nAtlantis,soybean,5\n", "unknown unit 'Atlantis'"),
        ("unit,crop,area_ha\nCN044,quinoa,5\n", "crop 'quinoa' is not a leaf"),
        ("unit,crop,area_ha\nCN044,soybean,-5\n", "non-negative"),
        ("unit,crop,area_ha\nCN044,soybean,\n", "is not a number"),
        ("unit,crop\nCN044,soybean\n", "missing column(s) area_ha"),
        ("unit,crop,area_ha\nCN044,soybean,5\nCN044010,soybean,5\n", "mixes provinces"),
        ("unit,crop,area_ha\nCN044,soybean,5\nGuangdong,soybean,3\n", "already given"),
    ],
)
def test_bad_statistics_are_refused_naming_the_line(tmp_path, rows, message):
    path = tmp_path / "stats.csv"
    path.write_text(rows, encoding="utf-8")
    with pytest.raises(StatisticsError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        read_statistics(path, packaged_taxonomy())
    assert str(path) in str(e.value)


def test_bad_input_through_the_cli_is_one_line(croptype_run, tmp_path):
    path = tmp_path / "stats.csv"
    path.write_text("unit,crop,area_ha\nAtlantis,soybean,5\n", encoding="utf-8")
    res = _allocate(croptype_run, tmp_path / "x", "--statistics", str(path))
    assert res.returncode != 0 and "unknown unit 'Atlantis'" in res.stderr and "Traceback" not in res.stderr


def test_pieces_keep_each_units_true_area():
    units = unit_frame("prefecture")
    units = units[units["code"].isin(["CN044190", "CN044200", "CN044040"])].reset_index(drop=True)
    geod = pyproj.Geod(ellps="WGS84")
    for grid in ("block", "5arcmin"):
        pieces = unit_pieces(AllocationGrid.named(grid), units[["code", "name", "geometry"]])
        for k, geom in enumerate(units.geometry):
            assert pieces.area_ha[pieces.unit == k].sum() == pytest.approx(
                abs(geod.geometry_area_perimeter(geom)[0]) / 1e4, rel=2e-3)


def test_rasters_are_read_at_their_cells_and_other_grids_refused(tmp_path):
    units = unit_frame("prefecture")
    units = units[units["code"] == "CN044040"].reset_index(drop=True)[["code", "name", "geometry"]]
    pieces = unit_pieces(AllocationGrid.named("block"), units)
    width, height, transform, row, col = pieces.raster_frame()
    data = np.arange(width * height, dtype=np.float32).reshape(1, height, width)
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": "float32",
               "crs": "EPSG:4326", "transform": transform}  # fmt: skip
    good = tmp_path / "good.tif"
    with rasterio.open(good, "w", **profile) as dst:
        dst.write(data)
    np.testing.assert_array_equal(read_on_grid(good, pieces, "cropland")[0], data[0, row, col])
    coarse = tmp_path / "coarse.tif"
    with rasterio.open(coarse, "w", **{**profile, "transform": transform @ rasterio.Affine.scale(2)}) as dst:
        dst.write(data)
    with pytest.raises(GridError, match=r"not the block grid's 0\.05°"):
        read_on_grid(coarse, pieces, "cropland")
    shifted = tmp_path / "shifted.tif"
    half = transform @ rasterio.Affine.translation(0.5, 0)
    with rasterio.open(shifted, "w", **{**profile, "transform": half}) as dst:
        dst.write(data)
    with pytest.raises(GridError, match="not on a cell edge"):
        read_on_grid(shifted, pieces, "cropland")
    utm = tmp_path / "utm.tif"
    with rasterio.open(utm, "w", **{**profile, "crs": "EPSG:32650"}) as dst:
        dst.write(data)
    with pytest.raises(GridError, match="is not EPSG:4326"):
        read_on_grid(utm, pieces, "cropland")


def test_report_has_the_allocation_section(croptype_run, allocated, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(croptype_run, run)
    shutil.copytree(allocated[0], run / "allocation")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "mapper.cli", "report", str(run)], capture_output=True, text=True,
                         env=env, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    page = (run / "report" / "index.html").read_text(encoding="utf-8")
    assert "5. Crop statistics on the grid" in page and "proportional to cropland" in page
    assert "Allocated " in page


def test_a_run_without_crop_types_is_refused_naming_the_step(world_run, tmp_path):
    res = _allocate(world_run, tmp_path / "x")
    assert res.returncode != 0 and "mapper croptype map" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "x").exists()  # nothing written


def test_an_off_grid_raster_is_refused_before_any_work(croptype_run, tmp_path):
    bad = tmp_path / "cropland.tif"
    profile = {"driver": "GTiff", "width": 4, "height": 4, "count": 1, "dtype": "float32", "crs": "EPSG:4326",
               "transform": rasterio.Affine(0.01, 0, 114.0, 0, -0.01, 23.0)}  # fmt: skip
    with rasterio.open(bad, "w", **profile) as dst:
        dst.write(np.ones((1, 4, 4), np.float32))
    res = _allocate(croptype_run, tmp_path / "x", "--cropland", str(bad))
    assert res.returncode != 0 and "cropland raster" in res.stderr and "0.05°" in res.stderr
    assert "pieces" not in res.stderr  # refused before the problem was built
