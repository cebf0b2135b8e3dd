"""Figures of a run's crop types: a gallery of block crop-type maps with their legend, and the area confusion
matrix against the simulated world's truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mapper.croptype.style import leaf_colours


def blocks_png(paths: list[Path], taxonomy, out: Path, title: str = "Crop types (level 4) of mapped blocks") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio
    from matplotlib.patches import Patch

    colours = leaf_colours(taxonomy)
    lut = np.zeros((256, 4))
    for code, rgba in colours.items():
        lut[code] = np.array(rgba) / 255.0
    n = max(len(paths), 1)
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols + 3.2, 4.2 * rows), squeeze=False)
    present = set()
    for ax, path in zip(axes.ravel(), paths, strict=False):
        with rasterio.open(path) as src:
            leaf = src.read(1)
        present |= set(np.unique(leaf).tolist()) - {0}
        ax.imshow(np.ones((*leaf.shape, 3)) * 0.92)
        ax.imshow(lut[leaf])
        ax.set_title(Path(path).stem, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[len(paths) :]:
        ax.axis("off")
    names = dict(zip(taxonomy.codes, taxonomy.leaf_names(), strict=True))
    handles = [Patch(color=np.array(colours[c]) / 255.0, label=names[c]) for c in taxonomy.codes if c in present]
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1 - 3.0 / (4.2 * cols + 3.2), 0.96))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def confusion_area_png(summary: dict, taxonomy, out: Path) -> Path:
    """Leaf-level confusion by area (truth rows, mapped columns; classes present in the truth or the map)."""
    from mapper.croptype.metrics import confusion_png

    cm = np.asarray(summary["confusion_m2"])[:, : taxonomy.n_leaves]
    keep = (cm.sum(axis=0) > 0) | (cm.sum(axis=1) > 0)
    names = [n for n, k in zip(taxonomy.leaf_names(), keep, strict=True) if k]
    acc = summary["accuracy_by_area"]["level4"]
    out.parent.mkdir(parents=True, exist_ok=True)
    return confusion_png(cm[np.ix_(keep, keep)] / 1e4, names, out,
                         f"Crop types vs the world's truth (ha; level-4 accuracy by area {acc:.1%})")  # fmt: skip
