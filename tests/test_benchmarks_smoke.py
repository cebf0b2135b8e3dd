"""Smoke test of benchmarks/: every benchmark runs once on tiny inputs, and the report is written.

This keeps the benchmark code from rotting; it measures nothing.
"""

from __future__ import annotations

import argparse

import pytest

# benchmarks/ is a top-level folder of the repository (pytest's `pythonpath = ["."]` makes it importable).
from benchmarks import fetch_loopback, iqa_features, mosaic_vs_gdal, regionprops, run, world_render
from benchmarks.common import render_tile_set, window_keys
from mapper.grid.blocks import Block
from mapper.grid.tilegrid import PixelWindow
from mapper.imagery.mosaic import mosaic_window
from mapper.world.source import WorldTileSource

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny() -> mosaic_vs_gdal.Case:
    """A 300 × 300 px window cut mid-tile from a Guangdong block: 2 × 2 or so tiles."""
    w = Block.containing(113.3, 23.1).window(16)
    return mosaic_vs_gdal.Case("tiny", PixelWindow(16, w.col0 + 100, w.row0 + 100, w.col0 + 400, w.row0 + 400))


@pytest.fixture(scope="module")
def source():
    return WorldTileSource("b", seed=0, rendering="b")


def test_mosaic_vs_gdal_runs(tiny, source, tmp_path):
    rows = []
    for fmt in ("png", "jpeg"):
        rows += mosaic_vs_gdal.run([tiny], source, tmp_path, repeats=1, fmt=fmt, workers=(1, 2), log=lambda *a: None)
    assert [r["fmt"] for r in rows] == ["png", "jpeg"]
    for row in rows:
        for key in ("mapper_1t_ms", "mapper_2t_ms", "gdal_ms", "gdal_mtw_ms", "ratio_2t", "ratio_2t_vs_gdal_mtw"):
            assert row[key] > 0
    assert rows[0]["max_diff"] == 0  # PNG: identical pixels

    profile = mosaic_vs_gdal.profile_mapper(tiny, tmp_path, "png", repeats=1)
    assert set(profile) >= {"imdecode_ms", "write_ms", "place_ms"}
    writes = mosaic_vs_gdal.write_options(tiny, tmp_path, "png", repeats=1)
    assert len(writes) == len(mosaic_vs_gdal.WRITE_OPTIONS) and all(w["size_mib"] > 0 for w in writes)


def test_world_render_runs(tiny):
    rows = world_render.run(tiny.window, "tiny", renderings=("a",), repeats=1, tiles_per_repeat=2, log=lambda *a: None)
    assert rows[0]["tiles_per_s"] > 0 and rows[0]["rendering"] == "a"


@pytest.mark.network
def test_fetch_loopback_runs(tiny, source, tmp_path):
    keys = window_keys(tiny.window)
    root = render_tile_set(source, keys, tmp_path / "png")
    rows = fetch_loopback.run(root, keys, keys[:2], concurrencies=(1, 2), repeats=1, log=lambda *a: None)
    assert [(r["server"], r["concurrency"]) for r in rows] == [("static", 1), ("static", 2), ("world", 1), ("world", 2)]
    assert all(r["tiles_per_s"] > 0 and r["client"] == "HttpTileSource" for r in rows)


def test_iqa_features_runs(tiny, source):
    mosaic = mosaic_window(source, tiny.window)
    rows = iqa_features.run([("tiny", mosaic)], repeats=1, log=lambda *a: None)
    assert rows[0]["case"] == "tiny" and rows[0]["pixels"] == 300 * 300
    assert all(rows[0][k] > 0 for k in ("mapper_ms", "skimage_ms", "ratio", "ratio_sharpness", "ratio_colour"))
    assert rows[0]["sharpness_rel_diff"] < 1e-6 and rows[0]["sl_abs_diff"] == 0
    lines = run.report(
        {"iqa_features": rows}, run.machine_info(), argparse.Namespace(repeats=1), "0 / 0 / 0", "0 / 0 / 0", (1,)
    )
    assert any(line.startswith("### iqa_features") for line in lines) and any("| tiny |" in x for x in lines)


def test_regionprops_runs(tiny):
    rows = regionprops.run(regionprops.default_cases(tiny.window), repeats=1, log=lambda *a: None)
    assert [r["valid_fraction"] < 1 for r in rows] == [False, True]
    assert all(r["components"] > 0 and r["ratio"] > 0 and r["max_rel_diff"] < 1e-12 for r in rows)
    lines = run.report(
        {"regionprops": rows}, run.machine_info(), argparse.Namespace(repeats=1), "0 / 0 / 0", "0 / 0 / 0", (1,)
    )
    assert any(line.startswith("### regionprops") for line in lines) and any("| synthetic |" in x for x in lines)


def test_report_is_appended_not_overwritten(tiny, tmp_path):
    info = run.machine_info()
    assert info["cores"] and info["gdal"]
    results = {
        "world_render": [{"case": "tiny", "rendering": "a", "tiles": 2, "tiles_per_s": 50.0, "ms_per_tile": 20.0}],
        "timings": {"world_render": 1.0},
    }
    lines = run.report(results, info, argparse.Namespace(repeats=1), "0 / 0 / 0", "0 / 0 / 0", (1, 4))
    path = tmp_path / "RESULTS.md"
    run.append_results(lines, path)
    run.append_results(lines, path)
    text = path.read_text()
    assert text.startswith("# Benchmark results")
    assert text.count("### world_render") == 2 and "| tiny | a | 2 | 50.0 | 20.0 |" in text


def test_terrain_runs(tmp_path):
    from benchmarks import terrain

    rows = terrain.run(terrain.default_cases(tmp_path, n=121), repeats=1, work=tmp_path, log=lambda *a: None)
    assert [r["shape"] for r in rows] == ["121 × 121 int16", "121 × 121 int16"]
    assert all(r["gdaldem_ms"] > 0 and r["ratio"] > 0 and r["max_diff"] <= 1e-4 for r in rows)
    assert all(r["same_nodata"] == "yes" for r in rows)
    lines = run.report({"terrain": rows}, run.machine_info(), argparse.Namespace(repeats=1), "0", "0", (1,))
    assert any(line.startswith("### terrain") for line in lines) and any("| world tile |" in x for x in lines)


def test_models_cpu_runs():
    import torch

    from benchmarks import models_cpu

    threads = torch.get_num_threads()
    rows = models_cpu.run(quick=True, repeats=1, threads=(1,), log=lambda *a: None)
    assert torch.get_num_threads() == threads  # restored
    predict, naive = rows[:2]
    assert predict["items"] == naive["items"] == 4 and predict["ratio"] > 0 and predict["s_per_block"] > 0
    assert predict["max_diff"] < 1e-4  # the same windows, the same blending
    assert {(r["model"], r["batch"]) for r in rows[2:] if r["unit"] != "block"} == {
        ("seg-m2f-tiny", 1), ("seg-m2f-tiny", 2), ("iqa-default", 1), ("iqa-default", 4),
    }  # fmt: skip
    assert all(r["per_s"] > 0 and r["threads"] >= 1 for r in rows)
    lines = run.report(
        {"models_cpu": rows}, run.machine_info(), argparse.Namespace(repeats=1), "0 / 0 / 0", "0 / 0 / 0", (1,)
    )
    assert any(line.startswith("### models_cpu") for line in lines)
    assert any("| Segmenter.predict, cross-block batches |" in x for x in lines)


@pytest.fixture
def one_thread():
    """One torch thread: on a loaded 2-core machine, two threads make small CPU passes many times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_gpu_seg_runs_on_cpu(one_thread, tmp_path, capsys):
    from benchmarks import gpu_seg

    argv = ["--device", "cpu", "--variants", "seg-m2f-tiny", "--batch-sizes", "2", "--iters", "1"]
    assert gpu_seg.main([*argv, "--record"], results=tmp_path / "RESULTS.md") == 0
    text = (tmp_path / "RESULTS.md").read_text()
    assert "gpu_seg (inference) on the CPU" in text
    assert "| seg-m2f-tiny | inference, eager | float32 | 2 | 256 |" in text
    assert "n/a" in text  # no peak on a CPU
    rows, info = gpu_seg.run(gpu_seg.parse_args([*argv, "--train"]), log=lambda *a: None)
    assert info["gpu"] == "none (CPU)" and rows[0]["mode"] == "training step" and not rows[0]["note"]
    assert rows[0]["items_per_s"] > 0 and rows[0]["gflop_per_item"] > 0
    capsys.readouterr()


def test_gpu_seg_peak_table():
    from benchmarks import gpu_seg

    assert gpu_seg.peak_tflops("NVIDIA H200") == gpu_seg.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu_seg.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0 and gpu_seg.peak_tflops("NVIDIA L4") == 121.0
    assert gpu_seg.peak_tflops("NVIDIA L40S") == 366.5 and gpu_seg.peak_tflops("Some GPU") is None
    assert gpu_seg.windows_per_block(512, 128) == 42 and gpu_seg.windows_per_block(256, 64) == 156


def test_pipeline_benchmark_runs(tmp_path):
    from benchmarks import pipeline

    dry = pipeline.bench_dry(False, tmp_path, region=("--province", "Macao"))
    assert dry["blocks"] == dry["finished"] > 0 and dry["driver_rss_mib"] > 0 and dry["planning_s"] is not None
    e2e = [{"executor": e, "blocks": 1, "wall_s": w, "driver_s": w - 1, "blocks_per_min": 60 / w,
            "driver_rss_mib": 500.0, "segment_s": 5.0, "segment_busy": 0.5} for e, w in (("in-process", 20.0),
                                                                                        ("ray", 30.0))]  # fmt: skip
    lines = pipeline.report({"dry": [dry], "e2e": e2e}, run.machine_info())
    assert any("Ray / in-process wall time: 1.50" in line for line in lines)


def test_readme_numbers_area_step_and_report(tmp_path):
    """The README's georeference figures, computed; a work folder inside the repository is refused."""
    from benchmarks import readme_numbers

    area = readme_numbers.step_area()
    lo, hi = area["spherical_error_0_30"]
    assert 0.002 < lo < hi < 0.008, "the spherical cos² rule is a fraction of a percent off the ellipsoid"
    assert 1.15 < area["guangdong_mercator_over_true"] < 1.25
    state = {"started": "now", "load_before": 0, "load_after": 0}
    lines = readme_numbers.report({"area": area}, {"cpu": "x", "cores": 2, "ram": "1 GB"}, state)
    assert any("overstates Guangdong" in line for line in lines)
    with pytest.raises(SystemExit):
        readme_numbers.main(["--out", str(readme_numbers.REPO / "runs-inside"), "--only", "area"])


def test_readme_numbers_decide_figures_come_from_the_evaluate_report():
    """The README's decision figures (0.956, 0.946) are what the decide step reads from `decide evaluate --json`."""
    import json

    from benchmarks import readme_numbers

    saved = json.loads((readme_numbers.REPO / "benchmarks" / "decide_heldout_seed1.json").read_text())
    numbers = readme_numbers.decide_numbers(saved)
    assert (numbers["blocks"], numbers["rows"], numbers["noise_n"]) == (250, 500, 8)
    line = readme_numbers._decide_lines(numbers)[0]
    assert "**0.956** over 500" in line and "**0.946**" in line and "0.804 (A alone)" in line


def test_serve_tiles_agree_with_gdals_warper(world_run):
    """benchmarks.serve_tiles on the test run: mapper's final-cropland tiles equal GDAL's warper at z16 and
    agree on ≥ 98 % of the pixels of every lower zoom (nearest neighbour picks differ on downsampled edges)."""
    from benchmarks import serve_tiles

    rows = serve_tiles.measure(world_run, per_zoom=2, repeats=1)
    assert [r["zoom"] for r in rows] == list(serve_tiles.ZOOMS) and all(r["tiles"] >= 1 for r in rows)
    assert rows[0]["agree_min"] == 1.0
    assert all(r["agree_min"] >= 0.98 for r in rows)
