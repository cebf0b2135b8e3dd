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

from mapper.imagery.tilegrid import global_pixel_to_lonlat, pixel_size
from mapper.world.noise import (
    LATTICE,
    fbm,
    hash32_unit,
    hash_unit,
    interpolate_fields,
    lattice_range,
    value_noise,
)


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
ZONE_COVER = np.array(
    [Cover.CROP, Cover.PADDY, Cover.TERRACE, Cover.VILLAGE, Cover.FOREST, Cover.ORCHARD, Cover.GRASS, Cover.BARE],
    np.uint8,
)


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
        """Terrain height in metres: plains, hills and mountain ranges."""
        ranges = value_noise(x, y, 60000.0, self._salt(1))  # where the mountains are (~140 km)
        relief = fbm(x, y, 12000.0, self._salt(2), octaves=5)
        mountain = np.clip((relief - 0.35) / 0.5, 0, 1) ** 2
        return 20.0 + 600.0 * ranges + 2800.0 * ranges**2 * mountain + 60.0 * fbm(x, y, 1200.0, self._salt(3), 2)

    def slope_deg(self, x, y):
        """Slope from central differences of the elevation over ±8 px, scaled to ground metres."""
        d = 8.0
        lat = global_pixel_to_lonlat(x, y, 16)[1]
        ground = 2 * d * pixel_size(16) * np.cos(np.radians(lat))
        gx = (self.elevation(x + d, y) - self.elevation(x - d, y)) / ground
        gy = (self.elevation(x, y + d) - self.elevation(x, y - d)) / ground
        return np.degrees(np.arctan(np.hypot(gx, gy)))

    def crop_propensity(self, x, y):
        """Regional share of farmland in [0, 1] (before terrain), varying over ~10-100 km."""
        p = 0.65 * fbm(x, y, 40000.0, self._salt(4), octaves=3) + 0.35 * value_noise(x, y, 6000.0, self._salt(5))
        return np.clip((p - 0.3) * 2.2, 0, 1)

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
        farm_p = prop * np.where(steep, 0.55, 1.0) * np.clip(1.3 - elev / 3500.0, 0, 1)
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
        zi, zones, dx, dy = self._nearest_zone_grid(cols, rows)
        boundary = _zone_boundary(zi, zones.road)
        return self._fill(dx, dy, zi, zones, dict(zip(SMOOTH_FIELDS, fields, strict=True)), boundary)

    def _nearest_zone_grid(self, cols, rows):
        """Voronoi zone per pixel. Pixels of one cell only need the 3x3 cells around it as candidates,
        so the window is split into per-cell rectangles and distances are separable within each."""
        ox, oy = float(cols[0]), float(rows[0])
        x = (cols - cols[0]).astype(np.float32) + 0.5  # window-relative: float32 is exact enough
        y = (rows - rows[0]).astype(np.float32) + 0.5
        ccol = np.floor((cols + 0.5) / ZONE).astype(np.int64)
        crow = np.floor((rows + 0.5) / ZONE).astype(np.int64)
        cx0, cx1, cy0, cy1 = ccol[0] - 1, ccol[-1] + 1, crow[0] - 1, crow[-1] + 1
        zones = self.zone_table(cx0, cx1, cy0, cy1)
        nx = cx1 - cx0 + 1
        sx = (zones.sx - ox).astype(np.float32)
        sy = (zones.sy - oy).astype(np.float32)
        zi = np.empty((len(rows), len(cols)), np.int16)
        for cyv in np.unique(crow):
            rsel = np.flatnonzero(crow == cyv)
            r0, r1 = rsel[0], rsel[-1] + 1
            for cxv in np.unique(ccol):
                csel = np.flatnonzero(ccol == cxv)
                c0, c1 = csel[0], csel[-1] + 1
                cand = np.array(
                    [(cyv + oy_ - cy0) * nx + (cxv + ox_ - cx0) for oy_ in (-1, 0, 1) for ox_ in (-1, 0, 1)]
                )
                ddx = (x[c0:c1][None, :] - sx[cand][:, None]) ** 2  # (9, w)
                ddy = (y[r0:r1][None, :] - sy[cand][:, None]) ** 2  # (9, h)
                best = ddy[0][:, None] + ddx[0][None, :]
                sub = np.full(best.shape, cand[0], np.int16)
                for k in range(1, 9):
                    d = ddy[k][:, None] + ddx[k][None, :]
                    closer = d < best
                    np.minimum(best, d, out=best)
                    sub[closer] = cand[k]
                zi[r0:r1, c0:c1] = sub
        dx = x[None, :] - sx[zi]
        dy = y[:, None] - sy[zi]
        return zi, zones, dx, dy

    def _fill(self, dx, dy, zi, zones: Zones, fields: dict, boundary) -> LandscapePatch:
        """Land cover from zone membership, the zone-relative position (dx, dy) and the smooth fields."""
        kind = zones.kind[zi]
        cover = ZONE_COVER[kind]
        key = zones.key[zi]

        # Field grid in the zone's rotated frame.
        c = np.cos(zones.theta).astype(np.float32)[zi]
        s = np.sin(zones.theta).astype(np.float32)[zi]
        u = dx * c + dy * s
        v = dy * c - dx * s
        strip = zones.strip.astype(np.float32)[zi]
        length = zones.length.astype(np.float32)[zi]
        i = np.floor(u / strip)
        v_shift = v + hash32_unit(self.seed, key, i) * length
        j = np.floor(v_shift / length)
        field_rand = hash32_unit(self.seed + 1, key, i, j)
        uu = u - i * strip
        vv = v_shift - j * length
        bund = np.where(kind == ZONE_PADDY, np.float32(1.6), np.float32(1.0))
        edge = (np.minimum(uu, strip - uu) < bund) | (np.minimum(vv, length - vv) < bund)

        elevation = fields["elevation"]
        farm = kind <= ZONE_TERRACE
        # Terraces follow contours: bands of equal height, broken every field length along the contour.
        terrace = kind == ZONE_TERRACE
        if terrace.any():
            band = elevation / np.float32(6.0)
            frac = band - np.floor(band)
            edge = np.where(terrace, (frac < 0.12) | (np.minimum(vv, length - vv) < 1.0), edge)
            field_rand = np.where(terrace, hash32_unit(self.seed + 2, key, np.floor(band), j), field_rand)
        # Fields inside farm zones: mostly crops, some fallow, a few non-crop inclusions.
        f = field_rand
        plain = kind == ZONE_FARM
        cover = np.where(plain & (f < 0.14), Cover.FALLOW, cover)
        inclusion = farm & (f > 0.965)
        cover = np.where(inclusion, np.where(f > 0.985, Cover.VILLAGE, Cover.FOREST), cover)
        cover = np.where(plain & (f > 0.95) & ~inclusion, Cover.WATER, cover)
        # Forest patches on grass and bare land, with curvy edges.
        wild = (cover == Cover.GRASS) | (cover == Cover.BARE)
        cover = np.where(wild & (fields["patchy"] > 0.62), Cover.FOREST, cover)
        # Roads: edges of zones that carry them, and a few curvy main roads.
        if boundary is not None:
            cover = np.where(boundary, Cover.ROAD, cover)
        cover = np.where(np.abs(fields["main_road"] - 0.5) < 0.0006, Cover.ROAD, cover)
        # Water last: rivers (ridges of a smooth field) and lakes.
        river = np.abs(fields["river"] - 0.5) < 0.0015 + 0.004 * fields["river_width"]
        cover = np.where(river | (fields["lake"] > 0.8), Cover.WATER, cover).astype(np.uint8)
        return LandscapePatch(
            cover=cover,
            field_rand=field_rand.astype(np.float32),
            u=uu.astype(np.float32),
            v=vv.astype(np.float32),
            lot_w=strip,
            lot_h=length,
            edge=edge & farm,
            elevation=elevation.astype(np.float32),
            soil=fields["soil"].astype(np.float32),
        )

    # ---- points (statistics) ----
    def cropland_at_points(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Cropland truth at points (global px) without rendering, from the same cached tables as tiles.

        Zone-edge roads are drawn on the pixel grid as the ~1.5 px each side of a change of zone; here a
        point is on such a road when its distance to the Voronoi bisector is under ROAD_HALF_WIDTH."""
        x = np.asarray(x, np.float64).ravel()
        y = np.asarray(y, np.float64).ravel()
        ccx = np.floor(x / ZONE).astype(np.int64)
        ccy = np.floor(y / ZONE).astype(np.int64)
        cx0, cy0 = int(ccx.min()) - 1, int(ccy.min()) - 1
        cx1, cy1 = int(ccx.max()) + 1, int(ccy.max()) + 1
        zones = self.zone_table(cx0, cx1, cy0, cy1)
        nx = cx1 - cx0 + 1
        best = np.full(x.shape, np.inf)
        second = np.full(x.shape, np.inf)
        zi = np.zeros(x.shape, np.intp)
        zj = np.zeros(x.shape, np.intp)
        for ox in (-1, 0, 1):
            for oy in (-1, 0, 1):
                k = (ccy + oy - cy0) * nx + (ccx + ox - cx0)
                d = (x - zones.sx[k]) ** 2 + (y - zones.sy[k]) ** 2
                closer = d < best
                second_new = np.where(closer, best, np.minimum(second, d))
                zj = np.where(closer, zi, np.where(d < second, k, zj))
                second = second_new
                zi = np.where(closer, k, zi)
                best = np.minimum(best, d)
        sep = np.hypot(zones.sx[zi] - zones.sx[zj], zones.sy[zi] - zones.sy[zj])
        to_edge = (second - best) / (2 * sep)
        road = (to_edge < ROAD_HALF_WIDTH) & zones.road[zi]
        # Smooth fields exactly at the points (tiles interpolate them from a 16 px lattice; the difference
        # moves river and lake edges by a fraction of a pixel, immaterial to area statistics).
        fields = dict(zip(SMOOTH_FIELDS, self.smooth_fields_at(x, y).astype(np.float32), strict=True))
        dx = (x - zones.sx[zi]).astype(np.float32)
        dy = (y - zones.sy[zi]).astype(np.float32)
        return self._fill(dx, dy, zi, zones, fields, road).cropland


def _zone_boundary(zi: np.ndarray, has_road: np.ndarray) -> np.ndarray:
    """Pixels within ~1.5 px of a zone edge, on the side of zones that carry roads."""
    change = np.zeros(zi.shape, bool)
    change[:, 1:] |= zi[:, 1:] != zi[:, :-1]
    change[:, :-1] |= zi[:, :-1] != zi[:, 1:]
    change[1:, :] |= zi[1:, :] != zi[:-1, :]
    change[:-1, :] |= zi[:-1, :] != zi[1:, :]
    wide = change.copy()
    wide[:, 1:] |= change[:, :-1]
    wide[1:, :] |= change[:-1, :]
    return wide & has_road[zi]
