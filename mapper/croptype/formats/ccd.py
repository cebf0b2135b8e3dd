"""The Canadian Cropland Dataset (CCD) layout, read into a ParcelDataset (sample = point × year).

What the public code and site show (bioinfoUQAM/Canadian-cropland-dataset-github, loubnablt/the-canadian-
cropland-dataset — the dataset's site):
- PNG folders `{year}/{TYPE}/{training|validation|test}/{CLASS}/` (machine_learning/README.md reads
  "2019/RGB/training"; howwecreatedit.md lists `RGB/training/BARLEY/POINT_2_201909_AB_BARLEY_RGB.png`),
  TYPE one of RGB, NDVI, NDVI45, GNDVI, OSAVI, PSRI, NDWI; 64 × 64 px at 10 m (640 m around the point).
- File stem `POINT_{id}_{YYYYMM}_{PROV}_{CROP}` (data_collection/gee_sentinel_imagescraping_2018_ACI.py),
  PROV a 2-letter province code, CROP the upper-case class (underscores inside: SPRING_WHEAT); a PNG adds
  `_{TYPE}` (data_cleaning/image_to_png.py). Class folders are the upper-case crop names
  (data_cleaning/create_sub_directories.py); the cleaned release keeps 10 (BARLEY, CANOLA, CORN, MIXEDWOOD,
  OAT, ORCHARD, PASTURE, POTATO, SOYBEAN, SPRING_WHEAT: packaged as mapper/data/croptype/ccd_taxonomy.csv).
- PNG values: RGB = B4, B3, B2 reflectance × 255 as uint8, then PIL contrast and brightness × 1.5 for display;
  an index = index × 255 as uint8 on three equal channels (image_to_png.py). Neither can be inverted exactly,
  so the reader takes a PNG for what it is: 8-bit value / 255, bands named RGB.R, RGB.G, RGB.B, NDVI, ….
- The raw data: one zip per point and month, `{stem}.zip`, holding one single-band GeoTIFF per band,
  `{stem}.B1.tif` … `{stem}.B12.tif` (with B8A, B10), the six indices and QA10, QA20, QA60 (the site's
  figures/howwecreatedit/zip_folder_structure.png); values are reflectance (the GEE script divides by
  10 000; integer files are read as DN / 10 000), monthly median composites, EPSG:3978 at 10 m.
- Splits: 70 / 15 / 15 by point, the same for every year and image type (create_train_test_split.py,
  split_datasets.py): a location is in one split only; the reader checks that.
Not published: where the zips sit. mapper keeps them in the PNGs' tree, `{year}/TIF/{split}/{CLASS}/`, so
they keep their split; a folder of zips without the split level is read too, split by point (worldexport).

A sample's series: per month the mean over the patch's centre `centre` × `centre` pixels (default 1: the
point itself, pixel (32, 32) — a patch is 640 m and holds other fields; the label is the point's). Months
are the union over the dataset; a month a sample lacks is interpolated from its other months (the
compositor's gap filling) and counted in `months_observed`. last_code is the point's class in the year
before when the dataset has it (CCD is multi-year), else 0.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from mapper.croptype import series
from mapper.croptype.composite import interpolate_gaps
from mapper.croptype.dataset import DatasetError, ParcelDataset
from mapper.croptype.formats.months import month_steps
from mapper.croptype.taxonomy import Taxonomy

PATCH = 64
PNG_TYPES = ("RGB", "NDVI", "NDVI45", "GNDVI", "OSAVI", "PSRI", "NDWI")
TIF = "TIF"
SPLIT_FOLDERS = {"training": "train", "validation": "val", "test": "test"}
FOLDER_OF_SPLIT = {v: k for k, v in SPLIT_FOLDERS.items()}
STEM = re.compile(r"POINT_(?P<id>\d+)_(?P<year>\d{4})(?P<month>\d{2})_(?P<prov>[A-Z]{2})_(?P<crop>[A-Z0-9_]+?)")
LAYOUT = ("{year}/{RGB|NDVI|…|TIF}/{training|validation|test}/{CLASS}/POINT_{id}_{YYYYMM}_{PROV}_{CROP}"
          "[_{TYPE}].png|.zip")


def class_name(name: str) -> str:
    """A taxonomy class name as a CCD folder / file name part: upper case, runs of other characters → _."""
    return re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_")


def stem(point: int, year: int, month: int, prov: str, crop: str) -> str:
    return f"POINT_{point}_{year}{month:02d}_{prov}_{crop}"


def parse_name(path: Path, suffix: str) -> dict:
    """The fields of a file name `POINT_{id}_{YYYYMM}_{PROV}_{CROP}{suffix}`; DatasetError naming it otherwise."""
    m = re.fullmatch(STEM.pattern + re.escape(suffix), path.name)
    if not m or not 1 <= int(m["month"]) <= 12:
        raise DatasetError(f"{path}: the name is not POINT_{{id}}_{{YYYYMM}}_{{PROV}}_{{CROP}}{suffix} (e.g. "
                           f"POINT_2_201909_AB_BARLEY{suffix}); rename it or move it out of the dataset")  # fmt: skip
    return {"point": int(m["id"]), "year": int(m["year"]), "month": int(m["month"]), "prov": m["prov"],
            "crop": m["crop"]}  # fmt: skip


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _years(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder; pass the CCD folder holding the year folders ({LAYOUT})")
    years = [p for p in _subdirs(root) if re.fullmatch(r"\d{4}", p.name)]
    if not years:
        raise DatasetError(f"{root} has no year folder (e.g. {root}/2019/RGB/training/BARLEY/); the Canadian "
                           f"Cropland Dataset layout is {LAYOUT}")  # fmt: skip
    return years


def _files(kind_dir: Path, suffix: str, flat_ok: bool) -> list[tuple[str, str | None, Path]]:
    """(split, class folder, file) under a type folder; DatasetError naming what is out of layout. With
    flat_ok (zips), files lying in the type folder itself come with split "" (split by point later)."""
    out = [("", None, f) for f in sorted(kind_dir.glob(f"*{suffix}"))] if flat_ok else []
    for split_dir in _subdirs(kind_dir):
        if split_dir.name not in SPLIT_FOLDERS:
            raise DatasetError(f"{split_dir}: expected a split folder ({', '.join(SPLIT_FOLDERS)}) here, as in "
                               f"{LAYOUT}; move its class folders into one")  # fmt: skip
        stray = sorted(f for f in split_dir.iterdir() if f.is_file() and f.suffix.lower() in (".png", ".zip"))
        if stray:
            raise DatasetError(f"{stray[0]} lies in a split folder without a class folder; move it into "
                               f"{split_dir}/{{CLASS}}/")  # fmt: skip
        for class_dir in _subdirs(split_dir):
            out += [(SPLIT_FOLDERS[split_dir.name], class_dir.name, f) for f in sorted(class_dir.glob(f"*{suffix}"))]
    if not out:
        raise DatasetError(f"{kind_dir} holds no {suffix} file; it needs training/, validation/ and test/ folders "
                           f"of class folders ({LAYOUT})")  # fmt: skip
    return out


def _records(root: Path, source: str, types) -> tuple[list[dict], str, tuple[str, ...]]:
    years = _years(root)
    if source == "auto":
        source = "tif" if all((y / TIF).is_dir() for y in years) else "png"
    if source == "tif":
        kinds = (TIF,)
    else:
        present = {p.name for y in years for p in _subdirs(y)} - {TIF}
        unknown = sorted(present - set(PNG_TYPES))
        if unknown:
            raise DatasetError(f"{root}: image type folder(s) {', '.join(unknown)} are not CCD types "
                               f"({', '.join(PNG_TYPES)}, {TIF}); rename or remove them")  # fmt: skip
        kinds = tuple(t for t in (types or PNG_TYPES) if t in present)
        if not kinds:
            raise DatasetError(f"{root}: no image type folder ({', '.join(PNG_TYPES)}) in its year folders; {LAYOUT}")
    records = []
    for y in years:
        for kind in kinds:
            kind_dir = y / kind
            if not kind_dir.is_dir():
                raise DatasetError(f"{kind_dir} is missing: every year needs the same image types ({', '.join(kinds)})")
            suffix = ".zip" if kind == TIF else ".png"
            for split, folder, path in _files(kind_dir, suffix, flat_ok=kind == TIF):
                rec = parse_name(path, suffix if kind == TIF else f"_{kind}{suffix}")
                if folder is not None and rec["crop"] != folder:
                    raise DatasetError(f"{path}: the name says {rec['crop']} but it lies in class folder {folder}; "
                                       "move it to its class folder")  # fmt: skip
                if rec["year"] != int(y.name):
                    raise DatasetError(f"{path}: dated {rec['year']} but in year folder {y.name}")
                records.append({**rec, "split": split, "kind": kind, "path": path})
    if not records:
        raise DatasetError(f"{root}: no {'zip' if source == 'tif' else 'PNG'} file in the layout {LAYOUT}")
    return records, source, kinds


def _centre(img: np.ndarray, k: int) -> np.ndarray:
    """Mean over the centre k × k pixels of (…, 64, 64) → (…,)."""
    lo = PATCH // 2 - k // 2
    return img[..., lo : lo + k, lo : lo + k].mean(axis=(-2, -1))


def _png_values(path: Path, kind: str, k: int) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"{path} is not a readable PNG; download it again or remove it")
    if img.shape[:2] != (PATCH, PATCH):
        raise DatasetError(f"{path} is {img.shape[1]} × {img.shape[0]} px; CCD patches are {PATCH} × {PATCH} at 10 m")
    if img.dtype != np.uint8:
        raise DatasetError(f"{path} is {img.dtype}; CCD PNGs are 8-bit")
    img = img[..., None] if img.ndim == 2 else img[..., :3][..., ::-1]  # cv2 reads BGR(A)
    if kind != "RGB":
        img = img[..., :1]  # indices repeat one value on three channels
    return _centre(np.moveaxis(img, -1, 0).astype(np.float64), k) / 255.0


def _png_bands(kinds) -> tuple[str, ...]:
    return tuple(b for kind in kinds for b in ((f"{kind}.R", f"{kind}.G", f"{kind}.B") if kind == "RGB" else (kind,)))


def _zip_members(path: Path) -> dict[str, str]:
    try:
        names = zipfile.ZipFile(path).namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise DatasetError(f"{path} is not a readable zip ({e}); download it again or remove it") from None
    base = path.name[: -len(".zip")]
    out = {}
    for n in names:
        m = re.fullmatch(re.escape(base) + r"\.([A-Z0-9]+)\.tif", Path(n).name, flags=re.IGNORECASE)
        if m:
            out[m[1].upper()] = n
    return out


def _tif_values(path: Path, k: int) -> tuple[np.ndarray, tuple[float, float]]:
    """Reflectance of series.BANDS at the centre and the centre's lon/lat, from one point-month zip."""
    import rasterio
    from pyproj import Transformer

    members = _zip_members(path)
    missing = [b for b in series.BANDS if b not in members]
    if missing:
        raise DatasetError(f"{path} lacks {', '.join(f'{path.stem}.{b}.tif' for b in missing)}; a CCD zip holds "
                           "one GeoTIFF per Sentinel-2 band (B1 … B12)")  # fmt: skip
    out = np.empty(len(series.BANDS))
    with zipfile.ZipFile(path) as z:
        for i, band in enumerate(series.BANDS):
            with rasterio.MemoryFile(z.read(members[band])) as mem, mem.open() as src:
                a = src.read(1)
                if a.shape != (PATCH, PATCH):
                    raise DatasetError(f"{path}: {members[band]} is {a.shape[1]} × {a.shape[0]} px; CCD patches are "
                                       f"{PATCH} × {PATCH}")  # fmt: skip
                out[i] = _centre(a.astype(np.float64) / (1.0 if a.dtype.kind == "f" else series.SCALE), k)
                if i == 0:
                    x, y = src.xy(PATCH // 2, PATCH // 2)
                    lonlat = Transformer.from_crs(src.crs, 4326, always_xy=True).transform(x, y) if src.crs else (
                        np.nan, np.nan)  # fmt: skip
    return out, lonlat


def _leaf_codes(classes, taxonomy: Taxonomy, root: Path) -> dict[str, int]:
    by_name = {class_name(n): taxonomy.codes[i] for i, n in enumerate(taxonomy.leaf_names())}
    unknown = sorted(set(classes) - set(by_name))
    if unknown:
        raise DatasetError(f"{root}: class(es) {', '.join(unknown)} are not leaves of the taxonomy (its leaves: "
                           f"{', '.join(sorted(by_name))}); pass --taxonomy with a CSV naming them (for the real "
                           "dataset: mapper/data/croptype/ccd_taxonomy.csv)")  # fmt: skip
    return by_name


def _assign_splits(samples: pd.DataFrame, records: pd.DataFrame) -> pd.Series:
    """One split per point: the folders' (checked to agree), or by point hash for zips without split folders."""
    from mapper.croptype.formats.worldexport import split_of

    given = records[records["split"] != ""].groupby("point")["split"].unique()
    two = given[given.map(len) > 1]
    if len(two):
        p = int(two.index[0])
        paths = records[(records["point"] == p) & (records["split"] != "")].groupby("split")["path"].first()
        raise DatasetError(f"point {p} is in two splits ({', '.join(f'{s}: {paths[s]}' for s in paths.index)}); "
                           "a location must stay in one split — move its files into one")  # fmt: skip
    lookup = given.map(lambda s: s[0]).to_dict()
    return samples["point"].map(lambda p: lookup.get(p, split_of(f"POINT_{p}")))


def read_ccd(root: Path | str, taxonomy: Taxonomy, source: str = "auto", types=None, centre: int = 1) -> ParcelDataset:
    """A CCD folder as a dataset of point × year samples (see the module doc). source: "tif" (the zips'
    ten 10/20 m bands), "png" (the PNG types present, or `types`) or "auto" (tif when every year has TIF/)."""
    root = Path(root)
    if not 1 <= centre <= PATCH:
        raise DatasetError(f"centre {centre}: average 1 to {PATCH} centre pixels a side")
    recs, source, kinds = _records(root, source, types)
    table = pd.DataFrame(recs)
    crops = table.groupby(["point", "year"])["crop"].unique()
    mixed = crops[crops.map(len) > 1]
    if len(mixed):
        (p, y), names = mixed.index[0], mixed.iloc[0]
        raise DatasetError(f"point {p} in {y} is labelled {' and '.join(names)}; one point-year has one class")
    codes = _leaf_codes(table["crop"].unique(), taxonomy, root)
    months = tuple(sorted(table["month"].unique()))
    samples = table.groupby(["point", "year"], as_index=False).agg(crop=("crop", "first"), prov=("prov", "first"))
    index = {(p, y): i for i, (p, y) in enumerate(zip(samples["point"], samples["year"], strict=True))}
    bands = series.BANDS if source == "tif" else _png_bands(kinds)
    values = np.zeros((len(bands), len(months), 1, len(samples)), np.float32)
    seen = np.zeros((len(kinds), len(months), len(samples)), bool)
    lon, lat = np.full(len(samples), np.nan), np.full(len(samples), np.nan)
    offsets = np.cumsum([0] + [3 if k == "RGB" else 1 for k in kinds]) if source == "png" else [0, len(bands)]
    for r in table.itertuples():
        i, t, kk = index[(r.point, r.year)], months.index(r.month), kinds.index(r.kind)
        if source == "tif":
            v, (lon[i], lat[i]) = _tif_values(r.path, centre)
        else:
            v = _png_values(r.path, r.kind, centre)
        values[offsets[kk] : offsets[kk + 1], t, 0, i] = v
        seen[kk, t, i] = True
    has = seen.all(axis=0)[:, None, :]  # a month counts when every type has it
    interpolate_gaps(values, has, month_steps(months))
    prior = {(p, y): codes[c] for (p, y), c in zip(index, samples["crop"], strict=True)}
    out = pd.DataFrame({
        "parcel": samples["point"].astype(np.int64),
        "code": samples["crop"].map(codes).astype(np.int64),
        "last_code": [prior.get((p, y - 1), 0) for p, y in index],
        "lon": lon, "lat": lat, "temperature": np.nan,
        "n_pure": centre * centre,
        "window": [f"POINT_{p}" for p in samples["point"]],
        "province": samples["prov"],
        "year": samples["year"].astype(np.int64),
        "months_observed": has[:, 0, :].sum(axis=0).astype(np.int64),
    })  # fmt: skip
    out["split"] = _assign_splits(samples, table).to_numpy()
    meta = {"source": {"kind": "ccd", "root": str(root), "source": source, "types": list(kinds),
                       "months": [int(m) for m in months], "years": sorted(int(y) for y in samples["year"].unique()),
                       "centre": centre}}  # fmt: skip
    x = np.ascontiguousarray(values[:, :, 0].transpose(2, 0, 1))
    return ParcelDataset(x, out, bands, month_steps(months), meta)
