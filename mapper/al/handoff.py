"""The hand-off of an active-learning round to a person in QGIS, and back.

    export_round(out_dir, blocks, round_no=, title=, replace=False) -> manifest     one folder per round
    read_manifest(export_dir) -> dict
    ingest_round(export_dir, labels_root, returned=None, origin="human", extra=None) -> IngestReport

**The round folder.** `images/<block>_<source>.tif` (copies of the block mosaics), `labels.gpkg` (layers
`cropland`, the model's polygons to correct, and `blocks`, the checklist; see mapper.al.labels_gpkg) with
their styles as the layers' defaults, `round.qgz` (the QGIS project), `README.txt` (the labeller's
instructions) and `manifest.json` (written last: round, blocks, sources, coverage, reasons, image sha256s,
the digest of the layers as exported). It is built in a temporary sibling folder and renamed into place.
An existing folder is replaced only when its labels.gpkg still holds what was exported (by content, so
merely opening it in QGIS does not count as an edit); edited labels are refused unless `replace=True`.

**Ingest** checks the whole returned file first (mapper.al.returned) and writes nothing when anything is
wrong. Then, per block by its status: `done` — its polygons rasterised onto the block grid by pixel centres
(1 cropland; 0 not cropland, over 1; 255 ignore, over both; outside all polygons 0); `negative` — all 0, its
polygons ignored; in both, pixels without imagery in every image are 255; `skip` and `todo` — nothing is
written (todo is left for a later ingest). Blocks are written with mapper.labels.store.write_labelled_block,
so ingesting the same file again rewrites the same blocks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import shapely

from mapper.al.labels_gpkg import (
    BLOCKS_LAYER,
    CLASSES,
    CROPLAND,
    CROPLAND_LAYER,
    IGNORE,
    STATUSES,
    blocks_frame,
    burn,
    content_digest,
    cropland_frame,
    write_layers,
)
from mapper.al.qgis_project import RasterLayer, VectorLayer, write_project
from mapper.al.qgis_style import layer_style, qml_document, write_gpkg_styles
from mapper.al.returned import IngestError, ReturnedBlock, read_returned
from mapper.grid.blocks import Block
from mapper.grid.tilegrid import PixelWindow
from mapper.imagery.mosaic import CRS, read_mosaic
from mapper.labels.store import LabelError, check_image_file, write_labelled_block
from mapper.store.atomic import atomic_directory, atomic_write_text
from mapper.store.json_file import read_json
from mapper.world.conditions import COVERAGE_NAMES

__all__ = ["ExportBlock", "ExportError", "IngestError", "IngestReport", "export_round", "ingest_round",
           "read_manifest"]  # fmt: skip
log = logging.getLogger(__name__)

FORMAT = "mapper-al-round/1"
MANIFEST, LABELS, PROJECT, README, IMAGES = "manifest.json", "labels.gpkg", "round.qgz", "README.txt", "images"


class ExportError(LabelError):
    """A round cannot be exported (bad inputs, or it would overwrite a labeller's edits)."""


@dataclass(frozen=True)
class ExportBlock:
    block_id: str  # e.g. "5886_2256"
    images: dict[str, Path]  # source name -> block mosaic GeoTIFF (RUN/mosaics/SOURCE/BLOCK.tif)
    prediction: Path | None  # the final mask (band 1: 1 cropland, 0 not, 255 no imagery) on the block grid
    coverage: dict[str, str | None]  # IQA coverage type per source, as the run predicted it
    reason: str = ""  # why it was selected (shown to the labeller)


def image_name(block_id: str, source: str) -> str:
    return f"{block_id}_{source}.tif"


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def coverage_name(value) -> str | None:
    """A coverage type as the run's table holds it (a name, None, NaN or "" when not predicted)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        return None
    return str(value)


# ---------------------------------------------------------------------------------------------- export
def _zoom(path: Path) -> int:
    import rasterio

    with rasterio.open(path) as src:
        return int(src.tags().get("MAPPER_ZOOM", 16))


def _check_inputs(blocks: Sequence[ExportBlock]) -> list[tuple[Block, PixelWindow]]:
    if not blocks:
        raise ExportError("a round needs at least one block")
    seen: set[str] = set()
    out = []
    for eb in blocks:
        try:
            block = Block.parse(eb.block_id)
        except ValueError as e:
            raise ExportError(str(e)) from e
        if block.id in seen:
            raise ExportError(f"block {block.id} is listed twice; export each block once")
        seen.add(block.id)
        if not eb.images:
            raise ExportError(f"block {block.id} has no image; the labeller needs at least one mosaic to draw on")
        if set(eb.coverage) - set(eb.images):
            raise ExportError(f"block {block.id}: coverage is given for {sorted(eb.coverage)} but the images are "
                              f"{sorted(eb.images)}")  # fmt: skip
        bad = {s: v for s, v in eb.coverage.items() if coverage_name(v) not in (None, *COVERAGE_NAMES)}
        if bad:
            raise ExportError(f"block {block.id}: unknown coverage type(s) {bad}; use one of "
                              f"{', '.join(COVERAGE_NAMES)}, or None when the run did not predict it")  # fmt: skip
        for path in eb.images.values():
            check_image_file(Path(path), block)  # LabelError naming the mosaic that is not the block's
        zooms = {_zoom(Path(p)) for p in eb.images.values()}
        if len(zooms) != 1:
            raise ExportError(f"block {block.id}: its images are at different zooms {sorted(zooms)}")
        out.append((block, block.window(zooms.pop())))
    return out


def _predicted_polygons(eb: ExportBlock, window: PixelWindow) -> list:
    """The prediction's cropland polygons in EPSG:3857 (one per 8-connected component, exact pixel edges)."""
    import rasterio

    from mapper.maps.polygons import block_polygons

    if eb.prediction is None:
        return []
    with rasterio.open(eb.prediction) as src:
        on_grid = (src.width, src.height) == (window.width, window.height) and np.allclose(
            tuple(src.transform)[:6], tuple(window.transform)[:6], rtol=0, atol=1e-3
        )
        if not on_grid:
            raise ExportError(f"the prediction {eb.prediction} is not on the grid of block {eb.block_id}; give the "
                              "run's final mask of that block (RUN/final/BLOCK.tif)")  # fmt: skip
        mask = src.read(1)
    return list(block_polygons(mask == CROPLAND, window, eb.block_id).to_crs(CRS).geometry.values)


def _check_replace(out_dir: Path, replace: bool) -> None:
    """Refuse to replace a folder holding a labeller's edits (or anything not an export) unless `replace`."""
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return
    if replace:
        log.warning("replacing %s (replace=True): any edits in its %s are discarded", out_dir, LABELS)
        return
    try:
        manifest = read_manifest(out_dir)
    except LabelError as e:
        raise ExportError(f"{out_dir} exists and is not an exported round ({e}); export into another folder, "
                          "or pass replace=True to replace it") from e  # fmt: skip
    labels = out_dir / LABELS
    if not labels.exists():
        return
    try:
        edited = content_digest(labels) != manifest.get("labels_digest")
    except Exception:  # unreadable: it may hold edits all the same
        edited = True
    if edited:
        raise ExportError(
            f"{labels} was edited since round {manifest.get('round')} was exported (its features differ from "
            "the export's); exporting again would overwrite those labels. Ingest it first (ingest_round), export "
            "into another folder, or pass replace=True to discard the edits."
        )


def _write_labels(path: Path, blocks: Sequence[ExportBlock], grids, predicted: dict[str, list]) -> None:
    ids = [b.id for b, _ in grids]
    cropland = cropland_frame(
        [bid for bid in ids for _ in predicted[bid]],
        [g for bid in ids for g in predicted[bid]],
        [CROPLAND] * sum(len(predicted[bid]) for bid in ids),
    )
    checklist = blocks_frame(ids, [shapely.box(*w.mercator_bounds) for _, w in grids], ["todo"] * len(ids),
                             [eb.reason for eb in blocks], [""] * len(ids))  # fmt: skip
    write_layers(path, cropland, checklist)
    write_gpkg_styles(path, {layer: qml_document(layer_style(layer)) for layer in (CROPLAND_LAYER, BLOCKS_LAYER)})


def _write_project(path: Path, blocks: Sequence[ExportBlock], grids, title: str) -> None:
    vectors = [VectorLayer(layer, f"./{LABELS}|layername={layer}", layer_style(layer))
               for layer in (BLOCKS_LAYER, CROPLAND_LAYER)]  # fmt: skip
    sources = list(dict.fromkeys(s for eb in blocks for s in eb.images))
    rasters = [RasterLayer(f"{eb.block_id} {s}", f"./{IMAGES}/{image_name(eb.block_id, s)}", f"images {s}")
               for s in sources for eb in blocks if s in eb.images]  # fmt: skip
    bounds = np.array([w.mercator_bounds for _, w in grids])
    extent = (bounds[:, 0].min(), bounds[:, 1].min(), bounds[:, 2].max(), bounds[:, 3].max())
    write_project(path, vectors, rasters, extent, title)


def export_round(
    out_dir: Path | str, blocks: Sequence[ExportBlock], *, round_no: int, title: str = "", replace: bool = False
) -> dict:
    """Write the round folder `out_dir` (see the module docstring); returns its manifest."""
    from mapper import __version__

    out_dir = Path(out_dir)
    grids = _check_inputs(blocks)
    _check_replace(out_dir, replace)
    predicted = {eb.block_id: _predicted_polygons(eb, w) for eb, (_, w) in zip(blocks, grids, strict=True)}
    with atomic_directory(out_dir) as tmp:  # built beside it, renamed into place whole
        (tmp / IMAGES).mkdir()
        entries = []
        for eb, (block, window) in zip(blocks, grids, strict=True):
            files = {s: f"{IMAGES}/{image_name(block.id, s)}" for s in eb.images}
            for s, src in eb.images.items():
                shutil.copyfile(src, tmp / files[s])
            entries.append({
                "block_id": block.id, "zoom": window.zoom, "sources": list(eb.images), "images": files,
                "sha256": {s: sha256_file(tmp / f) for s, f in files.items()},
                "coverage": {s: coverage_name(eb.coverage.get(s)) for s in eb.images}, "reason": eb.reason,
                "prediction": str(eb.prediction) if eb.prediction is not None else None,
                "predicted_polygons": len(predicted[block.id]),
            })  # fmt: skip
        _write_labels(tmp / LABELS, blocks, grids, predicted)
        _write_project(tmp / PROJECT, blocks, grids, title or f"active-learning round {round_no}")
        manifest = {
            "format": FORMAT, "round": int(round_no), "title": title, "crs": CRS,
            "created": datetime.now(UTC).isoformat(timespec="seconds"), "mapper_version": __version__,
            "labels": LABELS, "labels_digest": content_digest(tmp / LABELS),
            "labels_sha256": sha256_file(tmp / LABELS), "project": PROJECT, "classes": {str(k): v for k, v in
            CLASSES.items()}, "statuses": list(STATUSES), "blocks": entries,
        }  # fmt: skip
        atomic_write_text(tmp / README, readme_text(manifest))
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def readme_text(manifest: dict) -> str:
    rows = "\n".join(f"  {b['block_id']:<11} {', '.join(b['sources']):<10} {b['reason']}" for b in manifest["blocks"])
    return f"""Active-learning round {manifest["round"]}{": " + manifest["title"] if manifest["title"] else ""}
{len(manifest["blocks"])} block(s) to label. Open round.qgz in QGIS (3.22 or newer).

WHAT TO DRAW (layer "cropland")
  It holds the model's cropland of every block as polygons. Correct it until it covers all the cropland
  of the block and nothing else: delete polygons that are not cropland, move vertices that are wrong
  (Vertex Tool), draw missing fields (Add Polygon Feature). Each polygon has
    class     1 = cropland, 0 = explicitly not cropland (a pond or a house inside a field: 0 wins over 1
              where they overlap), 255 = ignore, cannot tell (wins over both)
    block_id  the block it lies in (filled in when you draw inside a block)
  Whatever no polygon covers counts as not cropland. Pixels count by their centre. Keep each polygon inside
  its block (one pixel over the edge is cut off; more is an error) and the layer in EPSG:3857.

HOW TO MARK A BLOCK (layer "blocks", one outline per block)
  Set its status: done (cropland corrected) | negative (no cropland at all; its polygons are ignored) |
  skip (cannot be labelled: cloud, bad imagery) | todo (not yet; left for a later hand-in).
  Colours: yellow todo, green done, red negative, grey skip. "note" is free text for anything worth saying.

IMAGES
  images/<block>_<source>.tif, one group per source in the layer panel: switch sources to see better.

WHAT TO HAND BACK
  Save your edits (Layer ▸ Save Layer Edits) and hand back labels.gpkg, edited in place (or the whole
  folder). Do not edit the images or manifest.json. Problems in the file are listed on ingest, each with
  the feature id (fid) and how to fix it.

BLOCKS
{rows}
"""


def read_manifest(export_dir: Path | str) -> dict:
    path = Path(export_dir) / MANIFEST
    if not path.exists():
        raise LabelError(f"{path} not found: {export_dir} is not an exported round (export_round writes it)")
    return read_json(path, FORMAT, "a round manifest", "export the round again", LabelError, required=("blocks",))


# ---------------------------------------------------------------------------------------------- ingest
def block_windows(manifest: dict) -> dict[str, PixelWindow]:
    return {b["block_id"]: Block.parse(b["block_id"]).window(int(b.get("zoom", 16))) for b in manifest["blocks"]}


def imagery_valid(export_dir: Path, entry: dict) -> np.ndarray:
    """Pixels with imagery in at least one of the block's exported images."""
    import rasterio

    valid = None
    for name in entry["images"].values():
        with rasterio.open(Path(export_dir) / name) as src:
            mask = src.dataset_mask() > 0
        valid = mask if valid is None else valid | mask
    return valid


@dataclass
class IngestReport:
    round_no: int
    positive: list[str] = field(default_factory=list)  # done: a mask written
    negative: list[str] = field(default_factory=list)  # negative: an all-zero mask written
    skipped: list[str] = field(default_factory=list)
    todo: list[str] = field(default_factory=list)
    polygons: dict[str, int] = field(default_factory=dict)  # per block written: polygons used
    written: dict[str, str] = field(default_factory=dict)  # block id -> labelled block directory

    @property
    def ingested(self) -> list[str]:
        return [*self.positive, *self.negative]

    def to_dict(self) -> dict:
        return {**asdict(self), "ingested": self.ingested}

    def text(self) -> str:
        counts = f"{len(self.positive)} positive, {len(self.negative)} negative"
        head = f"round {self.round_no}: {len(self.ingested)} block(s) ingested ({counts}), "
        lines = [f"{head}{len(self.skipped)} skipped, {len(self.todo)} still todo"]
        for bid in self.positive:
            lines.append(f"  {bid}  done      {self.polygons.get(bid, 0)} polygon(s)")
        lines += [f"  {bid}  negative" for bid in self.negative]
        lines += [f"  {bid}  skip" for bid in self.skipped]
        lines += [f"  {bid}  todo (label it and ingest again)" for bid in self.todo]
        return "\n".join(lines)


def _check_images(export_dir: Path, manifest: dict) -> list[str]:
    problems = []
    for entry in manifest["blocks"]:
        for source, name in entry["images"].items():
            path = export_dir / name
            if not path.exists():
                problems.append(f"block {entry['block_id']}: image {name} is missing; restore it from the export")
            elif sha256_file(path) != entry["sha256"][source]:
                problems.append(f"block {entry['block_id']}: image {name} was changed after export; restore the "
                                "exported file (labels are drawn on the images as exported)")  # fmt: skip
    return problems


def _block_mask(rb: ReturnedBlock, window: PixelWindow, valid: np.ndarray) -> np.ndarray:
    mask = burn(rb.geoms, rb.classes, window) if rb.status == "done" else np.zeros(window.shape, np.uint8)
    mask[~valid] = IGNORE
    return mask


def _validated(export_dir: Path, manifest: dict, returned: Path) -> dict[str, ReturnedBlock]:
    """The returned blocks, after checking the file and the exported images (one IngestError for all)."""
    image_problems = _check_images(export_dir, manifest)
    try:
        found = read_returned(returned, block_windows(manifest))
    except IngestError as e:
        raise IngestError(returned, [*e.problems, *image_problems]) from None
    if image_problems:
        raise IngestError(returned, image_problems)
    return found


def _masks(export_dir: Path, manifest: dict, found: dict[str, ReturnedBlock], returned: Path) -> dict:
    """The mask of every block to be written (done or negative); IngestError if one labels no pixel."""
    windows = block_windows(manifest)
    masks = {}
    for entry in manifest["blocks"]:
        bid, rb = entry["block_id"], found[entry["block_id"]]
        if rb.status in ("done", "negative"):
            masks[bid] = _block_mask(rb, windows[bid], imagery_valid(export_dir, entry))
    empty = [f"block {bid} is marked {found[bid].status} but labels no pixel (all ignore or no imagery); "
             "mark it skip" for bid, m in masks.items() if not np.any(m != IGNORE)]  # fmt: skip
    if empty:
        raise IngestError(returned, empty)
    return masks


def ingest_round(
    export_dir: Path | str,
    labels_root: Path | str,
    *,
    returned: Path | None = None,
    origin: str = "human",
    extra: dict | None = None,
) -> IngestReport:
    """Ingest a returned round into `labels_root` (see the module docstring). Raises IngestError listing every
    problem of the returned file before anything is written. label.json records `al`: round, status, origin,
    polygons used, the labeller's note and the export folder; the caller's `extra` is merged in as well."""
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    returned = Path(returned) if returned is not None else export_dir / LABELS
    found = _validated(export_dir, manifest, returned)
    masks = _masks(export_dir, manifest, found, returned)  # all checked before the first write

    report = IngestReport(int(manifest["round"]))
    for entry in manifest["blocks"]:
        bid, rb = entry["block_id"], found[entry["block_id"]]
        if rb.status in ("todo", "skip"):
            (report.todo if rb.status == "todo" else report.skipped).append(bid)
            continue
        images = {s: read_mosaic(export_dir / name) for s, name in entry["images"].items()}
        used = len(rb.geoms) if rb.status == "done" else 0
        meta = {"al": {"round": report.round_no, "status": rb.status, "origin": origin, "polygons": used,
                       "note": rb.note, "export": str(export_dir.resolve())}, **(extra or {})}  # fmt: skip
        out = write_labelled_block(labels_root, Block.parse(bid), images, masks.pop(bid), entry["coverage"],
                                   origin, extra=meta)  # fmt: skip
        (report.positive if rb.status == "done" else report.negative).append(bid)
        report.polygons[bid] = used
        report.written[bid] = str(out)
    return report
