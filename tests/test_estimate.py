"""`mapper estimate` and the estimate `mapper run` prints: block and tile counts against independent tile math
(mercantile), true area against pyproj's geodesic area, the planner's count, price arithmetic, storage and time
from the recorded throughputs, and the one-line errors of bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mercantile
import numpy as np
import pytest
import shapely
from pyproj import Geod

from mapper.config import load_config
from mapper.estimate.core import estimate, estimate_sources
from mapper.estimate.plan import Plan, plan_region
from mapper.estimate.text import render
from mapper.estimate.throughputs import load_throughputs
from mapper.estimate.tiles import extent
from mapper.grid.blocks import Block
from mapper.grid.tilegrid import pixel_size
from mapper.run.plan import plan_blocks, resolve_region

BBOX = "113.31,23.11,113.34,23.14"  # inside one block of Guangdong (5866_2262)
OCEAN = "115.0,15.0,115.1,15.1"  # South China Sea, no province
GPU_FIX = "run python -m benchmarks.gpu_seg --record on the GPU machine"


def mapper(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mapper.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip


def merc_tiles(block: Block) -> set[tuple[int, int]]:
    """Tiles of the block's pixels by mercantile: the block's box less half a z16 pixel on each side (a block's pixels
    are those whose centres lie inside its cell, so a tile it meets by less than half a pixel holds none of them)."""
    half = pixel_size(16) / 2
    w, s, e, n = block.bounds
    (x0, y0), (x1, y1) = mercantile.xy(w, s), mercantile.xy(e, n)
    sw, ne = mercantile.lnglat(x0 + half, y0 + half), mercantile.lnglat(x1 - half, y1 - half)
    return {(t.x, t.y) for t in mercantile.tiles(sw.lng, sw.lat, ne.lng, ne.lat, 16)}


def plan_of(blocks: list[Block], region_blocks: int | None = None) -> Plan:
    ix, iy = np.array([b.ix for b in blocks]), np.array([b.iy for b in blocks])
    return Plan("test", ix, iy, np.ones(len(blocks)), region_blocks or len(blocks))


@pytest.fixture(scope="module")
def config():
    return load_config([])


def test_tiles_of_blocks_match_mercantile():
    rng = np.random.default_rng(27)
    blocks = [Block(int(rng.integers(1500, 5700)), int(rng.integers(700, 3000))) for _ in range(40)]
    for block in blocks:  # one at a time: a block's own tiles
        assert extent([block.ix], [block.iy], 16).tile_requests == len(merc_tiles(block)), block
    # a 3 × 3 neighbourhood: each block's tiles summed, and the tiles of all of them once
    square = [Block(5866 + dx, 2262 + dy) for dx in range(3) for dy in range(3)]
    ext = extent([b.ix for b in square], [b.iy for b in square], 16)
    assert ext.tile_requests == sum(len(merc_tiles(b)) for b in square)
    assert ext.tiles == len(set().union(*(merc_tiles(b) for b in square))) < ext.tile_requests
    assert ext.pixels == sum(b.window(16).size for b in square)


def test_area_is_the_geodesic_area_of_the_block_polygons():
    blocks = [Block(5866, 2262), Block(5866, 1900), Block(6000, 2700), Block(5000, 2950)]
    geod = Geod(ellps="WGS84")
    for b in blocks:  # edges along parallels: densified, as pyproj takes edges as geodesics
        polygon = shapely.segmentize(b.polygon, 0.0005)
        expected = abs(geod.geometry_area_perimeter(polygon)[0])
        assert extent([b.ix], [b.iy], 16).area_m2 == pytest.approx(expected, rel=1e-6)


def test_a_province_is_planned_as_mapper_run_plans_it(config):
    region = resolve_region("Guangdong")
    plan = plan_region(region)
    assert plan.blocks == len(plan_blocks(region)) == 6662 and not plan.sampled
    sample = plan_region(region, 8)
    est = estimate(config, ["demo-a", "demo-b"], sample)
    assert (est.blocks, est.region_blocks) == (8, 6662)
    assert "--max-blocks 8" in est.figure("blocks").basis and "6,662" in est.figure("blocks").basis


def test_price_is_tiles_times_the_price_per_1000(tmp_path):
    cfg = tmp_path / "priced.yaml"
    cfg.write_text('sources:\n  paid:\n    kind: xyz\n    url: "http://127.0.0.1:9/{z}/{x}/{y}.png?key=SECRET"\n'
                   "    price_per_1000_tiles: 2.5\n"
                   '  unpriced:\n    kind: xyz\n    url: "http://127.0.0.1:9/{z}/{x}/{y}.png"\n')  # fmt: skip
    config = load_config([cfg])
    plan = plan_of([Block(5866, 2262), Block(5867, 2262)])
    est = estimate(config, ["paid", "unpriced", "demo-a"], plan)
    tiles = est.figure("tiles.paid").value
    assert tiles == len(merc_tiles(Block(5866, 2262)) | merc_tiles(Block(5867, 2262)))  # each tile once: the cache
    assert est.figure("price.paid").value == pytest.approx(tiles / 1000 * 2.5)
    unpriced = est.figure("price.unpriced")
    assert unpriced.value is None and "set sources.unpriced.price_per_1000_tiles" in unpriced.basis
    assert est.figure("price.demo-a").value == 0 and est.figure("price.demo-a").basis == "simulated world: free"
    fetch = est.figure("fetch.paid")
    assert fetch.value >= tiles / 281 and "rate-limited" in fetch.basis
    text = render(est) + json.dumps(est.to_dict())
    assert "SECRET" not in text and "127.0.0.1:9" not in text  # no URL (they may hold tokens)
    # the price changes no output: it stays out of the dumped config (a run's identity and saved config)
    assert "price_per_1000_tiles" not in json.dumps(config.model_dump(mode="json"))


def test_without_the_cache_each_block_fetches_its_own_tiles(tmp_path):
    cfg = tmp_path / "nocache.yaml"
    cfg.write_text('cache:\n  enabled: false\nsources:\n  paid:\n    kind: xyz\n    url: "http://127.0.0.1:9/{z}/{x}/{y}.png"\n')
    plan = plan_of([Block(5866, 2262), Block(5867, 2262)])
    est = estimate(load_config([cfg]), ["paid"], plan)
    assert est.figure("tiles.paid").value == sum(len(merc_tiles(b)) for b in (Block(5866, 2262), Block(5867, 2262)))


def test_storage_scales_with_pixels_and_time_keeps_fixed_costs_apart(config):
    south, north = Block(5866, 2262), Block(5866, 2700)  # 23° N and 45° N: a northern block has more rows
    a, b = (estimate(config, ["demo-a", "demo-b"], plan_of([blk])) for blk in (south, north))
    ratio = north.window(16).size / south.window(16).size
    assert b.figure("storage.mosaics").value / a.figure("storage.mosaics").value == pytest.approx(ratio)
    eight, twenty_four = (estimate(config, ["demo-a", "demo-b"], plan_of([south] * n, 6662)) for n in (8, 24))
    slope, _ = load_throughputs().machine()[1].slope()
    assert twenty_four.figure("time").value - eight.figure("time").value == pytest.approx(16 * slope)
    in_process = estimate(config, ["demo-a", "demo-b"], plan_of([south] * 8, 6662), executor="in_process")
    assert in_process.figure("time").value < eight.figure("time").value  # no Ray to start
    assert eight.figure("time").value == pytest.approx(275, abs=1)  # the recorded 8-block demo run it rests on


def test_gpus_give_no_invented_numbers(config):
    est = estimate(config, ["demo-a", "demo-b"], plan_of([Block(5866, 2262)]), gpus=2)
    gpu, time = est.figure("gpu_hours"), est.figure("time")
    assert gpu.value is None and gpu.missing == "no recorded GPU throughput" and GPU_FIX in gpu.basis
    assert time.value is None and GPU_FIX in time.basis
    cpu_only = estimate(config, ["demo-a", "demo-b"], plan_of([Block(5866, 2262)]))
    assert 0 < est.figure("cpu_hours").value < cpu_only.figure("cpu_hours").value
    assert cpu_only.figure("gpu_hours").value == 0


def test_an_unknown_source_names_the_fix(config):
    from mapper.config.models import ConfigError

    with pytest.raises(ConfigError, match=r"unknown source 'nope'.*--source"):
        estimate_sources(config, "nope")
    out = mapper("estimate", "--bbox", BBOX, "--source", "nope")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "unknown source 'nope'" in out.stderr and "--config" in out.stderr


def test_a_box_over_the_sea_names_the_fix():
    out = mapper("estimate", "--bbox", OCEAN)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert f"--bbox {OCEAN.replace('.0', '')}" in out.stderr and "over sea" in out.stderr
    assert "--bbox 113.2,23.0,113.4,23.2" in out.stderr


def test_json_gives_value_unit_and_basis_of_every_figure():
    out = mapper("estimate", "--bbox", BBOX, "--gpus", "1", "--json")
    assert out.returncode == 0, out.stderr
    est = json.loads(out.stdout)
    assert (est["blocks"], est["sources"], est["gpus"]) == (1, ["demo-a", "demo-b"], 1)
    for key in ("blocks", "area", "tiles.demo-a", "price.demo-b", "storage", "time", "cpu_hours", "gpu_hours"):
        figure = est["figures"][key]
        assert {"value", "unit", "basis"} <= set(figure) and figure["basis"], key
    assert est["figures"]["tiles.demo-a"]["value"] == len(merc_tiles(Block(5866, 2262)))
    assert est["figures"]["gpu_hours"]["value"] is None


def test_mapper_run_prints_the_estimate_and_keeps_it(tmp_path):
    """A dry run plans like a run: it prints the estimate of the blocks it planned and writes estimate.json."""
    root = tmp_path / "run"
    out = mapper("run", "--province", "Guangdong", "--max-blocks", "3", "--dry-run", "--in-process", "--out", root)
    assert out.returncode == 0, out.stderr
    assert "Estimate for Guangdong" in out.stderr and "each figure's basis" in out.stderr
    kept = json.loads((root / "estimate.json").read_text())
    alone = json.loads(mapper("estimate", "--province", "Guangdong", "--max-blocks", "3", "--in-process",
                              "--json").stdout)  # fmt: skip
    assert kept["blocks"] == alone["blocks"] == 3 and kept["region_blocks"] == 6662
    for key in ("tiles.demo-a", "area", "storage", "time"):  # the same sample: the same figures
        assert kept["figures"][key]["value"] == pytest.approx(alone["figures"][key]["value"])
    quiet = mapper("run", "--bbox", BBOX, "--dry-run", "--in-process", "-q", "--out", tmp_path / "quiet")
    assert quiet.returncode == 0 and "Estimate" not in quiet.stderr
    assert json.loads((tmp_path / "quiet" / "estimate.json").read_text())["blocks"] == 1


@pytest.mark.slow
def test_a_real_run_keeps_its_estimate(world_run):
    est = json.loads((world_run / "estimate.json").read_text())
    assert est["blocks"] == 1 and est["executor"] == "in_process"
    on_disk = sum(p.stat().st_size for p in world_run.rglob("*") if p.is_file() and p.name != "estimate.json")
    assert 0.2 < est["figures"]["storage"]["value"] / on_disk < 5  # the same order as what the run left
