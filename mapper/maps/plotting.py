"""Shared pieces of the PNG figures: an Agg figure without pyplot state, an atomic PNG save, degree axis labels
and ticks, polygon outlines as line segments, and the cell texts of a heat map (confusion matrices)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mapper.store.atomic import atomic_path


def figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=150)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, out_png: Path | str) -> Path:
    out_png = Path(out_png)
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", facecolor="white")
    return out_png


def lon_label(v: float) -> str:
    return f"{abs(v):g}°{'E' if v >= 0 else 'W'}"


def lat_label(v: float) -> str:
    return f"{abs(v):g}°{'N' if v >= 0 else 'S'}"


def degree_ticks(lo: float, hi: float, n: int = 6) -> np.ndarray:
    from matplotlib.ticker import MaxNLocator

    ticks = MaxNLocator(nbins=n, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    return np.round(ticks[(ticks >= lo) & (ticks <= hi)], 6)


def outline_segments(geoms, bbox=None) -> list[np.ndarray]:
    """The boundaries of (multi)polygons as line coordinate arrays, clipped to a bbox."""
    import shapely

    geoms = np.asarray(list(geoms), dtype=object)
    geoms = geoms[~shapely.is_missing(geoms)]
    if bbox is not None:
        geoms = shapely.clip_by_rect(geoms, *bbox)
    lines = shapely.get_parts(shapely.get_parts(shapely.boundary(geoms[~shapely.is_empty(geoms)])))
    if len(lines) == 0:
        return []
    coords, index = shapely.get_coordinates(lines, return_index=True)
    return np.split(coords, np.flatnonzero(np.diff(index)) + 1)


def annotate_cells(ax, share: np.ndarray, text, fontsize: float) -> None:
    """Write `text(i, j)` in each cell of a heat map of `share` (0-1; None: leave the cell blank), white on dark
    cells so it stays readable."""
    for i in range(share.shape[0]):
        for j in range(share.shape[1]):
            label = text(i, j)
            if label is not None:
                ax.text(j, i, label, ha="center", va="center", fontsize=fontsize,
                        color="white" if share[i, j] > 0.55 else "black")  # fmt: skip
