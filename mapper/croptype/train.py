"""Training CropNet on labelled series: class-balanced cross-entropy summed over the four levels, Adam,
on-the-fly augmentation, early stopping on the validation loss (the best weights are kept).

Two variants of the recipe (`variant_settings`): "mapper" — one dropout rate, PyTorch's initialisation, every
augmentation on every sample of every epoch — and "published", x-ytong/CropNet's: dropout 0.2 / 0.3 / 0.3 / 0.4
by block, Kaiming initialisation, and per epoch the original series plus two augmented copies, each shifted
(p 1), scaled (p 0.5) and warped (p 0.25). With `window` the model takes only the series' steps inside it and
the time augmentations re-crop from the whole series (mapper.croptype.augment).

Labels are leaf indices; the level targets are their taxonomy paths. Per level each class is weighted by
1 / its training frequency (normalised so the weights average 1 over the training samples), so a rare crop
counts as much as a common one; a class absent from training gets weight 0. Deterministic for a seed on a
given device. Saving, loading and prediction live in mapper.croptype.checkpoint and .predict (re-exported
here).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from mapper.config.models import StrictModel
from mapper.croptype.augment import SeriesAugment, augment_batch, crop_window
from mapper.croptype.checkpoint import load_croptype, save_croptype_checkpoint
from mapper.croptype.decode import decode
from mapper.croptype.model import PUBLISHED_DROPOUT, CropNet, build_model, default_arch, init_weights
from mapper.croptype.normalise import band_statistics, normalise
from mapper.croptype.predict import predict_croptype
from mapper.croptype.series import STEP_DAYS_OF_YEAR

__all__ = [
    "CropTrainConfig",
    "class_weights",
    "hierarchical_loss",
    "load_croptype",
    "predict_croptype",
    "save_croptype_checkpoint",
    "train_cropnet",
]

_log = logging.getLogger(__name__)


class CropTrainConfig(StrictModel):
    """Hyper-parameters of `mapper croptype train` (its options, through mapper.config.loader.load_settings)."""

    width: int = Field(128, ge=1)  # CropNet's; 32 trains on a CPU in minutes
    dropout: float | list[float] = 0.2  # one rate, or one per block (mapper.croptype.model.block_dropouts)
    init: Literal["torch", "kaiming"] = "torch"
    lr: float = Field(1e-4, gt=0)  # CropNet's Adam rate; CPU recipes with few epochs use 1e-3
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(64, ge=1)
    patience: int = Field(10, ge=1)  # epochs without a better validation loss before stopping
    augment: bool = True
    shift_days: float = Field(50.0, ge=0)
    scale: float = Field(0.2, ge=0)
    warp_sigma: float = Field(0.1, ge=0)
    p_shift: float = Field(1.0, ge=0, le=1)  # per augmented sample, the probability of each augmentation
    p_scale: float = Field(1.0, ge=0, le=1)
    p_warp: float = Field(1.0, ge=0, le=1)
    copies: int = Field(0, ge=0)  # 0: every sample augmented each epoch; k: the originals plus k augmented copies
    window: tuple[float, float] | None = None  # first, last day the model takes; None: the whole series
    seed: int = 0
    device: str = "auto"  # "auto": cuda when available, else cpu
    prior: bool = False  # feed last year's leaf to the heads
    prior_drop: float = Field(0.2, ge=0, le=1)  # share of training priors hidden (−1): the model works without one

    def augmentation(self) -> SeriesAugment:
        return SeriesAugment(self.shift_days, self.scale, self.warp_sigma, p_shift=self.p_shift,
                             p_scale=self.p_scale, p_warp=self.p_warp)  # fmt: skip


VARIANTS = ("mapper", "published")


def variant_settings(name: str) -> dict:
    """CropTrainConfig fields of a recipe variant (see the module doc)."""
    if name == "mapper":
        return {"dropout": 0.2, "init": "torch", "p_shift": 1.0, "p_scale": 1.0, "p_warp": 1.0, "copies": 0}
    if name == "published":
        return {"dropout": list(PUBLISHED_DROPOUT), "init": "kaiming", "p_shift": 1.0, "p_scale": 0.5,
                "p_warp": 0.25, "copies": 2}  # fmt: skip
    raise ValueError(f"variant {name!r}: choose one of {', '.join(VARIANTS)}")


def window_days(days: np.ndarray, window) -> np.ndarray | None:
    """The steps of `days` inside [first, last] of `window` (None: no window)."""
    if window is None:
        return None
    days = np.asarray(days, np.float64)
    inside = days[(days >= window[0]) & (days <= window[1])]
    if len(inside) < 2:
        raise ValueError(f"window {list(window)} holds {len(inside)} of the series' steps ({days[0]:g}..{days[-1]:g});"
                         " choose days inside the series")  # fmt: skip
    return inside


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Per class 1 / frequency, scaled so the mean weight over the samples is 1; absent classes 0."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=n_classes).astype(np.float64)
    w = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
    return w * len(labels) / max(1, int((counts > 0).sum()))


def hierarchical_loss(logits: list[torch.Tensor], targets: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    """Σ over levels of the weighted cross-entropy; targets (B, levels) class indices."""
    return sum(F.cross_entropy(z, targets[:, lv], weight=weights[lv]) for lv, z in enumerate(logits))


def _check_set(x, leaf, prior, taxonomy, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    x, leaf = np.asarray(x, np.float32), np.asarray(leaf, np.int64)
    if x.ndim != 3 or len(x) != len(leaf) or not len(x):
        raise ValueError(
            f"{what} set: series must be (N, bands, T) with one leaf per series, got {x.shape} and {leaf.shape}"
        )
    if not np.isfinite(x).all():
        raise ValueError(f"{what} set has NaN or inf reflectance; fill the gaps (series interpolation) first")
    if leaf.min() < 0 or leaf.max() >= taxonomy.n_leaves:
        raise ValueError(f"{what} labels must be leaf indices 0..{taxonomy.n_leaves - 1} of the taxonomy")
    if prior is not None:
        prior = np.asarray(prior, np.int64)
        if prior.shape != leaf.shape or prior.min() < -1 or prior.max() >= taxonomy.n_leaves:
            raise ValueError(f"{what} prior must be (N,) leaf indices or −1 for unknown")
    return x, leaf, prior


def _device(name: str) -> torch.device:
    from mapper.models.training import torch_device

    return torch_device(None if name in ("auto", "", None) else name)


def _batches(n: int, size: int, rng: np.random.Generator):
    order = rng.permutation(n)
    for i in range(0, n, size):
        idx = order[i : i + size]
        if len(idx) > 1:  # BatchNorm cannot train on a single sample
            yield idx


def _epoch_rows(n: int, cfg: CropTrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(sample of each epoch row, whether that row is augmented): the originals alone, every one augmented, or
    the originals plus `copies` augmented copies."""
    if not cfg.augment:
        return np.arange(n), np.zeros(n, bool)
    if cfg.copies == 0:
        return np.arange(n), np.ones(n, bool)
    return np.tile(np.arange(n), 1 + cfg.copies), np.repeat([False, True], [n, n * cfg.copies])


def _batch_input(data: dict, rows: np.ndarray, augmented: np.ndarray, aug: SeriesAugment, rng) -> np.ndarray:
    """The model's input of one batch: augmented rows re-cropped and transformed, the others on the window."""
    x, days, window = data["x"][rows], data["days"], data["window"]
    if augmented.all():  # on reflectance, before normalising: the warp is a gain
        return augment_batch(x, rng, aug, days=days, window=window)
    out = crop_window(x, days, window).copy()
    if augmented.any():
        out[augmented] = augment_batch(x[augmented], rng, aug, days=days, window=window)
    return out


def _train_epoch(model, opt, data: dict, weights, cfg: CropTrainConfig, rng, device) -> float:
    model.train()
    total, n = 0.0, 0
    aug = cfg.augmentation()
    rows, augmented = _epoch_rows(len(data["x"]), cfg)
    for pos in _batches(len(rows), cfg.batch_size, rng):
        idx = rows[pos]
        x = _batch_input(data, idx, augmented[pos], aug, rng)
        xt = torch.from_numpy(normalise(x, data["norm"])).to(device)
        prior = None
        if cfg.prior:
            p = data["prior"][idx].copy()
            p[rng.random(len(p)) < cfg.prior_drop] = -1
            prior = torch.from_numpy(p).to(device)
        loss = hierarchical_loss(model(xt, prior), data["targets"][idx].to(device), weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
        n += len(idx)
    return total / max(n, 1)


@torch.no_grad()
def _evaluate(model, data: dict, weights, paths: np.ndarray, device, batch: int = 1024) -> tuple[float, float]:
    """(validation loss, decoded leaf accuracy). The loss is training's: per level the weighted mean over
    the whole set (Σ w·loss / Σ w), summed over the levels."""
    model.eval()
    n_levels = paths.shape[1]
    loss_sum = np.zeros(n_levels)
    outputs: list[list[torch.Tensor]] = []
    for i in range(0, len(data["x"]), batch):
        xt = torch.from_numpy(normalise(data["x"][i : i + batch], data["norm"])).to(device)
        prior = torch.from_numpy(data["prior"][i : i + batch]).to(device) if data["prior"] is not None else None
        logits = model(xt, prior)
        tg = data["targets"][i : i + batch].to(device)
        for lv, z in enumerate(logits):
            loss_sum[lv] += float(F.cross_entropy(z, tg[:, lv], weight=weights[lv], reduction="sum"))
        outputs.append([z.log_softmax(1).cpu() for z in logits])
    denom = np.array([float(weights[lv].cpu()[data["targets"][:, lv]].sum()) for lv in range(n_levels)])
    loss = float((loss_sum / denom).sum()) if (denom > 0).all() else float("nan")  # nan: no trained class
    leaf = decode([torch.cat([o[lv] for o in outputs]) for lv in range(n_levels)], paths).leaf
    return loss, float((leaf == data["leaf"]).mean())


def _prepare(x, leaf, prior, taxonomy, norm) -> dict:
    return {"x": x, "leaf": leaf, "prior": prior, "norm": norm, "targets": torch.from_numpy(taxonomy.paths[leaf])}


def train_cropnet(
    X_train,
    leaf_train,
    X_val,
    leaf_val,
    taxonomy,
    cfg: CropTrainConfig | None = None,
    prior_train=None,
    prior_val=None,
    log: Callable[[str], None] = _log.info,
    days=None,
) -> tuple[CropNet, dict]:
    """Train CropNet; returns (model in eval mode with the best validation weights, history). history holds
    per-epoch losses and accuracy, best_epoch, normalisation {mean, std} (for the checkpoint and prediction)
    and the config. Without a validation set (X_val None) it trains all epochs and keeps the last weights.
    `days`: the series' steps (days of year) the augmentations shift on; default the 43 five-day steps. With
    cfg.window the model takes the steps inside it (history["steps"]: the model's steps)."""
    cfg = cfg or CropTrainConfig()
    if cfg.prior and prior_train is None:
        raise ValueError("cfg.prior is set but no prior_train given; pass last year's leaves (−1 for unknown)")
    x, leaf, prior = _check_set(X_train, leaf_train, prior_train if cfg.prior else None, taxonomy, "training")
    all_days = STEP_DAYS_OF_YEAR if days is None else np.asarray(days, np.float64)
    window = window_days(all_days, cfg.window)
    x_in = crop_window(x, all_days, window)  # what the model sees unaugmented
    norm = band_statistics(x_in)
    train = _prepare(x, leaf, prior, taxonomy, norm)
    train["days"], train["window"] = all_days, window
    val = None
    if X_val is not None:
        pv = prior_val if cfg.prior else None
        if cfg.prior and pv is None:
            pv = np.full(len(leaf_val), -1)  # no prior known for the validation samples
        xv, leaf_v, pv = _check_set(X_val, leaf_val, pv, taxonomy, "validation")
        val = _prepare(crop_window(xv, all_days, window), leaf_v, pv, taxonomy, norm)

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = _device(cfg.device)
    arch = default_arch(taxonomy.sizes, taxonomy.n_leaves, cfg.width, cfg.dropout, cfg.prior, x_in.shape[1],
                        x_in.shape[2])  # fmt: skip
    model = init_weights(build_model(arch), cfg.init).to(device)
    levels = taxonomy.paths[leaf]
    weights = [
        torch.tensor(class_weights(levels[:, lv], n), dtype=torch.float32, device=device)
        for lv, n in enumerate(taxonomy.sizes)
    ]
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)

    history: dict = {"epochs": [], "best_epoch": None, "best_val_loss": None, "stopped_early": False}
    best_loss, best_state, waited = float("inf"), None, 0
    start = time.monotonic()
    for epoch in range(1, cfg.epochs + 1):
        record = {"epoch": epoch, "train_loss": _train_epoch(model, opt, train, weights, cfg, rng, device)}
        if val is not None:
            record["val_loss"], record["val_leaf_accuracy"] = _evaluate(model, val, weights, taxonomy.paths, device)
        history["epochs"].append(record)
        log(f"epoch {epoch}/{cfg.epochs}: " + ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "epoch"))
        if val is None:
            continue
        if record["val_loss"] < best_loss:
            best_loss, best_state, waited = record["val_loss"], copy.deepcopy(model.state_dict()), 0
            history["best_epoch"], history["best_val_loss"] = epoch, best_loss
        else:
            waited += 1
            if waited >= cfg.patience:
                history["stopped_early"] = True
                log(f"no better validation loss for {cfg.patience} epochs; keeping epoch {history['best_epoch']}")
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    elif history["epochs"]:
        history["best_epoch"] = history["epochs"][-1]["epoch"]
    model.eval()
    history.update(
        normalisation=norm,
        config=cfg.model_dump(),
        device=str(device),
        seconds=round(time.monotonic() - start, 2),
        n_train=len(x),
        n_val=0 if val is None else len(val["x"]),
        steps=[float(d) for d in (all_days if window is None else window)],
    )
    return model, history
