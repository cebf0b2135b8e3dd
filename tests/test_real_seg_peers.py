"""The real-imagery benchmark's helpers: the from-scratch U-Net peer (targets, metrics, network) and the model card
of a packaged real-imagery model (per-scene summary, the numbers it states, GID's use note)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.real_seg_package import GID_USE_NOTE, model_card, per_scene
from benchmarks.real_seg_unet import build_net, cropland_target, normalise, pooled


def test_gid15_classes_become_the_presets_cropland():
    y = np.array([[4, 5, 6, 7], [0, 14, 255, 3]], np.uint8)
    assert cropland_target(y, "gid15").tolist() == [[1, 1, 1, 0], [0, 0, 255, 0]]
    assert cropland_target(y, "cropland") is y


def test_pooled_metrics_count_labelled_pixels_only():
    prob = np.array([[0.9, 0.9, 0.1, 0.9]], np.float32)
    target = np.array([[1, 0, 1, 255]], np.uint8)
    m = pooled(prob, target, 0.5)  # tp 1, fp 1, fn 1; the unlabelled 0.9 counts for nothing
    assert m["iou"] == pytest.approx(1 / 3) and m["precision"] == 0.5 and m["recall"] == 0.5


def test_context_unet_keeps_the_chip_size_and_normalises_per_chip():
    torch = pytest.importorskip("torch")
    net = build_net(4, 3, 15).eval()
    with torch.inference_mode():
        out = net(torch.zeros(2, 3, 224, 224))
    assert out.shape == (2, 15, 224, 224)
    x = np.random.default_rng(0).integers(0, 255, (2, 3, 8, 8)).astype(np.uint8)
    z = normalise(x)
    assert np.allclose(z.mean((-2, -1)), 0, atol=1e-5)


def _rows():
    return [
        {"block": "psc15_paddy_field_40", "truth_cropland": 1.0, "predicted_cropland": 0.2},
        {"block": "psc15_paddy_field_41", "truth_cropland": 0.8, "predicted_cropland": 0.6},
        {"block": "psc15_river_9", "truth_cropland": 0.0, "predicted_cropland": 0.1},
    ]


def test_per_scene_means_by_gid_scene_class():
    s = per_scene(_rows())
    assert list(s) == ["paddy_field", "river"]
    assert s["paddy_field"] == {"chips": 2, "truth_cropland": 0.9, "predicted_cropland": pytest.approx(0.4)}


def test_model_card_states_the_numbers_the_goals_and_the_use_note():
    meta = {
        "arch": {"backbone": {"model_type": "resnet"}},
        "input": {"gsd_m": 2.0},
        "decision": {"threshold": 0.375, "images": 76, "iou": 0.53, "iou_at_0.5": 0.5, "labels": ["/v"]},
        "training": {"arch_name": "seg-m2f-tiny", "train": {"images": 799}, "labels": ["/w", "/c"], "seconds": 1253,
                     "val_labels": "/v", "device": "cpu", "torch_version": "2.13.0", "transformers_version": "5",
                     "config": {"scale": [0.75, 1.33], "steps": 1200, "batch_size": 8, "lr": 2e-4}},
    }  # fmt: skip
    real = {"iou": 0.373, "precision": 0.545, "recall": 0.541, "f1": 0.543, "images": 153, "per_image": _rows()}
    world = {"iou": 0.872, "precision": 0.9, "recall": 0.95, "f1": 0.92, "images": 40}
    card = model_card("seg-real", "mixed_100", meta, real, world, {"per-pixel forest": 0.441})
    assert "| gid15 test chips (real, held out) | 0.373 |" in card
    assert "| world seed 1 (simulated, held out) | 0.872 |" in card
    assert "| per-pixel forest | 0.441 |" in card and "| paddy_field | 2 | 0.90 | 0.40 |" in card
    assert "--labels /w --labels /c --val-labels /v" in card
    assert "**not met**" in card and "0.375" in card and GID_USE_NOTE in card
