"""`mapper compare`: a run's final map against another cropland map (CropLayer paper Sect. 4.3.1-4.3.2), on the
shared one-block `world_run` (read-only: every output goes under tmp_path)."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import sys

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from conftest import WORLD_RUN_BLOCK
from mapper.validation.compare import compare_block, compare_run, divergence, open_other
from mapper.validation.errors import ValidationInputError
from PIL import Image
from rasterio.warp import Resampling, calculate_default_transform, reproject

from mapper.cli import cli
from mapper.cli.compare import folder_name
from mapper.cli.errors import USER_ERRORS
from mapper.grid.blocks import Block


def _final(run_dir):
    with rasterio.open(run_dir / "final" / f"{WORLD_RUN_BLOCK}.tif") as src:
        return src.read(1), src.crs, src.transform, src.bounds


def _warp(run_dir, path, crs, resolution=None, shift_m=0.0):
    """The run's final map warped (nearest) to a geographic `crs`, as a 0/1/255 GeoTIFF; its transform moved
    `shift_m` metres east."""
    data, src_crs, src_transform, b = _final(run_dir)
    kw = {"resolution": resolution} if resolution else {}
    transform, w, h = calculate_default_transform(src_crs, crs, data.shape[1], data.shape[0], *b, **kw)
    out = np.full((h, w), 255, np.uint8)
    reproject(data, out, src_transform=src_transform, src_crs=src_crs, src_nodata=255, dst_transform=transform,
              dst_crs=crs, dst_nodata=255, resampling=Resampling.nearest)  # fmt: skip
    if shift_m:  # metres east to degrees of longitude at the block's latitude (EPSG:4326 here)
        lat = Block.parse(WORLD_RUN_BLOCK).center[1]
        transform = Affine.translation(shift_m / (111_320.0 * math.cos(math.radians(lat))), 0.0) @ transform
    _write(path, out, crs, transform, nodata=255)
    return path


def _write(path, data, crs, transform, nodata):
    profile = {"driver": "GTiff", "height": data.shape[0], "width": data.shape[1], "count": 1, "dtype": data.dtype,
               "transform": transform, "nodata": nodata}  # fmt: skip
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path


def degraded_30m(run_dir, path, cropland_value=1):
    """The run's final map as a 30 m product in UTM 50N: the cropland share of each 30 m cell (average of the
    0/1 map, no-imagery pixels left out), cropland where the share is >= 0.3, 255 where there is no data."""
    data, src_crs, src_transform, b = _final(run_dir)
    share = np.where(data == 255, np.nan, data.astype(np.float32))
    transform, w, h = calculate_default_transform(src_crs, "EPSG:32650", data.shape[1], data.shape[0], *b,
                                                  resolution=30.0)  # fmt: skip
    out = np.full((h, w), np.nan, np.float32)
    reproject(share, out, src_transform=src_transform, src_crs=src_crs, src_nodata=np.nan, dst_transform=transform,
              dst_crs="EPSG:32650", dst_nodata=np.nan, resampling=Resampling.average)  # fmt: skip
    coarse = np.where(np.isnan(out), 255, np.where(out >= 0.3, cropland_value, 0)).astype(np.uint8)
    return _write(path, coarse, "EPSG:32650", transform, nodata=255)


def _compare(run_dir, other, tmp_path, *args):
    res = CliRunner().invoke(cli, ["compare", str(run_dir), str(other), "--out", str(tmp_path / "cmp"), "--json",
                                   "-q", *args])  # fmt: skip
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _block(summary, tmp_path):
    import pandas as pd

    rows = pd.read_csv(tmp_path / "cmp" / "blocks.csv")
    assert rows["block_id"].tolist() == [WORLD_RUN_BLOCK]
    return rows.iloc[0]


# ------------------------------------------------------------------------------------------------- unit level
def test_compare_block_counts_ground_area_and_divergence_by_hand():
    final = np.array([[1, 1, 0, 255], [0, 1, 0, 0]], np.uint8)
    other = np.array([[1, 0, 1, 1], [255, 1, 0, 0]], np.uint8)
    areas = np.array([1e4, 3e4])  # m² per pixel of each row: the second row weighs three times the first
    row = compare_block(final, other, areas)
    # both cover: row 0 cols 0-2, row 1 cols 1-3; TP (0,0), (1,1); FP (0,2); FN (0,1)
    assert row["tp_ha"] == pytest.approx(4.0) and row["fp_ha"] == pytest.approx(1.0)
    assert row["fn_ha"] == pytest.approx(1.0) and row["compared_ha"] == pytest.approx(12.0)
    assert row["iou"] == pytest.approx(4 / 6)
    assert row["af_c"] == pytest.approx(5 / 12) and row["af_t"] == pytest.approx(5 / 12)
    assert row["div_af"] == pytest.approx(0.0)
    assert math.isnan(divergence(0.3, 0.0)) and math.isnan(divergence(0.3, math.nan))
    assert divergence(0.3, 0.2) == pytest.approx(0.5)


@pytest.mark.slow
def test_nodata_of_the_other_map_never_becomes_cropland(world_run, tmp_path):
    """A finer map that is all nodata except a value that is not cropland: nothing is compared (mode warp)."""
    data, crs, transform, _ = _final(world_run)
    fine = np.full((data.shape[0] * 2, data.shape[1] * 2), 255, np.uint8)
    fine[::2, ::2] = 7  # a quarter of the fine pixels hold a non-cropland value, the rest nodata
    path = _write(tmp_path / "fine.tif", fine, crs, transform @ Affine.scale(0.5), nodata=255)
    comparison = compare_run(world_run, open_other(path, (1,)))
    assert comparison.summary["other"]["resampling"] == "mode"
    assert comparison.summary["pixel"]["tp_ha"] == 0 and comparison.summary["pixel"]["fp_ha"] == 0
    assert comparison.summary["pixel"]["iou"] == 0.0  # C has cropland, T none where both have data


def test_the_default_folder_name_is_one_safe_folder():
    assert folder_name("ESA WorldCover (2021)") == "ESA_WorldCover_2021"
    assert folder_name("../..") == "other" and folder_name("clcd_v01.2020") == "clcd_v01.2020"


# ------------------------------------------------------------------------------------------------ the real run
@pytest.mark.slow
def test_identity_with_the_runs_own_map(world_run, tmp_path):
    summary = _compare(world_run, world_run / "map" / "cropland.vrt", tmp_path)
    assert summary["pixel"]["iou"] == 1.0
    assert summary["other"]["resampling"] == "nearest" and summary["blocks"]["compared"] == 1
    row = _block(summary, tmp_path)
    assert row["div_af"] == 0.0 and row["div_ed"] == 0.0 and 0.1 < row["af_c"] < 0.9
    assert summary["block_level"]["area_fraction"]["median_div"] == 0.0


@pytest.mark.slow
def test_the_other_maps_georeference_is_honoured(world_run, tmp_path):
    """The run's map in EPSG:4326 at about its resolution agrees; moved 50 m east it clearly does not."""
    res_deg = 2.2 / 111_320.0
    same = _warp(world_run, tmp_path / "wgs84.tif", "EPSG:4326", resolution=res_deg)
    moved = _warp(world_run, tmp_path / "wgs84_moved.tif", "EPSG:4326", resolution=res_deg, shift_m=50.0)
    iou_same = compare_run(world_run, open_other(same)).summary["pixel"]["iou"]
    iou_moved = compare_run(world_run, open_other(moved)).summary["pixel"]["iou"]
    assert iou_same > 0.9
    assert iou_moved < iou_same - 0.1


@pytest.mark.slow
def test_a_30m_product_overestimates_area_and_underestimates_edges(world_run, tmp_path):
    """The issue's "done when". Coarse products (ESA WorldCover, CLCD, ...) label a 30 m cell cropland when
    a good part of it is, not only when most of it is: a cell ≥ 0.3 cropland counts as cropland, so the
    mixed cells along field edges inflate the area fraction of a block about a quarter cropland, and 30 m
    cells merge neighbouring fields and smooth boundaries, so the edge density falls (paper Sect. 4.3.2)."""
    coarse = degraded_30m(world_run, tmp_path / "coarse30.tif")
    summary = _compare(world_run, coarse, tmp_path)
    row = _block(summary, tmp_path)
    assert summary["other"]["resampling"] == "nearest" and 25 < summary["other"]["resolution_m"] < 35
    assert row["div_af"] > 0 and row["div_ed"] < 0
    assert summary["pixel"]["iou"] < 1 and row["iou"] < 1
    lvl = summary["block_level"]
    assert lvl["area_fraction"]["over_share"] == 1.0 and lvl["edge_density"]["under_share"] == 1.0
    # the same product with ESA WorldCover's cropland code gives the same numbers with --cropland-values 40
    esa = degraded_30m(world_run, tmp_path / "esa40.tif", cropland_value=40)
    (tmp_path / "cmp").rename(tmp_path / "cmp1")
    assert _compare(world_run, esa, tmp_path, "--cropland-values", "40")["pixel"] == summary["pixel"]
    assert _compare(world_run, esa, tmp_path)["pixel"]["tp_ha"] == 0  # default 1: no cropland in T


@pytest.mark.slow
def test_the_cli_writes_its_files_and_json(world_run, tmp_path):
    coarse = degraded_30m(world_run, tmp_path / "coarse30.tif")
    summary = _compare(world_run, coarse, tmp_path)
    out = tmp_path / "cmp"
    assert json.loads((out / "compare.json").read_text()) == summary
    assert summary["outputs"]["blocks.csv"] == str(out / "blocks.csv")
    assert summary["other"]["crs"] == "EPSG:32650" and summary["other"]["cropland_values"] == [1]
    hist = summary["deviation_vs_slope"]
    assert np.sum(hist["area_fraction"]["counts"]) == 1 and len(hist["div_percent_edges"]) == 16
    for name in ("deviation_vs_slope.png", "deviation_map.png"):
        with Image.open(out / name) as im:
            assert im.size[0] > 800 and im.size[1] > 400
            assert len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 20  # drawn, not blank
    res = CliRunner().invoke(cli, ["compare", str(world_run), str(coarse), "--out", str(out), "-q"])
    assert res.exit_code == 0 and "IoU" in res.stdout and "edge density" in res.stdout


# ------------------------------------------------------------------------------------------------ bad input
def _refused(args, capsys, monkeypatch, message):
    """Refused with `message`: as a user error by the command, and by `mapper` as one line, no traceback."""
    res = CliRunner().invoke(cli, ["compare", *map(str, args), "-q"])
    assert res.exit_code != 0 and isinstance(res.exception, USER_ERRORS), res.output
    assert message in str(res.exception)
    from mapper.cli import main

    monkeypatch.setattr(sys, "argv", ["mapper", "compare", *map(str, args), "-q"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and "Traceback" not in err


def test_a_raster_without_crs_is_refused(tmp_path, capsys, monkeypatch):
    """The other map is checked before the run is read, so any run directory will do here."""
    path = _write(tmp_path / "nocrs.tif", np.ones((10, 10), np.uint8), None, Affine(30, 0, 0, 0, -30, 0), 255)
    _refused([tmp_path, path, "--out", tmp_path / "o"], capsys, monkeypatch, "has no CRS")


@pytest.mark.slow
def test_a_map_elsewhere_is_refused(world_run, tmp_path, capsys, monkeypatch):
    paris = Affine(0.01, 0, 2.0, 0, -0.01, 48.0)
    far = _write(tmp_path / "far.tif", np.ones((10, 10), np.uint8), "EPSG:4326", paris, nodata=255)
    _refused([world_run, far, "--out", tmp_path / "o"], capsys, monkeypatch, "does not overlap")


def test_a_file_that_is_not_a_raster_is_refused(tmp_path, capsys, monkeypatch):
    text = tmp_path / "notes.tif"
    text.write_text("not a raster\n")
    _refused([tmp_path, text, "--out", tmp_path / "o"], capsys, monkeypatch, "as a raster")
    with pytest.raises(ValidationInputError, match="does not exist"):
        open_other(tmp_path / "absent.tif")


@pytest.mark.slow
def test_an_incomplete_run_is_compared_on_what_exists(world_run, tmp_path):
    """Without blocks.parquet (the run's outputs not written) the block is still compared, its slope is NaN
    (left out of the histograms), and the summary says what is missing; a run with nothing mapped is refused."""
    copy = tmp_path / "run"
    shutil.copytree(world_run, copy)
    (copy / "blocks.parquet").unlink()
    summary = _compare(copy, copy / "map" / "cropland.vrt", tmp_path)
    assert summary["pixel"]["iou"] == 1.0 and not summary["complete"]
    assert any(f.startswith("blocks.parquet") for f in summary["missing"]["files"])
    assert math.isnan(_block(summary, tmp_path)["slope_median_deg"])
    assert summary["deviation_vs_slope"]["area_fraction"]["blocks"] == 0
    with sqlite3.connect(copy / "state.sqlite") as conn:
        conn.execute("DELETE FROM tasks WHERE stage = 'final'")  # the block is pending again
    with pytest.raises(ValidationInputError, match="no mapped blocks"):
        compare_run(copy, open_other(copy / "map" / "cropland.vrt"))
