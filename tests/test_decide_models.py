"""The block-level XGBoost models (mapper.decide.models) on a synthetic table whose class is a known function of
two of eight features; scikit-learn cross-checks run only where it happens to be installed."""

from __future__ import annotations

import importlib.util
import json
import struct

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("xgboost")

from mapper.decide import models as dm
from mapper.decide import plots as decide_plots
from mapper.models.checkpoint import CheckpointError

HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None
FEATURES = ["area_frac", "solidity", "noise_0", "noise_1", "noise_2", "noise_3", "slope", "elevation"]
FAST = {"num_boost_round": 60}


def correctness_rule(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The class as a function of area_frac (a) and solidity (b) only."""
    return np.select(
        [a < 0.2, b > 0.55, b > 0.35, b > 0.18],
        ["TN", "TP", "FP", "Noise"],
        default="Artifact",
    ).astype(object)


def synthetic_table(n_blocks: int = 500, seed: int = 1) -> pd.DataFrame:
    """Two rows (sources A and B) per block; noise columns carry NaN, the terrain columns NaN for the blocks a
    DEM would not cover (both sources of a block share its terrain)."""
    rng = np.random.default_rng(seed)
    n = 2 * n_blocks
    a, b = rng.random(n), rng.random(n)
    df = pd.DataFrame({"block_id": np.repeat(np.arange(n_blocks) + 1000, 2), "source": np.tile(["A", "B"], n_blocks)})
    df["area_frac"], df["solidity"] = a, b
    for i in range(4):
        col = rng.normal(size=n)
        col[rng.random(n) < 0.15] = np.nan
        df[f"noise_{i}"] = col
    no_dem = np.repeat(rng.random(n_blocks) < 0.1, 2)
    df["slope"] = np.where(no_dem, np.nan, np.repeat(rng.random(n_blocks) * 30, 2))
    df["elevation"] = np.where(no_dem, np.nan, np.repeat(rng.random(n_blocks) * 3000, 2))
    df["label"] = correctness_rule(a, b)
    return df


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return synthetic_table()


@pytest.fixture(scope="module")
def report(table, tmp_path_factory):
    out = tmp_path_factory.mktemp("decide") / "correctness"
    return out, dm.train_and_report(table, "correctness", FEATURES, out, seed=0)


@pytest.fixture(scope="module")
def model(table) -> dm.DecisionModel:
    return dm.DecisionModel.fit(table, "correctness", None, FEATURES, params=FAST, seed=0)


def test_train_and_report_accuracy_importance_and_files(report, table):
    out, metrics = report
    test = metrics["test"]
    assert test["accuracy"] > 0.9
    assert metrics["split"]["test_blocks"] == 100 and metrics["split"]["train_blocks"] == 400
    top = [r["feature"] for r in metrics["importance"]["features"][:2]]
    assert set(top) == {"area_frac", "solidity"}
    rest = metrics["importance"]["features"][2:]
    assert all(r["mean"] < 0.02 for r in rest)
    assert metrics["importance"]["features"][1]["mean"] > 0.1
    sc = test["semantic_correctness"]
    assert set(sc["by_source"]) == {"A", "B"}
    assert sc["true_tp_tn_share"] == pytest.approx(
        test["per_class"]["TP"]["true_share"] + test["per_class"]["TN"]["true_share"]
    )
    assert sc["predicted_tp_tn_share"] == pytest.approx(
        test["per_class"]["TP"]["predicted_share"] + test["per_class"]["TN"]["predicted_share"]
    )
    assert json.loads((out / "metrics.json").read_text()) == metrics
    meta = json.loads((out / "model.json").read_text())
    assert meta["features"] == FEATURES and meta["classes"] == list(dm.CORRECTNESS)
    assert meta["metrics"]["test"]["accuracy"] == test["accuracy"]
    assert meta["params"]["tree_method"] == "hist" and meta["params"]["seed"] == 0
    assert set(meta["files"]) == {"metrics.json", "confusion.png", "importance.png"}
    for name, min_w, min_h in (("confusion.png", 600, 600), ("importance.png", 900, 500)):
        data = (out / name).read_bytes()
        assert len(data) > 15_000
        w, h = png_size(data)
        assert w >= min_w and h >= min_h
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    loaded = dm.load(out, kind="correctness")
    assert (loaded.predict(table) == table.label.to_numpy()).mean() > 0.9


def test_fit_is_deterministic(table, model):
    again = dm.DecisionModel.fit(table, "correctness", None, FEATURES, params=FAST, seed=0)
    np.testing.assert_array_equal(again.predict_proba(table), model.predict_proba(table))


def test_save_load_roundtrip_gives_identical_probabilities(table, model, tmp_path):
    dm.save(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "model.ubj"]
    loaded = dm.load(tmp_path / "m", kind="correctness")
    assert loaded.features == FEATURES and loaded.classes == dm.CORRECTNESS
    np.testing.assert_array_equal(loaded.predict_proba(table), model.predict_proba(table))
    assert list(loaded.predict(table)) == list(model.predict(table))
    dm.save(loaded, tmp_path / "m")  # replacing an existing model directory
    np.testing.assert_array_equal(dm.load(tmp_path / "m").predict_proba(table), model.predict_proba(table))
    with pytest.raises(CheckpointError, match="not 'integration'"):
        dm.load(tmp_path / "m", kind="integration")


def test_corruption_and_missing_files_are_detected(model, tmp_path):
    d = dm.save(model, tmp_path / "m")
    raw = bytearray((d / "model.ubj").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (d / "model.ubj").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt"):
        dm.load(d)
    (d / "model.ubj").unlink()
    with pytest.raises(CheckpointError, match=r"missing model\.ubj"):
        dm.load(d)
    with pytest.raises(CheckpointError, match="not found"):
        dm.load(tmp_path / "nothing")
    dm.save(model, tmp_path / "n")
    (tmp_path / "n" / "model.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a mapper"):  # CheckpointError is a ValueError
        dm.load(tmp_path / "n")


def test_column_mismatch_names_missing_columns_and_the_fix(table, model):
    renamed = table.rename(columns={"solidity": "solidity_mean"}).drop(columns=["slope"])
    with pytest.raises(dm.DecisionTableError) as e:
        model.predict_proba(renamed)
    msg = str(e.value)
    assert "'solidity'" in msg and "'slope'" in msg and "solidity_mean" in msg and "retrain" in msg
    # Extra columns are ignored and the order comes from the model.
    shuffled = table[list(reversed(table.columns))].assign(extra=1.0)
    np.testing.assert_array_equal(model.predict_proba(shuffled), model.predict_proba(table))
    with pytest.raises(dm.DecisionTableError, match="inf"):
        model.predict_proba(table.assign(noise_0=np.inf))
    with pytest.raises(dm.DecisionTableError, match="not numeric"):
        model.predict_proba(table.assign(noise_0="x"))


def test_nan_features_are_left_to_xgboost(table, model):
    p = model.predict_proba(table.assign(slope=np.nan, elevation=np.nan))
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


def test_unknown_labels_are_refused(table):
    bad = table.copy()
    bad.loc[bad.index[:3], "label"] = "Maybe"
    bad.loc[bad.index[3], "label"] = None
    with pytest.raises(ValueError, match=r"'<missing>', 'Maybe'.*allowed.*'Artifact'"):
        dm.DecisionModel.fit(bad, "correctness", None, FEATURES, params=FAST)
    with pytest.raises(ValueError, match="Only A"):
        # correctness labels in an integration fit
        dm.DecisionModel.fit(table, "integration", None, FEATURES, params=FAST)
    with pytest.raises(dm.DecisionTableError, match="at least two"):
        dm.DecisionModel.fit(table.assign(label="TP"), "correctness", None, FEATURES, params=FAST)


def test_absent_class_gets_zero_probability(table, tmp_path):
    per_block = table[table.source == "A"].copy()
    per_block["label"] = np.select(
        [per_block.area_frac < 0.3, per_block.solidity > 0.5], ["Neither", "Only A"], default="Merge"
    )
    m = dm.DecisionModel.fit(per_block, "integration", None, FEATURES, params=FAST)
    assert m.trained_classes == ("Neither", "Only A", "Merge") and m.meta["training"]["absent_classes"] == ["Only B"]
    p = m.predict_proba(per_block)
    assert p.shape == (len(per_block), 4)
    assert (p[:, dm.INTEGRATION.index("Only B")] == 0).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert "Only B" not in set(m.predict(per_block))
    metrics = dm.evaluate(m, per_block)
    assert metrics["per_class"]["Only B"]["n"] == 0 and metrics["accuracy"] > 0.95
    assert "semantic_correctness" not in metrics
    loaded = dm.load(dm.save(m, tmp_path / "int"))
    np.testing.assert_array_equal(loaded.predict_proba(per_block), p)


def test_split_keeps_blocks_together_and_is_stratified(table):
    train, test = dm.stratified_split(table.label, table.block_id, 0.2, seed=3)
    assert len(train) + len(test) == len(table) and not set(train) & set(test)
    assert not set(table.block_id.iloc[train]) & set(table.block_id.iloc[test])
    n_blocks = table.block_id.nunique()
    assert table.block_id.iloc[test].nunique() == round(0.2 * n_blocks)
    for cls in dm.CORRECTNESS:
        share_all = (table.label == cls).mean()
        share_test = (table.label.iloc[test] == cls).mean()
        assert share_test == pytest.approx(share_all, abs=0.04), cls
    again = dm.stratified_split(table.label, table.block_id, 0.2, seed=3)
    np.testing.assert_array_equal(again[1], test)
    assert not np.array_equal(dm.stratified_split(table.label, table.block_id, 0.2, seed=4)[1], test)


def test_split_stratifies_on_block_labels_exactly():
    # One row per block: each class's blocks are split 80/20 exactly; a singleton class stays in training.
    labels = ["TP"] * 50 + ["TN"] * 30 + ["FP"] * 10 + ["Noise"] * 5 + ["Artifact"]
    blocks = np.arange(len(labels))
    train, test = dm.stratified_split(labels, blocks, 0.2, seed=0)
    got = pd.Series(np.asarray(labels, dtype=object)[test]).value_counts().to_dict()
    assert got == {"TP": 10, "TN": 6, "FP": 2, "Noise": 1}
    assert 95 in train


def test_metrics_by_hand():
    classes = ("A", "B", "C")
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 1, 1])
    m = dm.classification_metrics(y_true, y_pred, classes)
    assert m["confusion"] == [[2, 1, 0], [0, 2, 0], [0, 1, 0]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["A"] == pytest.approx(
        {
            "precision": 1.0,
            "recall": 2 / 3,
            "f1": 0.8,
            "n": 3,
            "n_predicted": 2,
            "true_share": 0.5,
            "predicted_share": 2 / 6,
        }
    )
    assert m["per_class"]["B"]["precision"] == pytest.approx(0.5) and m["per_class"]["C"]["f1"] == 0.0
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 0.0) / 3)


def test_semantic_correctness_shares():
    classes = dm.CORRECTNESS
    y_true = np.array([0, 1, 2, 3, 0, 4])  # TP TN FP Noise TP Artifact
    y_pred = np.array([0, 1, 0, 3, 2, 4])
    sc = dm.classification_metrics(y_true, y_pred, classes, "correctness", ["A", "A", "A", "B", "B", "B"])[
        "semantic_correctness"
    ]
    assert sc["true_tp_tn_share"] == pytest.approx(3 / 6) and sc["predicted_tp_tn_share"] == pytest.approx(3 / 6)
    assert sc["binary_accuracy"] == pytest.approx(4 / 6)
    assert sc["by_source"]["A"]["true_tp_tn_share"] == pytest.approx(2 / 3)
    assert sc["by_source"]["B"]["predicted_tp_tn_share"] == 0.0


def test_plots_are_written_atomically(tmp_path):
    metrics = dm.classification_metrics(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), ("Neither", "Only A", "Merge"))
    imp = {
        "metric": "accuracy",
        "baseline": 0.9,
        "n": 4,
        "n_repeats": 5,
        "features": [{"feature": f"f{i}", "mean": 0.1 * i - 0.05, "std": 0.02} for i in range(30)],
    }
    a = decide_plots.plot_confusion(metrics, tmp_path / "c.png", "Integration")
    b = decide_plots.plot_importance(imp, tmp_path / "i.png", "Integration")
    assert png_size(a.read_bytes())[0] >= 500 and png_size(b.read_bytes())[1] >= 1500  # 30 bars get room
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "i.png"]


@pytest.mark.skipif(not HAS_SKLEARN, reason="scikit-learn not installed (not a dependency)")
def test_against_scikit_learn():
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
    from sklearn.model_selection import StratifiedShuffleSplit

    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    ours = dm.classification_metrics(y_true, y_pred, dm.CORRECTNESS)
    np.testing.assert_array_equal(ours["confusion"], confusion_matrix(y_true, y_pred, labels=range(5)))
    p, r, f, n = precision_recall_fscore_support(y_true, y_pred, labels=range(5), zero_division=0)
    for i, c in enumerate(dm.CORRECTNESS):
        got = ours["per_class"][c]
        assert (got["precision"], got["recall"], got["f1"], got["n"]) == pytest.approx((p[i], r[i], f[i], n[i]))

    # Split: per-class test counts within one block of scikit-learn's stratified split (one row per block).
    labels = np.asarray(["TP"] * 120 + ["TN"] * 70 + ["FP"] * 33 + ["Noise"] * 17 + ["Artifact"] * 9, dtype=object)
    _, ours_test = dm.stratified_split(labels, np.arange(len(labels)), 0.2, seed=0)
    _, sk_test = next(StratifiedShuffleSplit(1, test_size=0.2, random_state=0).split(np.zeros(len(labels)), labels))
    for c in dm.CORRECTNESS:
        assert abs((labels[ours_test] == c).sum() - (labels[sk_test] == c).sum()) <= 1, c
