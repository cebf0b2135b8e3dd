"""`mapper run` on bad input: each fails before any work, naming the problem; a block without imagery is
mapped as no-data and the run goes on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
from affine import Affine

BBOX = "113.31,23.11,113.34,23.14"  # inside one block of Guangdong (5866_2262)


def mapper(*args, env=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "mapper.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip


def test_a_missing_token_fails_before_any_work(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MAPBOX_ACCESS_TOKEN"}
    out = subprocess.run([sys.executable, "-m", "mapper.cli", "run", "--bbox", BBOX, "--source", "web", "--out",
                          str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert out.returncode == 2 and "MAPBOX_ACCESS_TOKEN" in out.stderr
    assert not (tmp_path / "run").exists()


def test_a_config_error_names_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run:\n  max_attempt: 3\n")
    out = mapper("run", "--bbox", BBOX, "--config", bad, "--out", tmp_path / "run")
    assert out.returncode == 2 and "run.max_attempt" in out.stderr
    assert not (tmp_path / "run").exists()


def test_an_unwritable_output_directory_is_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = mapper("run", "--bbox", BBOX, "--in-process", "--out", blocker / "run")
    assert out.returncode == 2 and "cannot write the run directory" in out.stderr


def test_an_unreachable_ray_address_fails_at_once(tmp_path):
    out = mapper("run", "--bbox", BBOX, "--address", "127.0.0.1:1", "--out", tmp_path / "run")
    assert out.returncode == 2 and "cannot reach the Ray cluster" in out.stderr
    assert not (tmp_path / "run").exists()


def test_a_block_without_any_imagery_is_mapped_as_nodata(tmp_path):
    """Two sources with no imagery over the block: IQA says Nodata, the final map is no-data, nothing fails."""
    far = tmp_path / "far.tif"
    with rasterio.open(far, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8", crs="EPSG:4326",
                       transform=Affine(0.01, 0, 0, 0, -0.01, 1)) as dst:  # fmt: skip
        dst.write(np.full((3, 64, 64), 100, np.uint8))
    config = tmp_path / "far.yaml"
    config.write_text(f"sources:\n  far-a:\n    kind: raster\n    paths: [{far}]\n"
                      f"  far-b:\n    kind: raster\n    paths: [{far}]\n")  # fmt: skip
    root = tmp_path / "run"
    out = mapper("run", "--bbox", BBOX, "--source", "far-a,far-b", "--config", config, "--in-process", "--out", root,
                 "-q", "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert (summary["blocks"], summary["finished"], summary["failed"]) == (1, 1, 0)
    (row,) = gpd.read_parquet(root / "blocks.parquet").to_dict("records")
    assert (row["a_coverage"], row["b_coverage"], row["status"]) == ("Nodata", "Nodata", "done")
    assert row["a_valid_fraction"] == 0 and row["cropland_m2"] == 0 and row["terrain_missing"]
    with rasterio.open(root / "final" / "5866_2262.tif") as src:
        assert (src.read(1) == 255).all()
    area = pd.read_csv(root / "area.csv")
    assert not area["region_covers_province"].iloc[0] and np.isnan(area["pcs"].iloc[0])


def test_the_summary_says_a_sample_total_is_rough_and_what_to_run_next():
    from mapper.run.outputs import summary_text

    province = {"province": "Guangdong", "mapped_cropland_ha": 2.06e6, "estimate": True, "blocks_done": 8,
                "blocks_in_province": 6662, "region_covers_province": True, "cropland_ha_in_mapped_blocks": 2098.0,
                "statistic_ha": 1.03e6, "statistic_source": "simulated world, seed 0", "pcs": 1.99}  # fmt: skip
    summary = {"region": "Guangdong", "finished": 8, "blocks": 8, "failed": 0, "seconds": 150.0,
               "run_dir": "runs/gd", "provinces": [province], "outputs": {}, "failures": []}  # fmt: skip
    text = summary_text(summary)
    assert "estimated from 8 of 6,662 blocks" in text and "PCS 1.990" in text
    assert "`mapper validate runs/gd` gives its 95 % interval" in text
    assert "next: `mapper validate runs/gd`" in text and "`mapper report runs/gd`" in text
    whole = summary_text({**summary, "provinces": [{**province, "estimate": False}]})
    assert "rough" not in whole and "next:" in whole
