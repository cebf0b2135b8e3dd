"""The charts of the run report that are not block maps (those are mapper.maps.block_maps): the semantic
correctness distribution (the CropLayer paper's Fig. 9), the area against the statistics (Figs. 12 and 16),
the permutation importance of the decision models' features (Fig. 11) and the per-block IoU distribution.
Each takes plain dicts (validation.json, a model's metrics.json) and writes one PNG atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mapper.decide.truth import CORRECTNESS_CLASSES
from mapper.maps.plotting import figure, save_png

CLASS_COLOURS = {"TP": "#1a9850", "TN": "#91bfdb", "FP": "#fc8d59", "Noise": "#d73027", "Artifact": "#7b3294"}
WITHIN = 0.10  # the ±10 % consistency criterion with the statistics


def correctness_png(semantic: dict, out_png: Path | str) -> Path:
    """Stacked bars of the correctness classes per map (each source, then the final map), as shares of its
    blocks, with the correct rate (TP + TN) above each bar; the title says whether the classes come from the
    truth or the correctness model."""
    maps = [m for m in semantic.get("maps", []) if isinstance(semantic.get(m), dict)]
    fig = figure(7.5, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(maps))
    bottom = np.zeros(len(maps))
    for cls in CORRECTNESS_CLASSES:
        counts = np.array([semantic[m].get("classes", {}).get(cls, 0) for m in maps], float)
        n = np.array([max(semantic[m].get("n") or 0, 1) for m in maps], float)
        share = counts / n
        ax.bar(x, share, bottom=bottom, color=CLASS_COLOURS[cls], edgecolor="white", width=0.6, label=cls)
        bottom += share
    for i, m in enumerate(maps):
        rate = semantic[m].get("rate")
        text = "no blocks" if rate is None else f"{100 * rate:.1f} % correct\n(n = {semantic[m].get('n', 0)})"
        ax.text(i, 1.02, text, ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, maps, fontsize=9)
    ax.set_ylim(0, 1.25)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0], ["0", "25 %", "50 %", "75 %", "100 %"], fontsize=8)
    ax.set_ylabel("share of blocks")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False, title="class")
    source = "the truth" if semantic.get("from") == "truth" else "the correctness model (no truth)"
    ax.set_title(f"Semantic correctness per block, from {source}", fontsize=10)
    fig.tight_layout()
    return save_png(fig, out_png)


def _units(validation: dict) -> list[dict]:
    """Provinces, then prefectures, with a mapped area and a statistic to compare."""
    rows = []
    for p in validation.get("provinces", []):
        rows.append({"label": p["province"], "kind": "province", **p})
    for p in validation.get("prefectures", []):
        rows.append({"label": p.get("prefecture") or p.get("code"), "kind": "prefecture", **p})
    return [r for r in rows if r.get("mapped_ha") is not None and r.get("statistic_ha")]


def area_vs_statistics_png(validation: dict, out_png: Path | str, max_units: int = 40) -> Path:
    """Mapped area against the reference statistic per province and prefecture (Figs. 12/16): bars of both
    areas, and the deviation (mapped − statistic) / statistic with the ±10 % band, an estimate's 95 %
    interval as a whisker. Units without a statistic are left out (the caption counts them)."""
    units = _units(validation)[:max_units]
    n = max(len(units), 1)
    fig = figure(9.0, 1.4 + 0.28 * n)
    left, right = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [1.3, 1.0]})
    y = np.arange(len(units))[::-1]
    mapped = np.array([u["mapped_ha"] for u in units], float)
    stat = np.array([u["statistic_ha"] for u in units], float)
    left.barh(y + 0.2, stat, height=0.38, color="#bdbdbd", label="statistic")
    left.barh(y - 0.2, mapped, height=0.38, color="#238443", label="mapped")
    left.set_yticks(y, [f"{u['label']}" + (" (province)" if u["kind"] == "province" else "") for u in units],
                    fontsize=8)  # fmt: skip
    left.set_xlabel("cropland (ha)")
    left.legend(fontsize=8, loc="lower right")
    left.ticklabel_format(axis="x", style="sci", scilimits=(-3, 5))
    dev = 100 * (mapped - stat) / stat
    right.axvspan(-100 * WITHIN, 100 * WITHIN, color="#d9f0d3", label="±10 %")
    right.axvline(0, color="0.3", lw=0.8)
    colours = ["#1a9850" if abs(d) <= 100 * WITHIN else "#d73027" for d in dev]
    right.scatter(dev, y, c=colours, zorder=3, s=22)
    for yi, u in zip(y, units, strict=True):
        ci = u.get("ci95")
        if u.get("estimate") and ci:
            lo, hi = (100 * (c - u["statistic_ha"]) / u["statistic_ha"] for c in ci)
            right.plot([lo, hi], [yi, yi], color="0.3", lw=1.0, zorder=2)
    span = max(15.0, float(np.nanmax(np.abs(dev))) * 1.1) if len(dev) else 15.0
    right.set_xlim(-span, span)
    right.set_xlabel("(mapped − statistic) / statistic, %")
    right.legend(fontsize=8, loc="lower right")
    right.grid(True, axis="x", color="0.85")
    left_out = len(validation.get("provinces", [])) + len(validation.get("prefectures", [])) - len(_units(validation))
    title = "Mapped cropland against the statistics"
    if left_out > 0:
        title += f" ({left_out} unit{'s' if left_out != 1 else ''} without a statistic or cropland left out)"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, out_png)


def importance_png(metrics: dict[str, dict], out_png: Path | str, top: int = 12) -> Path:
    """Permutation importance (mean decrease of accuracy when a feature is shuffled, with its std) of each
    decision model's most important features (Fig. 11): one panel per model of `metrics` (kind -> the
    model's metrics.json)."""
    kinds = [k for k, m in metrics.items() if m.get("importance", {}).get("features")]
    fig = figure(9.0, 0.8 + 0.24 * top)
    axes = np.atleast_1d(fig.subplots(1, max(len(kinds), 1)))
    for ax, kind in zip(axes, kinds, strict=False):
        imp = metrics[kind]["importance"]
        feats = sorted(imp["features"], key=lambda f: f["mean"], reverse=True)[:top]
        y = np.arange(len(feats))[::-1]
        ax.barh(y, [f["mean"] for f in feats], xerr=[f.get("std", 0.0) for f in feats], color="#3182bd",
                error_kw={"lw": 0.8})  # fmt: skip
        ax.set_yticks(y, [f["feature"] for f in feats], fontsize=8)
        ax.set_xlabel(f"decrease of {imp.get('metric', 'accuracy')} when shuffled", fontsize=8)
        ax.set_title(f"{kind} model (n = {imp.get('n', '?')} test blocks)", fontsize=9)
        ax.axvline(0, color="0.4", lw=0.6)
    if not kinds:
        axes[0].text(0.5, 0.5, "no importance recorded with the models", ha="center", va="center")
        axes[0].set_axis_off()
    fig.suptitle("Permutation importance of the decision models' features", fontsize=10)
    fig.tight_layout()
    return save_png(fig, out_png)


def block_iou_png(blocks: list[dict], maps: list[str], out_png: Path | str) -> Path:
    """Histograms of the per-block IoU of each map over the blocks judged against the truth (blocks whose
    IoU is undefined, no cropland in map or truth, are counted in the legend)."""
    fig = figure(7.5, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    bins = np.linspace(0, 1, 21)
    colours = ["#fd8d3c", "#6baed6", "#238443", "#756bb1"]
    for i, name in enumerate(maps):
        values = [b["maps"].get(name, {}).get("iou") for b in blocks if b.get("truth")]
        ok = np.array([v for v in values if v is not None], float)
        undefined = len(values) - len(ok)
        label = f"{name} (median {np.median(ok):.3f}, {len(ok)} blocks" if len(ok) else f"{name} (no blocks"
        label += f"; {undefined} without cropland)" if undefined else ")"
        ax.hist(ok, bins=bins, histtype="step", lw=1.6, color=colours[i % len(colours)], label=label)
    ax.set_xlabel("pixel IoU of the block")
    ax.set_ylabel("blocks")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("Per-block IoU against the truth", fontsize=10)
    fig.tight_layout()
    return save_png(fig, out_png)


def densest_window(mask: np.ndarray, size: int, step: int = 25) -> tuple[int, int]:
    """(row, col) of the size × size window (clipped to the array) holding most True pixels, on a `step` grid."""
    h, w = mask.shape
    sr, sc = min(size, h), min(size, w)
    ii = np.zeros((h + 1, w + 1), np.int64)
    ii[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)
    rows = np.unique(np.append(np.arange(0, h - sr + 1, step), h - sr))[:, None]
    cols = np.unique(np.append(np.arange(0, w - sc + 1, step), w - sc))[None, :]
    counts = ii[rows + sr, cols + sc] - ii[rows, cols + sc] - ii[rows + sr, cols] + ii[rows, cols]
    r, c = np.unravel_index(int(np.argmax(counts)), counts.shape)
    return int(rows[r, 0]), int(cols[0, c])


def fields_over_imagery_png(mosaic_path: Path | str, final_path: Path | str, fields, out_png: Path | str,
                            size: int = 600, title: str = "") -> Path:  # fmt: skip
    """A block's imagery at full resolution — the size × size crop where its final cropland is densest — with
    the outlines of the field polygons (`fields`: a GeoDataFrame in EPSG:4326, e.g. fields/fields.parquet)
    drawn over it on the block's own z16 grid, so every image pixel is one screen pixel."""
    import rasterio
    from matplotlib.collections import LineCollection
    from rasterio.windows import Window

    from mapper.grid.tilegrid import ORIGIN_SHIFT, TILE_SIZE, global_pixel_to_lonlat, lonlat_to_global_pixel
    from mapper.maps.plotting import outline_segments

    with rasterio.open(final_path) as src:
        r0, c0 = densest_window(src.read(1) == 1, size)
        t = src.transform
    res = t.a
    zoom = round(np.log2(2 * ORIGIN_SHIFT / (TILE_SIZE * res)))
    col0, row0 = round((t.c + ORIGIN_SHIFT) / res) + c0, round((ORIGIN_SHIFT - t.f) / res) + r0
    with rasterio.open(mosaic_path) as src:
        h, w = min(size, src.height - r0), min(size, src.width - c0)
        rgb = np.moveaxis(src.read((1, 2, 3), window=Window(c0, r0, w, h)), 0, -1)
    (west, east), (north, south) = global_pixel_to_lonlat([col0, col0 + w], [row0, row0 + h], zoom)
    near = fields.cx[west:east, south:north] if len(fields) else fields
    lines = []
    for seg in outline_segments(near.geometry, (west, south, east, north)):
        x, y = lonlat_to_global_pixel(seg[:, 0], seg[:, 1], zoom)
        lines.append(np.column_stack([x - col0 - 0.5, y - row0 - 0.5]))  # pixel k spans [k - 0.5, k + 0.5]
    head = 0.3  # inches of title above the image
    fig = figure(w / 150, h / 150 + head)  # 150 dpi: one image pixel per output pixel
    ax = fig.add_axes((0, 0, 1, h / (h + 150 * head)))
    ax.imshow(rgb, interpolation="nearest")
    ax.add_collection(LineCollection(lines, colors="#ffff33", linewidths=0.7))
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_axis_off()
    fig.text(0.5, 1 - 0.5 * head / (h / 150 + head), title or f"{len(near):,} fields in view", ha="center",
             va="center", fontsize=7)  # fmt: skip
    return save_png(fig, out_png)
