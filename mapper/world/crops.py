"""What grows on every field of the simulated world: a crop per field and year, from regional crop mixes.

The world's agro-climate (fixed up front, not tuned to any model):
- temperature index T (°C, an annual-mean proxy) = 22 − 0.7 · (latitude − 23°) − 6 · elevation (km):
  about 22 in Guangdong, 15 on the North China Plain, 5 in Heilongjiang, below 0 on the plateau;
- aridity A in [0, 1]: high in the north-west (west of ~112°E and north of ~31°N), rising to the north,
  plus regional variation (~150 km).
Each crop has a climate optimum (T, A) and an affinity per zone kind (dry farmland, paddy, terrace);
a zone's mix is the product of these with a regional preference per crop (~150 km value noise), so rice
fills the southern paddies (double rice where T ≳ 20), wheat and maize the north, cotton the arid
west, sugarcane and cassava the far south, barley and potato the plateau. A field draws its crop from its
zone's mix with a uniform hashed from its identity and the year; last year's crop is the same crop with the
crop's keep probability (rotation), else a fresh draw. Fallow fields (the landscape's FALLOW) are leaf
"fallow". Codes are the leaf codes of the packaged taxonomy (mapper/data/croptype/taxonomy.csv; a test
checks the names agree).

Cropping intensity (harvests per year, for statistics allocation): 2 for double rice, for winter wheat
where T > 11 (summer maize follows) and for leafy vegetables where T > 16; else 1.
"""

from __future__ import annotations

import numpy as np

from mapper.grid.tilegrid import global_pixel_to_lonlat
from mapper.world.kernels import CROP, FALLOW, PADDY, TERRACE, ZONE_FARM, ZONE_PADDY, ZONE_TERRACE
from mapper.world.noise import hash_unit, value_noise

YEAR = 2020  # the world's "current" season
ZONE_KEY_MUL = 1_000_003  # zone key = cx * ZONE_KEY_MUL + cy (landscape.zones)

# code, leaf, T optimum, T spread, A optimum, A spread, affinity (farm, paddy, terrace), keep probability
CROPS = (
    (1, "single rice", 15.0, 5.0, 0.10, 0.30, (0.05, 1.00, 0.30), 0.90),
    (2, "double rice", 22.0, 2.5, 0.00, 0.25, (0.02, 1.40, 0.10), 0.90),
    (3, "winter wheat", 14.0, 2.5, 0.30, 0.30, (1.60, 0.00, 0.30), 0.75),
    (4, "spring wheat", 6.0, 3.0, 0.60, 0.30, (0.80, 0.00, 0.40), 0.60),
    (5, "barley", 3.0, 4.0, 0.50, 0.40, (0.50, 0.00, 0.60), 0.50),
    (6, "grain maize", 11.0, 5.0, 0.35, 0.35, (1.30, 0.00, 0.60), 0.60),
    (7, "silage maize", 9.0, 4.0, 0.40, 0.30, (0.25, 0.00, 0.00), 0.50),
    (8, "sorghum", 11.0, 4.0, 0.55, 0.25, (0.15, 0.00, 0.20), 0.40),
    (9, "millet", 9.0, 4.0, 0.60, 0.25, (0.15, 0.00, 0.30), 0.40),
    (10, "rapeseed", 16.0, 3.0, 0.20, 0.30, (0.50, 0.15, 0.40), 0.40),
    (11, "groundnut", 18.0, 4.0, 0.30, 0.30, (0.40, 0.00, 0.20), 0.40),
    (12, "sunflower", 7.0, 4.0, 0.70, 0.25, (0.30, 0.00, 0.00), 0.40),
    (13, "soybean", 7.0, 4.0, 0.30, 0.30, (0.70, 0.00, 0.10), 0.40),
    (14, "other pulses", 12.0, 6.0, 0.40, 0.40, (0.15, 0.00, 0.20), 0.30),
    (15, "cotton", 13.0, 3.0, 0.80, 0.35, (1.00, 0.00, 0.00), 0.70),
    (16, "sugarcane", 22.0, 2.5, 0.10, 0.30, (0.90, 0.00, 0.20), 0.85),
    (17, "sugar beet", 6.0, 3.0, 0.60, 0.30, (0.30, 0.00, 0.00), 0.40),
    (18, "potato", 6.0, 6.0, 0.50, 0.40, (0.30, 0.00, 0.50), 0.40),
    (19, "sweet potato", 18.0, 4.0, 0.20, 0.30, (0.20, 0.00, 0.50), 0.40),
    (20, "cassava", 22.0, 2.0, 0.10, 0.30, (0.30, 0.00, 0.30), 0.60),
    (21, "leafy vegetables", 16.0, 6.0, 0.30, 0.50, (0.35, 0.05, 0.05), 0.50),
    (22, "fruit vegetables", 16.0, 6.0, 0.30, 0.50, (0.30, 0.00, 0.05), 0.50),
    (23, "other vegetables", 16.0, 7.0, 0.30, 0.50, (0.15, 0.00, 0.05), 0.50),
    (24, "alfalfa", 7.0, 5.0, 0.70, 0.30, (0.25, 0.00, 0.10), 0.90),
)
FALLOW_CODE = 25
CODES = np.array([c[0] for c in CROPS], np.uint8)
NAMES = (*(c[1] for c in CROPS), "fallow")
_T_OPT, _T_SD, _A_OPT, _A_SD = (np.array([c[i] for c in CROPS]) for i in (2, 3, 4, 5))
_AFFINITY = np.array([c[6] for c in CROPS])  # (crops, 3) by zone kind farm / paddy / terrace
_KEEP = np.array([c[7] for c in CROPS])
T_OPTIMUM = _T_OPT  # per crop code - 1: the climate its calendar (phenology.CALENDARS) is written for
_KIND_COLUMN = np.zeros(8, np.int64)  # zone kind -> affinity column (non-farm kinds never grow crops)
_KIND_COLUMN[[ZONE_FARM, ZONE_PADDY, ZONE_TERRACE]] = [0, 1, 2]


def agro_climate(landscape, x, y) -> tuple[np.ndarray, np.ndarray]:
    """(temperature index °C, aridity 0..1) at global z16 pixel points."""
    lon, lat = global_pixel_to_lonlat(x, y, 16)
    elev_km = landscape.elevation(x, y) / 1000.0
    temp = 22.0 - 0.7 * (lat - 23.0) - 6.0 * elev_km
    west = np.clip((112.0 - lon) / 10.0, 0, 1) * np.clip((lat - 31.0) / 6.0, 0, 1)
    north = np.clip((lat - 33.0) / 12.0, 0, 1) * 1.4
    regional = value_noise(x, y, 60000.0, landscape.seed * 1000 + 40) - 0.5
    return temp, np.clip(0.7 * west + 0.25 * north + 0.3 * regional, 0, 1)


def zone_mix(landscape, zone_keys: np.ndarray) -> np.ndarray:
    """(n, crops) cumulative crop probabilities of the zones named by their keys (farm zones only matter)."""
    keys = np.asarray(zone_keys, np.int64)
    cx, cy = keys // ZONE_KEY_MUL, keys % ZONE_KEY_MUL
    z = landscape.zones(cx, cy)
    temp, arid = agro_climate(landscape, z.sx, z.sy)
    suit = np.exp(-0.5 * ((temp[:, None] - _T_OPT) / _T_SD) ** 2 - 0.5 * ((arid[:, None] - _A_OPT) / _A_SD) ** 2)
    column = _KIND_COLUMN[np.asarray(z.kind, np.int64)]
    affinity = _AFFINITY[:, column].T  # (n, crops)
    salt = landscape.seed * 1000 + 50
    prefer = np.stack([value_noise(z.sx, z.sy, 150000.0, salt + i) for i in range(len(CROPS))], axis=1)
    prefer = np.exp(1.2 * (prefer - 0.5))
    w = suit * affinity * prefer + 1e-6 * affinity  # never an empty mix where the kind grows anything
    w = np.where(w.sum(axis=1, keepdims=True) > 0, w, 1.0)
    return np.cumsum(w, axis=1) / w.sum(axis=1, keepdims=True)


def field_ids(zone_key: np.ndarray, field_rand: np.ndarray) -> np.ndarray:
    """int64 identity of each point's field: its zone and the field's hashed value (24 bits)."""
    bits = np.floor(np.asarray(field_rand, np.float64) * 16777216.0).astype(np.int64)
    return np.asarray(zone_key, np.int64) * 16777216 + bits


def _draw(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    idx = (cum < u[:, None]).sum(axis=1)
    return CODES[np.minimum(idx, len(CODES) - 1)]


def field_crops(landscape, zone_key: np.ndarray, fid: np.ndarray, year: int = YEAR) -> tuple[np.ndarray, np.ndarray]:
    """(this year's code, last year's code) for fields given by zone key and field id (1-D, one per field)."""
    seed = landscape.seed
    cum = zone_mix(landscape, zone_key)
    now = _draw(cum, hash_unit(seed, 501, fid, year))
    redraw = _draw(cum, hash_unit(seed, 501, fid, year - 1))
    keep = hash_unit(seed, 502, fid, year) < _KEEP[now.astype(np.int64) - 1]
    return now, np.where(keep, now, redraw).astype(np.uint8)


def crop_codes(landscape, cover: np.ndarray, zone_key: np.ndarray, field_rand: np.ndarray, year: int = YEAR,
               last_year: bool = False) -> np.ndarray:  # fmt: skip
    """uint8 leaf code per point (0 off cropland, 25 fallow), shape of `cover`: the crop of each pixel's field.

    Crops are drawn once per distinct field, so a field has one crop wherever its pixels are evaluated."""
    cover = np.asarray(cover)
    out = np.zeros(cover.shape, np.uint8)
    out[cover == FALLOW] = FALLOW_CODE
    grows = (cover == CROP) | (cover == PADDY) | (cover == TERRACE)
    if not grows.any():
        return out
    keys = np.asarray(zone_key)[grows]
    fid = field_ids(keys, np.asarray(field_rand)[grows])
    uniq, first, inverse = np.unique(fid, return_index=True, return_inverse=True)
    now, before = field_crops(landscape, keys[first], uniq, year)
    out[grows] = (before if last_year else now)[inverse]
    return out


def cropping_intensity(codes: np.ndarray, temperature: np.ndarray) -> np.ndarray:
    """Harvests per year (0 off cropland and on fallow): see the module docstring."""
    codes = np.asarray(codes)
    out = np.where((codes > 0) & (codes != FALLOW_CODE), 1, 0).astype(np.uint8)
    double = (codes == 2) | ((codes == 3) & (temperature > 11.0)) | ((codes == 21) & (temperature > 16.0))
    out[double] = 2
    return out
