"""Crop calendars of the simulated world: how green (and how dry) a field is on each day of the year.

Each crop has one or more seasons (emergence, peak, harvest as days of year, peak green cover) as grown at
its climate optimum (crops.CROPS' temperature optimum T_opt). Away from it the calendar moves — fixed up
front as a property of the world, documented here and never tuned to a model:
- shift = 4 days per °C colder than T_opt (later in the cold north, earlier in the warm south): the same
  crop is ~30 days apart between the North China Plain (T≈12) and Guangdong (T≈20);
- the season lasts 1 % longer per °C warmer;
- each field adds its own sowing jitter (σ = 6 days) and peak cover (× 0.85-1.05).
Green cover follows a double logistic (rise over the first half of emergence → peak, fall over the
second half of peak → harvest); between peak and harvest the lost green turns into dry canopy (straw),
removed at harvest. Rice fields are flooded from 20 days before emergence until 30 days after it.
"""

from __future__ import annotations

import numpy as np

# code: (seasons ((emergence, peak, harvest, peak green cover), ...), dry share kept until harvest)
CALENDARS = {
    1: (((155, 215, 270, 0.85),), 0.8),  # single rice
    2: (((95, 150, 195, 0.80), (210, 255, 305, 0.80)), 0.7),  # double rice: early and late
    3: (((20, 110, 160, 0.85),), 0.9),  # winter wheat (green from spring)
    4: (((110, 170, 215, 0.80),), 0.9),  # spring wheat
    5: (((125, 180, 225, 0.70),), 0.9),  # barley
    6: (((135, 210, 265, 0.90),), 0.8),  # grain maize
    7: (((135, 205, 240, 0.90),), 0.2),  # silage maize: cut green
    8: (((140, 215, 270, 0.75),), 0.8),  # sorghum
    9: (((140, 205, 255, 0.65),), 0.8),  # millet
    10: (((30, 85, 140, 0.80),), 0.8),  # rapeseed (winter, flowers yellow near its peak)
    11: (((130, 200, 250, 0.75),), 0.6),  # groundnut
    12: (((135, 200, 260, 0.70),), 0.8),  # sunflower (yellow heads at peak)
    13: (((150, 215, 265, 0.85),), 0.5),  # soybean
    14: (((120, 175, 215, 0.60),), 0.6),  # other pulses
    15: (((125, 215, 290, 0.75),), 0.6),  # cotton (white bolls late)
    16: (((60, 240, 350, 0.90),), 0.3),  # sugarcane
    17: (((120, 210, 285, 0.85),), 0.2),  # sugar beet
    18: (((130, 185, 230, 0.75),), 0.5),  # potato
    19: (((130, 210, 280, 0.80),), 0.4),  # sweet potato
    20: (((100, 230, 330, 0.80),), 0.3),  # cassava
    21: (((120, 140, 160, 0.60), (180, 200, 220, 0.60), (240, 260, 280, 0.60)), 0.1),  # leafy vegetables
    22: (((120, 170, 230, 0.60),), 0.4),  # fruit vegetables
    23: (((130, 165, 190, 0.55), (205, 240, 270, 0.55)), 0.3),  # other vegetables
    24: (((60, 120, 150, 0.80), (150, 185, 210, 0.75), (210, 245, 270, 0.70)), 0.1),  # alfalfa: cut thrice
    25: (((150, 220, 290, 0.20),), 0.5),  # fallow: weeds
}
SUMMER_MAIZE = ((170, 225, 270, 0.85),)  # after winter wheat where it is double-cropped
SHIFT_DAYS_PER_DEG = 4.0
LENGTH_PER_DEG = 0.01
JITTER_DAYS = 6.0


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def season_curves(days: np.ndarray, emergence, peak, harvest, cover, dry_share):
    """Green and dry cover (n, len(days)) of one season per field (arrays of n)."""
    t = days[None, :]
    e, p, h = (np.asarray(a, np.float64)[:, None] for a in (emergence, peak, harvest))
    rise = np.maximum((p - e) / 8.0, 1.0)
    fall = np.maximum((h - p) / 8.0, 1.0)
    up = _sigmoid((t - (e + p) / 2) / rise)
    down = _sigmoid((t - (p + h) / 2) / fall)
    green = np.asarray(cover)[:, None] * np.clip(up - down, 0, 1)
    lost = np.asarray(cover)[:, None] * up - green
    dry = np.where((t > p) & (t < h), np.asarray(dry_share)[:, None] * lost, 0.0)
    return green, dry


def field_cover(codes: np.ndarray, temperature: np.ndarray, t_opt: np.ndarray, double: np.ndarray,
                jitter: np.ndarray, cover_scale: np.ndarray, days: np.ndarray):  # fmt: skip
    """Green cover, dry cover and flooding (n_fields, n_days) of fields with leaf `codes`, their zone's
    temperature index, the crop's optimum, whether the field is double-cropped, and per-field randomness
    (jitter in days, cover scale)."""
    n = len(codes)
    green = np.zeros((n, len(days)))
    dry = np.zeros((n, len(days)))
    flooded = np.zeros((n, len(days)), bool)
    shift = SHIFT_DAYS_PER_DEG * (t_opt - temperature) + jitter
    stretch = 1.0 + LENGTH_PER_DEG * (temperature - t_opt)
    for code in np.unique(codes):
        rows = np.flatnonzero(codes == code)
        seasons, dry_share = CALENDARS[int(code)]
        plans = [(rows, seasons)]
        if code == 3:  # winter wheat then summer maize where double-cropped
            plans.append((rows[double[rows]], SUMMER_MAIZE))
        for sel, seas in plans:
            for e, p, h, c in seas:
                anchor = e + shift[sel]
                emergence = anchor
                peak = anchor + (p - e) * stretch[sel]
                harvest = anchor + (h - e) * stretch[sel]
                g, d = season_curves(days, emergence, peak, harvest, c * cover_scale[sel], np.full(len(sel), dry_share))
                green[sel] += g
                dry[sel] += d
                if code in (1, 2):
                    flooded[sel] |= (days[None, :] > emergence[:, None] - 20) & (
                        days[None, :] < emergence[:, None] + 30
                    )
    total = green + dry
    over = total > 1.0
    green = np.where(over, green / np.maximum(total, 1e-9), green)
    dry = np.where(over, dry / np.maximum(total, 1e-9), dry)
    return green, dry, flooded
