"""The block stages of a run, as workers: each loads what it needs once (sources, a model, the DEM) and is then
called with batches of small items (block ids, source names, earlier stages' small results), never pixels.

    fetch → iqa ┐
          → segment ┴→ features → decide → final

A worker writes its files into the run directory (atomically) and returns one small JSON-able result per
item: a dict, or `{"error": "..."}` for an item that failed — one bad block never fails its batch. The
same worker classes run in-process and inside Ray actors (mapper.pipelines), so both give the same outputs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from mapper.run.stage import (
    Pool,
    RunContext,
    StageSpec,
    Worker,
    error_result,
    jsonable,
    per_item_seconds,
    set_torch_threads,
)
from mapper.store.run_store import BLOCK_LEVEL


# ---------------------------------------------------------------------------------------------- fetch
class Fetcher(Worker):
    """Block mosaics from the tile sources (each source opened once: its connection pool and cache)."""

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        self.config = ctx.mapper_config()
        self.sources: dict = {}

    def _source(self, name: str):
        if name not in self.sources:
            from mapper.imagery.sources import open_source

            self.sources[name] = open_source(name, self.config)
        return self.sources[name]

    def one(self, item: dict) -> dict:
        from mapper.grid.blocks import Block
        from mapper.imagery.mosaic import write_block_mosaic

        block_id, source = item["block_id"], item["source"]
        path, options = self.layout.mosaic(source, block_id), self.config.mosaic.model_dump()
        block = Block.parse(block_id)
        self.make_room(path, 4 * block.window(self.config.zoom).size)  # RGB + mask, uncompressed
        mosaic = write_block_mosaic(self._source(source), block, path, zoom=self.config.zoom, **options)
        return {"valid_fraction": float(mosaic.valid.mean()), "missing_tiles": len(mosaic.missing_tiles)}

    def close(self) -> None:
        for s in self.sources.values():
            s.close()


# ---------------------------------------------------------------------------------------------- iqa
class Assessor(Worker):
    """Image quality: the coverage type of each block × source (ResNet), a batch of images at a time."""

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        from mapper.iqa.model import load_coverage_model

        cfg = ctx.mapper_config().run
        set_torch_threads(cfg.torch_threads)
        self.model = load_coverage_model(cfg.models.iqa, device=cfg.device)

    def __call__(self, items: Sequence[dict]) -> list[dict]:
        from mapper.iqa.model import predict_coverage

        t0 = time.perf_counter()
        out: list[dict | None] = [None] * len(items)
        pairs = list(self.mosaics(items, out))
        for (i, _), (name, probs) in zip(pairs, predict_coverage(self.model, [m for _, m in pairs]), strict=True):
            out[i] = {"coverage": name, "probs": dict(zip(self.model.classes, map(float, probs), strict=True))}
        return per_item_seconds(out, t0)


# ---------------------------------------------------------------------------------------------- segment
class SegmentWorker(Worker):
    """Mask2Former cropland masks; windows of all the batch's images share network batches."""

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        from mapper.seg.predict import load_segmenter

        cfg = ctx.mapper_config().run
        set_torch_threads(cfg.torch_threads)
        self.segmenter = load_segmenter(cfg.models.segmentation, device=cfg.device)

    def __call__(self, items: Sequence[dict]) -> list[dict]:
        from mapper.seg.predict import write_prediction

        t0 = time.perf_counter()
        out: list[dict | None] = [None] * len(items)
        loaded = {}

        def readable():
            for i, mosaic in self.mosaics(items, out):
                loaded[i] = mosaic
                yield i, mosaic

        for i, result in self.segmenter.predict(readable()):
            item, mosaic = items[i], loaded.pop(i)
            try:
                path = self.layout.mask(item["source"], item["block_id"])
                self.make_room(path, 2 * mosaic.window.size)
                write_prediction(result, mosaic.window, path, block_id=item["block_id"])
                mask = result.mask
                valid = mask != 255
                out[i] = {
                    "windows": int(result.windows_run),
                    "cropland_fraction": float((mask == 1).sum() / valid.sum()) if valid.any() else 0.0,
                    "uncertain_fraction": uncertain_fraction(result.probability, valid),
                }
            except Exception as e:
                out[i] = error_result(e)
        return per_item_seconds(out, t0)


UNCERTAIN_BAND = (0.25, 0.75)  # cropland probabilities the model is unsure of (label-round selection)


def uncertain_fraction(probability: np.ndarray, valid: np.ndarray) -> float | None:
    """Share of the imaged pixels whose cropland probability lies in UNCERTAIN_BAND (None: nothing imaged)."""
    if not valid.any():
        return None
    p = probability[valid]
    return float(np.count_nonzero((p >= UNCERTAIN_BAND[0]) & (p <= UNCERTAIN_BAND[1])) / p.size)


# ---------------------------------------------------------------------------------------------- features
class FeatureWorker(Worker):
    """The block's decision features: region properties and image quality of both sources, their consistency,
    the IQA probabilities, and the terrain medians."""

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        self.config = ctx.mapper_config()
        self.terrain = _terrain_function(self.config, ctx.sources)

    def one(self, item: dict) -> dict:
        from mapper.decide.table import SOURCE_FEATURES, image_features
        from mapper.grid.blocks import Block
        from mapper.imagery.mosaic import read_mosaic
        from mapper.seg.predict import read_prediction

        block = Block.parse(item["block_id"])
        window = block.window(self.config.zoom)
        masks = [read_prediction(self.layout.mask(s, block.id))[0] for s in self.ctx.sources]
        row: dict = {}
        for prefix, source, mask, other in zip(("a", "b"), self.ctx.sources, masks, masks[::-1], strict=True):
            mosaic = read_mosaic(self.layout.mosaic(source, block.id))
            probs = item["iqa"][source]
            feats = image_features(mask, mosaic, probs, window, other)
            row.update({f"{prefix}_{k}": jsonable(feats[k]) for k in SOURCE_FEATURES})
        row.update({k: jsonable(v) for k, v in self.terrain(block).items()})
        return {"features": row}


def _terrain_function(config, sources: Sequence[str]):
    """Block -> TERRAIN record, as `run.dem` says ('auto': the world's DEM for world sources, else none)."""
    from mapper.decide.table import missing_terrain, terrain_record

    dem = config.run.dem
    if dem == "auto":
        dem = "world" if config.simulated(sources) else "none"
    if dem == "none":
        return lambda block: missing_terrain()
    if dem == "world":
        from mapper.features.terrain import world_block_terrain
        from mapper.world.world import get_world

        world = get_world(config.world.seed)
        return lambda block: terrain_record(world_block_terrain(world, block))
    from mapper.features.terrain import block_terrain, open_dem

    src = open_dem(dem)  # kept open for the worker's life
    return lambda block: terrain_record(block_terrain(src, block.bounds))


# ---------------------------------------------------------------------------------------------- decide
class Decider(Worker):
    """Semantic correctness of each source and the integration choice, for a batch of blocks' features."""

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        from mapper.decide.pipeline import load_decision_models

        self.correctness, self.integration = load_decision_models(ctx.mapper_config().run.models.decisions)

    def __call__(self, items: Sequence[dict]) -> list[dict]:
        t0 = time.perf_counter()
        try:
            out = self._decide(items)
        except Exception as e:  # the batch's rows are recorded failed together; each is retried
            out = [error_result(e) for _ in items]
        return per_item_seconds(out, t0)

    def _decide(self, items: Sequence[dict]) -> list[dict]:
        from mapper.decide.pipeline import decide_blocks

        correctness_df, integration_df = decision_frames([(i["block_id"], i["features"]) for i in items])
        decided = decide_blocks(self.correctness, self.integration, correctness_df, integration_df)
        classes = [f"{p}_p_{c}" for p in ("a", "b") for c in self.correctness.classes]
        choices = [f"p_{c.replace(' ', '_')}" for c in self.integration.classes]
        keep = ["a_pred_semantic", "b_pred_semantic", *classes, "decision", *choices]
        return [{k: jsonable(row[k]) for k in keep} for row in decided[keep].to_dict("records")]


def decision_frames(rows: Sequence[tuple[str, dict]]):
    """(correctness_df, integration_df) of blocks' feature rows {a_*, b_*, terrain}, as the models take them."""
    import pandas as pd

    from mapper.decide.table import INTEGRATION_FEATURES, SOURCE_FEATURES

    integration = pd.DataFrame([{"block_id": b, **{k: f.get(k) for k in INTEGRATION_FEATURES}} for b, f in rows])
    integration = integration.astype({k: "float64" for k in INTEGRATION_FEATURES if k != "terrain_missing"})
    integration["terrain_missing"] = integration["terrain_missing"].astype(bool)
    per_source = []
    for prefix in ("a", "b"):
        part = pd.DataFrame({"block_id": integration["block_id"], "source": prefix})
        for k in SOURCE_FEATURES:
            part[k] = integration[f"{prefix}_{k}"].to_numpy()
        per_source.append(part)
    return pd.concat(per_source, ignore_index=True), integration


# ---------------------------------------------------------------------------------------------- final
class Finisher(Worker):
    """The final mask of a block under its decision (a COG), its cropland area in true m² inside each province
    and prefecture of the region (each pixel counted once, by its centre), and its cropland polygons."""

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        self.config = ctx.mapper_config()
        from mapper.maps.units import unit_frames

        self.units = unit_frames(ctx.units)

    def one(self, item: dict) -> dict:
        from mapper.decide.truth import final_mask
        from mapper.grid.blocks import Block
        from mapper.maps.areas import cropland_by_unit, unit_areas_m2, unit_labels
        from mapper.maps.final_map import write_block_cog
        from mapper.maps.polygons import block_polygons, write_block_polygons
        from mapper.seg.predict import read_prediction

        block = Block.parse(item["block_id"])
        window = block.window(self.config.zoom)
        a, b = (read_prediction(self.layout.mask(s, block.id))[0] for s in self.ctx.sources)
        final = final_mask(item["decision"], a, b)
        self.make_room(self.layout.final(block.id), 2 * final.size)  # the COG and its overviews
        write_block_cog(final, window, self.layout.final(block.id), block_id=block.id,
                        tags={"MAPPER_DECISION": item["decision"]})  # fmt: skip
        out = {"decision": item["decision"]}
        for kind in ("region", "provinces", "prefectures"):
            units = self.units[kind]
            near = units[units.intersects(block.polygon)]
            labels = unit_labels(window, list(near.geometry))
            crop = cropland_by_unit(final, window, labels, len(near))
            land = unit_areas_m2(window, labels, len(near))
            out[kind] = {code: [float(c), float(t)] for code, c, t in zip(near["code"], crop, land, strict=True)}
        prefectures = self.units["prefectures"]
        near = prefectures[prefectures.intersects(block.polygon)]
        polygons = block_polygons(final == 1, window, block.id, units=near[["code", "name", "geometry"]])
        write_block_polygons(polygons, self.layout.block_polygons(block.id))
        valid = final != 255
        out["polygons"] = len(polygons)
        out["valid_fraction"] = float(valid.mean())
        out["cropland_fraction"] = float((final == 1).sum() / valid.sum()) if valid.any() else None
        return out


# ---------------------------------------------------------------------------------------------- the specs
def _iqa_probs(done: dict, sources: Sequence[str]) -> dict:
    return {"iqa": {s: done[(s, "iqa")]["probs"] for s in sources}}


def _features(done: dict, sources: Sequence[str]) -> dict:
    return {"features": done[(BLOCK_LEVEL, "features")]["features"]}


def decision_item(done: dict, sources: Sequence[str]) -> dict:
    """The block's integration decision: what the final mask (and any stage after it) starts from."""
    return {"decision": done[(BLOCK_LEVEL, "decide")]["decision"]}


def _quarter_of_cpus(run_cfg, cpus: float, gpus: float) -> int:
    return max(1, int(cpus // 4))


def _segment_actors(run_cfg, cpus: float, gpus: float) -> int:
    return run_cfg.segment_workers or (int(gpus) if int(gpus) else 1)


# The cropland stages, in order: fetch → iqa ┐ per source, then per block features → decide → final.
#                                      → segment ┘
CROPLAND_STAGES = (
    StageSpec("fetch", Fetcher, per_source=True,
              pool=Pool(actors=lambda run_cfg, cpus, gpus: run_cfg.fetch_workers, cpus=0.1)),
    StageSpec("iqa", Assessor, after=("fetch",), per_source=True, batch=lambda run_cfg: run_cfg.iqa_batch_blocks,
              pool=Pool(cpus=0.1, gpus=0.25, model=True)),
    StageSpec("segment", SegmentWorker, after=("fetch",), per_source=True,
              batch=lambda run_cfg: run_cfg.segment_batch_blocks,
              pool=Pool(actors=_segment_actors, cpus=None, gpus=1.0, cpus_with_gpus=1.0, model=True)),
    StageSpec("features", FeatureWorker, after=("iqa", "segment"), item=_iqa_probs,
              pool=Pool(actors=_quarter_of_cpus, cpus=0.2)),
    StageSpec("decide", Decider, after=("features",), item=_features, batch=lambda run_cfg: 16,
              pool=Pool(cpus=0.05)),
    StageSpec("final", Finisher, after=("decide",), item=decision_item, pool=Pool(actors=_quarter_of_cpus, cpus=0.2)),
)  # fmt: skip
STAGES = tuple(s.name for s in CROPLAND_STAGES)
