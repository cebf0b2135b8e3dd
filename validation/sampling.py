"""Design-based estimate of a province's cropland from a sample of its blocks (the ratio estimator).

A run over a sample of a province (`mapper run --max-blocks N`) maps n of the province's N blocks. Block i
of the sample has y_i = mapped cropland inside the province (m²) and x_i = its land inside the province
(m²); the province's land area X = Σ x over all N blocks is known (the geodesic area of its polygon). The
ratio estimator (Cochran 1977, Sampling Techniques, §6.2-6.4; Lohr 2019, Sampling, §4.1) is

    R̂ = Σ y_i / Σ x_i                                   cropland share of the sampled land
    Ŷ = X · R̂                                           the province's cropland
    s_e² = Σ (y_i − R̂ x_i)² / (n − 1)                    residual variance about the ratio line
    V̂(Ŷ) = X² · (1 − n/N) · s_e² / (n · x̄²)              x̄ = Σ x_i / n;  (1 − n/N) is the finite-population
                                                          correction
    95 % interval: Ŷ ± t(0.975, n − 1) · √V̂(Ŷ)

It beats N × (mean cropland per block) because a block's cropland moves with its land inside the province
(border blocks hold little of both): the residuals y − R̂x are smaller than the deviations y − ȳ. Like
every ratio estimator it is slightly biased (of order 1/n) and its interval is approximate; with a few dozen
blocks the interval's coverage is close to 95 % (tests/test_validate.py checks it by simulation).

**The sample is treated as a simple random sample.** `mapper run --max-blocks` takes a spread (systematic)
sample: every (N/n)-th block in planning order, rows south to north. For a systematic sample there is no
unbiased variance estimator; the simple-random-sample formula above is the usual stand-in, and it is
conservative (overstates the variance) when the cropland share trends smoothly across the province, as
land cover does. It could understate the variance only if the cropland varied periodically in step with
the sampling interval.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

CONFIDENCE = 0.95
METHOD = (
    "ratio estimator over the land inside the province: total = A_province × Σcropland / Σland of the mapped "
    "blocks; variance A² (1 − n/N) s_e² / (n x̄²), 95 % interval with Student's t (n − 1 df); the spread "
    "(systematic) sample is treated as a simple random sample, which is conservative for a smooth trend"
)


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile: exact for 1 and 2 degrees of freedom, else the Cornish-Fisher expansion of
    Abramowitz & Stegun 26.7.5 (error below 0.005 at 3 df and below 1e-4 from 10 df; numpy and the standard
    library have no t distribution, and scipy is not a runtime dependency)."""
    if not 0 < p < 1:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    x = NormalDist().inv_cdf(p)
    g1 = (x**3 + x) / 4
    g2 = (5 * x**5 + 16 * x**3 + 3 * x) / 96
    g3 = (3 * x**7 + 19 * x**5 + 17 * x**3 - 15 * x) / 384
    g4 = (79 * x**9 + 776 * x**7 + 1482 * x**5 - 1920 * x**3 - 945 * x) / 92160
    return x + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


@dataclass(frozen=True)
class RatioEstimate:
    """The ratio estimate of a population total (see the module docstring); areas in the inputs' unit."""

    n: int  # blocks in the sample
    population: int  # N, blocks in the population
    ratio: float  # R̂: cropland share of the sampled land
    total: float  # Ŷ = X R̂
    se: float | None  # √V̂(Ŷ); None with fewer than 2 blocks
    ci95: tuple[float, float] | None  # Ŷ ± t·se, the lower end clipped at 0; None without se
    fpc: float  # 1 − n/N

    def as_dict(self) -> dict:
        out = asdict(self)
        out["ci95"] = list(self.ci95) if self.ci95 is not None else None
        return out


def ratio_estimate(y, x, population_x: float, population_n: int) -> RatioEstimate | None:
    """Ratio estimate of Σy over the population from a sample (y_i, x_i) of `population_n` units whose x
    sums to `population_x`. None when the sample has no x (nothing to scale from).

    y, x: 1-D arrays of one value per sampled unit (cropland and land inside the province, m²).
    """
    y = np.asarray(y, np.float64)
    x = np.asarray(x, np.float64)
    if y.shape != x.shape or y.ndim != 1:
        raise ValueError(f"y and x must be 1-D arrays of the same length; got {y.shape} and {x.shape}")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(x))) or np.any(x < 0) or np.any(y < 0):
        raise ValueError("y and x must be finite areas >= 0")
    n = len(y)
    if population_n < n:
        raise ValueError(f"the sample has {n} units but the population only {population_n}")
    if n == 0 or x.sum() <= 0:
        return None
    ratio = float(y.sum() / x.sum())
    total = float(population_x) * ratio
    fpc = 1.0 - n / population_n
    if n < 2:
        return RatioEstimate(n, int(population_n), ratio, total, None, None, fpc)
    residual = y - ratio * x
    s2 = float(residual @ residual) / (n - 1)
    x_mean = float(x.mean())
    var = float(population_x) ** 2 * fpc * s2 / (n * x_mean**2)
    se = math.sqrt(max(var, 0.0))
    half = t_quantile(0.5 + CONFIDENCE / 2, n - 1) * se
    return RatioEstimate(n, int(population_n), ratio, total, se, (max(total - half, 0.0), total + half), fpc)
