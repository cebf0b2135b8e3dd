"""Training and evaluating the coverage-type classifier on labelled blocks (paper Sect. 3.1, 4.1).

**Samples.** Each labelled block gives one sample per source: the source's view (mapper.iqa.model) and its
coverage type from label.json (sources without one are skipped). `load_views` reads the GeoTIFFs once and
keeps the views in `<labels>/.iqa_views_<size>.npz` (keyed by block, source and the sha256 of label.json, so
rewritten or added blocks are read again and nothing else is); later runs and evaluations read only that.

**Training** (`train_iqa`): AdamW, a linear warm-up then polynomial decay of the learning rate per step;
class-balanced sampling with replacement (each class drawn equally often by default, `balance`); random
flips, 90° rotations and a small colour jitter (brightness, per-channel gain, contrast: the imagery's own
colour shifts are of that order); bf16 autocast only on CUDA. Validation accuracy every `val_every` epochs
on `--val-labels`, or on a held-out share of the training blocks (split by block, so the two sources of
a block never straddle it). A checkpoint (mapper.models.checkpoint) is written after every epoch with the
optimizer state beside it; `resume=True` continues after the last completed epoch — same arch and classes
required — and, because every epoch's sampling and augmentation is seeded by (seed, epoch), ends where the
uninterrupted run would. The finished checkpoint drops the optimizer state (it is small and final).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from mapper.config.loader import load_settings
from mapper.config.models import StrictModel
from mapper.iqa.model import CHANNELS, CoverageClassifier, build_model, make_view, normalise, views_to_float
from mapper.models.training import (
    TRAIN_STATE,
    AugmentConfig,
    check_resumable,
    lr_factor,
    optimizer_tensors,
    restore_optimizer,
    torch_device,
)
from mapper.world.conditions import COVERAGE_NAMES

if TYPE_CHECKING:
    from mapper.models.registry import ModelSpec

log = logging.getLogger(__name__)

CACHE_FORMAT = "mapper-iqa-views/1"


class IQATrainConfig(StrictModel):
    """Hyper-parameters of `mapper train iqa` (YAML via --config; CLI options override)."""

    arch: str = "iqa-resnet18-tiny"
    epochs: int = Field(80, ge=1)
    batch_size: int = Field(32, ge=2)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    warmup_epochs: float = Field(1.0, ge=0)
    poly_power: float = Field(1.0, gt=0)
    balance: Literal["none", "sqrt", "full"] = "full"  # class weights for sampling: 1, 1/√n, 1/n
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    augment: AugmentConfig = AugmentConfig()
    val_fraction: float = Field(0.15, ge=0, lt=1)  # share of training blocks held out without --val-labels
    val_every: int = Field(1, ge=1)
    seed: int = 0


def load_train_config(path: Path | str | None = None, **overrides) -> IQATrainConfig:
    """IQATrainConfig from a YAML file, with non-None overrides applied; a ConfigError names an unknown or
    invalid key."""
    return load_settings(IQATrainConfig, path, **overrides)


# ---------------------------------------------------------------------------------------------- samples
@dataclass
class ViewSet:
    views: np.ndarray  # (N, S, S, 4) uint8
    labels: np.ndarray  # (N,) int64 into classes
    any_valid: np.ndarray  # (N,) bool: the image has some imagery
    block_ids: np.ndarray  # (N,) str
    sources: np.ndarray  # (N,) str
    seeds: np.ndarray  # (N,) int: world seed of the labels, -1 for human labels
    classes: tuple[str, ...] = tuple(COVERAGE_NAMES)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx) -> ViewSet:
        idx = np.asarray(idx)
        return ViewSet(self.views[idx], self.labels[idx], self.any_valid[idx], self.block_ids[idx],
                       self.sources[idx], self.seeds[idx], self.classes)  # fmt: skip

    @classmethod
    def concat(cls, parts: Sequence[ViewSet]) -> ViewSet:
        fields = ("views", "labels", "any_valid", "block_ids", "sources", "seeds")
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields), parts[0].classes)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts, strict=True)}

    def fingerprint(self) -> str:
        """sha256 of the sorted "block/source" names: which images a model saw, to compare label sets."""
        import hashlib

        keys = sorted(f"{b}/{s}" for b, s in zip(self.block_ids, self.sources, strict=True))
        return hashlib.sha256("\n".join(keys).encode()).hexdigest()

    @property
    def world_seeds(self) -> list[int]:
        return sorted(int(s) for s in set(self.seeds.tolist()) if s >= 0)


def _block_views(directory: Path, size: int):
    from mapper.labels.store import read_labelled_block

    lb = read_labelled_block(directory)
    seed = lb.meta.get("world", {}).get("seed", -1)
    out = []
    for source in lb.sources:
        m = lb.images[source]
        any_valid = bool(m.valid.any())
        view = make_view(m.rgb, m.valid, size) if any_valid else np.zeros((size, size, len(CHANNELS)), np.uint8)
        out.append((source, lb.coverage[source], view, any_valid, int(seed)))
    return out


def _cache_path(root: Path, size: int) -> Path:
    return root / f".iqa_views_{size}.npz"


def _read_cache(path: Path, size: int) -> dict[str, tuple]:
    if not path.exists():
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["format"]) != CACHE_FORMAT or z["views"].shape[1:] != (size, size, len(CHANNELS)):
                return {}
            return {
                str(k): (str(fp), str(cov), v, bool(ok), int(s))
                for k, fp, cov, v, ok, s in zip(
                    z["keys"], z["fingerprints"], z["coverage"], z["views"], z["any_valid"], z["seeds"], strict=True
                )
            }
    except (OSError, ValueError, KeyError) as e:
        log.warning("ignoring unreadable view cache %s (%s); it will be rebuilt", path, e)
        return {}


def _write_cache(path: Path, entries: dict[str, tuple], size: int) -> None:
    from mapper.store.atomic import atomic_path

    keys = sorted(entries)
    rows = [entries[k] for k in keys]
    arrays = {
        "format": np.array(CACHE_FORMAT),
        "keys": np.array(keys, dtype=str),
        "fingerprints": np.array([r[0] for r in rows], dtype=str),
        "coverage": np.array([r[1] for r in rows], dtype=str),
        "views": np.stack([r[2] for r in rows]) if rows else np.zeros((0, size, size, len(CHANNELS)), np.uint8),
        "any_valid": np.array([r[3] for r in rows], bool),
        "seeds": np.array([r[4] for r in rows], np.int64),
    }
    try:
        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "xb") as f:
            np.savez(f, **arrays)
    except OSError as e:  # a read-only labels directory: the views are simply not cached
        log.warning("could not write the view cache %s (%s)", path, e)


def load_views(root: Path | str, size: int, cache: bool = True, workers: int = 2, progress: bool = False) -> ViewSet:
    """The (view, coverage) samples of every complete labelled block under `root` (one per source with a
    coverage type). Incomplete blocks (no label.json yet) are skipped with a warning; invalid ones raise
    LabelError. See the module docstring for the cache."""
    import hashlib

    from mapper.labels.store import LABEL_FILE, LabelError, block_dirs, is_complete

    root = Path(root)
    dirs = block_dirs(root)
    complete = [d for d in dirs if is_complete(d)]
    if len(complete) < len(dirs):
        log.warning("%d incomplete labelled block(s) under %s skipped", len(dirs) - len(complete), root)
    if not complete:
        raise LabelError(f"no complete labelled blocks under {root}; make some with `mapper labels make`")
    cpath = _cache_path(root, size)
    cached = _read_cache(cpath, size) if cache else {}
    entries: dict[str, tuple] = {}
    todo: list[tuple[Path, str]] = []
    for d in complete:
        meta_bytes = (d / LABEL_FILE).read_bytes()
        fp = hashlib.sha256(meta_bytes).hexdigest()
        sources = json.loads(meta_bytes)["sources"]
        hits = {f"{d.name}/{s}": cached.get(f"{d.name}/{s}") for s in sources}
        if all(h is not None and h[0] == fp for h in hits.values()):
            entries.update(hits)
        else:
            todo.append((d, fp))
    if todo:
        from tqdm import tqdm

        with ThreadPoolExecutor(max(1, workers)) as pool:  # GDAL reads and cv2 resizes release the GIL
            results = pool.map(lambda t: (t, _block_views(t[0], size)), todo)
            for (d, fp), rows in tqdm(results, total=len(todo), desc=f"views {root.name}", disable=not progress):
                for source, cov, view, ok, seed in rows:
                    entries[f"{d.name}/{source}"] = (fp, "" if cov is None else cov, view, ok, seed)
        if cache:
            _write_cache(cpath, entries, size)
    keys = [k for k in sorted(entries) if entries[k][1]]
    skipped = len(entries) - len(keys)
    if skipped:
        log.warning("%d image(s) under %s have no coverage type recorded; skipped", skipped, root)
    if not keys:
        raise LabelError(f"no image under {root} has a coverage type; IQA needs labels with coverage")
    from mapper.iqa.model import coverage_index

    try:
        labels = coverage_index([entries[k][1] for k in keys])
    except ValueError as e:
        raise LabelError(f"{root}: {e}") from e
    return ViewSet(
        views=np.stack([entries[k][2] for k in keys]),
        labels=labels,
        any_valid=np.array([entries[k][3] for k in keys], bool),
        block_ids=np.array([k.split("/")[0] for k in keys]),
        sources=np.array([k.split("/", 1)[1] for k in keys]),
        seeds=np.array([entries[k][4] for k in keys], np.int64),
    )


def split_by_block(data: ViewSet, fraction: float, seed: int) -> tuple[ViewSet, ViewSet | None]:
    """(train, val): a random `fraction` of the blocks (all their sources) is held out."""
    if fraction <= 0:
        return data, None
    blocks = np.unique(data.block_ids)
    rng = np.random.default_rng([seed, 17])
    n_val = max(1, round(fraction * len(blocks))) if len(blocks) > 1 else 0
    if n_val == 0:
        return data, None
    held = set(rng.choice(blocks, n_val, replace=False).tolist())
    is_val = np.array([b in held for b in data.block_ids])
    return data.subset(np.flatnonzero(~is_val)), data.subset(np.flatnonzero(is_val))


# ---------------------------------------------------------------------------------------------- metrics
def coverage_metrics(truth: np.ndarray, predicted: np.ndarray, classes: Sequence[str] = COVERAGE_NAMES) -> dict:
    """top1, per-class n / recall / precision / f1, and the confusion matrix (rows truth, columns predicted)."""
    k = len(classes)
    truth, predicted = np.asarray(truth, np.int64), np.asarray(predicted, np.int64)
    conf = np.bincount(truth * k + predicted, minlength=k * k).reshape(k, k)
    n = int(conf.sum())
    per_class = {}
    for i, c in enumerate(classes):
        tp, n_true, n_pred = int(conf[i, i]), int(conf[i].sum()), int(conf[:, i].sum())
        recall = tp / n_true if n_true else None
        precision = tp / n_pred if n_pred else None
        f1 = 2 * tp / (n_true + n_pred) if n_true + n_pred else None
        per_class[c] = {"n": n_true, "predicted": n_pred, "recall": recall, "precision": precision, "f1": f1}
    return {
        "top1": float(np.trace(conf) / n) if n else None,
        "n": n,
        "per_class": per_class,
        "confusion": {"classes": list(classes), "rows": "truth", "columns": "predicted", "matrix": conf.tolist()},
    }


def evaluate_views(model: CoverageClassifier, data: ViewSet, batch_size: int = 64) -> dict:
    """coverage_metrics of the model on a ViewSet (all-nodata images are Nodata without the network)."""
    if list(model.classes) != list(data.classes):
        raise ValueError(f"the model's classes {model.classes} differ from the labels' {list(data.classes)}")
    results = model.classify_views(data.views, data.any_valid, batch_size)
    predicted = np.array([model.classes.index(name) for name, _ in results], np.int64)
    return coverage_metrics(data.labels, predicted, data.classes)


# ---------------------------------------------------------------------------------------------- training
def class_sampling_weights(labels: np.ndarray, n_classes: int, balance: str) -> np.ndarray:
    """Per-sample draw probabilities: classes weighted by 1, 1/√n or 1/n of their counts."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    per_class = {
        "none": np.ones(n_classes),
        "sqrt": 1 / np.sqrt(np.maximum(counts, 1)),
        "full": 1 / np.maximum(counts, 1),
    }
    w = per_class[balance][labels]
    return w / w.sum()


def augment(x, rng: np.random.Generator, cfg: AugmentConfig):
    """Flips, 90° rotations and colour jitter of a (N, 4, S, S) float batch in [0, 1], in place where possible.
    The colour jitter touches only cells with imagery; the nodata channel is only moved, never changed."""
    import torch

    n = x.shape[0]
    if cfg.flips or cfg.rot90:
        out = []
        for i in range(n):
            xi = x[i]
            if cfg.flips and rng.random() < 0.5:
                xi = torch.flip(xi, dims=(2,))
            if cfg.rot90:
                xi = torch.rot90(xi, int(rng.integers(4)), dims=(1, 2))
            out.append(xi)
        x = torch.stack(out)
    if cfg.brightness or cfg.channel_gain or cfg.contrast:
        has = (x[:, 3:4] < 1.0).to(x.dtype)  # cells with some imagery
        rgb = x[:, :3]
        gain = (
            1
            + rng.uniform(-cfg.brightness, cfg.brightness, (n, 1))
            + rng.uniform(-cfg.channel_gain, cfg.channel_gain, (n, 3))
        )
        contrast = 1 + rng.uniform(-cfg.contrast, cfg.contrast, n)
        g = torch.tensor(gain, dtype=x.dtype).view(n, 3, 1, 1)
        c = torch.tensor(contrast, dtype=x.dtype).view(n, 1, 1, 1)
        mean = (rgb * has).sum(dim=(2, 3), keepdim=True) / has.sum(dim=(2, 3), keepdim=True).clamp_min(1)
        rgb = ((rgb - mean) * c + mean) * g
        x = torch.cat([(rgb.clamp(0, 1) * has), x[:, 3:]], dim=1)
    return x


@dataclass
class TrainResult:
    checkpoint: Path
    history: list[dict]
    metrics: dict | None  # the last validation's coverage_metrics
    seconds: float


def check_output(out: Path | str, resume: bool, spec: ModelSpec, epochs: int) -> None:
    """Before any work: CheckpointError unless `out` is free (new run) or an unfinished IQA run of the same
    arch and view size with epochs left (resume). Reads checkpoint.json only."""
    check_resumable(out, resume, spec, "epochs_done", epochs, "epochs")


def train_iqa(
    train: ViewSet,
    out: Path | str,
    cfg: IQATrainConfig,
    val: ViewSet | None = None,
    resume: bool = False,
    device: str | None = None,
    info: dict | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    spec: ModelSpec | None = None,
) -> TrainResult:
    """Train the coverage classifier on `train`, validating on `val`, checkpointing to `out` every epoch.

    `info` goes into checkpoint.json's training section (e.g. the command and label directories);
    `on_epoch(record)` is called after each epoch's checkpoint is written. Without `resume`, an existing
    checkpoint at `out` is an error (nothing is overwritten); with it, the run continues after its last epoch.
    `spec` replaces the registry entry named by cfg.arch (an architecture not in configs/models.yaml)."""
    import torch
    import transformers

    from mapper.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from mapper.models.registry import get_model_spec

    out = Path(out)
    spec = spec or get_model_spec(cfg.arch, kind="iqa")
    classes = list(train.classes)
    if train.views.shape[1:3] != (spec.input.size, spec.input.size):
        raise ValueError(f"views are {train.views.shape[1:3]} but {cfg.arch} takes {spec.input.size} px")
    dev = torch_device(device)
    t_start = time.perf_counter()
    history: list[dict] = []
    done = 0
    extra_prior = 0.0
    check_output(out, resume, spec, cfg.epochs)
    if resume:
        ckpt = load_checkpoint(out, kind="iqa", expect_arch=spec.arch, load_extra=True)
        meta = ckpt.meta
        if meta["classes"] != classes:
            raise CheckpointError(f"checkpoint {out} has classes {meta['classes']}, the labels {classes}")
        training = meta.get("training", {})
        done = int(training.get("epochs_done", 0))
        model = ckpt.model
        mean, std = tuple(meta["normalisation"]["mean"]), tuple(meta["normalisation"]["std"])
        history = list(training.get("history", []))
        extra_prior = float(training.get("seconds", 0.0))
        prior_cfg = training.get("config", {})
        changed = {k: (prior_cfg.get(k), v) for k, v in cfg.model_dump().items() if prior_cfg.get(k) != v}
        if changed:
            log.warning("resuming %s with changed settings: %s", out, changed)
    else:
        torch.manual_seed(cfg.seed)
        model = build_model(spec.arch)
        x = train.views.reshape(-1, len(CHANNELS)).astype(np.float64) / 255.0
        mean = tuple(float(v) for v in x.mean(axis=0))
        std = tuple(float(max(v, 1e-3)) for v in x.std(axis=0))
        del x
    model.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if resume:
        groups = meta["training"]["optimizer_groups"]
        restore_optimizer(opt, ckpt.extra[TRAIN_STATE], groups)

    n = len(train)
    steps_per_epoch = max(1, n // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    probs = class_sampling_weights(train.labels, len(classes), cfg.balance)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    labels_t = torch.from_numpy(train.labels)
    classifier = CoverageClassifier(model, classes, spec.input.size, mean, std)
    cuda = dev.type == "cuda"

    val_info = None
    if val is not None:
        val_info = {"n": len(val), "class_counts": val.class_counts(), "world_seeds": val.world_seeds}
        val_info["images_sha256"] = val.fingerprint()
    base_info = {
        "arch_name": cfg.arch,
        "config": cfg.model_dump(),
        "world_seeds": train.world_seeds,
        "train": {"n": n, "class_counts": train.class_counts(), "images_sha256": train.fingerprint()},
        "val": val_info,
        "device": dev.type,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        **(info or {}),
    }
    metrics = None
    for epoch in range(done + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        rng = np.random.default_rng([cfg.seed, epoch])
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        order = rng.choice(n, size=steps_per_epoch * cfg.batch_size, replace=True, p=probs)
        model.train()
        losses, correct = [], 0
        for s in range(steps_per_epoch):
            step = (epoch - 1) * steps_per_epoch + s
            for g in opt.param_groups:
                g["lr"] = cfg.lr * lr_factor(step, total, warmup, cfg.poly_power)
            idx = order[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            x = augment(views_to_float(train.views[idx]), rng, cfg.augment)
            x = normalise(x, mean, std).to(dev)
            y = labels_t[idx].to(dev)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                logits = model(pixel_values=x).logits
            loss = loss_fn(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            correct += int((logits.argmax(1) == y).sum())
        record = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)),
            "train_acc": correct / (steps_per_epoch * cfg.batch_size),
            "lr": opt.param_groups[0]["lr"],
        }
        if val is not None and (epoch % cfg.val_every == 0 or epoch == cfg.epochs):
            metrics = evaluate_views(classifier, val)
            record["val_top1"] = metrics["top1"]
            record["val_recall"] = {c: m["recall"] for c, m in metrics["per_class"].items()}
        record["seconds"] = round(time.perf_counter() - t0, 2)
        history.append(record)
        finished = epoch == cfg.epochs
        opt_tensors, groups = optimizer_tensors(opt)
        training = {
            **base_info,
            "epochs": cfg.epochs,
            "epochs_done": epoch,
            "complete": finished,
            "history": history,
            "metrics": metrics,
            "seconds": round(extra_prior + time.perf_counter() - t_start, 1),
        }
        if not finished:
            training["optimizer_groups"] = groups
        ckpt_meta = {
            "kind": "iqa",
            "name": cfg.arch,
            "arch": spec.arch,
            "classes": classes,
            "normalisation": {"mean": list(mean), "std": list(std)},
            "input": {"size": spec.input.size, "channels": list(CHANNELS), "resize": "cv2.INTER_AREA"},
            "training": training,
        }
        save_checkpoint(out, model, ckpt_meta, None if finished else {TRAIN_STATE: opt_tensors})
        log.info("epoch %d/%d %s", epoch, cfg.epochs, record)
        if on_epoch is not None:
            on_epoch(record)
    return TrainResult(out, history, metrics, time.perf_counter() - t_start)
