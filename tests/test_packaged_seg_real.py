"""The packaged real-imagery model `seg-real` (issue 23): loadable by name, at its recorded pixel size and
calibrated threshold, with a model card that states the held-out numbers its checkpoint records and GID's use
note; `mapper run` keeps seg-default as its default."""

from __future__ import annotations

import json

from benchmarks.real_seg_package import CARD, GID_USE_NOTE
from mapper.models.registry import packaged_checkpoints
from mapper.seg.predict import DEFAULT_CHECKPOINT, load_segmenter


def test_seg_real_loads_by_name_at_its_pixel_size_and_threshold():
    path = packaged_checkpoints()["seg-real"]
    meta = json.loads((path / "checkpoint.json").read_text())
    seg = load_segmenter("seg-real", device="cpu")
    assert seg.gsd_m == meta["input"]["gsd_m"] == 2.0
    assert seg.threshold == meta["decision"]["threshold"] != 0.5  # calibrated on the gid15 validation chips
    assert meta["decision"]["labels"][0].endswith("gid15/val")
    assert DEFAULT_CHECKPOINT == "seg-default"


def test_seg_real_card_states_the_recorded_numbers_and_the_use_note():
    path = packaged_checkpoints()["seg-real"]
    meta = json.loads((path / "checkpoint.json").read_text())
    card = (path / meta["card"]).read_text()
    assert meta["card"] == CARD and meta["use"] == GID_USE_NOTE and GID_USE_NOTE in card
    real, world = meta["held_out"]["gid15_test"], meta["held_out"]["world_seed1"]
    assert real["images"] == 153 and world["images"] == 40
    assert f"| gid15 test chips (real, held out) | {real['iou']:.3f} |" in card
    assert f"| world seed 1 (simulated, held out) | {world['iou']:.3f} |" in card
    assert "configs/train_seg_real.yaml" in card
