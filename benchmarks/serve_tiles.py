"""mapper serve's tile rendering against GDAL's warper, side by side on one run's final map.

    python -m benchmarks.serve_tiles --run runs/guangdong [--per-zoom 20] [--repeats 3] [--record]

For every block of the run and zooms 16, 14, 12 and 10, the XYZ tiles that meet the block are rendered
twice, uncached: by mapper.serve (the block COGs pasted by tile arithmetic, overviews at low zooms) and by
GDAL's warper (rasterio.warp.reproject of the run's map/cropland.vrt onto the tile's grid, nearest neighbour
— what a tile server built on GDAL does). Reported per zoom: median ms per tile of each, their ratio (GDAL /
mapper: > 1, mapper faster) and the share of tile pixels on which the two agree (cropland or not).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import mercantile
import numpy as np

from benchmarks.common import median

ZOOMS = (16, 14, 12, 10)


def tiles_of_run(view, zoom: int, limit: int) -> list[mercantile.Tile]:
    """Up to `limit` tiles at `zoom` meeting the run's blocks, spread over them."""
    seen: list[mercantile.Tile] = []
    for r in view.layers["final"].rasters.values():
        w, s, e, n = r.window.mercator_bounds
        lon0, lat0 = mercantile.lnglat(w, s)
        lon1, lat1 = mercantile.lnglat(e, n)
        for t in mercantile.tiles(lon0, lat0, lon1, lat1, zoom):
            if t not in seen:
                seen.append(t)
    step = max(1, len(seen) // limit)
    return seen[::step][:limit]


def mapper_tile(view, t) -> np.ndarray:
    import cv2

    from mapper.serve.app import TileCache, render_layer_tile
    from mapper.serve.tiles import CROPLAND_RGBA

    png = render_layer_tile(view.layers["final"], t.z, t.x, t.y, TileCache(size=0))
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)[..., 3] == CROPLAND_RGBA["final"][3]


def gdal_tile(vrt: Path, t) -> np.ndarray:
    import rasterio
    from rasterio.warp import Resampling, reproject

    from mapper.serve.tiles import tile_transform

    out = np.zeros((256, 256), np.uint8)
    with rasterio.open(vrt) as src:
        reproject(rasterio.band(src, 1), out, dst_transform=tile_transform(t.z, t.x, t.y), dst_crs="EPSG:3857",
                  dst_nodata=0, resampling=Resampling.nearest)  # fmt: skip
    return out == 1  # the VRT's 255 is both "no imagery" and "no block": compare cropland only


def measure(run: Path, per_zoom: int, repeats: int) -> list[dict]:
    from mapper.serve.runview import RunView

    view = RunView(run)
    vrt = run / "map" / "cropland.vrt"
    rows = []
    for z in ZOOMS:
        tiles = tiles_of_run(view, z, per_zoom)
        times = {"mapper": [], "gdal": []}
        agree = []
        for t in tiles:
            for name, fn in (("mapper", lambda t=t: mapper_tile(view, t)), ("gdal", lambda t=t: gdal_tile(vrt, t))):
                runs = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    result = fn()
                    runs.append(time.perf_counter() - t0)
                times[name].append(median(runs))
                if name == "mapper":
                    ours = result
            agree.append(float((ours == result).mean()))
        m, g = median(times["mapper"]) * 1e3, median(times["gdal"]) * 1e3
        rows.append({"zoom": z, "tiles": len(tiles), "mapper_ms": m, "gdal_ms": g, "ratio": g / m,
                     "agree": median(agree), "agree_min": min(agree)})  # fmt: skip
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def report(rows: list[dict], run: Path, info: dict, state: dict, repeats: int) -> list[str]:
    lines = [
        f"## {state['started']} — mapper serve tiles vs GDAL's warper — {info['cpu']}, {info['cores']} cores, "
        f"{info['ram']}; load {state['load_before']} before, {state['load_after']} after",
        "",
        f"`python -m benchmarks.serve_tiles --run {run.name}`: the final-cropland layer of a "
        f"{len(list((run / 'final').glob('*.tif')))}-block demo run, uncached; per tile the median of {repeats} "
        "renders, per zoom the median over tiles. Peer: rasterio.warp.reproject of map/cropland.vrt onto the "
        "tile (nearest). Agree: share of tile pixels with the same cropland-or-not (median, min).",
        "",
        "| zoom | tiles | mapper ms/tile | GDAL warper ms/tile | **GDAL / mapper** | agree (median, min) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['zoom']} | {r['tiles']} | {r['mapper_ms']:.1f} | {r['gdal_ms']:.1f} | "
                     f"**{r['ratio']:.2f}** | {r['agree']:.4f}, {r['agree_min']:.4f} |")  # fmt: skip
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    from benchmarks.run import append_results, load_average, machine_info

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a finished `mapper run` directory")
    parser.add_argument("--per-zoom", type=int, default=20, help="tiles per zoom (spread over the blocks)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="append the results to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    state = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_before": load_average()}
    rows = measure(args.run.resolve(), args.per_zoom, args.repeats)
    state["load_after"] = load_average()
    lines = report(rows, args.run.resolve(), machine_info(), state, args.repeats)
    print("\n".join(lines))
    if args.record:
        append_results(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
