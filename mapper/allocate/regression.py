"""The seed's probability layer: per crop, a random-forest regression of the crop's share of a cell from spatial
indicators, trained on the cells of a base map, so that cells the base map does not cover get a probability.

As the seed: samples only where the base map has the crop (at most 10,000 per crop, drawn at random with a
fixed seed), 100 trees, √(features) candidate features per split. The forest is XGBoost's random-forest mode
(mapper.croptype.baseline.forest_params: scikit-learn is not a dependency) with a squared-error objective.
Predictions are clipped at 0; eq. 1 rescales them to each unit's statistic.
"""

from __future__ import annotations

import numpy as np

from mapper.croptype.baseline import forest_params

N_TREES = 100
MAX_SAMPLES = 10_000
MIN_SAMPLES = 5  # fewer cells with the crop: no regression, the base map's own shares are used


def regression_probability(features: np.ndarray, base_share: np.ndarray, has_base: np.ndarray, seed: int = 0,
                           n_trees: int = N_TREES, nthread: int = 2) -> tuple[np.ndarray, list[dict]]:  # fmt: skip
    """(n, J) predicted shares and per crop {samples, fitted (bool)}. `base_share` is the crop's share of each
    cell where `has_base`, ignored elsewhere."""
    import xgboost as xgb

    n, n_crops = base_share.shape
    rng = np.random.default_rng(seed)
    out = np.zeros((n, n_crops))
    info = []
    all_x = xgb.DMatrix(features)
    for j in range(n_crops):
        rows = np.nonzero(has_base & (base_share[:, j] > 0))[0]
        if len(rows) > MAX_SAMPLES:
            rows = np.sort(rng.choice(rows, MAX_SAMPLES, replace=False))
        if len(rows) < MIN_SAMPLES:
            out[:, j] = np.where(has_base, base_share[:, j], 0.0)
            info.append({"samples": len(rows), "fitted": False})
            continue
        params = forest_params(features.shape[1], n_trees, 12, seed, nthread, "cpu")
        params.update(objective="reg:squarederror", min_child_weight=1.0)
        booster = xgb.train(params, xgb.DMatrix(features[rows], label=base_share[rows, j]), num_boost_round=1)
        out[:, j] = np.clip(booster.predict(all_x), 0.0, None)
        info.append({"samples": len(rows), "fitted": True})
    return out, info
