"""Small CCD and H2Crop trees written straight from the public layouts — PIL for the PNGs, rasterio for the
GeoTIFFs, h5py for the HDF5 — without mapper's writers, so the readers are judged against the documented
formats, not against themselves. Layout sources: see mapper/croptype/formats/ccd.py and h2crop.py.

Every value is a function of its place (point, month, band), so a test can say what a reader must return.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

CCD_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
CCD_EXTRA = ("GNDVI", "NDVI", "NDVI45", "NDWI", "OSAVI", "PSRI", "QA10", "QA20", "QA60")
SPLIT_DIRS = {"train": "training", "val": "validation", "test": "test"}
# point id -> (split, province, {year: class}, months present)
CCD_POINTS = {
    2: ("train", "AB", {2019: "BARLEY", 2020: "CANOLA"}, (6, 7, 8, 9, 10)),
    5: ("train", "AB", {2019: "CORN"}, (7, 8, 9)),
    9: ("val", "QC", {2019: "BARLEY"}, (6, 8, 10)),  # July and September missing: interpolated
    12: ("test", "ON", {2019: "SPRING_WHEAT", 2020: "SPRING_WHEAT"}, (6, 7, 8, 9, 10)),
}


def reflectance(point: int, month: int, band: int) -> float:
    """The centre pixel's value of a band (index in CCD_BANDS) in a month."""
    return round(0.01 * band + 0.02 * month + 0.001 * point, 4)


def png_value(point: int, month: int, channel: int) -> int:
    return (7 * point + 11 * month + 50 * channel) % 256


def _patch(centre: float, dtype) -> np.ndarray:
    a = np.full((64, 64), 0.5 if np.dtype(dtype).kind == "f" else 5000, dtype)
    a[32, 32] = centre
    return a


def _tif(values: np.ndarray, x0: float, y0: float) -> bytes:
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.MemoryFile() as mem:
        with mem.open(driver="GTiff", width=64, height=64, count=1, dtype=values.dtype.name, crs="EPSG:3978",
                      transform=from_origin(x0, y0, 10, 10)) as dst:  # fmt: skip
            dst.write(values, 1)
        return mem.read()


def write_ccd(root: Path, png_types=("RGB", "NDVI"), tif: bool = True, points=None) -> Path:
    from PIL import Image

    for point, (split, prov, classes, months) in (points or CCD_POINTS).items():
        for year, crop in classes.items():
            for month in months:
                stem = f"POINT_{point}_{year}{month:02d}_{prov}_{crop}"
                for kind in png_types:
                    d = root / str(year) / kind / SPLIT_DIRS[split] / crop
                    d.mkdir(parents=True, exist_ok=True)
                    img = np.zeros((64, 64, 3), np.uint8)
                    channels = range(3) if kind == "RGB" else (0, 0, 0)
                    for c, src in enumerate(channels):
                        img[32, 32, c] = png_value(point, month, src)
                    Image.fromarray(img, "RGB").save(d / f"{stem}_{kind}.png")
                if tif:
                    d = root / str(year) / "TIF" / SPLIT_DIRS[split] / crop
                    d.mkdir(parents=True, exist_ok=True)
                    buf = io.BytesIO()
                    with zipfile.ZipFile(buf, "w") as z:
                        for b, band in enumerate(CCD_BANDS):
                            z.writestr(f"{stem}.{band}.tif", _tif(_patch(reflectance(point, month, b), np.float32),
                                                                  -1e6 + 1000 * point, 1e6))  # fmt: skip
                        for band in CCD_EXTRA:
                            z.writestr(f"{stem}.{band}.tif", _tif(_patch(0.3, np.float32), 0, 0))
                    (d / f"{stem}.zip").write_bytes(buf.getvalue())
    return root


# H2Crop: a cascade of three leaves, ids as in resources/cascade_labels.csv (1-based, 0 background)
CASCADE = """HCAT3_code,level1_id,level1_name,level2_id,level2_name,level3_id,level3_name,level4_id,level4_name
3301010401,4,arable_crops,2,cereal,4,barley,8,winter_barley
3301010402,4,arable_crops,2,cereal,4,barley,23,spring_barley
3301060500,4,arable_crops,10,industrial_nonfood_crops,79,sunflower,14,sunflower
"""
LEVEL_IDS = {8: (4, 2, 4, 8), 23: (4, 2, 4, 23), 14: (4, 10, 79, 14)}
H2_SAMPLES = {"sample_001": "train", "sample_002": "train", "sample_003": "val", "sample_004": "test"}


def h2_label(name: str) -> np.ndarray:
    """(8, 8) level-4 ids: a 3 × 3 winter barley block, a 2 × 4 sunflower strip, one spring barley pixel."""
    k = int(name[-3:])
    a = np.zeros((8, 8), np.uint8)
    a[0:3, 0:3] = 8
    a[5:7, 2:6] = 14
    a[7, 7] = 23 if k % 2 else 0
    return a


def h2_dn(t: int, b: int, r: int, c: int, k: int) -> int:
    return 100 * t + 10 * b + r + c + 1000 * k


def write_h2crop(root: Path, months: int = 12) -> Path:
    import h5py

    (root / "h5_data").mkdir(parents=True)
    (root / "data_lists").mkdir()
    (root / "cascade_labels.csv").write_text(CASCADE, encoding="utf-8")
    t, b, r, c = np.meshgrid(np.arange(months), np.arange(10), np.arange(8), np.arange(8), indexing="ij")
    for name in H2_SAMPLES:
        k = int(name[-3:])
        leaf = h2_label(name)
        label = np.zeros((4, 8, 8), np.uint8)
        for v, path in LEVEL_IDS.items():
            label[:, leaf == v] = np.array(path, np.uint8)[:, None]
        prior = np.zeros_like(label)
        prior[:, leaf == 14] = np.array(LEVEL_IDS[8], np.uint8)[:, None]  # last year barley under the sunflower
        with h5py.File(root / "h5_data" / f"{name}.h5", "w") as f:
            f["S2_data"] = h2_dn(t, b, r, c, k).astype(np.int16)
            f["label"] = label
            f["priors"] = prior
            f["EnMAP_data"] = np.zeros((218, 3, 3), np.int16)
    for split in ("train", "val", "test"):
        names = [n for n, s in H2_SAMPLES.items() if s == split]
        (root / "data_lists" / f"{split}.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    return root
