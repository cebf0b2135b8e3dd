"""95 % intervals of the pooled ratios of `mapper validate`, by a block bootstrap.

Every headline number of the validation is a pooled ratio over blocks, R = Σ num_i / Σ den_i:

    final-map (and each source's) pixel IoU     num = TP area,            den = TP + FP + FN area
    semantic correctness                         num = 1 if TP or TN else 0, den = 1
    PCS like for like (truth of the same blocks) num = mapped cropland,    den = true cropland

Pixels of one block are not independent draws (fields, clouds and the model's errors come in patches), so
the unit of resampling is the block: B = 2000 resamples of the n blocks drawn with replacement, each one's
pooled ratio recomputed from the per-block counts, and the 95 % interval is the 2.5th to 97.5th percentile of
the resampled ratios (the percentile interval; Efron & Tibshirani 1993, ch. 13). The generator is seeded
(seed 0), so the same blocks always give the same interval and the report is reproducible. A resample whose
denominator is 0 has no ratio and is left out. With fewer than 2 blocks there is no interval (None): one
block resampled is always itself, which would claim a certainty the sample does not have. `se` is the
standard deviation of the resampled ratios (the bootstrap standard error).

Like every percentile bootstrap it is approximate for few blocks, and a rate of exactly 0 or 1 (every block
correct) resamples to itself: a zero-width interval. That is why a decision on fewer than 16 validation
blocks is flagged as too small whatever its interval (validation/sample_size.py).

Pure numpy; the resamples are drawn in chunks so that a province of thousands of blocks needs no more than
a few tens of MB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
SEED = 0
CONFIDENCE = 0.95
MIN_BLOCKS = 2
_CHUNK_CELLS = 2_000_000  # resample indices held at once (16 MB of int64)
METHOD = (
    f"block bootstrap: {RESAMPLES} resamples of the blocks with replacement (seed {SEED}), the pooled ratio "
    "recomputed from the per-block counts, 2.5th-97.5th percentile"
)


@dataclass(frozen=True)
class Interval:
    """A bootstrap interval of a pooled ratio."""

    low: float
    high: float
    se: float  # standard deviation of the resampled ratios
    n: int  # blocks resampled

    def as_list(self) -> list[float]:
        return [self.low, self.high]

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def bootstrap_ratio(
    num, den, resamples: int = RESAMPLES, seed: int = SEED, confidence: float = CONFIDENCE
) -> Interval | None:
    """The block-bootstrap interval of Σnum / Σden (see the module docstring); None with fewer than 2 blocks
    or when no resample has a denominator above 0."""
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    if num.shape != den.shape or num.ndim != 1:
        raise ValueError(f"num and den must be 1-D arrays of one value per block; got {num.shape} and {den.shape}")
    n = len(num)
    if n < MIN_BLOCKS:
        return None
    return _percentile_interval(_resampled_ratios(num, den, resamples, np.random.default_rng(seed)), n, confidence)


def _percentile_interval(values: np.ndarray, n: int, confidence: float) -> Interval | None:
    """The percentile interval of the finite resampled values (None when there is none)."""
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return None
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(float(low), float(high), float(values.std(ddof=1)) if len(values) > 1 else 0.0, n)


def _resample_indices(n: int, resamples: int, rng: np.random.Generator):
    """(slice of the resamples, (k, n) block indices drawn with replacement), chunk by chunk."""
    rows = max(1, _CHUNK_CELLS // n)
    for start in range(0, resamples, rows):
        k = min(rows, resamples - start)
        yield slice(start, start + k), rng.integers(0, n, size=(k, n))


def _resampled_ratios(num: np.ndarray, den: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """The pooled ratio of each resample (NaN where its denominator is 0), drawn chunk by chunk."""
    out = np.empty(resamples)
    for at, idx in _resample_indices(len(num), resamples, rng):
        top, bottom = num[idx].sum(axis=1), den[idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[at] = np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1.0), np.nan)
    return out


def ci95(num, den) -> list[float] | None:
    """[low, high] of bootstrap_ratio, or None: the form the JSON report carries."""
    interval = bootstrap_ratio(num, den)
    return interval.as_list() if interval is not None else None


def half_width(ci: list[float] | tuple[float, float] | None) -> float | None:
    """Half the width of a [low, high] interval (None without one): the ± of a value."""
    if not ci or ci[0] is None or ci[1] is None:
        return None
    return (float(ci[1]) - float(ci[0])) / 2


def format_ci(value: float | None, ci, digits: int = 3) -> str:
    """A value with its interval, "0.912 (95 % CI 0.890-0.930)"; alone without one ("-" without a value)."""
    if value is None:
        return "-"
    text = f"{value:.{digits}f}"
    if ci and ci[0] is not None and ci[1] is not None:
        text += f" (95 % CI {ci[0]:.{digits}f}-{ci[1]:.{digits}f})"
    return text


def paired_gain_interval(
    current: tuple, candidate: tuple, closeness_to_one: bool = False, resamples: int = RESAMPLES, seed: int = SEED
) -> Interval | None:
    """The block-bootstrap 95 % interval of a candidate's gain over the current models on the same blocks.

    `current` and `candidate` are (num, den) per block, aligned (block i of one is block i of the other). Each
    resample draws the blocks once and recomputes both pooled ratios from it, so the spread of the blocks
    themselves — easy and hard blocks, which move both models alike — cancels out of the difference: the
    interval says whether *this* candidate is better or worse on *this* sample (on 76 real chips a median
    ±0.084 on IoU against the current model's own ±0.133, benchmarks/RESULTS.md 2026-12-07). The gain is
    R_candidate − R_current, or with `closeness_to_one` (PCS) |R_current − 1| − |R_candidate − 1|. None with
    fewer than 2 blocks or no resample where both ratios exist."""
    parts = [np.asarray(v, np.float64) for v in (*current, *candidate)]
    n = len(parts[0])
    if any(p.shape != (n,) for p in parts):
        raise ValueError("current and candidate need one num and one den per block, on the same blocks")
    if n < MIN_BLOCKS:
        return None
    gains = np.empty(resamples)
    for at, idx in _resample_indices(n, resamples, np.random.default_rng(seed)):
        with np.errstate(invalid="ignore", divide="ignore"):
            old = parts[0][idx].sum(axis=1) / parts[1][idx].sum(axis=1)
            new = parts[2][idx].sum(axis=1) / parts[3][idx].sum(axis=1)
            gains[at] = (np.abs(old - 1) - np.abs(new - 1)) if closeness_to_one else (new - old)
    return _percentile_interval(gains, n, CONFIDENCE)
