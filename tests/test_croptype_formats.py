"""The public crop-type dataset layouts (mapper.croptype.formats): trees written by an independent script
(tests/public_dataset_fixtures.py) read to the exact values, labels and splits; the world exported and read
back equal to the native series of the same samples; folders out of layout named with the fix; the CLI."""

import json
import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from mapper.cli import cli
from mapper.croptype.dataset import DatasetError
from mapper.croptype.formats import load_taxonomy, read_format
from mapper.croptype.formats.ccd import read_ccd
from mapper.croptype.formats.h2crop import read_h2crop
from mapper.croptype.formats.months import month_steps, month_windows
from mapper.croptype.series import BANDS
from mapper.croptype.taxonomy import packaged_taxonomy
from tests import public_dataset_fixtures as fx

CCD_TAX = "mapper/data/croptype/ccd_taxonomy.csv"


@pytest.fixture(scope="module")
def ccd_tax():
    from pathlib import Path

    return load_taxonomy(Path(__file__).parent.parent / CCD_TAX)[0]


@pytest.fixture(scope="module")
def ccd_root(tmp_path_factory):
    return fx.write_ccd(tmp_path_factory.mktemp("ccd") / "CCD")


def test_months_are_exact_calendar_windows():
    centres, halves = month_windows(2020, (2, 3))
    assert list(centres - halves + 0.5) == [32, 61] and list(centres + halves - 0.5) == [60, 91]  # leap February
    assert list(month_steps((6, 10))) == [166, 289]  # 15 June, 16 October (non-leap days of year)


def test_ccd_tif_values_labels_splits(ccd_root, ccd_tax):
    ds = read_ccd(ccd_root, ccd_tax, source="tif")
    got = {(p, y): i for i, (p, y) in enumerate(zip(ds.parcels["parcel"], ds.parcels["year"], strict=True))}
    assert sorted(got) == [(2, 2019), (2, 2020), (5, 2019), (9, 2019), (12, 2019), (12, 2020)]
    assert ds.bands == BANDS and list(ds.steps) == list(month_steps((6, 7, 8, 9, 10)))
    for (point, year), i in got.items():
        split, prov, classes, months = fx.CCD_POINTS[point]
        row = ds.parcels.iloc[i]
        assert row["split"] == split and row["province"] == prov and row["months_observed"] == len(months)
        assert row["code"] == ccd_tax.code_of(classes[year].lower().replace("_", " "))
        prev = classes.get(year - 1)
        assert row["last_code"] == (ccd_tax.code_of(prev.lower().replace("_", " ")) if prev else 0)
        for t, month in enumerate(range(6, 11)):
            want = [fx.reflectance(point, month, fx.CCD_BANDS.index(b)) for b in BANDS]
            if month in months:
                np.testing.assert_allclose(ds.series[i, :, t], want, rtol=1e-6)
    # point 9 lacks July and September: linear between its neighbours in time
    i = got[(9, 2019)]
    mid = (ds.series[i, :, 0] * (month_steps([8])[0] - month_steps([7])[0]) + ds.series[i, :, 2] * (
        month_steps([7])[0] - month_steps([6])[0])) / (month_steps([8])[0] - month_steps([6])[0])
    np.testing.assert_allclose(ds.series[i, :, 1], mid, rtol=1e-5)
    assert np.isfinite(ds.parcels["lon"]).all()


def test_ccd_png_values(ccd_root, ccd_tax):
    ds = read_ccd(ccd_root, ccd_tax, source="png")
    assert ds.bands == ("RGB.R", "RGB.G", "RGB.B", "NDVI")
    i = int(np.flatnonzero((ds.parcels["parcel"] == 2) & (ds.parcels["year"] == 2019))[0])
    for t, month in enumerate(range(6, 11)):
        want = [fx.png_value(2, month, c) / 255 for c in (0, 1, 2, 0)]
        np.testing.assert_allclose(ds.series[i, :, t], want, rtol=1e-6)


def _copy(src, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("damage, match", [
    (lambda r: shutil.move(r / "2019/RGB/training", r / "2019/RGB/train"), r"expected a split folder"),
    (lambda r: (r / "2019/RGB/training/BARLEY/POINT_2_201906_AB_BARLEY_RGB.png").rename(
        r / "2019/RGB/training/BARLEY/P2_201906_AB_BARLEY_RGB.png"), r"P2_201906_AB_BARLEY_RGB\.png: the name is not"),
    (lambda r: shutil.move(r / "2019/NDVI/training/CORN", r / "2019/NDVI/training/MAIZE"), r"class folder MAIZE"),
    (lambda r: shutil.rmtree(r / "2019"), None),
], ids=["split", "name", "class-folder", "year"])  # fmt: skip
def test_ccd_bad_layout_names_the_file(ccd_root, ccd_tax, tmp_path, damage, match):
    root = _copy(ccd_root, tmp_path)
    damage(root)
    if match is None:  # without 2019 the tree is still a CCD (2020 only): it reads
        assert len(read_ccd(root, ccd_tax, source="png")) == 2
        return
    with pytest.raises(DatasetError, match=match):
        read_ccd(root, ccd_tax, source="png")


def test_ccd_bad_patch_class_and_split(ccd_root, ccd_tax, tmp_path):
    from PIL import Image

    root = _copy(ccd_root, tmp_path)
    bad = root / "2019/RGB/test/SPRING_WHEAT/POINT_12_201907_ON_SPRING_WHEAT_RGB.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(bad)
    with pytest.raises(DatasetError, match=r"POINT_12_201907_ON_SPRING_WHEAT_RGB\.png is 32 × 32 px"):
        read_ccd(root, ccd_tax, source="png")
    with pytest.raises(DatasetError, match=r"CANOLA, CORN are not leaves of the taxonomy.*--taxonomy"):
        read_ccd(ccd_root, packaged_taxonomy(), source="tif")
    root = _copy(ccd_root, tmp_path / "b")
    shutil.copytree(root / "2020/TIF/training/CANOLA", root / "2020/TIF/test/CANOLA")
    with pytest.raises(DatasetError, match=r"point 2 is in two splits"):
        read_ccd(root, ccd_tax, source="tif")


@pytest.fixture(scope="module")
def h2_root(tmp_path_factory):
    return fx.write_h2crop(tmp_path_factory.mktemp("h2") / "H2Crop")


def test_h2crop_pixels_exact(h2_root):
    tax, ids = load_taxonomy(h2_root / "cascade_labels.csv")
    assert tax.sizes == (1, 2, 2, 3)
    ds = read_h2crop(h2_root, tax, ids, max_pixels=None)
    assert ds.meta["inconsistent_levels"] == 0 and list(ds.steps) == list(month_steps(range(1, 13)))
    for name, split in fx.H2_SAMPLES.items():
        k, leaf = int(name[-3:]), fx.h2_label(name)
        rows = ds.parcels[ds.parcels["window"] == name]
        assert (rows["split"] == split).all() and len(rows) == int((leaf > 0).sum())
        for i, r, c in zip(rows.index, rows["row"], rows["col"], strict=True):
            assert ds.parcels.at[i, "code"] == leaf[r, c]  # leaf code = level-4 id
            assert ds.parcels.at[i, "last_code"] == (8 if leaf[r, c] == 14 else 0)
            want = [[fx.h2_dn(t, b, r, c, k) / 1e4 for t in range(12)] for b in range(10)]
            np.testing.assert_allclose(ds.series[i], want, rtol=1e-6)
    parcels = read_h2crop(h2_root, tax, ids, unit="parcel", splits=("train",))
    assert sorted(parcels.parcels["n_pure"]) == [1, 8, 8, 9, 9]  # sample_002 has no spring barley pixel


def test_h2crop_bad_input_names_the_file(h2_root, ccd_tax, tmp_path):
    tax, ids = load_taxonomy(h2_root / "cascade_labels.csv")
    root = _copy(h2_root, tmp_path)
    with h5py.File(root / "h5_data/sample_002.h5", "a") as f:
        f["S2"] = f["S2_data"][...]
        del f["S2_data"]
    with pytest.raises(DatasetError, match=r"sample_002\.h5 lacks S2_data"):
        read_h2crop(root, tax, ids)
    with h5py.File(root / "h5_data/sample_002.h5", "a") as f:
        f["S2_data"] = np.zeros((12, 10, 4, 4), np.int16)
    with pytest.raises(DatasetError, match=r"sample_002\.h5: label has shape \(4, 8, 8\), expected \(4, 4, 4\)"):
        read_h2crop(root, tax, ids)
    (root / "data_lists/val.txt").write_text("sample_003\nsample_999\n")
    with pytest.raises(DatasetError, match=r"val\.txt names 1 sample\(s\) without a file.*sample_999\.h5"):
        read_h2crop(root, tax, ids, splits=("val",))
    with pytest.raises(DatasetError, match=r"sample_001\.h5: label level-4 id\(s\) \[14, 23\] are not leaves"):
        read_h2crop(h2_root, ccd_tax)  # 10 leaves: ids 1-10
    shutil.rmtree(root / "h5_data")
    with pytest.raises(DatasetError, match=r"not in H2Crop's layout"):
        read_h2crop(root, tax, ids)


@pytest.fixture(scope="module")
def world_exports(tmp_path_factory):
    from mapper.croptype.formats.ccdwrite import export_ccd
    from mapper.croptype.formats.h2cropwrite import export_h2crop
    from mapper.world.world import get_world

    out = tmp_path_factory.mktemp("world")
    world = get_world(0)
    ccd = export_ccd(world, "Henan", out / "ccd", 2, window_km=1.0, seed=4, max_points=12, types=("RGB",))
    h2 = export_h2crop(world, "Henan", out / "h2", 2, window_km=0.8, seed=4, max_pixels=200)
    return out, ccd, h2


def test_world_round_trip(world_exports):
    out, (ccd_native, ccd_months), (_, h2_months) = world_exports
    tax = packaged_taxonomy()
    ccd = read_format(out / "ccd", "ccd", tax)
    assert np.array_equal(ccd.series, ccd_months.series) and np.array_equal(ccd.steps, ccd_months.steps)
    assert (ccd.parcels["code"].to_numpy() == ccd_months.parcels["code"].to_numpy()).all()
    assert (ccd.parcels["split"].to_numpy() == ccd_months.parcels["split"].to_numpy()).all()
    assert ccd_native.series.shape[2] == 43 and len(ccd_native) == len(ccd)
    h2 = read_format(out / "h2", "h2crop", tax, max_pixels=200, seed=4)
    np.testing.assert_allclose(h2.series, h2_months.series, atol=0.5e-4 + 1e-7)  # int16 DN quantisation
    for col in ("code", "last_code", "split"):
        assert (h2.parcels[col].to_numpy() == h2_months.parcels[col].to_numpy()).all()


def test_round_trip_keeps_the_accuracy(world_exports):
    """Training on the format's read-back equals training on the native monthly series of the same samples."""
    from mapper.croptype.fit import evaluate_model, train_model
    from mapper.croptype.kinds import load_model

    out, _, (_, h2_months) = world_exports
    h2 = read_format(out / "h2", "h2crop", packaged_taxonomy(), max_pixels=200, seed=4)
    scores = []
    for i, ds in enumerate((h2, h2_months)):
        train_model(ds, out / f"forest{i}", "forest", n_trees=30, log=lambda m: None)
        scores.append(evaluate_model(load_model(out / f"forest{i}"), ds)["level4"]["overall_accuracy"])
    assert abs(scores[0] - scores[1]) <= 0.02 and scores[0] > 0.5


def test_cli_export_train_evaluate(tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, ["croptype", "export", "--format", "h2crop", "-p", "Henan", "--windows", "2",
                             "--window-km", "0.8", "--seed", "2", "--max-pixels", "150", "--out", str(tmp_path / "h2"),
                             "--native-out", str(tmp_path / "native")])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["croptype", "train", "--data", str(tmp_path / "h2"), "--format", "h2crop",
                             "--max-pixels", "150", "--out", str(tmp_path / "m"), "--epochs", "2", "--width", "8"])
    assert r.exit_code == 0, r.output
    assert "validation" in r.output
    r = runner.invoke(cli, ["croptype", "evaluate", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "h2"),
                             "--format", "h2crop", "--max-pixels", "150", "--split", "all", "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.output[r.output.index("{"):])["n_parcels"] == 300
    r = runner.invoke(cli, ["croptype", "train", "--data", str(tmp_path / "native"), "--format", "ccd",
                             "--out", str(tmp_path / "m2")])  # fmt: skip
    assert r.exit_code != 0 and "no year folder" in str(r.exception or r.output)
