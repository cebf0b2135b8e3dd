"""Cropland segmentation: the Mask2Former from configs, windows and blending, block inference, outputs,
training (targets, empty windows, resume), checkpoints and evaluation."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from mapper.cli import cli
from mapper.grid.blocks import Block
from mapper.imagery.mosaic import BlockMosaic, write_mosaic
from mapper.labels.store import IGNORE, LabelError, write_labelled_block
from mapper.models import CheckpointError, load_checkpoint, load_model_registry
from mapper.models.archs import Mask2FormerArch
from mapper.models.checkpoint import save_checkpoint
from mapper.models.registry import ModelSpec, parse_registry
from mapper.seg.evaluate import evaluate_samples, read_sample
from mapper.seg.model import CLASSES, build_model, cropland_probability, mask2former_config
from mapper.seg.predict import NODATA, Segmenter, read_prediction, write_prediction
from mapper.seg.samples import CropSampler, crop_targets, find_samples
from mapper.seg.train import SegTrainConfig, iou_counts, pixel_metrics, train_seg
from mapper.seg.windows import BlendedProbability, block_windows, window_starts
from tests.fakes import ExplodingNet

TINY = ModelSpec(
    name="tiny-seg",
    kind="segmentation",
    arch={
        "backbone": {"model_type": "resnet", "embedding_size": 8, "hidden_sizes": [8, 16, 16, 16],
                     "depths": [1, 1, 1, 1], "layer_type": "basic"},
        "feature_size": 32, "mask_feature_size": 32, "hidden_dim": 16, "encoder_feedforward_dim": 32,
        "encoder_layers": 1, "decoder_layers": 2, "num_attention_heads": 2, "dim_feedforward": 32,
        "num_queries": 4, "train_num_points": 256,
    },
    input={"size": 64, "overlap": 16},
)  # fmt: skip
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BLOCK = Block.containing(10.02, 0.02)  # at the equator: 2330 × 2330 px


def tiny_segmenter(seed=0, batch_size=4) -> Segmenter:
    torch.manual_seed(seed)
    return Segmenter(build_model(TINY.arch).eval(), 64, 16, (0.4, 0.4, 0.4), (0.2, 0.2, 0.2), batch_size)


def synthetic_block(rng, block=BLOCK, nodata_cols=0):
    """A block mosaic with striped 'fields' (cropland) on a noisy green background, and its truth."""
    w = block.window()
    h, wd = w.shape
    truth = np.zeros((h, wd), np.uint8)
    rgb = np.clip(rng.normal((70, 100, 60), 15, (h, wd, 3)), 0, 255).astype(np.uint8)
    for _ in range(40):
        r, c = rng.integers(0, h - 300), rng.integers(0, wd - 300)
        fh, fw = rng.integers(80, 300, 2)
        truth[r : r + fh, c : c + fw] = 1
    rows = np.arange(h)[:, None] % 8 < 4
    field = np.where(rows, 150, 110).astype(np.uint8)
    rgb[truth == 1] = np.stack([field, field - 20, field - 60], -1).repeat(wd, 1)[truth == 1]
    valid = np.ones((h, wd), bool)
    valid[:, :nodata_cols] = False
    rgb[~valid] = 0
    return BlockMosaic(w, rgb, valid, block_id=block.id), truth


@pytest.fixture(scope="module")
def labels_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg_labels")
    rng = np.random.default_rng(0)
    for i, block in enumerate([BLOCK, Block(BLOCK.ix + 1, BLOCK.iy)]):
        mosaic, truth = synthetic_block(rng, block, nodata_cols=300 * i)
        write_labelled_block(root, block, {"a": mosaic}, truth, {"a": "Planting"}, "world seed 7",
                             extra={"world": {"seed": 7}})  # fmt: skip
    return root


# ---------------------------------------------------------------------------------------------- model
def test_registry_variants_are_the_published_mask2formers():
    registry = load_model_registry()
    names = {n for n, s in registry.items() if s.kind == "segmentation"}
    assert {"seg-m2f-tiny", "seg-m2f-r50", "seg-m2f-swin-t", "seg-m2f-swin-l"} <= names
    swin_l = mask2former_config(registry["seg-m2f-swin-l"].arch)
    assert swin_l.backbone_config.model_type == "swin" and swin_l.backbone_config.embed_dim == 192
    assert swin_l.num_labels == 2 and swin_l.id2label == dict(enumerate(CLASSES))
    r50 = mask2former_config(registry["seg-m2f-r50"].arch)
    assert r50.backbone_config.depths == [3, 4, 6, 3] and r50.num_queries == 100
    tiny = build_model(registry["seg-m2f-tiny"].arch)
    assert 2e6 < sum(p.numel() for p in tiny.parameters()) < 5e6
    assert registry["seg-m2f-tiny"].input.overlap == 64


def test_arch_schema_counts_the_classes():
    # the schema lives in mapper.models.archs, below seg/: its default must stay the classes' count
    assert Mask2FormerArch.model_fields["num_labels"].default == len(CLASSES)


def test_registry_names_a_misspelt_arch_key():
    entry = {"kind": "segmentation", "arch": {"backbone": TINY.arch["backbone"], "num_querys": 4},
             "input": {"size": 64}}  # fmt: skip
    with pytest.raises(ValueError, match=r"unknown key 'arch\.num_querys'"):
        parse_registry({"models": {"bad": entry}})
    with pytest.raises(ValueError, match="multiples of 32"):
        parse_registry({"models": {"bad": {**entry, "arch": {**TINY.arch, "feature_size": 48}}}})
    with pytest.raises(ValueError, match="overlap"):
        parse_registry({"models": {"bad": {**entry, "arch": TINY.arch, "input": {"size": 64, "overlap": 40}}}})


def test_probability_is_mask2former_semantic_inference_at_full_resolution():
    torch.manual_seed(0)
    masks = torch.randn(2, 4, 16, 16)
    classes = torch.randn(2, 4, 3)
    p = cropland_probability(masks, classes, (64, 64))
    assert p.shape == (2, 64, 64)
    up = torch.nn.functional.interpolate(masks, size=(64, 64), mode="bilinear", align_corners=False).sigmoid()
    cls = classes.softmax(-1)[..., :2]
    sem = torch.einsum("bqc,bqhw->bchw", cls, up)
    assert torch.allclose(p, sem[:, 1] / sem.sum(1), atol=1e-6)


# ---------------------------------------------------------------------------------------------- windows
@pytest.mark.parametrize("length", [1, 63, 64, 65, 200, 2330, 2531])
def test_windows_cover_the_block_with_the_last_one_flush(length):
    starts = window_starts(length, 64, 16)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s : s + 64] = True
    assert covered.all()
    assert starts[-1] == max(0, length - 64)
    assert all(b - a <= 48 for a, b in itertools.pairwise(starts))


def test_blending_reproduces_a_smooth_field_without_seams():
    h, w = 150, 170
    field = np.add.outer(np.linspace(0, 0.5, h), np.linspace(0, 0.5, w)).astype(np.float32)
    blend = BlendedProbability(h, w, 16)
    for win in block_windows(h, w, 64, 16):
        blend.add(win, field[win.row : win.row + 64, win.col : win.col + 64])
    assert np.allclose(blend.result(), field, atol=1e-6)
    # different values in neighbouring windows cross-fade monotonically over the overlap
    blend = BlendedProbability(64, 112, 16)
    wins = block_windows(64, 112, 64, 16)
    assert [w.col for w in wins] == [0, 48]
    blend.add(wins[0], np.zeros((64, 64), np.float32))
    blend.add(wins[1], np.ones((64, 64), np.float32))
    row = blend.result()[10]
    assert (row[:48] == 0).all() and (row[64:] == 1).all()
    assert (np.diff(row[47:65]) > 0).all()


# ---------------------------------------------------------------------------------------------- inference
def test_windows_from_many_blocks_batch_together_with_the_same_result():
    rng = np.random.default_rng(1)
    mosaics = [(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), None) for h, w in [(130, 90), (40, 50), (200, 64)]]
    one = tiny_segmenter(batch_size=1)
    many = tiny_segmenter(batch_size=7)
    a = list(one.predict(enumerate(mosaics)))
    b = list(many.predict(enumerate(mosaics)))
    assert [k for k, _ in b] == [0, 1, 2]
    for (_, ra), (_, rb), (rgb, _) in zip(a, b, mosaics, strict=True):
        assert ra.probability.shape == rgb.shape[:2]
        assert np.allclose(ra.probability, rb.probability, atol=1e-5)
        assert ra.windows_run == len(block_windows(*rgb.shape[:2], 64, 16))


def test_nodata_pixels_and_empty_blocks():
    seg = tiny_segmenter()
    rgb = np.full((100, 100, 3), 120, np.uint8)
    valid = np.ones((100, 100), bool)
    valid[:, :30] = False
    r = seg.predict_one((rgb, valid))
    assert np.isnan(r.probability[:, :30]).all() and not np.isnan(r.probability[:, 30:]).any()
    assert (r.mask[:, :30] == NODATA).all() and set(np.unique(r.mask[:, 30:])) <= {0, 1}
    empty = Segmenter(ExplodingNet(), 64, 16, (0.4,) * 3, (0.2,) * 3)
    out = empty.predict_one((np.zeros((80, 80, 3), np.uint8), np.zeros((80, 80), bool)))
    assert (out.mask == NODATA).all() and out.windows_run == 0


def test_bad_images_are_clear_errors():
    seg = Segmenter(ExplodingNet(), 64, 16, (0.4,) * 3, (0.2,) * 3)
    for rgb in (np.zeros((40, 40, 4), np.uint8), np.zeros((40, 40, 3), np.float32), np.zeros((40, 40), np.uint8)):
        with pytest.raises(ValueError, match="uint8"):
            seg.predict_one(rgb)


def test_prediction_geotiff_is_on_the_block_grid(tmp_path):
    mosaic, _ = synthetic_block(np.random.default_rng(2), nodata_cols=100)
    prob = np.random.default_rng(3).random(mosaic.valid.shape).astype(np.float32)
    prob[~mosaic.valid] = np.nan
    from mapper.seg.predict import SegResult

    res = SegResult(prob, mosaic.valid)
    path = write_prediction(res, mosaic.window, tmp_path / "p.tif", block_id=BLOCK.id)
    write_mosaic(mosaic, tmp_path / "m.tif")
    with rasterio.open(path) as p, rasterio.open(tmp_path / "m.tif") as m:
        assert p.crs == m.crs and p.transform == m.transform and p.shape == m.shape
        assert p.count == 2 and p.dtypes == ("uint8", "uint8") and p.nodata == NODATA
        assert p.descriptions == ("cropland", "probability") and p.scales == (1.0, 1 / 250)
    mask, back = read_prediction(path)
    assert (mask == res.mask).all()
    ok = mosaic.valid
    assert np.abs(back[ok] - prob[ok]).max() <= 0.5 / 250 + 1e-6 and np.isnan(back[~ok]).all()
    with pytest.raises(ValueError, match="does not fit"):
        write_prediction(SegResult(prob[:10], mosaic.valid[:10]), mosaic.window, tmp_path / "x.tif")


# ---------------------------------------------------------------------------------------------- training
def test_targets_keep_background_and_leave_ignored_pixels_out():
    t = np.zeros((8, 8), np.uint8)
    masks, classes = crop_targets(t)  # no cropland: the background alone, never an empty target set
    assert classes.tolist() == [0] and masks.shape == (1, 8, 8) and masks.sum() == 64
    t[:, :4] = 1
    t[:2] = IGNORE
    masks, classes = crop_targets(t)
    assert classes.tolist() == [0, 1]
    assert masks[:, :2].sum() == 0 and masks.sum() == 48  # ignored pixels belong to no mask


def test_training_on_crops_without_cropland_runs(tmp_path, labels_root):
    samples = find_samples([labels_root])
    cfg = SegTrainConfig(steps=2, batch_size=2, val_every=2, val_crops=2, warmup_steps=1)
    rgb, target = CropSampler(samples, 64, 0.5).crop(np.random.default_rng(0))
    assert rgb.shape == (64, 64, 3) and target.shape == (64, 64)
    torch.manual_seed(0)  # a batch whose crops have no cropland at all: background targets only
    model = build_model(TINY.arch)
    out = model(pixel_values=torch.randn(2, 3, 64, 64), mask_labels=[torch.zeros(1, 64, 64)] * 2,
                class_labels=[torch.tensor([0])] * 2)  # fmt: skip
    assert torch.isfinite(out.loss)
    result = train_seg(samples, tmp_path / "ck", cfg, val=samples, spec=TINY)
    assert result.history[-1]["step"] == 2 and result.metrics is not None


def test_all_ignored_labels_are_a_clear_error(tmp_path):
    mosaic, truth = synthetic_block(np.random.default_rng(4))
    write_labelled_block(tmp_path, BLOCK, {"a": mosaic}, np.full_like(truth, IGNORE), {"a": "Planting"}, "human")
    sampler = CropSampler(find_samples([tmp_path]), 64, 0.5, tries=3)
    with pytest.raises(LabelError, match="no crop with labelled pixels"):
        sampler.crop(np.random.default_rng(0))


def test_resumed_training_ends_where_the_uninterrupted_run_does(tmp_path, labels_root):
    samples = find_samples([labels_root])
    cfg = SegTrainConfig(steps=4, batch_size=2, val_every=2, val_crops=2, warmup_steps=1, prefetch=2)
    train_seg(samples, tmp_path / "full", cfg, val=samples, spec=TINY)

    class Stop(Exception):
        pass

    def stop(record):
        raise Stop

    with pytest.raises(Stop):
        train_seg(samples, tmp_path / "part", cfg, val=samples, spec=TINY, on_validate=stop)
    meta = json.loads((tmp_path / "part" / "checkpoint.json").read_text())
    assert meta["training"]["steps_done"] == 2 and "train_state.safetensors" in meta["extra_files"]
    with pytest.raises(CheckpointError, match="--resume"):
        train_seg(samples, tmp_path / "part", cfg, spec=TINY)
    train_seg(samples, tmp_path / "part", cfg, val=samples, spec=TINY, resume=True)
    a = load_checkpoint(tmp_path / "full", "segmentation").model.state_dict()
    b = load_checkpoint(tmp_path / "part", "segmentation").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    meta = json.loads((tmp_path / "part" / "checkpoint.json").read_text())
    assert meta["training"]["complete"] and not meta["extra_files"]
    assert meta["input"] == {"size": 64, "overlap": 16, "channels": ["red", "green", "blue"]}


def test_a_checkpoint_of_another_config_fails_clearly(tmp_path):
    model = build_model(TINY.arch)
    meta = {"kind": "segmentation", "arch": TINY.arch, "classes": list(CLASSES),
            "normalisation": {"mean": [0.4] * 3, "std": [0.2] * 3}, "input": {"size": 64, "overlap": 16}}  # fmt: skip
    save_checkpoint(tmp_path / "ck", model, meta)
    other = {**TINY.arch, "num_queries": 8}
    with pytest.raises(CheckpointError, match="num_queries"):
        load_checkpoint(tmp_path / "ck", "segmentation", expect_arch=other)
    with pytest.raises(CheckpointError, match="not 'iqa'"):
        load_checkpoint(tmp_path / "ck", "iqa")


# ---------------------------------------------------------------------------------------------- evaluation
def test_pixel_metrics_count_only_labelled_pixels():
    prob = np.array([[0.9, 0.9, 0.1, 0.1], [0.9, 0.1, 0.9, 0.6]], np.float32)
    target = np.array([[1, 0, 1, 0], [IGNORE, IGNORE, 0, 1]], np.uint8)
    counts = iou_counts(prob, target)
    assert counts.tolist() == [2, 2, 1, 1]  # tp, fp, fn, tn
    m = pixel_metrics(counts)
    assert m["iou"] == pytest.approx(2 / 5) and m["precision"] == 0.5 and m["recall"] == pytest.approx(2 / 3)
    assert pixel_metrics(np.zeros(4, np.int64))["iou"] is None


def test_evaluation_predicts_whole_images_and_rejects_bad_masks(tmp_path, labels_root):
    samples = find_samples([labels_root])
    seg = tiny_segmenter(batch_size=32)
    seg.size, seg.overlap = 512, 64  # fewer windows: the test is about the bookkeeping, not the model
    result = evaluate_samples(seg, samples)
    assert result["images"] == 2 and result["world_seeds"] == [7]
    assert sum(result["counts"].values()) == result["pixels"] == 2330 * 2330 * 2 - 300 * 2330
    bad = tmp_path / "bad"
    mosaic, truth = synthetic_block(np.random.default_rng(5))
    d = write_labelled_block(bad, BLOCK, {"a": mosaic}, truth, {"a": "Planting"}, "human")
    with rasterio.open(d / "mask.tif", "r+") as dst:
        m = dst.read(1)
        m[0, :10] = 7
        dst.write(m, 1)
    with pytest.raises(LabelError, match=r"values other than 0.*7 \(10 px\)"):
        read_sample(find_samples([bad])[0])


@pytest.mark.slow
def test_segment_and_evaluate_commands(tmp_path, labels_root):
    model = build_model(TINY.arch)
    meta = {"kind": "segmentation", "arch": TINY.arch, "classes": list(CLASSES),
            "normalisation": {"mean": [0.4] * 3, "std": [0.2] * 3},
            "input": {"size": 256, "overlap": 32}, "training": {"world_seeds": [7]}}  # fmt: skip
    save_checkpoint(tmp_path / "ck", model, meta)
    runner = CliRunner()
    r = runner.invoke(cli, ["segment", "--mosaic", str(labels_root / BLOCK.id / "image_a.tif"),
                            "--checkpoint", str(tmp_path / "ck"), "--out", str(tmp_path / "seg"), "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    predicted = tmp_path / "seg" / BLOCK.id / "image_a.tif"
    with rasterio.open(predicted) as p, rasterio.open(labels_root / BLOCK.id / "mask.tif") as m:
        assert p.transform == m.transform and p.crs == m.crs and p.count == 2
    r = runner.invoke(cli, ["evaluate", "seg", "--checkpoint", str(tmp_path / "ck"), "--labels", str(labels_root),
                            "--json", "--overlays", str(tmp_path / "ov"), "--n-overlays", "1"])  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout[r.stdout.index("{") :])
    assert out["images"] == 2 and 0 <= out["iou"] <= 1 and len(out["overlays"]) == 1
    assert "trained on" in r.stderr or "not a held-out" in r.stderr
    import cv2

    assert cv2.imread(out["overlays"][0]).shape[1] > 1000


# ---------------------------------------------------------------------------------------------- packaged model
NAIP = SHARED_DATA / "imagery" / "naip_nd" / "m_4709963_se_14_1_20200831.tif"


@pytest.mark.slow
def test_default_model_segments_real_naip_imagery_on_the_right_grid(tmp_path):
    """End to end on real pixels (USDA NAIP, North Dakota farmland, EPSG:26914 warped to the z16 grid)."""
    from mapper.imagery.mosaic import mosaic_block
    from mapper.imagery.rasterfile import RasterFileSource, RasterFileSourceConfig

    cfg = tmp_path / "naip.yaml"
    cfg.write_text(f"sources:\n  naip:\n    kind: raster\n    paths: ['{NAIP}']\n")
    lon, lat = -99.155, 47.02
    r = CliRunner().invoke(cli, ["segment", "--config", str(cfg), "--source", "naip", "--at", f"{lon},{lat}",
                                 "--out", str(tmp_path / "seg"), "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    block = Block.containing(lon, lat)
    with rasterio.open(tmp_path / "seg" / "naip" / f"{block.id}.tif") as p:
        assert p.crs.to_epsg() == 3857 and p.transform == block.window().transform
        assert p.shape == block.window().shape
        mask = p.read(1)
    mosaic = mosaic_block(RasterFileSource("naip", RasterFileSourceConfig(paths=[NAIP])), block)
    assert ((mask != NODATA) == mosaic.valid).all()  # predicted exactly where the scene has imagery
    share = (mask == 1).sum() / (mask != NODATA).sum()
    assert 0 < share < 1  # a real answer, not a constant (the packaged model knows only the simulated world)


@pytest.mark.slow
def test_default_model_on_a_fresh_block_of_a_held_out_world():
    """The packaged model (trained on world seed 0) on a farmland block of world seed 1, rendered afresh."""
    from mapper.imagery.mosaic import mosaic_block
    from mapper.seg.predict import load_segmenter
    from mapper.world.source import WorldTileSource
    from mapper.world.truth import block_truth
    from mapper.world.world import get_world

    seg = load_segmenter()
    assert seg.meta["training"]["world_seeds"] == [0] and (seg.size, seg.overlap) == (256, 64)
    block = Block.containing(113.6, 34.5)  # Henan plain
    mosaic = mosaic_block(WorldTileSource("demo-a", 1, "a"), block)
    truth = block_truth(get_world(1), block).cropland.astype(np.uint8)
    truth[~mosaic.valid] = IGNORE
    result = seg.predict_one(mosaic)
    assert truth.mean() > 0.2  # the block is farmland
    assert pixel_metrics(iou_counts(np.nan_to_num(result.probability), truth))["iou"] >= 0.85
