"""The fields of a run as a whole, from its done blocks' pieces (written at the end of every session with the
fields stage, like the cropland outputs; cheap, so rewritten each time), and their evaluation on the world:

    fields/fields.parquet        every field once: pieces stitched across block edges, slivers under
                                 fields.min_area_ha out, simplified, EPSG:4326, fiboa 0.3 (mapper.fields.fiboa)
    fields/<code>_<name>.gpkg    the same per prefecture (layer "fields"), for QGIS
    fields/summary.json          fields, pieces, blocks, hectares, model(s), min_area_ha, determination time
    fields/evaluation.json       `mapper fields evaluate`: object / extent / boundary / area scores (world runs)

    write_fields_outputs(root, units=None, *, store=None, min_area_ha=None)   the three files above
    evaluate_run(root, min_pixels=40)                                          scores against the world's fields

**Determination time** (fiboa's `determination:datetime`, one for the collection): the latest acquisition date
of the imagery the fields were delineated on, when the mosaics carry one (ACQUISITION_DATE); web-map imagery
gives none, so then the time the run fetched the imagery (the last fetch of the blocks with fields, from the
state database), and run.json's creation time if even that is unknown. It only changes when imagery is fetched
again, so rewriting the outputs gives the same file.

**Crops.** When the crop-type stage has classified a block's pieces (`croptype/fields/<block>.parquet`, unit
field), each stitched field takes the crop of its largest piece (true ground area) that has one (code > 0) and
the file gets fiboa's crop extension (`crop:code`, `crop:name_en`); fields without a classified piece get code 0,
"unclassified" (the crop extension requires a code on every row). A crop file older than the block's labels
(fields made again since) is ignored. The crop-type stage calls `write_fields_outputs` again after adding crops.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import numpy as np

from mapper.fields.paths import block_labels_path, field_crops_path, fields_dir

log = logging.getLogger("mapper.fields")
STAGE = "fields"
UNCLASSIFIED = (0, "unclassified")
SUMMARY = "summary.json"
EVALUATION = "evaluation.json"


def write_fields_outputs(root, units: dict | None = None, *, store=None, min_area_ha: float | None = None,
                         zoom: int = 16) -> dict:  # fmt: skip
    """fields.parquet, a GeoPackage per prefecture and summary.json from the run's done field blocks (module
    docstring). `units`: the run's unit frames (`mapper.maps.units.unit_frames`; default: from run.json);
    `store`: the open RunStore (default: the run's, read-only); `min_area_ha`: default the value of the last
    summary, else polygons.MIN_AREA_HA. Returns {name: path} ({} when no block has fields)."""
    from mapper.fields.fiboa import fiboa_frame, write_fiboa, write_prefecture_geopackages
    from mapper.fields.polygons import MIN_AREA_HA, field_polygons
    from mapper.fields.stage import read_block_fields
    from mapper.store.atomic import atomic_write_text
    from mapper.store.run_store import RunStore

    root = Path(root)
    own = store is None
    store = RunStore.read_only(root) if own else store
    try:
        results = dict(store.results(STAGE))
        when, basis = determination_time(store, results)
    finally:
        if own:
            store.close()
    if not results:
        return {}
    out_dir = fields_dir(root)
    previous = _read_json(out_dir / SUMMARY)
    if min_area_ha is None:
        min_area_ha = float(previous.get("min_area_ha", MIN_AREA_HA))
    blocks = [read_block_fields(root, b, zoom) for b in results]
    fields = field_polygons(blocks, min_area_ha=min_area_ha)
    crops = field_crops(root, blocks, fields["pieces"].to_numpy() if len(fields) else [])
    models = sorted({str(r.get("model")) for r in results.values()})
    details = f"mapper field delineation, model {', '.join(models)}"
    paths = {"fields": str(write_fiboa(fields, out_dir / "fields.parquet", determination_datetime=when,
                                       details=details, crops=crops))}  # fmt: skip
    units = _units(root) if units is None else units
    frame = fiboa_frame(fields, determination_datetime=when, details=details, crops=crops)
    crop_columns = ("crop:code", "crop:name_en") if crops is not None else ()
    gpkgs = write_prefecture_geopackages(frame, out_dir, units["prefectures"], crop_columns=crop_columns)
    paths["geopackages"] = [str(p) for p in gpkgs]
    summary = {
        "fields": len(fields),
        "pieces": int(sum(b.n for b in blocks)),
        "blocks": len(blocks),
        "fields_across_blocks": int((fields["n_blocks"] > 1).sum()) if len(fields) else 0,
        "area_ha": float(fields["area_m2"].sum() / 1e4) if len(fields) else 0.0,
        "model": models[0] if len(models) == 1 else models,
        "min_area_ha": min_area_ha,
        "determination_datetime": when.isoformat(),
        "determination_basis": basis,
        "with_crops": int((crops["crop:code"] != str(UNCLASSIFIED[0])).sum()) if crops is not None else 0,
        "outputs": paths,
    }
    atomic_write_text(out_dir / SUMMARY, json.dumps(summary, indent=1))
    paths["summary"] = str(out_dir / SUMMARY)
    return paths


def determination_time(store, results: dict) -> tuple[dt.datetime, str]:
    """(when, basis: "imagery" | "fetch" | "run"): module docstring."""
    dates = [r["imagery_date"] for r in results.values() if r.get("imagery_date")]
    if dates:
        day = dt.date.fromisoformat(max(dates))
        return dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=dt.UTC), "imagery"
    blocks = list(results)
    latest = None
    for i in range(0, len(blocks), 500):
        chunk = blocks[i : i + 500]
        (t,) = store.conn.execute(
            f"SELECT MAX(updated) FROM tasks WHERE stage = 'fetch' AND status = 'done' AND block_id IN "
            f"({','.join('?' * len(chunk))})", chunk,
        ).fetchone()  # fmt: skip
        latest = t if latest is None or (t is not None and t > latest) else latest
    if latest is not None:
        return dt.datetime.fromtimestamp(latest, tz=dt.UTC).replace(microsecond=0), "fetch"
    created = store.identity.get("created")
    try:
        return dt.datetime.strptime(created, "%Y-%m-%dT%H:%M:%S%z").astimezone(dt.UTC), "run"
    except (TypeError, ValueError):
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC), "unknown"


def field_crops(root: Path, blocks, pieces) -> object:
    """fiboa crop columns per field (module docstring), or None when no block has crops for its pieces."""
    import pandas as pd

    offsets = np.concatenate([[0], np.cumsum([b.n for b in blocks])]).astype(np.int64)
    n_pieces = int(offsets[-1])
    code = np.zeros(n_pieces, np.int64)
    name = np.full(n_pieces, UNCLASSIFIED[1], dtype=object)
    area = np.zeros(n_pieces)
    found = False
    for k, b in enumerate(blocks):
        path = field_crops_path(root, b.block_id)
        if not path.exists() or path.stat().st_mtime < block_labels_path(root, b.block_id).stat().st_mtime:
            continue
        table = pd.read_parquet(path, columns=["label", "crop_code", "crop"])
        table = table[(table["label"] >= 1) & (table["label"] <= b.n) & (table["crop_code"] > 0)]
        idx = offsets[k] + table["label"].to_numpy(np.int64) - 1
        code[idx] = table["crop_code"].to_numpy(np.int64)
        name[idx] = table["crop"].astype(str).to_numpy()
        found = found or len(table) > 0
    if not found:
        return None
    from mapper.fields.polygons import ground_area_m2

    geoms = np.concatenate([b.geometry for b in blocks]) if n_pieces else np.zeros(0, object)
    has = code > 0
    area[has] = ground_area_m2(geoms[has])
    out_code, out_name = [], []
    for members in pieces:
        members = np.asarray(members, np.int64)
        members = members[has[members]]
        if len(members) == 0:
            out_code.append(str(UNCLASSIFIED[0]))
            out_name.append(UNCLASSIFIED[1])
            continue
        best = members[np.argmax(area[members])]  # the largest classified piece (the first of equals)
        out_code.append(str(code[best]))
        out_name.append(str(name[best]))
    return pd.DataFrame({"crop:code": out_code, "crop:name_en": out_name})


def _units(root: Path) -> dict:
    from mapper.maps.units import unit_frames
    from mapper.run.plan import region_from_spec, region_units
    from mapper.store.json_file import read_json
    from mapper.store.run_store import RUN_FILE, RUN_FORMAT, RunStoreError

    identity = read_json(root / RUN_FILE, RUN_FORMAT, "a mapper run", "give a run directory", RunStoreError)
    return unit_frames(region_units(region_from_spec(identity["region"])))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# ------------------------------------------------------------------------------------------------ evaluation
class FieldsEvaluationError(ValueError):
    """A run whose fields cannot be scored (no field truth, no fields yet); the message names why and the fix."""


def evaluate_run(root, *, min_pixels: int = 40) -> dict:
    """Object, extent, boundary and area scores of a world run's fields (each done block's label GeoTIFF
    against `truth.field_truth` on the imaged pixels of its final mask), pooled over blocks; also written to
    fields/evaluation.json."""
    import rasterio

    from mapper.config.loader import load_config
    from mapper.fields.evaluate import score_instances, sum_scores
    from mapper.fields.truth import field_truth
    from mapper.grid.blocks import Block
    from mapper.store.atomic import atomic_write_text
    from mapper.store.run_store import RunStore
    from mapper.world.world import get_world

    root = Path(root)
    store = RunStore.read_only(root)
    try:
        results = dict(store.results(STAGE))
        sources = list(store.identity.get("sources") or [])
    finally:
        store.close()
    config = load_config([root / "config.yaml"])
    if not sources or not config.simulated(sources):
        raise FieldsEvaluationError(
            f"{root} was mapped from {', '.join(sources) or 'unknown sources'}, not the simulated world, so there "
            "is no field truth to score its fields against; `mapper fields evaluate` scores runs of world sources "
            "(e.g. `mapper run --source demo`)"
        )
    if not results:
        raise FieldsEvaluationError(f"no block of {root} has fields yet; make them with `mapper fields {root}`")
    world = get_world(config.world.seed)
    scores, fields = [], 0
    for block_id in results:
        block = Block.parse(block_id)
        truth = field_truth(world, block, config.zoom)
        with rasterio.open(block_labels_path(root, block_id)) as src:
            pred = src.read(1).astype(np.int64)
        with rasterio.open(root / "final" / f"{block_id}.tif") as src:
            valid = src.read(1) != 255
        s = score_instances(truth.labels, pred, min_pixels=min_pixels, valid=valid)
        scores.append(s)
        fields += s.tp + s.fp
    total = sum_scores(scores).as_dict()
    out = {"run": str(root), "world_seed": config.world.seed, "blocks": len(results), "fields": fields,
           "true_fields": total["tp"] + total["fn"], "min_pixels": min_pixels, "iou_threshold": 0.5,
           "boundary_tolerance_px": 1, "models": sorted({str(r.get("model")) for r in results.values()}),
           **total}  # fmt: skip
    out = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in out.items()}
    atomic_write_text(fields_dir(root) / EVALUATION, json.dumps(out, indent=1))
    return out
