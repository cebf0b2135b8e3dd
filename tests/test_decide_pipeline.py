"""The decision models together: out-of-fold semantic features, training both, and the integrated map's IoU."""


import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mapper.cli import cli
from mapper.decide.models import CORRECTNESS, INTEGRATION
from mapper.decide.pipeline import (
    CORRECTNESS_FEATURES,
    INTEGRATION_MODEL_FEATURES,
    block_decisions,
    block_folds,
    integrated_iou,
    out_of_fold_semantics,
    train_decision_models,
    with_semantics,
    write_final_masks,
)
from mapper.decide.table import INTEGRATION_FEATURES, write_table
from tests.test_decide_table import BLOCK, SECOND, roots, tables  # noqa: F401  (fixtures)

FAST = {"num_boost_round": 60}  # enough trees for these simple rules, and a quick test


def synthetic_tables(n_blocks=120, seed=0):
    """Tables whose labels follow two features: correctness from area_fraction and solidity_mean, the
    integration choice from the two sources' area fractions."""
    rng = np.random.default_rng(seed)
    blocks = [f"{5000 + i}_2400" for i in range(n_blocks)]
    rows = []
    for b in blocks:
        for s in ("a", "b"):
            f = {k: rng.normal() for k in CORRECTNESS_FEATURES}
            af, sol = rng.random(), rng.random()
            f.update(area_fraction=af, solidity_mean=sol)
            label = ("TN" if af < 0.2 else "TP" if sol > 0.5 else "FP" if af > 0.6
                     else "Noise" if sol > 0.2 else "Artifact")  # fmt: skip
            rows.append({"block_id": b, "source": s, **f, "label": label})
    correctness = pd.DataFrame(rows)
    irows = []
    for b in blocks:
        f = {k: rng.normal() for k in INTEGRATION_FEATURES}
        a, bb = correctness[(correctness.block_id == b)].area_fraction
        f.update(a_area_fraction=a, b_area_fraction=bb)
        label = "Neither" if max(a, bb) < 0.2 else "Only A" if a - bb > 0.3 else "Only B" if bb - a > 0.3 else "Merge"
        irows.append({"block_id": b, **f, "label": label})
    return correctness, pd.DataFrame(irows)


def test_folds_keep_blocks_together():
    blocks = ["x", "x", "y", "y", "z", "z", "w", "w"]
    folds = block_folds(blocks, 2, 0)
    assert all(folds[i] == folds[i + 1] for i in range(0, 8, 2)) and set(folds) == {0, 1}


def test_semantics_are_out_of_fold_and_join_by_block_and_source():
    correctness, integration = synthetic_tables(60)
    oof = out_of_fold_semantics(correctness, k=3, params=FAST)
    assert set(oof) <= set(CORRECTNESS) and (oof == correctness["label"]).mean() > 0.7
    joined = with_semantics(integration, correctness, correctness["label"])
    first = correctness.iloc[0]
    assert joined.loc[joined.block_id == first.block_id, "a_semantic"].item() == CORRECTNESS.index(first.label)


def test_train_and_judge_on_other_tables(tmp_path):
    train_c, train_i = synthetic_tables(120, seed=0)
    metrics = train_decision_models(train_c, train_i, tmp_path / "models", params=FAST)
    assert metrics["correctness"]["test"]["accuracy"] > 0.8
    assert metrics["integration"]["features"] == list(INTEGRATION_MODEL_FEATURES)
    for kind in ("correctness", "integration"):
        assert (tmp_path / "models" / kind / "importance.png").stat().st_size > 10_000
    test_c, _ = synthetic_tables(60, seed=1)
    models_dir = tmp_path / "models"
    from mapper.decide.models import evaluate, load

    assert evaluate(load(models_dir / "correctness"), test_c)["accuracy"] > 0.8
    assert set(load(models_dir / "integration").classes) == set(INTEGRATION)


def test_integrated_iou_scores_the_chosen_final_masks(roots):  # noqa: F811
    labels, preds = roots
    # block 1: A exact, B empty; block 2: A misses its gap's field, B exact (see tests/test_decide_table.py)
    chosen = integrated_iou({BLOCK.id: "Only A", SECOND.id: "Only B"}, labels, preds)
    assert chosen["integrated"] == pytest.approx(1.0) and chosen["best choice"] == pytest.approx(1.0)
    assert chosen["Only A"] < 1.0 and chosen["Only B"] < 1.0
    worst = integrated_iou({BLOCK.id: "Neither", SECOND.id: "Neither"}, labels, preds)
    assert worst["integrated"] == 0.0


def test_decide_commands(tmp_path):
    train_c, train_i = synthetic_tables(80)
    folder = tmp_path / "tables"
    train_c.attrs, train_i.attrs = {}, {}
    runner = CliRunner()
    import geopandas as gpd
    from shapely.geometry import box

    for name, df in (("correctness", train_c), ("integration", train_i)):
        gdf = gpd.GeoDataFrame(df, geometry=[box(0, 0, 1, 1)] * len(df), crs="EPSG:4326")
        write_table(gdf, folder / f"{name}.parquet")
    r = runner.invoke(cli, ["decide", "train", "--tables", str(folder), "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    assert "correctness" in r.output and (tmp_path / "m" / "integration" / "confusion.png").exists()
    r = runner.invoke(cli, ["decide", "train", "--tables", str(tmp_path), "--out", str(tmp_path / "m2")])
    assert r.exit_code == 2 and "correctness.parquet" in r.output


def test_block_decisions_and_final_masks(tmp_path, roots, tables):  # noqa: F811
    import rasterio

    from mapper.decide.truth import final_mask
    from mapper.seg.predict import read_prediction

    _, preds = roots
    correctness, integration, _ = tables
    train_c, train_i = synthetic_tables(60)
    train_decision_models(train_c, train_i, tmp_path / "m", params=FAST)
    decisions = block_decisions(tmp_path / "m", correctness, integration)
    assert list(decisions["block_id"]) == [BLOCK.id, SECOND.id]
    p = decisions[[f"p_{c.replace(' ', '_')}" for c in INTEGRATION]].to_numpy()
    assert np.allclose(p.sum(axis=1), 1) and set(decisions["decision"]) <= set(INTEGRATION)
    assert np.allclose(decisions[[f"a_p_{c}" for c in CORRECTNESS]].to_numpy().sum(axis=1), 1)
    assert set(decisions["a_pred_semantic"]) <= set(CORRECTNESS)
    paths = write_final_masks(decisions, preds, tmp_path / "masks")
    for path, block, choice in zip(paths, (BLOCK, SECOND), decisions["decision"], strict=True):
        a, b = (read_prediction(preds / block.id / f"image_{s}.tif")[0] for s in "ab")
        with rasterio.open(path) as src:
            assert src.transform == block.window().transform and src.tags()["MAPPER_DECISION"] == choice
            assert (src.read(1) == final_mask(choice, a, b)).all()


def test_table_evaluate_and_apply_commands(tmp_path, roots):  # noqa: F811
    labels, preds = roots
    runner = CliRunner()
    r = runner.invoke(cli, ["decide", "table", "--labels", str(labels), "--predictions", str(preds),
                            "--dem", "none", "--out", str(tmp_path / "t"), "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "correctness: 4 rows" in r.output and "integration: 2 rows" in r.output
    train_c, train_i = synthetic_tables(60)
    train_decision_models(train_c, train_i, tmp_path / "m", params=FAST)
    r = runner.invoke(cli, ["decide", "evaluate", "--models", str(tmp_path / "m"), "--tables", str(tmp_path / "t"),
                            "--labels", str(labels), "--predictions", str(preds), "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["blocks"] == 2 and set(out["pixel_iou"]) == {"Only A", "Only B", "integrated", "best choice"}
    assert out["pixel_iou"]["best choice"] == pytest.approx(1.0)
    r = runner.invoke(cli, ["decide", "apply", "--models", str(tmp_path / "m"), "--tables", str(tmp_path / "t"),
                            "--predictions", str(preds), "--out", str(tmp_path / "out")])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "blocks.parquet").exists() and len(list((tmp_path / "out" / "masks").glob("*.tif"))) == 2
