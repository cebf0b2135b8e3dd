"""The fields stage of a run (`mapper fields RUN`): per-block piece labels on the final mask's grid, one fiboa
file and a GeoPackage per prefecture of fields stitched over block edges, a rerun that does nothing, scores on
the world, refusals before any work (no final masks, a corrupt field model), a failing block that does not stop
the run, and kill -9 then resume ending as an uninterrupted run. One 2-block run (two neighbouring blocks, so
fields are stitched across their edge) is made once for the module."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mapper.fields.polygons import block_fields, field_polygons, stitch
from mapper.fields.regions import label_regions
from mapper.fields.stage import imagery_order, read_block_fields, write_labels, write_pieces
from mapper.grid.blocks import Block
from mapper.grid.tilegrid import PixelWindow

BBOX = "114.31,22.81,114.36,22.84"  # 5886_2256 (the conftest world run's block) and its east neighbour
BLOCKS = ("5886_2256", "5887_2256")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def mapper(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mapper.cli", *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=timeout)  # fmt: skip


def in_process(*args):
    """The CLI in this process (no interpreter start, models and modules already imported)."""
    from click.testing import CliRunner

    from mapper.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def fields_tasks(root: Path) -> dict:
    with sqlite3.connect(root / "state.sqlite") as conn:
        rows = conn.execute("SELECT block_id, status, attempts, updated FROM tasks WHERE stage = 'fields'")
        return {b: (s, a, u) for b, s, a, u in rows}


# ------------------------------------------------------------------------------------------------ pieces
def test_stitched_fields_name_their_pieces():
    """`pieces` numbers pieces block after block: A's a1 (0) joins B's b1 (1); b2 (2) and C's piece (3) alone."""
    a = np.ones((10, 4), np.int32)
    a[9, 2:] = 0
    b = np.zeros((10, 4), np.int32)
    b[0:6, :2], b[6:10, :2] = 1, 2
    c = np.zeros((4, 4), np.int32)
    c[:, 0:2] = 1
    blocks = [block_fields(a, PixelWindow(16, 1000, 2000, 1004, 2010), "A"),
              block_fields(b, PixelWindow(16, 1004, 2000, 1008, 2010), "B"),
              block_fields(c, PixelWindow(16, 1000, 2010, 1004, 2014), "C")]  # fmt: skip
    fields = stitch(blocks)
    assert sorted(p.tolist() for p in fields["pieces"]) == [[0, 1], [2], [3]]
    for geom, pieces in zip(fields.geometry, fields["pieces"], strict=True):
        parts = np.concatenate([x.geometry for x in blocks])[pieces]
        assert geom.area == sum(p.area for p in parts)
    kept = field_polygons(blocks, min_area_ha=0.0)
    assert sorted(p.tolist() for p in kept["pieces"]) == [[0, 1], [2], [3]]
    assert len(field_polygons([], min_area_ha=0.0)["pieces"]) == 0


def test_fields_follow_the_imagery_the_cropland_came_from():
    assert imagery_order("Only B", ("a", "b")) == ("b", "a")
    assert imagery_order("Only A", ("a", "b")) == imagery_order("Merge", ("a", "b")) == ("a", "b")


def test_the_stage_registers_after_the_final_mask_outside_the_runs_identity():
    from mapper.pipelines.ray_executor import PoolSpec, pool_specs

    from mapper.config.models import RunConfig
    from mapper.run.plan import outcome_config
    from mapper.run.registry import active_stages, stage

    assert stage("fields").after == ("final",) and "fields" not in [s.name for s in active_stages({})]
    stages = active_stages({"fields": {"enabled": True}, "croptype": {"enabled": True}})
    assert {"croptype", "fields"} <= {s.name for s in stages}
    cpu = pool_specs(RunConfig(), stages, cpus=2.0, gpus=0.0)
    assert cpu["segment"] == PoolSpec(1, 1.0) and cpu["fields"] == PoolSpec(1, 0.1)  # as without fields
    assert sum(p.size * p.num_cpus for p in cpu.values()) <= 2.0  # everything fits: nothing waits for ever
    for n in (4.0, 8.0, 16.0, 64.0):
        assert sum(p.size * p.num_cpus for p in pool_specs(RunConfig(), stages, n, 0.0).values()) <= n + 1e-9
    assert pool_specs(RunConfig(), stages, 32.0, 2.0)["fields"] == PoolSpec(1, 1.0, 0.5)
    from mapper.config import load_config

    plain, fields = load_config(), load_config(overrides={"fields.enabled": True, "fields.model": "baseline"})
    assert outcome_config(plain) == outcome_config(fields)  # a run resumes with fields turned on


def test_block_files_give_back_the_block_fields(tmp_path):
    block = Block.parse(BLOCKS[0])
    window = block.window()
    labels = np.zeros(window.shape, np.int32)
    labels[0:40, 0:50] = 7  # on the north and west edges
    labels[100:180, -30:] = 3  # on the east edge
    labels[-20:, 500:560] = 9  # on the south edge, cut in two by a road
    labels[-20:, 530] = 0
    regions, n = label_regions(labels)
    bf = block_fields(regions, window, block.id)
    assert n == bf.n == 4
    write_labels(regions, (window.transform, "EPSG:3857"), tmp_path / "fields" / "blocks" / f"{block.id}.tif",
                 block.id, "test")  # fmt: skip
    write_pieces(bf, np.ones(n), tmp_path / "fields" / "blocks" / f"{block.id}.parquet")
    back = read_block_fields(tmp_path, block.id)
    assert back.window == window and back.n == n and np.array_equal(back.first, bf.first)
    assert all(np.array_equal(back.borders[k], bf.borders[k]) for k in bf.borders)
    assert all(g.equals_exact(h, 0) for g, h in zip(back.geometry, bf.geometry, strict=True))


# ------------------------------------------------------------------------------------------------ a run
@pytest.fixture(scope="module")
def run2(tmp_path_factory) -> Path:
    """Two neighbouring blocks mapped end to end (in-process, one torch thread), without fields."""
    root = tmp_path_factory.mktemp("fields_run")
    config = root / "one-thread.yaml"
    config.write_text("run:\n  torch_threads: 1\n")
    res = mapper("run", "--bbox", BBOX, "--source", "demo", "--config", config, "--in-process", "--out",
                 root / "run", "-q")  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    return root / "run"


def copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to, symlinks=True)
    return to


@pytest.fixture(scope="module")
def fielded(run2, tmp_path_factory) -> Path:
    """run2 with its fields (the baseline delineator): the uninterrupted reference."""
    root = copy_run(run2, tmp_path_factory.mktemp("fielded") / "run")
    res = mapper("fields", root, "--model", "baseline", "--in-process", "-q")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "fields (" in res.stdout and "fields.parquet" in res.stdout
    return root


@pytest.mark.slow
def test_piece_labels_lie_on_the_final_grid_inside_the_cropland(fielded):
    import pyarrow.parquet as pq
    import rasterio
    import shapely

    for block_id in BLOCKS:
        with rasterio.open(fielded / "final" / f"{block_id}.tif") as f, \
                rasterio.open(fielded / "fields" / "blocks" / f"{block_id}.tif") as src:  # fmt: skip
            assert (src.transform, src.crs, src.shape) == (f.transform, f.crs, f.shape)
            assert src.dtypes[0] == "uint32" and src.compression.name.lower() == "deflate"
            final, labels = f.read(1), src.read(1)
        assert labels.any() and not labels[final != 1].any()
        assert np.array_equal(label_regions(labels)[0], labels)  # block_fields' 4-connected numbering
        table = pq.read_table(fielded / "fields" / "blocks" / f"{block_id}.parquet").to_pandas()
        assert table["label"].tolist() == list(range(1, labels.max() + 1))
        geoms = shapely.from_wkb(table["geometry"].to_numpy())
        counts = np.bincount(labels.ravel(), minlength=len(table) + 1)[1:]
        assert np.array_equal(shapely.area(geoms), counts)  # label i + 1 is piece i, pixel for pixel
    result = fields_tasks(fielded)
    assert {b: s for b, (s, _, _) in result.items()} == dict.fromkeys(BLOCKS, "done")


@pytest.mark.slow
def test_fields_parquet_is_fiboa_with_unique_ids_and_a_geopackage_per_prefecture(fielded):
    import geopandas as gpd
    import pandas as pd
    from test_fields_fiboa import fiboa_validate

    path = fielded / "fields" / "fields.parquet"
    res = fiboa_validate(path)
    assert res.returncode == 0, res.stdout + res.stderr
    fields = gpd.read_parquet(path)
    summary = json.loads((fielded / "fields" / "summary.json").read_text())
    assert len(fields) == summary["fields"] > 100 and fields["id"].is_unique and fields.crs.to_epsg() == 4326
    assert summary["blocks"] == 2 and summary["model"] == "baseline" and summary["min_area_ha"] == 0.02
    assert summary["fields_across_blocks"] >= 1  # stitched over the shared edge
    assert (fields["determination:details"].str.contains("baseline")).all()
    gpkgs = sorted((fielded / "fields").glob("*.gpkg"))
    assert gpkgs and [p.name for p in gpkgs] == sorted(Path(p).name for p in summary["outputs"]["geopackages"])
    parts = pd.concat([gpd.read_file(p, layer="fields") for p in gpkgs])
    assert parts["id"].is_unique and set(parts["id"]) <= set(fields["id"])
    assert len(parts) >= 0.99 * len(fields)  # fields outside the bbox's prefectures only are left out
    assert summary["area_ha"] == pytest.approx(fields["metrics:area"].sum() / 1e4, rel=0.02)


@pytest.mark.slow
def test_a_rerun_does_nothing_and_gives_the_same_fields(fielded):
    import pyarrow.parquet as pq

    tifs = {p.name: p.stat().st_mtime_ns for p in (fielded / "fields" / "blocks").iterdir()}
    before, table = fields_tasks(fielded), pq.read_table(fielded / "fields" / "fields.parquet")
    cropland_outputs = [fielded / "map" / "cropland.vrt", fielded / "report" / "blocks.png"]
    stamps = [p.stat().st_mtime_ns for p in cropland_outputs]
    res = in_process("fields", fielded, "--in-process", "-q")  # the model: the one the blocks were made with
    assert res.exit_code == 0, res.output
    assert [p.stat().st_mtime_ns for p in cropland_outputs] == stamps  # no final mask changed: kept, not rebuilt
    assert fields_tasks(fielded) == before
    assert {p.name: p.stat().st_mtime_ns for p in (fielded / "fields" / "blocks").iterdir()} == tifs
    assert pq.read_table(fielded / "fields" / "fields.parquet").equals(table)
    # another model is not mixed in silently
    res = in_process("fields", fielded, "--model", "fields-default", "--in-process", "-q")
    assert res.exit_code == 2 and "fields-default" in res.output and "--model baseline" in res.output


@pytest.mark.slow
def test_evaluate_scores_the_fields_against_the_worlds(fielded):
    res = mapper("fields", "evaluate", fielded, "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert out["blocks"] == 2 and out["fields"] > 100 and out["true_fields"] > 100 and out["min_pixels"] == 40
    for key in ("precision", "recall", "f1", "extent_iou", "boundary_f", "median_area_error"):
        assert 0 <= out[key] <= 1, key
    assert out["extent_iou"] > 0.8  # fields fill the final cropland, which matches the world's closely
    assert json.loads((fielded / "fields" / "evaluation.json").read_text())["f1"] == out["f1"]


@pytest.mark.slow
def test_evaluate_prints_the_scores_and_refuses_a_run_without_field_truth(fielded, tmp_path, monkeypatch):
    from click.testing import CliRunner

    import mapper.fields.outputs as outputs
    from mapper.cli import cli

    saved = json.loads((fielded / "fields" / "evaluation.json").read_text())
    with monkeypatch.context() as m:  # the printing only: the scores are the test above's
        m.setattr(outputs, "evaluate_run", lambda root, min_pixels: saved)
        res = CliRunner().invoke(cli, ["fields", "evaluate", str(fielded)])
    assert res.exit_code == 0 and "F1 " in res.output and "boundary F (1 px)" in res.output, res.output
    web = tmp_path / "web"  # the run as if mapped from web imagery: no truth to score against
    web.mkdir()
    for name in ("config.yaml", "state.sqlite"):
        shutil.copy(fielded / name, web / name)
    identity = json.loads((fielded / "run.json").read_text())
    (web / "run.json").write_text(json.dumps({**identity, "sources": ["mapbox", "google"]}))
    res = CliRunner().invoke(cli, ["fields", "evaluate", str(web)])
    assert res.exit_code == 2 and "no field truth" in res.output and "mapbox" in res.output, res.output
    assert not (web / "fields").exists()


@pytest.mark.slow
def test_fields_stage_take_the_crops_of_their_largest_piece(fielded, tmp_path):
    """What the crop-type stage hands over (croptype/fields/<block>.parquet): a field takes the crop of its largest
    classified piece; fields without one are unclassified (code 0); the file stays valid fiboa."""
    import geopandas as gpd
    import pandas as pd
    import pyarrow.parquet as pq
    import shapely
    from test_fields_fiboa import fiboa_validate

    from mapper.fields.outputs import write_fields_outputs
    from mapper.fields.paths import field_crops_path

    root = copy_run(fielded, tmp_path / "run")
    codes = {BLOCKS[0]: (3, "maize"), BLOCKS[1]: (6, "soybean")}
    for block_id, (code, name) in codes.items():
        n = pq.read_metadata(root / "fields" / "blocks" / f"{block_id}.parquet").num_rows
        labels = np.arange(1, n + 1)
        crop = np.where(labels % 10 == 0, 0, code) if block_id == BLOCKS[1] else np.full(n, code)
        path = field_crops_path(root, block_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"label": labels, "crop_code": crop, "crop": np.where(crop > 0, name, "unclassified"),
                      "crop_prob": 0.9, "area_m2": 1.0}).to_parquet(path)  # fmt: skip
    write_fields_outputs(root)
    fields = gpd.read_parquet(root / "fields" / "fields.parquet")
    assert set(fields["crop:code"]) == {"0", "3", "6"}
    res = fiboa_validate(root / "fields" / "fields.parquet")
    assert res.returncode == 0, res.stdout + res.stderr
    boxes = [Block.parse(b).polygon for b in BLOCKS]
    for geom, code in zip(fields.geometry, fields["crop:code"], strict=True):
        share = [shapely.area(shapely.intersection(geom, box)) for box in boxes]
        if code != "0":
            assert code == str(codes[BLOCKS[int(np.argmax(share))]][0])
    assert (fields["crop:name_en"][fields["crop:code"] == "0"] == "unclassified").all()
    gpkg = pd.concat([gpd.read_file(p, layer="fields") for p in (root / "fields").glob("*.gpkg")])
    assert set(gpkg["crop_code"]) <= {"0", "3", "6"}


# ------------------------------------------------------------------------------------------------ refusals
@pytest.mark.slow
def test_a_run_without_final_masks_is_refused_naming_mapper_run(run2, tmp_path):
    root = copy_run(run2, tmp_path / "run")
    shutil.rmtree(root / "final")
    res = mapper("fields", root, "--model", "baseline", "--in-process", "-q")
    assert res.returncode == 2 and "no final cropland masks" in res.stderr and "mapper run --resume" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (root / "fields").exists() and not fields_tasks(root)


@pytest.fixture
def tiny_field_checkpoint(tmp_path) -> Path:
    from mapper.fields.model import CLASSES, KIND, build_model
    from mapper.models.checkpoint import save_checkpoint

    arch = {"name": "unet", "width": 4, "depth": 2}
    meta = {"kind": KIND, "arch": arch, "classes": CLASSES,
            "normalisation": {"mean": [0.5] * 3, "std": [0.25] * 3}, "input": {"size": 64, "overlap": 16}}  # fmt: skip
    return save_checkpoint(tmp_path / "fields-tiny", build_model(arch), meta)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["flipped weight byte", "bad checkpoint.json", "another kind"])
def test_a_corrupt_field_model_is_refused_before_any_block(run2, tmp_path, tiny_field_checkpoint, damage):
    from mapper.models.checkpoint import META_FILE, WEIGHTS_FILE, CheckpointError
    from mapper.models.registry import resolve_checkpoint

    ckpt = tiny_field_checkpoint
    if damage == "flipped weight byte":
        data = bytearray((ckpt / WEIGHTS_FILE).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (ckpt / WEIGHTS_FILE).write_bytes(bytes(data))
    elif damage == "bad checkpoint.json":
        (ckpt / META_FILE).write_text("{not json")
    else:
        shutil.rmtree(ckpt)
        shutil.copytree(resolve_checkpoint("iqa-default"), ckpt)
    root = copy_run(run2, tmp_path / "run")
    res = in_process("fields", root, "--model", ckpt, "--in-process", "-q")  # `mapper` prints it as one line, exit 2
    message = str(res.exception)
    assert isinstance(res.exception, CheckpointError), res.output[-2000:]
    assert message.startswith("field model:") and str(ckpt) in message and "--model baseline" in message
    assert not (root / "fields").exists() and not fields_tasks(root)


# ------------------------------------------------------------------------------------------------ failures
@pytest.mark.slow
def test_a_block_whose_delineation_raises_is_recorded_failed_and_the_run_goes_on(run2, tmp_path, monkeypatch):
    import geopandas as gpd
    import rasterio
    from click.testing import CliRunner

    import mapper.fields.model as field_model
    from mapper.cli import cli

    root = copy_run(run2, tmp_path / "run")
    with rasterio.open(root / "final" / f"{BLOCKS[1]}.tif") as src:
        bad_cropland = int((src.read(1) == 1).sum())
    real = field_model.load_field_model

    class Breaks:
        name = "baseline"

        def __init__(self):
            self.inner = real("baseline")

        def delineate(self, rgb, cropland, valid=None):
            if int(np.count_nonzero(cropland)) == bad_cropland:
                raise RuntimeError("delineation exploded")
            return self.inner.delineate(rgb, cropland, valid)

    monkeypatch.setattr(field_model, "load_field_model", lambda spec, device=None: Breaks())
    res = CliRunner().invoke(cli, ["fields", str(root), "--model", "baseline", "--in-process", "-q"])
    assert res.exit_code == 1, res.output
    assert f"1 block(s) failed ({BLOCKS[1]})" in res.output and "--retry-failed" in res.output
    tasks = fields_tasks(root)
    assert tasks[BLOCKS[0]][0] == "done" and tasks[BLOCKS[1]][:2] == ("failed", 3)
    with sqlite3.connect(root / "state.sqlite") as conn:
        (error,) = conn.execute("SELECT error FROM tasks WHERE stage = 'fields' AND block_id = ?",
                                (BLOCKS[1],)).fetchone()  # fmt: skip
    assert "delineation exploded" in error
    fields = gpd.read_parquet(root / "fields" / "fields.parquet")
    assert len(fields) > 0 and json.loads((root / "fields" / "summary.json").read_text())["blocks"] == 1


@pytest.mark.slow
def test_killed_with_minus_9_then_resumed_ends_as_an_uninterrupted_run(run2, fielded, tmp_path):
    import geopandas as gpd

    root = copy_run(run2, tmp_path / "run")
    cmd = [sys.executable, "-m", "mapper.cli", "fields", str(root), "--model", "baseline", "--in-process", "-q"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pieces = [root / "fields" / "blocks" / f"{b}.parquet" for b in BLOCKS]
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            if any(p.exists() for p in pieces):
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert sum(p.exists() for p in pieces) == 1, "the kill should land between the two blocks"
    assert not (root / "fields" / "fields.parquet").exists()
    res = mapper("fields", root, "--model", "baseline", "--in-process", "-q")
    assert res.returncode == 0, res.stderr[-3000:]
    assert {b: s for b, (s, _, _) in fields_tasks(root).items()} == dict.fromkeys(BLOCKS, "done")
    a = gpd.read_parquet(fielded / "fields" / "fields.parquet").sort_values("id", ignore_index=True)
    b = gpd.read_parquet(root / "fields" / "fields.parquet").sort_values("id", ignore_index=True)
    assert b["id"].is_unique and a["id"].tolist() == b["id"].tolist()
    assert a.geometry.geom_equals_exact(b.geometry, 0).all()
