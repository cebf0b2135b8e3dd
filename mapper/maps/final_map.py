"""The final map as files people open: block COGs, one VRT mosaic, and a PNG preview of it.

    write_block_cog(mask, window, path, *, block_id, tags=None) -> Path     one block, Cloud-Optimised GeoTIFF
    build_map_vrt(block_paths, out_vrt, *, overviews=True) -> Path          the region's mosaic (+ .vrt.ovr)
    map_preview_png(vrt_or_tif, out_png, max_px=2000) -> Path               a decimated view of the map

Maps with one cell per block are in mapper.maps.block_maps, the gallery of blocks in mapper.maps.gallery.

Values everywhere: 0 not cropland, 1 cropland, 255 no imagery (nodata). Every block lies on the one global
EPSG:3857 pixel grid of its zoom (mapper.grid.tilegrid), so the mosaic places each block at integer
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

from mapper.grid.tilegrid import ORIGIN_SHIFT, TILE_SIZE, PixelWindow, mercator_to_lonlat, pixel_size
from mapper.imagery.tiff_check import check_complete_geotiff
from mapper.maps.plotting import degree_ticks, figure, lat_label, lon_label, save_png
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
        with atomic_path(path, suffix=".tif", check=check_complete_geotiff) as tmp:
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


# ------------------------------------------------------------------------------------------------ preview
def map_preview_png(vrt_or_tif: Path | str, out_png: Path | str, max_px: int = 2000) -> Path:
    """A decimated picture of the final map (VRT or GeoTIFF): cropland green, not cropland light, no
    imagery white; legend, degree axes and the extent in the title. The read asks GDAL for the decimated
    size (nearest), which it serves from overviews when they exist. Written atomically."""
    import rasterio
    from matplotlib.patches import Patch
    from rasterio.enums import Resampling

    from mapper.grid.tilegrid import EARTH_RADIUS, lonlat_to_mercator

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
    fig = figure(width_in, min(14.0, max(3.5, width_in * 0.85 * aspect_hw + 1.0)))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(rgba, extent=(left, right, bottom, top), interpolation="nearest")
    # Axes in metres of EPSG:3857 (the map's own grid, undistorted), labelled in degrees.
    xt = degree_ticks(lon0, lon1)
    yt = degree_ticks(lat0, lat1)
    ax.set_xticks(np.radians(xt) * EARTH_RADIUS, [lon_label(v) for v in xt], fontsize=8)
    ax.set_yticks(lonlat_to_mercator(np.zeros_like(yt), yt)[1], [lat_label(v) for v in yt], fontsize=8)
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
        f"{Path(vrt_or_tif).name}: {lon_label(round(lon0, 3))}–{lon_label(round(lon1, 3))}, "
        f"{lat_label(round(lat0, 3))}–{lat_label(round(lat1, 3))}\n"
        f"1 preview pixel = {factor} × {factor} map pixels ({res * factor:.1f} m in EPSG:3857)",
        fontsize=9,
    )
    fig.tight_layout()
    return save_png(fig, out_png)
