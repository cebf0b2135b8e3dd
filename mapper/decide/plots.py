"""Figures of the decision models' evaluation: the confusion matrix and the permutation importance (paper
Fig. 11), as PNG bytes (embedded in a model directory and the report) or files."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mapper.maps.plotting import annotate_cells
from mapper.store.atomic import atomic_write_bytes


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def confusion_png(metrics: Mapping[str, Any], title: str = "Confusion matrix") -> bytes:
    """PNG: counts in each cell, colour = share of the row (the true class), so rare classes stay visible."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no backend switch (renders with Agg)

    classes = list(metrics["classes"])
    cm = np.asarray(metrics["confusion"], dtype=float)
    row = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, row, out=np.zeros_like(cm), where=row > 0)
    k = len(classes)
    fig = Figure(figsize=(2.0 + 1.15 * k, 1.6 + 1.0 * k), dpi=150, layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    annotate_cells(ax, norm, lambda i, j: f"{int(cm[i, j])}\n" + (f"{norm[i, j]:.0%}" if row[i, 0] else "–"), 10)
    ax.set_xticks(range(k), labels=classes, rotation=30, ha="right", fontsize=10)
    ax.set_yticks(range(k), labels=[f"{c}\n(n={int(r)})" for c, r in zip(classes, row[:, 0], strict=True)], fontsize=10)
    ax.set_xlabel("Predicted class", fontsize=11)
    ax.set_ylabel("True class", fontsize=11)
    ax.set_title(f"{title}\naccuracy {metrics['accuracy']:.1%}, n = {metrics['n']}", fontsize=12)
    fig.colorbar(im, ax=ax, shrink=0.8).set_label("share of the true class (row)", fontsize=10)
    return _png(fig)


def importance_png(importances: Mapping[str, Any], title: str = "Permutation importance") -> bytes:
    """PNG: horizontal bars of the mean accuracy drop, largest on top, error bars = std over repeats."""
    from matplotlib.figure import Figure

    rows = sorted(importances["features"], key=lambda r: r["mean"])  # barh draws bottom-up
    names = [r["feature"] for r in rows]
    means = np.array([r["mean"] for r in rows])
    stds = np.array([r["std"] for r in rows])
    fig = Figure(figsize=(7.5, 1.6 + 0.32 * len(rows)), dpi=150, layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    ax.barh(y, means, xerr=stds, color="#4C72B0", ecolor="#333333", capsize=3, height=0.7)
    ax.set_yticks(y, labels=names, fontsize=10 if len(rows) <= 16 else 9)
    ax.axvline(0.0, color="#888888", linewidth=0.8)
    span = float(np.max(np.abs(means) + stds)) if len(rows) else 0.0
    for yi, m, s in zip(y, means, stds, strict=True):
        ax.text(max(m, 0.0) + s + 0.01 * (span or 1.0), yi, f"{m:.3f}", va="center", fontsize=8)
    low = min(0.0, float(np.min(means - stds))) if len(rows) else 0.0
    ax.set_xlim(low - (0.03 * span if low < 0 else 0.0), (span or 0.01) * 1.18)
    ax.margins(y=0.02)
    ax.set_xlabel(f"drop in {importances.get('metric', 'accuracy')} when the feature is shuffled", fontsize=11)
    ax.set_title(
        f"{title}\nbaseline {importances.get('metric', 'accuracy')} {importances['baseline']:.1%}, "
        f"{importances['n_repeats']} repeats, n = {importances['n']}",
        fontsize=12,
    )
    return _png(fig)


def plot_confusion(metrics: Mapping[str, Any], path: Path | str, title: str = "Confusion matrix") -> Path:
    """Write `confusion_png` to `path` atomically."""
    atomic_write_bytes(path, confusion_png(metrics, title))
    return Path(path)


def plot_importance(importances: Mapping[str, Any], path: Path | str, title: str = "Permutation importance") -> Path:
    """Write `importance_png` to `path` atomically."""
    atomic_write_bytes(path, importance_png(importances, title))
    return Path(path)
