"""Checkpoints: safetensors + checkpoint.json round trip, verification on load, atomic saves; the registry."""

import json

import numpy as np
import pytest
import torch

from mapper.config import ConfigError
from mapper.iqa.model import build_model
from mapper.models import CheckpointError, get_model_spec, load_checkpoint, load_model_registry, save_checkpoint
from mapper.models.archs import full_iqa_arch
from mapper.models.checkpoint import META_FILE, WEIGHTS_FILE, read_checkpoint_meta, sha256_file
from mapper.models.registry import parse_registry, resolve_checkpoint

TINY = full_iqa_arch({"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1], "layer_type": "basic"})


def meta_for(arch):
    return {
        "kind": "iqa",
        "arch": arch,
        "classes": ["Planting", "Non-planting", "Cloudy", "Snow/Ice", "Nodata"],
        "normalisation": {"mean": [0.4, 0.4, 0.4, 0.1], "std": [0.2, 0.2, 0.2, 0.3]},
        "input": {"size": 32},
        "training": {"world_seeds": [0], "epochs": 1, "metrics": {"top1": 0.5}},
    }


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    path = save_checkpoint(tmp_path / "ckpt", model, meta_for(TINY))
    return model, path


def test_round_trip_gives_identical_outputs(saved):
    model, path = saved
    assert sorted(p.name for p in path.iterdir()) == [META_FILE, WEIGHTS_FILE]  # nothing pickled
    meta = json.loads((path / META_FILE).read_text())
    assert meta["format"] == "mapper-checkpoint/1" and meta["kind"] == "iqa" and meta["arch"] == TINY
    assert meta["sha256"] == sha256_file(path / WEIGHTS_FILE)
    assert meta["mapper_version"] and meta["created"] and meta["training"]["world_seeds"] == [0]
    loaded = load_checkpoint(path, kind="iqa", expect_arch=TINY)
    assert not loaded.model.training and loaded.classes[-1] == "Nodata"
    x = torch.randn(3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(pixel_values=x).logits, loaded.model(pixel_values=x).logits)


def test_corrupt_weights_are_refused(saved):
    _, path = saved
    data = bytearray((path / WEIGHTS_FILE).read_bytes())
    data[-5] ^= 0xFF
    (path / WEIGHTS_FILE).write_bytes(bytes(data))
    pattern = r"corrupt: sha256 [0-9a-f]{64} expected [0-9a-f]{64}; re-train or re-copy"
    with pytest.raises(CheckpointError, match=pattern):
        load_checkpoint(path, kind="iqa")


def test_other_arch_names_the_differing_keys(saved):
    _, path = saved
    other = full_iqa_arch({"embedding_size": 8, "hidden_sizes": [8, 32], "depths": [1, 2], "layer_type": "basic"})
    with pytest.raises(CheckpointError, match="depths") as e:
        load_checkpoint(path, kind="iqa", expect_arch=other)
    assert "hidden_sizes" in str(e.value) and "embedding_size" not in str(e.value)


def test_missing_files_wrong_kind_and_bad_json(saved, tmp_path):
    _, path = saved
    with pytest.raises(CheckpointError, match="is a 'iqa' model, not 'segmentation'"):
        load_checkpoint(path, kind="segmentation")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nowhere", kind="iqa")
    good = (path / META_FILE).read_text()
    (path / META_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path, kind="iqa")
    (path / META_FILE).write_text(good.replace("mapper-checkpoint/1", "mapper-checkpoint/0"))
    with pytest.raises(CheckpointError, match=r"not a mapper checkpoint: its format is 'mapper-checkpoint/0'"):
        load_checkpoint(path, kind="iqa")
    (path / META_FILE).write_text(good)
    (path / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"incomplete: missing {WEIGHTS_FILE}"):
        load_checkpoint(path, kind="iqa")
    (path / META_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"missing {META_FILE}, {WEIGHTS_FILE}"):
        load_checkpoint(path, kind="iqa")


def test_weights_that_do_not_fit_the_arch(saved, tmp_path):
    _, path = saved
    meta = json.loads((path / META_FILE).read_text())
    meta["arch"] = full_iqa_arch({**TINY, "hidden_sizes": [8, 24]})
    (path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not fit the arch"):
        load_checkpoint(path, kind="iqa")


def test_save_replaces_atomically_and_a_failed_save_keeps_the_old(saved, monkeypatch):
    model, path = saved
    old_sha = read_checkpoint_meta(path)["sha256"]
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    save_checkpoint(path, model, meta_for(TINY), extra_tensors={"train_state": {"0.step": torch.tensor(3.0)}})
    meta = read_checkpoint_meta(path)
    assert meta["sha256"] != old_sha and set(meta["extra_files"]) == {"train_state.safetensors"}
    extra = load_checkpoint(path, kind="iqa", load_extra=True).extra
    assert float(extra["train_state"]["0.step"]) == 3.0
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary or old directories left

    import safetensors.torch

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, build_model(TINY), meta_for(TINY))
    assert read_checkpoint_meta(path)["sha256"] == meta["sha256"]
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    with pytest.raises(ValueError, match="lacks"):
        save_checkpoint(path, model, {"kind": "iqa"})


def test_corrupt_extra_file_is_refused(saved):
    model, path = saved
    save_checkpoint(path, model, meta_for(TINY), extra_tensors={"train_state": {"a": torch.ones(4)}})
    f = path / "train_state.safetensors"
    f.write_bytes(f.read_bytes()[:-1] + b"\x00")
    load_checkpoint(path, kind="iqa")  # the weights themselves are fine
    with pytest.raises(CheckpointError, match=r"train_state\.safetensors is corrupt"):
        load_checkpoint(path, kind="iqa", load_extra=True)


def test_registry_is_strict_and_complete():
    registry = load_model_registry()
    assert {"iqa-resnet18-mini", "iqa-resnet18", "iqa-resnet50"} <= set(registry)
    spec = get_model_spec("iqa-resnet18-mini", kind="iqa")
    assert spec.arch["num_channels"] == 4 and spec.arch["num_labels"] == 5 and spec.input.size == 128
    with pytest.raises(ValueError, match=r"unknown model 'nope'.*iqa-resnet18-mini"):
        get_model_spec("nope")
    entry = {"kind": "iqa", "arch": dict(spec.arch), "input": {"size": 64}}
    with pytest.raises(ConfigError, match=r"model registry entry 'm' \(from models.yaml\):\n  unknown key 'colour'"):
        parse_registry({"models": {"m": {**entry, "colour": "red"}}})
    with pytest.raises(ConfigError, match=r"entry 'm' .*\n  unknown key 'arch\.depth': remove it"):
        parse_registry({"models": {"m": {**entry, "arch": {**entry["arch"], "depth": 3}}}})
    with pytest.raises(ConfigError, match=r"invalid model registry \(from models.yaml\):\n  unknown key 'extra'"):
        parse_registry({"models": {}, "extra": 1})
    with pytest.raises(ConfigError, match=r"entry 'm' .*\n  input.size: Input should be greater than or equal to 16"):
        parse_registry({"models": {"m": {**entry, "input": {"size": 8}}}})


def test_resolve_checkpoint(saved, tmp_path):
    _, path = saved
    assert resolve_checkpoint(path) == path
    assert (resolve_checkpoint("iqa-default") / META_FILE).is_file()
    with pytest.raises(CheckpointError, match="iqa-default"):
        resolve_checkpoint(tmp_path / "missing")
    assert np.isfinite(read_checkpoint_meta(resolve_checkpoint("iqa-default"))["training"]["metrics"]["top1"])
