"""H2Crop's hyperspectral stream, `EnMAP_data`: its layout, and a cube interpolated from Sentinel-2 for exports.

Public layout (flyakon/H2Crop): H2Crop/dataset/h2crop_dataset.py, get_data, lines 69-71, reads
`h5_dataset['EnMAP_data'][:]` whole as a float tensor when with_hyper is set; the README's table gives (218, 64, 64)
int16, 400-2500 nm, beside S2 (12, 10, 192, 192): bands first, then H and W at 30 m, a third of S2's 10 m grid.
configs/hyper_benefits/crops_S2_jun.py (EnMAP_mean / EnMAP_std, 218 values, ~300-4000) normalises per band over
axis 0 (MapNormalize expands the means to (218, 1, 1)), so the values are reflectance × 10 000 like S2_data;
crops_S2_H_jun.py's encoder has in_channels=218, img_size=64. Transform.py (CropCutup) scales crop windows by
the EnMAP/S2 size ratio, so H and W need not be exactly a third.
Not published: the band centres (the files hold no wavelengths the loader reads). EnMAP has 224 bands over
418-2445 nm; which 6 H2Crop dropped is not said, so mapper assumes 218 centres evenly spread over 418-2445 nm
(ENMAP_NM) and writes them as an extra dataset, `EnMAP_wavelength_nm`, which the public loader ignores.

The simulated world has no hyperspectral sensor: `s2_cube` makes a plausible cube from one month of the
sample's S2_data — 3 × 3 means (the 30 m grid; pixels with no clear observation left out, a cell without any
is 0) interpolated linearly in wavelength between the S2 band centres and flat beyond the ends. It holds no
information beyond those 10 bands.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mapper.croptype.dataset import DatasetError

KEY = "EnMAP_data"
NM_KEY = "EnMAP_wavelength_nm"
N_BANDS = 218
FACTOR = 3  # 30 m EnMAP cells per 10 m S2 pixels on a side (64 × 3 = 192)
ENMAP_NM = np.linspace(418.0, 2445.0, N_BANDS)
# Sentinel-2A central wavelengths (nm) of mapper's S2 bands, in series.BANDS order (B2 … B12)
S2_NM = np.array([492.4, 559.8, 664.6, 704.1, 740.5, 782.8, 832.8, 864.7, 1613.7, 2202.4])
MONTH = 7  # the month of S2_data (1-based) the simulated cube is made from: mid-season, when the world observes


def spectral_weights(target_nm=ENMAP_NM, source_nm=S2_NM) -> np.ndarray:
    """(len(target), len(source)) linear-interpolation weights; each row sums to 1 and mixes at most two
    neighbouring source bands, so values at source centres are exact and monotone between them."""
    eye = np.eye(len(source_nm))
    return np.stack([np.interp(target_nm, source_nm, eye[j]) for j in range(len(source_nm))], axis=1)


def aggregate(img: np.ndarray, factor: int = FACTOR) -> np.ndarray:
    """(B, H, W) -> (B, ceil(H/f), ceil(W/f)) float64 block means over valid pixels (any band non-zero);
    a block with none is 0 (S2_data's no-data value)."""
    b, h, w = img.shape
    hh, ww = -(-h // factor), -(-w // factor)
    valid = (img != 0).any(axis=0)
    pad = ((0, 0), (0, hh * factor - h), (0, ww * factor - w))
    vals = np.pad(np.where(valid, img, 0).astype(np.float64), pad).reshape(b, hh, factor, ww, factor)
    count = np.pad(valid, pad[1:]).reshape(hh, factor, ww, factor).sum(axis=(1, 3))
    return np.divide(vals.sum(axis=(2, 4)), count, out=np.zeros((b, hh, ww)), where=count > 0)


def s2_cube(s2: np.ndarray, month: int = MONTH) -> np.ndarray:
    """The simulated EnMAP_data (218, ceil(H/3), ceil(W/3)) int16 (reflectance × 10 000) from S2_data
    (T, 10, H, W) int16 in the same scale (the module doc: interpolation, no new information)."""
    if s2.ndim != 4 or s2.shape[1] != len(S2_NM) or not 1 <= month <= s2.shape[0]:
        raise ValueError(f"S2_data of shape {s2.shape} has no month {month} of {len(S2_NM)} bands")
    coarse = aggregate(s2[month - 1])
    cube = np.einsum("eb,bhw->ehw", spectral_weights(), coarse)
    return np.round(cube).clip(0, 32767).astype(np.int16)


def read_enmap(path: Path | str, f=None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(EnMAP_data (bands, h, w), band centres in nm or None) of an H2Crop file, (None, None) without one."""
    if f is None:
        import h5py

        with h5py.File(path, "r") as f:
            return read_enmap(path, f)
    if KEY not in f:
        return None, None
    cube = f[KEY][...]
    if cube.ndim != 3:
        raise DatasetError(f"{path}: {KEY} has shape {cube.shape}; H2Crop's is (bands, H, W), e.g. (218, 64, 64)")
    nm = f[NM_KEY][...].astype(np.float64) if NM_KEY in f else None
    if nm is not None and nm.shape != (cube.shape[0],):
        raise DatasetError(f"{path}: {NM_KEY} has shape {nm.shape}, expected ({cube.shape[0]},) (one per band)")
    return cube, nm
