"""Terrain: mapper's slope + TRI + roughness against the `gdaldem` program, side by side.

gdaldem: three invocations (`slope -s 111120`, `TRI`, `roughness`), each a process that reads the DEM and
writes a float32 GeoTIFF; timed as wall time of the three. mapper, in this process: read the DEM with
rasterio, compute all three in one pass (`terrain`, gdaldem's single-scale mode, so the outputs can be
compared), and write the same three GeoTIFFs (float32, nodata -9999, GDAL's default layout as gdaldem
writes them). Both sides run on one core. Cases: the small DTED0 tile of the tests (process start-up
dominates) and an SRTM-1-sized tile (3601 × 3601 Int16 cells, a few voids) of the simulated world's DEM,
written once to benchmarks/_work/ and reused. Times are medians of repeats, taking turns within each repeat.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import rasterio

from benchmarks.common import WORK_DIR, median

N43 = Path(__file__).resolve().parents[2] / "shared" / "data" / "dem" / "n43.dt0"
GDALDEM = (("slope", ("-s", "111120")), ("TRI", ()), ("roughness", ()))
PRODUCT = {"slope": "slope", "TRI": "tri", "roughness": "roughness"}
OUT_NODATA = -9999.0  # what gdaldem writes
TIMED = ("gdaldem", "slope", "TRI", "roughness", "read", "compute", "write", "mapper", "mapper_nowrite", "geographic")


def world_srtm_tile(path: Path, seed: int = 0, west: float = 112.0, south: float = 24.0, n: int = 3601) -> Path:
    """An SRTM-1-like tile of the simulated world (Int16 metres, 1″ cells centred on whole seconds, nodata
    -32768 with a few voids), written once and reused."""
    if path.exists():
        return path
    from mapper.world.truth import dem
    from mapper.world.world import get_world

    res, half = 1 / 3600, 0.5 / 3600
    span = (n - 1) * res
    z, transform = dem(get_world(seed), west - half, south - half, west + span + half, south + span + half, res)
    z = np.round(z).astype(np.int16)
    rng = np.random.default_rng(seed)
    for r, c in rng.integers(50, n - 50, size=(12, 2)):  # voids, as SRTM has over water and steep shadows
        z[r - 20 : r + 20, c - 30 : c + 30] = -32768
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", width=n, height=n, count=1, dtype="int16", crs="EPSG:4326", nodata=-32768)
    tmp = path.with_suffix(".part.tif")
    with rasterio.open(tmp, "w", transform=transform, tiled=True, compress="deflate", **profile) as dst:
        dst.write(z, 1)
    tmp.replace(path)
    return path


def default_cases(work: Path = WORK_DIR, n: int = 3601) -> list[tuple[str, Path]]:
    tile = world_srtm_tile(work / f"srtm1-world-{n}.tif", n=n)
    return [("n43.dt0 (DTED0)", N43), ("world tile, SRTM-1 size" if n == 3601 else "world tile", tile)]


# --------------------------------------------------------------------------------------------- the sides
def run_gdaldem(src: Path, out_dir: Path) -> dict[str, float]:
    """Wall seconds of each gdaldem invocation (process start, read, compute, write)."""
    exe = shutil.which("gdaldem")
    if exe is None:
        raise RuntimeError("the `gdaldem` program is not on PATH; install it with `apt-get install gdal-bin`")
    times = {}
    for mode, options in GDALDEM:
        t0 = time.perf_counter()
        subprocess.run([exe, mode, "-q", *options, str(src), str(out_dir / f"gdaldem_{mode}.tif")], check=True)
        times[mode] = time.perf_counter() - t0
    return times


def run_mapper(src: Path, out_dir: Path, *, write: bool = True) -> dict:
    """mapper's read, one-pass compute and (optionally) write of the same three GeoTIFFs, in seconds."""
    from mapper.features.terrain import terrain

    t0 = time.perf_counter()
    with rasterio.open(src) as ds:
        z, transform, crs, nodata = ds.read(1), ds.transform, ds.crs, ds.nodata
    t1 = time.perf_counter()
    maps = terrain(z, transform.a, transform.e, scale=111120, nodata=nodata, out_nodata=OUT_NODATA)
    t2 = time.perf_counter()
    if write:
        profile = dict(driver="GTiff", width=z.shape[1], height=z.shape[0], count=1, dtype="float32",
                       crs=crs, transform=transform, nodata=OUT_NODATA)  # fmt: skip
        for mode, _ in GDALDEM:
            with rasterio.open(out_dir / f"mapper_{mode}.tif", "w", **profile) as dst:
                dst.write(maps[PRODUCT[mode]], 1)
    t3 = time.perf_counter()
    return {"read": t1 - t0, "compute": t2 - t1, "write": t3 - t2, "maps": maps}


def run_mapper_geographic(src: Path) -> float:
    """The product's mode: per-row latitude scaling (not comparable with gdaldem's single scale)."""
    from mapper.features.terrain import geographic_spacing, terrain

    with rasterio.open(src) as ds:
        z, transform, nodata = ds.read(1), ds.transform, ds.nodata
    t0 = time.perf_counter()
    terrain(z, *geographic_spacing(transform, z.shape[0]), nodata=nodata)
    return time.perf_counter() - t0


def compare(out_dir: Path, maps: dict) -> tuple[float, bool]:
    """Largest |mapper − gdaldem| over the three products and whether the nodata masks are identical."""
    worst, same_masks = 0.0, True
    for mode, _ in GDALDEM:
        with rasterio.open(out_dir / f"gdaldem_{mode}.tif") as ds:
            ref = ds.read(1)
        ours = maps[PRODUCT[mode]]
        ref_nd, our_nd = ref == OUT_NODATA, ours == OUT_NODATA
        same_masks &= bool(np.array_equal(ref_nd, our_nd))
        valid = ~ref_nd & ~our_nd
        if valid.any():
            worst = max(worst, float(np.abs(ours[valid] - ref[valid]).max()))
    return worst, same_masks


# ------------------------------------------------------------------------------------------------- run
def run(cases: list[tuple[str, Path]], *, repeats: int = 5, work: Path = WORK_DIR, log=print) -> list[dict]:
    """One row per DEM: gdaldem vs mapper, medians of `repeats` in ms, and the agreement of the outputs."""
    from mapper.features.terrain import terrain

    terrain(np.zeros((4, 4), np.float32), 1.0, 1.0)  # warm-up: the compiled kernels load from numba's cache
    rows = []
    for label, src in cases:
        out_dir = work / "terrain-out"
        out_dir.mkdir(parents=True, exist_ok=True)
        t: dict[str, list[float]] = {k: [] for k in TIMED}
        for _ in range(repeats):
            g = run_gdaldem(src, out_dir)
            for mode, seconds in g.items():
                t[mode].append(seconds)
            t["gdaldem"].append(sum(g.values()))
            m = run_mapper(src, out_dir)
            for k in ("read", "compute", "write"):
                t[k].append(m[k])
            t["mapper"].append(m["read"] + m["compute"] + m["write"])
            t["mapper_nowrite"].append(m["read"] + m["compute"])
            t["geographic"].append(run_mapper_geographic(src))
        ms = {k: 1000 * median(v) for k, v in t.items()}
        worst, same = compare(out_dir, m["maps"])
        with rasterio.open(src) as ds:
            shape = f"{ds.width} × {ds.height} {ds.dtypes[0]}"
        row = {
            "case": label,
            "shape": shape,
            "gdaldem_ms": ms["gdaldem"],
            "gdaldem_slope_ms": ms["slope"],
            "gdaldem_tri_ms": ms["TRI"],
            "gdaldem_roughness_ms": ms["roughness"],
            "mapper_ms": ms["mapper"],
            "read_ms": ms["read"],
            "compute_ms": ms["compute"],
            "write_ms": ms["write"],
            "geographic_ms": ms["geographic"],
            "ratio": ms["gdaldem"] / ms["mapper"],
            "ratio_nowrite": ms["gdaldem"] / ms["mapper_nowrite"],
            "max_diff": worst,
            "same_nodata": "yes" if same else "NO",
        }
        rows.append(row)
        log(f"  {label}: gdaldem {row['gdaldem_ms']:.0f} ms, mapper {row['mapper_ms']:.0f} ms with writes "
            f"(× {row['ratio']:.2f}), compute {row['compute_ms']:.0f} ms; max diff {worst:.1e}, "
            f"nodata masks {'identical' if same else 'DIFFER'}")  # fmt: skip
    return rows
