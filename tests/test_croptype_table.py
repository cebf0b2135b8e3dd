"""`--format table` (mapper.croptype.formats.table): small tables written here — wide and long, CSV and Parquet,
with missing values — read to the exact values, days, labels and splits; a flat class list as the taxonomy; every
bad input named with its column or rows; train / evaluate / predict through the CLI; UCR Crop when present."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mapper.cli import cli
from mapper.croptype.dataset import DatasetError
from mapper.croptype.formats import load_taxonomy, read_format
from mapper.croptype.formats.table import read_table
from mapper.croptype.formats.tablesplit import assign_split, check_split_classes
from mapper.croptype.formats.tablewrite import level_path
from mapper.croptype.taxonomy import TaxonomyError, is_flat, packaged_taxonomy, read_class_list

UCR = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "ucr_crop"
CLASSES = ["maize", "wheat", "water"]


@pytest.fixture
def classes(tmp_path):
    path = tmp_path / "classes.csv"
    pd.DataFrame({"label": CLASSES, "cropped": [1, 1, 0]}).to_csv(path, index=False)
    return load_taxonomy(path)[0]


def wide(n_steps=4, bands=("NDVI",), labels=("maize", "wheat", "water"), **extra) -> pd.DataFrame:
    """Row i, band b, step t holds i + b/10 + t/100, so every value says where it came from."""
    df = pd.DataFrame({"id": [f"s{i}" for i in range(len(labels))], "label": list(labels)})
    for b, band in enumerate(bands):
        for t in range(n_steps):
            df[f"{band}_{t:02d}"] = np.arange(len(labels)) + b / 10 + t / 100
    return df.assign(**extra)


def write(df: pd.DataFrame, path: Path) -> Path:
    df.to_parquet(path, index=False) if path.suffix == ".parquet" else df.to_csv(path, index=False)
    return path


def test_class_list_is_a_one_level_taxonomy(classes, tmp_path):
    assert classes.sizes == (3, 3, 3, 3) and is_flat(classes) and not is_flat(packaged_taxonomy())
    assert list(classes.leaf_names()) == CLASSES and list(classes.codes) == [1, 2, 3]
    assert classes.cropped.tolist() == [True, True, False] and level_path(classes, 1) == "wheat"
    plain = write(pd.DataFrame({"label": ["a", "b"]}), tmp_path / "plain.csv")
    assert read_class_list(plain).cropped.all()  # cropped is optional
    bad = write(pd.DataFrame({"label": ["a", "b"], "cropped": ["yes", "maybe"]}), tmp_path / "bad.csv")
    with pytest.raises(TaxonomyError, match="line 3: cropped is 'maybe'"):
        read_class_list(bad)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_wide_values_days_labels(classes, tmp_path, suffix):
    df = wide(bands=("B02", "B03"), labels=("maize", "WATER", "2"))  # names in any case, or codes
    ds = read_table(write(df, tmp_path / f"t{suffix}"), classes, step_days=8)
    assert ds.bands == ("B02", "B03") and ds.steps.tolist() == [0, 8, 16, 24]
    np.testing.assert_allclose(ds.series[2, 1], 2 + 0.1 + np.arange(4) / 100, rtol=1e-6)
    assert ds.parcels["code"].tolist() == [1, 3, 2] and ds.parcels["id"].tolist() == ["s0", "s1", "s2"]
    assert "split" not in ds.parcels and ds.meta["source"]["layout"] == "wide"
    only = read_table(tmp_path / f"t{suffix}", classes, bands=["B03"])
    assert only.bands == ("B03",) and only.series.shape == (3, 1, 4)


def test_date_columns_are_days_from_the_first_january(classes, tmp_path):
    df = pd.DataFrame({"label": ["maize"], "NDVI_2006-12-30": [0.2], "NDVI_2007-01-02": [0.4]})
    ds = read_table(write(df, tmp_path / "d.csv"), classes)
    assert ds.steps.tolist() == [364, 367]  # days from 1 January 2006; the season crosses the year


def test_missing_values_filled_as_the_compositor_fills(classes, tmp_path):
    df = wide(n_steps=5)
    df["NDVI_01"] = df["NDVI_01"].astype(object)
    df.loc[0, ["NDVI_00", "NDVI_02", "NDVI_03"]] = np.nan  # first step: the next value; inner: linear in time
    df.loc[1, "NDVI_04"] = np.nan  # last step: the previous value
    ds = read_table(write(df, tmp_path / "m.csv"), classes, step_days=5)
    np.testing.assert_allclose(ds.series[0, 0], [0.01, 0.01, 0.02, 0.03, 0.04], atol=1e-6)
    np.testing.assert_allclose(ds.series[1, 0], [1.0, 1.01, 1.02, 1.03, 1.03], atol=1e-6)
    assert ds.meta["source"]["filled_values"] == 4 and np.isfinite(ds.series).all()


def test_long_table_pivots_and_fills_missing_dates(classes, tmp_path):
    rows = [("f2", "2020-05-01", 0.2, 0.5, "wheat"), ("f2", "2020-05-11", 0.4, 0.6, "wheat"),
            ("f1", "2020-05-01", 0.1, 0.7, "maize"), ("f1", "2020-05-06", 0.3, 0.8, "maize"),
            ("f1", "2020-05-11", 0.5, 0.9, "maize")]  # fmt: skip
    df = pd.DataFrame(rows, columns=["id", "date", "NDVI", "B08", "label"])
    ds = read_table(write(df, tmp_path / "long.parquet"), classes)
    assert ds.meta["source"]["layout"] == "long" and ds.bands == ("NDVI", "B08")
    assert ds.parcels["id"].tolist() == ["f2", "f1"] and ds.parcels["code"].tolist() == [2, 1]
    assert ds.steps.tolist() == [122, 127, 132]  # 2020 is a leap year: 1 May is day 122
    np.testing.assert_allclose(ds.series[0], [[0.2, 0.3, 0.4], [0.5, 0.55, 0.6]], atol=1e-6)  # 6 May filled
    np.testing.assert_allclose(ds.series[1, 1], [0.7, 0.8, 0.9], atol=1e-6)
    stamped = df.assign(date=pd.to_datetime(df["date"]))  # Parquet datetimes
    assert read_table(write(stamped, tmp_path / "dt.parquet"), classes).steps.tolist() == [122, 127, 132]
    steps = df.drop(columns="date").assign(step=[0, 2, 0, 1, 2])
    assert read_table(write(steps, tmp_path / "s.csv"), classes, step_days=5).steps.tolist() == [0, 5, 10]


def test_split_column_and_seeded_split_by_id(classes, tmp_path):
    df = wide(labels=["maize"] * 10 + ["wheat"] * 5 + ["water"])
    df["split"] = ["train"] * 8 + ["Validation"] * 8
    ds = read_table(write(df, tmp_path / "s.csv"), classes)
    assert ds.parcels["split"].tolist() == ["train"] * 8 + ["val"] * 8
    plain = read_table(write(df.drop(columns="split"), tmp_path / "p.csv"), classes)
    a, b = assign_split(plain, 0.2, seed=3), assign_split(plain, 0.2, seed=3)
    assert a.parcels["split"].tolist() == b.parcels["split"].tolist()
    val = a.parcels.groupby("code")["split"].apply(lambda s: int((s == "val").sum())).to_dict()
    assert val == {1: 2, 2: 1, 3: 0}  # per class round(0.2 × ids); a class of one id keeps it for training
    check_split_classes(a, classes)


def error(classes, tmp_path, df, name="bad.csv", **kw) -> str:
    with pytest.raises(DatasetError) as e:
        read_table(write(df, tmp_path / name), classes, **kw)
    return str(e.value)


def test_bad_tables_name_the_column_or_rows(classes, tmp_path):
    assert "no label column 'label'" in error(classes, tmp_path, wide().drop(columns="label"))
    assert "crop" in error(classes, tmp_path, wide(), label_column="crop")
    msg = error(classes, tmp_path, wide(), bands=["B08"])
    assert "band(s) B08 not in the table" in msg and "NDVI" in msg
    assert "missing series column(s) B03_03" in error(classes, tmp_path, wide(bands=("B02", "B03")).drop(
        columns="B03_03"))  # fmt: skip
    assert "column NDVI_5a" in error(classes, tmp_path, wide(NDVI_5a=1.0))
    bad = wide().astype({"NDVI_02": object})
    bad.loc[[0, 2], "NDVI_02"] = "n/a"
    assert "column NDVI_02 holds non-numeric values ('n/a' …) on lines 2, 4" in error(classes, tmp_path, bad)
    assert "rows 1, 3" in error(classes, tmp_path, bad.astype({"NDVI_02": str}), name="bad.parquet")
    msg = error(classes, tmp_path, wide(labels=["maize", "corn", "corn", "soy"]))
    assert "labels not in the taxonomy (3 classes): 'corn' (2 rows), 'soy' (1 rows)" in msg
    assert "column label is empty on lines 3" in error(classes, tmp_path, wide(labels=["maize", "", "wheat"]))
    gap = wide()
    gap.loc[1, [c for c in gap if c.startswith("NDVI")]] = np.nan
    assert "band NDVI has no value at any step for the sample(s) on lines 3" in error(classes, tmp_path, gap)
    assert "column split holds 'dev'" in error(classes, tmp_path, wide(split=["train", "dev", "test"]))
    assert "no series in the table" in error(classes, tmp_path, pd.DataFrame({"label": ["maize"], "x": [1]}))
    (tmp_path / "t.xlsx").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"a table is a \.csv or \.parquet file"):
        read_table(tmp_path / "t.xlsx", classes)


def test_bad_long_tables(classes, tmp_path):
    df = pd.DataFrame({"id": ["a", "a", "b"], "step": [0, 1, 0], "NDVI": [0.1, 0.2, 0.3],
                       "label": ["maize", "wheat", "water"]})  # fmt: skip
    assert "column label differs between the rows of one id on lines 2, 3" in error(classes, tmp_path, df)
    twice = df.assign(label="maize", step=0)
    assert "id and step repeat on lines 2, 3" in error(classes, tmp_path, twice)
    assert "needs an id column" in error(classes, tmp_path, df.drop(columns="id"))
    text = df.assign(label="maize", note=["x", "y", "z"])
    assert "column note holds non-numeric values" in error(classes, tmp_path, text)
    assert read_table(write(text, tmp_path / "n.csv"), classes, bands=["NDVI"]).bands == ("NDVI",)


def test_a_model_refuses_a_table_without_its_bands_and_steps(classes, tmp_path):
    path = write(wide(n_steps=3, bands=("NDVI", "B08")), tmp_path / "t.csv")
    assert read_table(path, classes, expect=(["NDVI"], [0, 5, 10])).bands == ("NDVI",)  # extra bands are fine
    with pytest.raises(DatasetError, match=r"needs band\(s\) B04 \(columns B04_00 … B04_02\)"):
        read_table(path, classes, expect=(["NDVI", "B04"], [0, 5, 10]))
    with pytest.raises(DatasetError, match=r"takes 4 steps .* the table has 3: missing NDVI_03"):
        read_table(path, classes, expect=(["NDVI"], [0, 5, 10, 15]))
    with pytest.raises(DatasetError, match=r"trained with --step-days 8 .*; pass --step-days 8"):
        read_table(path, classes, expect=(["NDVI"], [0, 8, 16]))


def test_an_empty_class_after_the_split_is_named(classes, tmp_path):
    df = wide(labels=["maize", "maize", "wheat", "water"], split=["train", "val", "val", "test"])
    ds = read_table(write(df, tmp_path / "s.csv"), classes)
    with pytest.raises(DatasetError, match="no training row after the split: 'wheat' \\(1 val rows\\); 'water'"):
        check_split_classes(ds, classes)


def test_cli_train_evaluate_predict(tmp_path):
    rng = np.random.default_rng(0)
    labels = ["maize"] * 20 + ["wheat"] * 20 + ["water"] * 20
    df = wide(n_steps=6, labels=labels)
    for t in range(6):  # each class its own curve, with noise
        df[f"NDVI_{t:02d}"] = [np.sin(t + CLASSES.index(x)) + rng.normal(0, 0.05) for x in labels]
    table, classes_csv = write(df, tmp_path / "t.csv"), tmp_path / "classes.csv"
    pd.DataFrame({"label": CLASSES, "cropped": [1, 1, 0]}).to_csv(classes_csv, index=False)
    runner, common = CliRunner(), ["--format", "table", "--taxonomy", str(classes_csv)]
    r = runner.invoke(cli, ["croptype", "train", "--data", str(table), *common, "--model", "forest", "--trees", "20",
                            "--out", str(tmp_path / "m")])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["croptype", "evaluate", "--model", str(tmp_path / "m"), "--data", str(table), *common])
    assert r.exit_code == 0, r.output
    assert "classes: OA 1.000" in r.output and "accuracy over the crop classes" in r.output
    out = tmp_path / "p.parquet"
    r = runner.invoke(cli, ["croptype", "predict", "--model", str(tmp_path / "m"), "--data", str(table), "--out",
                            str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    got = pd.read_parquet(out)
    assert got["predicted_class"].tolist() == labels and (got["predicted_probability"] > 0.5).all()
    assert list(got.columns[: len(df.columns)]) == list(df.columns)
    short = write(df.drop(columns="NDVI_05"), tmp_path / "short.csv")
    r = subprocess.run([sys.executable, "-m", "mapper.cli", "croptype", "predict", "--model", str(tmp_path / "m"),
                        "--data", str(short), "--out", str(out)], capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and "missing NDVI_05" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_trains_cropnet_on_a_long_table(tmp_path):
    rows = [(f"f{i}", t, float(np.cos(t / 2 + i % 3)), CLASSES[i % 3]) for i in range(30) for t in range(8)]
    table = write(pd.DataFrame(rows, columns=["id", "step", "NDVI", "label"]), tmp_path / "long.csv")
    classes_csv = write(pd.DataFrame({"label": CLASSES}), tmp_path / "classes.csv")
    r = CliRunner().invoke(cli, ["croptype", "train", "--data", str(table), "--format", "table", "--taxonomy",
                                 str(classes_csv), "--epochs", "1", "--width", "4",
                                 "--out", str(tmp_path / "c")])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["croptype", "predict", "--model", str(tmp_path / "c"), "--data", str(table), "--out",
                                 str(tmp_path / "p.csv")])  # fmt: skip
    assert r.exit_code == 0, r.output
    got = pd.read_csv(tmp_path / "p.csv")
    assert len(got) == 240 and got.groupby("id")["predicted_class"].nunique().max() == 1  # one per sample


@pytest.mark.skipif(not (UCR / "train.csv").is_file(), reason="shared real data not present")
def test_ucr_crop_reads_as_a_wide_table():
    taxonomy = load_taxonomy(UCR / "classes.csv")[0]
    ds = read_format(UCR / "validation.csv", "table", taxonomy, step_days=8)
    assert ds.series.shape == (1152, 1, 46) and ds.bands == ("NDVI",) and ds.steps[-1] == 360
    assert taxonomy.n_leaves == 24 and int(taxonomy.cropped.sum()) == 11
    assert ds.parcels["code"].nunique() == 24 and ds.meta["source"]["filled_values"] == 0


def test_benchmark_deduplicates_exact_rows(classes, tmp_path):
    from benchmarks.croptype_real import deduplicate

    train = read_table(write(wide(labels=["maize", "maize", "wheat"]).assign(NDVI_00=[0.5, 0.5, 0.5], NDVI_01=0.1,
                                  NDVI_02=0.1, NDVI_03=0.1), tmp_path / "a.csv"), classes)  # fmt: skip
    val = read_table(write(wide(labels=["maize", "water", "water"]).assign(NDVI_00=0.5, NDVI_01=0.1, NDVI_02=0.1,
                                NDVI_03=0.1), tmp_path / "b.csv"), classes)  # fmt: skip
    tr, va, counts = deduplicate(train, val)
    assert (len(tr), len(va)) == (2, 1)  # maize twice in train; water twice in val; maize of val is in train
    assert counts["train_repeats_removed"] == 1 and counts["validation_repeats_removed"] == 1
    assert counts["validation_in_train_removed"] == 1


@pytest.mark.skipif(not (UCR / "train.csv").is_file(), reason="shared real data not present")
def test_real_benchmark_runs_quick(tmp_path, capsys):
    from benchmarks import croptype_real

    out = tmp_path / "r.json"
    assert croptype_real.main(["--quick", "--models", "random forest;MiniRocket (aeon)", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| random forest | 0." in printed and "MiniRocket (aeon)" in printed
    assert croptype_real.main(["--from-json", str(out)]) == 0 and "| random forest |" in capsys.readouterr().out
