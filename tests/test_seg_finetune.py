"""Fine-tuning the segmentation network from a checkpoint (`mapper train seg --init`): arch and normalisation
kept, the init recorded, weighted sampling of the newest active-learning round, and the command's refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import mapper.seg.samples as seg_samples
from mapper.cli import cli
from mapper.grid.blocks import Block
from mapper.labels.store import IGNORE, write_labelled_block
from mapper.models import CheckpointError, load_checkpoint, load_model_registry
from mapper.models.checkpoint import save_checkpoint, sha256_file, update_checkpoint_meta
from mapper.seg.finetune import check_init_arch, fine_tune_seg, init_spec, load_init
from mapper.seg.model import CLASSES, build_model
from mapper.seg.samples import CropSampler, SampleWeights, SegSample, find_samples
from mapper.seg.train import SegTrainConfig, make_batch, train_seg
from tests.test_seg import BLOCK, TINY, synthetic_block

INIT_NORM = {"mean": [0.31, 0.42, 0.27], "std": [0.11, 0.13, 0.12]}  # not what channel_stats would find
TINY_STEPS = {"steps": 2, "batch_size": 2, "val_every": 2, "val_crops": 2, "warmup_steps": 1, "val_fraction": 0}

# (sample, row, col) of every read_crop of make_batch(batch_size=3) over steps 0-3, as the sampler drew them
# before weights existed (recorded from that code with the fake images below; seeds 0 and 5).
RECORDED = {
    0: "3:0:0 2:18:0 1:697:101 0:37:397 2:0:0 1:1943:1368 1:64:13 2:32:0 3:0:0 0:1645:2169 1:1314:1748 3:0:0 "
    "0:650:912 0:878:592 1:1091:847 3:0:0 2:24:0 2:24:0 1:166:735 2:9:0 3:0:0 0:442:179 3:0:0 0:826:752 "
    "0:133:1492 2:33:0 3:0:0 3:0:0 2:11:0 1:2109:2241 0:1227:1618 1:927:216 0:937:1484 3:0:0 2:7:0",
    5: "2:29:0 2:0:0 0:337:2265 0:1423:1117 0:1755:1764 1:1991:1717 3:0:0 3:0:0 3:0:0 2:21:0 2:21:0 0:2024:160 "
    "1:1088:90 3:0:0 0:2180:731 2:4:0 3:0:0 0:1611:969 0:1340:1227 2:18:0 0:1104:1673 3:0:0 1:589:215 2:17:0 "
    "3:0:0 2:10:0 3:0:0 0:103:467 1:1123:879 2:28:0",
}
FAKE_SHAPES = {"b0": (2330, 2330), "b1": (2330, 2531), "b2": (100, 50), "b3": (64, 64)}


@pytest.fixture
def fake_images(monkeypatch):
    """Samples b0-b3 of FAKE_SHAPES without files; every read_crop is logged as 'index:row:col'. A third of
    the crops are too sparsely labelled, so the sampler's redraws are part of the sequence."""
    drawn: list[str] = []
    index = {b: i for i, b in enumerate(FAKE_SHAPES)}

    def read_crop(sample, row, col, size, out=None):
        assert out in (None, size)  # no pixel size given: read at the sample's own
        drawn.append(f"{index[sample.block_id]}:{row}:{col}")
        target = np.zeros((size, size), np.uint8)
        if (row + col) % 3 == 0:
            target[: size // 2 + 1] = IGNORE
        return np.zeros((size, size, 3), np.uint8), target

    monkeypatch.setattr(seg_samples, "_image_shape", lambda s: FAKE_SHAPES[s.block_id])
    monkeypatch.setattr(seg_samples, "read_crop", read_crop)
    samples = [SegSample(Path(b), b, "a", "Planting", None, -1) for b in FAKE_SHAPES]
    return samples, drawn


@pytest.fixture(scope="module")
def labels_root(tmp_path_factory):
    """Three labelled blocks: one of the original labels, one of al round 1 and one of al round 2."""
    root = tmp_path_factory.mktemp("ft_labels")
    rng = np.random.default_rng(3)
    for i, al_round in enumerate([None, 1, 2]):
        block = Block(BLOCK.ix + i, BLOCK.iy)
        mosaic, truth = synthetic_block(rng, block)
        extra = {"world": {"seed": 7}, **({"al": {"round": al_round}} if al_round is not None else {})}
        write_labelled_block(root, block, {"a": mosaic}, truth, {"a": "Planting"}, "world seed 7", extra=extra)
    return root


@pytest.fixture(scope="module")
def init_ckpt(tmp_path_factory):
    """A checkpoint of a custom arch (not in configs/models.yaml) with its own normalisation."""
    torch.manual_seed(123)
    path = tmp_path_factory.mktemp("ft_init") / "ck"
    meta = {"kind": "segmentation", "name": "tiny-custom", "arch": TINY.arch, "classes": list(CLASSES),
            "normalisation": INIT_NORM, "input": {"size": 64, "overlap": 16, "channels": ["red", "green", "blue"]},
            "training": {"steps_done": 7}}  # fmt: skip
    return save_checkpoint(path, build_model(TINY.arch), meta)


def _distance(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """L2 distance of the parameters (not buffers: batch-norm statistics move in any training step)."""
    pb = dict(b.named_parameters())
    with torch.no_grad():  # a number, not part of any graph
        return float(sum((p - pb[k]).norm() ** 2 for k, p in a.named_parameters()) ** 0.5)


# ---------------------------------------------------------------------------------------------- fine-tune
def test_fine_tune_keeps_arch_and_normalisation_and_starts_from_the_init(tmp_path, labels_root, init_ckpt):
    cfg = SegTrainConfig(**TINY_STEPS, lr=1e-5, recent_weight=4.0)
    fine_tune_seg(init_ckpt, [labels_root], tmp_path / "ft", cfg)
    init_meta = json.loads((init_ckpt / "checkpoint.json").read_text())
    meta = json.loads((tmp_path / "ft" / "checkpoint.json").read_text())
    assert meta["arch"] == init_meta["arch"] and meta["name"] == "tiny-custom"
    assert meta["input"] == init_meta["input"] and meta["normalisation"] == INIT_NORM
    training = meta["training"]
    assert training["init"]["checkpoint"] == str(init_ckpt) and training["init"]["name"] == "tiny-custom"
    assert training["init"]["sha256"] == init_meta["sha256"] == sha256_file(init_ckpt / "weights.safetensors")
    assert training["steps"] == training["steps_done"] == 2 and training["config"]["arch"] == "tiny-custom"
    newest = Block(BLOCK.ix + 2, BLOCK.iy).id
    assert training["weighting"] == {"rule": "blocks of al round 2 weigh 4, others 1", "weights": {newest: 4.0}}

    # from scratch, the same settings start elsewhere: a fresh network and normalisation from the crops
    train_seg(find_samples([labels_root]), tmp_path / "scratch", cfg, spec=TINY)
    init = load_checkpoint(init_ckpt, "segmentation").model
    tuned = load_checkpoint(tmp_path / "ft", "segmentation").model
    scratch = load_checkpoint(tmp_path / "scratch", "segmentation")
    assert 0 < _distance(tuned, init) < 0.02 * _distance(scratch.model, init)
    assert scratch.meta["normalisation"] != INIT_NORM and scratch.meta["training"]["init"] is None


def test_interrupted_fine_tune_resumes_bit_exact(tmp_path, labels_root, init_ckpt):
    cfg = SegTrainConfig(**{**TINY_STEPS, "steps": 4}, recent_weight=5.0, prefetch=2)
    fine_tune_seg(init_ckpt, [labels_root], tmp_path / "full", cfg)

    class Stop(Exception):
        pass

    def stop(record):
        raise Stop

    with pytest.raises(Stop):
        fine_tune_seg(init_ckpt, [labels_root], tmp_path / "part", cfg, on_validate=stop)
    spec = init_spec(load_init(init_ckpt))
    train_seg(find_samples([labels_root]), tmp_path / "part", cfg, resume=True, spec=spec)
    a = load_checkpoint(tmp_path / "full", "segmentation")
    b = load_checkpoint(tmp_path / "part", "segmentation")
    assert all(torch.equal(a.model.state_dict()[k], v) for k, v in b.model.state_dict().items())
    assert b.meta["training"]["init"] == a.meta["training"]["init"]  # a resumed fine-tune still names its init
    assert b.meta["training"]["weighting"] == a.meta["training"]["weighting"]


def test_a_packaged_init_is_checked_against_the_arch_asked_for():
    ckpt = load_init("seg-default")
    spec = init_spec(ckpt)
    registry = load_model_registry()
    assert spec.arch == registry["seg-m2f-tiny"].arch and spec.input == registry["seg-m2f-tiny"].input
    check_init_arch("seg-m2f-tiny", ckpt, spec)
    with pytest.raises(CheckpointError, match=r"'seg-m2f-r50' differs from 'seg-m2f-tiny'.*num_queries"):
        check_init_arch("seg-m2f-r50", ckpt, spec)


# ---------------------------------------------------------------------------------------------- weights
def test_uniform_weights_draw_the_recorded_sequence(fake_images):
    samples, drawn = fake_images
    for seed, recorded in RECORDED.items():
        cfg = SegTrainConfig(batch_size=3, seed=seed)
        for weights in (None, [1.0] * 4, [3.0] * 4):  # equal weights of any size are the uniform draw
            drawn.clear()
            sampler = CropSampler(samples, 64, 0.5, weights=weights)
            for step in range(4):
                make_batch(sampler, step, cfg)
            assert " ".join(drawn) == recorded


def test_weights_steer_the_draws_deterministically(fake_images):
    samples, _ = fake_images

    def shares(weights, n=4000, seed=0):
        sampler = CropSampler(samples, 64, 0.5, weights=weights)
        rng = np.random.default_rng([seed, 1])
        return np.bincount([sampler.draw(rng)[0] for _ in range(n)], minlength=4) / n

    assert shares([1000, 1, 1, 1])[0] > 0.99
    assert np.allclose(shares([3, 1, 1, 2]), [3 / 7, 1 / 7, 1 / 7, 2 / 7], atol=0.03)
    assert np.array_equal(shares([3, 1, 1, 2]), shares([3, 1, 1, 2]))  # the same (seed, step), the same crops
    assert not np.array_equal(shares([3, 1, 1, 2]), shares([3, 1, 1, 2], seed=1))
    with pytest.raises(ValueError, match="weight > 0"):
        CropSampler(samples, 64, 0.5, weights=[1, 0, 1, 1])


def test_sample_weights_from_label_json(labels_root):
    samples = find_samples([labels_root])
    assert [s.al_round for s in samples] == [None, 1, 2]
    ids = [s.block_id for s in samples]
    assert SampleWeights.recent(samples, 6.0).by_block == {ids[2]: 6.0}
    assert SampleWeights.recent(samples, 6.0, al_round=1).by_block == {ids[1]: 6.0}
    assert SampleWeights.recent(samples, 1.0).rule == "uniform"
    assert SampleWeights.recent(samples[:1], 6.0).by_block == {}  # no al round among the labels
    explicit = SampleWeights.explicit({ids[0]: 2, ids[1]: 1})
    assert explicit.by_block == {ids[0]: 2.0} and explicit.of(ids[2]) == 1.0
    with pytest.raises(ValueError, match="finite numbers > 0"):
        SampleWeights.explicit({ids[0]: float("nan")})


# ---------------------------------------------------------------------------------------------- command
def test_command_refuses_init_with_resume_or_another_arch(tmp_path, labels_root, init_ckpt):
    runner = CliRunner()
    base = ["train", "seg", "--init", str(init_ckpt), "--labels", str(labels_root), "--out", str(tmp_path / "o")]
    r = runner.invoke(cli, [*base, "--resume"])
    assert r.exit_code == 2 and "--init" in r.output and "--resume" in r.output
    r = runner.invoke(cli, [*base, "--arch", "seg-m2f-tiny"])
    assert r.exit_code == 2 and "'seg-m2f-tiny'" in r.output and "'tiny-custom'" in r.output
    assert not (tmp_path / "o").exists()
    r = runner.invoke(cli, [*base[:3], str(tmp_path / "nowhere"), *base[4:]])
    assert r.exit_code == 2 and "not found" in r.output


def test_command_fine_tunes_with_the_recipe(tmp_path, labels_root, init_ckpt):
    out = tmp_path / "ft"
    r = CliRunner().invoke(cli, ["train", "seg", "--init", str(init_ckpt), "--labels", str(labels_root),
                                 "--out", str(out), "--steps", "2", "--batch-size", "2"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "fine-tuned tiny-custom 2 steps on 3 images of 3 blocks or chips (blocks of al round 2 weigh 3" in r.output
    training = json.loads((out / "checkpoint.json").read_text())["training"]
    assert training["config"]["lr"] == 1e-4 and training["config"]["warmup_steps"] == 20  # the recipe's
    assert training["steps_done"] == 2 and training["init"]["name"] == "tiny-custom"
    assert training["labels"] == [str(labels_root.resolve())]


def test_a_calibrated_init_gives_a_recalibrated_fine_tune(tmp_path, labels_root, init_ckpt):
    cfg = SegTrainConfig(**TINY_STEPS, lr=1e-5)
    plain = fine_tune_seg(init_ckpt, [labels_root], tmp_path / "plain", cfg).checkpoint
    assert "decision" not in json.loads((plain / "checkpoint.json").read_text())  # seg-default's campaigns: as before

    calibrated = tmp_path / "init_cal"
    shutil.copytree(init_ckpt, calibrated)
    update_checkpoint_meta(calibrated, {"decision": {"threshold": 0.725, "labels": ["somewhere"]}})
    out = fine_tune_seg(calibrated, [labels_root], tmp_path / "ft", cfg, val_roots=[labels_root]).checkpoint
    decision = json.loads((out / "checkpoint.json").read_text())["decision"]
    assert decision["labels"] == [str(labels_root)] and decision["images"] == 3  # chosen again, on its validation
    assert "inherited_from" not in decision and 0.2 <= decision["threshold"] <= 0.8

    # nothing held out to choose on: the init's threshold is kept, and says where it came from
    kept = fine_tune_seg(calibrated, [labels_root], tmp_path / "kept", cfg).checkpoint
    decision = json.loads((kept / "checkpoint.json").read_text())["decision"]
    assert decision["threshold"] == 0.725 and decision["inherited_from"] == str(calibrated)
