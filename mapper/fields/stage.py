"""The fields stage of a run: per block, after its final mask, the field instances inside its cropland.

    final mask (1 cropland) + the imagery of the source the decision chose → delineator (`fields.model`: a field
    checkpoint or `baseline`) → 4-connected pieces → their polygons in global z16 pixels

Written per block (atomically, before the driver records the block done) under RUN/fields/blocks/
(`mapper.fields.paths`):
    <block>.tif      uint32 piece labels on the block's z16 grid (the transform and CRS of final/<block>.tif),
                     DEFLATE, 0 = no field (also its nodata, so QGIS shows fields only); label i + 1 is piece i of
                     <block>.parquet, the numbering `polygons.block_fields` gives (4-connected, raster order)
    <block>.parquet  the pieces: label, first_row / first_col (global z16 pixel of the piece's first pixel in
                     raster order), area_m2 (true ground area) and geometry (WKB polygons in global z16 pixel
                     coordinates, no CRS), so the run-level step stitches without tracing again
The run-level outputs (fields.parquet, a GeoPackage per prefecture, summary.json) are `mapper.fields.outputs`.

**Which imagery.** A block's final mask comes from source A's mask, B's, their union or neither (the
integration decision), and its fields are delineated on the imagery its cropland came from: B's for "Only B",
A's for "Only A" and "Merge". Under "Merge" A is taken as a whole (one rendering, so no colour seam runs through
the fields) and B fills only the pixels A has no imagery for, which can be cropland through B's mask alone.
"Neither" has no cropland, so no fields and no imagery read.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mapper.fields.paths import block_labels_path, block_pieces_path
from mapper.run.stage import Pool, RunContext, StageSpec, Worker, set_torch_threads
from mapper.run.stages import decision_item

VALUES_TAG = "0=no field;1..n=field piece (label i+1 = row i of the block's pieces parquet)"
PIECE_COLUMNS = ("label", "first_row", "first_col", "area_m2", "geometry")


def imagery_order(decision: str, sources) -> tuple[str, str]:
    """(the source whose imagery the fields are delineated on, the one that fills its gaps): module docstring."""
    a, b = sources
    return (b, a) if decision == "Only B" else (a, b)


class FieldWorker(Worker):
    """Field pieces of a block inside its final cropland (the delineator is loaded once per worker)."""

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        from mapper.fields.model import BASELINE, load_field_model

        cfg = ctx.config["fields"]
        self.zoom = ctx.config["zoom"]
        if str(cfg["model"]) != BASELINE:  # the classical delineator uses no torch
            set_torch_threads(ctx.config.get("run", {}).get("torch_threads"))
        self.model = load_field_model(cfg["model"], cfg.get("device"))

    def one(self, item: dict) -> dict:
        from mapper.fields.polygons import block_fields, ground_area_m2
        from mapper.fields.regions import label_regions
        from mapper.grid.blocks import Block

        t = {"start": time.perf_counter()}
        block = Block.parse(item["block_id"])
        window = block.window(self.zoom)
        final, grid = read_final(self.layout.final(block.id))
        if final.shape != window.shape:
            raise ValueError(f"final/{block.id}.tif is {final.shape}, not the block's z16 grid {window.shape}")
        cropland = final == 1
        out = {"model": self.model.name, "imagery": None, "imagery_date": None}
        if cropland.any():
            rgb, valid, used, dates = self._imagery(block.id, item["decision"], cropland)
            out.update(imagery=used, imagery_date=max(dates) if dates else None)
            t["read"] = time.perf_counter()
            labels = np.asarray(self.model.delineate(rgb, cropland, valid & (final != 255)))
            labels = np.where(cropland, labels, 0)  # fields lie inside the final cropland, whatever the model says
        else:  # "Neither", or no cropland found: no fields, nothing to read
            t["read"] = time.perf_counter()
            labels = np.zeros(final.shape, np.int32)
        t["delineate"] = time.perf_counter()
        regions, n = label_regions(labels)  # 4-connected pieces, as block_fields numbers them
        pieces = block_fields(regions, window, block.id)
        if pieces.n != n:  # label_regions of its own output is the identity: a broken kernel would show here
            raise RuntimeError(f"block {block.id}: {n} pieces labelled but {pieces.n} traced")
        area = ground_area_m2(pieces.geometry)
        t["trace"] = time.perf_counter()
        path = block_labels_path(self.layout.root, block.id)
        self.make_room(path, 4 * final.size)
        write_labels(regions, grid, path, block.id, self.model.name)
        write_pieces(pieces, area, block_pieces_path(self.layout.root, block.id))
        t["write"] = time.perf_counter()
        out.update(pieces=n, field_share=float(np.count_nonzero(regions) / np.count_nonzero(cropland))
                   if cropland.any() else None)  # fmt: skip
        steps = ("read", "delineate", "trace", "write")
        out["stage_seconds"] = {k: t[k] - t[p] for p, k in zip(("start", *steps[:-1]), steps, strict=True)}
        return out

    def _imagery(self, block_id: str, decision: str, cropland: np.ndarray):
        return block_imagery(self.layout, self.ctx.sources, block_id, decision, cropland)


def block_imagery(layout, sources, block_id: str, decision: str, cropland: np.ndarray):
    """(rgb, valid, sources used, acquisition dates) of a block's imagery for its decision (module docstring)."""
    from mapper.imagery.mosaic import read_mosaic

    first, second = imagery_order(decision, sources)
    mosaic = read_mosaic(layout.mosaic(first, block_id))
    rgb, valid, used = mosaic.rgb, mosaic.valid, [first]
    dates = _acquired(layout.mosaic(first, block_id))
    gaps = cropland & ~valid
    if gaps.any():  # cropland only the other source imaged ("Merge")
        other = read_mosaic(layout.mosaic(second, block_id))
        fill = gaps & other.valid
        if fill.any():
            rgb = rgb.copy()
            rgb[fill] = other.rgb[fill]
            valid = valid | fill
            used.append(second)
            dates += _acquired(layout.mosaic(second, block_id))
    return rgb, valid, used, dates


def _acquired(path: Path) -> list[str]:
    """The mosaic's acquisition date (its ACQUISITION_DATE tag, from sources that give one), as YYYY-MM-DD."""
    import rasterio

    with rasterio.open(path) as src:
        text = (src.tags().get("ACQUISITION_DATE") or "").strip()[:10]
    return [text] if len(text) == 10 else []


def read_final(path: Path):
    """(final mask, (transform, crs)) of a block's final COG."""
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1), (src.transform, src.crs)


def write_labels(regions: np.ndarray, grid, path: Path, block_id: str, model: str) -> Path:
    """The piece labels as a uint32 GeoTIFF on the final mask's grid (module docstring), atomically."""
    import rasterio

    from mapper.imagery.tiff_check import check_complete_geotiff
    from mapper.store.atomic import atomic_path

    transform, crs = grid
    h, w = regions.shape
    profile = {"driver": "GTiff", "width": w, "height": h, "count": 1, "dtype": "uint32", "crs": crs,
               "transform": transform, "nodata": 0, "compress": "deflate", "predictor": 2, "tiled": True,
               "blockxsize": 512, "blockysize": 512}  # fmt: skip
    with (
        atomic_path(path, suffix=".tif", check=check_complete_geotiff) as tmp,
        rasterio.open(tmp, "w", **profile) as dst,
    ):
        dst.write(regions.astype(np.uint32), 1)
        dst.set_band_description(1, "field piece")
        dst.update_tags(MAPPER_BLOCK=block_id, MAPPER_VALUES=VALUES_TAG, MAPPER_FIELD_MODEL=model,
                        MAPPER_FIELD_PIECES=str(int(regions.max(initial=0))))  # fmt: skip
    return path


def write_pieces(pieces, area_m2: np.ndarray, path: Path) -> Path:
    """A block's BlockFields pieces as Parquet (module docstring), atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import shapely

    from mapper.store.atomic import atomic_path

    w = pieces.window
    table = pa.table({
        "label": pa.array(np.arange(1, pieces.n + 1, dtype=np.int32)),
        "first_row": pa.array(pieces.first[:, 0].astype(np.int64)),
        "first_col": pa.array(pieces.first[:, 1].astype(np.int64)),
        "area_m2": pa.array(np.asarray(area_m2, np.float64)),
        "geometry": pa.array(list(shapely.to_wkb(pieces.geometry)) if pieces.n else [], pa.binary()),
    }, metadata={"mapper:block_id": pieces.block_id, "mapper:crs": "global z16 pixels (no CRS)",
                 "mapper:window": f"{w.zoom},{w.col0},{w.row0},{w.col1},{w.row1}"})  # fmt: skip
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path


def read_block_fields(root, block_id: str, zoom: int = 16):
    """A done block's BlockFields from its files: the pieces as written, the border strips from the label
    GeoTIFF's edge rows and columns (what stitching pairs across block edges)."""
    import pyarrow.parquet as pq
    import rasterio
    import shapely
    from rasterio.windows import Window

    from mapper.fields.polygons import BlockFields
    from mapper.grid.blocks import Block

    window = Block.parse(block_id).window(zoom)
    table = pq.read_table(block_pieces_path(root, block_id))
    labels = table["label"].to_numpy()
    if not np.array_equal(labels, np.arange(1, len(labels) + 1)):
        raise ValueError(f"{block_pieces_path(root, block_id)}: labels are not 1..n in order")
    geometry = shapely.from_wkb(table["geometry"].to_numpy(zero_copy_only=False)).astype(object)
    first = np.column_stack([table["first_row"].to_numpy(), table["first_col"].to_numpy()]).astype(np.int64)
    with rasterio.open(block_labels_path(root, block_id)) as src:
        if (src.height, src.width) != window.shape:
            raise ValueError(f"{block_labels_path(root, block_id)} is not on block {block_id}'s grid")
        h, w = window.shape
        strips = {"north": Window(0, 0, w, 1), "south": Window(0, h - 1, w, 1),
                  "west": Window(0, 0, 1, h), "east": Window(w - 1, 0, 1, h)}  # fmt: skip
        borders = {k: src.read(1, window=v).ravel().astype(np.int32) for k, v in strips.items()}
    return BlockFields(block_id, window, np.asarray(geometry, dtype=object).reshape(-1), first.reshape(-1, 2),
                       borders)  # fmt: skip


def _enabled(config: dict) -> bool:
    return bool(config.get("fields", {}).get("enabled"))


def _outputs(store, ctx: RunContext, units: dict) -> dict:
    from mapper.fields.outputs import write_fields_outputs

    return write_fields_outputs(store.layout.root, units, store=store, min_area_ha=ctx.config["fields"]["min_area_ha"],
                                zoom=ctx.config["zoom"])  # fmt: skip


# The stage, registered with the run through the "mapper.stages" entry point (pyproject.toml): per block after its
# final mask, when fields.enabled. Its Ray pool: with GPUs, a whole CPU and half a GPU (a U-Net on 2 m windows,
# heavier than crop types' model). On CPUs, a 0.1 share that IS set aside (counted before segmentation's share),
# unlike the crop-type stage's: a share not set aside fits only in the fraction of a CPU the integer segmentation
# share leaves (16 CPUs: 16 - 1.95 - 14 = 0.05 < 0.1), and since the segmentation actors hold their CPUs for the
# whole run, the fields actor would then wait for ever. Set aside, it always fits; segmentation keeps its CPUs
# wherever the other shares leave a fraction of at least 0.1 (2 CPUs: 2 - 0.85 = 1.15 → 1, as without fields), and
# loses one otherwise (16 CPUs: 14 → 13). `model`: on a CPU node the U-Net uses the node's cores (run.torch_threads
# when set), not Ray's one thread per actor: `mapper fields RUN` on a finished run has no other stage to leave cores
# to, and one thread made it ~10× slower there (2 cores: ~60 s a block instead of ~5 s); beside segmentation in a
# full run the two share the cores either way.
STAGE = StageSpec("fields", FieldWorker, after=("final",), item=decision_item, enabled=_enabled,
                  pool=Pool(cpus=0.1, gpus=0.5, cpus_with_gpus=1.0, set_aside=True, model=True),
                  outputs=_outputs)  # fmt: skip
