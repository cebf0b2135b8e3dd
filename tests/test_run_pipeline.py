"""`mapper run` end to end on the simulated world: the outputs, kill -9 and resume, and the loss of a Ray node.

One uninterrupted in-process run is the reference; the interrupted-and-resumed run and the Ray run on a
simulated multi-node cluster must end with the same outputs. Torch runs one thread everywhere here
(run.torch_threads: 1): the last bits of a float reduction depend on the thread count, and equality is
asserted bit for bit.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ARGS = ["--province", "Guangdong", "--source", "demo", "--max-blocks", "2"]
ENV = dict(os.environ)
TASKS = 2 * (2 * 3 + 3)  # blocks × (sources × source stages + block stages)


def mapper(*args, check=True, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mapper.cli", *map(str, args)]
    out = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900, **kw)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


@pytest.fixture(scope="module")
def one_thread(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "one-thread.yaml"
    path.write_text("run:\n  torch_threads: 1\n")
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, one_thread) -> Path:
    root = tmp_path_factory.mktemp("reference") / "run"
    mapper("run", *ARGS, "--config", one_thread, "--in-process", "--out", root, "-q")
    return root


def _done_tasks(root: Path) -> dict:
    with sqlite3.connect(root / "state.sqlite") as conn:
        rows = conn.execute("SELECT block_id, source, stage, attempts, updated FROM tasks WHERE status = 'done'")
        return {(b, s, st): (a, u) for b, s, st, a, u in rows}


def assert_same_outputs(a: Path, b: Path) -> None:
    """Final masks bit-equal; block table, areas and polygons equal (timings and paths aside)."""
    import geopandas as gpd
    import pandas as pd
    import rasterio

    finals = sorted(p.name for p in (a / "final").glob("*.tif"))
    assert finals and finals == sorted(p.name for p in (b / "final").glob("*.tif"))
    for name in finals:
        with rasterio.open(a / "final" / name) as x, rasterio.open(b / "final" / name) as y:
            assert x.transform == y.transform
            assert np.array_equal(x.read(), y.read()), name
    pd.testing.assert_frame_equal(gpd.read_parquet(a / "blocks.parquet"), gpd.read_parquet(b / "blocks.parquet"))
    assert (a / "area.csv").read_text() == (b / "area.csv").read_text()
    gpkgs = sorted(p.name for p in (a / "polygons").glob("*.gpkg"))
    assert gpkgs == sorted(p.name for p in (b / "polygons").glob("*.gpkg"))
    for name in gpkgs:
        pa, pb = gpd.read_file(a / "polygons" / name), gpd.read_file(b / "polygons" / name)
        pd.testing.assert_frame_equal(pa.drop(columns="geometry"), pb.drop(columns="geometry"))
        assert pa.geometry.geom_equals_exact(pb.geometry, 0).all()


def test_a_run_leaves_a_map_polygons_table_areas_and_pngs(reference):
    import geopandas as gpd
    import pandas as pd
    import rasterio

    summary = json.loads((reference / "summary.json").read_text())
    assert (summary["blocks"], summary["finished"], summary["failed"]) == (2, 2, 0)
    table = gpd.read_parquet(reference / "blocks.parquet")
    assert list(table["status"]) == ["done", "done"] and table.crs.to_epsg() == 4326
    assert set(table["decision"]) <= {"Neither", "Only A", "Only B", "Merge"}
    assert {"a_p_TP", "b_pred_semantic", "p_Merge", "cropland_m2", "slope_median_deg"} <= set(table.columns)
    with rasterio.open(reference / "map" / "cropland.vrt") as vrt:
        assert vrt.crs.to_epsg() == 3857 and vrt.nodata == 255
        for block_id in table["block_id"]:
            with rasterio.open(reference / "final" / f"{block_id}.tif") as blk:
                assert blk.overviews(1), "zoomed-out views of the map read the block COGs' overviews"
                window = rasterio.windows.from_bounds(*blk.bounds, transform=vrt.transform)
                assert np.array_equal(vrt.read(1, window=window.round_offsets().round_lengths()), blk.read(1))
    area = pd.read_csv(reference / "area.csv")
    (row,) = area.to_dict("records")
    assert row["province"] == "Guangdong" and row["estimate"]  # a 2-block sample: an estimate, labelled so
    assert row["statistic_source"].startswith("simulated world") and row["pcs"] > 0
    cropland = table["cropland_m2"].sum() / 1e4
    assert row["cropland_ha_in_mapped_blocks"] == pytest.approx(cropland, rel=1e-9)
    polygons = pd.concat([gpd.read_file(p) for p in (reference / "polygons").glob("*.gpkg")])
    assert polygons["area_m2"].sum() / 1e4 == pytest.approx(cropland, rel=1e-6)
    for png in ("area_fraction.png", "map_preview.png", "blocks.png"):
        assert (reference / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "planned 2 blocks" in (reference / "run.log").read_text()


def test_kill_9_at_a_random_moment_then_resume_redoes_nothing_and_ends_identical(reference, one_thread, tmp_path):
    root = tmp_path / "run"
    cmd = [sys.executable, "-m", "mapper.cli", "run", *ARGS, "--config", str(one_thread), "--in-process", "--out",
           str(root), "-q"]  # fmt: skip
    kill_after = random.Random(os.environ.get("PYTEST_SEED", "mapper")).randint(1, TASKS - 2)
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            if (root / "run.json").exists() and len(_done_tasks(root)) >= kill_after:  # run.json: the schema is there
                break
            time.sleep(0.05)
        time.sleep(random.Random(kill_after).random())  # somewhere inside the next task
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    before = _done_tasks(root)
    assert 0 < len(before) < TASKS, "the kill should land mid-run"
    mapper("run", "--resume", root, "--in-process", "-q")
    after = _done_tasks(root)
    assert len(after) == TASKS
    assert all(after[k] == v for k, v in before.items()), "a task finished before the kill was run again"
    assert not list(root.rglob(".*.tmp")), "a half-written file was left behind"
    assert_same_outputs(reference, root)


def test_resume_with_other_options_is_refused_naming_the_difference(reference, tmp_path):
    out = mapper("run", "--resume", reference, "--world-seed", "1", "--in-process", check=False)
    assert out.returncode == 2
    assert "world_seed: 0 in the run directory, 1 now" in out.stderr


def test_losing_a_ray_node_mid_run_loses_nothing(reference, one_thread, tmp_path):
    import ray
    from mapper.pipelines.ray_executor import RayExecutor
    from ray.cluster_utils import Cluster

    from mapper.config import load_config
    from mapper.run.plan import resolve_region
    from mapper.run.session import RunRequest, run

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    workers = [cluster.add_node(num_cpus=2) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    root = tmp_path / "run"
    removed = []
    try:
        executors = []

        def factory(ctx):
            executors.append(RayExecutor(ctx))
            return executors[-1]

        def remove_segment_node():
            """When the first mask is done, take away the node running the segmentation actor."""
            while not removed:
                if (root / "run.json").exists() and any(k[2] == "segment" for k in _done_tasks(root)):
                    node_id = ray.get(executors[0].pools["segment"][0].node_id.remote())
                    node = next((w for w in workers if w.node_id == node_id), None)
                    if node is None:  # it runs on the head: take away a worker node anyway
                        node = workers[0]
                    cluster.remove_node(node)
                    removed.append(node_id)
                time.sleep(0.1)

        watcher = threading.Thread(target=remove_segment_node, daemon=True)
        watcher.start()
        region = resolve_region(province="Guangdong")
        request = RunRequest(load_config([one_thread]), region, "demo", out=root, max_blocks=2, quiet=True)
        summary = run(request, factory)
        watcher.join(timeout=5)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert removed, "the run finished before a node could be removed"
    assert (summary["finished"], summary["failed"]) == (2, 0)
    assert_same_outputs(reference, root)
