"""Maps with one cell per 0.05° block: the area fraction per block (the CropLayer paper's Fig. 17) and
categorical block maps (coverage type, decision, correctness class: Figs. 6, 7, 9, 10).

    area_fraction_png(blocks, out_png, *, region_geometry=None, units=None, title="", column=...,
                      vmax=None, markers=None) -> Path                      fraction per block; samples enlarged
    block_category_png(blocks, column, classes, out_png, *, region_geometry=None, title="") -> Path
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mapper.maps.plotting import degree_ticks, figure, lat_label, lon_label, outline_segments, save_png


def _block_indices(blocks) -> tuple[np.ndarray, np.ndarray]:
    """(ix, iy) of each row: from `ix`/`iy` columns, else `block_id`, else the geometry's centroid."""
    from mapper.grid.blocks import lonlat_to_block_index

    if {"ix", "iy"} <= set(blocks.columns):
        return blocks["ix"].to_numpy(np.int64), blocks["iy"].to_numpy(np.int64)
    if "block_id" in blocks.columns:
        parts = blocks["block_id"].astype(str).str.split("_", expand=True)
        return parts[0].astype(np.int64).to_numpy(), parts[1].astype(np.int64).to_numpy()
    gs = blocks.geometry if blocks.crs is None or blocks.crs.to_epsg() == 4326 else blocks.geometry.to_crs(4326)
    import shapely

    c = shapely.get_coordinates(shapely.centroid(np.asarray(gs.values, dtype=object)))
    return lonlat_to_block_index(c[:, 0], c[:, 1])


SPARSE_MAX_BLOCKS = 200  # fewer mapped blocks than this (or than SPARSE_MAX_SHARE of the region) is a sample
SPARSE_MAX_SHARE = 0.02
MARKER_PT = 9.0  # side of a sample block's square marker, in points
_VMAX_STEPS = (0.1, 0.2, 0.3, 0.5, 1.0)


def auto_vmax(values) -> float:
    """The top of the fraction colour scale: 1 when the largest fraction is above 0.5, else the smallest of
    0.1, 0.2, 0.3, 0.5 at or above it, so a map of small fractions still spans the colour ramp."""
    values = np.asarray(values, np.float64)
    top = float(np.nanmax(values)) if np.isfinite(values).any() else 1.0
    return next((s for s in _VMAX_STEPS if top <= s + 1e-12), 1.0)


def is_sparse(n_mapped: int, n_cells: float) -> bool:
    """Whether `n_mapped` blocks of a region of `n_cells` block cells are a sample too sparse to see at one
    pixel per block: fewer than SPARSE_MAX_BLOCKS, or under SPARSE_MAX_SHARE of the cells."""
    return n_mapped > 0 and (n_mapped < SPARSE_MAX_BLOCKS or n_mapped < SPARSE_MAX_SHARE * n_cells)


def area_fraction_png(
    blocks,
    out_png: Path | str,
    *,
    region_geometry=None,
    units=None,
    title: str = "",
    column: str = "cropland_fraction",
    vmax: float | None = None,
    markers: bool | None = None,
) -> Path:
    """A map of cropland area fraction per block (the CropLayer paper's Fig. 17), written atomically.

    `blocks`: a (Geo)DataFrame, one row per block of the region, with `column` (0-1; NaN = not mapped) and
    the block's `ix`/`iy`, `block_id` or block polygon (EPSG:4326). Blocks are a regular 0.05° grid, so
    the map is an image with one pixel per block (imshow, exact extent): a province of 6,662 blocks or a
    country draws in well under a second. Colour ramp YlGn from 0 to `vmax` (None: `auto_vmax`, 1 when
    some fraction is above 0.5, else 0.1/0.2/0.3/0.5; a colour bar arrow when fractions exceed it), blocks
    not mapped in light grey, the region outline (`region_geometry`, EPSG:4326) in black, optional unit
    outlines (`units`, a GeoDataFrame, e.g. prefectures) in grey, degree axes with a graticule; the aspect
    is 1/cos(latitude) so the map is not stretched.

    A sample run (`is_sparse`: under 200 mapped blocks or under 2 % of the region's block cells, the cells
    counted from the region's area, else from the table's bounding box) would be a few invisible pixels:
    then each mapped block is also drawn as a square marker of at least MARKER_PT points, filled with its
    fraction's colour and edged in black (blocks of the table not mapped likewise in grey when they are
    few too), and the subtitle and legend say so. `markers` True/False forces this on/off."""
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    canvas = BlockCanvas.of(blocks, column, region_geometry, markers)
    values = canvas.values.astype(np.float64)
    mapped = np.isfinite(values)
    fig, ax = canvas.figure(width_in=8.0)
    canvas.draw_unmapped(ax)
    top = float(vmax) if vmax is not None else auto_vmax(values)
    norm = Normalize(0.0, max(top, 1e-6))
    im = ax.imshow(np.ma.masked_invalid(canvas.image(values)), extent=canvas.extent, origin="lower", cmap="YlGn",
                   norm=norm, interpolation="nearest")  # fmt: skip
    canvas.draw_outlines(ax, units)
    handles = []
    if canvas.sparse:
        canvas.draw_unmapped_markers(ax)
        order = np.argsort(values[mapped])  # the highest fractions drawn last, on top
        ax.scatter(canvas.cx[mapped][order], canvas.cy[mapped][order], s=canvas.marker_pt**2, marker="s",
                   c=values[mapped][order], cmap="YlGn", norm=norm, edgecolors="black", linewidths=0.8,
                   zorder=5)  # fmt: skip
        label = "mapped block, drawn enlarged" if canvas.enlarged else "mapped block"
        handles.append(Line2D([], [], ls="", marker="s", ms=7, mfc=im.cmap(0.6), mec="black", mew=0.8, label=label))
    handles += canvas.unmapped_handles()
    canvas.finish_axes(ax)
    over = mapped.any() and float(np.nanmax(values)) > top + 1e-12
    cbar = fig.colorbar(im, ax=ax, shrink=0.75, pad=0.02, extend="max" if over else "neither")
    cbar.set_label("cropland area fraction" + (f" (colour scale 0–{top:g})" if top < 1 else ""))
    if handles:
        ax.legend(handles=handles, loc="lower left", fontsize=7, framealpha=0.9)
    line = canvas.count_line()
    if canvas.n_mapped:
        line += f"; mean of mapped blocks {np.nanmean(values):.3f}"
    ax.set_title("\n".join([*([title] if title else []), line, *canvas.sample_line()]), fontsize=10)
    fig.tight_layout()
    return save_png(fig, out_png)


def block_category_png(
    blocks,
    column: str,
    classes: dict[str, str],
    out_png: Path | str,
    *,
    region_geometry=None,
    title: str = "",
    legend_title: str = "",
) -> Path:
    """A map of a categorical value per block (coverage type, decision, correctness class), written
    atomically: `classes` maps each value of `column` to its colour, in legend order; a missing value
    (None/NaN) is a block not mapped (grey), a value not in `classes` is drawn black as "other". The layout is
    area_fraction_png's (one cell per block, sample blocks drawn as enlarged squares); the legend gives
    the count of blocks of each class."""
    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    canvas = BlockCanvas.of(blocks, column, region_geometry, None)
    raw = canvas.values
    names = list(classes)
    known = {name: i for i, name in enumerate(names)}
    missing = np.array([v is None or (isinstance(v, float) and math.isnan(v)) for v in raw], bool)
    codes = np.array([known.get(str(v), len(names)) if not m else -1 for v, m in zip(raw, missing, strict=True)])
    colours = [classes[n] for n in names] + ["black"]
    cmap = ListedColormap(colours)
    fig, ax = canvas.figure(width_in=8.0)
    canvas.draw_unmapped(ax)
    image = canvas.image(np.where(codes >= 0, codes, np.nan).astype(np.float64))
    ax.imshow(np.ma.masked_invalid(image), extent=canvas.extent, origin="lower", cmap=cmap, vmin=-0.5,
              vmax=len(colours) - 0.5, interpolation="nearest")  # fmt: skip
    canvas.draw_outlines(ax, None)
    if canvas.sparse:
        canvas.draw_unmapped_markers(ax)
        ok = codes >= 0
        ax.scatter(canvas.cx[ok], canvas.cy[ok], s=canvas.marker_pt**2, marker="s", c=codes[ok], cmap=cmap,
                   vmin=-0.5, vmax=len(colours) - 0.5, edgecolors="black", linewidths=0.8, zorder=5)  # fmt: skip
    counts = np.bincount(codes[codes >= 0], minlength=len(colours))
    handles = [Patch(facecolor=classes[n], edgecolor="0.3", label=f"{n} ({counts[i]:,})") for i, n in enumerate(names)]
    if counts[-1]:
        handles.append(Patch(facecolor="black", edgecolor="0.3", label=f"other ({counts[-1]:,})"))
    handles += canvas.unmapped_handles()
    if canvas.enlarged:
        handles.append(Line2D([], [], ls="", marker="s", ms=7, mfc="white", mec="black", label="drawn enlarged"))
    canvas.finish_axes(ax)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
              title=legend_title or None, title_fontsize=8)  # fmt: skip
    ax.set_title("\n".join([*([title] if title else []), canvas.count_line(), *canvas.sample_line()]), fontsize=10)
    fig.tight_layout()
    return save_png(fig, out_png)


@dataclass
class BlockCanvas:
    """Where blocks go on a degree map: the image of one cell per block, the view around the region, and
    whether the blocks are a sparse sample drawn as enlarged square markers."""

    values: np.ndarray  # one value per row of the table (NaN/None: not mapped)
    ix: np.ndarray
    iy: np.ndarray
    extent: tuple[float, float, float, float]  # west, east, south, north of the cell image
    view: tuple[float, float, float, float]  # west, south, east, north drawn
    n_cells: float
    sparse: bool
    region_geometry: object = None
    marker_pt: float = MARKER_PT
    enlarged: bool = False

    @classmethod
    def of(cls, blocks, column: str, region_geometry, markers: bool | None) -> BlockCanvas:
        from mapper.grid.blocks import BLOCK_DEG

        if column not in blocks.columns:
            raise ValueError(f"blocks have no column {column!r}; columns: {list(blocks.columns)}")
        if len(blocks) == 0:
            raise ValueError("no blocks to draw")
        ix, iy = _block_indices(blocks)
        values = blocks[column].to_numpy()
        ix0, iy0 = int(ix.min()), int(iy.min())
        nx, ny = int(ix.max()) - ix0 + 1, int(iy.max()) - iy0 + 1
        west, south = ix0 * BLOCK_DEG - 180.0, iy0 * BLOCK_DEG - 90.0
        extent = (west, west + nx * BLOCK_DEG, south, south + ny * BLOCK_DEG)
        bbox = [extent[0], extent[2], extent[1], extent[3]]
        n_cells = float(nx * ny)
        if region_geometry is not None:
            rb = region_geometry.bounds
            bbox = [min(bbox[0], rb[0]), min(bbox[1], rb[1]), max(bbox[2], rb[2]), max(bbox[3], rb[3])]
            n_cells = max(float(region_geometry.area) / BLOCK_DEG**2, float(len(values)))
        pad = 0.02 * max(bbox[2] - bbox[0], bbox[3] - bbox[1])
        view = (bbox[0] - pad, bbox[1] - pad, bbox[2] + pad, bbox[3] + pad)
        n_mapped = int((~_missing(values)).sum())
        sparse = is_sparse(n_mapped, n_cells) if markers is None else bool(markers and n_mapped)
        return cls(values, ix, iy, extent, view, n_cells, sparse, region_geometry)

    @property
    def mapped(self) -> np.ndarray:
        return ~_missing(self.values)

    @property
    def n_mapped(self) -> int:
        return int(self.mapped.sum())

    @property
    def aspect(self) -> float:
        return 1.0 / math.cos(math.radians((self.view[1] + self.view[3]) / 2))

    @property
    def cx(self) -> np.ndarray:
        from mapper.grid.blocks import BLOCK_DEG

        return (self.ix + 0.5) * BLOCK_DEG - 180.0

    @property
    def cy(self) -> np.ndarray:
        from mapper.grid.blocks import BLOCK_DEG

        return (self.iy + 0.5) * BLOCK_DEG - 90.0

    def image(self, values: np.ndarray) -> np.ndarray:
        """`values` (one per row) as the cell image; cells without a block are NaN."""
        from mapper.grid.blocks import BLOCK_DEG

        nx = round((self.extent[1] - self.extent[0]) / BLOCK_DEG)
        ny = round((self.extent[3] - self.extent[2]) / BLOCK_DEG)
        out = np.full((ny, nx), np.nan)
        out[self.iy - self.iy.min(), self.ix - self.ix.min()] = values
        return out

    def figure(self, width_in: float):
        """The figure and its map axes, sized to the view's aspect; fixes the marker size for the page."""
        from mapper.grid.blocks import BLOCK_DEG

        view = self.view
        w_deg, h_deg = view[2] - view[0], (view[3] - view[1]) * self.aspect
        height_in = min(14.0, max(3.5, width_in * 0.74 * h_deg / w_deg + 1.0))
        map_w_in = min(width_in * 0.74, (height_in - 1.0) * w_deg / h_deg)  # the map's drawn width, about
        block_pt = BLOCK_DEG / w_deg * map_w_in * 72.0  # one block's side on the page
        self.marker_pt = max(MARKER_PT, block_pt)
        self.enlarged = self.sparse and block_pt < MARKER_PT
        fig = figure(width_in, height_in)
        ax = fig.add_subplot(1, 1, 1)
        ax.set_facecolor("white")
        return fig, ax

    def draw_unmapped(self, ax) -> None:
        from matplotlib.colors import ListedColormap

        unmapped = np.where(np.isfinite(self.image(np.where(self.mapped, np.nan, 1.0))), 1.0, np.nan)
        ax.imshow(unmapped, extent=self.extent, origin="lower", cmap=ListedColormap(["#d4d4d4"]),
                  interpolation="nearest")  # fmt: skip

    def draw_outlines(self, ax, units) -> None:
        from matplotlib.collections import LineCollection

        if units is not None and len(units):
            ugeom = units.geometry if units.crs is None or units.crs.to_epsg() == 4326 else units.geometry.to_crs(4326)
            ax.add_collection(LineCollection(outline_segments(ugeom.values, self.view), colors="0.45", linewidths=0.4))
        if self.region_geometry is not None:
            segs = outline_segments([self.region_geometry], self.view)
            ax.add_collection(LineCollection(segs, colors="black", linewidths=0.9))

    @property
    def grey_markers(self) -> bool:
        """Blocks of the table not mapped get grey markers too when they are a sparse set themselves."""
        n_unmapped = len(self.values) - self.n_mapped
        return self.sparse and bool(n_unmapped) and is_sparse(len(self.values), self.n_cells)

    def draw_unmapped_markers(self, ax) -> None:
        if self.grey_markers:
            off = ~self.mapped
            ax.scatter(self.cx[off], self.cy[off], s=self.marker_pt**2, marker="s", c="#d4d4d4", edgecolors="0.3",
                       linewidths=0.7, zorder=4)  # fmt: skip

    def unmapped_handles(self) -> list:
        from matplotlib.patches import Patch

        n_unmapped = len(self.values) - self.n_mapped
        if not n_unmapped:
            return []
        label = f"not mapped ({n_unmapped:,} block{'' if n_unmapped == 1 else 's'})"
        return [Patch(facecolor="#d4d4d4", edgecolor="0.3" if self.grey_markers else "0.6", label=label)]

    def finish_axes(self, ax) -> None:
        """Limits, the 1/cos(latitude) aspect, degree ticks and the graticule."""
        view = self.view
        ax.set_xlim(view[0], view[2])
        ax.set_ylim(view[1], view[3])
        ax.set_aspect(self.aspect)
        xt, yt = degree_ticks(view[0], view[2]), degree_ticks(view[1], view[3])
        ax.set_xticks(xt, [lon_label(v) for v in xt], fontsize=8)
        ax.set_yticks(yt, [lat_label(v) for v in yt], fontsize=8)
        ax.grid(True, color="0.55", linewidth=0.4, linestyle=":")
        ax.set_axisbelow(False)

    def count_line(self) -> str:
        return f"{self.n_mapped:,} of {len(self.values):,} blocks mapped (0.05° blocks)"

    def sample_line(self) -> list[str]:
        if not self.enlarged:
            return []
        share = 100.0 * self.n_mapped / self.n_cells
        return [f"a sample of ≈{share:.2g} % of the region's blocks, each drawn as an enlarged square"]


def _missing(values: np.ndarray) -> np.ndarray:
    """None or NaN, for float or object columns."""
    if values.dtype.kind == "f":
        return np.isnan(values)
    return np.array([v is None or (isinstance(v, float) and math.isnan(v)) for v in values], bool)
