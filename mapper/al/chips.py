"""Pools of chips: label rounds over imagery that is not on mapper's block grid (a team's own image chips, or a
public labelled dataset's training part with its masks hidden).

A chip campaign's pool is a folder of chip *images* inside the campaign (`pool/<chip_id>/image_chip.tif` and
`chip.json` with its pixel size): `import_pool` copies the images of labelled chips (never their masks) or
plain image files. Selection reads only what the model in force predicts on them (`chip_table`); the masks come
back, chip by chip, in the files a labeller returns: labelled chips (mapper.labels.chips), as
`mapper labels import chips` writes them.

`chip_table` gives the selection's table the columns of a `mapper run` pool table for one source (mapper.al.pool),
so every one-source strategy runs unchanged: `block_id` is the chip id; a chip has no position (`ix`, `iy` NaN:
no spacing, no distance in km), no IQA class (`a_coverage` "Unjudged": usable), no terrain (NaN features). Its
area is true ground m² from its declared pixel size.
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from mapper.labels.chips import CHIP_SOURCE, check_gsd, chip_dirs, chip_id_from, read_chip_json
from mapper.labels.store import LabelError, image_file
from mapper.store.atomic import atomic_write_text

POOL_CHIP_FILE = "chip.json"
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
NO_IQA = "Unjudged"  # a chip's coverage: no IQA class (usable: not Cloudy, Snow/Ice or Nodata)
REGION_FEATURES = ("area_fraction", "solidity_mean", "edge_density_m_per_ha")
QUALITY = ("sharpness", "hue_median", "saturation_median", "lightness_median")


# ---------------------------------------------------------------------------------------------- the pool
def pool_items(source: Path, gsd_m: float | None = None) -> list[tuple[str, Path, float]]:
    """(chip id, image file, pixel size) of every chip of the pool at `source`, checked, nothing written: a
    folder of labelled chips (their images; their masks are never read) or of image files (RGB; `gsd_m`
    required: their pixel size in metres)."""
    source = Path(source)
    labelled = chip_dirs(source) if source.is_dir() else []
    if labelled:
        metas = [read_chip_json(d) for d in labelled]
        items = [(m["chip"], d / image_file(CHIP_SOURCE), float(m["gsd_m"])) for m, d in zip(metas, labelled,
                                                                                            strict=True)]  # fmt: skip
    else:
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if source.is_dir() else []
        if not files:
            raise LabelError(f"--pool-chips {source}: neither labelled chips (`mapper labels import chips`) nor image "
                             f"files ({', '.join(IMAGE_SUFFIXES)}) there")  # fmt: skip
        if gsd_m is None:
            raise LabelError(f"--pool-chips {source} holds plain images: give their pixel size with --gsd METRES")
        gsd = check_gsd(gsd_m)
        items = [(chip_id_from(p.stem), p, gsd) for p in files]
    ids = [cid for cid, _, _ in items]
    twice = sorted({c for c in ids if ids.count(c) > 1})
    if twice:
        raise LabelError(f"--pool-chips {source}: several images give the chip id(s) {', '.join(twice[:5])}")
    return items


def import_pool(items: list[tuple[str, Path, float]], out: Path) -> list[str]:
    """Copy the pool's chip images (`pool_items`) into `out`; returns the chip ids, sorted. Chips already copied
    are kept."""
    for cid, image, gsd in items:
        _copy_image(cid, image, gsd, out)
    return sorted(cid for cid, _, _ in items)


def _copy_image(chip_id: str, image: Path, gsd_m: float, out: Path) -> None:
    import rasterio

    final = out / chip_id
    if (final / POOL_CHIP_FILE).exists():
        return
    rgb, valid = read_image(image)
    tmp = out / f".{chip_id}.copy"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    h, w = valid.shape
    options = {"driver": "GTiff", "width": w, "height": h, "count": 3, "dtype": "uint8", "photometric": "RGB",
               "compress": "deflate"}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(tmp / image_file(CHIP_SOURCE), "w", **options) as dst:
            dst.write(np.moveaxis(rgb, -1, 0))
            if not valid.all():
                dst.write_mask(valid.astype(np.uint8) * 255)
    atomic_write_text(tmp / POOL_CHIP_FILE, json.dumps({"chip": chip_id, "gsd_m": gsd_m, "image": str(image)}) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)  # whole or not at all


def read_image(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(rgb (H, W, 3) uint8, valid (H, W) bool) of an image file: its first three bands; its mask or alpha."""
    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            if src.count < 3 or src.dtypes[0] != "uint8":
                raise LabelError(f"{path}: an RGB uint8 image is needed (it has {src.count} band(s) of "
                                 f"{src.dtypes[0]})")  # fmt: skip
            rgb = np.moveaxis(src.read([1, 2, 3]), 0, -1)
            valid = src.read_masks(1) > 0
    return rgb, valid


def pool_chip(directory: Path) -> tuple[str, np.ndarray, np.ndarray, float]:
    """(chip id, rgb, valid, gsd_m) of a pool chip: the image only (a pool chip has no mask)."""
    meta = json.loads((directory / POOL_CHIP_FILE).read_text(encoding="utf-8"))
    rgb, valid = read_image(directory / image_file(CHIP_SOURCE))
    return str(meta["chip"]), rgb, valid, float(meta["gsd_m"])


# ---------------------------------------------------------------------------------------------- the table
def chip_table(segmenter, directories: list[Path], region: str) -> pd.DataFrame:
    """The selection's table of these pool chips as `segmenter` predicts them (module docstring); with
    `segmenter` None (a strategy that reads no prediction: random) the prediction's columns are NaN."""
    chips = {i: pool_chip(d) for i, d in enumerate(directories)}
    if segmenter is None:
        rows = [_row(*chip, None, math.nan) for chip in chips.values()]
    else:
        inputs = [(i, (rgb, valid), gsd) for i, (_, rgb, valid, gsd) in chips.items()]
        rows = [_row(*chips[i], np.nan_to_num(r.probability, nan=0.0), segmenter.threshold)
                for i, r in segmenter.predict(inputs)]  # fmt: skip
    table = pd.DataFrame(rows).assign(province=region)
    return table.sort_values("block_id", kind="stable").reset_index(drop=True)


def _row(chip_id: str, rgb: np.ndarray, valid: np.ndarray, gsd: float, prob: np.ndarray | None, threshold: float
         ) -> dict:  # fmt: skip
    from mapper.features.regionprops import block_properties
    from mapper.iqa.features import quality_features
    from mapper.run.stages import uncertain_fraction

    quality = quality_features(rgb, valid)
    props = dict.fromkeys(("cropland_m2", *REGION_FEATURES), math.nan)
    if prob is not None:
        props = block_properties((prob > threshold) & valid, np.full(valid.shape[0], gsd * gsd), valid)
    return {
        "block_id": chip_id, "ix": math.nan, "iy": math.nan, "province": "", "status": "done",
        "a_coverage": NO_IQA, "a_valid_fraction": quality["valid_fraction"],
        "a_uncertain_fraction": math.nan if prob is None else uncertain_fraction(prob, valid),
        "land_m2": float(valid.sum()) * gsd * gsd, "cropland_m2": float(props["cropland_m2"]),
        "cropland_fraction": props["area_fraction"], **{f"a_{k}": props[k] for k in REGION_FEATURES},
        **{f"a_{k}": quality[k] for k in QUALITY}, "elevation_median": math.nan, "slope_median_deg": math.nan,
        "gsd_m": gsd,
    }  # fmt: skip
