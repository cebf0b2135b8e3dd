"""Deterministic hashing and smooth noise over global pixel coordinates.

Everything in the world is a function of (world seed, global z16 pixel coordinates), so any tile, block
or point can be evaluated independently and adjacent tiles agree on their shared edges.
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


def hash_u64(*ints) -> np.ndarray:
    """SplitMix64-style mix of integer arrays (broadcast together) into uint64."""
    with np.errstate(over="ignore"):
        h = np.uint64(0x2545F4914F6CDD1D)
        for v in ints:
            h = (h ^ np.asarray(v).astype(np.int64).astype(np.uint64)) * _M1
            h ^= h >> np.uint64(31)
        h = (h ^ (h >> np.uint64(30))) * _M2
        h = (h ^ (h >> np.uint64(27))) * _M3
        return h ^ (h >> np.uint64(31))


def hash_unit(*ints) -> np.ndarray:
    """Uniform floats in [0, 1) from integer arrays."""
    return (hash_u64(*ints) >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def value_noise(x, y, spacing: float, salt: int) -> np.ndarray:
    """Value noise in [0, 1] with lattice `spacing` (pixels) at arbitrary points (float64 arrays)."""
    from mapper.world.kernels import value_noise_ufunc

    return value_noise_ufunc(np.asarray(x, np.float64), np.asarray(y, np.float64), float(spacing), int(salt))


def fbm(x, y, spacing: float, salt: int, octaves: int = 4, gain: float = 0.5) -> np.ndarray:
    """Fractal sum of value-noise octaves, normalised to [0, 1]."""
    total = np.zeros(np.broadcast(np.asarray(x), np.asarray(y)).shape)
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        total += amp * value_noise(x, y, spacing / 2**o, salt * 31 + o)
        norm += amp
        amp *= gain
    return total / norm


LATTICE = 16  # smooth fields are evaluated every 16 px and interpolated bilinearly in between


def lattice_range(coords: np.ndarray) -> tuple[int, int]:
    """(first lattice index, count) covering the pixel centres `coords` for interpolation."""
    first = int(np.floor((coords.min() + 0.5) / LATTICE))
    last = int(np.floor((coords.max() + 0.5) / LATTICE)) + 1
    return first, last - first + 1


def interpolate_fields(lattice_values: np.ndarray, cols: np.ndarray, rows: np.ndarray, lc0: int, lr0: int):
    """Bilinear interpolation of (F, nr, nc) lattice stacks onto the window: (F, H, W) float32."""
    from mapper.world.kernels import interpolate_lattice

    values = np.ascontiguousarray(lattice_values, np.float32)
    out = np.empty((values.shape[0], len(rows), len(cols)), np.float32)
    interpolate_lattice(values, np.asarray(cols, np.int64), np.asarray(rows, np.int64), LATTICE, lc0, lr0, out)
    return out
