"""The registry of crop-type model kinds (mapper.croptype.kinds): each kind fits, predicts the four levels,
saves and loads; `load_model` finds the kind a directory holds; the forest baseline maps a run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from mapper.croptype.baseline import ForestBaseline
from mapper.croptype.checkpoint import load_croptype, save_croptype_checkpoint
from mapper.croptype.kinds import CropTypeModel, get_kind, kind_names, load_model
from mapper.croptype.predict import predict_croptype
from mapper.croptype.series import BANDS
from mapper.croptype.train import CropTrainConfig, train_cropnet
from mapper.models.checkpoint import CheckpointError
from tests.test_croptype_models import TAX, separable_set


@pytest.fixture(scope="module")
def data():
    x, leaf = separable_set(160, seed=2)
    return {"x_train": x[:120], "leaf_train": leaf[:120], "x_val": x[120:], "leaf_val": leaf[120:]}


def test_every_kind_module_registers_itself_and_the_cli_offers_them():
    assert kind_names() == ("cropnet", "forest")
    assert all(issubclass(get_kind(k), CropTypeModel) for k in kind_names())
    with pytest.raises(ValueError, match="unknown crop-type model kind 'svm'; known: cropnet, forest"):
        get_kind("svm")
    from mapper.cli import cli

    result = CliRunner().invoke(cli, ["croptype", "train", "--help"])
    assert "[cropnet|forest]" in result.output


def test_the_forest_kind_predicts_levels_and_round_trips(data, tmp_path):
    forest = ForestBaseline.fit(data["x_train"], data["leaf_train"], TAX, n_trees=10, max_depth=4, seed=0)
    model = get_kind("forest")(forest)
    pred = model.predict(data["x_val"], batch_size=7)  # batches change nothing: rows are independent
    direct = forest.predict(data["x_val"])
    for key in ("leaf", "code", "levels", "leaf_prob", "probs"):
        np.testing.assert_array_equal(pred[key], direct[key])
    assert [p.shape for p in pred["level_probs"]] == [(40, s) for s in TAX.sizes]
    for level, probs in enumerate(pred["level_probs"]):  # a class holds its leaves' probability
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-6)
        on_path = probs[np.arange(40), pred["levels"][:, level]]
        assert (on_path >= pred["leaf_prob"] - 1e-12).all()
    model.save(tmp_path / "rf", {"note": "test"})
    again = load_model(tmp_path / "rf", taxonomy=TAX, bands=BANDS)
    assert again.kind == "forest" and again.forest.meta["training"]["note"] == "test"
    np.testing.assert_array_equal(again.predict(data["x_val"])["probs"], pred["probs"])
    with pytest.raises(ValueError, match="takes no prior"):
        again.predict(data["x_val"], prior=np.zeros(40, np.int64))


def test_the_cropnet_kind_predicts_as_its_checkpoint_does(data, tmp_path):
    cfg = CropTrainConfig(width=8, lr=3e-3, epochs=2, batch_size=32, augment=False, seed=0)
    net, history = train_cropnet(data["x_train"], data["leaf_train"], data["x_val"], data["leaf_val"], TAX, cfg,
                                 log=lambda _: None)  # fmt: skip
    save_croptype_checkpoint(tmp_path / "cn", net, TAX, history["normalisation"], cfg)
    model = load_model(tmp_path / "cn", taxonomy=TAX)
    assert model.kind == "cropnet" and model.bands == list(BANDS) and not model.uses_prior
    ours = model.predict(data["x_val"], batch_size=16)
    theirs = predict_croptype(load_croptype(tmp_path / "cn"), data["x_val"], batch_size=16)  # the same batches
    for key in ("leaf", "code", "levels", "leaf_prob", "raw_levels"):
        np.testing.assert_array_equal(ours[key], theirs[key])


def test_a_directory_of_no_kind_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"incomplete: missing checkpoint\.json"):
        load_model(tmp_path / "empty")


@pytest.mark.slow
def test_the_forest_maps_a_run(world_run, tmp_path):
    """A tiny forest trained on the world's parcels maps the shared one-block run (per field: fast)."""
    import shutil

    from conftest import WORLD_RUN_BLOCK, run_croptype_map

    from mapper.croptype.dataset import simulate_dataset
    from mapper.croptype.fit import train_model
    from mapper.world.world import get_world

    ds = simulate_dataset(get_world(0), "Guangdong", 4, window_km=1.0, seed=1)  # two windows with fields
    train_model(ds, tmp_path / "rf", "forest", n_trees=10, log=lambda _: None)
    trained = set(json.loads((tmp_path / "rf" / "meta.json").read_text())["trained_leaves"])
    run = tmp_path / "run"
    shutil.copytree(world_run, run)
    res = run_croptype_map(run, "--model", str(tmp_path / "rf"), "--unit", "parcel")
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((run / "croptype" / "summary.json").read_text())
    assert summary["classified"] > 0
    with rasterio.open(run / "croptype" / "blocks" / f"{WORLD_RUN_BLOCK}.tif") as src:
        leaf = src.read(1)
    mapped = {TAX.leaf_index(int(c)) for c in np.unique(leaf[leaf > 0])}
    assert mapped and mapped <= trained  # the forest's own leaves, nothing it never saw
