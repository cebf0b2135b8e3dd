"""Pixel size as a property of imagery and models: ground sample distances and resampling between them.

A segmentation model learns shapes at one pixel size (its GSD, recorded in its checkpoint). A z16 block's
pixel is 2π·6378137/2²⁴ · cos φ m on the ground (2.39 m at the equator, 1.83 m at 40° N); a chip's is what
its importer declared. Training resamples every crop to the model's GSD and inference resamples an image to
it and the probability back, so a model sees the scale it learnt whatever the imagery.

Images are resampled bilinearly (with antialiasing when shrinking), label masks and validity by nearest
neighbour (a label is never blended), probabilities bilinearly.
"""

from __future__ import annotations

import math

import numpy as np

from mapper.grid.tilegrid import PixelWindow, global_pixel_to_lonlat, pixel_size

SAME_GSD = 0.01  # relative difference below which two pixel sizes are the same (no resampling)


def window_gsd_m(window: PixelWindow) -> float:
    """Ground metres per pixel of a Web-Mercator pixel window at its central latitude."""
    _, lat = global_pixel_to_lonlat((window.col0 + window.col1) / 2, (window.row0 + window.row1) / 2, window.zoom)
    return pixel_size(window.zoom) * math.cos(math.radians(float(lat)))


def block_gsd_m(block_id: str, zoom: int = 16) -> float:
    from mapper.grid.blocks import Block

    return window_gsd_m(Block.parse(block_id).window(zoom))


def needs_resampling(image_gsd: float | None, model_gsd: float | None) -> bool:
    return image_gsd is not None and model_gsd is not None and abs(image_gsd / model_gsd - 1) > SAME_GSD


def resampled_shape(shape: tuple[int, int], image_gsd: float, model_gsd: float) -> tuple[int, int]:
    """The (H, W) of an image of `shape` at `image_gsd` when resampled to `model_gsd` (at least 1 px)."""
    f = image_gsd / model_gsd
    return max(1, round(shape[0] * f)), max(1, round(shape[1] * f))


def _torch_resize(x: np.ndarray, shape: tuple[int, int], mode: str) -> np.ndarray:
    """(H, W, C) or (H, W) float array resized to `shape` with torch's interpolate."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    shrinking = shape[0] < x.shape[0] or shape[1] < x.shape[1]
    kw = {"align_corners": False, "antialias": shrinking} if mode == "bilinear" else {}
    out = F.interpolate(t, size=shape, mode=mode, **kw)[0]
    return (out[0] if x.ndim == 2 else out.permute(1, 2, 0)).numpy()


def resize_rgb(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> shape, bilinear."""
    if rgb.shape[:2] == tuple(shape):
        return rgb
    return np.clip(np.rint(_torch_resize(rgb, shape, "bilinear")), 0, 255).astype(np.uint8)


def resize_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) integer or bool array -> shape, nearest neighbour (pixel centres)."""
    if labels.shape == tuple(shape):
        return labels
    # nearest-exact samples at pixel centres: no half-pixel shift, unlike torch's legacy "nearest"
    return _torch_resize(labels.astype(np.float32), shape, "nearest-exact").astype(labels.dtype)


def resize_probability(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 (NaN allowed: no imagery) -> shape, bilinear over the valid pixels."""
    if prob.shape == tuple(shape):
        return prob
    valid = np.isfinite(prob)
    out = _torch_resize(np.where(valid, prob, 0.0), shape, "bilinear")
    weight = _torch_resize(valid.astype(np.float32), shape, "bilinear")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(weight > 1e-6, out / weight, np.nan)
    return out.astype(np.float32)
