"""The two figures of `mapper compare` (CropLayer paper Figs. 14 and 15), written atomically as PNG.

deviation_vs_slope_png(summary, out_png, title) -> Path     2-D counts of Div (%) against the slope median
deviation_map_png(rows, min_af, out_png, title) -> Path     blocks at their lon/lat coloured by Div_AF, Div_ED
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mapper.maps.plotting import degree_ticks, figure, lat_label, lon_label, outline_segments, save_png

PANELS = (("area_fraction", "div_af", "area fraction"), ("edge_density", "div_ed", "edge density"))
MARKER_PT = 9.0  # smallest side of a block on the page, in points: a sample of blocks stays visible
SPARSE_MAX_BLOCKS = 200  # fewer blocks than this are a sample, drawn enlarged to MARKER_PT when smaller
_SCALE_STEPS = (10.0, 20.0, 25.0, 50.0, 100.0, 200.0)  # top of the symmetric Div colour scale, in %


def deviation_vs_slope_png(summary: dict, out_png: Path | str, title: str) -> Path:
    """Two panels (AF, ED) of block counts per (slope median, Div %) bin, blocks with AF_C > min_af; a zero
    line, a colour bar of block counts, empty bins left white."""
    from matplotlib.ticker import MaxNLocator

    hist = summary["deviation_vs_slope"]
    div_edges, slope_edges = np.array(hist["div_percent_edges"]), np.array(hist["slope_deg_edges"])
    fig = figure(11.0, 4.6)
    for i, (key, _, name) in enumerate(PANELS):
        ax = fig.add_subplot(1, 2, i + 1)
        counts = np.array(hist[key]["counts"], np.float64)
        n = hist[key]["blocks"]
        top = max(1.0, counts.max())  # the scale's ends half a block out, so a count of 1 is not an end colour
        mesh = ax.pcolormesh(slope_edges, div_edges, np.ma.masked_equal(counts, 0), cmap="viridis",
                             vmin=0.5, vmax=top + 0.5, shading="flat")  # fmt: skip
        ax.axhline(0.0, color="black", linewidth=1.0, linestyle="--")
        ax.set_xlim(slope_edges[0], slope_edges[-1])
        ax.set_ylim(div_edges[0], div_edges[-1])
        ax.set_xlabel("block slope median (°)")
        ax.set_ylabel(f"Div of {name} (T − C) / C  (%)")
        ax.grid(True, color="0.8", linewidth=0.4)
        ax.set_title(f"{name}: {n} block{'' if n == 1 else 's'} with AF_C > {hist['min_af']:g}", fontsize=10)
        if not n:
            ax.text(0.5, 0.5, "no block to count", transform=ax.transAxes, ha="center", color="0.4")
        ticks = MaxNLocator(nbins=5, integer=True, min_n_ticks=1).tick_values(1, top)  # whole blocks only
        ticks = ticks[(ticks >= 1) & (ticks <= top)]
        fig.colorbar(mesh, ax=ax, pad=0.02, ticks=ticks).set_label("blocks")
    fig.suptitle(f"Deviation versus slope: {title}\nabove 0 the other map (T) overestimates the run (C)",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    return save_png(fig, out_png)


def deviation_map_png(rows: list[dict], min_af: float, out_png: Path | str, title: str, region_geometry=None) -> Path:
    """Two maps (Div_AF, Div_ED): each block drawn at its lon/lat extent, red where the other map overestimates
    and blue where it underestimates, on a colour scale symmetric around 0; blocks with AF_C ≤ min_af or no Div
    in grey, blocks the other map does not cover outlined. A sample (under SPARSE_MAX_BLOCKS blocks) is drawn
    outlined, each block enlarged to MARKER_PT when smaller, so that it can be seen. `region_geometry`
    (EPSG:4326): the run's region, outlined, and the view spans it."""
    from matplotlib.collections import LineCollection, PatchCollection
    from matplotlib.colors import Normalize
    from matplotlib.patches import Patch, Rectangle

    from mapper.grid.blocks import BLOCK_DEG

    lon, lat = np.array([r["lon"] for r in rows]), np.array([r["lat"] for r in rows])
    view = _view(lon, lat, BLOCK_DEG, region_geometry)
    aspect = 1.0 / math.cos(math.radians((view[1] + view[3]) / 2))
    w_deg, h_deg = view[2] - view[0], (view[3] - view[1]) * aspect
    panel_w = 4.6  # inches of map per panel
    fig = figure(2 * panel_w + 2.4, min(12.0, max(3.6, panel_w * h_deg / w_deg + 1.1)))
    sparse = len(rows) < SPARSE_MAX_BLOCKS  # a sample: enlarge and outline; a full map: true size, no edges
    side = max(BLOCK_DEG, MARKER_PT / 72.0 / panel_w * w_deg) if sparse else BLOCK_DEG  # degrees
    enlarged = side > BLOCK_DEG * 1.001
    edge = 0.5 if sparse else 0.0
    # blocks the other map does not cover: dashed outlines in a sample, a pale fill in a full map
    uncovered = (
        {"facecolor": "white", "edgecolor": "0.3", "linewidth": 0.7, "linestyle": "--"}
        if sparse
        else {"facecolor": "#ece6d6", "edgecolor": "none", "linewidth": 0.0}
    )
    compared = np.array([r["status"] == "compared" for r in rows])
    above = compared & np.array([(r.get("af_c") or 0.0) > min_af for r in rows])

    def squares(mask):  # a block is BLOCK_DEG square in degrees; enlarged alike in both
        return [Rectangle((x - side / 2, y - side / 2), side, side) for x, y in zip(lon[mask], lat[mask], strict=True)]

    for i, (_, col, name) in enumerate(PANELS):
        ax = fig.add_subplot(1, 2, i + 1)
        div = np.array([_num(r.get(col)) * 100 for r in rows])
        shown = above & np.isfinite(div)
        top = _scale_top(div[shown])
        norm = Normalize(-top, top)

        grey = compared & ~shown
        ax.add_collection(PatchCollection(squares(grey), facecolor="#c8c8c8", edgecolor="0.4", linewidth=edge))
        ax.add_collection(PatchCollection(squares(~compared), **uncovered))
        coloured = PatchCollection(squares(shown), cmap="RdBu_r", norm=norm, edgecolor="black", linewidth=edge)
        coloured.set_array(div[shown])
        ax.add_collection(coloured)
        beyond = bool(shown.any() and np.abs(div[shown]).max() > top)
        cbar = fig.colorbar(coloured, ax=ax, shrink=0.8, pad=0.03, extend="both" if beyond else "neither")
        cbar.set_label(f"Div of {name} (%): red over, blue under")
        cbar.ax.axhline(0.0, color="black", linewidth=0.8)
        if region_geometry is not None:
            segs = outline_segments([region_geometry], view)
            ax.add_collection(LineCollection(segs, colors="black", linewidths=0.8, zorder=1))
        _finish_axes(ax, view, aspect)
        median = f"median {np.median(div[shown]):+.1f} %" if shown.any() else "no block coloured"
        ax.set_title(f"{name}: {int(shown.sum())} block(s) with AF_C > {min_af:g}; {median}", fontsize=9)
        grey_label = f"AF_C ≤ {min_af:g} or no Div ({int(grey.sum())})"
        handles = [Patch(facecolor="#c8c8c8", edgecolor="0.4", label=grey_label)] if grey.any() else []
        handles += [Patch(**uncovered, label=f"not compared ({int((~compared).sum())})")] if (~compared).any() else []
        if handles:
            ax.legend(handles=handles, loc="lower left", fontsize=7, framealpha=0.9)
    note = "; blocks drawn enlarged to be visible" if enlarged else ""
    fig.suptitle(f"Deviation map: {title}\nDiv = (T − C) / C per block{note}", fontsize=10)
    fig.tight_layout()
    return save_png(fig, out_png)


def _num(v) -> float:
    return math.nan if v is None else float(v)


def _view(lon: np.ndarray, lat: np.ndarray, block_deg: float, region_geometry=None) -> tuple[float, ...]:
    """(west, south, east, north) around the blocks and the region, padded so a single block does not touch
    the frame."""
    w, e = lon.min() - block_deg / 2, lon.max() + block_deg / 2
    s, n = lat.min() - block_deg / 2, lat.max() + block_deg / 2
    if region_geometry is not None:
        rw, rs, re, rn = region_geometry.bounds
        w, s, e, n = min(w, rw), min(s, rs), max(e, re), max(n, rn)
    pad = max(0.04 * max(e - w, n - s), block_deg / 2)
    return w - pad, s - pad, e + pad, n + pad


def _scale_top(values: np.ndarray) -> float:
    """The colour scale's top (%): the smallest step at or above the 95th percentile of |Div|, at most 200."""
    if not len(values):
        return _SCALE_STEPS[0]
    q = float(np.percentile(np.abs(values), 95))
    return next((s for s in _SCALE_STEPS if q <= s), _SCALE_STEPS[-1])


def _finish_axes(ax, view: tuple, aspect: float) -> None:
    ax.set_xlim(view[0], view[2])
    ax.set_ylim(view[1], view[3])
    ax.set_aspect(aspect)
    xt, yt = degree_ticks(view[0], view[2], 4), degree_ticks(view[1], view[3], 5)
    ax.set_xticks(xt, [lon_label(v) for v in xt], fontsize=7)
    ax.set_yticks(yt, [lat_label(v) for v in yt], fontsize=7)
    ax.grid(True, color="0.6", linewidth=0.4, linestyle=":")
