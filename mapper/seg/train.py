"""Training the cropland segmentation network on labelled blocks (paper Sect. 3.2, 4.2).

Samples, their weights and crop targets are in mapper.seg.samples.

**Schedule.** AdamW, linear warm-up then polynomial decay per step, gradient clipping; bf16 autocast on
CUDA. Augmentation: flips, 90° rotations, brightness, per-channel gain and contrast jitter. Everything
random about step `s` (which crops, their augmentation, the loss's point sampling) is seeded by
(seed, s), so a resumed run ends where the uninterrupted one would.

**Validation and checkpoints.** Every `val_every` steps: pixel IoU of cropland on a fixed set of crops from
held-out blocks (`--val-labels`, or `val_fraction` of the blocks), then a checkpoint with the optimizer
state beside it; `resume=True` continues after the last checkpointed step.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field, field_validator

from mapper.config.loader import load_settings
from mapper.config.models import StrictModel
from mapper.labels.store import IGNORE
from mapper.models.training import (
    TRAIN_STATE,
    AugmentConfig,
    check_resumable,
    lr_factor,
    optimizer_tensors,
    restore_optimizer,
    torch_device,
)
from mapper.seg.model import CHANNELS, CLASSES, build_model
from mapper.seg.samples import SEGMENTED_COVERAGE, CropSampler, SampleWeights, SegSample, augment_crop, crop_targets
from mapper.world.conditions import COVERAGE_NAMES

if TYPE_CHECKING:
    from mapper.models.checkpoint import Checkpoint
    from mapper.models.registry import ModelSpec

log = logging.getLogger(__name__)



class SegTrainConfig(StrictModel):
    """Hyper-parameters of `mapper train seg` (YAML via --config; CLI options override)."""

    arch: str = "seg-m2f-tiny"
    steps: int = Field(2000, ge=1)
    batch_size: int = Field(8, ge=1)
    crop: int | None = Field(None, ge=32)  # crop size in px; default: the arch's window size
    lr: float = Field(4e-4, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    warmup_steps: int = Field(50, ge=0)
    poly_power: float = Field(0.9, gt=0)
    grad_clip: float = Field(1.0, gt=0)
    coverage: list[str] = Field(default_factory=lambda: list(SEGMENTED_COVERAGE), min_length=1)
    min_labelled: float = Field(0.5, gt=0, le=1)
    augment: AugmentConfig = AugmentConfig(brightness=0.1, channel_gain=0.05, contrast=0.1)
    val_fraction: float = Field(0.1, ge=0, lt=1)
    val_every: int = Field(250, ge=1)
    val_crops: int = Field(32, ge=1)
    prefetch: int = Field(4, ge=1)
    seed: int = 0
    # draw weight of the blocks of the newest active-learning round present (label.json "al": {"round": k})
    recent_weight: float = Field(1.0, gt=0, allow_inf_nan=False)
    # The model's pixel size in ground metres: every crop is resampled to it (mapper.seg.resample) and the
    # checkpoint records it, so inference resamples other imagery to it. None: each sample at its own pixel
    # size (only for blocks alone, as every model before pixel sizes existed; a fine-tune keeps its init's).
    gsd_m: float | None = Field(None, ge=0.05, le=100)
    # Random scale of each crop's ground size (log-uniform in [low, high]): a model that has seen 0.8-1.25×
    # copes with imagery whose declared pixel size is a little off.
    scale: tuple[float, float] = (1.0, 1.0)

    @field_validator("scale")
    @classmethod
    def _scale_range(cls, v):
        if not (0.25 <= v[0] <= v[1] <= 4.0):
            raise ValueError(f"scale {list(v)} must be [low, high] with 0.25 <= low <= high <= 4")
        return v

    @field_validator("coverage")
    @classmethod
    def _known_coverage(cls, v):
        bad = [c for c in v if c not in COVERAGE_NAMES]
        if bad:
            raise ValueError(f"unknown coverage type(s) {bad}; one of: {', '.join(COVERAGE_NAMES)}")
        return v


def load_seg_train_config(path: Path | str | None = None, **overrides) -> SegTrainConfig:
    """SegTrainConfig from a YAML file, with non-None overrides applied; a ConfigError names an unknown or
    invalid key."""
    return load_settings(SegTrainConfig, path, **overrides)


@dataclass
class Batch:
    step: int
    x: Any  # (B, 3, S, S) float32 in [0, 255]
    masks: list
    classes: list


def make_batch(sampler: CropSampler, step: int, cfg: SegTrainConfig) -> Batch:
    import torch

    rng = np.random.default_rng([cfg.seed, step])
    xs, masks, classes = [], [], []
    for _ in range(cfg.batch_size):
        rgb, target = augment_crop(*sampler.crop(rng), rng, cfg.augment)
        m, c = crop_targets(target)
        xs.append(np.moveaxis(rgb, -1, 0))
        masks.append(m)
        classes.append(c)
    return Batch(step, torch.from_numpy(np.stack(xs)), masks, classes)


class Prefetcher:
    """Batches for steps start, start+1, … made by a background thread, `depth` ahead of the loop."""

    def __init__(self, make: Callable[[int], Batch], start: int, stop: int, depth: int):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self.waited = 0.0
        self._thread = threading.Thread(target=self._work, args=(make, start, stop), daemon=True)
        self._thread.start()

    def _work(self, make, start, stop):
        for step in range(start, stop):
            if self._stop.is_set():
                return
            try:
                item = make(step)
            except BaseException as e:  # handed to the loop, which re-raises it
                item = e
            while not self._stop.is_set():
                try:
                    self._q.put(item, timeout=0.5)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return

    def get(self) -> Batch:
        t = time.perf_counter()
        item = self._q.get()
        self.waited += time.perf_counter() - t
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# ---------------------------------------------------------------------------------------------- metrics
def iou_counts(prob: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """[tp, fp, fn, tn] pixel counts of cropland (prob > threshold) against a 0/1/255 target (255 ignored)."""
    lab = target != IGNORE
    pred = (prob > threshold) & lab
    truth = (target == 1) & lab
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred & ~truth))
    fn = int(np.count_nonzero(~pred & truth))
    return np.array([tp, fp, fn, int(np.count_nonzero(lab)) - tp - fp - fn], np.int64)


def pixel_metrics(counts: np.ndarray) -> dict:
    """IoU, precision, recall, F1 and accuracy of cropland from pooled [tp, fp, fn, tn]."""
    tp, fp, fn, tn = (int(v) for v in counts)

    def ratio(a, b):
        return a / b if b else None

    return {
        "iou": ratio(tp, tp + fp + fn),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": ratio(tp + tn, tp + fp + fn + tn),
        "pixels": tp + fp + fn + tn,
        "counts": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }


def validation_crops(samples: Sequence[SegSample], n: int, size: int, seed: int, gsd_m: float | None = None
                     ) -> list[tuple]:  # fmt: skip
    sampler = CropSampler(samples, size, min_labelled=0.5, gsd_m=gsd_m)
    rng = np.random.default_rng([seed, 23])
    return [sampler.crop(rng) for _ in range(n)]


def crops_iou(segmenter, crops: Sequence[tuple], batch_size: int = 8) -> dict:
    counts = np.zeros(4, np.int64)
    for i in range(0, len(crops), batch_size):
        rgb = np.stack([c[0] for c in crops[i : i + batch_size]])
        prob = segmenter.window_probabilities(rgb)
        for p, (_, target) in zip(prob, crops[i : i + batch_size], strict=True):
            counts += iou_counts(p, target)
    return pixel_metrics(counts)


# ---------------------------------------------------------------------------------------------- training
@dataclass
class SegTrainResult:
    checkpoint: Path
    history: list[dict]
    metrics: dict | None  # the last validation
    seconds: float


def check_output(out: Path | str, resume: bool, spec: ModelSpec, steps: int) -> None:
    """Before any work: CheckpointError unless `out` is free (new run) or an unfinished segmentation run of
    the same arch and input with steps left (resume)."""
    check_resumable(out, resume, spec, "steps_done", steps, "steps")


def channel_stats(sampler: CropSampler, seed: int, n: int = 32) -> tuple[tuple, tuple]:
    """Per-channel mean and std in [0, 1] over the labelled pixels of n random crops."""
    rng = np.random.default_rng([seed, 29])
    px = []
    for _ in range(n):
        rgb, target = sampler.crop(rng)
        px.append(rgb[target != IGNORE].astype(np.float64) / 255.0)
    x = np.concatenate(px)
    return tuple(float(v) for v in x.mean(axis=0)), tuple(float(max(v, 1e-3)) for v in x.std(axis=0))


def _sample_info(samples: Sequence[SegSample]) -> dict:
    import hashlib

    keys = sorted(f"{s.block_id}/{s.source}" for s in samples)
    return {
        "images": len(samples),
        "blocks": len({s.block_id for s in samples}),
        "images_sha256": hashlib.sha256("\n".join(keys).encode()).hexdigest(),
        "world_seeds": sorted({s.world_seed for s in samples if s.world_seed >= 0}),
    }


def model_gsd(cfg: SegTrainConfig, samples: Sequence[SegSample], init: Checkpoint | None = None,
              resumed: Path | None = None) -> float | None:  # fmt: skip
    """The pixel size the model learns at: the config's, else the init's or the resumed run's; None only when
    every sample is a block (each then seen at its own pixel size, as before pixel sizes were recorded)."""
    from mapper.labels.store import LabelError

    gsd = cfg.gsd_m
    if gsd is None and init is not None:
        gsd = init.meta["input"].get("gsd_m")
    if gsd is None and resumed is not None:
        gsd = json.loads((Path(resumed) / "checkpoint.json").read_text())["input"].get("gsd_m")
    chips = [s for s in samples if s.source == "chip"]
    if gsd is None and chips:
        sizes = sorted({s.gsd_m for s in chips})
        raise LabelError(
            f"{len(chips)} labelled chip(s) at {sizes[0]:g}-{sizes[-1]:g} m per pixel are among the samples; set "
            "the model's pixel size, `gsd_m` in the training config (e.g. 2.0), so every sample is resampled to it"
        )
    return gsd


def _init_record(init: Checkpoint) -> dict:
    """What a fine-tune started from: the checkpoint and the sha256 of its weights (verified when loaded)."""
    training = init.meta.get("training") or {}
    return {
        "checkpoint": str(init.path),
        "name": init.meta.get("name"),
        "sha256": init.meta["sha256"],
        "steps_done": training.get("steps_done"),
    }


def train_seg(
    train: Sequence[SegSample],
    out: Path | str,
    cfg: SegTrainConfig,
    val: Sequence[SegSample] | None = None,
    resume: bool = False,
    device: str | None = None,
    info: dict | None = None,
    on_validate: Callable[[dict], None] | None = None,
    spec: ModelSpec | None = None,
    init: Checkpoint | None = None,
    weights: SampleWeights | Mapping[str, float] | None = None,
) -> SegTrainResult:
    """Train the segmentation network on `train` images, validating on `val`, checkpointing to `out`.

    Without `resume`, an existing `out` is an error; with it, the run continues after its last checkpoint.
    `spec` replaces the registry entry named by cfg.arch; `info` goes into checkpoint.json's training section.
    `init` (a loaded checkpoint of spec's arch) starts from its weights and normalisation instead of a fresh
    network (fine-tuning: mapper.seg.finetune); the optimizer starts afresh either way. `weights` sets how
    often each block is drawn ({block_id: weight}, others 1); default SampleWeights.recent(cfg.recent_weight)."""
    import torch
    import transformers

    from mapper.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from mapper.models.registry import get_model_spec
    from mapper.seg.predict import Segmenter

    out = Path(out)
    spec = spec or get_model_spec(cfg.arch, kind="segmentation")
    crop = cfg.crop or spec.input.size
    check_output(out, resume, spec, cfg.steps)
    if init is not None and resume:
        raise ValueError("a resumed run continues from its own checkpoint; pass init or resume, not both")
    if init is not None and (init.meta["arch"] != spec.arch or init.meta["input"].get("size") != spec.input.size):
        raise CheckpointError(
            f"checkpoint {init.path} is not of arch {spec.name or cfg.arch}; fine-tune it with its own"
        )
    if weights is None:
        weights = SampleWeights.recent(train, cfg.recent_weight)
    elif not isinstance(weights, SampleWeights):
        weights = SampleWeights.explicit(weights)
    dev = torch_device(device)
    t_start = time.perf_counter()
    gsd_m = model_gsd(cfg, train, init, out if resume else None)
    sampler = CropSampler(train, crop, cfg.min_labelled, weights=[weights.of(s.block_id) for s in train],
                          gsd_m=gsd_m, scale=cfg.scale)  # fmt: skip
    init_record = _init_record(init) if init is not None else None
    history: list[dict] = []
    done, prior_seconds = 0, 0.0
    if resume:
        ckpt = load_checkpoint(out, kind="segmentation", expect_arch=spec.arch, load_extra=True)
        meta, model = ckpt.meta, ckpt.model
        training = meta.get("training", {})
        done, history = int(training["steps_done"]), list(training.get("history", []))
        prior_seconds = float(training.get("seconds", 0.0))
        mean, std = tuple(meta["normalisation"]["mean"]), tuple(meta["normalisation"]["std"])
        # a setting or weighting a run recorded before it existed had its default (uniform sampling)
        was = {**SegTrainConfig().model_dump(), **training.get("config", {})}
        changed = {k: (was.get(k), v) for k, v in cfg.model_dump().items() if was.get(k) != v}
        was_weighting = training.get("weighting", SampleWeights({}, "uniform").record())
        if was_weighting != weights.record():
            changed["weighting"] = (was_weighting, weights.record())
        if changed:
            log.warning("resuming %s with changed settings: %s", out, changed)
        init_record = training.get("init")  # a resumed fine-tune still names what it started from
    elif init is not None:
        # The weights were trained on inputs normalised with the init's mean/std: keep them, never recompute.
        model = init.model
        mean, std = tuple(init.meta["normalisation"]["mean"]), tuple(init.meta["normalisation"]["std"])
    else:
        torch.manual_seed(cfg.seed)
        model = build_model(spec.arch)
        mean, std = channel_stats(sampler, cfg.seed)
    model.to(dev)
    cuda = dev.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if resume:
        restore_optimizer(opt, ckpt.extra[TRAIN_STATE], meta["training"]["optimizer_groups"])
    segmenter = Segmenter(model, spec.input.size, spec.input.overlap, mean, std, gsd_m=gsd_m)
    val_set = validation_crops(val, cfg.val_crops, crop, cfg.seed, gsd_m) if val else []
    mean_t = torch.tensor(mean, device=dev).view(1, 3, 1, 1) * 255.0
    std_t = torch.tensor(std, device=dev).view(1, 3, 1, 1) * 255.0
    base_info = {
        "arch_name": spec.name or cfg.arch,
        "config": cfg.model_dump(),
        "crop": crop,
        "world_seeds": _sample_info(train)["world_seeds"],
        "train": _sample_info(train),
        "val": _sample_info(val) if val else None,
        "init": init_record,
        "weighting": weights.record(),
        "device": dev.type,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        **(info or {}),
    }
    prefetch = Prefetcher(lambda s: make_batch(sampler, s, cfg), done, cfg.steps, cfg.prefetch)
    metrics, losses, t_block = None, [], time.perf_counter()
    try:
        for step in range(done, cfg.steps):
            batch = prefetch.get()
            for g in opt.param_groups:
                g["lr"] = cfg.lr * lr_factor(step, cfg.steps, cfg.warmup_steps, cfg.poly_power)
            torch.manual_seed(cfg.seed * 1_000_003 + step)  # the loss's point sampling
            x = (batch.x.to(dev) - mean_t) / std_t
            model.train()
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                outputs = model(
                    pixel_values=x,
                    mask_labels=[m.to(dev) for m in batch.masks],
                    class_labels=[c.to(dev) for c in batch.classes],
                )
            loss = outputs.loss
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training diverged at step {step + 1}: loss {float(loss)}; lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            losses.append(float(loss.detach()))
            finished = step + 1 == cfg.steps
            if (step + 1) % cfg.val_every and not finished:
                continue
            record = {
                "step": step + 1,
                "train_loss": float(np.mean(losses)),
                "lr": opt.param_groups[0]["lr"],
                "seconds": round(time.perf_counter() - t_block, 1),
                "data_wait_seconds": round(prefetch.waited, 1),
            }
            if val_set:
                metrics = crops_iou(segmenter, val_set)
                record["val_iou"] = metrics["iou"]
            history.append(record)
            training = {
                **base_info,
                "steps": cfg.steps,
                "steps_done": step + 1,
                "complete": finished,
                "history": history,
                "metrics": metrics,
                "seconds": round(prior_seconds + time.perf_counter() - t_start, 1),
            }
            opt_tensors, groups = optimizer_tensors(opt)
            if not finished:
                training["optimizer_groups"] = groups
            ckpt_meta = {
                "kind": "segmentation",
                "name": spec.name or cfg.arch,
                "arch": spec.arch,
                "classes": list(CLASSES),
                "normalisation": {"mean": list(mean), "std": list(std)},
                "input": {"size": spec.input.size, "overlap": spec.input.overlap, "channels": list(CHANNELS),
                          **({"gsd_m": gsd_m} if gsd_m is not None else {})},  # none: seen at their own
                "training": training,
            }
            save_checkpoint(out, model, ckpt_meta, None if finished else {TRAIN_STATE: opt_tensors})
            log.info("step %d/%d %s", step + 1, cfg.steps, json.dumps(record))
            if on_validate is not None:
                on_validate(record)
            losses, t_block, prefetch.waited = [], time.perf_counter(), 0.0
    finally:
        prefetch.close()
    return SegTrainResult(out, history, metrics, time.perf_counter() - t_start)
