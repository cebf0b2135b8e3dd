"""`mapper labels import raster`: a georeferenced image and hand-drawn polygons -> labelled chips on its own grid.

The commonest real labels: an orthophoto (any CRS; RGB uint8, or 3+ bands whose first three are R, G, B) and
polygons drawn over it in QGIS. The image is cut, never reprojected, into chips of `chip` px on a regular grid from
its top-left pixel; the polygons (GeoPackage, GeoParquet, GeoJSON, Shapefile; any CRS; read and checked by
mapper.labels.polygons) are reprojected to the image's CRS and burned on each chip's own grid by the pixel-centre
rule (`rasterio.features.rasterize`, all_touched=False). Each chip is a labelled chip (mapper.labels.chips)
georeferenced on the image's grid.

Rules:
- **Classes.** Without `class_field` every polygon is cropland. With it, a polygon is cropland if its value is
  one of `cropland_values`, ignore if one of `ignore_values`, and not cropland otherwise (values compare as
  text, case-insensitively, 1 = 1.0). A polygon without a value is refused (unfinished labelling).
- **Labelled extent.** A pixel is labelled when its centre lies in the extent or in a polygon (a drawn polygon
  speaks for its own area, also where it reaches past the extent). The extent is the union of the `extent`
  polygons (areas the labeller covered completely); without them it is the polygons themselves. Labelled
  pixels in no polygon are not cropland (0); all others are ignored (255). So cropland polygons alone, without
  an extent, give chips with no negative pixel: that is warned about.
- **Precedence** where polygons overlap: ignore > not cropland > cropland (a pond drawn inside a field is not
  cropland; an "unsure" polygon masks whatever lies under it).
- **No imagery**: pixels outside the image's dataset mask (internal mask, alpha band or nodata) are 255.
- **Chips**: edge chips keep their real size (not padded; training pads its crops with ignore anyway); id
  `<image stem>_r<row>_c<col>`, the image pixel of the chip's top-left corner; chips without a labelled pixel
  with imagery are skipped and counted.
- **GSD**: from the transform for a projected CRS (pixels square within 1 %, no rotation or shear); measured
  geodesically at the image centre, and said so, for a geographic CRS or a projected one whose scale is off
  there by more than 1 % (Web Mercator away from the equator). `declared_gsd` must agree within 5 %.
- **Invalid geometries** are refused, naming the features, unless `make_valid` repairs them.
- **Idempotent**: a chip whose label.json records the same source hashes, classes, GSD and window is left as it
  is; chips of earlier imports are never deleted (they are counted when this import did not produce them).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mapper.labels.chips import CHIP_FORMAT, MAX_GSD_M, MIN_GSD_M, check_gsd, chip_id_from, write_labelled_chip
from mapper.labels.polygons import polygon_classes, read_polygons
from mapper.labels.store import CROPLAND, IGNORE, LABEL_FILE, NOT_CROPLAND, LabelError, polygonal

ORIGIN = "import raster"
MIN_CHIP = 32
RULES = 1  # version of the rules above, recorded so that a change of them re-imports unchanged inputs
SQUARE_TOL, SCALE_TOL, DECLARED_TOL = 0.01, 0.01, 0.05


@dataclass
class RasterImportSummary:
    out: Path
    image: Path
    crs: str
    gsd_m: float
    gsd_note: str
    chips: int  # chips on the grid
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    unlabelled: int = 0
    earlier_kept: int = 0  # chips of earlier imports of this image that this import did not produce
    repaired: int = 0
    warnings: list[str] = field(default_factory=list)


def _sha256(path: Path) -> str:
    """Of the file; of a Shapefile with its sidecars (its attributes and CRS live in .dbf and .prj)."""
    files = [path]
    if path.suffix.lower() == ".shp":
        sidecars = {".shp", ".shx", ".dbf", ".prj", ".cpg"}
        files = sorted(p for p in path.parent.glob(path.stem + ".*") if p.suffix.lower() in sidecars)
    digests = []
    for p in files:
        with open(p, "rb") as f:
            digests.append(hashlib.file_digest(f, "sha256").hexdigest())
    return digests[0] if len(digests) == 1 else hashlib.sha256("".join(digests).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------- image
def check_image(src, path: Path) -> None:
    """RGB uint8 (first three bands), georeferenced, north-up without rotation or shear."""
    if src.count < 3 or any(dt != "uint8" for dt in src.dtypes[:3]):
        raise LabelError(
            f"image {path} has {src.count} band(s) of {', '.join(sorted(set(src.dtypes)))}; it must be RGB uint8 "
            "(3+ bands, the first three R, G, B): convert it, e.g. `gdal_translate -b 1 -b 2 -b 3 -ot Byte "
            "-scale in.tif rgb.tif` (choose -scale's range from the image's statistics)"
        )
    if src.crs is None:
        raise LabelError(
            f"image {path} has no CRS; assign its georeference (gdal_edit.py -a_srs EPSG:… -a_ullr …), or use "
            "`mapper labels import chips` for imagery without one"
        )
    t = src.transform
    if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
        raise LabelError(
            f"image {path} has a rotated, sheared or not north-up geotransform {tuple(t)[:6]}; warp it north-up "
            "first: `gdalwarp -r near in.tif north_up.tif`"
        )


def _utm_hint(lon: float, lat: float) -> str:
    return f"EPSG:{(32600 if lat >= 0 else 32700) + min(60, int((lon + 180) // 6) + 1)}"


def image_gsd(src, path: Path, declared=None) -> tuple[float, str, str]:
    """(metres per pixel, "transform" or "geodesic", a sentence saying how) — see the module docstring."""
    from pyproj import CRS, Transformer

    crs = CRS.from_wkt(src.crs.to_wkt())
    t, geodetic = src.transform, crs.geodetic_crs
    if geodetic is None or not (crs.is_geographic or crs.is_projected):
        raise LabelError(f"image {path}: its CRS {crs.name!r} is not tied to the Earth; reproject it (gdalwarp -t_srs)")
    cx, cy = src.width / 2, src.height / 2
    to_lonlat = Transformer.from_crs(crs, geodetic, always_xy=True)
    centre, right, below = ((cx, cy), (cx + 1, cy), (cx, cy + 1))
    (lon, lat), (lon_x, lat_x), (lon_y, lat_y) = (to_lonlat.transform(*(t @ p)) for p in (centre, right, below))
    geod = crs.get_geod()
    ground_x, ground_y = geod.inv(lon, lat, lon_x, lat_x)[2], geod.inv(lon, lat, lon_y, lat_y)[2]
    where = f"lat {lat:.4f}, lon {lon:.4f}"
    warp = f"`gdalwarp -t_srs {_utm_hint(lon, lat)} -tr R R -r bilinear {path.name} utm.tif` (R: the pixel size)"
    if crs.is_projected:
        unit = crs.axis_info[0].unit_conversion_factor
        size_x, size_y = t.a * unit, -t.e * unit
        if abs(size_x / size_y - 1) > SQUARE_TOL:
            raise LabelError(f"image {path} has pixels {size_x:.4g} × {size_y:.4g} m, not square; resample it: {warp}")
        nominal, ground = (size_x + size_y) / 2, math.sqrt(ground_x * ground_y)
        if abs(ground / nominal - 1) <= SCALE_TOL:
            gsd, how, note = nominal, "transform", f"{nominal:.4g} m from the transform"
        else:
            gsd, how = ground, "geodesic"
            note = (f"{ground:.4g} m measured geodesically at the image centre ({where}): the transform's "
                    f"{nominal:.4g} m pixels of {src.crs.to_string()} are not ground metres there")  # fmt: skip
    else:
        if abs(ground_x / ground_y - 1) > SQUARE_TOL:
            raise LabelError(
                f"image {path} is in degrees and its pixels are {ground_x:.4g} × {ground_y:.4g} m on the ground at "
                f"its centre, not square; warp it to a metric CRS: {warp}"
            )
        gsd, how = (ground_x + ground_y) / 2, "geodesic"
        note = f"{gsd:.4g} m measured geodesically at the image centre ({where}): {src.crs.to_string()} is in degrees"
    if declared is not None:
        declared = check_gsd(declared)
        if abs(declared / gsd - 1) > DECLARED_TOL:
            raise LabelError(
                f"--gsd {declared:g} m disagrees with image {path}: its pixels are {note}. Leave --gsd out, or fix "
                "the image's georeference"
            )
    if not MIN_GSD_M <= gsd <= MAX_GSD_M:
        raise LabelError(f"image {path}: pixel size {note}, not {MIN_GSD_M:g}-{MAX_GSD_M:g} m; check its georeference")
    return gsd, how, note


# ---------------------------------------------------------------------------------------------- import
def _bounds_text(bounds) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in bounds) + ")"


def _in_image(gdf, path: Path, src, image: Path, what: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(geometries in the image's CRS, which of them touch the image, warnings); LabelError if none does."""
    import shapely
    from rasterio.warp import transform_bounds

    geoms = gdf.to_crs(src.crs.to_wkt()).geometry.values
    if not np.isfinite(shapely.bounds(geoms)).all():
        raise LabelError(
            f"{what} {path} cannot be placed in the image's CRS {src.crs.to_string()} (coordinates out of range); "
            f"check that its declared CRS ({gdf.crs.to_string()}) is the one its coordinates are in"
        )
    geoms = np.array([polygonal(g) for g in geoms], dtype=object)  # reprojection can bend a ring invalid
    inside = shapely.intersects(geoms, shapely.box(*src.bounds)) & ~shapely.is_empty(geoms)
    if not inside.any():
        raise LabelError(
            f"{what} {path} do not overlap image {image}: they span {_bounds_text(shapely.total_bounds(geoms))}, the "
            f"image {_bounds_text(src.bounds)} in {src.crs.to_string()} (lon/lat "
            f"{_bounds_text(gdf.to_crs('EPSG:4326').total_bounds)} and "
            f"{_bounds_text(transform_bounds(src.crs, 'EPSG:4326', *src.bounds))}). Check the file's CRS, and that "
            "this is the image it labels"
        )
    n = int(np.count_nonzero(~inside))
    return geoms, inside, [f"{n} of {len(geoms)} {what} in {path} lie outside image {image} and are not used"] * bool(n)


def _labels(src, image: Path, polygons: Path, extent, class_field, cropland_values, ignore_values, make_valid):
    """(geometries in burn order, their mask values, class map, source files, number repaired, warnings)."""
    import shapely

    gdf, repaired, notes = read_polygons(polygons, "--polygons", make_valid)
    values, class_map, class_notes = polygon_classes(gdf, polygons, class_field, cropland_values, ignore_values)
    geoms, inside, outside = _in_image(gdf, polygons, src, image, "polygons")
    geoms, values, notes = geoms[inside], values[inside], notes + class_notes + outside
    source_files = {"image": str(image.resolve()), "image_sha256": _sha256(image),
                    "polygons": str(polygons.resolve()), "polygons_sha256": _sha256(polygons)}  # fmt: skip
    extent_geoms = np.empty(0, object)
    if extent is not None:
        extent = Path(extent)
        egdf, fixed, extent_notes = read_polygons(extent, "--extent", make_valid)
        extent_geoms, einside, outside = _in_image(egdf, extent, src, image, "extent polygons")
        extent_geoms, repaired, notes = extent_geoms[einside], repaired + fixed, notes + extent_notes + outside
        past = int(np.count_nonzero(~shapely.covered_by(geoms, shapely.union_all(extent_geoms))))
        if past:
            notes.append(f"{past} polygon(s) reach past --extent {extent}; their pixels are labelled as well")
        source_files.update(extent=str(extent.resolve()), extent_sha256=_sha256(extent))
    elif not np.any(values == NOT_CROPLAND):
        notes.append(
            "no polygon is not cropland and no --extent is given, so the chips have no not-cropland pixel "
            "(everything outside the cropland polygons is ignored): give --extent (the areas labelled "
            "completely) or not-cropland polygons (--class-field) for a model to learn what is not cropland"
        )
    class_map["labelled"] = "inside a polygon" + (" or --extent" if extent is not None else "")
    # Burned in this order, later over earlier: the extent (not cropland), cropland, not cropland, ignore.
    order = np.argsort([{CROPLAND: 1, NOT_CROPLAND: 2, IGNORE: 3}[int(v)] for v in values], kind="stable")
    burn_values = [NOT_CROPLAND] * len(extent_geoms) + [int(v) for v in values[order]]
    return np.concatenate([extent_geoms, geoms[order]]), burn_values, class_map, source_files, repaired, notes


def _existing_chips(out: Path, stem: str, source_files: dict, image: Path) -> dict[str, dict]:
    """label.json of the chips under `out` named like this image's; LabelError if another image's are there."""
    found, own = {}, re.compile(rf"{re.escape(stem)}_r\d+_c\d+")
    for d in sorted(out.iterdir()) if out.is_dir() else ():
        if not own.fullmatch(d.name):
            continue
        try:
            meta = json.loads((d / LABEL_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # incomplete: written again if this import produces it
        files = meta.get("source_files") or {}
        same = [files.get(k) == source_files[k] for k in ("image", "image_sha256")]  # a moved or an updated image
        if meta.get("origin") != ORIGIN or not any(same):
            raise LabelError(
                f"{d} holds a chip of another image ({files.get('image') or meta.get('origin')}); import {image} "
                "into another --out, or rename it"
            )
        found[d.name] = meta
    return found


def _recipe(meta: dict) -> dict:
    """What a chip is a function of: equal recipes, equal chips (so an unchanged chip is not written again)."""
    keys = ("format", "origin", "dataset", "class_map", "gsd_m", "window")
    files = meta.get("source_files") or {}
    return {**{k: meta.get(k) for k in keys}, "rules": (meta.get("import_raster") or {}).get("rules"),
            **{k: v for k, v in files.items() if k.endswith("sha256")}}  # fmt: skip


def import_raster(
    image: Path | str, polygons: Path | str, out: Path | str, *, chip: int = 512, class_field: str | None = None,
    cropland_values=(), ignore_values=(), extent: Path | str | None = None, dataset: str | None = None,
    gsd: float | None = None, make_valid: bool = False,
) -> RasterImportSummary:  # fmt: skip
    """Cut `image` into labelled chips under `out` (see the module docstring). Every input is checked before
    anything is written; LabelError names the file and the fix."""
    import rasterio
    import shapely
    from rasterio.features import rasterize
    from rasterio.windows import Window
    from rasterio.windows import bounds as window_bounds
    from rasterio.windows import transform as window_transform

    image, polygons, out = Path(image), Path(polygons), Path(out)
    if chip < MIN_CHIP:
        raise LabelError(f"--chip {chip} is too small: chips need at least {MIN_CHIP} px (512 is usual)")
    try:
        src_ctx = rasterio.open(image)
    except rasterio.errors.RasterioIOError as e:
        raise LabelError(f"cannot read image {image}: {e}") from e
    with src_ctx as src:
        check_image(src, image)
        gsd_m, gsd_source, gsd_note = image_gsd(src, image, gsd)
        geoms, values, class_map, source_files, repaired, notes = _labels(
            src, image, polygons, extent, class_field, cropland_values, ignore_values, make_valid
        )
        stem = chip_id_from(image.stem)[:100]
        existing = _existing_chips(out, stem, source_files, image)
        crs = src.crs.to_string()
        summary = RasterImportSummary(out, image, crs, gsd_m, gsd_note, 0, repaired=repaired, warnings=notes)
        common = {"format": CHIP_FORMAT, "origin": ORIGIN, "dataset": dataset, "class_map": class_map,
                  "gsd_m": gsd_m, "source_files": source_files}  # fmt: skip
        provenance = {"rules": RULES, "crs": crs, "gsd_source": gsd_source, "gsd_note": gsd_note, "gsd_declared": gsd}
        tree = shapely.STRtree(geoms)
        for row in range(0, src.height, chip):
            for col in range(0, src.width, chip):
                summary.chips += 1
                win = Window(col, row, min(chip, src.width - col), min(chip, src.height - row))
                chip_id = f"{stem}_r{row}_c{col}"
                window = {"row": row, "col": col, "width": win.width, "height": win.height}
                hits = np.sort(tree.query(shapely.box(*window_bounds(win, src.transform))))  # sorted: burn order
                if len(hits) == 0:
                    summary.unlabelled += 1
                    continue
                new = {**common, "window": window, "import_raster": provenance}
                if chip_id in existing and _recipe(existing[chip_id]) == _recipe(new):
                    summary.unchanged.append(chip_id)
                    continue
                transform = window_transform(win, src.transform)
                shapes = [(geoms[i], values[i]) for i in hits]
                mask = rasterize(
                    shapes, (win.height, win.width), fill=IGNORE, transform=transform, all_touched=False, dtype="uint8"
                )
                valid = src.dataset_mask(window=win) > 0
                mask[~valid] = IGNORE
                if not np.any(mask != IGNORE):
                    summary.unlabelled += 1
                    continue
                rgb = np.moveaxis(src.read([1, 2, 3], window=win), 0, -1)
                write_labelled_chip(
                    out, chip_id, rgb, mask, gsd_m=gsd_m, origin=ORIGIN, dataset=dataset, class_map=class_map,
                    source_files=source_files, valid=valid, georef=(src.crs, transform),
                    extra={"window": window, "import_raster": provenance},
                )  # fmt: skip
                summary.written.append(chip_id)
    produced = set(summary.written) | set(summary.unchanged)
    summary.earlier_kept = sum(name not in produced for name in existing)
    return summary
