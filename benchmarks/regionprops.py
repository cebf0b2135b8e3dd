"""Region properties of a block's cropland mask: mapper.features.regionprops and scikit-image, side by side.

The scikit-image reference (also what tests/test_regionprops.py checks block_properties against):
`regionprops_table(label(m, connectivity=2), properties=("area", "solidity", "euler_number"))` for the
per-component means, `convex_hull_image(m)` for the total solidity, `euler_number(m, connectivity=2)` for
the total Euler number, and numpy for the ground areas and the edge length (m = mask & valid).

The mask is a realistic stand-in for a segmentation: smoothed noise thresholded at its median, with a
coarser field mixed in so that the density varies across the block (≈ 3,000 components of ~0.5 ha, with
holes, on a 2534 × 2330 Guangdong block). Times are medians of the repeats, in ms; the two sides take turns
within each repeat so that a busy spell on the (shared) machine hits both alike.
"""

from __future__ import annotations

import math
import time
import warnings

import cv2
import numpy as np

from benchmarks.common import median
from mapper.grid.area import row_pixel_areas
from mapper.grid.tilegrid import PixelWindow

_M2_PER_HA = 10_000.0


# ------------------------------------------------------------------------------------------------- input
def synthetic_mask(shape: tuple[int, int], seed: int = 0, sigma: float = 3.5, quantile: float = 0.5) -> np.ndarray:
    """A uint8 cropland mask of blobby parcels with holes: Gaussian-smoothed noise (σ px) plus a 6σ field."""
    rng = np.random.default_rng(seed)
    fine = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma)
    coarse = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 6 * sigma)
    field = fine / fine.std() + 0.8 * coarse / coarse.std()
    return (field > np.quantile(field, quantile)).astype(np.uint8)


def default_cases(window: PixelWindow, seed: int = 0) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]]:
    """(label, mask, row areas, valid): the synthetic mask on a block's grid, all valid and with nodata."""
    mask = synthetic_mask(window.shape, seed)
    areas = row_pixel_areas(window)
    valid = np.ones(window.shape, bool)
    valid[: window.shape[0] // 3, : window.shape[1] // 2] = False  # a missing corner of tiles
    return [("synthetic", mask, areas, None), ("synthetic, 1/6 nodata", mask, areas, valid)]


# --------------------------------------------------------------------------------------------- reference
def skimage_parts(mask: np.ndarray, valid: np.ndarray | None = None) -> dict:
    """The scikit-image calls: labels, the per-component table, the convex hull of all cropland, Euler."""
    from skimage.measure import euler_number, label, regionprops_table
    from skimage.morphology import convex_hull_image

    m = mask.astype(bool) if valid is None else mask.astype(bool) & valid.astype(bool)
    labels = label(m, connectivity=2)
    table = regionprops_table(labels, properties=("area", "solidity", "euler_number"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "entirely zero" for an empty mask
        hull_px = int(convex_hull_image(m).sum()) if m.any() else 0
    return {"m": m, "table": table, "hull_px": hull_px, "euler_total": int(euler_number(m, connectivity=2))}


def numpy_area_and_edges(m: np.ndarray, valid: np.ndarray | None, areas: np.ndarray) -> dict:
    """Ground areas and the cropland edge length (sides between cropland and valid non-cropland pixels)."""
    v = np.ones(m.shape, bool) if valid is None else valid.astype(bool)
    side = np.sqrt(areas)
    across = ((m[:, 1:] != m[:, :-1]) & v[:, 1:] & v[:, :-1]).sum(axis=1)
    down = ((m[1:] != m[:-1]) & v[1:] & v[:-1]).sum(axis=1)
    edge_m = float(across @ side + down @ ((side[:-1] + side[1:]) / 2))
    cropland_m2 = float(m.sum(axis=1) @ areas)
    valid_m2 = float(v.sum(axis=1) @ areas)
    if valid_m2 == 0:
        return {"cropland_m2": 0.0, "valid_m2": 0.0, "area_fraction": math.nan, "edge_density_m_per_ha": math.nan}
    return {
        "cropland_m2": cropland_m2,
        "valid_m2": valid_m2,
        "area_fraction": cropland_m2 / valid_m2,
        "edge_density_m_per_ha": edge_m / (valid_m2 / _M2_PER_HA),
    }


def skimage_block_properties(mask: np.ndarray, areas: np.ndarray, valid: np.ndarray | None = None) -> dict:
    """The reference for mapper.features.regionprops.block_properties (same keys and empty-mask values)."""
    parts = skimage_parts(mask, valid)
    m, table = parts["m"], parts["table"]
    n = len(table["area"])
    out = numpy_area_and_edges(m, valid, areas)
    out.update(
        n_components=n,
        solidity_mean=float(np.mean(table["solidity"])) if n else math.nan,
        solidity_total=int(m.sum()) / parts["hull_px"] if n else math.nan,
        euler_mean=float(np.mean(table["euler_number"])) if n else math.nan,
        euler_total=parts["euler_total"],
    )
    return out


# --------------------------------------------------------------------------------------------- benchmark
def _round_robin(fns: dict, repeats: int) -> tuple[dict[str, float], dict]:
    """Median ms of each function, taking turns within each repeat; and the last result of each."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    results = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return {name: 1000 * median(t) for name, t in times.items()}, results


def _max_rel_diff(ours: dict, ref: dict) -> float:
    worst = 0.0
    for key, value in ref.items():
        if isinstance(value, float) and math.isnan(value):
            worst = worst if math.isnan(ours[key]) else math.inf
        else:
            worst = max(worst, abs(ours[key] - value) / max(abs(value), 1e-300))
    return worst


def run(cases, *, repeats: int = 5, log=print) -> list[dict]:
    """One row per (label, mask, row areas, valid): mapper vs scikit-image, and the largest difference."""
    from mapper.features.regionprops import block_properties

    rows = []
    block_properties(np.zeros((4, 4), np.uint8), np.ones(4))  # warm-up: compiled kernels
    for label, mask, areas, valid in cases:
        ms, res = _round_robin(
            {
                "mapper": lambda mask=mask, areas=areas, valid=valid: block_properties(mask, areas, valid),
                "skimage": lambda mask=mask, areas=areas, valid=valid: skimage_block_properties(mask, areas, valid),
            },
            repeats,
        )
        ours = res["mapper"]
        row = {
            "case": label,
            "shape": f"{mask.shape[0]} × {mask.shape[1]}",
            "valid_fraction": 1.0 if valid is None else float(np.mean(valid)),
            "components": ours["n_components"],
            "euler_total": ours["euler_total"],
            "mapper_ms": ms["mapper"],
            "skimage_ms": ms["skimage"],
            "ratio": ms["skimage"] / ms["mapper"],
            "max_rel_diff": _max_rel_diff(ours, res["skimage"]),
        }
        rows.append(row)
        log(
            f"  {label}: {row['components']} components, mapper {row['mapper_ms']:.0f} ms, scikit-image "
            f"{row['skimage_ms']:.0f} ms (× {row['ratio']:.1f}), max rel. diff {row['max_rel_diff']:.1e}"
        )
    return rows
