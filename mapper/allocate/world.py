"""What the simulated world knows per piece of the allocation grid, from its field model without rendering:
true cropland and harvested area per crop (the truth an allocation is judged against), the cropping
intensity (harvests per year of its cropland: double rice and wheat→maize in the south), and the spatial
indicators of the regression (temperature index, aridity, elevation, local relief).

Each piece is sampled on a regular s × s grid of its cell (samples outside its unit dropped); hectares are the
piece's exact area times the sampled shares, so the pieces of a unit keep its exact area.
"""

from __future__ import annotations

import numpy as np
import shapely

from mapper.allocate.grid import Pieces
from mapper.grid.tilegrid import lonlat_to_global_pixel
from mapper.world import crops

CHUNK_SAMPLES = 2_000_000  # points per kernel call: bounds memory on a country grid


def piece_truth(world, pieces: Pieces, crop_codes, samples_per_side: int = 10) -> dict[str, np.ndarray]:
    """{cropland_ha, crop_ha (n, J) harvested, physical_ha (n, J), intensity, temperature, aridity,
    elevation_m, relief_m} per piece."""
    codes = np.asarray(crop_codes, np.int64)
    lut = np.full(256, -1, np.int64)
    lut[codes] = np.arange(len(codes))
    n, s = len(pieces), samples_per_side
    out = {k: np.zeros(n) for k in ("cropland_ha", "harvest_ha", "temperature", "aridity", "elevation_m",
                                    "relief_m")}  # fmt: skip
    out["crop_ha"] = np.zeros((n, len(codes)))
    out["physical_ha"] = np.zeros((n, len(codes)))
    offsets = (np.arange(s) + 0.5) / (s * pieces.grid.cells_per_degree)
    d = pieces.grid.cells_per_degree
    step = max(1, CHUNK_SAMPLES // (s * s))
    for start in range(0, n, step):
        idx = np.arange(start, min(n, start + step))
        lon = (pieces.ix[idx, None] / d - 180.0 + np.tile(offsets, s)[None, :]).ravel()
        lat = (pieces.iy[idx, None] / d - 90.0 + np.repeat(offsets, s)[None, :]).ravel()
        owner = np.repeat(np.arange(len(idx)), s * s)
        inside = _inside(pieces, idx, owner, lon, lat)
        x, y = lonlat_to_global_pixel(lon, lat, 16)
        _accumulate(world, out, idx, pieces.area_ha[idx], owner, inside, x, y, lut, len(codes), s * s)
    has = out["cropland_ha"] > 0
    out["intensity"] = np.divide(out["harvest_ha"], out["cropland_ha"], out=np.ones(n), where=has)
    return out


def _inside(pieces: Pieces, idx, owner, lon, lat) -> np.ndarray:
    """Samples inside their piece's unit (only border pieces are tested; a piece with no sample inside — a
    sliver — keeps all its samples, so its area still has a composition)."""
    inside = np.ones(len(lon), bool)
    border = pieces.frac[idx] < 1.0
    for k in np.unique(pieces.unit[idx][border]):
        geom = pieces.units.geometry.iloc[int(k)]
        shapely.prepare(geom)
        sel = border[owner] & (pieces.unit[idx][owner] == k)
        inside[sel] = shapely.contains_xy(geom, lon[sel], lat[sel])
    has = np.bincount(owner, inside, len(idx)) > 0
    inside |= ~has[owner]
    return inside


def _accumulate(world, out, idx, piece_ha, owner, inside, x, y, lut, n_crops, per_piece) -> None:
    t = world.landscape.truth_at_points(x, y)
    code = crops.crop_codes(world.landscape, t["cover"], t["zone_key"], t["field_rand"], crops.YEAR)
    temp, arid = crops.agro_climate(world.landscape, x, y)
    elev = world.landscape.elevation(x, y)
    intensity = crops.cropping_intensity(code, temp).astype(float)
    m = len(idx)
    count = np.bincount(owner, inside, m)
    share = np.where(inside, 1.0, 0.0) / count[owner]  # each inside sample's share of its piece
    area = share * piece_ha[owner]
    cropland = code > 0
    out["cropland_ha"][idx] = np.bincount(owner, area * cropland, m)
    out["harvest_ha"][idx] = np.bincount(owner, area * intensity, m)
    j = lut[code]
    sel = j >= 0
    flat = owner[sel] * n_crops + j[sel]
    out["crop_ha"][idx] = np.bincount(flat, (area * intensity)[sel], m * n_crops).reshape(m, n_crops)
    out["physical_ha"][idx] = np.bincount(flat, area[sel], m * n_crops).reshape(m, n_crops)
    for key, values in (("temperature", temp), ("aridity", arid), ("elevation_m", elev)):
        out[key][idx] = np.bincount(owner, share * values, m)
    e = elev.reshape(m, per_piece)
    out["relief_m"][idx] = e.max(1) - e.min(1)

