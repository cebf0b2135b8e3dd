import subprocess
import sys

import pytest
import rasterio
from click.testing import CliRunner

from mapper.cli import cli
from mapper.grid.blocks import Block


def test_help_is_fast_and_lists_groups():
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import mapper.cli"], capture_output=True, text=True, check=True
    )
    heavy_modules = ("rasterio", "geopandas", "cv2", "torch")
    heavy = [line for line in out.stderr.splitlines() if any(m in line for m in heavy_modules)]
    assert heavy == [], "mapper --help must not import heavy libraries"
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0
    for group in ("grid", "fetch", "demo", "cache", "labels", "train", "evaluate"):
        assert group in res.output


def test_grid_command(tmp_path):
    out = tmp_path / "gd.parquet"
    res = CliRunner().invoke(cli, ["grid", "--province", "广东省", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "6,662 blocks" in res.output
    import geopandas as gpd

    assert len(gpd.read_parquet(out)) == 6662


def test_unknown_province_exits_cleanly():
    res = subprocess.run(
        [sys.executable, "-m", "mapper.cli", "grid", "-p", "Guandong"], capture_output=True, text=True
    )
    assert res.returncode == 2
    assert "Did you mean: Guangdong" in res.stderr and "Traceback" not in res.stderr


def test_fetch_demo_writes_mosaics_and_resumes(tmp_path, tmp_cache):
    args = ["fetch", "-p", "Macao", "--source", "demo", "--max-blocks", "1", "--out", str(tmp_path), "-q"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    tifs = sorted(tmp_path.glob("demo-*/*.tif"))
    assert [t.parent.name for t in tifs] == ["demo-a", "demo-b"]
    with rasterio.open(tifs[0]) as src:
        assert src.crs.to_epsg() == 3857 and src.count == 3
        block = Block.parse(tifs[0].stem)
        assert src.transform == block.window().transform
    assert (tmp_path / "demo-a" / "config.yaml").exists()
    again = CliRunner().invoke(cli, args)
    assert "0 written, 1 already there" in again.output


def test_missing_token_fails_before_work(tmp_path, monkeypatch):
    monkeypatch.delenv("MAPBOX_ACCESS_TOKEN", raising=False)
    res = subprocess.run(
        [sys.executable, "-m", "mapper.cli", "fetch", "-p", "Macao", "--source", "mapbox", "--out", str(tmp_path)],
        capture_output=True, text=True,
    )
    assert res.returncode == 2
    assert "MAPBOX_ACCESS_TOKEN" in res.stderr
    assert not list(tmp_path.rglob("*"))


def test_preview(tmp_path):
    out = tmp_path / "p.png"
    block = Block.containing(113.3, 23.1).id
    res = CliRunner().invoke(cli, ["demo", "preview", "--block", block, "--out", str(out), "--crop", "300"])
    assert res.exit_code == 0, res.output
    assert out.read_bytes().startswith(b"\x89PNG")


def test_demo_stats_area_matches_geodesic_polygon_area():
    import json

    from pyproj import Geod

    from mapper.grid.admin import resolve_province

    res = CliRunner().invoke(cli, ["demo", "stats", "-p", "Shanghai", "--samples", "8", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    geodesic_ha = abs(Geod(ellps="WGS84").geometry_area_perimeter(resolve_province("Shanghai").geometry)[0]) / 1e4
    assert out["area_ha"] == pytest.approx(geodesic_ha, rel=0.005)
    assert 0 < out["cropland_ha"] < out["area_ha"]
