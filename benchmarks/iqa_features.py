"""IQA features of a full block: mapper.iqa (numba pass + OpenCV Sobel) and scikit-image, side by side.

The scikit-image reference here is also what tests/test_iqa_features.py checks mapper's features against:

- sharpness: np.median of skimage.filters.sobel(skimage.color.rgb2gray(rgb), mask=valid) over the valid
  mask eroded as sobel erodes it (3 × 3, border_value 0);
- hue / saturation / lightness: colorsys.rgb_to_hls vectorised in float64 numpy (scikit-image has no HLS;
  its rgb2hsv hue is the same angle, and the tests check that too), np.median over the valid pixels.

Each repeat scores the same mosaic; times are medians of the repeats, in ms, for the whole feature set and
for its two halves (sharpness; colour medians). Ratios are scikit-image time / mapper time; mapper's
compiled pass (grey image + colour histograms) feeds both halves, so each half's ratio charges all of it.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.common import median
from mapper.imagery.mosaic import BlockMosaic


# ---------------------------------------------------------------------------------------------- reference
def hls_reference(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """colorsys.rgb_to_hls of every pixel, vectorised (float64, same operations in the same order)."""
    x = rgb.astype(np.float64) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    maxc = np.maximum(np.maximum(r, g), b)
    minc = np.minimum(np.minimum(r, g), b)
    sumc = maxc + minc
    rangec = maxc - minc
    lightness = sumc / 2.0
    grey = minc == maxc
    with np.errstate(divide="ignore", invalid="ignore"):
        saturation = np.where(lightness <= 0.5, rangec / sumc, rangec / (2.0 - maxc - minc))
        rc = (maxc - r) / rangec
        gc = (maxc - g) / rangec
        bc = (maxc - b) / rangec
    h = np.where(r == maxc, bc - gc, np.where(g == maxc, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = (h / 6.0) % 1.0
    hue[grey] = 0.0
    saturation[grey] = 0.0
    return hue, lightness, saturation


def skimage_sharpness(rgb: np.ndarray, valid: np.ndarray) -> float:
    from scipy import ndimage as ndi
    from skimage.color import rgb2gray
    from skimage.filters import sobel

    magnitude = sobel(rgb2gray(rgb), mask=valid)
    inner = ndi.binary_erosion(valid, ndi.generate_binary_structure(2, 2), border_value=0)
    return float(np.median(magnitude[inner])) if inner.any() else float("nan")


def reference_colour_medians(rgb: np.ndarray, valid: np.ndarray) -> tuple[float, float, float]:
    if not valid.any():
        return (float("nan"),) * 3
    hue, lightness, saturation = hls_reference(rgb)
    return 360.0 * float(np.median(hue[valid])), float(np.median(saturation[valid])), float(np.median(lightness[valid]))


def skimage_quality_features(rgb: np.ndarray, valid: np.ndarray | None = None) -> dict[str, float]:
    """The reference for mapper.iqa.features.quality_features (same keys)."""
    valid = np.ones(rgb.shape[:2], bool) if valid is None else valid.astype(bool)
    hue, saturation, lightness = reference_colour_medians(rgb, valid)
    return {
        "sharpness": skimage_sharpness(rgb, valid),
        "hue_median": hue,
        "saturation_median": saturation,
        "lightness_median": lightness,
        "valid_fraction": float(valid.mean()) if valid.size else 0.0,
    }


# ---------------------------------------------------------------------------------------------- benchmark
def _round_robin(fns: dict, repeats: int) -> tuple[dict[str, float], dict]:
    """Median ms of each function; the functions take turns within each repeat, so that a busy spell on
    the (shared) machine hits all of them alike. Returns (ms by name, last result by name)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    results = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return {name: 1000 * median(t) for name, t in times.items()}, results


def _timings(rgb: np.ndarray, valid: np.ndarray, repeats: int) -> tuple[dict[str, float], dict]:
    from mapper.iqa import features as f

    f.quality_features(rgb[:8, :8], valid[:8, :8])  # warm-up: compiled pass and value tables
    all_valid = bool(valid.all())
    grey, pair_hist, hue_hist = f.colour_pass(rgb, valid)
    return _round_robin(
        {
            "mapper": lambda: f.quality_features(rgb, valid),
            "pass": lambda: f.colour_pass(rgb, valid),
            "sobel": lambda: f.sharpness(grey, valid, all_valid),
            "medians": lambda: f.colour_medians(pair_hist, hue_hist),
            "skimage": lambda: skimage_quality_features(rgb, valid),
            "skimage_sharpness": lambda: skimage_sharpness(rgb, valid),
            "skimage_colour": lambda: reference_colour_medians(rgb, valid),
        },
        repeats,
    )


def run(mosaics: list[tuple[str, BlockMosaic]], *, repeats: int = 5, log=print) -> list[dict]:
    """One row per (label, mosaic): mapper vs scikit-image, total and per half, and the largest differences."""
    rows = []
    for label, mosaic in mosaics:
        ms, res = _timings(mosaic.rgb, mosaic.valid, repeats)
        ours, ref = res["mapper"], res["skimage"]
        row = {
            "case": label,
            "pixels": int(mosaic.valid.size),
            "valid_fraction": ours["valid_fraction"],
            "sharpness": ours["sharpness"],
            "mapper_ms": ms["mapper"],
            "pass_ms": ms["pass"],
            "sobel_ms": ms["sobel"],
            "medians_ms": ms["medians"],
            "skimage_ms": ms["skimage"],
            "skimage_sharpness_ms": ms["skimage_sharpness"],
            "skimage_colour_ms": ms["skimage_colour"],
            "ratio": ms["skimage"] / ms["mapper"],
            # the compiled pass (grey image + colour histograms) feeds both halves: each half is charged all of it
            "ratio_sharpness": ms["skimage_sharpness"] / (ms["pass"] + ms["sobel"]),
            "ratio_colour": ms["skimage_colour"] / (ms["pass"] + ms["medians"]),
            "sharpness_rel_diff": abs(ours["sharpness"] - ref["sharpness"]) / max(abs(ref["sharpness"]), 1e-300),
            "hue_abs_diff": abs(ours["hue_median"] - ref["hue_median"]),
            "sl_abs_diff": max(
                abs(ours["saturation_median"] - ref["saturation_median"]),
                abs(ours["lightness_median"] - ref["lightness_median"]),
            ),
        }
        rows.append(row)
        log(
            f"  {label}: mapper {row['mapper_ms']:.0f} ms, scikit-image {row['skimage_ms']:.0f} ms "
            f"(× {row['ratio']:.1f}; sharpness × {row['ratio_sharpness']:.1f}, colour × {row['ratio_colour']:.1f})"
        )
    return rows
