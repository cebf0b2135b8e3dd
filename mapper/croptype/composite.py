"""Composite an S2Stack onto the series' time steps: per step the mean of the clear observations near it,
gaps filled by linear interpolation over time, pixel by pixel.

A step takes the valid observations whose day of year lies in [step − half_window, step + half_window);
half_window is one number or one per step (calendar months: mapper.croptype.formats.months).
A step without one is interpolated between the pixel's nearest valid steps before and after (at the edges:
the nearest valid step's value) and flagged `filled`. A pixel without any valid step is `all_cloud` and NaN.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from mapper.croptype import series
from mapper.croptype.s2read import S2Stack

log = logging.getLogger(__name__)


class CompositeError(ValueError):
    """A stack cannot be composited; the message says why and what to change."""


@dataclass(frozen=True)
class Composite:
    values: np.ndarray  # (B, T, H, W) float32 reflectance; NaN where all_cloud
    n_obs: np.ndarray  # (T, H, W) int16: clear observations averaged into each step
    filled: np.ndarray  # (T, H, W) bool: no clear observation, value interpolated
    all_cloud: np.ndarray  # (H, W) bool: no clear observation at any step
    steps: np.ndarray  # (T,) days of year
    bands: tuple[str, ...]
    crs: CRS
    transform: Affine

    @property
    def all_cloud_share(self) -> float:
        return float(self.all_cloud.mean()) if self.all_cloud.size else 0.0

    def describe(self) -> str:
        return (f"{len(self.steps)} steps × {len(self.bands)} bands over {self.all_cloud.shape[1]} × "
                f"{self.all_cloud.shape[0]} pixels; {self.filled[:, ~self.all_cloud].mean():.0%} of steps "
                f"interpolated, {self.all_cloud_share:.1%} of pixels all cloud")  # fmt: skip


def _check(stack: S2Stack, steps: np.ndarray, half_window: float) -> None:
    if steps.ndim != 1 or steps.size == 0 or np.any(np.diff(steps) <= 0):
        raise CompositeError(f"steps must be ascending days of year, got {steps}")
    half = np.asarray(half_window, np.float64)
    if half.shape not in ((), steps.shape) or np.any(half <= 0):
        raise CompositeError(f"half_window must be positive days, one number or one per step; got {half_window}")
    if not stack.valid.any():
        mask = "SCL" if stack.cloud_masked else "nodata 0; no SCL given"
        raise CompositeError(
            f"all {len(stack.dates)} dates are cloud or nodata over this area ({mask}): choose other dates or a "
            "larger window"
        )


def _step_means(stack: S2Stack, steps: np.ndarray, half_window: float) -> tuple[np.ndarray, np.ndarray]:
    """(B, T, H, W) means of the clear observations in each step's window (0 where none) and their counts."""
    n_bands, (h, w) = len(stack.bands), stack.shape
    values = np.zeros((n_bands, len(steps), h, w), np.float32)
    n_obs = np.zeros((len(steps), h, w), np.int16)
    doy = stack.days_of_year
    halves = np.broadcast_to(np.asarray(half_window, np.float64), steps.shape)
    for t, (step, half) in enumerate(zip(steps, halves, strict=True)):
        for d in np.flatnonzero((doy >= step - half) & (doy < step + half)):
            clear = stack.valid[d]
            values[:, t] += stack.data[d] * clear  # DN sums stay exact in float32 (< 2**24)
            n_obs[t] += clear
    values /= np.maximum(n_obs, 1) * np.float32(series.SCALE)
    return values, n_obs


def _fill_gaps(values: np.ndarray, has: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Interpolate, in place, each pixel's steps without an observation; returns the `filled` mask."""
    n = has.shape[0]
    t = np.arange(n, dtype=np.int16)[:, None, None]
    prev = np.maximum.accumulate(np.where(has, t, np.int16(-1)), axis=0)
    after = np.where(has, t, np.int16(n))[::-1]
    nxt = np.minimum.accumulate(after, axis=0)[::-1]
    lo = np.where(prev >= 0, prev, nxt).clip(0, n - 1)  # before the first valid step: take it
    hi = np.where(nxt < n, nxt, prev).clip(0, n - 1)  # after the last one: take it
    day = steps.astype(np.float32)
    span = day[hi] - day[lo]
    weight = np.where(span > 0, (day[:, None, None] - day[lo]) / np.where(span > 0, span, 1), 0).astype(np.float32)
    filled = ~has & has.any(axis=0)
    for b in range(values.shape[0]):  # one band at a time keeps the temporaries small
        v = values[b]
        below, above = np.take_along_axis(v, lo, 0), np.take_along_axis(v, hi, 0)
        values[b] = np.where(filled, below + (above - below) * weight, v)
    return filled


def interpolate_gaps(values: np.ndarray, has: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """The compositor's gap filling for any (B, T, H, W) values with (T, H, W) `has`: fills in place, returns
    the `filled` mask (datasets whose months are missing use it: mapper.croptype.formats.ccd)."""
    return _fill_gaps(values, has, np.asarray(steps, np.float64))


def composite(stack: S2Stack, steps=series.STEP_DAYS_OF_YEAR, half_window=series.STEP_DAYS / 2) -> Composite:
    """The stack's reflectance on `steps` (days of year); see the module doc for the rules."""
    steps = np.asarray(steps, np.float64)
    _check(stack, steps, half_window)
    values, n_obs = _step_means(stack, steps, half_window)
    has = n_obs > 0
    if not has.any():
        raise CompositeError(
            f"none of the clear observations ({stack.dates[0]} … {stack.dates[-1]}) falls within the steps' windows "
            f"(days {steps[0] - np.max(half_window):g} to {steps[-1] + np.max(half_window):g}); choose dates within "
            "the season"
        )
    filled = _fill_gaps(values, has, steps)
    all_cloud = ~has.any(axis=0)
    values[:, :, all_cloud] = np.nan
    out = Composite(values, n_obs, filled, all_cloud, steps, stack.bands, stack.crs, stack.transform)
    if all_cloud.any():
        log.info("%.1f%% of pixels have no clear observation in the season (all cloud)", 100 * out.all_cloud_share)
    return out


def composite_bands(stack: S2Stack, bands, **kwargs) -> Composite:
    """The composite of `bands` only, in that order (a model's band list); an error lists any missing band."""
    return composite(stack.select(bands), **kwargs)
