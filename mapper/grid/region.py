"""The blocks of a region: which blocks intersect a polygon, how much of each lies inside, and which
prefectures each touches."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely

from mapper.grid.admin import Province, prefectures_frame
from mapper.grid.blocks import BLOCK_DEG, Block, blocks_in_bounds


def blocks_of_polygon(geometry) -> gpd.GeoDataFrame:
    """One row per block intersecting `geometry` (EPSG:4326), with `frac_inside` in (0, 1].

    Fractions are ratios of areas in degrees²: within a 0.05° cell the cos(φ) scale varies by less than
    0.1 %, so the ratio equals the ground-area ratio to that precision.
    """
    candidates = blocks_in_bounds(*geometry.bounds)
    boxes = np.array([b.polygon for b in candidates])
    shapely.prepare(geometry)
    hits = shapely.intersects(geometry, boxes) & ~shapely.touches(geometry, boxes)
    inside = shapely.contains_properly(geometry, boxes)
    blocks = [b for b, h in zip(candidates, hits, strict=True) if h]
    boxes, inside = boxes[hits], inside[hits]
    frac = np.ones(len(blocks))
    border = ~inside
    frac[border] = shapely.area(shapely.intersection(boxes[border], geometry)) / BLOCK_DEG**2
    keep = frac > 0  # zero-area intersections (shared edges only) are not in the region
    return gpd.GeoDataFrame(
        {
            "block_id": [b.id for b, k in zip(blocks, keep, strict=True) if k],
            "ix": np.array([b.ix for b in blocks], dtype=np.int32)[keep],
            "iy": np.array([b.iy for b in blocks], dtype=np.int32)[keep],
            "frac_inside": np.clip(frac[keep], 0.0, 1.0),
        },
        geometry=list(boxes[keep]),
        crs="EPSG:4326",
    )


def province_blocks(province: Province) -> gpd.GeoDataFrame:
    """Blocks intersecting the province, with the prefectures (ADM2 pcodes) each touches."""
    gdf = blocks_of_polygon(province.geometry)
    gdf.insert(1, "province", province.name)
    prefs = prefectures_frame()
    prefs = prefs[prefs["ADM1_PCODE"] == province.pcode]
    gdf["prefectures"] = _touched_units(gdf.geometry.values, prefs)
    return gdf


def _touched_units(boxes, units: gpd.GeoDataFrame) -> list[str]:
    """';'-joined ADM2 pcodes of the units whose interiors each box meets, largest overlap first."""
    tree = shapely.STRtree(units.geometry.values)
    box_idx, unit_idx = tree.query(np.asarray(boxes), predicate="intersects")
    overlap = shapely.area(shapely.intersection(np.asarray(boxes)[box_idx], units.geometry.values[unit_idx]))
    codes = units["ADM2_PCODE"].to_numpy()
    touched: list[list[tuple[float, str]]] = [[] for _ in range(len(boxes))]
    for b, u, a in zip(box_idx, unit_idx, overlap, strict=True):
        if a > 0:
            touched[b].append((a, codes[u]))
    return [";".join(code for _, code in sorted(t, reverse=True)) for t in touched]


def block_from_row(row) -> Block:
    return Block(int(row.ix), int(row.iy))


def country_blocks(provinces) -> gpd.GeoDataFrame:
    """Blocks of several provinces (a country), each once: `province` is the one holding most of the block,
    `provinces` all it touches, `frac_inside` the share inside any of them."""
    import pandas as pd

    parts = []
    for prov in provinces:
        gdf = blocks_of_polygon(prov.geometry)
        gdf["province"] = prov.name
        parts.append(gdf)
    allb = pd.concat(parts, ignore_index=True).sort_values("frac_inside", ascending=False, kind="stable")
    grouped = allb.groupby("block_id", sort=False)
    first = grouped.first()
    out = gpd.GeoDataFrame(
        {
            "block_id": first.index.to_numpy(),
            "province": first["province"].to_numpy(),
            "ix": first["ix"].to_numpy(),
            "iy": first["iy"].to_numpy(),
            "frac_inside": grouped["frac_inside"].sum().clip(upper=1.0).to_numpy(),
            "provinces": grouped["province"].agg(";".join).to_numpy(),
        },
        geometry=first["geometry"].to_numpy(),
        crs="EPSG:4326",
    )
    return out.sort_values(["iy", "ix"], ignore_index=True)
