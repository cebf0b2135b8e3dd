"""The blocks of a region: which blocks intersect a polygon, how much of each lies inside, and which
prefectures each touches."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import shapely

from mapper.grid.admin import Province, prefectures_frame
from mapper.grid.blocks import CELLS_PER_DEGREE


def _candidate_indices(west: float, south: float, east: float, north: float,
                       cells_per_degree: int = CELLS_PER_DEGREE) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(ix, iy) of every cell of a 1/cells_per_degree° grid meeting the lon/lat box, rows south to north."""
    ix0 = math.floor(round((west + 180.0) * cells_per_degree, 9))
    iy0 = math.floor(round((south + 90.0) * cells_per_degree, 9))
    ix1 = math.ceil(round((east + 180.0) * cells_per_degree, 9))
    iy1 = math.ceil(round((north + 90.0) * cells_per_degree, 9))
    iy, ix = np.mgrid[iy0 : max(iy1, iy0 + 1), ix0 : max(ix1, ix0 + 1)]
    return ix.ravel().astype(np.int32), iy.ravel().astype(np.int32)


def block_boxes(ix: np.ndarray, iy: np.ndarray, cells_per_degree: int = CELLS_PER_DEGREE) -> np.ndarray:
    """Cell polygons (EPSG:4326) of index arrays, built in one vectorised call (blocks by default)."""
    d = cells_per_degree
    return shapely.box(ix / d - 180.0, iy / d - 90.0, (ix + 1) / d - 180.0, (iy + 1) / d - 90.0)


def cells_of_polygon(geometry, cells_per_degree: int = CELLS_PER_DEGREE):
    """(ix, iy, frac_inside, boxes) of the cells of a 1/cells_per_degree° grid whose area meets `geometry`.

    Fractions are ratios of areas in degrees²: within a cell of a few arcminutes the cos(φ) scale varies by
    less than 0.1 %, so the ratio equals the ground-area ratio to that precision.
    """
    ix, iy = _candidate_indices(*geometry.bounds, cells_per_degree)
    boxes = block_boxes(ix, iy, cells_per_degree)
    shapely.prepare(geometry)
    hits = shapely.intersects(geometry, boxes)
    ix, iy, boxes = ix[hits], iy[hits], boxes[hits]
    hits = ~shapely.touches(geometry, boxes)
    ix, iy, boxes = ix[hits], iy[hits], boxes[hits]
    inside = shapely.contains_properly(geometry, boxes)
    frac = np.ones(len(boxes))
    border = ~inside
    frac[border] = shapely.area(shapely.intersection(boxes[border], geometry)) * cells_per_degree**2
    keep = frac > 0  # zero-area intersections (shared edges only) are not in the region
    return ix[keep], iy[keep], np.clip(frac[keep], 0.0, 1.0), boxes[keep]


def blocks_of_polygon(geometry) -> gpd.GeoDataFrame:
    """One row per block intersecting `geometry` (EPSG:4326), with `frac_inside` in (0, 1]."""
    ix, iy, frac, boxes = cells_of_polygon(geometry)
    return gpd.GeoDataFrame(
        {
            "block_id": [f"{x}_{y}" for x, y in zip(ix.tolist(), iy.tolist(), strict=True)],
            "ix": ix,
            "iy": iy,
            "frac_inside": frac,
        },
        geometry=boxes,
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
