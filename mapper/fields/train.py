"""Training the field delineation model (mapper.fields.model) on the simulated world's fields.

    cfg = FieldTrainConfig(steps=2000)
    train_fields(cfg, out="models/fields")       a checkpoint directory (kind "fields"), resumable

**Data.** Windows of `window_px` are drawn at random points of farming provinces of world `world_seed` (points
in each province's polygon in turn, kept when at least `min_cropland` of the window is cropland), each rendered
by one of the world's two imageries (a, b, alternately: different seasons, haze and colour), with the
window's field truth (`truth.window_truth`: background / interior / boundary). Pixels without imagery are left
out of the loss. `val_windows` more windows of the same world (other points) choose the checkpoint; models are
judged on world seeds they never saw (benchmarks/fields.py).

**Schedule.** AdamW with warm-up and polynomial decay (mapper.models.training), class-weighted cross-entropy
(boundaries are ~20 % of field pixels and what matters), random crops with flips, 90° rotations and colour
jitter, and a Gaussian blur on some crops (web-map imagery is often softer than the world's sharp pixels: the
segmentation model was found brittle to it). Everything random about step s is seeded by (seed, s), so a
resumed run ends where an uninterrupted one would. Every `val_every` steps: object F1 of the watershed's
instances (extent = the true cropland, fragments under 40 px left out) on the validation windows; the best
is the checkpoint, with the optimizer state of the last step beside it for `resume`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field

from mapper.config.models import StrictModel
from mapper.models.training import AugmentConfig

log = logging.getLogger("mapper.fields.train")

FARMING_PROVINCES = ("Heilongjiang", "Jilin", "Liaoning", "Hebei", "Shandong", "Henan", "Jiangsu", "Anhui", "Hubei",
                     "Hunan", "Jiangxi", "Sichuan", "Chongqing", "Guangdong", "Guangxi", "Yunnan", "Guizhou",
                     "Shaanxi", "Shanxi", "Gansu", "Xinjiang", "Inner Mongolia", "Zhejiang", "Fujian")  # fmt: skip
MIN_EVAL_PX = 40  # fragments left out of the object scores (polygons' sliver area, ~0.02 ha)


class FieldTrainConfig(StrictModel):
    world_seed: int = 0
    provinces: list[str] = Field(default_factory=lambda: list(FARMING_PROVINCES))
    windows: int = Field(320, ge=1)
    val_windows: int = Field(24, ge=1)
    window_px: int = Field(384, ge=64)
    crop_px: int = Field(192, ge=32)
    min_cropland: float = Field(0.3, ge=0, le=1)
    width: int = Field(16, ge=4)
    depth: int = Field(4, ge=2, le=6)
    steps: int = Field(2000, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup: int = Field(100, ge=0)
    power: float = 0.9
    class_weights: list[float] = Field(default_factory=lambda: [1.0, 1.0, 3.0])  # background, interior, boundary
    blur_prob: float = Field(0.3, ge=0, le=1)
    augment: AugmentConfig = AugmentConfig(brightness=0.15, channel_gain=0.08, contrast=0.15)
    val_every: int = Field(250, ge=1)
    inference_size: int = Field(256, ge=32)  # the checkpoint's window for block inference
    inference_overlap: int = Field(32, ge=0)
    seed: int = 0
    threads: int | None = None  # torch threads (None: torch's default)


@dataclass
class Windows:
    rgb: np.ndarray  # (N, S, S, 3) uint8
    classes: np.ndarray  # (N, S, S) uint8 background / interior / boundary
    valid: np.ndarray  # (N, S, S) bool: imagery there
    labels: np.ndarray  # (N, S, S) int32 true field instances (for the object scores)
    where: list[tuple[str, int, int, str]]  # (province, col0, row0, rendering)


def sample_windows(world_seed: int, n: int, size: int, provinces, min_cropland: float, rng) -> Windows:
    """`n` farmland windows of the world with their field truth (module docstring)."""
    from mapper.fields.truth import window_truth
    from mapper.grid.admin import resolve_province
    from mapper.grid.tilegrid import PixelWindow, lonlat_to_global_pixel
    from mapper.imagery.mosaic import mosaic_window
    from mapper.world.source import WorldTileSource
    from mapper.world.world import get_world

    world = get_world(world_seed)
    sources = {r: WorldTileSource(f"world-{r}", world_seed, r) for r in ("a", "b")}
    polygons = [(p, resolve_province(p).geometry) for p in provinces]
    out = {k: [] for k in ("rgb", "classes", "valid", "labels", "where")}
    tries = 0
    while len(out["rgb"]) < n:
        tries += 1
        if tries > 200 * n:
            raise RuntimeError(f"found only {len(out['rgb'])} of {n} windows with ≥ {min_cropland:.0%} cropland")
        name, poly = polygons[tries % len(polygons)]
        lon, lat = _random_point(poly, rng)
        col, row = (int(v) for v in lonlat_to_global_pixel(lon, lat, 16))
        window = PixelWindow(16, col, row, col + size, row + size)
        truth = window_truth(world, window)
        if truth.cropland.mean() < min_cropland:
            continue
        rendering = "ab"[len(out["rgb"]) % 2]
        mosaic = mosaic_window(sources[rendering], window)
        for k, v in (("rgb", mosaic.rgb), ("classes", truth.classes), ("valid", mosaic.valid),
                     ("labels", truth.labels), ("where", (name, col, row, rendering))):  # fmt: skip
            out[k].append(v)
    return Windows(*(np.stack(out[k]) for k in ("rgb", "classes", "valid", "labels")), out["where"])


def _random_point(polygon, rng) -> tuple[float, float]:
    import shapely

    x0, y0, x1, y1 = polygon.bounds
    while True:
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        if shapely.contains_xy(polygon, x, y):
            return x, y


# ---------------------------------------------------------------------------------------------- batches
def augment_batch(rgb: np.ndarray, classes: np.ndarray, valid: np.ndarray, cfg: FieldTrainConfig, rng):
    """Random crops of the windows with geometric and colour augmentation: (x float32 (B, 3, c, c) in 0..1,
    target int64 (B, c, c) with -100 where there is no imagery)."""
    import cv2

    c = cfg.crop_px
    xs, ts = [], []
    for i in range(len(rgb)):
        r, q = rng.integers(0, rgb.shape[1] - c + 1), rng.integers(0, rgb.shape[2] - c + 1)
        img = rgb[i, r : r + c, q : q + c].astype(np.float32) / 255.0
        tgt = np.where(valid[i, r : r + c, q : q + c], classes[i, r : r + c, q : q + c].astype(np.int64), -100)
        a = cfg.augment
        if a.flips and rng.random() < 0.5:
            img, tgt = img[:, ::-1], tgt[:, ::-1]
        if a.rot90:
            k = int(rng.integers(0, 4))
            img, tgt = np.rot90(img, k), np.rot90(tgt, k)
        if rng.random() < cfg.blur_prob:
            img = cv2.GaussianBlur(np.ascontiguousarray(img), (0, 0), float(rng.uniform(0.5, 1.2)))
        mean = img.mean(axis=(0, 1))
        img = (img - mean) * rng.uniform(1 - a.contrast, 1 + a.contrast) + mean
        img = img * rng.uniform(1 - a.brightness, 1 + a.brightness)
        img = img * rng.uniform(1 - a.channel_gain, 1 + a.channel_gain, size=3)
        xs.append(np.clip(img, 0, 1).transpose(2, 0, 1))
        ts.append(np.ascontiguousarray(tgt))
    return np.ascontiguousarray(np.stack(xs), dtype=np.float32), np.stack(ts)


def normalisation(rgb: np.ndarray) -> dict:
    """Per-channel mean and std of the training windows (0..1 scale), as checkpoints record it."""
    x = rgb.reshape(-1, 3).astype(np.float64) / 255.0
    return {"mean": x.mean(axis=0).round(4).tolist(), "std": x.std(axis=0).round(4).tolist()}


# ---------------------------------------------------------------------------------------------- validation
def validate(delineator, windows: Windows) -> dict:
    """Object / extent / boundary scores of the delineator on windows, extent = their true cropland."""
    from mapper.fields.evaluate import score_instances, sum_scores

    scores = []
    for rgb, valid, labels in zip(windows.rgb, windows.valid, windows.labels, strict=True):
        pred = delineator.delineate(rgb, labels > 0, valid)
        scores.append(score_instances(labels, pred, min_pixels=MIN_EVAL_PX, valid=valid))
    return sum_scores(scores).as_dict()


# ---------------------------------------------------------------------------------------------- training
def arch_of(cfg: FieldTrainConfig) -> dict:
    return {"name": "unet", "width": cfg.width, "depth": cfg.depth}


def train_fields(cfg: FieldTrainConfig, out: Path | str, *, resume: bool = False, device: str | None = None,
                 progress=None, command: str | None = None) -> dict:  # fmt: skip
    """Train (or resume) a field model into the checkpoint directory `out`; returns the training record."""
    import torch

    from mapper.fields.model import CLASSES, KIND, LearnedDelineator, build_model
    from mapper.models.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_meta
    from mapper.models.training import TRAIN_STATE, lr_factor, restore_optimizer, torch_device

    out = Path(out)
    if out.exists() and not resume:
        raise CheckpointError(f"{out} exists; pass --resume to continue it, or choose another --out")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev = torch_device(device)
    rng = np.random.default_rng(cfg.seed)
    t0 = time.perf_counter()
    train = sample_windows(cfg.world_seed, cfg.windows, cfg.window_px, cfg.provinces, cfg.min_cropland, rng)
    val = sample_windows(cfg.world_seed, cfg.val_windows, cfg.window_px, cfg.provinces, cfg.min_cropland, rng)
    data_s = time.perf_counter() - t0
    norm = normalisation(train.rgb)
    mean, std = (torch.tensor(norm[k], dtype=torch.float32).view(1, 3, 1, 1).to(dev) for k in ("mean", "std"))
    torch.manual_seed(cfg.seed)
    model = build_model(arch_of(cfg)).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict] = []
    best: dict = {"f1": -1.0}
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    start = 0
    if resume:
        meta = read_checkpoint_meta(out)
        last = load_checkpoint(out, KIND, load_extra=True)
        state = last.extra.get(TRAIN_STATE)
        if state is None or "last_weights" not in meta["training"]:
            raise CheckpointError(f"{out} is a finished field model; nothing to resume")
        _check_same_settings(meta["training"]["config"], cfg, out)
        best_state = {k: v.detach().clone() for k, v in last.model.state_dict().items()}
        model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
        restore_optimizer(opt, {k.removeprefix("opt."): v for k, v in state.items() if k.startswith("opt.")},
                          meta["training"]["optimizer_groups"])  # fmt: skip
        start, history, best = meta["training"]["steps_done"], meta["training"]["history"], meta["training"]["best"]
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(cfg.class_weights, dtype=torch.float32).to(dev),
                                        ignore_index=-100)  # fmt: skip
    base_meta = {
        "kind": KIND,
        "arch": arch_of(cfg),
        "classes": CLASSES,
        "normalisation": norm,
        "input": {"size": cfg.inference_size, "overlap": cfg.inference_overlap, "gsd_m": None},
    }
    losses: list[float] = []
    for step in range(start, cfg.steps):
        model.train()
        srng = np.random.default_rng([cfg.seed, step])
        idx = srng.integers(0, len(train.rgb), cfg.batch_size)
        x, t = augment_batch(train.rgb[idx], train.classes[idx], train.valid[idx], cfg, srng)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * lr_factor(step, cfg.steps, cfg.warmup, cfg.power)
        x = (torch.from_numpy(x).to(dev) - mean) / std
        loss = loss_fn(model(x), torch.from_numpy(t).to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        done = step + 1
        if done % 50 == 0:
            log.info("step %d/%d loss %.3f (%.0f s)", done, cfg.steps, np.mean(losses[-50:]), time.perf_counter() - t0)
        if done % cfg.val_every == 0 or done == cfg.steps:
            model.eval()
            scores = validate(LearnedDelineator(model, base_meta, dev), val)
            record = {"step": done, "loss": float(np.mean(losses[-cfg.val_every:])), **scores,
                      "seconds": time.perf_counter() - t0}  # fmt: skip
            history.append(record)
            if np.nan_to_num(scores["f1"]) > best["f1"]:  # nan: no field found yet
                best = record
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            _save(out, model, best_state, opt, base_meta, cfg, history, best, done, data_s, command)
            if progress:
                progress(record)
    return {"history": history, "best": best}


def _check_same_settings(recorded: dict, cfg: FieldTrainConfig, out: Path) -> None:
    """A resumed run must go on with the settings it started with (threads may change)."""
    now = cfg.model_dump(mode="json")
    differ = sorted(k for k in set(recorded) | set(now) if k != "threads" and recorded.get(k) != now.get(k))
    if differ:
        raise ValueError(f"{out} was started with other settings ({', '.join(differ)}); resume with the same ones")


def _save(out, model, best_state, opt, base_meta, cfg, history, best, done, data_s, command) -> None:
    """The best weights as the checkpoint; an unfinished run keeps its last weights and optimizer beside."""
    from mapper.models.checkpoint import save_checkpoint
    from mapper.models.training import TRAIN_STATE, optimizer_tensors

    finished = done >= cfg.steps
    tensors, groups = optimizer_tensors(opt)
    training = {
        "world_seed": cfg.world_seed,
        "command": command,
        "config": cfg.model_dump(mode="json"),
        "steps_done": done,
        "history": history,
        "best": best,
        "data_seconds": round(data_s, 1),
        "validation": "object F1 on validation windows of the training world (extent: the true cropland)",
    }
    extra = None
    if not finished:
        training.update({"last_weights": True, "optimizer_groups": groups})
        extra = {TRAIN_STATE: {**{f"model.{k}": v for k, v in model.state_dict().items()},
                               **{f"opt.{k}": v for k, v in tensors.items()}}}  # fmt: skip
    from mapper.fields.model import build_model

    best_model = build_model(base_meta["arch"])
    best_model.load_state_dict(best_state)
    save_checkpoint(out, best_model, {**base_meta, "training": training}, extra_tensors=extra)
