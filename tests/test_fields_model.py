"""mapper.fields.model and .train: the U-Net's windowed inference equals whole-image inference, a trained field
checkpoint round-trips and a corrupt one is refused, training is seeded and resumes to the same weights."""

import itertools
import json
import shutil

import numpy as np
import pytest
import torch

from mapper.fields.model import (
    BaselineDelineator,
    LearnedDelineator,
    _window_origins,
    build_model,
    load_field_model,
)
from mapper.fields.train import FieldTrainConfig, augment_batch, train_fields
from mapper.models.checkpoint import CheckpointError, load_checkpoint

TINY = {"windows": 3, "val_windows": 2, "window_px": 96, "crop_px": 64, "width": 4, "depth": 2, "batch_size": 2,
        "warmup": 1, "inference_size": 64, "inference_overlap": 32, "provinces": ["Henan", "Shandong"],
        "threads": 1}  # fmt: skip


def _delineator(depth=2, size=64, overlap=32, seed=0) -> LearnedDelineator:
    torch.manual_seed(seed)
    model = build_model({"name": "unet", "width": 4, "depth": depth}).eval()
    meta = {"arch": {"name": "unet", "width": 4, "depth": depth}, "input": {"size": size, "overlap": overlap},
            "normalisation": {"mean": [0.4, 0.4, 0.4], "std": [0.2, 0.2, 0.2]}}  # fmt: skip
    return LearnedDelineator(model, meta, torch.device("cpu"), batch_size=3)


def test_window_origins_cover_the_image_with_the_overlap():
    for length, size, overlap in [(64, 64, 32), (200, 64, 32), (1000, 256, 32), (65, 64, 0)]:
        starts = _window_origins(length, size, overlap)
        assert starts[0] == 0 and starts[-1] == length - size
        assert all(b - a <= size - overlap for a, b in itertools.pairwise(starts))


@pytest.mark.parametrize("shape", [(150, 203), (40, 30), (64, 64)])
def test_windowed_probabilities_equal_the_whole_image(shape):
    """Depth 2, 3×3 convs: the receptive field (±10 px) is inside the 16 px each window keeps back, so stitching
    the windows' centres gives the whole image's probabilities."""
    d = _delineator()
    rgb = np.random.default_rng(1).integers(0, 255, (*shape, 3), dtype=np.uint8)
    interior, boundary = d.probabilities(rgb)
    assert interior.shape == shape and boundary.shape == shape and interior.dtype == np.float32
    whole = LearnedDelineator(d.model, {**d.meta, "input": {"size": 512, "overlap": 0}}, d.device)
    wi, wb = whole.probabilities(rgb)
    inner = slice(0, shape[0] - 12), slice(0, shape[1] - 12)  # the mirrored padding differs within ±10 px of the end
    np.testing.assert_allclose(interior[inner], wi[inner], atol=1e-5)
    np.testing.assert_allclose(boundary[inner], wb[inner], atol=1e-5)
    assert ((interior + boundary) <= 1 + 1e-6).all()


def test_delineation_stays_inside_the_extent_and_imagery():
    d = _delineator()
    rgb = np.random.default_rng(2).integers(0, 255, (80, 90, 3), dtype=np.uint8)
    mask = np.zeros((80, 90), np.uint8)
    mask[10:70, 10:80] = 1
    mask[:5] = 255
    valid = np.ones(mask.shape, bool)
    valid[:, 60:] = False
    for delineator in (d, BaselineDelineator()):
        labels = delineator.delineate(rgb, mask, valid)
        assert labels.dtype == np.int32 and labels.shape == mask.shape
        assert not labels[(mask != 1) | ~valid].any()
    with pytest.raises(ValueError, match="uint8"):
        d.delineate(rgb.astype(np.float32), mask)
    with pytest.raises(ValueError, match="grid"):
        d.delineate(rgb, mask[:-1])


def test_augmented_batches_keep_pixels_and_labels_together():
    cfg = FieldTrainConfig(**TINY)
    rng = np.random.default_rng(0)
    classes = np.zeros((2, 96, 96), np.uint8)
    classes[:, :, 40:] = 2
    rgb = np.zeros((2, 96, 96, 3), np.uint8)
    rgb[classes == 2] = 255  # boundary pixels are white
    valid = np.ones((2, 96, 96), bool)
    valid[1, :10] = False
    x, t = augment_batch(rgb, classes, valid, cfg.model_copy(update={"blur_prob": 0.0}), rng)
    assert x.shape == (2, 3, 64, 64) and t.shape == (2, 64, 64) and t.dtype == np.int64
    white = x.mean(axis=1) > 0.5
    assert (white[t == 2]).all() and not (white[t == 0]).any()
    assert set(np.unique(t)) <= {-100, 0, 2}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("fieldmodel")
    cfg = FieldTrainConfig(**TINY, steps=4, val_every=2)
    record = train_fields(cfg, root / "whole")
    return root, cfg, record


def test_training_writes_a_checkpoint_that_loads(trained):
    root, _cfg, record = trained
    assert [h["step"] for h in record["history"]] == [2, 4]
    meta = json.loads((root / "whole" / "checkpoint.json").read_text())
    assert meta["kind"] == "fields" and meta["training"]["steps_done"] == 4 and "last_weights" not in meta["training"]
    assert not (root / "whole" / "train_state.safetensors").exists()  # a finished run keeps the best weights only
    model = load_field_model(root / "whole")
    rgb = np.full((70, 70, 3), 120, np.uint8)
    assert model.delineate(rgb, np.ones((70, 70), bool)).shape == (70, 70)


def test_resumed_training_ends_where_the_uninterrupted_one_does(trained):
    root, cfg, _ = trained

    class Stop(Exception):
        pass

    def stop(rec):
        raise Stop

    with pytest.raises(Stop):
        train_fields(cfg, root / "cut", progress=stop)  # killed right after its first checkpoint
    assert json.loads((root / "cut" / "checkpoint.json").read_text())["training"]["steps_done"] == 2
    with pytest.raises(CheckpointError, match="--resume"):
        train_fields(cfg, root / "cut")
    with pytest.raises(ValueError, match="settings"):
        train_fields(cfg.model_copy(update={"lr": 1e-2}), root / "cut", resume=True)
    train_fields(cfg, root / "cut", resume=True)
    a = load_checkpoint(root / "whole", "fields").model.state_dict()
    b = load_checkpoint(root / "cut", "fields").model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train_fields(cfg, root / "cut", resume=True)


def test_a_corrupt_or_foreign_checkpoint_is_refused(trained, tmp_path):
    root, _, _ = trained
    bad = tmp_path / "bad"
    shutil.copytree(root / "whole", bad)
    data = bytearray((bad / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (bad / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_field_model(bad)
    with pytest.raises(CheckpointError, match="not 'fields'"):
        load_field_model("seg-default")
    with pytest.raises(CheckpointError, match="not found"):
        load_field_model(tmp_path / "missing")
    assert isinstance(load_field_model("baseline"), BaselineDelineator)
