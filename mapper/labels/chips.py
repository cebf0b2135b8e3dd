"""The on-disk form of a labelled chip: real labelled imagery that is not a mapper block.

Public land-cover datasets (GID, LoveDA, DeepGlobe, OpenEarthMap) and a team's own orthophotos come at their
own pixel size, rarely on mapper's z16 block grid. A labelled chip keeps what it is — no invented
georeference — and says its pixel size. It is a directory `<root>/<chip_id>/` holding

- `image_chip.tif`: RGB uint8 (an internal mask where there is no imagery); georeferenced on the source
  image's own grid when the chip was cut from a georeferenced image (`labels import raster`), without any
  georeference otherwise (`labels import chips`);
- `mask.tif`: one uint8 band of the same size, 0 = not cropland, 1 = cropland, 255 = ignore (as for blocks);
- `label.json` (format mapper-labelled-chip/1): chip id, `gsd_m` (metres per pixel: declared by whoever
  imported plain chips, measured from the georeference of a georeferenced image; never guessed), origin,
  dataset, class map (which source values became cropland, not cropland, ignore), the source files, and the
  fractions. Written last and atomically: its presence marks a complete chip.

The chip's image is "source" `chip` (`image_file("chip")`), so segmentation training and evaluation read a
chip's crops exactly as they read a block image's.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mapper.labels.store import (
    CROPLAND,
    IGNORE,
    LABEL_FILE,
    MASK_CONVENTION,
    MASK_FILE,
    LabelError,
    check_mask_values,
    image_file,
)
from mapper.store.atomic import atomic_path, atomic_write_text

CHIP_FORMAT = "mapper-labelled-chip/1"
CHIP_SOURCE = "chip"
MIN_GSD_M, MAX_GSD_M = 0.05, 100.0
_CHIP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_gsd(gsd_m, what: str = "--gsd") -> float:
    """A declared pixel size in metres, or LabelError naming the fix (missing, not a number, absurd)."""
    if gsd_m is None:
        raise LabelError(f"{what} is missing: declare the imagery's pixel size in metres (e.g. --gsd 4 for GID)")
    try:
        value = float(gsd_m)
    except (TypeError, ValueError):
        raise LabelError(f"{what} {gsd_m!r} is not a number of metres per pixel") from None
    if not math.isfinite(value) or not MIN_GSD_M <= value <= MAX_GSD_M:
        raise LabelError(
            f"{what} {gsd_m!r} m is not a plausible pixel size ({MIN_GSD_M:g}-{MAX_GSD_M:g} m); give metres per "
            "pixel, e.g. 0.5 for an aerial orthophoto, 4 for Gaofen-2 multispectral"
        )
    return value


def chip_id_from(stem: str) -> str:
    """A chip id (a safe directory name) from a file stem; LabelError if nothing usable is left."""
    cid = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:128]
    if not cid or not _CHIP_ID.match(cid):
        raise LabelError(f"cannot make a chip id from the file name {stem!r}; rename it with letters and digits")
    return cid


@dataclass
class LabelledChip:
    path: Path
    chip_id: str
    rgb: np.ndarray  # (H, W, 3) uint8
    valid: np.ndarray  # (H, W) bool: imagery present
    mask: np.ndarray  # (H, W) uint8 0/1/255
    gsd_m: float
    meta: dict = field(default_factory=dict)

    def target(self) -> np.ndarray:
        out = self.mask.copy()
        out[~self.valid] = IGNORE
        return out

    @property
    def cropland_fraction(self) -> float:
        labelled = np.count_nonzero(self.mask != IGNORE)
        return float(np.count_nonzero(self.mask == CROPLAND)) / labelled if labelled else float("nan")


def write_labelled_chip(
    out_root: Path | str,
    chip_id: str,
    rgb: np.ndarray,
    mask: np.ndarray,
    *,
    gsd_m: float,
    origin: str,
    dataset: str | None = None,
    class_map: dict | None = None,
    source_files: dict | None = None,
    valid: np.ndarray | None = None,
    georef: tuple | None = None,
    extra: dict | None = None,
) -> Path:
    """Write `<out_root>/<chip_id>/` (see the module docstring); returns the directory.

    `georef` = (crs, transform) of the chip's own grid, or None for a chip without georeference. Everything is
    checked before anything is written; label.json goes last, so a kill leaves a complete chip or one that
    reads as incomplete (written again by the next import)."""
    import rasterio

    if not _CHIP_ID.match(chip_id):
        raise LabelError(f"chip id {chip_id!r} cannot be a directory name; use letters, digits, . _ -")
    gsd_m = check_gsd(gsd_m, "the pixel size")
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise LabelError(f"chip {chip_id}: the image must be RGB uint8 (H, W, 3), not {rgb.shape} {rgb.dtype}")
    mask = np.asarray(mask)
    if mask.shape != rgb.shape[:2]:
        raise LabelError(f"chip {chip_id}: mask {mask.shape[::-1]} and image {rgb.shape[1::-1]} (W × H) differ")
    check_mask_values(mask, f"the mask of chip {chip_id}")
    valid = np.ones(mask.shape, bool) if valid is None else np.asarray(valid, bool)
    h, w = mask.shape
    base = {"driver": "GTiff", "width": w, "height": h, "tiled": True, "blockxsize": 256, "blockysize": 256,
            "compress": "deflate"}  # fmt: skip
    if georef is not None:
        base.update(crs=georef[0], transform=georef[1])
    out = Path(out_root) / chip_id
    out.mkdir(parents=True, exist_ok=True)
    (out / LABEL_FILE).unlink(missing_ok=True)  # from here until the end the chip reads as incomplete
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # a chip keeps having none
        image_options = {**base, "count": 3, "dtype": "uint8", "photometric": "RGB"}
        with atomic_path(out / image_file(CHIP_SOURCE)) as tmp, rasterio.open(tmp, "w", **image_options) as dst:
            dst.write(np.moveaxis(rgb, -1, 0))
            if not valid.all():
                dst.write_mask(valid.astype(np.uint8) * 255)
        mask_options = {**base, "count": 1, "dtype": "uint8", "nodata": IGNORE}
        with atomic_path(out / MASK_FILE) as tmp, rasterio.open(tmp, "w", **mask_options) as dst:
            dst.write(mask[None])
            dst.update_tags(MAPPER_MASK=MASK_CONVENTION)

    from mapper import __version__

    labelled = int(np.count_nonzero(mask != IGNORE))
    meta = {
        "format": CHIP_FORMAT,
        "chip": chip_id,
        "gsd_m": gsd_m,
        "georeferenced": georef is not None,
        "sources": [CHIP_SOURCE],
        "images": {CHIP_SOURCE: image_file(CHIP_SOURCE)},
        "mask": MASK_FILE,
        "mask_convention": MASK_CONVENTION,
        "coverage": {CHIP_SOURCE: None},
        "origin": origin,
        "dataset": dataset,
        "class_map": class_map,
        "source_files": source_files or {},
        "width": w,
        "height": h,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "mapper_version": __version__,
        "labelled_fraction": labelled / mask.size,
        "cropland_fraction": int(np.count_nonzero(mask == CROPLAND)) / labelled if labelled else None,
        "nodata_fraction": 1.0 - float(np.count_nonzero(valid)) / valid.size,
        **(extra or {}),
    }
    atomic_write_text(out / LABEL_FILE, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return out


def is_chip(meta: dict) -> bool:
    return meta.get("format") == CHIP_FORMAT


def read_chip_json(directory: Path | str) -> dict:
    from mapper.labels.store import read_label_json

    meta = read_label_json(directory)
    if not is_chip(meta):
        raise LabelError(f"{directory} is a labelled block, not a chip")
    check_gsd(meta.get("gsd_m"), f"{Path(directory) / LABEL_FILE}: gsd_m")
    return meta


def read_labelled_chip(directory: Path | str) -> LabelledChip:
    """Read and validate a labelled chip: files present, image RGB uint8, mask one uint8 band of the image's
    size with values in {0, 1, 255}, some pixel labelled. LabelError names the problem and its fix."""
    import rasterio

    directory = Path(directory)
    meta = read_chip_json(directory)
    image_path, mask_path = directory / image_file(CHIP_SOURCE), directory / MASK_FILE
    missing = [p.name for p in (image_path, mask_path) if not p.exists()]
    if missing:
        raise LabelError(f"{directory}: missing {', '.join(missing)}; import the chip again")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(image_path) as src:
            if src.count != 3 or any(dt != "uint8" for dt in src.dtypes):
                raise LabelError(f"{image_path} is not RGB uint8; import the chip again")
            rgb = np.moveaxis(src.read(), 0, -1)
            valid = src.read_masks(1) > 0
        with rasterio.open(mask_path) as src:
            if src.count != 1 or src.dtypes[0] != "uint8":
                raise LabelError(f"{mask_path} must be one uint8 band (0/1/255); import the chip again")
            mask = src.read(1)
    if mask.shape != valid.shape:
        raise LabelError(f"{directory}: mask {mask.shape} and image {valid.shape} differ; import the chip again")
    check_mask_values(mask, str(mask_path))
    if not np.any(mask != IGNORE):
        raise LabelError(f"{mask_path} labels no pixel (all 255 = ignore); delete the chip or label it")
    return LabelledChip(directory, str(meta["chip"]), rgb, valid, mask, float(meta["gsd_m"]), meta)


def chip_dirs(root: Path | str) -> list[Path]:
    """Subdirectories of `root` whose label.json (present) says they are chips, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise LabelError(f"{root} is not a directory of labelled chips")
    out = []
    for p in sorted(root.iterdir()):
        f = p / LABEL_FILE
        if p.is_dir() and f.exists():
            try:
                if is_chip(json.loads(f.read_text(encoding="utf-8"))):
                    out.append(p)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
    return out
