"""Run the benchmarks, print a table and append a dated section to benchmarks/RESULTS.md.

    python -m benchmarks.run                 # everything, 5 repeats (a few minutes on 2 cores)
    python -m benchmarks.run --only mosaic_vs_gdal --repeats 9
    python -m benchmarks.run --no-record     # print only

Timings are medians of repeats: the machines this runs on are shared and noisy, so the load average before
and after is recorded with the results. Rendered tiles are kept in benchmarks/_work/ (git-ignored) and reused.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
BENCHMARKS = (
    "mosaic_vs_gdal", "world_render", "fetch_loopback", "iqa_features", "regionprops", "terrain", "models_cpu",
)  # fmt: skip
# Three Guangdong blocks (the paper's province): city, delta farmland, northern hills.
BLOCK_POINTS = ((113.3, 23.1), (113.05, 22.55), (112.45, 24.15))


# --------------------------------------------------------------------------------------------- machine
def machine_info() -> dict[str, str]:
    import cv2
    import numpy
    import rasterio

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cores": f"{usable} usable of {os.cpu_count()}",
        "ram": ram,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "gdal": rasterio.__gdal_version__,
        "rasterio": rasterio.__version__,
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,
    }


def load_average() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


# ----------------------------------------------------------------------------------------------- tables
def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> list[str]:
    """Markdown table lines; columns are (key, header, format)."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        cells = []
        for key, _, fmt in columns:
            value = row.get(key, "")
            cells.append(format(value, fmt) if fmt and value != "" else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def mosaic_columns(workers: tuple[int, ...]) -> list[tuple[str, str, str]]:
    cols = [("case", "block", ""), ("fmt", "tiles", ""), ("tiles", "n", "d"), ("pixels", "pixels", ",d")]
    for w in workers:
        cols += [
            (f"mapper_{w}t_ms", f"mapper {w} thr ms", ".0f"),
            (f"mapper_{w}t_read_ms", f"(mosaic {w} thr)", ".0f"),
            (f"mapper_{w}t_write_ms", "(write)", ".0f"),
        ]
    cols += [("gdal_ms", "GDAL ms", ".0f"), ("gdal_read_ms", "(read)", ".0f"), ("gdal_write_ms", "(write)", ".0f")]
    wmax = max(workers)
    cols += [("gdal_mtw_ms", "GDAL, threaded write ms", ".0f")]
    cols += [(f"ratio_{w}t", f"**GDAL / mapper {w} thr**", ".2f") for w in workers]
    cols += [(f"ratio_{wmax}t_vs_gdal_mtw", f"GDAL threaded write / mapper {wmax} thr", ".2f")]
    cols += [(f"mosaic_ratio_{w}t", f"GDAL read / mapper {w} thr mosaic", ".2f") for w in workers]
    cols += [("max_diff", "max pixel diff", "d")]
    return cols


RENDER_COLUMNS = [
    ("case", "block", ""),
    ("rendering", "rendering", ""),
    ("tiles", "tiles timed", "d"),
    ("tiles_per_s", "tiles/s", ".1f"),
    ("ms_per_tile", "ms/tile", ".1f"),
]
FETCH_COLUMNS = [
    ("server", "server", ""),
    ("concurrency", "concurrency", "d"),
    ("tiles_per_repeat", "tiles/repeat", "d"),
    ("tiles_per_s", "tiles/s", ".0f"),
    ("ms_per_tile", "ms/tile", ".2f"),
    ("client", "client", ""),
]
WRITE_COLUMNS = [
    ("case", "block", ""),
    ("options", "creation options (+ predictor 2, 256² tiles, mask)", ""),
    ("write_ms", "write ms", ".0f"),
    ("size_mib", "MiB", ".2f"),
]
IQA_COLUMNS = [
    ("case", "block, rendering", ""),
    ("pixels", "pixels", ",d"),
    ("valid_fraction", "valid", ".2f"),
    ("sharpness", "sharpness", ".4f"),
    ("mapper_ms", "mapper ms", ".0f"),
    ("pass_ms", "(compiled pass)", ".0f"),
    ("sobel_ms", "(Sobel + median)", ".0f"),
    ("medians_ms", "(HLS medians)", ".1f"),
    ("skimage_ms", "scikit-image ms", ".0f"),
    ("skimage_sharpness_ms", "(sharpness)", ".0f"),
    ("skimage_colour_ms", "(HLS)", ".0f"),
    ("ratio", "**scikit-image / mapper**", ".1f"),
    ("ratio_sharpness", "sharpness ratio", ".1f"),
    ("ratio_colour", "HLS ratio", ".1f"),
    ("sharpness_rel_diff", "sharpness rel. diff", ".1e"),
    ("hue_abs_diff", "hue diff (°)", ".1e"),
    ("sl_abs_diff", "S, L diff", ".1e"),
]
REGIONPROPS_COLUMNS = [
    ("case", "mask", ""),
    ("shape", "pixels", ""),
    ("valid_fraction", "valid", ".2f"),
    ("components", "components", ",d"),
    ("euler_total", "Euler total", "d"),
    ("mapper_ms", "mapper ms", ".0f"),
    ("skimage_ms", "scikit-image ms", ".0f"),
    ("ratio", "**scikit-image / mapper**", ".1f"),
    ("max_rel_diff", "max rel. diff", ".1e"),
]
TERRAIN_COLUMNS = [
    ("case", "DEM", ""),
    ("shape", "cells", ""),
    ("gdaldem_ms", "gdaldem ms", ".0f"),
    ("gdaldem_slope_ms", "(slope)", ".0f"),
    ("gdaldem_tri_ms", "(TRI)", ".0f"),
    ("gdaldem_roughness_ms", "(roughness)", ".0f"),
    ("mapper_ms", "mapper ms", ".0f"),
    ("read_ms", "(read)", ".0f"),
    ("compute_ms", "(compute)", ".0f"),
    ("write_ms", "(write)", ".0f"),
    ("geographic_ms", "compute, per-row latitude ms", ".0f"),
    ("ratio", "**gdaldem / mapper**", ".2f"),
    ("ratio_nowrite", "gdaldem / mapper without writes", ".2f"),
    ("max_diff", "max diff", ".1e"),
    ("same_nodata", "same nodata", ""),
]
PROFILE_COLUMNS = [
    ("case", "block", ""),
    ("read_ms", "read files", ".0f"),
    ("imdecode_ms", "cv2.imdecode", ".0f"),
    ("decode_tile_ms", "body_to_result", ".0f"),
    ("is_blank_ms", "(is_blank)", ".0f"),
    ("place_ms", "place", ".0f"),
    ("write_ms", "write_mosaic", ".0f"),
]


# ------------------------------------------------------------------------------------------------- main
def run_all(names, repeats: int, workers: tuple[int, ...], seed: int, formats: tuple[str, ...], log=print) -> dict:
    from benchmarks import fetch_loopback, iqa_features, mosaic_vs_gdal, regionprops, world_render
    from benchmarks.common import WORK_DIR, window_keys
    from mapper.grid.blocks import Block
    from mapper.world.source import WorldTileSource

    blocks = [Block.containing(*p) for p in BLOCK_POINTS]
    cases = [mosaic_vs_gdal.Case(b.id, b.window(16)) for b in blocks]
    tiles_root = WORK_DIR / f"tiles-seed{seed}-b"
    world_b = WorldTileSource("b", seed=seed, rendering="b")
    out: dict = {}
    timings: dict[str, float] = {}
    if "mosaic_vs_gdal" in names or "fetch_loopback" in names:
        log(f"rendering tiles of {len(cases)} blocks into {tiles_root} (kept for later runs) ...")
        t = time.perf_counter()
        from benchmarks.common import render_tile_set

        for fmt in formats if "mosaic_vs_gdal" in names else ("png",):
            for case in cases:
                render_tile_set(world_b, window_keys(case.window), tiles_root / fmt, fmt)
        timings["tile preparation"] = time.perf_counter() - t
    if "mosaic_vs_gdal" in names:
        log("mosaic_vs_gdal:")
        t = time.perf_counter()
        rows = []
        for fmt in formats:
            rows += mosaic_vs_gdal.run(cases, world_b, tiles_root, repeats=repeats, fmt=fmt, workers=workers, log=log)
        out["mosaic_vs_gdal"] = rows
        out["mosaic_profile"] = [
            {
                "case": f"{cases[0].label} {fmt}",
                **mosaic_vs_gdal.profile_mapper(cases[0], tiles_root, fmt, repeats=repeats),
            }
            for fmt in formats
        ]
        out["write_options"] = mosaic_vs_gdal.write_options(cases[0], tiles_root, formats[0], repeats=repeats)
        timings["mosaic_vs_gdal"] = time.perf_counter() - t
    if "world_render" in names:
        log("world_render:")
        t = time.perf_counter()
        out["world_render"] = world_render.run(cases[0].window, cases[0].label, seed=seed, repeats=repeats, log=log)
        timings["world_render"] = time.perf_counter() - t
    if "fetch_loopback" in names:
        log("fetch_loopback:")
        t = time.perf_counter()
        keys = window_keys(cases[0].window)
        out["fetch_loopback"] = fetch_loopback.run(
            tiles_root / "png", keys, keys[:16], seed=seed, rendering="b", repeats=repeats, log=log
        )
        timings["fetch_loopback"] = time.perf_counter() - t
    if "iqa_features" in names:
        log("iqa_features:")
        t = time.perf_counter()
        from mapper.imagery.mosaic import mosaic_block
        from mapper.world.world import get_world

        mosaics = []
        for rendering in ("a", "b"):  # the first block is hazy and blurred in rendering a, clear in b (seed 0)
            cond = get_world(seed).conditions(blocks[0], rendering)
            state = f"haze {cond.haze:.2f}, blur {cond.blur:.1f} px" if cond.haze else "clear"
            mosaic = mosaic_block(WorldTileSource(rendering, seed=seed, rendering=rendering), blocks[0])
            mosaics.append((f"{cases[0].label} {rendering} ({state})", mosaic))
        out["iqa_features"] = iqa_features.run(mosaics, repeats=repeats, log=log)
        timings["iqa_features"] = time.perf_counter() - t
    if "regionprops" in names:
        log("regionprops:")
        t = time.perf_counter()
        out["regionprops"] = regionprops.run(regionprops.default_cases(cases[0].window, seed), repeats=repeats, log=log)
        timings["regionprops"] = time.perf_counter() - t
    if "terrain" in names:
        from benchmarks import terrain

        log("terrain:")
        t = time.perf_counter()
        out["terrain"] = terrain.run(terrain.default_cases(), repeats=repeats, log=log)
        timings["terrain"] = time.perf_counter() - t
    if "models_cpu" in names:
        from benchmarks import models_cpu

        log("models_cpu:")
        t = time.perf_counter()
        out["models_cpu"] = models_cpu.run(repeats=min(repeats, 3), log=log)  # each repeat runs a block twice
        timings["models_cpu"] = time.perf_counter() - t
    out["timings"] = timings
    return out


def report(results: dict, info: dict, args, load_before: str, load_after: str, workers) -> list[str]:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"## {now} — {info['cpu']}, {info['cores']} cores, {info['ram']}", ""]
    lines.append(
        f"Python {info['python']}, GDAL {info['gdal']} (rasterio {info['rasterio']}), numpy {info['numpy']}, "
        f"OpenCV {info['opencv']}; {info['os']}. Medians of {args.repeats} repeats. "
        f"Load average (1/5/15 min) before: {load_before}, after: {load_after}."
    )
    if "mosaic_vs_gdal" in results:
        lines += [
            "",
            "### mosaic_vs_gdal — one block's tiles → GeoTIFF (product default: zstd 1, predictor 2, 256 tiles, mask)",
            "",
            "'mosaic' = read + decode + place the tiles; GDAL '(read)' = WMS/TMS driver read of the window. "
            "Ratios are GDAL time / mapper time (> 1: mapper is faster). mapper writes as the product does "
            "(tiles compressed on all cores); GDAL with its defaults, and 'threaded write' with "
            "GDAL_NUM_THREADS=ALL_CPUS (same bytes).",
            "",
        ]
        lines += table(results["mosaic_vs_gdal"], mosaic_columns(workers))
        lines += ["", "Where mapper's time goes (1 thread, median ms per block):", ""]
        lines += table(results["mosaic_profile"], PROFILE_COLUMNS)
        lines += [
            "",
            "GeoTIFF write alone under other creation options (the write is the same GDAL code on both sides):",
            "",
        ]
        lines += table(results["write_options"], WRITE_COLUMNS)
    if "world_render" in results:
        lines += ["", "### world_render — WorldTileSource, one thread", ""]
        lines += table(results["world_render"], RENDER_COLUMNS)
    if "fetch_loopback" in results:
        lines += [
            "",
            "### fetch_loopback — HttpTileSource over 127.0.0.1 (server in a child process), fetch + decode",
            "",
        ]
        lines += table(results["fetch_loopback"], FETCH_COLUMNS)
    if "iqa_features" in results:
        lines += [
            "",
            "### iqa_features — quality_features of a full block: mapper vs scikit-image",
            "",
            "mapper: one compiled (numba) pass for the grey image and the colour histograms, cv2.Sobel, exact "
            "medians (np.partition; histogram bins). scikit-image: sobel(rgb2gray) with mask=, colorsys HLS "
            "vectorised in numpy, np.median. Ratios are scikit-image time / mapper time; the two half ratios "
            "each charge mapper's whole compiled pass to that half. Differences are against the reference. "
            "scikit-image's float64 temporaries (≈ 0.5 GB a block) make its times swing with the memory state of "
            "the machine (repeats take turns, but compare ratios within one run).",
            "",
        ]
        lines += table(results["iqa_features"], IQA_COLUMNS)
    if "regionprops" in results:
        lines += [
            "",
            "### regionprops — block_properties of a cropland mask: mapper vs scikit-image",
            "",
            "mapper: OpenCV 8-connected labels + numba passes (quad-count Euler numbers, row-extreme convex hulls). "
            "scikit-image: regionprops_table(label(m, connectivity=2), area / solidity / euler_number), "
            "convex_hull_image and euler_number of all cropland, numpy areas and edges. Same keys, differences "
            "relative to the reference; ratio = scikit-image time / mapper time.",
            "",
        ]
        lines += table(results["regionprops"], REGIONPROPS_COLUMNS)
    if "terrain" in results:
        lines += [
            "",
            "### terrain — slope (Horn, -s 111120) + TRI (Riley) + roughness: mapper vs the gdaldem program",
            "",
            "gdaldem: three processes, each reading the DEM and writing a float32 GeoTIFF (wall time). mapper: "
            "rasterio read, one compiled pass for all three, the same three GeoTIFFs written; one core each. "
            "'per-row latitude' is the product's mode (true metres per row), compute only. Differences are "
            "against gdaldem's files; ratio = gdaldem time / mapper time.",
            "",
        ]
        lines += table(results["terrain"], TERRAIN_COLUMNS)
    if "models_cpu" in results:
        from benchmarks import models_cpu

        lines += models_cpu.report_lines(results["models_cpu"], min(args.repeats, 3))
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in results.get("timings", {}).items())
    lines += ["", f"Wall time: {timings}.", ""]
    return lines


def append_results(lines: list[str], path: Path = RESULTS) -> None:
    header = (
        "# Benchmark results\n\n"
        "Appended by `python -m benchmarks.run` (one dated section per run; older sections are kept).\n"
        "Machines are shared: compare ratios measured in the same run, not absolute times across runs.\n\n"
    )
    existing = path.read_text() if path.exists() else header
    path.write_text(existing.rstrip("\n") + "\n\n" + "\n".join(lines).rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument("--repeats", type=int, default=5, help="repeats per measurement (median); default 5")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4], help="mapper decode threads to compare")
    parser.add_argument("--formats", nargs="+", choices=("png", "jpeg"), default=["png", "jpeg"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-record", action="store_true", help=f"do not append to {RESULTS.name}")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    info = machine_info()
    print(", ".join(f"{k}: {v}" for k, v in info.items()))
    load_before = load_average()
    t0 = time.perf_counter()
    results = run_all(args.only, args.repeats, tuple(args.workers), args.seed, tuple(args.formats))
    load_after = load_average()
    lines = report(results, info, args, load_before, load_after, tuple(args.workers))
    print()
    print("\n".join(lines))
    print(f"total {time.perf_counter() - t0:.0f} s")
    if not args.no_record:
        append_results(lines)
        print(f"appended to {RESULTS}")
    return 0


if __name__ == "__main__":
    if __package__ in (None, ""):  # `python benchmarks/run.py`: make the `benchmarks` package importable
        sys.path.insert(0, str(HERE.parent))
    sys.exit(main())
