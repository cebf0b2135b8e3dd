"""`mapper compare`: a run's final map against another cropland product (DESIGN.md §8; CropLayer paper
Sect. 3.4, 4.3.1-4.3.2, Figs. 13-15). Convention of the paper: C = the run (CropLayer), T = the other map
(target), Div = (T − C) / C, so Div > 0 is an overestimate of the other map relative to the run.

    open_other(path, cropland_values) -> OtherMap                the other map, refused without a CRS
    other_map_on_block(other, grid, resampling) -> ndarray        the other map as 0/1/255 on a block's grid
    compare_block(final, other, row_areas) -> dict                one block's pixel counts, AF, ED, Div
    compare_run(run_dir, other, min_af=0.1, progress=False) -> Comparison    every done block, summarised
    write_comparison(comparison, out_dir) -> dict                 compare.json, blocks.csv and the two figures

**Grid.** The other map (any CRS and resolution rasterio reads) is first mapped to cropland 1 (its pixel is one
of `cropland_values`), not cropland 0, or not covered 255 (its nodata, masked or non-finite pixels), then
reprojected onto each block's own EPSG:3857 grid: nearest neighbour when its pixels are coarser than the
block's (categorical data, never interpolated), mode when they are finer; 255 is the nodata of both sides of
the warp, so a pixel without data never becomes cropland. Pixels count where both maps have data.

**Metrics**, all in true ground area (`mapper.grid.area.row_pixel_areas`, never pixel counts): IoU,
precision and recall of T against C, pooled over blocks (sums of areas) and per block; per block the area
fraction (AF) and edge density (ED) of C and of T by `mapper.features.regionprops.block_properties` over the
pixels both cover. ED is FRAGSTATS' edge length per valid hectare: it plays the role of the paper's share
of boundary pixels (Eq. 5), a measure of how fragmented the cropland is drawn. Div is NaN where C is 0 or NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mapper.validation.errors import ValidationInputError
from mapper.validation.jsonready import json_ready
from mapper.validation.pixels import HA, ground_area

FINER_RATIO = 0.95  # the other map's pixel side below this share of the block's is "finer": mode, not nearest
DIV_EDGES = np.arange(-100.0, 201.0, 20.0)  # Div in % for the deviation-versus-slope histograms (paper Fig. 15)
SLOPE_EDGES = np.arange(0.0, 41.0, 2.5)  # slope median, degrees


@dataclass
class OtherMap:
    """The other cropland product: where it is and what its pixels mean."""

    path: Path
    crs: object  # rasterio CRS
    res: tuple[float, float]  # in the CRS's units
    bounds: tuple[float, float, float, float]  # in the CRS
    cropland_values: tuple[float, ...]

    def inputs(self) -> dict:
        units = "degree" if self.crs.is_geographic else (self.crs.linear_units or "unknown")
        return {"path": str(self.path.resolve()), "crs": self.crs.to_string(), "resolution": list(self.res),
                "resolution_units": units, "cropland_values": list(self.cropland_values)}  # fmt: skip


@dataclass
class Comparison:
    """What compare_run gives: the summary (JSON-ready, also the content of compare.json) and one row per block."""

    summary: dict
    rows: list[dict]
    region_geometry: object = None  # the run's region (shapely, EPSG:4326), outlined on the deviation map


def open_other(path: Path | str, cropland_values=(1,)) -> OtherMap:
    """The other map's georeference, checked: ValidationInputError when unreadable or without a CRS."""
    import rasterio
    from rasterio.errors import RasterioIOError

    path = Path(path)
    if not path.is_file():
        raise ValidationInputError(f"{path} does not exist or is not a file; give a GeoTIFF or VRT cropland map")
    try:
        with rasterio.open(path) as src:
            crs, res, bounds = src.crs, tuple(src.res), tuple(src.bounds)
    except RasterioIOError as e:
        raise ValidationInputError(f"cannot read {path} as a raster ({e}); give a GeoTIFF or VRT map") from None
    if crs is None:
        raise ValidationInputError(
            f"{path} has no CRS (coordinate reference system), so it cannot be placed on the run's blocks; "
            "assign the right one, e.g. `gdal_edit.py -a_srs EPSG:4326 FILE`"
        )
    if not cropland_values:
        raise ValidationInputError("give at least one cropland value (--cropland-values)")
    return OtherMap(path, crs, res, bounds, tuple(cropland_values))


def pixel_side_m(other: OtherMap, lon: float, lat: float) -> float:
    """The other map's pixel side in ground metres near (lon, lat): one pixel step along each axis, taken to
    EPSG:3857 (conformal: ground length = mercator length × cos φ), geometric mean of the two sides."""
    from rasterio.warp import transform

    (x,), (y,) = transform("EPSG:4326", other.crs, [lon], [lat])
    rx, ry = other.res
    xs, ys = transform(other.crs, "EPSG:3857", [x, x + rx, x], [y, y, y + ry])
    dx, dy = math.hypot(xs[1] - xs[0], ys[1] - ys[0]), math.hypot(xs[2] - xs[0], ys[2] - ys[0])
    return math.sqrt(dx * dy) * math.cos(math.radians(lat))


def overlaps(other: OtherMap, block) -> bool:
    """Whether the other map's extent meets the block's (lon/lat bounds taken to the other map's CRS)."""
    from rasterio.warp import transform_bounds

    try:
        w, s, e, n = transform_bounds("EPSG:4326", other.crs, *block.bounds, densify_pts=21)
    except Exception:  # a block outside the CRS's area of use (PROJ refuses it) does not overlap
        return False
    ow, os_, oe, on = other.bounds
    return w < oe and e > ow and s < on and n > os_ and all(map(math.isfinite, (w, s, e, n)))


def other_map_on_block(other: OtherMap, grid: tuple, resampling: str, src=None) -> np.ndarray:
    """The other map on a block's grid (crs, transform, (height, width)) as uint8: 1 cropland, 0 not, 255 not
    covered. Only the part of the other map around the block is read; `src`: the other map already open
    (compare_run opens it once for all blocks: a big VRT is parsed once), else it is opened here."""
    import contextlib

    import rasterio

    with contextlib.ExitStack() as stack:
        if src is None:
            src = stack.enter_context(rasterio.open(other.path))
        return _warp_onto(other, src, grid, resampling)


def _warp_onto(other: OtherMap, src, grid: tuple, resampling: str) -> np.ndarray:
    import rasterio
    from rasterio.transform import array_bounds
    from rasterio.warp import Resampling, reproject, transform_bounds
    from rasterio.windows import Window, from_bounds

    crs, dst_transform, shape = grid
    out = np.full(shape, 255, np.uint8)
    h, w = shape
    west, south, east, north = array_bounds(h, w, dst_transform)
    bounds = transform_bounds(crs, src.crs, west, south, east, north, densify_pts=21)
    win = from_bounds(*bounds, transform=src.transform)
    col0, row0 = math.floor(win.col_off) - 2, math.floor(win.row_off) - 2  # a margin for the warp
    col1, row1 = math.ceil(win.col_off + win.width) + 2, math.ceil(win.row_off + win.height) + 2
    win = Window(col0, row0, col1 - col0, row1 - row0)
    try:
        win = win.intersection(Window(0, 0, src.width, src.height))
    except rasterio.errors.WindowError:  # no overlap
        return out
    values = src.read(1, window=win)
    covered = src.read_masks(1, window=win) > 0
    src_transform = src.window_transform(win)
    if values.dtype.kind == "f":
        covered &= np.isfinite(values)
    mapped = np.where(covered, np.isin(values, other.cropland_values).astype(np.uint8), np.uint8(255))
    reproject(mapped, out, src_transform=src_transform, src_crs=other.crs, src_nodata=255, dst_transform=dst_transform,
              dst_crs=crs, dst_nodata=255, resampling=Resampling[resampling])  # fmt: skip
    return out


def compare_block(final: np.ndarray, other: np.ndarray, row_areas: np.ndarray) -> dict:
    """One block's comparison over the pixels both maps cover (0/1/255 arrays of one grid): areas in ha,
    IoU / precision / recall of T (other) against C (final), AF and ED of each, Div_AF and Div_ED."""
    from mapper.features.regionprops import block_properties

    both = (final != 255) & (other != 255)
    c, t = (final == 1) & both, (other == 1) & both
    tp, fp, fn = ground_area(c & t, row_areas), ground_area(t & ~c, row_areas), ground_area(c & ~t, row_areas)
    run_valid = ground_area(final != 255, row_areas)
    row = {"compared_ha": ground_area(both, row_areas) / HA, "tp_ha": tp / HA, "fp_ha": fp / HA, "fn_ha": fn / HA}
    row["other_covered_share"] = row["compared_ha"] * HA / run_valid if run_valid > 0 else math.nan
    row.update(_ratios(tp, fp, fn))
    if not both.any():
        return row
    pc, pt = block_properties(c, row_areas, valid=both), block_properties(t, row_areas, valid=both)
    row.update(af_c=pc["area_fraction"], af_t=pt["area_fraction"])
    row.update(ed_c=pc["edge_density_m_per_ha"], ed_t=pt["edge_density_m_per_ha"])
    row.update(div_af=divergence(row["af_t"], row["af_c"]), div_ed=divergence(row["ed_t"], row["ed_c"]))
    return row


def divergence(t: float, c: float) -> float:
    """The paper's Eq. 6, (T − C) / C; NaN where C is 0 or NaN."""
    return (t - c) / c if c and math.isfinite(c) else math.nan


def _ratios(tp: float, fp: float, fn: float) -> dict:
    def ratio(num, den):
        return num / den if den > 0 else math.nan

    return {"iou": ratio(tp, tp + fp + fn), "precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn)}


def compare_run(run_dir: Path | str, other: OtherMap, min_af: float = 0.1, progress: bool = False) -> Comparison:
    """Compare every done block of the run with the other map (see the module docstring); an incomplete run
    is compared on what exists and the summary names what is missing."""
    import rasterio
    from mapper.validation.run_data import open_run
    from tqdm import tqdm

    from mapper.grid.blocks import Block

    run = open_run(run_dir)
    try:
        blocks = [Block.parse(b) for b in run.done]
        if not blocks:
            raise ValidationInputError(f"{run.root} has no mapped blocks yet: there is nothing to compare")
        hits = [b for b in blocks if overlaps(other, b)]
        if not hits:
            raise ValidationInputError(
                f"{other.path} ({other.crs.to_string()}, bounds {_fmt_bounds(other.bounds)}) does not overlap any "
                f"of the run's {len(blocks)} mapped block(s) (e.g. {blocks[0].id}, lon/lat "
                f"{_fmt_bounds(blocks[0].bounds)})"
            )
        resampling, side_m = _resampling(other, hits[0], run.zoom)
        slopes = _slopes(run.root / "blocks.parquet")
        rows, hit_ids = [], {b.id for b in hits}
        with rasterio.open(other.path) as src:
            for block in tqdm(blocks, desc="compare", unit="block", disable=not progress):
                row = _block_row(run, other, src, block, resampling if block.id in hit_ids else None)
                rows.append({**row, "slope_median_deg": slopes.get(block.id, math.nan)})
        summary = _summary(run, other, rows, min_af, resampling, side_m)
        region_geometry = run.region.geometry
    finally:
        run.close()
    if not summary["blocks"]["compared"]:
        raise ValidationInputError(f"{other.path} has no data over the run's mapped pixels (all nodata there)")
    return Comparison(summary, rows, region_geometry)


def _block_row(run, other: OtherMap, other_src, block, resampling: str | None) -> dict:
    import rasterio

    from mapper.grid.area import row_pixel_areas

    lon, lat = block.center
    row = {"block_id": block.id, "lon": lon, "lat": lat, "status": "not covered"}
    window = block.window(run.zoom)
    with rasterio.open(run.layout.final(block.id)) as src:
        final, grid = src.read(1), (src.crs, src.transform, (src.height, src.width))
    if final.shape != window.shape:
        return {**row, "status": f"off grid: final map {final.shape}, block {window.shape}"}
    if resampling is None:
        return row
    result = compare_block(final, other_map_on_block(other, grid, resampling, other_src), row_pixel_areas(window))
    return {**row, "status": "compared" if result["compared_ha"] > 0 else "not covered", **result}


def _resampling(other: OtherMap, block, zoom: int) -> tuple[str, float]:
    """("nearest" | "mode", the other map's pixel side in m) from pixel sides near the first overlapping block."""
    from mapper.grid.area import row_pixel_areas

    block_side = math.sqrt(float(np.mean(row_pixel_areas(block.window(zoom)))))
    side = pixel_side_m(other, *block.center)
    return ("mode" if side < FINER_RATIO * block_side else "nearest"), side


def _slopes(path: Path) -> dict[str, float]:
    """{block_id: slope median in degrees} of the run's blocks table; empty when it or the column is absent."""
    import pandas as pd

    try:
        table = pd.read_parquet(path, columns=["block_id", "slope_median_deg"])
    except Exception:  # absent file or column: the slope is NaN, the comparison goes on
        return {}
    return dict(zip(table["block_id"], table["slope_median_deg"].astype(float), strict=True))


def _fmt_bounds(b) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in b) + ")"


# ------------------------------------------------------------------------------------------------ summary
COLUMNS = ["block_id", "lon", "lat", "status", "slope_median_deg", "compared_ha", "other_covered_share",
           "tp_ha", "fp_ha", "fn_ha", "iou", "precision", "recall", "af_c", "af_t", "div_af", "ed_c", "ed_t",
           "div_ed"]  # fmt: skip
RESAMPLING_RULE = (
    "the other map is mapped to cropland 1 / not 0 / not covered 255, then warped onto each block's grid: "
    f"nearest when its pixels are coarser than the block's, mode when finer than {FINER_RATIO} of them"
)


def _summary(run, other: OtherMap, rows: list[dict], min_af: float, resampling: str, side_m: float) -> dict:
    compared = [r for r in rows if r["status"] == "compared"]
    sums = {k: sum(r[k] for r in compared) for k in ("compared_ha", "tp_ha", "fp_ha", "fn_ha")}
    above = [r for r in compared if r.get("af_c", math.nan) > min_af]
    return json_ready({
        "convention": "C = the run's final map, T = the other map; Div = (T - C) / C; areas in true ground ha",
        "run": {"dir": str(run.root), "region": run.region.name, "blocks_planned": len(run.rows),
                "blocks_done": len(run.done)},
        "other": {**other.inputs(), "resolution_m": side_m, "resampling": resampling,
                  "resampling_rule": RESAMPLING_RULE},
        "complete": not (run.missing["blocks_pending"] or run.missing["blocks_failed"] or run.missing["files"]),
        "missing": run.missing,
        "blocks": {"done": len(rows), "compared": len(compared),
                   "not_covered": sum(r["status"] == "not covered" for r in rows),
                   "off_grid": [f"{r['block_id']}: {r['status']}" for r in rows if r["status"].startswith("off")]},
        "pixel": {**_ratios(sums["tp_ha"], sums["fp_ha"], sums["fn_ha"]), **sums},
        "block_level": {"min_af": min_af, "blocks": len(above),
                        "area_fraction": _div_stats([r["div_af"] for r in above]),
                        "edge_density": _div_stats([r["div_ed"] for r in above])},
        "deviation_vs_slope": _histograms(above, min_af),
    })  # fmt: skip


def _div_stats(values: list[float]) -> dict:
    """Median Div and the shares of blocks over- (Div > 0) and under-estimated (Div < 0), of those with a Div."""
    v = np.array([x for x in values if math.isfinite(x)])
    if not len(v):
        return {"blocks": 0, "median_div": None, "over_share": None, "under_share": None}
    return {"blocks": len(v), "median_div": float(np.median(v)), "over_share": float(np.mean(v > 0)),
            "under_share": float(np.mean(v < 0))}  # fmt: skip


def _histograms(above: list[dict], min_af: float) -> dict:
    """2-D block counts of Div (in %) against the slope median (paper Fig. 15), blocks with AF_C > min_af."""
    out = {"min_af": min_af, "div_percent_edges": DIV_EDGES.tolist(), "slope_deg_edges": SLOPE_EDGES.tolist(),
           "counts_axes": ["div_percent", "slope_deg"],
           "note": "values beyond the outer edges are counted in the outermost bins; blocks without a slope "
                   "median (no terrain in the run's blocks.parquet) are left out"}  # fmt: skip
    for key, col in (("area_fraction", "div_af"), ("edge_density", "div_ed")):
        pairs = np.array([(r[col] * 100, r["slope_median_deg"]) for r in above], np.float64).reshape(-1, 2)
        pairs = pairs[np.isfinite(pairs).all(axis=1)]
        div = np.clip(pairs[:, 0], DIV_EDGES[0], DIV_EDGES[-1])
        slope = np.clip(pairs[:, 1], SLOPE_EDGES[0], SLOPE_EDGES[-1])
        counts, _, _ = np.histogram2d(div, slope, bins=[DIV_EDGES, SLOPE_EDGES])
        out[key] = {"blocks": len(pairs), "counts": counts.astype(int).tolist()}
    return out


def write_comparison(comparison: Comparison, out_dir: Path | str) -> dict:
    """Write blocks.csv, deviation_vs_slope.png, deviation_map.png and compare.json (the summary with the
    outputs named) atomically in `out_dir`; returns that summary."""
    import json

    import pandas as pd
    from mapper.validation.compare_figures import deviation_map_png, deviation_vs_slope_png

    from mapper.store.atomic import atomic_path, atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = comparison.summary
    title = f"{Path(summary['other']['path']).name} (T) against {Path(summary['run']['dir']).name} (C)"
    with atomic_path(out / "blocks.csv") as tmp:
        pd.DataFrame(comparison.rows, columns=COLUMNS).to_csv(tmp, index=False, float_format="%.6g")
    deviation_vs_slope_png(summary, out / "deviation_vs_slope.png", title)
    deviation_map_png(comparison.rows, summary["block_level"]["min_af"], out / "deviation_map.png", title,
                      region_geometry=comparison.region_geometry)  # fmt: skip
    names = ("compare.json", "blocks.csv", "deviation_vs_slope.png", "deviation_map.png")
    summary = {**summary, "outputs": {n: str(out / n) for n in names}}
    atomic_write_text(out / "compare.json", json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    return summary
