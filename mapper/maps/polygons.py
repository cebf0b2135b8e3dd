"""Vector cropland: the polygons of a block's final mask, cut by admin units, and one GeoPackage per unit.

    block_polygons(mask, window, block_id, units=None) -> GeoDataFrame      one block, EPSG:4326
    cut_by_units(polygons, units) -> GeoDataFrame                            pieces per unit, areas apportioned
    write_block_polygons(gdf, path) / read_block_polygons(path)              GeoParquet, atomic
    write_unit_geopackages(block_polygon_paths, out_dir, units) -> [Path]    `<code>_<name>.gpkg` per unit
    units_from_prefectures(frame) -> GeoDataFrame                            ADM2 rows as `code`, `name`

**Polygons.** A polygon is one 8-connected component of cropland pixels (mask == 1; 0 and the nodata value
255 are background), the same connectivity as `mapper.features.regionprops` and scikit-image's
`label(connectivity=2)`: components are labelled with OpenCV (8-connected) and the label raster is traced
by GDAL's polygonizer (`rasterio.features.shapes(connectivity=8)`) on the block's pixel grid, so every
polygon follows pixel edges exactly and rasterising it back (pixel centres) gives the mask again.
Holes are kept as interior rings: a hole is a 4-connected background region enclosed by the component
(the background is 4-connected when the foreground is 8-connected), nodata pixels included. Where a
component touches itself diagonally GDAL traces one ring that touches itself at a vertex, which OGC calls
invalid; such polygons are rebuilt valid with the same pixels (the result `shapely.make_valid(...,
method="structure")` gives, ~6× faster on a percolating component; see `_repair`): a MultiPolygon whose
parts meet at that corner, or a shell and a hole that touch there. Tracing runs in local pixel coordinates
(exact integers), then coordinates go through the block's EPSG:3857 transform and the exact inverse
spherical Mercator (`mercator_to_lonlat`) to EPSG:4326: pixel edges are meridians and parallels, so the
outlines stay exact in degrees. Speed: ~0.8 s for a 2330 × 2534 block with ~2,900 components (one of them
percolating, 190,000 vertices), about 0.5 s of it in GDAL's polygonizer.

**Area.** `area_m2` is true ground area from pixel counts: each component's pixels counted per row times
the row's ellipsoidal pixel area (`row_pixel_areas`), so a block's polygons sum to `masked_area_m2`.

**Cutting by units** (`units`: GeoDataFrame with `code`, `name`, geometry). A polygon inside one unit is
kept whole with its exact pixel area. A polygon crossing unit borders is intersected with each unit it meets
(shapely, vectorised) and each piece gets `area_m2 × A(piece) / A(polygon)`, A measured in the Lambert
cylindrical equal-area projection of the WGS84 ellipsoid (x = λ in radians, y = the ellipsoid's area
integral of latitude, the band integral `row_pixel_areas` uses; EPSG:6933 is the same projection up to a
constant scale). In that projection pixel edges stay straight and a polygon's area is its exact ellipsoidal
area, so the ratio is exact for the pixel outlines; a unit border's segments are taken as straight in that
projection (they are short: the difference from straight in degrees is negligible). Pieces outside every
unit, and zero-area contacts, are dropped.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import cv2
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from mapper.grid.area import equal_area_m2, row_pixel_areas
from mapper.grid.tilegrid import PixelWindow, mercator_to_lonlat
from mapper.store.atomic import atomic_path

CRS = "EPSG:4326"
CROPLAND = 1
NODATA = 255
LAYER = "cropland"
COLUMNS = ["block_id", "area_m2"]
UNIT_COLUMNS = ["block_id", "unit_code", "unit_name", "area_m2"]
_ROW_CHUNK = 512  # rows per pass when summing component areas (bounds the temporary weights array)


# ------------------------------------------------------------------------------------------------ one block
def block_polygons(mask: np.ndarray, window: PixelWindow, block_id: str, units=None) -> gpd.GeoDataFrame:
    """Cropland polygons (mask == 1) of one block in EPSG:4326, with `block_id` and true `area_m2`.

    `mask` is the block's final mask (uint8 0/1/255 or bool) of shape `window.shape`. With `units` the
    polygons are cut by them (see `cut_by_units`): columns block_id, unit_code, unit_name, area_m2.
    One row per 8-connected component (Polygon, or MultiPolygon where the component touches itself only
    diagonally); see the module docstring for holes, validity and area.
    """
    mask = np.asarray(mask)
    if mask.shape != window.shape:
        raise ValueError(f"mask shape {mask.shape} does not match the block grid {window.shape} of {block_id}")
    crop = np.ascontiguousarray(mask if mask.dtype == bool else mask == CROPLAND).view(np.uint8)
    n, labels = cv2.connectedComponents(crop, connectivity=8, ltype=cv2.CV_32S)
    if n <= 1:
        return _empty(units is not None)
    areas = _label_areas(labels, n, row_pixel_areas(window))
    geoms, values = _trace(labels, window)
    gdf = gpd.GeoDataFrame(
        {"block_id": np.full(len(geoms), block_id, dtype=object), "area_m2": areas[values]},
        geometry=geoms,
        crs=CRS,
    )
    return gdf if units is None else cut_by_units(gdf, units)


def _label_areas(labels: np.ndarray, n: int, row_areas: np.ndarray) -> np.ndarray:
    """Ground area (m²) per label: Σ over the label's pixels of their row's pixel area."""
    h, w = labels.shape
    out = np.zeros(n, np.float64)
    for r0 in range(0, h, _ROW_CHUNK):
        r1 = min(h, r0 + _ROW_CHUNK)
        weights = np.repeat(row_areas[r0:r1], w)
        out += np.bincount(labels[r0:r1].ravel(), weights=weights, minlength=n)
    return out


def _trace(labels: np.ndarray, window: PixelWindow) -> tuple[np.ndarray, np.ndarray]:
    """(EPSG:4326 geometries, label of each) of the labelled components, one geometry per label.

    Traced in local pixel coordinates (integers: validity repair is exact there), then mapped through the
    block's transform to EPSG:3857 and on to degrees."""
    from affine import Affine
    from rasterio.features import shapes

    rings: list = []
    n_rings: list[int] = []
    values: list[int] = []
    for geom, value in shapes(labels, mask=labels > 0, connectivity=8, transform=Affine.identity()):
        coords = geom["coordinates"]
        rings.extend(coords)
        n_rings.append(len(coords))
        values.append(int(value))
    ring_len = np.fromiter(map(len, rings), np.int64, len(rings))
    flat = np.fromiter(
        itertools.chain.from_iterable(itertools.chain.from_iterable(rings)), np.float64, 2 * int(ring_len.sum())
    ).reshape(-1, 2)
    ring_offsets = np.concatenate([[0], np.cumsum(ring_len)])
    poly_offsets = np.concatenate([[0], np.cumsum(n_rings)])
    geoms = shapely.from_ragged_array(shapely.GeometryType.POLYGON, flat, (ring_offsets, poly_offsets))
    bad = np.flatnonzero(~shapely.is_valid(geoms))
    for i in bad:  # diagonal self-contacts: a few per block, repaired one by one
        geoms[i] = _repair(geoms[i], labels, values[i])
    vals = np.asarray(values, dtype=np.int64)
    uniq, first, counts = np.unique(vals, return_index=True, return_counts=True)
    if (counts > 1).any():  # never seen with 8-connected labels and 8-connected tracing; kept correct anyway
        merged = geoms[first]
        for k in np.flatnonzero(counts > 1):
            merged[k] = shapely.union_all(geoms[vals == uniq[k]])
        geoms, vals = merged, uniq
    t = window.transform  # north-up: x = c + a·col, y = f + e·row

    def to_lonlat(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(mercator_to_lonlat(t.c + t.a * xy[:, 0], t.f + t.e * xy[:, 1]))

    return shapely.transform(geoms, to_lonlat), vals


def _repair(polygon, labels: np.ndarray, value: int):
    """The valid form (same pixels) of a traced polygon, in local pixel coordinates, whose rings touch at
    pixel corners: a pinched shell (two pixels of the component meet only diagonally), a hole touching the
    shell or another hole at a corner, or a pinched hole.

    `shapely.make_valid` gives the same result but takes 1.2 s on a percolating component (190,000
    vertices, 2,000 holes), mostly overlaying the holes. Here: the rings that touch (at vertices used more
    than once; pixel corners are integers, so this is exact) are split at those corners and polygonized;
    each face is cropland or background by the label of the pixel just inside its first edge; the holes that
    touch nothing go into the cropland face that contains them (they touch nothing, so the parts are valid
    by construction; an is_valid check here would cost 0.5 s). Anything unexpected (a hole in no face, an
    area that differs) falls back to make_valid."""
    rings = [polygon.exterior, *polygon.interiors]
    coords = [shapely.get_coordinates(r)[:-1] for r in rings]  # open rings
    sizes = np.array([len(c) for c in coords])
    allc = np.concatenate(coords).astype(np.int64)
    _, inverse, counts = np.unique(allc[:, 0] * (1 << 32) + allc[:, 1], return_inverse=True, return_counts=True)
    is_node = counts[inverse] > 1
    ring_of = np.repeat(np.arange(len(rings)), sizes)
    touching = set(np.unique(ring_of[is_node]).tolist()) | {0}
    starts = np.concatenate([[0], np.cumsum(sizes)])
    lines = []
    for r in sorted(touching):
        c = coords[r]
        at = np.flatnonzero(is_node[starts[r] : starts[r + 1]])
        if len(at) == 0:
            lines.append(shapely.LineString(np.vstack([c, c[:1]])))
            continue
        ring = np.vstack([c[at[0] :], c[: at[0] + 1]])  # from the first corner round to it again
        cuts = np.append(at - at[0], len(c))
        lines.extend(shapely.LineString(ring[a : b + 1]) for a, b in itertools.pairwise(cuts))
    faces = shapely.get_parts(shapely.polygonize(lines))
    cropland = np.array([_face_is(f, labels, value) for f in faces], dtype=bool)
    faces = faces[cropland]
    free = [r for r in range(1, len(rings)) if r not in touching]
    holes_of: list[list] = [[] for _ in faces]
    if free:
        shapely.prepare(faces)
        points = shapely.points(np.array([coords[r][0] for r in free], dtype=np.float64))
        f_idx, p_idx = shapely.STRtree(points).query(faces, predicate="contains")
        if len(np.unique(p_idx)) != len(free) or len(p_idx) != len(free):
            return shapely.make_valid(polygon, method="structure", keep_collapsed=False)
        for f, p in zip(f_idx, p_idx, strict=True):
            holes_of[f].append(rings[free[p]])
    parts = [shapely.Polygon(f.exterior, [*f.interiors, *h]) for f, h in zip(faces, holes_of, strict=True)]
    out = parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)
    if len(parts) and abs(out.area - polygon.area) < 1e-6:  # valid by construction (tests check is_valid)
        return out
    return shapely.make_valid(polygon, method="structure", keep_collapsed=False)


def _face_is(face, labels: np.ndarray, value: int) -> bool:
    """Whether a polygonized face is made of pixels labelled `value`: the pixel just inside its first edge."""
    ring = shapely.get_coordinates(face.exterior)
    step = ring[1] - ring[0]
    d = np.sign(step)  # edges run along pixel sides: one axis only
    normal = np.array([-d[1], d[0]]) if face.exterior.is_ccw else np.array([d[1], -d[0]])
    x, y = np.floor(ring[0] + 0.5 * d + 0.5 * normal).astype(int)
    return bool(labels[y, x] == value)


def _empty(with_units: bool) -> gpd.GeoDataFrame:
    cols = UNIT_COLUMNS if with_units else COLUMNS
    data = {c: pd.Series([], dtype="float64" if c == "area_m2" else "object") for c in cols}
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries([], crs=CRS), crs=CRS)


# ------------------------------------------------------------------------------------------------ unit cuts
def _check_units(units) -> gpd.GeoDataFrame:
    missing = {"code", "name"} - set(getattr(units, "columns", []))
    if missing or not isinstance(units, gpd.GeoDataFrame):
        raise ValueError(
            f"units must be a GeoDataFrame with columns 'code', 'name' and a geometry (missing {sorted(missing)}); "
            "for prefectures use mapper.maps.polygons.units_from_prefectures(prefectures_frame())"
        )
    if units.crs is None:
        raise ValueError("units have no CRS; set it (admin units are EPSG:4326)")
    if not units.crs.equals(CRS):
        units = units.to_crs(CRS)
    return units


def units_from_prefectures(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """`mapper.grid.admin.prefectures_frame()` (or a subset) as units: code = ADM2_PCODE, name = ADM2_EN."""
    return gpd.GeoDataFrame(
        {"code": frame["ADM2_PCODE"].to_numpy(), "name": frame["ADM2_EN"].to_numpy()},
        geometry=frame.geometry.values,
        crs=frame.crs,
    )


def _polygonal(geoms: np.ndarray) -> np.ndarray:
    """Keep only the polygonal parts of intersection results (drop the lines/points of boundary contacts)."""
    out = geoms.copy()
    tid = shapely.get_type_id(out)
    for i in np.flatnonzero(~np.isin(tid, (3, 6))):  # not Polygon / MultiPolygon: rare, a loop is fine
        parts = shapely.get_parts(out[i])
        parts = parts[np.isin(shapely.get_type_id(parts), (3, 6))]
        out[i] = shapely.union_all(parts) if len(parts) else shapely.Polygon()
    return out


def cut_by_units(polygons: gpd.GeoDataFrame, units) -> gpd.GeoDataFrame:
    """Cut polygons (EPSG:4326, with `block_id`, `area_m2`) by units: columns block_id, unit_code, unit_name,
    area_m2. Polygons inside one unit keep their area; pieces of crossing polygons get their equal-area share
    of it; pieces outside every unit are dropped (see the module docstring)."""
    units = _check_units(units)
    if polygons.crs is not None and not polygons.crs.equals(CRS):
        polygons = polygons.to_crs(CRS)
    if len(polygons) == 0:
        return _empty(True)
    geoms = np.asarray(polygons.geometry.values, dtype=object)
    ugeoms = np.asarray(units.geometry.values, dtype=object)
    shapely.prepare(ugeoms)
    tree = shapely.STRtree(ugeoms)
    pi, ui = tree.query(geoms, predicate="intersects")
    if len(pi) == 0:
        return _empty(True)
    inside = shapely.contains_properly(ugeoms[ui], geoms[pi])
    pieces = geoms[pi].copy()
    area = polygons["area_m2"].to_numpy(np.float64)[pi].copy()
    cut = ~inside
    if cut.any():
        inter = _polygonal(shapely.intersection(geoms[pi[cut]], ugeoms[ui[cut]]))
        whole = equal_area_m2(geoms[pi[cut]])
        part = equal_area_m2(inter)
        share = np.divide(part, whole, out=np.zeros_like(part), where=whole > 0)
        pieces[cut] = inter
        area[cut] *= np.minimum(share, 1.0)
    keep = area > 0
    keep[cut] &= ~shapely.is_empty(pieces[cut])
    return gpd.GeoDataFrame(
        {
            "block_id": polygons["block_id"].to_numpy()[pi[keep]],
            "unit_code": units["code"].to_numpy()[ui[keep]],
            "unit_name": units["name"].to_numpy()[ui[keep]],
            "area_m2": area[keep],
        },
        geometry=pieces[keep],
        crs=CRS,
    )


# ------------------------------------------------------------------------------------------------ files
def write_block_polygons(gdf: gpd.GeoDataFrame, path: Path | str) -> Path:
    """One block's polygons as GeoParquet (mapper.store.geoparquet), written atomically."""
    from mapper.store.geoparquet import write_geoparquet

    return write_geoparquet(gdf, path, spatial_order=False)  # one row group, already in raster-scan order


def read_block_polygons(path: Path | str) -> gpd.GeoDataFrame:
    return gpd.read_parquet(path)


def ascii_safe(name: str) -> str:
    """'Guangzhou Shi' -> 'Guangzhou_Shi'; accents dropped, other characters to '_'; 'unit' if nothing is left."""
    s = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode("ascii")
    s = re.sub(r"[^A-Za-z0-9]+", "_", s).strip("_")
    return s or "unit"


def unit_geopackage_path(out_dir: Path | str, code: str, name: str) -> Path:
    return Path(out_dir) / f"{ascii_safe(code)}_{ascii_safe(name)}.gpkg"


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _unit_rows(frame: gpd.GeoDataFrame, units: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """A block file's rows as unit pieces: cut now if the file was written without units."""
    if "unit_code" not in frame.columns:
        return cut_by_units(frame, units)
    if frame.crs is not None and not frame.crs.equals(CRS):
        frame = frame.to_crs(CRS)
    if "unit_name" not in frame.columns:
        names = dict(zip(units["code"], units["name"], strict=True))
        frame = frame.assign(unit_name=frame["unit_code"].map(names))
    return frame


@contextlib.contextmanager
def _sqlite_without_fsync() -> Iterator[None]:
    """SQLite's synchronous=OFF for pyogrio's GDAL while the temporary GeoPackages are written (~40 % faster):
    a crash can only spoil a temporary file, which is never renamed into place; atomic_path fsyncs the
    finished file before the rename. The previous setting is restored."""
    from pyogrio import get_gdal_config_option, set_gdal_config_options

    key = "OGR_SQLITE_SYNCHRONOUS"
    before = get_gdal_config_option(key)
    set_gdal_config_options({key: "OFF"})
    try:
        yield
    finally:
        set_gdal_config_options({key: before})


def write_unit_geopackages(
    block_polygon_paths: Iterable[Path | str], out_dir: Path | str, units, *, chunk_blocks: int = 256,
    columns: Sequence[str] = UNIT_COLUMNS, layer: str = LAYER,
) -> list[Path]:
    """One GeoPackage per unit with cropland: `out_dir/<code>_<ascii name>.gpkg`, layer "cropland", EPSG:4326,
    columns block_id, unit_code, unit_name, area_m2 (or `columns`: the crop-type stage adds its crop columns)
    and MultiPolygon geometries. Returns the paths written, in the order of `units`.

    Block files (from `write_block_polygons`) are read `chunk_blocks` at a time; files already cut by units
    (with `unit_code`) are used as they are, others are cut here. Each chunk's rows are appended to the
    unit's temporary GeoPackage, so memory holds one chunk of blocks (a few hundred blocks' polygons, tens
    of MB) whatever the region's size. Every file is renamed into place only after all chunks are written
    (a failure leaves the previous files); units without cropland get no file, and a file of such a unit
    left from an earlier write in `out_dir` is removed. Rows whose unit_code is not in `units` are ignored.
    """
    from pyogrio import write_dataframe

    units = _check_units(units)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = list(block_polygon_paths)
    codes = [str(c) for c in units["code"]]
    if len(set(codes)) != len(codes):
        raise ValueError("unit codes must be unique: each names one GeoPackage")
    finals = {c: unit_geopackage_path(out_dir, c, n) for c, n in zip(codes, units["name"], strict=True)}
    written: dict[str, Path] = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(_sqlite_without_fsync())
        for chunk in _chunks(paths, max(1, chunk_blocks)):
            frames = [_unit_rows(read_block_polygons(p), units) for p in chunk]
            frames = [f for f in frames if len(f)]
            if not frames:
                continue
            rows = pd.concat(frames, ignore_index=True)
            rows["unit_code"] = rows["unit_code"].astype(str)
            rows = rows[rows["unit_code"].isin(finals)]
            for code, part in rows.groupby("unit_code", sort=False):
                first = code not in written
                if first:
                    written[code] = stack.enter_context(atomic_path(finals[code], suffix=".gpkg"))
                out = gpd.GeoDataFrame(part[list(columns)], geometry=part.geometry.values, crs=CRS)
                write_dataframe(
                    out,
                    written[code],
                    layer=layer,
                    driver="GPKG",
                    append=not first,
                    promote_to_multi=True,
                    geometry_type="MultiPolygon",
                )
    for code, final in finals.items():
        if code not in written and final.exists():
            final.unlink()
    return [finals[c] for c in codes if c in written]
