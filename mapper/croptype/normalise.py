"""Per-band normalisation of (N, bands, T) series: the mean and std of each band over every sample and step
of the training set, stored in the checkpoint as {"mean": [...], "std": [...]} and applied before the net."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

MIN_STD = 1e-6  # a constant band (padding, a dead detector) must not divide by zero


def band_statistics(x: np.ndarray) -> dict[str, list[float]]:
    x = np.asarray(x, np.float64)
    if x.ndim != 3 or not len(x):
        raise ValueError(f"band statistics need a non-empty (N, bands, T) array, got shape {x.shape}")
    std = np.maximum(x.std(axis=(0, 2)), MIN_STD)
    return {"mean": x.mean(axis=(0, 2)).tolist(), "std": std.tolist()}


def normalise(x: np.ndarray, stats: Mapping[str, list[float]]) -> np.ndarray:
    """(x − mean) / std per band, float32."""
    x = np.asarray(x, np.float32)
    mean = np.asarray(stats["mean"], np.float32)
    std = np.asarray(stats["std"], np.float32)
    if x.ndim != 3 or x.shape[1] != len(mean):
        raise ValueError(f"series of shape {x.shape} do not have the {len(mean)} bands of the normalisation")
    return (x - mean[None, :, None]) / std[None, :, None]
