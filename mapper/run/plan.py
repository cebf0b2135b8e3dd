"""What a run covers: the region (a province, a country, a lon/lat box), its blocks in working order, its
administrative units, and the run's identity (what must match to resume it)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COUNTRIES = ("China",)


class RegionError(ValueError):
    """A region that cannot be planned (unknown name, empty box); the message names the fix."""


@dataclass(frozen=True)
class Region:
    kind: str  # "province" | "provinces" | "country" | "bbox"
    name: str
    geometry: object  # shapely, EPSG:4326
    provinces: tuple  # Province objects whose cropland is reported
    spec: dict  # JSON form, saved in run.json


def resolve_region(province: str | None = None, country: str | None = None, bbox=None) -> Region:
    """The region of exactly one of --province, --country or --bbox."""
    import shapely

    from mapper.grid.admin import all_provinces, provinces_frame, resolve_province

    given = [x is not None for x in (province, country, bbox)]
    if sum(given) != 1:
        raise RegionError("give exactly one of --province NAME, --country China or --bbox WEST,SOUTH,EAST,NORTH")
    if province is not None:
        p = resolve_province(province)
        return Region("province", p.name, p.geometry, (p,), {"kind": "province", "name": p.name, "pcode": p.pcode})
    if country is not None:
        if country.strip().lower() not in {c.lower() for c in COUNTRIES}:
            raise RegionError(f"unknown country {country!r}; mapper knows the administrative units of: China")
        provs = tuple(all_provinces())
        geometry = shapely.union_all([p.geometry for p in provs])
        return Region("country", "China", geometry, provs, {"kind": "country", "name": "China"})
    west, south, east, north = parse_bbox(bbox)
    box = shapely.box(west, south, east, north)
    frame = provinces_frame()
    hit = frame[frame.intersects(box) & ~frame.touches(box)]
    provs = tuple(resolve_province(code) for code in hit["ADM1_PCODE"])
    name = f"bbox {west:g},{south:g},{east:g},{north:g}"
    return Region("bbox", name, box, provs, {"kind": "bbox", "bounds": [west, south, east, north]})


def resolve_provinces(names) -> Region:
    """A region of several provinces (a label campaign over them); one name gives the province itself."""
    import shapely

    from mapper.grid.admin import resolve_province

    provs = tuple(dict.fromkeys(resolve_province(n) for n in names))
    if not provs:
        raise RegionError("give at least one province")
    if len(provs) == 1:
        return resolve_region(province=provs[0].pcode)
    name = " + ".join(p.name for p in provs)
    geometry = shapely.union_all([p.geometry for p in provs])
    return Region("provinces", name, geometry, provs, {"kind": "provinces", "name": name,
                                                        "pcodes": [p.pcode for p in provs]})  # fmt: skip


def region_from_spec(spec: dict) -> Region:
    """The region saved in a run's run.json."""
    kind = spec["kind"]
    if kind == "province":
        return resolve_region(province=spec["pcode"])
    if kind == "provinces":
        return resolve_provinces(spec["pcodes"])
    if kind == "country":
        return resolve_region(country=spec["name"])
    if kind == "bbox":
        return resolve_region(bbox=spec["bounds"])
    raise RegionError(f"unknown region kind {kind!r} in run.json (written by another mapper version?)")


def parse_bbox(bbox) -> tuple[float, float, float, float]:
    if isinstance(bbox, str):
        try:
            bbox = [float(v) for v in bbox.split(",")]
        except ValueError:
            bbox = []
    if len(bbox) != 4:
        raise RegionError(f"--bbox {bbox!r}: give WEST,SOUTH,EAST,NORTH in degrees, e.g. --bbox 113.2,23.0,113.4,23.2")
    west, south, east, north = map(float, bbox)
    given = f"--bbox {west:g},{south:g},{east:g},{north:g}"
    outside = [f"{name} {v:g}" for name, v in (("west", west), ("east", east)) if not -180 <= v <= 180]
    outside += [f"{name} {v:g}" for name, v in (("south", south), ("north", north)) if not -85 < v < 85]
    if outside:
        raise RegionError(
            f"{given}: {', '.join(outside)} out of range; longitudes lie in -180…180 and latitudes in -85…85 "
            "(the web-map tile grid), in degrees: WEST,SOUTH,EAST,NORTH, e.g. --bbox 113.2,23.0,113.4,23.2"
        )
    if not (west < east and south < north):
        raise RegionError(f"{given}: needs west < east and south < north (WEST,SOUTH,EAST,NORTH, in degrees)")
    return west, south, east, north


def plan_blocks(region: Region):
    """The region's blocks (block_id, ix, iy, province, frac_inside), rows south to north, west to east."""
    import pandas as pd

    from mapper.grid.region import blocks_of_polygon, country_blocks, province_blocks

    if region.kind == "province":
        gdf = province_blocks(region.provinces[0])
    elif region.kind in ("country", "provinces"):
        gdf = country_blocks(region.provinces)
    else:
        gdf = blocks_of_polygon(region.geometry)
        gdf["province"] = _majority_province(gdf, region.provinces)
    df = pd.DataFrame(gdf[["block_id", "ix", "iy", "province", "frac_inside"]])
    return df.sort_values(["iy", "ix"], ignore_index=True)


def _majority_province(gdf, provinces) -> list[str | None]:
    """Name of the province holding most of each block (None outside every province)."""
    import shapely

    best = np.zeros(len(gdf))
    names: list[str | None] = [None] * len(gdf)
    boxes = gdf.geometry.values
    for p in provinces:
        share = shapely.area(shapely.intersection(boxes, p.geometry))
        for i in np.flatnonzero(share > best):
            best[i], names[i] = share[i], p.name
    return names


def region_units(region: Region) -> dict:
    """Province and prefecture codes the run reports areas for, and the region's spec (small: it travels to
    every worker)."""
    from mapper.grid.admin import prefectures_frame

    pcodes = [p.pcode for p in region.provinces]
    prefs = prefectures_frame()
    prefs = prefs[prefs["ADM1_PCODE"].isin(pcodes)]
    if region.kind == "bbox":
        prefs = prefs[prefs.intersects(region.geometry)]
    return {"name": region.name, "provinces": pcodes, "prefectures": list(prefs["ADM2_PCODE"]), "region": region.spec}


# ---------------------------------------------------------------------------------------------- identity
_PERFORMANCE_KEYS = ("blocks_in_flight", "fetch_workers", "segment_workers", "segment_batch_blocks",
                     "iqa_batch_blocks", "device", "torch_threads")  # fmt: skip


def outcome_config(config) -> dict:
    """The config without what cannot change a run's outputs (the tile cache, speed settings)."""
    data = config.model_dump(mode="json")
    data.pop("cache", None)
    data.pop("al", None)  # label campaigns: the run's outputs do not depend on them
    data.pop("croptype", None)  # a stage after the cropland map: it never changes the blocks' cropland
    data.pop("fields", None)  # likewise: fields are delineated inside the final masks, never changing them
    data["mosaic"] = {k: v for k, v in data["mosaic"].items() if k != "threads"}
    data["run"] = {k: v for k, v in data["run"].items() if k not in _PERFORMANCE_KEYS}
    return data


def model_fingerprint(spec: str, kind: str) -> str:
    """sha256 over a model directory's files (weights, configs), so a changed model is noticed on resume."""
    from mapper.models.registry import resolve_checkpoint

    root = resolve_checkpoint(spec)
    h = hashlib.sha256()
    for path in sorted(
        p for p in Path(root).rglob("*") if p.is_file() and p.suffix in (".json", ".safetensors", ".ubj")
    ):
        if path.name == "metrics.json":
            continue
        h.update(str(path.relative_to(root)).encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def blocks_digest(block_ids) -> str:
    """sha256 of an explicit block list (sorted), as the run identity records it."""
    return hashlib.sha256("\n".join(sorted(block_ids)).encode()).hexdigest()


def run_identity(config, region: Region, sources, max_blocks: int | None, dry_run: bool = False,
                 blocks=None) -> dict:  # fmt: skip
    from mapper import __version__

    models = config.run.models
    chosen = {} if blocks is None else {"blocks": {"count": len(set(blocks)), "sha256": blocks_digest(set(blocks))}}
    return {
        "region": region.spec,
        **chosen,
        "sources": list(sources),
        "world_seed": config.world.seed,
        "max_blocks": max_blocks,
        "dry_run": dry_run,
        "mapper_version": __version__,
        "models": {
            "iqa": model_fingerprint(models.iqa, "iqa"),
            "segmentation": model_fingerprint(models.segmentation, "segmentation"),
            "decisions": model_fingerprint(models.decisions, "decisions"),
        },
        "config": outcome_config(config),
    }
