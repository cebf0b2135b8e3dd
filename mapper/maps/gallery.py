"""Small multiples of mapped blocks: each block's imagery with the final cropland over it.

block_gallery_png(blocks, run_dir, out_png, *, max_blocks=16, sources=None, imagery="a",
                  region_geometry=None) -> Path
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mapper.grid.tilegrid import mercator_to_lonlat
from mapper.maps.final_map import CROPLAND, NODATA
from mapper.maps.plotting import figure, outline_segments, save_png

GALLERY_PX = 400  # the longer side of a gallery panel's decimated read
OVERLAY = (1.0, 0.16, 0.72)  # cropland overlay on imagery: magenta, apart from the greens and browns of land
NO_IMAGERY_GREY = (0.55, 0.55, 0.55)
OUTSIDE_VEIL = 0.55  # opacity of the white veil over a panel's part outside the region


def _run_sources(run_dir: Path) -> tuple[str, str]:
    import json

    run_json = run_dir / "run.json"
    try:
        sources = json.loads(run_json.read_text(encoding="utf-8"))["sources"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"no source names in {run_json} ({e!r}); give sources=(a, b)") from e
    return _two_sources(sources)


def _two_sources(sources) -> tuple[str, str]:
    if isinstance(sources, str) or len(sources) != 2:
        raise ValueError(f"sources are the run's two imagery sources (a, b); got {sources!r}")
    return str(sources[0]), str(sources[1])


@dataclass
class _Read:
    data: np.ndarray  # (bands, h, w) or (h, w), the longer side about GALLERY_PX
    valid: np.ndarray  # (h, w) bool: the dataset mask
    bounds: tuple[float, float, float, float]  # EPSG:3857 metres


def _decimated(path: Path, bands, resampling) -> _Read:
    """A read of `path` with the longer side about GALLERY_PX (GDAL uses overviews where there are)."""
    import rasterio

    with rasterio.open(path) as ds:
        factor = max(1, math.ceil(max(ds.width, ds.height) / GALLERY_PX))
        shape = (math.ceil(ds.height / factor), math.ceil(ds.width / factor))
        out_shape = (len(bands), *shape) if isinstance(bands, list) else shape
        data = ds.read(bands, out_shape=out_shape, resampling=resampling)
        valid = ds.dataset_mask(out_shape=shape) > 0
        return _Read(data, valid, tuple(ds.bounds))


def _pct(v) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "?"
    if not np.isfinite(v):
        return "?"
    return f"{100 * v:.1f} %" if v >= 0.001 or v == 0 else f"{100 * v:.2f} %"


def _text(v) -> str:
    return "?" if v is None or (isinstance(v, float) and not np.isfinite(v)) else str(v)


def _region_in_panel(region_geometry, bounds, shape) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The region's outline inside a panel, in the panel's pixel coordinates (imshow: centres at integers),
    and the panel's pixels outside the region (None when the whole panel is inside)."""
    import shapely
    from rasterio.features import geometry_mask
    from rasterio.transform import Affine

    from mapper.grid.tilegrid import lonlat_to_mercator

    left, bottom, right, top = bounds
    (lon0, lon1), (lat0, lat1) = mercator_to_lonlat(np.array([left, right]), np.array([bottom, top]))
    pad = 0.01 * (lon1 - lon0)
    rect = (lon0 - pad, lat0 - pad, lon1 + pad, lat1 + pad)
    segs = []
    for seg in outline_segments([region_geometry], rect):
        x, y = lonlat_to_mercator(seg[:, 0], seg[:, 1])
        col = (np.asarray(x) - left) / ((right - left) / shape[1]) - 0.5
        row = (top - np.asarray(y)) / ((top - bottom) / shape[0]) - 0.5
        segs.append(np.column_stack([col, row]))
    part = shapely.clip_by_rect(region_geometry, *rect)
    if part.is_empty:
        return segs, np.ones(shape, bool)
    if not segs:
        return segs, None
    merc = shapely.transform(part, lambda c: np.column_stack(lonlat_to_mercator(c[:, 0], c[:, 1])))
    transform = Affine((right - left) / shape[1], 0.0, left, 0.0, -(top - bottom) / shape[0], top)
    outside = geometry_mask([merc], out_shape=shape, transform=transform)
    return segs, outside if outside.any() else None


def block_gallery_png(
    blocks,
    run_dir: Path | str,
    out_png: Path | str,
    *,
    max_blocks: int = 16,
    sources=None,
    imagery: str = "a",
    region_geometry=None,
) -> Path:
    """Small multiples of mapped blocks: imagery with the final cropland mask over it, written atomically.

    `blocks`: the run's block table (blocks.parquet) with block_id, status, decision, cropland_fraction,
    a_coverage, b_coverage (and frac_inside, optional). The blocks with status "done" whose files are there
    are drawn, at most `max_blocks` of them (an evenly spread subset in table order when more). Each panel
    shows the block's source-A mosaic (`run_dir/mosaics/<a>/<block>.tif`; the other source's when A's is
    missing; `imagery="b"` prefers B, `imagery="decision"` the source the decision took), decimated to
    about 400 px (average), with the final mask (`run_dir/final/<block>.tif`, nearest, served from the COG
    overviews) over it: cropland in translucent magenta with its outline, no imagery greyed and hatched.
    With `region_geometry` (EPSG:4326) the region's boundary is drawn where it crosses a block and the
    part outside it veiled in white. Panel
    titles: block id, decision, cropland fraction (of the part inside the region, whose share is given
    when under 99.5 %), the IQA coverage class of both sources. `sources`: the (a, b) source names, by
    default run.json's "sources". Blocks without their final mask or any mosaic are skipped, and the
    caption names them. matplotlib Agg, no pyplot state; ~0.3 s a block."""
    from matplotlib.collections import LineCollection
    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from rasterio.enums import Resampling

    run_dir = Path(run_dir)
    if imagery not in ("a", "b", "decision"):
        raise ValueError(f"imagery is 'a', 'b' or 'decision'; got {imagery!r}")
    if max_blocks < 1:
        raise ValueError(f"max_blocks must be at least 1; got {max_blocks}")
    src_a, src_b = _two_sources(sources) if sources is not None else _run_sources(run_dir)
    if "block_id" not in blocks.columns:
        raise ValueError(f"blocks have no column 'block_id'; columns: {list(blocks.columns)}")
    done = blocks[blocks["status"] == "done"] if "status" in blocks.columns else blocks
    rows, skipped = [], []
    for row in done.itertuples(index=False):
        block_id = str(row.block_id)
        final = run_dir / "final" / f"{block_id}.tif"
        prefer_b = imagery == "b" or (imagery == "decision" and _text(getattr(row, "decision", None)) == "Only B")
        names = (src_b, src_a) if prefer_b else (src_a, src_b)
        mosaics = [run_dir / "mosaics" / name / f"{block_id}.tif" for name in names]
        found = [(m, name) for m, name in zip(mosaics, names, strict=True) if m.is_file()]
        if not final.is_file() or not found:
            skipped.append((block_id, "final mask" if not final.is_file() else "mosaic"))
            continue
        rows.append((row, final, *found[0], found[0][1] != names[0]))
    n_ok = len(rows)
    if n_ok > max_blocks:
        pick = np.unique(np.round(np.linspace(0, n_ok - 1, max_blocks)).astype(int))
        rows = [rows[i] for i in pick]
    n = len(rows)
    ncols = max(1, min(4, n, math.ceil(math.sqrt(n)) + (1 if n > 6 else 0)))
    nrows = max(1, math.ceil(n / ncols))
    panel_in, title_in = 3.0, 0.55
    width_in = max(ncols * panel_in + 0.3, 8.0)  # the legend and the caption need some width
    n_handles = 5 if region_geometry is not None else 3
    legend_cols = max(1, min(n_handles, int(width_in // 2.3)))
    legend_in = 0.12 + 0.22 * math.ceil(n_handles / legend_cols)
    caption_in = 0.3 + 0.14 * (1 + bool(skipped))
    fig = figure(width_in, nrows * (panel_in + title_in) + legend_in + caption_in + 0.1)
    overlay = ListedColormap([(*OVERLAY, 0.42)])
    grey = ListedColormap([(*NO_IMAGERY_GREY, 0.75)])
    veil = ListedColormap([(1.0, 1.0, 1.0, OUTSIDE_VEIL)])
    km = None
    for k, (row, final, mosaic, shown, fallback) in enumerate(rows):
        img = _decimated(mosaic, [1, 2, 3], Resampling.average)
        mask = _decimated(final, 1, Resampling.nearest)
        rgb, valid = np.moveaxis(img.data, 0, -1), img.valid
        if rgb.shape[:2] != mask.data.shape:  # another grid: show the mask alone rather than misplace it
            rgb, valid = np.full((*mask.data.shape, 3), 255, np.uint8), np.ones(mask.data.shape, bool)
        left, bottom, right, top = mask.bounds
        if km is None:
            scale = math.cos(math.radians(float(mercator_to_lonlat(0.0, (bottom + top) / 2)[1]))) / 1000
            km = ((right - left) * scale, (top - bottom) * scale)
        ax = fig.add_subplot(nrows, ncols, k + 1)
        ax.imshow(rgb, interpolation="antialiased")
        crop = mask.data == CROPLAND
        none = (mask.data == NODATA) | ~valid
        ax.imshow(np.where(crop, 1.0, np.nan), cmap=overlay, interpolation="nearest", vmin=0, vmax=1)
        if crop.any() and not crop.all():
            ax.contour(crop.astype(np.float32), levels=[0.5], colors=[OVERLAY], linewidths=0.7)
        if none.any():
            ax.imshow(np.where(none, 1.0, np.nan), cmap=grey, interpolation="nearest", vmin=0, vmax=1)
            ax.contourf(none.astype(np.float32), levels=[0.5, 1.5], colors="none", hatches=["////"])
        if region_geometry is not None:
            segs, outside = _region_in_panel(region_geometry, mask.bounds, mask.data.shape)
            if outside is not None:
                ax.imshow(np.where(outside, 1.0, np.nan), cmap=veil, interpolation="nearest", vmin=0, vmax=1)
            ax.add_collection(LineCollection(segs, colors="black", linewidths=2.2))
            ax.add_collection(LineCollection(segs, colors="white", linewidths=1.0, linestyles=(0, (3, 2))))
        ax.set_xlim(-0.5, mask.data.shape[1] - 0.5)
        ax.set_ylim(mask.data.shape[0] - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_yticks([])
        inside = getattr(row, "frac_inside", None)
        inside = float(inside) if inside is not None and np.isfinite(float(inside)) else 1.0
        fraction = f"cropland {_pct(getattr(row, 'cropland_fraction', None))}"
        if inside < 0.995:
            fraction += f" of the {_pct(inside)} of the block in the region"
        ax.set_title(
            f"{row.block_id} · {_text(getattr(row, 'decision', None))}\n{fraction}\n"
            f"IQA {src_a}: {_text(getattr(row, 'a_coverage', None))} · "
            f"{src_b}: {_text(getattr(row, 'b_coverage', None))}" + (f" · shown: {shown}" if fallback else ""),
            fontsize=7,
        )
    handles = [
        Patch(facecolor=(*OVERLAY, 0.42), edgecolor=OVERLAY, linewidth=1.0, label="cropland (final map)"),
        Patch(facecolor=(*NO_IMAGERY_GREY, 0.75), edgecolor="0.3", hatch="////", label="no imagery"),
        Line2D([], [], ls="", marker="s", ms=9, mfc="none", mec="0.4", label="not cropland: imagery as is"),
    ]
    if region_geometry is not None:
        handles.append(Line2D([], [], color="black", lw=2.2, label="region boundary"))
        handles.append(Patch(facecolor=(0.93, 0.93, 0.93), edgecolor="0.6", label="outside the region (veiled)"))
    fig.legend(handles=handles, loc="upper center", ncol=legend_cols, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 1.0), handlelength=1.6, columnspacing=1.2)  # fmt: skip
    shown_what = {"a": f"{src_a} imagery", "b": f"{src_b} imagery", "decision": "imagery of the source decided on"}
    n_done = len(done)
    line = f"{n} of {n_done:,} mapped block{'' if n_done == 1 else 's'} shown"
    if n < n_ok:
        line += " (evenly spread in table order)"
    line += f"; {shown_what[imagery]}, north up"
    if km is not None:
        line += f"; a panel is ≈{km[0]:.1f} × {km[1]:.1f} km"
    caption = [line]
    if skipped:
        listed = ", ".join(f"{b} ({why})" for b, why in skipped[:6])
        more = f", +{len(skipped) - 6} more" if len(skipped) > 6 else ""
        caption.append(f"skipped, file missing: {listed}{more}")
    if not n:
        fig.text(0.5, 0.55, "no mapped block with its files to show", ha="center", fontsize=11)
    fig.text(0.5, 0.012, "\n".join(caption), ha="center", va="bottom", fontsize=7.5)
    height = fig.get_figheight()
    fig.subplots_adjust(
        left=0.02,
        right=0.98,
        top=1.0 - (legend_in + title_in) / height,
        bottom=caption_in / height,
        wspace=0.05,
        hspace=title_in / panel_in + 0.02,
    )
    return save_png(fig, out_png)
