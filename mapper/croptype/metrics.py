"""Crop-type accuracy per taxonomy level: overall accuracy, macro-F1 over the classes present in the truth,
the confusion matrix; the raw hierarchy consistency of independent per-level predictions; a confusion PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mapper.croptype.decode import raw_consistency


def confusion_matrix(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts, rows = truth, columns = prediction."""
    truth, pred = np.asarray(truth, np.int64), np.asarray(pred, np.int64)
    if truth.shape != pred.shape:
        raise ValueError(f"{truth.shape} truths but {pred.shape} predictions")
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (truth, pred), 1)
    return cm


def f1_per_class(cm: np.ndarray) -> np.ndarray:
    """2·TP / (2·TP + FP + FN) per class; 0 where the class is neither true nor predicted."""
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(axis=0) + cm.sum(axis=1)  # = 2·TP + FP + FN
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def macro_f1(cm: np.ndarray) -> float:
    """Mean F1 over the classes present in the truth; predicting a class the truth lacks still lowers the
    recall (and so the F1) of the classes the predictions were taken from."""
    present = cm.sum(axis=1) > 0
    return float(f1_per_class(cm)[present].mean()) if present.any() else float("nan")


def overall_accuracy(cm: np.ndarray) -> float:
    n = cm.sum()
    return float(np.trace(cm) / n) if n else float("nan")


def level_metrics(truth: np.ndarray, pred: np.ndarray, names: Sequence[str]) -> dict:
    cm = confusion_matrix(truth, pred, len(names))
    f1 = f1_per_class(cm)
    present = cm.sum(axis=1) > 0
    return {
        "n": int(cm.sum()),
        "overall_accuracy": overall_accuracy(cm),
        "macro_f1": macro_f1(cm),
        "classes": list(names),
        "classes_present": [n for n, p in zip(names, present, strict=True) if p],
        "f1": {n: float(v) for n, v, p in zip(names, f1, present, strict=True) if p},
        "confusion": cm.tolist(),
        "confusion_axes": "rows: true class, columns: predicted class",
    }


def croptype_metrics(true_leaf: np.ndarray, pred_levels: np.ndarray, taxonomy, raw_levels=None) -> dict:
    """JSON-able metrics of all four levels ("level1" … "level4"), the truth being the leaves' paths and the
    prediction (N, 4) class indices (decoded paths); with raw_levels (the heads' own argmaxes) also the share
    of them that form a valid path."""
    truth = taxonomy.levels_of_leaves(true_leaf)
    pred_levels = np.asarray(pred_levels, np.int64)
    if pred_levels.shape != truth.shape:
        raise ValueError(f"pred_levels must be (N, 4) = {truth.shape}, got {pred_levels.shape}")
    out = {
        f"level{lv + 1}": level_metrics(truth[:, lv], pred_levels[:, lv], taxonomy.names[lv])
        for lv in range(truth.shape[1])
    }
    if raw_levels is not None:
        out["raw_consistency"] = raw_consistency(raw_levels, taxonomy)
    return out


def confusion_png(cm, names: Sequence[str], path: Path | str, title: str = "Confusion matrix") -> Path:
    """Row-normalised confusion matrix (colour = share of the true class, so rare crops stay visible) with
    rotated labels; sized to stay readable for 25 classes. Counts are written in the cells up to 12 classes."""
    from matplotlib.figure import Figure  # no pyplot: no global state, renders with Agg

    from mapper.maps.plotting import annotate_cells

    cm = np.asarray(cm, np.float64)
    k = len(names)
    row = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, row, out=np.zeros_like(cm), where=row > 0)
    side = 3.0 + 0.42 * k
    fig = Figure(figsize=(side + 1.5, side), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    if k <= 12:
        annotate_cells(ax, share, lambda i, j: f"{int(cm[i, j])}" if cm[i, j] else None, fontsize=8)
    ax.set_xticks(range(k), labels=list(names), rotation=60, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(k), labels=[f"{n} ({int(r)})" for n, r in zip(names, row[:, 0], strict=True)], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (n)")
    n = int(cm.sum())
    oa = np.trace(cm) / n if n else float("nan")
    ax.set_title(f"{title}\noverall accuracy {oa:.1%}, n = {n}", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.7).set_label("share of the true class")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
