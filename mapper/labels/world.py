"""Labelled blocks from the simulated world: its imagery and its truth, in the on-disk form human labels take.

`select_training_blocks` picks blocks over a region without rendering anything (cropland from a sparse grid
of truth points, coverage types from the per-block imaging conditions); `make_world_labels` writes them,
resuming where an earlier run stopped.

Mask convention (see mapper.labels.store): mask.tif is the world's truth, 0/1 at every pixel, one per block;
the pixels an image has no imagery for are ignored by readers through that image's own nodata mask
(`LabelledBlock.target(source)`), because the truth is the same for both sources but nodata is not.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mapper.grid.blocks import CELLS_PER_DEGREE, Block
from mapper.labels.store import LabelError, is_complete, read_label_json, write_labelled_block
from mapper.world.conditions import COVERAGE_NAMES, CoverageType, coverage_type

log = logging.getLogger(__name__)
RENDERINGS = ("a", "b")


def world_origin(seed: int) -> str:
    return f"world seed {int(seed)}"


def parse_world_sources(spec: str | Sequence[str], config=None) -> dict[str, str]:
    """Source name -> world rendering. Items: a rendering ('a', 'b', named after itself), 'NAME=a', or a
    configured world source or source set ('demo-a', 'demo'), so labels can carry the names a run uses."""
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not items:
        raise LabelError("no sources given; use e.g. --sources a,b")
    out: dict[str, str] = {}
    for item in items:
        if item in RENDERINGS:
            out[item] = item
        elif "=" in item:
            name, rendering = (p.strip() for p in item.split("=", 1))
            if rendering not in RENDERINGS:
                raise LabelError(f"{item!r}: the world has renderings 'a' and 'b', not {rendering!r}")
            out[name] = rendering
        else:
            from mapper.config import load_config

            config = config or load_config()
            for name in config.resolve_sources(item):  # ConfigError lists the known ones
                sc = config.sources[name]
                if not sc.simulated:
                    raise LabelError(f"source {name!r} is not the simulated world; world labels need world imagery")
                out[name] = sc.rendering
    return out


# ---------------------------------------------------------------------------------------------- writing
@dataclass
class WorldLabelSummary:
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def write_world_block(
    seed: int, block: Block, out_root: Path | str, sources: dict[str, str], mosaic_options: dict | None = None
) -> Path:
    """Render `block` for each source and write it with its truth as a labelled block."""
    from mapper.imagery.mosaic import mosaic_block
    from mapper.world.source import WorldTileSource
    from mapper.world.truth import block_truth
    from mapper.world.world import get_world

    truth = block_truth(get_world(seed), block)
    images = {name: mosaic_block(WorldTileSource(name, seed, r), block) for name, r in sources.items()}
    extra = {
        "world": {
            "seed": int(seed),
            "renderings": dict(sources),
            "condition_fractions": {name: truth.fractions[r] for name, r in sources.items()},
            "cropland_m2": truth.cropland_m2,
        }
    }
    coverage = {name: truth.coverage_name(r) for name, r in sources.items()}
    return write_labelled_block(
        out_root, block, images, truth.cropland.astype(np.uint8), coverage, world_origin(seed), extra, mosaic_options
    )


def _check_existing(directory: Path, seed: int, sources: dict[str, str]) -> None:
    meta = read_label_json(directory)
    origin, have = meta.get("origin"), meta.get("world", {}).get("renderings", {})
    if origin != world_origin(seed) or have != sources:
        raise LabelError(
            f"{directory} already holds a labelled block from {origin} with sources {have or meta['sources']}, "
            f"not {world_origin(seed)} with {sources}. Use another --out for a different world or sources "
            "(nothing was written)."
        )


def _write_one(args) -> tuple[str, str | None]:
    seed, block_id, out_root, sources, mosaic_options = args
    try:
        write_world_block(seed, Block.parse(block_id), out_root, sources, mosaic_options)
        return block_id, None
    except Exception as e:  # one bad block must not stop the others; it is reported
        log.exception("block %s failed", block_id)
        return block_id, f"{type(e).__name__}: {e}"


def make_world_labels(
    seed: int,
    blocks: Iterable[Block | str],
    out_root: Path | str,
    sources: Sequence[str] | dict[str, str] | str = RENDERINGS,
    progress: bool = True,
    workers: int = 1,
    mosaic_options: dict | None = None,
) -> WorldLabelSummary:
    """Write `<out_root>/<block_id>/` for each block from world `seed`'s imagery and truth.

    Resumable: blocks whose label.json exists are skipped (label.json is written last, atomically); a
    directory without it is redone. A directory from another seed or other sources stops the run before
    any work. `workers` > 1 renders blocks in that many processes; `mosaic_options` go to write_mosaic
    (the config's `mosaic` section)."""
    from tqdm import tqdm

    src = sources if isinstance(sources, dict) else parse_world_sources(sources)
    out_root = Path(out_root)
    ids = list(dict.fromkeys(b.id if isinstance(b, Block) else Block.parse(b).id for b in blocks))
    summary = WorldLabelSummary()
    todo = []
    for block_id in ids:
        d = out_root / block_id
        if is_complete(d):
            _check_existing(d, seed, src)
            summary.skipped.append(block_id)
        else:
            todo.append(block_id)
    out_root.mkdir(parents=True, exist_ok=True)
    tasks = [(int(seed), block_id, str(out_root), src, mosaic_options) for block_id in todo]
    bar = tqdm(total=len(tasks), desc=f"labels (world seed {seed})", unit="block", disable=not progress)
    try:
        if workers > 1 and len(tasks) > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            ctx = multiprocessing.get_context("spawn")  # GDAL and numba threads do not survive fork
            with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=ctx) as pool:
                results = pool.map(_write_one, tasks)
                for block_id, err in results:
                    _record(summary, block_id, err)
                    bar.update()
        else:
            for task in tasks:
                _record(summary, *_write_one(task))
                bar.update()
    finally:
        bar.close()
    return summary


def _record(summary: WorldLabelSummary, block_id: str, err: str | None) -> None:
    if err is None:
        summary.written.append(block_id)
    else:
        summary.failed[block_id] = err


# ---------------------------------------------------------------------------------------------- selection
def expected_coverage(world, block: Block, rendering: str) -> CoverageType:
    """The coverage type a block's imaging conditions aim at, without rendering: the condition targets
    stand in for the realised cloud / snow / nodata fractions (they differ by a few percent)."""
    cond = world.conditions(block, rendering)
    return coverage_type(cond, cond.cloud, cond.snow, cond.nodata)


def block_estimates(seed: int, blocks: Sequence[Block], points_per_side: int = 6):
    """Cheap per-block features for selection: cropland fraction from a points_per_side² grid of truth
    points (no rendering) and the expected coverage type of each rendering. A DataFrame, one row per block."""
    import pandas as pd

    from mapper.grid.tilegrid import lonlat_to_global_pixel
    from mapper.world.world import get_world

    world = get_world(seed)
    k = points_per_side
    offsets = (np.arange(k) + 0.5) / (k * CELLS_PER_DEGREE)
    rows = []
    for b in blocks:
        west, south, *_ = b.bounds
        lon, lat = np.meshgrid(west + offsets, south + offsets)
        x, y = lonlat_to_global_pixel(lon.ravel(), lat.ravel(), 16)
        crop = float(world.landscape.cropland_at_points(x, y).mean())
        cov = {r: COVERAGE_NAMES[expected_coverage(world, b, r)] for r in RENDERINGS}
        lon_c, lat_c = b.center
        rows.append((b.id, b.ix, b.iy, lon_c, lat_c, crop, cov["a"], cov["b"]))
    columns = ["block_id", "ix", "iy", "lon", "lat", "cropland_est", "coverage_a", "coverage_b"]
    return pd.DataFrame(rows, columns=columns)


def select_training_blocks(
    seed: int, region_geometry, n: int, rng_seed: int = 0, max_candidates: int = 1200
) -> list[Block]:
    """n blocks of the region for training labels: spread over it, and stratified.

    Candidates are the region's blocks that lie mostly inside it (a random `max_candidates` of them in large
    regions). They are ranked by estimated cropland into thirds (cropland-poor / middle / cropland-rich,
    relative to the region). Picks, in order: one of the richest tenth, one of the poorest tenth, one block of
    each coverage type the candidates have (in either source; rarest first), one of the middle third; the
    rest keeps the thirds balanced. Every pick is the candidate of its stratum farthest from all blocks picked so
    far (ground distance), so the set spreads over the region. Deterministic for a given rng_seed."""
    from mapper.grid.region import blocks_of_polygon

    if n <= 0:
        raise ValueError("n must be at least 1")
    region = blocks_of_polygon(region_geometry)
    if region.empty:
        raise LabelError("the region holds no blocks")
    mostly = region[region["frac_inside"] >= 0.5]
    if len(mostly) >= n:
        region = mostly
    rng = np.random.default_rng(rng_seed)
    if len(region) > max_candidates:
        region = region.iloc[np.sort(rng.choice(len(region), max_candidates, replace=False))]
    blocks = [Block(int(ix), int(iy)) for ix, iy in zip(region["ix"], region["iy"], strict=True)]
    if n >= len(blocks):
        return blocks
    est = block_estimates(seed, blocks)

    # Cropland thirds by rank (ties broken at random, so an all-zero region still splits).
    order = np.lexsort((rng.random(len(est)), est["cropland_est"].to_numpy()))
    rank = np.empty(len(est), np.int64)
    rank[order] = np.arange(len(est))
    stratum = np.minimum(rank * 3 // len(est), 2).astype(np.int8)  # 0 poor, 1 middle, 2 rich
    tail = max(1, len(est) // 10)  # the first rich and poor picks come from the extreme tenths
    lat = np.radians(est["lat"].to_numpy())
    xy = np.column_stack([est["lon"].to_numpy() * np.cos(lat), est["lat"].to_numpy()])
    tiebreak = rng.random(len(est)) * 1e-9

    chosen: list[int] = []
    nearest = np.full(len(est), np.inf)  # distance to the nearest chosen block

    def pick(eligible: np.ndarray) -> bool:
        eligible = eligible.copy()
        eligible[chosen] = False
        if not eligible.any():
            return False
        score = np.where(eligible, np.where(np.isfinite(nearest), nearest, 0.0) + tiebreak, -np.inf)
        i = int(np.argmax(score))
        chosen.append(i)
        np.minimum(nearest, np.hypot(*(xy - xy[i]).T), out=nearest)
        return True

    covs = est[["coverage_a", "coverage_b"]].to_numpy()
    present = {c: np.any(covs == c, axis=1) for c in COVERAGE_NAMES}
    rare_first = sorted((c for c in COVERAGE_NAMES if present[c].any()), key=lambda c: present[c].sum())
    plan: list[np.ndarray | str] = [rank >= len(est) - tail, rank < tail, *rare_first, stratum == 1]
    for step in plan:
        if len(chosen) >= n:
            break
        if isinstance(step, str):
            if np.any(covs[chosen] == step):
                continue
            counts = np.bincount(stratum[chosen], minlength=3)
            # among blocks of this coverage type, prefer the stratum with the fewest picks
            for s in np.argsort(counts, kind="stable"):
                if pick(present[step] & (stratum == s)):
                    break
        else:
            pick(step)
    while len(chosen) < n:
        counts = np.bincount(stratum[chosen], minlength=3)
        for s in np.argsort(counts, kind="stable"):
            if pick(stratum == s):
                break
        else:
            break
    return [blocks[i] for i in chosen]
