"""Colours and textures: turn a LandscapePatch into satellite-like RGB for one rendering and season.

Confusions are deliberate, as in real imagery: grassland, orchards and forest share the greens of crops;
fallow fields and tilled soil look like bare land; flooded paddies look like water. What separates them is
structure — straight field edges, crop rows, tree-crown grids — which a segmentation model must learn.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from mapper.world import kernels
from mapper.world.landscape import Cover, LandscapePatch

N_VARIANTS = 8
TEXTURE = 512


def _palette() -> np.ndarray:
    """(season 0=planting/1=non-planting, cover, variant, rgb) base colours in [0, 1]."""
    base = {
        # cover: (planting colours, non-planting colours); variants interpolate between the listed ends
        Cover.WATER: ([(0.10, 0.17, 0.20), (0.24, 0.30, 0.27)], [(0.12, 0.18, 0.21), (0.26, 0.30, 0.28)]),
        Cover.ROAD: ([(0.60, 0.58, 0.54), (0.56, 0.48, 0.38)], [(0.62, 0.60, 0.56), (0.58, 0.50, 0.40)]),
        Cover.VILLAGE: ([(0.46, 0.44, 0.40), (0.52, 0.48, 0.42)], [(0.48, 0.45, 0.40), (0.54, 0.49, 0.42)]),
        Cover.FOREST: ([(0.13, 0.24, 0.11), (0.20, 0.32, 0.15)], [(0.14, 0.22, 0.12), (0.24, 0.28, 0.16)]),
        Cover.ORCHARD: ([(0.44, 0.46, 0.30), (0.52, 0.50, 0.36)], [(0.50, 0.46, 0.34), (0.56, 0.50, 0.38)]),
        Cover.GRASS: ([(0.30, 0.44, 0.20), (0.45, 0.52, 0.27)], [(0.52, 0.50, 0.32), (0.64, 0.58, 0.40)]),
        Cover.BARE: ([(0.50, 0.43, 0.33), (0.66, 0.58, 0.47)], [(0.50, 0.43, 0.33), (0.66, 0.58, 0.47)]),
        Cover.CROP: ([(0.22, 0.40, 0.14), (0.52, 0.55, 0.25)], [(0.46, 0.38, 0.28), (0.64, 0.58, 0.42)]),
        Cover.FALLOW: ([(0.50, 0.44, 0.33), (0.62, 0.55, 0.42)], [(0.48, 0.41, 0.31), (0.62, 0.55, 0.43)]),
        Cover.PADDY: ([(0.24, 0.44, 0.20), (0.36, 0.52, 0.24)], [(0.22, 0.30, 0.32), (0.52, 0.48, 0.36)]),
        Cover.TERRACE: ([(0.26, 0.42, 0.16), (0.48, 0.52, 0.26)], [(0.48, 0.40, 0.30), (0.60, 0.52, 0.38)]),
    }
    pal = np.zeros((2, len(Cover), N_VARIANTS, 3), np.float32)
    t = np.linspace(0, 1, N_VARIANTS, dtype=np.float32)[:, None]
    for cover, seasons in base.items():
        for season, (lo, hi) in enumerate(seasons):
            pal[season, cover] = np.array(lo, np.float32) * (1 - t) + np.array(hi, np.float32) * t
    return pal


PALETTE = _palette()
# Per cover: amplitude of crop rows, fine noise, crown-scale noise.
ROWS = np.zeros(len(Cover), np.float32)
ROWS[[Cover.CROP, Cover.TERRACE, Cover.PADDY, Cover.FALLOW]] = [0.10, 0.07, 0.04, 0.03]
FINE = np.full(len(Cover), 0.04, np.float32)
FINE[[Cover.WATER, Cover.ROAD]] = 0.015
CROWN = np.zeros(len(Cover), np.float32)
CROWN[[Cover.FOREST, Cover.GRASS, Cover.BARE, Cover.FALLOW, Cover.VILLAGE]] = [0.22, 0.06, 0.07, 0.05, 0.05]
ROOFS = np.array(
    [(0.66, 0.64, 0.62), (0.62, 0.30, 0.24), (0.36, 0.47, 0.62), (0.82, 0.82, 0.80), (0.55, 0.52, 0.50)], np.float32
)


@functools.lru_cache(maxsize=8)
def textures(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two periodic noise textures (fine grain, tree-crown scale) with unit standard deviation."""
    rng = np.random.default_rng(seed + 99)

    def periodic_blur(sigma: float) -> np.ndarray:
        noise = np.pad(rng.standard_normal((TEXTURE, TEXTURE)).astype(np.float32), 16, mode="wrap")
        return cv2.GaussianBlur(noise, (0, 0), sigma)[16:-16, 16:-16]

    fine, crown = periodic_blur(0.7), periodic_blur(1.8)
    return fine / fine.std(), crown / crown.std()


def render_patch(patch: LandscapePatch, cols: np.ndarray, rows: np.ndarray, seed: int, planting: bool) -> np.ndarray:
    """RGB in [0, 1] (float32, H × W × 3) before imaging conditions."""
    fine, crown = textures(seed)
    out = np.empty((*patch.cover.shape, 3), np.float32)
    kernels.render_pixels(
        patch.cover, patch.field_rand, patch.u, patch.v, patch.lot_w, patch.lot_h, patch.edge, patch.soil,
        int(cols[0]), int(rows[0]), 0 if planting else 1, PALETTE, ROWS, FINE, CROWN, ROOFS, fine, crown, out,
    )  # fmt: skip
    return out
