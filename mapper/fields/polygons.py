"""A polygon per field: instances of each block traced, stitched across block edges, cleaned, in EPSG:4326.

    labels = instances_from_probabilities(interior, boundary, extent)   a model's output → instance labels
    bf = block_fields(labels, window, block_id, keys=None)              one block: polygons + its border strips
    fields = field_polygons([bf, ...])                                  stitched, slivers out, simplified, lon/lat

**Per block.** Instances are 4-connected regions (`regions.label_regions` makes every disconnected piece an
instance of its own) traced by GDAL's polygonizer (`rasterio.features.shapes`, 4-connected) in *global* z16
pixel coordinates: integers, exact in float64, the same numbers for a pixel corner whichever block traced it,
so pieces of one field in two blocks share their border edge exactly. The few rings GDAL traces touching
themselves at a pixel corner are made valid (`shapely.make_valid`, same pixels).

**From probabilities** (a field model's interior / boundary output): markers are the 4-connected regions of
interior > 0.5 and boundary < 0.5 inside the extent, of at least `min_marker_px` pixels; they are flooded over
the boundary probability (`regions.watershed`) within the extent, so boundary pixels go to the field they
border most gently and neighbouring fields stay apart where the boundary ridge runs.

**Stitching.** For each pair of blocks that share an edge (one's last column is next to the other's first,
over the same rows; or rows likewise), the label strips on both sides of the edge are paired pixel by pixel.
Two pieces are one field when
- with the world's keys (truth): they are the same field (equal key) and touch along the edge (≥ 1 px);
- without keys (a model's output): they share at least `min_shared_px` (3) border pixels and that shared run
  is more than half of *each* piece's own run along the edge. The mutual majority gives a piece at most one
  partner per edge, so a field split differently on the two sides is never chained into one giant field;
  3 px (~7 m) keeps corner contacts from joining fields.
Groups are closed transitively (union-find), so a field over four blocks is one polygon; the pieces are
dissolved exactly (shared edges are identical integers).

**Ids.** A field's id is the global z16 pixel of its first pixel in raster order (topmost row, leftmost in
it): `f<col>_<row>`. It depends on the field's pixels only — not on block ids, block order or which process
traced it — so reruns and resumed runs give the same ids, and it is unique because a pixel belongs to one field.

**Slivers** below `min_area_ha` (default 0.02 ha ≈ 40 z16 pixels in southern China, ~4 × 9 px) are removed
after stitching — never before, or a field's piece in a block corner would vanish. 0.02 ha is below the
world's smallest field (0.05 ha) and below the smallest real smallholder plots, while the pieces it removes
are fragments a delineation cannot support: a region under ~4 px across has no interior inside a 1-px
boundary on each side. Holes (a pond or a farmhouse inside a field) are kept.

**Simplification** removes the pixel staircase: the polygons are first made an edge-matched coverage
(`node_coverage`), then `shapely.coverage_simplify` (GEOS coverage Visvalingam-Whyatt, shapely ≥ 2.1)
simplifies all fields together: shared edges are simplified once, so neighbouring fields neither overlap nor
open gaps, and no ring collapses or crosses itself. Tolerance 2 px (≈ √ of the triangle areas removed): the
staircase of a straight field edge at a shallow angle has corner triangles of up to 0.5 × 1 × 8 = 4 px², which
go, while a real field corner between sides of 8+ px spans ≥ 32 px² and stays. Coverage simplification runs
at ~0.4 ms per field, noding as much (each ~2 s for a block of 6,000 small southern fields).

Coordinates then go from global pixels to EPSG:4326 through the exact inverse of the z16 Web Mercator grid
(`tilegrid.global_pixel_to_lonlat`), and every geometry is checked valid (`make_valid` otherwise).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import shapely

from mapper.fields.regions import join_pairs, label_regions, watershed
from mapper.grid.area import band_area_m2
from mapper.grid.tilegrid import PixelWindow, global_pixel_to_lonlat

CRS = "EPSG:4326"
MIN_AREA_HA = 0.02
TOLERANCE_PX = 2.0
MIN_SHARED_PX = 3
MIN_MARKER_PX = 4
ZOOM = 16


@dataclass
class BlockFields:
    """One block's field pieces: polygons in global z16 pixel coordinates and what stitching needs."""

    block_id: str
    window: PixelWindow
    geometry: np.ndarray  # shapely (Multi)Polygons, geometry[i] is label i + 1
    first: np.ndarray  # (n, 2) int64: global (row, col) of each label's first pixel in raster order
    borders: dict[str, np.ndarray] = field(default_factory=dict)  # "north"/"south"/"west"/"east" label strips
    keys: np.ndarray | None = None  # int64 (n + 1,): the world's field key per label (truth only)

    @property
    def n(self) -> int:
        return len(self.geometry)


# ------------------------------------------------------------------------------------------------ one block
def instances_from_probabilities(interior: np.ndarray, boundary: np.ndarray, extent: np.ndarray | None = None, *,
                                 threshold: float = 0.5, min_marker_px: int = MIN_MARKER_PX) -> np.ndarray:  # fmt: skip
    """int32 instance labels from per-pixel interior and boundary probabilities (seeded watershed: see the
    module docstring). `extent` (bool, e.g. the block's final cropland) bounds the fields; default: interior
    or boundary above the threshold."""
    interior = np.asarray(interior, np.float32)
    boundary = np.asarray(boundary, np.float32)
    if extent is None:
        extent = (interior > threshold) | (boundary > threshold)
    extent = np.asarray(extent, bool)
    seeds = (interior > threshold) & (boundary < threshold) & extent
    markers, n = label_regions(seeds.view(np.uint8))
    if min_marker_px > 1 and n:
        small = np.bincount(markers.ravel(), minlength=n + 1) < min_marker_px
        small[0] = False
        markers[small[markers]] = 0
        markers, _ = label_regions(markers)
    return watershed(boundary, markers, extent)


def block_fields(labels: np.ndarray, window: PixelWindow, block_id: str, keys: np.ndarray | None = None) -> BlockFields:
    """A block's instance image (0 background) as polygons per 4-connected instance; `keys` (per label of
    `labels`, e.g. `FieldTruth.keys`) lets stitching follow the world's fields."""
    labels = np.asarray(labels)
    if labels.shape != window.shape:
        raise ValueError(f"labels {labels.shape} do not match the grid {window.shape} of block {block_id}")
    regions, n = label_regions(labels)
    region_keys = None
    if keys is not None:
        region_keys = np.zeros(n + 1, np.int64)
        region_keys[regions.ravel()] = np.asarray(keys, np.int64)[labels.ravel()]
        region_keys[0] = -1
    borders = {"north": regions[0].copy(), "south": regions[-1].copy(),
               "west": regions[:, 0].copy(), "east": regions[:, -1].copy()}  # fmt: skip
    return BlockFields(block_id, window, _trace(regions, n, window), _first_pixels(regions, n, window), borders,
                       region_keys)  # fmt: skip


def _first_pixels(regions: np.ndarray, n: int, window: PixelWindow) -> np.ndarray:
    flat = regions.ravel()
    first = np.full(n + 1, flat.size, np.int64)
    np.minimum.at(first, flat, np.arange(flat.size))
    r, c = np.divmod(first[1:], window.width)
    return np.column_stack([r + window.row0, c + window.col0])


def _trace(regions: np.ndarray, n: int, window: PixelWindow) -> np.ndarray:
    """One valid polygon per region 1..n, in global pixel coordinates."""
    from affine import Affine
    from rasterio.features import shapes
    from shapely.geometry import shape

    geoms = np.empty(n, dtype=object)
    origin = Affine.translation(window.col0, window.row0)
    for geom, value in shapes(regions, mask=regions > 0, connectivity=4, transform=origin):
        geoms[int(value) - 1] = shape(geom)
    bad = np.flatnonzero(~shapely.is_valid(geoms))
    if len(bad):
        geoms[bad] = shapely.make_valid(geoms[bad], method="structure", keep_collapsed=False)
    return geoms


# ------------------------------------------------------------------------------------------------ stitching
def _edges(blocks: Sequence[BlockFields]) -> Iterable[tuple[int, int, np.ndarray, np.ndarray]]:
    """(i, j, strip of i, strip of j) for each pair of blocks sharing an edge, i west of / north of j."""
    by_end = {(b.window.col1, b.window.row0): i for i, b in enumerate(blocks)}
    by_foot = {(b.window.col0, b.window.row1): i for i, b in enumerate(blocks)}
    for j, b in enumerate(blocks):
        w = b.window
        i = by_end.get((w.col0, w.row0))
        if i is not None and blocks[i].window.row1 == w.row1:
            yield i, j, blocks[i].borders["east"], b.borders["west"]
        i = by_foot.get((w.col0, w.row0))
        if i is not None and blocks[i].window.col1 == w.col1:
            yield i, j, blocks[i].borders["south"], b.borders["north"]


def _pairs_to_merge(a: BlockFields, b: BlockFields, sa: np.ndarray, sb: np.ndarray,
                    min_shared_px: int) -> np.ndarray:  # fmt: skip
    """(k, 2) local labels (a's, b's) of the pieces to join across one shared edge (module docstring's rule)."""
    both = (sa > 0) & (sb > 0)
    if not both.any():
        return np.zeros((0, 2), np.int64)
    pair, shared = np.unique(np.column_stack([sa[both], sb[both]]).astype(np.int64), axis=0, return_counts=True)
    if a.keys is not None and b.keys is not None:
        return pair[a.keys[pair[:, 0]] == b.keys[pair[:, 1]]]
    run_a = np.bincount(sa, minlength=a.n + 1)[pair[:, 0]]
    run_b = np.bincount(sb, minlength=b.n + 1)[pair[:, 1]]
    keep = (shared >= min_shared_px) & (2 * shared > run_a) & (2 * shared > run_b)
    return pair[keep]


def _groups(blocks: Sequence[BlockFields], min_shared_px: int) -> np.ndarray:
    """Group number per piece (pieces numbered block after block), by union-find over the merge pairs."""
    offsets = np.concatenate([[0], np.cumsum([b.n for b in blocks])])
    pairs = [np.zeros((0, 2), np.int64)]
    for i, j, si, sj in _edges(blocks):
        p = _pairs_to_merge(blocks[i], blocks[j], si, sj, min_shared_px)
        pairs.append(np.column_stack([offsets[i] + p[:, 0] - 1, offsets[j] + p[:, 1] - 1]))
    return join_pairs(int(offsets[-1]), np.concatenate(pairs))


def stitch(blocks: Sequence[BlockFields], *, min_shared_px: int = MIN_SHARED_PX) -> gpd.GeoDataFrame:
    """One row per field over all blocks: `id`, `block_id` (the block of its first pixel), `n_blocks`, `key`
    (-1 without keys), `pieces` (int64 array: the field's pieces, numbered block after block in the order given —
    piece i of blocks[k], label i + 1, is sum(b.n for b in blocks[:k]) + i) and the geometry in global z16 pixel
    coordinates (no CRS)."""
    blocks = list(blocks)
    if not blocks or sum(b.n for b in blocks) == 0:
        return _empty_fields(None)
    group = _groups(blocks, min_shared_px)
    geoms = np.concatenate([b.geometry for b in blocks])
    first = np.concatenate([b.first for b in blocks])
    block_of = np.repeat(np.arange(len(blocks)), [b.n for b in blocks])
    keys = np.concatenate([b.keys[1:] if b.keys is not None else np.full(b.n, -1) for b in blocks])
    order = np.lexsort((first[:, 1], first[:, 0], group))  # by group, then raster order of the first pixel
    g_sorted = group[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    lead = order[starts]  # the piece holding each field's first pixel
    sizes = np.diff(np.r_[starts, len(order)])
    merged = geoms[lead].copy()
    for k in np.flatnonzero(sizes > 1):
        merged[k] = shapely.union_all(geoms[order[starts[k] : starts[k] + sizes[k]]])
    n_blocks = np.array([len(set(block_of[order[s : s + z]].tolist())) for s, z in zip(starts, sizes, strict=True)])
    pieces = np.empty(len(starts), dtype=object)
    for k, (s, z) in enumerate(zip(starts, sizes, strict=True)):
        pieces[k] = np.sort(order[s : s + z])
    ids = np.array([f"f{c}_{r}" for r, c in first[lead]], dtype=object)
    out = gpd.GeoDataFrame({"id": ids, "block_id": np.array([blocks[i].block_id for i in block_of[lead]], object),
                            "n_blocks": n_blocks, "key": keys[lead], "pieces": pieces}, geometry=merged)  # fmt: skip
    return out.iloc[np.lexsort((first[lead, 1], first[lead, 0]))].reset_index(drop=True)


def _empty_fields(crs) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"id": np.array([], object), "block_id": np.array([], object),
                             "n_blocks": np.array([], np.int64), "key": np.array([], np.int64),
                             "pieces": np.array([], object)}, geometry=gpd.GeoSeries([], crs=crs), crs=crs)  # fmt: skip


# ------------------------------------------------------------------------------------------------ clean-up
def pixel_area_m2(rows: np.ndarray) -> np.ndarray:
    """True ground area (m²) of one z16 pixel centred on (fractional) global pixel rows."""
    rows = np.asarray(rows, np.float64)
    north = global_pixel_to_lonlat(np.zeros_like(rows), rows - 0.5, ZOOM)[1]
    south = global_pixel_to_lonlat(np.zeros_like(rows), rows + 0.5, ZOOM)[1]
    return band_area_m2(south, north, 360.0 / (256 * 2**ZOOM))


def ground_area_m2(pixel_geoms: np.ndarray) -> np.ndarray:
    """Ground area (m²) of polygons in global z16 pixel coordinates: planar pixel area × one pixel's true area
    at the centroid's row (a field spans a few hundred metres: the scale varies by < 0.01 % across it)."""
    rows = shapely.get_coordinates(shapely.centroid(pixel_geoms))[:, 1] if len(pixel_geoms) else np.zeros(0)
    return shapely.area(pixel_geoms) * pixel_area_m2(rows)


def node_coverage(pixel_geoms: np.ndarray) -> np.ndarray:
    """The fields edge-matched: each vertex of any field inserted into every field edge that passes through it.

    GDAL puts vertices where a ring turns only, so where a third field meets a straight shared edge one side
    has a vertex and the other none. Vertices are pixel corners (integers), so a vertex is on an edge exactly or
    at least ~1 px away: every field is snapped (GEOS `snap`, 0.001 px) to the vertices inside its bounding box.
    ~2 s for a block's 6,000 fields (splitting every edge at every pixel corner instead: 4 × the vertices and
    4 × the simplification time)."""
    xy = shapely.get_coordinates(pixel_geoms).astype(np.int64)
    code = np.unique((xy[:, 0] << 24) | xy[:, 1])  # z16 pixel coordinates are below 2^24
    points = shapely.points(np.column_stack([code >> 24, code & 0xFFFFFF]).astype(np.float64))
    pi, gi = shapely.STRtree(pixel_geoms).query(points)
    order = np.argsort(gi, kind="stable")
    near = shapely.multipoints(points[pi[order]], indices=gi[order])
    return shapely.snap(pixel_geoms, near, 1e-3)


def simplify_coverage(pixel_geoms: np.ndarray, tolerance_px: float = TOLERANCE_PX) -> np.ndarray:
    """The fields simplified together (edge-matched first, then coverage Visvalingam-Whyatt; module docstring)."""
    if len(pixel_geoms) == 0 or tolerance_px <= 0:
        return pixel_geoms
    return shapely.coverage_simplify(node_coverage(pixel_geoms), tolerance_px, simplify_boundary=True)


def to_lonlat(pixel_geoms: np.ndarray) -> np.ndarray:
    """Global z16 pixel coordinates → EPSG:4326 (exact inverse of the tile grid); invalid results made valid."""

    def f(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(global_pixel_to_lonlat(xy[:, 0], xy[:, 1], ZOOM))

    out = shapely.transform(pixel_geoms, f)
    bad = np.flatnonzero(~shapely.is_valid(out))
    if len(bad):
        out[bad] = shapely.make_valid(out[bad], method="structure", keep_collapsed=False)
    return out


def field_polygons(
    blocks: Sequence[BlockFields],
    *,
    min_area_ha: float = MIN_AREA_HA,
    tolerance_px: float = TOLERANCE_PX,
    min_shared_px: int = MIN_SHARED_PX,
) -> gpd.GeoDataFrame:
    """Fields of blocks, stitched, slivers removed, simplified, in EPSG:4326: columns id, block_id, n_blocks,
    key, pieces (see `stitch`), area_m2 (the exact pixel area before simplification), geometry."""
    fields = stitch(blocks, min_shared_px=min_shared_px)
    if len(fields) == 0:
        return _empty_fields(CRS).assign(area_m2=np.zeros(0))
    area = ground_area_m2(np.asarray(fields.geometry.values, dtype=object))
    keep = area >= min_area_ha * 1e4
    fields = fields[keep].reset_index(drop=True)
    geoms = simplify_coverage(np.asarray(fields.geometry.values, dtype=object), tolerance_px)
    return gpd.GeoDataFrame(fields.drop(columns="geometry").assign(area_m2=area[keep]), geometry=to_lonlat(geoms),
                            crs=CRS)  # fmt: skip
