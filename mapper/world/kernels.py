"""Per-pixel kernels of the simulated world, compiled with numba.

One pass per pixel instead of dozens of whole-array numpy operations: this is what makes the world
render hundreds of tiles per second per core. The same land-cover kernel serves tiles (a grid of pixel
centres) and area statistics (arbitrary sample points), so the two can never disagree in their rules.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, vectorize

M32 = 0xFFFFFFFF
INV24 = 1.0 / 16777216.0

# Cover codes (see landscape.Cover) and zone kinds, repeated here as plain ints for the compiled code.
WATER, ROAD, VILLAGE, FOREST, ORCHARD, GRASS, BARE, CROP, FALLOW, PADDY, TERRACE = range(11)
ZONE_FARM, ZONE_PADDY, ZONE_TERRACE = 0, 1, 2
ZONE_COVER = np.array([CROP, PADDY, TERRACE, VILLAGE, FOREST, ORCHARD, GRASS, BARE], np.uint8)
F_ELEV, F_SOIL, F_PATCHY, F_MAIN_ROAD, F_RIVER, F_RIVER_WIDTH, F_LAKE = range(7)


@njit(cache=True, inline="always")
def _mix(h, v, k):
    h = (h + ((v & M32) * k)) & M32
    return h ^ (h >> 15)


@njit(cache=True)
def hash_unit4(a, b, c, d):
    """Uniform float in [0, 1) from four integers (32-bit avalanche hash)."""
    h = 0x811C9DC5
    h = _mix(h, a, 0x9E3779B1)
    h = _mix(h, b, 0x85EBCA77)
    h = _mix(h, c, 0xC2B2AE3D)
    h = _mix(h, d, 0x27D4EB2F)
    h = (h * 0x2C1B3C6D) & M32
    h ^= h >> 12
    h = (h * 0x297A2D39) & M32
    h ^= h >> 15
    return (h >> 8) * INV24


@vectorize(["float64(float64, float64, float64, int64)"], cache=True)
def value_noise_ufunc(x, y, spacing, salt):
    """Value noise in [0, 1]: hashed lattice values, smoothstep-interpolated (a numpy ufunc)."""
    gx = x / spacing
    gy = y / spacing
    ix = math.floor(gx)
    iy = math.floor(gy)
    fx = gx - ix
    fy = gy - iy
    fx = fx * fx * (3.0 - 2.0 * fx)
    fy = fy * fy * (3.0 - 2.0 * fy)
    v00 = hash_unit4(salt, ix, iy, 7)
    v10 = hash_unit4(salt, ix + 1, iy, 7)
    v01 = hash_unit4(salt, ix, iy + 1, 7)
    v11 = hash_unit4(salt, ix + 1, iy + 1, 7)
    top = v00 + (v10 - v00) * fx
    bottom = v01 + (v11 - v01) * fx
    return top + (bottom - top) * fy


@njit(cache=True, error_model="numpy")
def fill_points(px, py, zone, sx, sy, kind, cos_t, sin_t, strip, length, key, road,
                cx0, cy0, nx, fields, seed, road_half_width,
                cover, field_rand, u_out, v_out, lot_w, lot_h, edge, zone_key):  # fmt: skip
    """Land cover at points (global px). Zone tables are flat over cells [cx0, cx0+nx) × [cy0, ...).
    zone_key gets each point's zone identity: with field_rand it names the point's field (crops, parcels).

    Neighbouring points (pixels of a row) mostly share their zone and field, so the Voronoi search and the
    field hashes are skipped when they provably give the previous point's answer (see `gap` below)."""
    n = px.shape[0]
    zi = 0
    gap = -1.0  # lower bound on (distance to 2nd-nearest seed) − (distance to nearest seed)
    last_cell = (-1, -1)
    xp = 0.0
    yp = 0.0
    last_i = (-1, -1)
    last_field = (-1, -1, -1)
    h1 = 0.0
    fr0 = 0.0
    for p in range(n):
        x = px[p]
        y = py[p]
        ccx = math.floor(x / zone)
        ccy = math.floor(y / zone)
        # Moving by s px changes every seed distance by at most s, so the gap shrinks by at most 2s. While
        # it stays above 2 × road_half_width the nearest seed is unchanged and the point is farther than
        # road_half_width from the zone edge (distance to the bisector ≥ gap / 2).
        gap -= 2.0 * math.sqrt((x - xp) ** 2 + (y - yp) ** 2)
        xp = x
        yp = y
        if gap > 2.0 * road_half_width and (ccx, ccy) == last_cell:
            to_edge = 1e300
        else:
            best = 1e300
            second = 1e300
            zj = 0
            for oy in range(-1, 2):
                for ox in range(-1, 2):
                    k = (ccy + oy - cy0) * nx + (ccx + ox - cx0)
                    d = (x - sx[k]) ** 2 + (y - sy[k]) ** 2
                    if d < best:
                        second = best
                        zj = zi
                        best = d
                        zi = k
                    elif d < second:
                        second = d
                        zj = k
            sep = math.sqrt((sx[zi] - sx[zj]) ** 2 + (sy[zi] - sy[zj]) ** 2)
            to_edge = (second - best) / (2.0 * sep)
            gap = math.sqrt(second) - math.sqrt(best)
            last_cell = (ccx, ccy)

        kd = kind[zi]
        cov = ZONE_COVER[kd]
        dx = x - sx[zi]
        dy = y - sy[zi]
        u = dx * cos_t[zi] + dy * sin_t[zi]
        v = dy * cos_t[zi] - dx * sin_t[zi]
        st = strip[zi]
        ln = length[zi]
        i = math.floor(u / st)
        if (zi, i) != last_i:
            h1 = hash_unit4(seed, key[zi], i, 0)
            last_i = (zi, i)
        v_shift = v + h1 * ln
        j = math.floor(v_shift / ln)
        if (zi, i, j) != last_field:
            fr0 = hash_unit4(seed + 1, key[zi], i, j)
            last_field = (zi, i, j)
        fr = fr0
        uu = u - i * st
        vv = v_shift - j * ln
        bund = 1.6 if kd == ZONE_PADDY else 1.0
        ed = min(uu, st - uu) < bund or min(vv, ln - vv) < bund
        farm = kd <= ZONE_TERRACE
        if kd == ZONE_TERRACE:  # bands of equal height, broken every field length along the contour
            band = fields[F_ELEV, p] / 6.0
            frac = band - math.floor(band)
            ed = frac < 0.12 or min(vv, ln - vv) < 1.0
            fr = hash_unit4(seed + 2, key[zi], math.floor(band), j)
        if kd == ZONE_FARM and fr < 0.14:
            cov = FALLOW
        if farm and fr > 0.965:  # non-crop inclusions in farmland: farmhouses, tree clumps
            cov = VILLAGE if fr > 0.985 else FOREST
        elif kd == ZONE_FARM and fr > 0.95:  # farm ponds
            cov = WATER
        if cov in (GRASS, BARE) and fields[F_PATCHY, p] > 0.62:
            cov = FOREST
        if road[zi] and to_edge < road_half_width:
            cov = ROAD
        if abs(fields[F_MAIN_ROAD, p] - 0.5) < 0.0006:
            cov = ROAD
        if abs(fields[F_RIVER, p] - 0.5) < 0.0015 + 0.004 * fields[F_RIVER_WIDTH, p] or fields[F_LAKE, p] > 0.8:
            cov = WATER
        cover[p] = cov
        field_rand[p] = fr
        u_out[p] = uu
        v_out[p] = vv
        lot_w[p] = st
        lot_h[p] = ln
        edge[p] = ed and farm
        zone_key[p] = key[zi]


@njit(cache=True, error_model="numpy")
def render_pixels(cover, fr, u, v, lot_w, lot_h, edge, soil, col0, row0, season, palette,
                  rows_amp, fine_amp, crown_amp, roofs, fine_tex, crown_tex, out):  # fmt: skip
    """Base colours, textures, houses and orchard crowns; out is (H, W, 3) float32 in [0, 1]."""
    h, w = cover.shape
    wrap = fine_tex.shape[0] - 1  # textures are square with a power-of-two side
    nvar = palette.shape[2]
    for r in range(h):
        tr = (row0 + r) & wrap
        tr2 = (row0 + r + 31) & wrap
        for c in range(w):
            cv = cover[r, c]
            f = fr[r, c]
            var = min(int(f * nvar), nvar - 1)
            shade = 1.0 + fine_amp[cv] * fine_tex[tr, (col0 + c) & wrap]
            if rows_amp[cv] != 0:  # crop rows across the strip, 3-6 px apart
                shade += rows_amp[cv] * math.sin(u[r, c] * 6.283185307179586 / (3.0 + 3.0 * f))
            if crown_amp[cv] != 0:
                shade += crown_amp[cv] * crown_tex[tr2, (col0 + c + 17) & wrap]
            if edge[r, c]:
                shade *= 0.86
            red = palette[season, cv, var, 0] * shade
            grn = palette[season, cv, var, 1] * shade
            blu = palette[season, cv, var, 2] * shade
            if cv in (BARE, FALLOW) or (cv == CROP and season == 1):  # regional soil tint
                s = soil[r, c] - 0.5
                red += 0.12 * s
                grn += 0.08 * s
                blu += 0.04 * s
            uu = u[r, c]
            vv = v[r, c]
            if cv == VILLAGE:  # a house fills its lot but a 1.5 px margin; shadow on the far side
                lw = lot_w[r, c]
                lh = lot_h[r, c]
                inside_house = uu > 1.5 and vv > 1.5 and uu < lw - 1.5 and vv < lh - 1.5 and f < 0.8
                if inside_house:
                    k = int(f * 97) % roofs.shape[0]
                    red, grn, blu = roofs[k, 0], roofs[k, 1], roofs[k, 2]
                elif uu > 2.5 and vv > 2.5 and uu < lw - 0.5 and vv < lh - 0.5:
                    red *= 0.55
                    grn *= 0.55
                    blu *= 0.55
            elif cv == ORCHARD:  # a crown at each tree-cell centre
                lw = lot_w[r, c]
                if (uu - lw / 2) ** 2 + (vv - lot_h[r, c] / 2) ** 2 < (0.42 * lw) ** 2:
                    red *= 0.42
                    grn *= 0.62
                    blu *= 0.42
            out[r, c, 0] = red
            out[r, c, 1] = grn
            out[r, c, 2] = blu


@njit(cache=True)
def apply_conditions(rgb, snow, cloud_soft, tint, saturation, haze, gain, offset, out):
    """Grading, snow, haze, thick cloud with its shadow, and the block's colour shift (before blur)."""
    h, w, _ = rgb.shape
    for r in range(h):
        for c in range(w):
            red = rgb[r, c, 0] * tint[0]
            grn = rgb[r, c, 1] * tint[1]
            blu = rgb[r, c, 2] * tint[2]
            if saturation != 1.0:
                lum = (red + grn + blu) / 3.0
                red = lum + (red - lum) * saturation
                grn = lum + (grn - lum) * saturation
                blu = lum + (blu - lum) * saturation
            if snow[r, c]:
                red = red * 0.25 + 0.70
                grn = grn * 0.25 + 0.72
                blu = blu * 0.25 + 0.76
            if haze > 0:
                red = red * (1 - haze) + 0.78 * haze
                grn = grn * (1 - haze) + 0.79 * haze
                blu = blu * (1 - haze) + 0.81 * haze
            shadow = cloud_soft[r - 6, c - 6] if r >= 6 and c >= 6 else 0.0
            if shadow > 0:
                k = 1 - 0.45 * shadow
                red *= k
                grn *= k
                blu *= k
            a = cloud_soft[r, c]
            if a > 0:
                red = red * (1 - a) + 0.95 * a
                grn = grn * (1 - a) + 0.95 * a
                blu = blu * (1 - a) + 0.96 * a
            out[r, c, 0] = red * gain[0] + offset[0]
            out[r, c, 1] = grn * gain[1] + offset[1]
            out[r, c, 2] = blu * gain[2] + offset[2]


@njit(cache=True)
def to_uint8(rgb, nodata, out):
    h, w, _ = rgb.shape
    for r in range(h):
        for c in range(w):
            if nodata[r, c]:
                out[r, c, 0] = 0
                out[r, c, 1] = 0
                out[r, c, 2] = 0
                continue
            for b in range(3):
                x = rgb[r, c, b] * 255.0 + 0.5
                out[r, c, b] = 0 if x < 0 else (255 if x > 255 else int(x))


@njit(cache=True, error_model="numpy")
def interpolate_lattice(values, cols, rows, lattice, lc0, lr0, out):
    """Bilinear interpolation of (F, nr, nc) lattice values (every `lattice` px, first index lc0/lr0)
    at pixel centres cols × rows into out (F, H, W). Each pixel uses only its four lattice points, so
    every window computes the same value for the same pixel."""
    nf = values.shape[0]
    w = cols.shape[0]
    ix = np.empty(w, np.int64)
    fx = np.empty(w, np.float32)
    for c in range(w):
        gx = (cols[c] + 0.5) / lattice - lc0
        ix[c] = math.floor(gx)
        fx[c] = gx - ix[c]
    for f in range(nf):
        for r in range(rows.shape[0]):
            gy = (rows[r] + 0.5) / lattice - lr0
            iy = math.floor(gy)
            fy = np.float32(gy - iy)
            for c in range(w):
                i = ix[c]
                a = values[f, iy, i] + (values[f, iy, i + 1] - values[f, iy, i]) * fx[c]
                b = values[f, iy + 1, i] + (values[f, iy + 1, i + 1] - values[f, iy + 1, i]) * fx[c]
                out[f, r, c] = a + (b - a) * fy
