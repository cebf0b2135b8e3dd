"""Pixel size as a first-class property: block GSDs, resampling in training crops and in inference, chips in
training and evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mapper.grid.blocks import Block
from mapper.labels.chips import write_labelled_chip
from mapper.labels.store import IGNORE, LabelError
from mapper.seg.resample import block_gsd_m, resize_labels, resize_probability, resize_rgb, window_gsd_m
from mapper.seg.samples import CropSampler, find_samples
from mapper.seg.train import SegTrainConfig, iou_counts, model_gsd, pixel_metrics
from tests.test_seg import TINY, synthetic_block


def test_a_z16_pixel_is_the_mercator_pixel_times_the_cosine_of_its_latitude():
    equator = Block.containing(10.02, 0.02)
    assert window_gsd_m(equator.window(16)) == pytest.approx(2 * math.pi * 6378137 / 2**24, rel=1e-5)
    henan = Block.containing(113.6, 34.5)
    assert block_gsd_m(henan.id) == pytest.approx(2.388657 * math.cos(math.radians(34.5)), rel=2e-3)
    assert block_gsd_m(henan.id, 17) == pytest.approx(block_gsd_m(henan.id) / 2, rel=1e-6)


def test_resampling_keeps_labels_whole_and_probabilities_where_there_is_imagery():
    labels = np.zeros((8, 8), np.uint8)
    labels[:4] = 1
    labels[:, 6:] = IGNORE
    up = resize_labels(labels, (16, 16))
    assert set(np.unique(up)) == {0, 1, IGNORE} and (up[:8, :12] == 1).all() and (up[:, 12:] == IGNORE).all()
    assert (resize_labels(up, (8, 8)) == labels).all()  # nearest at pixel centres: no half-pixel shift
    prob = np.full((8, 8), 0.8, np.float32)
    prob[:, :4] = np.nan  # no imagery: never blended into a value, and nothing made up where all is missing
    back = resize_probability(prob, (4, 4))
    assert np.isnan(back[:, 0]).all() and np.allclose(back[:, 1:], 0.8)
    rgb = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    assert resize_rgb(rgb, (32, 32)) is rgb and resize_rgb(rgb, (16, 16)).dtype == np.uint8


def _scene(rng, size=448):
    """A 2 m scene: bright striped fields on a noisy background, and its truth."""
    truth = np.zeros((size, size), np.uint8)
    rgb = np.clip(rng.normal((70, 100, 60), 12, (size, size, 3)), 0, 255).astype(np.uint8)
    for _ in range(12):
        r, c = rng.integers(0, size - 120, 2)
        h, w = rng.integers(40, 120, 2)
        truth[r : r + h, c : c + w] = 1
    rgb[truth == 1] = (170, 150, 90)
    return rgb, truth


def test_a_crop_of_a_4m_chip_covers_the_ground_of_the_same_crop_at_2m(tmp_path):
    rgb2, truth2 = _scene(np.random.default_rng(1))
    rgb4, truth4 = resize_rgb(rgb2, (224, 224)), resize_labels(truth2, (224, 224))
    write_labelled_chip(tmp_path, "at2m", rgb2, truth2, gsd_m=2.0, origin="test")
    write_labelled_chip(tmp_path, "at4m", rgb4, truth4, gsd_m=4.0, origin="test")
    samples = {s.block_id: s for s in find_samples([tmp_path])}
    assert {k: (s.source, s.gsd_m, s.coverage) for k, s in samples.items()} == {
        "at2m": ("chip", 2.0, None), "at4m": ("chip", 4.0, None)}  # fmt: skip
    sampler = CropSampler([samples["at4m"]], 128, 0.5, gsd_m=2.0)
    _, row, col, side = sampler.draw(np.random.default_rng(3))
    assert side == 64  # 128 model pixels of 2 m are 64 chip pixels of 4 m
    rgb, target = sampler.crop(np.random.default_rng(3))
    assert rgb.shape == (128, 128, 3) and target.shape == (128, 128)
    same = rgb2[2 * row : 2 * row + 128, 2 * col : 2 * col + 128].astype(float)
    assert np.abs(rgb.astype(float) - same).mean() < 12  # the same ground, up to resampling
    agree = target == truth2[2 * row : 2 * row + 128, 2 * col : 2 * col + 128]
    assert agree.mean() > 0.95
    # a scale augmentation draws the side from the range, and without any nothing extra is drawn
    scaled = CropSampler([samples["at4m"]], 128, 0.5, gsd_m=2.0, scale=(0.5, 2.0))
    sides = {scaled.draw(np.random.default_rng(s))[3] for s in range(40)}
    assert min(sides) >= 32 and max(sides) <= 128 and len(sides) > 10


def test_chips_without_a_model_pixel_size_are_refused_naming_the_setting(tmp_path):
    rgb, truth = _scene(np.random.default_rng(2), 160)
    write_labelled_chip(tmp_path, "c", rgb, truth, gsd_m=4.0, origin="test")
    with pytest.raises(LabelError, match="gsd_m"):
        model_gsd(SegTrainConfig(), find_samples([tmp_path]))
    assert model_gsd(SegTrainConfig(gsd_m=2.0), find_samples([tmp_path])) == 2.0
    with pytest.raises(ValueError, match="scale"):
        SegTrainConfig(scale=(2.0, 1.0))


@pytest.fixture(scope="module")
def world_scene():
    """512 × 512 px of a farmland block of world seed 1 (Henan plain) and its truth."""
    from mapper.imagery.mosaic import mosaic_block
    from mapper.world.source import WorldTileSource
    from mapper.world.truth import block_truth
    from mapper.world.world import get_world

    block = Block.containing(113.6, 34.5)
    mosaic = mosaic_block(WorldTileSource("demo-a", 1, "a"), block)
    truth = block_truth(get_world(1), block).cropland.astype(np.uint8)
    return mosaic.rgb[:512, :512].copy(), truth[:512, :512].copy(), window_gsd_m(mosaic.window)


def test_a_chip_at_4m_and_the_same_scene_at_2m_give_the_same_prediction_up_to_resampling(world_scene):
    from mapper.seg.predict import load_segmenter

    rgb, truth, gsd = world_scene
    seg = load_segmenter(batch_size=8)
    seg.gsd_m = gsd  # the packaged model learnt z16 blocks at about this pixel size
    fine = seg.predict_one(rgb)  # no pixel size given: predicted as it is
    coarse_rgb = resize_rgb(rgb, (256, 256))  # the same ground at twice the pixel size
    (_, coarse), = seg.predict([("c", (coarse_rgb, None), 2 * gsd)])
    assert coarse.probability.shape == (256, 256) and coarse.valid.all()
    # exactly: brought to the model's pixel size, predicted, and the probability brought back
    by_hand = seg.predict_one(resize_rgb(coarse_rgb, (512, 512))).probability
    assert np.allclose(coarse.probability, resize_probability(by_hand, (256, 256)), atol=1e-6)
    truth_coarse = resize_labels(truth, (256, 256))
    fine_at_coarse = resize_labels(fine.mask, (256, 256))
    agreement = float((coarse.mask == fine_at_coarse).mean())
    iou = pixel_metrics(iou_counts(coarse.probability, truth_coarse))["iou"]
    # Up to resampling: the 4 m image upsampled is blurred, and this model (trained without scale
    # augmentation) loses some fields to the blur; most of the map is the same.
    assert agreement > 0.75 and iou > 0.6
    # without resampling the network sees fields half their size and misses nearly all of them
    seg.gsd_m = None
    (_, native), = seg.predict([("c", (coarse_rgb, None), 2 * gsd)])
    native_iou = pixel_metrics(iou_counts(native.probability, truth_coarse))["iou"]
    assert native_iou < iou - 0.3 and float((native.mask == fine_at_coarse).mean()) < agreement - 0.2


def test_training_on_blocks_and_chips_records_the_pixel_size_and_evaluation_scores_chips(tmp_path):
    from mapper.labels.store import write_labelled_block
    from mapper.models import load_checkpoint
    from mapper.seg.evaluate import evaluate_samples
    from mapper.seg.predict import Segmenter
    from mapper.seg.train import train_seg

    rng = np.random.default_rng(5)
    block = Block.containing(10.02, 0.02)
    mosaic, truth = synthetic_block(rng, block)
    write_labelled_block(tmp_path / "mixed", block, {"a": mosaic}, truth, {"a": "Planting"}, "world seed 7")
    for k in range(2):
        rgb, t = _scene(np.random.default_rng(10 + k), 224)
        write_labelled_chip(tmp_path / "mixed", f"chip{k}", rgb, t, gsd_m=4.0, origin="test", dataset="synthetic")
    samples = find_samples([tmp_path / "mixed"])
    assert sorted((s.source, round(s.gsd_m, 2)) for s in samples) == [("a", 2.39), ("chip", 4.0), ("chip", 4.0)]
    cfg = SegTrainConfig(steps=2, batch_size=2, val_every=2, val_crops=2, warmup_steps=1, gsd_m=2.0,
                         scale=(0.8, 1.25))  # fmt: skip
    result = train_seg(samples, tmp_path / "ck", cfg, val=samples, spec=TINY)
    ckpt = load_checkpoint(tmp_path / "ck", kind="segmentation")
    assert ckpt.meta["input"]["gsd_m"] == 2.0 and result.metrics is not None
    seg = Segmenter.from_checkpoint(ckpt, batch_size=4)
    assert seg.gsd_m == 2.0
    chips = [s for s in samples if s.source == "chip"]
    metrics = evaluate_samples(seg, chips)
    assert metrics["images"] == 2 and metrics["model_gsd_m"] == 2.0 and metrics["image_gsd_m"] == [4.0, 4.0]
    assert {r["block"] for r in metrics["per_image"]} == {"chip0", "chip1"} and 0 <= metrics["iou"] <= 1
