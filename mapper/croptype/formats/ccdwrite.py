"""The simulated world in the Canadian Cropland Dataset layout (formats.ccd documents it and its sources).

A point is a truth field of a sampled window: its first pure pixel (row-major) whose 64 × 64 patch lies
inside the window, at most max_points per window (drawn at random, seeded); ids run 1, 2, … in export order.
Its split is a stable hash of the point (70 / 15 / 15, worldexport.split_of). Per month (the world's monthly
composite) the patch is written as PNGs of the chosen types and as a zip of single-band GeoTIFFs. What
mapper writes, where the public code differs:
- PNG RGB: uint8(round(255 · clip(reflectance))) of B4, B3, B2 — the public code's scale before its display
  contrast/brightness (not invertible, so not copied); an index: uint8(round(255 · clip(index, 0, 1))), the
  public uint8(index · 255) without its wrap-around of negative values.
- GeoTIFFs: float32 reflectance like the public files (their GEE script divides by 10 000), on the window's
  UTM 10 m grid rather than EPSG:3978, all-cloud pixels NaN; the world has no B1, B9, B10, so those files
  are absent; QA60 is 0 (the composite has masked clouds).
- Indices as the public GEE script defines them (data_collection/gee_sentinel_imagescraping_2018_ACI.py):
  NDVI (B7 − B4)/(B7 + B4), NDVI45 (B5 − B4)/(B5 + B4), GNDVI (B7 − B3)/(B7 + B3), OSAVI 1.16 (B8 − B4)/(B8 + B4
  + 0.61), PSRI (B4 − B2)/B6; NDWI is not in it: (B3 − B8)/(B3 + B8) (McFeeters) assumed.
PROV is the province's ISO 3166-2:CN letter code (CCD's are Canadian: AB, QC, …); CROP the leaf name as
ccd.class_name writes it. The whole tree is written under a temporary name and renamed.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from mapper.croptype import series
from mapper.croptype.formats.ccd import FOLDER_OF_SPLIT, PATCH, PNG_TYPES, TIF, class_name, stem
from mapper.croptype.formats.worldexport import NativeSamples, split_of, world_windows
from mapper.croptype.taxonomy import Taxonomy, packaged_taxonomy

PROVINCE_CODES = {
    "Anhui": "AH", "Beijing": "BJ", "Chongqing": "CQ", "Fujian": "FJ", "Gansu": "GS", "Guangdong": "GD",
    "Guangxi": "GX", "Guizhou": "GZ", "Hainan": "HI", "Hebei": "HE", "Heilongjiang": "HL", "Henan": "HA",
    "Hong Kong": "HK", "Hubei": "HB", "Hunan": "HN", "Inner Mongolia": "NM", "Jiangsu": "JS", "Jiangxi": "JX",
    "Jilin": "JL", "Liaoning": "LN", "Macao": "MO", "Ningxia": "NX", "Qinghai": "QH", "Shaanxi": "SN",
    "Shandong": "SD", "Shanghai": "SH", "Shanxi": "SX", "Sichuan": "SC", "Taiwan": "TW", "Tianjin": "TJ",
    "Tibet": "XZ", "Xinjiang": "XJ", "Yunnan": "YN", "Zhejiang": "ZJ",
}  # fmt: skip
INDEX_BANDS = ("GNDVI", "NDVI", "NDVI45", "NDWI", "OSAVI", "PSRI")


def province_code(name: str) -> str:
    return PROVINCE_CODES.get(name, class_name(name)[:2].ljust(2, "X"))


def indices(refl: np.ndarray) -> dict[str, np.ndarray]:
    """The CCD vegetation indices of (10 bands in series.BANDS order, …) reflectance."""
    b = dict(zip(series.BANDS, refl, strict=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "GNDVI": (b["B7"] - b["B3"]) / (b["B7"] + b["B3"]),
            "NDVI": (b["B7"] - b["B4"]) / (b["B7"] + b["B4"]),
            "NDVI45": (b["B5"] - b["B4"]) / (b["B5"] + b["B4"]),
            "NDWI": (b["B3"] - b["B8"]) / (b["B3"] + b["B8"]),
            "OSAVI": 1.16 * (b["B8"] - b["B4"]) / (b["B8"] + b["B4"] + 0.61),
            "PSRI": (b["B4"] - b["B2"]) / b["B6"],
        }


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.round(255 * np.clip(np.nan_to_num(x, nan=0.0), 0, 1)).astype(np.uint8)


def png_image(kind: str, patch: np.ndarray) -> np.ndarray:
    """(64, 64, 3) uint8 RGB of a CCD image type from a (10, 64, 64) reflectance patch."""
    if kind == "RGB":
        b = dict(zip(series.BANDS, patch, strict=True))
        return np.dstack([_to_u8(b["B4"]), _to_u8(b["B3"]), _to_u8(b["B2"])])
    return np.repeat(_to_u8(indices(patch)[kind])[..., None], 3, axis=2)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    ok, data = cv2.imencode(".png", rgb[..., ::-1])
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(data.tobytes())


def _tif_bytes(band: np.ndarray, crs, transform) -> bytes:
    import rasterio
    from rasterio.crs import CRS

    profile = {"driver": "GTiff", "width": PATCH, "height": PATCH, "count": 1, "dtype": "float32",
               "crs": CRS.from_wkt(crs.to_wkt()),
               "transform": transform, "nodata": float("nan"), "compress": "deflate"}  # fmt: skip
    with rasterio.MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(band.astype(np.float32), 1)
        return mem.read()


def write_zip(path: Path, name: str, patch: np.ndarray, crs, transform) -> None:
    layers = {**dict(zip(series.BANDS, patch, strict=True)), **indices(patch), "QA60": np.zeros_like(patch[0])}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:  # the GeoTIFFs are deflated already
        for band, values in layers.items():
            z.writestr(f"{name}.{band}.tif", _tif_bytes(values, crs, transform))
    path.write_bytes(buf.getvalue())


def _points(win, max_points: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of one centre pixel per field whose patch fits in the window."""
    h, w = win.pure.shape
    ok = win.pure.copy()
    ok[: PATCH // 2], ok[h - PATCH // 2 :], ok[:, : PATCH // 2], ok[:, w - PATCH // 2 :] = False, False, False, False
    rows, cols = np.nonzero(ok)
    _, first = np.unique(win.sim.field[rows, cols], return_index=True)
    if len(first) > max_points:
        first = np.sort(rng.choice(first, size=max_points, replace=False))
    return rows[first], cols[first]


def export_ccd(world, province: str, out: Path | str, n_windows: int, window_km: float = 2.0, seed: int = 0,
               months=(6, 7, 8, 9, 10), types=("RGB", "NDVI"), tif: bool = True, max_points: int = 50,
               taxonomy: Taxonomy | None = None, log=lambda msg: None):  # fmt: skip
    """Write the world's points of a province as a CCD tree at `out`; returns (native 43-step dataset,
    native monthly dataset) of exactly the written points (split column = the CCD split)."""
    from mapper.store.atomic import atomic_directory

    taxonomy = taxonomy or packaged_taxonomy()
    bad = [t for t in types if t not in PNG_TYPES]
    if bad:
        raise ValueError(f"image type(s) {', '.join(bad)}: choose from {', '.join(PNG_TYPES)}")
    prov, names = province_code(province), dict(zip(taxonomy.codes, taxonomy.leaf_names(), strict=True))
    native, point = NativeSamples(months), 0
    with atomic_directory(Path(out)) as tmp:
        for k, win in enumerate(world_windows(world, province, n_windows, window_km, seed, months, log)):
            rows, cols = _points(win, max_points, np.random.default_rng([seed, k]))
            splits = []
            for r, c in zip(rows, cols, strict=True):
                point += 1
                split = split_of(f"POINT_{point}")
                splits.append(split)
                crop = class_name(names[win.sim.fields[int(win.sim.field[r, c])][0]])
                window = (slice(r - PATCH // 2, r + PATCH // 2), slice(c - PATCH // 2, c + PATCH // 2))
                transform = win.sim.transform @ win.sim.transform.translation(c - PATCH // 2, r - PATCH // 2)
                for t, month in enumerate(months):
                    patch = win.monthly[:, t][:, window[0], window[1]]
                    name = stem(point, win.year, month, prov, crop)
                    for kind in types:
                        d = tmp / str(win.year) / kind / FOLDER_OF_SPLIT[split] / crop
                        d.mkdir(parents=True, exist_ok=True)
                        _write_png(d / f"{name}_{kind}.png", png_image(kind, patch))
                    if tif:
                        d = tmp / str(win.year) / TIF / FOLDER_OF_SPLIT[split] / crop
                        d.mkdir(parents=True, exist_ok=True)
                        write_zip(d / f"{name}.zip", name, patch, win.sim.crs, transform)
            native.add(win, rows, cols, splits)
    return native.datasets({"kind": "world", "world_seed": world.seed, "province": province, "windows": n_windows,
                            "window_km": window_km, "seed": seed, "exported_as": "ccd"})  # fmt: skip
