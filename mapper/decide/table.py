"""The feature tables of the two block-level decisions (paper Table 5; DESIGN.md §5-7), as GeoParquet.

    image_features(prediction_mask, mosaic, coverage_probs, window) -> dict     one block × source
    build_tables(label_roots, predictions_root, ...) -> (correctness_df, integration_df)
    write_table(df, path)  /  read_table(path)                                   versioned GeoParquet

**Per-source features** (`SOURCE_FEATURES`, one block × source):

- region properties of the predicted mask (`mapper.features.regionprops`, pixels without imagery left
  out): `cropland_m2` (true ground area), `area_fraction`, `n_components`, `solidity_mean`,
  `solidity_total`, `euler_mean`, `euler_total`, `edge_density_m_per_ha`;
- image quality: `iqa_class`, the coverage type the IQA model gives, as its index in COVERAGE_NAMES
  (0 Planting, 1 Non-planting, 2 Cloudy, 3 Snow/Ice, 4 Nodata; −1 when no model ran); its five
  probabilities `p_planting`, `p_non_planting`, `p_cloudy`, `p_snow_ice`, `p_nodata`; the no-reference
  features of `mapper.iqa.features`: `sharpness`, `hue_median`, `saturation_median`, `lightness_median`
  and `valid_fraction` (the imaged share of the block);
- `consistency_iou`: IoU of the two sources' predicted cropland over the pixels both imaged
  (`mask_iou`; 1 when neither maps cropland there, NaN when no pixel is imaged by both). The same number
  for both sources of a block.

**Terrain** (`TERRAIN`): the block's medians `elevation_median`, `slope_median_deg`, `tri_median`,
`roughness_median` (`mapper.features.terrain`, gdaldem's definitions) and `terrain_missing` (True when any
of them could not be computed, e.g. no DEM given: the four are then NaN).

**The tables.** One row per labelled block (complete, with a prediction for every source); geometry is the
block's polygon in EPSG:4326.

- correctness: one row per block × source: `block_id`, `source`, `world_seed` (nullable: human labels have
  none), SOURCE_FEATURES, `label` (`mapper.decide.truth.correctness_class`);
- integration: one row per block: `block_id`, `world_seed`, `a_<feature>` and `b_<feature>` for every
  source feature (a = the first source, b = the second, whatever their names: the table's metadata keeps
  the names), TERRAIN, `label` (`mapper.decide.truth.integration_choice`).

Columns named `truth_*` are what the labels were derived from (correctness: `truth_t`, `truth_p`,
`truth_e`, `truth_iou`, `truth_area_m2`, `truth_coverage`; integration: `truth_error_m2_<candidate>`).
They come from the ground truth and are never features.

**On disk.** `write_table` writes GeoParquet atomically with a `mapper_table` schema-metadata entry (JSON:
schema TABLE_SCHEMA, kind, feature list, label classes, source names, mapper version); `read_table`
refuses a file without it or with another schema, saying to rebuild it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mapper.decide.truth import (
    CORRECTNESS_CLASSES,
    INTEGRATION_CLASSES,
    block_score,
    choose,
    classify_score,
    integration_errors,
)
from mapper.features.regionprops import block_properties_for_window, mask_iou
from mapper.features.terrain import TERRAIN_FEATURES
from mapper.grid.area import row_pixel_areas
from mapper.imagery.mosaic import mosaic_arrays
from mapper.iqa.features import quality_features
from mapper.labels.store import LabelledBlock, block_dirs, image_file, is_complete, read_labelled_block
from mapper.world.conditions import COVERAGE_NAMES

log = logging.getLogger(__name__)

TABLE_SCHEMA = "mapper-decide-table/1"
METADATA_KEY = b"mapper_table"
CRS = "EPSG:4326"

REGION_FEATURES = (
    "cropland_m2", "area_fraction", "n_components", "solidity_mean", "solidity_total", "euler_mean", "euler_total",
    "edge_density_m_per_ha",
)  # fmt: skip
PROBABILITY_FEATURES = ("p_planting", "p_non_planting", "p_cloudy", "p_snow_ice", "p_nodata")  # COVERAGE_NAMES order
QUALITY_FEATURES = ("sharpness", "hue_median", "saturation_median", "lightness_median", "valid_fraction")
IQA_FEATURES = ("iqa_class", *PROBABILITY_FEATURES, *QUALITY_FEATURES)
SOURCE_FEATURES = (*REGION_FEATURES, *IQA_FEATURES, "consistency_iou")
TERRAIN = (*TERRAIN_FEATURES, "terrain_missing")
INTEGRATION_FEATURES = (*(f"a_{f}" for f in SOURCE_FEATURES), *(f"b_{f}" for f in SOURCE_FEATURES), *TERRAIN)

CORRECTNESS_TRUTH = ("truth_t", "truth_p", "truth_e", "truth_iou", "truth_area_m2", "truth_coverage")
INTEGRATION_TRUTH = tuple(f"truth_error_m2_{c.lower().replace(' ', '_')}" for c in INTEGRATION_CLASSES)
CORRECTNESS_COLUMNS = ("block_id", "source", "world_seed", *SOURCE_FEATURES, "label", *CORRECTNESS_TRUTH)
INTEGRATION_COLUMNS = ("block_id", "world_seed", *INTEGRATION_FEATURES, "label", *INTEGRATION_TRUTH)
_INT_FEATURES = ("n_components", "euler_total", "iqa_class")
NO_CLASS = -1  # iqa_class when no coverage model ran

KINDS = {
    "correctness": {"features": SOURCE_FEATURES, "classes": CORRECTNESS_CLASSES},
    "integration": {"features": INTEGRATION_FEATURES, "classes": INTEGRATION_CLASSES},
}


class TableError(ValueError):
    """A decision table is unusable (another version, not a table at all); the message says how to fix it."""


# ---------------------------------------------------------------------------------------------- one image
def pixel_features(prediction_mask: np.ndarray, mosaic, window) -> dict:
    """Region properties of the prediction and no-reference quality features of the image."""
    valid = prediction_mask != 255
    props = block_properties_for_window(prediction_mask == 1, window, valid)
    rgb, image_valid = mosaic_arrays(mosaic)
    quality = quality_features(rgb, image_valid)
    return {**{k: props[k] for k in REGION_FEATURES}, **{k: quality[k] for k in QUALITY_FEATURES}}


def iqa_features(coverage_probs) -> dict:
    """iqa_class and p_* from probabilities in COVERAGE_NAMES order (or a {name: probability} mapping);
    None: no model ran (class −1, probabilities NaN)."""
    if coverage_probs is None:
        return {"iqa_class": NO_CLASS, **dict.fromkeys(PROBABILITY_FEATURES, math.nan)}
    if isinstance(coverage_probs, Mapping):
        coverage_probs = [coverage_probs.get(name, math.nan) for name in COVERAGE_NAMES]
    probs = np.asarray(coverage_probs, np.float64)
    if probs.shape != (len(COVERAGE_NAMES),):
        raise ValueError(f"coverage_probs: one probability per coverage type {COVERAGE_NAMES}; got shape {probs.shape}")
    cls = int(np.nanargmax(probs)) if np.isfinite(probs).any() else NO_CLASS
    return {"iqa_class": cls, **{k: float(p) for k, p in zip(PROBABILITY_FEATURES, probs, strict=True)}}


def consistency_iou(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """IoU of two predictions' cropland over the pixels both sources imaged (NaN when there are none)."""
    both = (mask_a != 255) & (mask_b != 255)
    return mask_iou(mask_a == 1, mask_b == 1, both)


def image_features(prediction_mask, mosaic, coverage_probs, window, other_mask=None) -> dict:
    """SOURCE_FEATURES of one block × source. `coverage_probs`: the IQA probabilities (see iqa_features);
    `other_mask`: the other source's prediction of the block, for consistency_iou (NaN without it)."""
    mask = np.asarray(prediction_mask)
    out = {**pixel_features(mask, mosaic, window), **iqa_features(coverage_probs)}
    out["consistency_iou"] = math.nan if other_mask is None else consistency_iou(mask, np.asarray(other_mask))
    return {k: out[k] for k in SOURCE_FEATURES}


# ---------------------------------------------------------------------------------------------- terrain
def missing_terrain() -> dict:
    return {**dict.fromkeys(TERRAIN_FEATURES, math.nan), "terrain_missing": True}


def terrain_record(t: dict) -> dict:
    """The TERRAIN columns of a `block_terrain` result."""
    return {**{k: float(t[k]) for k in TERRAIN_FEATURES}, "terrain_missing": bool(t["terrain_missing"])}


@contextlib.contextmanager
def terrain_source(dem) -> Iterator[Callable[[LabelledBlock], dict]]:
    """A function LabelledBlock -> TERRAIN record. `dem`: None (all missing), "world" (the simulated world's
    DEM of the labels' seed; blocks without a seed are missing), or a DEM path / rasterio dataset /
    `DemArray` for block_terrain (a path is opened once)."""
    from mapper.features.terrain import block_terrain, open_dem, world_block_terrain

    if dem is None:
        yield lambda lb: missing_terrain()
    elif isinstance(dem, str) and dem == "world":
        from mapper.world.world import get_world

        def world_terrain(lb: LabelledBlock) -> dict:
            seed = world_seed(lb)
            if seed is None:
                log.warning("block %s has no world seed (not world labels): its terrain is missing", lb.block.id)
                return missing_terrain()
            return terrain_record(world_block_terrain(get_world(seed), lb.block))

        yield world_terrain
    elif isinstance(dem, str | os.PathLike):
        with open_dem(dem) as src:
            yield lambda lb: terrain_record(block_terrain(src, lb.block.bounds))
    else:
        yield lambda lb: terrain_record(block_terrain(dem, lb.block.bounds))


def world_seed(lb: LabelledBlock) -> int | None:
    world = lb.meta.get("world")
    return int(world["seed"]) if isinstance(world, dict) and world.get("seed") is not None else None


# ---------------------------------------------------------------------------------------------- one block
@dataclass
class _BlockRecord:
    """Everything of one block but the IQA probabilities, which are classified in batches afterwards."""

    block_id: str
    seed: int | None
    polygon: object
    features: dict[str, dict]  # per source
    truth: dict[str, dict]  # per source: the numbers behind the correctness label
    correctness: dict[str, str]
    errors: dict[str, float]  # per integration candidate
    terrain: dict
    views: list[np.ndarray | None] = field(default_factory=list)  # IQA views in source order (None: no imagery)
    any_valid: list[bool] = field(default_factory=list)


def _read_predictions(paths: Sequence[Path], shape) -> list[np.ndarray]:
    from mapper.seg.predict import read_prediction

    masks = []
    for p in paths:
        mask, _ = read_prediction(p)
        if mask.shape != tuple(shape):
            raise TableError(
                f"prediction {p} is {mask.shape[1]} × {mask.shape[0]} px but its block's grid is {shape[1]} × "
                f"{shape[0]}: it is not this block's prediction; run `mapper segment` on the block's mosaic again"
            )
        masks.append(mask)
    return masks


def _block_record(
    lb: LabelledBlock, pred_paths: Sequence[Path], sources: Sequence[str], terrain, view_size
) -> _BlockRecord:
    from mapper.iqa.model import make_view

    window = lb.block.window(next(iter(lb.images.values())).window.zoom)
    areas = row_pixel_areas(window)
    masks = _read_predictions(pred_paths, window.shape)
    iou = consistency_iou(masks[0], masks[1])
    rec = _BlockRecord(lb.block.id, world_seed(lb), lb.block.polygon, {}, {}, {}, {}, terrain(lb))
    for source, mask in zip(sources, masks, strict=True):
        mosaic = lb.images[source]
        rec.features[source] = {**pixel_features(mask, mosaic, window), "consistency_iou": iou}
        score = block_score(mask, lb.target(source), areas)
        coverage = lb.coverage.get(source)
        rec.correctness[source] = classify_score(score, coverage)
        rec.truth[source] = {**{f"truth_{k}": v for k, v in score.as_dict().items()}, "truth_coverage": coverage}
        ok = bool(mosaic.valid.any())
        rec.views.append(make_view(mosaic.rgb, mosaic.valid, view_size) if ok else None)
        rec.any_valid.append(ok)
    rec.errors = integration_errors(masks[0], masks[1], lb.mask, areas)
    return rec


def _classify(records: list[_BlockRecord], model, sources: Sequence[str]) -> None:
    """Fill in the IQA features of a batch of blocks, all their views through the model at once."""
    if not records:
        return
    views = [v if v is not None else np.zeros((model.size, model.size, 4), np.uint8) for r in records for v in r.views]
    any_valid = [ok for r in records for ok in r.any_valid]
    results = iter(model.classify_views(np.stack(views), np.array(any_valid)))
    for rec in records:
        for s in sources:
            _, probs = next(results)
            rec.features[s].update(iqa_features(dict(zip(model.classes, map(float, probs), strict=True))))


# ---------------------------------------------------------------------------------------------- tables
def _pairs(label_roots, predictions_root) -> list[tuple[Path, Path]]:
    """(labels root, predictions root) pairs: one predictions root for all, or one per labels root."""
    labels = [Path(label_roots)] if isinstance(label_roots, str | os.PathLike) else [Path(p) for p in label_roots]
    preds = (
        [Path(predictions_root)] * len(labels)
        if isinstance(predictions_root, str | os.PathLike)
        else [Path(p) for p in predictions_root]
    )
    if len(preds) != len(labels):
        raise ValueError(
            f"{len(labels)} label roots but {len(preds)} prediction roots; give one prediction root for all, "
            "or one per label root in the same order"
        )
    return list(zip(labels, preds, strict=True))


def _correctness_rows(rec: _BlockRecord, sources: Sequence[str]) -> Iterator[dict]:
    for s in sources:
        yield {"block_id": rec.block_id, "source": s, "world_seed": rec.seed, **rec.features[s],
               "label": rec.correctness[s], **rec.truth[s], "geometry": rec.polygon}  # fmt: skip


def _integration_row(rec: _BlockRecord, sources: Sequence[str]) -> dict:
    a, b = (rec.features[s] for s in sources)
    return {
        "block_id": rec.block_id,
        "world_seed": rec.seed,
        **{f"a_{k}": a[k] for k in SOURCE_FEATURES},
        **{f"b_{k}": b[k] for k in SOURCE_FEATURES},
        **rec.terrain,
        "label": choose(rec.errors),
        **dict(zip(INTEGRATION_TRUTH, (rec.errors[c] for c in INTEGRATION_CLASSES), strict=True)),
        "geometry": rec.polygon,
    }


def _frame(rows: list[dict], columns: Sequence[str]):
    """A GeoDataFrame of the rows with fixed columns and dtypes (also when there are no rows)."""
    import geopandas as gpd
    import pandas as pd

    df = pd.DataFrame(rows, columns=[*columns, "geometry"])
    geometry = gpd.GeoSeries(list(df.pop("geometry")), crs=CRS)
    df["world_seed"] = pd.array(df["world_seed"].tolist(), dtype="Int64")
    for c in df.columns:
        if c.removeprefix("a_").removeprefix("b_") in _INT_FEATURES:
            df[c] = df[c].astype(np.int64)
        elif c == "terrain_missing":
            df[c] = df[c].astype(bool)
        elif c in ("block_id", "source", "label", "truth_coverage"):
            df[c] = df[c].astype("str")  # pandas' string dtype, as Parquet strings read back
    return gpd.GeoDataFrame(df, geometry=geometry, crs=CRS)


def build_tables(
    label_roots, predictions_root, sources: Sequence[str] = ("a", "b"), dem=None, coverage_model=None,
    progress: bool = False, batch_blocks: int = 16,
):  # fmt: skip
    """(correctness_df, integration_df) over the complete labelled blocks of `label_roots` (a directory or a
    list) with predictions `<predictions_root>/<block_id>/image_<source>.tif` (`mapper segment --mosaic
    <labels>/<block>/image_<source>.tif --out <predictions_root>`); `predictions_root` is one directory or
    one per label root. `sources`: the two sources, A then B. `dem`: see `terrain_source`. `coverage_model`:
    a CoverageClassifier (None: the packaged iqa-default), run on `batch_blocks` blocks' images at a time.

    Blocks without a prediction for every source, without an image of every source, or incomplete, are
    skipped with a warning and counted in `df.attrs["mapper_build"]` of both tables."""
    from tqdm import tqdm

    from mapper.iqa.model import load_coverage_model

    sources = tuple(sources)
    if len(sources) != 2:
        raise ValueError(f"integration is between two sources; got {len(sources)}: {sources}")
    model = coverage_model if coverage_model is not None else load_coverage_model()
    jobs = [(d, preds / d.name) for labels, preds in _pairs(label_roots, predictions_root) for d in block_dirs(labels)]
    skipped = {"incomplete": [], "missing_prediction": [], "missing_source": []}
    records, pending = [], []
    with terrain_source(dem) as terrain:
        for d, pred_dir in tqdm(jobs, desc="decision table", unit="block", disable=not progress):
            rec = _try_block(d, pred_dir, sources, terrain, model.size, skipped)
            if rec is not None:
                pending.append(rec)
            if len(pending) >= batch_blocks:
                _classify(pending, model, sources)
                records += pending
                pending = []
        _classify(pending, model, sources)
        records += pending
    build = {"blocks": len(records), "sources": list(sources), "skipped": {k: len(v) for k, v in skipped.items()}}
    for reason, ids in skipped.items():
        if ids:  # one warning per reason, not one per block: a round can lack hundreds of predictions
            more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
            log.warning("decision tables: skipped %d block(s), %s: %s%s", len(ids), reason.replace("_", " "),
                        ", ".join(ids[:5]), more)  # fmt: skip
    correctness = _frame([r for rec in records for r in _correctness_rows(rec, sources)], CORRECTNESS_COLUMNS)
    integration = _frame([_integration_row(rec, sources) for rec in records], INTEGRATION_COLUMNS)
    for df, kind in ((correctness, "correctness"), (integration, "integration")):
        df.attrs["mapper_build"] = {**build, "kind": kind}
    return correctness, integration


def _try_block(d: Path, pred_dir: Path, sources, terrain, view_size, skipped: dict) -> _BlockRecord | None:
    """The block's record, or None (logged, counted in `skipped`) when it cannot be used."""
    if not is_complete(d):
        log.info("skipping %s: the labelled block is incomplete (no label.json)", d)
        skipped["incomplete"].append(d.name)
        return None
    preds = [pred_dir / image_file(s) for s in sources]
    missing = [p for p in preds if not p.exists()]
    if missing:
        log.info("skipping block %s: no prediction %s", d.name, ", ".join(map(str, missing)))
        skipped["missing_prediction"].append(d.name)
        return None
    lb = read_labelled_block(d)
    absent = [s for s in sources if s not in lb.images]
    if absent:
        log.info("skipping block %s: no image of source(s) %s (it has %s)", d.name, absent, lb.sources)
        skipped["missing_source"].append(d.name)
        return None
    return _block_record(lb, preds, sources, terrain, view_size)


# ---------------------------------------------------------------------------------------------- on disk
def table_kind(df) -> str:
    """'correctness' (one row per block × source: has a `source` column) or 'integration'."""
    return "correctness" if "source" in df.columns else "integration"


def write_table(df, path) -> Path:
    """Write a decision table as GeoParquet, atomically, with its `mapper_table` metadata."""
    from mapper import __version__
    from mapper.store.geoparquet import write_geoparquet

    kind = table_kind(df)
    spec = KINDS[kind]
    missing = [c for c in (*spec["features"], "label", "block_id") if c not in df.columns]
    if missing:
        raise TableError(f"not a {kind} table from build_tables: it lacks {', '.join(missing[:8])}")
    build = df.attrs.get("mapper_build") or {}
    meta = {"schema": TABLE_SCHEMA, "kind": kind, "features": list(spec["features"]), "label": "label",
            "classes": list(spec["classes"]), "sources": build.get("sources"), "mapper_version": __version__,
            "build": build}  # fmt: skip
    # The rows keep their build order: seeded splits and folds of training depend on it.
    return write_geoparquet(df, path, metadata={METADATA_KEY: json.dumps(meta).encode()}, spatial_order=False)


def _rebuild_hint() -> str:
    return "rebuild it with this mapper: mapper.decide.table.build_tables(...), then write_table"


def read_table_metadata(path) -> dict:
    """The `mapper_table` metadata of a table file; TableError when it is missing or of another schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"decision table not found: {path}; build it with build_tables and write_table")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise TableError(f"{path} is not a Parquet file ({e}); {_rebuild_hint()}") from e
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise TableError(f"{path} is not a mapper decision table (no 'mapper_table' metadata); {_rebuild_hint()}")
    meta = json.loads(raw)
    if meta.get("schema") != TABLE_SCHEMA:
        raise TableError(
            f"{path} is a table from another mapper version (schema {meta.get('schema')!r}, written by mapper "
            f"{meta.get('mapper_version', '?')}; this mapper reads {TABLE_SCHEMA!r}): {_rebuild_hint()}"
        )
    return meta


def read_table(path, kind: str | None = None):
    """A decision table written by write_table, as a GeoDataFrame (metadata in `df.attrs["mapper_table"]`).
    TableError, saying to rebuild it, for a file of another version or kind, or missing feature columns."""
    import geopandas as gpd

    meta = read_table_metadata(path)
    if kind is not None and meta.get("kind") != kind:
        raise TableError(f"{path} is a {meta.get('kind')} table, not a {kind} table; pass the {kind} table")
    df = gpd.read_parquet(path)
    expected = KINDS[meta["kind"]]["features"] if meta.get("kind") in KINDS else ()
    missing = [c for c in (*expected, "label") if c not in df.columns]
    if missing:
        raise TableError(f"{path} lacks the columns {', '.join(missing[:8])} this mapper needs; {_rebuild_hint()}")
    df.attrs["mapper_table"] = meta
    return df
