"""CropNet's on-the-fly augmentations of (N, bands, T) reflectance batches: phenology that comes earlier or
later (time shift), faster or slower (time scaling), and a reflectance level that drifts through the season
(magnitude warp). Each is an exact function of explicit parameters; `augment_batch` draws them per sample.

Time is in days of year on the series' step grid. A transformed series is read from the original at query
days by linear interpolation; a query before the first or after the last step takes the edge value, so a
shift of exactly one step (5 days) is a roll with the edge repeated. With a `window` (the model's steps, inside
a longer series — a full season around the window) the output is on the window's steps and the queries read
the real observations outside it (re-cropping, as CropNet's code re-slices its full-year series); only queries
beyond the whole series take its edge values.

Each augmentation applies to a sample with its own probability (p_shift, p_scale, p_warp): mapper's variant
applies all three to every sample; CropNet's published code uses 1, 0.5 and 0.25 (on copies, the originals
kept: mapper.croptype.train). A time shift and a scaling drawn together are one transform, not two that
overwrite each other as in the published code.

The magnitude curve is a natural cubic spline through a few evenly spaced knots (written here: scipy is not
a dependency of the package).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mapper.croptype.series import STEP_DAYS_OF_YEAR


@dataclass(frozen=True)
class SeriesAugment:
    shift_days: float = 50.0  # shift s ~ U(−shift_days, +shift_days); 0 turns it off
    scale: float = 0.2  # stretch factor k ~ U(1 − scale, 1 + scale); 0 turns it off
    warp_sigma: float = 0.1  # knot values ~ N(1, warp_sigma); 0 turns it off
    warp_knots: int = 5
    p_shift: float = 1.0  # probability that a sample is shifted (else shift 0)
    p_scale: float = 1.0  # … scaled (else factor 1)
    p_warp: float = 1.0  # … warped (else every knot 1)


def _per_sample(value, n: int) -> np.ndarray:
    a = np.asarray(value, np.float64)
    if a.ndim == 0:
        return np.full(n, float(a))
    if a.shape != (n,):
        raise ValueError(f"expected a scalar or one value per sample ({n}), got shape {a.shape}")
    return a


def _check_batch(x: np.ndarray, days: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[2] != len(days):
        raise ValueError(f"augmentations take (N, bands, {len(days)}) batches, got shape {x.shape}")
    return x


def resample(x: np.ndarray, query_days: np.ndarray, days: np.ndarray = STEP_DAYS_OF_YEAR) -> np.ndarray:
    """x (N, B, T) on `days` read at query_days (N, T): linear between steps, clamped to the edge values."""
    x = _check_batch(x, days)
    days = np.asarray(days, np.float64)
    q = np.clip(np.asarray(query_days, np.float64), days[0], days[-1])
    right = np.clip(np.searchsorted(days, q, side="right"), 1, len(days) - 1)
    left = right - 1
    w = ((q - days[left]) / (days[right] - days[left]))[:, :, None]
    rows = np.arange(len(x))[:, None]
    lo, hi = x[rows, :, left], x[rows, :, right]  # (N, T, B): numpy puts the advanced indices first
    out = (1.0 - w) * lo + w * hi  # not lo + w·(hi − lo): exact at w = 0 and at w = 1
    return out.transpose(0, 2, 1).astype(x.dtype, copy=False)


def time_transform(x: np.ndarray, shift_days=0.0, factor=1.0, days: np.ndarray = STEP_DAYS_OF_YEAR,
                   window: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Stretch by `factor` about the window centre, then shift by `shift_days` (scalars or per sample), in one
    interpolation: x'(t) = x(c + (t − c) / k − s) for t on `window` (default: all of `days`), read from the
    whole series on `days`."""
    x = _check_batch(x, days)
    days = np.asarray(days, np.float64)
    out = days if window is None else np.asarray(window, np.float64)
    s, k = _per_sample(shift_days, len(x)), _per_sample(factor, len(x))
    if (k <= 0).any():
        raise ValueError("time scale factors must be positive")
    c = 0.5 * (out[0] + out[-1])
    query = c + (out[None, :] - c) / k[:, None] - s[:, None]
    return resample(x, query, days)


def crop_window(x: np.ndarray, days: np.ndarray, window: np.ndarray | None) -> np.ndarray:
    """The steps of `window` (days that are steps of `days`) of x (N, B, T): the unaugmented model input."""
    if window is None:
        return x
    idx = np.searchsorted(np.asarray(days, np.float64), np.asarray(window, np.float64))
    if (idx >= len(days)).any() or not np.array_equal(np.asarray(days)[np.minimum(idx, len(days) - 1)], window):
        raise ValueError(f"window days {list(window)[:3]}… are not steps of the series ({list(days)[:3]}…)")
    return x[:, :, idx]


def time_shift(x: np.ndarray, shift_days, days: np.ndarray = STEP_DAYS_OF_YEAR) -> np.ndarray:
    """x'(t) = x(t − s): phenology s days later (s > 0) or earlier (s < 0)."""
    return time_transform(x, shift_days, 1.0, days)


def time_scale(x: np.ndarray, factor, days: np.ndarray = STEP_DAYS_OF_YEAR) -> np.ndarray:
    """Time stretched by k about the window centre (k > 1: a slower season); k = 1 is the identity."""
    return time_transform(x, 0.0, factor, days)


# ---------------------------------------------------------------------------------------------- magnitude
def knot_positions(n_knots: int, n_steps: int) -> np.ndarray:
    """Evenly spaced knot times in step units, first and last on the window's edges."""
    return np.linspace(0.0, n_steps - 1.0, n_knots)


def natural_spline(knot_x: np.ndarray, knot_y: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Natural cubic spline (zero curvature at both ends) through (knot_x, knot_y[i]) for every row i of
    knot_y (M, K), evaluated at `at` -> (M, len(at)). Exact at the knots."""
    xk = np.asarray(knot_x, np.float64)
    yk = np.atleast_2d(np.asarray(knot_y, np.float64))
    k = len(xk)
    if k < 2 or yk.shape[1] != k or (np.diff(xk) <= 0).any():
        raise ValueError("a spline needs at least two increasing knot times and one value per knot")
    h = np.diff(xk)
    m = np.zeros_like(yk)  # second derivatives at the knots; 0 at both ends (natural)
    if k > 2:
        # The tridiagonal continuity system of the inner knots; tiny (K − 2), the same for every row.
        a = np.diag(2.0 * (h[:-1] + h[1:])) + np.diag(h[1:-1], 1) + np.diag(h[1:-1], -1)
        slopes = np.diff(yk, axis=1) / h
        rhs = 6.0 * np.diff(slopes, axis=1)
        m[:, 1:-1] = np.linalg.solve(a, rhs.T).T
    t = np.asarray(at, np.float64)
    i = np.clip(np.searchsorted(xk, t, side="right") - 1, 0, k - 2)
    hi = h[i]
    u, v = (xk[i + 1] - t) / hi, (t - xk[i]) / hi  # barycentric weights of the interval's two knots
    return u * yk[:, i] + v * yk[:, i + 1] + ((u**3 - u) * m[:, i] + (v**3 - v) * m[:, i + 1]) * hi**2 / 6.0


def warp_curve(knots: np.ndarray, n_steps: int, at: np.ndarray | None = None) -> np.ndarray:
    """The multiplicative curve (M, n_steps) through knot values (M, K) at `knot_positions`; `at` evaluates it
    at other step positions instead."""
    knots = np.atleast_2d(np.asarray(knots, np.float64))
    where = np.arange(n_steps, dtype=np.float64) if at is None else at
    return natural_spline(knot_positions(knots.shape[1], n_steps), knots, where)


def magnitude_warp(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Every band of sample i times the same curve through knots[i] (one (K,) row is used for all samples)."""
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"magnitude_warp takes (N, bands, T) batches, got shape {x.shape}")
    knots = np.atleast_2d(np.asarray(knots, np.float64))
    if len(knots) not in (1, len(x)):
        raise ValueError(f"knots must be (K,) or (N={len(x)}, K), got {knots.shape}")
    curve = warp_curve(knots, x.shape[2])
    return (x * curve[:, None, :]).astype(x.dtype, copy=False)


# ---------------------------------------------------------------------------------------------- random
def draw_parameters(n: int, rng: np.random.Generator, cfg: SeriesAugment) -> dict[str, np.ndarray]:
    """Per-sample shift (days), scale factor and warp knots; a sample that does not draw an augmentation (its
    probability) gets the identity: shift 0, factor 1, knots 1. Probabilities of 1 draw nothing more, so the
    random stream is the one of all augmentations always on."""
    out = {
        "shift_days": rng.uniform(-cfg.shift_days, cfg.shift_days, n),
        "factor": rng.uniform(1.0 - cfg.scale, 1.0 + cfg.scale, n),
        "knots": rng.normal(1.0, cfg.warp_sigma, (n, cfg.warp_knots)),
    }
    for key, p, identity in (("shift_days", cfg.p_shift, 0.0), ("factor", cfg.p_scale, 1.0),
                             ("knots", cfg.p_warp, 1.0)):  # fmt: skip
        if not 0 <= p <= 1:
            raise ValueError(f"augmentation probability {p} must be in [0, 1]")
        if p < 1:
            out[key][rng.random(n) >= p] = identity
    return out


def augment_batch(
    x: np.ndarray, rng: np.random.Generator, cfg: SeriesAugment | None = None, days: np.ndarray = STEP_DAYS_OF_YEAR,
    window: np.ndarray | None = None,
) -> np.ndarray:
    """A randomly augmented copy of the batch: time shift and scaling, then magnitude warp, drawn per sample;
    on `window`'s steps (re-cropped from the longer series) when given."""
    cfg = cfg or SeriesAugment()
    if not 0 <= cfg.scale < 1:
        raise ValueError(f"scale {cfg.scale} must be in [0, 1): factors 1 ± scale must stay positive")
    p = draw_parameters(len(x), rng, cfg)
    out = time_transform(x, p["shift_days"], p["factor"], days, window)
    return magnitude_warp(out, p["knots"]) if cfg.warp_sigma > 0 else out
