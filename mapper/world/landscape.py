"""The simulated world's ground truth: land cover, fields, water, roads and terrain.

Geometry, coarse to fine (all in global z16 pixel coordinates, 1 px ≈ 2.39 m / cos φ on the ground):
- macro fields (elevation, cropland propensity, field scale) vary over tens of kilometres, so provinces
  differ in cropland share;
- land-use zones: a Voronoi partition of a jittered grid (ZONE px cells, ~0.5 km); each zone takes one
  land use from the macro fields at its seed (farmland, paddies, terraces on slopes, village, forest,
  orchard, grassland, bare land), so boundaries between uses are straight like real land parcels;
- inside farmland zones, fields are a rotated strip grid (strip width × field length from the regional
  field scale, parcels ~0.05-5 ha); a field is a crop, fallow (cropland that looks like bare land), or a
  small non-crop inclusion (pond, farmhouse, tree clump);
- rivers, lakes, forest patches and roads are thresholded smooth fields and zone edges overlaid on top.
Cropland truth = crop, fallow, paddy and terrace pixels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from mapper.grid.tilegrid import global_pixel_to_lonlat, pixel_size
from mapper.world import kernels
from mapper.world.noise import LATTICE, fbm, hash_unit, interpolate_fields, lattice_range, value_noise


class Cover(IntEnum):
    WATER = 0
    ROAD = 1
    VILLAGE = 2
    FOREST = 3
    ORCHARD = 4
    GRASS = 5
    BARE = 6
    CROP = 7
    FALLOW = 8
    PADDY = 9
    TERRACE = 10


CROPLAND = np.zeros(len(Cover), bool)
CROPLAND[[Cover.CROP, Cover.FALLOW, Cover.PADDY, Cover.TERRACE]] = True

ZONE = 200.0  # zone cell size in px (~480 m mercator)
JITTER = 0.25  # seeds lie in the central half of their cell, so the 3x3 neighbourhood holds the nearest
ROAD_HALF_WIDTH = 1.5  # px each side of a zone edge that carries a road
ZONE_CHUNK = 16  # zone attributes are computed and cached 16 x 16 cells at a time
LATTICE_CHUNK = 64  # smooth fields are cached 64 x 64 lattice points (1024 px) at a time
SMOOTH_FIELDS = ("elevation", "soil", "patchy", "main_road", "river", "river_width", "lake")
ZONE_FARM, ZONE_PADDY, ZONE_TERRACE = 0, 1, 2
ZONE_COVER = kernels.ZONE_COVER  # zone kind -> Cover, shared with the compiled kernel


@dataclass
class Zones:
    """Attributes of a set of zone cells (arrays of equal length)."""

    sx: np.ndarray  # seed position, global px
    sy: np.ndarray
    kind: np.ndarray  # index into ZONE_COVER
    theta: np.ndarray  # field-grid orientation (radians)
    strip: np.ndarray  # strip width, px
    length: np.ndarray  # field length, px
    key: np.ndarray  # int64 identity for hashing
    road: np.ndarray  # bool: zone edges carry a farm road


@dataclass
class LandscapePatch:
    """Per-pixel ground truth and the geometry the renderer needs, for one window of pixels."""

    cover: np.ndarray  # uint8 Cover
    field_rand: np.ndarray  # float32 in [0, 1): constant per field / zone, for colour variation
    u: np.ndarray  # float32 coordinate across strips (px), for row textures
    v: np.ndarray  # float32 coordinate along strips
    lot_w: np.ndarray  # float32 size of the pixel's field / lot across (u) and along (v)
    lot_h: np.ndarray
    edge: np.ndarray  # bool: field boundary (ridge, bund, terrace riser) — cropland, drawn darker
    elevation: np.ndarray  # float32 metres
    soil: np.ndarray  # float32 in [0, 1]: regional soil colour
    zone_key: np.ndarray  # int64 identity of the pixel's zone; (zone_key, field_rand) names its field

    @property
    def cropland(self) -> np.ndarray:
        return CROPLAND[self.cover]


class Landscape:
    def __init__(self, seed: int):
        self.seed = int(seed)

    # ---- macro fields (any points, global px) ----
    def _salt(self, k: int) -> int:
        return self.seed * 1000 + k

    def elevation(self, x, y):
        """Terrain height in metres: a high plateau in the far west (as in China, so the demo provinces of
        the east stay farmland), mountain ranges (~140 km), hills and plains."""
        lon = np.asarray(x) * (360.0 / 2**24) - 180.0
        west = np.clip((102.0 - lon) / 8.0, 0, 1) ** 1.5
        plateau = west * (0.6 + 0.4 * value_noise(x, y, 300000.0, self._salt(7)))
        ranges = value_noise(x, y, 60000.0, self._salt(1))  # where the mountains are
        relief = fbm(x, y, 12000.0, self._salt(2), octaves=5)
        mountain = np.clip((relief - 0.35) / 0.5, 0, 1) ** 2
        return (
            20.0
            + 3800.0 * plateau
            + 600.0 * ranges
            + 2800.0 * ranges**2 * mountain
            + 60.0 * fbm(x, y, 1200.0, self._salt(3), 2)
        )

    def slope_deg(self, x, y):
        """Slope from central differences of the elevation over ±8 px, scaled to ground metres."""
        d = 8.0
        lat = global_pixel_to_lonlat(x, y, 16)[1]
        ground = 2 * d * pixel_size(16) * np.cos(np.radians(lat))
        gx = (self.elevation(x + d, y) - self.elevation(x - d, y)) / ground
        gy = (self.elevation(x, y + d) - self.elevation(x, y - d)) / ground
        return np.degrees(np.arctan(np.hypot(gx, gy)))

    def crop_propensity(self, x, y):
        """Regional share of farmland in [0, 1] before terrain: climate zones (~1000 km, so provinces differ),
        farming regions (~100 km) and local variation (~15 km)."""
        climate = value_noise(x, y, 380000.0, self._salt(8))
        p = 0.45 * climate + 0.35 * fbm(x, y, 40000.0, self._salt(4), octaves=3)
        p = p + 0.20 * value_noise(x, y, 6000.0, self._salt(5))
        return np.clip((p - 0.3) * 2.4, 0, 1)

    def field_scale(self, x, y):
        """0 = small southern plots, 1 = large plain fields."""
        return value_noise(x, y, 30000.0, self._salt(6))

    # ---- zones ----
    def zones(self, cx: np.ndarray, cy: np.ndarray) -> Zones:
        cx = np.asarray(cx, np.int64)
        cy = np.asarray(cy, np.int64)
        sx = (cx + JITTER + (1 - 2 * JITTER) * hash_unit(self._salt(10), cx, cy)) * ZONE
        sy = (cy + JITTER + (1 - 2 * JITTER) * hash_unit(self._salt(11), cx, cy)) * ZONE
        elev = self.elevation(sx, sy)
        slope = self.slope_deg(sx, sy)
        prop = self.crop_propensity(sx, sy)
        wet = value_noise(sx, sy, 15000.0, self._salt(12))
        scale = self.field_scale(sx, sy)
        u1 = hash_unit(self._salt(13), cx, cy)
        u2 = hash_unit(self._salt(14), cx, cy)
        steep = slope > 12.0
        farm_p = prop * np.where(steep, 0.55, 1.0) * np.clip((3600.0 - elev) / 2600.0, 0, 1)
        farm = u1 < farm_p
        farm_kind = np.where(steep, ZONE_TERRACE, np.where((wet > 0.55) & (elev < 400), ZONE_PADDY, ZONE_FARM))
        # Non-farm uses: village, forest, orchard, grass, bare (cumulative shares; forest dominates slopes).
        other = np.where(
            steep,
            np.select([u2 < 0.03, u2 < 0.75, u2 < 0.85, u2 < 0.97], [3, 4, 5, 6], 7),
            np.select([u2 < 0.08, u2 < 0.40, u2 < 0.62, u2 < 0.85], [3, 4, 5, 6], 7),
        )
        kind = np.where(farm, farm_kind, other).astype(np.int64)
        regional_theta = value_noise(sx, sy, 20000.0, self._salt(15)) * np.pi
        theta = regional_theta + (hash_unit(self._salt(16), cx, cy) - 0.5) * 0.9
        strip = np.where(kind == ZONE_PADDY, 8.0, 10.0) + scale * 34.0 * (0.6 + 0.8 * hash_unit(self._salt(17), cx, cy))
        length = strip * (1.5 + 3.0 * hash_unit(self._salt(18), cx, cy))
        # Villages and orchards reuse the grid at their own scale: house lots and tree spacing.
        lot = 7.0 + 4.0 * hash_unit(self._salt(17), cx, cy)
        strip = np.where(kind == 3, lot, np.where(kind == 5, 5.0 + 2.0 * u2, strip))
        length = np.where(kind == 3, lot * 1.3, np.where(kind == 5, strip, length))
        key = (cx * 1_000_003 + cy).astype(np.int64)
        road = (hash_unit(self._salt(19), cx, cy) < 0.65) & np.isin(kind, [ZONE_FARM, ZONE_PADDY, 3])
        return Zones(sx, sy, kind, theta, strip, length, key, road)

    # ---- cached tables (neighbouring tiles reuse them) ----
    def zone_table(self, cx0: int, cx1: int, cy0: int, cy1: int) -> Zones:
        """Zones of cells cx0..cx1 × cy0..cy1 (inclusive), flattened row-major, from cached chunks."""
        nx, ny = cx1 - cx0 + 1, cy1 - cy0 + 1
        out = {name: None for name in Zones.__dataclass_fields__}
        for ccy in range(cy0 // ZONE_CHUNK, cy1 // ZONE_CHUNK + 1):
            for ccx in range(cx0 // ZONE_CHUNK, cx1 // ZONE_CHUNK + 1):
                chunk = self._zone_chunk(ccx, ccy)
                xs = slice(max(cx0, ccx * ZONE_CHUNK), min(cx1 + 1, (ccx + 1) * ZONE_CHUNK))
                ys = slice(max(cy0, ccy * ZONE_CHUNK), min(cy1 + 1, (ccy + 1) * ZONE_CHUNK))
                for name, arr in chunk.items():
                    if out[name] is None:
                        out[name] = np.empty((ny, nx), arr.dtype)
                    out[name][ys.start - cy0 : ys.stop - cy0, xs.start - cx0 : xs.stop - cx0] = arr[
                        ys.start - ccy * ZONE_CHUNK : ys.stop - ccy * ZONE_CHUNK,
                        xs.start - ccx * ZONE_CHUNK : xs.stop - ccx * ZONE_CHUNK,
                    ]
        return Zones(**{k: v.ravel() for k, v in out.items()})

    @functools.lru_cache(maxsize=512)  # noqa: B019 - one Landscape per world, bounded cache
    def _zone_chunk(self, ccx: int, ccy: int) -> dict[str, np.ndarray]:
        cy, cx = np.mgrid[ccy * ZONE_CHUNK : (ccy + 1) * ZONE_CHUNK, ccx * ZONE_CHUNK : (ccx + 1) * ZONE_CHUNK]
        z = self.zones(cx, cy)
        return {k: getattr(z, k) for k in Zones.__dataclass_fields__}

    def smooth_fields_at(self, x, y) -> np.ndarray:
        """The smooth fields (SMOOTH_FIELDS order) evaluated exactly at points: (F, *shape)."""
        return np.stack(
            [
                self.elevation(x, y),
                value_noise(x, y, 4000.0, self._salt(30)),
                fbm(x, y, 700.0, self._salt(31), 3),
                fbm(x, y, 9000.0, self._salt(32), 2),
                fbm(x, y, 6000.0, self._salt(33), 3),
                value_noise(x, y, 20000.0, self._salt(34)),
                fbm(x, y, 1500.0, self._salt(35), 2),
            ]
        )

    @functools.lru_cache(maxsize=256)  # noqa: B019
    def _lattice_chunk(self, lcx: int, lcy: int) -> np.ndarray:
        idx = np.arange(LATTICE_CHUNK, dtype=np.float64)
        lx, ly = np.meshgrid((lcx * LATTICE_CHUNK + idx) * LATTICE, (lcy * LATTICE_CHUNK + idx) * LATTICE)
        return self.smooth_fields_at(lx, ly).astype(np.float32)

    def lattice_table(self, lc0: int, nc: int, lr0: int, nr: int) -> np.ndarray:
        out = np.empty((len(SMOOTH_FIELDS), nr, nc), np.float32)
        for ly in range(lr0 // LATTICE_CHUNK, (lr0 + nr - 1) // LATTICE_CHUNK + 1):
            for lx in range(lc0 // LATTICE_CHUNK, (lc0 + nc - 1) // LATTICE_CHUNK + 1):
                chunk = self._lattice_chunk(lx, ly)
                c0, c1 = max(lc0, lx * LATTICE_CHUNK), min(lc0 + nc, (lx + 1) * LATTICE_CHUNK)
                r0, r1 = max(lr0, ly * LATTICE_CHUNK), min(lr0 + nr, (ly + 1) * LATTICE_CHUNK)
                oy, ox = ly * LATTICE_CHUNK, lx * LATTICE_CHUNK
                out[:, r0 - lr0 : r1 - lr0, c0 - lc0 : c1 - lc0] = chunk[:, r0 - oy : r1 - oy, c0 - ox : c1 - ox]
        return out

    # ---- per-pixel evaluation ----
    def patch(self, cols: np.ndarray, rows: np.ndarray) -> LandscapePatch:
        """Ground truth for the pixel window cols × rows (1-D increasing int arrays of global pixels)."""
        lc0, nc = lattice_range(cols)
        lr0, nr = lattice_range(rows)
        fields = interpolate_fields(self.lattice_table(lc0, nc, lr0, nr), cols, rows, lc0, lr0)
        px, py = np.meshgrid(cols.astype(np.float64) + 0.5, rows.astype(np.float64) + 0.5)
        flat = self._fill(px.ravel(), py.ravel(), fields.reshape(len(SMOOTH_FIELDS), -1))
        shape = (len(rows), len(cols))
        return LandscapePatch(**{k: a.reshape(shape) for k, a in flat.items()}, elevation=fields[0], soil=fields[1])

    # ---- points (statistics) ----
    def cropland_at_points(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Cropland truth at points (global px) without rendering, by the same kernel as tiles.

        Smooth fields are evaluated exactly at the points (tiles interpolate them from a 16 px lattice; the
        difference moves river and lake edges by a fraction of a pixel, immaterial to area statistics)."""
        return CROPLAND[self.truth_at_points(x, y)["cover"]]

    def truth_at_points(self, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        """Everything the land-cover kernel knows at points (cover, field_rand, zone_key, …), unrendered."""
        x = np.asarray(x, np.float64).ravel()
        y = np.asarray(y, np.float64).ravel()
        return self._fill(x, y, self.smooth_fields_at(x, y).astype(np.float32))

    def _fill(self, px: np.ndarray, py: np.ndarray, fields: np.ndarray) -> dict[str, np.ndarray]:
        """Run the land-cover kernel over points, with the zone table of the cells around them."""
        cx0 = int(np.floor(px.min() / ZONE)) - 1
        cy0 = int(np.floor(py.min() / ZONE)) - 1
        cx1 = int(np.floor(px.max() / ZONE)) + 1
        cy1 = int(np.floor(py.max() / ZONE)) + 1
        z = self.zone_table(cx0, cx1, cy0, cy1)
        n = len(px)
        out = {
            "cover": np.empty(n, np.uint8),
            "field_rand": np.empty(n, np.float32),
            "u": np.empty(n, np.float32),
            "v": np.empty(n, np.float32),
            "lot_w": np.empty(n, np.float32),
            "lot_h": np.empty(n, np.float32),
            "edge": np.empty(n, np.bool_),
            "zone_key": np.empty(n, np.int64),
        }
        kernels.fill_points(
            px, py, ZONE, z.sx, z.sy, z.kind, np.cos(z.theta), np.sin(z.theta), z.strip, z.length, z.key, z.road,
            cx0, cy0, cx1 - cx0 + 1, np.ascontiguousarray(fields, np.float32), self.seed, ROAD_HALF_WIDTH,
            *out.values(),
        )  # fmt: skip
        return out
