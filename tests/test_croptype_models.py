"""Crop-type models: exact augmentations, consistent decoding, CropNet's shapes, training on a separable set,
checkpoints and their named errors, the random-forest baseline, the metrics."""

import json

import numpy as np
import pytest
import torch

from mapper.croptype.augment import (
    SeriesAugment,
    augment_batch,
    draw_parameters,
    knot_positions,
    magnitude_warp,
    natural_spline,
    time_scale,
    time_shift,
    warp_curve,
)
from mapper.croptype.baseline import ForestBaseline, load_forest
from mapper.croptype.decode import decode, leaf_scores, raw_consistency, valid_paths
from mapper.croptype.metrics import confusion_matrix, confusion_png, croptype_metrics, level_metrics, macro_f1
from mapper.croptype.model import build_model, default_arch, prior_one_hot
from mapper.croptype.series import BANDS, STEP_DAYS_OF_YEAR
from mapper.croptype.taxonomy import from_description, packaged_taxonomy
from mapper.croptype.train import (
    CropTrainConfig,
    class_weights,
    load_croptype,
    predict_croptype,
    save_croptype_checkpoint,
    train_cropnet,
)
from mapper.models.checkpoint import CheckpointError

torch.set_num_threads(1)
TAX = packaged_taxonomy()
LEAVES = (0, 10, 20)  # three leaves on different branches of the taxonomy


def separable_set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Series whose NDVI-like bump (red edge / NIR up, red down) peaks at step 10, 21 or 32 with widths 3, 5
    and 8 steps, one pattern per leaf, over a flat soil spectrum with noise."""
    rng = np.random.default_rng(seed)
    k = rng.integers(0, 3, n)
    t = np.arange(len(STEP_DAYS_OF_YEAR))
    peak, width = np.array([10.0, 21.0, 32.0])[k], np.array([3.0, 5.0, 8.0])[k]
    bump = np.exp(-0.5 * ((t[None, :] - peak[:, None]) / width[:, None]) ** 2)
    x = np.broadcast_to(np.linspace(0.03, 0.3, len(BANDS))[None, :, None], (n, len(BANDS), len(t))).copy()
    x[:, 5:8] += 0.3 * bump[:, None, :]
    x[:, 2] -= 0.02 * bump
    x += rng.normal(0.0, 0.01, x.shape)
    return x.astype(np.float32), np.asarray(LEAVES)[k]


@pytest.fixture(scope="module")
def data():
    x, leaf = separable_set(300, seed=1)
    return {"x_train": x[:240], "leaf_train": leaf[:240], "x_val": x[240:], "leaf_val": leaf[240:]}


FAST = CropTrainConfig(width=16, lr=3e-3, epochs=12, batch_size=16, patience=4, augment=True, shift_days=10.0, seed=0)


@pytest.fixture(scope="module")
def trained(data):
    return train_cropnet(
        data["x_train"], data["leaf_train"], data["x_val"], data["leaf_val"], TAX, FAST, log=lambda _: None
    )


# ---------------------------------------------------------------------------------------------- augment
@pytest.fixture
def batch():
    return np.random.default_rng(0).random((4, 10, 43)).astype(np.float32)


def test_shift_of_one_step_is_a_roll_with_the_edge_repeated(batch):
    later = time_shift(batch, 5.0)
    assert np.array_equal(later[..., 1:], batch[..., :-1]) and np.array_equal(later[..., 0], batch[..., 0])
    earlier = time_shift(batch, -5.0)
    assert np.array_equal(earlier[..., :-1], batch[..., 1:]) and np.array_equal(earlier[..., -1], batch[..., -1])


def test_shift_interpolates_linearly_and_clamps(batch):
    s = np.array([2.5, -13.0, 60.0, -300.0])
    out = time_shift(batch, s)
    d = STEP_DAYS_OF_YEAR
    for i in range(len(batch)):
        for b in range(batch.shape[1]):
            np.testing.assert_allclose(out[i, b], np.interp(d - s[i], d, batch[i, b]), rtol=0, atol=1e-6)
    assert np.all(out[3] == batch[3, :, -1:])  # 300 days earlier: every step reads past the end


def test_identities(batch):
    assert np.array_equal(time_shift(batch, 0.0), batch)
    assert np.array_equal(time_scale(batch, 1.0), batch)
    assert np.array_equal(magnitude_warp(batch, np.ones(5)), batch)
    off = SeriesAugment(shift_days=0.0, scale=0.0, warp_sigma=0.0)
    assert np.array_equal(augment_batch(batch, np.random.default_rng(0), off), batch)


def test_time_scale_stretches_about_the_centre():
    days = STEP_DAYS_OF_YEAR.astype(np.float64)
    ramp = np.broadcast_to(days, (1, 1, len(days))).astype(np.float32)  # x(t) = t reads back the query day
    c = 0.5 * (days[0] + days[-1])
    out = time_scale(ramp, 2.0)[0, 0]
    np.testing.assert_allclose(out, c + (days - c) / 2.0, atol=1e-4)  # slower season: less change per step
    out = time_scale(ramp, 0.5)[0, 0]
    np.testing.assert_allclose(out, np.clip(c + (days - c) * 2.0, days[0], days[-1]), atol=1e-4)


def test_warp_spline_hits_its_knots_and_is_natural():
    knots = np.array([[1.1, 0.9, 1.05, 0.95, 1.2], [1.0, 1.0, 1.0, 1.0, 1.0]])
    where = knot_positions(5, 43)
    assert np.array_equal(where, [0.0, 10.5, 21.0, 31.5, 42.0])
    np.testing.assert_allclose(warp_curve(knots, 43, at=where), knots, rtol=0, atol=1e-12)
    curve = warp_curve(knots, 43)
    assert curve.shape == (2, 43) and np.array_equal(curve[1], np.ones(43))
    scipy_interpolate = pytest.importorskip("scipy.interpolate")  # a dev dependency: the reference only
    ref = scipy_interpolate.CubicSpline(where, knots[0], bc_type="natural")(np.arange(43))
    np.testing.assert_allclose(curve[0], ref, atol=1e-12)
    # All bands of a sample share the curve.
    x = np.full((2, 3, 43), 2.0, np.float32)
    np.testing.assert_allclose(magnitude_warp(x, knots), 2.0 * np.repeat(curve[:, None, :], 3, 1), rtol=1e-6)
    with pytest.raises(ValueError, match="increasing"):
        natural_spline(np.array([0.0, 0.0, 1.0]), np.ones(3), np.arange(2))


def test_random_draws_stay_in_bounds_and_repeat_for_a_seed(batch):
    cfg = SeriesAugment(shift_days=50.0, scale=0.2, warp_sigma=0.1)
    p = draw_parameters(20000, np.random.default_rng(3), cfg)
    assert np.abs(p["shift_days"]).max() <= 50.0 and p["shift_days"].std() > 25  # uniform over ±50
    assert p["factor"].min() >= 0.8 and p["factor"].max() <= 1.2
    assert p["knots"].shape == (20000, 5)
    assert abs(p["knots"].mean() - 1) < 0.005 and abs(p["knots"].std() - 0.1) < 0.005
    a = augment_batch(batch, np.random.default_rng(7), cfg)
    b = augment_batch(batch, np.random.default_rng(7), cfg)
    assert np.array_equal(a, b) and a.dtype == np.float32 and a.shape == batch.shape
    assert not np.array_equal(a, augment_batch(batch, np.random.default_rng(8), cfg))
    # A sample's magnitude never leaves its range by more than the warp allows (edge clamping adds nothing).
    assert a.max() <= batch.max() * 1.6 and a.min() >= 0


# ---------------------------------------------------------------------------------------------- decode
# Two levels: leaf 0 = A/a, leaf 1 = A/b, leaf 2 = B/c.
PATHS2 = np.array([[0, 0], [0, 1], [1, 2]])


def test_decoding_picks_the_best_valid_path_where_argmaxes_disagree():
    p1 = np.array([[0.45, 0.55]])
    p2 = np.array([[0.5, 0.1, 0.4]])
    raw = np.array([[p1.argmax(), p2.argmax()]])
    assert raw.tolist() == [[1, 0]] and not valid_paths(raw, PATHS2)[0]  # B/a does not exist
    # By hand: A/a 0.45·0.5 = 0.225, A/b 0.45·0.1 = 0.045, B/c 0.55·0.4 = 0.22 → A/a, 0.225 / 0.49.
    out = decode([np.log(p1), np.log(p2)], PATHS2)
    assert out.leaf.tolist() == [0] and out.levels.tolist() == [[0, 0]]
    np.testing.assert_allclose(out.leaf_prob, [0.225 / 0.49])
    # Logits give the same answer (each level is log-softmaxed), and so do torch tensors.
    same = decode([torch.tensor(np.log(p1) + 3.0), torch.tensor(np.log(p2) - 1.0)], PATHS2)
    assert same.leaf.tolist() == [0]
    np.testing.assert_allclose(same.leaf_prob, out.leaf_prob)


def test_decoded_rows_are_taxonomy_paths_and_maximise_the_score():
    rng = np.random.default_rng(0)
    logits = [rng.normal(0, 3, (500, n)) for n in TAX.sizes]
    out = decode(logits, TAX.paths)
    assert valid_paths(out.levels, TAX.paths).all()
    assert np.array_equal(out.levels, TAX.paths[out.leaf])
    assert np.array_equal(out.leaf, leaf_scores(logits, TAX.paths).argmax(1))
    assert np.all((out.leaf_prob > 0) & (out.leaf_prob <= 1))
    raw = np.stack([z.argmax(1) for z in logits], 1)
    share = raw_consistency(raw, TAX)
    assert share == pytest.approx(valid_paths(raw, TAX.paths).mean()) and share < 0.5  # random heads disagree


def test_raw_consistency_by_hand():
    levels = np.array([[1, 0], [0, 0], [1, 2], [0, 2]])
    assert valid_paths(levels, PATHS2).tolist() == [False, True, True, False]
    assert raw_consistency(levels, PATHS2) == 0.5


# ---------------------------------------------------------------------------------------------- model
def test_forward_shapes_with_and_without_prior():
    arch = default_arch(TAX.sizes, TAX.n_leaves, width=16, dropout=0.1)
    model = build_model(arch).eval()
    x = torch.randn(4, 10, 43)
    for inp in (x, x[:, None]):
        assert [tuple(z.shape) for z in model(inp)] == [(4, 5), (4, 11), (4, 17), (4, 25)]
    with pytest.raises(ValueError, match="without a prior"):
        model(x, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="resample"):
        model(torch.randn(4, 10, 40))

    with_prior = build_model({**arch, "prior": True}).eval()
    heads = with_prior.heads.levels
    assert heads[0].in_features == 16 + 25 and heads[1].in_features == 16 + 5 + 25
    prior = torch.tensor([-1, 0, 3, 24])
    out = with_prior(x, prior)
    assert [tuple(z.shape) for z in out] == [(4, 5), (4, 11), (4, 17), (4, 25)]
    unknown = with_prior(x, torch.full((4,), -1))
    assert all(torch.equal(a, b) for a, b in zip(unknown, with_prior(x), strict=True))  # None = all unknown
    hot = prior_one_hot(prior, 25)
    assert hot.sum(1).tolist() == [0, 1, 1, 1] and hot[3, 24] == 1
    with pytest.raises(ValueError, match="unknown keys"):
        build_model({**arch, "depth": 3})


# ---------------------------------------------------------------------------------------------- training
def test_class_weights_balance_and_skip_absent_classes():
    w = class_weights(np.array([0, 0, 0, 1]), 3)
    np.testing.assert_allclose(w, [4 / 6, 2.0, 0.0])  # 1/frequency, mean 1 over the samples
    assert w[np.array([0, 0, 0, 1])].mean() == pytest.approx(1.0)


def test_short_training_separates_the_leaves(trained, data):
    model, history = trained
    assert history["epochs"] and history["best_epoch"] is not None
    assert history["best_val_loss"] == min(e["val_loss"] for e in history["epochs"])
    pred = predict_croptype(model, data["x_val"], normalisation=history["normalisation"], taxonomy=TAX)
    accuracy = float((pred["leaf"] == data["leaf_val"]).mean())
    assert accuracy > 0.9, history["epochs"]
    assert np.array_equal(pred["levels"], TAX.paths[pred["leaf"]])
    assert pred["leaf_prob"].shape == (60,) and [p.shape[1] for p in pred["level_probs"]] == list(TAX.sizes)
    with pytest.raises(ValueError, match="normalisation="):
        predict_croptype(model, data["x_val"])


def test_training_is_deterministic_and_takes_a_prior(data):
    cfg = CropTrainConfig(width=8, lr=3e-3, epochs=2, batch_size=32, augment=True, seed=5, prior=True)
    x, leaf = data["x_train"][:96], data["leaf_train"][:96]
    prior = np.where(np.arange(96) % 3 == 0, -1, leaf)
    runs = [
        train_cropnet(x, leaf, data["x_val"], data["leaf_val"], TAX, cfg, prior, None, log=lambda _: None)
        for _ in range(2)
    ]
    assert runs[0][1]["epochs"] == runs[1][1]["epochs"]
    assert runs[0][0].heads.levels[0].in_features == 8 + TAX.n_leaves
    with pytest.raises(ValueError, match="prior_train"):
        train_cropnet(x, leaf, None, None, TAX, cfg)
    with pytest.raises(ValueError, match="NaN"):
        train_cropnet(np.full_like(x, np.nan), leaf, None, None, TAX, CropTrainConfig(epochs=1))


def test_early_stopping_keeps_the_best_weights(data):
    from mapper.croptype.train import _evaluate, _prepare

    # A far too high rate makes the validation loss jump about, so the patience runs out.
    cfg = CropTrainConfig(width=8, lr=0.3, epochs=30, batch_size=16, patience=2, augment=False, seed=0)
    x, leaf = data["x_train"][:80], data["leaf_train"][:80]
    model, history = train_cropnet(x, leaf, data["x_val"], data["leaf_val"], TAX, cfg, log=lambda _: None)
    assert history["stopped_early"] and len(history["epochs"]) == history["best_epoch"] + cfg.patience
    weights = [
        torch.tensor(class_weights(TAX.paths[leaf][:, lv], n), dtype=torch.float32) for lv, n in enumerate(TAX.sizes)
    ]
    val = _prepare(data["x_val"], data["leaf_val"], None, TAX, history["normalisation"])
    loss, _ = _evaluate(model, val, weights, TAX.paths, torch.device("cpu"))
    assert loss == pytest.approx(history["best_val_loss"], rel=1e-5)


# ---------------------------------------------------------------------------------------------- checkpoint
@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    model, history = trained
    path = tmp_path_factory.mktemp("ckpt") / "croptype"
    save_croptype_checkpoint(path, model, TAX, history["normalisation"], FAST, {"best_epoch": history["best_epoch"]})
    return path


def test_checkpoint_round_trip_gives_identical_predictions(trained, saved, data):
    model, history = trained
    before = predict_croptype(model, data["x_val"], normalisation=history["normalisation"], taxonomy=TAX)
    ckpt = load_croptype(saved, expect_taxonomy=TAX, expect_bands=BANDS)
    after = predict_croptype(ckpt, data["x_val"], batch_size=7)
    for key in ("leaf", "levels", "raw_levels", "code"):  # discrete outputs: exactly
        np.testing.assert_array_equal(before[key], after[key])
    # probabilities: float reductions depend on the batch and the CPU's kernels (1e-11 seen across CPUs)
    np.testing.assert_allclose(after["leaf_prob"], before["leaf_prob"], rtol=0, atol=1e-6)
    meta = ckpt.meta
    assert meta["kind"] == "croptype" and meta["classes"] == list(TAX.leaf_names())
    assert meta["input"] == {"bands": list(BANDS), "steps": STEP_DAYS_OF_YEAR.tolist()}
    assert meta["taxonomy"]["sha256"] == TAX.sha256 and meta["arch"]["width"] == 16
    assert meta["training"]["config"]["lr"] == FAST.lr and meta["training"]["best_epoch"] == history["best_epoch"]
    assert len(meta["normalisation"]["mean"]) == len(BANDS)


def test_loading_against_other_data_names_the_difference(saved):
    desc = TAX.describe()
    desc["table"][0] = {**desc["table"][0], "level4": "jasmine rice"}
    with pytest.raises(CheckpointError, match=r"jasmine rice.*train a model on this taxonomy"):
        load_croptype(saved, expect_taxonomy=from_description(desc))
    with pytest.raises(CheckpointError) as e:
        load_croptype(saved, expect_bands=["B2", "B3", "B4", "B8"])
    assert "trained on bands B2,B3,B4,B5,B6,B7,B8,B8A,B11,B12" in str(e.value)
    assert "missing B5,B6,B7,B8A,B11,B12" in str(e.value) and "supply those bands" in str(e.value)
    with pytest.raises(CheckpointError, match="resample"):
        load_croptype(saved, expect_steps=STEP_DAYS_OF_YEAR[:40])
    load_croptype(saved, expect_bands=[*BANDS, "B1"])  # extra bands are fine


# ---------------------------------------------------------------------------------------------- baseline
def test_forest_baseline_predicts_and_round_trips(data, tmp_path):
    forest = ForestBaseline.fit(data["x_train"], data["leaf_train"], TAX, n_trees=20, max_depth=6, seed=0)
    assert forest.meta["params"]["num_parallel_tree"] == 20
    pred = forest.predict(data["x_val"])
    assert (pred["leaf"] == data["leaf_val"]).mean() > 0.9
    assert np.array_equal(pred["levels"], TAX.paths[pred["leaf"]])
    assert pred["probs"].shape == (60, TAX.n_leaves)
    absent = np.setdiff1d(np.arange(TAX.n_leaves), LEAVES)
    assert np.all(pred["probs"][:, absent] == 0)
    forest.save(tmp_path / "rf")
    assert sorted(p.name for p in (tmp_path / "rf").iterdir()) == ["forest.json", "meta.json"]
    again = load_forest(tmp_path / "rf", expect_taxonomy=TAX, expect_bands=BANDS)
    np.testing.assert_array_equal(again.predict_proba(data["x_val"]), pred["probs"])
    with pytest.raises(CheckpointError, match="missing B11"):
        load_forest(tmp_path / "rf", expect_bands=[b for b in BANDS if b != "B11"])


# ---------------------------------------------------------------------------------------------- metrics
def test_metrics_by_hand(tmp_path):
    truth, pred = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 3, 0])
    cm = confusion_matrix(truth, pred, 4)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 1, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0]]
    # F1: class 0 2·1/(2+1+1) = 0.5, class 1 2·1/(2+1+1) = 0.5, class 2 0; class 3 is not in the truth.
    assert macro_f1(cm) == pytest.approx(1 / 3)
    m = level_metrics(truth, pred, ["a", "b", "c", "d"])
    assert m["overall_accuracy"] == pytest.approx(0.4) and m["classes_present"] == ["a", "b", "c"]

    leaf = np.array([0, 10, 20, 20])
    levels = TAX.paths[np.array([0, 10, 20, 0])]
    raw = levels.copy()
    raw[0, 0] = (raw[0, 0] + 1) % TAX.sizes[0]  # one inconsistent head
    out = croptype_metrics(leaf, levels, TAX, raw_levels=raw)
    assert json.loads(json.dumps(out)) == out  # JSON-able
    assert out["level4"]["overall_accuracy"] == 0.75 and out["raw_consistency"] == 0.75
    assert [len(out[f"level{i}"]["confusion"]) for i in range(1, 5)] == list(TAX.sizes)

    rng = np.random.default_rng(0)
    big = confusion_matrix(rng.integers(0, 25, 400), rng.integers(0, 25, 400), 25)
    png = confusion_png(big, TAX.leaf_names(), tmp_path / "cm.png", "level 4")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
