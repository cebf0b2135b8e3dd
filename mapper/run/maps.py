"""The final map as files people open: block COGs, one VRT mosaic with overviews, and PNG maps.

    write_block_cog(mask, window, path, *, block_id, tags=None) -> Path     one block, Cloud-Optimised GeoTIFF
    build_map_vrt(block_paths, out_vrt, *, overviews=True) -> Path          the region's mosaic (+ .vrt.ovr)
    area_fraction_png(blocks, out_png, *, region_geometry=None, units=None, title="", column=...,
                      vmax=None, markers=None) -> Path                      fraction per block; samples enlarged
    map_preview_png(vrt_or_tif, out_png, max_px=2000) -> Path               a decimated view of the map
    block_gallery_png(blocks, run_dir, out_png, *, max_blocks=16, sources=None, imagery="a",
                      region_geometry=None) -> Path                         small multiples of mapped blocks

Values everywhere: 0 not cropland, 1 cropland, 255 no imagery (nodata). Every block lies on the one global
EPSG:3857 pixel grid of its zoom (mapper.imagery.tilegrid), so the mosaic places each block at integer
offsets computed from its transform: no resampling, and the VRT's transform is global grid arithmetic.
Every file is written under a temporary name and renamed into place (mapper.store.atomic).
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from mapper.imagery.tilegrid import ORIGIN_SHIFT, TILE_SIZE, PixelWindow, mercator_to_lonlat, pixel_size
from mapper.store.atomic import atomic_path, fsync_dir

CRS = "EPSG:3857"
NOT_CROPLAND, CROPLAND, NODATA = 0, 1, 255
COG_BLOCKSIZE = 512
OVERVIEW_MIN_SIDE = 512  # VRT overviews: halve until the smaller side is below this
VALUES_TAG = "0=not cropland;1=cropland;255=no imagery"
# RGBA of the map values: the block COGs and the VRT carry this palette, the PNG preview uses it too.
COLOURS = {NOT_CROPLAND: (241, 236, 220, 255), CROPLAND: (35, 132, 67, 255), NODATA: (255, 255, 255, 0)}
LABELS = {NOT_CROPLAND: "not cropland", CROPLAND: "cropland", NODATA: "no imagery"}


# ------------------------------------------------------------------------------------------------ block COG
def _check_mask(mask: np.ndarray, window: PixelWindow, what: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype == bool:
        mask = mask.astype(np.uint8)
    if mask.shape != window.shape or mask.dtype != np.uint8:
        raise ValueError(
            f"{what}: the final mask must be uint8 of the block grid's shape {window.shape} "
            f"(0 not cropland, 1 cropland, 255 no imagery); got {mask.dtype} {mask.shape}"
        )
    bad = (mask != NOT_CROPLAND) & (mask != CROPLAND) & (mask != NODATA)
    if bad.any():
        raise ValueError(
            f"{what}: mask values must be 0, 1 or 255; found {np.unique(mask[bad])[:5].tolist()} "
            "(a probability map must be thresholded first)"
        )
    return mask


def write_block_cog(
    mask: np.ndarray, window: PixelWindow, path: Path | str, *, block_id: str, tags: dict | None = None
) -> Path:
    """One block's final mask as a Cloud-Optimised GeoTIFF, written atomically.

    uint8, nodata 255, DEFLATE, 512 px tiles, the map palette, internal overviews (halving until under
    512 px) made with NEAREST so every overview pixel is still 0, 1 or 255. Tags: MAPPER_BLOCK,
    MAPPER_ZOOM, MAPPER_VALUES and `tags` (values as strings). The transform is the block window's,
    exact on the global EPSG:3857 grid. GDAL's COG driver copies from an in-memory GeoTIFF."""
    from rasterio.io import MemoryFile
    from rasterio.shutil import copy as gdal_copy

    path = Path(path)
    mask = _check_mask(mask, window, f"block {block_id}")
    all_tags = {"MAPPER_BLOCK": block_id, "MAPPER_ZOOM": str(window.zoom), "MAPPER_VALUES": VALUES_TAG}
    all_tags.update({str(k): str(v) for k, v in (tags or {}).items()})
    profile = {
        "driver": "GTiff",
        "width": window.width,
        "height": window.height,
        "count": 1,
        "dtype": "uint8",
        "crs": CRS,
        "transform": window.transform,
        "nodata": NODATA,
    }
    with MemoryFile() as mem, mem.open(**profile) as src:
        src.write(mask, 1)
        src.write_colormap(1, _palette())
        src.set_band_description(1, "cropland")
        src.update_tags(**all_tags)
        with atomic_path(path, suffix=".tif") as tmp:
            gdal_copy(
                src,
                tmp,
                driver="COG",
                COMPRESS="DEFLATE",
                LEVEL="6",
                BLOCKSIZE=str(COG_BLOCKSIZE),
                OVERVIEWS="AUTO",
                OVERVIEW_RESAMPLING="NEAREST",
            )
    return path


def _palette() -> dict[int, tuple[int, int, int, int]]:
    return {v: COLOURS.get(v, (0, 0, 0, 0)) for v in range(256)}


# ------------------------------------------------------------------------------------------------ VRT
@dataclass(frozen=True)
class _Source:
    path: Path
    window: PixelWindow
    block: tuple[int, int]  # the file's internal tile size (x, y)


def _source(path: Path) -> _Source:
    """A block file's place on the global grid, from its transform (integers, checked)."""
    import rasterio

    with rasterio.open(path) as ds:
        t = ds.transform
        if ds.count != 1 or ds.dtypes[0] != "uint8":
            raise ValueError(f"{path}: a map block is one uint8 band; got {ds.count} band(s) of {ds.dtypes[0]}")
        if ds.crs is None or ds.crs.to_epsg() != 3857:
            raise ValueError(f"{path}: map blocks are EPSG:3857 on the tile grid; got {ds.crs}")
        res = t.a
        zoom = round(math.log2(2 * ORIGIN_SHIFT / (TILE_SIZE * res))) if res > 0 else -1
        if zoom < 0 or abs(res - pixel_size(zoom)) > 1e-9 * res or t.b or t.d or abs(t.e + res) > 1e-9 * res:
            raise ValueError(f"{path}: the transform {tuple(t)[:6]} is not a north-up tile-grid transform")
        col = (t.c + ORIGIN_SHIFT) / res
        row = (ORIGIN_SHIFT - t.f) / res
        col0, row0 = round(col), round(row)
        if abs(col - col0) > 1e-6 or abs(row - row0) > 1e-6:
            raise ValueError(f"{path}: the origin is off the z{zoom} pixel grid by ({col - col0}, {row - row0}) px")
        window = PixelWindow(zoom, col0, row0, col0 + ds.width, row0 + ds.height)
        by, bx = ds.block_shapes[0]
    return _Source(path, window, (bx, by))


def overview_factors(width: int, height: int, min_side: int = OVERVIEW_MIN_SIDE) -> list[int]:
    """2, 4, 8, … until the overview's smaller side is below `min_side` (at least one level)."""
    factors = [2]
    while math.ceil(min(width, height) / factors[-1]) >= min_side:
        factors.append(factors[-1] * 2)
    return factors


def build_map_vrt(block_paths: Sequence[Path | str], out_vrt: Path | str, *, overviews: bool = True) -> Path:
    """A VRT mosaic of block files (from `write_block_cog`; all one zoom of the EPSG:3857 tile grid).

    The VRT covers the union of the blocks' windows; each block is a SimpleSource at its integer offset
    (no resampling), with its size and tiling given so GDAL opens a block file only when its pixels are
    read. Paths are relative to the VRT (relativeToVRT="1"), so the run directory can move. Nodata 255,
    the map palette and category names (0 not cropland, 1 cropland). Pixels outside every block read 255.
    The XML is streamed: the blocks are read for their headers only (~1 ms each), no pixels are held.

    With `overviews`, external overviews `<out_vrt>.ovr` are built (rasterio, NEAREST, factors 2, 4, 8, …
    until the smaller side is below 512 px; DEFLATE) so a GIS opens a province quickly. This reads every
    block pixel once. Atomic: both files are made under temporary names; then the old VRT is removed,
    the overviews renamed into place, then the VRT — a kill at any point leaves no VRT paired with the
    overviews of another (an orphan .ovr at worst). With overviews=False a stale .ovr is removed.
    """
    import rasterio
    from rasterio.enums import Resampling

    out_vrt = Path(out_vrt)
    out_vrt.parent.mkdir(parents=True, exist_ok=True)
    if not block_paths:
        raise ValueError(f"no block files to mosaic into {out_vrt}")
    sources = [_source(Path(p)) for p in block_paths]
    zooms = {s.window.zoom for s in sources}
    if len(zooms) != 1:
        raise ValueError(f"map blocks of several zooms {sorted(zooms)} cannot share one VRT; mosaic each zoom alone")
    zoom = zooms.pop()
    seen: dict[tuple[int, int], Path] = {}
    for s in sources:
        key = (s.window.col0, s.window.row0)
        if key in seen:
            raise ValueError(f"{s.path} and {seen[key]} are at the same place on the grid; give each block once")
        seen[key] = s.path
    full = PixelWindow(
        zoom,
        min(s.window.col0 for s in sources),
        min(s.window.row0 for s in sources),
        max(s.window.col1 for s in sources),
        max(s.window.row1 for s in sources),
    )
    sources.sort(key=lambda s: (s.window.row0, s.window.col0))
    vrt_dir = out_vrt.parent.resolve()
    tmp_vrt = out_vrt.parent / f".{out_vrt.name}.{uuid.uuid4().hex}.vrt"
    tmp_ovr = Path(f"{tmp_vrt}.ovr")
    final_ovr = Path(f"{out_vrt}.ovr")
    try:
        with open(tmp_vrt, "x", encoding="utf-8") as f:
            _write_vrt_xml(f, sources, full, vrt_dir)
            f.flush()
            os.fsync(f.fileno())
        if overviews:
            factors = overview_factors(full.width, full.height)
            with (
                rasterio.Env(
                    COMPRESS_OVERVIEW="DEFLATE",
                    BIGTIFF_OVERVIEW="IF_SAFER",
                    GDAL_TIFF_OVR_BLOCKSIZE=str(COG_BLOCKSIZE),
                ),
                rasterio.open(tmp_vrt, "r+") as ds,
            ):
                ds.build_overviews(factors, Resampling.nearest)
            with open(tmp_ovr, "rb+") as f:
                os.fsync(f.fileno())
        if out_vrt.exists():
            out_vrt.unlink()
        if overviews:
            os.replace(tmp_ovr, final_ovr)
        elif final_ovr.exists():
            final_ovr.unlink()
        os.replace(tmp_vrt, out_vrt)
        fsync_dir(out_vrt.parent)
    finally:
        for p in (tmp_vrt, tmp_ovr):
            if p.exists():
                p.unlink()
    return out_vrt


def _write_vrt_xml(f, sources: list[_Source], full: PixelWindow, vrt_dir: Path) -> None:
    from rasterio.crs import CRS as RioCRS

    t = full.transform
    f.write(f'<VRTDataset rasterXSize="{full.width}" rasterYSize="{full.height}">\n')
    f.write(f'  <SRS dataAxisToSRSAxisMapping="1,2">{escape(RioCRS.from_epsg(3857).to_wkt())}</SRS>\n')
    f.write(f"  <GeoTransform>{t.c!r}, {t.a!r}, 0.0, {t.f!r}, 0.0, {t.e!r}</GeoTransform>\n")
    f.write("  <Metadata>\n")
    for key, value in (
        ("MAPPER_ZOOM", str(full.zoom)),
        ("MAPPER_GRID_ORIGIN", f"{full.col0},{full.row0}"),
        ("MAPPER_BLOCKS", str(len(sources))),
        ("MAPPER_VALUES", VALUES_TAG),
    ):
        f.write(f"    <MDI key={quoteattr(key)}>{escape(value)}</MDI>\n")
    f.write("  </Metadata>\n")
    f.write(f'  <VRTRasterBand dataType="Byte" band="1" blockXSize="{COG_BLOCKSIZE}" blockYSize="{COG_BLOCKSIZE}">\n')
    f.write("    <Description>cropland</Description>\n")
    f.write(f"    <NoDataValue>{NODATA}</NoDataValue>\n")
    f.write("    <ColorInterp>Palette</ColorInterp>\n    <ColorTable>\n")
    for _, (r, g, b, a) in sorted(_palette().items()):
        f.write(f'      <Entry c1="{r}" c2="{g}" c3="{b}" c4="{a}"/>\n')
    f.write("    </ColorTable>\n    <CategoryNames>\n")
    f.write(f"      <Category>{LABELS[NOT_CROPLAND]}</Category>\n      <Category>{LABELS[CROPLAND]}</Category>\n")
    f.write("    </CategoryNames>\n")
    for s in sources:
        w = s.window
        rel = Path(os.path.relpath(s.path.resolve(), vrt_dir)).as_posix()
        f.write(
            "    <SimpleSource>\n"
            f'      <SourceFilename relativeToVRT="1">{escape(rel)}</SourceFilename>\n'
            "      <SourceBand>1</SourceBand>\n"
            f'      <SourceProperties RasterXSize="{w.width}" RasterYSize="{w.height}" DataType="Byte" '
            f'BlockXSize="{s.block[0]}" BlockYSize="{s.block[1]}"/>\n'
            f'      <SrcRect xOff="0" yOff="0" xSize="{w.width}" ySize="{w.height}"/>\n'
            f'      <DstRect xOff="{w.col0 - full.col0}" yOff="{w.row0 - full.row0}" '
            f'xSize="{w.width}" ySize="{w.height}"/>\n'
            "    </SimpleSource>\n"
        )
    f.write("  </VRTRasterBand>\n</VRTDataset>\n")


# ------------------------------------------------------------------------------------------------ PNG maps
def _figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=150)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out_png: Path | str) -> Path:
    out_png = Path(out_png)
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", facecolor="white")
    return out_png


def _lon_label(v: float) -> str:
    return f"{abs(v):g}°{'E' if v >= 0 else 'W'}"


def _lat_label(v: float) -> str:
    return f"{abs(v):g}°{'N' if v >= 0 else 'S'}"


def _degree_ticks(lo: float, hi: float, n: int = 6) -> np.ndarray:
    from matplotlib.ticker import MaxNLocator

    ticks = MaxNLocator(nbins=n, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    return np.round(ticks[(ticks >= lo) & (ticks <= hi)], 6)


def _outline_segments(geoms, bbox=None) -> list[np.ndarray]:
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
    from matplotlib.collections import LineCollection
    from matplotlib.colors import ListedColormap, Normalize
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from mapper.grid.blocks import BLOCK_DEG

    if column not in blocks.columns:
        raise ValueError(f"blocks have no column {column!r}; columns: {list(blocks.columns)}")
    if len(blocks) == 0:
        raise ValueError("no blocks to draw")
    ix, iy = _block_indices(blocks)
    values = blocks[column].to_numpy(np.float64)
    mapped = np.isfinite(values)
    n_mapped, n_unmapped = int(mapped.sum()), int((~mapped).sum())
    ix0, iy0 = int(ix.min()), int(iy.min())
    nx, ny = int(ix.max()) - ix0 + 1, int(iy.max()) - iy0 + 1
    image = np.full((ny, nx), np.nan)
    in_set = np.zeros((ny, nx), bool)
    image[iy - iy0, ix - ix0] = values
    in_set[iy - iy0, ix - ix0] = True
    west, south = ix0 * BLOCK_DEG - 180.0, iy0 * BLOCK_DEG - 90.0
    extent = (west, west + nx * BLOCK_DEG, south, south + ny * BLOCK_DEG)
    bbox = list(extent[0::2]) + list(extent[1::2])  # w, s, e, n
    n_cells = float(nx * ny)
    if region_geometry is not None:
        rb = region_geometry.bounds
        bbox = [min(bbox[0], rb[0]), min(bbox[1], rb[1]), max(bbox[2], rb[2]), max(bbox[3], rb[3])]
        n_cells = max(float(region_geometry.area) / BLOCK_DEG**2, float(len(values)))
    pad = 0.02 * max(bbox[2] - bbox[0], bbox[3] - bbox[1])
    view = (bbox[0] - pad, bbox[1] - pad, bbox[2] + pad, bbox[3] + pad)
    aspect = 1.0 / math.cos(math.radians((view[1] + view[3]) / 2))
    w_deg, h_deg = view[2] - view[0], (view[3] - view[1]) * aspect
    width_in = 8.0
    height_in = min(14.0, max(3.5, width_in * 0.74 * h_deg / w_deg + 1.0))
    map_w_in = min(width_in * 0.74, (height_in - 1.0) * w_deg / h_deg)  # the map's drawn width, about
    block_pt = BLOCK_DEG / w_deg * map_w_in * 72.0  # one block's side on the page
    sparse = is_sparse(n_mapped, n_cells) if markers is None else bool(markers and n_mapped)
    marker_pt = max(MARKER_PT, block_pt)
    enlarged = sparse and block_pt < MARKER_PT
    fig = _figure(width_in, height_in)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_facecolor("white")
    unmapped = np.where(in_set & np.isnan(image), 1.0, np.nan)
    ax.imshow(unmapped, extent=extent, origin="lower", cmap=ListedColormap(["#d4d4d4"]), interpolation="nearest")
    top = float(vmax) if vmax is not None else auto_vmax(values)
    norm = Normalize(0.0, max(top, 1e-6))
    im = ax.imshow(
        np.ma.masked_invalid(image), extent=extent, origin="lower", cmap="YlGn", norm=norm, interpolation="nearest"
    )
    if units is not None and len(units):
        ugeom = units.geometry if units.crs is None or units.crs.to_epsg() == 4326 else units.geometry.to_crs(4326)
        segs = _outline_segments(ugeom.values, view)
        ax.add_collection(LineCollection(segs, colors="0.45", linewidths=0.4))
    if region_geometry is not None:
        ax.add_collection(LineCollection(_outline_segments([region_geometry], view), colors="black", linewidths=0.9))
    handles = []
    grey_markers = False
    if sparse:
        cx = (ix + 0.5) * BLOCK_DEG - 180.0
        cy = (iy + 0.5) * BLOCK_DEG - 90.0
        grey_markers = bool(n_unmapped) and is_sparse(len(values), n_cells)
        if grey_markers:
            ax.scatter(cx[~mapped], cy[~mapped], s=marker_pt**2, marker="s", c="#d4d4d4", edgecolors="0.3",
                       linewidths=0.7, zorder=4)  # fmt: skip
        order = np.argsort(values[mapped])  # the highest fractions drawn last, on top
        ax.scatter(cx[mapped][order], cy[mapped][order], s=marker_pt**2, marker="s", c=values[mapped][order],
                   cmap="YlGn", norm=norm, edgecolors="black", linewidths=0.8, zorder=5)  # fmt: skip
        label = "mapped block, drawn enlarged" if enlarged else "mapped block"
        handles.append(Line2D([], [], ls="", marker="s", ms=7, mfc=im.cmap(0.6), mec="black", mew=0.8, label=label))
    if n_unmapped:
        label = f"not mapped ({n_unmapped:,} block{'' if n_unmapped == 1 else 's'})"
        handles.append(Patch(facecolor="#d4d4d4", edgecolor="0.3" if grey_markers else "0.6", label=label))
    ax.set_xlim(view[0], view[2])
    ax.set_ylim(view[1], view[3])
    ax.set_aspect(aspect)
    xt, yt = _degree_ticks(view[0], view[2]), _degree_ticks(view[1], view[3])
    ax.set_xticks(xt, [_lon_label(v) for v in xt], fontsize=8)
    ax.set_yticks(yt, [_lat_label(v) for v in yt], fontsize=8)
    ax.grid(True, color="0.55", linewidth=0.4, linestyle=":")
    ax.set_axisbelow(False)
    over = mapped.any() and float(np.nanmax(values)) > top + 1e-12
    cbar = fig.colorbar(im, ax=ax, shrink=0.75, pad=0.02, extend="max" if over else "neither")
    cbar.set_label("cropland area fraction" + (f" (colour scale 0–{top:g})" if top < 1 else ""))
    if handles:
        ax.legend(handles=handles, loc="lower left", fontsize=7, framealpha=0.9)
    lines = [title] if title else []
    line = f"{n_mapped:,} of {len(values):,} blocks mapped (0.05° blocks)"
    if n_mapped:
        line += f"; mean of mapped blocks {np.nanmean(values):.3f}"
    lines.append(line)
    if enlarged:
        share = 100.0 * n_mapped / n_cells
        lines.append(f"a sample of ≈{share:.2g} % of the region's blocks, each drawn as an enlarged square")
    ax.set_title("\n".join(lines), fontsize=10)
    fig.tight_layout()
    return _save(fig, out_png)


def map_preview_png(vrt_or_tif: Path | str, out_png: Path | str, max_px: int = 2000) -> Path:
    """A decimated picture of the final map (VRT or GeoTIFF): cropland green, not cropland light, no
    imagery white; legend, degree axes and the extent in the title. The read asks GDAL for the decimated
    size (nearest), which it serves from overviews when they exist. Written atomically."""
    import rasterio
    from matplotlib.patches import Patch
    from rasterio.enums import Resampling

    from mapper.imagery.tilegrid import EARTH_RADIUS, lonlat_to_mercator

    with rasterio.open(vrt_or_tif) as ds:
        if ds.crs is None or ds.crs.to_epsg() != 3857:
            raise ValueError(f"{vrt_or_tif}: the map preview expects the EPSG:3857 map; got {ds.crs}")
        factor = max(1, math.ceil(max(ds.width, ds.height) / max_px))
        shape = (math.ceil(ds.height / factor), math.ceil(ds.width / factor))
        data = ds.read(1, out_shape=shape, resampling=Resampling.nearest)
        left, bottom, right, top = ds.bounds
        res = ds.res[0]
    rgba = np.zeros((*shape, 4), np.uint8)
    for value, colour in COLOURS.items():
        rgba[data == value] = colour
    lon0, lat0 = mercator_to_lonlat(left, bottom)
    lon1, lat1 = mercator_to_lonlat(right, top)
    lon0, lat0, lon1, lat1 = float(lon0), float(lat0), float(lon1), float(lat1)
    aspect_hw = shape[0] / shape[1]
    width_in = 8.0
    fig = _figure(width_in, min(14.0, max(3.5, width_in * 0.85 * aspect_hw + 1.0)))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(rgba, extent=(left, right, bottom, top), interpolation="nearest")
    # Axes in metres of EPSG:3857 (the map's own grid, undistorted), labelled in degrees.
    xt = _degree_ticks(lon0, lon1)
    yt = _degree_ticks(lat0, lat1)
    ax.set_xticks(np.radians(xt) * EARTH_RADIUS, [_lon_label(v) for v in xt], fontsize=8)
    ax.set_yticks(lonlat_to_mercator(np.zeros_like(yt), yt)[1], [_lat_label(v) for v in yt], fontsize=8)
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.grid(True, color="0.35", linewidth=0.4, linestyle=":")
    ax.set_axisbelow(False)  # the graticule over the map
    handles = [
        Patch(facecolor=np.array(COLOURS[v]) / 255, edgecolor="0.5", label=LABELS[v])
        for v in (CROPLAND, NOT_CROPLAND, NODATA)
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=3, fontsize=8, frameon=False)
    ax.set_title(
        f"{Path(vrt_or_tif).name}: {_lon_label(round(lon0, 3))}–{_lon_label(round(lon1, 3))}, "
        f"{_lat_label(round(lat0, 3))}–{_lat_label(round(lat1, 3))}\n"
        f"1 preview pixel = {factor} × {factor} map pixels ({res * factor:.1f} m in EPSG:3857)",
        fontsize=9,
    )
    fig.tight_layout()
    return _save(fig, out_png)


# ------------------------------------------------------------------------------------------------ gallery
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

    from mapper.imagery.tilegrid import lonlat_to_mercator

    left, bottom, right, top = bounds
    (lon0, lon1), (lat0, lat1) = mercator_to_lonlat(np.array([left, right]), np.array([bottom, top]))
    pad = 0.01 * (lon1 - lon0)
    rect = (lon0 - pad, lat0 - pad, lon1 + pad, lat1 + pad)
    segs = []
    for seg in _outline_segments([region_geometry], rect):
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
    fig = _figure(width_in, nrows * (panel_in + title_in) + legend_in + caption_in + 0.1)
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
    return _save(fig, out_png)
