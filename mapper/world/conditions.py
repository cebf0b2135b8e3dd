"""Per-block imaging conditions of each rendering, and the coverage type they imply.

Each block × rendering has its own acquisition: season (planting / non-planting), thick cloud, snow,
a stretch without imagery (nodata), thin haze with blur, and a colour shift. Rendering A (Mapbox-like)
is cloudier in the humid south; rendering B (Google-like) has more snow in the north and the mountains,
so the two sources complement each other as in the paper (Sect. 4.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from mapper.grid.blocks import Block
from mapper.world.noise import LATTICE, fbm, hash_unit, interpolate_fields, lattice_range


class CoverageType(IntEnum):
    """The five coverage types of the paper (Table 1), in the order its figures use."""

    PLANTING = 0
    NON_PLANTING = 1
    CLOUDY = 2
    SNOW_ICE = 3
    NODATA = 4


COVERAGE_NAMES = ["Planting", "Non-planting", "Cloudy", "Snow/Ice", "Nodata"]
CLOUDY_MIN, SNOW_MIN, NODATA_MIN = 0.10, 0.20, 0.10  # fractions of the block (DESIGN.md)


@dataclass(frozen=True)
class BlockConditions:
    planting: bool
    cloud: float  # target thick-cloud fraction, 0 when clear
    snow: float  # target snow fraction
    nodata: float  # fraction of the block without imagery
    nodata_angle: float
    haze: float  # 0 clear .. 0.6 heavy thin cloud (blend towards grey-white)
    blur: float  # Gaussian sigma in px (0 = sharp)
    gain: tuple[float, float, float]
    offset: tuple[float, float, float]
    salt: int  # seeds the condition masks of this block × rendering


RENDERING_SALT = {"a": 1, "b": 2}


def block_conditions(seed: int, block: Block, rendering: str, elevation: float | None = None) -> BlockConditions:
    r = RENDERING_SALT[rendering]
    u = [hash_unit(seed, 7919, block.ix, block.iy, r, k) for k in range(12)]
    lat = block.center[1]
    elev = 0.0 if elevation is None else float(elevation)
    south = float(np.clip((32.0 - lat) / 12.0, 0, 1))
    north = float(np.clip((lat - 38.0) / 10.0, 0, 1))
    high = float(np.clip((elev - 2500.0) / 1500.0, 0, 1))
    p_cloud = (0.06 + 0.14 * south) if rendering == "a" else (0.05 + 0.04 * south)
    p_snow = (0.5 * north + 0.5 * high) * (0.15 if rendering == "a" else 0.3)
    p_nodata = 0.05 if rendering == "a" else 0.03
    p_haze = 0.12 if rendering == "a" else 0.08
    planting = u[0] < (0.58 if rendering == "a" else 0.46)
    cloud = 0.2 + 0.5 * u[2] if u[1] < p_cloud else 0.0
    snow = 0.3 + 0.6 * u[4] if u[3] < p_snow else 0.0
    nodata = 0.15 + 0.45 * u[6] if u[5] < p_nodata else 0.0
    haze = 0.25 + 0.35 * u[8] if u[7] < p_haze else 0.0
    blur = (0.8 + 1.6 * u[8]) if haze else (0.6 if rendering == "a" else 0.0)
    rng = np.random.default_rng([seed, block.ix, block.iy, r])
    gain = tuple(float(g) for g in 1.0 + rng.normal(0, 0.05, 3))
    offset = tuple(float(o) for o in rng.normal(0, 0.02, 3))
    return BlockConditions(
        planting=bool(planting),
        cloud=float(cloud),
        snow=float(snow),
        nodata=float(nodata),
        nodata_angle=float(u[9] * 2 * np.pi),
        haze=float(haze),
        blur=float(blur),
        gain=gain,
        offset=offset,
        salt=int(hash_unit(seed, block.ix, block.iy, r) * 2**31),
    )


def _threshold_for_fraction(frac: float) -> float:
    """fbm over 3 octaves is roughly normal around 0.5 with sd ≈ 0.095: pick the level exceeded by frac."""
    from statistics import NormalDist

    return 0.5 + 0.095 * NormalDist().inv_cdf(1.0 - frac)


def _smooth(cols: np.ndarray, rows: np.ndarray, fn) -> np.ndarray:
    lc0, nc = lattice_range(cols)
    lr0, nr = lattice_range(rows)
    lx, ly = np.meshgrid((lc0 + np.arange(nc)) * float(LATTICE), (lr0 + np.arange(nr)) * float(LATTICE))
    return interpolate_fields(fn(lx, ly)[None], cols, rows, lc0, lr0)[0]


def condition_masks(cond: BlockConditions, block: Block, cols: np.ndarray, rows: np.ndarray):
    """(cloud, cloud_soft, snow, nodata) over the window cols × rows (global pixel indices)."""
    shape = (len(rows), len(cols))
    cloud_soft = np.zeros(shape, np.float32)
    cloud = np.zeros(shape, bool)
    if cond.cloud > 0:
        n = _smooth(cols, rows, lambda a, b: fbm(a, b, 500.0, cond.salt, 3))
        t = _threshold_for_fraction(cond.cloud)
        cloud_soft = np.clip((n - t + 0.03) / 0.05, 0, 1)
        cloud = n > t
    snow = np.zeros(shape, bool)
    if cond.snow > 0:
        n = _smooth(cols, rows, lambda a, b: fbm(a, b, 300.0, cond.salt + 1, 3))
        snow = n > _threshold_for_fraction(cond.snow)
    nodata = np.zeros(shape, bool)
    if cond.nodata > 0:
        w = block.window()
        cx, cy = (w.col0 + w.col1) / 2, (w.row0 + w.row1) / 2
        half = max(w.width, w.height) / 2
        xx = (cols + 0.5 - cx)[None, :]
        yy = (rows + 0.5 - cy)[:, None]
        proj = (xx * np.cos(cond.nodata_angle) + yy * np.sin(cond.nodata_angle)) / half
        nodata = proj > 1.0 - 2.0 * cond.nodata  # a straight edge across the block, like a scene boundary
    return cloud, cloud_soft, snow, nodata


def coverage_type(cond: BlockConditions, cloud_frac: float, snow_frac: float, nodata_frac: float) -> CoverageType:
    """The paper's priority: missing imagery, then thick cloud, then snow, then the season."""
    if nodata_frac > NODATA_MIN:
        return CoverageType.NODATA
    if cloud_frac > CLOUDY_MIN:
        return CoverageType.CLOUDY
    if snow_frac > SNOW_MIN:
        return CoverageType.SNOW_ICE
    return CoverageType.PLANTING if cond.planting else CoverageType.NON_PLANTING
