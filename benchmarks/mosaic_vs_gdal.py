"""Block mosaic + GeoTIFF: mapper versus GDAL's WMS/TMS driver, over the same local tiles.

mapper: a file-backed TileSource reads and decodes each tile (mapper.imagery.decode) and `write_block_mosaic`
writes the block's tiled GeoTIFF with its mask as the product does (MosaicConfig: zstd level 1, predictor 2,
compressed on all cores), streaming: the tiles are fetched one tile row at a time and each finished strip of
GeoTIFF tiles is compressed while the next row decodes. The same work done one step after the other
(`mosaic_window`, then `write_mosaic`: the same file, byte for byte) is timed too, for its two parts: the
mosaic step (tiles → block raster) and the write.
GDAL: the TMS minidriver reads the block's window from the same `file://` tiles (4 bands, alpha = mask) and
rasterio writes a GeoTIFF with the very same creation options and internal mask, with GDAL's defaults
(`gdal`) and, for a peer that also compresses on all cores, with GDAL_NUM_THREADS=ALL_CPUS (`gdal_mtw`).
Both run in this process, one after the other within each repeat (order rotated), on a warm page cache;
times are medians.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from benchmarks.common import (
    FileTileSource,
    file_url_template,
    median,
    render_tile_set,
    tile_path,
    window_keys,
    wms_xml,
)
from mapper.config.models import MosaicConfig
from mapper.grid.tilegrid import PixelWindow
from mapper.imagery.mosaic import geotiff_profile, mosaic_window, write_block_mosaic, write_mosaic


@dataclass
class Case:
    label: str  # block id or a description of the window
    window: PixelWindow


# GDAL_NUM_THREADS makes the GTiff driver compress its tiles in a thread pool (same file, same bytes).
THREADED_WRITE = {"GDAL_NUM_THREADS": "ALL_CPUS"}
OUTPUT = MosaicConfig()  # both sides write what the product writes by default


def gdal_mosaic(xml: str, window: PixelWindow, path: Path, write_env: dict | None = None) -> tuple[float, float]:
    """GDAL's path: read the window through the WMS driver, write it like write_mosaic. (read s, write s)"""
    import time

    import rasterio
    from rasterio.windows import Window

    t0 = time.perf_counter()
    with rasterio.open(xml) as ds:
        rgba = ds.read(window=Window(window.col0, window.row0, window.width, window.height))
    t1 = time.perf_counter()
    profile = geotiff_profile(window, 3, "uint8", OUTPUT.compress, OUTPUT.tile_size, OUTPUT.level)
    profile["photometric"] = "RGB"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True, **(write_env or {})), rasterio.open(path, "w", **profile) as dst:
        dst.write(rgba[:3])
        dst.write_mask(rgba[3])
    return t1 - t0, time.perf_counter() - t1


def mapper_mosaic(source: FileTileSource, window: PixelWindow, path: Path) -> tuple[float, float]:
    """mapper's path as the product runs it: fetch, decode, place and write, streamed. (0, total s)"""
    import time

    t0 = time.perf_counter()
    write_block_mosaic(source, window, path, **OUTPUT.model_dump())
    return 0.0, time.perf_counter() - t0


def mapper_oneshot(source: FileTileSource, window: PixelWindow, path: Path) -> tuple[float, float]:
    """The same, one step after the other: fetch+decode+place, then write. (mosaic s, write s)"""
    import time

    t0 = time.perf_counter()
    mosaic = mosaic_window(source, window)
    t1 = time.perf_counter()
    write_mosaic(mosaic, path, **OUTPUT.model_dump())
    return t1 - t0, time.perf_counter() - t1


def output_difference(a: Path, b: Path) -> int:
    """Largest pixel difference between two GeoTIFFs; raises if grid, CRS or mask differ."""
    import rasterio

    with rasterio.open(a) as fa, rasterio.open(b) as fb:
        if fa.transform != fb.transform or fa.crs != fb.crs:
            raise AssertionError(f"georeference differs: {fa.transform} {fa.crs} vs {fb.transform} {fb.crs}")
        if not np.array_equal(fa.dataset_mask(), fb.dataset_mask()):
            raise AssertionError("masks differ")
        return int(np.abs(fa.read().astype(np.int16) - fb.read()).max())


def run(
    cases: list[Case],
    tile_source,
    tiles_root: Path,
    *,
    repeats: int = 5,
    fmt: str = "png",
    workers: tuple[int, ...] = (1, 4),
    threaded_write: bool = True,
    log=print,
) -> list[dict]:
    """One row per case: median ms of each mapper variant and of GDAL, their parts and the ratios.

    Variants: `mapper_{w}t` (w decode threads, write_block_mosaic: the product's streamed path),
    `oneshot_{w}t` (mosaic_window, then write_mosaic), `gdal` (GDAL's defaults) and, with `threaded_write`,
    `gdal_mtw` (GDAL compressing on all cores, like the product). A row's `mapper_{w}t_ms` is the streamed
    path's time; its `mapper_{w}t_read_ms` and `mapper_{w}t_write_ms` are the one-shot path's two steps
    (the streamed path overlaps them); `mosaic_ratio_{w}t` compares GDAL's read with the mosaic step.
    """
    rows = []
    root = Path(tiles_root) / fmt
    for case in cases:
        render_tile_set(tile_source, window_keys(case.window), root, fmt)
    xml = wms_xml(file_url_template(root, fmt))
    wmax = max(workers)
    with tempfile.TemporaryDirectory(prefix="mapper-bench-") as tmp:
        tmp = Path(tmp)
        sources = {w: FileTileSource(root, fmt, workers=w) for w in workers}
        try:
            for case in cases:
                win = case.window
                m_out, o_out, g_out = tmp / "m.tif", tmp / "o.tif", tmp / "g.tif"
                variants = {f"mapper_{w}t": partial(mapper_mosaic, s, win, m_out) for w, s in sources.items()}
                variants |= {f"oneshot_{w}t": partial(mapper_oneshot, s, win, o_out) for w, s in sources.items()}
                variants["gdal"] = partial(gdal_mosaic, xml, win, g_out)
                if threaded_write:
                    variants["gdal_mtw"] = partial(gdal_mosaic, xml, win, g_out, THREADED_WRITE)
                variants["gdal"]()  # warm-up, and check both do the same work
                variants[f"mapper_{wmax}t"]()
                variants[f"oneshot_{wmax}t"]()
                if m_out.read_bytes() != o_out.read_bytes():
                    raise AssertionError(f"{case.label} {fmt}: the streamed and the one-shot GeoTIFFs differ")
                # PNG is lossless: identical pixels. JPEG is not decoded identically: OpenCV's libjpeg-turbo and
                # GDAL's own IJG libjpeg 9 upsample chroma differently (tens of levels apart at colour edges).
                diff = output_difference(m_out, g_out)
                if fmt == "png" and diff:
                    raise AssertionError(f"{case.label} {fmt}: mapper and GDAL pixels differ by up to {diff}")
                times: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
                names = list(variants)
                for r in range(repeats):  # interleaved, order rotated each repeat
                    for name in names[r % len(names) :] + names[: r % len(names)]:
                        times[name].append(variants[name]())
                row = {
                    "case": case.label,
                    "fmt": fmt,
                    "tiles": len(win.tiles()),
                    "pixels": win.width * win.height,
                    "max_diff": diff,
                }
                for name, ts in times.items():
                    row[f"{name}_ms"] = 1000 * median(a + b for a, b in ts)
                    row[f"{name}_read_ms"] = 1000 * median(a for a, _ in ts)
                    row[f"{name}_write_ms"] = 1000 * median(b for _, b in ts)
                for w in workers:
                    row[f"mapper_{w}t_oneshot_ms"] = row.pop(f"oneshot_{w}t_ms")
                    row[f"mapper_{w}t_read_ms"] = row.pop(f"oneshot_{w}t_read_ms")  # the mosaic step
                    row[f"mapper_{w}t_write_ms"] = row.pop(f"oneshot_{w}t_write_ms")
                    row[f"ratio_{w}t"] = row["gdal_ms"] / row[f"mapper_{w}t_ms"]
                    row[f"ratio_{w}t_oneshot"] = row["gdal_ms"] / row[f"mapper_{w}t_oneshot_ms"]
                    row[f"mosaic_ratio_{w}t"] = row["gdal_read_ms"] / row[f"mapper_{w}t_read_ms"]
                if threaded_write:
                    row[f"ratio_{wmax}t_vs_gdal_mtw"] = row["gdal_mtw_ms"] / row[f"mapper_{wmax}t_ms"]
                rows.append(row)
                ms = {k: row.get(f"{k}_ms", row.get(f"mapper_{k[8:]}_oneshot_ms")) for k in variants}
                steps = ", ".join(f"{row[f'mapper_{w}t_read_ms']:.0f}" for w in workers)
                log(
                    f"  {case.label} {fmt}: "
                    + ", ".join(f"{k} {v:.0f} ms" for k, v in ms.items())
                    + f" (mosaic step {steps} ms)"
                    + "; GDAL/mapper: "
                    + ", ".join(f"{k[6:]} {v:.2f}×" for k, v in row.items() if k.startswith("ratio_"))
                )
        finally:
            for s in sources.values():
                s.close()
    return rows


def profile_mapper(case: Case, tiles_root: Path, fmt: str = "png", repeats: int = 5) -> dict:
    """Where mapper's time goes for one block: read bytes, decode, checks, placement, GeoTIFF write (median ms)."""
    import time

    import cv2

    from mapper.imagery.decode import body_to_result, is_blank
    from mapper.imagery.mosaic import BlockMosaic, tile_overlap

    root = Path(tiles_root) / fmt
    keys = window_keys(case.window)
    parts: dict[str, list[float]] = {k: [] for k in ("read", "imdecode", "decode_tile", "is_blank", "place", "write")}
    with tempfile.TemporaryDirectory(prefix="mapper-bench-") as tmp:
        for _ in range(repeats):
            t = time.perf_counter()
            bodies = {k: tile_path(root, k, fmt).read_bytes() for k in keys}
            parts["read"].append(time.perf_counter() - t)
            t = time.perf_counter()
            for b in bodies.values():
                cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED)
            parts["imdecode"].append(time.perf_counter() - t)
            t = time.perf_counter()
            results = {k: body_to_result(b) for k, b in bodies.items()}
            parts["decode_tile"].append(time.perf_counter() - t)
            t = time.perf_counter()
            for r in results.values():
                is_blank(r.rgb)
            parts["is_blank"].append(time.perf_counter() - t)
            t = time.perf_counter()
            w = case.window
            rgb = np.zeros((*w.shape, 3), np.uint8)
            valid = np.zeros(w.shape, bool)
            for k, res in results.items():
                dst, src = tile_overlap(w, k[1], k[2])
                rgb[dst] = res.rgb[src]
                valid[dst] = True if res.valid is None else res.valid[src]
            parts["place"].append(time.perf_counter() - t)
            t = time.perf_counter()
            write_mosaic(BlockMosaic(w, rgb, valid), Path(tmp) / "p.tif")
            parts["write"].append(time.perf_counter() - t)
    return {f"{k}_ms": 1000 * median(v) for k, v in parts.items()}


WRITE_OPTIONS = {
    "deflate z1": {"compress": "deflate", "zlevel": 1},
    "deflate z1, NUM_THREADS=ALL_CPUS": {"compress": "deflate", "zlevel": 1, "num_threads": "ALL_CPUS"},
    "zstd level 1": {"compress": "zstd", "zstd_level": 1},
    "zstd level 1, NUM_THREADS=ALL_CPUS (write_mosaic default)": {
        "compress": "zstd",
        "zstd_level": 1,
        "num_threads": "ALL_CPUS",
    },
    "uncompressed": {"compress": "none"},
}


def write_options(case: Case, tiles_root: Path, fmt: str = "png", repeats: int = 5) -> list[dict]:
    """GeoTIFF write time and size of one block mosaic under other creation options (same on both sides)."""
    import time

    import rasterio

    from mapper.imagery.mosaic import CRS

    with FileTileSource(Path(tiles_root) / fmt, fmt) as source:
        mosaic = mosaic_window(source, case.window)
    bands = np.ascontiguousarray(np.moveaxis(mosaic.rgb, -1, 0))
    w = case.window
    times: dict[str, list[float]] = {k: [] for k in WRITE_OPTIONS}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="mapper-bench-") as tmp:
        for r in range(repeats):
            names = list(WRITE_OPTIONS)
            for name in names[r % len(names) :] + names[: r % len(names)]:
                opts = dict(WRITE_OPTIONS[name])
                if opts["compress"] == "none":
                    opts.pop("compress")
                else:
                    opts["predictor"] = 2
                profile = dict(driver="GTiff", width=w.width, height=w.height, count=3, dtype="uint8", crs=CRS,
                               transform=w.transform, tiled=True, blockxsize=256, blockysize=256,
                               interleave="pixel", photometric="RGB", **opts)  # fmt: skip
                path = Path(tmp) / f"{len(sizes)}.tif"
                t0 = time.perf_counter()
                with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
                    dst.write(bands)
                    dst.write_mask(mosaic.valid)
                times[name].append(time.perf_counter() - t0)
                sizes[name] = path.stat().st_size
                path.unlink()
    return [
        {"case": f"{case.label} {fmt}", "options": k, "write_ms": 1000 * median(v), "size_mib": sizes[k] / 2**20}
        for k, v in times.items()
    ]
