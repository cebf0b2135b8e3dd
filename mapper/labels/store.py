"""The on-disk form of a labelled block, shared by labels from the simulated world and from people.

A labelled block is a directory `<root>/<block_id>/` holding

- `image_<source>.tif`: the block mosaic of each imagery source, as `mapper fetch` writes it (RGB uint8
  GeoTIFF on the block's native EPSG:3857 z16 grid, internal nodata mask where there is no imagery);
- `mask.tif`: one uint8 band on exactly the same grid (CRS, transform, size) as the images:
  0 = not cropland, 1 = cropland, 255 = ignore (nobody labelled the pixel);
- `label.json`: block id, sources and image files, coverage type per source (by name), origin
  ("world seed S" or "human"), creation time and mapper version. It is written last and atomically, so its
  presence marks a complete block: a directory without it is the remains of an interrupted write.

**One mask per block, ignore per image.** The truth of a pixel does not depend on which source imaged it,
but where imagery is missing does. So `mask.tif` holds the label itself (world labels: the truth, 0/1
everywhere), and a reader ignores, for each image, the pixels that image has no imagery for as well:
`LabelledBlock.target(source)` is the mask with 255 wherever `image_<source>.tif` is nodata. Human labels
ingested from polygons already carry 255 where none of their images had imagery (nobody could see it).
Thick cloud and snow are *not* ignored: the mask is the ground truth under them too (a model that is shown
cloud learns nothing from it; training picks blocks by the coverage types in label.json).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mapper.grid.blocks import Block
from mapper.imagery.mosaic import CRS, BlockMosaic, geotiff_profile, read_mosaic, write_mosaic
from mapper.imagery.tiff_check import check_complete_geotiff
from mapper.store.atomic import atomic_path, atomic_write_text
from mapper.world.conditions import COVERAGE_NAMES

FORMAT = "mapper-labelled-block/1"
LABEL_FILE = "label.json"
MASK_FILE = "mask.tif"
NOT_CROPLAND, CROPLAND, IGNORE = 0, 1, 255
MASK_VALUES = (NOT_CROPLAND, CROPLAND, IGNORE)
MASK_CONVENTION = (
    "mask.tif: 0 = not cropland, 1 = cropland, 255 = ignore; for each image, pixels without imagery "
    "(its nodata mask) are ignored as well"
)
_SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class LabelError(ValueError):
    """A labelled block (or labels being ingested) is unusable; the message says what and how to fix it."""


def image_file(source: str) -> str:
    return f"image_{source}.tif"


@dataclass
class LabelledBlock:
    path: Path
    block: Block
    images: dict[str, BlockMosaic]  # by source name
    mask: np.ndarray  # (H, W) uint8: 0, 1, 255
    coverage: dict[str, str | None]  # coverage type name per source (None: not recorded)
    origin: str  # "world seed S" or "human"
    meta: dict = field(default_factory=dict)  # the whole label.json

    @property
    def sources(self) -> list[str]:
        return list(self.images)

    def ignore(self, source: str) -> np.ndarray:
        """Pixels not to train or score on for `source`: unlabelled, or no imagery in that image."""
        return (self.mask == IGNORE) | ~self.images[source].valid

    def target(self, source: str) -> np.ndarray:
        """The mask as seen through `source`'s image: 0/1, and 255 where ignored (see the module docstring)."""
        out = self.mask.copy()
        out[~self.images[source].valid] = IGNORE
        return out

    @property
    def labelled_fraction(self) -> float:
        return float(np.count_nonzero(self.mask != IGNORE)) / self.mask.size

    @property
    def cropland_fraction(self) -> float:
        """Cropland share of the labelled pixels (pixel counts; mercator scale is constant within a block)."""
        labelled = np.count_nonzero(self.mask != IGNORE)
        return float(np.count_nonzero(self.mask == CROPLAND)) / labelled if labelled else float("nan")


# ---------------------------------------------------------------------------------------------- checks
def check_mask_values(mask: np.ndarray, what: str = "the mask") -> None:
    """LabelError listing every value outside {0, 1, 255} with its pixel count."""
    if mask.dtype != np.uint8:
        raise LabelError(
            f"{what} is {mask.dtype}; label masks are uint8 with 0 = not cropland, 1 = cropland, 255 = ignore "
            "(convert it, e.g. `gdal_translate -ot Byte in.tif out.tif`, after checking its values)"
        )
    counts = np.bincount(mask.ravel(), minlength=256)
    bad = [v for v in np.flatnonzero(counts) if v not in MASK_VALUES]
    if bad:
        listed = ", ".join(f"{v} ({counts[v]:,} px)" for v in bad[:12])
        more = f" and {len(bad) - 12} more values" if len(bad) > 12 else ""
        raise LabelError(
            f"{what} has values other than 0 (not cropland), 1 (cropland) and 255 (ignore): {listed}{more}. "
            "Recode them to 0/1/255 (e.g. with the QGIS raster calculator or gdal_calc.py), "
            "or label with polygons and run `mapper labels ingest`, which rasterises them correctly."
        )


def _describe_grid(crs, transform, width: int, height: int) -> str:
    crs_s = crs.to_string() if crs is not None and hasattr(crs, "to_string") else str(crs)
    return (
        f"{crs_s or 'no CRS'}, {width} × {height} px, origin ({transform.c:.3f}, {transform.f:.3f}), "
        f"pixel ({transform.a:.6g}, {transform.e:.6g})"
    )


def _same_grid(a, b) -> bool:
    """a, b: (crs, transform, width, height). Transforms equal to 1 mm (they come from integer tile math)."""
    crs_a, tr_a, w_a, h_a = a
    crs_b, tr_b, w_b, h_b = b
    if (w_a, h_a) != (w_b, h_b) or crs_a is None or crs_b is None or crs_a != crs_b:
        return False
    return bool(np.allclose(tuple(tr_a)[:6], tuple(tr_b)[:6], rtol=0, atol=1e-3))


def _grid_mismatch(mask_name: str, mask_grid, image_name: str, image_grid) -> LabelError:
    _, tr, w, h = image_grid
    west, north = tr.c, tr.f
    east, south = west + w * tr.a, north + h * tr.e
    return LabelError(
        f"{mask_name} is not on the grid of {image_name}:\n"
        f"  mask:  {_describe_grid(*mask_grid)}\n"
        f"  image: {_describe_grid(*image_grid)}\n"
        "Re-export the mask on the image's grid, e.g. "
        f"`gdalwarp -t_srs EPSG:3857 -te {west:.3f} {south:.3f} {east:.3f} {north:.3f} -ts {w} {h} -r near "
        f"-ot Byte {mask_name} fixed.tif`, or export the labels as polygons and run `mapper labels ingest`, "
        "which rasterises them onto the image grid."
    )


def check_image_file(path: Path, block: Block) -> tuple:
    """Open-only checks of an image GeoTIFF against the block; returns its grid (crs, transform, w, h)."""
    import rasterio

    try:
        src_ctx = rasterio.open(path)
    except rasterio.errors.RasterioIOError as e:
        raise LabelError(f"cannot read image {path}: {e}") from e
    with src_ctx as src:
        grid = (src.crs, src.transform, src.width, src.height)
        if src.count != 3 or any(dt != "uint8" for dt in src.dtypes):
            raise LabelError(
                f"image {path} has {src.count} band(s) of {', '.join(sorted(set(src.dtypes)))}; block images are "
                "RGB uint8 mosaics as `mapper fetch` writes them (fetch the block again)"
            )
        zoom = int(src.tags().get("MAPPER_ZOOM", 16))
    window = block.window(zoom)
    expected = (rasterio.crs.CRS.from_string(CRS), window.transform, window.width, window.height)
    if not _same_grid(grid, expected):
        raise LabelError(
            f"image {path} is not the mosaic of block {block.id}:\n"
            f"  image: {_describe_grid(*grid)}\n"
            f"  block {block.id} at z{zoom}: {_describe_grid(*expected)}\n"
            f"Use the block's own mosaic (`mapper fetch` writes <out>/<source>/{block.id}.tif), or the right --block."
        )
    return grid


# ---------------------------------------------------------------------------------------------- write
def write_mask(mask: np.ndarray, like: BlockMosaic, path: Path | str) -> Path:
    """mask.tif: uint8 on `like`'s grid, 255 declared as nodata (so GIS tools show ignore as transparent)."""
    import rasterio

    profile = geotiff_profile(like.window, 1, "uint8", "deflate", 256, 6)
    profile["nodata"] = IGNORE
    with atomic_path(path, check=check_complete_geotiff) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(mask[None])
        dst.update_tags(MAPPER_ZOOM=str(like.window.zoom), MAPPER_MASK=MASK_CONVENTION)
    return Path(path)


def write_labelled_block(
    out_root: Path | str,
    block: Block,
    images: dict[str, BlockMosaic],
    mask: np.ndarray,
    coverage: dict[str, str | None],
    origin: str,
    extra: dict | None = None,
    mosaic_options: dict | None = None,
) -> Path:
    """Write `<out_root>/<block_id>/` (see the module docstring); returns the directory.

    Everything is checked before anything is written. label.json goes last, after any old one was removed,
    so a kill at any moment leaves either a complete block or one without label.json (redone on resume)."""
    if not images:
        raise LabelError(f"block {block.id}: a labelled block needs at least one image")
    for name, mosaic in images.items():
        if not _SOURCE_NAME.match(name):
            raise LabelError(f"source name {name!r} cannot be part of a file name; use letters, digits, . _ -")
        if mosaic.window != block.window(mosaic.window.zoom):
            raise LabelError(f"the {name!r} image is not the mosaic of block {block.id} (its grid differs)")
    windows = {m.window for m in images.values()}
    if len(windows) != 1:
        raise LabelError(f"block {block.id}: the images are on different grids: {sorted(map(str, windows))}")
    like = next(iter(images.values()))
    mask = np.asarray(mask)
    if mask.dtype == bool:
        mask = mask.astype(np.uint8)
    if mask.shape != like.window.shape:
        raise LabelError(f"block {block.id}: mask shape {mask.shape} differs from the image grid {like.window.shape}")
    check_mask_values(mask, f"the mask of block {block.id}")
    if set(coverage) != set(images):
        raise LabelError(f"coverage is given for {sorted(coverage)} but the images are {sorted(images)}")
    for name, cov in coverage.items():
        if cov is not None and cov not in COVERAGE_NAMES:
            raise LabelError(f"unknown coverage type {cov!r} for {name!r}; one of: {', '.join(COVERAGE_NAMES)}")

    from mapper import __version__

    out = Path(out_root) / block.id
    out.mkdir(parents=True, exist_ok=True)
    (out / LABEL_FILE).unlink(missing_ok=True)  # from here until the end the block reads as incomplete
    for name, mosaic in images.items():
        write_mosaic(mosaic, out / image_file(name), **(mosaic_options or {}))
    write_mask(mask, like, out / MASK_FILE)
    labelled = int(np.count_nonzero(mask != IGNORE))
    meta = {
        "format": FORMAT,
        "block": block.id,
        "zoom": like.window.zoom,
        "sources": list(images),
        "images": {name: image_file(name) for name in images},
        "mask": MASK_FILE,
        "mask_convention": MASK_CONVENTION,
        "coverage": dict(coverage),
        "origin": origin,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "mapper_version": __version__,
        "labelled_fraction": labelled / mask.size,
        "cropland_fraction": int(np.count_nonzero(mask == CROPLAND)) / labelled if labelled else None,
        "nodata_fraction": {name: m.nodata_fraction for name, m in images.items()},
        **(extra or {}),
    }
    atomic_write_text(out / LABEL_FILE, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return out


# ---------------------------------------------------------------------------------------------- read
def read_label_json(directory: Path | str) -> dict:
    """label.json of a block directory, checked for the keys readers rely on."""
    directory = Path(directory)
    if not directory.is_dir():
        raise LabelError(f"{directory} is not a directory; a labelled block is a directory <root>/<block_id>/")
    path = directory / LABEL_FILE
    if not path.exists():
        present = sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))
        raise LabelError(
            f"{directory} has no {LABEL_FILE}: the block is incomplete (a run stopped while writing it"
            f"{'; it holds ' + ', '.join(present) if present else ''}). Run the same `mapper labels make` "
            "(or `ingest`) again to finish it, or delete the directory."
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LabelError(f"{path} is not valid JSON ({e}); delete the block directory and write it again") from e
    if not isinstance(meta, dict):
        raise LabelError(f"{path} is not a JSON object; it was not written by mapper labels")
    own = "chip" if meta.get("format") == "mapper-labelled-chip/1" else "block"  # mapper.labels.chips
    missing = [k for k in (own, "sources", "images", "mask", "coverage", "origin") if k not in meta]
    if missing:
        raise LabelError(f"{path} lacks {', '.join(missing)}; it was not written by mapper labels")
    return meta


def read_labelled_block(directory: Path | str) -> LabelledBlock:
    """Read and validate a labelled block: files present, images on the block's grid, mask uint8 single-band
    on the images' grid with values in {0, 1, 255}. Raises LabelError naming the problem and its fix."""
    import rasterio

    directory = Path(directory)
    meta = read_label_json(directory)
    try:
        block = Block.parse(str(meta["block"]))
    except ValueError as e:
        raise LabelError(f"{directory / LABEL_FILE}: {e}") from e
    if directory.name != block.id:
        raise LabelError(f"{directory} holds block {block.id} by its {LABEL_FILE}; name the directory {block.id}")
    sources = list(meta["sources"])
    files = {name: directory / meta["images"].get(name, image_file(name)) for name in sources}
    mask_path = directory / meta["mask"]
    missing = [p.name for p in [*files.values(), mask_path] if not p.exists()]
    if missing:
        raise LabelError(
            f"{directory}: missing {', '.join(missing)} (listed in {LABEL_FILE}); write the block again "
            "(delete the directory, then rerun `mapper labels make` or `ingest`)"
        )
    if not sources:
        raise LabelError(f"{directory / LABEL_FILE} lists no sources")

    grids = {name: check_image_file(path, block) for name, path in files.items()}
    first = sources[0]
    try:
        src_ctx = rasterio.open(mask_path)
    except rasterio.errors.RasterioIOError as e:
        raise LabelError(f"cannot read {mask_path}: {e}") from e
    with src_ctx as src:
        if src.count != 1:
            raise LabelError(f"{mask_path} has {src.count} bands; a label mask has one (0/1/255)")
        if src.dtypes[0] != "uint8":
            raise LabelError(
                f"{mask_path} is {src.dtypes[0]}; label masks are uint8 with 0 = not cropland, 1 = cropland, "
                "255 = ignore (convert it, e.g. `gdal_translate -ot Byte`, after checking its values)"
            )
        if src.nodata is not None and src.nodata != IGNORE:
            raise LabelError(
                f"{mask_path} declares nodata = {src.nodata:g}, but in label masks 255 means ignore and 0 means "
                "not cropland; recode the ignored pixels to 255 and set it (`gdal_edit.py -a_nodata 255`)"
            )
        mask_grid = (src.crs, src.transform, src.width, src.height)
        if not _same_grid(mask_grid, grids[first]):
            raise _grid_mismatch(mask_path.name, mask_grid, files[first].name, grids[first])
        mask = src.read(1)
    check_mask_values(mask, str(mask_path))
    if not np.any(mask != IGNORE):
        raise LabelError(f"{mask_path} labels no pixel (all 255 = ignore); label the block or delete it")
    images = {name: read_mosaic(path) for name, path in files.items()}
    coverage = {name: meta["coverage"].get(name) for name in sources}
    return LabelledBlock(directory, block, images, mask, coverage, str(meta["origin"]), meta)


def is_complete(directory: Path | str) -> bool:
    return (Path(directory) / LABEL_FILE).exists()


def block_dirs(root: Path | str) -> list[Path]:
    """Subdirectories of `root` named like blocks (complete or not), sorted."""
    from mapper.grid.blocks import _ID

    root = Path(root)
    if not root.is_dir():
        raise LabelError(f"{root} is not a directory of labelled blocks")
    return sorted(p for p in root.iterdir() if p.is_dir() and _ID.match(p.name))


# ---------------------------------------------------------------------------------------------- polygons
CLASS_COLUMNS = ("class", "label")
_CLASS_VALUES = {"1": 1, "0": 0, "1.0": 1, "0.0": 0, "true": 1, "false": 0, "cropland": 1, "non-cropland": 0}
ALLOWED_CLASS_VALUES = "1 or 'cropland' (cropland), 0 or 'non-cropland' (explicitly not cropland)"


def _class_values(gdf, column: str) -> np.ndarray:
    keys = ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip().lower() for v in gdf[column]]
    values = [_CLASS_VALUES.get(k) for k in keys]
    bad = sorted({k for k, v in zip(keys, values, strict=True) if v is None})
    if bad:
        shown = ", ".join(repr(b) if b else "empty" for b in bad[:10])
        raise LabelError(
            f"column {column!r} has values {shown}; allowed: {ALLOWED_CLASS_VALUES}. "
            f"Without a {' or '.join(repr(c) for c in CLASS_COLUMNS)} column every polygon is cropland."
        )
    return np.array(values, np.uint8)


def polygonal(geom):
    """A valid (multi)polygon: invalid rings (self-intersections from hand drawing) are repaired, and the
    lines or points a repair may produce are dropped (rasterising a line would burn a stray pixel row)."""
    import shapely

    if shapely.is_valid(geom):
        return geom
    fixed = shapely.make_valid(geom)
    parts = [p for p in shapely.get_parts(fixed) if p.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def ingest_polygons(
    block: Block, polygons_path: Path | str, source_mosaic: BlockMosaic | list[BlockMosaic]
) -> np.ndarray:
    """Rasterise vector labels onto the block grid: a uint8 mask (0/1/255) on the mosaic's grid.

    Any format and CRS GeoPandas reads (GeoPackage, GeoJSON, Shapefile, …); geometries are reprojected to
    EPSG:3857 and burned by the pixel-centre rule (all_touched=False). A `class` or `label` column, if present,
    says 1 = cropland, 0 = explicitly not cropland (non-cropland polygons win where they overlap cropland ones,
    e.g. a pond drawn inside a field); without it every polygon is cropland. Pixels outside all polygons are
    not cropland (the labeller labelled the whole block); pixels without imagery in any of the mosaics are
    255 (ignore)."""
    import shapely
    from rasterio.features import rasterize

    mosaics = [source_mosaic] if isinstance(source_mosaic, BlockMosaic) else list(source_mosaic)
    if not mosaics:
        raise LabelError("ingest needs the block's image to rasterise onto")
    window = mosaics[0].window
    for m in mosaics:
        if m.window != block.window(window.zoom):
            raise LabelError(f"the image is not the mosaic of block {block.id} (its grid differs); use that block's")

    from mapper.labels.polygons import read_polygons

    path = Path(polygons_path)
    if not path.exists():
        raise FileNotFoundError(f"polygon file not found: {path}")
    gdf, _, _ = read_polygons(path, "polygon file", make_valid=True)  # hand-drawn rings repaired, as ever
    column = next((c for c in gdf.columns if c.lower() in CLASS_COLUMNS), None)
    values = _class_values(gdf, column) if column is not None else np.ones(len(gdf), np.uint8)

    geoms = np.array([polygonal(g) for g in gdf.to_crs(CRS).geometry.values], dtype=object)
    box = shapely.box(*window.mercator_bounds)
    if shapely.area(shapely.intersection(box, shapely.union_all(geoms))) == 0:
        lon0, lat0, lon1, lat1 = gdf.to_crs("EPSG:4326").total_bounds
        bw, bs, be, bn = block.bounds
        raise LabelError(
            f"the polygons in {path} do not overlap block {block.id}: they span lon {lon0:.5f}..{lon1:.5f}, "
            f"lat {lat0:.5f}..{lat1:.5f}; the block spans lon {bw:.5f}..{be:.5f}, lat {bs:.5f}..{bn:.5f}. "
            "Check the --block id and the file's CRS."
        )
    order = np.argsort(-values.astype(np.int16), kind="stable")  # cropland first, exclusions burned over it
    shapes = [(geoms[i], int(values[i])) for i in order if not geoms[i].is_empty]
    mask = rasterize(
        shapes, out_shape=window.shape, transform=window.transform, fill=NOT_CROPLAND, all_touched=False, dtype="uint8"
    )
    valid = np.logical_or.reduce([m.valid for m in mosaics])
    mask[~valid] = IGNORE
    return mask
