"""A segmentation checkpoint's decision threshold: chosen on held-out labels by pooled IoU, recorded in the
checkpoint, and followed by every mask made with it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mapper.cli import cli
from mapper.labels.chips import read_labelled_chip, write_labelled_chip
from mapper.models.checkpoint import load_checkpoint, save_checkpoint, update_checkpoint_meta
from mapper.seg.calibrate import THRESHOLDS, choose_threshold, pooled_iou
from mapper.seg.evaluate import evaluate_samples
from mapper.seg.model import CLASSES, build_model
from mapper.seg.predict import load_segmenter
from mapper.seg.samples import find_samples
from mapper.seg.train import iou_counts
from tests.test_seg import TINY


def test_the_threshold_of_highest_pooled_iou_is_chosen_ties_nearest_one_half():
    thresholds = (0.3, 0.4, 0.5, 0.6)
    counts = np.array([[5, 5, 0, 0], [6, 2, 2, 0], [5, 1, 4, 0], [2, 0, 8, 0]])  # IoU 0.5, 0.6, 0.5, 0.2
    assert choose_threshold(counts, thresholds) == (0.4, pytest.approx(0.6))
    tied = np.array([[6, 2, 2, 0], [6, 2, 2, 0], [6, 2, 2, 0], [0, 0, 0, 9]])
    assert choose_threshold(tied, thresholds)[0] == 0.5
    assert np.isnan(pooled_iou(np.array([[0, 0, 0, 4]]))[0])
    with pytest.raises(ValueError, match="no cropland"):
        choose_threshold(np.array([[0, 0, 0, 4]]), (0.5,))


def _checkpoint(path):
    torch.manual_seed(3)
    meta = {"kind": "segmentation", "arch": TINY.arch, "classes": list(CLASSES),
            "normalisation": {"mean": [0.4] * 3, "std": [0.2] * 3}, "input": {"size": 64, "overlap": 16}}  # fmt: skip
    return save_checkpoint(path, build_model(TINY.arch), meta)


def _chips(root, n=3, size=96):
    rng = np.random.default_rng(5)
    for i in range(n):
        truth = np.zeros((size, size), np.uint8)
        truth[: size // 2 + 8 * i] = 1
        rgb = np.clip(rng.normal((80, 110, 70), 20, (size, size, 3)), 0, 255).astype(np.uint8)
        rgb[truth == 1] += np.uint8(40)
        write_labelled_chip(root, f"c{i}", rgb, truth, gsd_m=2.0, origin="test")
    return root


def test_calibrate_records_the_best_threshold_and_masks_follow_it(tmp_path):
    ck, val = _checkpoint(tmp_path / "ck"), _chips(tmp_path / "val")
    weights_sha = json.loads((ck / "checkpoint.json").read_text())["sha256"]
    result = CliRunner().invoke(cli, ["train", "calibrate", "--checkpoint", str(ck), "--labels", str(val), "-q"])
    assert result.exit_code == 0, result.output
    meta = json.loads((ck / "checkpoint.json").read_text())
    decision = meta["decision"]
    assert meta["sha256"] == weights_sha and decision["images"] == 3 and decision["threshold"] in THRESHOLDS
    best = max(v for v in decision["iou_by_threshold"].values() if v is not None)
    assert decision["iou"] == pytest.approx(best, abs=1e-4)
    load_checkpoint(ck, "segmentation")  # still verifies: the weights are untouched

    # recount independently: the recorded IoU is the pooled IoU of the chips at the recorded threshold
    seg = load_segmenter(ck)
    assert seg.threshold == decision["threshold"]
    samples = find_samples([val], None)
    counts = np.zeros(4, np.int64)
    for s in samples:
        chip = read_labelled_chip(s.directory)
        r = seg.predict_one(chip.rgb)
        assert (r.mask[r.valid] == (r.probability[r.valid] > decision["threshold"])).all()
        counts += iou_counts(np.nan_to_num(r.probability, nan=0.0), chip.target(), decision["threshold"])
    assert counts[0] / counts[:3].sum() == pytest.approx(decision["iou"], abs=1e-4)
    evaluated = evaluate_samples(seg, samples)
    assert evaluated["threshold"] == decision["threshold"]
    assert evaluated["iou"] == pytest.approx(decision["iou"], abs=1e-4)


def test_calibration_refuses_a_packaged_name_and_weight_fields(tmp_path):
    result = CliRunner().invoke(cli, ["train", "calibrate", "--checkpoint", "seg-default", "--labels", str(tmp_path)])
    assert result.exit_code == 2 and "copy its folder" in result.output
    ck = _checkpoint(tmp_path / "ck")
    with pytest.raises(ValueError, match="sha256"):
        update_checkpoint_meta(ck, {"sha256": "0" * 64})
    assert load_segmenter(ck).threshold == 0.5  # uncalibrated: Mask2Former's argmax
