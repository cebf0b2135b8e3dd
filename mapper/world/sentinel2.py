"""A Sentinel-2 L2A source of the simulated world: surface reflectance of the ten 10/20 m bands on the UTM
10 m grid of the block's zone, at the acquisition dates of a 5-day revisit, with a scene classification
(SCL) band marking clouds and their shadows.

Every 10 m pixel mixes the 2 m land cover under it: 5 × 5 sub-samples (2 m apart) go through the world's
land-cover kernel, each takes its field's (or its cover class's) reflectance, and the pixel is their mean,
so field edges are mixed pixels. A field's reflectance on a day is green canopy × green cover + straw ×
dry cover + background (soil of the regional brightness, or water while a paddy is flooded) for the rest,
from the crop calendars of `phenology`. Then per date: clouds (a date's cloudiness from season and
latitude — the monsoon south is cloudier in summer — drawn per 100 km tile; cloud shapes ~2.5 km), their
shadows 300 m away, a per-date haze offset and sensor noise (σ = 0.004 reflectance).

The clean reflectance is a function of (world seed, position, date): a pixel has the same clean value in
any window; sensor noise is drawn per simulated window (a simplification: a real scene has one). Output
is digital numbers (reflectance × 10 000, uint16, 0 = nodata) and SCL (0 nodata, 3 cloud shadow,
4 vegetation, 5 not vegetated, 6 water, 8/9 cloud medium/high probability).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
from affine import Affine
from pyproj import CRS, Transformer

from mapper.grid.tilegrid import lonlat_to_global_pixel
from mapper.world import crops
from mapper.world.kernels import CROP, FALLOW, FOREST, GRASS, ORCHARD, PADDY, ROAD, TERRACE, VILLAGE, WATER
from mapper.world.noise import fbm, hash_unit, value_noise
from mapper.world.phenology import JITTER_DAYS, field_cover

BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
RES = 10.0
SUB = 5  # sub-samples per pixel side (2 m)
REVISIT = 5
FIRST_DAY, LAST_DAY = 116, 336  # acquisitions written: the model window (121-331) and a step either side
SCL_SHADOW, SCL_VEG, SCL_BARE, SCL_WATER, SCL_CLOUD_MED, SCL_CLOUD_HIGH = 3, 4, 5, 6, 8, 9
NOISE = 0.004

GREEN = np.array([0.030, 0.065, 0.035, 0.100, 0.290, 0.360, 0.400, 0.420, 0.210, 0.100])
DRY = np.array([0.070, 0.100, 0.130, 0.170, 0.210, 0.240, 0.270, 0.290, 0.360, 0.260])
SOIL = np.array([0.070, 0.100, 0.130, 0.150, 0.170, 0.180, 0.190, 0.200, 0.300, 0.260])
WATER_R = np.array([0.060, 0.065, 0.045, 0.040, 0.030, 0.028, 0.022, 0.020, 0.010, 0.008])
URBAN = np.array([0.110, 0.120, 0.130, 0.140, 0.150, 0.155, 0.165, 0.170, 0.200, 0.190])
CLOUD = np.array([0.52, 0.50, 0.49, 0.49, 0.50, 0.50, 0.51, 0.51, 0.40, 0.30])
YELLOW = np.array([0.00, 0.06, 0.07, 0.04, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # flowers (rapeseed, sunflower)
WHITE = np.array([0.06, 0.06, 0.06, 0.05, 0.03, 0.02, 0.02, 0.02, 0.02, 0.02])  # open cotton bolls
# Canopy differences between crops (scales of visible, red edge B5-B7, NIR B8/B8A, SWIR B11/B12).
CANOPY = {
    1: (1.0, 0.95, 0.92, 1.05), 2: (1.0, 0.95, 0.92, 1.05), 3: (1.05, 1.0, 0.95, 1.0), 6: (0.95, 1.05, 1.10, 0.95),
    7: (0.95, 1.05, 1.10, 0.95), 13: (0.9, 1.08, 1.15, 0.95), 15: (1.05, 1.0, 1.0, 1.05), 16: (0.95, 1.05, 1.08, 0.9),
    17: (0.9, 1.1, 1.12, 0.95), 21: (1.1, 0.95, 0.9, 1.1), 22: (1.05, 0.95, 0.92, 1.05), 24: (0.95, 1.05, 1.05, 1.0),
}  # fmt: skip
_BAND_GROUP = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3, 3])


@dataclass
class SimulatedS2:
    data: np.ndarray  # uint16 (D, 10, H, W) digital numbers
    scl: np.ndarray  # uint8 (D, H, W)
    dates: list[dt.date]
    crs: CRS
    transform: Affine
    field: np.ndarray  # int64 (H, W) the pixel's dominant field id (-1: not a crop field)
    purity: np.ndarray  # float32 (H, W) share of the pixel's 2 m samples in that field
    crop: np.ndarray  # uint8 (H, W) crop code of the dominant field (0: none)
    cropland: np.ndarray  # float32 (H, W) cropland share of the pixel
    fields: dict  # field id -> (code, last year's code, temperature index)

    bands: tuple[str, ...] = BANDS


def utm_crs(lon: float, lat: float) -> CRS:
    zone = min(math.floor((lon + 180.0) / 6.0) + 1, 60)
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def utm_grid(bounds: tuple[float, float, float, float], crs: CRS | None = None) -> tuple[CRS, Affine, int, int]:
    """The 10 m grid (aligned to multiples of 10 m) covering lon/lat bounds in their UTM zone."""
    west, south, east, north = bounds
    crs = crs or utm_crs((west + east) / 2, (south + north) / 2)
    to_utm = Transformer.from_crs(4326, crs, always_xy=True)
    lon = np.array([west, east, east, west, (west + east) / 2, (west + east) / 2])
    lat = np.array([south, south, north, north, south, north])
    x, y = to_utm.transform(lon, lat)
    x0, x1 = math.floor(min(x) / RES) * RES, math.ceil(max(x) / RES) * RES
    y0, y1 = math.floor(min(y) / RES) * RES, math.ceil(max(y) / RES) * RES
    return crs, Affine(RES, 0, x0, 0, -RES, y1), round((x1 - x0) / RES), round((y1 - y0) / RES)


def acquisition_dates(seed: int, lon: float, lat: float, year: int = crops.YEAR) -> list[dt.date]:
    """Every 5th day, offset per 100 km tile (its orbit), between FIRST_DAY and LAST_DAY."""
    tile = (math.floor(lon), math.floor(lat))
    first = FIRST_DAY + int(hash_unit(seed, 601, *tile) * REVISIT)
    jan1 = dt.date(year, 1, 1)
    return [jan1 + dt.timedelta(days=int(d) - 1) for d in range(first, LAST_DAY + 1, REVISIT)]


def cloudiness(seed: int, lon: float, lat: float, day: int) -> float:
    """Expected cloud cover of a date: summer monsoon in the south, drier north, weather per 100 km tile."""
    monsoon = np.clip((32.0 - lat) / 10.0, 0, 1) * math.exp(-0.5 * ((day - 190) / 45.0) ** 2)
    base = 0.15 + 0.35 * monsoon
    weather = hash_unit(seed, 602, math.floor(lon), math.floor(lat), day)
    return float(np.clip(base + 0.9 * (weather - 0.5) ** 3 * 4, 0, 1))


def simulate_block(world, bounds: tuple[float, float, float, float], year: int = crops.YEAR,
                   strip_rows: int = 64, crs: CRS | None = None) -> SimulatedS2:  # fmt: skip
    """Sentinel-2 of the world over lon/lat `bounds` (a block, or part of one) on its UTM 10 m grid."""
    crs, transform, width, height = utm_grid(bounds, crs)
    lon_c, lat_c = (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
    dates = acquisition_dates(world.seed, lon_c, lat_c, year)
    days = np.array([d.timetuple().tm_yday for d in dates], np.float64)
    data = np.zeros((len(dates), len(BANDS), height, width), np.uint16)
    scl = np.zeros((len(dates), height, width), np.uint8)
    out = {k: np.empty((height, width), t) for k, t in
           (("field", np.int64), ("purity", np.float32), ("crop", np.uint8), ("cropland", np.float32))}  # fmt: skip
    fields: dict = {}
    to_lonlat = Transformer.from_crs(crs, 4326, always_xy=True)
    for r0 in range(0, height, strip_rows):
        rows = slice(r0, min(height, r0 + strip_rows))
        refl, truth = _strip_reflectance(world, transform, rows, width, days, to_lonlat, fields, year)
        for k, v in truth.items():
            out[k][rows] = v
        dn, code = _observe(world.seed, refl, transform, rows, width, days, lon_c, lat_c)
        data[:, :, rows] = dn
        scl[:, rows] = code
    return SimulatedS2(data, scl, dates, crs, transform, fields=fields, **out)


def _subsample_points(transform: Affine, rows: slice, width: int, to_lonlat):
    """Global z16 pixel coordinates of the 5 × 5 sub-samples of each pixel, (n_rows*5, width*5)."""
    step = RES / SUB
    cols = transform.c + step * (np.arange(width * SUB) + 0.5)
    rws = transform.f - (rows.start * RES) - step * (np.arange((rows.stop - rows.start) * SUB) + 0.5)
    e, n = np.meshgrid(cols, rws)
    lon, lat = to_lonlat.transform(e, n)
    return lonlat_to_global_pixel(lon, lat, 16)


def _strip_reflectance(world, transform, rows, width, days, to_lonlat, fields, year):
    land = world.landscape
    nr = rows.stop - rows.start
    x, y = _subsample_points(transform, rows, width, to_lonlat)
    t = land.truth_at_points(x, y)
    cover = t["cover"]
    grows = np.isin(cover, (CROP, PADDY, TERRACE, FALLOW))
    fid = np.where(grows, crops.field_ids(t["zone_key"], t["field_rand"]), -1 - cover.astype(np.int64))
    ends, first, inv = np.unique(fid, return_index=True, return_inverse=True)
    pix = (np.arange(nr * SUB)[:, None] // SUB * width + np.arange(width * SUB)[None, :] // SUB).ravel()
    pair, count = np.unique(pix * len(ends) + inv.ravel(), return_counts=True)
    p_pix, p_end, weight = pair // len(ends), pair % len(ends), count / SUB**2
    series = _endmember_series(world, ends, first, t, x.ravel(), y.ravel(), days, fields, year)  # (E, D, B)
    refl = np.zeros((len(days), len(BANDS), nr * width))
    for d in range(len(days)):
        for b in range(len(BANDS)):
            refl[d, b] = np.bincount(p_pix, weights=weight * series[p_end, d, b], minlength=nr * width)
    # Per pixel: the dominant endmember (ties: the first), its share, and the cropland share.
    order = np.lexsort((-count, p_pix))
    top = order[np.r_[True, p_pix[order][1:] != p_pix[order][:-1]]]
    dom = np.full(nr * width, -1, np.int64)
    share = np.zeros(nr * width, np.float32)
    dom[p_pix[top]] = ends[p_end[top]]
    share[p_pix[top]] = weight[top]
    crop_share = np.bincount(p_pix, weights=weight * (ends[p_end] >= 0), minlength=nr * width)
    is_field = dom >= 0
    code = np.zeros(nr * width, np.uint8)
    code[is_field] = [fields[f][0] for f in dom[is_field]]
    truth = {"field": np.where(is_field, dom, -1), "purity": share, "crop": code, "cropland": crop_share}
    return refl.reshape(len(days), len(BANDS), nr, width), {k: v.reshape(nr, width) for k, v in truth.items()}


def _endmember_series(world, ends, first, truth, x, y, days, fields, year):
    """Reflectance (E, D, 10) of each endmember: crop fields by their calendar, other covers by class."""
    land = world.landscape
    out = np.zeros((len(ends), len(days), len(BANDS)))
    is_field = ends >= 0
    if is_field.any():
        idx = first[is_field]
        zone = truth["zone_key"].ravel()[idx]
        codes, before = crops.field_crops(land, zone, ends[is_field], year)
        cover = truth["cover"].ravel()[idx]
        codes = np.where(cover == FALLOW, crops.FALLOW_CODE, codes).astype(np.uint8)
        before = np.where(cover == FALLOW, crops.FALLOW_CODE, before).astype(np.uint8)
        z = land.zones(zone // crops.ZONE_KEY_MUL, zone % crops.ZONE_KEY_MUL)
        temp, _ = crops.agro_climate(land, z.sx, z.sy)
        for f, c, b, tt in zip(ends[is_field], codes, before, temp, strict=True):
            fields[int(f)] = (int(c), int(b), float(tt))
        out[is_field] = _field_series(world.seed, ends[is_field], codes, temp, z, land, days)
    for e in np.flatnonzero(~is_field):
        out[e] = _cover_series(int(-1 - ends[e]), days, land, x[first[e]], y[first[e]])
    return out


def _field_series(seed, fid, codes, temp, zones, land, days):
    t_opt = np.where(codes == crops.FALLOW_CODE, temp, crops.T_OPTIMUM[np.minimum(codes, 24) - 1])
    double = crops.cropping_intensity(codes, temp) > 1
    jitter = JITTER_DAYS * math.sqrt(12) * (hash_unit(seed, 603, fid) - 0.5)
    scale = 0.85 + 0.2 * hash_unit(seed, 604, fid)
    green, dry, flooded = field_cover(codes, temp, t_opt, double, jitter, scale, days)
    soil = 0.75 + 0.5 * value_noise(zones.sx, zones.sy, 4000.0, seed * 1000 + 30)
    canopy = np.stack([GREEN * np.array(CANOPY.get(int(c), (1, 1, 1, 1)))[_BAND_GROUP] for c in codes])
    background = np.where(flooded[..., None], WATER_R, soil[:, None, None] * SOIL)
    refl = green[..., None] * canopy[:, None, :] + dry[..., None] * DRY + (1 - green - dry)[..., None] * background
    flowers = np.isin(codes, (10, 12))[:, None] & (green > 0.5) & (np.gradient(green, axis=1) < 0.002)
    refl += flowers[..., None] * YELLOW
    bolls = (codes == 15)[:, None] & (dry > 0.15)
    return refl + bolls[..., None] * WHITE


def _cover_series(cover: int, days, land, x, y):
    """Other land covers: evergreen forest, seasonal grass and orchards, bare soil, water, built-up."""
    season = np.exp(-0.5 * ((days - 200) / 60.0) ** 2)
    if cover == WATER:
        return np.broadcast_to(WATER_R, (len(days), len(BANDS)))
    if cover in (ROAD, VILLAGE):
        return np.broadcast_to(URBAN, (len(days), len(BANDS)))
    green = {FOREST: 0.75 + 0.1 * season, ORCHARD: 0.45 + 0.2 * season, GRASS: 0.2 + 0.45 * season}.get(cover)
    soil = (0.75 + 0.5 * value_noise(x, y, 4000.0, land.seed * 1000 + 30)) * SOIL
    if green is None:  # bare land
        return np.broadcast_to(soil, (len(days), len(BANDS)))
    return green[:, None] * GREEN + (1 - green[:, None]) * soil


def _cover_threshold(cover: float) -> float:
    """The level of the cloud-shape field (≈ normal, mean 0.5, sd 0.14) exceeded on `cover` of the area
    (a logistic approximation of the normal quantile)."""
    if cover <= 0:
        return math.inf
    p = min(max(cover, 0.005), 0.995)
    return 0.5 + 0.14 * 0.5513 * math.log((1 - p) / p)


def _observe(seed, refl, transform, rows, width, days, lon, lat):
    """Clouds, shadows, haze and noise on the clean reflectance; (DN uint16, SCL uint8) per date."""
    nr = rows.stop - rows.start
    e = transform.c + RES * (np.arange(width) + 0.5)
    n = transform.f - RES * (np.arange(rows.start, rows.stop) + 0.5)
    ee, nn = np.meshgrid(e, n)
    dn = np.empty(refl.shape, np.uint16)
    scl = np.empty((len(days), nr, width), np.uint8)
    for d, day in enumerate(days):
        salt = seed * 1000 + 700 + int(day)
        c = cloudiness(seed, lon, lat, int(day))
        field = fbm(ee, nn, 2500.0, salt, octaves=3)
        cloud = field > _cover_threshold(c)
        shadow = ~cloud & (fbm(ee - 300.0, nn + 300.0, 2500.0, salt, octaves=3) > _cover_threshold(c))
        rng = np.random.default_rng([seed, int(day), rows.start, int(transform.c), int(transform.f)])
        haze = 0.01 * hash_unit(seed, 605, int(day)) * np.array([1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.3, 0.3, 0.1, 0.05])
        x = refl[d] + haze[:, None, None] + rng.normal(0, NOISE, refl[d].shape)
        x = np.where(shadow, 0.5 * x, x)
        x = np.where(cloud, CLOUD[:, None, None] * (0.9 + 0.2 * field), x)
        dn[d] = np.clip(np.round(x * 10000.0), 1, 65535).astype(np.uint16)
        ndvi = (refl[d, 6] - refl[d, 2]) / np.maximum(refl[d, 6] + refl[d, 2], 1e-6)
        clear = np.where(ndvi > 0.3, SCL_VEG, np.where(refl[d, 6] < 0.05, SCL_WATER, SCL_BARE))
        scl[d] = np.where(cloud, np.where(field > _cover_threshold(0.6 * c), SCL_CLOUD_HIGH, SCL_CLOUD_MED),
                          np.where(shadow, SCL_SHADOW, clear))  # fmt: skip
    return dn, scl
