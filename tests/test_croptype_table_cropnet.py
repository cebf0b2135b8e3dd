"""CropNet as published (x-ytong/CropNet), issue 26 part 2: the augmentation probabilities, the originals kept
beside augmented copies, re-cropping a longer series instead of clamping at the window's edges, per-block
dropout and Kaiming initialisation — each tested for its exact effect; and a windowed model predicting a
longer table."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from mapper.croptype.augment import SeriesAugment, augment_batch, crop_window, draw_parameters, time_transform
from mapper.croptype.model import PUBLISHED_DROPOUT, block_dropouts, build_model, default_arch, init_weights
from mapper.croptype.train import CropTrainConfig, _batch_input, _epoch_rows, variant_settings, window_days

DAYS = np.arange(0.0, 101.0, 5.0)  # a season of 21 five-day steps
RAMP = DAYS[None, None, :].repeat(2, axis=0)  # each value is its own day: reads show where they came from
WINDOW = np.arange(20.0, 61.0, 5.0)


def test_probabilities_give_the_identity_to_the_rest():
    cfg = SeriesAugment(p_shift=1.0, p_scale=0.5, p_warp=0.25)
    p = draw_parameters(20000, np.random.default_rng(1), cfg)
    assert (p["shift_days"] != 0).mean() == 1.0
    assert abs((p["factor"] == 1.0).mean() - 0.5) < 0.02
    assert abs((p["knots"] == 1.0).all(axis=1).mean() - 0.75) < 0.02
    always = draw_parameters(50, np.random.default_rng(2), SeriesAugment())
    rng = np.random.default_rng(2)  # probabilities of 1: the stream of all augmentations always on
    assert np.array_equal(always["shift_days"], rng.uniform(-50, 50, 50))
    assert np.array_equal(always["factor"], rng.uniform(0.8, 1.2, 50))
    assert np.array_equal(always["knots"], rng.normal(1.0, 0.1, (50, 5)))
    never = SeriesAugment(p_shift=0, p_scale=0, p_warp=0)
    assert np.array_equal(augment_batch(RAMP, np.random.default_rng(0), never, DAYS, WINDOW), RAMP[:, :, 4:13])
    with pytest.raises(ValueError, match="probability"):
        draw_parameters(3, np.random.default_rng(0), SeriesAugment(p_warp=1.5))


def test_time_augmentations_recrop_the_longer_series():
    assert np.array_equal(crop_window(RAMP, DAYS, WINDOW), RAMP[:, :, 4:13])
    late = time_transform(RAMP, 15.0, 1.0, DAYS, WINDOW)  # x'(t) = x(t − 15): real days 5..45
    np.testing.assert_allclose(late[0, 0], WINDOW - 15)
    early = time_transform(RAMP, -50.0, 1.0, DAYS, WINDOW)  # days 70..110: past the series' end only at 105, 110
    np.testing.assert_allclose(early[0, 0], np.minimum(WINDOW + 50, 100))
    slow = time_transform(RAMP, 0.0, 2.0, DAYS, WINDOW)  # about the window's centre (40): days 30..50
    np.testing.assert_allclose(slow[1, 0], 40 + (WINDOW - 40) / 2)
    clamped = time_transform(RAMP[:, :, 4:13], 15.0, 1.0, WINDOW)  # without the season: the edge repeated
    np.testing.assert_allclose(clamped[0, 0], np.maximum(WINDOW - 15, 20))
    with pytest.raises(ValueError, match="not steps of the series"):
        crop_window(RAMP, DAYS, WINDOW + 1)
    assert window_days(DAYS, (20, 60)).tolist() == WINDOW.tolist()


def test_originals_are_kept_beside_augmented_copies():
    cfg = CropTrainConfig(**variant_settings("published"))
    rows, augmented = _epoch_rows(3, cfg)
    assert rows.tolist() == [0, 1, 2] * 3 and augmented.tolist() == [False] * 3 + [True] * 6
    assert _epoch_rows(3, CropTrainConfig())[1].all()  # mapper's: every row augmented
    assert not _epoch_rows(3, CropTrainConfig(augment=False))[1].any()
    data = {"x": RAMP[:1] + np.arange(3.0)[:, None, None], "days": DAYS, "window": WINDOW}
    x = _batch_input(data, np.array([2, 0, 2]), np.array([False, True, False]), cfg.augmentation(),
                     np.random.default_rng(0))  # fmt: skip
    np.testing.assert_array_equal(x[[0, 2]], np.repeat(RAMP[:1, :, 4:13] + 2, 2, axis=0))  # originals exact
    assert not np.array_equal(x[1], RAMP[0, :, 4:13])  # the copy is shifted (p 1)


def test_published_dropout_and_initialisation():
    assert block_dropouts(0.2) == [0.2] * 4 and block_dropouts(list(PUBLISHED_DROPOUT)) == [0.2, 0.3, 0.3, 0.4]
    with pytest.raises(ValueError, match="one per block"):
        block_dropouts([0.1, 0.2])
    arch = default_arch([3, 3, 3, 3], 3, width=16, dropout=list(PUBLISHED_DROPOUT), bands=2, steps=9)
    torch.manual_seed(0)
    net = init_weights(build_model(arch), "kaiming")
    assert [m.p for m in net.modules() if isinstance(m, nn.Dropout2d)] == [0.2, 0.3, 0.3, 0.4]
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    w = torch.cat([c.weight.detach().flatten() for c in convs[1:]])  # fan_out = 16 × 9: std √(2 / 144)
    assert abs(float(w.std()) - (2 / 144) ** 0.5) < 0.01
    with torch.no_grad():
        assert all(float(m.weight.min()) == 1 and float(m.bias.abs().max()) == 0
                   for m in net.modules() if isinstance(m, nn.BatchNorm2d))  # fmt: skip
        assert all(float(m.bias.abs().max()) == 0 for m in net.modules() if isinstance(m, nn.Linear))
    with pytest.raises(ValueError, match="choose torch or kaiming"):
        init_weights(net, "xavier")


def test_a_windowed_model_predicts_a_longer_table(tmp_path):
    from click.testing import CliRunner

    from mapper.cli import cli

    classes = ["early", "late"]
    rows = []
    for i in range(40):  # a green-up early or late in a season of 21 steps
        peak = 30 if i % 2 == 0 else 50
        rows.append({"id": f"f{i}", "label": classes[i % 2],
                     **{f"NDVI_{t:02d}": float(np.exp(-(((5 * t) - peak) / 12) ** 2)) for t in range(21)}})  # fmt: skip
    table = tmp_path / "t.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    pd.DataFrame({"label": classes}).to_csv(tmp_path / "c.csv", index=False)
    r = CliRunner().invoke(cli, ["croptype", "train", "--data", str(table), "--format", "table", "--taxonomy",
                                 str(tmp_path / "c.csv"), "--variant", "published", "--window", "20,60", "--epochs",
                                 "1", "--width", "4", "--out", str(tmp_path / "m")])  # fmt: skip
    assert r.exit_code == 0, r.output
    from mapper.croptype.kinds import load_model

    assert load_model(tmp_path / "m").steps == list(range(20, 61, 5))
    r = CliRunner().invoke(cli, ["croptype", "predict", "--model", str(tmp_path / "m"), "--data", str(table), "--out",
                                 str(tmp_path / "p.csv")])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert len(pd.read_csv(tmp_path / "p.csv")) == 40
