"""The final map as files people open: block COGs, one VRT mosaic with overviews, and PNG maps.

    write_block_cog(mask, window, path, *, block_id, tags=None) -> Path     one block, Cloud-Optimised GeoTIFF
    build_map_vrt(block_paths, out_vrt, *, overviews=True) -> Path          the region's mosaic (+ .vrt.ovr)
    area_fraction_png(blocks, out_png, *, region_geometry=None, units=None, title="", column=...) -> Path
    map_preview_png(vrt_or_tif, out_png, max_px=2000) -> Path               a decimated view of the map

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


SPARSE_BLOCKS = 200  # up to this many mapped blocks, each is also drawn as a square marker


def area_fraction_png(
    blocks,
    out_png: Path | str,
    *,
    region_geometry=None,
    units=None,
    title: str = "",
    column: str = "cropland_fraction",
    vmax: float | None = 1.0,
) -> Path:
    """A map of cropland area fraction per block (the CropLayer paper's Fig. 17), written atomically.

    `blocks`: a (Geo)DataFrame, one row per block of the region, with `column` (0-1; NaN = not mapped) and
    the block's `ix`/`iy`, `block_id` or block polygon (EPSG:4326). Blocks are a regular 0.05° grid, so
    the map is an image with one pixel per block (imshow, exact extent): a province of 6,662 blocks or a
    country draws in well under a second. Colour ramp YlGn from 0 to `vmax` (1, or None for the data's
    maximum), blocks not mapped in light grey, the region outline (`region_geometry`, EPSG:4326) in
    black, optional unit outlines (`units`, a GeoDataFrame, e.g. prefectures) in grey, degree axes with a
    graticule; the aspect is 1/cos(latitude) so the map is not stretched. Up to SPARSE_BLOCKS mapped blocks (a
    sample run) are also drawn as square markers, enlarged, so that they can be seen at region scale."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from mapper.grid.blocks import BLOCK_DEG

    if column not in blocks.columns:
        raise ValueError(f"blocks have no column {column!r}; columns: {list(blocks.columns)}")
    if len(blocks) == 0:
        raise ValueError("no blocks to draw")
    ix, iy = _block_indices(blocks)
    values = blocks[column].to_numpy(np.float64)
    ix0, iy0 = int(ix.min()), int(iy.min())
    nx, ny = int(ix.max()) - ix0 + 1, int(iy.max()) - iy0 + 1
    image = np.full((ny, nx), np.nan)
    in_set = np.zeros((ny, nx), bool)
    image[iy - iy0, ix - ix0] = values
    in_set[iy - iy0, ix - ix0] = True
    west, south = ix0 * BLOCK_DEG - 180.0, iy0 * BLOCK_DEG - 90.0
    extent = (west, west + nx * BLOCK_DEG, south, south + ny * BLOCK_DEG)
    bbox = list(extent[0::2]) + list(extent[1::2])  # w, s, e, n
    if region_geometry is not None:
        rb = region_geometry.bounds
        bbox = [min(bbox[0], rb[0]), min(bbox[1], rb[1]), max(bbox[2], rb[2]), max(bbox[3], rb[3])]
    pad = 0.02 * max(bbox[2] - bbox[0], bbox[3] - bbox[1])
    view = (bbox[0] - pad, bbox[1] - pad, bbox[2] + pad, bbox[3] + pad)
    aspect = 1.0 / math.cos(math.radians((view[1] + view[3]) / 2))
    w_deg, h_deg = view[2] - view[0], (view[3] - view[1]) * aspect
    width_in = 8.0
    height_in = min(14.0, max(3.5, width_in * 0.74 * h_deg / w_deg + 1.0))
    fig = _figure(width_in, height_in)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_facecolor("white")
    unmapped = np.where(in_set & np.isnan(image), 1.0, np.nan)
    ax.imshow(unmapped, extent=extent, origin="lower", cmap=ListedColormap(["#d4d4d4"]), interpolation="nearest")
    top = vmax if vmax is not None else (float(np.nanmax(values)) if np.isfinite(values).any() else 1.0)
    im = ax.imshow(
        np.ma.masked_invalid(image),
        extent=extent,
        origin="lower",
        cmap="YlGn",
        vmin=0.0,
        vmax=max(top, 1e-6),
        interpolation="nearest",
    )
    mapped = np.isfinite(values)
    enlarged = 0 < mapped.sum() <= SPARSE_BLOCKS
    if enlarged:  # a sample's blocks are one image pixel each at region scale: draw them as visible squares
        lon = (ix[mapped] + 0.5) * BLOCK_DEG - 180.0
        lat = (iy[mapped] + 0.5) * BLOCK_DEG - 90.0
        ax.scatter(lon, lat, c=values[mapped], cmap="YlGn", vmin=0.0, vmax=max(top, 1e-6), marker="s", s=70,
                   edgecolors="black", linewidths=0.6, zorder=3)  # fmt: skip
    from matplotlib.collections import LineCollection

    if units is not None and len(units):
        ugeom = units.geometry if units.crs is None or units.crs.to_epsg() == 4326 else units.geometry.to_crs(4326)
        segs = _outline_segments(ugeom.values, view)
        ax.add_collection(LineCollection(segs, colors="0.45", linewidths=0.4))
    if region_geometry is not None:
        ax.add_collection(LineCollection(_outline_segments([region_geometry], view), colors="black", linewidths=0.9))
    ax.set_xlim(view[0], view[2])
    ax.set_ylim(view[1], view[3])
    ax.set_aspect(aspect)
    xt, yt = _degree_ticks(view[0], view[2]), _degree_ticks(view[1], view[3])
    ax.set_xticks(xt, [_lon_label(v) for v in xt], fontsize=8)
    ax.set_yticks(yt, [_lat_label(v) for v in yt], fontsize=8)
    ax.grid(True, color="0.55", linewidth=0.4, linestyle=":")
    ax.set_axisbelow(False)
    cbar = fig.colorbar(im, ax=ax, shrink=0.75, pad=0.02)
    cbar.set_label("cropland area fraction")
    n_unmapped = int((~mapped).sum())
    label = f"not mapped ({n_unmapped:,} block{'' if n_unmapped == 1 else 's'})"
    handles = [Patch(facecolor="#d4d4d4", edgecolor="0.6", label=label)]
    ax.legend(handles=handles, loc="lower left", fontsize=7, framealpha=0.9)
    subtitle = f"{int(mapped.sum()):,} of {len(values):,} blocks mapped (0.05° blocks"
    subtitle += ", drawn enlarged)" if enlarged else ")"
    if mapped.any():
        subtitle += f"; mean of mapped blocks {np.nanmean(values):.3f}"
    ax.set_title(f"{title}\n{subtitle}" if title else subtitle, fontsize=10)
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


def block_gallery_png(panels: Sequence[dict], out_png: Path | str, *, columns: int = 4, size_px: int = 360) -> Path:
    """Small multiples of blocks: each panel the block's image (`mosaic`, an RGB GeoTIFF) decimated to about
    `size_px`, with the final cropland (`final`, the block's mask: 1 cropland) outlined and tinted, and
    `title` above it. `panels`: dicts with those three keys; a panel whose files are missing is left out and
    counted in the caption. Reads use the files' overviews where they have them."""
    import rasterio
    from matplotlib.patches import Patch

    shown = [p for p in panels if Path(p["mosaic"]).exists() and Path(p["final"]).exists()]
    if not shown:
        raise ValueError("no block with both its image and its final mask to show")
    rows = math.ceil(len(shown) / columns)
    cols = min(columns, len(shown))
    fig = _figure(2.6 * cols, 3.1 * rows + 0.5)
    for k, panel in enumerate(shown):
        with rasterio.open(panel["mosaic"]) as src:
            f = max(1, max(src.width, src.height) // size_px)
            shape = (max(1, src.height // f), max(1, src.width // f))
            rgb = np.moveaxis(src.read((1, 2, 3), out_shape=(3, *shape)), 0, -1)
        with rasterio.open(panel["final"]) as src:
            mask = src.read(1, out_shape=shape)
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(rgb, interpolation="bilinear")
        crop = np.ma.masked_where(mask != 1, np.ones(shape))
        ax.imshow(crop, cmap=_single_colour("#ff2fd0"), alpha=0.35, interpolation="nearest", vmin=0, vmax=1)
        ax.contour((mask == 1).astype(np.uint8), levels=[0.5], colors="#ff2fd0", linewidths=0.5)
        ax.set_title(panel["title"], fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    missing = len(panels) - len(shown)
    caption = "tinted and outlined: cropland in the final map, over the image of the source it came from"
    if missing:
        caption += f"; {missing} block(s) without image or final mask left out"
    fig.legend(handles=[Patch(facecolor="#ff2fd0", alpha=0.5, label="cropland (final map)")], loc="lower center",
               fontsize=7, frameon=False, title=caption, title_fontsize=7)  # fmt: skip
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(fig, out_png)


def _single_colour(colour: str):
    from matplotlib.colors import ListedColormap

    return ListedColormap([colour])
