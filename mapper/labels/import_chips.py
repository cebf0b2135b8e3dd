"""`mapper labels import chips`: image/mask pairs of a land-cover dataset (or a team's own) -> labelled chips.

Pairs: an image and its mask share a file stem (PNG, JPEG or TIFF, any case of extension). A mask's stem may
end in `_mask`, `_label`, `_labels`, `_gt` or `_lbl`, an image's in `_sat`, `_image`, `_img` or `_rgb`
(`-` works as well as `_`): DeepGlobe's `119_sat.jpg` pairs with `119_mask.png`, as chip `119`. Images and
masks may share one folder (DeepGlobe's train/): there a file with a mask suffix is a mask. Folders are read
flat, not recursively. Chip id: `chip_id_from(id_prefix + stem without its suffix)`.

Images are RGB uint8; RGBA loses its alpha, which becomes the chip's no-imagery mask (alpha 0 = no imagery);
a TIFF's nodata or internal mask does the same. Grey, palette, 16-bit or multispectral images are refused
with the conversion to make. Masks go through a `ClassMap` (mapper.labels.chip_classes).

Everything is checked before anything is written: folders, pairing, chip ids, each image and mask (readable,
same size, every mask value mapped) and the chips already under OUT. Rules for chips already there:

- same source files (sha256), class map, pixel size, dataset and origin: skipped, nothing is written, so
  importing again is free and importing a second folder into the same OUT adds its chips beside the first's;
- same chip id, different content: refused, listing the chips and what differs, unless `replace=True`
  (`--replace`), which replaces them and counts them in the summary; a chip never disappears unasked. Two
  datasets with the same file names go into one OUT with `id_prefix`;
- a directory of that name that is not a chip (a labelled block): always refused;
- a chip directory without label.json (an interrupted import): written again.

A pair whose mask labels no pixel (all ignore, or no imagery where it is labelled) is left out and counted.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mapper.labels.chip_classes import ClassMap, UnmappedValues
from mapper.labels.chips import check_gsd, chip_id_from, is_chip, write_labelled_chip
from mapper.labels.store import IGNORE, LABEL_FILE, LabelError

ORIGIN = "import chips"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_MASK_SUFFIX = re.compile(r"[_-](mask|label|labels|gt|lbl)$", re.IGNORECASE)
_IMAGE_SUFFIX = re.compile(r"[_-](sat|image|img|rgb)$", re.IGNORECASE)
_CACHE_PIXELS = 50_000_000  # decoded pairs kept between checking and writing (~4 bytes a pixel)
_LISTED = 10


@dataclass(frozen=True)
class Pair:
    key: str  # the stem both files share, suffixes removed
    image: Path
    mask: Path


@dataclass
class ImportSummary:
    written: list[str] = field(default_factory=list)  # new chips
    skipped: list[str] = field(default_factory=list)  # already there with the same content
    replaced: list[str] = field(default_factory=list)  # there with other content, replaced (replace=True)
    empty: list[str] = field(default_factory=list)  # no labelled pixel: left out


def _listing(items: list[str]) -> str:
    more = f" … and {len(items) - _LISTED} more" if len(items) > _LISTED else ""
    return ", ".join(items[:_LISTED]) + more


def _raster_files(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise LabelError(f"{what} {folder} is not a folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _by_key(files: list[Path], suffix: re.Pattern | None, what: str) -> dict[str, Path]:
    """Files by stem (with `suffix` removed); LabelError when two files give one key ("a.png", "a.tif")."""
    out: dict[str, Path] = {}
    clashes = []
    for p in files:
        key = suffix.sub("", p.stem) if suffix else p.stem
        if key in out:
            clashes.append(f"{out[key].name} and {p.name}")
        out[key] = p
    if clashes:
        raise LabelError(f"two {what} files for one chip: {_listing(clashes)}; keep one of each")
    return out


def pair_files(images_dir: Path | str, masks_dir: Path | str) -> list[Pair]:
    """Image/mask pairs matched by stem (module docstring), sorted by key; LabelError listing unmatched files.

    Equal stems pair first (key: the stem); the rest pair once the suffixes are removed (`119_sat` with
    `119_mask`, key `119`), so an image and mask both named `x_rgb` still pair."""
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    masks = _raster_files(masks_dir, "--masks")
    if images_dir.resolve() == masks_dir.resolve():
        masks = [p for p in masks if _MASK_SUFFIX.search(p.stem)]
        taken = set(masks)
        images = [p for p in _raster_files(images_dir, "--images") if p not in taken]
    else:
        images = _raster_files(images_dir, "--images")
    kinds = "PNG, JPEG or TIFF files"
    if not images:
        raise LabelError(f"no images ({kinds}) in {images_dir}; point --images at the folder of image files")
    if not masks:
        raise LabelError(f"no masks ({kinds}) in {masks_dir}; point --masks at the folder of mask files")
    image_stems, mask_stems = _by_key(images, None, "image"), _by_key(masks, None, "mask")
    pairs = {k: Pair(k, image_stems.pop(k), mask_stems.pop(k)) for k in sorted(image_stems.keys() & mask_stems.keys())}
    by_image = _by_key(list(image_stems.values()), _IMAGE_SUFFIX, "image")
    by_mask = _by_key(list(mask_stems.values()), _MASK_SUFFIX, "mask")
    lonely_images = [by_image[k].name for k in sorted(by_image.keys() - by_mask.keys())]
    lonely_masks = [by_mask[k].name for k in sorted(by_mask.keys() - by_image.keys())]
    if lonely_images or lonely_masks:
        parts = []
        if lonely_images:
            parts.append(f"{len(lonely_images)} image(s) in {images_dir} without a mask: {_listing(lonely_images)}")
        if lonely_masks:
            parts.append(f"{len(lonely_masks)} mask(s) in {masks_dir} without an image: {_listing(lonely_masks)}")
        raise LabelError(
            "; ".join(parts) + ". An image and its mask must share a name (the mask may end in _mask or _label, "
            "the image in _sat); rename them, or move the strays out of the folders"
        )
    pairs_by_suffix = [Pair(k, by_image[k], by_mask[k]) for k in by_image]
    return sorted([*pairs.values(), *pairs_by_suffix], key=lambda p: (p.key, p.image.name))


# ---------------------------------------------------------------------------------------------- reading
def _open_tiff(path: Path):
    import rasterio

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            return rasterio.open(path)
    except rasterio.errors.RasterioError as e:
        raise LabelError(f"cannot read {path}: {e}") from None


def _open_pil(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(path)
        img.load()
        return img
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise LabelError(f"cannot read {path}: {e}") from None


def _is_tiff(path: Path) -> bool:
    return path.suffix.lower() in (".tif", ".tiff")


def read_image(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(rgb (H, W, 3) uint8, valid (H, W) bool); LabelError with the conversion to make for other images."""
    fix = "mapper needs RGB uint8 imagery (true colour)"
    if _is_tiff(path):
        from rasterio.enums import ColorInterp

        with _open_tiff(path) as src:
            alpha4 = src.count == 4 and src.colorinterp[3] == ColorInterp.alpha
            if any(dt != "uint8" for dt in src.dtypes):
                raise LabelError(f"{path} is {src.dtypes[0]}, not uint8; {fix}: scale it to 8 bits, e.g. "
                                 "`gdal_translate -ot Byte -scale in.tif out.tif`")  # fmt: skip
            if src.count != 3 and not alpha4:
                raise LabelError(f"{path} has {src.count} band(s); {fix}: keep the red, green and blue bands, "
                                 "e.g. `gdal_translate -b 1 -b 2 -b 3 in.tif out.tif`")  # fmt: skip
            rgb = np.moveaxis(src.read([1, 2, 3]), 0, -1)
            valid = src.dataset_mask() > 0
        return rgb, valid
    img = _open_pil(path)
    if img.mode == "RGB":
        return np.asarray(img), np.ones((img.height, img.width), bool)
    if img.mode == "RGBA":
        arr = np.asarray(img)
        return np.ascontiguousarray(arr[..., :3]), arr[..., 3] > 0
    hint = "expand its palette (`gdal_translate -expand rgb`)" if img.mode == "P" else "give the colour image"
    raise LabelError(f"{path} is a {img.mode} image, not RGB; {fix}: {hint}")


def read_mask(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(values (H, W) or colours (H, W, 3), palette (N, 3) of a palette mask or None)."""
    fix = "a mask is one band of class values (a palette PNG counts) or RGB colours"
    if _is_tiff(path):
        with _open_tiff(path) as src:
            if src.count not in (1, 3) or not all(np.issubdtype(np.dtype(d), np.integer) for d in src.dtypes):
                raise LabelError(f"{path} has {src.count} {src.dtypes[0]} band(s); {fix}, in integers")
            if src.count == 3:
                return np.moveaxis(src.read(), 0, -1), None
            palette = None
            try:
                cmap = src.colormap(1)
                palette = np.array([cmap.get(i, (0, 0, 0, 0))[:3] for i in range(max(cmap) + 1)], np.uint8)
            except ValueError:  # no colour table
                pass
            return src.read(1), palette
    img = _open_pil(path)
    if img.mode == "P":
        pal = np.array(img.getpalette() or [], np.uint8).reshape(-1, 3)
        return np.asarray(img), pal if len(pal) else None
    if img.mode in ("L", "I", "I;16", "I;16B", "I;16L"):
        return np.asarray(img), None
    if img.mode == "1":
        return np.asarray(img).astype(np.uint8), None
    if img.mode == "RGB":
        return np.asarray(img), None
    raise LabelError(f"{path} is a {img.mode} image; {fix} (save it without an alpha channel)")


def _decode(pair: Pair, class_map: ClassMap) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb, valid, mask in mapper's convention) of a pair; LabelError naming the file(s) and the fix."""
    rgb, valid = read_image(pair.image)
    raw, palette = read_mask(pair.mask)
    if raw.shape[:2] != rgb.shape[:2]:
        (h, w), (mh, mw) = rgb.shape[:2], raw.shape[:2]
        raise LabelError(
            f"{pair.image.name} is {w} × {h} px but its mask {pair.mask.name} is {mw} × {mh} px; a mask must "
            "cover its image pixel for pixel (re-export it at the image's size, nearest-neighbour)"
        )
    return rgb, valid, class_map.apply(raw, palette, str(pair.mask))


# ---------------------------------------------------------------------------------------------- importing
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _differences(meta: dict, planned: dict) -> list[str]:
    """What differs between a chip's label.json and the chip this import would write."""
    out = []
    for key, what in (("origin", "origin"), ("dataset", "dataset"), ("gsd_m", "pixel size"),
                      ("class_map", "class map")):  # fmt: skip
        if meta.get(key) != planned[key]:
            out.append(what)
    old = (meta.get("source_files") or {}).get("sha256") or {}
    out += [f"{kind} file" for kind in ("image", "mask") if old.get(kind) != planned["source_files"]["sha256"][kind]]
    return out


def _fix_for_unmapped(class_map: ClassMap, values: set[str]) -> str:
    shown = ",".join(sorted(values, key=lambda v: (len(v), v)))
    if class_map.source == "values":
        return (f"say what they are: add them to --not-values, --cropland-values or --ignore-values (e.g. "
                f"--not-values {shown} if none is cropland), or use a --preset or --class-map")  # fmt: skip
    return (f"add {shown} to the class map (a --class-map CSV line `value,class`), or check that the masks are "
            "the dataset's class masks and not colour renderings")  # fmt: skip


def import_chips(
    images_dir: Path | str,
    masks_dir: Path | str,
    out: Path | str,
    *,
    gsd_m,
    class_map: ClassMap,
    dataset: str | None = None,
    id_prefix: str = "",
    replace: bool = False,
) -> ImportSummary:
    """Import every image/mask pair as a labelled chip under `out` (rules in the module docstring)."""
    gsd = check_gsd(gsd_m)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LabelError(f"--out {out} is a file; give a folder of labelled chips")
    pairs = pair_files(images_dir, masks_dir)
    ids: dict[str, Pair] = {}
    same_id = []
    for pair in pairs:
        cid = chip_id_from(f"{id_prefix}{pair.key}")
        if cid in ids:
            same_id.append(f"{ids[cid].image.name} and {pair.image.name} -> {cid}")
        ids[cid] = pair
    if same_id:
        raise LabelError(f"two images give one chip id: {_listing(same_id)}; rename one of each")

    cmap_json = json.loads(json.dumps(class_map.to_json()))  # as label.json will read back
    planned: dict[str, dict] = {}
    summary = ImportSummary()
    clashes, not_chips = [], []
    for cid, pair in ids.items():
        plan = {
            "origin": ORIGIN, "dataset": dataset, "gsd_m": gsd, "class_map": cmap_json,
            "source_files": {"image": str(pair.image.absolute()), "mask": str(pair.mask.absolute()),
                             "sha256": {"image": _sha256(pair.image), "mask": _sha256(pair.mask)}},
        }  # fmt: skip
        label = out / cid / LABEL_FILE
        if (out / cid).exists() and not (out / cid).is_dir():
            not_chips.append(f"{cid} (a file)")
            continue
        if label.exists():
            try:
                meta = json.loads(label.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                meta = {}
            if not is_chip(meta):
                not_chips.append(cid)
                continue
            diff = _differences(meta, plan)
            if not diff:
                summary.skipped.append(cid)
                continue
            if not replace:
                clashes.append(f"{cid} (from {Path(meta.get('source_files', {}).get('image', '?')).name}: "
                               f"{', '.join(diff)} differ)")  # fmt: skip
                continue
            plan["replaces"] = True
        planned[cid] = plan
    if not_chips:
        raise LabelError(f"{out} already holds something other than a labelled chip under the name(s) "
                         f"{_listing(not_chips)}; import into another --out, or give an --id-prefix")  # fmt: skip
    if clashes:
        raise LabelError(
            f"{len(clashes)} chip(s) already in {out} hold other content: {_listing(clashes)}. Nothing was "
            "written. Give --replace to replace them, or --id-prefix (or another --out) to keep both"
        )

    # Check every pair before writing any; keep small decoded pairs for the writing pass.
    problems, unmapped, cache, cached_px = [], set(), {}, 0
    for cid in planned:
        pair = ids[cid]
        try:
            rgb, valid, mask = _decode(pair, class_map)
        except UnmappedValues as e:
            problems.append(str(e))
            unmapped.update(e.values)
            continue
        except LabelError as e:
            problems.append(str(e))
            continue
        if not np.any((mask != IGNORE) & valid):
            summary.empty.append(cid)
        elif cached_px + mask.size <= _CACHE_PIXELS:
            cache[cid] = (rgb, valid, mask)
            cached_px += mask.size
    if problems:
        fix = f"\nTo fix the unmapped values: {_fix_for_unmapped(class_map, unmapped)}." if unmapped else ""
        listed = "\n".join(f"- {p}" for p in problems[:_LISTED])
        more = f"\n… and {len(problems) - _LISTED} more" if len(problems) > _LISTED else ""
        raise LabelError(f"{len(problems)} of {len(planned)} pair(s) cannot be imported; nothing was written:"
                         f"\n{listed}{more}{fix}")  # fmt: skip

    for cid, plan in planned.items():
        if cid in summary.empty:
            continue
        rgb, valid, mask = cache.pop(cid, None) or _decode(ids[cid], class_map)
        write_labelled_chip(out, cid, rgb, mask, gsd_m=gsd, origin=ORIGIN, dataset=dataset, class_map=cmap_json,
                            source_files=plan["source_files"], valid=None if valid.all() else valid)  # fmt: skip
        (summary.replaced if plan.get("replaces") else summary.written).append(cid)
    return summary
