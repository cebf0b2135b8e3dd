"""A run's outputs, rebuilt from the state database and the block files at the end of every session:

    blocks.parquet              one row per planned block: status, features, decisions and probabilities, areas
    map/cropland.vrt (+ .ovr)   the final map: a VRT of the blocks' COGs (final/BLOCK.tif), with overviews
    polygons/<PCODE>_<name>.gpkg  cropland polygons per prefecture
    area.csv, area_prefectures.csv  mapped cropland (true ground area, inside each unit) and the statistic, PCS
    report/area_fraction.png, report/map_preview.png, report/blocks.png (a dozen blocks with their final cropland)
    map/outputs.json            what these were made from: a session that changed none of it (crop types or fields
                                of a finished run) keeps them instead of rebuilding them
    summary.json

**Areas.** Each block's final mask is measured in true ground m² inside each province and prefecture of the
region, every pixel counted once (by its centre), so no border block is counted twice. When every planned
block of a province is mapped the province's area is their sum; when only a sample is (--max-blocks) or some
blocks failed, it is estimated as the mapped blocks' cropland share of their land inside the province times
the province's area (labelled as an estimate, with the share of the province mapped).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from mapper.grid.area import geodesic_area_m2
from mapper.maps.units import unit_frames
from mapper.run.registry import active_stages
from mapper.run.stage import RunContext
from mapper.store.atomic import atomic_write_text
from mapper.store.geoparquet import write_geoparquet
from mapper.store.run_store import BLOCK_LEVEL, RunStore

log = logging.getLogger("mapper.run")
HA = 1e4


def write_outputs(store: RunStore, ctx: RunContext, region, summary: dict) -> dict:
    import rasterio

    from mapper.maps.block_maps import area_fraction_png
    from mapper.maps.gallery import block_gallery_png

    root = store.layout.root
    units = unit_frames(ctx.units)
    table = block_table(store, ctx)
    write_geoparquet(table, root / "blocks.parquet")
    done = table[table["status"] == "done"]["block_id"].tolist()
    outputs = {"blocks": str(root / "blocks.parquet")}
    signature = _cropland_signature(store, table, done)
    kept = _unchanged_cropland_outputs(root, signature)
    if kept is not None:  # a session of a later stage only (crop types, fields): the map is as it was
        outputs.update(kept)
    else:
        maps = {}
        if done:
            with rasterio.Env(GDAL_CACHEMAX=256):  # MB; GDAL's default (5 % of RAM) would grow the driver for nothing
                maps.update(_map_outputs(store, root, done, units))
        png = area_fraction_png(table, root / "report" / "area_fraction.png", region_geometry=region.geometry,
                                units=units["prefectures"], title=_title(region, table))  # fmt: skip
        maps["area_fraction"] = str(png)
        if done:
            gallery = block_gallery_png(table, root, root / "report" / "blocks.png", max_blocks=12, sources=ctx.sources,
                                        imagery="decision", region_geometry=region.geometry)  # fmt: skip
            maps["block_gallery"] = str(gallery)
        if done:  # (no map, no record: a run with no block done has only the cheap picture to redo)
            atomic_write_text(root / SIGNATURE_FILE, json.dumps({"signature": signature, "outputs": maps}, indent=1))
        outputs.update(maps)
    for stage in active_stages(ctx.config):  # the outputs of stages other packages add (crop types)
        if stage.outputs is not None and done:
            outputs[stage.name] = stage.outputs(store, ctx, units)
    provinces = province_areas(store, ctx, region, table)
    _write_csv(provinces, root / "area.csv")
    _write_csv(prefecture_areas(store, units), root / "area_prefectures.csv")
    outputs["area"] = str(root / "area.csv")
    summary = {
        **summary,
        "region": region.name,
        "run_dir": str(root),
        "stage_seconds": store.stage_seconds(),
        "provinces": provinces.to_dict("records"),
        "failures": [f.__dict__ for f in store.failures() if f.status == "failed"],
        "outputs": outputs,
    }
    summary["text"] = summary_text(summary)
    atomic_write_text(root / "summary.json", json.dumps(summary, indent=1, default=_json_default))
    return summary


SIGNATURE_FILE = "map/outputs.json"  # what the cropland outputs were made from, and where they are


def _cropland_signature(store: RunStore, table, done: list[str]) -> str:
    """What the map, polygons and report pictures are made from: every block's status and decision, and each
    done block's final mask and polygons files (size and modification time)."""
    import hashlib

    columns = [c for c in ("block_id", "status", "decision") if c in table]
    parts = table[columns].astype(str).to_numpy().ravel().tolist()
    for b in done:
        for path in (store.layout.final(b), store.layout.block_polygons(b)):
            st = path.stat() if path.exists() else None
            parts.append(f"{path.name}:{st.st_size}:{st.st_mtime_ns}" if st else f"{path.name}:-")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _unchanged_cropland_outputs(root: Path, signature: str) -> dict | None:
    """The cropland outputs of an earlier session when nothing they are made from changed since and they are all
    still there; else None (rebuild)."""
    path = root / SIGNATURE_FILE
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if recorded.get("signature") != signature:
        return None
    outputs = recorded.get("outputs", {})
    files = [p for v in outputs.values() for p in (v if isinstance(v, list) else [v])]
    return outputs if all(Path(p).exists() for p in files) else None


def _map_outputs(store: RunStore, root: Path, done: list[str], units: dict) -> dict:
    """The map VRT over the done blocks' COGs, its preview, and the polygons per prefecture."""
    from mapper.maps.final_map import build_map_vrt, map_preview_png
    from mapper.maps.polygons import write_unit_geopackages

    # No VRT-level overviews: GDAL builds them by reading the whole extent at full resolution (minutes for a
    # sparse sample spread over a province); zoomed-out reads of the VRT use each block COG's own overviews.
    vrt = build_map_vrt([store.layout.final(b) for b in done], root / "map" / "cropland.vrt", overviews=False)
    preview = map_preview_png(vrt, root / "report" / "map_preview.png")
    paths = [store.layout.block_polygons(b) for b in done]
    gpkgs = write_unit_geopackages(paths, root / "polygons", units["prefectures"])
    return {"map": str(vrt), "map_preview": str(preview), "polygons": [str(p) for p in gpkgs]}


# ---------------------------------------------------------------------------------------------- block table
FINAL_COLUMNS = ("cropland_m2", "land_m2", "cropland_fraction", "polygons", "status")

def block_table(store: RunStore, ctx: RunContext):
    """One row per planned block: where it is, how far it got, its features, decisions and areas."""
    import geopandas as gpd
    import pandas as pd

    from mapper.grid.region import block_boxes

    blocks = pd.DataFrame(list(store.block_rows()), columns=["block_id", "ix", "iy", "province", "frac_inside"])
    rows = {b: {} for b in blocks["block_id"]}
    for i, source in enumerate(ctx.sources):
        prefix = "ab"[i]
        for block_id, r in store.results("iqa", source):
            rows[block_id][f"{prefix}_coverage"] = r.get("coverage")
        for block_id, r in store.results("fetch", source):
            rows[block_id][f"{prefix}_missing_tiles"] = r.get("missing_tiles")
        for block_id, r in store.results("segment", source):
            rows[block_id][f"{prefix}_uncertain_fraction"] = r.get("uncertain_fraction")
    for block_id, r in store.results("features"):
        rows[block_id].update(r["features"])
    for block_id, r in store.results("decide"):
        rows[block_id].update(r)
    for block_id, r in store.results("final"):
        inside = r["region"] or r["provinces"]  # a country's region is its provinces
        crop, land = np.array(list(inside.values()) or [[0.0, 0.0]]).sum(axis=0)
        rows[block_id].update({"cropland_m2": crop, "land_m2": land, "cropland_fraction": crop / land if land else None,
                               "polygons": r["polygons"], "status": "done"})  # fmt: skip
    failed = {f.block_id for f in store.failures() if f.status == "failed"}
    extra = pd.DataFrame([rows[b] for b in blocks["block_id"]], index=blocks.index)
    table = pd.concat([blocks, extra], axis=1)
    for column in FINAL_COLUMNS:  # present even when no block finished, so every reader finds them
        if column not in table:
            table[column] = None if column == "status" else np.nan
    table["status"] = [s if s == "done" else ("failed" if b in failed else "pending")
                       for b, s in zip(table["block_id"], table["status"], strict=True)]  # fmt: skip
    geometry = block_boxes(table["ix"].to_numpy(), table["iy"].to_numpy())
    return gpd.GeoDataFrame(table, geometry=geometry, crs="EPSG:4326")


# ---------------------------------------------------------------------------------------------- areas
def _sum_units(store: RunStore, key: str) -> dict[str, np.ndarray]:
    """{unit code: [cropland m², land m², blocks]} over the done blocks."""
    totals: dict[str, np.ndarray] = {}
    for _, r in store.results("final", BLOCK_LEVEL):
        for code, (crop, land) in r[key].items():
            t = totals.setdefault(code, np.zeros(3))
            t += (crop, land, 1)
    return totals


def province_areas(store: RunStore, ctx: RunContext, region, table):
    """Per province of the region: mapped (or estimated) cropland, the statistic, PCS."""
    import pandas as pd

    from mapper.maps.statistics import pcs, within_criterion

    totals = _sum_units(store, "provinces")
    rows = []
    for province in region.provinces:
        crop, land, _ = totals.get(province.pcode, np.zeros(3))
        planned = int((table["province"] == province.name).sum())
        in_region = store.meta("region_blocks_per_province", {}).get(province.name, planned)
        done = int(((table["province"] == province.name) & (table["status"] == "done")).sum())
        area = geodesic_area_m2(province.geometry)
        covers = region.kind != "bbox" or region.geometry.contains(province.geometry)
        complete = covers and done == in_region and in_region > 0
        mapped = crop / HA if complete else (crop / land * area / HA if land > 0 and covers else None)
        statistic = _statistic(ctx, province, store)
        value = pcs(mapped, statistic) if covers else None
        rows.append({
            "province": province.name, "pcode": province.pcode, "region_covers_province": covers,
            "mapped_cropland_ha": mapped, "estimate": not complete,
            "mapped_share": land / area if area else None, "blocks_done": done, "blocks_planned": planned,
            "blocks_in_province": in_region,
            "cropland_ha_in_mapped_blocks": crop / HA,
            "statistic_ha": statistic.hectares, "statistic_source": statistic.source, "statistic_year": statistic.year,
            "statistic_note": statistic.note, "pcs": value, "within_10pct": within_criterion(value),
        })  # fmt: skip
    return pd.DataFrame(rows)


def prefecture_areas(store: RunStore, units: dict):
    import pandas as pd

    totals = _sum_units(store, "prefectures")
    frame = units["prefectures"]
    rows = []
    for code, name in zip(frame["code"], frame["name"], strict=True):
        crop, land, blocks = totals.get(code, np.zeros(3))
        rows.append({"prefecture": name, "code": code, "cropland_ha_in_mapped_blocks": crop / HA,
                     "land_ha_mapped": land / HA, "blocks_done": int(blocks)})  # fmt: skip
    return pd.DataFrame(rows)


WORLD_STATISTICS = "world_statistics"  # state-database key: the world's statistic per province, computed once


def _statistic(ctx: RunContext, province, store: RunStore):
    """The statistic of mapper.maps.statistics.reference_statistic: the config's table, else the simulated
    world's own for world sources (seconds to integrate: kept in the run's state database for its later
    sessions), else the official one."""
    from mapper.maps.statistics import read_user_statistics, reference_statistic, world_statistic

    config = ctx.mapper_config()
    tables = [read_user_statistics(config.run.statistics)] if config.run.statistics is not None else []
    world = config.simulated(ctx.sources)
    statistic, kind = reference_statistic(province, tables, world=world)
    if kind != "world":
        return statistic
    kept = store.meta(WORLD_STATISTICS, {})
    key = f"{config.world.seed}:{province.pcode}"
    statistic = world_statistic(config.world.seed, province, hectares=kept.get(key))
    if key not in kept:
        store.set_meta(WORLD_STATISTICS, {**kept, key: statistic.hectares})
    return statistic


def _write_csv(df, path: Path) -> None:
    atomic_write_text(path, df.to_csv(index=False))


# ---------------------------------------------------------------------------------------------- summary
def _title(region, table) -> str:
    return f"{region.name}: cropland area fraction"


def summary_text(s: dict) -> str:
    lines = [f"{s['region']}: {s['finished']} of {s['blocks']} blocks mapped, {s['failed']} failed, "
             f"in {s['seconds']:.0f} s -> {s['run_dir']}"]  # fmt: skip
    if s["finished"] == 0 and s["blocks"]:
        lines.append("  no block finished, so there is no map; the failures are below and in run.log. Fix their "
                     f"cause, then `mapper run --resume {s['run_dir']} --retry-failed`")  # fmt: skip
    for p in s["provinces"]:
        mapped = p["mapped_cropland_ha"]
        what = "mapped"
        if p["estimate"]:
            what = f"estimated from {p['blocks_done']:,} of {p['blocks_in_province']:,} blocks"
        if not p["region_covers_province"]:
            area = f"{p['cropland_ha_in_mapped_blocks']:,.0f} ha in the mapped blocks (the region covers part of it)"
        else:
            area = f"{mapped:,.0f} ha {what}" if mapped is not None else "no area (no block of it mapped)"
        stat = f"{p['statistic_ha']:,.0f} ha ({p['statistic_source']})" if p["statistic_ha"] else p["statistic_source"]
        pcs = f", PCS {p['pcs']:.3f}" if p["pcs"] is not None else ""
        lines.append(f"  {p['province']}: cropland {area}; statistic {stat}{pcs}")
    for key in ("map", "blocks", "area", "area_fraction", "map_preview", "block_gallery"):
        if key in s["outputs"]:
            lines.append(f"  {key}: {s['outputs'][key]}")
    if s["outputs"].get("polygons"):
        lines.append(f"  polygons: {len(s['outputs']['polygons'])} GeoPackage(s) in {Path(s['run_dir']) / 'polygons'}")
    for f in s["failures"][:10]:
        lines.append(f"  failed: block {f['block_id']} {f['stage']} {f['source']}: {f['error']}")
    if len(s["failures"]) > 10:
        lines.append(f"  … and {len(s['failures']) - 10} more failed tasks (summary.json lists them all)")
    if s["failures"] and s["finished"]:
        lines.append(f"  retry the failed blocks with `mapper run --resume {s['run_dir']} --retry-failed`")
    run_dir = s["run_dir"]
    if not s["finished"]:
        return "\n".join(lines)
    if any(p["estimate"] for p in s["provinces"]):  # a sample's total alone is a rough figure: say what is sure
        lines.append(f"  a sample's province total is rough: `mapper validate {run_dir}` gives its 95 % interval and "
                     "compares the mapped blocks like for like")  # fmt: skip
    lines.append(f"  next: `mapper validate {run_dir}` (pixel, block and province levels), `mapper report {run_dir}` "
                 "(HTML)")  # fmt: skip
    return "\n".join(lines)


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    return str(v)
