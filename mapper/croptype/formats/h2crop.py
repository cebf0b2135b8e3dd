"""H2Crop's per-sample HDF5 layout, read into a ParcelDataset and written from the simulated world.

What the public loader reads (flyakon/H2Crop, H2Crop/dataset/h2crop_dataset.py and configs/*): a list file
per split, one sample name a line (np.loadtxt), and `{data root}/{name}.h5` holding
- `S2_data` (T, 10, H, W) int16: monthly Sentinel-2, January first (configs read the first 6 / 8 / 10 / 12
  frames for a season ending in June / August / October / December), 10 bands;
- `label` (4, H, W) uint8: the class at levels 1-4; `priors` (4, H, W): last year's, same coding;
- `EnMAP_data` (218, 64, 64) int16: the hyperspectral cube at 30 m, read only with with_hyper (formats.enmap
  documents it; read_sample carries it, the pixel and parcel datasets stay S2-only).
The README names other keys (/S2, /prior, /EnMAP): the loader's are the ones above. Class ids are 1-based per
level with 0 the background (the heads have num_classes + 1 outputs: 7, 37, 83, 102; the evaluator ignores
255); resources/cascade_labels.csv gives each leaf's HCAT3 code and its id and name at the four levels
(6 → 36 → 82 → 101). The README's tree is `data_lists/{train,val,test}.txt` beside `h5_data/`; the configs
point at `data_list/`: both are read.
Not published: the band order (mapper assumes its own, B2 B3 B4 B5 B6 B7 B8 B8A B11 B12 — the config's
per-band means rise through the red edge to B8A and fall for B11, B12, as these do) and the DN scale (read
as reflectance × 10 000; the config's means, ~4 000 for blue, suggest an offset in the real files, which a
per-band normalisation absorbs when training on them). Levels are not checked against each other by
H2Crop; the reader uses level 4 (the leaf) and counts the pixels whose levels 1-3 disagree with its path
(meta `inconsistent_levels`).

Reading: unit "pixel" takes labelled pixels (level 4 not 0 / 255, S2 not all 0), at most max_pixels per file
drawn at random (seeded by seed and the name: select_pixels); unit "parcel" averages each 4-connected group
of pixels sharing a leaf (H2Crop's parcels rasterised; neighbouring parcels of one crop merge). Ids: with a
mapper taxonomy level L's id is class index + 1; with H2Crop's cascade_labels.csv, its ids (cascade_taxonomy).
"""

from __future__ import annotations

import csv
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mapper.croptype import series
from mapper.croptype.dataset import DatasetError, ParcelDataset
from mapper.croptype.formats.months import ALL_MONTHS, month_steps
from mapper.croptype.taxonomy import LEVELS, Taxonomy, parse_rows

KEYS = {"s2": "S2_data", "label": "label", "prior": "priors"}
LISTS = ("data_lists", "data_list")
SPLIT_FILES = {"train": "train.txt", "val": "val.txt", "test": "test.txt"}
IGNORE = 255


def default_ids(taxonomy: Taxonomy) -> list[dict[str, int]]:
    """Per level: class name -> id (index + 1; 0 is background)."""
    return [{n: i + 1 for i, n in enumerate(taxonomy.names[lv])} for lv in range(LEVELS)]


def cascade_taxonomy(path: Path | str) -> tuple[Taxonomy, list[dict[str, int]]]:
    """H2Crop's resources/cascade_labels.csv (HCAT3_code, level{1-4}_id, level{1-4}_name) as a taxonomy
    (leaf code = level-4 id) and its per-level ids. Flags: perennial under permanent_crops_perennial or
    tree_wood_forest, specific unless the leaf is unspecified_/other_…, cropped unless fallow/unmaintained."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    need = [f"level{lv}_{k}" for lv in range(1, 5) for k in ("id", "name")]
    if not rows or any(c not in rows[0] for c in need):
        raise DatasetError(f"{path} is not H2Crop's cascade_labels.csv (columns {', '.join(need)})")
    rows.sort(key=lambda r: int(r["level4_id"]))
    table = [{
        "code": r["level4_id"], **{f"level{lv}": r[f"level{lv}_name"] for lv in range(1, 5)},
        "perennial": str(r["level1_name"] in ("permanent_crops_perennial", "tree_wood_forest")),
        "specific": str(not r["level4_name"].startswith(("unspecified", "other"))),
        "cropped": str(not any(w in r["level4_name"] for w in ("fallow", "unmaintained"))),
    } for r in rows]  # fmt: skip
    tax = parse_rows(table, str(path))
    ids = [{r[f"level{lv}_name"]: int(r[f"level{lv}_id"]) for r in rows} for lv in range(1, 5)]
    return tax, ids


def select_pixels(mask: np.ndarray, max_pixels: int | None, seed: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of at most max_pixels of mask's pixels, drawn at random (seed, name), kept row-major."""
    rows, cols = np.nonzero(mask)
    if max_pixels is not None and len(rows) > max_pixels:
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        keep = np.sort(rng.choice(len(rows), size=max_pixels, replace=False))
        rows, cols = rows[keep], cols[keep]
    return rows, cols


def _lists(root: Path) -> tuple[Path, Path]:
    """(list folder, h5 folder) of an H2Crop tree."""
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder; pass the H2Crop folder holding data_lists/ and h5_data/")
    lists = next((root / n for n in LISTS if (root / n).is_dir()), None)
    if lists is None or not (root / "h5_data").is_dir():
        raise DatasetError(f"{root} is not in H2Crop's layout: it needs data_lists/{{train,val,test}}.txt and h5_data/"
                           "{name}.h5 (the public README's tree)")  # fmt: skip
    return lists, root / "h5_data"


def split_names(root: Path) -> dict[str, list[str]]:
    lists, h5 = _lists(root)
    out = {}
    for split, fname in SPLIT_FILES.items():
        f = lists / fname
        if not f.is_file():
            continue
        names = [ln.strip() for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()]
        missing = [n for n in names if not (h5 / f"{n}.h5").is_file()]
        if missing:
            raise DatasetError(f"{f} names {len(missing)} sample(s) without a file, first {h5 / (missing[0] + '.h5')}; "
                               "download them or remove the lines")  # fmt: skip
        out[split] = names
    if not out:
        raise DatasetError(f"{lists} has none of {', '.join(SPLIT_FILES.values())}; write the split lists")
    return out


def _read_h5(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(S2_data, label, priors or None) of one sample, shapes checked; DatasetError naming the file."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DatasetError(f"{path} is not a readable HDF5 file ({e}); download it again") from None
    with f:
        missing = [KEYS[k] for k in ("s2", "label") if KEYS[k] not in f]
        if missing:
            raise DatasetError(f"{path} lacks {', '.join(missing)} (it has {', '.join(f.keys()) or 'no key'}); "
                               "H2Crop's loader reads S2_data (T, 10, H, W), label (4, H, W) and priors")  # fmt: skip
        s2, label = f[KEYS["s2"]], f[KEYS["label"]]
        if s2.ndim != 4 or s2.shape[1] != len(series.BANDS) or not 1 <= s2.shape[0] <= 12:
            raise DatasetError(f"{path}: S2_data has shape {s2.shape}; H2Crop's is (months ≤ 12, 10 bands, H, W)")
        want = (LEVELS, *s2.shape[2:])
        if label.shape != want:
            raise DatasetError(f"{path}: label has shape {label.shape}, expected {want} (4 levels × S2_data's H, W)")
        prior = None
        if KEYS["prior"] in f:
            prior = f[KEYS["prior"]][...]
            if prior.shape != want:
                raise DatasetError(f"{path}: priors has shape {prior.shape}, expected {want}")
        return s2[...], label[...], prior


@dataclass
class H2CropSample:
    """One file's arrays; enmap / enmap_nm are None where the file (or the request) has no hyperspectral cube."""

    s2: np.ndarray  # (T, 10, H, W)
    label: np.ndarray  # (4, H, W)
    priors: np.ndarray | None  # (4, H, W)
    enmap: np.ndarray | None = None  # (bands, h, w), as stored
    enmap_nm: np.ndarray | None = None  # band centres, when the file records them (mapper's exports do)


def read_sample(path: Path | str, with_hyper: bool = True) -> H2CropSample:
    """One H2Crop file with its EnMAP_data when present (with_hyper, as the public loader's flag)."""
    from mapper.croptype.formats.enmap import read_enmap

    path = Path(path)
    s2, label, prior = _read_h5(path)
    cube, nm = read_enmap(path) if with_hyper else (None, None)
    return H2CropSample(s2, label, prior, cube, nm)


def _luts(taxonomy: Taxonomy, ids: list[dict[str, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(id -> leaf index or −1 over 0..255, expected id (4, n_leaves) of each leaf at each level)."""
    expected = np.array([[ids[lv][taxonomy.names[lv][taxonomy.paths[i, lv]]] for i in range(taxonomy.n_leaves)]
                         for lv in range(LEVELS)])  # fmt: skip
    lut = np.full(256, -1, np.int64)
    lut[expected[-1]] = np.arange(taxonomy.n_leaves)
    return lut, expected


def _leaves_of(values: np.ndarray, lut: np.ndarray, path: Path, what: str) -> np.ndarray:
    leaf = lut[values.astype(np.int64)]
    bad = np.unique(values[leaf < 0])
    if len(bad):
        raise DatasetError(f"{path}: {what} level-4 id(s) {bad.tolist()[:10]} are not leaves of the taxonomy; pass "
                           "--taxonomy with the dataset's cascade_labels.csv")  # fmt: skip
    return leaf


def _file_samples(path: Path, name: str, taxonomy, lut, expected, unit: str, max_pixels, seed: int):
    """(series (N, 10, T), table, inconsistent pixels) of one file."""
    from mapper.croptype.parcels import means_by_label

    s2, label, prior = _read_h5(path)
    usable = (label[-1] != 0) & (label[-1] != IGNORE) & (s2 != 0).any(axis=(0, 1))
    leaf_map = np.full(label.shape[1:], -1, np.int64)
    leaf_map[usable] = _leaves_of(label[-1][usable], lut, path, "label")
    inconsistent = int(sum((label[lv][usable] != expected[lv][leaf_map[usable]]).sum() for lv in range(LEVELS - 1)))
    last = np.zeros(label.shape[1:], np.int64)
    if prior is not None:
        known = usable & (prior[-1] != 0) & (prior[-1] != IGNORE)
        last[known] = np.asarray(taxonomy.codes)[_leaves_of(prior[-1][known], lut, path, "priors")]
    codes = np.asarray(taxonomy.codes)
    refl = s2.astype(np.float32) / np.float32(series.SCALE)  # (T, B, H, W)
    if unit == "pixel":
        rows, cols = select_pixels(usable, max_pixels, seed, name)
        x = refl[:, :, rows, cols].transpose(2, 1, 0)
        table = pd.DataFrame({"parcel": rows * label.shape[2] + cols, "code": codes[leaf_map[rows, cols]],
                              "last_code": last[rows, cols], "n_pure": 1, "row": rows, "col": cols})  # fmt: skip
        return x, table, inconsistent
    import cv2

    group, offset = np.full(label.shape[1:], -1, np.int64), 0
    for v in np.unique(leaf_map[usable]):
        n, comp = cv2.connectedComponents((leaf_map == v).astype(np.uint8), connectivity=4)
        group[comp > 0] = comp[comp > 0] - 1 + offset
        offset += n - 1
    ids, inv = np.unique(group[usable], return_inverse=True)
    x = means_by_label(refl.transpose(1, 0, 2, 3)[:, :, usable], inv, len(ids))
    first = {}
    for g, r, c in zip(group[usable], *np.nonzero(usable), strict=True):
        first.setdefault(int(g), (r, c))
    rc = np.array([first[int(g)] for g in ids]).reshape(-1, 2)
    table = pd.DataFrame({"parcel": ids, "code": codes[leaf_map[rc[:, 0], rc[:, 1]]],
                          "last_code": last[rc[:, 0], rc[:, 1]], "n_pure": np.bincount(inv),
                          "row": rc[:, 0], "col": rc[:, 1]})  # fmt: skip
    return x, table, inconsistent


UNITS = ("pixel", "parcel")


def read_h2crop(root: Path | str, taxonomy: Taxonomy, ids: list[dict[str, int]] | None = None, unit: str = "pixel",
                max_pixels: int | None = 2000, seed: int = 0, splits=None) -> ParcelDataset:  # fmt: skip
    """An H2Crop tree as a dataset (see the module doc); split column from the list each sample is in."""
    root = Path(root)
    if unit not in UNITS:
        raise DatasetError(f"unit {unit!r}: choose one of {', '.join(UNITS)}")
    ids = ids or default_ids(taxonomy)
    lut, expected = _luts(taxonomy, ids)
    _, h5 = _lists(root)
    parts, tables, n_months, inconsistent = [], [], None, 0
    for split, names in split_names(root).items():
        if splits is not None and split not in splits:
            continue
        for name in names:
            x, table, bad = _file_samples(h5 / f"{name}.h5", name, taxonomy, lut, expected, unit, max_pixels, seed)
            if n_months is None:
                n_months = x.shape[2]
            elif x.shape[2] != n_months:
                raise DatasetError(f"{h5 / (name + '.h5')} has {x.shape[2]} months, the samples before it {n_months}; "
                                   "one dataset has one month count")  # fmt: skip
            table["window"], table["split"] = name, split
            parts.append(x)
            tables.append(table)
            inconsistent += bad
    if not parts:
        raise DatasetError(f"{root}: no sample in the split lists {splits or list(SPLIT_FILES)}")
    table = pd.concat(tables, ignore_index=True)
    table = table.assign(lon=np.nan, lat=np.nan, temperature=np.nan, province="")
    months = ALL_MONTHS[:n_months]
    meta = {"source": {"kind": "h2crop", "root": str(root), "unit": unit, "max_pixels": max_pixels, "seed": seed,
                       "months": list(months)}, "inconsistent_levels": inconsistent}  # fmt: skip
    return ParcelDataset(np.concatenate(parts).astype(np.float32), table, series.BANDS, month_steps(months), meta)
