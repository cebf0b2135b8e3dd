"""Train and judge crop-type models on parcel datasets: the one path `mapper croptype train|evaluate` and the
transfer benchmark share.

The validation set is held out by window (whole sampled windows, never parcels of a window that trained),
so neighbouring fields of one place never sit on both sides. A dataset read from a public layout
(mapper.croptype.formats) brings its own splits in a `split` column (train / val / test): then training
uses its train rows and early-stops on its val rows, as the dataset's authors intended. Evaluation is on
another dataset: another region or another world seed, or a format's test split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mapper.croptype.dataset import DatasetError, ParcelDataset
from mapper.croptype.kinds import CropTypeModel, get_kind
from mapper.croptype.metrics import confusion_matrix, confusion_png, croptype_metrics
from mapper.croptype.taxonomy import Taxonomy, packaged_taxonomy
from mapper.croptype.train import CropTrainConfig


def split_by_window(ds: ParcelDataset, val_share: float, seed: int) -> tuple[ParcelDataset, ParcelDataset]:
    windows = np.array(sorted(ds.parcels["window"].unique()))
    if len(windows) < 2:
        raise DatasetError("a held-out validation set needs parcels from at least two windows; simulate more windows")
    rng = np.random.default_rng(seed)
    n_val = min(max(1, round(val_share * len(windows))), len(windows) - 1)
    val = set(rng.choice(windows, size=n_val, replace=False))
    is_val = ds.parcels["window"].isin(val).to_numpy()
    return ds.subset(~is_val), ds.subset(is_val)


def split_for_training(ds: ParcelDataset, val_share: float, seed: int) -> tuple[ParcelDataset, ParcelDataset, str]:
    """(train, validation, how): the dataset's own splits when it has train and val rows, else whole windows
    (of the train rows, when it has a split column without val rows)."""
    if "split" not in ds.parcels:
        return (*split_by_window(ds, val_share, seed), "held-out windows")
    split = ds.parcels["split"].to_numpy()
    if not (split == "train").any():
        raise DatasetError("the dataset has no training split (split column without 'train' rows); pass its training "
                           "folder or list")  # fmt: skip
    if (split == "val").any():
        how = (getattr(ds, "meta", None) or {}).get("split", {}).get("how", "the dataset's validation split")
        return ds.subset(split == "train"), ds.subset(split == "val"), how  # a table's seeded split says so
    return (*split_by_window(ds.subset(split == "train"), val_share, seed), "held-out windows of the train split")


def train_model(ds: ParcelDataset, out: Path, kind: str = "cropnet", cfg: CropTrainConfig | None = None,
                val_share: float = 0.2, taxonomy: Taxonomy | None = None, n_trees: int = 500,
                command: str = "", log=print) -> dict:  # fmt: skip
    """Train a model of `kind` (mapper.croptype.kinds: cropnet, forest, …) and save it to `out`; returns the
    training summary (its record, with the settings given as "config")."""
    taxonomy = taxonomy or packaged_taxonomy()
    cfg = cfg or CropTrainConfig()
    train, val, how = split_for_training(ds, val_share, cfg.seed)
    info = {
        "data": ds.meta.get("source") or ds.meta.get("sources"),
        "n_train": len(train),
        "n_val": len(val),
        "validation": how,
        "val_windows": sorted(val.parcels["window"].unique().tolist()) if how == "held-out windows" else [],
        "command": command,
    }
    model, record = get_kind(kind).fit(train, val, taxonomy, cfg, n_trees, log)
    pred = model.predict(model_input(model, val), prior=val.priors(taxonomy) if model.uses_prior else None)
    info["val_metrics"] = croptype_metrics(val.leaves(taxonomy), pred["levels"], taxonomy, pred.get("raw_levels"))
    info.update(record)
    model.save(out, info)
    return {**info, "config": cfg.model_dump()}


def predict_dataset(model: CropTypeModel, ds: ParcelDataset, taxonomy: Taxonomy) -> dict:
    """The model's predictions of a dataset's series (its bands picked by name; last year's crops as the prior
    of a model that takes one)."""
    prior = ds.priors(taxonomy) if model.uses_prior else None
    return model.predict(model_input(model, ds), prior=prior)


def model_input(model: CropTypeModel, ds: ParcelDataset) -> np.ndarray:
    """The dataset's series on the model's bands (picked by name) and steps (its window, when the dataset's
    series is longer: a model trained with a window)."""
    x = ds.series[:, [list(ds.bands).index(b) for b in model.bands]]
    have, want = np.asarray(ds.steps, np.float64), np.asarray(model.steps, np.float64)
    if len(have) == len(want):
        return x
    idx = np.searchsorted(have, want)
    if (idx >= len(have)).any() or not np.allclose(have[np.minimum(idx, len(have) - 1)], want):
        raise DatasetError(f"the model takes {len(want)} steps (days {want[0]:g}..{want[-1]:g}); the data's "
                           f"{len(have)} steps ({have[0]:g}..{have[-1]:g}) do not hold them all")  # fmt: skip
    return x[:, :, idx]


def evaluate_model(model: CropTypeModel, ds: ParcelDataset, taxonomy: Taxonomy | None = None,
                   figures: Path | None = None, title: str = "") -> dict:  # fmt: skip
    """Per-level OA, macro-F1 (classes present) and confusion matrices of a model on a dataset; confusion
    PNGs into `figures` when given."""
    taxonomy = taxonomy or packaged_taxonomy()
    truth = ds.leaves(taxonomy)
    pred = predict_dataset(model, ds, taxonomy)
    out = croptype_metrics(truth, pred["levels"], taxonomy, pred.get("raw_levels"))
    out["n_parcels"] = len(ds)
    crop = taxonomy.cropped[truth]
    if 0 < crop.sum() < len(truth):  # land that is not a crop among the samples: judge the crops alone too
        out["crop_accuracy"] = {"accuracy": float((pred["leaf"][crop] == truth[crop]).mean()), "n": int(crop.sum())}
    if figures is not None:
        figures.mkdir(parents=True, exist_ok=True)
        truth_levels = taxonomy.levels_of_leaves(truth)
        for level in range(4):
            names = taxonomy.names[level]
            cm = confusion_matrix(truth_levels[:, level], pred["levels"][:, level], len(names))
            confusion_png(cm, names, figures / f"confusion_level{level + 1}.png", f"{title} level {level + 1}".strip())
    return out
