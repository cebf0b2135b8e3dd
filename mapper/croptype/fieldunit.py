"""Crop types per field (croptype.unit field): the 2 m field pieces of the run's fields stage seen from the 10 m
Sentinel-2 grid, their series, their crops and what the stage writes of them.

    labels = read_field_labels(root, block_id, window)     the fields stage's pieces of a block (uint32, 0 none)
    pieces = field_pieces(comp, labels, window)            each piece's 10 m pixels (centre, pure) and series
    table = field_table(pieces, crops, labels, window, taxonomy)   croptype/fields/<block>.parquet
    gdf = piece_polygons(labels, window, table, prefectures, block_id)   the block's parcels file

A piece's series is the mean of its pure 10 m pixels (footprint wholly inside the piece), else of the 10 m
pixels whose centre it holds (`fallback`); a piece holding no 10 m pixel centre stays unclassified.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mapper.croptype.stage import CROP_COLUMNS, UNCLASSIFIED, crop_names

FIELD_CROP_COLUMNS = ["label", "crop_code", "crop", "level1", "level2", "level3", "level4", "crop_prob", "n_pure",
                      "fallback", "area_m2"]  # fmt: skip  # croptype/fields/<block>.parquet


def fields_missing_message(run_dir: Path | str, config: dict) -> str | None:
    """Why unit field cannot run on this run (None when it can): it needs the fields stage's block labels, or
    the fields stage in the run (fields.enabled) to make them first."""
    from mapper.fields.paths import fields_dir

    if (config.get("fields") or {}).get("enabled"):
        return None
    blocks = fields_dir(run_dir) / "blocks"
    if blocks.is_dir() and any(blocks.glob("*.tif")):
        return None
    return (f"--unit field classifies the fields of the run's fields stage, and {run_dir} has none (no "
            f"{blocks}/<block>.tif): run `mapper fields {run_dir}` first (or set fields.enabled: true in its "
            "config so that the run makes them)")  # fmt: skip


def read_field_labels(root: Path | str, block_id: str, window) -> np.ndarray:
    """The fields stage's piece labels of a block (uint32 on the block's z16 grid, 0 none); a clear error when
    the block has none or they are on another grid."""
    import rasterio

    from mapper.fields.paths import block_labels_path

    path = block_labels_path(root, block_id)
    if not path.is_file():
        raise FileNotFoundError(
            f"croptype.unit is field but block {block_id} has no fields ({path}): run `mapper fields {root}` "
            "first, or set fields.enabled: true in the run's config"
        )
    with rasterio.open(path) as src:
        if src.shape != window.shape or not src.transform.almost_equals(window.transform):
            raise ValueError(
                f"{path} is not on block {block_id}'s z16 grid ({src.shape}, {tuple(src.transform)[:6]}; want "
                f"{window.shape}, {tuple(window.transform)[:6]}): rerun `mapper fields {root}`"
            )
        return src.read(1)


@dataclass
class FieldPieces:
    """The 2 m field pieces of a block seen from the 10 m composite grid."""

    centre: np.ndarray  # (H, W) int64: the piece (label - 1) holding each 10 m pixel's centre, -1 none
    pure: np.ndarray  # (H, W) bool: the pixel's whole footprint lies in that piece
    series: np.ndarray  # (n, B, T): mean of the piece's pure pixels, else of its centre pixels (fallback)
    n_pure: np.ndarray  # (n,)
    fallback: np.ndarray  # (n,) bool: no pure pixel
    no_pixels: np.ndarray  # (n,) bool: not even a 10 m pixel centre: NaN series, unclassified

    @property
    def n(self) -> int:
        return len(self.n_pure)


def _to_block_pixels(comp, window, cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fractional (col, row) of the composite's grid → fractional (col, row) of the block's z16 grid."""
    from pyproj import Transformer

    from mapper.grid.tilegrid import lonlat_to_global_pixel

    x, y = comp.transform @ (cols, rows)
    lon, lat = Transformer.from_crs(comp.crs, 4326, always_xy=True).transform(x, y)
    col, row = lonlat_to_global_pixel(lon, lat, window.zoom)
    return np.asarray(col) - window.col0, np.asarray(row) - window.row0


def _sample(labels: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """labels[rows, cols], 0 off the array."""
    h, w = labels.shape
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    out = np.zeros(rows.shape, labels.dtype)
    out[inside] = labels[rows[inside], cols[inside]]
    return out


def field_pieces(comp, labels: np.ndarray, window) -> FieldPieces:
    """Each 2 m piece's 10 m pixels and series. A 10 m pixel is pure for a piece when every 2 m pixel its
    footprint overlaps belongs to the piece: the footprint's corners are projected exactly onto the 2 m grid
    and the 2 m pixels of their bounding box are compared (the box is at most ~0.1 px wider than the slightly
    rotated footprint, so purity errs on the strict side, never the lax one). A pixel holds the piece its
    centre falls in."""
    from mapper.croptype.parcels import means_by_label

    h, w = comp.values.shape[2:]
    lab = np.asarray(labels).astype(np.int64)
    n = int(lab.max()) if lab.size else 0
    cc, rr = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    u, v = _to_block_pixels(comp, window, cc, rr)
    centre = _sample(lab, np.floor(v).astype(np.int64), np.floor(u).astype(np.int64)) - 1
    cc, rr = np.meshgrid(np.arange(w + 1.0), np.arange(h + 1.0))
    u, v = _to_block_pixels(comp, window, cc, rr)
    corners_u = np.stack([u[:-1, :-1], u[:-1, 1:], u[1:, :-1], u[1:, 1:]])
    corners_v = np.stack([v[:-1, :-1], v[:-1, 1:], v[1:, :-1], v[1:, 1:]])
    eps = 1e-6  # a footprint edge on a 2 m pixel edge does not reach into the next pixel
    c0, c1 = np.floor(corners_u.min(0) + eps).astype(np.int64), np.ceil(corners_u.max(0) - eps).astype(np.int64)
    r0, r1 = np.floor(corners_v.min(0) + eps).astype(np.int64), np.ceil(corners_v.max(0) - eps).astype(np.int64)
    lo = np.full((h, w), np.iinfo(np.int64).max)
    hi = np.full((h, w), -1, np.int64)
    for dr in range(int((r1 - r0).max(initial=0))):
        for dc in range(int((c1 - c0).max(initial=0))):
            ok = (r0 + dr < r1) & (c0 + dc < c1)
            val = _sample(lab, r0 + dr, c0 + dc)
            lo = np.where(ok, np.minimum(lo, val), lo)
            hi = np.where(ok, np.maximum(hi, val), hi)
    pure = (lo == hi) & (lo - 1 == centre) & (centre >= 0)
    n_pure = np.bincount(centre[pure], minlength=n)
    has = centre >= 0
    n_centre = np.bincount(centre[has], minlength=n)
    fallback = n_pure == 0
    use = pure.copy()
    use[has] |= fallback[centre[has]]
    series = means_by_label(comp.values[:, :, use], centre[use], n)
    return FieldPieces(centre, pure, series, n_pure, fallback, n_centre == 0)


def field_main_crops(poly_labels: np.ndarray, labels: np.ndarray, lut: np.ndarray, n_polygons: int) -> np.ndarray:
    """Per cropland polygon (labels 1..n of `poly_labels`), the crop of most of its field pixels (0: none)."""
    has = (labels > 0) & (poly_labels > 0)
    code = lut[labels[has]].astype(np.int64)
    counts = np.bincount(poly_labels[has].astype(np.int64) * 256 + code, minlength=(n_polygons + 1) * 256)
    counts = counts.reshape(n_polygons + 1, 256)[1:]
    counts[:, UNCLASSIFIED] = 0
    return np.where(counts.max(axis=1) > 0, counts.argmax(axis=1), UNCLASSIFIED)


def field_table(pieces: FieldPieces, crops: dict, labels: np.ndarray, window, taxonomy):
    """croptype/fields/<block>.parquet: each piece's crop and its 2 m area (true ground m²)."""
    import pandas as pd

    from mapper.grid.area import row_pixel_areas

    n = pieces.n
    weights = np.broadcast_to(row_pixel_areas(window)[:, None], labels.shape).ravel()
    area = np.bincount(labels.ravel().astype(np.int64), weights=weights, minlength=n + 1)[1:]
    code = crops["code"]
    return pd.DataFrame({
        "label": np.arange(1, n + 1, dtype=np.uint32),
        "crop_code": code.astype(np.int16),
        **crop_names(code, taxonomy),
        "crop_prob": crops["prob"].astype(np.float32),
        "n_pure": pieces.n_pure.astype(np.int32),
        "fallback": pieces.fallback,
        "area_m2": area,
    })[FIELD_CROP_COLUMNS]  # fmt: skip


def write_table(table, path: Path) -> None:
    from mapper.store.atomic import atomic_path

    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)


def piece_polygons(labels: np.ndarray, window, table, prefectures: tuple, block_id: str):
    """The pieces as polygons (their exact 2 m pixel outlines), EPSG:4326, in the prefecture holding most of
    each, with the crop columns of the block's parcels file (and the piece label)."""
    import geopandas as gpd
    import shapely
    from affine import Affine
    from rasterio.features import shapes

    from mapper.fields.polygons import to_lonlat

    pref, codes, names = prefectures
    n = len(table)
    geoms = np.empty(n, dtype=object)
    if n:
        parts: dict[int, list] = {}
        lab = labels.astype(np.int32)
        origin = Affine.translation(window.col0, window.row0)
        for g, v in shapes(lab, mask=lab > 0, connectivity=4, transform=origin):
            parts.setdefault(int(v), []).append(shapely.geometry.shape(g))
        for v, gs in parts.items():
            geoms[v - 1] = gs[0] if len(gs) == 1 else shapely.union_all(gs)
        bad = np.flatnonzero(~shapely.is_valid(geoms))
        if len(bad):
            geoms[bad] = shapely.make_valid(geoms[bad], method="structure", keep_collapsed=False)
    present = ~shapely.is_missing(geoms)
    k = len(codes)
    has = (labels > 0) & (pref > 0)
    counts = np.bincount(labels[has].astype(np.int64) * (k + 1) + pref[has], minlength=(n + 1) * (k + 1))
    counts = counts.reshape(n + 1, k + 1)[1:]
    owner = np.where(counts.max(axis=1) > 0, counts.argmax(axis=1), 0)  # 0: in no prefecture
    code_of = np.array([None, *codes], dtype=object)
    name_of = np.array([None, *names], dtype=object)
    lonlat = np.full(n, None, dtype=object)
    lonlat[present] = to_lonlat(geoms[present])
    out = gpd.GeoDataFrame(
        {
            "block_id": np.full(n, block_id, dtype=object),
            "unit_code": code_of[owner],
            "unit_name": name_of[owner],
            **{c: table[c].to_numpy() for c in CROP_COLUMNS if c in table.columns},
            "label": table["label"].to_numpy(),
        },
        geometry=gpd.GeoSeries(lonlat, crs="EPSG:4326"),
        crs="EPSG:4326",
    )
    return out[present].reset_index(drop=True)[[*CROP_COLUMNS, "label", "geometry"]]
